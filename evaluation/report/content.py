"""What the benchmark report says: the document that README.md and index.html are rendered from, and Table 3,
whose LaTeX (table3.tex) is rendered from the same table block as the README's.

Every section iterates over what the results hold: the methods in the order the benchmark ran them, the strategies
each method has, the sections the run produced. Nothing is recomputed, so the pages never disagree with the
metrics.json that ships next to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evaluation.report import battery
from evaluation.report.datasets import DatasetRow, method_columns, method_label, per_dataset
from evaluation.report.document import (
    Block,
    Bullets,
    Card,
    Comment,
    Gallery,
    Paragraph,
    Picture,
    Span,
    Table,
    heading,
    inline,
    plain,
    render_latex,
    table,
)
from evaluation.report.formatting import (
    STRATEGY_TITLES,
    duration,
    format_interval,
    latex_interval,
    number,
    percent,
)
from evaluation.schema import Attribute, BenchmarkResults

METRICS_FILE = "metrics.json"
SUFFICIENCY_FIGURE = "sufficiency.png"
FID_FIGURE = "fid.png"
TABLE3_FILE = "table3.tex"
README_FILE = "README.md"
HTML_FILE = "index.html"

GENERATOR_COLUMNS = (("step", "checkpoint step"), ("reconstruction_l1", "reconstruction L1"), ("lpips", "LPIPS"),
                     ("explained_agreement", "explained agreement"), ("oracle_agreement", "oracle agreement"),
                     ("input_dependence_pixels", "input dependence (pixels)"),
                     ("input_dependence_features", "input dependence (features)"),
                     ("swapped_condition_agreement", "agreement, swapped condition"),
                     ("factor_shape", "shape kind kept"), ("factor_size", "size kept"), ("factor_spot", "spot kept"),
                     ("factor_shape_iou", "shape IoU"), ("sample_frechet_classifier", "sample FD (classifier)"),
                     ("classifier_agreement", "classifier agreement"))
TABLE3_SOURCE_NOTE = (r"Sufficiency (Table 3 layout), written by stylex-suite evaluation/report; "
                      r"needs \usepackage{booktabs}.")


def title(results: BenchmarkResults) -> str:
    return f"StylEx benchmark: {results.run.name} on {results.dataset.name}"


def document(results: BenchmarkResults, report_dir: Path, report_files: Sequence[str]) -> list[Block]:
    """The report's content, shared by README.md and index.html. `report_files` are the files of this report
    (linked and embedded only when written)."""
    blocks: list[Block] = [heading(1, title(results))]
    files = inline("Raw numbers: ", Span(METRICS_FILE, href=METRICS_FILE))
    if TABLE3_FILE in report_files:
        files += inline("; Table 3 as LaTeX: ", Span(TABLE3_FILE, href=TABLE3_FILE))
    blocks.append(Paragraph(files + inline(".")))
    blocks += _run_section(results)
    blocks += _reading_guide(results)
    blocks += _table3_section(results)
    blocks += battery.companion_section([DatasetRow.of(results)])
    blocks += _sufficiency_section(results, SUFFICIENCY_FIGURE in report_files)
    blocks += battery.detail_section(results)
    blocks += _fid_section(results, FID_FIGURE in report_files)
    blocks += _recovery_section(results)
    blocks += _attributes_section(results, report_dir)
    return blocks


def table3_latex(results: BenchmarkResults | Sequence[DatasetRow]) -> str | None:
    """The paper's Table 3 (booktabs): datasets as rows, one column per method, each cell the sufficiency in
    percent with its Wilson 95% interval. None when no results hold a Table 3."""
    table3 = table3_table(results)
    return None if table3 is None else render_latex([Comment(TABLE3_SOURCE_NOTE), table3])


def table3_table(results: BenchmarkResults | Sequence[DatasetRow]) -> Table | None:
    """Table 3 of one run's results, or of several runs (a row per dataset, a column per method any of them ran, in
    registry order; n/a where a run lacks the method). The caption states N, k, strategy and shift size once when
    every dataset shares them, else per dataset. None when no results hold a Table 3."""
    rows = [DatasetRow.of(results)] if isinstance(results, BenchmarkResults) else list(results)
    rows = [row for row in rows if row.results.table3 is not None]
    if not rows:
        return None
    methods = method_columns(rows, [key for row in rows for cells in row.results.table3.rows for key in cells.cells])
    body = []
    for row in rows:
        for cells in row.results.table3.rows:
            # the benchmark names its row after the run's dataset: that row takes the label that tells runs apart
            label = row.label if cells.dataset == row.results.dataset.name else cells.dataset
            body.append([label, *(plain(format_interval(cells.cells.get(method)),
                                        latex_interval(cells.cells.get(method))) for method in methods)])

    def setting(value_of) -> str:
        return per_dataset([(row.label, value_of(row.results)) for row in rows])

    def sufficiency(name: str):
        return lambda results: None if results.sufficiency is None else getattr(results.sufficiency, name)

    strategy = setting(lambda results: STRATEGY_TITLES.get(results.table3.strategy, results.table3.strategy).lower())
    caption = (f"Sufficiency: percentage of the N = {setting(sufficiency('num_images'))} test images whose "
               f"classifier decision flips when the top-k attributes are changed ({strategy}, "
               f"k = {setting(lambda results: results.table3.k)}, shift size {setting(sufficiency('shift_size'))}). "
               "Brackets: Wilson 95% confidence interval.")
    return table(["Dataset", *(method_label(rows, method) for method in methods)], body,
                 [False] + [True] * len(methods), inline(caption), label="tab:sufficiency")


def _run_section(results: BenchmarkResults) -> list[Block]:
    run, dataset, sufficiency = results.run, results.dataset, results.sufficiency
    items = [inline("Configuration: ", run.config, " (run folder ", run.run_dir, ")")]
    dataset_item = inline("Dataset: ", dataset.name)
    if dataset.resolution is not None:
        dataset_item += inline(f", {dataset.resolution} px")
    if dataset.classes:
        dataset_item += inline("; classes: ", ", ".join(dataset.classes))
    items.append(dataset_item)
    if results.classifier is not None:
        items.append(inline("Classifier: ", results.classifier.arch, ", test accuracy ",
                            plain(percent(results.classifier.test_accuracy))))
    if sufficiency is not None:
        items.append(inline(f"Sufficiency: N = {sufficiency.num_images} test images, shift size "
                            f"{sufficiency.shift_size}, k = 1 to {sufficiency.max_k}"))
    device = inline("Device: ", run.device)
    if run.wall_time_s is not None:
        device += inline(plain(f"; wall time of this invocation {duration(run.wall_time_s)}"))
    items.append(device)
    items.append(inline("Code version: ", run.code_version, "; created ", run.created))
    blocks: list[Block] = [heading(2, "What was run"), Bullets(tuple(items))]

    if results.methods:
        rows = [[method.label, results.label(method.variant), Span(method.edit_rule, code=True),
                 plain(str(len(method.attributes)))] for method in results.methods.values()]
        blocks.append(table(["Method", "Generator", "Edit rule", "Attributes"], rows, [False, False, False, True],
                            inline("Explanation methods")))
    blocks += _generators_section(results)
    if results.timings:
        rows = [[stage, plain(duration(seconds))] for stage, seconds in results.timings.items()]
        caption = "Time per stage in this invocation (stages reused from an earlier run take about 0 s)"
        blocks.append(table(["Stage", "Time"], rows, [False, True], inline(caption)))
    return blocks


def generators_table(results: BenchmarkResults) -> Table | None:
    """The generators' faithfulness measurements, a row per generator; None when the run measured none."""
    generators = results.generators
    if not generators:
        return None
    columns = [(key, name) for key, name in GENERATOR_COLUMNS
               if any(key in generator.measurements for generator in generators.values())]
    rows = [[results.label(key), *(plain(number(generators[key].measurements.get(column), 3))
                                   for column, _ in columns)] for key in results.ordered(generators)]
    return table(["Generator", *(name for _, name in columns)], rows, [False] + [True] * len(columns),
                 inline("Generators: faithfulness of the reconstructions G(E(x)) on held-out images"))


