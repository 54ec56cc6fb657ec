"""The three compared methods and how each one edits styles (DESIGN section 7).

- "wu": Wu et al.'s StyleSpace selection on the generator trained *without* the classifier (the paper compares
  selection methods on a standard StyleGAN2), edits `s_c += shift * alpha * sigma_pop,c`;
- "stylex-nocst": AttFind on that same generator (the paper's "StylEx w/o CST");
- "stylex": AttFind on the classifier-specifically trained generator.
AttFind edits move a coordinate toward its minimum / maximum, `s += shift * (target - s)`.
Every evaluation goes through `Method.edit`, so all methods are treated alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from baselines import wu
from stylex.attfind import AttributeSet
from stylex.editing import Edit, edit_styles
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.stats import StyleStats

METHODS = ("wu", "stylex-nocst", "stylex")
LABELS = {"wu": "Wu et al.", "stylex-nocst": "StylEx w/o CST", "stylex": "StylEx"}
VARIANTS = {"wu": "stylex-nocst", "stylex-nocst": "stylex-nocst", "stylex": "stylex"}
# Independent and Subset are StylEx's image-specific strategies, built on AttFind's effect tensor
IMAGE_LEVEL = {"stylex-nocst", "stylex"}


@dataclass
class Method:
    key: str
    attributes: AttributeSet
    stats: StyleStats  # of the method's generator (VARIANTS[key])

    def __post_init__(self):
        if self.key not in METHODS:
            raise UserError(f"unknown method {self.key!r}; methods: {', '.join(METHODS)}")

    @property
    def label(self) -> str:
        return LABELS[self.key]

    @property
    def variant(self) -> str:
        return VARIANTS[self.key]

    @property
    def edit_rule(self) -> str:
        if self.attributes.settings.get("edit_scale") == "population std":
            return f"s += shift * {self.attributes.settings['alpha']:g} * sigma_pop (Wu et al.)"
        return "s += shift * (min|max - s) (AttFind)"

    def edit(self, styles: Sequence[Tensor], layout: StyleLayout, edits: Sequence[Edit],
             shift_size: float | Tensor = 1.0) -> list[Tensor]:
        """`styles` with `edits` applied to every row, by this method's rule, scaled by `shift_size`."""
        if self.attributes.settings.get("edit_scale") == "population std":
            return wu.edit_styles(styles, layout, self.stats, edits, shift_size * self.attributes.settings["alpha"])
        return edit_styles(styles, layout, self.stats, edits, shift_size)
