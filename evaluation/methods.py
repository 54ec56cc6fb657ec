"""The method registry (DESIGN section 7): StylEx's two AttFind methods plus every baseline module's `METHOD`.

A baseline is one module under `baselines/` that defines `METHOD = AttributeMethod(...)`; it is found here by
walking the package, so adding one touches no other file. `Method` is one method's found attributes, ready
for the evaluations: every evaluation edits through `Method.edit`, i.e. by the attribute set's own edit rule.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

import baselines
from evaluation.registry import collect, sort_unique
from stylex.attributes import AttributeSet
from stylex.editing import Edit
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.methods import BUILT_IN, AttributeMethod
from stylex.stats import StyleStats


@functools.cache
def registered() -> tuple[AttributeMethod, ...]:
    """Every method, in table order."""
    found = [*BUILT_IN, *collect(baselines, "METHOD", AttributeMethod, "key")]
    return tuple(sort_unique(found, "key"))


def keys() -> tuple[str, ...]:
    return tuple(m.key for m in registered())


def get(key: str) -> AttributeMethod:
    for method in registered():
        if method.key == key:
            return method
    raise UserError(f"unknown method {key!r}; methods: {', '.join(keys())}")


@dataclass
class Method:
    """A registered method with the attributes it found and the style statistics of its generator."""

    spec: AttributeMethod
    attributes: AttributeSet
    stats: StyleStats  # of the method's generator

    @classmethod
    def of(cls, key: str, attributes: AttributeSet, stats: StyleStats) -> Method:
        return cls(get(key), attributes, stats)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def variant(self) -> str:
        return self.spec.variant

    @property
    def image_level(self) -> bool:
        return self.spec.image_level

    @property
    def edit_rule(self) -> str:
        return self.attributes.edit_rule.describe()

    def edit(self, styles: Sequence[Tensor], layout: StyleLayout, edits: Sequence[Edit],
             shift_size: float | Tensor = 1.0) -> list[Tensor]:
        """`styles` with `edits` applied to every row, by this method's rule, scaled by `shift_size`."""
        return self.attributes.edit_rule.apply(styles, layout, self.stats, edits, shift_size)
