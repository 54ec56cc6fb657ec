"""The benchmark report: metrics.json, the curves as PNG, Table 3 as LaTeX, and the same findings as a GitHub
README.md and a self-contained index.html.

`evaluation.benchmark` computes every number into one JSON-serializable `metrics` dict (format
"stylex-benchmark", version 1) and copies the attribute figures into the report folder; this module only
presents them. Nothing is recomputed here, so a report can be re-rendered from metrics.json alone, and the pages
never disagree with the file that ships next to them.

README.md and index.html are rendered from one small document model (headings, paragraphs, tables, figures, an
attribute gallery), so the two pages carry the same content and cannot drift apart.

Naming rule (DESIGN.md §7): a Frechet distance on anything but InceptionV3 features is never called FID. Every
mention of the distance uses metrics["fid"]["label"], and a label that says FID for other features is rejected.

Sections that a run did not produce (no "fid" when the distance was skipped, no "recovery" off the shapes dataset,
`"independent": null` for Wu et al.) are left out or shown as "n/a"; a section that is present but malformed
raises UserError naming the field.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evaluation.fid import CLASSIFIER_LABEL, FID_LABEL
from evaluation.methods import LABELS, METHODS
from stylex.errors import UserError
from stylex.runtime import atomic_write_bytes

FORMAT = "stylex-benchmark"
FORMAT_VERSION = 1

METRICS_FILE = "metrics.json"
SUFFICIENCY_FIGURE = "sufficiency.png"
FID_FIGURE = "fid.png"
TABLE3_FILE = "table3.tex"
README_FILE = "README.md"
HTML_FILE = "index.html"

# Tables keep the paper's column order whatever order the dict arrived in; unknown methods follow in dict order.
METHOD_ORDER = METHODS
DEFAULT_METHOD_LABELS = LABELS
STRATEGY_TITLES = {"class_level": "Class-level top-k", "independent": "Independent", "subset": "Subset"}
INCEPTION_LABEL = FID_LABEL
CLASSIFIER_FEATURE_LABEL = CLASSIFIER_LABEL
GENERATOR_COLUMNS = (("step", "checkpoint step"), ("reconstruction_l1", "reconstruction L1"), ("lpips", "LPIPS"),
                     ("explained_agreement", "explained agreement"), ("oracle_agreement", "oracle agreement"),
                     ("input_dependence_pixels", "input dependence (pixels)"),
                     ("input_dependence_features", "input dependence (features)"),
                     ("swapped_condition_agreement", "agreement, swapped condition"),
                     ("factor_shape", "shape kind kept"), ("factor_size", "size kept"), ("factor_spot", "spot kept"),
                     ("factor_shape_iou", "shape IoU"), ("sample_frechet_classifier", "sample FD (classifier)"),
                     ("classifier_agreement", "classifier agreement"))
FIGURE_DPI = 120


def write_report(metrics: dict, report_dir: Path) -> list[Path]:
    """Write metrics.json, sufficiency.png, fid.png, table3.tex, README.md and index.html into `report_dir` and
    return the written paths in that order.

    Everything is rendered in memory first and each file is replaced atomically, so a malformed metrics dict
    fails before anything is touched and a reader never sees a half-written file. A figure or table whose section
    is absent is not written, and a stale copy of it from an earlier report in the same folder is removed, so the
    folder never shows numbers that metrics.json does not contain.
    """
    check_metrics(metrics)
    report_dir = Path(report_dir)
    try:
        metrics_text = json.dumps(metrics, indent=2, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as error:
        raise UserError(f"the benchmark metrics are not JSON-serializable ({error}); "
                        "store plain numbers, strings, lists and dicts") from None

    figures = {SUFFICIENCY_FIGURE: sufficiency_figure(metrics), FID_FIGURE: fid_figure(metrics)}
    outputs: dict[str, bytes | None] = {METRICS_FILE: metrics_text.encode("utf-8")}
    outputs.update({name: None if figure is None else _png_bytes(figure) for name, figure in figures.items()})
    table3 = table3_latex(metrics)
    outputs[TABLE3_FILE] = None if table3 is None else table3.encode("utf-8")

    written_files = [name for name, data in outputs.items() if data is not None]
    document = _document(metrics, report_dir, [*written_files, README_FILE, HTML_FILE])
    outputs[README_FILE] = _render_markdown(document).encode("utf-8")
    outputs[HTML_FILE] = _render_html(document, _title(metrics)).encode("utf-8")

    written = []
    for name, data in outputs.items():
        path = report_dir / name
        if data is None:
            path.unlink(missing_ok=True)
        else:
            written.append(atomic_write_bytes(path, data))
    return written


def check_metrics(metrics: object) -> None:
    """Reject anything that is not a benchmark metrics dict this writer understands, with the reason."""
    if not isinstance(metrics, Mapping):
        raise UserError(f"the report needs the benchmark's metrics dict, got {type(metrics).__name__}")
    if metrics.get("format") != FORMAT:
        raise UserError(f"metrics format is {metrics.get('format')!r}, expected {FORMAT!r}: "
                        "pass the metrics.json written by the benchmark")
    version = metrics.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise UserError(f"metrics format_version {version!r} is not supported (this writer reads version "
                        f"{FORMAT_VERSION}); re-run the benchmark with this version of stylex-suite")
    fid = _section(metrics, "fid")
    if fid is not None:
        _distance_label(fid)


# ---------------------------------------------------------------------------------------------------- reading


def _section(parent: Mapping, key: str, where: str = "metrics") -> Mapping | None:
    """parent[key] as a mapping, None when absent or null (the run skipped it), UserError when malformed."""
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise UserError(f"{where}[{key!r}] must be an object, got {type(value).__name__}")
    return value


def _rows(value: object, where: str, index_key: str) -> list[Mapping]:
    """A list of row objects sorted by `index_key` (k or i); empty when absent or null."""
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise UserError(f"{where} must be a list of rows, got {type(value).__name__}")
    for row in value:
        if not isinstance(row, Mapping) or not isinstance(row.get(index_key), int):
            raise UserError(f"{where}: every row needs an integer {index_key!r}, got {row!r}")
    return sorted(value, key=lambda row: row[index_key])


def _ordered(keys: Iterable[str]) -> list[str]:
    """Method keys in the paper's order (Wu et al., StylEx w/o CST, StylEx), unknown keys after, deduplicated."""
    unique = list(dict.fromkeys(keys))
    known = [key for key in METHOD_ORDER if key in unique]
    return known + [key for key in unique if key not in METHOD_ORDER]


