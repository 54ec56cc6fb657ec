"""The study database under the conditions the app meets: many writer threads, double submits, reloads through a
fresh engine, backups while writing. Real SQLite files in tmp_path; no torch."""

import sqlite3
import threading
import time

import pandas as pd
import pytest
from sqlalchemy import select, update

from studies import db
from stylex.errors import UserError

STUDY = "s1"


def _assets(n: int) -> list[dict]:
    return [{"asset_id": f"a{k:03d}", "sha256": f"{k:064x}", "relpath": f"gifs/a{k:03d}.gif", "method": "stylex",
             "domain": "faces", "attr_rank": k % 6, "role": "ref"} for k in range(n)]


def _plan(n: int, part: str = "coherence") -> list[dict]:
    trials = []
    for seq in range(n):
        trial = {"seq": seq, "kind": "main", "method": "stylex" if seq % 2 else "wu", "domain": "faces",
                 "attr_i": seq % 6, "assets": [f"a{(seq + k) % 8:03d}" for k in range(4)]}
        if part == "coherence":
            trial |= {"attr_j": (seq + 1) % 6, "correct_option": "A" if seq % 3 else "B"}
        trials.append(trial)
    return trials


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    db.create_schema(engine)
    db.add_study(engine, STUDY, "pilot", "f" * 64, _assets(8))
    yield url
    db.dispose_engines()


def _participant_with_plan(engine, pid: str, n: int, part: str = "coherence") -> int:
    participant_id = db.get_or_create_participant(engine, STUDY, pid, part, seed=7)
    assert db.add_trials(engine, participant_id, _plan(n, part))
    return participant_id


def _trial_ids(engine, participant_id: int) -> list[int]:
    with db.session_scope(engine) as session:
        return list(session.scalars(select(db.Trial.id).where(db.Trial.participant_id == participant_id)
                                    .order_by(db.Trial.seq)))


