import json
from html.parser import HTMLParser

from conftest import MICRO
from PIL import Image

from evaluation.methods import registered
from stylex.cli import main
from stylex.config import load_config

REPORT_FILES = ["index.html", "README.md", "metrics.json", "table3.tex", "sufficiency.png", "fid.png",
                "reconstructions.png"]


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_micro_benchmark_writes_every_report_file(micro_run):
    run_dir, report_dir = micro_run
    for name in REPORT_FILES:
        assert (report_dir / name).is_file(), name
    metrics = json.loads((report_dir / "metrics.json").read_text())
    methods = {method.key: method for method in registered()}
    assert list(metrics["methods"]) == list(methods)  # every registered method, in table order
    assert {"wu", "stylex-nocst", "stylex"} <= set(methods)
    assert (run_dir / "checkpoints" / "stylex-nocst.pt").is_file()
    for key in methods:
        assert (run_dir / "attributes" / f"{key}.json").is_file()
        curves = metrics["sufficiency"]["curves"][key]
        assert [row["k"] for row in curves["class_level"]] == [1, 2, 3]
        assert all(row["images"] == 8 for row in curves["class_level"])
        assert (curves["independent"] is None) == (not methods[key].image_level)
        assert metrics["methods"][key]["label"] == methods[key].label
        for row in metrics["methods"][key]["attributes"]:
            for name in ("panel", "flicker", "sweep"):
                assert (report_dir / row[name]).is_file()
    assert metrics["fid"]["label"] == "classifier-feature Frechet distance"
    assert set(metrics["fid"]["perturbation"]["stylex"]) == {"1.0", "2.0"}
    assert [r["i"] for r in metrics["fid"]["perturbation"]["wu"]["2.0"]] == [1, 2]
    assert set(metrics["recovery"]["methods"]) == set(methods)
    cout = metrics["cout"]
    assert set(cout["methods"]) == set(methods) and cout["steps"] == 20
    for rows in cout["methods"].values():
        assert [row["k"] for row in rows] == [1, 2, 3] and all(row["n"] == 8 for row in rows)
        assert all(-1.0 <= row["mean"] <= 1.0 for row in rows)
    proximity = metrics["proximity"]["methods"]
    assert set(proximity) == set(methods)
    for rows in proximity.values():
        assert [row["k"] for row in rows] == [1, 2, 3] and all(row["n"] == 8 for row in rows)
        assert all(row["l1"]["mean"] >= 0 and row["lpips"]["mean"] >= 0 for row in rows)
    assert metrics["table3"]["rows"][0]["dataset"] == "shapes"
    assert (run_dir / "oracle.pt").is_file() and metrics["classifier"]["oracle_arch"] == "plain_cnn"
    for variant in ("stylex", "stylex-nocst"):
        generator = metrics["generators"][variant]
        for key in ("oracle_agreement", "explained_agreement", "input_dependence_pixels", "factor_shape",
                    "factor_shape_iou", "sample_frechet_classifier"):
            assert 0 <= generator[key] < float("inf"), (variant, key)
        assert isinstance(generator["gate_failures"], list)
        assert ("swapped_condition_agreement" in generator) == (variant == "stylex")
        assert json.loads((run_dir / "faithfulness" / f"{variant}.json").read_text())["step"] == generator["step"]
    readme = (report_dir / "README.md").read_text()
    assert "oracle agreement" in readme and "can be met through the condition" in readme
    with Image.open(report_dir / "reconstructions.png") as grid:  # real | StylEx | w/o CST, 8 images of 16 px
        assert grid.height == 3 * 16 + 4 * 2 and grid.width == 8 * 16 + 9 * 2
    parser = ImageSources()
    parser.feed((report_dir / "index.html").read_text())
    assert parser.sources and all((report_dir / src).is_file() for src in parser.sources)
    with Image.open(report_dir / "sufficiency.png") as image:
        assert image.width > 200 and image.height > 150


def test_rerun_reuses_every_stage(micro_run, capsys):
    run_dir, _report_dir = micro_run
    stages = sorted(p.name for p in (run_dir / "benchmark").glob("*.json"))
    before = {name: (run_dir / "benchmark" / name).stat().st_mtime_ns for name in stages}
    (run_dir / "faithfulness" / "reconstructions.png").unlink()  # drawn again without measuring again
    code = main(["benchmark", "--config", "tiny", "--name", "tiny", "--runs-dir", str(run_dir.parent),
                 *[arg for pair in MICRO for arg in ("--set", pair)]])
    assert code == 0
    out = capsys.readouterr().out
    assert "Table 3 (shapes" in out and "report:" in out
    after = {name: (run_dir / "benchmark" / name).stat().st_mtime_ns for name in stages}
    assert before == after  # nothing recomputed: every stage's key still matched
    assert (run_dir / "faithfulness" / "reconstructions.png").is_file()


def test_a_foreign_starting_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    config = load_config("tiny", [*MICRO, "classifier.epochs=7"])
    (folder / "config.json").write_text(config.to_json())
    code = main(["benchmark", "--config", "tiny", "--runs-dir", str(tmp_path / "runs"),
                 "--set", f"evaluation.start_from={folder}", *[a for p in MICRO for a in ("--set", p)]])
    assert code == 2
    err = capsys.readouterr().err
    assert "classifier.epochs" in err and "evaluation.start_from=" in err


def test_faithfulness_command_measures_both_generators(micro_run, capsys):
    run_dir, _ = micro_run
    assert main(["faithfulness", "--run", str(run_dir), "--set", "train.eval_images=16"]) == 0
    out = capsys.readouterr().out
    assert "stylex (step" in out and "stylex-nocst (step" in out and "oracle agr." in out and "gates:" in out
    measured = json.loads((run_dir / "faithfulness" / "stylex.json").read_text())
    assert measured["num_images"] == 16 and "factor_spot" in measured
    assert main(["faithfulness", "--run", str(run_dir / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
