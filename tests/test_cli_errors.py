"""Every bad input through the real `stylex` entry point: exit 2, one `error:` line that names the problem, no
traceback, and nothing created or changed on disk. Cases fail in validation, before any data or training work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylex.cli import main

# (id, argv, words the error line must contain); RUNS, FILE, IMAGE, FOLDER are replaced by paths in tmp_path
CASES = [
    ("classifier-batch-0", ["train-classifier", "--set", "classifier.batch_size=0"], ["classifier.batch_size", "0"]),
    ("classifier-epochs-neg", ["train-classifier", "--set", "classifier.epochs=-1"], ["classifier.epochs", ">= 1"]),
    ("classifier-lr-nan", ["train-classifier", "--set", "classifier.lr=NaN"], ["classifier.lr", "finite", "nan"]),
    ("classifier-width-0", ["train-classifier", "--set", "classifier.width=0"], ["classifier.width", "> 0"]),
    ("classifier-arch", ["train-classifier", "--set", "classifier.arch=vgg"], ["classifier.arch", "'vgg'"]),
    ("resolution-33-classifier", ["train-classifier", "--set", "data.resolution=33"], ["data.resolution", "33"]),
    ("dataset-name", ["train-classifier", "--set", "data.dataset=imagenet"], ["data.dataset", "imagenet"]),
    ("device-name", ["train-classifier", "--device", "gpu"], ["device", "'gpu'"]),
    ("run-name-escapes", ["train-classifier", "--name", "../elsewhere"], ["name", "../elsewhere"]),
    ("checkpoint-every-0", ["train", "--set", "train.checkpoint_every=0"], ["train.checkpoint_every", ">= 1"]),
    ("accumulate-0", ["train", "--set", "train.accumulate=0"], ["train.accumulate", ">= 1"]),
    ("accumulate-3", ["train", "--set", "train.accumulate=3"], ["train.accumulate", "divisible"]),
    ("train-lr-neg", ["train", "--set", "train.lr=-1"], ["train.lr", "> 0", "-1"]),
    ("train-steps-neg", ["train", "--set", "train.steps=-5"], ["train.steps", "-5"]),
    ("train-steps-0", ["train", "--set", "train.steps=0"], ["train.steps", ">= 1", "0"]),
    ("train-beta2", ["train", "--set", "train.beta2=1"], ["train.beta2", "[0, 1)"]),
    ("resolution-33-train", ["train", "--set", "data.resolution=33"], ["data.resolution", "power of two"]),
    ("train-without-classifier", ["train"], ["classifier.pt", "train-classifier"]),
    ("benchmark-table-k", ["benchmark", "--set", "evaluation.table_k=20"], ["evaluation.table_k", "20"]),
    ("benchmark-shift-inf", ["benchmark", "--set", "attfind.shift_size=Infinity"], ["attfind.shift_size", "inf"]),
    ("loss-weight", ["show-config", "--set", "loss.kl=-1"], ["loss.kl", ">= 0"]),
    ("test-fraction", ["preview-data", "--set", "data.test_fraction=1.5"], ["data.test_fraction", "1.5"]),
    ("eval-num-test", ["eval-classifier", "--set", "data.num_test=0"], ["data.num_test", ">= 1"]),
    ("unknown-key", ["show-config", "--set", "train.step=3"], ["train.step", "unknown config key"]),
    ("runs-folder-is-a-file", ["train-classifier", "--runs-dir", "FILE"], ["cannot write", "FILE"]),
    ("preview-runs-folder-is-a-file", ["preview-data", "--runs-dir", "FILE"], ["FILE", "not a folder"]),
    ("benchmark-runs-folder-is-a-file", ["benchmark", "--runs-dir", "FILE"], ["cannot write", "FILE"]),
    ("preview-out-is-a-folder", ["preview-data", "--out", "FOLDER"], ["--out", "FOLDER", "is a folder"]),
    ("preview-out-no-image-suffix", ["preview-data", "--out", "grid.txt"], ["--out", ".png", "grid.txt"]),
    ("fashion-root-missing", ["train-classifier", "--set", "data.dataset=fashion-mnist", "--set",
                              "data.classes=sneaker,ankle-boot", "--root", "nowhere"], ["nowhere"]),
    ("attfind-no-run", ["attfind", "--run", "RUNS/none"], ["not a run directory"]),
    ("faithfulness-no-run", ["faithfulness", "--run", "RUNS/none"], ["not a run directory"]),
    ("explain-out-is-a-file", ["explain", "--run", "RUNS/none", "--image", "IMAGE", "--out", "FILE"],
     ["--out", "FILE", "is a file"]),
    ("explain-no-image", ["explain", "--run", "RUNS/none", "--image", "missing.png"], ["no image file", "missing.png"]),
]
if torch.cuda.is_available():
    CASES = [c for c in CASES if c[0] != "absent-gpu"]
else:
    CASES.append(("absent-gpu", ["train-classifier", "--device", "cuda"], ["cuda", "--device cpu"]))

# argparse refuses these itself: exit 2 with a usage line, then `stylex ...: error: argument OPTION: ...`
ARGPARSE_CASES = [
    ("explain-attributes-neg", ["explain", "--run", "RUNS/none", "--image", "IMAGE", "--attributes", "-3"],
     ["--attributes", "integer >= 1", "-3"]),
    ("explain-attributes-0", ["explain", "--run", "RUNS/none", "--image", "IMAGE", "--attributes", "0"],
     ["--attributes", "integer >= 1"]),
    ("preview-per-class-0", ["preview-data", "--per-class", "0"], ["--per-class", "integer >= 1"]),
    ("preview-per-class-word", ["preview-data", "--per-class", "many"], ["--per-class", "'many'"]),
]

CONFIG_COMMANDS = {"train-classifier", "train", "benchmark", "preview-data", "eval-classifier", "show-config"}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """tmp_path as the working directory, with a file, an image and a folder for the cases to point at."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # explain checks arguments before reading it
    (tmp_path / "folder").mkdir()
    return tmp_path


