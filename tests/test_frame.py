"""The Python API for notebooks (issue 14, item 8): `evaluation.results_frame` / `Benchmark` turn metrics.json into
one tidy DataFrame (one row per dataset, method, strategy, metric and k), and notebooks/benchmark_analysis.ipynb
reads it with package calls only."""

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import MICRO

from evaluation import Benchmark, curve, results_frame, summarize
from evaluation.frame import COLUMNS
from evaluation.methods import registered
from stylex.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "benchmark_analysis.ipynb"


def point(k: int, flipped: int, images: int) -> dict:
    """A CURVE_ROW; the interval is made up (only its transport into the frame is under test)."""
    fraction = flipped / images
    return {"k": k, "flipped": flipped, "images": images, "fraction": fraction, "ci_low": fraction - 0.1,
            "ci_high": fraction + 0.1}


def mean(value: float) -> dict:
    return {"mean": value, "std": 0.2, "ci_low": value - 0.05, "ci_high": value + 0.05}


def curves(image_level: bool, images: int) -> dict:
    class_level = [point(k, k, images) for k in (1, 2, 3)]
    image_curve = [point(k, k - 1, images) for k in (1, 2, 3)] if image_level else None
    return {"class_level": class_level, "independent": image_curve, "subset": image_curve}


def judged(kept: dict) -> dict:
    return {"methods": {method: {"kept": kept[method], "images": 8, "curves": curves(method == "stylex", kept[method])}
                        for method in ("wu", "stylex")}}


