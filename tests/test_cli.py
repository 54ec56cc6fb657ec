import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stylex.classifier import Classifier, build_network
from stylex.cli import main

SUBCOMMANDS = ["train-classifier", "eval-classifier", "preview-data", "show-config"]


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


def test_installed_console_script_runs():
    script = shutil.which("stylex", path=str(Path(sys.executable).parent))
    assert script, "the `stylex` console script is not installed next to this Python"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and all(name in result.stdout for name in SUBCOMMANDS)


def run_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_missing_dataset_path(capsys, tmp_path):
    err = run_error(capsys, ["preview-data", "--config", "fashion-sneaker-boot", "--root", str(tmp_path / "none"),
                             "--runs-dir", str(tmp_path)])
    assert "dataset-fashion-mnist" in err


def test_unknown_class_name(capsys, tmp_path):
    err = run_error(capsys, ["preview-data", "--config", "fashion-sneaker-boot", "--set",
                             "data.classes=sneaker,boots", "--runs-dir", str(tmp_path)])
    assert "boots" in err and "ankle-boot" in err


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "images").mkdir()
    err = run_error(capsys, ["preview-data", "--set", "data.dataset=folder", "--root", str(tmp_path / "images"),
                             "--runs-dir", str(tmp_path)])
    assert str(tmp_path / "images") in err


def test_wrong_image_size(capsys, tmp_path):
    model = Classifier(build_network("mobilenet_v2", 2, 16, 3, 0.25), ["other", "large-spotted"], 16, 3,
                       "mobilenet_v2", 0.25)
    model.save(tmp_path / "small.pt")
    err = run_error(capsys, ["eval-classifier", "--classifier", str(tmp_path / "small.pt"), "--set",
                             "data.num_test=8", "--runs-dir", str(tmp_path), "--device", "cpu"])
    assert "[B, 3, 16, 16]" in err and "[8, 3, 32, 32]" in err


def test_unknown_preset_and_key(capsys, tmp_path):
    assert "no config preset" in run_error(capsys, ["show-config", "--config", "nope"])
    assert "unknown config key" in run_error(capsys, ["show-config", "--set", "data.size=3"])


def test_preview_writes_a_grid(tmp_path, capsys):
    assert main(["preview-data", "--config", "demo", "--set", "data.num_train=64", "--runs-dir", str(tmp_path),
                 "--per-class", "4"]) == 0
    from PIL import Image

    grid = Image.open(tmp_path / "demo" / "data_preview_train.png")
    assert grid.height == 2 * 66 and grid.width > 4 * 66


def test_show_config_prints_resolved_json(capsys):
    assert main(["show-config", "--config", "demo", "--set", "classifier.epochs=2"]) == 0
    assert '"epochs": 2' in capsys.readouterr().out
