"""`stylex study status` on a real SQLite study with known counts: simulated participants run to completion through
studies.simulate, plus participants driven through the same studies.db calls as the app (stopped part-way, screened
out on attention or comprehension, waiting after consent). Real SQLite, no mocks."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from test_study_simulate import _build_study

from studies import db, simulate, status
from studies.design import plan_trials
from stylex.cli import main
from stylex.errors import UserError

STUDY = "toy"
METHODS = ["stylex", "wu"]  # _build_study: 4 attributes per method, 2 attention items
MAIN_PER_METHOD = 4
PLAN_LENGTH = 1 + 2 * MAIN_PER_METHOD + 2  # practice, main trials, attention checks
N_COMPLETE, N_DESCRIBE = 3, 2


def _correct_option(items: list[dict], key: dict[str, str], assets: list[str]) -> str:
    """The keyed answer of a served trial (the test knows the key; the app's next_trial never returns it)."""
    for item in items:
        if item["assets"] == assets and item["item_id"] in key:
            return key[item["item_id"]]
    raise AssertionError(f"no Part 1 item shows {assets}")


def _answer(engine, participant_id: int, items, key, n: int, wrong_on_attention: bool = False) -> dict | None:
    """Answer the next ``n`` trials like the app does (show, then record); attention checks wrongly if asked.
    Returns the trial left on screen (shown, not answered), if any."""
    for _ in range(n):
        trial = db.next_trial(engine, participant_id)
        db.mark_shown(engine, trial["trial_id"])
        right = _correct_option(items, key, trial["assets"])
        wrong = "B" if right == "A" else "A"
        db.record_choice(engine, trial["trial_id"], wrong if wrong_on_attention and trial["kind"] == "attention"
                         else right)
    return db.next_trial(engine, participant_id)


def _consent(engine, pid: str, part: str, items, key, seed: int) -> int:
    participant_id = db.get_or_create_participant(engine, STUDY, pid, part, seed)
    db.add_trials(engine, participant_id, plan_trials(items, part, seed, key if part == "coherence" else None))
    return participant_id


def build_known_study(folder):
    """The study whose counts the tests assert. Part 1 (coherence): 3 simulated participants who complete; one who
    completes but fails both attention checks; one who failed the comprehension check once, passed, answered the
    practice trial and two main trials and has a third on screen; one screened out at the first (failed) attention
    check; one who consented and has not been shown anything. Part 2 (description): 2 simulated participants who
    complete, and one screened out after failing the comprehension check twice."""
    items, key, load, engine = _build_study(folder, STUDY)
    simulate.run_participants(engine, STUDY, items, key, "coherence", N_COMPLETE,
                              lambda seed: simulate.Observer(load, noise=0.0, seed=seed), seed=1)
    simulate.run_participants(engine, STUDY, items, None, "description", N_DESCRIBE,
                              lambda seed: simulate.Observer(load, noise=0.0, seed=seed), seed=2)

    inattentive = _consent(engine, "inattentive", "coherence", items, key, seed=11)
    assert _answer(engine, inattentive, items, key, PLAN_LENGTH, wrong_on_attention=True) is None
    db.finish(engine, inattentive, lambda: "CODE-INATTENTIVE")

    partial = _consent(engine, "partial", "coherence", items, key, seed=12)
    assert db.record_comprehension(engine, partial, 1, ["q1"], max_failures=3) == "failed"
    assert db.record_comprehension(engine, partial, 2, [], max_failures=3) == "passed"
    on_screen = _answer(engine, partial, items, key, 3)  # practice + the first two main trials (one per method)
    assert on_screen["kind"] == "main" and db.mark_shown(engine, on_screen["trial_id"])

    screened = _consent(engine, "screened", "coherence", items, key, seed=13)
    # practice, three main trials, then the first attention check, answered wrongly
    assert _answer(engine, screened, items, key, 5, wrong_on_attention=True) is not None
    assert db.screen_out_on_attention(engine, screened, max_failures=1)

    _consent(engine, "waiting", "coherence", items, key, seed=14)

    no_comprehension = _consent(engine, "nocomp", "description", items, None, seed=15)
    assert db.record_comprehension(engine, no_comprehension, 1, ["q2"], max_failures=2) == "failed"
    assert db.record_comprehension(engine, no_comprehension, 2, ["q2", "q3"], max_failures=2) == "screened_out"
    return engine, folder / "study.sqlite"


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    engine, path = build_known_study(tmp_path_factory.mktemp("status"))
    yield engine, path
    db.dispose_engines()


def _rows(frame: pd.DataFrame, *keys: str) -> dict:
    return {tuple(row[k] for k in keys) if len(keys) > 1 else row[keys[0]]: row.drop(list(keys)).to_dict()
            for _, row in frame.iterrows()}


def test_counts_of_a_known_study(known):
    engine, _ = known
    result = status.read_status(engine, STUDY)
    assert result.study_id == STUDY

    assert _rows(result.participants, "part") == {
        "coherence": {"participants": 7, "started": 6, "consented": 1, "in_progress": 1, "completed": 4,
                      "screened_out": 1},
        "description": {"participants": 3, "started": 2, "consented": 0, "in_progress": 0, "completed": 2,
                        "screened_out": 1},
        # no Part 3 in this study: its row shows zeros rather than disappearing
        "forward": {"participants": 0, "started": 0, "consented": 0, "in_progress": 0, "completed": 0,
                    "screened_out": 0},
    }

    methods = result.methods.set_index(["part", "method"])
    for method in METHODS:
        assert methods.loc[("coherence", method), ["started", "completed", "screened_out"]].tolist() == [6, 4, 1]
        assert methods.loc[("description", method)].tolist() == [2, 2, 0, 2 * 4, 2 * 4]
    coherence = methods.loc["coherence"]
    # completed plans show all 8 main trials; "partial" was shown 3 and answered 2; "screened" answered 3
    assert coherence["trials_shown"].sum() == 4 * 8 + 3 + 3
    assert coherence["trials_answered"].sum() == 4 * 8 + 2 + 3
    assert sorted(coherence["trials_shown"] - coherence["trials_answered"]) == [0, 1]  # the trial left on screen

    assert _rows(result.balance, "part", "method") == {
        ("coherence", m): {"participants": 4, "trials": 16, "share": 0.5, "min_per_participant": 4,
                           "max_per_participant": 4, "attributes": 4, "fewest_per_attribute": 4} for m in METHODS
    } | {
        ("description", m): {"participants": 2, "trials": 8, "share": 0.5, "min_per_participant": 4,
                             "max_per_participant": 4, "attributes": 4, "fewest_per_attribute": 2} for m in METHODS
    }

    failures = _rows(result.failures, "part")
    assert {k: v for k, v in failures.pop("forward").items() if k != "comprehension_tries"} == dict.fromkeys(
        ["attention_answered", "attention_failed", "participants_failed_attention", "comprehension_failures",
         "participants_failed_comprehension", "screened_out_attention", "screened_out_comprehension",
         "screened_out_without_reason"], 0)
    assert failures == {
        "coherence": {"attention_answered": 3 * 2 + 2 + 1, "attention_failed": 3, "participants_failed_attention": 2,
                      "comprehension_failures": 1, "participants_failed_comprehension": 1,
                      # "partial" took two tries; the simulated participants pass at the first, as in the app
                      "comprehension_tries": 2 + N_COMPLETE, "screened_out_attention": 1,
                      "screened_out_comprehension": 0,
                      "screened_out_without_reason": 0},
        "description": {"attention_answered": 0, "attention_failed": 0, "participants_failed_attention": 0,
                        "comprehension_failures": 2, "participants_failed_comprehension": 1,
                        "comprehension_tries": 2 + N_DESCRIBE, "screened_out_attention": 0,
                        "screened_out_comprehension": 1,
                        "screened_out_without_reason": 0},
    }

    timing = result.timing.set_index(["part", "screen"])["n"]
    assert timing["coherence"].to_dict() == {
        status.INSTRUCTIONS_SCREEN: 6, "practice trial": 6, "main trial": 4 * 8 + 2 + 3, "attention trial": 9,
        status.SESSION_SCREEN: 4}
    assert timing["description"].to_dict() == {
        status.INSTRUCTIONS_SCREEN: 2, "practice trial": 0, "main trial": 2 * 8, "attention trial": 0,
        status.SESSION_SCREEN: 2}
    measured = result.timing[result.timing["n"] > 0]["median_seconds"]
    assert measured.notna().all() and (measured >= 0).all() and (measured < 60).all()


def test_status_command_prints_the_tables(known, capsys):
    _, path = known
    assert main(["study", "status", "--db", f"sqlite:///{path}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Study 'toy' in {path}, read ")
    for pattern in (r"coherence\s+7\s+6\s+1\s+1\s+4\s+1\n", r"description\s+3\s+2\s+0\s+0\s+2\s+1\n",
                    r"coherence\s+stylex\s+4\s+16\s+0\.500\s+4\s+4\s+4\s+4\n",
                    r"description\s+wu\s+2\s+8\s+0\.500\s+4\s+4\s+4\s+2\n",
                    r"attention_failed\s+3\s+0\s+0\n", r"comprehension_failures\s+1\s+2\s+0\n",
                    r"screened_out_comprehension\s+0\s+1\s+0\n",
                    r"coherence\s+main trial\s+37\s+\d+\.\d\n", r"description\s+attention trial\s+0\s+–\n"):
        assert re.search(pattern, out), pattern
    assert main(["study", "status", "--db", f"sqlite:///{path}", "--study", STUDY]) == 0
    assert capsys.readouterr().out.split("\n", 1)[1] == out.split("\n", 1)[1]  # same tables, another read time


def _files(folder) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if not p.name.endswith(("-wal", "-shm"))}


@pytest.mark.parametrize(("arguments", "message"), [
    ("--db sqlite:///{tmp}/typo.sqlite", "no study database at"),
    ("--db sqlite:///{db} --study nosuch", "study 'nosuch' is not in"),
    ("--db sqlite:///{db} --study nosuch", "(it holds 'toy'); pass one of them with --study"),
    ("--db sqlite:///{db} --watch 0", "--watch takes a number of seconds above 0"),
    ("--db postgresql://localhost/study", "must be SQLite"),
])
def test_status_bad_inputs(known, arguments, message, capsys):
    _, path = known
    before = _files(path.parent)
    assert main(["study", "status", *arguments.format(tmp=path.parent, db=path).split()]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert out == "" and _files(path.parent) == before


def test_a_database_with_two_studies_needs_study(tmp_path, capsys):
    engine = db.get_engine(f"sqlite:///{tmp_path / 'two.sqlite'}")
    db.create_schema(engine)
    db.add_study(engine, "first", "first", "0" * 64, [])
    db.add_study(engine, "second", "second", "1" * 64, [])
    assert main(["study", "status", "--db", f"sqlite:///{tmp_path / 'two.sqlite'}"]) == 2
    assert "holds several studies ('first', 'second'); choose one with --study" in capsys.readouterr().err
    assert main(["study", "status", "--db", f"sqlite:///{tmp_path / 'two.sqlite'}", "--study", "second"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"coherence\s+0\s+0\s+0\s+0\s+0\s+0\n", out) and "(nothing yet)" in out
    db.dispose_engines()


def test_a_database_without_comprehension_tries(known, tmp_path):
    """A file from before schema version 2 has no participant.comprehension_tries: status reads it anyway (through
    an engine that does not check the version) and says n/a instead of 0."""
    _, path = known
    old = db.backup(f"sqlite:///{path}", tmp_path / "old.sqlite")
    with sqlite3.connect(old) as conn:
        conn.execute("ALTER TABLE participant DROP COLUMN comprehension_tries")
    conn.close()
    engine = db.make_engine(f"sqlite:///{old}")
    try:
        result = status.read_status(engine, STUDY)
    finally:
        engine.dispose()
    assert result.failures["comprehension_tries"].isna().all()
    assert result.failures["comprehension_failures"].tolist() == [1, 2, 0]  # from the events, as before
    assert "n/a" in status.format_status(result)


def test_watch_refreshes_until_ctrl_c(known):
    _, path = known
    command = [sys.executable, "-m", "stylex.cli", "study", "status", "--db", f"sqlite:///{path}", "--watch", "0.2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, seen = time.monotonic() + 120, ""
        while seen.count("Study 'toy'") < 2 and time.monotonic() < deadline:
            seen += process.stdout.readline()
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert seen.count("Study 'toy'") >= 2 and "-" * 80 in seen  # refreshed, with a separator when piped
    assert process.returncode == 0 and "Traceback" not in err + rest


def test_count_status_by_hand():
    """Two participants of Part 1 on hand-made frames: timing medians, balance and an unknown status are exact."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    participants = pd.DataFrame(
        [(1, "coherence", "completed", t0, t0 + timedelta(seconds=100), 1),
         (2, "coherence", "paused", t0, pd.NaT, 3)], columns=status.PARTICIPANT_COLUMNS)
    participants["comprehension_tries"] = participants["comprehension_tries"].astype("Int64")
    trials = pd.DataFrame(
        [(1, 1, "main", "a", "d", 1, t0 + timedelta(seconds=10), "A", "A", 1000, t0 + timedelta(seconds=11)),
         (2, 1, "main", "a", "d", 2, t0 + timedelta(seconds=12), "A", "A", 3000, t0 + timedelta(seconds=15)),
         (3, 1, "main", "b", "d", 1, t0 + timedelta(seconds=16), "B", "A", 5000, t0 + timedelta(seconds=21)),
         (4, 1, "attention", "a", "d", 1, t0 + timedelta(seconds=22), "B", "A", 2000, t0 + timedelta(seconds=24)),
         (5, 2, "main", "a", "d", 1, t0 + timedelta(seconds=30), "A", None, None, pd.NaT)],
        columns=status.TRIAL_COLUMNS)
    events = pd.DataFrame([(2, "comprehension_failed", None), (2, "comprehension_failed", None)],
                          columns=status.EVENT_COLUMNS)
    result = status.count_status("s", participants, trials, events)
    assert result.participants.iloc[0].to_dict() == {
        "part": "coherence", "participants": 2, "started": 2, "consented": 0, "in_progress": 0, "completed": 1,
        "screened_out": 0, "paused": 1}
    assert _rows(result.balance, "method") == {
        "a": {"part": "coherence", "participants": 1, "trials": 2, "share": 2 / 3, "min_per_participant": 2,
              "max_per_participant": 2, "attributes": 2, "fewest_per_attribute": 1},
        "b": {"part": "coherence", "participants": 1, "trials": 1, "share": 1 / 3, "min_per_participant": 1,
              "max_per_participant": 1, "attributes": 1, "fewest_per_attribute": 1}}
    assert _rows(result.methods, "method")["a"] == {"part": "coherence", "started": 2, "completed": 1,
                                                    "screened_out": 0, "trials_shown": 3, "trials_answered": 2}
    failures = result.failures.set_index("part").loc["coherence"]
    assert failures[["attention_answered", "attention_failed", "comprehension_failures",
                     "participants_failed_comprehension", "comprehension_tries"]].tolist() == [1, 1, 2, 1, 4]
    timing = result.timing.set_index(["part", "screen"]).loc["coherence", "median_seconds"]
    assert timing["main trial"] == 3.0 and timing["attention trial"] == 2.0
    assert timing[status.INSTRUCTIONS_SCREEN] == 20.0  # participants 1 and 2: 10 s and 30 s to their first trial
    assert timing[status.SESSION_SCREEN] == 100.0 and pd.isna(timing["practice trial"])
    with pytest.raises(UserError, match="lack the column"):
        status.count_status("s", participants.drop(columns="status"), trials, events)


# ------------------------------------------------------------------------------------- Parts 1, 2 and 3 together


def build_mixed_study(folder):
    """A study with all three parts, on the app's Part 3 test materials (test_study_forward_app): Part 1, two
    simulated participants who complete (practice, 4 main trials, 1 attention check each); Part 2, one (4
    descriptions); Part 3, six simulated participants who complete (two complete blocks: two per group, each 2
    learning screens and 8 test trials), then three more arrivals (one block: one per group) driven through the
    app's db calls: one who stopped midway (both learning screens and 3 test trials answered, the 4th on screen),
    one screened out by the comprehension check (two failed tries) and one who consented and saw nothing yet.
    Returns (engine, {role: group} of the last three)."""
    from test_study_app import STUDY as FORWARD_STUDY
    from test_study_forward_app import forward_study

    from studies.design import participant_seed
    from studies.forward import forward_participant_plan, run_forward_study_participants
    from studies.manifest import asset_paths

    with pytest.MonkeyPatch.context() as monkeypatch:  # forward_study also configures the app: not needed here
        _manifest, _decisions, engine = forward_study(folder, monkeypatch)
    paths = asset_paths(folder / "materials")

    def load(asset_id: str) -> bytes:
        return paths[asset_id].read_bytes()

    items, key = db.study_items(engine, FORWARD_STUDY)
    simulate.run_participants(engine, FORWARD_STUDY, items, key, "coherence", 2,
                              lambda seed: simulate.Observer(load, seed=seed), seed=1)
    simulate.run_participants(engine, FORWARD_STUDY, items, None, "description", 1,
                              lambda seed: simulate.Observer(load, seed=seed), seed=2)
    run_forward_study_participants(engine, FORWARD_STUDY, 6, load, seed=3)

    groups = {}
    for role in ("partial", "screened", "waiting"):  # _on_consent, as the app does it
        pid = f"fwd-{role}"
        participant_id = db.get_or_create_participant(engine, FORWARD_STUDY, pid, "forward",
                                                      participant_seed(FORWARD_STUDY, pid))
        plan = forward_participant_plan(engine, FORWARD_STUDY, participant_id,
                                        db.get_participant(engine, participant_id)["seed"], items, key)
        assert db.add_trials(engine, participant_id, plan)
        groups[role] = plan[0]["method"]
        if role == "partial":
            assert db.record_comprehension(engine, participant_id, 1, [], max_failures=2) == "passed"
            for _ in range(2 + 3):  # the learning screens ("Continue"), then three test trials
                trial = db.next_trial(engine, participant_id)
                db.mark_shown(engine, trial["trial_id"])
                db.record_prediction(engine, trial["trial_id"], None if trial["kind"] == "learn" else
                                     db.forward_classes(engine, participant_id)[0])
            assert db.mark_shown(engine, db.next_trial(engine, participant_id)["trial_id"])  # left on screen
        elif role == "screened":
            assert db.record_comprehension(engine, participant_id, 1, ["q1"], max_failures=2) == "failed"
            assert db.record_comprehension(engine, participant_id, 2, ["q1"], max_failures=2) == "screened_out"
    return engine, groups


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    yield build_mixed_study(tmp_path_factory.mktemp("mixed"))
    db.dispose_engines()


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def test_status_of_a_study_with_all_three_parts(mixed):
    from test_study_app import METHODS as APP_METHODS
    from test_study_app import STUDY as FORWARD_STUDY

    engine, odd = mixed
    result = status.read_status(engine, FORWARD_STUDY)
    groups = ["control", *sorted(APP_METHODS)]
    # the last three arrivals form one permuted block: one of them in each group
    assert sorted(odd.values()) == groups

    pd.testing.assert_frame_equal(result.participants, _frame([
        {"part": "coherence", "participants": 2, "started": 2, "consented": 0, "in_progress": 0, "completed": 2,
         "screened_out": 0},
        {"part": "description", "participants": 1, "started": 1, "consented": 0, "in_progress": 0, "completed": 1,
         "screened_out": 0},
        {"part": "forward", "participants": 9, "started": 7, "consented": 1, "in_progress": 1, "completed": 6,
         "screened_out": 1},
    ], result.participants.columns.tolist()))

    # Parts 1-2 as before; Part 3's groups are not methods and stay out of these two tables
    pd.testing.assert_frame_equal(result.methods, _frame([
        {"part": "coherence", "method": m, "started": 2, "completed": 2, "screened_out": 0, "trials_shown": 4,
         "trials_answered": 4} for m in APP_METHODS] + [
        {"part": "description", "method": m, "started": 1, "completed": 1, "screened_out": 0, "trials_shown": 2,
         "trials_answered": 2} for m in APP_METHODS], result.methods.columns.tolist()))
    pd.testing.assert_frame_equal(result.balance, _frame([
        {"part": "coherence", "method": m, "participants": 2, "trials": 4, "share": 0.5, "min_per_participant": 2,
         "max_per_participant": 2, "attributes": 2, "fewest_per_attribute": 2} for m in APP_METHODS] + [
        {"part": "description", "method": m, "participants": 1, "trials": 2, "share": 0.5,
         "min_per_participant": 2, "max_per_participant": 2, "attributes": 2, "fewest_per_attribute": 1}
        for m in APP_METHODS], result.balance.columns.tolist()))

    def group_row(group: str) -> dict:
        row = {"group": group, "participants": 3, "started": 2, "completed": 2, "screened_out": 0,
               "learning_answered": 2 * 2, "tests_shown": 2 * 8, "tests_answered": 2 * 8}
        if group == odd["partial"]:
            row.update(started=3, learning_answered=2 * 2 + 2, tests_shown=2 * 8 + 4, tests_answered=2 * 8 + 3)
        if group == odd["screened"]:
            row.update(screened_out=1)  # screened out at the comprehension check: never started
        return row

    pd.testing.assert_frame_equal(result.groups, _frame([group_row(g) for g in groups], status.GROUP_COLUMNS))
    pd.testing.assert_frame_equal(result.group_balance, _frame([
        {"group": g, "participants": 2, "share": 1 / 3, "tests": 16, "min_per_participant": 8,
         "max_per_participant": 8} for g in groups], status.GROUP_BALANCE_COLUMNS))

    assert _rows(result.failures, "part") == {
        # the app's synthetic attention GIFs are arbitrary colours: both noise-free Part 1 observers miss the check
        # (the simulation screens nobody out; every simulated participant passes the comprehension check at once)
        "coherence": {"attention_answered": 2, "attention_failed": 2, "participants_failed_attention": 2,
                      "comprehension_failures": 0, "participants_failed_comprehension": 0, "comprehension_tries": 2,
                      "screened_out_attention": 0, "screened_out_comprehension": 0, "screened_out_without_reason": 0},
        "description": {**dict.fromkeys(["attention_answered", "attention_failed", "participants_failed_attention",
                                         "comprehension_failures", "participants_failed_comprehension",
                                         "screened_out_attention", "screened_out_comprehension",
                                         "screened_out_without_reason"], 0), "comprehension_tries": 1},
        # the simulated Part 3 participants and fwd-partial pass at the first try, fwd-screened failed twice
        "forward": {"attention_answered": 0, "attention_failed": 0, "participants_failed_attention": 0,
                    "comprehension_failures": 2, "participants_failed_comprehension": 1,
                    "comprehension_tries": 6 + 1 + 2, "screened_out_attention": 0, "screened_out_comprehension": 1,
                    "screened_out_without_reason": 0},
    }

    timing = result.timing.set_index(["part", "screen"])["n"]
    assert timing["coherence"].to_dict() == {status.INSTRUCTIONS_SCREEN: 2, "practice trial": 2, "main trial": 8,
                                             "attention trial": 2, status.SESSION_SCREEN: 2}
    assert timing["description"].to_dict() == {status.INSTRUCTIONS_SCREEN: 1, "practice trial": 0, "main trial": 4,
                                               "attention trial": 0, status.SESSION_SCREEN: 1}
    assert timing["forward"].to_dict() == {status.INSTRUCTIONS_SCREEN: 7, status.LEARNING_SCREEN: 6 * 2 + 2,
                                           status.TEST_SCREEN: 6 * 8 + 3, status.SESSION_SCREEN: 6}
    measured = result.timing[result.timing["n"] > 0]["median_seconds"]
    assert measured.notna().all() and (measured >= 0).all() and (measured < 60).all()

    text = status.format_status(result)
    for pattern in (r"Part 3 groups \(assigned at consent, by arrival order\)\n\s+group\s+participants\s+started",
                    rf"\n\s+{odd['partial']}\s+3\s+3\s+2\s+0\s+6\s+20\s+19\n",
                    rf"\n\s+{odd['screened']}\s+3\s+2\s+2\s+1\s+4\s+16\s+16\n",
                    r"Part 3 balance among completed participants \(answered test trials\)\n",
                    r"\n\s+control\s+2\s+0\.333\s+16\s+8\s+8\n",
                    r"\n\s+forward\s+learning screen\s+14\s+\d+\.\d\n", r"\n\s+forward\s+test trial\s+51\s+\d+\.\d\n",
                    r"\n\s+coherence\s+attention trial\s+2\s+\d+\.\d\n"):
        assert re.search(pattern, text), pattern
    assert not re.search(r"forward\s+(practice|attention) trial", text)
    assert not re.search(r"\n\s+forward\s+(control|methodalpha|methodbeta)\s", text)  # no Part 3 row per method
