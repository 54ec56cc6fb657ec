"""The report's plots: sufficiency over k and the distance to real images under perturbation.

Figures are drawn by Agg directly, with no pyplot, so there is no global backend switch or figure registry to leak;
matplotlib is imported when a figure is drawn, not when the report package is imported (the study analysis imports
the package's document renderer on machines that only render text).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from evaluation.report.formatting import STRATEGY_TITLES, finite, shown
from evaluation.schema import BenchmarkResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_DPI = 120


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return buffer.getvalue()


def _new_figure(columns: int, height: float, share_y: bool = False) -> tuple[Figure, list]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.8, 4.3 * columns), height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns, squeeze=False, sharey=share_y)[0]
    return figure, list(axes)


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(figure: Figure, handles: Mapping[str, object]) -> None:
    """One legend under all subplots (a strategy may lack a method, so no single subplot has every line)."""
    columns = len(handles) if len(handles) <= 5 else math.ceil(len(handles) / 2)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=max(columns, 1),
                  frameon=False)


def _colors(results: BenchmarkResults) -> dict[str, str]:
    """One colour per method or generator, the same in every figure (a generator shares its method's)."""
    keys = [*results.methods]
    if results.sufficiency is not None:
        keys += results.sufficiency.curves
    if results.fid is not None:
        keys += [*results.fid.perturbation, *results.fid.reconstruction]
    keys += results.generators or {}
    return {key: f"C{index % 10}" for index, key in enumerate(results.ordered(keys))}


def sufficiency_figure(results: BenchmarkResults) -> Figure | None:
    """Fraction flipped over k: one subplot per strategy that any method has, one line per method with its
    Wilson 95% band. None when the results hold no sufficiency curves."""
    sufficiency = results.sufficiency
    curves = sufficiency.curves if sufficiency is not None else {}
    strategies = [strategy for strategy in STRATEGY_TITLES
                  if any(by_strategy.get(strategy) for by_strategy in curves.values())]
    if not strategies:
        return None
    colors = _colors(results)
    figure, axes = _new_figure(len(strategies), 4.0)
    handles = {}
    for axis, strategy in zip(axes, strategies, strict=True):
        for method in results.ordered(curves):
            points = sorted(curves[method].get(strategy) or (), key=lambda point: point.k)
            values = [(point.k, finite(point.fraction), finite(point.ci_low), finite(point.ci_high))
                      for point in points]
            values = [value for value in values if None not in value]
            if not values:
                continue
            ks, fractions, lows, highs = zip(*values, strict=True)
            (line,) = axis.plot(ks, fractions, marker="o", markersize=3, color=colors[method],
                                label=results.label(method))
            axis.fill_between(ks, lows, highs, color=colors[method], alpha=0.18, linewidth=0)
            handles[method] = line
        axis.set_title(STRATEGY_TITLES[strategy])
        axis.set_xlabel("k (attributes changed)")
        axis.set_ylabel("fraction flipped")
        axis.set_ylim(0, 1)
        _integer_ticks(axis)
        axis.grid(alpha=0.3)
    figure.suptitle(f"Sufficiency on {results.dataset.name}: N = {sufficiency.num_images} images, "
                    f"shift {sufficiency.shift_size} (bands: Wilson 95%)")
    _legend(figure, {results.label(method): handles[method] for method in results.ordered(handles)})
    return figure


def fid_figure(results: BenchmarkResults) -> Figure | None:
    """Distance to real images over i (top attributes changed): one subplot per shift size, one line per method,
    dashed lines at each generator's reconstruction distance. Axis and titles use the distance's label.
    None when the results hold no perturbation curves."""
    distance = results.fid
    shifts = [] if distance is None else distance.shift_sizes
    if not shifts:
        return None
    colors = _colors(results)
    perturbation = distance.perturbation
    reconstruction = {key: finite(value) for key, value in distance.reconstruction.items()}
    figure, axes = _new_figure(len(shifts), 4.0, share_y=True)  # one scale, so shift sizes compare by eye
    handles = {}
    for axis, shift in zip(axes, shifts, strict=True):
        for method in results.ordered(perturbation):
            points = sorted(perturbation[method].get(shift) or (), key=lambda point: point.i)
            values = [(point.i, finite(point.value)) for point in points if finite(point.value) is not None]
            if values:
                steps, distances = zip(*values, strict=True)
                (handles[method],) = axis.plot(steps, distances, marker="o", markersize=3, color=colors[method])
        for generator in results.ordered(reconstruction):
            if reconstruction[generator] is not None:
                handles[f"reconstruction:{generator}"] = axis.axhline(
                    reconstruction[generator], linestyle="--", linewidth=1.2, color=colors[generator])
        axis.set_title(f"shift {shift}")
        axis.set_xlabel("i (top attributes changed)")
        axis.set_ylabel(distance.label)
        _integer_ticks(axis)
        axis.grid(alpha=0.3)
    figure.suptitle(f"{distance.label} under perturbation on {results.dataset.name} "
                    f"(N = {shown(distance.num_images)} images)")
    legend = {results.label(method): handles[method] for method in results.ordered(perturbation)
              if method in handles}
    for generator in results.ordered(reconstruction):
        if f"reconstruction:{generator}" in handles:
            legend[f"reconstruction, {results.label(generator)}"] = handles[f"reconstruction:{generator}"]
    _legend(figure, legend)
    return figure
