"""The counterfactual metric battery in the report (issue 14): Table 3's companion tables (one per metric, a row per
dataset, at Table 3's k), the per-k detail of every metric in a run's own report, and what each number means.

The single-run report (`content`) and the report across datasets (`combined`) both present the battery through
this module, so a metric reads the same in both. Every table follows the results: a metric no run measured has no
table, a method a run did not measure shows n/a.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluation.report.datasets import DatasetRow, method_columns, method_label, per_dataset
from evaluation.report.document import Block, Inline, Paragraph, Span, Table, heading, inline, plain, table
from evaluation.report.formatting import STRATEGY_TITLES, format_interval, format_mean, percent, seconds, shown
from evaluation.schema import BenchmarkResults, Timing, ValidityPoint

Point = Any  # a point of a battery curve: a schema record with its `k`
PointsByMethod = Mapping[str, Sequence[Point] | None]
JUDGE_TITLES = {"explained": "explained classifier", "oracle": "oracle"}


@dataclass(frozen=True)
class BatteryMetric:
    """One number of the battery as a companion table shows it: `points` gives each method's points of a run (None
    when the run did not measure the metric), `value` a point's cell and `count` its N."""

    caption: str  # what the number is, which direction is better, what the brackets are
    points: Callable[[BenchmarkResults], PointsByMethod | None]
    value: Callable[[Point], str]
    count: Callable[[Point], int]


def _faithful_points(judge: str) -> Callable[[BenchmarkResults], PointsByMethod | None]:
    def points(results: BenchmarkResults) -> PointsByMethod | None:
        section = results.faithful_sufficiency
        if section is None or judge not in section.judges:
            return None
        return {key: method.curves.get("class_level") for key, method in section.judges[judge].methods.items()}

    return points


def _class_level_points(section: str) -> Callable[[BenchmarkResults], PointsByMethod | None]:
    def points(results: BenchmarkResults) -> PointsByMethod | None:
        measured = getattr(results, section)
        return None if measured is None else measured.methods

    return points


WILSON = "Brackets: Wilson 95% interval."
NORMAL = "Brackets: normal 95% interval of the mean."
METRICS = (
    BatteryMetric("Faithful sufficiency (explained classifier): percentage of the images whose reconstruction keeps "
                  "the real image's decision (N: those kept, per method) that flip when the top-k attributes are "
                  f"changed (class-level). Higher is better. {WILSON}",
                  _faithful_points("explained"), format_interval, lambda point: point.images),
    BatteryMetric("Faithful sufficiency (oracle): the same, with the independent oracle classifier judging whether "
                  "a reconstruction keeps the real image's decision (the flips are still the explained "
                  "classifier's). Higher is better. "
                  f"{WILSON}", _faithful_points("oracle"), format_interval, lambda point: point.images),
    BatteryMetric("Validity: percentage of class-level counterfactuals whose flip of the explained classifier the "
                  f"independent oracle also sees. Higher is better; Random should be the floor. {WILSON}",
                  _class_level_points("validity"), format_interval, lambda point: point.images),
    BatteryMetric("COUT (Khorram & Fuxin 2022), the counterfactual transition score in [-1, 1]: how far the "
                  "changed pixels, pasted in most-changed first, move the classifier from the source toward the "
                  f"target class. Higher is better. {NORMAL}",
                  _class_level_points("cout"), format_mean, lambda point: point.n),
    BatteryMetric("Proximity (L1): mean absolute pixel difference between each counterfactual and the "
                  "reconstruction it edits (images in [-1, 1]). Lower is closer, but a method that changes nothing "
                  f"scores 0: read it beside validity. {NORMAL}",
                  _class_level_points("proximity"), lambda point: format_mean(point.l1), lambda point: point.n),
    BatteryMetric("Proximity (LPIPS) between each counterfactual and the reconstruction it edits. Lower is closer, "
                  f"but a method that changes nothing scores 0: read it beside validity. {NORMAL}",
                  _class_level_points("proximity"), lambda point: format_mean(point.lpips), lambda point: point.n),
    BatteryMetric("Off-target changes (the MNAC analogue): mean number of non-causal factors the factor probes see "
                  f"changing per counterfactual. Lower is better. {NORMAL}",
                  _class_level_points("off_target"), lambda point: format_mean(point.off_target, 2),
                  lambda point: point.n),
    BatteryMetric("Causal change: percentage of counterfactuals in which the factor probes see a causal factor "
                  f"change. Higher is better. {WILSON}",
                  _class_level_points("off_target"), lambda point: format_interval(point.causal_changed),
                  lambda point: point.n),
)
RUNTIME_NOTE = ("attribute lists given (finding them is a one-off cost not counted here): class-level applies the "
                "top max_k attributes and classifies; Independent and Subset compute the image's own explanation")


