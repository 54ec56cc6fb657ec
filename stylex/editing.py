"""Functional StyleSpace edits: shift conv coordinates of style tensors, never weights or biases.

An edit is (coordinate, direction): conv-only flat coordinate k moves toward its minimum (direction 0) or
maximum (direction 1) over the AttFind image set, `s_k += shift_size * (target_k - s_k)` (official StylEx).
The published code adds the shift to an affine bias and subtracts it again; editing copies of the style
tensors instead is re-entrant, batchable, and leaves the model untouched if anything fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.model import StylexModel
from stylex.stats import StyleStats

Edit = tuple[int, int]  # (conv-only flat coordinate, direction: 0 toward the minimum, 1 toward the maximum)
# (styles, edits, shift_size) -> edited styles: how a method edits (AttFind's rule below; baselines bring theirs)
EditFn = Callable[[Sequence[Tensor], Sequence[Edit], "float | Tensor"], list[Tensor]]


def shifted(current: Tensor, target: Tensor, shift_size: float | Tensor) -> Tensor:
    return current + shift_size * (target - current)


def resolve_precision(precision: str) -> torch.dtype:
    """fp32 is the default: on the models measured so far (tiny CPU runs), bf16 moved effects by up to half of
    the largest effect, so bf16 stays opt-in until `benchmarks/attfind_speed.py --compare-bf16` shows a model
    where it agrees. CPUs without native bf16 run it through slow reference kernels."""
    if precision not in ("float32", "bfloat16"):
        raise UserError(f"precision must be float32 or bfloat16, got {precision!r}")
    return getattr(torch, precision)


def autocast(device: torch.device, dtype: torch.dtype):
    """bf16 autocast for the synthesis convs and the classifier; styles stay fp32 (they are inputs)."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def check_edits(edits: Sequence[Edit], layout: StyleLayout) -> list[Edit]:
    checked = []
    for item in edits:
        try:
            coordinate, direction = (int(v) for v in item)
        except (TypeError, ValueError):
            raise UserError(f"an edit is (coordinate, direction), got {item!r}") from None
        if not 0 <= coordinate < layout.conv_dim:
            raise UserError(f"coordinate {coordinate} is outside the conv style space (0..{layout.conv_dim - 1})")
        if direction not in (0, 1):
            raise UserError(f"direction must be 0 (toward the minimum) or 1 (toward the maximum), got {direction}")
        checked.append((coordinate, direction))
    return checked


def edit_columns(styles: Sequence[Tensor], layout: StyleLayout, edits: Sequence[Edit],
                 new_column: Callable[[Tensor, int, int], Tensor]) -> list[Tensor]:
    """Replace the column of every edited coordinate by `new_column(column, coordinate, direction)`, on every row
    of `styles` (one [B, dim] tensor per layer). Edited layers are cloned once; the others are the same tensors.
    This is the one place that turns flat coordinates into layer columns; each method brings its own rule."""
    edits = check_edits(edits, layout)
    out = list(styles)
    cloned: set[int] = set()
    for coordinate, direction in edits:
        name, channel = layout.locate(coordinate)
        index = layout.layer(name).index
        if index not in cloned:
            out[index] = out[index].clone()
            cloned.add(index)
        out[index][:, channel] = new_column(out[index][:, channel], coordinate, direction)
    return out


def edit_styles(styles: Sequence[Tensor], layout: StyleLayout, stats: StyleStats, edits: Sequence[Edit],
                shift_size: float | Tensor = 1.0) -> list[Tensor]:
    """AttFind's edit on every row of `styles`: each coordinate moves toward its min (direction 0) or max
    (direction 1) over the statistics' images. `shift_size` may be a [B] tensor (one per row)."""

    def toward_target(column: Tensor, coordinate: int, direction: int) -> Tensor:
        size = shift_size.to(column) if isinstance(shift_size, Tensor) else shift_size
        return shifted(column, stats.targets(direction)[coordinate].to(column), size)

    return edit_columns(styles, layout, edits, toward_target)


