"""Proximity of counterfactuals (DESIGN section 7, the 2026 battery): how far each counterfactual moved from the
reconstruction it edits, per image, as mean absolute pixel difference (L1, images in [-1, 1]) and LPIPS."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stylex.errors import UserError


@torch.no_grad()
def proximity(reconstructions: Tensor, counterfactuals: Tensor, lpips: nn.Module) -> tuple[Tensor, Tensor]:
    """([B] L1, [B] LPIPS) between each counterfactual and its reconstruction; both 0 for an unchanged image."""
    if reconstructions.ndim != 4 or reconstructions.shape != counterfactuals.shape:
        raise UserError(f"proximity needs reconstructions and counterfactuals of the same shape [B, C, H, W], got "
                        f"{list(reconstructions.shape)} and {list(counterfactuals.shape)}")
    l1 = (counterfactuals - reconstructions).abs().flatten(1).mean(dim=1)
    perceptual = lpips(counterfactuals, reconstructions).flatten()
    return l1.float().cpu(), perceptual.float().cpu()
