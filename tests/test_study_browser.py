"""The participant app in a real browser: `streamlit run` on a free localhost port, driven by Playwright with
Debian's chromium (`make test` installs it). Checks what only a browser shows: the GIFs arrive as animated GIFs
at their own size, a double click on Submit records one answer, a reload resumes at the same screen (the session
token stays in the URL), another browser with the same id gets one line, and the comprehension and screening screens.

Screenshots of the screens go to $STYLEX_STUDY_SHOTS when set (to look at them), else to the test's tmp folder."""

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select
from test_study_app import STUDY, synthetic_materials

from studies import db
from studies.app import SESSION_IN_USE, TOKEN_PARAM
from studies.manifest import load_study
from studies.text import COMPREHENSION

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RETURN_URL = "https://app.prolific.com/submissions/complete?cc=SCREENOUT1"
SCREENING = {"STYLEX_STUDY_ATTENTION_FAILURES": "1", "STYLEX_STUDY_COMPREHENSION_FAILURES": "2",
             "STYLEX_PROLIFIC_RETURN_URL": RETURN_URL}


@pytest.fixture
def server(tmp_path):
    yield from _serve(tmp_path, {})


@pytest.fixture
def screening_server(tmp_path):
    yield from _serve(tmp_path, SCREENING)


def _serve(tmp_path, settings: dict[str, str], materials=synthetic_materials):
    """(base URL, engine) of `streamlit run studies/app.py` on a fresh study database, with ``settings`` in its
    environment; ``materials(folder)`` writes the materials and returns (folder, answer key, manifest)."""
    folder, key, _ = materials(tmp_path / "materials")[:3]
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    load_study(engine, folder, key, study_id=STUDY)
    port = free_port()
    env = {**os.environ, "STYLEX_STUDY_DB": url, "STYLEX_STUDY_MATERIALS": str(folder), "STYLEX_STUDY_ID": STUDY,
           **settings}
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "studies" / "app.py"),
                                "--server.port", str(port), "--server.address", "127.0.0.1"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("streamlit did not start within 60 s")
            time.sleep(0.3)
    try:
        yield base, engine
    finally:  # also when the generator is closed early (GeneratorExit at the yield): never leave a server behind
        process.terminate()
        process.wait(timeout=20)
        db.dispose_engines()


def screen_number(page) -> int:
    page.get_by_text(re.compile(r"Screen \d+ of \d+")).wait_for(timeout=30000)
    return int(re.search(r"Screen (\d+) of", page.inner_text("body")).group(1))


def responses(engine) -> int:
    with db.session_scope(engine) as session:
        return session.execute(select(func.count()).select_from(db.Response)).scalar_one()


def settle(page) -> None:
    """Wait until the app has finished its script run: while one is under way Streamlit shows its status widget and
    keeps the previous run's elements (marked stale) on the page, so a click could hit a widget about to go."""
    page.wait_for_function("() => !document.querySelector(\"[data-stale='true']\")"
                           " && !document.querySelector(\"[data-testid='stStatusWidget']\")", timeout=30000)


def answer_comprehension(page, part: str, wrong: tuple[str, ...] = ()) -> None:
    """Pick the expected answer of every question except those in ``wrong``, then submit."""
    page.get_by_text(COMPREHENSION[part][0].prompt).wait_for(timeout=30000)
    settle(page)
    for question in COMPREHENSION[part]:
        answer = question.others[0] if question.question_id in wrong else question.expected
        page.get_by_test_id("stRadio").filter(has_text=question.prompt).get_by_text(answer, exact=True).click()
    page.get_by_role("button", name="Check my answers").click()


def consent(page, base: str, pid: str, part: str = "coherence") -> None:
    page.goto(f"{base}/?PROLIFIC_PID={pid}&part={part}")
    page.get_by_text("I have read the information").click()
    page.get_by_role("button", name="Start").click()
    page.get_by_role("button", name="Continue").click()


