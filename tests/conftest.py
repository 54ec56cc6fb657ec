import shutil
import socket
from pathlib import Path

import pytest

from stylex.classifier import load as load_classifier
from stylex.config import load_config, save_config
from stylex.data import build_dataset
from stylex.model import load_stylex
from stylex.run import RunDir
from stylex.stats import StyleStats, encode_styles
from stylex.train_classifier import train_classifier
from stylex.training import train_stylex

# A real (tiny) run shared by the explanation tests: a classifier good enough to predict both classes, and a
# StylEx trained for a few steps. Same code paths as the GPU presets, sized for CPU.
TINY_RUN_OVERRIDES = ["classifier.epochs=3", "data.num_train=1024", "train.steps=20", "train.checkpoint_every=20",
                      "attfind.num_images=12", "attfind.chunk_images=4", "attfind.render_attributes=2",
                      "attfind.panel_images=3", "attfind.display_size=64"]
# The benchmark on a micro config: the session's tiny run (classifier + StylEx) plus everything the benchmark
# adds itself (the w/o-CST generator, AttFind on both, every method, every metric, the report).
MICRO = [*TINY_RUN_OVERRIDES, "attfind.num_attributes=3", "attfind.render_attributes=2", "evaluation.max_k=3",
         "evaluation.table_k=3", "evaluation.fid_top=2", "evaluation.fid_shift_sizes=1.0,2.0",
         "evaluation.fid_features=classifier", "evaluation.recovery_k=3", "evaluation.probe_steps=30",
         "evaluation.subset_candidates=4", "evaluation.num_images=8", "evaluation.runtime_images=2"]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: weights must come from the local cache only."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """runs/tiny with classifier.pt and checkpoints/stylex.pt (built once per test session)."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = load_config("tiny", TINY_RUN_OVERRIDES)
    save_config(config, run_dir)
    classifier = train_classifier(config, run_dir)
    train_stylex(config, run_dir, classifier)
    return run_dir


@pytest.fixture(scope="session")
def micro_run(tiny_run, tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, report folder) of the micro benchmark on a copy of the tiny run (built once per session)."""
    from evaluation.benchmark import run_benchmark

    run_dir = tmp_path_factory.mktemp("bench") / "tiny"
    shutil.copytree(tiny_run, run_dir)
    report_dir = run_benchmark(load_config("tiny", MICRO), run_dir, progress=False)
    return run_dir, report_dir


@pytest.fixture(scope="session")
def tiny(tiny_run):
    """(model, styles of 5 test images, their StyleStats) from the tiny run."""
    config = load_config(str(tiny_run / "config.json"))
    model = load_stylex(RunDir(tiny_run).checkpoint("stylex"), load_classifier(tiny_run / "classifier.pt"))
    dataset = build_dataset(config.data, "test")
    styles = encode_styles(model, dataset, list(range(5)), progress=False)
    stats = StyleStats.from_styles(model.generator.layout.conv_flatten(styles), {"test": True})
    return model, styles, stats
