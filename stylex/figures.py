"""Figures of a run: per-attribute panels and GIFs (`attfind/<method>/`), and one image's explanation
(`explanations/<image>-<strategy>/`), in the paper's style (DESIGN section 6)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from stylex import render
from stylex.artifacts import write_json
from stylex.attfind import Effects
from stylex.attributes import Attribute, AttributeSet
from stylex.editing import TOWARD_EXTREMES, EditFn, edit_sets_of_one, resolve_precision
from stylex.editing import render as render_styles
from stylex.explain import Explanation, sweep
from stylex.pipeline import RunContext
from stylex.runtime import code_version
from stylex.stats import StyleStats

log = logging.getLogger("stylex.figures")

SWEEP_FRAMES = 12


@torch.no_grad()
def target_gains(ctx: RunContext, styles: list[torch.Tensor], unedited_logits: torch.Tensor, a: Attribute,
                 candidates: torch.Tensor, edit: EditFn, dtype: torch.dtype) -> torch.Tensor:
    """Change of the target logit on each candidate image when `a` is applied with `edit` (re-rendered), against
    the unedited logits of all images (`unedited_logits`, rendered once per figure set)."""
    rows = [s[candidates] for s in styles]
    _, after = render_styles(ctx.model, edit(rows, [(a.coordinate, a.direction)], ctx.config.attfind.shift_size),
                             dtype)
    return (after.cpu() - unedited_logits[candidates])[:, a.target]


@dataclass
class RenderedAttributes:
    files: list[Path]  # panels, GIFs and summary.json
    summary: list[dict]  # one row per rendered attribute, as in summary.json


@torch.no_grad()
def render_attributes(ctx: RunContext, attributes: AttributeSet, styles: list[torch.Tensor], stats: StyleStats,
                      out_dir: Path, effects: Effects | None = None) -> RenderedAttributes:
    """Per attribute: a panel over the images where it raises the target logit most (among images predicted as
    another class), a flicker GIF and a sweep GIF on the first of them; plus summary.json.

    Attributes are applied with their set's edit rule; the images are ranked by the effect tensor (`effects`)
    when it was computed with that rule (AttFind's), else by re-rendering each attribute on every candidate."""
    cfg = ctx.config.attfind
    layout = ctx.model.generator.layout
    dtype = resolve_precision(cfg.precision)
    edit = attributes.edit_rule.bind(layout, stats)
    if attributes.edit_rule != TOWARD_EXTREMES:
        effects = None
    if effects is not None:
        predicted, unedited_logits = effects.predicted, None
    else:
        _, unedited_logits = render_styles(ctx.model, styles, dtype)
        unedited_logits = unedited_logits.cpu()
        predicted = unedited_logits.argmax(1)
    written: list[Path] = []
    summary = []
    for rank, a in enumerate(attributes.ranked()[:cfg.render_attributes], 1):
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
        title = f"#{rank} {a.title(layout, attributes.classes)}; p({attributes.classes[a.target]})"
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
    summary_path = write_json(out_dir / "summary.json", {
        "method": attributes.method, "classes": attributes.classes, "shift_size": cfg.shift_size,
        "attributes": summary, "note": "images index the AttFind image set (effects order)",
        "code_version": code_version()})
    return RenderedAttributes([*written, summary_path], summary)




@torch.no_grad()
def write_explanation(ctx: RunContext, explanation: Explanation, image: torch.Tensor, styles: list[torch.Tensor],
                      stats: StyleStats, out_dir: Path) -> None:
    cfg = ctx.config.attfind
    layout = ctx.model.generator.layout
    dtype = resolve_precision(cfg.precision)
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
    write_json(out_dir / "summary.json", summary)
    outcome = (f"flipped after {explanation.flipped_at} attribute(s)" if explanation.flipped_at
               else "not flipped")
    print(f"{explanation.strategy}: {classes[explanation.source]} -> {classes[target]}: {outcome}; wrote {out_dir}")
