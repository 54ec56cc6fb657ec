"""`proximity`: L1 and LPIPS between each method's class-level counterfactuals and their reconstructions at k = 1,
the middle of the curve and `evaluation.max_k` (the k of `cout`); mean, std and N per k."""

from __future__ import annotations

from evaluation import counterfactuals
from evaluation.metrics.base import Evaluated, Metric, MetricInputs
from evaluation.metrics.cout import checked_ks
from evaluation.proximity import proximity
from stylex.losses import build_lpips


def summary(values) -> dict:
    values = values.double()
    return {"mean": float(values.mean()), "std": float(values.std(unbiased=False))}


def rows_of(inputs: MetricInputs, item: Evaluated, lpips) -> list[dict]:
    shift = inputs.config.attfind.shift_size
    ks = checked_ks(inputs.config.evaluation.max_k)
    model = item.ctx.model

    def compute() -> list[dict]:
        images, _, targets = counterfactuals.reconstruction(model, item.styles)
        rows = []
        for k, edited, _, _ in counterfactuals.class_level(model, item.styles, item.method, ks, shift, targets):
            l1, perceptual = proximity(images, edited, lpips)
            rows.append({"k": k, "l1": summary(l1), "lpips": summary(perceptual), "n": int(l1.numel())})
        return rows

    key = item.key(stage="proximity", shift=shift, ks=ks, lpips=[inputs.config.train.lpips,
                                                                 inputs.config.train.lpips_net])
    return inputs.cached(f"proximity-{item.method.key}", key, compute)


def measure(inputs: MetricInputs) -> dict:
    config = inputs.config
    lpips = build_lpips(config.train.lpips, config.train.lpips_net).to(inputs.device)
    return {"lpips_mode": config.train.lpips, "strategy": "class_level", "shift_size": config.attfind.shift_size,
            "methods": {item.method.key: rows_of(inputs, item, lpips) for item in inputs.items}}


METRIC = Metric("proximity", measure, order=26)