# Every section of the battery's metrics.json contract, for two methods: Wu et al. (class-level only) and StylEx
# (image-level too), max_k = 3 (cout, proximity and off_target at k 1, 2, 3), fid at two shift sizes.
RESULTS = {
    "format": "stylex-benchmark", "format_version": 1,
    "run": {"name": "unit", "config": "unit", "run_dir": "runs/unit", "code_version": "0.1.0", "device": "cpu",
            "created": "2026-12-01T20:12:37"},
    "dataset": {"name": "shapes", "classes": ["other", "large-spotted"], "resolution": 32},
    "methods": {"wu": {"label": "Wu et al.", "variant": "stylex-nocst", "edit_rule": "s += shift * 3 * sigma"},
                "stylex": {"label": "StylEx", "variant": "stylex", "edit_rule": "s += shift * (min|max - s)"}},
    "generators": {"stylex": {"lpips_mode": "random", "step": 100, "reconstruction_l1": 0.04, "oracle_agreement": 0.9,
                              "swapped_condition_agreement": 0.8, "gate_failures": []},
                   "stylex-nocst": {"lpips_mode": "random", "step": 100, "reconstruction_l1": 0.03,
                                    "oracle_agreement": 0.95, "gate_failures": ["oracle agreement 0.5 < 0.9"]}},
    "sufficiency": {"num_images": 8, "shift_size": 1.0, "max_k": 3,
                    "curves": {"wu": curves(False, 8), "stylex": curves(True, 8)}},
    "table3": {"k": 3, "strategy": "class_level", "rows": [{"dataset": "shapes", "wu": None, "stylex": None}]},
    "faithful_sufficiency": {"shift_size": 1.0, "max_k": 3,
                             "judges": {"explained": judged({"wu": 7, "stylex": 6}),
                                        "oracle": judged({"wu": 5, "stylex": 4})}},
    "validity": {"strategy": "class_level", "shift_size": 1.0,
                 "methods": {method: [{"k": k, "images": 8, "flipped": 2 * k, "confirmed": k, "fraction": k / 8,
                                       "ci_low": 0.0, "ci_high": 0.6, "agreement": 0.5} for k in (1, 2, 3)]
                             for method in ("wu", "stylex")}},
    "cout": {"steps": 20, "strategy": "class_level", "shift_size": 1.0,
             "methods": {method: [{"k": k, **mean(offset + k / 10), "n": 8} for k in (1, 2, 3)]
                         for method, offset in (("wu", 0.0), ("stylex", 0.5))}},
    "proximity": {"lpips_mode": "random", "strategy": "class_level", "shift_size": 1.0,
                  "methods": {method: [{"k": k, "l1": mean(0.01 * k), "lpips": mean(0.1 * k), "n": 8}
                                       for k in (1, 2, 3)] for method in ("wu", "stylex")}},
    "off_target": {"strategy": "class_level", "shift_size": 1.0, "min_change": 0.25, "causal": ["size", "spot"],
                   "factors": ["shape", "size", "spot"],
                   "methods": {method: [{"k": k, "n": 8, "off_target": mean(0.5 * k),
                                         "causal_changed": {"fraction": 0.25, "ci_low": 0.05, "ci_high": 0.6},
                                         "per_factor": {"shape": 0.5, "size": 0.25, "spot": 0.0}} for k in (1, 2, 3)]
                               for method in ("wu", "stylex")}},
    "runtime": {"device": "cpu", "images": 8,
                "methods": {"wu": {"class_level": {"seconds_per_image": 0.01, "images": 8}},
                            "stylex": {"class_level": {"seconds_per_image": 0.02, "images": 8},
                                       "independent": {"seconds_per_image": 1.5, "images": 8},
                                       "subset": {"seconds_per_image": 2.5, "images": 6}}}},
    "fid": {"features": "classifier", "label": "classifier-feature Frechet distance", "num_images": 8,
            "reference": "test split, 8 images", "reconstruction": {"stylex-nocst": 0.2, "stylex": 1.0},
            "perturbation": {"wu": {"1.0": [{"i": 1, "value": 2.5}, {"i": 2, "value": 3.5}],
                                    "2.0": [{"i": 1, "value": 4.5}, {"i": 2, "value": 5.5}]},
                             "stylex": {"1.0": [{"i": 1, "value": 1.5}, {"i": 2, "value": None}],
                                        "2.0": [{"i": 1, "value": 6.5}, {"i": 2, "value": 7.5}]}}},
    "timings": {"models": 2.0},
    "settings": {"evaluation": {"max_k": 3}},
    "recovery": {"k": 3, "causal": ["size", "spot"], "factors": ["shape", "size", "spot"],
                 "probe_quality": {"shape": 0.98, "size": 0.99, "spot": 1.0},
                 "methods": {"wu": {"precision": 1 / 3, "distinct_factors": 2, "distinct_causal": 1, "top_k": 3,
                                    "factors": ["size", "shape", "none"]},
                             "stylex": {"precision": None, "distinct_factors": 0, "distinct_causal": 0, "top_k": 0,
                                        "factors": []}}},
    "a_future_section": {"methods": {"wu": [{"k": 1, "value": 1.0}]}},  # not in the contract: ignored
}
# rows per metrics.json section of RESULTS, counted by hand
SECTION_ROWS = {"sufficiency": 3 + 9, "faithful_sufficiency": 2 * (3 + 9), "validity": 2 * 3, "cout": 2 * 3,
                "proximity": 2 * 3 * 2, "off_target": 2 * 3 * 2, "runtime": 1 + 3, "fid": 2 + 2 * 2 * 2,
                "recovery": 2, "generators": 4 + 3}


def cell(frame: pd.DataFrame, method: str, strategy: str, metric: str, k: int | None = None) -> pd.Series:
    """The one row of the frame at this key."""
    chosen = frame[(frame["method"] == method) & (frame["strategy"] == strategy) & (frame["metric"] == metric)
                   & (frame["k"].isna() if k is None else frame["k"].eq(k).fillna(False))]
    assert len(chosen) == 1, (method, strategy, metric, k, len(chosen))
    return chosen.iloc[0]


