"""Class-level counterfactuals: every image edited with the first k of a method's attributes toward its target
class (the most probable class other than its prediction on the reconstruction), all k shifted at once.
Sufficiency counts their flips, FID under perturbation measures how far they drift from real images."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from evaluation.methods import Method
from stylex.editing import render
from stylex.explain import default_target
from stylex.model import StylexModel


@torch.no_grad()
def reconstruction(model: StylexModel, styles: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(images, logits, target class per image) of the unedited reconstructions."""
    images, logits = render(model, styles)
    targets = torch.tensor([default_target(row) for row in logits], dtype=torch.long)
    return images, logits, targets


@torch.no_grad()
def class_level(model: StylexModel, styles: Sequence[Tensor], method: Method, ks: Sequence[int],
                shift_size: float, targets: Tensor) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
    """For each k in `ks`: (k, images [N, C, H, W], logits [N, classes], applied [N] bool) in image order.
    `applied` is False for images whose target class has fewer than k attributes: they carry the longest
    list the method found (so a curve stays flat there instead of inventing edits)."""
    layout = model.generator.layout
    count = styles[0].shape[0]
    for k in ks:
        images: Tensor | None = None
        logits: Tensor | None = None
        applied = torch.zeros(count, dtype=torch.bool)
        for target in targets.unique().tolist():
            rows = (targets == target).nonzero().flatten()
            ranked = method.attributes.toward(target)
            edits = [(a.coordinate, a.direction) for a in ranked[:k]]
            group = [s[rows] for s in styles]
            image, logit = render(model, method.edit(group, layout, edits, shift_size) if edits else group)
            if images is None:
                images = image.new_empty(count, *image.shape[1:])
                logits = logit.new_empty(count, logit.shape[1])
            images[rows], logits[rows] = image, logit
            applied[rows] = len(ranked) >= k
        yield k, images, logits, applied
