"""Part 3 (forward simulation) in the participant app, end to end through Streamlit's AppTest: group by arrival
order, consent, instructions and comprehension check, the group's learning screens, still test images answered with
one button per class, completion; then the stored predictions read back in ``forward.RESPONSE_COLUMNS`` and
analysed by ``forward_analysis.forward_accuracy``. The classifier's decisions never reach a page."""

import hashlib
import io
import json
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from test_study_app import (
    DOMAIN,
    METHODS,
    STUDY,
    _app,
    _assert_no_leak,
    _button,
    answer_comprehension,
    consent_and_read,
    synthetic_materials,
)

from studies import db
from studies.design import participant_seed
from studies.forward import CONTROL, RESPONSE_COLUMNS, assign_group
from studies.forward_analysis import forward_accuracy
from studies.manifest import load_study
from studies.text import COMPREHENSION, CONSENT_TASK, INSTRUCTIONS
from stylex.cli import main

CLASSES = ("classcat", "classdog")
COMPREHENSION_PROMPT = COMPREHENSION["forward"][0].prompt
N_STILLS = 4  # per class


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), ((seed * 53) % 256, (seed * 29 + 100) % 256, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def forward_materials(folder):
    """The synthetic materials of test_study_app plus Part 3: learning screens of both methods and of the random
    baseline (two GIFs per attribute, attribute 1 toward the first class, 2 toward the second) and ``N_STILLS`` new
    PNG stills per class as test images. Returns (folder, answer key, manifest, {still asset id: decision})."""
    folder, key, manifest = synthetic_materials(folder)
    main = [item for item in manifest["items"] if item["kind"] == "main"]
    for method in (*METHODS, "random"):
        source = [item for item in main if item["method"] == (METHODS[0] if method == "random" else method)]
        for item in source:
            assets = item["assets"][2:] if method == "random" else item["assets"][:2]
            manifest["items"].append({"item_id": f"itemfwd-{method}-{item['attr_i']}", "part": 3, "kind": "learn",
                                      "method": method, "domain": DOMAIN, "attr_i": item["attr_i"],
                                      "attr_j": None, "assets": assets, "target_class": CLASSES[item["attr_i"] - 1]})
    decisions = {}
    for k in range(2 * N_STILLS):
        data = _png(k)
        sha = hashlib.sha256(data).hexdigest()
        (folder / "assets" / f"{sha[:16]}.png").write_bytes(data)
        manifest["assets"].append({"asset_id": sha[:16], "sha256": sha, "relpath": f"assets/{sha[:16]}.png",
                                   "width": 16, "height": 16, "n_frames": 1, "method": None, "domain": DOMAIN})
        decisions[sha[:16]] = CLASSES[k % 2]
        manifest["items"].append({"item_id": f"itemfwd-test-{k}", "part": 3, "kind": "test", "method": None,
                                  "domain": DOMAIN, "attr_i": None, "attr_j": None, "assets": [sha[:16]]})
        key[f"itemfwd-test-{k}"] = CLASSES[k % 2]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, key, manifest, decisions


def forward_study(tmp_path, monkeypatch) -> tuple[dict, dict[str, str], object]:
    """(manifest, {still asset id: classifier decision}, engine): the Part 3 materials loaded into a fresh
    database, the app's configuration in the environment."""
    st.cache_resource.clear()
    st.cache_data.clear()
    folder, key, manifest, decisions = forward_materials(tmp_path / "materials")
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    assert load_study(engine, folder, key, study_id=STUDY) == STUDY
    for name, value in (("STYLEX_STUDY_DB", url), ("STYLEX_STUDY_MATERIALS", str(folder)), ("STYLEX_STUDY_ID", STUDY)):
        monkeypatch.setenv(name, value)
    for name in ("STYLEX_PROLIFIC_URL", "STYLEX_PROLIFIC_CODE", "STYLEX_PROLIFIC_RETURN_URL",
                 "STYLEX_STUDY_COMPREHENSION_FAILURES", "STYLEX_STUDY_ATTENTION_FAILURES"):
        monkeypatch.delenv(name, raising=False)
    return manifest, decisions, engine


@pytest.fixture
def study(tmp_path, monkeypatch):
    yield forward_study(tmp_path, monkeypatch)
    db.dispose_engines()


def _screens(at, manifest: dict, predict) -> tuple[list[str], int]:
    """Answer every Part 3 screen (Continue on learning screens, ``predict(image bytes)`` on test screens) until the
    debrief; returns (the learning screens' labels, the number of test screens)."""
    labels, tests = [], 0
    for _ in range(40):
        assert not at.exception and not at.error
        if at.title and at.title[0].value == "Thank you!":
            return labels, tests
        _assert_no_leak(at, manifest)
        labels_here = [button.label for button in at.button]
        if labels_here == ["Continue"]:
            assert len(at.image) == 2 and "pushes the classifier toward" in at.markdown[0].value
            labels.append(at.markdown[0].value.split("**")[1])
            _button(at, "Continue").click()
        else:  # a test screen: one still, one button per class, the same buttons for every image
            assert labels_here == list(CLASSES) and len(at.image) == 1
            assert "Which class will the classifier say?" in [m.value.strip("*") for m in at.markdown]
            _button(at, predict(tests)).click()
            tests += 1
        at.run()
    raise AssertionError("Part 3 did not end")


def test_part3_from_consent_to_analysis(study):
    manifest, decisions, engine = study
    groups = [CONTROL, *sorted(METHODS)]  # the random baseline teaches the control group, not a group of its own
    seen = {}
    for index in range(len(groups)):
        pid = f"PID_fwd{index}"
        at = _app(pid, part="forward")
        _assert_no_leak(at, manifest)
        at = answer_comprehension(consent_and_read(at), "forward")
        participant = db.find_participant(engine, STUDY, pid)
        expected_group = assign_group(index, groups, seed=participant_seed(STUDY, ""))
        trials = db.export_frames(engine)["trials"]
        mine = trials[trials["participant_id"] == participant["id"]]
        assert set(mine["method"]) == {expected_group}
        images = list(mine[mine["kind"] == "main"]["assets"].str[0])
        # the control group always predicts the first class; the method groups predict perfectly
        labels, n_tests = _screens(at, manifest, lambda k, images=images, group=expected_group:
                                   CLASSES[0] if group == CONTROL else decisions[images[k]])
        assert labels == [CLASSES[0], CLASSES[1]]  # attribute 1, then 2, of the group's (or random's) screens
        assert n_tests == 2 * N_STILLS and set(images) <= set(decisions)
        assert db.get_participant(engine, participant["id"])["status"] == "completed"
        seen[pid] = expected_group
    assert sorted(seen.values()) == sorted(groups)  # one complete block: every group once

    responses = db.forward_responses(engine)
    assert list(responses.columns) == RESPONSE_COLUMNS and len(responses) == 2 * N_STILLS * len(groups)
    assert dict(zip(responses["participant"], responses["group"], strict=True)) == seen
    assert all(responses["classifier_decision"] == responses["image"].map(decisions))
    assert responses["rt_ms"].notna().all()
    accuracy = forward_accuracy(responses).set_index("group")
    assert list(accuracy.index) == groups
    assert accuracy.loc[CONTROL, "accuracy"] == 0.5 and (accuracy.loc[list(METHODS), "accuracy"] == 1.0).all()

    # `stylex study analyze` reports Part 3 beside Parts 1-2 (here there are none)
    out = Path(str(engine.url.database)).parent / "analysis"
    assert main(["study", "analyze", "--db", str(engine.url), "--out", str(out)]) == 0
    analysis = json.loads((out / "analysis.json").read_text())["forward"]
    assert [row["group"] for row in analysis["accuracy"]] == groups
    assert {row["group"]: row["accuracy"] for row in analysis["accuracy"]}[CONTROL] == 0.5
    assert {row["group"] for row in analysis["comparisons"]} == set(METHODS)
    assert all(row["difference"] == 0.5 for row in analysis["comparisons"])
    report = (out / "analysis.md").read_text()
    assert "## Part 3: predicting the classifier (forward simulation)" in report and "| control |" in report


def test_control_without_learning_screens_reads_about_the_test_phase_only(tmp_path, monkeypatch):
    """Materials without the random baseline: the control group has no learning screens, so its instructions and
    comprehension questions speak of the test phase only; a method group still reads about both phases. The consent
    page says what Part 3 asks before the group is drawn."""
    folder, key, manifest, _decisions = forward_materials(tmp_path / "materials")
    manifest["items"] = [item for item in manifest["items"] if item.get("method") != "random"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    st.cache_resource.clear()
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    assert load_study(engine, folder, key, study_id=STUDY) == STUDY
    for name, value in (("STYLEX_STUDY_DB", url), ("STYLEX_STUDY_MATERIALS", str(folder)), ("STYLEX_STUDY_ID", STUDY)):
        monkeypatch.setenv(name, value)
    groups = [CONTROL, *sorted(METHODS)]
    try:
        for index, group in enumerate(assign_group(i, groups, seed=participant_seed(STUDY, "")) for i in range(3)):
            at = _app(f"PID_ctl{index}", part="forward")
            assert CONSENT_TASK["forward"] in at.markdown[0].value
            at.checkbox(key="consent-box").check()
            at.button(key="consent-button").click()
            at.run()
            task = "forward_test_only" if group == CONTROL else "forward"
            assert at.title[0].value == "Instructions" and INSTRUCTIONS[task] in at.markdown[0].value
            assert ("Learning phase" in at.markdown[0].value) == (group != CONTROL)
            at.button(key="begin-button").click()
            at.run()
            assert [r.label for r in at.radio] == [q.prompt for q in COMPREHENSION[task]]
            at = answer_comprehension(at, task)
            assert not at.exception and not at.error
            labels, n_tests = _screens(at, manifest, lambda k: CLASSES[0])
            assert labels == ([] if group == CONTROL else [CLASSES[0], CLASSES[1]]) and n_tests == 2 * N_STILLS
    finally:
        db.dispose_engines()


def test_part3_in_a_browser(tmp_path):
    """Part 3 in chromium: the learning screens' GIFs animate, a double click on a class button records one
    prediction, the run ends with the code; screenshots of every new screen (to $STYLEX_STUDY_SHOTS when set)."""
    import os
    from pathlib import Path

    from playwright.sync_api import sync_playwright
    from test_study_browser import _serve, launch, responses, settle, shoot
    from test_study_browser import answer_comprehension as answer_in_browser

    shots = Path(os.environ.get("STYLEX_STUDY_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    serving = _serve(tmp_path, {}, materials=forward_materials)
    base, engine = next(serving)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{base}/?PROLIFIC_PID=fwdbrowser&part=forward")
            page.get_by_text("I have read the information").click()
            page.get_by_role("button", name="Start").click()
            page.get_by_text("Learning phase.").wait_for(timeout=30000)
            shoot(page, shots, "part3-instructions")
            page.get_by_role("button", name="Continue").click()
            page.get_by_text(COMPREHENSION_PROMPT).wait_for(timeout=30000)
            shoot(page, shots, "part3-comprehension")
            answer_in_browser(page, "forward")
            for screen in range(2):  # the group's two learning screens (control: the random baseline's)
                page.get_by_text("pushes the classifier toward").wait_for(timeout=30000)
                settle(page)
                images = page.locator("img[src*='/media/']")
                images.nth(1).wait_for(timeout=30000)
                assert images.count() == 2
                shoot(page, shots, f"part3-learning-{screen + 1}")
                page.get_by_role("button", name="Continue").click()
            page.get_by_text("Which class will the classifier say?").wait_for(timeout=30000)
            settle(page)
            shoot(page, shots, "part3-test")
            before = responses(engine)
            page.get_by_role("button", name=CLASSES[0]).dblclick()
            page.wait_for_timeout(1500)
            assert responses(engine) == before + 1  # two clicks, one prediction
            for _ in range(2 * N_STILLS - 1):
                page.get_by_text("Which class will the classifier say?").wait_for(timeout=30000)
                settle(page)
                page.get_by_role("button", name=CLASSES[1]).click()
                page.wait_for_timeout(300)
            page.get_by_text("Thank you!").wait_for(timeout=30000)
            shoot(page, shots, "part3-done")
            browser.close()
        frame = db.forward_responses(engine)
        assert len(frame) == 2 * N_STILLS and list(frame["trial"]) == list(range(2 * N_STILLS))
    finally:
        serving.close()
