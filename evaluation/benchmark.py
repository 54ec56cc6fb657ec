"""`stylex benchmark`: every registered method against every registered metric on one dataset (DESIGN section 7).

classifier -> StylEx and StylEx w/o CST -> style statistics -> AttFind (both generators) -> each method's
attribute set (`evaluation.methods`: StylEx, StylEx w/o CST, Wu et al. and the baselines under `baselines/`) ->
figures -> each metric (`evaluation.metrics`: generator faithfulness, sufficiency and faithful sufficiency, oracle
validity, FID under perturbation, COUT, proximity, ground-truth recovery and off-target changes on shapes, runtime;
`--metrics` picks a subset) -> report.

Everything lands in the run directory and is reused on the next call: trained models are resumed (a finished
one is loaded), effect tensors resume chunk by chunk, and every metric's result per method is stored in
`benchmark/<metric>-<method>.json` under a key of what it depends on (model weights, styles, attributes,
settings), so rerunning after a crash or with a changed report only recomputes what changed (runtime, a property of
the machine and the moment, is measured again every time).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch

from evaluation import generators, report
from evaluation.methods import Method
from evaluation.methods import registered as registered_methods
from evaluation.metrics import Evaluated, Metric, MetricInputs
from evaluation.metrics import registered as registered_metrics
from evaluation.metrics.generators import RECONSTRUCTION_GRID
from stylex.artifacts import config_diff, read_json
from stylex.config import Config, save_config
from stylex.errors import UserError
from stylex.figures import render_attributes
from stylex.pipeline import AttFindResult, RunContext, attfind_variant, open_run
from stylex.resources import find_folder, folder_candidates
from stylex.run import RunDir, variant_name
from stylex.runtime import code_version
from stylex.train_classifier import train_classifier
from stylex.training import train_stylex

log = logging.getLogger("stylex.benchmark")

# ---- bookkeeping ----------------------------------------------------------------------------------------------

class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 2)


# ---- models ---------------------------------------------------------------------------------------------------

def starting_folder(config: Config) -> Path | None:
    """evaluation.start_from as a folder: relative to the working directory, else inside the installed package
    (where the presets' `models/demo` and `models/fashion-sneaker-boot` are shipped)."""
    if not config.evaluation.start_from:
        return None
    folder = find_folder(config.evaluation.start_from)
    if folder is not None:
        return folder
    looked = " and ".join(str(path) for path in folder_candidates(config.evaluation.start_from))
    raise UserError(f"evaluation.start_from: no folder {config.evaluation.start_from!r} (looked at {looked}); "
                    "set it to a folder holding classifier.pt and checkpoints/, "
                    "or to an empty value (--set evaluation.start_from=) to train from scratch")


def copy_starting_models(config: Config, run_dir: Path) -> list[str]:
    """Copy trained models from evaluation.start_from into a run that lacks them, after checking that they were
    trained with this run's data, classifier, model, training and loss settings (else training would refuse
    to resume them, or explain another classifier)."""
    folder = starting_folder(config)
    if folder is None:
        return []
    shipped = RunDir(folder)
    if not shipped.config.is_file():
        raise UserError(f"{folder} has no config.json describing how its models were trained")
    current = config.to_dict()
    sections = ("data", "classifier", "oracle", "model", "train", "loss")
    differing = config_diff({section: current[section] for section in sections},
                            read_json(shipped.config), ignore=("steps", "cst", "root"))
    if differing:
        raise UserError(f"the models in {folder} were trained with other settings ({', '.join(differing)}); "
                        "train from scratch with --set evaluation.start_from= (empty), or use their settings")
    copied = []
    run = RunDir(run_dir)
    for target in run.starting_files:
        name = target.relative_to(run.root).as_posix()
        source = shipped.root / name
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copied.append(name)
    if copied:
        print(f"starting from the trained models in {folder}: {', '.join(copied)} "
              "(--set evaluation.start_from= trains from scratch)")
    return copied


def prepare_models(config: Config, run_dir: Path) -> dict:
    """Train or reuse the classifier and both generators; returns their held-out metrics."""
    copy_starting_models(config, run_dir)
    classifier = train_classifier(config, run_dir)
    oracle = train_classifier(config, run_dir, oracle=True)
    metrics = {"classifier": {"arch": classifier.arch, **classifier.metrics},
               "oracle": {"arch": oracle.arch, **oracle.metrics}}
    for cst in (True, False):
        variant_config = Config.from_dict({**config.to_dict(), "train": {**config.to_dict()["train"], "cst": cst}})
        resume = RunDir(run_dir).checkpoint(variant_name(cst)).exists()
        monitor = generators.training_monitor(variant_config, run_dir, classifier, classifier_device(classifier))
        metrics[variant_name(cst)] = train_stylex(variant_config, run_dir, classifier, resume=resume, monitor=monitor)
    return metrics


def classifier_device(classifier) -> torch.device:
    return next(classifier.parameters()).device


# ---- methods --------------------------------------------------------------------------------------------------

def figures_for(method: Method, ctx: RunContext, result: AttFindResult, report_dir: Path) -> list[dict]:
    """Render the method's attributes (panels, flicker and sweep GIFs) with its own edit rule and copy them into
    the report; returns the rows the report lists."""
    source = ctx.run.figures(method.key)
    rendered = render_attributes(ctx, method.attributes, result.styles, result.stats, source, effects=result.effects)
    target = report_dir / "figures" / method.key
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    rows = []
    for entry in rendered.summary:
        stem = f"figures/{method.key}/attribute-{entry['rank']:02d}"
        rows.append({"rank": entry["rank"], "layer": entry["layer"], "channel": entry["channel"],
                     "direction": "max" if entry["direction"] else "min",
                     "target": method.attributes.classes[entry["target"]], "score": entry.get("score"),
                     "mean_effect": entry.get("mean_effect"), "panel": f"{stem}.png",
                     "flicker": f"{stem}-flicker.gif", "sweep": f"{stem}-sweep.gif"})
    return rows


# ---- the benchmark --------------------------------------------------------------------------------------------

def chosen_metrics(names: Sequence[str] | None = None) -> list[Metric]:
    """The registered metrics named in `names` (all of them when None), in measuring order."""
    metrics = registered_metrics()
    if names is None:
        return list(metrics)
    known = {metric.name for metric in metrics}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise UserError(f"unknown metric {', '.join(map(repr, unknown)) or '(none given)'}; metrics: "
                        f"{', '.join(metric.name for metric in metrics)}")
    return [metric for metric in metrics if metric.name in names]


def run_benchmark(config: Config, run_dir: Path, progress: bool = True, metrics: Sequence[str] | None = None) -> Path:
    """The whole comparison on one run directory; returns the report folder. `metrics`: the names of the
    registered metrics to measure (default: all); the report holds the sections of those measured."""
    started = time.perf_counter()
    chosen = chosen_metrics(metrics)
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    timer = Timer()
    save_config(config, run_dir)
    report_dir = run.report

    with timer.stage("models"):
        model_metrics = prepare_models(config, run_dir)
    results: dict[str, tuple[RunContext, AttFindResult]] = {}
    with timer.stage("attfind"):
        for cst in (True, False):
            ctx = open_run(run_dir, cst)
            result = attfind_variant(ctx, progress=progress)
            if result is None:
                raise UserError("stylex benchmark runs in one process; use torchrun for `stylex attfind` only")
            results[ctx.variant] = (ctx, result)
    items = []
    with timer.stage("selection"):
        for spec in registered_methods():
            ctx, result = results[spec.variant]
            attributes = spec.select(ctx, result)
            attributes.save(run.attributes(spec.key))
            count = min(config.evaluation.num_images or len(result.indices), len(result.indices))
            items.append(Evaluated(Method(spec, attributes, result.stats), ctx, result, count))
    device = items[0].ctx.device

    with timer.stage("figures"):
        method_rows = {}
        for item in items:
            method_rows[item.method.key] = {
                "label": item.method.label, "variant": item.method.variant, "edit_rule": item.method.edit_rule,
                "description": item.method.spec.description,
                "attributes": figures_for(item.method, item.ctx, item.result, report_dir)}
    inputs = MetricInputs(config, run, items, device, report_dir, progress)
    measured: dict[str, dict] = {}
    for metric in chosen:
        if not metric.applies(config):
            log.info("%s: skipped for %s (%s)", metric.name, config.data.dataset, metric.skipped_because)
            continue
        with timer.stage(metric.name):
            measured[metric.name] = metric.measure(inputs)

    ctx0 = items[-1].ctx
    metrics = {
        "format": "stylex-benchmark", "format_version": 1,
        "run": {"name": config.name, "config": config.name, "run_dir": str(run_dir), "code_version": code_version(),
                "device": str(device), "created": datetime.now().isoformat(timespec="seconds")},
        "dataset": {"name": config.data.dataset, "classes": ctx0.classes,
                    "resolution": ctx0.model.generator.cfg.img_resolution},
        "classifier": {"arch": model_metrics["classifier"].get("arch"),
                       "test_accuracy": model_metrics["classifier"].get("test", {}).get("accuracy"),
                       "oracle_arch": model_metrics["oracle"].get("arch"),
                       "oracle_test_accuracy": model_metrics["oracle"].get("test", {}).get("accuracy")},
        "methods": method_rows,
        "generators": measured.get("generators"),
        "reconstruction_grid": RECONSTRUCTION_GRID if "generators" in measured else None,
        "sufficiency": measured.get("sufficiency"),
        "table3": table3(config, measured.get("sufficiency")),
        "fid": measured.get("fid"),
        "timings": timer.seconds,
        "settings": {"attfind": dataclasses.asdict(config.attfind),
                     "evaluation": dataclasses.asdict(config.evaluation)},
    }
    metrics.update({name: value for name, value in measured.items() if name not in metrics})
    metrics = {name: value for name, value in metrics.items() if value is not None}
    metrics["run"]["wall_time_s"] = round(time.perf_counter() - started, 1)
    written = report.write_report(metrics, report_dir)
    print(summary_line(metrics))
    print(f"report: {report_dir / 'index.html'} ({len(written)} files; wall time {metrics['run']['wall_time_s']} s)")
    return report_dir


def table3(config: Config, sufficiency: dict | None) -> dict | None:
    """Table 3's row for this dataset: class-level sufficiency at evaluation.table_k per method."""
    if sufficiency is None:
        return None
    k = config.evaluation.table_k
    row = {"dataset": config.data.dataset}
    for key, strategies in sufficiency["curves"].items():
        cell = strategies["class_level"][k - 1] if strategies.get("class_level") else None
        row[key] = None if cell is None else {name: cell[name] for name in ("fraction", "ci_low", "ci_high")}
    return {"k": k, "strategy": "class_level", "rows": [row]}


def summary_line(metrics: dict) -> str:
    if "table3" not in metrics:
        names = [metric.name for metric in registered_metrics() if metric.name in metrics]
        return f"measured: {', '.join(names) or 'no metric'} (no Table 3 without sufficiency)"
    row = metrics["table3"]["rows"][0]
    cells = "; ".join(f"{method['label']} {report.format_interval(row.get(key))}"
                      for key, method in metrics["methods"].items())
    return (f"Table 3 ({row['dataset']}, sufficiency at k = {metrics['table3']['k']}, "
            f"N = {metrics['sufficiency']['num_images']}): {cells}")
