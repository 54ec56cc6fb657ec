"""The `gradient` baseline: AttFind on first-order effects (a cheap AttFind; DESIGN section 7).

AttFind's exact effect of an edit is the change of logit c when coordinate k of image n moves toward its
minimum or maximum, `s_k += shift * (target_k - s_k)`: 2K generator+classifier suffix runs per image. To first
order it is the gradient of logit c with respect to s_k times that displacement,

    effect1[n, d, k, c] = dlogit_c/ds_k (n) * shift * (target_{d,k} - s_{n,k}),

which one backward pass per class gives for every coordinate and both directions at once. The gradient
baseline runs AttFind's unchanged selection (greedy per class, the official binary merge) on these estimates,
on the StylEx generator, and edits like AttFind. How close it comes to the exact search is what it measures.
The first-order computation lives in `stylex.screening` (model code never imports a baseline), where screened
AttFind (`attfind.screen`) uses it to choose which coordinates get exact effects.
"""

from __future__ import annotations

from stylex.attfind import Effects, find_attributes
from stylex.attributes import AttributeSet
from stylex.methods import AttributeMethod
from stylex.pipeline import AttFindResult, RunContext
from stylex.screening import first_order_effects, style_gradients


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