def launch(playwright):
    if not Path(CHROMIUM).exists():
        pytest.fail("the browser test needs Debian's chromium: `make test` installs it (scripts/apt-install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def test_gifs_animate_double_click_records_once_and_reload_resumes(server):
    base, engine = server
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        consent(page, base, "browser01")
        answer_comprehension(page, "coherence")
        assert screen_number(page) == 1

        images = page.locator("img[src*='/media/']")
        images.nth(3).wait_for(timeout=30000)  # the four arrive one by one; on a loaded machine, seconds apart
        assert images.count() == 4
        for index in range(4):
            src = images.nth(index).get_attribute("src")
            data = urllib.request.urlopen(base + src if src.startswith("/") else src, timeout=10).read()
            with Image.open(io.BytesIO(data)) as gif:
                assert gif.format == "GIF" and gif.n_frames > 1 and gif.info.get("loop") == 0
            shown = images.nth(index).evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert shown == [16, 16]  # served at its own size: a resized GIF would be re-encoded as a still

        page.get_by_text("A", exact=True).last.click()
        page.get_by_role("button", name="Submit").dblclick()
        page.wait_for_timeout(1500)
        assert responses(engine) == 1  # two clicks, one answer
        assert screen_number(page) == 2

        assert f"{TOKEN_PARAM}=" in page.url  # the session token the reload brings back
        page.reload()
        assert screen_number(page) == 2  # resumes at the first unanswered screen
        assert responses(engine) == 1
        browser.close()


def pick(page, option: str) -> None:
    """Choose ``option`` on a settled trial screen and wait until the radio shows it chosen."""
    settle(page)
    radio = page.get_by_test_id("stRadio")
    radio.get_by_text(option, exact=True).click()
    radio.get_by_role("radio", name=option, checked=True).wait_for(timeout=10000)


def shoot(page, folder: Path, name: str) -> None:
    page.wait_for_timeout(500)  # let the rerun's elements settle before the picture
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_sessions_comprehension_and_screening_screens(screening_server, tmp_path):
    """With screening on: the comprehension loop, a second browser with the same id, screening out on an attention
    check and on the comprehension check, each with the return link; a screenshot of every screen."""
    base, engine = screening_server
    shots = Path(os.environ.get("STYLEX_STUDY_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        first = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        first.goto(f"{base}/?PROLIFIC_PID=shots01&part=coherence")
        first.get_by_text("I have read the information").click()
        first.get_by_role("button", name="Start").click()
        first.get_by_role("button", name="Continue").wait_for(timeout=30000)
        shoot(first, shots, "01-instructions")
        first.get_by_role("button", name="Continue").click()
        first.get_by_role("button", name="Check my answers").wait_for(timeout=30000)
        shoot(first, shots, "02-comprehension-coherence")
        answer_comprehension(first, "coherence", wrong=("compare",))
        first.get_by_text("Some of your answers do not match the instructions").wait_for(timeout=30000)
        first.get_by_role("heading", name="Instructions").wait_for(timeout=30000)  # the instructions again
        shoot(first, shots, "03-instructions-again")
        first.get_by_role("button", name="Continue").click()
        answer_comprehension(first, "coherence")
        assert screen_number(first) == 1
        participant = db.find_participant(engine, STUDY, "shots01")
        assert participant["comprehension_tries"] == 2 and participant["session_token"] in first.url

        # another browser (its own cookies and storage) with the same study link: one line, nothing else
        second = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        second.goto(f"{base}/?PROLIFIC_PID=shots01&part=coherence")
        second.get_by_text(SESSION_IN_USE).wait_for(timeout=30000)
        shoot(second, shots, "04-session-in-use")
        assert second.locator("img").count() == 0 and "Screen" not in second.inner_text("body")

        # the first browser answers as the key says, except on the attention check: screened out
        participant_id = participant["id"]
        for screen in range(1, 7):
            # the page first, then the database: a Submit click returns before the server has stored the answer,
            # and the server draws the next screen only after storing it
            first.get_by_text(f"Screen {screen} of 6", exact=True).wait_for(timeout=30000)
            trial = db.next_trial(engine, participant_id)
            assert trial["n_done"] + 1 == screen
            with db.session_scope(engine) as session:
                key = session.get(db.Trial, trial["trial_id"]).correct_option
            choice = {"A": "B", "B": "A"}[key] if trial["kind"] == "attention" else key
            pick(first, choice)
            first.get_by_role("button", name="Submit").click()
            if trial["kind"] == "attention":
                break
        else:
            pytest.fail("the plan has no attention check")
        first.get_by_text("Thank you for your time").wait_for(timeout=30000)
        shoot(first, shots, "05-screened-out-attention")
        assert first.get_by_role("link", name="Return to Prolific").get_attribute("href") == RETURN_URL
        assert db.get_participant(engine, participant_id)["status"] == "screened_out"

        # Part 2, failing the comprehension check twice: screened out
        third = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        consent(third, base, "shots02", "description")
        third.get_by_role("button", name="Check my answers").wait_for(timeout=30000)
        shoot(third, shots, "06-comprehension-description")
        answer_comprehension(third, "description", wrong=("words",))
        third.get_by_text("You have 1 more try.").wait_for(timeout=30000)
        third.get_by_role("button", name="Continue").click()
        answer_comprehension(third, "description", wrong=("words",))
        third.get_by_text("Thank you for your time").wait_for(timeout=30000)
        shoot(third, shots, "07-screened-out-comprehension")
        assert third.get_by_role("link", name="Return to Prolific").get_attribute("href") == RETURN_URL
        assert db.find_participant(engine, STUDY, "shots02")["status"] == "screened_out"
        browser.close()
