"""The benchmark report: metrics.json, the curves as PNG, Table 3 as LaTeX, and the same findings as a GitHub
README.md and a self-contained index.html.

`evaluation.benchmark` computes every number into one "stylex-benchmark" results dict (`evaluation.schema`) and
copies the attribute figures into the report folder; this package only presents them, so a report can be
re-rendered from metrics.json alone (`rerender_report`). `content` says what the report holds, `battery` how it
shows the counterfactual metric battery, `figures` draws the plots and `document` renders the content as Markdown,
HTML and LaTeX. `combined` writes one report across runs, whose Table 3 has a row per dataset (`datasets`: the rows
of such tables).

Importing the package loads neither torch nor matplotlib (the study analysis uses its document renderer); both are
loaded when a report is written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.report import content, figures
from evaluation.report.combined import INDEX_FILE, write_combined_report
from evaluation.report.content import (
    FID_FIGURE,
    HTML_FILE,
    METRICS_FILE,
    README_FILE,
    SUFFICIENCY_FIGURE,
    TABLE3_FILE,
)
from evaluation.report.document import render_html, render_markdown
from evaluation.report.formatting import format_interval
from evaluation.schema import BenchmarkResults, read_results, results_file
from stylex.errors import UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FID_FIGURE", "HTML_FILE", "INDEX_FILE", "METRICS_FILE", "README_FILE", "SUFFICIENCY_FIGURE",
           "TABLE3_FILE", "fid_figure", "format_interval", "rerender_report", "results_of",
           "sufficiency_figure", "table3_latex", "write_combined_report", "write_report"]


def results_of(metrics: Mapping | BenchmarkResults) -> BenchmarkResults:
    """The benchmark's results dict, checked and typed (typed results pass through)."""
    return metrics if isinstance(metrics, BenchmarkResults) else BenchmarkResults.from_dict(metrics)


def write_report(metrics: Mapping | BenchmarkResults, report_dir: Path) -> list[Path]:
    """Write metrics.json, sufficiency.png, fid.png, table3.tex, README.md and index.html into `report_dir` and
    return the written paths in that order.

    Everything is rendered in memory first and each file is replaced atomically, so malformed results fail before
    anything is touched and a reader never sees a half-written file. A figure or table whose section is absent is
    not written, and a stale copy of it from an earlier report in the same folder is removed, so the folder never
    shows numbers that metrics.json does not contain.
    """
    from stylex.runtime import atomic_write_bytes  # imports torch, which importing this package must not

    results = results_of(metrics)
    report_dir = Path(report_dir)
    try:
        metrics_text = json.dumps(results.to_dict(), indent=2, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as error:
        raise UserError(f"the benchmark metrics are not JSON-serializable ({error}); "
                        "store plain numbers, strings, lists and dicts") from None

    drawn = {SUFFICIENCY_FIGURE: figures.sufficiency_figure(results), FID_FIGURE: figures.fid_figure(results)}
    outputs: dict[str, bytes | None] = {METRICS_FILE: metrics_text.encode("utf-8")}
    outputs.update({name: None if figure is None else figures.png_bytes(figure) for name, figure in drawn.items()})
    table3 = content.table3_latex(results)
    outputs[TABLE3_FILE] = None if table3 is None else table3.encode("utf-8")

    written_files = [name for name, data in outputs.items() if data is not None]
    document = content.document(results, report_dir, [*written_files, README_FILE, HTML_FILE])
    outputs[README_FILE] = render_markdown(document).encode("utf-8")
    outputs[HTML_FILE] = render_html(document, content.title(results)).encode("utf-8")

    written = []
    for name, data in outputs.items():
        path = report_dir / name
        if data is None:
            path.unlink(missing_ok=True)
        else:
            written.append(atomic_write_bytes(path, data))
    return written


def rerender_report(source: str | Path, out_dir: Path | None = None) -> list[Path]:
    """Render a run's report again from its metrics.json alone (`source`: a run directory, its report folder or a
    metrics.json): into the folder of that metrics.json by default, else into `out_dir`, with the figures the
    report shows copied along so that it is complete there too. Returns the paths `write_report` wrote."""
    metrics = results_file(source)
    results = read_results(metrics)
    report_dir = metrics.parent if out_dir is None else Path(out_dir)
    if report_dir.resolve() != metrics.parent.resolve():
        _copy_figures(results, metrics.parent, report_dir)
    return write_report(results, report_dir)


def _copy_figures(results: BenchmarkResults, source_dir: Path, report_dir: Path) -> None:
    """Copy the pictures the results name (paths relative to their report folder) that are there; a missing one is
    shown as missing by the report, as in the original."""
    names = [results.reconstruction_grid] + [path for method in results.methods.values()
                                              for attribute in method.attributes
                                              for path in (attribute.panel, attribute.flicker, attribute.sweep)]
    for name in dict.fromkeys(name for name in names if name and not Path(name).is_absolute()):
        found = (source_dir / name).resolve()
        if found.is_relative_to(source_dir.resolve()) and found.is_file():
            (report_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, report_dir / name)


def sufficiency_figure(metrics: Mapping | BenchmarkResults) -> Figure | None:
    """Fraction flipped over k per strategy and method; None when the results hold no sufficiency curves."""
    return figures.sufficiency_figure(results_of(metrics))


def fid_figure(metrics: Mapping | BenchmarkResults) -> Figure | None:
    """The distance to real images under perturbation; None when the results hold no perturbation curves."""
    return figures.fid_figure(results_of(metrics))


def table3_latex(metrics: Mapping | BenchmarkResults) -> str | None:
    """Table 3 as LaTeX (booktabs); None when the results hold no Table 3 (several runs': `write_combined_report`)."""
    return content.table3_latex(results_of(metrics))
