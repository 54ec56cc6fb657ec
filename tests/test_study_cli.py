"""`stylex study export | backup | analyze` on a database filled by simulated participants through the same layer
the app uses, and every bad input the study commands meet: one `error:` line, exit status 2, nothing
created."""

import csv
import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, update
from test_study_app import ROOT, STUDY, synthetic_materials

from studies import db, simulate
from studies.manifest import asset_paths, load_study
from stylex.cli import main


def simulated_study(root):
    """(materials folder, database URL): the synthetic materials (2 methods x 2 attributes, 1 attention
    check) and a database with 4 Part 1 and 3 Part 2 simulated participants who answered everything."""
    folder, key, _ = synthetic_materials(root / "materials")
    url = f"sqlite:///{root / 'study.sqlite'}"
    engine = db.get_engine(url)
    load_study(engine, folder, key, study_id=STUDY)
    items, answer_key = db.study_items(engine, STUDY)
    paths = asset_paths(folder)

    def load(asset_id: str) -> bytes:
        return paths[asset_id].read_bytes()

    simulate.run_participants(engine, STUDY, items, answer_key, "coherence", 4,
                              lambda seed: simulate.Observer(load, noise=0.0, seed=seed), load, seed=1)
    simulate.run_participants(engine, STUDY, items, None, "description", 3,
                              lambda seed: simulate.Observer(load, noise=0.0, seed=seed), load, seed=2)
    return folder, url


