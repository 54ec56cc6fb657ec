"""`cout`: COUT of each method's class-level counterfactuals (`evaluation.cout`), at k = 1, the middle of the curve
and `evaluation.max_k`, each image toward its target class; mean, std and N per k."""

from __future__ import annotations

import torch

from evaluation import counterfactuals
from evaluation.cout import DEFAULT_STEPS, cout
from evaluation.metrics.base import Evaluated, Metric, MetricInputs


def checked_ks(max_k: int) -> list[int]:
    return sorted({1, (max_k + 1) // 2, max_k})


def rows_of(inputs: MetricInputs, item: Evaluated) -> list[dict]:
    shift = inputs.config.attfind.shift_size
    ks = checked_ks(inputs.config.evaluation.max_k)
    model = item.ctx.model

    def compute() -> list[dict]:
        images, logits, targets = counterfactuals.reconstruction(model, item.styles)
        source = logits.argmax(dim=1).cpu()
        rows = []
        for k, edited, _, _ in counterfactuals.class_level(model, item.styles, item.method, ks, shift, targets):
            scores = cout(model.classifier, images, edited, source.to(images.device), targets.to(images.device))
            scores = scores.double().cpu()
            rows.append({"k": k, "mean": float(scores.mean()), "std": float(scores.std(unbiased=False)),
                         "n": int(scores.numel())})
        return rows

    key = item.key(stage="cout", shift=shift, ks=ks, steps=DEFAULT_STEPS)
    return inputs.cached(f"cout-{item.method.key}", key, compute)


def measure(inputs: MetricInputs) -> dict:
    with torch.no_grad():
        methods = {item.method.key: rows_of(inputs, item) for item in inputs.items}
    return {"steps": DEFAULT_STEPS, "strategy": "class_level", "shift_size": inputs.config.attfind.shift_size,
            "methods": methods}


METRIC = Metric("cout", measure, order=25)
