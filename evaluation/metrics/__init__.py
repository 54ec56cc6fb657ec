"""The metric registry (DESIGN section 7): one module per metric in this package, each defining `METRIC`.

A metric has a name (its section in `metrics.json`), says whether it applies to a run's config, and measures
every evaluated method (or generator) from `MetricInputs`, caching each result under what it depends on.
"""

from evaluation.metrics.base import Evaluated, Metric, MetricInputs, registered

__all__ = ["Evaluated", "Metric", "MetricInputs", "registered"]
