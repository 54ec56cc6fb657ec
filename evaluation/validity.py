"""Oracle validity (DESIGN section 7, the 2026 battery): the share of counterfactuals whose flip the independent
oracle classifier also sees.

A counterfactual is valid for the explained classifier when its decision changes; that alone cannot tell a real
change of class from an adversarial perturbation of one network. The oracle (another architecture and seed, never
used in training) is the judge DiVE, DiME and ACE use for that: a counterfactual counts when both decisions changed.
The share is over all counterfactuals, so a method that flips little (random attributes) scores little; the
agreement among the flipped ones is reported beside it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from evaluation.intervals import wilson_interval
from stylex.errors import UserError


def validity_row(k: int, explained_flipped: Tensor, oracle_flipped: Tensor) -> dict:
    """One k: {"k", "images", "flipped", "confirmed", "fraction" (confirmed / images) with its Wilson interval,
    "agreement" (confirmed / flipped, None when nothing flipped)}; both inputs [N] bool, per counterfactual."""
    explained_flipped = torch.as_tensor(explained_flipped, dtype=torch.bool).flatten()
    oracle_flipped = torch.as_tensor(oracle_flipped, dtype=torch.bool).flatten()
    if explained_flipped.shape != oracle_flipped.shape or explained_flipped.numel() == 0:
        raise UserError(f"validity needs one explained and one oracle flip per counterfactual, got "
                        f"{explained_flipped.numel()} and {oracle_flipped.numel()}")
    images = explained_flipped.numel()
    flipped = int(explained_flipped.sum())
    confirmed = int((explained_flipped & oracle_flipped).sum())
    low, high = wilson_interval(confirmed, images)
    return {"k": k, "images": images, "flipped": flipped, "confirmed": confirmed, "fraction": confirmed / images,
            "ci_low": low, "ci_high": high, "agreement": confirmed / flipped if flipped else None}
