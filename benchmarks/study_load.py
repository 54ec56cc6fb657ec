"""How many participants the study app serves at once: N concurrent browsers answer a whole study.

    python benchmarks/study_load.py [--participants 10,25,50] [--materials DIR --answer-key FILE]
                                    [--time-limit 600] [--gif-size 256]

Starts the real app (`streamlit run studies/app.py`) on a free 127.0.0.1 port over a fresh SQLite file, then, per
level N, opens N browser contexts in one headless chromium (Debian's, as the browser test) that consent, read the
instructions and answer every screen (Part 1 picks A or B, Part 2 types two words; participants alternate parts).
Nothing leaves the machine. Prints per level: answers/s from the start to the last accepted answer, p50 / p95
seconds from a Submit click to the next screen, participants finished within the time limit, submits repeated
because the screen had not moved on within 30 s (as a participant would click again), and the database check:
answers the browsers saw accepted but missing from the database (lost) and trials with more than one stored
answer (duplicated). Both must be 0; a level that runs past its time limit reports what finished.

Without --materials it builds a synthetic study of realistic size: 2 methods x 6 attributes (Part 1 and Part 2
items), 2 attention items, animated GIFs of --gif-size pixels with 8 frames.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from studies import db
from studies.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, load_study, sha256_hex
from studies.text import COMPREHENSION

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "studies" / "app.py"
STUDY = "loadstudy"
SCREEN = re.compile(r"Screen (\d+) of (\d+)")
SUBMIT_TRIES = 3
RETRY_AFTER_S = 30.0


def synthetic_materials(folder: Path, methods: int = 2, attributes: int = 6, gif_size: int = 256
                        ) -> tuple[Path, dict[str, str]]:
    """A materials folder shaped like `stylex study build`'s, with distinct animated GIFs."""
    (folder / "assets").mkdir(parents=True)
    assets: list[dict] = []

    def asset(seed: int) -> str:
        frames = [Image.new("RGB", (gif_size, gif_size), ((seed * 37 + 30 * k) % 256, (seed * 91) % 256,
                                                           (seed * 13 + 20 * k) % 256)) for k in range(8)]
        for k, frame in enumerate(frames):  # a moving square, so frames differ as a real attribute GIF's do
            side = gif_size // 4
            frame.paste((255 - 20 * k, 40, 40), (k * side // 4, k * side // 4, k * side // 4 + side,
                                                 k * side // 4 + side))
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
        data = buffer.getvalue()
        sha = sha256_hex(data)
        (folder / "assets" / f"{sha[:16]}.gif").write_bytes(data)
        assets.append({"asset_id": sha[:16], "sha256": sha, "relpath": f"assets/{sha[:16]}.gif",
                       "width": gif_size, "height": gif_size, "n_frames": len(frames), "method": None,
                       "domain": "load"})
        return sha[:16]

    items, key, seed = [], {}, 0
    for m in range(methods):
        for attr in range(1, attributes + 1):
            ids = [asset(seed + k) for k in range(4)]
            seed += 4
            items.append({"item_id": f"m{m}a{attr}p1", "part": 1, "kind": "main", "method": f"method{m}",
                          "domain": "load", "attr_i": attr, "attr_j": attr % attributes + 1, "assets": ids})
            key[f"m{m}a{attr}p1"] = "A" if (m + attr) % 2 else "B"
            items.append({"item_id": f"m{m}a{attr}p2", "part": 2, "kind": "describe", "method": f"method{m}",
                          "domain": "load", "attr_i": attr, "attr_j": None, "assets": ids})
    for k in range(2):
        ids = [*items[2 * k]["assets"][:3], asset(1000 + k)]
        items.append({"item_id": f"attention{k}", "part": 1, "kind": "attention", "method": "method0",
                      "domain": "load", "attr_i": 1, "attr_j": None, "assets": ids})
        key[f"attention{k}"] = "A"
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "study_id": STUDY, "assets": assets,
                "items": items}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "answer_key.json").write_text(json.dumps(key))
    return folder, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(url: str, materials: Path, study: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "STYLEX_STUDY_DB": url, "STYLEX_STUDY_MATERIALS": str(materials), "STYLEX_STUDY_ID": study}
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
                                "--server.address", "127.0.0.1", "--server.headless", "true",
                                "--browser.gatherUsageStats", "false"],
                               cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)
            return process, base
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise SystemExit(f"the study app did not start within 90 s; its log: {log}") from None
            time.sleep(0.3)


