"""The participant app end to end through Streamlit's AppTest, on a tiny synthetic materials folder and a fresh
SQLite file per test. No torch in the app's import graph."""

import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from studies import db
from studies.app import ALREADY_RECORDED, NOTHING_RECORDED, SESSION_IN_USE, TOKEN_PARAM
from studies.manifest import MANIFEST_FORMAT, load_study
from studies.text import COMPREHENSION

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "studies" / "app.py")
METHODS = ("methodalpha", "methodbeta")
DOMAIN = "domainzeta"
STUDY = "teststudy"


def _gif(seed: int) -> bytes:
    frames = [Image.new("RGB", (16, 16), ((seed * 37 + 80 * k) % 256, (seed * 91) % 256, (40 * k) % 256))
              for k in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def synthetic_materials(folder: Path) -> tuple[Path, dict[str, str], dict]:
    """A manifest with 2 methods x 2 attributes (Part 1 and Part 2 items) and 1 attention item."""
    (folder / "assets").mkdir(parents=True)
    assets = []

    def asset(seed: int) -> str:
        data = _gif(seed)
        sha = hashlib.sha256(data).hexdigest()
        (folder / "assets" / f"{sha[:16]}.gif").write_bytes(data)
        assets.append({"asset_id": sha[:16], "sha256": sha, "relpath": f"assets/{sha[:16]}.gif", "width": 16,
                       "height": 16, "n_frames": 3, "method": None, "domain": DOMAIN})
        return sha[:16]

    items, key, seed = [], {}, 0
    for m, method in enumerate(METHODS):
        for attr in (1, 2):
            ids = [asset(seed + k) for k in range(4)]
            seed += 4
            item_id = f"item{m}{attr}p1"
            items.append({"item_id": item_id, "part": 1, "kind": "main", "method": method, "domain": DOMAIN,
                          "attr_i": attr, "attr_j": 3 - attr, "assets": ids})
            key[item_id] = "A" if (m + attr) % 2 else "B"
            items.append({"item_id": f"item{m}{attr}p2", "part": 2, "kind": "describe", "method": method,
                          "domain": DOMAIN, "attr_i": attr, "attr_j": None, "assets": ids})
    items.append({"item_id": "itemattn", "part": 1, "kind": "attention", "method": METHODS[0], "domain": DOMAIN,
                  "attr_i": 1, "attr_j": None, "assets": [*items[0]["assets"][:3], asset(99)]})
    key["itemattn"] = "A"
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "study_id": "fromfile", "assets": assets, "items": items}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, key, manifest


def make_study(tmp_path: Path, monkeypatch) -> tuple[str, dict[str, str], dict, object]:
    """(db url, answer key, manifest, engine): materials loaded into a fresh database, config in the env."""
    st.cache_resource.clear()
    st.cache_data.clear()
    folder, key, manifest = synthetic_materials(tmp_path / "materials")
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    assert load_study(engine, folder, key, study_id=STUDY) == STUDY
    assert load_study(engine, folder, key, study_id=STUDY) == STUDY  # idempotent
    monkeypatch.setenv("STYLEX_STUDY_DB", url)
    monkeypatch.setenv("STYLEX_STUDY_MATERIALS", str(folder))
    monkeypatch.setenv("STYLEX_STUDY_ID", STUDY)
    for name in ("STYLEX_PROLIFIC_URL", "STYLEX_PROLIFIC_CODE", "STYLEX_PROLIFIC_RETURN_URL",
                 "STYLEX_STUDY_COMPREHENSION_FAILURES", "STYLEX_STUDY_ATTENTION_FAILURES"):
        monkeypatch.delenv(name, raising=False)  # the researcher's shell must not change what the tests see
    return url, key, manifest, engine


@pytest.fixture
def study(tmp_path, monkeypatch):
    yield make_study(tmp_path, monkeypatch)
    db.dispose_engines()


def _app(pid: str | None, part: str | None = None, token: str | None = None, session_id: str | None = None) -> AppTest:
    """A new browser session on the study link; ``token``: the session token its URL carries (a reload of a browser
    that was already there), ``session_id``: Prolific's SESSION_ID."""
    at = AppTest.from_file(APP, default_timeout=30)
    for name, value in (("PROLIFIC_PID", pid), ("part", part), (TOKEN_PARAM, token), ("SESSION_ID", session_id)):
        if value is not None:
            at.query_params[name] = value
    return at.run()


