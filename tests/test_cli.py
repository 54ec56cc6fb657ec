import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
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


# ---- a read-only runs folder ----------------------------------------------------------------------------------

def _read_only_runner(tmp_path):
    """(folder to work in, run(argv) -> (exit code, stderr)). chmod does not stop root from writing, so under root
    the commands run as `nobody` through setpriv, in a folder that user can read but not write."""
    if os.geteuid() != 0:
        def run_in_process(argv):
            with contextlib.redirect_stderr(io.StringIO()) as err:
                code = main(argv)
            return code, err.getvalue()

        return tmp_path, run_in_process
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: no way to make a folder read-only for the test")
    base = Path(tempfile.mkdtemp(prefix="stylex-read-only-"))
    base.chmod(0o755)
    writable = base / "scratch"  # matplotlib's cache and HOME: writable, so they add no warnings of their own
    writable.mkdir(mode=0o777)
    writable.chmod(0o777)
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(writable), "MPLCONFIGDIR": str(writable)}
    probe = subprocess.run([*drop, sys.executable, "-c", "import stylex.cli"], capture_output=True, env=env)
    if probe.returncode != 0:
        shutil.rmtree(base)
        pytest.skip(f"the suite cannot be imported as an unprivileged user: {probe.stderr.decode()[-200:]}")

    def run_unprivileged(argv):
        result = subprocess.run([*drop, sys.executable, "-m", "stylex", *argv], capture_output=True, text=True,
                                cwd=base, env=env, timeout=600)
        return result.returncode, result.stderr

    return base, run_unprivileged


@pytest.fixture
def read_only_place(tmp_path):
    base, run = _read_only_runner(tmp_path)
    yield base, run
    for folder in [base, *base.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    if base != tmp_path:
        shutil.rmtree(base)


def _make_read_only(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    root.chmod(0o555)


@pytest.mark.parametrize("command", ["train-classifier", "preview-data", "benchmark"])
def test_read_only_runs_folder_is_one_error_line(read_only_place, command):
    base, run = read_only_place
    runs = base / "runs"
    runs.mkdir()
    _make_read_only(runs)
    code, err = run([command, "--config", "tiny", "--runs-dir", str(runs)])
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("INFO ")]  # e.g. matplotlib's cache
    assert lines == [f"error: cannot write {runs / 'tiny'}: Permission denied"]
    assert list(runs.iterdir()) == []


def test_attfind_on_a_read_only_run_is_one_error_line(read_only_place, tiny_run):
    """The first write of attfind is torch.save (stats.pt), which reports an unopenable file as RuntimeError."""
    base, run = read_only_place
    run_dir = base / "runs" / "tiny"
    shutil.copytree(tiny_run, run_dir)
    _make_read_only(base / "runs")
    before = sorted(p.name for p in run_dir.rglob("*"))
    code, err = run(["attfind", "--run", str(run_dir), "--device", "cpu"])
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()  # the encoding progress bar comes first: attfind worked until its first write
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and errors[0].startswith(f"error: cannot write {run_dir}/"), err
    assert errors[0].endswith("Permission denied")
    assert sorted(p.name for p in run_dir.rglob("*")) == before
