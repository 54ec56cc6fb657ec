"""`faithful_sufficiency`: each method's sufficiency curves (every strategy it has) counted only over the images
whose reconstruction keeps the real image's decision, judged by the explained classifier and, separately, by the
independent oracle (`evaluation.faithful_sufficiency`). Reuses the per-image flips of `sufficiency`."""

from __future__ import annotations

import logging

import torch

from evaluation.faithful_sufficiency import faithful_curve
from evaluation.faithfulness import predictions
from evaluation.metrics.base import Metric, MetricInputs
from evaluation.metrics.sufficiency import flips_of

log = logging.getLogger("stylex.benchmark")


def measure(inputs: MetricInputs) -> dict:
    real = inputs.real_images()
    judges = {"explained": inputs.items[0].ctx.model.classifier, "oracle": inputs.oracle()}
    if judges["oracle"] is None:
        log.warning("no oracle classifier at %s: faithful sufficiency is judged by the explained classifier only",
                    inputs.run.oracle)
        del judges["oracle"]
    results = {}
    for judge, classifier in judges.items():
        real_decisions = predictions(classifier, real)
        methods = {}
        for item in inputs.items:
            kept = predictions(classifier, inputs.reconstructions(item).images) == real_decisions
            flips = flips_of(inputs, item)["flipped"]
            methods[item.method.key] = {
                "kept": int(kept.sum()), "images": int(kept.numel()),
                "curves": {strategy: None if flipped is None else faithful_curve(torch.tensor(flipped), kept)
                           for strategy, flipped in flips.items()}}
        results[judge] = {"methods": methods}
    return {"shift_size": inputs.config.attfind.shift_size, "max_k": inputs.config.evaluation.max_k,
            "judges": results}


METRIC = Metric("faithful_sufficiency", measure, order=11)