def _objects(parent: Mapping, key: str, where: str) -> dict[str, Mapping]:
    """parent[key] as {name: object}, entries that are null dropped (the run did not produce them)."""
    section = _section(parent, key, where) or {}
    for name, value in section.items():
        if value is not None and not isinstance(value, Mapping):
            raise UserError(f"{where}[{key!r}][{name!r}] must be an object or null, got {type(value).__name__}")
    return {name: value for name, value in section.items() if value is not None}


def _methods(metrics: Mapping) -> dict[str, Mapping]:
    return _objects(metrics, "methods", "metrics")


def _label(metrics: Mapping, key: str) -> str:
    """Display name of a method or generator: its label in metrics, else the paper's name, else the key."""
    method = _methods(metrics).get(key)
    if isinstance(method, Mapping) and isinstance(method.get("label"), str):
        return method["label"]
    return DEFAULT_METHOD_LABELS.get(key, key)


def _curves(metrics: Mapping) -> dict[str, Mapping]:
    """{method: {strategy: rows or null}}."""
    return _objects(_section(metrics, "sufficiency") or {}, "curves", "metrics['sufficiency']")


def _perturbation(metrics: Mapping) -> dict[str, Mapping]:
    """{method: {shift size as a string: rows}}."""
    return _objects(_section(metrics, "fid") or {}, "perturbation", "metrics['fid']")


def _reconstruction(metrics: Mapping) -> Mapping:
    fid = _section(metrics, "fid") or {}
    return _section(fid, "reconstruction", "metrics['fid']") or {}


def _colors(metrics: Mapping) -> dict[str, str]:
    """One colour per method or generator, the same in every figure (a generator shares its StylEx method's)."""
    keys = [*_methods(metrics), *_curves(metrics), *_perturbation(metrics), *_reconstruction(metrics),
            *(_section(metrics, "generators") or {})]
    return {key: f"C{index % 10}" for index, key in enumerate(_ordered(keys))}


def _distance_label(fid: Mapping) -> str:
    """What the perturbation distance is called: "FID" only on Inception features (pytorch-fid)."""
    features = fid.get("features")
    default = INCEPTION_LABEL if features == "inception" else CLASSIFIER_FEATURE_LABEL
    label = fid.get("label", default)
    if not isinstance(label, str) or not label.strip():
        raise UserError(f"metrics['fid']['label'] must be a non-empty string, got {label!r}")
    if features != "inception" and "FID" in label:
        raise UserError(f"metrics['fid'] was computed on {features!r} features but is labelled {label!r}: only "
                        f"Inception features give FID; label it {CLASSIFIER_FEATURE_LABEL!r}")
    return label


def _shift_keys(perturbation: Mapping) -> list[str]:
    """The shift sizes present in any method, in numeric order (JSON keys are strings, "0.5" < "1.0" < "2.0")."""
    shifts = {shift for by_shift in perturbation.values() for shift, rows in by_shift.items() if rows}
    try:
        return sorted(shifts, key=float)
    except ValueError:
        raise UserError(f"metrics['fid']['perturbation'] keys must be shift sizes, got {sorted(shifts)}") from None


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


# ---------------------------------------------------------------------------------------------------- formatting


def _interval_percent(cell: object) -> tuple[str, str, str] | None:
    """(fraction, low, high) in percent with one decimal, None when the cell has no finite numbers."""
    if not isinstance(cell, Mapping):
        return None
    values = [_finite(cell.get(key)) for key in ("fraction", "ci_low", "ci_high")]
    if any(value is None for value in values):
        return None
    return tuple(f"{100 * value:.1f}" for value in values)


def format_interval(cell: object) -> str:
    """A sufficiency cell as "83.2% [79.1, 86.7]" (percent, Wilson 95% interval), or "n/a"."""
    parts = _interval_percent(cell)
    return "n/a" if parts is None else f"{parts[0]}% [{parts[1]}, {parts[2]}]"


def _latex_interval(cell: object) -> str:
    parts = _interval_percent(cell)
    return "n/a" if parts is None else rf"{parts[0]}\,[{parts[1]}, {parts[2]}]"


