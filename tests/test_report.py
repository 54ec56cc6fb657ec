import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from matplotlib.text import Text
from PIL import Image

from evaluation import report
from evaluation.intervals import wilson_interval
from evaluation.report.content import TABLE3_SOURCE_NOTE, table3_table
from evaluation.report.document import Comment, render_latex, render_markdown
from evaluation.schema import BenchmarkResults
from stylex.errors import UserError

NUM_IMAGES = 200
MAX_K = 10
METHODS = (("wu", "Wu et al.", "stylex-nocst", "s += shift * 3 * sigma_pop (Wu et al.)"),
           ("stylex-nocst", "StylEx w/o CST", "stylex-nocst", "s += shift * sigma_pop (StylEx)"),
           ("stylex", "StylEx", "stylex", "s += shift * sigma_pop (StylEx)"))
# flipped images at k for each method and strategy (None: the method has no such explanation); at k = 10 the
# class-level counts are 50, 90 and 150 of 200, i.e. the Table 3 cells below
FLIPS_PER_K = {"wu": {"class_level": 5, "independent": None, "subset": None},
               "stylex-nocst": {"class_level": 9, "independent": 12, "subset": 14},
               "stylex": {"class_level": 15, "independent": 18, "subset": 19}}
# Wilson 95% at 50/200, 90/200, 150/200 (independently checked against evaluation.intervals)
TABLE3_README_ROW = "| shapes | 25.0% [19.5, 31.4] | 45.0% [38.3, 51.9] | 75.0% [68.6, 80.5] |"
TABLE3_LATEX_ROW = r"shapes & 25.0\,[19.5, 31.4] & 45.0\,[38.3, 51.9] & 75.0\,[68.6, 80.5] \\"


def _curve(flips_per_k: int, images: int = NUM_IMAGES) -> list[dict]:
    rows = []
    for k in range(1, MAX_K + 1):
        flipped = min(images, flips_per_k * k)
        low, high = wilson_interval(flipped, images)
        rows.append({"k": k, "flipped": flipped, "images": images, "fraction": flipped / images,
                     "ci_low": low, "ci_high": high})
    return rows


def _write_attribute_figures(report_dir: Path, method: str, rank: int) -> dict:
    """Tiny real images at the paths the benchmark copies into the report, so every link can be checked."""
    base = f"figures/{method}/attribute-{rank:02d}"
    (report_dir / base).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (96, 32), (40 * rank, 90, 160)).save(report_dir / f"{base}.png")
    for kind in ("flicker", "sweep"):
        frames = [Image.new("RGB", (32, 32), (shade, shade, 200)) for shade in (20, 120, 220)]
        frames[0].save(report_dir / f"{base}-{kind}.gif", save_all=True, append_images=frames[1:], duration=200,
                       loop=0)
    return {"panel": f"{base}.png", "flicker": f"{base}-flicker.gif", "sweep": f"{base}-sweep.gif"}