def test_every_section_becomes_tidy_rows():
    frame = results_frame(RESULTS)
    assert list(frame.columns) == COLUMNS
    assert str(frame["k"].dtype) == "Int64" and str(frame["n"].dtype) == "Int64"
    assert len(frame) == sum(SECTION_ROWS.values()) == 95
    assert not frame.duplicated(["dataset", "method", "strategy", "metric", "k"]).any()
    assert set(frame["dataset"]) == {"shapes"}
    assert list(frame.loc[frame["metric"] == "sufficiency", "method"].unique()) == ["wu", "stylex"]  # results order

    subset = cell(frame, "stylex", "subset", "sufficiency", 2)
    assert (subset["value"], subset["ci_low"], subset["ci_high"]) == pytest.approx((0.125, 0.025, 0.225))
    assert subset["n"] == 8
    assert cell(frame, "wu", "class_level", "sufficiency", 3)["value"] == 3 / 8
    assert frame[(frame["method"] == "wu") & (frame["metric"] == "sufficiency")]["strategy"].unique().tolist() == [
        "class_level"]  # null curves (no image-level strategies) give no rows

    oracle = cell(frame, "wu", "class_level", "faithful_sufficiency_oracle", 3)
    assert oracle["n"] == 5 and oracle["value"] == 3 / 5  # counted over the 5 kept images
    assert cell(frame, "stylex", "independent", "faithful_sufficiency_explained", 1)["n"] == 6

    validity = cell(frame, "stylex", "class_level", "validity", 2)
    assert (validity["value"], validity["ci_low"], validity["ci_high"], validity["n"]) == (0.25, 0.0, 0.6, 8)
    cout = cell(frame, "stylex", "class_level", "cout", 3)
    assert (cout["value"], cout["ci_low"], cout["ci_high"], cout["n"]) == pytest.approx((0.8, 0.75, 0.85, 8))
    lpips = cell(frame, "wu", "class_level", "proximity_lpips", 2)
    assert (lpips["value"], lpips["ci_high"]) == pytest.approx((0.2, 0.25))
    assert cell(frame, "wu", "class_level", "proximity_l1", 2)["value"] == pytest.approx(0.02)
    assert cell(frame, "stylex", "class_level", "off_target", 3)["value"] == 1.5
    changed = cell(frame, "stylex", "class_level", "causal_changed", 3)
    assert (changed["value"], changed["ci_low"], changed["ci_high"], changed["n"]) == (0.25, 0.05, 0.6, 8)

    runtime = cell(frame, "stylex", "subset", "runtime_s")
    assert runtime["value"] == 2.5 and runtime["n"] == 6 and pd.isna(runtime["ci_low"])

    # not Inception features: never "fid"; one strategy per shift size, since the frame has no shift column
    assert "fid" not in set(frame["metric"])
    assert cell(frame, "wu", "class_level (shift 2.0)", "frechet_classifier", 2)["value"] == 5.5
    assert pd.isna(cell(frame, "stylex", "class_level (shift 1.0)", "frechet_classifier", 2)["value"])
    reconstruction = cell(frame, "stylex-nocst", "reconstruction", "frechet_classifier")
    assert reconstruction["value"] == 0.2 and reconstruction["n"] == 8

    recovery = cell(frame, "wu", "class_level", "recovery_precision", 3)
    assert recovery["value"] == pytest.approx(1 / 3) and recovery["n"] == 3
    assert pd.isna(cell(frame, "stylex", "class_level", "recovery_precision", 3)["value"])

    generators = frame[frame["strategy"] == "reconstruction"]
    measured = generators[generators["metric"] != "frechet_classifier"]
    assert set(measured["metric"]) == {"step", "reconstruction_l1", "oracle_agreement", "swapped_condition_agreement"}
    assert cell(frame, "stylex-nocst", "reconstruction", "oracle_agreement")["value"] == 0.95


@pytest.mark.parametrize("section", list(SECTION_ROWS))
def test_a_missing_section_only_removes_its_own_rows(section):
    without = {key: value for key, value in copy.deepcopy(RESULTS).items() if key != section}
    assert len(results_frame(without)) == sum(SECTION_ROWS.values()) - SECTION_ROWS[section]


def test_inception_features_give_fid_and_results_without_sections_an_empty_frame():
    inception = copy.deepcopy(RESULTS)
    inception["fid"].update(features="inception", label="FID")
    assert cell(results_frame(inception), "wu", "class_level (shift 1.0)", "fid", 1)["value"] == 2.5
    bare = {key: value for key, value in RESULTS.items() if key in ("format", "run", "dataset", "methods")}
    empty = results_frame(bare)
    assert list(empty.columns) == COLUMNS and len(empty) == 0 and str(empty["k"].dtype) == "Int64"