def _number(value: object, digits: int = 2) -> str:
    finite = _finite(value)
    if finite is None:
        return "n/a"
    return str(int(finite)) if isinstance(value, int) else f"{finite:.{digits}f}"


def _percent(value: object) -> str:
    finite = _finite(value)
    return "n/a" if finite is None else f"{100 * finite:.1f}%"


def _duration(seconds: object) -> str:
    """812.4 -> "13 min 32 s": wall times of minutes to hours read better than raw seconds."""
    finite = _finite(seconds)
    if finite is None:
        return "n/a"
    if finite < 60:
        return f"{finite:.1f} s"
    minutes, secs = divmod(round(finite), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def _text(value: object, default: str = "n/a") -> str:
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Text that LaTeX typesets literally (dataset names such as celeba_hq would otherwise break the table)."""
    return "".join(_LATEX_SPECIALS.get(character, character) for character in text)


# ---------------------------------------------------------------------------------------------------- figures


def _png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return buffer.getvalue()


def _new_figure(columns: int, height: float, share_y: bool = False) -> tuple[Figure, list]:
    """A Figure drawn by Agg directly: no pyplot, so no global backend switch or figure registry to leak."""
    figure = Figure(figsize=(max(4.8, 4.3 * columns), height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns, squeeze=False, sharey=share_y)[0]
    return figure, list(axes)


def _legend(figure: Figure, handles: Mapping[str, object]) -> None:
    """One legend under all subplots (a strategy may lack a method, so no single subplot has every line)."""
    columns = len(handles) if len(handles) <= 5 else math.ceil(len(handles) / 2)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=max(columns, 1),
                  frameon=False)


def sufficiency_figure(metrics: Mapping) -> Figure | None:
    """Fraction flipped over k: one subplot per strategy that any method has, one line per method with its
    Wilson 95% band. None when the metrics hold no sufficiency curves."""
    check_metrics(metrics)
    curves = _curves(metrics)
    strategies = [strategy for strategy in STRATEGY_TITLES
                  if any(by_strategy.get(strategy) for by_strategy in curves.values())]
    if not strategies:
        return None
    colors = _colors(metrics)
    figure, axes = _new_figure(len(strategies), 4.0)
    handles = {}
    for axis, strategy in zip(axes, strategies, strict=True):
        for method in _ordered(curves):
            rows = _rows(curves[method].get(strategy), f"sufficiency curve {method}/{strategy}", "k")
            points = [(row["k"], _finite(row.get("fraction")), _finite(row.get("ci_low")),
                       _finite(row.get("ci_high"))) for row in rows]
            points = [point for point in points if None not in point]
            if not points:
                continue
            ks, fractions, lows, highs = zip(*points, strict=True)
            (line,) = axis.plot(ks, fractions, marker="o", markersize=3, color=colors[method],
                                label=_label(metrics, method))
            axis.fill_between(ks, lows, highs, color=colors[method], alpha=0.18, linewidth=0)
            handles[method] = line
        axis.set_title(STRATEGY_TITLES[strategy])
        axis.set_xlabel("k (attributes changed)")
        axis.set_ylabel("fraction flipped")
        axis.set_ylim(0, 1)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    sufficiency = _section(metrics, "sufficiency") or {}
    figure.suptitle(f"Sufficiency on {_dataset_name(metrics)}: N = {_text(sufficiency.get('num_images'))} images, "
                    f"shift {_text(sufficiency.get('shift_size'))} (bands: Wilson 95%)")
    _legend(figure, {_label(metrics, method): handles[method] for method in _ordered(handles)})
    return figure


def fid_figure(metrics: Mapping) -> Figure | None:
    """Distance to real images over i (top attributes changed): one subplot per shift size, one line per method,
    dashed lines at each generator's reconstruction distance. Axis and titles use metrics["fid"]["label"].
    None when the metrics hold no perturbation curves."""
    check_metrics(metrics)
    fid = _section(metrics, "fid")
    perturbation = _perturbation(metrics)
    shifts = _shift_keys(perturbation)
    if fid is None or not shifts:
        return None
    label = _distance_label(fid)
    colors = _colors(metrics)
    reconstruction = {key: _finite(value) for key, value in _reconstruction(metrics).items()}
    figure, axes = _new_figure(len(shifts), 4.0, share_y=True)  # one scale, so shift sizes compare by eye
    handles = {}
    for axis, shift in zip(axes, shifts, strict=True):
        for method in _ordered(perturbation):
            rows = _rows(perturbation[method].get(shift), f"fid perturbation {method}/{shift}", "i")
            points = [(row["i"], _finite(row.get("value"))) for row in rows if _finite(row.get("value")) is not None]
            if points:
                steps, values = zip(*points, strict=True)
                (handles[method],) = axis.plot(steps, values, marker="o", markersize=3, color=colors[method])
        for generator in _ordered(reconstruction):
            if reconstruction[generator] is not None:
                handles[f"reconstruction:{generator}"] = axis.axhline(
                    reconstruction[generator], linestyle="--", linewidth=1.2, color=colors[generator])
        axis.set_title(f"shift {shift}")
        axis.set_xlabel("i (top attributes changed)")
        axis.set_ylabel(label)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    figure.suptitle(f"{label} under perturbation on {_dataset_name(metrics)} "
                    f"(N = {_text(fid.get('num_images'))} images)")
    legend = {_label(metrics, method): handles[method] for method in _ordered(perturbation) if method in handles}
    for generator in _ordered(reconstruction):
        if f"reconstruction:{generator}" in handles:
            legend[f"reconstruction, {_label(metrics, generator)}"] = handles[f"reconstruction:{generator}"]
    _legend(figure, legend)
    return figure


# ---------------------------------------------------------------------------------------------------- LaTeX


def table3_latex(metrics: Mapping) -> str | None:
    """The paper's Table 3 (booktabs): datasets as rows, Wu et al. | StylEx w/o CST | StylEx as columns, each
    cell the sufficiency in percent with its Wilson 95% interval. None when the metrics hold no table3."""
    check_metrics(metrics)
    table3 = _section(metrics, "table3")
    if table3 is None:
        return None
    methods = _table3_methods(metrics)
    header = " & ".join(["Dataset", *(latex_escape(_label(metrics, method)) for method in methods)])
    lines = [
        r"% Sufficiency (Table 3 layout), written by stylex-suite evaluation/report.py; needs \usepackage{booktabs}.",
        r"\begin{table}[t]",
        r"  \centering",
        f"  \\caption{{{latex_escape(_table3_caption(metrics))}}}",
        r"  \label{tab:sufficiency}",
        f"  \\begin{{tabular}}{{l{'c' * len(methods)}}}",
        r"    \toprule",
        f"    {header} \\\\",
        r"    \midrule",
    ]
    for row in _table3_rows(table3):
        cells = [latex_escape(_text(row.get("dataset"))), *(_latex_interval(row.get(method)) for method in methods)]
        lines.append(f"    {' & '.join(cells)} \\\\")
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _table3_methods(metrics: Mapping) -> list[str]:
    table3 = _section(metrics, "table3") or {}
    in_rows = [key for row in _table3_rows(table3) for key in row if key != "dataset"]
    return _ordered([*_methods(metrics), *in_rows])


def _table3_rows(table3: Mapping) -> list[Mapping]:
    rows = table3.get("rows") or []
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
        raise UserError("metrics['table3']['rows'] must be a list of objects, one per dataset")
    return rows


def _table3_caption(metrics: Mapping) -> str:
    table3 = _section(metrics, "table3") or {}
    sufficiency = _section(metrics, "sufficiency") or {}
    strategy = STRATEGY_TITLES.get(table3.get("strategy"), _text(table3.get("strategy"))).lower()
    return (f"Sufficiency: percentage of the N = {_text(sufficiency.get('num_images'))} test images whose "
            f"classifier decision flips when the top-k attributes are changed ({strategy}, k = "
            f"{_text(table3.get('k'))}, shift size {_text(sufficiency.get('shift_size'))}). "
            "Brackets: Wilson 95% confidence interval.")


# ---------------------------------------------------------------------------------------------------- document model


@dataclass(frozen=True)
class _Span:
    """A run of text; `href` (a path inside the report folder) makes it a link, `code` a code span (formulas
    such as edit rules). `plain` marks text written here (numbers, intervals, captions) that holds no Markdown
    markup, so it is not backslash-escaped."""

    text: str
    href: str | None = None
    strong: bool = False
    code: bool = False
    plain: bool = False


_Inline = tuple[_Span, ...]


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Paragraph:
    content: _Inline


@dataclass(frozen=True)
class _Bullets:
    items: tuple[_Inline, ...]


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[_Inline, ...], ...]
    numeric: tuple[bool, ...]  # per column: right-aligned, tabular digits
    caption: _Inline = ()


@dataclass(frozen=True)
class _Picture:
    src: str
    alt: str


@dataclass(frozen=True)
class _AttributeCard:
    title: str
    details: _Inline
    panel: str | None
    animations: tuple[tuple[str, str], ...]  # (name, path) of each GIF


@dataclass(frozen=True)
class _Gallery:
    cards: tuple[_AttributeCard, ...]


_Block = _Heading | _Paragraph | _Bullets | _Table | _Picture | _Gallery


def _inline(*parts: str | _Span | Iterable[_Span]) -> _Inline:
    spans: list[_Span] = []
    for part in parts:
        if isinstance(part, str):
            spans.append(_Span(part))
        elif isinstance(part, _Span):
            spans.append(part)
        else:
            spans.extend(part)
    return tuple(spans)


def _plain(text: str) -> _Span:
    return _Span(text, plain=True)


def _table(header: Sequence[str], rows: Iterable[Sequence[str | _Span | _Inline]], numeric: Sequence[bool],
           caption: _Inline = ()) -> _Table:
    return _Table(tuple(header), tuple(tuple(_inline(cell) for cell in row) for row in rows), tuple(numeric),
                  caption)


# ---------------------------------------------------------------------------------------------------- content


def _dataset_name(metrics: Mapping) -> str:
    return _text((_section(metrics, "dataset") or {}).get("name"), "unnamed dataset")


def _title(metrics: Mapping) -> str:
    run = _section(metrics, "run") or {}
    return f"StylEx benchmark: {_text(run.get('name'), 'unnamed run')} on {_dataset_name(metrics)}"


def _document(metrics: Mapping, report_dir: Path, report_files: Sequence[str]) -> list[_Block]:
    """The report's content, shared by README.md and index.html. `report_files` are the files of this report
    (linked and embedded only when written)."""
    blocks: list[_Block] = [_Heading(1, _title(metrics))]
    files = _inline("Raw numbers: ", _Span(METRICS_FILE, href=METRICS_FILE))
    if TABLE3_FILE in report_files:
        files += _inline("; Table 3 as LaTeX: ", _Span(TABLE3_FILE, href=TABLE3_FILE))
    blocks.append(_Paragraph(files + _inline(".")))
    blocks += _run_section(metrics)
    blocks += _reading_guide(metrics)
    blocks += _table3_section(metrics)
    blocks += _sufficiency_section(metrics, SUFFICIENCY_FIGURE in report_files)
    blocks += _fid_section(metrics, FID_FIGURE in report_files)
    blocks += _recovery_section(metrics)
    blocks += _attributes_section(metrics, report_dir)
    return blocks


def _run_section(metrics: Mapping) -> list[_Block]:
    run = _section(metrics, "run") or {}
    dataset = _section(metrics, "dataset") or {}
    classifier = _section(metrics, "classifier")
    sufficiency = _section(metrics, "sufficiency")
    items = [_inline("Configuration: ", _text(run.get("config")), " (run folder ", _text(run.get("run_dir")), ")")]
    classes = dataset.get("classes")
    dataset_item = _inline("Dataset: ", _dataset_name(metrics))
    if dataset.get("resolution") is not None:
        dataset_item += _inline(f", {_text(dataset['resolution'])} px")
    if isinstance(classes, list) and classes:
        dataset_item += _inline("; classes: ", ", ".join(_text(name) for name in classes))
    items.append(dataset_item)
    if classifier is not None:
        items.append(_inline("Classifier: ", _text(classifier.get("arch")), ", test accuracy ",
                             _plain(_percent(classifier.get("test_accuracy")))))
    if sufficiency is not None:
        items.append(_inline(f"Sufficiency: N = {_text(sufficiency.get('num_images'))} test images, shift size "
                             f"{_text(sufficiency.get('shift_size'))}, k = 1 to {_text(sufficiency.get('max_k'))}"))
    device = _inline("Device: ", _text(run.get("device")))
    if run.get("wall_time_s") is not None:
        device += _inline(_plain(f"; wall time of this invocation {_duration(run['wall_time_s'])}"))
    items.append(device)
    items.append(_inline("Code version: ", _text(run.get("code_version")), "; created ", _text(run.get("created"))))
    blocks: list[_Block] = [_Heading(2, "What was run"), _Bullets(tuple(items))]

    methods = _methods(metrics)
    if methods:
        rows = []
        for key in _ordered(methods):
            attributes = _attributes(methods[key], key)
            rows.append([_label(metrics, key), _label(metrics, _text(methods[key].get("variant"))),
                         _Span(_text(methods[key].get("edit_rule")), code=True), _plain(str(len(attributes)))])
        blocks.append(_table(["Method", "Generator", "Edit rule", "Attributes"], rows, [False, False, False, True],
                             _inline("Explanation methods")))

    generators = _objects(metrics, "generators", "metrics")
    if generators:
        columns = [(key, name) for key, name in GENERATOR_COLUMNS if any(key in g for g in generators.values())]
        rows = [[_label(metrics, key), *(_plain(_number(generators[key].get(column), 3)) for column, _ in columns)]
                for key in _ordered(generators)]
        blocks.append(_table(["Generator", *(name for _, name in columns)], rows, [False] + [True] * len(columns),
                             _inline("Generators: faithfulness of the reconstructions G(E(x)) on held-out images")))
        missed = [f"{_label(metrics, key)}: {'; '.join(generators[key]['gate_failures'])}"
                  for key in _ordered(generators) if generators[key].get("gate_failures")]
        blocks.append(_Paragraph(_inline(
            _Span("Faithfulness. ", strong=True),
            "Explained agreement alone can be met through the condition C(x) that StylEx feeds to every style "
            "affine (one image per class would score 1.0), so read it with the metrics the shortcut cannot meet: "
            "oracle agreement (an independent classifier, another architecture and seed, never used in training), "
            "input dependence (pairwise distances of reconstructions over those of the images: 0 for a collapsed "
            "generator, 1 for identity), the agreement kept when G is fed another class's probabilities (low = the "
            "decision comes from the condition), and on shapes the factors the probes read off x' as off x. Gates "
            "of the suite (DESIGN section 9): " + ("all met." if not missed else "missed by " + " | ".join(missed)
                                                   + "."))))
        if metrics.get("reconstruction_grid"):
            blocks.append(_Picture(_text(metrics["reconstruction_grid"]),
                                   "Held-out images (top row), their StylEx reconstructions (middle row) and their "
                                   "StylEx w/o CST reconstructions (bottom row)"))

    timings = _section(metrics, "timings") or {}
    if timings:
        rows = [[_text(stage), _plain(_duration(seconds))] for stage, seconds in timings.items()]
        caption = "Time per stage in this invocation (stages reused from an earlier run take about 0 s)"
        blocks.append(_table(["Stage", "Time"], rows, [False, True], _inline(caption)))
    return blocks


def _reading_guide(metrics: Mapping) -> list[_Block]:
    paragraphs = [
        _inline(_Span("Sufficiency. ", strong=True),
                "An image counts as flipped when the classifier's argmax on the edited image differs from its argmax "
                "on the unedited reconstruction (not on the real image), so generator error is not counted as an "
                "explanation's success. Class-level top-k shifts the method's first k attributes for the image's "
                "target class all at once (the paper's Table 3); Independent shifts the image's own k strongest "
                "single attributes; Subset adds attributes greedily, re-evaluating after each, and counts an image "
                "as flipped at k when it flipped within k steps. Brackets and shaded bands are Wilson 95% intervals."),
        _inline(_Span("Methods. ", strong=True),
                "Wu et al. selects StyleSpace coordinates of a generator that was trained without the classifier, "
                "so here it runs on the StylEx w/o CST generator (same architecture, no classifier loss). It gives "
                "class-level attributes only, so Independent and Subset are n/a for Wu et al."),
    ]
    fid = _section(metrics, "fid")
    if fid is not None:
        label = _distance_label(fid)
        features = ("InceptionV3 pool3 features (pytorch-fid)" if fid.get("features") == "inception" else
                    "the classifier's penultimate-layer features; the values are not comparable with published "
                    "Inception-based scores")
        paragraphs.append(_inline(
            _Span(f"{label}. ", strong=True),
            f"Frechet distance between real images ({_text(fid.get('reference'))}) and generated ones, on {features}. "
            "i is the number of top attributes changed at once; dashed lines are each generator's plain "
            "reconstructions. Lower is closer to real images; a curve far above its reconstruction line means the "
            "edits leave the image distribution."))
    if _section(metrics, "recovery") is not None:
        paragraphs.append(_inline(
            _Span("Ground-truth recovery. ", strong=True),
            "On the synthetic shapes dataset every image comes from known factors. Probes trained on those factors "
            "say which factor each attribute changes; precision@k is the share of a method's top-k attributes that "
            "change a causal factor (one the label depends on), and distinct factors counts how many different "
            "factors the top-k cover."))
    return [_Heading(2, "How to read this"), *(_Paragraph(paragraph) for paragraph in paragraphs)]


def _table3_section(metrics: Mapping) -> list[_Block]:
    table3 = _section(metrics, "table3")
    if table3 is None:
        return []
    methods = _table3_methods(metrics)
    rows = [[_text(row.get("dataset")), *(_plain(format_interval(row.get(method))) for method in methods)]
            for row in _table3_rows(table3)]
    return [_Heading(2, f"Table 3: sufficiency at k = {_text(table3.get('k'))}"),
            _table(["Dataset", *(_label(metrics, method) for method in methods)], rows,
                   [False] + [True] * len(methods), _inline(_table3_caption(metrics)))]


def _sufficiency_section(metrics: Mapping, with_figure: bool) -> list[_Block]:
    curves = _curves(metrics)
    if not curves:
        return []
    blocks: list[_Block] = [_Heading(2, "Sufficiency over k")]
    if with_figure:
        blocks.append(_Picture(SUFFICIENCY_FIGURE, "Sufficiency curves: fraction flipped over k per strategy"))
    methods = _ordered(curves)
    for strategy, title in STRATEGY_TITLES.items():
        by_method = {method: {row["k"]: row for row in _rows(curves[method].get(strategy),
                                                             f"sufficiency curve {method}/{strategy}", "k")}
                     for method in methods}
        ks = sorted({k for rows in by_method.values() for k in rows})
        if not ks:
            continue
        rows = [[_plain(str(k)), *(_plain(format_interval(by_method[method].get(k))) for method in methods)]
                for k in ks]
        blocks += [_Heading(3, title),
                   _table(["k", *(_label(metrics, method) for method in methods)], rows, [True] * (len(methods) + 1),
                          _inline(_plain(f"{title}: percentage flipped [Wilson 95% interval]")))]
    return blocks


def _fid_section(metrics: Mapping, with_figure: bool) -> list[_Block]:
    fid = _section(metrics, "fid")
    if fid is None:
        return []
    label = _distance_label(fid)
    blocks: list[_Block] = [_Heading(2, f"{label} under perturbation")]
    if with_figure:
        blocks.append(_Picture(FID_FIGURE, f"{label} over the number of top attributes changed"))
    reconstruction = _reconstruction(metrics)
    if reconstruction:
        rows = [[_label(metrics, key), _plain(_number(reconstruction[key]))] for key in _ordered(reconstruction)]
        blocks.append(_table(["Generator", f"{label} of reconstructions"], rows, [False, True],
                             _inline(f"Reference: {_text(fid.get('reference'))}; N = {_text(fid.get('num_images'))} "
                                     "generated images per point")))
    perturbation = _perturbation(metrics)
    columns = [(method, shift) for shift in _shift_keys(perturbation) for method in _ordered(perturbation)
               if perturbation[method].get(shift)]
    values = {column: {row["i"]: row.get("value") for row in
                       _rows(perturbation[column[0]][column[1]], f"fid perturbation {column[0]}/{column[1]}", "i")}
              for column in columns}
    steps = sorted({i for by_step in values.values() for i in by_step})
    if steps:
        rows = [[_plain(str(i)), *(_plain(_number(values[column].get(i))) for column in columns)] for i in steps]
        blocks.append(_table(["i", *(f"{_label(metrics, method)} @ shift {shift}" for method, shift in columns)],
                             rows, [True] * (len(columns) + 1),
                             _inline(f"{label} with the top-i attributes changed (column: method @ shift size)")))
    return blocks


def _recovery_section(metrics: Mapping) -> list[_Block]:
    recovery = _section(metrics, "recovery")
    if recovery is None:
        return []
    causal = {_text(name) for name in recovery.get("causal") or []}
    k = _text(recovery.get("k"))
    blocks: list[_Block] = [_Heading(2, "Ground-truth recovery")]
    methods = _objects(recovery, "methods", "metrics['recovery']")
    if methods:
        rows = []
        for key in _ordered(methods):
            result = methods[key]
            factors = result.get("factors") if isinstance(result.get("factors"), list) else []
            listing: list[_Span] = []
            for rank, factor in enumerate(factors, start=1):
                name = _text(factor)
                listing += [_plain(f"{', ' if listing else ''}{rank}: "), _Span(name, strong=name in causal)]
            rows.append([_label(metrics, key), _plain(_percent(result.get("precision"))),
                         _plain(_number(result.get("distinct_factors"))),
                         _plain(_number(result.get("distinct_causal"))), tuple(listing) or _plain("n/a")])
        blocks.append(_table(["Method", f"precision@{k}", "distinct factors", "distinct causal factors",
                              "factor of each top attribute (causal in bold)"], rows,
                             [False, True, True, True, False],
                             _inline(f"Top-{k} attributes against the known factors; causal: "
                                     f"{', '.join(sorted(causal)) or 'n/a'}")))
    quality = _section(recovery, "probe_quality", "metrics['recovery']") or {}
    if quality:
        rows = [[_Span(factor, strong=factor in causal), _plain(_number(value, 3)),
                 _plain("yes" if factor in causal else "no")] for factor, value in quality.items()]
        blocks.append(_table(["Factor", "probe quality", "causal"], rows, [False, True, False],
                             _inline("Factor probes (held-out quality; an attribute is assigned the factor whose "
                                     "probe output it changes most)")))
    return blocks


def _asset(report_dir: Path, path: object) -> str | None:
    """A figure path relative to the report folder when the file is there (the benchmark copied it), else None,
    so a missing figure is reported as missing instead of as a broken image. Paths outside the folder count as
    missing: the report must stay complete when the folder is moved or published on its own."""
    if not isinstance(path, str) or not path or Path(path).is_absolute():
        return None
    target = (report_dir / path).resolve()
    inside = target.is_relative_to(report_dir.resolve())
    return Path(path).as_posix() if inside and target.is_file() else None


def _attributes(method: Mapping, key: str) -> list[Mapping]:
    """A method's ranked attributes (empty when it found none)."""
    attributes = method.get("attributes") or []
    if not isinstance(attributes, list) or not all(isinstance(attribute, Mapping) for attribute in attributes):
        raise UserError(f"metrics['methods'][{key!r}]['attributes'] must be a list of objects")
    return attributes


def _attributes_section(metrics: Mapping, report_dir: Path) -> list[_Block]:
    methods = _methods(metrics)
    blocks: list[_Block] = []
    for key in _ordered(methods):
        method = methods[key]
        cards = []
        for position, attribute in enumerate(_attributes(method, key), start=1):
            animations = tuple((name, found) for name in ("flicker", "sweep")
                               if (found := _asset(report_dir, attribute.get(name))) is not None)
            details = _inline(_text(attribute.get("direction")), " toward ", _text(attribute.get("target")),
                              _plain(f", score {_number(attribute.get('score'), 3)}"))
            cards.append(_AttributeCard(
                title=f"#{_text(attribute.get('rank'), str(position))} {_text(attribute.get('layer'))}, channel "
                      f"{_text(attribute.get('channel'))}",
                details=details, panel=_asset(report_dir, attribute.get("panel")), animations=animations))
        if cards:
            if not blocks:
                blocks.append(_Heading(2, "Top attributes"))
            blocks += [_Heading(3, _label(metrics, key)),
                       _Paragraph(_inline("Edit rule: ", _Span(_text(method.get("edit_rule")), code=True),
                                          "; generator: ",
                                          _label(metrics, _text(method.get("variant"))))),
                       _Gallery(tuple(cards))]
    return blocks


# ---------------------------------------------------------------------------------------------------- Markdown


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>|#])")


def _md_escape(text: str) -> str:
    return _MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(text.split("\n")))


