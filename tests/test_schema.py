"""evaluation.schema: the benchmark results are checked once when read, every error names the field and the file,
and to_dict gives back exactly the JSON that was read."""

import copy
import json
import re
from pathlib import Path

import pytest

from evaluation.schema import (
    BenchmarkResults,
    CoutPoint,
    CurvePoint,
    Interval,
    Mean,
    Method,
    Run,
    Table3Row,
    Timing,
    ValidityPoint,
    read_results,
)
from stylex.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
POINT = {"k": 1, "flipped": 7, "images": 128, "fraction": 0.0546875, "ci_low": 0.0267402, "ci_high": 0.1085849}
CELL = {"fraction": 0.828125, "ci_low": 0.7534600319269827, "ci_high": 0.8836688405185272}
ATTRIBUTE = {"rank": 1, "layer": "b16.conv0", "channel": 30, "direction": "min", "target": "other",
             "score": 1.2415916967289902, "mean_effect": -0.6562004045721457, "panel": "figures/wu/attribute-01.png",
             "flicker": "figures/wu/attribute-01-flicker.gif", "sweep": "figures/wu/attribute-01-sweep.gif"}
# The layout `stylex benchmark` writes (evaluation/benchmark.py run_benchmark, runs/*/report/metrics.json), key for
# key and in its order, with fewer rows: recovery comes last, after settings, and wall_time_s ends the run.
BENCHMARK_RESULTS = {
    "format": "stylex-benchmark", "format_version": 1,
    "run": {"name": "demo-final-bench", "config": "demo-final-bench", "run_dir": "runs/demo-final-bench",
            "code_version": "0.1.0+gc72b222f9c-dirty", "device": "cpu", "created": "2026-12-01T20:12:37",
            "wall_time_s": 482.8},
    "dataset": {"name": "shapes", "classes": ["other", "large-spotted"], "resolution": 32},
    "classifier": {"arch": "mobilenet_v2", "test_accuracy": 0.9985, "oracle_arch": "plain_cnn",
                   "oracle_test_accuracy": 1.0},
    "methods": {"wu": {"label": "Wu et al.", "variant": "stylex-nocst",
                       "edit_rule": "s += shift * 3 * sigma_pop (Wu et al.)", "attributes": [ATTRIBUTE]},
                "stylex": {"label": "StylEx", "variant": "stylex", "edit_rule": "s += shift * (min|max - s) (AttFind)",
                           "attributes": []}},
    "generators": {"stylex": {"lpips_mode": "random", "step": 16000, "reconstruction_l1": 0.0375, "gate_failures": [],
                              "lpips": 0.0066},
                   "stylex-nocst": {"lpips_mode": "random", "step": 16000, "lpips": None,
                                    "gate_failures": ["oracle agreement 0.5 < 0.9"]}},
    "reconstruction_grid": "reconstructions.png",
    "sufficiency": {"num_images": 128, "shift_size": 1.0, "max_k": 10,
                    "curves": {"wu": {"class_level": [POINT], "independent": None, "subset": None},
                               "stylex": {"class_level": [POINT], "independent": [POINT], "subset": [POINT]}}},
    "table3": {"k": 10, "strategy": "class_level", "rows": [{"dataset": "shapes", "wu": CELL, "stylex": None}]},
    "fid": {"features": "classifier", "label": "classifier-feature Frechet distance", "num_images": 128,
            "reference": "test split, 128 images", "reconstruction": {"stylex-nocst": 0.2075, "stylex": 1.0212},
            "perturbation": {"wu": {"0.5": [{"i": 1, "value": 2.62}], "1.0": [{"i": 1, "value": 15.6}]},
                             "stylex": {"0.5": [{"i": 1, "value": 1.57}], "1.0": [{"i": 1, "value": None}]}}},
    "timings": {"models": 2.23, "attfind": 296.39},
    "settings": {"attfind": {"split": "test", "seed": 0}, "evaluation": {"strategies": ["class_level"]}},
    "recovery": {"k": 10, "causal": ["size", "spot"], "factors": ["shape", "size", "spot"],
                 "probe_quality": {"shape": 0.98, "size": 0.99, "spot": 1.0},
                 "methods": {"wu": {"method": "wu", "shift_size": 1.0, "min_change": 0.25,
                                    "attributes": [{"coordinate": 126, "changes": {"shape": 0.07}, "factor": "none"}],
                                    "top_k": 10, "precision": 0.0, "distinct_factors": 0, "distinct_causal": 0,
                                    "factors": ["none"]}}},
}


