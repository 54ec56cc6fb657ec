"""Binomial confidence intervals for the evaluation tables (sufficiency, study accuracies)."""

from __future__ import annotations

import math
from statistics import NormalDist

from stylex.errors import UserError


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved at 0 and 1, unlike the normal one)."""
    if trials < 0 or not 0 <= successes <= trials:
        raise UserError(f"a proportion needs 0 <= successes <= trials, got {successes} of {trials}")
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be in (0, 1), got {confidence}")
    if trials == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, not 1e-17 rounding residue
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high
