"""Opening the study database: one SQLite file, shared by the Streamlit app, the materials builder, the simulated
participants and the analysis.

Why it looks the way it does:

* Streamlit serves every browser session from its own thread, and all of them share one Engine. SQLite allows one
  writer at a time, so every transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken up front and
  waited for under ``busy_timeout``. A deferred ``BEGIN`` that later tries to upgrade its read snapshot to a write
  lock fails with "database is locked" no matter how long the timeout (measured: about half the writes lost at 16
  threads), which is exactly the failure a double-clicked submit button must not cause.
* Reading commands (export, backup, analyze) use :func:`open_readonly`: the file must exist and hold the study
  schema, it is opened with ``mode=ro`` and read in a deferred transaction, so a mistyped path creates nothing and a
  writer holding the lock (the app mid-commit) does not make a reader wait. Only writers create the schema.

Imports no torch: the participant app must start fast and serve prebuilt files only.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy import Engine, MetaData, Table, create_engine, event, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from studies.tables import ADDED_COLUMNS, REBUILT_TABLES, SCHEMA_VERSION, Base, SchemaVersion
from stylex.errors import UserError

BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for the lock. Study load is a few writes per second; 30 s only matters under abuse."""


def sqlite_url(url: str | URL) -> URL:
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
    parsed = sqlite_url(url)
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
    key = sqlite_url(url).render_as_string(hide_password=False)
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
    """Create missing tables and record the schema version, or refuse a file written by another version (an older
    one with how to upgrade it: :func:`upgrade_schema`).

    Runs in one IMMEDIATE transaction (SQLite DDL is transactional), so concurrent callers serialise and a version
    mismatch leaves the file untouched."""
    with engine.begin() as conn:
        versions = conn.execute(select(SchemaVersion.version)).scalars().all() if _has_tables(conn) else []
        if versions and versions != [SCHEMA_VERSION]:
            # Checked before create_all, which would add tables of this version to a file of another one.
            raise UserError(version_mismatch(engine.url.database, versions))
        Base.metadata.create_all(conn)
        if not versions:
            conn.execute(sqlite_insert(SchemaVersion).values(version=SCHEMA_VERSION))


def _has_tables(conn: Any) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                                ).first() is not None


def version_mismatch(path: str | os.PathLike | None, versions: list[int]) -> str:
    """The error for a file of another schema version: how to upgrade an older one, what to use for a newer one."""
    if len(versions) == 1 and versions[0] in UPGRADABLE:
        url = f"sqlite:///{Path(str(path)).resolve()}"
        return (f"{path} has schema version {versions[0]}, this code expects {SCHEMA_VERSION}; upgrade it in place "
                f"(every row is kept; stop the app first): stylex study upgrade --db {url}")
    return (f"{path} has schema version {versions}, this code expects {SCHEMA_VERSION}; use the code that wrote it "
            "(export it and start a new database to move on)")


UPGRADABLE = frozenset(range(min([*ADDED_COLUMNS, *REBUILT_TABLES], default=SCHEMA_VERSION) - 1, SCHEMA_VERSION))
"""The versions :func:`upgrade_schema` can bring to ``SCHEMA_VERSION``: every one from the first that
``ADDED_COLUMNS`` or ``REBUILT_TABLES`` describes the step from."""


def upgrade_schema(url: str | URL) -> int:
    """Bring an existing study database of an older schema version to ``SCHEMA_VERSION`` in place; returns the
    version it had. Never creates a database, and refuses a file that is no study database or of an unknown version.

    Each step appends the columns ``tables.ADDED_COLUMNS`` names, with the DDL a fresh database gets; then the tables
    whose constraints a step changed (``tables.REBUILT_TABLES``) are rebuilt with this code's definition, SQLite's
    documented way to change what ALTER TABLE cannot: create the new table, copy every row, drop the old one, rename
    the new one, recreate its indexes. Foreign keys are switched off during the rebuild (a dropped table is referenced
    by others) and checked over the whole file before the commit. Everything, the version update included, runs in
    one IMMEDIATE transaction: SQLite's DDL is transactional, so any failure leaves the file as it was."""
    path = check_database_file(url)
    engine = make_engine(url)
    raw = engine.raw_connection()
    conn = raw.driver_connection  # autocommit sqlite3 connection (make_engine): the transaction is opened here
    try:
        conn.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction, so before BEGIN
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = _upgrade(conn, path, engine.dialect)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return before
    finally:
        raw.close()
        engine.dispose()


def _upgrade(conn: sqlite3.Connection, path: Path, dialect: Any) -> int:
    """The steps of :func:`upgrade_schema` inside its transaction; returns the version the file had."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone() is None:
        raise UserError(f"{path} is not a study database (no schema_version table)")
    versions = [version for (version,) in conn.execute("SELECT version FROM schema_version")]
    if versions == [SCHEMA_VERSION]:
        return SCHEMA_VERSION
    if len(versions) != 1 or versions[0] not in UPGRADABLE:
        raise UserError(version_mismatch(path, versions))
    steps = range(versions[0] + 1, SCHEMA_VERSION + 1)
    for version in steps:
        for table_name, columns in ADDED_COLUMNS.get(version, {}).items():
            table = Base.metadata.tables[table_name]
            for name in columns:
                ddl = CreateColumn(table.c[name]).compile(dialect=dialect)
                conn.execute(f"ALTER TABLE {table_name} ADD COLUMN {ddl}")
    # after every column is added: a rebuild copies the table's final definition
    for table_name in sorted({name for version in steps for name in REBUILT_TABLES.get(version, ())}):
        _rebuild_table(conn, Base.metadata.tables[table_name], dialect)
    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        table, rowid, parent, _ = broken[0]
        raise UserError(f"{path} holds {len(broken)} row(s) whose reference points nowhere (e.g. {table} row {rowid} "
                        f"-> {parent}); nothing was changed. Export the study and check the file before upgrading")
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
    return versions[0]


def _rebuild_table(conn: sqlite3.Connection, table: Table, dialect: Any) -> None:
    """Replace ``table`` in the file by one made with this code's definition, rows and their ids kept."""
    staging = f"_upgrade_{table.name}"
    metadata = MetaData()  # the other tables too, so the copy's foreign keys resolve when its DDL is compiled
    for other in Base.metadata.sorted_tables:
        if other is not table:
            other.to_metadata(metadata)
    conn.execute(str(CreateTable(table.to_metadata(metadata, name=staging)).compile(dialect=dialect)))
    columns = ", ".join(column.name for column in table.columns)
    conn.execute(f"INSERT INTO {staging} ({columns}) SELECT {columns} FROM {table.name}")
    conn.execute(f"DROP TABLE {table.name}")
    conn.execute(f"ALTER TABLE {staging} RENAME TO {table.name}")
    for index in table.indexes:
        conn.execute(str(CreateIndex(index).compile(dialect=dialect)))


def database_path(url: str | URL) -> Path:
    """The file a SQLite URL names (``sqlite:///path`` or ``sqlite:///file:path?...&uri=true``)."""
    parsed = sqlite_url(url)
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
        raise UserError(version_mismatch(path, versions))


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