def _text(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def test_round_trip_gives_back_the_benchmark_layout_exactly():
    results = BenchmarkResults.from_dict(copy.deepcopy(BENCHMARK_RESULTS))
    assert _text(results.to_dict()) == _text(BENCHMARK_RESULTS)
    # typed, as the report reads them
    assert results.methods["wu"].attributes[0].channel == 30 and results.methods["stylex"].attributes == ()
    assert results.sufficiency.curves["wu"]["independent"] is None
    assert results.sufficiency.curves["stylex"]["subset"][0] == CurvePoint(**POINT)
    assert results.table3.rows[0].cells == {"wu": Interval(**CELL), "stylex": None}
    assert results.generators["stylex-nocst"].gate_failures == ("oracle agreement 0.5 < 0.9",)
    assert results.generators["stylex"].measurements["step"] == 16000  # an int stays an int
    assert results.fid.shift_sizes == ["0.5", "1.0"] and not results.fid.is_fid
    assert results.recovery.methods["wu"].extra["top_k"] == 10  # kept, though the report does not read it


@pytest.mark.parametrize("run", ["demo-final-bench", "demo-bench", "fashion-bench"])
def test_real_metrics_round_trip_exactly(run):
    path = ROOT / "runs" / run / "report" / "metrics.json"
    if not path.is_file():
        pytest.skip(f"no benchmark run {run} in this checkout")
    assert _text(read_results(path).to_dict()) == path.read_text(encoding="utf-8")


def test_any_key_order_and_missing_optional_sections_round_trip():
    data = copy.deepcopy(BENCHMARK_RESULTS)
    data["run"] = {"wall_time_s": 1.5, **{key: value for key, value in data["run"].items() if key != "wall_time_s"}}
    data = {key: data[key] for key in ("recovery", *data) if key not in ("fid", "classifier", "timings")}
    del data["methods"]["wu"]["attributes"]
    assert list(BenchmarkResults.from_dict(data).to_dict().items()) == list(data.items())


def test_objects_built_in_code_write_the_benchmark_layout():
    run = Run(name="demo", config="demo", run_dir="runs/demo", code_version="0.1", device="cpu", created="today")
    assert list(run.to_dict()) == ["name", "config", "run_dir", "code_version", "device", "created"]
    point = CurvePoint(fraction=0.5, ci_low=0.4, ci_high=0.6, k=2, flipped=64, images=128)
    assert list(point.to_dict()) == ["k", "flipped", "images", "fraction", "ci_low", "ci_high"]
    method = Method(label="Random", variant="stylex", edit_rule="s += noise")
    assert method.to_dict() == {"label": "Random", "variant": "stylex", "edit_rule": "s += noise", "attributes": []}
    row = Table3Row(dataset="shapes", cells={"random": None, "wu": Interval(**CELL)})
    assert row.to_dict() == {"dataset": "shapes", "random": None, "wu": CELL}


def test_methods_are_open_ended_and_keep_their_order():
    data = copy.deepcopy(BENCHMARK_RESULTS)
    data["methods"] = {"random": {"label": "Random", "variant": "stylex", "edit_rule": "s += noise"},
                       **data["methods"]}
    results = BenchmarkResults.from_dict(data)
    assert list(results.methods) == ["random", "wu", "stylex"]
    assert results.ordered(["stylex", "gradient", "stylex-nocst", "random"]) == ["random", "stylex", "gradient",
                                                                                 "stylex-nocst"]
    assert results.label("random") == "Random" and results.label("stylex-nocst") == "stylex-nocst"


def _broken(change) -> dict:
    data = copy.deepcopy(BENCHMARK_RESULTS)
    change(data)
    return data


@pytest.mark.parametrize(("change", "message"), [
    (lambda data: data["methods"]["stylex"].pop("label"), "methods['stylex'].label is missing (a string)"),
    (lambda data: data.pop("dataset"), "dataset is missing (an object)"),
    (lambda data: data["methods"]["wu"]["attributes"][0].update(channel="30"),
     "methods['wu'].attributes[0].channel must be an integer, got '30'"),
    (lambda data: data["sufficiency"]["curves"]["wu"]["class_level"][0].pop("k"),
     "sufficiency.curves['wu']['class_level'][0].k is missing (an integer)"),
    (lambda data: data["table3"]["rows"][0].update(wu=[0.8]), "table3.rows[0].wu must be an object, got [0.8]"),
    (lambda data: data["fid"]["perturbation"]["wu"].update(large=[]),
     "fid.perturbation['wu']['large'] must be keyed by a shift size"),
    (lambda data: data["fid"].update(label="FID"), "only Inception features give FID"),
    (lambda data: data["generators"]["stylex"].update(step=[1]), "generators['stylex'].step must be a string, "
                                                                 "number, boolean or null, got [1]"),
    (lambda data: data["recovery"]["methods"]["wu"].update(factors="size"),
     "recovery.methods['wu'].factors must be a list, got 'size'"),
    (lambda data: data.update(format="stylex-study"), "format is 'stylex-study', expected 'stylex-benchmark'"),
    (lambda data: data.update(format_version=2), "format_version 2 is not supported"),
])
def test_a_bad_field_is_named_with_the_file(tmp_path, change, message):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(_broken(change)), encoding="utf-8")
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: .*{re.escape(message)}"):
        read_results(path)


