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


def mean_interval(values, confidence: float = 0.95) -> dict:
    """{"mean", "std", "ci_low", "ci_high"} of per-image values: the normal-approximation interval of the mean
    (images are independent; N is at least in the tens for every benchmark metric that uses it)."""
    import torch  # only the benchmark's metrics call this; the study analysis imports this module without torch

    values = torch.as_tensor(values).double().flatten()
    if values.numel() == 0:
        raise UserError("a mean needs at least one value")
    mean = float(values.mean())
    std = float(values.std(unbiased=False))
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * std / math.sqrt(values.numel())
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}
