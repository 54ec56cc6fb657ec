"""COUT, the counterfactual transition score (Khorram and Fuxin, CVPR 2022; used by ACE, CVPR 2023).

The pixels of a counterfactual x' are pasted into its reconstruction x in order of decreasing |x' - x| (summed over
channels), in `steps` equal batches. Along the way the classifier's target-minus-source probability
delta(i) = p_target - p_source is recorded; COUT is half the area (over the pasted fraction, 0 to 1, trapezoid rule)
between that curve and its starting value:

    COUT = 1/2 * integral_0^1 (delta(f) - delta(0)) df,   in [-1, 1], higher is better.

It is 0 when the counterfactual changes nothing the classifier sees, near 1 when the first pixels moved already flip
a confident decision completely, and negative when the changed pixels push the image away from the target. Measuring
the change from the start (rather than the raw area) makes counterfactuals of differently confident images
comparable and gives 0 for an empty edit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stylex.errors import UserError

DEFAULT_STEPS = 20


@torch.no_grad()
def transition_curves(classifier: nn.Module, reconstructions: Tensor, counterfactuals: Tensor, source: Tensor,
                      target: Tensor, steps: int = DEFAULT_STEPS) -> Tensor:
    """[B, steps + 1]: delta = p_target - p_source after pasting 0, 1/steps, ..., all of the pixels of each
    counterfactual into its reconstruction, most changed pixels first."""
    _check(reconstructions, counterfactuals, source, target, steps)
    batch, _, height, width = reconstructions.shape
    pixels = height * width
    order = (counterfactuals - reconstructions).abs().sum(dim=1).flatten(1).argsort(dim=1, descending=True,
                                                                                  stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=order.device).expand(batch, -1))  # each pixel's position
    rows = torch.arange(batch, device=reconstructions.device)
    curves = []
    for step in range(steps + 1):
        pasted = (rank < round(step * pixels / steps)).view(batch, 1, height, width)
        mixed = torch.where(pasted, counterfactuals, reconstructions)
        probabilities = classifier(mixed).float().softmax(dim=1)
        curves.append(probabilities[rows, target] - probabilities[rows, source])
    return torch.stack(curves, dim=1)


def cout(classifier: nn.Module, reconstructions: Tensor, counterfactuals: Tensor, source: Tensor, target: Tensor,
         steps: int = DEFAULT_STEPS) -> Tensor:
    """[B] COUT of each counterfactual (see the module docstring)."""
    curves = transition_curves(classifier, reconstructions, counterfactuals, source, target, steps)
    return cout_from_curves(curves)


def cout_from_curves(curves: Tensor) -> Tensor:
    """[B] half the trapezoid area between each transition curve [B, steps + 1] and its starting value."""
    change = curves - curves[:, :1]
    steps = curves.shape[1] - 1
    return torch.trapezoid(change, dx=1.0 / steps, dim=1) / 2


def _check(reconstructions: Tensor, counterfactuals: Tensor, source: Tensor, target: Tensor, steps: int) -> None:
    if reconstructions.ndim != 4 or reconstructions.shape != counterfactuals.shape:
        raise UserError(f"COUT needs reconstructions and counterfactuals of the same shape [B, C, H, W], got "
                        f"{list(reconstructions.shape)} and {list(counterfactuals.shape)}")
    batch = reconstructions.shape[0]
    if tuple(source.shape) != (batch,) or tuple(target.shape) != (batch,):
        raise UserError(f"COUT needs one source and one target class per image ([{batch}]), got "
                        f"{list(source.shape)} and {list(target.shape)}")
    if bool((source == target).any()):
        raise UserError("COUT compares two classes: an image's target class must differ from its source class")
    if not isinstance(steps, int) or steps < 1:
        raise UserError(f"COUT steps must be an integer >= 1, got {steps!r}")