def test_inception_features_may_be_called_fid():
    data = _broken(lambda data: data["fid"].update(features="inception", label="FID"))
    assert BenchmarkResults.from_dict(data).fid.is_fid


def test_what_is_not_results_is_refused(tmp_path):
    with pytest.raises(UserError, match="benchmark results: the benchmark results must be a JSON object, got list"):
        BenchmarkResults.from_dict([])
    path = tmp_path / "metrics.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(UserError, match=f"{re.escape(str(path))} is not valid JSON"):
        read_results(path)


# ---- the metric battery (issue 14) ------------------------------------------------------------------------------

MEAN = {"mean": 0.41, "std": 0.2, "ci_low": 0.3753, "ci_high": 0.4447}
VALIDITY_POINT = {"k": 1, "images": 128, "flipped": 7, "confirmed": 6, "fraction": 0.046875, "ci_low": 0.0216,
                  "ci_high": 0.0987, "agreement": 0.8571428571428571}


def _faithful(kept: int) -> dict:
    return {"kept": kept, "images": 128,
            "curves": {"class_level": [{**POINT, "images": kept}], "independent": None, "subset": None}}


# The battery's sections in the layout the metric modules write (/tmp/spec: the contract), one point per k measured
BATTERY = {
    "faithful_sufficiency": {"shift_size": 1.0, "max_k": 10,
                             "judges": {"explained": {"methods": {"wu": _faithful(120)}},
                                        "oracle": {"methods": {"wu": _faithful(118)}}}},
    "validity": {"strategy": "class_level", "shift_size": 1.0,
                 "methods": {"wu": [VALIDITY_POINT],
                             "stylex": [{**VALIDITY_POINT, "flipped": 0, "confirmed": 0, "fraction": 0.0,
                                         "ci_low": 0.0, "ci_high": 0.0291, "agreement": None}]}},
    "cout": {"steps": 20, "strategy": "class_level", "shift_size": 1.0,
             "methods": {"wu": [{"k": 1, **MEAN, "n": 128}, {"k": 10, **MEAN, "n": 127}]}},
    "proximity": {"lpips_mode": "random", "strategy": "class_level", "shift_size": 1.0,
                  "methods": {"wu": [{"k": 1, "l1": MEAN, "lpips": MEAN, "n": 128}]}},
    "off_target": {"strategy": "class_level", "shift_size": 1.0, "min_change": 0.25, "causal": ["size", "spot"],
                   "factors": ["shape", "size", "spot"],
                   "methods": {"wu": [{"k": 1, "n": 128, "off_target": MEAN, "causal_changed": CELL,
                                       "per_factor": {"shape": 0.1, "size": 0.4, "spot": 0.0}}]}},
    "runtime": {"device": "cuda:0", "images": 32,
                "methods": {"wu": {"class_level": {"seconds_per_image": 0.012, "images": 32}},
                            "stylex": {"class_level": {"seconds_per_image": 0.013, "images": 32},
                                       "independent": {"seconds_per_image": 0.51, "images": 32},
                                       "subset": {"seconds_per_image": 2.4, "images": 16}}}},
}