def _md_code(text: str) -> str:
    """A code span whose fence is longer than any backtick run inside; `|` escaped, which GFM tables need even
    inside code."""
    text = " ".join(text.split("\n")).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def _md_inline(content: _Inline) -> str:
    parts = []
    for span in content:
        text = _md_code(span.text) if span.code else span.text if span.plain else _md_escape(span.text)
        if span.strong and text.strip():
            # CommonMark only closes ** that is not preceded by whitespace: keep spaces outside the markers
            stripped = text.strip()
            text = f"{text[:len(text) - len(text.lstrip())]}**{stripped}**{text[len(text.rstrip()):]}"
        if span.href is not None:
            text = f"[{text}]({quote(span.href)})"
        parts.append(text)
    return "".join(parts)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if right else ":---" for right in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _md_link(name: str, path: str | None) -> str:
    return f"[{name}]({quote(path)})" if path else "missing"


def _render_markdown(document: Sequence[_Block]) -> str:
    chunks = []
    for block in document:
        if isinstance(block, _Heading):
            chunks.append(f"{'#' * block.level} {_md_escape(block.text)}")
        elif isinstance(block, _Paragraph):
            chunks.append(_md_inline(block.content))
        elif isinstance(block, _Bullets):
            chunks.append("\n".join(f"- {_md_inline(item)}" for item in block.items))
        elif isinstance(block, _Table):
            lines = [f"*{_md_inline(block.caption)}*", ""] if block.caption else []
            lines += _md_table([_md_escape(cell) for cell in block.header],
                               ([_md_inline(cell) for cell in row] for row in block.rows), block.numeric)
            chunks.append("\n".join(lines))
        elif isinstance(block, _Picture):
            chunks.append(f"![{_md_escape(block.alt)}]({quote(block.src)})")
        elif isinstance(block, _Gallery):
            rows = ([_md_escape(card.title), _md_inline(card.details), _md_link("panel", card.panel),
                     ", ".join(_md_link(name, path) for name, path in card.animations) or "missing"]
                    for card in block.cards)
            chunks.append("\n".join(_md_table(["Attribute", "Change", "Panel", "Animations"], rows,
                                              [False, False, False, False])))
    return "\n\n".join(chunks) + "\n"


