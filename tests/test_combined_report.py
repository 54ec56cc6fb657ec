"""`stylex report` and evaluation.report.combined: one report across runs, whose Table 3 has a row per dataset."""

import copy
import json
import re
from pathlib import Path

import pytest
from test_report import MAX_K, _check_page, _markdown_targets, _with_random_baseline, battery_sections, make_metrics

from evaluation.report import write_combined_report, write_report
from evaluation.report.datasets import merged_order
from stylex.cli import main
from stylex.errors import UserError

SHAPES_ROW = "| shapes | 25.0% [19.5, 31.4] | n/a | 45.0% [38.3, 51.9] | 75.0% [68.6, 80.5] |"
FASHION_ROW = "| fashion-mnist | n/a | 10.0% [6.6, 14.9] | 45.0% [38.3, 51.9] | 75.0% [68.6, 80.5] |"
SHAPES_LATEX = r"shapes & 25.0\,[19.5, 31.4] & n/a & 45.0\,[38.3, 51.9] & 75.0\,[68.6, 80.5] \\"
FASHION_LATEX = r"fashion-mnist & n/a & 10.0\,[6.6, 14.9] & 45.0\,[38.3, 51.9] & 75.0\,[68.6, 80.5] \\"


def shapes_metrics(folder: Path) -> dict:
    """Three methods (Wu et al., StylEx w/o CST, StylEx) on shapes, with the metric battery."""
    return {**make_metrics(folder), **battery_sections()}


def fashion_metrics(folder: Path) -> dict:
    """Another dataset, other methods (Random, no Wu et al.), another N; COUT as the only battery metric."""
    metrics = _with_random_baseline(make_metrics(folder))
    metrics["run"] = {**metrics["run"], "name": "fashion", "run_dir": "runs/fashion"}
    metrics["dataset"] = {"name": "fashion-mnist", "classes": ["sneaker", "ankle boot"], "resolution": 64}
    metrics["table3"]["rows"][0]["dataset"] = "fashion-mnist"
    metrics["sufficiency"]["num_images"] = 128
    del metrics["methods"]["wu"], metrics["sufficiency"]["curves"]["wu"], metrics["table3"]["rows"][0]["wu"]
    del metrics["recovery"], metrics["fid"]
    cout = battery_sections()["cout"]
    cout["methods"] = {"random": [{**point, "mean": 0.01, "ci_low": -0.02, "ci_high": 0.04, "n": 128}
                                  for point in cout["methods"]["wu"]], "stylex": cout["methods"]["stylex"]}
    return {**metrics, "cout": cout}


@pytest.fixture
def two_runs(tmp_path):
    """The reports of both runs as the benchmark leaves them: runs/<name>/report/ with metrics.json and pages."""
    folders = {name: tmp_path / "runs" / name / "report" for name in ("demo", "fashion")}
    for name, build in (("demo", shapes_metrics), ("fashion", fashion_metrics)):
        folders[name].mkdir(parents=True)
        write_report(build(folders[name]), folders[name])
    return tmp_path, folders


def test_table3_has_a_row_per_dataset(two_runs):
    base, folders = two_runs
    out = base / "reports" / "combined"
    written = write_combined_report([base / "runs" / "demo", folders["fashion"]], out)
    assert [path.name for path in written] == ["metrics-index.json", "table3.tex", "README.md", "index.html"]
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "| Dataset | Wu et al. | Random | StylEx w/o CST | StylEx |" in readme  # the union, in registry order
    assert SHAPES_ROW in readme and FASHION_ROW in readme
    assert "N = 200 (shapes), 128 (fashion-mnist) test images" in readme and f"k = {MAX_K}," in readme
    latex = (out / "table3.tex").read_text(encoding="utf-8")
    assert r"\begin{tabular}{lcccc}" in latex and SHAPES_LATEX in latex and FASHION_LATEX in latex

    companions = readme.split("## Companion tables of Table 3")[1].split("## Per dataset")[0]
    assert ("| shapes | 33.3% [26.3, 41.2] (N = 150) | 56.2% [48.5, 63.7] (N = 160) | 83.3% [77.2, 88.1] (N = 180) |"
            in companions)  # faithful sufficiency: only shapes measured it
    assert "| Dataset | Wu et al. | Random | StylEx w/o CST | StylEx |" in companions
    assert ("| shapes | 0.300 [0.270, 0.330] | n/a | 0.400 [0.370, 0.430] (N = 190) | 0.500 [0.470, 0.530] |"
            in companions)
    assert "| fashion-mnist | n/a | 0.010 [-0.020, 0.040] | n/a | 0.500 [0.470, 0.530] (N = 200) |" in companions

    per_dataset = readme.split("## Per dataset")[1]
    assert "### shapes" in per_dataset and "### fashion-mnist" in per_dataset
    assert "[../../runs/demo/report/index.html](../../runs/demo/report/index.html)" in per_dataset
    assert "Gates of the suite (DESIGN section 9): all met." in per_dataset
    assert "| StylEx w/o CST | 3000 | 0.220 | 0.120 |" in per_dataset  # each run's generator faithfulness
    assert all((out / target).is_file() for target in _markdown_targets(readme))
    page = _check_page(out / "index.html")  # every link, the runs' own reports included, resolves
    assert "../../runs/fashion/report/index.html" in page.links

    index = json.loads((out / "metrics-index.json").read_text(encoding="utf-8"))
    assert index["format"] == "stylex-benchmark-combined"
    assert [(source["label"], source["run"], source["metrics"]) for source in index["sources"]] == [
        ("shapes", "demo", "../../runs/demo/report/metrics.json"),
        ("fashion-mnist", "fashion", "../../runs/fashion/report/metrics.json")]


