"""How the report writes numbers and names: every table, caption and figure title goes through these, so a value
reads the same wherever it appears ("n/a" where there is none)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from evaluation.schema import Interval, Mean

STRATEGY_TITLES = {"class_level": "Class-level top-k", "independent": "Independent", "subset": "Subset"}


def finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def shown(value: object, default: str = "n/a") -> str:
    """A field as text; `default` where the results have none."""
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def _interval_percent(cell: Interval | Mapping | None) -> tuple[str, str, str] | None:
    """(fraction, low, high) in percent with one decimal, None when the cell has no finite numbers."""
    if isinstance(cell, Mapping):  # a cell of the benchmark's dict, which reads it before results are typed
        values = [finite(cell.get(key)) for key in ("fraction", "ci_low", "ci_high")]
    elif isinstance(cell, Interval):
        values = [finite(value) for value in (cell.fraction, cell.ci_low, cell.ci_high)]
    else:
        return None
    if any(value is None for value in values):
        return None
    return tuple(f"{100 * value:.1f}" for value in values)


def format_interval(cell: Interval | Mapping | None) -> str:
    """A sufficiency cell as "83.2% [79.1, 86.7]" (percent, Wilson 95% interval), or "n/a"."""
    parts = _interval_percent(cell)
    return "n/a" if parts is None else f"{parts[0]}% [{parts[1]}, {parts[2]}]"


def latex_interval(cell: Interval | Mapping | None) -> str:
    """The same cell for LaTeX: "83.2\\,[79.1, 86.7]" (the caption says they are percentages)."""
    parts = _interval_percent(cell)
    return "n/a" if parts is None else rf"{parts[0]}\,[{parts[1]}, {parts[2]}]"


def number(value: object, digits: int = 2) -> str:
    value_or_none = finite(value)
    if value_or_none is None:
        return "n/a"
    return str(int(value_or_none)) if isinstance(value, int) else f"{value_or_none:.{digits}f}"


def percent(value: object) -> str:
    value_or_none = finite(value)
    return "n/a" if value_or_none is None else f"{100 * value_or_none:.1f}%"


def duration(seconds: object) -> str:
    """812.4 -> "13 min 32 s": wall times of minutes to hours read better than raw seconds."""
    value = finite(seconds)
    if value is None:
        return "n/a"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def format_mean(mean: Mean | None, digits: int = 3) -> str:
    """A mean over counterfactuals as "0.412 [0.380, 0.444]" (normal 95% interval of the mean), or "n/a"."""
    values = [] if mean is None else [finite(value) for value in (mean.mean, mean.ci_low, mean.ci_high)]
    if not values or any(value is None for value in values):
        return "n/a"
    return f"{values[0]:.{digits}f} [{values[1]:.{digits}f}, {values[2]:.{digits}f}]"


def seconds(value: object) -> str:
    """A time per image with three significant digits ("12.3 ms", "1.00 s", "4.56 s"): they span orders of
    magnitude, and milliseconds read better than 0.0123 s."""
    value_or_none = finite(value)
    if value_or_none is None:
        return "n/a"
    if abs(value_or_none) < 1:
        return f"{value_or_none * 1000:.3g} ms"
    return f"{value_or_none:#.3g}".rstrip(".") + " s"