@dataclass
class Participant:
    pid: str
    part: str
    accepted: int = 0  # answers after which the browser moved on to the next screen
    latencies: list[float] = field(default_factory=list)
    finished: bool = False
    retries: int = 0  # submits repeated because the screen did not move on within RETRY_AFTER_S
    last_answer: float = 0.0
    error: str = ""


async def _screen(page) -> tuple[int, int] | None:
    match = SCREEN.search(await page.inner_text("body"))
    return (int(match.group(1)), int(match.group(2))) if match else None


async def _settled(page) -> bool:
    """Whether the app has finished its script run: Streamlit marks elements of the previous run stale while a run
    is under way and shows its status widget; clicking then can hit a widget that is about to be replaced."""
    return (await page.locator("[data-stale='true']").count() == 0
            and await page.locator("[data-testid='stStatusWidget']").count() == 0)


async def _wait_for_change(page, shown: int, timeout: float) -> bool:
    """Until the page shows a later screen or the thank-you page and has settled; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = await page.inner_text("body")
        match = SCREEN.search(body)
        if ("Thank you!" in body or (match and int(match.group(1)) > shown)) and await _settled(page):
            return True
        await asyncio.sleep(0.05)
    return False


async def participate(browser, base: str, who: Participant, deadline: float) -> None:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    try:
        await page.goto(f"{base}/?PROLIFIC_PID={who.pid}&part={who.part}", timeout=120_000)
        await page.get_by_text("I have read the information").click(timeout=120_000)
        await page.get_by_role("button", name="Start").click(timeout=120_000)
        await page.get_by_role("button", name="Continue").click(timeout=120_000)
        for question in COMPREHENSION[who.part]:  # the comprehension check, answered as the instructions say
            group = page.get_by_test_id("stRadio").filter(has_text=question.prompt)
            await group.get_by_text(question.expected, exact=True).click(timeout=120_000)
        await page.get_by_role("button", name="Check my answers").click(timeout=120_000)
        if not await _wait_for_change(page, 0, 120):
            who.error = "the first screen did not appear within 120 s"
            return
        while time.monotonic() < deadline:
            screen = await _screen(page)
            if screen is None:
                if "Thank you!" in await page.inner_text("body"):
                    who.finished = True
                    return
                await asyncio.sleep(0.05)
                continue
            clicked = time.monotonic()
            for _ in range(SUBMIT_TRIES):  # as a participant would: answer again when nothing happens
                if who.part == "coherence":
                    await page.get_by_text("B", exact=True).last.click(timeout=60_000)
                else:
                    await page.get_by_role("textbox").fill(f"change {screen[0]}", timeout=60_000)
                await page.get_by_role("button", name="Submit").click(timeout=60_000)
                wait = min(RETRY_AFTER_S, deadline - time.monotonic())
                if wait <= 0 or await _wait_for_change(page, screen[0], wait):
                    break
                who.retries += 1
            else:
                body = " ".join((await page.inner_text("body")).split())
                who.error = f"screen {screen[0]} did not advance after {SUBMIT_TRIES} submits: {body[:160]!r}"
                return
            if time.monotonic() >= deadline:
                return
            who.latencies.append(time.monotonic() - clicked)
            who.accepted += 1
            who.last_answer = time.monotonic()
    except Exception as err:  # a level is measured to its end; the report names what went wrong
        who.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    finally:
        await context.close()


async def run_level(base: str, count: int, level: int, time_limit: float, chromium: str) -> list[Participant]:
    from playwright.async_api import async_playwright

    people = [Participant(f"load{level}x{n:03d}", "coherence" if n % 2 == 0 else "description")
              for n in range(count)]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        deadline = time.monotonic() + time_limit
        await asyncio.gather(*(participate(browser, base, who, deadline) for who in people))
        await browser.close()
    return people


def stored_answers(engine, pids: list[str]) -> tuple[dict[str, int], int]:
    """Answers in the database per participant id, and trials holding more than one answer."""
    with db.session_scope(engine) as session:
        rows = session.execute(
            select(db.Participant.external_pid, func.count(db.Response.trial_id))
            .join(db.Trial, db.Trial.participant_id == db.Participant.id)
            .join(db.Response, db.Response.trial_id == db.Trial.id)
            .where(db.Participant.external_pid.in_(pids))
            .group_by(db.Participant.external_pid)).all()
        duplicated = session.execute(
            select(func.count()).select_from(
                select(db.Response.trial_id).group_by(db.Response.trial_id)
                .having(func.count() > 1).subquery())).scalar_one()
    return dict(rows), duplicated


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(levels: list[int], materials: Path | None, answer_key: Path | None, time_limit: float,
            gif_size: int, chromium: str, workdir: Path) -> list[dict]:
    if materials is None:
        materials, key = synthetic_materials(workdir / "materials", gif_size=gif_size)
        answer_key_arg: dict | Path = key
    else:
        if answer_key is None:
            raise SystemExit("--materials needs --answer-key (the answer_key.json written by `stylex study build`)")
        answer_key_arg = answer_key
    url = f"sqlite:///{workdir / 'study.sqlite'}"
    engine = db.get_engine(url)
    study = load_study(engine, materials, answer_key_arg, study_id=STUDY)
    process, base = start_app(url, materials, study, workdir / "app.log")
    results = []
    try:
        for level, count in enumerate(levels):
            started = time.monotonic()
            people = asyncio.run(run_level(base, count, level, time_limit, chromium))
            # up to the last accepted answer, so a participant stuck until the time limit does not dilute the rate
            wall = max([who.last_answer for who in people if who.accepted], default=time.monotonic()) - started
            stored, duplicated = stored_answers(engine, [who.pid for who in people])
            latencies = [t for who in people for t in who.latencies]
            results.append({
                "participants": count, "finished": sum(who.finished for who in people),
                "answers": sum(stored.values()), "wall_s": wall,
                "answers_per_s": sum(stored.values()) / wall,
                "p50_s": statistics.median(latencies) if latencies else float("nan"),
                "p95_s": percentile(latencies, 0.95),
                "lost": sum(max(0, who.accepted - stored.get(who.pid, 0)) for who in people),
                "duplicated": duplicated, "retries": sum(who.retries for who in people),
                "errors": sorted({who.error for who in people if who.error}),
            })
            print(format_row(results[-1]), flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
        db.dispose_engines()
    return results


HEADER = (f"{'participants':>12} {'finished':>8} {'answers':>7} {'wall s':>7} {'answers/s':>9} {'p50 s':>6} "
          f"{'p95 s':>6} {'lost':>4} {'dup':>4} {'retries':>7}")


def format_row(row: dict) -> str:
    text = (f"{row['participants']:>12} {row['finished']:>8} {row['answers']:>7} {row['wall_s']:>7.1f} "
            f"{row['answers_per_s']:>9.2f} {row['p50_s']:>6.2f} {row['p95_s']:>6.2f} {row['lost']:>4} "
            f"{row['duplicated']:>4} {row['retries']:>7}")
    return text + (f"   errors: {'; '.join(row['errors'])}" if row["errors"] else "")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", default="10,25,50", help="concurrent participants per level")
    parser.add_argument("--materials", type=Path, help="a built materials folder (default: a synthetic study)")
    parser.add_argument("--answer-key", type=Path, help="its answer_key.json")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per level at most")
    parser.add_argument("--gif-size", type=int, default=256, help="pixels of the synthetic GIFs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    try:
        levels = [int(n) for n in args.participants.split(",")]
    except ValueError:
        parser.error(f"--participants takes counts like 10,25,50, got {args.participants!r}")
    if not levels or min(levels) < 1 or max(levels) > 200:
        parser.error("--participants: each level must be 1..200 concurrent participants")
    if args.time_limit <= 0 or args.gif_size < 8:
        parser.error("--time-limit must be > 0 seconds and --gif-size >= 8 pixels")
    if not Path(args.chromium).exists():
        parser.error(f"no chromium at {args.chromium}: install Debian's (scripts/apt-install chromium) or pass "
                     "--chromium PATH")
    print(f"study app load on {os.cpu_count()} CPU cores; levels {levels}; time limit {args.time_limit:.0f} s each")
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="study-load-") as workdir:
        return measure(levels, args.materials, args.answer_key, args.time_limit, args.gif_size, args.chromium,
                       Path(workdir))


if __name__ == "__main__":
    main()