def test_engine_settings(url):
    engine = db.get_engine(url)
    assert engine is db.get_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    with engine.begin() as conn:
        # BEGIN IMMEDIATE takes the write lock before any statement: another writer cannot start, even though this
        # transaction has not written anything yet (a deferred BEGIN would let it).
        assert conn.connection.driver_connection.in_transaction
        other = sqlite3.connect(engine.url.database, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()


def test_session_scope_rolls_back(url):
    engine = db.get_engine(url)
    with pytest.raises(RuntimeError), db.session_scope(engine) as session:
        session.add(db.Event(participant_id=None, ts=db.utcnow(), kind="doomed"))
        session.flush()
        raise RuntimeError("boom")
    db.log_event(engine, "kept", detail={"n": 1})
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT kind, detail FROM event").all() == [("kept", '{"n": 1}')]


def test_concurrent_double_submits_record_once(url):
    engine = db.get_engine(url)
    participant_id = _participant_with_plan(engine, "p-concurrent", 20)
    trial_ids = _trial_ids(engine, participant_id)

    def submit(worker: int) -> list[int]:
        """The trials this thread's submits stored: each trial submitted twice, in a rotated order."""
        stored = []
        order = trial_ids[worker % 20:] + trial_ids[:worker % 20]  # threads collide on different trials
        for trial_id in order:
            for _ in range(2):
                if db.record_choice(engine, trial_id, "AB"[worker % 2]):
                    stored.append(trial_id)
        return stored

    stored = _race(50, submit)
    assert sorted(t for worker in stored for t in worker) == sorted(trial_ids)
    with engine.connect() as conn:
        counts = conn.exec_driver_sql("SELECT trial_id, count(*) FROM response GROUP BY trial_id").all()
    assert sorted(counts) == [(t, 1) for t in sorted(trial_ids)]
    assert db.next_trial(engine, participant_id) is None


def test_next_trial_hides_answer_key_and_resumes_through_fresh_engine(url):
    engine = db.get_engine(url)
    participant_id = _participant_with_plan(engine, "p-resume", 5)
    first = db.next_trial(engine, participant_id)
    assert first["seq"] == 0 and first["n_total"] == 5 and first["n_done"] == 0
    assert "correct_option" not in first and "method" not in first
    assert first["assets"] == ["a000", "a001", "a002", "a003"]
    for _ in range(3):
        trial = db.next_trial(engine, participant_id)
        assert db.mark_shown(engine, trial["trial_id"])
        assert not db.mark_shown(engine, trial["trial_id"])  # a re-render keeps the first shown_at
        assert db.record_choice(engine, trial["trial_id"], "A")
    db.dispose_engines()
    fresh = db.get_engine(url)
    assert fresh is not engine
    resumed = db.next_trial(fresh, participant_id)
    assert resumed["seq"] == 3 and resumed["n_done"] == 3
    assert db.get_participant(fresh, participant_id)["status"] == "in_progress"


def test_finish_plan_and_participant_idempotence(url):
    engine = db.get_engine(url)
    participant_id = _participant_with_plan(engine, "p-finish", 3)
    assert not db.add_trials(engine, participant_id, _plan(7))  # a plan is created once
    assert len(_trial_ids(engine, participant_id)) == 3
    assert db.get_or_create_participant(engine, STUDY, "p-finish", "coherence", seed=99) == participant_id
    assert db.get_participant(engine, participant_id)["seed"] == 7
    other = db.get_or_create_participant(engine, STUDY, "p-other", "description", seed=1)
    assert other != participant_id

    with pytest.raises(UserError, match="unanswered"):
        db.finish(engine, participant_id, lambda: "EARLY")
    for trial_id in _trial_ids(engine, participant_id):
        db.record_choice(engine, trial_id, "B")
    codes = iter(["CODE-1", "CODE-2"])
    assert db.finish(engine, participant_id, lambda: next(codes)) == "CODE-1"
    assert db.finish(engine, participant_id, lambda: next(codes)) == "CODE-1"
    row = db.get_participant(engine, participant_id)
    assert row["status"] == "completed" and row["completion_code"] == "CODE-1"
    assert not db.add_study(engine, STUDY, "pilot", "f" * 64, _assets(8))
    with pytest.raises(UserError, match="manifest"):
        db.add_study(engine, STUDY, "pilot", "0" * 64, _assets(8))


def test_backup_while_writing(url, tmp_path):
    engine = db.get_engine(url)
    participant_id = _participant_with_plan(engine, "p-backup", 200)
    trial_ids = _trial_ids(engine, participant_id)
    for trial_id in trial_ids[:50]:
        db.record_choice(engine, trial_id, "A")
    stop = threading.Event()
    errors = []

    def writer() -> None:
        try:
            for trial_id in trial_ids[50:]:
                if stop.is_set():
                    return
                db.record_choice(engine, trial_id, "B")
                db.log_event(engine, "submit", participant_id, {"trial": trial_id})
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.05)
    target = db.backup(url, tmp_path / "snapshots" / "snap.sqlite")
    stop.set()
    thread.join(timeout=30)
    assert not errors
    assert not list(target.parent.glob("*.tmp"))
    with sqlite3.connect(target) as snap:
        assert snap.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        n_snapshot = snap.execute("SELECT count(*) FROM response").fetchone()[0]
        assert snap.execute("SELECT count(*) FROM trial").fetchone()[0] == 200
        assert snap.execute("SELECT version FROM schema_version").fetchall() == [(db.SCHEMA_VERSION,)]
    assert 50 <= n_snapshot <= 200
    # After the writer stops, a second backup matches the live database row for row.
    target = db.backup(engine, target)
    with sqlite3.connect(target) as snap, engine.connect() as live:
        for table in ("participant", "trial", "response", "event", "asset"):
            query = f"SELECT * FROM {table} ORDER BY 1"
            assert snap.execute(query).fetchall() == [tuple(r) for r in live.exec_driver_sql(query)]
    with pytest.raises(UserError, match="live database"):
        db.backup(engine, engine.url.database)


