"""`stylex benchmark`: the comparison of Wu et al., StylEx w/o CST and StylEx on one dataset (DESIGN section 7).

classifier -> StylEx and StylEx w/o CST -> style statistics -> AttFind (both generators) and Wu et al. (on the
w/o-CST generator) -> sufficiency, FID under perturbation, ground-truth recovery (shapes) -> report.

Everything lands in the run directory and is reused on the next call: trained models are resumed (a finished
one is loaded), effect tensors resume chunk by chunk, and every evaluation stage is stored in
`benchmark/<stage>-<method>.json` under a key of what it depends on (model weights, styles, attributes,
settings), so rerunning after a crash or with a changed report only recomputes what changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch

from baselines import wu
from evaluation import counterfactuals, fid, generators, recovery, report, sufficiency
from evaluation.methods import IMAGE_LEVEL, LABELS, METHODS, VARIANTS, Method
from stylex.attfind import AttributeSet
from stylex.checkpoint import checkpoint_path, variant_name
from stylex.config import Config, save_config
from stylex.data import build_dataset
from stylex.errors import UserError
from stylex.pipeline import (
    AttFindResult,
    RunContext,
    attfind_variant,
    attributes_path,
    open_run,
    render_attributes,
)
from stylex.resources import find_folder, folder_candidates
from stylex.runtime import code_version
from stylex.train_classifier import train_classifier
from stylex.training import train_stylex

log = logging.getLogger("stylex.benchmark")

RECONSTRUCTION_GRID = "reconstructions.png"
STARTING_FILES = ("classifier.pt", "oracle.pt", "checkpoints/stylex.pt", "checkpoints/stylex-nocst.pt",
                  "benchmark/probes.pt")


# ---- bookkeeping ----------------------------------------------------------------------------------------------

def digest(value) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageStore:
    """`benchmark/<name>.json` = {"key": ..., "value": ...}: a stage's result, valid while its key matches."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def cached(self, name: str, key: dict, compute: Callable[[], dict]) -> dict:
        path = self.folder / f"{name}.json"
        wanted = digest(key)
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
                if stored.get("key") == wanted:
                    log.info("reusing %s", path)
                    return stored["value"]
            except (json.JSONDecodeError, KeyError):
                log.warning("%s is unreadable; computing it again", path)
        value = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"key": wanted, "depends_on": key, "value": value}, indent=1, default=str))
        tmp.replace(path)
        return value


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
    shipped_config = folder / "config.json"
    if not shipped_config.is_file():
        raise UserError(f"{folder} has no config.json describing how its models were trained")
    shipped = json.loads(shipped_config.read_text())
    current = config.to_dict()
    differing = [f"{section}.{key}" for section in ("data", "classifier", "oracle", "model", "train", "loss")
                 for key, value in current[section].items()
                 if shipped.get(section, {}).get(key) != value and key not in ("steps", "cst", "root")]
    if differing:
        raise UserError(f"the models in {folder} were trained with other settings ({', '.join(differing)}); "
                        "train from scratch with --set evaluation.start_from= (empty), or use their settings")
    copied = []
    for name in STARTING_FILES:
        source, target = folder / name, run_dir / name
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
        resume = checkpoint_path(run_dir, cst).exists()
        monitor = generators.training_monitor(variant_config, run_dir, classifier, classifier_device(classifier))
        metrics[variant_name(cst)] = train_stylex(variant_config, run_dir, classifier, resume=resume, monitor=monitor)
    return metrics


def classifier_device(classifier) -> torch.device:
    return next(classifier.parameters()).device


