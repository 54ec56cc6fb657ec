"""Storage layer of the user study: one SQLite file, shared by the Streamlit app, the materials builder, the
simulated participants and the analysis.

Why it looks the way it does:

* Streamlit serves every browser session from its own thread, and all of them share one Engine. SQLite allows one
  writer at a time, so every transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken up front and
  waited for under ``busy_timeout``. A deferred ``BEGIN`` that later tries to upgrade its read snapshot to a write
  lock fails with "database is locked" no matter how long the timeout (measured: about half the writes lost at 16
  threads), which is exactly the failure a double-clicked submit button must not cause.
* Double submissions are absorbed by the schema, not by the caller: ``response.trial_id`` is UNIQUE and answers go
  in with ``INSERT ... ON CONFLICT(trial_id) DO NOTHING``, so the first answer wins and the return value says
  whether this call stored it. A reload resumes because progress is "the lowest trial without a response".
* The Part 1 answer key (``trial.correct_option``) lives only in this database; ``next_trial`` never returns it,
  so the participant app cannot leak it into a page.
* Timestamps are UTC ISO-8601 text (fixed width, so they sort as text) and response times are measured on the
  server, ``submitted_at - shown_at``: it includes network and GIF download time, good enough for exclusions.
* Exports and backups go through the SQLite backup API and a single read transaction, never a file copy of a live
  WAL database (a copy taken while commits sit in ``-wal`` can miss whole tables).
* Reading commands (export, backup, analyze) use :func:`open_readonly`: the file must exist and hold the study
  schema, it is opened with ``mode=ro`` and read in a deferred transaction, so a mistyped path creates nothing and a
  writer holding the lock (the app mid-commit) does not make a reader wait. Only writers create the schema.
* Free-text answers are stored twice: ``text_raw`` exactly as typed, ``text_norm`` as normalised by
  :mod:`studies.text` (NFKC, invisible and control characters removed or made word breaks); the analysis reads
  ``text_norm``. CSV exports neutralise cells a spreadsheet would run as formulas (:func:`csv_safe`); the database
  keeps the raw text.

The module imports no torch: the participant app must start fast and serve prebuilt files only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pandas as pd
from sqlalchemy import (
    CheckConstraint,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from studies.text import normalize_text
from stylex.errors import UserError

SCHEMA_VERSION = 1
"""Bump when a table changes; ``create_schema`` refuses to open a file written with another version."""

BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for the lock. Study load is a few writes per second; 30 s only matters under abuse."""

PARTS = ("coherence", "description")
STATUSES = ("consented", "in_progress", "completed", "screened_out")
TRIAL_KINDS = ("practice", "main", "attention")
OPTIONS = ("A", "B")
ASSETS_PER_TRIAL = 4
MAX_PID_CHARS = 128
MAX_TEXT_CHARS = 200


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _sql_in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime stored as fixed-width ISO-8601 text.

    SQLAlchemy's SQLite DateTime drops the timezone; storing text with an explicit +00:00 keeps rows unambiguous
    when the file is read by other tools, and the fixed width keeps text order equal to time order."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(timezone.utc)")
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")

    def process_result_value(self, value: str | None, dialect: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class Base(DeclarativeBase):
    pass


class Study(Base):
    """One deployment of the study; ``manifest_sha256`` pins the materials folder it serves."""

    __tablename__ = "study"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    manifest_sha256: Mapped[str] = mapped_column(String(64))


class Asset(Base):
    """A GIF in the materials folder. ``asset_id`` is opaque (content-hash based) so a URL reveals nothing; the
    method/domain/attribute columns are for the analysis side only."""

    __tablename__ = "asset"

    asset_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    relpath: Mapped[str] = mapped_column(Text)
    method: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[str | None] = mapped_column(Text)
    attr_rank: Mapped[int | None] = mapped_column(Integer)
    role: Mapped[str | None] = mapped_column(Text)


class Participant(Base):
    """A person in one part of one study. UNIQUE(study_id, external_pid): a returning Prolific id resumes."""

    __tablename__ = "participant"
    __table_args__ = (
        UniqueConstraint("study_id", "external_pid", name="uq_participant_study_pid"),
        CheckConstraint(_sql_in("part", PARTS), name="ck_participant_part"),
        CheckConstraint(_sql_in("status", STATUSES), name="ck_participant_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"))
    external_pid: Mapped[str] = mapped_column(String(MAX_PID_CHARS))
    part: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="consented")
    seed: Mapped[int] = mapped_column(Integer)
    consent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completion_code: Mapped[str | None] = mapped_column(String(64))


