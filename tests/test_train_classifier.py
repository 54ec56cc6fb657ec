import json

import pytest
import torch

from stylex.classifier import load
from stylex.config import load_config
from stylex.data import build_dataset
from stylex.errors import UserError
from stylex.train_classifier import evaluate, train_classifier

TINY = ["data.resolution=16", "data.num_train=768", "data.num_test=256", "classifier.width=0.25",
        "classifier.epochs=3", "classifier.batch_size=64", "classifier.lr=0.01", "device=cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = load_config("demo", TINY)
    return config, run_dir, train_classifier(config, run_dir)


def test_training_learns_and_saves_everything(trained, capsys):
    config, run_dir, model = trained
    saved = load(run_dir / "classifier.pt")
    test = saved.metrics["test"]
    # 768 tiny images, 3 epochs: well above chance, far from the full demo's >= 97%.
    assert test["accuracy"] > 0.75
    assert test["num_images"] == 256 and sum(map(sum, test["confusion"])) == 256
    assert saved.classes == ["other", "large-spotted"] and saved.resolution == 16 and saved.channels == 3
    assert saved.config["classifier"]["width"] == 0.25
    images = build_dataset(config.data, "test")[0][0][None]
    torch.testing.assert_close(saved(images), model(images))
    assert evaluate(saved, build_dataset(config.data, "test"), torch.device("cpu"))["accuracy"] == test["accuracy"]


def test_same_config_reuses_the_checkpoint(trained, capsys):
    config, run_dir, _ = trained
    before = (run_dir / "classifier.pt").stat().st_mtime_ns
    train_classifier(config, run_dir)
    assert "reusing" in capsys.readouterr().out
    assert (run_dir / "classifier.pt").stat().st_mtime_ns == before


def test_a_different_config_is_refused_without_retrain(trained):
    _, run_dir, _ = trained
    changed = load_config("demo", [*TINY, "classifier.epochs=1"])
    with pytest.raises(UserError, match=r"differs in classifier\.epochs.*--retrain"):
        train_classifier(changed, run_dir)


def test_class_count_mismatch_is_a_clear_error(trained):
    _, _, model = trained
    multi = load_config("demo", [*TINY, "data.dataset=shapes-multi"])
    with pytest.raises(UserError, match=r"classifier has 2 classes .* data has 4"):
        evaluate(model, build_dataset(multi.data, "test"), torch.device("cpu"))


def test_cli_trains_and_writes_the_run_directory(tmp_path, capsys):
    from stylex.cli import main

    overrides = [arg for pair in TINY for arg in ("--set", pair)]
    assert main(["train-classifier", "--config", "demo", "--name", "cli", "--runs-dir", str(tmp_path),
                 *overrides, "--set", "classifier.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "<- predicted" in out
    resolved = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert resolved["name"] == "cli" and resolved["classifier"]["epochs"] == 1
    assert (tmp_path / "cli" / "classifier.pt").is_file()


def test_the_oracle_is_an_independent_classifier_beside_the_explained_one(trained):
    config, run_dir, explained = trained
    oracle = train_classifier(config, run_dir, oracle=True)
    saved = load(run_dir / "oracle.pt")
    assert saved.arch == "plain_cnn" != explained.arch
    assert saved.config["classifier"]["seed"] == config.oracle.seed != config.classifier.seed
    assert saved.metrics["test"]["accuracy"] > 0.75  # a judge worth asking: well above chance on 768 images
    images = build_dataset(config.data, "test")[0][0][None]
    torch.testing.assert_close(saved(images), oracle(images))
    assert (run_dir / "classifier.pt").is_file()  # the explained classifier is left as it was
    same = load_config("demo", [*TINY, "oracle.arch=mobilenet_v2", "oracle.seed=0"])
    with pytest.raises(UserError, match="oracle must differ"):
        train_classifier(same, run_dir, oracle=True)
