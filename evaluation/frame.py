"""The benchmark results as one tidy pandas DataFrame, for notebooks and scripts (issue 14, item 8).

`results_frame(sources)` reads metrics.json files (or run directories, report folders, results dicts already
loaded) and returns one row per (dataset, method, strategy, metric, k) with the columns COLUMNS. Each
metrics.json section has a small converter below (the formats: the battery's metrics.json contract); a run without
a section has no rows for it, and sections without a converter are ignored.

What a row holds, by metric:
- sufficiency, faithful_sufficiency_explained / _oracle, validity, causal_changed: a fraction of images with its
  Wilson 95% interval; n = the images it is a fraction of (for faithful sufficiency: the images kept).
- cout, proximity_l1, proximity_lpips, off_target: a mean with the normal 95% interval of the mean; n = the
  counterfactuals measured.
- runtime_s: seconds per explained image; n = the images timed; no k, no interval.
- fid, or frechet_<features> off Inception features (frechet_classifier): the distance to the real images with the
  top k attributes changed (strategy "class_level (shift S)", one per shift size measured), or of a generator's
  reconstructions (method = the generator, strategy "reconstruction", no k); n = the images compared.
- recovery_precision: the share of the top k attributes whose factor is causal; n = the attributes judged.
- generator measurements (method = the generator, strategy "reconstruction", metric = the measurement's name, no
  k): every numeric measurement; text ones (the LPIPS mode) and the gate failures have no place in `value`.

`summarize` and `curve` turn a frame into the tables and curves a notebook shows, so that it needs no logic.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import pandas as pd

from evaluation.report.datasets import dataset_rows
from evaluation.schema import INCEPTION_FEATURES, BenchmarkResults, read_results

COLUMNS = ["dataset", "method", "strategy", "metric", "k", "value", "ci_low", "ci_high", "n"]
# The metrics of the battery that explain a method, in reading order (the Frechet distance, recovery and the
# generators' measurements are about images and generators, and runtime about cost).
BATTERY_METRICS = ["sufficiency", "faithful_sufficiency_explained", "faithful_sufficiency_oracle", "validity", "cout",
                   "proximity_l1", "proximity_lpips", "off_target", "causal_changed"]

Source = str | os.PathLike | Mapping
Rows = Iterator[dict]

# ---------------------------------------------------------------------------------------------------- sections


def _row(method: str, strategy: str, metric: str, k: int | None, value: float | None, ci_low: float | None = None,
         ci_high: float | None = None, n: int | None = None) -> dict:
    return {"method": method, "strategy": strategy, "metric": metric, "k": k, "value": value, "ci_low": ci_low,
            "ci_high": ci_high, "n": n}


def _fraction_row(method: str, strategy: str, metric: str, k: int, share: Mapping, n: int) -> dict:
    """A share of images ({"fraction", "ci_low", "ci_high"}) as a row."""
    return _row(method, strategy, metric, k, share["fraction"], share["ci_low"], share["ci_high"], n)


def _mean_row(method: str, strategy: str, metric: str, k: int, mean: Mapping, n: int) -> dict:
    """A mean ({"mean", "ci_low", "ci_high", ...}) as a row."""
    return _row(method, strategy, metric, k, mean["mean"], mean["ci_low"], mean["ci_high"], n)


def _curve_rows(method: str, curves: Mapping, metric: str) -> Rows:
    """{strategy: [curve point] or null}: the share of images flipped at each k."""
    for strategy, points in curves.items():
        for point in points or ():  # null: the method has no such strategy
            yield _fraction_row(method, strategy, metric, point["k"], point, point["images"])


def _sufficiency(section: Mapping) -> Rows:
    for method, curves in section["curves"].items():
        yield from _curve_rows(method, curves, "sufficiency")


def _faithful_sufficiency(section: Mapping) -> Rows:
    for judge, judged in section["judges"].items():  # "explained", and "oracle" when the run has one
        for method, measured in judged["methods"].items():
            yield from _curve_rows(method, measured["curves"], f"faithful_sufficiency_{judge}")


def _validity(section: Mapping) -> Rows:
    for method, points in section["methods"].items():
        for point in points:
            yield _fraction_row(method, section["strategy"], "validity", point["k"], point, point["images"])


def _cout(section: Mapping) -> Rows:
    for method, points in section["methods"].items():
        for point in points:
            yield _mean_row(method, section["strategy"], "cout", point["k"], point, point["n"])


def _proximity(section: Mapping) -> Rows:
    for method, points in section["methods"].items():
        for point in points:
            for distance in ("l1", "lpips"):
                yield _mean_row(method, section["strategy"], f"proximity_{distance}", point["k"], point[distance],
                                point["n"])


def _off_target(section: Mapping) -> Rows:
    for method, points in section["methods"].items():
        for point in points:
            yield _mean_row(method, section["strategy"], "off_target", point["k"], point["off_target"], point["n"])
            yield _fraction_row(method, section["strategy"], "causal_changed", point["k"], point["causal_changed"],
                                point["n"])


def _runtime(section: Mapping) -> Rows:
    for method, strategies in section["methods"].items():
        for strategy, timed in strategies.items():
            yield _row(method, strategy, "runtime_s", None, timed["seconds_per_image"], n=timed["images"])


def _fid(section: Mapping) -> Rows:
    # DESIGN section 7: only a distance on Inception features is FID; any other is named after its features
    features = section["features"]
    metric = "fid" if features == INCEPTION_FEATURES else f"frechet_{features}"
    images = section["num_images"]
    for generator, distance in section["reconstruction"].items():
        yield _row(generator, "reconstruction", metric, None, distance, n=images)
    for method, by_shift in section["perturbation"].items():
        # the frame has no shift column, and several shift sizes would collide on (method, strategy, metric, k)
        for shift, points in by_shift.items():
            for point in points or ():
                yield _row(method, f"class_level (shift {shift})", metric, point["i"], point["value"], n=images)


def _recovery(section: Mapping) -> Rows:
    for method, recovered in section["methods"].items():
        # a method's top k attributes are its class-level ranking
        yield _row(method, "class_level", "recovery_precision", section["k"], recovered["precision"],
                   n=len(recovered["factors"]))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _generators(section: Mapping) -> Rows:
    for variant, measured in section.items():
        for name, value in measured.items():
            if _is_number(value):
                yield _row(variant, "reconstruction", name, None, value)


CONVERTERS: dict[str, Callable[[Mapping], Rows]] = {
    "sufficiency": _sufficiency, "faithful_sufficiency": _faithful_sufficiency, "validity": _validity,
    "cout": _cout, "proximity": _proximity, "off_target": _off_target, "runtime": _runtime, "fid": _fid,
    "recovery": _recovery, "generators": _generators}

# ---------------------------------------------------------------------------------------------------- reading


def _load(source: Source, position: int) -> BenchmarkResults:
    """The checked results of a source. The schema checks every section converted here, so a malformed one is a
    UserError naming the field and the file, and the converters need no checks of their own."""
    if isinstance(source, Mapping):
        return BenchmarkResults.from_dict(source, source=f"results #{position + 1} (a dict)")
    return read_results(source)


def results_frame(sources: Source | Iterable[Source]) -> pd.DataFrame:
    """One tidy row per (dataset, method, strategy, metric, k) of the benchmark results in `sources` (metrics.json
    paths, run directories, report folders or loaded results dicts; one source alone needs no list), with the
    columns COLUMNS; k and n are nullable integers ("Int64"), NaN marks a value or interval not defined."""
    if isinstance(sources, (str, os.PathLike, Mapping)):
        sources = [sources]
    rows: list[dict] = []
    # labelled as the rows of Table 3 across datasets: the dataset, with the run name where two runs share it
    for dataset_row in dataset_rows([_load(source, position) for position, source in enumerate(sources)]):
        results = dataset_row.results.to_dict()
        for section, convert in CONVERTERS.items():
            if results.get(section) is not None:
                rows += [{"dataset": dataset_row.label, **row} for row in convert(results[section])]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"k": "Int64", "value": "float64", "ci_low": "float64", "ci_high": "float64", "n": "Int64"})


# ---------------------------------------------------------------------------------------------------- reading aids


def _in_order_of_appearance(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Index:
    """The distinct values (tuples for several columns) of `columns` in the order the frame first holds them:
    pivoting sorts by name, and the benchmark's order of methods is the order of its tables."""
    distinct = frame[list(columns)].drop_duplicates()
    return pd.MultiIndex.from_frame(distinct) if len(columns) > 1 else pd.Index(distinct[columns[0]])


