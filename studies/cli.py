"""`stylex study ...`: build materials into a study database, serve the app, export, back up, analyse.

Export and backup run on the server, from the command line, never through the participant app. The reading
commands (export, backup, analyze) open the database read-only and never create one: a mistyped --db path, a file
that is not a study database or a missing study is one `error: ...` line and exit status 2, with nothing written;
`serve` checks its materials, database and study the same way before streamlit starts.

The commands plug into `stylex` through the `stylex.commands` entry-point group (pyproject.toml names
:func:`add_study_commands`), since stylex imports nothing of studies.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def _engine(url: str):
    from studies import db

    engine = db.get_engine(url)
    db.create_schema(engine)
    return engine


def _database_errors(handler):
    """Turn a database error into the one-line `error: ...` of the CLI (file-system errors are turned into one
    line by `stylex.cli.main`, which runs every command)."""

    @functools.wraps(handler)
    def wrapped(args: argparse.Namespace) -> None:
        from sqlalchemy.exc import DBAPIError

        from stylex.errors import UserError

        try:
            handler(args)
        except DBAPIError as err:
            raise UserError(f"study database {args.db}: {err.orig}") from None

    return wrapped


@_database_errors
def cmd_build(args: argparse.Namespace) -> None:
    from studies.manifest import load_study
    from studies.materials import build_materials

    manifest, answer_key = build_materials(args.run, args.out, methods=tuple(args.methods.split(",")),
                                           num_attributes=args.attributes, seed=args.seed,
                                           display_size=args.display_size, device=args.device)
    study_id = load_study(_engine(args.db), manifest, answer_key, study_id=args.study)
    print(f"materials in {args.out} ({manifest.name}); study {study_id!r} with its answer key in {args.db}")
    print(f"serve it: stylex study serve --db {args.db} --materials {args.out} --study {study_id}")


def _read_frames(url: str) -> dict:
    """The study's tables, read in one read-only transaction (db.open_readonly: nothing is created)."""
    from studies import db

    engine = db.open_readonly(url)
    try:
        return db.export_frames(engine)
    finally:
        engine.dispose()


def check_serve(db_url: str, materials: Path, study_id: str) -> None:
    """Everything `study serve` needs, checked before streamlit starts: the materials folder and its manifest (every
    asset present with its sha256), an existing study database, and the study id in it."""
    from sqlalchemy import select

    from studies import db
    from studies.manifest import load_manifest, manifest_file
    from stylex.errors import UserError

    if not Path(materials).is_dir():
        raise UserError(f"no materials folder at {materials}; build it with `stylex study build --out ...`")
    if not manifest_file(materials).is_file():
        raise UserError(f"{materials} holds no manifest.json; build the materials with `stylex study build`")
    load_manifest(materials)
    engine = db.open_readonly(db_url)
    try:
        if not db.study_exists(engine, study_id):
            with db.session_scope(engine) as session:
                known = list(session.execute(select(db.Study.id).order_by(db.Study.id)).scalars())
            raise UserError(f"study {study_id!r} is not in {db.database_path(db_url)} "
                            f"(it holds {', '.join(map(repr, known)) or 'no study'})")
    finally:
        engine.dispose()


@_database_errors
def cmd_serve(args: argparse.Namespace) -> None:
    check_serve(args.db, args.materials, args.study)
    env = {**os.environ, "STYLEX_STUDY_DB": args.db, "STYLEX_STUDY_MATERIALS": str(args.materials),
           "STYLEX_STUDY_ID": args.study}
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(args.port),
               "--server.address", args.address]
    raise SystemExit(subprocess.call(command, env=env, cwd=APP.parent.parent))


@_database_errors
def cmd_export(args: argparse.Namespace) -> None:
    """CSV files of the study, read in one read-only transaction; string cells that a spreadsheet would run as a
    formula are neutralised (db.csv_safe). The output folder is made only once the database has been read."""
    from studies import db

    frames = _read_frames(args.db)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        # CRLF rows (RFC 4180): the csv writer then quotes any cell holding a CR or LF, so a raw "\r" typed by a
        # participant cannot split a row ("\n" rows leave a lone CR unquoted).
        db.csv_safe(frame).to_csv(args.out / f"{name}.csv", index=False, lineterminator="\r\n")
        print(f"wrote {args.out / f'{name}.csv'} ({len(frame)} rows)")


@_database_errors
def cmd_backup(args: argparse.Namespace) -> None:
    from studies import db

    print(f"wrote {db.backup(args.db, args.out)}")  # a URL is opened read-only


@_database_errors
def cmd_analyze(args: argparse.Namespace) -> None:
    from studies import analysis

    responses = _read_frames(args.db)["responses"]
    result = analysis.analyze(responses)
    written = analysis.write_report(result, args.out)
    (args.out / "analysis.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print("wrote " + ", ".join(str(p) for p in [*written.values(), args.out / "analysis.json"]))


def add_study_commands(commands) -> None:
    """Add `study` and its subcommands to the `stylex` subcommands (`commands`: argparse's subparsers action)."""
    study = commands.add_parser("study", help="the user study: build, serve, export, back up, analyse",
                                description="Two-part user study (DESIGN section 8) on SQLite.")
    sub = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND", required=True)

    build = sub.add_parser("build", help="render the materials of a benchmarked run and load them into a study DB")
    build.add_argument("--run", required=True, type=Path, help="run directory after `stylex benchmark`")
    build.add_argument("--out", required=True, type=Path, help="materials folder (GIFs + manifest.json)")
    build.add_argument("--db", required=True, help="database URL, e.g. sqlite:///study.db")
    build.add_argument("--study", help="study id (default: the manifest's)")
    build.add_argument("--methods", default="stylex,wu", help="attribute sets to compare (comma-separated)")
    build.add_argument("--attributes", type=int, default=6, help="top attributes per method")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--display-size", type=int, default=256, help="GIF size in pixels")
    build.add_argument("--device", help="auto | cpu | cuda")
    build.set_defaults(handler=cmd_build)

    serve = sub.add_parser("serve", help="run the participant app (streamlit run studies/app.py)")
    serve.add_argument("--db", required=True)
    serve.add_argument("--materials", required=True, type=Path)
    serve.add_argument("--study", required=True)
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--address", default="127.0.0.1", help="bind address (put a TLS reverse proxy in front)")
    serve.set_defaults(handler=cmd_serve)

    export = sub.add_parser("export", help="responses, participants and trials as CSV files")
    export.add_argument("--db", required=True)
    export.add_argument("--out", required=True, type=Path)
    export.set_defaults(handler=cmd_export)

    backup = sub.add_parser("backup", help="consistent copy of the live database (SQLite backup API)")
    backup.add_argument("--db", required=True)
    backup.add_argument("--out", required=True, type=Path)
    backup.set_defaults(handler=cmd_backup)

    analyze = sub.add_parser("analyze", help="accuracy tables, method comparison, word agreement, Table 2")
    analyze.add_argument("--db", required=True)
    analyze.add_argument("--out", required=True, type=Path)
    analyze.set_defaults(handler=cmd_analyze)
