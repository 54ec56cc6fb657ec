"""Image-specific explanations (DESIGN section 6): which attributes explain the decision on one image.

- `independent`: the top-k attributes by their single effect on the target logit of this image (from the
  image's own effect tensor), then applied cumulatively to show the probabilities along the way.
- `subset`: greedy; each step re-runs the generator and classifier on the combined edit of every remaining
  candidate plus the attributes chosen so far, adds the one that raises the target logit most, and stops as
  soon as the decision flips (argmax differs from the class predicted on the reconstruction).

Both work on one image given by its styles (one [1, dim] tensor per style layer, `StylexModel.styles`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from stylex.attfind import compute_effects
from stylex.attributes import Attribute
from stylex.editing import Edit, EditFn, attfind_edit, edit_sets_of_one, render, resolve_precision
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.model import StylexModel
from stylex.stats import StyleStats

STRATEGIES = ("independent", "subset")


@dataclass
class Explanation:
    strategy: str
    source: int  # class predicted on the reconstruction (the decision being explained)
    target: int  # the class the counterfactual moves toward
    attributes: list[Attribute]  # in the order they were added
    logits: Tensor  # [len(attributes) + 1, C]: row 0 the reconstruction, row i after the first i attributes
    flipped_at: int | None  # number of attributes after which the decision first differs from `source`

    @property
    def probabilities(self) -> Tensor:
        return self.logits.softmax(dim=1)

    def to_dict(self, layout: StyleLayout, classes: Sequence[str]) -> dict:
        probabilities = self.probabilities
        steps = [{"attributes": i, "predicted": classes[int(row.argmax())],
                  "probabilities": dict(zip(classes, map(float, probabilities[i]), strict=True)),
                  "logits": dict(zip(classes, map(float, row), strict=True))}
                 for i, row in enumerate(self.logits)]
        return {"strategy": self.strategy, "explained_class": classes[self.source],
                "target_class": classes[self.target], "flipped": self.flipped_at is not None,
                "flipped_after": self.flipped_at, "attributes": [a.describe(layout) for a in self.attributes],
                "steps": steps}


def default_target(logits: Tensor) -> int:
    """The class a counterfactual moves toward: the most probable class other than the predicted one."""
    ranked = logits.argsort(descending=True)
    return int(ranked[1])


def _check_one_image(styles: Sequence[Tensor], layout: StyleLayout) -> list[Tensor]:
    if len(styles) != layout.num_layers or any(s.ndim != 2 or s.shape[0] != 1 for s in styles):
        raise UserError("explanations take one image's styles: one [1, dim] tensor per style layer "
                        "(StylexModel.styles(image[None]))")
    return list(styles)


def _first_flip(logits: Tensor, source: int) -> int | None:
    flipped = (logits.argmax(dim=1) != source).nonzero()
    return int(flipped[0]) if len(flipped) else None


def _prepare(model: StylexModel, styles: Sequence[Tensor], stats: StyleStats, target: int | None,
             precision: str) -> tuple[list[Tensor], torch.dtype, Tensor, int, int]:
    layout = model.generator.layout
    styles = _check_one_image(styles, layout)
    stats.check_layout(layout)
    dtype = resolve_precision(precision)
    _, logits = render(model, styles, dtype)
    source = int(logits[0].argmax())
    target = default_target(logits[0]) if target is None else int(target)
    if not 0 <= target < model.classifier.num_classes or target == source:
        raise UserError(f"target class must be one of the classifier's {model.classifier.num_classes} classes "
                        f"other than the predicted class {source}, got {target}")
    return styles, dtype, logits[0], source, target


def _single_effects(model: StylexModel, styles: list[Tensor], stats: StyleStats, shift_size: float,
                    effect: Tensor | None, precision: str) -> Tensor:
    if effect is None:
        return compute_effects(model, styles, stats, shift_size, precision=precision, progress=False).effect[0]
    layout = model.generator.layout
    if effect.shape != (2, layout.conv_dim, model.classifier.num_classes):
        raise UserError(f"effect must be this image's slice [2, {layout.conv_dim}, "
                        f"{model.classifier.num_classes}] of the effect tensor, got {list(effect.shape)}")
    return effect


def ranked_single_effects(effect: Tensor, target: int, limit: int) -> list[Attribute]:
    """Coordinates ranked by their best single effect on logit `target` (each coordinate once, in its
    better direction), at most `limit`, positive effects only."""
    return [a for a in _best_directions(effect, target, limit) if a.mean_effect > 0]


def _best_directions(effect: Tensor, target: int, limit: int) -> list[Attribute]:
    """The `limit` coordinates with the largest single effect on logit `target`, each in its better direction."""
    best, direction = effect[..., target].max(dim=0)  # over the two directions: [K]
    return [Attribute(int(k), int(direction[k]), float(best[k]), target) for k in best.argsort(descending=True)[:limit]]


@torch.no_grad()
def check_count(name: str, value) -> None:
    """A count of attributes or candidates: an integer >= 1 (a negative one would slice [:-k] and apply nearly
    every coordinate)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be an integer >= 1, got {value!r}")


