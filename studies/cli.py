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
                                           display_size=args.display_size, forward_images=args.forward_images,
                                           device=args.device)
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
    screening = {"STYLEX_STUDY_COMPREHENSION_FAILURES": args.comprehension_failures,
                 "STYLEX_STUDY_ATTENTION_FAILURES": args.attention_failures,
                 "STYLEX_PROLIFIC_RETURN_URL": args.return_url}
    env.update({name: value for name, value in screening.items() if value is not None})  # the app checks them
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
    from studies.plan_file import find_plan, no_plan_note

    # the plan is looked up before anything is read or written, so a mistyped --plan stops the command cleanly
    plan = find_plan(args.plan, args.materials)
    frames = _read_frames(args.db)
    result = analysis.analyze(frames["responses"])
    if len(frames["forward"]):  # Part 3 has its own response format and analysis
        from studies.forward_analysis import analyze_forward

        result["forward"] = analyze_forward(frames["forward"])
    result["plan"] = plan.as_json() if plan is not None else {"path": None, "summary": no_plan_note(args.materials)}
    print(result["plan"]["summary"])
    written = analysis.write_report(result, args.out)
    (args.out / "analysis.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print("wrote " + ", ".join(str(p) for p in [*written.values(), args.out / "analysis.json"]))


@_database_errors
def cmd_status(args: argparse.Namespace) -> None:
    """Print where the study stands; with --watch, again every N seconds until Ctrl-C (which ends it cleanly)."""
    import time

    from studies import db
    from studies.status import format_status, read_status
    from stylex.errors import UserError

    if args.watch is not None and not args.watch > 0:
        raise UserError(f"--watch takes a number of seconds above 0, got {args.watch}")
    engine = db.open_readonly(args.db)  # never creates a database; each read is a fresh snapshot
    try:
        where = str(db.database_path(args.db))
        print(format_status(read_status(engine, args.study, where)), end="", flush=True)
        while args.watch is not None:
            time.sleep(args.watch)
            # clear the terminal so the tables stay in place; a pipe or log gets a separator instead
            print("\x1b[2J\x1b[H" if sys.stdout.isatty() else "\n" + "-" * 80 + "\n", end="")
            print(format_status(read_status(engine, args.study, where)), end="", flush=True)
    except KeyboardInterrupt:
        print()  # Ctrl-C is how --watch ends: not an error
    finally:
        engine.dispose()


@_database_errors
def cmd_plan(args: argparse.Namespace) -> None:
    from studies.plan import (
        DEFAULT_EFFECT,
        DEFAULT_FORWARD_EFFECT,
        parse_effect,
        parse_forward_effect,
        parse_grid,
        plan_text,
        study_design,
    )
    from studies.plan_file import PLAN_NAME, check_plan_target, write_plan

    effects = [parse_effect(text) for text in (args.effect or [DEFAULT_EFFECT])]
    forward_effects = [parse_forward_effect(text) for text in (args.forward_effect or [DEFAULT_FORWARD_EFFECT])]
    grid = parse_grid(args.grid)
    design = study_design(args.materials, args.study, args.db)
    out = args.out if args.out is not None else args.materials / PLAN_NAME
    check_plan_target(out, args.force)  # before the power analysis, which takes a while
    print(f"power analysis: {len(grid)} x {args.sims} simulated studies per effect, each analysed with the GEE",
          flush=True)
    if design.forward is not None:
        print(f"Part 3 power analysis: {len(grid)} x {args.sims} simulated studies per --forward-effect, each "
              "analysed with the GEE", flush=True)
    record = write_plan(plan_text(design, out, effects, grid, args.sims, args.seed, args.target_power,
                                  forward_effects=forward_effects), out, force=args.force)
    print(f"wrote {record.path}")
    print(f"plan SHA-256: {record.sha256}")


@_database_errors
def cmd_release(args: argparse.Namespace) -> None:
    """Free a participant id from the browser it is bound to (a participant who lost their browser): the next browser
    that opens the study link with this id binds it and continues where the participant stopped."""
    from studies import db

    db.open_readonly(args.db).dispose()  # a mistyped path or a file that is no study database: refused, untouched
    engine = db.make_engine(args.db)
    try:
        released = db.release_session(engine, args.study, args.pid)  # logged as a 'session_released' event
    finally:
        engine.dispose()
    if released:
        print(f"released participant {args.pid!r} of study {args.study!r}: the next browser that opens the study "
              "link with this id continues the study")
    else:
        print(f"participant {args.pid!r} of study {args.study!r} is not bound to a browser; nothing to release")


@_database_errors
def cmd_simulate(args: argparse.Namespace) -> None:
    """Simulated participants for a pilot: observers that see only what the pages show answer through the same
    database calls as the app, so status, export, analysis and the plan's commands can be tried before anyone is
    paid. Refused on a study with real participants (their data must not mix with simulated ones)."""
    from sqlalchemy import select

    from studies import db
    from studies.manifest import asset_paths
    from studies.status import choose_study
    from stylex.errors import UserError

    if args.participants < 1:
        raise UserError(f"--participants must be at least 1, got {args.participants}")
    if not args.noise >= 0:
        raise UserError(f"--noise must be >= 0 (0: a noise-free observer), got {args.noise}")
    db.open_readonly(args.db).dispose()  # a mistyped path or a file that is no study database: refused, untouched
    where = str(db.database_path(args.db))
    engine = db.make_engine(args.db)
    try:
        study_id = choose_study(engine, args.study, where)
        check_serve(args.db, args.materials, study_id)
        with db.session_scope(engine) as session:
            people = session.execute(select(db.Participant.external_pid, db.Participant.part)
                                     .where(db.Participant.study_id == study_id)).all()
        real = sorted(pid for pid, _ in people if not pid.startswith("sim-"))
        if real:
            raise UserError(f"study {study_id!r} in {where} has {len(real)} real participant(s) (e.g. {real[0]!r}); "
                            "simulated ones would mix with their data. Pilot on a copy: stylex study backup --db "
                            f"{args.db} --out pilot.sqlite, then pass --db sqlite:///pilot.sqlite")
        clash = sorted({part for pid, part in people if pid.startswith(f"sim-{args.seed}-") and part != args.part})
        if clash:
            raise UserError(f"the simulated participants sim-{args.seed}-NNNN of study {study_id!r} take part in "
                            f"{clash[0]}, not {args.part}; pass another --seed")
        paths = asset_paths(args.materials)

        def load(asset_id: str) -> bytes:
            return paths[asset_id].read_bytes()

        if args.part == "forward":
            from studies.forward import run_forward_study_participants

            items, _ = db.study_items(engine, study_id)
            if not any(item.get("part") == 3 for item in items):
                raise UserError(f"study {study_id!r} has no Part 3 material; build it with `stylex study build "
                                "--forward-images N` (N > 0)")
            ids = run_forward_study_participants(engine, study_id, args.participants, load, noise=args.noise,
                                                 seed=args.seed)
        else:
            from studies.simulate import Observer, run_participants

            items, key = db.study_items(engine, study_id)
            ids = run_participants(engine, study_id, items, key, args.part, args.participants,
                                   lambda seed: Observer(load, noise=args.noise, seed=seed), seed=args.seed)
    finally:
        engine.dispose()
    print(f"{len(ids)} simulated participant(s) of {args.part} in study {study_id!r} (ids sim-{args.seed}-0000 to "
          f"sim-{args.seed}-{args.participants - 1:04d}); see them with `stylex study status --db {args.db}`, "
          f"analyse them with `stylex study analyze --db {args.db} --out DIR`")


@_database_errors
def cmd_upgrade(args: argparse.Namespace) -> None:
    """Bring a study database written by an earlier version to this schema, in place (columns added, rows kept)."""
    from studies import db

    before = db.upgrade_schema(args.db)
    if before == db.SCHEMA_VERSION:
        print(f"{args.db} already has schema version {before}; nothing to do")
    else:
        print(f"upgraded {args.db} from schema version {before} to {db.SCHEMA_VERSION}")


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
    build.add_argument("--forward-images", type=int, default=20,
                       help="Part 3 (forward simulation) test images, classes balanced; 0: no Part 3 material")
    build.add_argument("--device", help="auto | cpu | cuda")
    build.set_defaults(handler=cmd_build)

    serve = sub.add_parser("serve", help="run the participant app (streamlit run studies/app.py)")
    serve.add_argument("--db", required=True)
    serve.add_argument("--materials", required=True, type=Path)
    serve.add_argument("--study", required=True)
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--address", default="127.0.0.1", help="bind address (put a TLS reverse proxy in front)")
    serve.add_argument("--comprehension-failures", metavar="N|off",
                       help="screen a participant out after N failed comprehension checks (default 3)")
    serve.add_argument("--attention-failures", metavar="N|off",
                       help="screen out after N wrong attention checks (default off: record, exclude in the analysis)")
    serve.add_argument("--return-url", metavar="URL",
                       help="where a screened-out participant returns to, e.g. Prolific's "
                       "https://app.prolific.com/submissions/complete?cc=CODE")
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
    analyze.add_argument("--plan", type=Path, help="the pre-registered plan followed (default: the materials')")
    analyze.add_argument("--materials", type=Path, help="materials folder whose preregistration.md is the plan")
    analyze.set_defaults(handler=cmd_analyze)

    status = sub.add_parser("status", help="progress, balance of methods, failed checks and time per screen")
    status.add_argument("--db", required=True)
    status.add_argument("--study", help="study id (default: the database's only study)")
    status.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    status.set_defaults(handler=cmd_status)

    plan = sub.add_parser("plan", help="write the pre-registration (hypotheses, test, exclusions, planned N) and "
                                       "print its hash")
    plan.add_argument("--materials", required=True, type=Path, help="materials folder (manifest.json)")
    plan.add_argument("--effect", action="append", metavar="ACC,REF_ACC",
                      help="accuracy of the compared method, then of the reference, to detect (repeatable; "
                           "default 0.8,0.6)")
    plan.add_argument("--forward-effect", action="append", metavar="ACC,CONTROL_ACC",
                      help="Part 3: accuracy of predicting the classifier in a method group, then in control, to "
                           "detect (repeatable; default 0.8,0.6; used when the materials have Part 3)")
    plan.add_argument("--db", help="study database URL (read-only): the classes of Part 3's test images, needed "
                                   "when the materials have Part 3")
    plan.add_argument("--out", type=Path, help="plan file (default: MATERIALS/preregistration.md)")
    plan.add_argument("--study", help="the study's id in its database (default: the manifest's)")
    plan.add_argument("--grid", default="10,20,40,80",
                      help="participant numbers to simulate (comma-separated; Part 3: per group)")
    plan.add_argument("--sims", type=int, default=200, help="simulated studies per number of participants")
    plan.add_argument("--target-power", type=float, default=0.8)
    plan.add_argument("--seed", type=int, default=0)
    plan.add_argument("--force", action="store_true", help="replace the plan already at --out")
    plan.set_defaults(handler=cmd_plan)

    release = sub.add_parser("release", help="free a participant id bound to a lost browser, so it can continue")
    release.add_argument("--db", required=True)
    release.add_argument("--study", required=True)
    release.add_argument("--pid", required=True, help="the participant's id (PROLIFIC_PID)")
    release.set_defaults(handler=cmd_release)

    simulate = sub.add_parser("simulate", help="pilot: simulated participants answer through the app's database calls "
                                               "(refused on a study with real participants)")
    simulate.add_argument("--db", required=True)
    simulate.add_argument("--materials", required=True, type=Path, help="the study's materials folder (the GIFs "
                                                                         "the simulated participants look at)")
    simulate.add_argument("--study", help="study id (default: the database's only study)")
    simulate.add_argument("--part", required=True, choices=("coherence", "description", "forward"))
    simulate.add_argument("--participants", type=int, default=10, help="how many (Part 3: in all, over the groups)")
    simulate.add_argument("--noise", type=float, default=0.1,
                          help="SD of the noise on the observers' similarity scores (0: noise-free)")
    simulate.add_argument("--seed", type=int, default=0, help="participants sim-SEED-NNNN; another seed adds others")
    simulate.set_defaults(handler=cmd_simulate)

    upgrade = sub.add_parser("upgrade", help="bring a study database of an earlier version to this schema (stop the "
                                             "app first)")
    upgrade.add_argument("--db", required=True)
    upgrade.set_defaults(handler=cmd_upgrade)
