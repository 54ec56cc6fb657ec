"""Running the study for real (issue 15): a participant id bound to its first browser session, `stylex study
release`, the comprehension check after the instructions, screening out while running, and upgrading a database
of an earlier schema version. Streamlit's AppTest on real SQLite files (the fixtures of test_study_app)."""

import json
import sqlite3
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import select
from test_study_app import (
    STUDY,
    _app,
    _button,
    _choose,
    _consent,
    _current_trial_id,
    _page_text,
    _reload,
    answer_comprehension,
    consent_and_read,
    make_study,
)

from studies import db
from studies.app import SESSION_IN_USE, TOKEN_PARAM, read_config
from studies.text import COMPREHENSION, comprehension_mistakes, question_options
from stylex.cli import main
from stylex.errors import UserError

DATA = Path(__file__).parent / "data"
RETURN_URL = "https://app.prolific.com/submissions/complete?cc=SCREENOUT1"


@pytest.fixture
def study(tmp_path, monkeypatch):
    yield make_study(tmp_path, monkeypatch)
    db.dispose_engines()


def _events(engine, kind: str) -> list[tuple[int, dict | None]]:
    with db.session_scope(engine) as session:
        rows = session.execute(select(db.Event.participant_id, db.Event.detail).where(db.Event.kind == kind)
                               .order_by(db.Event.id)).all()
    return [(pid, None if detail is None else json.loads(detail)) for pid, detail in rows]


def _refused(at) -> bool:
    """The one-line message, and nothing of the study: no trial, no images, no code."""
    return ([e.value for e in at.error] == [SESSION_IN_USE] and not at.radio and not at.text_input
            and not at.image and not at.code and not at.button and not at.exception)


# -------------------------------------------------------------------------------------------- session binding


def test_second_browser_gets_one_line_and_never_the_code(study):
    _url, _key, _manifest, engine = study
    first = _consent(_app("boundpid"))
    participant = db.find_participant(engine, STUDY, "boundpid")
    assert participant["session_token"] == first.query_params[TOKEN_PARAM]
    assert participant["platform_session_id"] is None
    trial = _current_trial_id(first)

    second = _app("boundpid")  # the study link without this browser's token, e.g. another computer
    assert _refused(second)
    assert second.query_params[TOKEN_PARAM] != first.query_params[TOKEN_PARAM]
    second.run()  # its reruns stay refused, and the refusal is logged once per browser session
    assert _refused(second)
    assert _events(engine, "session_refused") == [(participant["id"], {"platform_session_id": None})]
    forged = _app("boundpid", token="x" * 43)  # a well-formed token that is not the stored one
    assert _refused(forged)

    # the first browser goes on to the end and gets its code; the second never sees it
    while first.radio:
        _choose(first, "A")
    code = first.code[0].value
    late = _app("boundpid")
    assert _refused(late) and code not in _page_text(late)
    assert _current_trial_id(_consent(_app("someoneelse"))) != trial  # other ids are unaffected
    assert len(_events(engine, "session_bound")) == 2


def test_two_browsers_consenting_at_once_bind_one(study):
    """Both browsers are on the consent page of a new id; the first Start binds it, the second gets the message."""
    _url, _key, _manifest, engine = study
    first, second = _app("racer"), _app("racer")
    for at in (first, second):
        at.checkbox(key="consent-box").check()
    first.button(key="consent-button").click()
    first.run()
    second.button(key="consent-button").click()
    second.run()
    assert first.title[0].value == "Instructions"
    assert _refused(second)
    participant = db.find_participant(engine, STUDY, "racer")
    assert participant["session_token"] == first.query_params[TOKEN_PARAM]
    assert db.count_trials(engine, participant["id"]) == 6  # one plan, made by the bound browser