def _with_battery(change=None) -> dict:
    data = copy.deepcopy({**BENCHMARK_RESULTS, **BATTERY})
    if change is not None:
        change(data)
    return data


def test_battery_sections_round_trip_exactly_and_are_typed():
    data = _with_battery()
    results = BenchmarkResults.from_dict(copy.deepcopy(data))
    assert _text(results.to_dict()) == _text(data)
    assert results.faithful_sufficiency.judges["oracle"].methods["wu"].kept == 118
    assert results.faithful_sufficiency.judges["explained"].methods["wu"].curves["class_level"][0].images == 120
    assert results.validity.methods["wu"][0] == ValidityPoint(**VALIDITY_POINT)
    assert results.validity.methods["stylex"][0].agreement is None  # nothing flipped
    assert [point.k for point in results.cout.methods["wu"]] == [1, 10]
    assert results.cout.methods["wu"][1] == CoutPoint(k=10, n=127, **MEAN)
    assert results.proximity.methods["wu"][0].lpips == Mean(**MEAN)
    assert results.off_target.methods["wu"][0].causal_changed == Interval(**CELL)
    assert results.runtime.methods["stylex"]["subset"] == Timing(seconds_per_image=2.4, images=16)


def test_a_run_without_the_battery_has_none_of_it():
    results = BenchmarkResults.from_dict(copy.deepcopy(BENCHMARK_RESULTS))
    assert all(getattr(results, section) is None for section in BATTERY)


def test_battery_points_built_in_code_write_the_metric_layout():
    assert list(CoutPoint(k=1, n=128, **MEAN).to_dict()) == ["k", "mean", "std", "ci_low", "ci_high", "n"]
    assert ValidityPoint(**VALIDITY_POINT).to_dict() == VALIDITY_POINT
    assert list(ValidityPoint(**VALIDITY_POINT).to_dict()) == list(VALIDITY_POINT)


@pytest.mark.parametrize(("change", "message"), [
    (lambda data: data["cout"]["methods"]["wu"][0].pop("mean"), "cout.methods['wu'][0].mean is missing (a number)"),
    (lambda data: data["cout"]["methods"].update(wu={"k": 1}), "cout.methods['wu'] must be a list, got {'k': 1}"),
    (lambda data: data["validity"]["methods"]["wu"][0].update(agreement="high"),
     "validity.methods['wu'][0].agreement must be a number or null, got 'high'"),
    (lambda data: data["faithful_sufficiency"]["judges"]["oracle"]["methods"]["wu"].update(kept="118"),
     "faithful_sufficiency.judges['oracle'].methods['wu'].kept must be an integer, got '118'"),
    (lambda data: data["faithful_sufficiency"]["judges"]["explained"]["methods"]["wu"]["curves"]["class_level"][0]
     .pop("images"),
     "faithful_sufficiency.judges['explained'].methods['wu'].curves['class_level'][0].images is missing"),
    (lambda data: data["proximity"]["methods"]["wu"][0].update(lpips=[0.1]),
     "proximity.methods['wu'][0].lpips must be an object, got [0.1]"),
    (lambda data: data["off_target"]["methods"]["wu"][0].pop("causal_changed"),
     "off_target.methods['wu'][0].causal_changed is missing (an object)"),
    (lambda data: data["off_target"]["methods"]["wu"][0]["per_factor"].update(spot="x"),
     "off_target.methods['wu'][0].per_factor['spot'] must be a number, got 'x'"),
    (lambda data: data["off_target"].update(causal="size"), "off_target.causal must be a list, got 'size'"),
    (lambda data: data["runtime"]["methods"]["stylex"]["subset"].update(seconds_per_image=None),
     "runtime.methods['stylex']['subset'].seconds_per_image must be a number, got null"),
    (lambda data: data["runtime"].pop("device"), "runtime.device is missing (a string)"),
])
def test_a_bad_battery_field_is_named_with_the_file(tmp_path, change, message):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(_with_battery(change)), encoding="utf-8")
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: .*{re.escape(message)}"):
        read_results(path)