def edit_by_population_std(styles: Sequence[Tensor], layout: StyleLayout, stats: StyleStats, edits: Sequence[Edit],
                           alpha: float | Tensor) -> list[Tensor]:
    """Wu et al.'s edit, `s_c += alpha * sigma_pop,c` toward the attribute (direction 1 adds, 0 subtracts), on
    every row of `styles`; sigma_pop is the std over the statistics' images. `alpha` may be a [B] tensor."""

    def by_population_std(column: Tensor, coordinate: int, direction: int) -> Tensor:
        size = alpha.to(column) if isinstance(alpha, Tensor) else alpha
        sign = 1.0 if direction else -1.0
        return column + sign * size * stats.std[coordinate].to(column)

    return edit_columns(styles, layout, edits, by_population_std)


@dataclass(frozen=True)
class EditRule:
    """How a method's attributes move styles: toward the coordinate's min / max over the statistics' images
    (AttFind, `scale="extremes"`), or by `alpha` population stds per unit of shift (Wu et al.,
    `scale="population std"`). Every evaluation edits through `apply`, so all methods are treated alike."""

    scale: str = "extremes"
    alpha: float = 1.0

    def __post_init__(self):
        if self.scale not in EDIT_SCALES:
            raise UserError(f"unknown edit scale {self.scale!r}; scales: {', '.join(EDIT_SCALES)}")

    def apply(self, styles: Sequence[Tensor], layout: StyleLayout, stats: StyleStats, edits: Sequence[Edit],
              shift_size: float | Tensor = 1.0) -> list[Tensor]:
        if self.scale == "population std":
            return edit_by_population_std(styles, layout, stats, edits, shift_size * self.alpha)
        return edit_styles(styles, layout, stats, edits, shift_size)

    def bind(self, layout: StyleLayout, stats: StyleStats) -> EditFn:
        return lambda styles, edits, shift_size: self.apply(styles, layout, stats, edits, shift_size)

    def describe(self) -> str:
        if self.scale == "population std":
            return f"s += shift * {self.alpha:g} * sigma_pop (Wu et al.)"
        return "s += shift * (min|max - s) (AttFind)"

    def to_settings(self) -> dict:
        """The attribute file's record of the rule (AttFind's, the default, records nothing)."""
        return {} if self.scale == "extremes" else {"edit_scale": self.scale, "alpha": float(self.alpha)}

    @classmethod
    def from_settings(cls, settings: dict) -> EditRule:
        if "edit_scale" not in settings:
            return cls()
        return cls(settings["edit_scale"], float(settings.get("alpha", 1.0)))


EDIT_SCALES = ("extremes", "population std")
TOWARD_EXTREMES = EditRule()


def attfind_edit(layout: StyleLayout, stats: StyleStats) -> EditFn:
    """AttFind's edit rule as an EditFn (toward the min / max over the statistics' images)."""
    return TOWARD_EXTREMES.bind(layout, stats)


def edit_sets_of_one(styles: Sequence[Tensor], layout: StyleLayout, stats: StyleStats,
                     edit_sets: Sequence[Sequence[Edit]], shift_size: float = 1.0) -> list[Tensor]:
    """One image's styles ([1, dim] per layer) edited by each edit set in turn: row r carries edit_sets[r]."""
    rows = [edit_styles(styles, layout, stats, edits, shift_size) for edits in edit_sets]
    return [torch.cat(parts) for parts in zip(*rows, strict=True)]


@torch.no_grad()
def render(model: StylexModel, styles: Sequence[Tensor], precision: torch.dtype = torch.float32,
           batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Images G(styles) and classifier logits on them, in batches: ([B, C, H, W] fp32, [B, classes] fp32)."""
    device = next(model.generator.parameters()).device
    images, logits = [], []
    total = styles[0].shape[0]
    for start in range(0, total, batch_size):
        rows = slice(start, start + batch_size)
        with autocast(device, precision):
            image, _ = model.generator.synthesize([s[rows].to(device) for s in styles], noise_mode="const")
            logits.append(model.classifier(image).float())
        images.append(image.float())
    return torch.cat(images), torch.cat(logits)
