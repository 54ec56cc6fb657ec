"""Loading a run and running AttFind on it (DESIGN section 6).

`open_run`: a run directory's config, classifier and StylEx variant on a device. `attfind_variant`: encode the
AttFind images -> `stats.pt` -> `effects/<variant>/` (resumable chunks) -> `attributes/<variant>.json`, reusing
whatever is already there and matches.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from stylex.artifacts import fingerprint
from stylex.attfind import Effects, compute_effects, find_attributes
from stylex.attributes import AttributeSet
from stylex.classifier import load as load_classifier
from stylex.config import Config, load_config
from stylex.data import ImageDataset, build_dataset
from stylex.errors import UserError
from stylex.model import StylexModel, load_stylex
from stylex.run import RunDir, variant_name
from stylex.runtime import Distributed, process_device
from stylex.stats import StyleStats, encode_styles, load_stats, save_stats

log = logging.getLogger("stylex.pipeline")


@dataclass
class RunContext:
    run: RunDir
    config: Config
    model: StylexModel
    device: torch.device

    @property
    def run_dir(self) -> Path:
        return self.run.root

    @property
    def variant(self) -> str:
        return self.model.variant

    @property
    def classes(self) -> list[str]:
        return self.model.classifier.classes


def open_run(run_dir: Path, cst: bool = True, overrides: list[str] | None = None,
             device: str | None = None) -> RunContext:
    """Load a run directory's config, classifier and StylEx checkpoint (EMA networks) onto a device."""
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.json); train first with `stylex "
                        "train-classifier` and `stylex train`, or pass --run runs/<name>")
    overrides = list(overrides or [])
    if device:
        overrides.append(f"device={device}")
    config = load_config(str(run.config), overrides)
    target = process_device(config.device)
    if not run.classifier.is_file():
        raise UserError(f"no classifier at {run.classifier}; run `stylex train-classifier` for this run first")
    classifier = load_classifier(run.classifier, map_location=target)
    model = load_stylex(run.checkpoint(variant_name(cst)), classifier, target)
    return RunContext(run, config, model, target)


def attfind_indices(config: Config, dataset: ImageDataset) -> list[int]:
    """The AttFind image set: the first attfind.num_images of a seeded permutation of the split."""
    count = min(config.attfind.num_images, len(dataset))
    if count < 2:
        raise UserError(f"AttFind needs at least 2 images, the {config.attfind.split} split has {len(dataset)}")
    generator = torch.Generator().manual_seed(config.attfind.seed)
    return torch.randperm(len(dataset), generator=generator)[:count].tolist()


def _source(ctx: RunContext, indices: list[int]) -> dict:
    cfg = ctx.config.attfind
    return {"variant": ctx.variant, "step": ctx.model.step, "dataset": ctx.config.data.dataset,
            "split": cfg.split, "seed": cfg.seed, "num_images": len(indices),
            "indices_digest": fingerprint(indices)}


def style_statistics(ctx: RunContext, styles: list[torch.Tensor], indices: list[int],
                     recompute: bool = False) -> StyleStats:
    """The run's `stats.pt` entry for this variant, computed from `styles` when missing or made elsewhere."""
    source = _source(ctx, indices)
    stats = None if recompute else load_stats(ctx.run_dir, ctx.variant)
    if stats is not None and stats.source != source:
        log.info("style statistics in stats.pt were made from other images or another checkpoint; recomputing")
        stats = None
    if stats is None:
        stats = StyleStats.from_styles(ctx.model.generator.layout.conv_flatten(styles), source)
        if Distributed.from_environment(ctx.device).is_main:
            save_stats(ctx.run_dir, ctx.variant, stats)
    stats.check_layout(ctx.model.generator.layout)
    return stats


@dataclass
class AttFindResult:
    """What AttFind on one variant produced, kept in memory for the evaluations that follow it."""

    indices: list[int]  # the AttFind images (positions in the split), effects order
    styles: list[torch.Tensor]  # their styles, one [N, dim] tensor per layer (layout order)
    stats: StyleStats
    effects: Effects
    attributes: AttributeSet


def attfind_variant(ctx: RunContext, recompute: bool = False, progress: bool = True) -> AttFindResult | None:
    """Encode the AttFind images, then stats.pt, the effect tensor (resumable) and the attribute file, reusing
    what matches. Under torchrun every rank computes its effect chunks; only rank 0 gets the result."""
    cfg = ctx.config.attfind
    dataset = build_dataset(ctx.config.data, cfg.split)
    indices = attfind_indices(ctx.config, dataset)
    styles = encode_styles(ctx.model, dataset, indices, device=ctx.device, progress=progress)
    stats = style_statistics(ctx, styles, indices, recompute)
    effects_dir = ctx.run.effects(ctx.variant)
    dist = Distributed.from_environment(ctx.device)
    if recompute and effects_dir.exists() and dist.is_main:
        shutil.rmtree(effects_dir)
    dist.barrier()
    effects = compute_effects(ctx.model, styles, stats, cfg.shift_size, out_dir=effects_dir,
                              chunk_images=cfg.chunk_images, max_batch=cfg.max_batch, precision=cfg.precision,
                              progress=progress, screen=cfg.screen)
    if not dist.is_main:
        return None
    attributes = find_attributes(
        effects, ctx.classes, ctx.model.generator.layout, ctx.variant, cfg.num_attributes, cfg.threshold,
        cfg.discard_inconsistent,
        provenance={"config": ctx.config.to_dict(), "checkpoint_step": ctx.model.step, "stats_source": stats.source,
                    "effects": effects.meta})
    attributes.save(ctx.run.attributes(ctx.variant))
    return AttFindResult(indices, styles, stats, effects, attributes)
