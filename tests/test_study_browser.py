"""The participant app in a real browser: `streamlit run` on a free localhost port, driven by Playwright with
Debian's chromium (`make test` installs it). Checks what only a browser shows: the GIFs arrive as animated GIFs
at their own size, a double click on Submit records one answer, and a reload resumes at the same screen."""

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
from studies.manifest import load_study

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    folder, key, _ = synthetic_materials(tmp_path / "materials")
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    load_study(engine, folder, key, study_id=STUDY)
    port = free_port()
    env = {**os.environ, "STYLEX_STUDY_DB": url, "STYLEX_STUDY_MATERIALS": str(folder), "STYLEX_STUDY_ID": STUDY}
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
    yield base, engine
    process.terminate()
    process.wait(timeout=20)
    db.dispose_engines()


def screen_number(page) -> int:
    page.get_by_text(re.compile(r"Screen \d+ of \d+")).wait_for(timeout=30000)
    return int(re.search(r"Screen (\d+) of", page.inner_text("body")).group(1))


def responses(engine) -> int:
    with db.session_scope(engine) as session:
        return session.execute(select(func.count()).select_from(db.Response)).scalar_one()


def test_gifs_animate_double_click_records_once_and_reload_resumes(server):
    if not Path(CHROMIUM).exists():
        pytest.fail("the browser test needs Debian's chromium: `make test` installs it (scripts/apt-install chromium)")
    base, engine = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{base}/?PROLIFIC_PID=browser01&part=coherence")
        page.get_by_text("I have read the information").click()
        page.get_by_role("button", name="Start").click()
        page.get_by_role("button", name="Begin").click()
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

        page.reload()
        assert screen_number(page) == 2  # resumes at the first unanswered screen
        assert responses(engine) == 1
        browser.close()
