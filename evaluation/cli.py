"""`stylex faithfulness`, `stylex benchmark` and `stylex report`: the evaluation package's subcommands.

They plug into the `stylex` command through the `stylex.commands` entry-point group (pyproject.toml), since stylex
imports nothing of evaluation. The handlers import the library lazily, so `stylex --help` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from stylex.cli import add_command, add_config_options, add_run_options, removed_if_failed, resolve_config
from stylex.config import load_config
from stylex.errors import UserError


def cmd_faithfulness(args: argparse.Namespace) -> None:
    """Reconstruction L1 / LPIPS, explained and oracle agreement, input dependence, swapped-condition agreement,
    factor fidelity and shape IoU (shapes), and a classifier-feature Frechet distance of noise samples, for both
    generators of RUN; writes RUN/faithfulness/VARIANT.json and reconstructions.png."""
    from evaluation.generators import format_faithfulness, measure_run
    from stylex.model import load
    from stylex.run import VARIANTS, RunDir
    from stylex.runtime import process_device

    run = RunDir(args.run)
    if not run.config.is_file():
        raise UserError(f"{args.run} is not a run directory (no config.json); pass --run runs/<name>")
    config = load_config(str(run.config), args.overrides + ([f"device={args.device}"] if args.device else []))
    device = process_device(config.device)
    variants = ["stylex-nocst"] if args.no_cst else [v for v in VARIANTS if run.checkpoint(v).is_file()]
    if not variants:
        raise UserError(f"no generator checkpoints in {run.checkpoints}; train one with `stylex train`")
    models = {variant: load(args.run, variant, device) for variant in variants}
    results = measure_run(config, args.run, models, device, progress=True)
    print(format_faithfulness(results))
    print(f"wrote {run.faithfulness}/")


def cmd_benchmark(args: argparse.Namespace) -> None:
    """Train or reuse the classifier, StylEx and StylEx w/o CST in RUNS/NAME, run AttFind on both and Wu et al. on
    the w/o-CST generator, then measure sufficiency (class-level, Independent, Subset), FID under perturbation
    and, on shapes, ground-truth recovery. Writes RUNS/NAME/report/ (index.html, README.md, metrics.json,
    table3.tex, curves). Rerunning reuses everything that still matches. Settings: the evaluation and attfind
    sections of the config."""
    from evaluation.benchmark import run_benchmark

    if args.features:
        args.overrides.append(f"evaluation.fid_features={args.features}")
    metrics = None if args.metrics is None else [name.strip() for name in args.metrics.split(",") if name.strip()]
    config, run_dir = resolve_config(args)
    with removed_if_failed(run_dir):
        run_benchmark(config, run_dir, metrics=metrics)


COMBINED_REPORT_DIR = Path("reports/combined")


def cmd_report(args: argparse.Namespace) -> None:
    """Render benchmark reports from metrics.json alone. With one RUN_OR_METRICS (a run directory, its report folder
    or a metrics.json), render that run's report again, into its own report folder or --out. With several, write
    one report across them into --out (default reports/combined): Table 3 with a row per dataset, as in the paper,
    its companion tables (the counterfactual metric battery) and a link to each run's own report."""
    from evaluation.report import HTML_FILE, rerender_report, write_combined_report

    if len(args.sources) == 1:
        written = rerender_report(args.sources[0], args.out)
    else:
        written = write_combined_report(args.sources, args.out or COMBINED_REPORT_DIR)
    page = next(path for path in written if path.name == HTML_FILE)
    print(f"report: {page} ({len(written)} files)")


def add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", type=Path, metavar="RUN_OR_METRICS",
                        help="a run directory (runs/NAME), its report folder or a metrics.json written by "
                        "`stylex benchmark`")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder to write the report into (default: the run's own report folder for one run, "
                        f"{COMBINED_REPORT_DIR} for several)")


def add_commands(commands) -> None:
    """Add `faithfulness`, `benchmark` and `report` to the `stylex` subcommands (`commands`: argparse's subparsers
    action)."""
    add_command(commands, "faithfulness", cmd_faithfulness,
                "measure how faithfully the generators reconstruct held-out images", add_run_options)
    bench = add_command(commands, "benchmark", cmd_benchmark,
                        "compare Wu et al., StylEx w/o CST and StylEx; write the report", add_config_options)
    bench.add_argument("--features", choices=["inception", "classifier"],
                       help="FID features: inception (needs pt_inception-2015-12-05-6726825d.pth in the torch "
                       "cache) or classifier (the explained classifier's penultimate layer, reported as a "
                       "'classifier-feature Frechet distance', never as FID); default: evaluation.fid_features")
    bench.add_argument("--metrics", metavar="NAMES",
                       help="comma-separated registered metrics to measure (default: all), e.g. sufficiency,cout; "
                       "an unknown name lists the registered ones")
    add_command(commands, "report", cmd_report,
                "render a run's report again from metrics.json, or one report across runs (Table 3 per dataset)",
                add_report_options)
