"""The user-study analysis as files: analysis.md, the paper's Table 2 as LaTeX (table2.tex) and the accuracy plot.

Markdown and LaTeX are rendered from one document (``evaluation.report.document``, which imports no torch), so the
two tables cannot disagree. Everything is rendered from the JSON-able :func:`studies.analysis.analyze` result, not
from live frames, so a stored result can be rendered again. Names of methods, domains and columns are written into
the Markdown as they are (only a ``|``, which would split a table cell, is escaped); LaTeX escapes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.report import document as doc
from studies.accuracy import ACCURACY_COLUMNS
from studies.word_agreement import WORD_COLUMNS
from stylex.errors import UserError

#: A method without trials in a domain: an en dash (LaTeX writes it as --).
MISSING_CELL = doc.plain("–", latex="--")


# ---------------------------------------------------------------------------------------------------------------------
# Table 2 and the accuracy plot
# ---------------------------------------------------------------------------------------------------------------------


def _std_column(over: str) -> str:
    if over not in ("attributes", "participants"):
        raise UserError(f"over must be 'attributes' or 'participants', got {over!r}")
    return f"std_over_{over}"


def _cell(row: pd.Series, std_col: str) -> str:
    std = row[std_col]
    std_txt = "n/a" if std is None or pd.isna(std) else f"{std:.3f}"
    return f"{row['accuracy']:.2f} ± {std_txt} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _caption(over: str) -> str:
    return (
        f"Accuracy (pooled over trials) ± s.d. over {over} (ddof=1) [Wilson 95% CI, descriptive: trials cluster within "
        "participants and attributes]. Chance is 0.5."
    )


def table2_table(acc_table: pd.DataFrame, over: str = "attributes") -> doc.Table:
    """The paper's Table 2 layout: rows = domains, columns = methods, "acc ± std [lo, hi]" cells, the caption (which
    says which std is shown: over 'attributes' or 'participants') below."""
    std_col = _std_column(over)
    methods = [str(method) for method in dict.fromkeys(acc_table["method"])]
    domains = [str(domain) for domain in dict.fromkeys(acc_table["domain"])]
    cells = {(str(r["domain"]), str(r["method"])): _cell(r, std_col) for _, r in acc_table.iterrows()}
    rows = [[doc.plain(domain), *(doc.plain(cells[domain, method]) if (domain, method) in cells else MISSING_CELL
                              for method in methods)] for domain in domains]
    return doc.table([doc.plain("Domain"), *map(doc.plain, methods)], rows, caption=(doc.plain(_caption(over)),),
                     caption_below=True)


def table2(acc_table: pd.DataFrame, over: str = "attributes") -> str:
    """Table 2 as a Markdown table with its caption below (see :func:`table2_table`)."""
    return doc.render_markdown([table2_table(acc_table, over)])


def table2_latex(acc_table: pd.DataFrame, over: str = "attributes") -> str:
    """The same table as LaTeX (booktabs), ready for ``\\input``; needs ``\\usepackage{booktabs}``."""
    return doc.render_latex([table2_table(acc_table, over)], indent="")


def accuracy_plot(acc_table: pd.DataFrame, path: str | Path) -> Path:
    """Grouped bars (domain groups, one bar per method) with Wilson 95% error bars and the chance line.

    Uses ``Figure`` + ``FigureCanvasAgg`` rather than pyplot so that it is thread-safe on a server and leaves no
    global figure state behind.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    methods = list(dict.fromkeys(acc_table["method"]))
    domains = list(dict.fromkeys(acc_table["domain"]))
    fig = Figure(figsize=(max(4.0, 1.6 * len(domains) * max(1, len(methods)) / 2 + 2), 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(domains))
    for i, method in enumerate(methods):
        sub = acc_table[acc_table["method"] == method].set_index("domain").reindex(domains)
        acc = sub["accuracy"].to_numpy(float)
        err = np.vstack([acc - sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float) - acc])
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, acc, width, yerr=err, capsize=3, label=method)
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, domains)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (Wilson 95% CI)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path




# ---------------------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return str(value)


def _records_table(records: list[Mapping[str, Any]], columns: list[str]) -> doc.Table:
    """Every number of a result table, one column per key."""
    return doc.table([doc.plain(column) for column in columns],
                     [[doc.plain(_value(record.get(column))) for column in columns] for record in records])


def _heading(level: int, text: str) -> doc.Heading:
    return doc.heading(level, doc.plain(text))


def _text(text: str) -> doc.Paragraph:
    return doc.Paragraph(doc.inline(doc.plain(text)))


def _accuracy_blocks(result: Mapping[str, Any], acc_df: pd.DataFrame) -> list[doc.Block]:
    blocks: list[doc.Block] = [_heading(2, "Part 1: accuracy (Table 2 layout)"),
                               table2_table(acc_df, "attributes"), table2_table(acc_df, "participants"),
                               _heading(3, "All numbers"), _records_table(result["accuracy"], ACCURACY_COLUMNS)]
    if result.get("accuracy_no_exclusions"):
        blocks += [_heading(3, "Sensitivity: no exclusions"),
                   table2_table(pd.DataFrame(result["accuracy_no_exclusions"]))]
    return [*blocks, doc.Picture("accuracy.png", "accuracy")]


