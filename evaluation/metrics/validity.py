"""`validity`: the share of each method's class-level counterfactuals (k = 1..max_k) whose flip the independent
oracle classifier also sees (`evaluation.validity`); needs the run's oracle.pt (else the section is left out)."""

from __future__ import annotations

import logging

import torch

from evaluation.faithfulness import predictions
from evaluation.metrics.base import Evaluated, Metric, MetricInputs
from evaluation.validity import validity_row
from stylex.artifacts import fingerprint

log = logging.getLogger("stylex.benchmark")


def rows_of(inputs: MetricInputs, item: Evaluated, oracle) -> list[dict]:
    ks = list(range(1, inputs.config.evaluation.max_k + 1))

    def compute() -> list[dict]:
        recon = inputs.reconstructions(item)
        explained_source = recon.logits.argmax(dim=1).cpu()
        oracle_source = predictions(oracle, recon.images)
        rows = []
        for k, counterfactual in inputs.counterfactuals(item, ks).items():
            rows.append(validity_row(k, counterfactual.logits.argmax(dim=1).cpu() != explained_source,
                                     predictions(oracle, counterfactual.images) != oracle_source))
        return rows

    key = item.key(stage="validity", shift=inputs.config.attfind.shift_size, ks=ks, oracle=fingerprint(oracle))
    return inputs.cached(f"validity-{item.method.key}", key, compute)


def measure(inputs: MetricInputs) -> dict | None:
    oracle = inputs.oracle()
    if oracle is None:
        log.warning("no oracle classifier at %s: oracle validity is not measured (train it with "
                    "`stylex train-classifier --oracle`)", inputs.run.oracle)
        return None
    with torch.no_grad():
        methods = {item.method.key: rows_of(inputs, item, oracle) for item in inputs.items}
    return {"strategy": "class_level", "shift_size": inputs.config.attfind.shift_size, "methods": methods}


METRIC = Metric("validity", measure, order=12)
