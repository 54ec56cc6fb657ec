"""What a metric is, what it is given, and how the registered ones are found."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluation.methods import Method
from evaluation.registry import collect
from stylex.artifacts import cached, fingerprint
from stylex.config import Config
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
class MetricInputs:
    config: Config
    run: RunDir
    items: list[Evaluated]  # every evaluated method, in table order
    device: torch.device
    report_dir: Path
    progress: bool = True

    def cached(self, name: str, key: dict, compute: Callable[[], dict]) -> dict:
        """A result stored as `benchmark/<name>.json`, reused while `key` matches."""
        return cached(self.run.benchmark / f"{name}.json", key, compute, what=f"benchmark result {name}")


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