def _reload(at: AppTest) -> AppTest:
    """The same browser reloading its page: a new Streamlit session on the URL the app left (with its token)."""
    return _app(at.query_params.get("PROLIFIC_PID"), at.query_params.get("part"), at.query_params.get(TOKEN_PARAM),
                at.query_params.get("SESSION_ID"))


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _page_text(at: AppTest) -> str:
    """Everything the page sends to the browser: the protobuf of every element of the main area."""
    return "\n".join(str(getattr(node, "proto", "")) for node in _walk(at.main))


def _assert_no_leak(at: AppTest, manifest: dict) -> None:
    text = _page_text(at)
    media = re.findall(r'url: "([^"]*)"', text)
    # content hashes only (Part 3's test images are PNG stills)
    assert all(re.fullmatch(r"(/mock)?/media/[0-9a-f]+\.(gif|png)", url) for url in media), media
    text = re.sub(r'url: "(/mock)?/media/[0-9a-f]+\.(gif|png)"', "", text)
    lowered = text.lower()
    assert "correct" not in lowered and "answer key" not in lowered and "decision" not in lowered
    # Part 3: neither the group (a method, the random baseline, control) nor an item id reaches the page
    for word in (*METHODS, DOMAIN, "item0", "itemattn", "itemfwd", "manifest", ".gif", ".png", "assets/", "random",
                 "control"):
        assert word not in lowered, word
    for asset in manifest["assets"]:
        assert asset["asset_id"] not in text and asset["sha256"] not in text
    for radio in at.radio:
        if radio.key.startswith("choice-"):
            assert list(radio.options) == ["A", "B"] and radio.value is None


def _button(at: AppTest, label: str):
    matches = [button for button in at.button if button.label == label]
    assert len(matches) == 1, [button.label for button in at.button]
    return matches[0]


def answer_comprehension(at: AppTest, part: str, wrong: tuple[str, ...] = ()) -> AppTest:
    """On the comprehension page: the expected answer to every question except those in ``wrong``, then submit."""
    questions = {q.question_id: q for q in COMPREHENSION[part]}
    radios = [radio for radio in at.radio if radio.key.startswith("comprehension-")]
    assert sorted(radio.key.rsplit("-", 1)[1] for radio in radios) == sorted(questions)
    for radio in radios:
        question = questions[radio.key.rsplit("-", 1)[1]]
        assert sorted(radio.options) == sorted([question.expected, *question.others]) and radio.value is None
        radio.set_value(question.others[0] if question.question_id in wrong else question.expected)
    _button(at, "Check my answers").click()
    return at.run()


def _consent(at: AppTest, part: str = "coherence") -> AppTest:
    """Consent, read the instructions, pass the comprehension check: the first trial."""
    at = consent_and_read(at)
    at = answer_comprehension(at, part)
    assert not at.exception and (at.radio or at.text_input)
    return at


def consent_and_read(at: AppTest) -> AppTest:
    """Consent and go past the instructions: the comprehension page."""
    assert not at.exception
    assert at.button(key="consent-button")
    at.checkbox(key="consent-box").check()
    at.button(key="consent-button").click()
    at.run()
    assert at.title[0].value == "Instructions"
    at.button(key="begin-button").click()
    return at.run()


def _choose(at: AppTest, option: str) -> AppTest:
    """Answer the Part 1 screen on show with `option` and submit it."""
    at.radio[0].set_value(option)
    at.button[0].click()
    return at.run()


def _current_trial_id(at: AppTest) -> int:
    keys = [w.key for w in (*at.radio, *at.text_input)]
    assert len(keys) == 1, keys
    return int(keys[0].split("-")[1])


def _responses(engine) -> list[dict]:
    frames = db.export_frames(engine)
    return frames["responses"].to_dict("records"), frames["participants"].to_dict("records")


