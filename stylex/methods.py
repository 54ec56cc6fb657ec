"""Attribute-selection methods as plug-ins (DESIGN section 7): what a method is, and StylEx's own two.

A method has a key, a label, the generator variant it runs on, whether StylEx's image-level strategies
(Independent, Subset) apply to it, and how it selects its `AttributeSet` from that variant's AttFind run (the
set carries its edit rule). StylEx and StylEx w/o CST are defined here; every baseline defines `METHOD` in its
own module under `baselines/`, and `evaluation.methods` collects them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stylex.attributes import AttributeSet
from stylex.pipeline import AttFindResult, RunContext


@dataclass(frozen=True)
class AttributeMethod:
    key: str  # file and table key: attributes/<key>.json, report figures/<key>/
    label: str  # how tables and figures name it
    variant: str  # the generator it explains with: "stylex" or "stylex-nocst"
    select: Callable[[RunContext, AttFindResult], AttributeSet]  # the variant's run and AttFind results -> set
    image_level: bool = False  # Independent and Subset (they need the AttFind effect tensor and edit rule)
    order: int = 100  # position in tables and figures, smallest first
    description: str = ""


def _attfind_attributes(ctx: RunContext, found: AttFindResult) -> AttributeSet:
    return found.attributes


STYLEX = AttributeMethod("stylex", "StylEx", "stylex", _attfind_attributes, image_level=True, order=30,
                         description="AttFind on the classifier-specifically trained generator")
STYLEX_NOCST = AttributeMethod("stylex-nocst", "StylEx w/o CST", "stylex-nocst", _attfind_attributes,
                               image_level=True, order=20,
                               description="AttFind on the generator trained without the classifier")
BUILT_IN = (STYLEX_NOCST, STYLEX)
