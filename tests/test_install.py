"""The suite as an installed wheel, away from the checkout: presets and shipped models must come with it.

The wheel is built from a copy of the sources and installed (without dependencies) into a fresh venv that sees
the suite venv's packages through a .pth line. A .pth line adds the folder to sys.path without running the .pth
files inside it, so the editable install of the checkout stays invisible: if `stylex` imported at all from the
checkout, `stylex.__file__` below would say so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "stylex", "baselines", "evaluation", "studies", "configs",
                "models")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def run(command: list, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv folder, wheel path, an empty working folder, environment) for the installed suite."""
    base = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    # Built from a copy, so that setuptools' build/ and egg-info never land in the checkout.
    source = base / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=SKIP)
        else:
            shutil.copy2(ROOT / name, source / name)
    wheels = base / "wheels"
    run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "--quiet",
         "-w", wheels], base, env)
    (wheel,) = wheels.glob("stylex_suite-*.whl")

    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], base, env)
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, env)
                .stdout.strip())
    (site / "suite_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
        base, env)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return venv, wheel, elsewhere, env


def test_wheel_holds_presets_and_shipped_models(installed):
    _, wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {path.name for path in (ROOT / "configs").glob("*.json")}
    assert {"demo.json", "tiny.json", "fashion-sneaker-boot.json"} <= presets
    assert {f"stylex/configs/{name}" for name in presets} <= names
    for model in ("demo", "fashion-sneaker-boot"):
        for part in ("config.json", "MODEL_CARD.md", "classifier.pt", "oracle.pt", "checkpoints/stylex.pt",
                     "checkpoints/stylex-nocst.pt"):
            assert f"stylex/models/{model}/{part}" in names
    assert "stylex/models/demo/benchmark/probes.pt" in names


def test_installed_cli_finds_presets_and_runs_outside_the_checkout(installed):
    venv, _, elsewhere, env = installed
    stylex = venv / "bin" / "stylex"
    shown = json.loads(run([stylex, "show-config", "--config", "demo"], elsewhere, env).stdout)
    assert shown["name"] == "demo" and shown["evaluation"]["start_from"] == "models/demo"
    listed = run([stylex, "show-config", "--list"], elsewhere, env).stdout.split()
    assert {"demo", "tiny", "fashion-sneaker-boot"} <= set(listed)

    out = elsewhere / "preview.png"
    run([stylex, "preview-data", "--config", "tiny", "--per-class", "2", "--out", out], elsewhere, env)
    assert out.stat().st_size > 0

    # A ./configs folder and a path to a .json file still work, and a local preset wins over a shipped one.
    own = elsewhere / "own-presets"
    (own / "configs").mkdir(parents=True)
    (own / "configs" / "demo.json").write_text(json.dumps({"data": {"num_train": 123}}))
    (own / "mine.json").write_text(json.dumps({"classifier": {"epochs": 2}}))
    local = json.loads(run([stylex, "show-config", "--config", "demo"], own, env).stdout)
    assert local["data"]["num_train"] == 123
    by_path = json.loads(run([stylex, "show-config", "--config", "mine.json"], own, env).stdout)
    assert by_path["name"] == "mine" and by_path["classifier"]["epochs"] == 2


LOAD_SHIPPED = """
import json, sys
import torch
import stylex
from evaluation.benchmark import starting_folder
from stylex.config import load_config
model = stylex.load("models/demo")
images = torch.zeros(2, model.generator.cfg.img_channels, model.generator.cfg.img_resolution,
                     model.generator.cfg.img_resolution)
print(json.dumps({"stylex": stylex.__file__, "start_from": str(starting_folder(load_config("demo"))),
                  "finite": bool(torch.isfinite(model.reconstruct(images)).all()),
                  "editable_finder": any("editable" in name for name in sys.modules)}))
"""


def test_installed_package_uses_its_own_files_and_shipped_models(installed):
    venv, _, elsewhere, env = installed
    report = json.loads(run([venv / "bin" / "python", "-c", LOAD_SHIPPED], elsewhere, env).stdout.strip())
    inside = str(venv.resolve())
    assert report["stylex"].startswith(inside) and not report["stylex"].startswith(str(ROOT) + "/stylex")
    assert report["start_from"].startswith(inside) and report["start_from"].endswith("stylex/models/demo")
    assert report["finite"] and not report["editable_finder"]


PLUGINS_FROM_WHEEL = """
import json, sys
from stylex.cli import COMMAND_PLUGINS, TRAINING_MONITORS, load_plugins
print(json.dumps({group: {name: sys.modules[loaded.__module__].__file__ for name, loaded in load_plugins(group)}
                  for group in (COMMAND_PLUGINS, TRAINING_MONITORS)}))
"""


def test_installed_plugins_add_their_commands_from_the_wheel(installed):
    venv, _, elsewhere, env = installed
    shown = run([venv / "bin" / "stylex", "--help"], elsewhere, env)
    assert shown.stderr == "" and all(f"    {name}" in shown.stdout for name in ("faithfulness", "benchmark", "study"))
    files = json.loads(run([venv / "bin" / "python", "-c", PLUGINS_FROM_WHEEL], elsewhere, env).stdout)
    assert {group: sorted(plugins) for group, plugins in files.items()} == {
        "stylex.commands": ["evaluation", "studies"], "stylex.training_monitors": ["evaluation"]}
    inside = str(venv.resolve())
    assert all(file.startswith(inside) for plugins in files.values() for file in plugins.values()), files
