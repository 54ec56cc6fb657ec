import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylex.checkpoint import read_checkpoint
from stylex.classifier import Classifier, build_network
from stylex.config import load_config
from stylex.errors import UserError
from stylex.model import load_stylex
from stylex.run import RunDir
from stylex.training import FULL, WARMUP, Trainer, TrainingDiverged, lazy_adam, train_stylex


def tiny_classifier(num_classes=2, resolution=16):
    torch.manual_seed(0)
    names = ["other", "large-spotted"] if num_classes == 2 else [f"c{i}" for i in range(num_classes)]
    return Classifier(build_network("mobilenet_v2", num_classes, resolution, 3, 0.25), names, resolution, 3,
                      "mobilenet_v2", 0.25).eval()


def read_log(run_dir: Path, variant="stylex") -> list[dict]:
    return [json.loads(line) for line in (run_dir / "logs" / f"{variant}.jsonl").read_text().splitlines()]


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_stylex(load_config("tiny", ["train.steps=6"]), straight, tiny_classifier())
    train_stylex(load_config("tiny", ["train.steps=3"]), split, tiny_classifier())
    train_stylex(load_config("tiny", ["train.steps=6"]), split, tiny_classifier(), resume=True)
    uninterrupted = {row["step"]: row for row in read_log(straight)}
    resumed = {row["step"]: row for row in read_log(split)}
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert resumed[step] == uninterrupted[step], f"step {step} differs after resume"
    a, b = read_checkpoint(RunDir(straight).checkpoint("stylex")), read_checkpoint(RunDir(split).checkpoint("stylex"))
    for name, tensor in a["state"]["G_ema"].items():
        torch.testing.assert_close(b["state"]["G_ema"][name], tensor, rtol=0, atol=0)


