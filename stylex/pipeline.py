"""The `stylex attfind` and `stylex explain` jobs on a run directory (what the CLI calls).

`attfind_run`: encode the AttFind images -> `stats.pt` -> `effects/<variant>/` (resumable chunks) ->
`attributes/<variant>.json` -> `attfind/<variant>/`: per-attribute panels (PNG), flicker and sweep GIFs,
`summary.json`. Rerunning reuses whatever is already there and matches.

`explain_image_file`: one image file -> Independent or Subset explanation -> figure, GIFs, `summary.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylex import render
from stylex.attfind import Attribute, AttributeSet, Effects, compute_effects, find_attributes
from stylex.checkpoint import StylexModel, checkpoint_path, load_stylex
from stylex.classifier import load as load_classifier
from stylex.config import Config, load_config
from stylex.data import ImageDataset, build_dataset
from stylex.data.images import open_image
from stylex.editing import EditFn, attfind_edit, edit_sets_of_one, resolve_precision
from stylex.editing import render as render_styles
from stylex.errors import UserError
from stylex.explain import STRATEGIES, Explanation, check_count, explain, sweep
from stylex.layout import StyleLayout
from stylex.runtime import Distributed, code_version, process_device
from stylex.stats import StyleStats, encode_styles, load_stats, save_stats

log = logging.getLogger("stylex.pipeline")

SWEEP_FRAMES = 12


@dataclass
class RunContext:
    run_dir: Path
    config: Config
    model: StylexModel
    device: torch.device

    @property
    def variant(self) -> str:
        return self.model.variant

    @property
    def classes(self) -> list[str]:
        return self.model.classifier.classes


def open_run(run_dir: Path, cst: bool = True, overrides: list[str] | None = None,
             device: str | None = None) -> RunContext:
    """Load a run directory's config, classifier and StylEx checkpoint (EMA networks) onto a device."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.json); train first with `stylex "
                        "train-classifier` and `stylex train`, or pass --run runs/<name>")
    overrides = list(overrides or [])
    if device:
        overrides.append(f"device={device}")
    config = load_config(str(config_file), overrides)
    target = process_device(config.device)
    classifier_file = run_dir / "classifier.pt"
    if not classifier_file.is_file():
        raise UserError(f"no classifier at {classifier_file}; run `stylex train-classifier` for this run first")
    classifier = load_classifier(classifier_file, map_location=target)
    model = load_stylex(checkpoint_path(run_dir, cst), classifier, target)
    return RunContext(run_dir, config, model, target)


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
            "indices_digest": hash_indices(indices)}