def test_part1_full_run(study):
    _url, _key, manifest, engine = study
    at = _app("PID_part1-A")
    _assert_no_leak(at, manifest)
    # consent needs the box
    at.button(key="consent-button").click().run()
    assert at.warning and db.find_participant(engine, STUDY, "PID_part1-A") is None
    at = _consent(at)
    n_trials = 0
    while at.radio:
        _assert_no_leak(at, manifest)
        assert len(at.image) == 4
        assert [c for image in at.image for c in image.captions] == ["Reference 1", "Reference 2", "A", "B"]
        assert at.get("progress")
        radio = at.radio[0]
        radio.set_value("A")
        at.button[0].click()
        at.run()
        assert not at.exception
        if n_trials == 0:  # practice feedback, without naming the key
            assert [m.value for m in (*at.success, *at.info)]
        assert not {ALREADY_RECORDED, NOTHING_RECORDED} & {m.value for m in at.info}  # nothing to report
        n_trials += 1
        assert n_trials < 20
    assert n_trials == 6  # 1 practice + 4 main + 1 attention
    assert at.title[0].value == "Thank you!"
    code = at.code[0].value
    assert code and len(code) == 8
    responses, participants = _responses(engine)
    assert len(responses) == n_trials and {r["choice"] for r in responses} == {"A"}
    with db.session_scope(engine) as session:
        trials = session.execute(select(db.Trial)).scalars().all()
        assert len(trials) == n_trials
        expected = {t.id: t.correct_option == "A" for t in trials}
    assert {r["trial_id"]: bool(r["correct"]) for r in responses} == expected
    assert sorted(r["kind"] for r in responses) == ["attention", "main", "main", "main", "main", "practice"]
    assert participants[0]["status"] == "completed" and participants[0]["completion_code"] == code
    # the same browser later shows the same code; another browser with the id gets one line, not the code
    again = _reload(at)
    assert again.code[0].value == code
    other = _app("PID_part1-A")
    assert not other.code and [e.value for e in other.error] == [SESSION_IN_USE] and code not in _page_text(other)


def test_part2_text_validation(study, monkeypatch):
    _url, _key, manifest, engine = study
    monkeypatch.setenv("STYLEX_PROLIFIC_URL", "https://app.prolific.com/submissions/complete?cc={code}")
    at = _consent(_app("p2person", "description"), "description")
    assert not at.radio and at.text_input
    first = _current_trial_id(at)
    at.text_input[0].input("one two three four five six")
    at.button[0].click()
    at.run()
    assert at.error and _current_trial_id(at) == first
    assert _responses(engine)[0] == []
    answers = ["Smile", "hair gets darker", "  glasses  ", "older face"]
    for answer in answers:
        _assert_no_leak(at, manifest)
        at.text_input[0].input(answer)
        at.button[0].click()
        at.run()
        assert not at.exception and not at.error
    assert at.code[0].value
    responses, participants = _responses(engine)
    assert sorted(r["text_raw"] for r in responses) == sorted(answers)
    assert all(r["correct"] is None or r["correct"] != r["correct"] for r in responses)  # <NA>: no key in Part 2
    assert {r["kind"] for r in responses} == {"main"} and participants[0]["part"] == "description"
    assert participants[0]["status"] == "completed"
    link = at.get("link_button")[0]
    assert link.proto.url.endswith("cc=" + at.code[0].value)


def test_resume_and_no_cache_leak(study, tmp_path):
    _url, _key, _manifest, engine = study
    at = _consent(_app("resumer"))
    _choose(at, "B")
    second = _current_trial_id(at)
    _choose(at, "A")
    third = _current_trial_id(at)
    assert third != second
    # a reload is a new session: it resumes at the first unanswered trial, without the instructions
    reloaded = _reload(at)
    assert not reloaded.exception and _current_trial_id(reloaded) == third
    assert len(_responses(engine)[0]) == 2
    # a double submit of an answered trial records nothing new
    db.record_choice(engine, second, "B")
    assert len(_responses(engine)[0]) == 2


def test_other_database_is_separate(study, tmp_path, monkeypatch):
    _url, key, _manifest, engine = study
    _consent(_app("firstdb"))
    assert db.find_participant(engine, STUDY, "firstdb") is not None
    other_url = f"sqlite:///{tmp_path / 'other.sqlite'}"
    other = db.get_engine(other_url)
    load_study(other, tmp_path / "materials", key, study_id=STUDY)
    monkeypatch.setenv("STYLEX_STUDY_DB", other_url)
    at = _app("firstdb")
    assert at.button(key="consent-button")  # a new participant there, not the first database's
    assert db.find_participant(other, STUDY, "firstdb") is None


