"""Evaluation of explanations: sufficiency, FID under perturbation, ground-truth recovery, the benchmark
and its report.

`Benchmark`, `results_frame`, `summarize` and `curve` (the Python API, `evaluation.api`) are loaded on first use:
`import evaluation` stays free of torch and pandas, since the study app imports parts of this package.
"""

import importlib

_LAZY_EXPORTS = {"Benchmark": "evaluation.api", "results_frame": "evaluation.frame",
                 "summarize": "evaluation.frame", "curve": "evaluation.frame"}

__all__ = list(_LAZY_EXPORTS)


def __getattr__(name: str):
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module 'evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_EXPORTS})