def hash_indices(indices: list[int]) -> str:
    return hashlib.sha1(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


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
    effects_dir = ctx.run_dir / "effects" / ctx.variant
    dist = Distributed.from_environment(ctx.device)
    if recompute and effects_dir.exists() and dist.is_main:
        shutil.rmtree(effects_dir)
    dist.barrier()
    effects = compute_effects(ctx.model, styles, stats, cfg.shift_size, out_dir=effects_dir,
                              chunk_images=cfg.chunk_images, max_batch=cfg.max_batch, precision=cfg.precision,
                              progress=progress)
    if not dist.is_main:
        return None
    attributes = find_attributes(
        effects, ctx.classes, ctx.model.generator.layout, ctx.variant, cfg.num_attributes, cfg.threshold,
        cfg.discard_inconsistent,
        provenance={"config": ctx.config.to_dict(), "checkpoint_step": ctx.model.step, "stats_source": stats.source,
                    "effects": effects.meta})
    attributes.save(attributes_path(ctx.run_dir, ctx.variant))
    return AttFindResult(indices, styles, stats, effects, attributes)


def attfind_run(run_dir: Path, cst: bool = True, overrides: list[str] | None = None, device: str | None = None,
                recompute: bool = False, progress: bool = True) -> Path:
    """Stats, effects, AttFind and rendering for one StylEx variant of a run; returns the attribute file."""
    ctx = open_run(run_dir, cst, overrides, device)
    result = attfind_variant(ctx, recompute, progress)
    path = attributes_path(ctx.run_dir, ctx.variant)
    if result is None:
        return path
    out_dir = ctx.run_dir / "attfind" / ctx.variant
    figures = render_attributes(ctx, result.attributes, result.styles, result.stats, out_dir,
                                effects=result.effects)
    print(format_attributes(result.attributes))
    print(f"wrote {path} and {len(figures)} figures/GIFs under {out_dir}")
    return path


def attributes_path(run_dir: Path, method: str) -> Path:
    return Path(run_dir) / "attributes" / f"{method}.json"


def ranked_for_display(attributes: AttributeSet) -> list[Attribute]:
    """What the figures show, best first: the merged list (binary) or the per-class lists interleaved."""
    if attributes.merged is not None:
        return list(attributes.merged)
    lists = [attributes.per_class[c] for c in sorted(attributes.per_class)]
    interleaved = [a for rank in range(max(map(len, lists), default=0)) for a in
                   (lst[rank] for lst in lists if rank < len(lst))]
    return interleaved


def format_attributes(attributes: AttributeSet) -> str:
    layout = StyleLayout.from_summary(attributes.layout)
    lines = [f"{attributes.method}: images per predicted class "
             f"{dict(zip(attributes.classes, attributes.settings['images_per_class'], strict=True))}"]
    for rank, a in enumerate(ranked_for_display(attributes), 1):
        name, channel = layout.locate(a.coordinate)
        score = f"  score {a.score:+.3f}" if a.score is not None else ""
        lines.append(f"  {rank:2d}. {name} ch {channel:<4d} {'max' if a.direction else 'min'} -> "
                     f"{attributes.classes[a.target]:<16s} mean effect {a.mean_effect:.3f}{score}")
    return "\n".join(lines)


def attribute_title(a: Attribute, layout, classes: list[str]) -> str:
    name, channel = layout.locate(a.coordinate)
    arrow = "↑" if a.direction else "↓"
    return f"{name} ch {channel} {arrow} (toward {classes[a.target]})"


@torch.no_grad()
def target_gains(ctx: RunContext, styles: list[torch.Tensor], unedited_logits: torch.Tensor, a: Attribute,
                 candidates: torch.Tensor, edit: EditFn, dtype: torch.dtype) -> torch.Tensor:
    """Change of the target logit on each candidate image when `a` is applied with `edit` (re-rendered), against
    the unedited logits of all images (`unedited_logits`, rendered once per figure set)."""
    rows = [s[candidates] for s in styles]
    _, after = render_styles(ctx.model, edit(rows, [(a.coordinate, a.direction)], ctx.config.attfind.shift_size),
                             dtype)
    return (after.cpu() - unedited_logits[candidates])[:, a.target]


@torch.no_grad()
def render_attributes(ctx: RunContext, attributes: AttributeSet, styles: list[torch.Tensor], stats: StyleStats,
                      out_dir: Path, effects: Effects | None = None, edit: EditFn | None = None) -> list[Path]:
    """Per attribute: a panel over the images where it raises the target logit most (among images predicted as
    another class), a flicker GIF and a sweep GIF on the first of them; plus summary.json.

    `edit` is the method's edit rule (default AttFind's); the images are ranked by the effect tensor when it
    was computed with that rule (`effects`), else by re-rendering each attribute on every candidate."""
    cfg = ctx.config.attfind
    layout = ctx.model.generator.layout
    dtype = resolve_precision(cfg.precision, ctx.device)
    if effects is not None and edit is not None:
        raise UserError("render_attributes ranks images by `effects` only for AttFind's own edit; pass one of them")
    edit = edit or attfind_edit(layout, stats)
    if effects is not None:
        predicted, unedited_logits = effects.predicted, None
    else:
        _, unedited_logits = render_styles(ctx.model, styles, dtype)
        unedited_logits = unedited_logits.cpu()
        predicted = unedited_logits.argmax(1)
    written: list[Path] = []
    summary = []
    for rank, a in enumerate(ranked_for_display(attributes)[:cfg.render_attributes], 1):
        candidates = (predicted != a.target).nonzero().flatten()
        if len(candidates) == 0 and attributes.merged is not None:
            a = a.flipped(1 - a.target)  # binary: the same coordinate, shown toward the class images are not in
            candidates = (predicted != a.target).nonzero().flatten()
        if len(candidates) == 0:  # every image is already of the target class: show the edit on all of them
            candidates = torch.arange(len(predicted))
        gains = (effects.effect[candidates, a.direction, a.coordinate, a.target] if effects is not None
                 else target_gains(ctx, styles, unedited_logits, a, candidates, edit, dtype))
        chosen = candidates[gains.argsort(descending=True)[:cfg.panel_images]]
        rows = [s[chosen] for s in styles]
        originals, base_logits = render_styles(ctx.model, rows, dtype)
        edited, edited_logits = render_styles(ctx.model, edit(rows, [(a.coordinate, a.direction)], cfg.shift_size),
                                              dtype)
        p_before = base_logits.softmax(1)[:, a.target]
        p_after = edited_logits.softmax(1)[:, a.target]
        title = f"#{rank} {attribute_title(a, layout, attributes.classes)}; p({attributes.classes[a.target]})"
        stem = out_dir / f"attribute-{rank:02d}"
        written.append(render.save_png(render.attribute_panel(originals, edited, p_before, p_after, title=title,
                                                              size=cfg.display_size), stem.with_suffix(".png")))
        written.append(render.flicker_gif(originals[0], edited[0], float(p_before[0]), float(p_after[0]),
                                          f"{stem}-flicker.gif", size=cfg.display_size))
        one = [s[chosen[:1]] for s in styles]
        frames, frame_logits = sweep(ctx.model, one, stats, [(a.coordinate, a.direction)], cfg.shift_size,
                                     SWEEP_FRAMES, cfg.precision, edit=edit)
        written.append(render.sweep_gif(frames, frame_logits.softmax(1)[:, a.target], f"{stem}-sweep.gif",
                                        size=cfg.display_size))
        summary.append({"rank": rank, **a.describe(layout), "images": [int(i) for i in chosen],
                        "p_target_before": p_before.tolist(), "p_target_after": p_after.tolist(),
                        "flipped": (edited_logits.argmax(1) != base_logits.argmax(1)).tolist(),
                        "files": [p.name for p in written[-3:]]})
    summary_path = out_dir / "summary.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps({"method": attributes.method, "classes": attributes.classes,
                                        "shift_size": cfg.shift_size, "attributes": summary,
                                        "note": "images index the AttFind image set (effects order)",
                                        "code_version": code_version()}, indent=2) + "\n")
    return [*written, summary_path]