@pytest.mark.parametrize("pid", [None, "", "bad pid!", "x" * 65, "<script>"])
def test_bad_pid_shows_error(study, pid):
    at = _app(pid)
    assert at.error and not at.exception
    assert not at.button


def test_bad_part_and_unknown_study(study, monkeypatch):
    assert _app("okpid", "nonsense").error
    monkeypatch.setenv("STYLEX_STUDY_ID", "nosuchstudy")
    at = _app("okpid")
    assert at.error and not at.button


def test_study_items_keep_key_apart(study):
    _url, key, manifest, engine = study
    items, stored_key = db.study_items(engine, STUDY)
    assert stored_key == key and len(items) == len(manifest["items"])
    assert all("correct_option" not in item and "answer_key" not in item for item in items)


def test_app_imports_no_torch():
    code = ("import sys, studies.app, studies.manifest, studies.design, studies.db; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_submit_for_an_answered_trial_says_so(study):
    """A Submit bound to a screen that was answered meanwhile (a click on the previous screen's button while the next
    one renders, a double click, a second tab) records nothing and tells the participant, on the next screen."""
    _url, _key, _manifest, engine = study
    at = _consent(_app("lateclick"))
    shown = _current_trial_id(at)
    assert db.record_choice(engine, shown, "B")  # the first click, already handled
    _choose(at, "A")
    assert not at.exception
    assert [m.value for m in at.info] == [ALREADY_RECORDED]
    assert _current_trial_id(at) != shown  # the next screen
    responses = _responses(engine)[0]
    assert [(r["trial_id"], r["choice"]) for r in responses] == [(shown, "B")]  # the later click changed nothing
    assert _events(engine, "duplicate_submit") == [shown]


def test_rerun_without_a_submit_says_nothing_was_recorded(study):
    """A rerun of a trial screen that no Submit handler saw (a click on a button whose screen had gone, a
    reconnect) is not silent either."""
    at = _consent(_app("noclick"))
    shown = _current_trial_id(at)
    assert not at.info or NOTHING_RECORDED not in [m.value for m in at.info]
    at.run()
    assert _current_trial_id(at) == shown and NOTHING_RECORDED in [m.value for m in at.info]
    _choose(at, "A")
    assert NOTHING_RECORDED not in [m.value for m in at.info]


ZWSP, RLO, NUL = "\u200b", "\u202e", "\x00"


def test_part2_invisible_and_control_characters(study):
    _url, _key, _manifest, engine = study
    at = _consent(_app("textprobe", "description"), "description")
    first = _current_trial_id(at)
    for bad in (ZWSP.join(["one", "two", "three", "four", "five", "six"]), "=1+1", ZWSP * 3, f"{NUL}\n{RLO}",
                "1 2 3"):
        at.text_input[0].input(bad)
        at.button[0].click()
        at.run()
        assert not at.exception
        assert at.error and "Please describe the change" in at.error[0].value, bad
        assert _current_trial_id(at) == first
    assert _responses(engine)[0] == []
    answers = [f"hair{ZWSP}darker", f"{RLO}older{NUL}face", "big\nsmile", "=HYPERLINK(\"x\") hair"]
    for answer in answers:
        at.text_input[0].input(answer)
        at.button[0].click()
        at.run()
        assert not at.exception and not at.error, answer
    responses = _responses(engine)[0]
    assert [r["text_raw"] for r in responses] == answers  # raw, exactly as typed
    assert [r["text_norm"] for r in responses] == ["hair darker", "older face", "big smile", '=HYPERLINK("x") hair']


def test_missing_database_is_not_created(study, tmp_path, monkeypatch):
    missing = tmp_path / "typo" / "study.sqlite"
    monkeypatch.setenv("STYLEX_STUDY_DB", f"sqlite:///{missing}")
    at = _app("somebody")
    assert at.error and not at.exception and not at.button
    assert not missing.parent.exists()


def _events(engine, kind: str) -> list[int]:
    with db.session_scope(engine) as session:
        details = session.execute(select(db.Event.detail).where(db.Event.kind == kind)).scalars().all()
    return [json.loads(d)["trial_id"] for d in details]

