"""`proximity`: L1 and LPIPS between each method's class-level counterfactuals and their reconstructions at k = 1,
the middle of the curve and `evaluation.max_k` (the k of `cout`); mean, std, 95% interval of the mean and N per k."""

from __future__ import annotations

from evaluation.intervals import mean_interval
from evaluation.metrics.base import Evaluated, Metric, MetricInputs
from evaluation.metrics.cout import checked_ks
from evaluation.proximity import proximity
from stylex.losses import build_lpips


def rows_of(inputs: MetricInputs, item: Evaluated, lpips) -> list[dict]:
    shift = inputs.config.attfind.shift_size
    ks = checked_ks(inputs.config.evaluation.max_k)

    def compute() -> list[dict]:
        images = inputs.reconstructions(item).images
        rows = []
        for k, counterfactual in inputs.counterfactuals(item, ks).items():
            l1, perceptual = proximity(images, counterfactual.images, lpips)
            rows.append({"k": k, "l1": mean_interval(l1), "lpips": mean_interval(perceptual), "n": int(l1.numel())})
        return rows

    key = item.key(stage="proximity", intervals=True, shift=shift, ks=ks, lpips=[inputs.config.train.lpips,
                                                                 inputs.config.train.lpips_net])
    return inputs.cached(f"proximity-{item.method.key}", key, compute)


def measure(inputs: MetricInputs) -> dict:
    config = inputs.config
    lpips = build_lpips(config.train.lpips, config.train.lpips_net).to(inputs.device)
    return {"lpips_mode": config.train.lpips, "strategy": "class_level", "shift_size": config.attfind.shift_size,
            "methods": {item.method.key: rows_of(inputs, item, lpips) for item in inputs.items}}


METRIC = Metric("proximity", measure, order=26)