def expand(argv: list[str], root: Path) -> list[str]:
    names = {"RUNS": str(root / "runs"), "FILE": str(root / "a-file"), "IMAGE": str(root / "image.png"),
             "FOLDER": str(root / "folder")}
    out = [names.get(a, a.replace("RUNS/", names["RUNS"] + "/")) for a in argv]
    if argv[0] in CONFIG_COMMANDS:
        out += ["--config", "tiny"]
        if "--runs-dir" not in argv:
            out += ["--runs-dir", names["RUNS"]]
    return out


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, size and modification time."""
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def words_in(text: str, words: list[str], root: Path) -> None:
    for word in words:
        expected = {"FILE": str(root / "a-file"), "FOLDER": str(root / "folder")}.get(word, word)
        assert expected in text, f"{expected!r} not in {text!r}"


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_changes_nothing(workspace, capsys, argv, words):
    before = snapshot(workspace)
    code = main(expand(argv, workspace))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    words_in(lines[0], words, workspace)
    assert snapshot(workspace) == before, "a failed command left something on disk"


@pytest.mark.parametrize("argv, words", [c[1:] for c in ARGPARSE_CASES], ids=[c[0] for c in ARGPARSE_CASES])
def test_bad_option_is_refused_by_argparse_naming_the_option(workspace, capsys, argv, words):
    before = snapshot(workspace)
    with pytest.raises(SystemExit) as exit_info:
        main(expand(argv, workspace))
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    error = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(error) == 1 and "Traceback" not in captured.err
    words_in(error[0], words, workspace)
    assert snapshot(workspace) == before


def test_a_real_process_prints_one_line_and_no_traceback(workspace):
    """The same through `python -m stylex` (what the console script runs): logging, exit code and all."""
    before = snapshot(workspace)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "stylex", *expand(["train-classifier", "--set",
                                                                       "classifier.batch_size=0"], workspace)],
                            capture_output=True, text=True, timeout=300, cwd=workspace, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: classifier.batch_size must be an integer >= 1, got 0"]
    assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(workspace) == before