def make_metrics(report_dir: Path, features: str = "inception") -> dict:
    """A complete benchmark metrics dict (every section, three methods, k = 1..10) with its figures on disk."""
    methods, curves, perturbation = {}, {}, {}
    for index, (key, label, variant, edit_rule) in enumerate(METHODS):
        attributes = [{"rank": rank, "layer": f"b{4 * rank}.conv1", "channel": 3 * rank + index,
                       "direction": "max" if rank % 2 else "min", "target": "large-spotted",
                       "score": 1.5 / rank, **_write_attribute_figures(report_dir, key, rank)} for rank in (1, 2, 3)]
        methods[key] = {"label": label, "variant": variant, "edit_rule": edit_rule, "attributes": attributes}
        curves[key] = {strategy: None if per_k is None else _curve(per_k)
                       for strategy, per_k in FLIPS_PER_K[key].items()}
        perturbation[key] = {shift: [{"i": i, "value": 10.0 + (3 - index) * float(shift) * i} for i in range(1, 11)]
                             for shift in ("0.5", "1.0")}
    table3_row = {"dataset": "shapes"}
    for key, by_strategy in curves.items():
        cell = by_strategy["class_level"][MAX_K - 1]
        table3_row[key] = {name: cell[name] for name in ("fraction", "ci_low", "ci_high")}
    label = "FID" if features == "inception" else "classifier-feature Frechet distance"
    return {
        "format": "stylex-benchmark", "format_version": 1,
        "run": {"name": "demo", "config": "demo", "run_dir": "runs/demo", "code_version": "0.1.0+g98f500d",
                "wall_time_s": 812.4, "device": "cpu", "created": "2026-11-23T03:00:00"},
        "dataset": {"name": "shapes", "classes": ["other", "large-spotted"], "resolution": 32},
        "classifier": {"arch": "mobilenet_v2", "test_accuracy": 0.998},
        "methods": methods,
        "generators": {"stylex": {"step": 3000, "reconstruction_l1": 0.2, "lpips": 0.1, "classifier_agreement": 0.99},
                       "stylex-nocst": {"step": 3000, "reconstruction_l1": 0.22, "lpips": 0.12,
                                        "classifier_agreement": 0.9}},
        "sufficiency": {"num_images": NUM_IMAGES, "shift_size": 1.0, "max_k": MAX_K, "curves": curves},
        "table3": {"k": MAX_K, "strategy": "class_level", "rows": [table3_row]},
        "fid": {"features": features, "label": label, "num_images": NUM_IMAGES,
                "reference": "test split, 200 images", "reconstruction": {"stylex": 12.3, "stylex-nocst": 15.1},
                "perturbation": perturbation},
        "recovery": {"k": MAX_K, "causal": ["size", "spot"], "factors": ["shape", "size", "hue", "spot"],
                     "probe_quality": {"shape": 0.97, "size": 0.93, "hue": 0.88, "spot": 0.99},
                     "methods": {"wu": {"precision": 0.3, "distinct_factors": 3, "distinct_causal": 1,
                                        "factors": ["size", "hue", "none"]},
                                 "stylex-nocst": {"precision": 0.5, "distinct_factors": 2, "distinct_causal": 1,
                                                  "factors": ["spot", "hue", "hue"]},
                                 "stylex": {"precision": 0.9, "distinct_factors": 2, "distinct_causal": 2,
                                            "factors": ["spot", "size", "spot"]}}},
        "timings": {"classifier": 12.0, "stylex": 640.5, "attfind": 95.2, "sufficiency": 64.7},
    }