def test_prolific_session_id_continues_the_same_submission(study):
    _url, _key, _manifest, engine = study
    first = _consent(_app("prolificpid", session_id="SESSIONaaaa1111"))
    trial = _current_trial_id(first)
    assert db.find_participant(engine, STUDY, "prolificpid")["platform_session_id"] == "SESSIONaaaa1111"
    reopened = _app("prolificpid", session_id="SESSIONaaaa1111")  # Prolific's link again, in a new browser
    assert not reopened.error and _current_trial_id(reopened) == trial
    assert _refused(_app("prolificpid", session_id="SESSIONbbbb2222"))
    assert _refused(_app("prolificpid"))
    bad = _app("prolificpid", session_id="bad session!")
    assert [e.value for e in bad.error] == ["This link has an invalid session ID. Please open the study from Prolific."]


def test_release_lets_a_new_browser_continue(study, capsys, tmp_path):
    url, _key, _manifest, engine = study
    lost = _consent(_app("lostbrowser"))
    _choose(lost, "A")
    trial = _current_trial_id(lost)
    assert _refused(_app("lostbrowser"))

    assert main(["study", "release", "--db", url, "--study", STUDY, "--pid", "lostbrowser"]) == 0
    assert "released participant 'lostbrowser'" in capsys.readouterr().out
    participant_id = db.find_participant(engine, STUDY, "lostbrowser")["id"]
    assert _events(engine, "session_released") == [(participant_id, {"platform_session_id": None})]
    new = _app("lostbrowser")  # the next browser binds the id and continues where the participant stopped
    assert not new.error and _current_trial_id(new) == trial
    assert _refused(_reload(lost))  # the lost browser, should it come back, no longer gets in

    unbound = db.get_or_create_participant(engine, STUDY, "neverbound", "coherence", seed=1)
    assert main(["study", "release", "--db", url, "--study", STUDY, "--pid", "neverbound"]) == 0
    assert "not bound to a browser; nothing to release" in capsys.readouterr().out
    assert not any(pid == unbound for pid, _ in _events(engine, "session_released"))
    for argv, message in ((["--study", STUDY, "--pid", "nobody"], "no participant 'nobody' in study"),
                          (["--study", "nostudy", "--pid", "lostbrowser"], "unknown study 'nostudy'")):
        assert main(["study", "release", "--db", url, *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    typo = tmp_path / "typo" / "study.sqlite"
    assert main(["study", "release", "--db", f"sqlite:///{typo}", "--study", STUDY, "--pid", "x"]) == 2
    assert "no study database at" in capsys.readouterr().err and not typo.parent.exists()


# -------------------------------------------------------------------------------------- comprehension check


def test_wrong_answers_show_the_instructions_again_and_count_tries(study):
    _url, _key, _manifest, engine = study
    at = consent_and_read(_app("learner"))
    assert at.title[0].value == "A few questions about the task"
    participant = db.find_participant(engine, STUDY, "learner")
    assert participant["comprehension_tries"] == 0 and participant["comprehension_passed_at"] is None

    # an unanswered question is not an attempt
    _button(at, "Check my answers").click()
    at.run()
    assert [w.value for w in at.warning] == ["Please answer every question."]
    assert db.find_participant(engine, STUDY, "learner")["comprehension_tries"] == 0

    at = answer_comprehension(at, "coherence", wrong=("compare",))
    assert at.title[0].value == "Instructions" and at.button(key="begin-button")
    assert at.warning[0].value.startswith("Some of your answers do not match the instructions")
    assert at.warning[0].value.endswith("You have 2 more tries.")  # default: screened out after 3 failures
    assert not at.radio and not at.image
    participant_id = participant["id"]
    assert _events(engine, "comprehension_failed") == [(participant_id, {"try": 1, "wrong": ["compare"]})]
    assert db.record_comprehension(engine, participant_id, 1, [], 3) == "stale"  # a late resubmit of try 1

    at.button(key="begin-button").click()
    at = answer_comprehension(at.run(), "coherence")  # try 2, with fresh (unanswered) widgets
    assert [s.value for s in at.success] == ["Thank you. The study starts now."]
    assert at.info[0].value == "Practice round" and len(at.image) == 4
    participant = db.find_participant(engine, STUDY, "learner")
    assert participant["comprehension_tries"] == 2 and participant["comprehension_passed_at"] is not None
    assert participant["status"] == "in_progress"
    assert _current_trial_id(_reload(at)) == _current_trial_id(at)  # passed for good: a reload goes on


def test_comprehension_screen_out_with_the_return_link(study, monkeypatch):
    _url, _key, _manifest, engine = study
    monkeypatch.setenv("STYLEX_STUDY_COMPREHENSION_FAILURES", "2")
    monkeypatch.setenv("STYLEX_PROLIFIC_RETURN_URL", RETURN_URL)
    at = answer_comprehension(consent_and_read(_app("confused", "description")), "description", wrong=("words",))
    assert at.warning[0].value.endswith("You have 1 more try.")
    at.button(key="begin-button").click()
    at = answer_comprehension(at.run(), "description", wrong=("words", "same"))
    assert at.title[0].value == "Thank you for your time"
    assert [link.proto.url for link in at.get("link_button")] == [RETURN_URL]
    assert not at.text_input and not at.image and not at.code
    participant = db.find_participant(engine, STUDY, "confused")
    assert participant["status"] == "screened_out" and participant["comprehension_tries"] == 2
    assert [d for _, d in _events(engine, "comprehension_failed")] == [{"try": 1, "wrong": ["words"]},
                                                                         {"try": 2, "wrong": ["words", "same"]}]
    assert _events(engine, "screened_out") == [(participant["id"], {"reason": "comprehension", "failures": 2})]
    again = _reload(at)  # stays ended, and no trial was ever shown
    assert again.title[0].value == "Thank you for your time" and not again.text_input
    with db.session_scope(engine) as session:
        assert not session.execute(select(db.Trial.id).where(db.Trial.shown_at.is_not(None))).first()
    with pytest.raises(UserError, match="screened out"):
        db.finish(engine, participant["id"], lambda: "NOCODE")


def test_comprehension_without_screening_repeats_until_passed(study, monkeypatch):
    _url, _key, _manifest, engine = study
    monkeypatch.setenv("STYLEX_STUDY_COMPREHENSION_FAILURES", "off")
    at = consent_and_read(_app("persistent"))
    for _ in range(4):
        at = answer_comprehension(at, "coherence", wrong=("practice",))
        assert at.title[0].value == "Instructions" and "more tr" not in at.warning[0].value
        at.button(key="begin-button").click()
        at.run()
    at = answer_comprehension(at, "coherence")
    assert at.radio(key=f"choice-{_current_trial_id(at)}")
    participant = db.find_participant(engine, STUDY, "persistent")
    assert participant["comprehension_tries"] == 5 and participant["status"] == "in_progress"
    assert not _events(engine, "screened_out")


def test_questions_come_from_the_instructions():
    for part, questions in COMPREHENSION.items():
        assert 2 <= len(questions) <= 3
        for question in questions:
            options = question_options(question, seed=7)
            assert options == question_options(question, seed=7) and sorted(options) == sorted(
                [question.expected, *question.others])
            assert "correct" not in (question.prompt + " ".join(options)).lower()
        everything_expected = {q.question_id: q.expected for q in questions}
        assert comprehension_mistakes(part, everything_expected) == []
        assert comprehension_mistakes(part, {}) == [q.question_id for q in questions]
    # the expected option is not always in the same place
    first = {question_options(COMPREHENSION["coherence"][0], seed).index(COMPREHENSION["coherence"][0].expected)
             for seed in range(30)}
    assert first == {0, 1, 2}
    with pytest.raises(ValueError, match="part must be one of"):
        comprehension_mistakes("both", {})


# --------------------------------------------------------------------------------------- attention screening


def _run_part1(at, engine, pid: str, wrong_attention: bool):
    """Answer every Part 1 screen as the key says, except the attention trial when ``wrong_attention``."""
    participant_id = db.find_participant(engine, STUDY, pid)["id"]
    while at.radio:
        trial = db.next_trial(engine, participant_id)
        with db.session_scope(engine) as session:
            key = session.get(db.Trial, trial["trial_id"]).correct_option
        wrong = {"A": "B", "B": "A"}[key]
        at.radio[0].set_value(wrong if wrong_attention and trial["kind"] == "attention" else key)
        at.button[0].click()
        at.run()
        assert not at.exception
    return at, participant_id


def test_attention_screen_out_with_the_return_link(study, monkeypatch):
    _url, _key, _manifest, engine = study
    monkeypatch.setenv("STYLEX_STUDY_ATTENTION_FAILURES", "1")
    monkeypatch.setenv("STYLEX_PROLIFIC_RETURN_URL", RETURN_URL)
    at, participant_id = _run_part1(_consent(_app("inattentive")), engine, "inattentive", wrong_attention=True)
    assert at.title[0].value == "Thank you for your time"
    assert [link.proto.url for link in at.get("link_button")] == [RETURN_URL] and not at.code
    assert db.get_participant(engine, participant_id)["status"] == "screened_out"
    assert _events(engine, "screened_out") == [(participant_id, {"reason": "attention", "failures": 1})]
    assert db.attention_failures(engine, participant_id) == 1
    assert db.next_trial(engine, participant_id) is not None  # ended before the plan was done
    assert not db.screen_out_on_attention(engine, participant_id, 1)  # once only


def test_attention_failures_are_only_recorded_by_default(study):
    """No screening unless configured: the paper recorded everything and excluded in the analysis."""
    _url, _key, _manifest, engine = study
    at, participant_id = _run_part1(_consent(_app("recorded")), engine, "recorded", wrong_attention=True)
    assert at.title[0].value == "Thank you!" and at.code
    assert db.attention_failures(engine, participant_id) == 1 and not _events(engine, "screened_out")


def test_bad_screening_configuration(study, monkeypatch, capsys):
    assert read_config([]).comprehension_failures == 3 and read_config([]).attention_failures is None
    config = read_config(["--", "--attention-failures", "2", "--comprehension-failures", "off"])
    assert (config.attention_failures, config.comprehension_failures) == (2, None)
    for argv, message in ((["--attention-failures", "0"], "--attention-failures"),
                          (["--comprehension-failures", "two"], "--comprehension-failures"),
                          (["--return-url", "prolific.com"], "--return-url")):
        with pytest.raises(UserError, match=message):
            read_config(argv)
    monkeypatch.setenv("STYLEX_STUDY_ATTENTION_FAILURES", "-1")
    at = _app("configured")
    assert [e.value for e in at.error] == ["This study is not configured correctly. Please contact the researchers."]
    assert "STYLEX_STUDY_ATTENTION_FAILURES" in capsys.readouterr().err  # the researchers' half, in the server log


# ------------------------------------------------------------------------------------ schema version 1 files


def _as_old_version(path: Path, version: int) -> None:
    """Turn the study database at ``path`` into what the code of schema ``version`` would hold: its tables exactly as
    that code created them (tests/data/study_schema_v<version>.sql, dumped from a database it made, constraints
    included) with every row copied over, without the columns later versions added."""
    old = path.with_name(f"v{version}-{path.name}")
    conn = sqlite3.connect(old)
    conn.executescript((DATA / f"study_schema_v{version}.sql").read_text())
    conn.execute("ATTACH DATABASE ? AS current", (str(path),))
    tables = [name for (name,) in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table' AND "
                                               "name != 'schema_version' ORDER BY rowid")]
    for table in tables:  # in creation order, so every referenced row is there first
        columns = ", ".join(row[1] for row in conn.execute(f"PRAGMA main.table_info({table})"))
        conn.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM current.{table}")
    conn.commit()
    conn.execute("DETACH DATABASE current")
    conn.close()
    for side in ("-wal", "-shm"):  # the newer file's log must not be replayed onto the old one
        path.with_name(path.name + side).unlink(missing_ok=True)
    old.replace(path)


def _table_info(path) -> dict[str, list]:
    with sqlite3.connect(path) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        info = {name: conn.execute(f"PRAGMA table_info({name})").fetchall() for name in sorted(tables)}
    conn.close()
    return info


def _mid_study_in_an_old_file(url: str, pid: str, version: int):
    """A participant ``pid`` who answered the first screen, then the database turned into a file of ``version``:
    (the participant's browser, the trial on its screen, the database path)."""
    at = _consent(_app(pid))
    _choose(at, "A")
    trial = _current_trial_id(at)
    db.dispose_engines()
    path = db.database_path(url)
    _as_old_version(path, version)
    return at, trial, path


def test_version_1_database_is_upgraded_in_place(study, tmp_path, capsys):
    url, _key, _manifest, _engine = study
    _at, trial, path = _mid_study_in_an_old_file(url, "oldtimer", 1)
    with sqlite3.connect(path) as conn:
        before = {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                  for table in ("participant", "trial", "response", "event", "study_item")}
    conn.close()

    writer = db.make_engine(url)
    for refuse in (lambda: db.check_schema(writer), lambda: db.create_schema(writer), lambda: db.open_readonly(url)):
        expected = rf"schema version 1, this code expects {db.SCHEMA_VERSION}; upgrade it in place"
        with pytest.raises(UserError, match=expected) as err:
            refuse()
        assert f"stylex study upgrade --db sqlite:///{path.resolve()}" in str(err.value)
    writer.dispose()
    assert main(["study", "export", "--db", url, "--out", str(tmp_path / "export")]) == 2
    assert "stylex study upgrade --db" in capsys.readouterr().err and not (tmp_path / "export").exists()
    db.dispose_engines()
    st.cache_resource.clear()  # a new app process: nothing cached from before the downgrade
    refused = _app("oldtimer")  # the app refuses too (the researchers' half of the message goes to the log)
    assert [e.value for e in refused.error] == [
        "The study is unavailable at the moment. Please contact the researchers."]
    assert "stylex study upgrade --db" in capsys.readouterr().err

    assert main(["study", "upgrade", "--db", url]) == 0
    assert f"upgraded {url} from schema version 1 to {db.SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["study", "upgrade", "--db", url]) == 0
    assert f"already has schema version {db.SCHEMA_VERSION}; nothing to do" in capsys.readouterr().out
    assert db.upgrade_schema(url) == db.SCHEMA_VERSION  # already current: nothing to do
    fresh = tmp_path / "fresh.sqlite"
    db.create_schema(db.make_engine(f"sqlite:///{fresh}"))
    assert _table_info(path) == _table_info(fresh)  # the same tables as a database made by this code
    assert _constraints(path) == _constraints(fresh)  # with this code's CHECKs (Part 3's part, kind and item part)
    with sqlite3.connect(path) as conn:
        for table, rows in before.items():
            after = conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            width = len(rows[0])
            assert [row[:width] for row in after] == rows, table  # every row and value kept
        assert conn.execute("SELECT session_token, comprehension_tries FROM participant").fetchall() == [(None, 0)]
    conn.close()

    # the participant from before: the first browser to come back binds the id and goes on at the next trial
    st.cache_resource.clear()  # the app caches its engine: drop the one that saw the old schema
    back = _app("oldtimer")
    assert not back.error and _current_trial_id(back) == trial
    assert _refused(_app("oldtimer"))


def _constraints(path) -> dict[str, list[str]]:
    """Each table's column and constraint definitions, in any order (an added column is appended to the text)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.close()
    tables = {}
    for name, sql in rows:
        parts, depth, current = [], 0, ""
        for char in sql[sql.index("(") + 1:sql.rindex(")")]:  # split at the commas outside parentheses
            depth += (char == "(") - (char == ")")
            if char == "," and depth == 0:
                parts, current = [*parts, current], ""
            else:
                current += char
        tables[name] = sorted(" ".join(part.split()) for part in [*parts, current])
    return tables


def test_version_2_database_runs_part3_after_upgrade(tmp_path, monkeypatch):
    """A file made by the schema version 2 code has CHECKs that allow Parts 1-2 only (SQLite cannot alter them in
    place); after `stylex study upgrade` it takes Part 3 materials, and a Part 3 participant goes from consent to
    completion code. (That every row survives the rebuild is the version 1 test's.)"""
    from test_study_forward_app import _screens, forward_study

    path = tmp_path / "study.sqlite"  # where forward_study loads its materials
    conn = sqlite3.connect(path)
    conn.executescript((DATA / "study_schema_v2.sql").read_text())
    with pytest.raises(sqlite3.IntegrityError, match="ck_participant_part"):
        conn.execute("INSERT INTO study VALUES ('s', 's', '2026-01-01T00:00:00+00:00', 'x')")
        conn.execute("INSERT INTO participant (study_id, external_pid, part, status, seed, consent_at) "
                     "VALUES ('s', 'x', 'forward', 'consented', 1, '2026-01-01T00:00:00+00:00')")
    conn.rollback()
    conn.close()
    writer = db.make_engine(f"sqlite:///{path}")
    with pytest.raises(UserError, match="schema version 2, this code expects"):
        db.create_schema(writer)  # what loading materials into it does first
    writer.dispose()

    assert main(["study", "upgrade", "--db", f"sqlite:///{path}"]) == 0
    manifest, _decisions, engine = forward_study(tmp_path, monkeypatch)  # Part 3 items: study_item.part 3
    at = answer_comprehension(consent_and_read(_app("forward1", part="forward")), "forward")
    labels, tests = _screens(at, manifest, lambda k: "classcat")
    assert labels == ["classcat", "classdog"]  # learning screens: trial kind 'learn'
    assert tests > 0 and db.find_participant(engine, STUDY, "forward1")["status"] == "completed"
    assert len(db.forward_responses(engine)) == tests
    db.dispose_engines()


def test_two_studies_from_the_same_materials_share_a_database_after_upgrade(study, tmp_path, monkeypatch):
    """Schema version 4 keys assets per study. A version 3 file had one global asset id (the content hash), so a
    second study built from the same run into the same database (a pilot, then the main study) could not register
    its GIFs, and its items (ids from the same seed) were dropped as duplicates; after the upgrade both studies run
    side by side."""
    from studies.manifest import load_study

    url, key, _manifest, _engine = study
    first, trial, _path = _mid_study_in_an_old_file(url, "first", 3)

    assert main(["study", "upgrade", "--db", url]) == 0
    engine = db.get_engine(url)
    assert load_study(engine, tmp_path / "materials", key, study_id="main") == "main"
    assets = db.export_frames(engine)["assets"]
    assert set(assets[assets["study_id"] == "main"]["asset_id"]) == set(assets[assets["study_id"] == STUDY]["asset_id"])
    assert db.study_items(engine, "main") == db.study_items(engine, STUDY)
    monkeypatch.setenv("STYLEX_STUDY_ID", "main")
    st.cache_resource.clear()
    second = _choose(_consent(_app("second")), "A")
    assert not second.exception and db.find_participant(engine, "main", "second")["status"] == "in_progress"

    monkeypatch.setenv("STYLEX_STUDY_ID", STUDY)
    st.cache_resource.clear()
    back = _reload(first)  # the first study's participant, in its own browser, goes on where it stopped
    assert not back.error and _current_trial_id(back) == trial


def test_upgrade_refuses_a_file_with_dangling_references_and_changes_nothing(study):
    """The rebuild switches foreign keys off and checks them over the whole file before it commits: a trial whose
    participant is gone (a file edited by hand) stops the upgrade, and the file's tables and rows stay as they were."""
    url, _key, _manifest, _engine = study
    _consent(_app("kept"))
    db.dispose_engines()
    path = db.database_path(url)
    _as_old_version(path, 2)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO trial (participant_id, seq, kind, assets) VALUES (999, 0, 'main', '[]')")
    conn.close()
    before = _dump(path)
    with pytest.raises(UserError, match=r"1 row\(s\) whose reference points nowhere \(e.g. trial row \d+ -> "
                                        r"participant\); nothing was changed"):
        db.upgrade_schema(url)
    assert _dump(path) == before and "INSERT INTO \"schema_version\" VALUES(2);" in before


def _dump(path) -> str:
    """The file's schema and rows as SQL text."""
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def test_unknown_versions_are_refused_not_upgraded(study):
    url, _key, _manifest, engine = study
    with sqlite3.connect(db.database_path(url)) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (db.SCHEMA_VERSION + 1,))
    conn.close()
    for call in (lambda: db.upgrade_schema(url), lambda: db.create_schema(engine)):
        with pytest.raises(UserError, match="use the code that wrote it"):
            call()
    with sqlite3.connect(db.database_path(url)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(db.SCHEMA_VERSION + 1,)]
    conn.close()