def independent(model: StylexModel, styles: Sequence[Tensor], stats: StyleStats, target: int | None = None,
                num_attributes: int = 5, shift_size: float = 1.0, effect: Tensor | None = None,
                precision: str = "float32") -> Explanation:
    """Top-`num_attributes` attributes of this image by single effect on the target logit; the logits after
    applying the first 1, 2, ... of them together are reported (the classifier is re-run on each)."""
    check_count("num_attributes", num_attributes)
    styles, dtype, base_logits, source, target = _prepare(model, styles, stats, target, precision)
    effect = _single_effects(model, styles, stats, shift_size, effect, precision)
    chosen = ranked_single_effects(effect, target, num_attributes)
    layout = model.generator.layout
    edit_sets = [[(a.coordinate, a.direction) for a in chosen[:i]] for i in range(1, len(chosen) + 1)]
    logits = base_logits[None]
    if edit_sets:
        _, edited = render(model, edit_sets_of_one(styles, layout, stats, edit_sets, shift_size), dtype)
        logits = torch.cat([logits, edited])
    return Explanation("independent", source, target, chosen, logits.cpu(), _first_flip(logits, source))


@torch.no_grad()
def subset(model: StylexModel, styles: Sequence[Tensor], stats: StyleStats, target: int | None = None,
           max_attributes: int = 10, shift_size: float = 1.0, candidates: int = 32, effect: Tensor | None = None,
           precision: str = "float32") -> Explanation:
    """Greedy subset: from the `candidates` coordinates with the largest single effects on the target logit,
    repeatedly add the one whose combined edit (with those chosen so far) raises the target logit most, by
    re-running G and C on every combination; stop when the decision flips or after `max_attributes`."""
    check_count("max_attributes", max_attributes)
    check_count("candidates", candidates)
    styles, dtype, base_logits, source, target = _prepare(model, styles, stats, target, precision)
    effect = _single_effects(model, styles, stats, shift_size, effect, precision)
    pool = _best_directions(effect, target, candidates)
    layout = model.generator.layout
    chosen: list[Attribute] = []
    path = [base_logits]
    while pool and len(chosen) < max_attributes:
        prefix = [(a.coordinate, a.direction) for a in chosen]
        edit_sets = [[*prefix, (a.coordinate, a.direction)] for a in pool]
        _, logits = render(model, edit_sets_of_one(styles, layout, stats, edit_sets, shift_size), dtype)
        pick = int(logits[:, target].argmax())
        chosen.append(pool.pop(pick))
        path.append(logits[pick])
        if int(logits[pick].argmax()) != source:
            break
    logits = torch.stack(path).cpu()
    return Explanation("subset", source, target, chosen, logits, _first_flip(logits, source))


@torch.no_grad()
def sweep(model: StylexModel, styles: Sequence[Tensor], stats: StyleStats, edits: Sequence[Edit],
          shift_size: float = 1.0, frames: int = 12, precision: str = "float32",
          edit: EditFn | None = None) -> tuple[Tensor, Tensor]:
    """A smooth edit: the images and classifier logits with `edits` applied at shift 0 .. shift_size in
    `frames` steps ([frames, C, H, W], [frames, classes]); `edit` is the method's rule (default AttFind's)."""
    layout = model.generator.layout
    styles = _check_one_image(styles, layout)
    if frames < 2:
        raise UserError(f"a sweep needs at least 2 frames, got {frames}")
    dtype = resolve_precision(precision)
    rows = [s.expand(frames, -1) for s in styles]
    sizes = torch.linspace(0, shift_size, frames)
    edit = edit or attfind_edit(layout, stats)
    return render(model, edit(rows, edits, sizes), dtype)


def explain(model: StylexModel, styles: Sequence[Tensor], stats: StyleStats, strategy: str, **options
            ) -> Explanation:
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    return (independent if strategy == "independent" else subset)(model, styles, stats, **options)
