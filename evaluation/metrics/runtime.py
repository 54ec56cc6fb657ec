"""`runtime`: seconds per explained image for every method and strategy, on the benchmark's device.

The first `evaluation.runtime_images` evaluated images are explained one at a time, as a user explains an image,
after one untimed warm-up: class-level renders the reconstruction, picks the target class and applies the method's
first max_k attributes toward it; Independent and Subset run the image's own explanation, including its row of
single-attribute effects. The attribute search itself (AttFind, Wu et al.'s scores) is a one-time cost per
classifier and is not included. Never cached: a time belongs to the machine and the moment it was measured on."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from evaluation import counterfactuals
from evaluation.metrics.base import Evaluated, Metric, MetricInputs
from stylex.explain import independent, subset


def seconds_per_image(explain: Callable[[list[torch.Tensor]], object], styles: list[torch.Tensor],
                      device: torch.device) -> float:
    """Mean wall time of `explain(one image's styles)` over the images of `styles`, after one warm-up call."""
    count = styles[0].shape[0]
    explain([s[:1] for s in styles])
    total = 0.0
    for n in range(count):
        one = [s[n:n + 1] for s in styles]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        explain(one)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total += time.perf_counter() - started
    return total / count


def explainers(inputs: MetricInputs, item: Evaluated) -> dict[str, Callable]:
    cfg, model, method = inputs.config.evaluation, item.ctx.model, item.method
    shift = inputs.config.attfind.shift_size

    def class_level(one):
        _, _, targets = counterfactuals.reconstruction(model, one)
        return list(counterfactuals.class_level(model, one, method, [cfg.max_k], shift, targets))

    found = {"class_level": class_level}
    if method.image_level:
        found["independent"] = lambda one: independent(model, one, item.result.stats, num_attributes=cfg.max_k,
                                                       shift_size=shift)
        found["subset"] = lambda one: subset(model, one, item.result.stats, max_attributes=cfg.max_k,
                                             shift_size=shift, candidates=cfg.subset_candidates)
    return {strategy: explain for strategy, explain in found.items() if strategy in cfg.strategies}


def measure(inputs: MetricInputs) -> dict:
    count = min(inputs.config.evaluation.runtime_images, inputs.items[0].count)
    methods = {}
    with torch.no_grad():
        for item in inputs.items:
            styles = [s[:count] for s in item.styles]
            methods[item.method.key] = {
                strategy: {"seconds_per_image": seconds_per_image(explain, styles, inputs.device), "images": count}
                for strategy, explain in explainers(inputs, item).items()}
    return {"device": str(inputs.device), "images": count, "methods": methods}


METRIC = Metric("runtime", measure, order=90)
