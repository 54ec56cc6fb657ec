"""The `gradient` baseline: AttFind on first-order effects (a cheap AttFind; DESIGN section 7).

AttFind's exact effect of an edit is the change of logit c when coordinate k of image n moves toward its
minimum or maximum, `s_k += shift * (target_k - s_k)`: 2K generator+classifier suffix runs per image. To first
order it is the gradient of logit c with respect to s_k times that displacement,

    effect1[n, d, k, c] = dlogit_c/ds_k (n) * shift * (target_{d,k} - s_{n,k}),

which one backward pass per class gives for every coordinate and both directions at once. The gradient
baseline runs AttFind's unchanged selection (greedy per class, the official binary merge) on these estimates,
on the StylEx generator, and edits like AttFind. How close it comes to the exact search is what it measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stylex.attfind import Effects, find_attributes
from stylex.attributes import AttributeSet
from stylex.methods import AttributeMethod
from stylex.model import StylexModel
from stylex.pipeline import AttFindResult, RunContext
from stylex.stats import StyleStats

BATCH_IMAGES = 32


def style_gradients(model: StylexModel, styles: Sequence[Tensor], batch_images: int = BATCH_IMAGES) -> Tensor:
    """[N, K, C]: the gradient of each classifier logit with respect to every conv style coordinate, per image
    (stored fp32, on CPU), at the reconstruction G(styles) with constant noise, in the styles' precision."""
    layout = model.generator.layout
    device = model.device
    count = styles[0].shape[0]
    num_classes = model.classifier.num_classes
    gradients = torch.empty(count, layout.conv_dim, num_classes)
    for start in range(0, count, batch_images):
        rows = [s[start:start + batch_images].detach().to(device).requires_grad_(True) for s in styles]
        with torch.enable_grad():
            image, _ = model.generator.synthesize(rows)
            logits = model.classifier(image).float()
            for c in range(num_classes):
                # images are independent, so the gradient of the summed logit is each image's own gradient
                per_layer = torch.autograd.grad(logits[:, c].sum(), rows, retain_graph=c < num_classes - 1)
                gradients[start:start + len(rows[0]), :, c] = layout.conv_flatten(list(per_layer)).cpu()
    return gradients


def first_order_effects(gradients: Tensor, conv_styles: Tensor, stats: StyleStats, shift_size: float) -> Tensor:
    """[N, 2, K, C] first-order estimates of AttFind's effect tensor from `style_gradients` [N, K, C] and the
    images' conv styles [N, K]."""
    targets = torch.stack([stats.minimum, stats.maximum])  # [2, K]
    displacement = shift_size * (targets[None] - conv_styles[:, None])  # [N, 2, K]
    return gradients[:, None] * displacement[..., None]


def select_for_run(ctx: RunContext, found: AttFindResult) -> AttributeSet:
    cfg = ctx.config.attfind
    layout = ctx.model.generator.layout
    gradients = style_gradients(ctx.model, found.styles)
    estimated = first_order_effects(gradients, layout.conv_flatten(found.styles), found.stats, cfg.shift_size)
    # the exact baseline logits: AttFind's notion of each image's class stays the same
    effects = Effects(estimated, found.effects.baseline, {"shift_size": cfg.shift_size, "first_order": True})
    return find_attributes(effects, ctx.classes, layout, "gradient", cfg.num_attributes, cfg.threshold,
                           cfg.discard_inconsistent,
                           provenance={"checkpoint_step": ctx.model.step, "stats_source": found.stats.source,
                                       "effects": "first order (gradient x displacement)"})


METHOD = AttributeMethod("gradient", "Gradient", "stylex", select_for_run, order=25,
                         description="first-order AttFind, its selection on gradient x displacement estimates")