# ---------------------------------------------------------------------------------------------------- HTML


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; line-height: 1.5;
       color: #1f2328; background: #fff; max-width: 1180px; margin: 2rem auto; padding: 0 1.25rem; }
h1 { font-size: 1.8rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.35rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.4rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
a { color: #0969da; }
ul { padding-left: 1.3rem; }
.table-wrap { overflow-x: auto; margin: .6rem 0 1.4rem; }
table { border-collapse: collapse; font-size: .92rem; }
caption { caption-side: top; text-align: left; color: #57606a; font-size: .88rem; padding-bottom: .35rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .65rem; vertical-align: top; text-align: left; }
thead th { background: #eaeef2; }
tbody tr:nth-child(even) { background: #f6f8fa; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure.plot { margin: 1rem 0; }
figure.plot img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 1rem; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem; margin: 0; background: #fff; }
.card figcaption { font-size: .9rem; margin-top: .4rem; }
.card .media { display: flex; gap: .6rem; align-items: flex-start; }
.card .panel { flex: 1 1 auto; min-width: 0; }
.card .panel img { max-width: 100%; height: auto; image-rendering: pixelated; }
.card .animations { display: flex; flex-direction: column; gap: .4rem; font-size: .78rem; color: #57606a; }
.card .animations img { display: block; width: 96px; height: auto; image-rendering: pixelated; }
.missing { color: #9a6700; font-style: italic; }
"""


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _html_inline(content: _Inline) -> str:
    parts = []
    for span in content:
        text = _escape(span.text)
        if span.code:
            text = f"<code>{text}</code>"
        if span.strong:
            text = f"<strong>{text}</strong>"
        if span.href is not None:
            text = f'<a href="{_escape(quote(span.href))}">{text}</a>'
        parts.append(text)
    return "".join(parts)


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, counter = base, 2
    while slug in taken:
        slug, counter = f"{base}-{counter}", counter + 1
    taken.add(slug)
    return slug


def _html_table(block: _Table) -> str:
    def cell(tag: str, content: str, right: bool) -> str:
        return f'<{tag} class="num">{content}</{tag}>' if right else f"<{tag}>{content}</{tag}>"

    def row(tag: str, cells: Iterable[str]) -> str:
        return "<tr>" + "".join(cell(tag, content, right)
                                for content, right in zip(cells, block.numeric, strict=True)) + "</tr>"

    lines = ['<div class="table-wrap"><table>']
    if block.caption:
        lines.append(f"<caption>{_html_inline(block.caption)}</caption>")
    lines.append("<thead>" + row("th", map(_escape, block.header)) + "</thead>")
    lines.append("<tbody>")
    lines += [row("td", map(_html_inline, cells)) for cells in block.rows]
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _html_card(card: _AttributeCard) -> str:
    if card.panel:
        panel = (f'<a href="{_escape(quote(card.panel))}"><img src="{_escape(quote(card.panel))}" '
                 f'alt="{_escape("Panel: " + card.title)}"></a>')
    else:
        panel = '<span class="missing">panel missing</span>'
    animations = "".join(
        f'<div><img src="{_escape(quote(path))}" alt="{_escape(f"{name}: {card.title}")}">{_escape(name)}</div>'
        for name, path in card.animations) or '<span class="missing">no animations</span>'
    return (f'<figure class="card"><div class="media"><div class="panel">{panel}</div>'
            f'<div class="animations">{animations}</div></div>'
            f"<figcaption><strong>{_escape(card.title)}</strong><br>{_html_inline(card.details)}</figcaption></figure>")


def _render_html(document: Sequence[_Block], title: str) -> str:
    body = []
    anchors: set[str] = set()
    for block in document:
        if isinstance(block, _Heading):
            body.append(f'<h{block.level} id="{_slug(block.text, anchors)}">{_escape(block.text)}</h{block.level}>')
        elif isinstance(block, _Paragraph):
            body.append(f"<p>{_html_inline(block.content)}</p>")
        elif isinstance(block, _Bullets):
            body.append("<ul>" + "".join(f"<li>{_html_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, _Table):
            body.append(_html_table(block))
        elif isinstance(block, _Picture):
            body.append(f'<figure class="plot"><img src="{_escape(quote(block.src))}" alt="{_escape(block.alt)}">'
                        f"<figcaption>{_escape(block.alt)}</figcaption></figure>")
        elif isinstance(block, _Gallery):
            body.append('<div class="gallery">\n' + "\n".join(_html_card(card) for card in block.cards) + "\n</div>")
    return ("<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
