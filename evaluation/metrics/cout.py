"""`cout`: COUT of each method's class-level counterfactuals (`evaluation.cout`), at k = 1, the middle of the curve
and `evaluation.max_k`, each image toward its target class; mean, std, 95% interval of the mean and N per k."""

from __future__ import annotations

import torch

from evaluation.cout import DEFAULT_STEPS, cout
from evaluation.intervals import mean_interval
from evaluation.metrics.base import Evaluated, Metric, MetricInputs


def checked_ks(max_k: int) -> list[int]:
    return sorted({1, (max_k + 1) // 2, max_k})


def rows_of(inputs: MetricInputs, item: Evaluated) -> list[dict]:
    shift = inputs.config.attfind.shift_size
    ks = checked_ks(inputs.config.evaluation.max_k)
    model = item.ctx.model

    def compute() -> list[dict]:
        recon = inputs.reconstructions(item)
        source = recon.logits.argmax(dim=1)
        targets = recon.targets.to(source.device)
        rows = []
        for k, counterfactual in inputs.counterfactuals(item, ks).items():
            scores = cout(model.classifier, recon.images, counterfactual.images, source, targets)
            rows.append({"k": k, **mean_interval(scores.cpu()), "n": int(scores.numel())})
        return rows

    key = item.key(stage="cout", intervals=True, shift=shift, ks=ks, steps=DEFAULT_STEPS)
    return inputs.cached(f"cout-{item.method.key}", key, compute)


def measure(inputs: MetricInputs) -> dict:
    with torch.no_grad():
        methods = {item.method.key: rows_of(inputs, item) for item in inputs.items}
    return {"steps": DEFAULT_STEPS, "strategy": "class_level", "shift_size": inputs.config.attfind.shift_size,
            "methods": methods}


METRIC = Metric("cout", measure, order=25)
