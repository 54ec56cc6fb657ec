"""Faithful sufficiency (DESIGN section 7, the 2026 battery): sufficiency counted only over the images whose
reconstruction keeps the real image's decision.

Sufficiency judges a flip against the reconstruction G(E(x)), so an unfaithful generator whose reconstructions sit
near the decision boundary (or on the wrong side of it) makes every method look sufficient: a small edit flips a
decision that was never the real image's. Counting only the images whose reconstruction keeps the real decision
removes that credit; judging "keeps" by the independent oracle as well removes it for a generator that fits the
explained classifier's decision without the image's content.
"""

from __future__ import annotations

import torch
from torch import Tensor

from evaluation.sufficiency import curve
from stylex.errors import UserError


def faithful_curve(flipped: Tensor, kept: Tensor) -> list[dict] | None:
    """The sufficiency curve (`evaluation.sufficiency.curve`) of the rows of `flipped` [N, K] whose `kept` [N] is
    True; None when no reconstruction kept its decision (there is nothing to count)."""
    flipped = torch.as_tensor(flipped, dtype=torch.bool)
    kept = torch.as_tensor(kept, dtype=torch.bool).flatten()
    if flipped.ndim != 2 or kept.shape[0] != flipped.shape[0]:
        raise UserError(f"faithful sufficiency needs flips [N, K] and one kept flag per image, got "
                        f"{list(flipped.shape)} and {list(kept.shape)}")
    if not bool(kept.any()):
        return None
    return curve(flipped[kept])