def test_sources_can_be_files_report_folders_run_directories_or_dicts(tmp_path):
    report = tmp_path / "runs" / "unit" / "report"
    report.mkdir(parents=True)
    (report / "metrics.json").write_text(json.dumps(RESULTS))
    expected = results_frame(RESULTS)
    for source in (report / "metrics.json", str(report), report.parent, [report.parent]):
        pd.testing.assert_frame_equal(results_frame(source), expected)
    fashion = copy.deepcopy(RESULTS)
    fashion["dataset"]["name"] = "fashion-mnist"
    both = Benchmark.load(report.parent, fashion)  # several runs = several datasets
    assert list(both["dataset"].unique()) == ["shapes", "fashion-mnist"] and len(both) == 2 * len(expected)
    twice = Benchmark.load(report.parent, RESULTS)  # two runs on one dataset: told apart by run name, then position
    labels = list(twice["dataset"].unique())
    assert len(labels) == 2 and all(label.startswith("shapes (") for label in labels)


def test_bad_sources_are_refused_with_what_to_pass(tmp_path):
    with pytest.raises(UserError, match=r"missing\.json: no benchmark results there.*pass a run directory"):
        Benchmark.load(tmp_path / "missing.json")
    with pytest.raises(UserError, match=r"no benchmark results there \(looked for .*report/metrics\.json or "):
        Benchmark.load(tmp_path)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UserError, match=r"other\.json: format is 'something-else'.*metrics\.json"):
        Benchmark.load(other)
    picture = tmp_path / "sufficiency.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(UserError, match=r"sufficiency\.png is not a text file; pass a run directory"):
        Benchmark.load(picture)
    broken = copy.deepcopy(RESULTS)
    del broken["validity"]["methods"]["wu"][0]["confirmed"], broken["validity"]["methods"]["wu"][0]["fraction"]
    with pytest.raises(UserError, match=r"results #1 \(a dict\): validity\.methods\['wu'\]\[0\]"):
        results_frame(broken)


def test_summaries_pick_the_largest_k_and_keep_the_method_order():
    frame = results_frame(RESULTS)
    table3 = summarize(frame, "sufficiency", strategy="class_level")
    assert list(table3.columns) == ["wu", "stylex"] and list(table3.index) == ["shapes"]
    assert table3.loc["shapes", "wu"] == 3 / 8  # k = 3, the largest
    assert summarize(frame, "sufficiency", k=1, strategy="class_level").loc["shapes", "stylex"] == 1 / 8
    battery = summarize(frame, ["sufficiency", "cout"])
    assert battery.index.names == ["dataset", "metric", "strategy"]
    assert battery.loc[("shapes", "cout", "class_level"), "stylex"] == pytest.approx(0.8)
    assert pd.isna(battery.loc[("shapes", "sufficiency", "independent"), "wu"])
    runtime = summarize(frame, "runtime_s")  # no k: every row kept
    assert list(runtime.index) == [("shapes", "class_level"), ("shapes", "independent"), ("shapes", "subset")]
    assert summarize(frame, "validity", strategy="subset").empty
    sufficiency = curve(frame)
    assert list(sufficiency.index) == [1, 2, 3]
    assert list(sufficiency.columns) == [("shapes", "wu"), ("shapes", "stylex")]


def test_benchmark_reads_its_config_like_the_command_line(tmp_path):
    benchmark = Benchmark("tiny", ["evaluation.max_k=2", "evaluation.table_k=2"], metrics="cout")
    assert benchmark.config.evaluation.max_k == 2 and benchmark.run_dir == Path("runs") / benchmark.config.name
    assert benchmark.metrics == ["cout"] and benchmark.report_dir is None
    assert Benchmark(benchmark.config, run_dir=tmp_path).run_dir == tmp_path
    with pytest.raises(UserError, match="overrides apply to a preset name"):
        Benchmark(benchmark.config, ["evaluation.max_k=3"])
    with pytest.raises(UserError, match="no config preset 'no-such-preset'"):
        Benchmark("no-such-preset")