def table_k(results: BenchmarkResults) -> int | None:
    """The k of Table 3; without one, the configured evaluation.table_k; None when neither is known."""
    if results.table3 is not None:
        return results.table3.k
    evaluation = (results.settings or {}).get("evaluation")  # settings are kept as written, unchecked
    configured = evaluation.get("table_k") if isinstance(evaluation, Mapping) else None
    return configured if isinstance(configured, int) and not isinstance(configured, bool) else None


def at_k(points: Sequence[Point] | None, k: int | None) -> Point | None:
    """The point at k, else at the largest measured k below it (COUT, proximity and off-target are measured at k = 1,
    the middle and the largest only); None when no point is at or below k. k None: the largest measured."""
    return max((point for point in points or () if k is None or point.k <= k), key=lambda point: point.k,
               default=None)


# ---------------------------------------------------------------------------------------------------- companions


def companion_section(rows: Sequence[DatasetRow]) -> list[Block]:
    """Table 3's companion tables under their heading; nothing when no run measured the battery."""
    tables = companion_tables(rows)
    if not tables:
        return []
    return [heading(2, "Companion tables of Table 3"),
            Paragraph(inline("The counterfactual metric battery beside Table 3: one table per metric, a row per "
                             "dataset, each cell at Table 3's k, or at the largest measured k below it for the "
                             "metrics measured at fewer k (COUT, proximity and off-target: k = 1, the middle and "
                             "the largest). A cell gives its N where it differs from Table 3's N.")),
            *tables]


def companion_tables(rows: Sequence[DatasetRow]) -> list[Table]:
    """One table per battery metric that any of the rows measured (datasets x methods), then the runtime table."""
    tables = [companion_table(rows, metric) for metric in METRICS]
    return [found for found in (*tables, runtime_table(rows)) if found is not None]


def companion_table(rows: Sequence[DatasetRow], metric: BatteryMetric) -> Table | None:
    measured = [(row, points) for row in rows if (points := metric.points(row.results)) is not None]
    if not measured:
        return None
    methods = method_columns(rows, [key for _, points in measured for key in points])
    body, used_ks, target_ks = [], [], []
    for row, points in measured:
        target = table_k(row.results)
        chosen = {method: at_k(points.get(method), target) for method in methods}
        row_k = max((point.k for point in chosen.values() if point is not None), default=None)
        used_ks.append((row.label, row_k))
        target_ks.append((row.label, target))
        sufficiency = row.results.sufficiency
        table3_n = None if sufficiency is None else sufficiency.num_images
        body.append([row.label, *(_companion_cell(metric, chosen[method], table3_n, row_k)
                                  for method in methods)])
    caption = f"{metric.caption} At k = {per_dataset(used_ks)}"
    if used_ks != target_ks:
        caption += f", the largest measured k not above Table 3's k = {per_dataset(target_ks)}"
    return table(["Dataset", *(method_label(rows, method) for method in methods)], body,
                 [False] + [True] * len(methods), inline(caption + "."))


def _companion_cell(metric: BatteryMetric, point: Point | None, table3_n: int | None, row_k: int | None) -> Inline:
    if point is None:
        return (plain("n/a"),)
    notes = [] if metric.count(point) == table3_n else [f"N = {metric.count(point)}"]
    notes += [] if point.k == row_k else [f"k = {point.k}"]  # a method measured at other k than the rest
    return (plain(metric.value(point)), *((Span(f" ({', '.join(notes)})", plain=True, note=True),) if notes else ()))


def _strategies(by_strategy: Sequence[Mapping[str, Any]]) -> list[str]:
    """The strategies present, in the report's order, any unknown ones after."""
    present = [strategy for timings in by_strategy for strategy in timings]
    return [strategy for strategy in STRATEGY_TITLES if strategy in present] + [
        strategy for strategy in dict.fromkeys(present) if strategy not in STRATEGY_TITLES]


def _timing_cell(timing: Timing | None, images: int) -> Span:
    """Seconds per image, with the number of images timed where it differs from the runtime section's."""
    if timing is None:
        return plain("n/a")
    text = seconds(timing.seconds_per_image)
    return plain(text if timing.images == images else f"{text} (N = {timing.images})")


