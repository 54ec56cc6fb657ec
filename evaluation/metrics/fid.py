"""`fid`: Frechet distance between the real evaluated images and reconstructions / top-i counterfactuals
(pytorch-fid's Inception, or the clearly labelled classifier features), for several shift sizes."""

from __future__ import annotations

import dataclasses

import torch

from evaluation import counterfactuals, fid
from evaluation.metrics.base import Metric, MetricInputs
from stylex.artifacts import fingerprint
from stylex.data import build_dataset


def measure(inputs: MetricInputs) -> dict:
    config, items = inputs.config, inputs.items
    cfg = config.evaluation
    extractor = fid.build_extractor(cfg.fid_features, items[0].ctx.model.classifier, inputs.device)
    dataset = build_dataset(config.data, config.attfind.split)
    indices = items[0].result.indices[: items[0].count]

    def real_stats() -> fid.FrechetStats:
        real = torch.stack([dataset[i][0] for i in indices])
        return fid.FrechetStats.from_features(extractor.features(real, progress=inputs.progress))

    reference = fid.reference_statistics(
        inputs.run.fid_reference, {"data": dataclasses.asdict(config.data), "split": config.attfind.split,
                                   "indices": fingerprint(indices), "extractor": extractor.fingerprint},
        real_stats)
    shifts = [float(s) for s in cfg.fid_shift_sizes]
    reconstruction: dict[str, float] = {}
    perturbation: dict[str, dict] = {}
    for item in items:
        def compute(item=item) -> dict:
            images, _, targets = counterfactuals.reconstruction(item.ctx.model, item.styles)
            value = {"reconstruction": fid.distance_to_reference(extractor, reference, images), "curves": {}}
            for shift in shifts:
                rows = []
                for i, edited, _, _ in counterfactuals.class_level(item.ctx.model, item.styles, item.method,
                                                                   range(1, cfg.fid_top + 1), shift, targets):
                    rows.append({"i": i, "value": fid.distance_to_reference(extractor, reference, edited)})
                value["curves"][str(shift)] = rows
            return value

        key = item.key(stage="fid", extractor=extractor.fingerprint, shifts=shifts, top=cfg.fid_top,
                       reference=fingerprint(indices))
        value = inputs.cached(f"fid-{item.method.key}", key, compute)
        reconstruction.setdefault(item.method.variant, value["reconstruction"])
        perturbation[item.method.key] = value["curves"]
    return {"features": extractor.name, "label": extractor.label, "num_images": len(indices),
            "reference": f"{config.attfind.split} split, {len(indices)} images", "reconstruction": reconstruction,
            "perturbation": perturbation}


METRIC = Metric("fid", measure, order=20)