def faithfulness_stage(config: Config, contexts: dict[str, RunContext], run_dir: Path, store: StageStore,
                       report_dir: Path, progress: bool) -> dict:
    """The faithfulness battery of both generators (DESIGN 5) and their reconstruction grid, cached by weights."""
    key = {variant: {"step": ctx.model.step, "weights": fid.state_fingerprint(ctx.model.generator),
                     "encoder": fid.state_fingerprint(ctx.model.encoder)} for variant, ctx in contexts.items()}
    key.update(stage="faithfulness", eval_images=config.train.eval_images, probes=config.evaluation.probe_steps,
               oracle=(run_dir / "oracle.pt").is_file(), lpips=config.train.lpips)
    models = {variant: ctx.model for variant, ctx in contexts.items()}
    device = next(iter(contexts.values())).device
    value = store.cached("faithfulness", key,
                         lambda: generators.measure_run(config, run_dir, models, device, progress))
    grid = generators.grid_path(run_dir)
    if not grid.is_file():  # cached numbers, but the picture was removed: draw it again
        generators.write_grid(models, generators.held_out_images(config), run_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(grid, report_dir / RECONSTRUCTION_GRID)
    return value


# ---- methods --------------------------------------------------------------------------------------------------

def wu_attributes(config: Config, nocst: AttFindResult, ctx: RunContext) -> AttributeSet:
    """Wu et al. on the w/o-CST generator, on the AttFind images: positives of class c = images whose
    reconstruction the classifier assigns to c (the classifier scores generated images, as Wu et al.'s
    attribute classifiers do)."""
    found = wu.attribute_set(nocst.styles, ctx.model.generator.layout, nocst.effects.predicted, ctx.classes,
                             config.attfind.num_attributes, config.evaluation.wu_alpha,
                             provenance={"checkpoint_step": ctx.model.step, "stats_source": nocst.stats.source})
    found.save(attributes_path(ctx.run_dir, "wu"))
    return found


def attribute_digest(method: Method) -> str:
    data = method.attributes.to_dict()
    return digest({key: data[key] for key in ("method", "classes", "merged", "per_class", "settings")})


def figures_for(method: Method, ctx: RunContext, result: AttFindResult, report_dir: Path) -> list[dict]:
    """Render the method's attributes (panels, flicker and sweep GIFs) with its own edit rule and copy them into
    the report; returns the rows the report lists."""
    layout = ctx.model.generator.layout
    source = ctx.run_dir / "attfind" / method.key
    if method.key == "wu":
        render_attributes(ctx, method.attributes, result.styles, result.stats, source,
                          edit=lambda styles, edits, shift: method.edit(styles, layout, edits, shift))
    else:
        render_attributes(ctx, method.attributes, result.styles, result.stats, source, effects=result.effects)
    target = report_dir / "figures" / method.key
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    summary = json.loads((source / "summary.json").read_text())
    rows = []
    for entry in summary["attributes"]:
        stem = f"figures/{method.key}/attribute-{entry['rank']:02d}"
        rows.append({"rank": entry["rank"], "layer": entry["layer"], "channel": entry["channel"],
                     "direction": "max" if entry["direction"] else "min",
                     "target": method.attributes.classes[entry["target"]], "score": entry.get("score"),
                     "mean_effect": entry.get("mean_effect"), "panel": f"{stem}.png",
                     "flicker": f"{stem}-flicker.gif", "sweep": f"{stem}-sweep.gif"})
    return rows


# ---- the benchmark --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Evaluated:
    """One method with what its evaluations need: the model of its generator and the evaluated images."""

    method: Method
    ctx: RunContext
    result: AttFindResult
    count: int

    @property
    def styles(self) -> list[torch.Tensor]:
        return [s[: self.count] for s in self.result.styles]

    def key(self, config: Config, **extra) -> dict:
        meta = self.result.effects.meta
        return {"method": self.method.key, "attributes": attribute_digest(self.method), "weights": meta["weights"],
                "styles": meta["styles"], "stats": meta["stats"], "images": self.count, **extra}


def sufficiency_stage(config: Config, item: Evaluated, store: StageStore, progress: bool) -> dict:
    cfg = config.evaluation
    shift = config.attfind.shift_size

    def compute() -> dict:
        curves = {}
        for strategy in ("class_level", "independent", "subset"):
            if strategy not in cfg.strategies or (strategy != "class_level" and item.method.key not in IMAGE_LEVEL):
                curves[strategy] = None
                continue
            if strategy == "class_level":
                flipped = sufficiency.class_level(item.ctx.model, item.styles, item.method, cfg.max_k, shift)
            else:
                flipped = sufficiency.image_level(item.ctx.model, item.styles, item.result.stats, strategy,
                                                  cfg.max_k, shift, item.result.effects.effect[: item.count],
                                                  candidates=cfg.subset_candidates, progress=progress)
            curves[strategy] = sufficiency.curve(flipped)
        return curves

    key = item.key(config, stage="sufficiency", shift=shift, max_k=cfg.max_k, strategies=cfg.strategies,
                   candidates=cfg.subset_candidates)
    return store.cached(f"sufficiency-{item.method.key}", key, compute)


def fid_stage(config: Config, items: list[Evaluated], store: StageStore, device: torch.device,
              progress: bool) -> dict:
    """Distances between the real evaluated images and reconstructions / top-i counterfactuals."""
    cfg = config.evaluation
    classifier = items[0].ctx.model.classifier
    extractor = fid.build_extractor(cfg.fid_features, classifier, device)
    dataset = build_dataset(config.data, config.attfind.split)
    indices = items[0].result.indices[: items[0].count]
    cache = fid.StatsCache(store.folder / "fid-reference")

    def real_stats() -> fid.FrechetStats:
        real = torch.stack([dataset[i][0] for i in indices])
        return fid.FrechetStats.from_features(extractor.features(real, progress=progress))

    reference = cache.get_or_compute({"data": dataclasses.asdict(config.data), "split": config.attfind.split,
                                      "indices": digest(indices), "extractor": extractor.fingerprint}, real_stats)
    shifts = [float(s) for s in cfg.fid_shift_sizes]
    reconstruction: dict[str, float] = {}
    perturbation: dict[str, dict] = {}
    for item in items:
        def compute(item=item) -> dict:
            images, _, targets = counterfactuals.reconstruction(item.ctx.model, item.styles)
            value = {"reconstruction": fid.distance_to_reference(extractor, reference, images), "curves": {}}
            for shift in shifts:
                rows = []
                for i, edited, _, _ in counterfactuals.class_level(item.ctx.model, item.styles, item.method,
                                                                   range(1, cfg.fid_top + 1), shift, targets):
                    rows.append({"i": i, "value": fid.distance_to_reference(extractor, reference, edited)})
                value["curves"][str(shift)] = rows
            return value

        key = item.key(config, stage="fid", extractor=extractor.fingerprint, shifts=shifts, top=cfg.fid_top,
                       reference=digest(indices))
        value = store.cached(f"fid-{item.method.key}", key, compute)
        reconstruction.setdefault(item.method.variant, value["reconstruction"])
        perturbation[item.method.key] = value["curves"]
    return {"features": extractor.name, "label": extractor.label, "num_images": len(indices),
            "reference": f"{config.attfind.split} split, {len(indices)} images", "reconstruction": reconstruction,
            "perturbation": perturbation}


def recovery_stage(config: Config, items: list[Evaluated], store: StageStore, device: torch.device,
                   progress: bool) -> dict:
    cfg = config.evaluation
    settings = generators.probe_settings(config)  # the same probes judge faithfulness and recovery
    train_set = build_dataset(config.data, "train")
    probes = recovery.load_or_train_probes(generators.probes_path(store.folder.parent), train_set, settings, device,
                                           progress)
    quality = probes.quality(build_dataset(config.data, "test"))
    methods = {}
    shift = config.attfind.shift_size
    for item in items:
        key = item.key(config, stage="recovery", k=cfg.recovery_k, shift=shift, probes=dataclasses.asdict(settings))
        value = store.cached(f"recovery-{item.method.key}", key,
                             lambda item=item: recovery.recover(item.ctx.model, item.styles, item.method, probes,
                                                                k=cfg.recovery_k, shift_size=shift))
        methods[item.method.key] = value
    return {"k": cfg.recovery_k, "causal": list(recovery.CAUSAL_FACTORS), "factors": list(probes.factor_names),
            "probe_quality": quality, "methods": methods}


def run_benchmark(config: Config, run_dir: Path, progress: bool = True) -> Path:
    """The whole comparison on one run directory; returns the report folder."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    timer = Timer()
    save_config(config, run_dir)
    store = StageStore(run_dir / "benchmark")
    report_dir = run_dir / "report"

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
    with timer.stage("faithfulness"):
        contexts = {variant: results[variant][0] for variant in ("stylex", "stylex-nocst")}  # the grid's row order
        faithful = faithfulness_stage(config, contexts, run_dir, store, report_dir, progress)
    with timer.stage("wu"):
        nocst_ctx, nocst = results["stylex-nocst"]
        found = {"wu": wu_attributes(config, nocst, nocst_ctx)}
    found.update({key: results[key][1].attributes for key in ("stylex-nocst", "stylex")})

    items = []
    for key in METHODS:
        ctx, result = results[VARIANTS[key]]
        count = min(config.evaluation.num_images or len(result.indices), len(result.indices))
        items.append(Evaluated(Method(key, found[key], result.stats), ctx, result, count))
    device = items[0].ctx.device

    with timer.stage("figures"):
        method_rows = {}
        for item in items:
            method_rows[item.method.key] = {
                "label": item.method.label, "variant": item.method.variant, "edit_rule": item.method.edit_rule,
                "attributes": figures_for(item.method, item.ctx, item.result, report_dir)}
    with timer.stage("sufficiency"):
        curves = {item.method.key: sufficiency_stage(config, item, store, progress) for item in items}
    with timer.stage("fid"):
        fid_metrics = fid_stage(config, items, store, device, progress)
    recovery_metrics = None
    if config.data.dataset in generators.SHAPES_DATASETS:
        with timer.stage("recovery"):
            recovery_metrics = recovery_stage(config, items, store, device, progress)
    else:
        log.info("ground-truth recovery needs the shapes datasets' known factors; skipped for %s",
                 config.data.dataset)

    k = config.evaluation.table_k
    table_row = {"dataset": config.data.dataset}
    for key, strategies in curves.items():
        cell = strategies["class_level"][k - 1] if strategies.get("class_level") else None
        table_row[key] = None if cell is None else {name: cell[name] for name in ("fraction", "ci_low", "ci_high")}
    generator_rows = {}
    for variant in ("stylex", "stylex-nocst"):
        measured = faithful[variant]
        generator_rows[variant] = {"lpips_mode": config.train.lpips,
                                   **{k: v for k, v in measured.items() if k != "reconstruction_lpips"},
                                   "lpips": measured.get("reconstruction_lpips")}
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
        "methods": {key: method_rows[key] for key in METHODS},
        "generators": generator_rows,
        "reconstruction_grid": RECONSTRUCTION_GRID,
        "sufficiency": {"num_images": items[0].count, "shift_size": config.attfind.shift_size,
                        "max_k": config.evaluation.max_k, "curves": curves},
        "table3": {"k": k, "strategy": "class_level", "rows": [table_row]},
        "fid": fid_metrics,
        "timings": timer.seconds,
        "settings": {"attfind": dataclasses.asdict(config.attfind),
                     "evaluation": dataclasses.asdict(config.evaluation)},
    }
    if recovery_metrics is not None:
        metrics["recovery"] = recovery_metrics
    metrics["run"]["wall_time_s"] = round(time.perf_counter() - started, 1)
    written = report.write_report(metrics, report_dir)
    print(summary_line(metrics))
    print(f"report: {report_dir / 'index.html'} ({len(written)} files; wall time {metrics['run']['wall_time_s']} s)")
    return report_dir


def summary_line(metrics: dict) -> str:
    row = metrics["table3"]["rows"][0]
    cells = "; ".join(f"{LABELS[key]} {report.format_interval(row.get(key))}" for key in METHODS)
    return (f"Table 3 ({row['dataset']}, sufficiency at k = {metrics['table3']['k']}, "
            f"N = {metrics['sufficiency']['num_images']}): {cells}")