class ItemColumns:
    """What a study item and a planned trial both carry: the condition (for analysis), the four asset ids in
    display order (JSON list) and the Part 1 answer key (``correct_option``, never sent to the browser)."""

    method: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[str | None] = mapped_column(Text)
    attr_i: Mapped[int | None] = mapped_column(Integer)
    attr_j: Mapped[int | None] = mapped_column(Integer)
    assets: Mapped[str] = mapped_column(Text)
    correct_option: Mapped[str | None] = mapped_column(String(1))


class Trial(ItemColumns, Base):
    """One screen of a participant's plan. ``assets`` is a JSON list of 4 asset ids in display order (Part 1: the
    two reference GIFs, then options A and B). ``correct_option`` is the Part 1 answer key, copied from
    ``study_item`` when the plan is made."""

    __tablename__ = "trial"
    __table_args__ = (
        UniqueConstraint("participant_id", "seq", name="uq_trial_participant_seq"),
        CheckConstraint(_sql_in("kind", TRIAL_KINDS), name="ck_trial_kind"),
        CheckConstraint(f"correct_option IS NULL OR {_sql_in('correct_option', OPTIONS)}", name="ck_trial_correct"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Response(Base):
    """The answer to a trial; UNIQUE(trial_id) is what makes a double submit record once."""

    __tablename__ = "response"
    __table_args__ = (CheckConstraint(f"choice IS NULL OR {_sql_in('choice', OPTIONS)}", name="ck_response_choice"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id"), unique=True)
    choice: Mapped[str | None] = mapped_column(String(1))
    text_raw: Mapped[str | None] = mapped_column(Text)
    text_norm: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rt_ms: Mapped[int | None] = mapped_column(Integer)


class Event(Base):
    """Audit log (resume, stale or duplicate submit, validation error, ...); ``detail`` is JSON text."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participant.id"), index=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


class StudyItem(ItemColumns, Base):
    """An item of the study's materials (one manifest item). ``correct_option`` is the Part 1 answer key: it lives
    here and in ``trial`` only, and ``study_items`` returns it separately from the items."""

    __tablename__ = "study_item"
    __table_args__ = (
        CheckConstraint("part IN (1, 2)", name="ck_item_part"),
        CheckConstraint(f"correct_option IS NULL OR {_sql_in('correct_option', OPTIONS)}", name="ck_item_correct"),
    )

    item_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"), index=True)
    part: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))


class SchemaVersion(Base):
    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)


# --------------------------------------------------------------------------------------------------------- engines


def _sqlite_url(url: str | URL) -> URL:
    """Parse and check ``url``: SQLite on a file, because WAL, the backup API and sharing one database between
    threads and processes all need a real file (``:memory:`` would give each pooled connection its own DB)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(f"not a database URL: {url!r} (use sqlite:///path/to/study.sqlite)") from exc
    if parsed.get_backend_name() != "sqlite":
        raise UserError(f"the study database must be SQLite, got {parsed.get_backend_name()!r} in {url!r} "
                        "(use sqlite:///path/to/study.sqlite)")
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file::memory:"):
        raise UserError(f"the study database must be a file, not in-memory: {url!r}")
    return parsed


def make_engine(url: str | URL) -> Engine:
    """A new Engine for a SQLite file, set up for many concurrent writer threads (see the module docstring).

    The parent directory is created so a fresh deployment needs no manual step; the directory must be local and
    writable, since WAL keeps ``-wal``/``-shm`` files next to the database."""
    parsed = _sqlite_url(url)
    if not parsed.query.get("uri"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, connection_record: Any) -> None:
        # Stop pysqlite from opening (deferred) transactions by itself; the "begin" hook below opens them.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so that switching to WAL waits for a concurrent connection instead of failing.
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(url: str | URL) -> Engine:
    """The process-wide Engine for ``url``: one pool per database, whichever thread asks first creates it."""
    key = _sqlite_url(url).render_as_string(hide_password=False)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = make_engine(key)
        return engine


def dispose_engines() -> None:
    """Close every cached Engine's connections and forget them (tests, and before deleting a database file)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.dispose()


def create_schema(engine: Engine) -> None:
    """Create missing tables and record the schema version, or refuse a file written by another version.

    Runs in one IMMEDIATE transaction (SQLite DDL is transactional), so concurrent callers serialise and a version
    mismatch leaves the file untouched."""
    with engine.begin() as conn:
        Base.metadata.create_all(conn)
        versions = conn.execute(select(SchemaVersion.version)).scalars().all()
        if not versions:
            conn.execute(sqlite_insert(SchemaVersion).values(version=SCHEMA_VERSION))
        elif versions != [SCHEMA_VERSION]:
            raise UserError(f"{engine.url.database} has schema version {versions}, this code expects "
                            f"{SCHEMA_VERSION}; export it and start a new database, or use the matching code")


def database_path(url: str | URL) -> Path:
    """The file a SQLite URL names (``sqlite:///path`` or ``sqlite:///file:path?...&uri=true``)."""
    parsed = _sqlite_url(url)
    database = parsed.database
    if parsed.query.get("uri") and database.startswith("file:"):
        database = unquote(urlsplit(database).path)
    return Path(database).expanduser()


def check_database_file(url: str | URL) -> Path:
    """The database file of ``url`` after checking that it exists and starts like an SQLite file; never creates
    anything. Errors name the path and say what was found."""
    path = database_path(url)
    if not path.exists():
        raise UserError(f"no study database at {path}; check --db (build one with `stylex study build`; "
                        "reading commands never create a database)")
    if not path.is_file():
        raise UserError(f"{path} is not a study database (not a regular file)")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as err:
        raise UserError(f"cannot read the study database {path}: {err.strerror or err}") from None
    if header != SQLITE_HEADER:
        raise UserError(f"{path} is not a study database ({'an empty file' if not header else 'not an SQLite file'})")
    return path


SQLITE_HEADER = b"SQLite format 3\x00"
STUDY_TABLES = frozenset(table.name for table in Base.metadata.sorted_tables)


def check_schema(engine: Engine, path: str | os.PathLike | None = None) -> None:
    """Refuse a database without the study tables or with another schema version, only reading (no transaction
    that writes, no table created)."""
    path = path or engine.url.database
    try:
        with engine.connect() as conn:
            names = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
            missing = sorted(STUDY_TABLES - names)
            if missing:
                what = "no study tables" if len(missing) == len(STUDY_TABLES) else f"missing tables {missing}"
                raise UserError(f"{path} is not a study database ({what})")
            versions = conn.execute(select(SchemaVersion.version)).scalars().all()
    except DBAPIError as err:
        raise UserError(f"{path} is not a study database ({err.orig})") from None
    if versions != [SCHEMA_VERSION]:
        raise UserError(f"{path} has schema version {versions}, this code expects {SCHEMA_VERSION}; "
                        "use the matching code to read it")


def open_readonly(url: str | URL) -> Engine:
    """A new read-only Engine on an existing study database, for export, backup and analysis.

    Nothing is created or written: the file must exist (:func:`check_database_file`), SQLite opens it with
    ``mode=ro``, transactions are plain deferred ``BEGIN`` (readers never take the write lock, so in WAL mode they
    neither wait for nor block the app's writers; a read transaction still sees one consistent snapshot), and the
    schema is checked, not created (:func:`check_schema`). Dispose of the Engine when done."""
    path = check_database_file(url)
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)

    engine = create_engine(URL.create("sqlite", database=str(path)), creator=connect)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    side_files = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    existed = [side.exists() for side in side_files]
    try:
        check_schema(engine, path)
    except BaseException:
        engine.dispose()
        # A damaged file with a WAL header makes SQLite create -wal/-shm before it finds the damage: remove what
        # this call created (an empty log of a file that is no study database, so no app is using it).
        wal = side_files[0]
        if not existed[0] and wal.is_file() and wal.stat().st_size == 0:
            for side, was_there in zip(side_files, existed, strict=True):
                if not was_there:
                    side.unlink(missing_ok=True)
        raise
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One ORM Session in one (IMMEDIATE) transaction: commit on success, rollback on any exception."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


# -------------------------------------------------------------------------------------------------------- services


def add_study(engine: Engine, study_id: str, name: str, manifest_sha256: str, assets: list[dict]) -> bool:
    """Register a study and its assets; True if this call created it.

    Re-running with the same manifest is a no-op, so the materials builder can be re-run safely. A different
    manifest for an existing study id is refused: trials already served point at the old assets."""
    rows = [_asset_row(study_id, asset) for asset in assets]
    with session_scope(engine) as session:
        existing = session.get(Study, study_id)
        if existing is not None:
            if existing.manifest_sha256 != manifest_sha256:
                raise UserError(f"study {study_id!r} already exists with manifest {existing.manifest_sha256}, "
                                f"not {manifest_sha256}; use a new study id for new materials")
            return False
        session.add(Study(id=study_id, name=name, created_at=_utcnow(), manifest_sha256=manifest_sha256))
        session.flush()
        if rows:
            session.execute(sqlite_insert(Asset).values(rows).on_conflict_do_nothing(index_elements=["asset_id"]))
        return True


_ASSET_REQUIRED = ("asset_id", "sha256", "relpath")
_ASSET_OPTIONAL = ("method", "domain", "attr_rank", "role")


def _asset_row(study_id: str, asset: dict) -> dict:
    missing = [key for key in _ASSET_REQUIRED if not asset.get(key)]
    unknown = sorted(set(asset) - set(_ASSET_REQUIRED) - set(_ASSET_OPTIONAL))
    if missing or unknown:
        raise UserError(f"bad asset record {asset!r}: missing {missing}, unknown keys {unknown}")
    return {"study_id": study_id, **{key: asset.get(key) for key in (*_ASSET_REQUIRED, *_ASSET_OPTIONAL)}}


def get_or_create_participant(engine: Engine, study_id: str, external_pid: str, part: str, seed: int) -> int:
    """The participant id for ``external_pid`` in this study, created (status 'consented') on first call.

    Called when consent is given; a returning id gets its existing row back unchanged (its part and seed are kept,
    so the plan is stable). Callers compare the returned participant's part to decide on screening out."""
    if part not in PARTS:
        raise UserError(f"part must be one of {PARTS}, got {part!r}")
    if not isinstance(external_pid, str) or not external_pid.strip() or len(external_pid) > MAX_PID_CHARS \
            or not external_pid.isprintable():
        raise UserError(f"invalid participant id {external_pid!r}")
    with session_scope(engine) as session:
        if session.get(Study, study_id) is None:
            raise UserError(f"unknown study {study_id!r}; build the materials and register the study first")
        session.execute(
            sqlite_insert(Participant)
            .values(study_id=study_id, external_pid=external_pid, part=part, status="consented", seed=int(seed),
                    consent_at=_utcnow())
            .on_conflict_do_nothing(index_elements=["study_id", "external_pid"])
        )
        return session.execute(
            select(Participant.id).where(Participant.study_id == study_id, Participant.external_pid == external_pid)
        ).scalar_one()


def get_participant(engine: Engine, participant_id: int) -> dict | None:
    """The participant's row as a dict (the app routes on ``status``), or None if unknown."""
    with session_scope(engine) as session:
        row = session.get(Participant, participant_id)
        return None if row is None else {c.key: getattr(row, c.key) for c in Participant.__table__.columns}


def add_trials(engine: Engine, participant_id: int, trials: list[dict]) -> bool:
    """Store the participant's whole trial plan; True if this call stored it, False if a plan already existed.

    A plan is created once, at consent: a reload or a second tab must not reshuffle trials. The check and the
    insert share one IMMEDIATE transaction, so two concurrent calls cannot both insert; UNIQUE(participant_id, seq)
    is the backstop."""
    with session_scope(engine) as session:
        participant = session.get(Participant, participant_id)
        if participant is None:
            raise UserError(f"unknown participant {participant_id}")
        has_plan = session.execute(select(Trial.id).where(Trial.participant_id == participant_id).limit(1)).first()
        if has_plan is not None:
            return False
        rows = [_trial_row(participant, trial) for trial in trials]
        seqs = [row["seq"] for row in rows]
        if len(set(seqs)) != len(seqs):
            raise UserError(f"trial plan for participant {participant_id} repeats seq numbers")
        used = {asset_id for row in rows for asset_id in json.loads(row["assets"])}
        known = set(session.execute(select(Asset.asset_id).where(Asset.study_id == participant.study_id,
                                                                 Asset.asset_id.in_(used))).scalars())
        if used - known:
            raise UserError(f"trial plan uses assets not registered for study {participant.study_id!r}: "
                            f"{sorted(used - known)[:5]}")
        if rows:
            session.execute(sqlite_insert(Trial).values(rows))
        return True


def _trial_row(participant: Participant, trial: dict) -> dict:
    """Validate one planned trial against the participant's part and return its column values."""
    allowed = {"seq", "kind", "method", "domain", "attr_i", "attr_j", "assets", "correct_option"}
    unknown = sorted(set(trial) - allowed)
    if unknown:
        raise UserError(f"unknown trial keys {unknown} in {trial!r}")
    seq, kind, assets = trial.get("seq"), trial.get("kind", "main"), trial.get("assets")
    correct = trial.get("correct_option")
    if not isinstance(seq, int) or seq < 0:
        raise UserError(f"trial seq must be a non-negative int, got {seq!r}")
    if kind not in TRIAL_KINDS:
        raise UserError(f"trial kind must be one of {TRIAL_KINDS}, got {kind!r}")
    if not isinstance(assets, list | tuple) or len(assets) != ASSETS_PER_TRIAL \
            or not all(isinstance(a, str) and a for a in assets):
        raise UserError(f"trial {seq} needs a list of {ASSETS_PER_TRIAL} asset ids, got {assets!r}")
    if participant.part == "coherence" and correct not in OPTIONS:
        raise UserError(f"Part 1 trial {seq} needs correct_option in {OPTIONS}, got {correct!r}")
    if participant.part == "description" and (correct is not None or trial.get("attr_j") is not None):
        raise UserError(f"Part 2 trial {seq} has no answer key and no second attribute")
    if kind == "main" and (not trial.get("method") or not trial.get("domain") or trial.get("attr_i") is None):
        raise UserError(f"main trial {seq} needs method, domain and attr_i")
    return {"participant_id": participant.id, "seq": seq, "kind": kind, "method": trial.get("method"),
            "domain": trial.get("domain"), "attr_i": trial.get("attr_i"), "attr_j": trial.get("attr_j"),
            "assets": json.dumps(list(assets)), "correct_option": correct}


def next_trial(engine: Engine, participant_id: int) -> dict | None:
    """The lowest-seq trial without a response, or None when the plan is done (or was never made).

    Returns only what the page needs: ids, kind, asset ids in display order and progress counts. The answer key and
    the condition (method, attributes) stay in the database so the participant app cannot leak them."""
    answered = select(Response.trial_id)
    with session_scope(engine) as session:
        trial = session.execute(
            select(Trial).where(Trial.participant_id == participant_id, Trial.id.not_in(answered))
            .order_by(Trial.seq).limit(1)
        ).scalar_one_or_none()
        if trial is None:
            return None
        n_total = session.execute(select(func.count(Trial.id)).where(Trial.participant_id == participant_id)).scalar()
        n_done = session.execute(select(func.count(Response.id)).join(Trial, Trial.id == Response.trial_id)
                                 .where(Trial.participant_id == participant_id)).scalar()
        return {"trial_id": trial.id, "participant_id": participant_id, "seq": trial.seq, "kind": trial.kind,
                "assets": json.loads(trial.assets), "shown_at": trial.shown_at, "n_done": n_done, "n_total": n_total}


def mark_shown(engine: Engine, trial_id: int) -> bool:
    """Record the first time a trial was rendered (later renders keep it, so rt_ms spans the whole first view);
    True if this call set it. The first shown trial also moves a 'consented' participant to 'in_progress'."""
    now = _utcnow()
    with session_scope(engine) as session:
        result = session.execute(
            update(Trial).where(Trial.id == trial_id, Trial.shown_at.is_(None)).values(shown_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return False
        session.execute(
            update(Participant)
            .where(Participant.id == select(Trial.participant_id).where(Trial.id == trial_id).scalar_subquery(),
                   Participant.status == "consented")
            .values(status="in_progress", started_at=now)
            .execution_options(synchronize_session=False)
        )
        return True


def record_choice(engine: Engine, trial_id: int, choice: str) -> bool:
    """Store a Part 1 answer; True if this call stored it, False if the trial already had one (double submit)."""
    if choice not in OPTIONS:
        raise UserError(f"choice must be one of {OPTIONS}, got {choice!r}")
    return _record(engine, trial_id, "coherence", {"choice": choice})


def record_description(engine: Engine, trial_id: int, text_raw: str, text_norm: str | None = None) -> bool:
    """Store a Part 2 description, raw as typed and normalised by :func:`studies.text.normalize_text`; True if this
    call stored it.

    The normalised text is computed here, so every writer stores the same normalisation; ``text_norm``, when given,
    must equal it. Refused: raw text that is not a string of 1 to ``MAX_TEXT_CHARS`` characters, and text without a
    letter once normalised (empty, only invisible or control characters, ``=1+1``). The word limit is the app's."""
    if not isinstance(text_raw, str) or not text_raw or len(text_raw) > MAX_TEXT_CHARS:
        raise UserError(f"description must be non-empty text of at most {MAX_TEXT_CHARS} characters")
    norm = normalize_text(text_raw)
    if not any(ch.isalpha() for ch in norm) or len(norm) > MAX_TEXT_CHARS:
        raise UserError(f"description {text_raw!r} has no letters once normalised ({norm!r}) or is too long")
    if text_norm is not None and text_norm != norm:
        raise UserError(f"text_norm {text_norm!r} is not the normalised form of {text_raw!r} ({norm!r}); "
                        "leave it out to have it computed")
    return _record(engine, trial_id, "description", {"text_raw": text_raw, "text_norm": norm})


def _record(engine: Engine, trial_id: int, part: str, values: dict) -> bool:
    """Insert a response once. The dedup is the UNIQUE(trial_id) conflict clause, never a read-then-write; the
    read of shown_at only computes the server-side response time."""
    with session_scope(engine) as session:
        row = session.execute(
            select(Trial.shown_at, Participant.part).join(Participant, Participant.id == Trial.participant_id)
            .where(Trial.id == trial_id)
        ).first()
        if row is None:
            raise UserError(f"unknown trial {trial_id}")
        if row.part != part:
            raise UserError(f"trial {trial_id} belongs to the {row.part!r} part, not {part!r}")
        now = _utcnow()
        rt_ms = None if row.shown_at is None else max(0, round((now - row.shown_at).total_seconds() * 1000))
        result = session.execute(
            sqlite_insert(Response).values(trial_id=trial_id, submitted_at=now, rt_ms=rt_ms, **values)
            .on_conflict_do_nothing(index_elements=["trial_id"])
        )
        return result.rowcount == 1


def finish(engine: Engine, participant_id: int, code_factory: Callable[[], str]) -> str:
    """Issue the completion code exactly once and return it; later calls return the stored code.

    Refused while trials are unanswered or for a screened-out participant, so a code always means a full run."""
    with session_scope(engine) as session:
        participant = session.get(Participant, participant_id)
        if participant is None:
            raise UserError(f"unknown participant {participant_id}")
        if participant.completion_code is not None:
            return participant.completion_code
        if participant.status == "screened_out":
            raise UserError(f"participant {participant_id} was screened out and gets no completion code")
        open_trials = session.execute(
            select(func.count(Trial.id)).where(Trial.participant_id == participant_id,
                                               Trial.id.not_in(select(Response.trial_id)))
        ).scalar()
        if open_trials:
            raise UserError(f"participant {participant_id} still has {open_trials} unanswered trials")
        code = code_factory()
        if not isinstance(code, str) or not code:
            raise UserError(f"completion code factory returned {code!r}")
        participant.completion_code = code
        participant.status = "completed"
        participant.completed_at = _utcnow()
        return code


def screen_out(engine: Engine, participant_id: int, reason: str) -> bool:
    """Mark a participant screened out (failed attention check, PID seen in the other part); True if this call did.
    A completed participant stays completed: the code was already paid for."""
    with session_scope(engine) as session:
        result = session.execute(
            update(Participant).where(Participant.id == participant_id,
                                      Participant.status.in_(("consented", "in_progress")))
            .values(status="screened_out").execution_options(synchronize_session=False)
        )
        changed = result.rowcount == 1
        if changed:
            session.add(Event(participant_id=participant_id, ts=_utcnow(), kind="screened_out",
                              detail=json.dumps({"reason": reason})))
        return changed


def log_event(engine: Engine, kind: str, participant_id: int | None = None, detail: dict | None = None) -> None:
    """Append to the audit log; ``detail`` is stored as JSON (non-JSON values via str)."""
    with session_scope(engine) as session:
        session.add(Event(participant_id=participant_id, ts=_utcnow(), kind=kind,
                          detail=None if detail is None else json.dumps(detail, sort_keys=True, default=str)))


ITEM_KINDS = ("main", "attention", "describe")


def add_items(engine: Engine, study_id: str, items: list[dict], answer_key: dict[str, str]) -> int:
    """Store the study's items with their answer key; returns how many rows this call inserted (0 on a re-run).

    Part 1 items (main and attention) need a key in ``OPTIONS``; Part 2 items have none. Every asset must be
    registered for the study."""
    rows = []
    for item in items:
        item_id, part, kind, assets = item.get("item_id"), item.get("part"), item.get("kind"), item.get("assets")
        if not isinstance(item_id, str) or not item_id or part not in (1, 2) or kind not in ITEM_KINDS:
            raise UserError(f"bad study item {item!r}: needs item_id, part 1|2 and kind in {ITEM_KINDS}")
        if not isinstance(assets, list | tuple) or len(assets) != ASSETS_PER_TRIAL:
            raise UserError(f"item {item_id} needs {ASSETS_PER_TRIAL} asset ids, got {assets!r}")
        correct = answer_key.get(item_id) if part == 1 else None
        if part == 1 and correct not in OPTIONS:
            raise UserError(f"Part 1 item {item_id} has no answer key in {OPTIONS} (got {correct!r})")
        rows.append({"item_id": item_id, "study_id": study_id, "part": part, "kind": kind,
                     "method": item.get("method"), "domain": item.get("domain"), "attr_i": item.get("attr_i"),
                     "attr_j": item.get("attr_j"), "assets": json.dumps(list(assets)), "correct_option": correct})
    with session_scope(engine) as session:
        if session.get(Study, study_id) is None:
            raise UserError(f"unknown study {study_id!r}; register it (add_study) before its items")
        used = {a for row in rows for a in json.loads(row["assets"])}
        known = set(session.execute(select(Asset.asset_id).where(Asset.study_id == study_id,
                                                                 Asset.asset_id.in_(used))).scalars())
        if used - known:
            raise UserError(f"items use assets not registered for study {study_id!r}: {sorted(used - known)[:5]}")
        if not rows:
            return 0
        result = session.execute(sqlite_insert(StudyItem).values(rows)
                                 .on_conflict_do_nothing(index_elements=["item_id"]))
        return max(result.rowcount, 0)


def study_items(engine: Engine, study_id: str) -> tuple[list[dict], dict[str, str]]:
    """(items without their answer key, {item_id: correct option}) for ``design.plan_trials``; server side only."""
    with session_scope(engine) as session:
        rows = session.execute(select(StudyItem).where(StudyItem.study_id == study_id)
                               .order_by(StudyItem.item_id)).scalars().all()
        items = [{"item_id": r.item_id, "part": r.part, "kind": r.kind, "method": r.method, "domain": r.domain,
                  "attr_i": r.attr_i, "attr_j": r.attr_j, "assets": json.loads(r.assets)} for r in rows]
        key = {r.item_id: r.correct_option for r in rows if r.correct_option is not None}
        return items, key


def find_participant(engine: Engine, study_id: str, external_pid: str) -> dict | None:
    """The participant row for ``external_pid`` in this study, or None before consent."""
    with session_scope(engine) as session:
        row = session.execute(select(Participant).where(Participant.study_id == study_id,
                                                        Participant.external_pid == external_pid)).scalar_one_or_none()
        return None if row is None else {c.key: getattr(row, c.key) for c in Participant.__table__.columns}


def study_exists(engine: Engine, study_id: str) -> bool:
    with session_scope(engine) as session:
        return session.get(Study, study_id) is not None


def count_trials(engine: Engine, participant_id: int) -> int:
    """How many trials the participant's plan has (0: no plan was made)."""
    with session_scope(engine) as session:
        return session.execute(select(func.count(Trial.id)).where(Trial.participant_id == participant_id)).scalar()


def is_answered(engine: Engine, trial_id: int) -> bool:
    """Whether the trial already has a response (the app uses it to tell a participant that a late or repeated
    submit was not counted again; the UNIQUE constraint, not this check, is what prevents duplicates)."""
    with session_scope(engine) as session:
        return session.execute(select(Response.id).where(Response.trial_id == trial_id)).first() is not None


def response_correct(engine: Engine, trial_id: int) -> bool | None:
    """Whether the stored answer of a Part 1 trial matches its key (None without an answer or a key); server side,
    used for practice feedback."""
    with session_scope(engine) as session:
        row = session.execute(select(Trial.correct_option, Response.choice)
                              .join(Response, Response.trial_id == Trial.id).where(Trial.id == trial_id)).first()
        if row is None or row.correct_option is None or row.choice is None:
            return None
        return row.choice == row.correct_option


# ----------------------------------------------------------------------------------------------- backup and export


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
    source_path = Path(_sqlite_url(engine.url).database).resolve()
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


def export_frames(engine: Engine) -> dict[str, pd.DataFrame]:
    """The analysis input: 'responses' (one row per answered trial), 'participants', 'trials' and 'assets'.

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
            .order_by(Participant.id, Trial.seq)
        ).mappings().all()

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

    participants_frame = pd.DataFrame(participants, columns=[c.key for c in Participant.__table__.columns])
    for column in ("consent_at", "started_at", "completed_at"):
        participants_frame[column] = pd.to_datetime(participants_frame[column], utc=True)

    trial_columns = [c.key for c in Trial.__table__.columns]
    trials_frame = pd.DataFrame(trials, columns=trial_columns)
    trials_frame["assets"] = [json.loads(a) for a in trials_frame["assets"]]
    for column in ("attr_i", "attr_j"):
        trials_frame[column] = trials_frame[column].astype("Int64")
    trials_frame["shown_at"] = pd.to_datetime(trials_frame["shown_at"], utc=True)
    answered_ids = {r["trial_id"] for r in answered}
    trials_frame["answered"] = trials_frame["id"].isin(answered_ids).astype(bool)

    assets_frame = pd.DataFrame(assets, columns=[c.key for c in Asset.__table__.columns])
    return {"responses": responses, "participants": participants_frame, "trials": trials_frame,
            "assets": assets_frame}


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
