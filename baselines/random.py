"""The `random` baseline: the floor every metric should beat (DESIGN section 7).

Per class, `attfind.num_attributes` distinct conv coordinates and directions drawn uniformly with the run's
`attfind.seed`, on the StylEx generator, edited like AttFind. Each attribute's `mean_effect` is its exact mean
effect on the class logit over the images not of that class (from the effect tensor), so the attribute files
say how little a random edit does.
"""

from __future__ import annotations

import torch

from stylex.attributes import Attribute, AttributeSet
from stylex.methods import AttributeMethod
from stylex.pipeline import AttFindResult, RunContext
from stylex.runtime import code_version


def random_attributes(effect: torch.Tensor, predicted: torch.Tensor, num_attributes: int, seed: int
                      ) -> dict[int, list[Attribute]]:
    """Per class c: `num_attributes` distinct coordinates (fewer if K is smaller) with random directions, drawn
    from a generator seeded by (seed, c); `effect` is the [N, 2, K, C] effect tensor."""
    _, _, conv_dim, num_classes = effect.shape
    per_class = {}
    for c in range(num_classes):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + c)
        coordinates = torch.randperm(conv_dim, generator=generator)[:num_attributes]
        directions = torch.randint(0, 2, (len(coordinates),), generator=generator)
        others = predicted != c
        rows = effect[others] if bool(others.any()) else effect
        per_class[c] = [Attribute(int(k), int(d), float(rows[:, int(d), int(k), c].double().mean()), c)
                        for k, d in zip(coordinates, directions, strict=True)]
    return per_class


def select_for_run(ctx: RunContext, found: AttFindResult) -> AttributeSet:
    cfg = ctx.config.attfind
    predicted = found.effects.predicted
    per_class = random_attributes(found.effects.effect, predicted, cfg.num_attributes, cfg.seed)
    settings = {"num_attributes": cfg.num_attributes, "seed": cfg.seed, "num_images": int(predicted.numel()),
                "images_per_class": torch.bincount(predicted, minlength=len(ctx.classes)).tolist()}
    return AttributeSet("random", list(ctx.classes), per_class, None, ctx.model.generator.layout.summary(), settings,
                        {"code_version": code_version(), "checkpoint_step": ctx.model.step,
                         "stats_source": found.stats.source})


METHOD = AttributeMethod("random", "Random", "stylex", select_for_run, order=5,
                         description="random conv coordinates and directions (the floor)")