def test_export_backup_and_analyze_from_the_command_line(tmp_path, capsys):
    _, url = simulated_study(tmp_path)

    assert main(["study", "export", "--db", url, "--out", str(tmp_path / "export")]) == 0
    responses = pd.read_csv(tmp_path / "export" / "responses.csv")
    assert len(responses) == 4 * 6 + 3 * 4  # every planned trial answered once (Part 1: practice+4+attention)
    assert main(["study", "backup", "--db", url, "--out", str(tmp_path / "backup.db")]) == 0
    with sqlite3.connect(tmp_path / "backup.db") as copy:
        assert copy.execute("SELECT count(*) FROM response").fetchone()[0] == len(responses)
    assert main(["study", "analyze", "--db", url, "--out", str(tmp_path / "analysis")]) == 0
    result = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert {row["method"] for row in result["accuracy"]} == {"methodalpha", "methodbeta"}
    assert (tmp_path / "analysis" / "table2.tex").is_file()
    db.dispose_engines()
    assert "wrote" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ bad inputs


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its size, mtime and content hash (side files of a live WAL database only by
    name: a reader may touch its shared-memory index)."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir() or rel.endswith(("-wal", "-shm")):
            state[rel] = ("dir" if path.is_dir() else "side",)
        else:
            state[rel] = (path.stat().st_size, path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


@pytest.fixture
def built(tmp_path):
    """A materials folder and a live study database (a writer engine stays open, as while the app serves)."""
    folder, key, _ = synthetic_materials(tmp_path / "materials")
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    load_study(engine, folder, key, study_id=STUDY)
    (tmp_path / "notes.txt").write_text("not a database\n")
    (tmp_path / "empty.sqlite").write_bytes(b"")
    (tmp_path / "afolder").mkdir()
    with sqlite3.connect(tmp_path / "other.sqlite") as other:
        other.execute("CREATE TABLE t (x)")
    other.close()
    (tmp_path / "truncated.sqlite").write_bytes((tmp_path / "study.sqlite").read_bytes()[:100] + b"\0" * 4000)
    (tmp_path / "nomanifest").mkdir()
    yield tmp_path, url
    db.dispose_engines()


BAD_INPUTS = [
    # (arguments with {tmp} and {db} placeholders, what the error line must say)
    ("export --db sqlite:///{tmp}/typo/study.sqlite --out {tmp}/export", "no study database at"),
    ("backup --db sqlite:///{tmp}/typo/study.sqlite --out {tmp}/backups/copy.db", "no study database at"),
    ("analyze --db sqlite:///{tmp}/typo/study.sqlite --out {tmp}/analysis", "no study database at"),
    ("export --db sqlite:///{tmp}/study.sqlit --out {tmp}/export", "no study database at"),
    ("export --db sqlite:///{tmp}/notes.txt --out {tmp}/export", "is not a study database (not an SQLite file)"),
    ("analyze --db sqlite:///{tmp}/notes.txt --out {tmp}/analysis", "is not a study database"),
    ("backup --db sqlite:///{tmp}/notes.txt --out {tmp}/copy.db", "is not a study database"),
    ("export --db sqlite:///{tmp}/empty.sqlite --out {tmp}/export", "is not a study database (an empty file)"),
    ("export --db sqlite:///{tmp}/afolder --out {tmp}/export", "is not a study database (not a regular file)"),
    ("export --db sqlite:///{tmp}/other.sqlite --out {tmp}/export", "is not a study database (no study tables)"),
    ("export --db sqlite:///{tmp}/truncated.sqlite --out {tmp}/export", "is not a study database"),
    ("export --db postgresql://localhost/study --out {tmp}/export", "must be SQLite"),
    ("export --db sqlite:// --out {tmp}/export", "not in-memory"),
    ("backup --db {db} --out {tmp}/afolder", "is a folder"),
    ("backup --db {db} --out {tmp}/study.sqlite", "is the live database"),
    ("serve --db {db} --materials {tmp}/nomaterials --study teststudy", "no materials folder at"),
    ("serve --db {db} --materials {tmp}/nomanifest --study teststudy", "holds no manifest.json"),
    ("serve --db {db} --materials {tmp}/materials/manifest.json --study teststudy", "no materials folder at"),
    ("serve --db sqlite:///{tmp}/typo.sqlite --materials {tmp}/materials --study teststudy", "no study database at"),
    ("serve --db sqlite:///{tmp}/notes.txt --materials {tmp}/materials --study teststudy", "is not a study database"),
    ("serve --db {db} --materials {tmp}/materials --study nosuchstudy", "study 'nosuchstudy' is not in"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_INPUTS, ids=[" ".join(a.split()[:3]) for a, _ in BAD_INPUTS])
def test_bad_study_inputs(built, arguments, message, capsys, monkeypatch):
    tmp, url = built
    monkeypatch.setattr("studies.cli.subprocess.call", lambda *a, **k: pytest.fail("streamlit was started"))
    before = _snapshot(tmp)
    argv = ["study", *arguments.format(tmp=tmp, db=url).split()]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in out + err and "wrote" not in out
    assert _snapshot(tmp) == before  # nothing created, nothing changed


def test_bad_inputs_through_a_real_process(built):
    """The same errors from `python -m stylex.cli` (no traceback from any layer, exit status 2)."""
    tmp, url = built
    before = _snapshot(tmp)
    for arguments, message in (BAD_INPUTS[0], BAD_INPUTS[4], BAD_INPUTS[-1]):
        command = [sys.executable, "-m", "stylex.cli", "study", *arguments.format(tmp=tmp, db=url).split()]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and message in done.stderr
    assert _snapshot(tmp) == before


def test_serve_starts_streamlit_only_when_everything_is_there(built, monkeypatch):
    tmp, url = built
    calls = []
    monkeypatch.setattr("studies.cli.subprocess.call", lambda command, **kwargs: calls.append((command, kwargs)) or 0)
    with pytest.raises(SystemExit) as stop:
        main(["study", "serve", "--db", url, "--materials", str(tmp / "materials"), "--study", STUDY])
    assert stop.value.code == 0 and len(calls) == 1
    assert calls[0][1]["env"]["STYLEX_STUDY_ID"] == STUDY


def test_reading_commands_leave_a_schema_mismatch_alone(built, capsys):
    tmp, url = built
    with db.session_scope(db.get_engine(url)) as session:
        session.execute(update(db.SchemaVersion).values(version=db.SCHEMA_VERSION + 1))
    before = _snapshot(tmp)
    assert main(["study", "export", "--db", url, "--out", str(tmp / "export")]) == 2
    assert "schema version" in capsys.readouterr().err
    assert _snapshot(tmp) == before


# ------------------------------------------------------------------------------- export while the app writes


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_export_while_a_writer_holds_the_database(tmp_path, capsys, journal):
    """A writer in the middle of a transaction (BEGIN IMMEDIATE + an uncommitted insert) does not block export,
    backup or analyze: they read the committed rows at once. "delete" is a rollback-journal file, e.g. a backup."""
    folder, key, _ = synthetic_materials(tmp_path / "materials")
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    load_study(engine, folder, key, study_id=STUDY)
    _simulate(engine, folder, n1=2, n2=1)
    db.dispose_engines()
    path = tmp_path / "study.sqlite"
    if journal == "delete":
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")
        conn.close()
    writer = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == journal
        committed = writer.execute("SELECT count(*) FROM response").fetchone()[0]
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM response WHERE id = (SELECT min(id) FROM response)")
        writer.execute("INSERT INTO event (ts, kind) VALUES ('2024-01-01T00:00:00.000000+00:00', 'uncommitted')")
        start = time.monotonic()
        assert main(["study", "export", "--db", url, "--out", str(tmp_path / "export")]) == 0
        assert main(["study", "backup", "--db", url, "--out", str(tmp_path / "copy.db")]) == 0
        assert main(["study", "analyze", "--db", url, "--out", str(tmp_path / "analysis")]) == 0
        assert time.monotonic() - start < 20  # no 30 s lock wait
        assert writer.in_transaction
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert len(pd.read_csv(tmp_path / "export" / "responses.csv")) == committed == 2 * 6 + 4
    with sqlite3.connect(tmp_path / "copy.db") as copy:
        assert copy.execute("SELECT count(*) FROM response").fetchone()[0] == committed
        assert copy.execute("SELECT count(*) FROM event WHERE kind = 'uncommitted'").fetchone()[0] == 0
    copy.close()
    assert "locked" not in capsys.readouterr().err


def test_the_app_database_is_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    db.create_schema(db.get_engine(url))
    db.dispose_engines()
    with sqlite3.connect(tmp_path / "study.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent: readers never wait
    conn.close()


# --------------------------------------------------------------------------------------- CSV formula injection


FORMULAS = ['=HYPERLINK("http://example.com/x","hair")', "+cmd hair", "-dark hair", "@sum eyes", "\tbig eyes",
            "\rsmile now"]


def test_export_neutralises_formulas(tmp_path, capsys):
    from test_study_db import _assets, _participant_with_plan, _trial_ids

    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    db.create_schema(engine)
    db.add_study(engine, "s1", "pilot", "f" * 64, _assets(8))
    participant = _participant_with_plan(engine, "-pid", len(FORMULAS) + 1, part="description")
    trials = _trial_ids(engine, participant)
    for trial_id, text in zip(trials, [*FORMULAS, "plain words"], strict=True):
        assert db.record_description(engine, trial_id, text)
    assert main(["study", "export", "--db", url, "--out", str(tmp_path / "export")]) == 0
    with db.session_scope(engine) as session:  # the database keeps the raw text
        stored = list(session.execute(select(db.Response.text_raw).order_by(db.Response.id)).scalars())
    db.dispose_engines()
    assert stored == [*FORMULAS, "plain words"]

    for name in ("responses", "participants", "trials", "assets"):
        with open(tmp_path / "export" / f"{name}.csv", newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                for cell in row:
                    assert not cell.startswith(db.FORMULA_PREFIXES), (name, cell)
    with open(tmp_path / "export" / "responses.csv", newline="", encoding="utf-8") as handle:
        responses = list(csv.DictReader(handle))
    assert [r["text_raw"] for r in responses] == ["'" + f for f in FORMULAS] + ["plain words"]
    assert [r["participant"] for r in responses] == ["'-pid"] * (len(FORMULAS) + 1)
    assert responses[-1]["text_norm"] == "plain words" and responses[2]["text_norm"] == "'-dark hair"
    assert all(r["trial_id"].isdigit() and r["seq"].isdigit() for r in responses)  # numbers stay numbers
    assert len(pd.read_csv(tmp_path / "export" / "responses.csv")) == len(FORMULAS) + 1  # a raw CR split no row


def test_csv_safe_touches_only_strings():
    frame = pd.DataFrame({"n": [-1, 2, -3], "x": [-1.5, float("nan"), 0.25], "mixed": [-4, "=1+1", None],
                          "text": ["-a", "a-", "@b"], "flag": [True, False, True],
                          "lists": [["=a"], [], ["b"]]})
    frame["nullable"] = pd.array([-7, None, 3], dtype="Int64")
    frame["strings"] = pd.array(["+1", None, "ok"], dtype="string")
    safe = db.csv_safe(frame)
    assert safe["n"].tolist() == [-1, 2, -3] and safe["n"].dtype == frame["n"].dtype
    assert safe["x"].iloc[0] == -1.5 and safe["nullable"].iloc[0] == -7 and safe["nullable"].dtype == "Int64"
    assert safe["mixed"].tolist()[:2] == [-4, "'=1+1"] and safe["mixed"].iloc[2] is None
    assert safe["text"].tolist() == ["'-a", "a-", "'@b"]
    assert safe["flag"].tolist() == [True, False, True] and safe["lists"].tolist() == [["=a"], [], ["b"]]
    assert safe["strings"].iloc[0] == "'+1" and pd.isna(safe["strings"].iloc[1])
    assert frame["text"].iloc[0] == "-a"  # the input is not modified
    assert db.csv_safe(frame).to_csv(index=False).splitlines()[1].startswith("-1,-1.5,-4,'-a")


def _simulate(engine, folder, n1: int, n2: int) -> None:
    items, answer_key = db.study_items(engine, STUDY)
    paths = asset_paths(folder)

    def load(asset_id: str) -> bytes:
        return paths[asset_id].read_bytes()

    simulate.run_participants(engine, STUDY, items, answer_key, "coherence", n1,
                              lambda seed: simulate.Observer(load, noise=0.0, seed=seed), load, seed=1)
    simulate.run_participants(engine, STUDY, items, None, "description", n2,
                              lambda seed: simulate.Observer(load, noise=0.0, seed=seed), load, seed=2)
