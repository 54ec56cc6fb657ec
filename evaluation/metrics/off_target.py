"""`off_target` (shapes only; the MNAC analogue): per class-level counterfactual at the k of `cout`, the number of
non-causal factors the factor probes see changing and whether a causal factor changed (`evaluation.off_target`)."""

from __future__ import annotations

import dataclasses

import torch

from evaluation import generators, recovery
from evaluation.metrics.base import Evaluated, Metric, MetricInputs
from evaluation.metrics.cout import checked_ks
from evaluation.metrics.recovery import applies
from evaluation.off_target import off_target_summary
from stylex.data import build_dataset


def rows_of(inputs: MetricInputs, item: Evaluated, probes: recovery.FactorProbes, settings) -> list[dict]:
    ks = checked_ks(inputs.config.evaluation.max_k)

    def compute() -> list[dict]:
        before = probes.outputs(inputs.reconstructions(item).images)
        rows = []
        for k, counterfactual in inputs.counterfactuals(item, ks).items():
            changes = recovery.image_factor_changes(probes.reference, before, probes.outputs(counterfactual.images))
            rows.append({"k": k, **off_target_summary(changes.cpu(), recovery.FACTOR_NAMES, recovery.CAUSAL_FACTORS,
                                                      recovery.DEFAULT_MIN_CHANGE)})
        return rows

    key = item.key(stage="off_target", shift=inputs.config.attfind.shift_size, ks=ks,
                   min_change=recovery.DEFAULT_MIN_CHANGE, probes=dataclasses.asdict(settings))
    return inputs.cached(f"off_target-{item.method.key}", key, compute)


def measure(inputs: MetricInputs) -> dict:
    settings = generators.probe_settings(inputs.config)
    probes = recovery.load_or_train_probes(inputs.run.probes, build_dataset(inputs.config.data, "train"), settings,
                                           inputs.device, inputs.progress)
    with torch.no_grad():
        methods = {item.method.key: rows_of(inputs, item, probes, settings) for item in inputs.items}
    return {"strategy": "class_level", "shift_size": inputs.config.attfind.shift_size,
            "min_change": recovery.DEFAULT_MIN_CHANGE, "causal": list(recovery.CAUSAL_FACTORS),
            "factors": list(recovery.FACTOR_NAMES), "methods": methods}


METRIC = Metric("off_target", measure, applies, order=31,
                skipped_because="off-target changes need the shapes datasets' known factors")
