"""One report across benchmark runs (`stylex report RUN RUN ...`): Table 3 with a row per dataset, as in the paper,
its companion tables with a row per dataset, and per dataset a link to the run's own report and its generators'
faithfulness. Written from the runs' metrics.json alone, through the same table code as a run's own report.

A source is a metrics.json, a run directory (its report/metrics.json) or a report folder (its metrics.json).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from evaluation.report import battery
from evaluation.report.content import (
    HTML_FILE,
    METRICS_FILE,
    README_FILE,
    SUFFICIENCY_GUIDE,
    TABLE3_FILE,
    gates_sentence,
    generators_table,
    table3_latex,
    table3_table,
)
from evaluation.report.datasets import DatasetRow, dataset_rows
from evaluation.report.document import (
    Block,
    Bullets,
    Paragraph,
    Span,
    heading,
    inline,
    plain,
    render_html,
    render_markdown,
)
from evaluation.report.formatting import STRATEGY_TITLES, percent, shown
from evaluation.schema import WHAT_TO_PASS, read_results, results_file
from stylex.errors import UserError

INDEX_FILE = "metrics-index.json"
INDEX_FORMAT = "stylex-benchmark-combined"
TITLE = "StylEx benchmark across datasets"


def _link(target: Path, out_dir: Path) -> str:
    """`target` as a link from a page in `out_dir`: relative, so the folders can move together; absolute where no
    relative path exists (another drive)."""
    try:
        return Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()
    except ValueError:
        return target.resolve().as_posix()


def _own_report(metrics: Path) -> Path:
    """The page of a run's own report next to its metrics.json; the metrics.json itself when none was written."""
    return next((page for page in (metrics.parent / HTML_FILE, metrics.parent / README_FILE) if page.is_file()),
                metrics)


def write_combined_report(sources: Sequence[str | Path], out_dir: Path) -> list[Path]:
    """Write one report across `sources` (metrics.json files, run directories or report folders) into `out_dir`:
    metrics-index.json (which results it combined), table3.tex, README.md and index.html, and return the written
    paths in that order. Every source is read and checked before anything is written."""
    from stylex.runtime import atomic_write_bytes  # imports torch, which importing this package must not

    if not sources:
        raise UserError(f"no benchmark results to combine; {WHAT_TO_PASS} for each run")
    out_dir = Path(out_dir)
    if (out_dir / METRICS_FILE).is_file():
        raise UserError(f"{out_dir} holds a run's report ({METRICS_FILE}), which the combined report would "
                        "overwrite; pass another --out, e.g. reports/combined")
    paths = [results_file(source) for source in sources]
    rows = dataset_rows([read_results(path) for path in paths])
    pages = [_link(_own_report(path), out_dir) for path in paths]

    index = {"format": INDEX_FORMAT, "format_version": 1,
             "sources": [{"label": row.label, "dataset": row.results.dataset.name, "run": row.results.run.name,
                          "run_dir": row.results.run.run_dir, "metrics": _link(path, out_dir), "report": page}
                         for row, path, page in zip(rows, paths, pages, strict=True)]}
    outputs: dict[str, bytes | None] = {
        INDEX_FILE: (json.dumps(index, indent=2, ensure_ascii=False) + "\n").encode("utf-8")}
    table3 = table3_latex(rows)
    outputs[TABLE3_FILE] = None if table3 is None else table3.encode("utf-8")
    written_files = [name for name, data in outputs.items() if data is not None]
    document = combined_document(rows, pages, written_files)
    outputs[README_FILE] = render_markdown(document).encode("utf-8")
    outputs[HTML_FILE] = render_html(document, TITLE).encode("utf-8")

    written = []
    for name, data in outputs.items():
        path = out_dir / name
        if data is None:  # no source has a Table 3: a stale one from an earlier combination must not stay
            path.unlink(missing_ok=True)
        else:
            written.append(atomic_write_bytes(path, data))
    return written


def combined_document(rows: Sequence[DatasetRow], pages: Sequence[str], report_files: Sequence[str]) -> list[Block]:
    """The combined report's content; `pages` links each row's own report (relative to the combined report)."""
    files = inline(f"One report across {len(rows)} benchmark runs ({', '.join(row.label for row in rows)}); the "
                   "results it combines: ", Span(INDEX_FILE, href=INDEX_FILE))
    if TABLE3_FILE in report_files:
        files += inline("; Table 3 as LaTeX: ", Span(TABLE3_FILE, href=TABLE3_FILE))
    blocks: list[Block] = [heading(1, TITLE), Paragraph(files + inline("."))]
    table3 = table3_table(rows)
    if table3 is not None:
        blocks += [heading(2, "Table 3: sufficiency across datasets"), table3]
    blocks += battery.companion_section(rows)
    blocks.append(heading(2, "Per dataset"))
    for row, page in zip(rows, pages, strict=True):
        blocks += _dataset_section(row, page)
    guide = [SUFFICIENCY_GUIDE, *battery.reading_guide([row.results for row in rows])]
    return [*blocks, heading(2, "How to read this"), *(Paragraph(paragraph) for paragraph in guide)]


def _dataset_section(row: DatasetRow, page: str) -> list[Block]:
    results = row.results
    run, sufficiency, classifier = results.run, results.sufficiency, results.classifier
    items = [inline("Report: ", Span(page, href=page)),
             inline("Run ", run.name, " (configuration ", run.config, ", run folder ", run.run_dir, "), created ",
                    run.created, ", code version ", run.code_version)]
    if sufficiency is not None:
        strategy = "" if results.table3 is None else (
            f", Table 3 at k = {results.table3.k} "
            f"({STRATEGY_TITLES.get(results.table3.strategy, results.table3.strategy).lower()})")
        items.append(inline(plain(f"Sufficiency: N = {sufficiency.num_images} test images, shift size "
                                  f"{shown(sufficiency.shift_size)}, k = 1 to {sufficiency.max_k}{strategy}")))
    if classifier is not None:
        oracle = "" if classifier.oracle_arch is None else (
            f"; oracle {classifier.oracle_arch}, test accuracy {percent(classifier.oracle_test_accuracy)}")
        items.append(inline("Classifier: ", classifier.arch, plain(
            f", test accuracy {percent(classifier.test_accuracy)}"), oracle))
    blocks: list[Block] = [heading(3, row.label), Bullets(tuple(items))]
    generators = generators_table(results)
    if generators is not None:
        blocks += [generators, Paragraph(inline(gates_sentence(results)))]
    return blocks

