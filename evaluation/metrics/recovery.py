"""`recovery` (shapes only): which generative factor each attribute changes, judged by factor probes trained on
the dataset's known factors; precision of each method's top-k against the causal factors."""

from __future__ import annotations

import dataclasses

from evaluation import generators, recovery
from evaluation.metrics.base import Metric, MetricInputs
from stylex.config import Config
from stylex.data import build_dataset


def measure(inputs: MetricInputs) -> dict:
    config = inputs.config
    cfg = config.evaluation
    settings = generators.probe_settings(config)  # the same probes judge faithfulness and recovery
    probes = recovery.load_or_train_probes(inputs.run.probes, build_dataset(config.data, "train"), settings,
                                           inputs.device, inputs.progress)
    quality = probes.quality(build_dataset(config.data, "test"))
    shift = config.attfind.shift_size
    methods = {}
    for item in inputs.items:
        key = item.key(stage="recovery", k=cfg.recovery_k, shift=shift, probes=dataclasses.asdict(settings))
        methods[item.method.key] = inputs.cached(
            f"recovery-{item.method.key}", key,
            lambda item=item: recovery.recover(item.ctx.model, item.styles, item.method, probes, k=cfg.recovery_k,
                                               shift_size=shift))
    return {"k": cfg.recovery_k, "causal": list(recovery.CAUSAL_FACTORS), "factors": list(probes.factor_names),
            "probe_quality": quality, "methods": methods}


def applies(config: Config) -> bool:
    return config.data.dataset in generators.SHAPES_DATASETS


METRIC = Metric("recovery", measure, applies, order=30,
                skipped_because="ground-truth recovery needs the shapes datasets' known factors")