# ---- one image ------------------------------------------------------------------------------------------------

def read_image(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """An image file as a [1, C, R, R] tensor in [-1, 1], converted to the model's channels and size."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no image file at {path}")
    # The folder dataset decodes through the same function, so 16-bit, float, CMYK, palette and alpha
    # files are scaled (or refused) the same way for training and for explaining.
    image = open_image(path, channels)
    if image.size != (resolution, resolution):
        log.info("resizing %s from %dx%d to the model's %dx%d", path, *image.size, resolution, resolution)
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1.0


def explain_image_file(run_dir: Path, image_path: Path, strategy: str = "independent", target: str | None = None,
                       num_attributes: int = 5, cst: bool = True, out_dir: Path | None = None,
                       overrides: list[str] | None = None, device: str | None = None) -> Path:
    """Explain the classifier's decision on one image file; writes figure.png, GIFs and summary.json into
    `out_dir` (created if missing; files of the same name in it are replaced)."""
    # Argument checks come before the run is loaded, so a mistyped command fails at once and writes nothing.
    check_count("--attributes", num_attributes)
    if strategy not in STRATEGIES:
        raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not Path(image_path).is_file():
        raise UserError(f"no image file at {image_path}")
    if out_dir is not None:
        check_output_folder(Path(out_dir), "--out")
    ctx = open_run(run_dir, cst, overrides, device)
    cfg = ctx.config.attfind
    stats = load_stats(ctx.run_dir, ctx.variant)
    if stats is None:
        raise UserError(f"no style statistics for {ctx.variant} in {ctx.run_dir}; run `stylex attfind --run "
                        f"{ctx.run_dir}` first (it computes stats.pt)")
    generator = ctx.model.generator
    image = read_image(image_path, generator.cfg.img_resolution, generator.cfg.img_channels).to(ctx.device)
    target_index = None
    if target is not None:
        if target not in ctx.classes:
            raise UserError(f"unknown target class {target!r}; classes: {', '.join(ctx.classes)}")
        target_index = ctx.classes.index(target)
    styles = ctx.model.styles(image)
    options = {"target": target_index, "shift_size": cfg.shift_size, "precision": cfg.precision}
    options["num_attributes" if strategy == "independent" else "max_attributes"] = num_attributes
    explanation = explain(ctx.model, styles, stats, strategy, **options)
    out_dir = Path(out_dir) if out_dir else ctx.run_dir / "explanations" / f"{Path(image_path).stem}-{strategy}"
    write_explanation(ctx, explanation, image, styles, stats, out_dir)
    return out_dir


def check_output_folder(folder: Path, option: str) -> None:
    """A folder to write into: missing (it is created) or a folder, never a file or under one."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder} is a file, not a folder: name a new or existing folder")
    blocking = next((p for p in folder.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UserError(f"{option} {folder} lies under {blocking}, which is a file, not a folder")


@torch.no_grad()
def write_explanation(ctx: RunContext, explanation: Explanation, image: torch.Tensor, styles: list[torch.Tensor],
                      stats: StyleStats, out_dir: Path) -> None:
    cfg = ctx.config.attfind
    layout = ctx.model.generator.layout
    dtype = resolve_precision(cfg.precision, ctx.device)
    classes = ctx.classes
    target = explanation.target
    edit_sets = [[(a.coordinate, a.direction) for a in explanation.attributes[:i]]
                 for i in range(1, len(explanation.attributes) + 1)]
    reconstruction, _ = render_styles(ctx.model, styles, dtype)
    probabilities = explanation.probabilities[:, target]
    files = []
    if edit_sets:
        counterfactuals, _ = render_styles(
            ctx.model, edit_sets_of_one(styles, layout, stats, edit_sets, cfg.shift_size), dtype)
        titles = [f"+ {layout.locate(a.coordinate)[0]} ch {layout.locate(a.coordinate)[1]} "
                  f"{'↑' if a.direction else '↓'}" for a in explanation.attributes]
        flipped = (f"decision flips to {classes[target]} after {explanation.flipped_at} attribute(s)"
                   if explanation.flipped_at else "decision does not flip")
        header = (f"{explanation.strategy}: {classes[explanation.source]} -> {classes[target]}; "
                  f"p({classes[target]}) in the corner; {flipped}")
        figure = render.counterfactual_figure(reconstruction[0], counterfactuals, float(probabilities[0]),
                                              probabilities[1:].tolist(), titles=["reconstruction", *titles],
                                              size=cfg.display_size,
                                              header=header)
        files.append(render.save_png(figure, out_dir / "figure.png"))
        files.append(render.flicker_gif(reconstruction[0], counterfactuals[-1], float(probabilities[0]),
                                        float(probabilities[-1]), out_dir / "flicker.gif", size=cfg.display_size))
        frames, frame_logits = sweep(ctx.model, styles, stats, edit_sets[-1], cfg.shift_size, SWEEP_FRAMES,
                                     cfg.precision)
        files.append(render.sweep_gif(frames, frame_logits.softmax(1)[:, target], out_dir / "sweep.gif",
                                      size=cfg.display_size))
    else:
        log.warning("no attribute raises the logit of %s on this image; nothing to render", classes[target])
    p_input = float(ctx.model.classifier(image).float().softmax(1)[0, target])
    files.append(render.save_png(render.counterfactual_figure(
        image[0], reconstruction, p_input, float(probabilities[0]), titles=["input", "reconstruction"],
        size=cfg.display_size, frame_color=None, header=f"p({classes[target]}) in the corner"),
        out_dir / "reconstruction.png"))
    summary = {**explanation.to_dict(layout, classes), "run": str(ctx.run_dir), "variant": ctx.variant,
               "shift_size": cfg.shift_size, "files": [p.name for p in files], "code_version": code_version()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    outcome = (f"flipped after {explanation.flipped_at} attribute(s)" if explanation.flipped_at
               else "not flipped")
    print(f"{explanation.strategy}: {classes[explanation.source]} -> {classes[target]}: {outcome}; wrote {out_dir}")
