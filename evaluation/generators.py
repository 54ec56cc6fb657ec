"""The faithfulness of a run's generators: `evaluation.faithfulness` measured with the run's judges.

The judges of a run are its held-out images (the first `train.eval_images` of the test split), the independent
oracle classifier (`oracle.pt`, when trained), the factor probes on `shapes` (cached beside the benchmark's, as
`benchmark/probes.pt`), and the LPIPS distance of `train.lpips`. The same measurement serves the trainer (a
monitor called every `train.eval_every` steps and at the end), `stylex faithfulness`, the benchmark's generator
table and the model cards, so every number about a generator comes from one place.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import save_image

from evaluation import faithfulness, recovery
from stylex.artifacts import write_json
from stylex.classifier import Classifier
from stylex.classifier import load as load_classifier
from stylex.config import Config
from stylex.data import build_dataset
from stylex.losses import build_lpips
from stylex.model import StylexModel
from stylex.run import RunDir
from stylex.runtime import atomic_write_bytes

log = logging.getLogger("stylex.generators")

SHAPES_DATASETS = ("shapes", "shapes-multi")
SAMPLES = 2048  # noise samples for the sample Frechet distance (more than the 1280 classifier features)
GRID_IMAGES = 8


@dataclass
class Judges:
    images: Tensor  # held-out images [N, C, H, W]
    oracle: Classifier | None
    probes: recovery.FactorProbes | None
    lpips: object


def probe_settings(config: Config) -> recovery.ProbeSettings:
    return recovery.ProbeSettings(steps=config.evaluation.probe_steps)


def held_out_images(config: Config) -> Tensor:
    """The first `train.eval_images` test images, the ones every faithfulness number is measured on."""
    test_set = build_dataset(config.data, "test")
    return torch.stack([test_set[i][0] for i in range(min(config.train.eval_images, len(test_set)))])


def judges_for(config: Config, run_dir: Path, device: torch.device | str = "cpu", progress: bool = False) -> Judges:
    images = held_out_images(config)
    oracle_file = RunDir(run_dir).oracle
    oracle = load_classifier(oracle_file, map_location=device) if oracle_file.is_file() else None
    if oracle is None:
        log.warning("no oracle classifier at %s: oracle agreement is not measured (train it with "
                    "`stylex train-classifier --oracle`)", oracle_file)
    probes = None
    if config.data.dataset in SHAPES_DATASETS:
        probes = recovery.load_or_train_probes(RunDir(run_dir).probes, build_dataset(config.data, "train"),
                                               probe_settings(config), device, progress)
    return Judges(images, oracle, probes, build_lpips(config.train.lpips, config.train.lpips_net).to(device))


def measure_model(model: StylexModel, judges: Judges, samples: int = SAMPLES) -> dict:
    metrics = faithfulness.measure(model, judges.images, oracle=judges.oracle, probes=judges.probes,
                                   lpips=judges.lpips, samples=samples)
    metrics["gate_failures"] = faithfulness.gate_failures(metrics)
    return metrics


def training_monitor(config: Config, run_dir: Path, classifier: Classifier, device: torch.device | str):
    """The trainer's monitor: (G_ema, E_ema) -> the faithfulness metrics of those networks. The judges (oracle,
    probes, images) are built on the first call, so a run that is already finished costs nothing."""
    judges: list[Judges] = []

    def monitor(generator, encoder) -> dict:
        if not judges:
            with torch.enable_grad():  # the trainer evaluates under no_grad; probes may have to be trained here
                judges.append(judges_for(config, run_dir, device))
        model = StylexModel(generator, encoder, classifier, config.train.cst, step=-1, metrics={})
        return measure_model(model, judges[0])

    return monitor


def reconstruction_grid(models: dict[str, StylexModel], images: Tensor) -> Tensor:
    """Real images on top, then one row per model's reconstructions (row order = `models` order)."""
    rows = {name: model.reconstruct(images[:GRID_IMAGES].to(next(model.generator.parameters()).device)).cpu()
            for name, model in models.items()}
    return faithfulness.reconstruction_grid(images, rows, columns=GRID_IMAGES)


def grid_path(run_dir: Path) -> Path:
    return RunDir(run_dir).faithfulness / "reconstructions.png"


def write_grid(models: dict[str, StylexModel], images: Tensor, run_dir: Path) -> Path:
    buffer = io.BytesIO()
    save_image(reconstruction_grid(models, images), buffer, format="png")
    return atomic_write_bytes(grid_path(run_dir), buffer.getvalue())


def measure_run(config: Config, run_dir: Path, models: dict[str, StylexModel], device: torch.device | str = "cpu",
                progress: bool = False) -> dict:
    """Both generators of a run: `faithfulness/<variant>.json` and `faithfulness/reconstructions.png`."""
    judges = judges_for(config, run_dir, device, progress)
    folder = RunDir(run_dir).faithfulness
    results = {}
    for variant, model in models.items():
        results[variant] = {"step": model.step, **measure_model(model, judges)}
        write_json(folder / f"{variant}.json", results[variant])
    write_grid(models, judges.images, run_dir)
    return results


SUMMARY_KEYS = (("reconstruction_l1", "L1"), ("reconstruction_lpips", "LPIPS"),
                ("explained_agreement", "explained agr."),
                ("oracle_agreement", "oracle agr."), ("input_dependence_pixels", "input dep."),
                ("swapped_condition_agreement", "swapped-cond. agr."), ("factor_shape", "shape"),
                ("factor_size", "size"), ("factor_spot", "spot"), ("factor_shape_iou", "shape IoU"),
                ("sample_frechet_classifier", "sample FD (classifier)"))


def format_faithfulness(results: dict) -> str:
    """One line per generator, then the gates it misses."""
    lines = []
    for variant, metrics in results.items():
        values = ", ".join(f"{label} {metrics[key]:.3f}" for key, label in SUMMARY_KEYS if key in metrics)
        lines.append(f"{variant} (step {metrics.get('step')}, {metrics['num_images']} held-out images): {values}")
        failures = metrics.get("gate_failures") or []
        lines.append("  gates: " + ("all met" if not failures else "missed " + "; ".join(failures)))
    return "\n".join(lines)