def runtime_table(rows: Sequence[DatasetRow]) -> Table | None:
    """Seconds per explained image: a row per dataset and strategy, a column per method."""
    measured = [(row, row.results.runtime) for row in rows if row.results.runtime is not None]
    if not measured:
        return None
    methods = method_columns(rows, [key for _, runtime in measured for key in runtime.methods])
    body = []
    for row, runtime in measured:
        for strategy in _strategies(list(runtime.methods.values())):
            cells = [_timing_cell(runtime.methods.get(method, {}).get(strategy), runtime.images) for method in methods]
            body.append([row.label, STRATEGY_TITLES.get(strategy, strategy), *cells])
    devices = per_dataset([(row.label, runtime.device) for row, runtime in measured])
    images = per_dataset([(row.label, runtime.images) for row, runtime in measured])
    caption = (f"Runtime: seconds per explained image on the benchmark's device ({devices}; N = {images} images), "
               f"{RUNTIME_NOTE}. Lower is faster.")
    return table(["Dataset", "Strategy", *(method_label(rows, method) for method in methods)], body,
                 [False, False] + [True] * len(methods), inline(caption))


# ---------------------------------------------------------------------------------------------------- detail


def _per_k_table(results: BenchmarkResults, points: PointsByMethod, cell: Callable[[Point], str], caption: str,
                 header: Callable[[str], str] | None = None) -> Table | None:
    """k rows x method columns; None when no method has a point."""
    methods = results.ordered(points)
    by_k = {method: {point.k: point for point in points[method] or ()} for method in methods}
    ks = sorted({k for measured in by_k.values() for k in measured})
    if not ks:
        return None
    body = [[plain(str(k)), *(plain("n/a" if (point := by_k[method].get(k)) is None else cell(point))
                              for method in methods)] for k in ks]
    return table(["k", *map(header or results.label, methods)], body, [True] * (len(methods) + 1), inline(caption))


def _counts(points: PointsByMethod, count: Callable[[Point], int]) -> str:
    """The N of a table's cells: one number when they share it, else the range."""
    found = sorted({count(point) for measured in points.values() for point in measured or ()})
    return shown(found[0]) if len(found) == 1 else f"{found[0]} to {found[-1]}" if found else "n/a"


def _validity_cell(point: ValidityPoint) -> str:
    return f"{format_interval(point)} ({point.confirmed} of {point.flipped} flips)"


def _subsection(title: str, *tables: Table | None) -> list[Block]:
    """A heading over the tables that have rows; nothing when none has."""
    found = [found for found in tables if found is not None]
    return [heading(3, title), *found] if found else []


def _kept_header(results: BenchmarkResults, methods: Mapping[str, Any]) -> Callable[[str], str]:
    return lambda key: f"{results.label(key)} (N = {methods[key].kept} of {methods[key].images})"


def _faithful_detail(results: BenchmarkResults) -> list[Block]:
    section = results.faithful_sufficiency
    if section is None:
        return []
    tables = []
    for judge, measured in section.judges.items():
        for strategy, strategy_title in STRATEGY_TITLES.items():
            caption = (f"Judged by the {JUDGE_TITLES.get(judge, judge)}, {strategy_title.lower()}: percentage flipped "
                       "among the N images whose reconstruction keeps the decision [Wilson 95% interval]")
            points = {key: method.curves.get(strategy) for key, method in measured.methods.items()}
            tables.append(_per_k_table(results, points, format_interval, caption,
                                       _kept_header(results, measured.methods)))
    return _subsection("Faithful sufficiency", *tables)


def _class_level_detail(results: BenchmarkResults) -> list[Block]:
    blocks: list[Block] = []
    validity, cout, proximity, off_target = results.validity, results.cout, results.proximity, results.off_target
    if validity is not None:
        caption = (f"Percentage of the N = {_counts(validity.methods, lambda point: point.images)} class-level "
                   "counterfactuals whose flip the oracle confirms [Wilson 95% interval] (confirmed of the explained "
                   "classifier's flips)")
        blocks += _subsection("Validity", _per_k_table(results, validity.methods, _validity_cell, caption))
    if cout is not None:
        caption = (f"COUT in [-1, 1] over N = {_counts(cout.methods, lambda point: point.n)} counterfactuals, "
                   f"{cout.steps} steps [normal 95% interval of the mean]; higher is better")
        blocks += _subsection("COUT", _per_k_table(results, cout.methods, format_mean, caption))
    if proximity is not None:
        count = _counts(proximity.methods, lambda point: point.n)
        blocks += _subsection(
            "Proximity",
            _per_k_table(results, proximity.methods, lambda point: format_mean(point.l1),
                         f"L1 to the reconstruction (images in [-1, 1]) over N = {count} counterfactuals [normal 95% "
                         "interval of the mean]; lower is closer"),
            _per_k_table(results, proximity.methods, lambda point: format_mean(point.lpips),
                         f"LPIPS ({proximity.lpips_mode}) to the reconstruction over N = {count} counterfactuals "
                         "[normal 95% interval of the mean]; lower is closer"))
    if off_target is not None:
        blocks += _off_target_detail(results)
    return blocks