def gates_sentence(results: BenchmarkResults) -> str:
    """Whether the generators met the gates of DESIGN section 9, and which each missed."""
    generators = results.generators or {}
    missed = [f"{results.label(key)}: {'; '.join(generators[key].gate_failures)}"
              for key in results.ordered(generators) if generators[key].gate_failures]
    return "Gates of the suite (DESIGN section 9): " + ("all met." if not missed else
                                                         "missed by " + " | ".join(missed) + ".")


def _generators_section(results: BenchmarkResults) -> list[Block]:
    generators_found = generators_table(results)
    if generators_found is None:
        return []
    blocks: list[Block] = [generators_found, Paragraph(inline(
        Span("Faithfulness. ", strong=True),
        "Explained agreement alone can be met through the condition C(x) that StylEx feeds to every style "
        "affine (one image per class would score 1.0), so read it with the metrics the shortcut cannot meet: "
        "oracle agreement (an independent classifier, another architecture and seed, never used in training), "
        "input dependence (pairwise distances of reconstructions over those of the images: 0 for a collapsed "
        "generator, 1 for identity), the agreement kept when G is fed another class's probabilities (low = the "
        "decision comes from the condition), and on shapes the factors the probes read off x' as off x. "
        + gates_sentence(results)))]
    if results.reconstruction_grid:
        blocks.append(Picture(results.reconstruction_grid,
                              "Held-out images (top row), then one row of reconstructions per generator: "
                              + ", ".join(results.label(key) for key in results.generators)))
    return blocks