def test_export_frames(url):
    engine = db.get_engine(url)
    p1 = _participant_with_plan(engine, "p-one", 3)
    p2 = _participant_with_plan(engine, "p-two", 2, part="description")
    t1 = _trial_ids(engine, p1)
    db.mark_shown(engine, t1[0])
    assert db.record_choice(engine, t1[0], "B")  # seq 0: key B -> correct
    assert db.record_choice(engine, t1[1], "B")  # seq 1: key A -> wrong
    t2 = _trial_ids(engine, p2)
    assert db.record_description(engine, t2[0], "  Smiling!")
    assert not db.record_description(engine, t2[0], "again", "again")

    frames = db.export_frames(engine)
    responses = frames["responses"]
    assert list(responses.columns[:15]) == ["participant", "participant_id", "study_id", "part", "kind", "method",
                                             "domain", "attr_i", "attr_j", "choice", "correct", "text_raw",
                                             "text_norm", "rt_ms", "submitted_at"][:15]
    assert len(responses) == 3
    part1 = responses[responses["part"] == "coherence"]
    assert part1["correct"].tolist() == [True, False]
    assert part1["participant"].tolist() == ["p-one", "p-one"]
    assert part1["rt_ms"].notna().tolist() == [True, False]  # rt only where the trial was marked shown
    part2 = responses[responses["part"] == "description"]
    assert part2["correct"].isna().all() and part2["attr_j"].isna().all()
    assert part2["text_raw"].tolist() == ["  Smiling!"] and part2["text_norm"].tolist() == ["Smiling!"]
    assert isinstance(responses["submitted_at"].dtype, pd.DatetimeTZDtype)
    assert len(frames["participants"]) == 2 and len(frames["trials"]) == 5
    assert frames["trials"]["answered"].sum() == 3
    assert frames["trials"]["assets"].iloc[0] == ["a000", "a001", "a002", "a003"]
    assert len(frames["assets"]) == 8


def test_export_leaves_out_what_binds_a_participant_to_its_browser(url):
    engine = db.get_engine(url)
    participant_id = _participant_with_plan(engine, "p-bound", 2)
    assert db.bind_session(engine, participant_id, "secret-token-of-the-first-browser", "prolific-session-7")
    participants = db.export_frames(engine)["participants"]
    assert participants["external_pid"].tolist() == ["p-bound"]
    assert not {"session_token", "platform_session_id"} & set(participants.columns)
    assert "secret-token" not in participants.to_csv() and "prolific-session-7" not in participants.to_csv()


def test_validation_errors(url, tmp_path):
    engine = db.get_engine(url)
    participant_id = _participant_with_plan(engine, "p-bad", 2)
    trial_id = _trial_ids(engine, participant_id)[0]
    for bad in ("C", "a", "", None):
        with pytest.raises(UserError, match="choice"):
            db.record_choice(engine, trial_id, bad)
    with pytest.raises(UserError, match="description"):
        db.record_description(engine, trial_id, "smile", "smile")  # a Part 1 trial
    with pytest.raises(UserError, match="unknown trial"):
        db.record_choice(engine, 10_000, "A")
    with pytest.raises(UserError, match="SQLite"):
        db.make_engine("postgresql://user@localhost/study")
    with pytest.raises(UserError, match="in-memory"):
        db.get_engine("sqlite://")
    with pytest.raises(UserError, match="part"):
        db.get_or_create_participant(engine, STUDY, "p-x", "both", seed=0)
    with pytest.raises(UserError, match="unknown study"):
        db.get_or_create_participant(engine, "nope", "p-x", "coherence", seed=0)
    other = db.get_or_create_participant(engine, STUDY, "p-assets", "coherence", seed=0)
    with pytest.raises(UserError, match="not registered"):
        db.add_trials(engine, other, [{**_plan(1)[0], "assets": ["a000", "a001", "a002", "zzz"]}])
    with pytest.raises(UserError, match="correct_option"):
        db.add_trials(engine, other, [{**_plan(1)[0], "correct_option": None}])
    assert db.next_trial(engine, other) is None  # failed plans left nothing behind

    with db.session_scope(engine) as session:
        session.execute(update(db.SchemaVersion).values(version=db.SCHEMA_VERSION + 1))
    with pytest.raises(UserError, match="schema version"):
        db.create_schema(engine)


