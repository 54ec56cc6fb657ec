"""Sufficiency (the paper's Table 3, extended to curves over k): the fraction of images whose decision flips
when their top-k attributes are changed toward another class, with Wilson 95% intervals.

Flip = the classifier's argmax on the edited reconstruction differs from its argmax on the unedited
reconstruction (not on the real image). Three ways to pick the k attributes:
- `class_level`: the first k attributes of the method's class list toward the image's target class, all
  shifted at once (Table 3);
- `image_level(strategy="independent")`: the image's own top-k by single effect, shifted at once;
- `image_level(strategy="subset")`: greedy with re-evaluation; flipped at k if it flipped within k steps.
The target class of an image is the most probable class other than its predicted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from evaluation import counterfactuals
from evaluation.intervals import wilson_interval
from evaluation.methods import Method
from stylex.errors import UserError
from stylex.explain import independent, subset
from stylex.model import StylexModel
from stylex.progress import progress_bar
from stylex.stats import StyleStats


def curve(flipped: Tensor) -> list[dict]:
    """flipped [N, K] bool (image n flips with its top-(k+1) attributes) -> one row per k = 1..K."""
    flipped = torch.as_tensor(flipped, dtype=torch.bool)
    if flipped.ndim != 2 or flipped.shape[0] == 0:
        raise UserError(f"flipped must be [N >= 1, K] booleans, got {list(flipped.shape)}")
    n = flipped.shape[0]
    rows = []
    for k in range(flipped.shape[1]):
        count = int(flipped[:, k].sum())
        low, high = wilson_interval(count, n)
        rows.append({"k": k + 1, "flipped": count, "images": n, "fraction": count / n, "ci_low": low,
                     "ci_high": high})
    return rows


@torch.no_grad()
def class_level(model: StylexModel, styles: Sequence[Tensor], method: Method, max_k: int = 10,
                shift_size: float = 1.0) -> Tensor:
    """flipped [N, max_k]: the first k of the method's attributes toward each image's target class, all shifted
    at once by the method's own edit rule. Where the method found fewer than k attributes the curve stays at
    its last value."""
    _, logits, targets = counterfactuals.reconstruction(model, styles)
    predicted = logits.argmax(dim=1)
    flipped = torch.zeros(len(predicted), max_k, dtype=torch.bool)
    for k, _, edited, _ in counterfactuals.class_level(model, styles, method, range(1, max_k + 1), shift_size,
                                                      targets):
        flipped[:, k - 1] = edited.argmax(dim=1) != predicted
    return flipped


@torch.no_grad()
def image_level(model: StylexModel, styles: Sequence[Tensor], stats: StyleStats, strategy: str, max_k: int = 10,
                shift_size: float = 1.0, effects: Tensor | None = None, candidates: int = 32,
                progress: bool = False) -> Tensor:
    """flipped [N, max_k] for Independent or Subset explanations of every image (`effects` [N, 2, K, C]: the
    images' rows of the effect tensor, computed for this shift, to skip recomputing them)."""
    if strategy not in ("independent", "subset"):
        raise UserError(f"strategy must be independent or subset, got {strategy!r}")
    count = styles[0].shape[0]
    flipped = torch.zeros(count, max_k, dtype=torch.bool)
    for n in progress_bar(range(count), desc=f"sufficiency {strategy}", unit="image", disable=not progress):
        one = [s[n:n + 1] for s in styles]
        effect = None if effects is None else effects[n]
        if strategy == "independent":
            explanation = independent(model, one, stats, num_attributes=max_k, shift_size=shift_size, effect=effect)
            changed = explanation.logits[1:].argmax(dim=1) != explanation.source  # row k-1: top-k applied
            flipped[n, : len(changed)] = changed
            if len(changed) < max_k and len(changed):
                flipped[n, len(changed):] = changed[-1]
        else:
            explanation = subset(model, one, stats, max_attributes=max_k, shift_size=shift_size, effect=effect,
                                 candidates=candidates)
            if explanation.flipped_at is not None:
                flipped[n, explanation.flipped_at - 1:] = True
    return flipped
