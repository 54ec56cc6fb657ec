"""Off-target changes (DESIGN section 7, the 2026 battery; the shapes analogue of MNAC, Rodriguez et al. 2021):
per counterfactual, how many factors the label does not depend on the factor probes see changing, and whether a
factor it does depend on changed.

MNAC counts the attributes an oracle sees changing besides the target; on shapes the generative factors are known,
so the oracle is the factor probes (`evaluation.recovery`) and a factor counts as changed when its normalized change
(1.0 = as much as swapping it with a random image's) reaches `min_change`. A good counterfactual changes a causal
factor (size or spot) and little else.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from evaluation.intervals import mean_interval, wilson_interval
from stylex.errors import UserError


def off_target_summary(changes: Tensor, factors: Sequence[str], causal: Sequence[str], min_change: float) -> dict:
    """`changes` [N, F]: normalized change of each factor per counterfactual (`recovery.image_factor_changes`).
    -> {"n", "off_target": mean/std/interval of the non-causal factors changed per counterfactual,
    "causal_changed": share of counterfactuals with a causal factor changed (Wilson interval),
    "per_factor": {factor: share of counterfactuals where it changed}}."""
    changes = torch.as_tensor(changes)
    factors = list(factors)
    if changes.ndim != 2 or changes.shape[1] != len(factors) or changes.shape[0] == 0:
        raise UserError(f"off-target changes need [N >= 1, {len(factors)}] factor changes, got {list(changes.shape)}")
    unknown = sorted(set(causal) - set(factors))
    if unknown:
        raise UserError(f"causal factors {unknown} are not among the measured factors {factors}")
    changed = changes >= min_change
    is_causal = torch.tensor([factor in causal for factor in factors])
    count = changes.shape[0]
    causal_changed = int(changed[:, is_causal].any(dim=1).sum())
    low, high = wilson_interval(causal_changed, count)
    return {"n": count, "off_target": mean_interval(changed[:, ~is_causal].sum(dim=1).float()),
            "causal_changed": {"fraction": causal_changed / count, "ci_low": low, "ci_high": high},
            "per_factor": {factor: float(changed[:, column].float().mean()) for column, factor in enumerate(factors)}}