def _comparison_blocks(comp: Mapping[str, Any]) -> list[doc.Block]:
    blocks: list[doc.Block] = [_heading(2, "Part 1: method comparison")]
    if "error" in comp:
        return [*blocks, _text(f"Not run: {comp['error']}")]
    blocks.append(_text(f"Reference method: {comp['reference']}. Caveat: {comp['caveat']}."))
    gee = comp["gee"]
    blocks.append(doc.heading(3, doc.plain("GEE ("), doc.Span(gee["formula"], code=True),
                              doc.plain(", exchangeable, clusters = participants)")))
    if "error" in gee:
        blocks.append(_text(f"Failed: {gee['error']}"))
    else:
        columns = ["term", "odds_ratio", "or_ci_low", "or_ci_high", "p_value", "log_odds_ratio", "se_robust"]
        blocks.append(_records_table([{"term": term, **values} for term, values in gee["terms"].items()], columns))
    bayes = comp["bayes_mixed"]
    blocks.append(_heading(3, "Bayesian mixed logistic model (random intercepts: participant, attribute; fit_vb)"))
    if "error" in bayes:
        blocks.append(_text(f"Failed: {bayes['error']}"))
    else:
        columns = ["term", "posterior_mean", "posterior_sd", "cri_low", "cri_high", "odds_ratio"]
        blocks += [_records_table([{"term": term, **values} for term, values in bayes["terms"].items()], columns),
                   _text(f"Random-effect SDs: {bayes['random_effect_sd']}. {bayes['note']}.")]
    return [*blocks, _heading(3, "Participant cluster bootstrap of accuracy differences"),
            _records_table(comp["bootstrap"], ["domain", "method", "reference", "difference", "ci_low", "ci_high"])]


def _word_blocks(result: Mapping[str, Any]) -> list[doc.Block]:
    shared = result.get("shared_top_words") or []
    blocks: list[doc.Block] = [_heading(2, "Part 2: word agreement"),
                               _records_table(result["words"], WORD_COLUMNS[:-1]),
                               _text(f"Attribute pairs sharing a top word (distinctness failures): {len(shared)}")]
    if shared:
        blocks.append(_records_table(shared, ["method", "domain", "attr_a", "attr_b", "word"]))
    return blocks


def _forward_blocks(forward: Mapping[str, Any]) -> list[doc.Block]:
    """Part 3: how well each group predicted the classifier, and each group against the reference (control)."""
    from studies.forward_analysis import ACCURACY_COLUMNS, COMPARISON_COLUMNS

    blocks: list[doc.Block] = [_heading(2, "Part 3: predicting the classifier (forward simulation)"),
                               _text("Accuracy of predicting the classifier's decision on new images, per group "
                                     "(Wilson 95% interval over pooled trials; mean and s.d. over participants)."),
                               _records_table(forward["accuracy"], ACCURACY_COLUMNS)]
    if forward.get("comparison_error"):
        return [*blocks, _text(f"Group comparison not run: {forward['comparison_error']}")]
    blocks.append(_text(f"Each group against {forward['reference']}: GEE {forward['formula']} (binomial, logit, "
                        "exchangeable within participant, robust SEs); difference of accuracies with a participant "
                        "bootstrap 95% interval." + (f" GEE failed: {forward['gee_error']}" if forward["gee_error"]
                                                      else "")))
    return [*blocks, _records_table(forward["comparisons"], COMPARISON_COLUMNS)]


def write_report(result: Mapping[str, Any], folder: str | Path) -> dict[str, Path]:
    """Write ``analysis.md``, ``table2.tex`` and ``accuracy.png`` into ``folder`` from an ``analyze`` result.

    Without Part 1 data the table file holds a note instead of numbers and the plot is not written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": folder / "analysis.md", "latex": folder / "table2.tex", "plot": folder / "accuracy.png"}
    ex = result["exclusions"]
    blocks: list[doc.Block] = [
        _heading(1, "User study analysis"),
        _text(f"Rows: {result['n_rows']}. Participants kept: {len(ex['kept'])}, excluded: {len(ex['excluded'])} "
              f"(attention share < {ex['min_attention']})."),
    ]
    if ex["excluded"]:
        blocks.append(_text("Excluded: " + ", ".join(ex["excluded"])))
    if result.get("plan"):  # set by `stylex study analyze`: the pre-registration it followed, or that there is none
        summary = result["plan"]["summary"]
        blocks.append(_text(summary[:1].upper() + summary[1:] + "."))
    if result.get("accuracy"):
        acc_df = pd.DataFrame(result["accuracy"])
        blocks += _accuracy_blocks(result, acc_df)
        paths["latex"].write_text(table2_latex(acc_df), encoding="utf-8")
        accuracy_plot(acc_df, paths["plot"])
    else:
        paths["latex"].write_text(doc.render_latex([doc.Comment("no Part 1 data")]), encoding="utf-8")
        paths.pop("plot")
    if result.get("comparison"):
        blocks += _comparison_blocks(result["comparison"])
    if result.get("words") is not None:
        blocks += _word_blocks(result)
    if result.get("forward"):
        blocks += _forward_blocks(result["forward"])
    paths["markdown"].write_text(doc.render_markdown(blocks), encoding="utf-8")
    return paths