def test_warmup_switches_phase_at_the_configured_step_and_resumes_exactly_across_it(tmp_path):
    settings = ["train.warmup_steps=3", "train.adv_ramp_steps=2", "train.kl_ramp_steps=4"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_stylex(load_config("tiny", ["train.steps=7", *settings]), straight, tiny_classifier())
    train_stylex(load_config("tiny", ["train.steps=2", *settings]), split, tiny_classifier())  # stops in warm-up
    train_stylex(load_config("tiny", ["train.steps=7", *settings]), split, tiny_classifier(), resume=True)
    rows = {row["step"]: row for row in read_log(straight)}
    assert [rows[step]["phase"] for step in range(1, 8)] == [WARMUP] * 3 + [FULL] * 4
    for step in (1, 2, 3):  # reconstruction only: no discriminator, no classifier term
        assert "d_adv" not in rows[step] and "kl" not in rows[step] and rows[step]["l1"] > 0
    assert [rows[step]["adv_weight"] for step in (4, 5, 6)] == [0.5, 1.0, 1.0]
    assert [rows[step]["kl_weight"] for step in (4, 5, 6, 7)] == [0.25, 0.5, 0.75, 1.0]
    resumed = {row["step"]: row for row in read_log(split)}
    for step in range(3, 8):
        assert resumed[step] == rows[step], f"step {step} differs after resuming across the phase switch"
    a, b = read_checkpoint(RunDir(straight).checkpoint("stylex")), read_checkpoint(RunDir(split).checkpoint("stylex"))
    for name, tensor in a["state"]["E_ema"].items():
        torch.testing.assert_close(b["state"]["E_ema"][name], tensor, rtol=0, atol=0)


def test_low_resolution_regularisation_and_lazy_adam(tmp_path):
    trainer = Trainer(load_config("tiny", ["loss.pl_weight=null"]), tmp_path, tiny_classifier())
    assert trainer.r1_gamma == pytest.approx(0.0002 * 16 ** 2 / 8)  # StyleGAN2-ADA's heuristic
    assert trainer.pl_weight == 0  # off below 128 px, as StyleGAN2-ADA at low resolution
    trainer.step = 5  # past the warm-up
    trainer._set_optimizer_settings()
    lr, betas = lazy_adam(0.002, (0.0, 0.99), 2)
    assert (lr, betas) == (pytest.approx(0.002 * 2 / 3), (0.0, pytest.approx(0.99 ** (2 / 3))))
    assert trainer.opt_D.param_groups[0]["lr"] == pytest.approx(lr)
    assert trainer.opt_G.param_groups[0]["lr"] == 0.002  # no path length, so no lazy correction of G
    trainer.step = 0
    trainer._set_optimizer_settings()
    assert trainer.opt_E.param_groups[0]["betas"] == (0.9, 0.99)


def test_checkpoint_round_trip_and_metrics(tmp_path):
    metrics = train_stylex(load_config("tiny"), tmp_path, tiny_classifier())
    assert set(metrics) >= {"reconstruction_l1", "reconstruction_lpips", "classifier_agreement", "step"}
    assert 0 <= metrics["classifier_agreement"] <= 1
    assert json.loads((tmp_path / "stylex_metrics.json").read_text()) == metrics
    model = load_stylex(RunDir(tmp_path).checkpoint("stylex"), tiny_classifier())
    assert model.cst and model.step == 4
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    first, second = model.reconstruct(images), model.reconstruct(images)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    payload = read_checkpoint(RunDir(tmp_path).checkpoint("stylex"))
    assert payload["layout"]["conv_dim"] == model.generator.layout.conv_dim
    assert set(payload["optimizers"]) == {"opt_G", "opt_E", "opt_D"}
    with pytest.raises(UserError, match="already exists; pass --resume"):
        Trainer(load_config("tiny"), tmp_path, tiny_classifier())


def test_no_cst_builds_an_unconditional_generator(tmp_path):
    train_stylex(load_config("tiny", ["train.cst=false", "train.steps=2"]), tmp_path, tiny_classifier())
    payload = read_checkpoint(RunDir(tmp_path).checkpoint("stylex-nocst"))
    assert payload["networks"]["G"]["c_dim"] == 0 and payload["networks"]["D"]["c_dim"] == 0
    assert not payload["cst"]
    assert all(row.get("kl", 0) == 0 for row in read_log(tmp_path, "stylex-nocst"))
    model = load_stylex(RunDir(tmp_path).checkpoint("stylex-nocst"), tiny_classifier())
    affine_inputs = {m.in_features for n, m in model.generator.named_modules() if n.endswith("affine")}
    assert affine_inputs == {32}  # w_dim only: no classifier condition
    assert model.condition(torch.zeros(1, 3, 16, 16)) is None


def test_reconstruction_loss_goes_down(tmp_path):
    config = load_config("tiny", ["train.steps=120", "train.log_every=1", "train.checkpoint_every=1000",
                                  "train.lpips=off", "train.r1_interval=16", "train.pl_interval=4",
                                  "train.eval_images=8", "train.warmup_steps=60", "train.adv_ramp_steps=30"])
    train_stylex(config, tmp_path, tiny_classifier())
    rows = read_log(tmp_path)

    def mean_l1(selected):
        return sum(r["l1"] for r in selected) / len(selected)

    # measured: about 0.61 at the start, 0.22 at the end of the warm-up, 0.25 over the last steps
    first, end_of_warmup, last = mean_l1(rows[:5]), mean_l1(rows[48:60]), mean_l1(rows[-12:])
    assert end_of_warmup < 0.7 * first, (first, end_of_warmup)
    assert last < 0.7 * first, (first, last)  # still well below the start once the full objective is on


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match=r"classifier has 4 classes .* data has 2"):
        Trainer(load_config("tiny"), tmp_path, tiny_classifier(num_classes=4))
    with pytest.raises(UserError, match="power of two"):
        Trainer(load_config("tiny", ["data.resolution=24"]), tmp_path, tiny_classifier(resolution=24))
    with pytest.raises(UserError, match="no StylEx checkpoint at"):
        Trainer(load_config("tiny"), tmp_path / "empty", tiny_classifier(), resume=True)
    with pytest.raises(UserError, match="divisible"):
        Trainer(load_config("tiny", ["train.accumulate=3"]), tmp_path, tiny_classifier())


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    train_stylex(load_config("tiny", ["train.steps=2"]), tmp_path, tiny_classifier())
    saved = RunDir(tmp_path).checkpoint("stylex").read_bytes()
    config = load_config("tiny", ["train.steps=4"])
    trainer = Trainer(config, tmp_path, tiny_classifier(), resume=True)
    with torch.no_grad():
        next(trainer.G.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"became nan at step 3.*last good checkpoint \(step 2\)"):
        trainer.train()
    assert RunDir(tmp_path).checkpoint("stylex").read_bytes() == saved


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_ddp_smoke_run(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is not installed next to this Python"
    runs = tmp_path / "runs"
    tiny_classifier().save(runs / "tiny" / "classifier.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [torchrun, "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
         "-m", "stylex", "train", "--config", "tiny", "--runs-dir", str(runs), "--set", "train.steps=2"],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert RunDir(runs / "tiny").checkpoint("stylex").is_file()
    assert "classifier agreement" in result.stdout


def test_public_loader_reads_a_run_directory(tiny_run):
    import stylex

    model = stylex.load(tiny_run)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    assert model.reconstruct(images).shape == images.shape
    assert len(model.styles(images)) == model.generator.layout.num_layers
    assert model.classifier.classes == ["other", "large-spotted"] and model.cst
    with pytest.raises(UserError, match="variant must be one of"):
        stylex.load(tiny_run, variant="wu")
    with pytest.raises(UserError, match="no StylEx checkpoint"):
        stylex.load(tiny_run, variant="stylex-nocst")
    with pytest.raises(UserError, match="no folder"):
        stylex.load(tiny_run / "missing")