def _race(n_threads: int, work) -> list:
    """Run ``work(k)`` on ``n_threads`` threads released together; their results, in thread order."""
    barrier = threading.Barrier(n_threads, timeout=30)
    results, errors = [None] * n_threads, []

    def run(k: int) -> None:
        try:
            barrier.wait()
            results[k] = work(k)
        except Exception as exc:  # collected, asserted below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    return results


def _event_kinds(engine) -> list[str]:
    with db.session_scope(engine) as session:
        return list(session.scalars(select(db.Event.kind).order_by(db.Event.id)))


def test_browsers_racing_for_one_participant_bind_one(url):
    engine = db.get_engine(url)
    participant_id = _participant_with_plan(engine, "p-race", 2)
    bound = _race(16, lambda k: db.bind_session(engine, participant_id, f"token-{k:02d}", f"session-{k:02d}"))
    assert sum(bound) == 1
    winner = bound.index(True)
    row = db.get_participant(engine, participant_id)
    assert (row["session_token"], row["platform_session_id"]) == (f"token-{winner:02d}", f"session-{winner:02d}")
    assert _event_kinds(engine) == ["session_bound"]
    assert db.bind_session(engine, participant_id, f"token-{winner:02d}")  # the bound browser comes back
    assert db.bind_session(engine, participant_id, "another", f"session-{winner:02d}")  # same platform session
    assert not db.bind_session(engine, participant_id, "another", None)
    assert db.release_session(engine, STUDY, "p-race") and not db.release_session(engine, STUDY, "p-race")
    assert db.bind_session(engine, participant_id, "another")  # released: the next browser binds
    assert _event_kinds(engine) == ["session_bound", "session_released", "session_bound"]
    with pytest.raises(UserError, match="session token"):
        db.bind_session(engine, participant_id, "")


def test_double_submitted_comprehension_attempt_counts_once(url):
    engine = db.get_engine(url)
    participant_id = _participant_with_plan(engine, "p-checks", 2)
    outcomes = _race(12, lambda k: db.record_comprehension(engine, participant_id, 1, ["compare"], 2))
    assert sorted(outcomes) == ["failed"] + ["stale"] * 11
    assert db.get_participant(engine, participant_id)["comprehension_tries"] == 1
    outcomes = _race(12, lambda k: db.record_comprehension(engine, participant_id, 2, ["compare"], 2))
    assert sorted(outcomes) == ["screened_out"] + ["stale"] * 11
    row = db.get_participant(engine, participant_id)
    assert row["status"] == "screened_out" and row["comprehension_tries"] == 2
    assert _event_kinds(engine) == ["comprehension_failed", "comprehension_failed", "screened_out"]
    assert db.record_comprehension(engine, participant_id, 3, [], 2) == "stale"  # screened out: no more tries


def test_attention_screening_counts_wrong_attention_answers_only(url):
    engine = db.get_engine(url)
    participant_id = db.get_or_create_participant(engine, STUDY, "p-attn", "coherence", seed=3)
    plan = _plan(4)
    for trial, kind in zip(plan, ("practice", "attention", "main", "attention"), strict=True):
        trial["kind"] = kind
    assert db.add_trials(engine, participant_id, plan)
    practice, attention1, main, attention2 = _trial_ids(engine, participant_id)
    wrong = {"A": "B", "B": "A"}
    keys = {t["seq"]: t["correct_option"] for t in plan}
    assert db.record_choice(engine, practice, wrong[keys[0]])  # a wrong practice answer does not count
    assert db.record_choice(engine, main, wrong[keys[2]])  # nor does a wrong main answer
    assert db.record_choice(engine, attention1, keys[1])
    assert db.attention_failures(engine, participant_id) == 0
    assert not db.screen_out_on_attention(engine, participant_id, 1)
    assert db.record_choice(engine, attention2, wrong[keys[3]])
    assert db.attention_failures(engine, participant_id) == 1
    assert not db.screen_out_on_attention(engine, participant_id, 2)
    assert _race(8, lambda k: db.screen_out_on_attention(engine, participant_id, 1)).count(True) == 1
    assert db.get_participant(engine, participant_id)["status"] == "screened_out"
    with pytest.raises(UserError, match="max_failures"):
        db.screen_out_on_attention(engine, participant_id, 0)