def test_runs_on_the_same_dataset_stay_distinct(tmp_path):
    paths = []
    for name in ("demo", "demo-long"):
        metrics = make_metrics(tmp_path)
        metrics["run"]["name"] = name
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(metrics), encoding="utf-8")
    write_combined_report(paths, tmp_path / "combined")
    readme = (tmp_path / "combined" / "README.md").read_text(encoding="utf-8")
    assert "| shapes (demo) | 25.0% [19.5, 31.4] |" in readme
    assert "| shapes (demo-long) | 25.0% [19.5, 31.4] |" in readme
    assert "### shapes (demo-long)" in readme
    assert "[../demo.json](../demo.json)" in readme  # no report pages next to them: the link is the results


def test_stylex_report_command_end_to_end(tmp_path, capsys):
    sources = []
    for name, build in (("shapes.json", shapes_metrics), ("fashion.json", fashion_metrics)):
        sources.append(tmp_path / name)
        sources[-1].write_text(json.dumps(build(tmp_path)), encoding="utf-8")
    out = tmp_path / "combined"
    assert main(["report", *map(str, sources), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'index.html'} (4 files)"
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert SHAPES_ROW in readme and FASHION_ROW in readme
    assert SHAPES_LATEX in (out / "table3.tex").read_text(encoding="utf-8")

    single = tmp_path / "single"  # one source: that run's own report, rendered again from its metrics.json
    assert main(["report", str(sources[0]), "--out", str(single)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {single / 'index.html'} (6 files)"
    assert json.loads((single / "metrics.json").read_text(encoding="utf-8")) == shapes_metrics(tmp_path)
    assert "## Companion tables of Table 3" in (single / "README.md").read_text(encoding="utf-8")


def test_stylex_report_help_lists_its_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "RUN_OR_METRICS" in text and "--out DIR" in text and "reports/combined" in text


def test_a_bad_source_is_named_with_what_to_pass(tmp_path, capsys):
    good = tmp_path / "shapes.json"
    good.write_text(json.dumps(make_metrics(tmp_path)), encoding="utf-8")
    missing = tmp_path / "runs" / "nothing-here"
    assert main(["report", str(good), str(missing), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"{missing}: no benchmark results there" in error and "pass a run directory (runs/NAME)" in error
    assert not (tmp_path / "out").exists()  # every source is read before anything is written

    study = tmp_path / "study.json"
    study.write_text(json.dumps({"format": "stylex-study"}), encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(f"{study}: format is 'stylex-study', expected 'stylex-benchmark'")):
        write_combined_report([good, study], tmp_path / "out")
    with pytest.raises(UserError, match="no benchmark results to combine"):
        write_combined_report([], tmp_path / "out")


def test_the_combined_report_never_overwrites_a_runs_report(two_runs):
    _, folders = two_runs
    before = (folders["demo"] / "README.md").read_bytes()
    with pytest.raises(UserError, match="holds a run's report"):
        write_combined_report([folders["demo"], folders["fashion"]], folders["demo"])
    assert (folders["demo"] / "README.md").read_bytes() == before


def test_method_orders_merge_into_the_registry_order():
    assert merged_order([["wu", "stylex-nocst", "stylex"], ["random", "stylex-nocst", "stylex"]]) == [
        "wu", "random", "stylex-nocst", "stylex"]
    assert merged_order([["stylex"], ["random", "gradient", "stylex"]]) == ["random", "gradient", "stylex"]
    assert merged_order([["a", "b"], ["b", "a"]]) == ["a", "b"]  # a conflict: the first order wins


def test_a_stale_table3_does_not_outlive_its_sources(tmp_path):
    with_table3 = tmp_path / "with.json"
    with_table3.write_text(json.dumps(make_metrics(tmp_path)), encoding="utf-8")
    write_combined_report([with_table3], tmp_path / "out")
    assert (tmp_path / "out" / "table3.tex").is_file()
    without = copy.deepcopy(make_metrics(tmp_path))
    del without["table3"], without["sufficiency"]
    without_path = tmp_path / "without.json"
    without_path.write_text(json.dumps(without), encoding="utf-8")
    written = write_combined_report([without_path], tmp_path / "out")
    assert [path.name for path in written] == ["metrics-index.json", "README.md", "index.html"]
    assert not (tmp_path / "out" / "table3.tex").exists()