BATTERY_KS = (1, (MAX_K + 1) // 2, MAX_K)  # the k of cout, proximity and off_target
# images whose reconstruction keeps the decision, per judge and method (the N of faithful sufficiency)
KEPT = {"explained": {"wu": 150, "stylex-nocst": 160, "stylex": 180},
        "oracle": {"wu": 140, "stylex-nocst": 150, "stylex": 170}}
COUNTERFACTUALS = {"wu": NUM_IMAGES, "stylex-nocst": 190, "stylex": NUM_IMAGES}  # N of cout, proximity, off_target
FACTORS = ("shape", "size", "hue", "spot")


def _mean(value: float, half: float) -> dict:
    return {"mean": value, "std": 5 * half, "ci_low": value - half, "ci_high": value + half}


def _share(successes: int, trials: int) -> dict:
    low, high = wilson_interval(successes, trials)
    return {"fraction": successes / trials, "ci_low": low, "ci_high": high}


def battery_sections() -> dict:
    """The metric battery's sections for the methods of make_metrics, in the layout the metric modules write
    (issue 14): faithful sufficiency and validity at every k, COUT, proximity and off-target at k = 1, 5 and 10."""
    faithful = {judge: {"methods": {key: {"kept": kept[key], "images": NUM_IMAGES,
                                          "curves": {strategy: None if per_k is None else _curve(per_k, kept[key])
                                                     for strategy, per_k in FLIPS_PER_K[key].items()}}
                                    for key in kept}} for judge, kept in KEPT.items()}
    validity, cout, proximity, off_target = {}, {}, {}, {}
    for index, (key, *_) in enumerate(METHODS):
        rows = []
        for k in range(1, MAX_K + 1):
            flipped = FLIPS_PER_K[key]["class_level"] * k
            confirmed = flipped - k  # the oracle misses one flip per attribute changed
            rows.append({"k": k, "images": NUM_IMAGES, "flipped": flipped, "confirmed": confirmed,
                         **_share(confirmed, NUM_IMAGES), "agreement": confirmed / flipped})
        validity[key] = rows
        n = COUNTERFACTUALS[key]
        cout[key] = [{"k": k, **_mean(0.1 * (index + 1) + 0.02 * k, 0.03), "n": n} for k in BATTERY_KS]
        proximity[key] = [{"k": k, "l1": _mean(0.01 * k * (index + 1), 0.002), "lpips": _mean(0.02 * k, 0.004),
                           "n": n} for k in BATTERY_KS]
        off_target[key] = [{"k": k, "n": n, "off_target": _mean(0.2 * k / (index + 1), 0.05),
                            "causal_changed": _share(min(n, 12 * k * (index + 1)), n),
                            "per_factor": {factor: round(0.01 * k * (position + 1), 4)
                                           for position, factor in enumerate(FACTORS)}} for k in BATTERY_KS]
    runtime = {"wu": {"class_level": {"seconds_per_image": 0.0123, "images": 32}},
               "stylex-nocst": {"class_level": {"seconds_per_image": 0.0131, "images": 32},
                                "independent": {"seconds_per_image": 0.52, "images": 32},
                                "subset": {"seconds_per_image": 1.874, "images": 16}},
               "stylex": {"class_level": {"seconds_per_image": 0.0129, "images": 32},
                          "independent": {"seconds_per_image": 0.51, "images": 32},
                          "subset": {"seconds_per_image": 2.03, "images": 32}}}
    return {"faithful_sufficiency": {"shift_size": 1.0, "max_k": MAX_K, "judges": faithful},
            "validity": {"strategy": "class_level", "shift_size": 1.0, "methods": validity},
            "cout": {"steps": 20, "strategy": "class_level", "shift_size": 1.0, "methods": cout},
            "proximity": {"lpips_mode": "vgg", "strategy": "class_level", "shift_size": 1.0, "methods": proximity},
            "off_target": {"strategy": "class_level", "shift_size": 1.0, "min_change": 0.25,
                           "causal": ["size", "spot"], "factors": list(FACTORS), "methods": off_target},
            "runtime": {"device": "cuda:0", "images": 32, "methods": runtime}}


class _PageChecker(HTMLParser):
    """Collects image sources and link targets, and checks that every non-void element is closed in order."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                      "wbr"})

    def __init__(self):
        super().__init__()
        self.images, self.links, self.open, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes["src"])
        if tag == "a":
            self.links.append(attributes["href"])
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def _check_page(path: Path) -> _PageChecker:
    checker = _PageChecker()
    checker.feed(path.read_text(encoding="utf-8"))
    checker.close()
    assert checker.open == []
    for target in checker.images + checker.links:
        assert not re.match(r"[a-z]+:", target), f"external resource {target}"
        assert (path.parent / unquote(target)).is_file(), f"{target} does not resolve"
    return checker


def _markdown_targets(text: str) -> list[str]:
    return [unquote(target) for target in re.findall(r"\]\(([^)]+)\)", text)]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("report")
    metrics = make_metrics(report_dir)
    return metrics, report_dir, report.write_report(metrics, report_dir)


def test_full_report_writes_every_file(full_report):
    metrics, report_dir, written = full_report
    assert [path.name for path in written] == ["metrics.json", "sufficiency.png", "fid.png", "table3.tex",
                                               "README.md", "index.html"]
    assert all(path.parent == report_dir and path.is_file() for path in written)
    assert not list(report_dir.glob(".*.tmp"))
    for name, min_width in (("sufficiency.png", 900), ("fid.png", 600)):  # three strategies, two shift sizes
        with Image.open(report_dir / name) as image:
            image.verify()
        with Image.open(report_dir / name) as image:
            assert image.format == "PNG" and min_width <= image.width <= 4000 and 300 <= image.height <= 2000
    assert json.loads((report_dir / "metrics.json").read_text(encoding="utf-8")) == metrics


def test_table3_in_latex_and_readme(full_report):
    _, report_dir, _ = full_report
    latex = (report_dir / "table3.tex").read_text(encoding="utf-8")
    for needed in (r"\begin{tabular}{lccc}", r"\toprule", r"\midrule", r"\bottomrule",
                   "Dataset & Wu et al. & StylEx w/o CST & StylEx", TABLE3_LATEX_ROW, "k = 10", "N = 200",
                   "shift size 1.0", r"Wilson 95\% confidence interval"):
        assert needed in latex
    readme = (report_dir / "README.md").read_text(encoding="utf-8")
    assert "| Dataset | Wu et al. | StylEx w/o CST | StylEx |" in readme
    assert TABLE3_README_ROW in readme


def test_readme_sections_and_links(full_report):
    _, report_dir, _ = full_report
    readme = (report_dir / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# StylEx benchmark: demo on shapes\n")
    for needed in ("## How to read this", "## Sufficiency over k", "### Independent", "### Subset",
                   "## FID under perturbation", "## Ground-truth recovery", "## Top attributes",
                   "![Sufficiency curves", "(sufficiency.png)", "(fid.png)", "13 min 32 s", "mobilenet\\_v2",
                   "| Wu et al. @ shift 0.5 |", "| StylEx @ shift 1.0 |", "| 1: **size**, 2: hue, 3: none |"):
        assert needed in readme, needed
    # the Independent table: k = 10 row, Wu et al. n/a, the two StylEx generators with their intervals
    low, high = wilson_interval(120, NUM_IMAGES)
    assert f"| 10 | n/a | 60.0% [{100 * low:.1f}, {100 * high:.1f}] | 90.0% [" in readme
    targets = _markdown_targets(readme)
    assert "figures/stylex/attribute-03-sweep.gif" in targets and "metrics.json" in targets
    assert all((report_dir / target).is_file() for target in targets)


def test_html_page_is_self_contained_and_complete(full_report):
    _, report_dir, _ = full_report
    page = _check_page(report_dir / "index.html")
    html_text = (report_dir / "index.html").read_text(encoding="utf-8")
    assert "<style>" in html_text and "<script" not in html_text
    attribute_images = 3 * 3 * 3  # methods x attributes x (panel + two GIFs)
    assert len(page.images) == attribute_images + 2
    assert {"sufficiency.png", "fid.png"} <= set(page.images)
    text = "".join(page.text)
    assert "75.0% [68.6, 80.5]" in text and "Wu et al." in text and "How to read this" in text


def test_classifier_features_are_never_called_fid(tmp_path):
    metrics = make_metrics(tmp_path, features="classifier")
    report.write_report(metrics, tmp_path)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    html_text = (tmp_path / "index.html").read_text(encoding="utf-8")
    for text in (readme, html_text):
        assert "classifier-feature Frechet distance" in text
        assert "FID" not in text
    figure = report.fid_figure(metrics)
    figure_texts = [artist.get_text() for artist in figure.findobj(Text)]
    assert "classifier-feature Frechet distance" in figure_texts
    assert not any("FID" in text for text in figure_texts)
    mislabelled = copy.deepcopy(metrics)
    mislabelled["fid"]["label"] = "FID"
    with pytest.raises(UserError, match="only Inception features give FID"):
        report.write_report(mislabelled, tmp_path)


def test_optional_sections_missing(tmp_path):
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    metrics = make_metrics(report_dir)
    report.write_report(metrics, report_dir)
    assert (report_dir / "fid.png").is_file()
    for section in ("fid", "recovery", "timings", "classifier"):
        del metrics[section]
    del metrics["run"]["wall_time_s"]
    metrics["methods"]["stylex"]["attributes"][0]["panel"] = "figures/not-copied.png"
    metrics["methods"]["stylex"]["attributes"][0]["sweep"] = "../outside-the-report.gif"
    (tmp_path / "outside-the-report.gif").write_bytes((report_dir / "figures/wu/attribute-01-sweep.gif").read_bytes())
    written = report.write_report(metrics, report_dir)
    assert [path.name for path in written] == ["metrics.json", "sufficiency.png", "table3.tex", "README.md",
                                               "index.html"]
    assert not (report_dir / "fid.png").exists()  # a stale figure from the earlier report is not left behind
    readme = (report_dir / "README.md").read_text(encoding="utf-8")
    assert "FID" not in readme and "Ground-truth recovery" not in readme and "wall time" not in readme
    assert ("| \\#1 b4.conv1, channel 5 | max toward large-spotted, score 1.500 | missing | "
            "[flicker](figures/stylex/attribute-01-flicker.gif) |") in readme  # the sweep outside the folder too
    _check_page(report_dir / "index.html")
    assert "panel missing" in (report_dir / "index.html").read_text(encoding="utf-8")


def test_untrusted_text_is_escaped(tmp_path):
    metrics = make_metrics(tmp_path)
    del metrics["fid"]
    metrics["dataset"]["name"] = "celeba_hq & <b>50%</b>"
    metrics["table3"]["rows"][0]["dataset"] = metrics["dataset"]["name"]
    metrics["methods"]["stylex"]["label"] = "StylEx <script>alert(1)</script> | #1"
    report.write_report(metrics, tmp_path)
    latex = (tmp_path / "table3.tex").read_text(encoding="utf-8")
    assert r"celeba\_hq \& <b>50\%</b> & 25.0" in latex
    html_text = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in html_text and "&lt;script&gt;" in html_text and "<b>" not in html_text
    _check_page(tmp_path / "index.html")
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert r"StylEx \<script\>alert(1)\</script\> \| \#1" in readme
    assert "| celeba\\_hq & \\<b\\>50%\\</b\\> | 25.0% [19.5, 31.4] |" in readme


def test_rejects_what_it_cannot_render(tmp_path):
    metrics = make_metrics(tmp_path)
    with pytest.raises(UserError, match="expected 'stylex-benchmark'"):
        report.write_report({**metrics, "format": "stylex-study"}, tmp_path)
    with pytest.raises(UserError, match="format_version 2"):
        report.write_report({**metrics, "format_version": 2}, tmp_path)
    broken = copy.deepcopy(metrics)
    broken["sufficiency"]["curves"]["stylex"]["subset"][0].pop("k")
    with pytest.raises(UserError, match=re.escape("sufficiency.curves['stylex']['subset'][0].k is missing")):
        report.write_report(broken, tmp_path)
    with pytest.raises(UserError, match=r"run\.created must be a string"):
        report.write_report({**metrics, "run": {**metrics["run"], "created": object()}}, tmp_path)
    with pytest.raises(UserError, match="JSON-serializable"):
        report.write_report({**metrics, "settings": {"evaluation": {"seed": object()}}}, tmp_path)
    assert not (tmp_path / "metrics.json").exists()  # nothing is written before everything rendered


def test_written_metrics_are_the_results_as_given(tmp_path):
    """metrics.json is the results dict byte for byte as json.dumps writes it, whatever the key order, and typed
    results write the same file."""
    metrics = make_metrics(tmp_path)
    metrics["settings"] = {"attfind": {"seed": 0}}  # a section the report does not read is kept as it is
    report.write_report(metrics, tmp_path)
    expected = json.dumps(metrics, indent=2, ensure_ascii=False) + "\n"
    assert (tmp_path / "metrics.json").read_text(encoding="utf-8") == expected
    report.write_report(BenchmarkResults.from_dict(metrics), tmp_path / "typed")
    assert (tmp_path / "typed" / "metrics.json").read_text(encoding="utf-8") == expected


def _with_random_baseline(metrics: dict) -> dict:
    """A fourth method, first in the results, that has no image-level strategies, no attribute figures and no FID
    or recovery rows: the report must follow the results, not a list of methods it knows."""
    random_curve = _curve(2)
    metrics["methods"] = {"random": {"label": "Random", "variant": "stylex", "edit_rule": "s += noise",
                                     "attributes": []}, **metrics["methods"]}
    metrics["sufficiency"]["curves"] = {"random": {"class_level": random_curve, "independent": None,
                                                   "subset": None}, **metrics["sufficiency"]["curves"]}
    metrics["table3"]["rows"][0]["random"] = {name: random_curve[MAX_K - 1][name]
                                              for name in ("fraction", "ci_low", "ci_high")}
    return metrics


def test_a_new_method_gets_its_column_everywhere(tmp_path):
    metrics = _with_random_baseline(make_metrics(tmp_path))
    written = report.write_report(metrics, tmp_path)
    assert [path.name for path in written] == ["metrics.json", "sufficiency.png", "fid.png", "table3.tex",
                                               "README.md", "index.html"]
    latex = (tmp_path / "table3.tex").read_text(encoding="utf-8")
    # methods in the order of the results (random first), its cell last in the row as it was added last
    assert r"\begin{tabular}{lcccc}" in latex and "Dataset & Random & Wu et al. & StylEx w/o CST & StylEx" in latex
    assert r"shapes & 10.0\,[6.6, 14.9] & 25.0\,[19.5, 31.4]" in latex
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "| Dataset | Random | Wu et al. | StylEx w/o CST | StylEx |" in readme
    assert "| Random | StylEx | `s += noise` | 0 |" in readme  # the methods table, with its own edit rule
    independent = readme.split("### Independent")[1]
    assert "| k | Random | Wu et al. | StylEx w/o CST | StylEx |" in independent
    assert "| 10 | n/a | n/a | 60.0% [" in independent
    assert "### Random" not in readme  # no attribute gallery for a method without attributes
    assert "| Random @ shift" not in readme  # no perturbation curve, no column
    figure = report.sufficiency_figure(metrics)
    legend_texts = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend_texts == ["Random", "Wu et al.", "StylEx w/o CST", "StylEx"]


def test_table3_latex_comes_from_the_document_renderer(tmp_path):
    metrics = make_metrics(tmp_path)
    results = BenchmarkResults.from_dict(metrics)
    table3 = table3_table(results)
    assert report.table3_latex(metrics) == render_latex([Comment(TABLE3_SOURCE_NOTE), table3])
    assert render_markdown([table3]).splitlines()[-1] == TABLE3_README_ROW


# ---- the metric battery (issue 14) ------------------------------------------------------------------------------

# Table 3's companions at k = 10 (Wilson 95% at 50/150, 90/160, 150/180 and 40/200; COUT means of battery_sections)
FAITHFUL_EXPLAINED_ROW = ("| shapes | 33.3% [26.3, 41.2] (N = 150) | 56.2% [48.5, 63.7] (N = 160) | "
                          "83.3% [77.2, 88.1] (N = 180) |")
VALIDITY_CELL = "20.0% [15.0, 26.1]"
COUT_ROW = "| shapes | 0.300 [0.270, 0.330] | 0.400 [0.370, 0.430] (N = 190) | 0.500 [0.470, 0.530] |"


@pytest.fixture(scope="module")
def battery_report(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("battery")
    metrics = {**make_metrics(report_dir), **battery_sections()}
    report.write_report(metrics, report_dir)
    return metrics, report_dir, (report_dir / "README.md").read_text(encoding="utf-8")


def test_battery_companion_tables_follow_table3(battery_report):
    _, report_dir, readme = battery_report
    order = [readme.index(title) for title in ("## Table 3: sufficiency at k = 10", "## Companion tables of Table 3",
                                                "## Sufficiency over k", "## Counterfactual metric battery",
                                                "## FID under perturbation")]
    assert order == sorted(order)
    companions = readme.split("## Companion tables of Table 3")[1].split("## Sufficiency over k")[0]
    assert FAITHFUL_EXPLAINED_ROW in companions
    assert "| shapes | 35.7% [28.3, 43.9] (N = 140) | 60.0% [52.0, 67.5] (N = 150) | 88.2% [82.5, 92.3] (N = 170) |" \
        in companions  # the oracle judge: 50 of 140, 90 of 150, 150 of 170 kept images flip
    assert f"| shapes | {VALIDITY_CELL} | 40.0% [33.5, 46.9] | 70.0% [63.3, 75.9] |" in companions  # N = 200: not shown
    assert COUT_ROW in companions
    assert "| shapes | 0.100 [0.098, 0.102] | 0.200 [0.198, 0.202] (N = 190) | 0.300 [0.298, 0.302] |" in companions
    assert "| shapes | 2.00 [1.95, 2.05] | 1.00 [0.95, 1.05] (N = 190) | 0.67 [0.62, 0.72] |" in companions
    assert "| shapes | Class-level top-k | 12.3 ms | 13.1 ms | 12.9 ms |" in companions
    assert "| shapes | Subset | n/a | 1.87 s (N = 16) | 2.03 s |" in companions
    assert "not above Table 3's k" not in companions  # every metric was measured at Table 3's k
    html_text = "".join(_check_page(report_dir / "index.html").text)
    for caption in ("Validity: percentage of class-level counterfactuals whose flip of the explained classifier the "
                    "independent oracle also sees. Higher is better",
                    "COUT (Khorram & Fuxin 2022), the counterfactual transition score in [-1, 1]",
                    "Lower is closer, but a method that changes nothing scores 0: read it beside validity",
                    "Off-target changes (the MNAC analogue)", "Lower is faster", "At k = 10.",
                    "83.3% [77.2, 88.1] (N = 180)", "Counterfactual metric battery"):
        assert caption in html_text, caption


def test_battery_detail_over_k_and_reading_guide(battery_report):
    _, _, readme = battery_report
    detail = readme.split("## Counterfactual metric battery")[1].split("## FID under perturbation")[0]
    for needed in ("### Faithful sufficiency", "### Validity", "### COUT", "### Proximity", "### Off-target changes",
                   "### Runtime",
                   "| k | Wu et al. (N = 150 of 200) | StylEx w/o CST (N = 160 of 200) | StylEx (N = 180 of 200) |",
                   f"| 10 | {VALIDITY_CELL} (40 of 50 flips) | 40.0% [33.5, 46.9] (80 of 90 flips) |",
                   "| 5 | 0.200 [0.170, 0.230] | 0.300 [0.270, 0.330] | 0.400 [0.370, 0.430] |",
                   "| **spot** | 40.0% | 40.0% | 40.0% |", "| hue | 30.0% | 30.0% | 30.0% |",
                   "| StylEx | 12.9 ms | 510 ms | 2.03 s |", "| Wu et al. | 12.3 ms | n/a | n/a |",
                   "| StylEx w/o CST | 13.1 ms | 520 ms | 1.87 s (N = 16) |",
                   "LPIPS (vgg) to the reconstruction"):
        assert needed in detail, needed
    # faithful sufficiency has Independent and Subset tables of its own, without Wu et al.'s (it has none)
    assert detail.count("Judged by the explained classifier") == 3 and detail.count("Judged by the oracle") == 3
    guide = readme.split("## How to read this")[1].split("## Table 3")[0]
    for needed in ("**Faithful sufficiency.** Sufficiency counted only over the images whose reconstruction keeps "
                   "the real image's decision", "**Validity.**", "**COUT.** The counterfactual transition score of "
                   "Khorram & Fuxin (2022), in \\[-1, 1\\]", "**Proximity.**", "read it beside validity",
                   "**Off-target changes.**", "the analogue of MNAC", "**Runtime.**"):
        assert needed in guide, needed


def test_companion_cells_at_the_largest_measured_k_below_table3(tmp_path):
    metrics = {**make_metrics(tmp_path), **battery_sections()}
    metrics["table3"]["k"] = 7  # COUT, proximity and off-target are measured at k = 1, 5 and 10 only
    del metrics["off_target"], metrics["runtime"], metrics["faithful_sufficiency"]["judges"]["oracle"]
    report.write_report(metrics, tmp_path)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    companions = readme.split("## Companion tables of Table 3")[1].split("## Sufficiency over k")[0]
    assert "| shapes | 0.200 [0.170, 0.230] | 0.300 [0.270, 0.330] (N = 190) | 0.400 [0.370, 0.430] |" in companions
    assert "At k = 5, the largest measured k not above Table 3's k = 7." in companions
    assert "| shapes | 23.3% [17.3, 30.7] (N = 150) |" in companions  # faithful sufficiency is measured at k = 7
    assert "Faithful sufficiency (oracle)" not in companions and "Off-target" not in readme
    assert "Runtime" not in readme and "**Validity.**" in readme


def test_a_run_without_the_battery_shows_none_of_it(full_report):
    _, report_dir, _ = full_report
    readme = (report_dir / "README.md").read_text(encoding="utf-8")
    for absent in ("Companion tables", "Counterfactual metric battery", "Faithful sufficiency", "COUT", "Validity"):
        assert absent not in readme


def test_battery_sections_round_trip_through_the_report(battery_report, tmp_path):
    metrics, report_dir, readme = battery_report
    assert json.loads((report_dir / "metrics.json").read_text(encoding="utf-8")) == metrics
    report.rerender_report(report_dir / "metrics.json", tmp_path / "again")
    again = tmp_path / "again"
    assert (again / "metrics.json").read_bytes() == (report_dir / "metrics.json").read_bytes()
    assert (again / "README.md").read_text(encoding="utf-8") == readme
    _check_page(again / "index.html")  # the attribute figures were copied along: every picture resolves
