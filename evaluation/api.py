"""The benchmark from Python, for notebooks and scripts (issue 14, item 8):

    frame = Benchmark("demo", metrics=["sufficiency", "cout"]).run()  # what `stylex benchmark` does, as a frame
    frame = Benchmark.load("runs/demo", "runs/fashion")               # results already on disk

Both give the tidy DataFrame of `evaluation.frame.results_frame`. Importing this module imports pandas but not
torch: the models are only loaded when a benchmark runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from evaluation.frame import Source, curve, results_frame, summarize
from stylex.cli import removed_if_failed
from stylex.config import Config, load_config
from stylex.errors import UserError

__all__ = ["Benchmark", "curve", "results_frame", "summarize"]


class Benchmark:
    """One benchmark run: `config` is a preset name ("demo", "tiny", ...), a path to a config .json file, or a
    `stylex.config.Config`; `overrides` are `key=value` settings as with `--set` (for a name or a file);
    `run_dir` defaults to runs/<config name> like the command line; `metrics` names the registered metrics to
    measure (default: all)."""

    def __init__(self, config: str | Path | Config = "demo", overrides: Iterable[str] = (),
                 run_dir: str | Path | None = None, metrics: Sequence[str] | None = None, progress: bool = True):
        overrides = [overrides] if isinstance(overrides, str) else list(overrides)
        if isinstance(config, Config):
            if overrides:
                raise UserError("overrides apply to a preset name or a config .json file; for a Config object, "
                                "change its fields (dataclasses.replace) before passing it")
            self.config = config
        else:
            self.config = load_config(str(config), overrides)
        self.run_dir = Path("runs") / self.config.name if run_dir is None else Path(run_dir)
        self.metrics = [metrics] if isinstance(metrics, str) else (None if metrics is None else list(metrics))
        self.progress = progress
        self.report_dir: Path | None = None  # set by run()

    def run(self) -> pd.DataFrame:
        """Train or reuse the models in the run directory, measure every method (as `stylex benchmark`, reusing
        whatever still matches), write the report and return its results as a tidy frame."""
        from evaluation.benchmark import run_benchmark  # imported here: it brings torch, which loading never needs

        with removed_if_failed(self.run_dir):  # like the command: a run refused at once leaves no folder behind
            self.report_dir = run_benchmark(self.config, self.run_dir, progress=self.progress, metrics=self.metrics)
        return results_frame(self.report_dir / "metrics.json")

    @staticmethod
    def load(*sources: Source) -> pd.DataFrame:
        """The tidy frame of results already written: metrics.json paths, run directories or report folders (one
        per dataset), or results dicts."""
        return results_frame(sources)

    def __repr__(self) -> str:
        return f"Benchmark(config={self.config.name!r}, run_dir={str(self.run_dir)!r}, metrics={self.metrics!r})"