def _method_sentence(results: BenchmarkResults, key: str) -> str:
    """What a method is, on which generator it runs, how it edits, and whether the image-level strategies apply;
    written from the results alone, so a newly registered method is described like the others."""
    method = results.methods[key]
    curves = results.sufficiency.curves.get(key, {}) if results.sufficiency is not None else {}
    image_level = any(curves.get(strategy) is not None for strategy in ("independent", "subset"))
    what = f": {method.description};" if method.description else ""
    return (f"{method.label}{what} runs on the {results.label(method.variant)} generator, edits "
            f"{method.edit_rule}; Independent and Subset {'measured' if image_level else 'n/a'}.")


SUFFICIENCY_GUIDE = inline(
    Span("Sufficiency. ", strong=True),
    "An image counts as flipped when the classifier's argmax on the edited image differs from its argmax on the "
    "unedited reconstruction (not on the real image), so generator error is not counted as an explanation's "
    "success. Class-level top-k shifts the method's first k attributes for the image's target class all at once "
    "(the paper's Table 3); Independent shifts the image's own k strongest single attributes; Subset adds "
    "attributes greedily, re-evaluating after each, and counts an image as flipped at k when it flipped within k "
    "steps. Brackets and shaded bands are Wilson 95% intervals.")


def _reading_guide(results: BenchmarkResults) -> list[Block]:
    paragraphs = [
        SUFFICIENCY_GUIDE,
        inline(Span("Methods. ", strong=True), " ".join(_method_sentence(results, key) for key in results.methods)),
    ]
    distance = results.fid
    if distance is not None:
        features = ("InceptionV3 pool3 features (pytorch-fid)" if distance.is_fid else
                    "the classifier's penultimate-layer features; the values are not comparable with published "
                    "Inception-based scores")
        paragraphs.append(inline(
            Span(f"{distance.label}. ", strong=True),
            f"Frechet distance between real images ({distance.reference}) and generated ones, on {features}. "
            "i is the number of top attributes changed at once; dashed lines are each generator's plain "
            "reconstructions. Lower is closer to real images; a curve far above its reconstruction line means the "
            "edits leave the image distribution."))
    if results.recovery is not None:
        paragraphs.append(inline(
            Span("Ground-truth recovery. ", strong=True),
            "On the synthetic shapes dataset every image comes from known factors. Probes trained on those factors "
            "say which factor each attribute changes; precision@k is the share of a method's top-k attributes that "
            "change a causal factor (one the label depends on), and distinct factors counts how many different "
            "factors the top-k cover."))
    paragraphs += battery.reading_guide([results])
    return [heading(2, "How to read this"), *(Paragraph(paragraph) for paragraph in paragraphs)]


def _table3_section(results: BenchmarkResults) -> list[Block]:
    table3 = table3_table(results)
    if table3 is None:
        return []
    return [heading(2, f"Table 3: sufficiency at k = {results.table3.k}"), table3]


def _sufficiency_section(results: BenchmarkResults, with_figure: bool) -> list[Block]:
    curves = results.sufficiency.curves if results.sufficiency is not None else {}
    if not curves:
        return []
    blocks: list[Block] = [heading(2, "Sufficiency over k")]
    if with_figure:
        blocks.append(Picture(SUFFICIENCY_FIGURE, "Sufficiency curves: fraction flipped over k per strategy"))
    methods = results.ordered(curves)
    for strategy, strategy_title in STRATEGY_TITLES.items():
        by_method = {method: {point.k: point for point in curves[method].get(strategy) or ()} for method in methods}
        ks = sorted({k for points in by_method.values() for k in points})
        if not ks:
            continue
        rows = [[plain(str(k)), *(plain(format_interval(by_method[method].get(k))) for method in methods)]
                for k in ks]
        blocks += [heading(3, strategy_title),
                   table(["k", *map(results.label, methods)], rows, [True] * (len(methods) + 1),
                         inline(plain(f"{strategy_title}: percentage flipped [Wilson 95% interval]")))]
    return blocks


