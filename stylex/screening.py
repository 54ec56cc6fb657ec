"""First-order effects of AttFind's edits, and screening AttFind's candidates with them (DESIGN section 6).

AttFind's exact effect of an edit is the change of logit c when conv coordinate k of image n moves toward its
minimum (d=0) or maximum (d=1) over the image set, `s_k += shift * (target_{d,k} - s_k)`: 2K generator and
classifier runs per image. To first order it is the gradient of logit c with respect to s_k times that
displacement,

    effect1[n, d, k, c] = dlogit_c/ds_k (n) * shift * (target_{d,k} - s_{n,k}),

which one forward and C backward passes per batch of images give for every coordinate and both directions.

Screening (`attfind.screen = M`): per class c and direction d, rank the coordinates by the mean of the clipped
first-order effect on logit c over the images AttFind uses for c (those not predicted as c), which is the score
AttFind's greedy step ranks candidates by, and keep the top M. The exact effects are then computed only for the
union of the kept coordinates (`stylex.attfind.compute_effects(screen=M)`), and AttFind's unchanged selection runs
on them. The `gradient` baseline (baselines/gradient.py) runs the selection on the first-order estimates
themselves; both use the functions here, so model code never imports a baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stylex.errors import UserError
from stylex.model import StylexModel

GRADIENT_BATCH_IMAGES = 32  # images per backward pass: the graph of one batch is held for C backward passes


def logit_gradients(model: StylexModel, styles: Sequence[Tensor], batch_images: int = GRADIENT_BATCH_IMAGES
                    ) -> tuple[Tensor, Tensor]:
    """(gradients [N, K, C], logits [N, C]), stored fp32 on CPU: the gradient of each classifier logit with
    respect to every conv style coordinate, per image, at the reconstruction G(styles) with constant noise, and
    the logits there. Computed in the styles' and model's precision (no autocast: even when AttFind's effects
    run in bf16, the gradients only rank candidates and cost a few forwards)."""
    layout = model.generator.layout
    device = model.device
    count = styles[0].shape[0]
    num_classes = model.classifier.num_classes
    gradients = torch.empty(count, layout.conv_dim, num_classes)
    logits_out = torch.empty(count, num_classes)
    for start in range(0, count, batch_images):
        rows = [s[start:start + batch_images].detach().to(device).requires_grad_(True) for s in styles]
        with torch.enable_grad():
            image, _ = model.generator.synthesize(rows)
            logits = model.classifier(image).float()
            for c in range(num_classes):
                # images are independent, so the gradient of the summed logit is each image's own gradient
                per_layer = torch.autograd.grad(logits[:, c].sum(), rows, retain_graph=c < num_classes - 1)
                gradients[start:start + len(rows[0]), :, c] = layout.conv_flatten(list(per_layer)).cpu()
        logits_out[start:start + len(rows[0])] = logits.detach().cpu()
    return gradients, logits_out


def style_gradients(model: StylexModel, styles: Sequence[Tensor], batch_images: int = GRADIENT_BATCH_IMAGES
                    ) -> Tensor:
    """[N, K, C]: `logit_gradients` without the logits."""
    return logit_gradients(model, styles, batch_images)[0]


def displacements(conv_styles: Tensor, stats, shift_size: float) -> Tensor:
    """[N, 2, K]: how far AttFind's edit moves each coordinate, `shift * (target_{d,k} - s_{n,k})`; `stats` is
    anything with `minimum` and `maximum` [K] (a `StyleStats`)."""
    targets = torch.stack([stats.minimum, stats.maximum]).to(conv_styles)  # [2, K]
    return shift_size * (targets[None] - conv_styles[:, None])


def first_order_effects(gradients: Tensor, conv_styles: Tensor, stats, shift_size: float) -> Tensor:
    """[N, 2, K, C] first-order estimates of AttFind's effect tensor from `style_gradients` [N, K, C] and the
    images' conv styles [N, K]."""
    return gradients[:, None] * displacements(conv_styles, stats, shift_size)[..., None]


def screening_scores(gradients: Tensor, conv_styles: Tensor, stats, shift_size: float, predicted: Tensor
                     ) -> Tensor:
    """[C, 2, K]: per class c and direction d, the mean clipped first-order effect on logit c over the images
    not predicted as c (AttFind's candidate score, on the estimates). A class that every image is predicted as
    has nothing for AttFind to explain: its row is -inf, so it keeps no coordinate."""
    moved = displacements(conv_styles, stats, shift_size)  # [N, 2, K]
    num_classes = gradients.shape[2]
    scores = torch.full((num_classes, 2, gradients.shape[1]), -torch.inf, dtype=torch.float64)
    for c in range(num_classes):  # one class at a time: [N', 2, K] instead of the whole [N, 2, K, C]
        others = predicted != c
        if bool(others.any()):
            estimate = gradients[others, None, :, c].double() * moved[others].double()
            scores[c] = estimate.clamp(min=0).mean(dim=0)
    return scores


def kept_coordinates(scores: Tensor, keep: int) -> Tensor:
    """The sorted union over classes and directions of the `keep` best-scored coordinates of each ([U] int64).
    Ties keep the lower coordinate (a stable sort), so the choice is reproducible. keep >= K keeps everything."""
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise UserError(f"screening keeps M >= 1 coordinates per class and direction, got {keep!r}")
    rows = scores.reshape(-1, scores.shape[-1])
    rows = rows[torch.isfinite(rows).any(dim=1)]  # classes with no image to explain keep nothing
    order = rows.argsort(dim=1, descending=True, stable=True)[:, :keep]
    return order.flatten().unique()


def screen(model: StylexModel, styles: Sequence[Tensor], stats, shift_size: float, keep: int,
           batch_images: int = GRADIENT_BATCH_IMAGES) -> Tensor:
    """The conv coordinates whose exact effects a screened AttFind computes (`kept_coordinates` of the
    first-order scores over these images; `predicted` comes from the same forward as the gradients)."""
    gradients, logits = logit_gradients(model, styles, batch_images)
    conv_styles = model.generator.layout.conv_flatten([s.float() for s in styles]).cpu()
    scores = screening_scores(gradients, conv_styles, stats, shift_size, logits.argmax(dim=1))
    return kept_coordinates(scores, keep)
