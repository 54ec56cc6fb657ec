"""Getting a study out of the live database, on the server: a consistent backup file, the analysis frames, and
CSV cells that a spreadsheet cannot run.

Backups go through the SQLite backup API and exports through a single read transaction, never a file copy of a
live WAL database (a copy taken while commits sit in ``-wal`` can miss whole tables). CSV exports neutralise cells
a spreadsheet would run as formulas (:func:`csv_safe`); the database keeps the raw text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from studies.engines import open_readonly, sqlite_url
from studies.tables import Asset, Participant, Response, Trial
from stylex.errors import UserError


def backup(engine_or_url: Engine | str, target_path: str | os.PathLike) -> Path:
    """Write a consistent snapshot of the live database to ``target_path`` and return it; a URL is opened read-only
    (:func:`open_readonly`), so a mistyped one is refused without creating anything.

    Uses SQLite's online backup API (safe while writers are active, unlike copying the file in WAL mode), writes a
    temporary file in the target directory, switches it to a self-contained rollback journal, checks it, then
    renames it into place so readers never see a half-written snapshot."""
    if not isinstance(engine_or_url, Engine):
        engine = open_readonly(engine_or_url)
        try:
            return backup(engine, target_path)
        finally:
            engine.dispose()
    engine = engine_or_url
    source_path = Path(sqlite_url(engine.url).database).resolve()
    target = Path(target_path).expanduser().resolve()
    if target == source_path:
        raise UserError(f"backup target {target} is the live database")
    if target.is_dir():
        raise UserError(f"backup target {target} is a folder; name the file to write")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        raw = engine.raw_connection()
        try:
            destination = sqlite3.connect(tmp_name)
            try:
                raw.driver_connection.backup(destination)
                destination.execute("PRAGMA journal_mode=DELETE")
                check = destination.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise UserError(f"backup of {source_path} failed its integrity check: {check}")
            finally:
                destination.close()
        finally:
            raw.close()
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


RESPONSE_COLUMNS = ["participant", "participant_id", "study_id", "part", "kind", "method", "domain", "attr_i", "attr_j",
                    "choice", "correct", "text_raw", "text_norm", "rt_ms", "submitted_at", "trial_id", "seq"]

# what binds a participant id to its browser works as that participant's password while the study runs: it stays in
# the database (and its backups), never in the exported files that are shared for analysis
SESSION_SECRETS = ("session_token", "platform_session_id")


def export_frames(engine: Engine) -> dict[str, pd.DataFrame]:
    """The analysis input: 'responses' (one row per answered Part 1-2 trial), 'participants', 'trials', 'assets'
    and 'forward' (Part 3's answered test trials, :func:`forward_responses`).

    All four are read in one transaction, so they agree with each other. Dtypes: ``correct`` is pandas' nullable
    "boolean" (True/False for Part 1, <NA> for Part 2); attr_i/attr_j/rt_ms are nullable "Int64"; timestamps are
    UTC datetimes; trial ``assets`` are Python lists."""
    with engine.begin() as conn:
        participants = [dict(r) for r in conn.execute(select(Participant.__table__)).mappings()]
        trials = [dict(r) for r in conn.execute(select(Trial.__table__).order_by(Trial.participant_id, Trial.seq))
                  .mappings()]
        assets = [dict(r) for r in conn.execute(select(Asset.__table__).order_by(Asset.asset_id)).mappings()]
        answered = conn.execute(
            select(Participant.external_pid.label("participant"), Participant.id.label("participant_id"),
                   Participant.study_id, Participant.part, Trial.kind, Trial.method, Trial.domain, Trial.attr_i,
                   Trial.attr_j, Response.choice, Trial.correct_option, Response.text_raw, Response.text_norm,
                   Response.rt_ms, Response.submitted_at, Trial.id.label("trial_id"), Trial.seq)
            .join(Trial, Trial.id == Response.trial_id).join(Participant, Participant.id == Trial.participant_id)
            .where(Participant.part != "forward")  # Part 3 has its own format: forward_responses
            .order_by(Participant.id, Trial.seq)
        ).mappings().all()
        forward = _forward_frame(conn)
        answered_ids = set(conn.execute(select(Response.trial_id)).scalars())  # every part, learning screens too

    rows = []
    for r in answered:
        row = {key: r[key] for key in RESPONSE_COLUMNS if key != "correct"}
        row["correct"] = None if r["correct_option"] is None else r["choice"] == r["correct_option"]
        rows.append(row)
    responses = pd.DataFrame(rows, columns=RESPONSE_COLUMNS)
    responses["correct"] = responses["correct"].astype("boolean")
    for column in ("attr_i", "attr_j", "rt_ms", "participant_id", "trial_id", "seq"):
        responses[column] = responses[column].astype("Int64")
    responses["submitted_at"] = pd.to_datetime(responses["submitted_at"], utc=True)

    participants_frame = pd.DataFrame(participants, columns=[c.key for c in Participant.__table__.columns
                                                             if c.key not in SESSION_SECRETS])
    for column in ("consent_at", "started_at", "completed_at"):
        participants_frame[column] = pd.to_datetime(participants_frame[column], utc=True)

    trial_columns = [c.key for c in Trial.__table__.columns]
    trials_frame = pd.DataFrame(trials, columns=trial_columns)
    trials_frame["assets"] = [json.loads(a) for a in trials_frame["assets"]]
    for column in ("attr_i", "attr_j"):
        trials_frame[column] = trials_frame[column].astype("Int64")
    trials_frame["shown_at"] = pd.to_datetime(trials_frame["shown_at"], utc=True)
    trials_frame["answered"] = trials_frame["id"].isin(answered_ids).astype(bool)

    assets_frame = pd.DataFrame(assets, columns=[c.key for c in Asset.__table__.columns])
    return {"responses": responses, "participants": participants_frame, "trials": trials_frame,
            "assets": assets_frame, "forward": forward}


def forward_responses(engine: Engine) -> pd.DataFrame:
    """Part 3's answered test trials in ``studies.forward.RESPONSE_COLUMNS`` (the input of
    ``studies.forward_analysis``): ``trial`` counts the participant's test trials from 0 (learning screens are no
    responses), ``correct`` is computed here from the stored answer key, ``image`` is the shown asset id."""
    with engine.begin() as conn:
        return _forward_frame(conn)


def _forward_frame(conn) -> pd.DataFrame:
    from studies.forward import responses_frame, score_trial  # scipy-backed: loaded by the CLI only, not the app

    rows = conn.execute(
        select(Participant.external_pid, Participant.id, Trial.method, Trial.seq, Trial.assets,
               Trial.classifier_decision, Response.prediction, Response.rt_ms)
        .join(Trial, Trial.participant_id == Participant.id).outerjoin(Response, Response.trial_id == Trial.id)
        .where(Participant.part == "forward", Trial.kind == "main").order_by(Participant.id, Trial.seq)
    ).all()
    out, position, previous = [], 0, None
    for r in rows:
        position = position + 1 if r.id == previous else 0  # position among all planned test trials
        previous = r.id
        if r.prediction is not None:
            trial = {"trial": position, "image": json.loads(r.assets)[0], "classifier_decision": r.classifier_decision}
            out.append(score_trial(r.external_pid, r.method, trial, r.prediction, r.rt_ms))
    return responses_frame(out)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may run as a formula when a CSV cell starts with it (OWASP, "CSV injection")."""


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` for writing to CSV, with every *string* cell that starts with one of
    ``FORMULA_PREFIXES`` prefixed with a single quote (``=1+1`` -> ``'=1+1``), so Excel or LibreOffice show it as
    text instead of running it. Numbers, booleans, dates, lists and missing values are left alone (a negative
    number stays a number); the database keeps the raw text."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
            out[column] = series.map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_PREFIXES)
                                     else v)
    return out

