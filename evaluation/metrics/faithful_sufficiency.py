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
    real_decisions = {judge: predictions(classifier, real) for judge, classifier in judges.items()}
    results = {judge: {"methods": {}} for judge in judges}
    for item in inputs.items:
        flips = flips_of(inputs, item)["flipped"]
        reconstructions = inputs.reconstructions(item).images
        for judge, classifier in judges.items():
            kept = predictions(classifier, reconstructions) == real_decisions[judge]
            results[judge]["methods"][item.method.key] = {
                "kept": int(kept.sum()), "images": int(kept.numel()),
                "curves": {strategy: None if flipped is None else faithful_curve(torch.tensor(flipped), kept)
                           for strategy, flipped in flips.items()}}
    return {"shift_size": inputs.config.attfind.shift_size, "max_k": inputs.config.evaluation.max_k,
            "judges": results}


METRIC = Metric("faithful_sufficiency", measure, order=11)
