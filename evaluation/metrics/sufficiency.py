"""`sufficiency` (the paper's Table 3, extended to curves over k): the share of images whose decision flips when
the top-k attributes are applied, class-level for every method and Independent / Subset where they apply."""

from __future__ import annotations

from evaluation import sufficiency
from evaluation.metrics.base import Evaluated, Metric, MetricInputs

STRATEGIES = ("class_level", "independent", "subset")


def flips_of(inputs: MetricInputs, item: Evaluated) -> dict:
    """{"curves": {strategy: curve rows or None}, "flipped": {strategy: per image, 0/1 per k = 1..max_k, or None}}
    for one method; the per-image flips let faithful sufficiency count over any subset of the images."""
    cfg = inputs.config.evaluation
    shift = inputs.config.attfind.shift_size

    def compute() -> dict:
        curves, flips = {}, {}
        for strategy in STRATEGIES:
            if strategy not in cfg.strategies or (strategy != "class_level" and not item.method.image_level):
                curves[strategy] = flips[strategy] = None
                continue
            if strategy == "class_level":
                flipped = sufficiency.class_level(item.ctx.model, item.styles, item.method, cfg.max_k, shift)
            else:
                flipped = sufficiency.image_level(item.ctx.model, item.styles, item.result.stats, strategy,
                                                  cfg.max_k, shift, item.result.effects.effect[: item.count],
                                                  candidates=cfg.subset_candidates, progress=inputs.progress)
            curves[strategy] = sufficiency.curve(flipped)
            flips[strategy] = flipped.int().tolist()
        return {"curves": curves, "flipped": flips}

    key = item.key(stage="sufficiency", shift=shift, max_k=cfg.max_k, strategies=cfg.strategies,
                   candidates=cfg.subset_candidates, per_image=True)
    return inputs.cached(f"sufficiency-{item.method.key}", key, compute)


def measure(inputs: MetricInputs) -> dict:
    return {"num_images": inputs.items[0].count, "shift_size": inputs.config.attfind.shift_size,
            "max_k": inputs.config.evaluation.max_k,
            "curves": {item.method.key: flips_of(inputs, item)["curves"] for item in inputs.items}}


METRIC = Metric("sufficiency", measure, order=10)