def _fid_section(results: BenchmarkResults, with_figure: bool) -> list[Block]:
    distance = results.fid
    if distance is None:
        return []
    label = distance.label
    blocks: list[Block] = [heading(2, f"{label} under perturbation")]
    if with_figure:
        blocks.append(Picture(FID_FIGURE, f"{label} over the number of top attributes changed"))
    reconstruction = distance.reconstruction
    if reconstruction:
        rows = [[results.label(key), plain(number(reconstruction[key]))] for key in results.ordered(reconstruction)]
        blocks.append(table(["Generator", f"{label} of reconstructions"], rows, [False, True],
                            inline(f"Reference: {distance.reference}; N = {distance.num_images} generated images "
                                   "per point")))
    perturbation = distance.perturbation
    columns = [(method, shift) for shift in distance.shift_sizes for method in results.ordered(perturbation)
               if perturbation[method].get(shift)]
    values = {column: {point.i: point.value for point in perturbation[column[0]][column[1]]} for column in columns}
    steps = sorted({i for by_step in values.values() for i in by_step})
    if steps:
        rows = [[plain(str(i)), *(plain(number(values[column].get(i))) for column in columns)] for i in steps]
        blocks.append(table(["i", *(f"{results.label(method)} @ shift {shift}" for method, shift in columns)],
                            rows, [True] * (len(columns) + 1),
                            inline(f"{label} with the top-i attributes changed (column: method @ shift size)")))
    return blocks


def _recovery_section(results: BenchmarkResults) -> list[Block]:
    recovery = results.recovery
    if recovery is None:
        return []
    causal = set(recovery.causal)
    blocks: list[Block] = [heading(2, "Ground-truth recovery")]
    if recovery.methods:
        rows = []
        for key in results.ordered(recovery.methods):
            result = recovery.methods[key]
            listing: list[Span] = []
            for rank, factor in enumerate(result.factors, start=1):
                listing += [plain(f"{', ' if listing else ''}{rank}: "), Span(factor, strong=factor in causal)]
            rows.append([results.label(key), plain(percent(result.precision)), plain(number(result.distinct_factors)),
                         plain(number(result.distinct_causal)), tuple(listing) or plain("n/a")])
        blocks.append(table(["Method", f"precision@{recovery.k}", "distinct factors", "distinct causal factors",
                             "factor of each top attribute (causal in bold)"], rows,
                            [False, True, True, True, False],
                            inline(f"Top-{recovery.k} attributes against the known factors; causal: "
                                   f"{', '.join(sorted(causal)) or 'n/a'}")))
    if recovery.probe_quality:
        rows = [[Span(factor, strong=factor in causal), plain(number(value, 3)),
                 plain("yes" if factor in causal else "no")] for factor, value in recovery.probe_quality.items()]
        blocks.append(table(["Factor", "probe quality", "causal"], rows, [False, True, False],
                            inline("Factor probes (held-out quality; an attribute is assigned the factor whose "
                                   "probe output it changes most)")))
    return blocks


def _asset(report_dir: Path, path: str | None) -> str | None:
    """A figure path relative to the report folder when the file is there (the benchmark copied it), else None,
    so a missing figure is reported as missing instead of as a broken image. Paths outside the folder count as
    missing: the report must stay complete when the folder is moved or published on its own."""
    if not path or Path(path).is_absolute():
        return None
    target = (report_dir / path).resolve()
    inside = target.is_relative_to(report_dir.resolve())
    return Path(path).as_posix() if inside and target.is_file() else None


def _card(attribute: Attribute, report_dir: Path) -> Card:
    animations = tuple((name, found) for name, path in (("flicker", attribute.flicker), ("sweep", attribute.sweep))
                       if (found := _asset(report_dir, path)) is not None)
    details = inline(attribute.direction, " toward ", attribute.target,
                     plain(f", score {number(attribute.score, 3)}"))
    return Card(title=f"#{attribute.rank} {attribute.layer}, channel {attribute.channel}", details=details,
                panel=_asset(report_dir, attribute.panel), animations=animations)


def _attributes_section(results: BenchmarkResults, report_dir: Path) -> list[Block]:
    blocks: list[Block] = []
    for method in results.methods.values():
        if not method.attributes:
            continue
        if not blocks:
            blocks.append(heading(2, "Top attributes"))
        blocks += [heading(3, method.label),
                   Paragraph(inline("Edit rule: ", Span(method.edit_rule, code=True), "; generator: ",
                                    results.label(method.variant))),
                   Gallery(tuple(_card(attribute, report_dir) for attribute in method.attributes),
                           columns=("Attribute", "Change"))]
    return blocks