def test_importing_evaluation_loads_neither_torch_nor_pandas():
    code = ("import sys, evaluation\n"
            "assert not {'torch', 'pandas'} & set(sys.modules), 'eager import'\n"
            "from evaluation import Benchmark\n"
            "assert 'pandas' in sys.modules and 'torch' not in sys.modules, 'the API brought torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------------------------------------------- micro run


def rows_in(metrics: dict) -> int:
    """How many rows the frame must have for this metrics.json, counted from the JSON's own structure."""
    def points(by_strategy: dict) -> int:
        return sum(len(rows or []) for rows in by_strategy.values())

    def per_method(section: str, rows_per_point: int = 1) -> int:
        return rows_per_point * sum(len(rows) for rows in metrics[section]["methods"].values())

    counts = {
        "sufficiency": lambda: sum(points(by_strategy) for by_strategy in metrics["sufficiency"]["curves"].values()),
        "faithful_sufficiency": lambda: sum(points(measured["curves"])
                                            for judge in metrics["faithful_sufficiency"]["judges"].values()
                                            for measured in judge["methods"].values()),
        "validity": lambda: per_method("validity"), "cout": lambda: per_method("cout"),
        "proximity": lambda: per_method("proximity", 2), "off_target": lambda: per_method("off_target", 2),
        "runtime": lambda: per_method("runtime"),
        "fid": lambda: len(metrics["fid"]["reconstruction"]) + sum(
            points(by_shift) for by_shift in metrics["fid"]["perturbation"].values()),
        "recovery": lambda: len(metrics["recovery"]["methods"]),
        "generators": lambda: sum(isinstance(value, (int, float)) and not isinstance(value, bool)
                                  for measured in metrics["generators"].values() for value in measured.values())}
    return sum(count() for section, count in counts.items() if metrics.get(section) is not None)


def test_micro_benchmark_frame_has_the_columns_and_a_row_per_measurement(micro_run):
    run_dir, report_dir = micro_run
    metrics = json.loads((report_dir / "metrics.json").read_text())
    frame = Benchmark("tiny", MICRO, run_dir=run_dir, progress=False).run()  # reuses every stage of micro_run
    assert list(frame.columns) == COLUMNS
    assert len(frame) == rows_in(metrics) > 0
    assert not frame.duplicated(["dataset", "method", "strategy", "metric", "k"]).any()
    keys = [method.key for method in registered()]
    for metric in ("sufficiency", "cout", "proximity_l1", "proximity_lpips", "recovery_precision"):
        assert list(frame.loc[frame["metric"] == metric, "method"].unique()) == keys, metric
    pd.testing.assert_frame_equal(frame, Benchmark.load(run_dir))


def test_notebook_is_valid_and_only_calls_the_package():
    import nbformat

    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4))
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    assert nb["cells"][0]["cell_type"] == "markdown"
    ids = [cell["id"] for cell in nb["cells"]]
    assert len(set(ids)) == len(ids)
    allowed = {"evaluation", "pandas", "IPython", "matplotlib"}
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        if cell["cell_type"] != "code":
            continue
        assert cell["outputs"] == [] and cell["execution_count"] is None
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                # no logic of its own: no function/class definitions, loops, branches or comprehensions
                assert not isinstance(node, ast.FunctionDef | ast.Lambda | ast.ClassDef | ast.For | ast.While | ast.If
                                      | ast.IfExp | ast.comprehension), cell["id"]
                continue
            assert roots <= allowed | set(sys.stdlib_module_names), roots
    params = [cell for cell in nb["cells"] if "parameters" in cell["metadata"].get("tags", [])]
    assert len(params) == 1 and "".join(params[0]["source"]).startswith("RESULTS = [")


def test_notebook_runs_on_the_micro_benchmark(micro_run, tmp_path, monkeypatch):
    """Executes the notebook in a real Jupyter kernel (nbclient + ipykernel, dev dependencies)."""
    import nbclient
    import nbformat

    _, report_dir = micro_run
    monkeypatch.chdir(tmp_path)  # the figure's folder is relative: it lands in tmp_path
    node = nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4)
    params = next(cell for cell in node.cells if "parameters" in cell.metadata.get("tags", []))
    params.source = f"RESULTS = [{str(report_dir / 'metrics.json')!r}]"
    nbclient.NotebookClient(node, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in node.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    table3 = next(cell for cell in node.cells if cell.get("id") == "table3")
    assert "shapes" in table3.outputs[0]["data"]["text/plain"]  # Table 3 has the micro run's dataset as its row
    assert (tmp_path / "reports" / "benchmark_analysis" / "sufficiency.png").stat().st_size > 0