def summarize(frame: pd.DataFrame, metric: str | Sequence[str] | None = None, k: int | None = None,
              strategy: str | None = None) -> pd.DataFrame:
    """A table for reading: the values of `metric` (one name, several, or every metric when None) with a column
    per method and a row per dataset, metric and strategy (the metric level is left out when `metric` is one name,
    the strategy level when `strategy` picks one). At `k`, by default at the largest k each metric has on each
    dataset; rows without a k (runtime, reconstructions, generator measurements) are always kept."""
    rows = frame
    if metric is not None:
        rows = rows[rows["metric"].isin([metric] if isinstance(metric, str) else list(metric))]
    if strategy is not None:
        rows = rows[rows["strategy"] == strategy]
    wanted_k = rows.groupby(["dataset", "metric"])["k"].transform("max") if k is None else k
    rows = rows[rows["k"].isna() | rows["k"].eq(wanted_k).fillna(False)]
    index = ["dataset", *(["metric"] if not isinstance(metric, str) else []),
             *(["strategy"] if strategy is None else [])]
    table = rows.pivot(index=index, columns="method", values="value")
    return table.reindex(index=_in_order_of_appearance(rows, index),
                         columns=_in_order_of_appearance(rows, ["method"]))


def curve(frame: pd.DataFrame, metric: str = "sufficiency", strategy: str = "class_level") -> pd.DataFrame:
    """`metric` over k, ready for `.plot()`: a row per k, a column per (dataset, method)."""
    rows = frame[(frame["metric"] == metric) & (frame["strategy"] == strategy) & frame["k"].notna()]
    table = rows.pivot(index="k", columns=["dataset", "method"], values="value")
    table = table.reindex(columns=_in_order_of_appearance(rows, ["dataset", "method"]))
    table.index = table.index.astype(int)  # plotting wants plain integers on the x axis
    return table
