"""What a metric is, what it is given, and how the registered ones are found."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from evaluation import counterfactuals
from evaluation.methods import Method
from evaluation.registry import collect
from stylex.artifacts import cached, fingerprint
from stylex.classifier import Classifier
from stylex.classifier import load as load_classifier
from stylex.config import Config
from stylex.data import build_dataset
from stylex.pipeline import AttFindResult, RunContext
from stylex.run import RunDir


@dataclass
class Evaluated:
    """One method with what its evaluations need: the model of its generator and the evaluated images."""

    method: Method
    ctx: RunContext
    result: AttFindResult
    count: int

    @property
    def styles(self) -> list[torch.Tensor]:
        return [s[: self.count] for s in self.result.styles]

    def key(self, **extra) -> dict:
        """What every result about this method depends on (attributes, weights, styles, statistics, images)."""
        meta = self.result.effects.meta
        data = self.method.attributes.to_dict()
        attributes = fingerprint({key: data[key] for key in ("method", "classes", "merged", "per_class", "settings")})
        return {"method": self.method.key, "attributes": attributes, "weights": meta["weights"],
                "styles": meta["styles"], "stats": meta["stats"], "images": self.count, **extra}


@dataclass
class Counterfactuals:
    """The class-level counterfactuals of one method at one k (`evaluation.counterfactuals.class_level`)."""

    images: Tensor  # [N, C, H, W] on the benchmark's device
    logits: Tensor  # [N, classes] of the explained classifier
    applied: Tensor  # [N] bool: the target class had k attributes


@dataclass
class Reconstructions:
    images: Tensor
    logits: Tensor
    targets: Tensor  # the class each image's counterfactuals move toward


@dataclass
class MetricInputs:
    config: Config
    run: RunDir
    items: list[Evaluated]  # every evaluated method, in table order
    device: torch.device
    report_dir: Path
    progress: bool = True
    # rendered once per benchmark and shared by the metrics that need them (most are served from their caches)
    _reconstructions: dict[str, Reconstructions] = field(default_factory=dict, repr=False)
    _counterfactuals: dict[tuple[str, int], Counterfactuals] = field(default_factory=dict, repr=False)
    _real: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def cached(self, name: str, key: dict, compute: Callable[[], dict]) -> dict:
        """A result stored as `benchmark/<name>.json`, reused while `key` matches."""
        return cached(self.run.benchmark / f"{name}.json", key, compute, what=f"benchmark result {name}")

    def reconstructions(self, item: Evaluated) -> Reconstructions:
        """The unedited reconstructions G(E(x)) of the evaluated images by the method's generator."""
        variant = item.ctx.variant
        if variant not in self._reconstructions:
            self._reconstructions[variant] = Reconstructions(*counterfactuals.reconstruction(item.ctx.model,
                                                                                           item.styles))
        return self._reconstructions[variant]

    def counterfactuals(self, item: Evaluated, ks: Sequence[int]) -> dict[int, Counterfactuals]:
        """{k: the method's class-level counterfactuals with its first k attributes toward each image's target}."""
        missing = [k for k in ks if (item.method.key, k) not in self._counterfactuals]
        if missing:
            targets = self.reconstructions(item).targets
            for k, images, logits, applied in counterfactuals.class_level(
                    item.ctx.model, item.styles, item.method, missing, self.config.attfind.shift_size, targets):
                self._counterfactuals[item.method.key, k] = Counterfactuals(images, logits, applied)
        return {k: self._counterfactuals[item.method.key, k] for k in ks}

    def real_images(self) -> Tensor:
        """The real images the evaluated styles were encoded from (the first N of the AttFind set), [N, C, H, W]."""
        if "images" not in self._real:
            item = self.items[0]
            dataset = build_dataset(self.config.data, self.config.attfind.split)
            self._real["images"] = torch.stack([dataset[i][0] for i in item.result.indices[: item.count]])
        return self._real["images"]

    def oracle(self) -> Classifier | None:
        """The run's independent oracle classifier on the benchmark's device, or None when it has none."""
        if not self.run.oracle.is_file():
            return None
        return load_classifier(self.run.oracle, map_location=self.device).eval()


@dataclass(frozen=True)
class Metric:
    name: str  # its section in metrics.json
    measure: Callable[[MetricInputs], dict]
    applies: Callable[[Config], bool] = lambda config: True
    order: int = 100  # measuring order, smallest first
    skipped_because: str = ""  # logged when `applies` is false


@functools.cache
def registered() -> tuple[Metric, ...]:
    import evaluation.metrics as package

    return tuple(collect(package, "METRIC", Metric, "name"))