def _off_target_detail(results: BenchmarkResults) -> list[Block]:
    off_target = results.off_target
    count = _counts(off_target.methods, lambda point: point.n)
    tables = [
        _per_k_table(results, off_target.methods, lambda point: format_mean(point.off_target, 2),
                     f"Non-causal factors changed per counterfactual (N = {count}) [normal 95% interval of the "
                     "mean]; lower is better"),
        _per_k_table(results, off_target.methods, lambda point: format_interval(point.causal_changed),
                     f"Percentage of the N = {count} counterfactuals in which a causal factor changed [Wilson 95% "
                     "interval]; higher is better")]
    largest = {key: at_k(points, None) for key, points in off_target.methods.items()}
    methods = [key for key in results.ordered(largest) if largest[key] is not None]
    if methods and off_target.factors:
        causal = set(off_target.causal)
        rows = [[Span(factor, strong=factor in causal),
                 *(plain(percent(largest[key].per_factor.get(factor))) for key in methods)]
                for factor in off_target.factors]
        ks = per_dataset([(results.label(key), largest[key].k) for key in methods])
        tables.append(table(["Factor", *map(results.label, methods)], rows, [False] + [True] * len(methods),
                            inline(f"Share of counterfactuals in which each factor changed, at k = {ks} (causal in "
                                   "bold; a factor counts as changed when its probe output moves by at least "
                                   f"{shown(off_target.min_change)})")))
    return _subsection("Off-target changes", *tables)


def _runtime_detail(results: BenchmarkResults) -> list[Block]:
    runtime = results.runtime
    if runtime is None:
        return []
    strategies = _strategies(list(runtime.methods.values()))
    rows = [[results.label(key), *(_timing_cell(runtime.methods[key].get(strategy), runtime.images)
                                   for strategy in strategies)] for key in results.ordered(runtime.methods)]
    caption = (f"Seconds per explained image on {runtime.device} over N = {runtime.images} images, {RUNTIME_NOTE}; "
               "lower is faster")
    return [heading(3, "Runtime"),
            table(["Method", *(STRATEGY_TITLES.get(strategy, strategy) for strategy in strategies)], rows,
                  [False] + [True] * len(strategies), inline(caption))]


def detail_section(results: BenchmarkResults) -> list[Block]:
    """Every battery metric of one run over k (k rows x method columns); nothing when the run measured none."""
    blocks = [*_faithful_detail(results), *_class_level_detail(results), *_runtime_detail(results)]
    return [heading(2, "Counterfactual metric battery"), *blocks] if blocks else []


# ---------------------------------------------------------------------------------------------------- reading guide


# (section, title, what it measures and which direction is better), in the report's order
READING_GUIDE = (
    ("faithful_sufficiency", "Faithful sufficiency",
     "Sufficiency counted only over the images whose reconstruction keeps the real image's decision, so no method is "
     "credited with flips that the generator's own error causes; judged by the explained classifier and, "
     "separately, by the independent oracle classifier (another architecture and seed). N is the number of images "
     "kept, per method. Higher is better."),
    ("validity", "Validity",
     "The share of class-level counterfactuals whose flip of the explained classifier the independent oracle also "
     "sees: a flip only the explained classifier sees may exploit its quirks rather than change what makes the "
     "class. Higher is better; Random should be the floor."),
    ("cout", "COUT",
     "The counterfactual transition score of Khorram & Fuxin (2022), in [-1, 1]: the counterfactual's changed "
     "pixels are pasted into the reconstruction, most changed first, while the classifier's target-minus-source "
     "probability is recorded; COUT is half the area it gains. Near 1: the first pixels already flip a confident "
     "decision; 0: nothing the classifier sees changed; negative: the change pushes away from the target. Higher "
     "is better."),
    ("proximity", "Proximity",
     "How far each counterfactual moved from the reconstruction it edits: mean absolute pixel difference (L1, "
     "images in [-1, 1]) and LPIPS. Lower is closer, but a method that changes nothing scores 0, so read it beside "
     "validity: a good counterfactual is both close and valid."),
    ("off_target", "Off-target changes",
     "On shapes the factor probes say which factors each counterfactual changed. Off-target is the number of "
     "non-causal factors (ones the label does not depend on) that changed per counterfactual, the analogue of MNAC, "
     "the mean number of attributes changed; lower is better. Causal change is the share of counterfactuals in "
     "which a causal factor changed; higher is better."),
    ("runtime", "Runtime", f"Seconds per explained image on the benchmark's device, {RUNTIME_NOTE}. Lower is faster."),
)


def reading_guide(results: Sequence[BenchmarkResults]) -> list[Inline]:
    """A paragraph per battery metric that any of the results measured, for the "How to read this" section."""
    return [inline(Span(f"{title}. ", strong=True), text) for section, title, text in READING_GUIDE
            if any(getattr(item, section) is not None for item in results)]
