import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from evaluation import faithfulness, recovery
from stylex.checkpoint import build_networks, network_configs
from stylex.config import DataConfig, load_config
from stylex.data import build_dataset, to_float
from stylex.data.shapes import FACTOR_NAMES
from stylex.errors import UserError
from stylex.losses import build_lpips
from stylex.model import StylexModel

FIDELITY_KEYS = {"shape", "spot", "size", "size_mae", "pos_x_mae", "pos_y_mae", "background_mae", "hue_error",
                 "shape_iou"}


@pytest.fixture(scope="module")
def shapes16():
    """Test-split shapes at the tiny run's resolution (16 px), with factors."""
    return build_dataset(load_config("tiny", ["data.num_test=256"]).data, "test")


@pytest.fixture(scope="module")
def probes(shapes16):
    """Briefly trained factor probes: fidelity of an image set with itself does not depend on their quality."""
    return recovery.train_probes(shapes16, recovery.ProbeSettings(steps=150, batch_size=32, width=8), progress=False)


class MeanSign(nn.Module):
    """A classifier whose decision is the sign of the mean pixel: class 1 iff the mean is positive."""

    def forward(self, images):
        mean = images.flatten(1).mean(dim=1, keepdim=True)
        return torch.cat([-mean, mean], dim=1)


def test_input_dependence_collapse_identity_and_scale():
    inputs = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert faithfulness.input_dependence(inputs, inputs[:1].expand(6, -1, -1, -1)) == 0.0
    assert faithfulness.input_dependence(inputs, inputs.clone()) == pytest.approx(1.0)
    assert faithfulness.input_dependence(inputs, 0.5 * inputs) == pytest.approx(0.5)
    assert faithfulness.input_dependence(inputs.numpy(), (inputs + 3.0).numpy()) == pytest.approx(1.0)
    with pytest.raises(UserError, match="at least 2"):
        faithfulness.input_dependence(inputs[:1], inputs[:1])
    with pytest.raises(UserError, match="at least 2"):
        faithfulness.input_dependence(inputs, inputs[:4])
    with pytest.raises(UserError, match="all inputs are equal"):
        faithfulness.input_dependence(torch.zeros(3, 5), inputs[:3])


def test_agreement_counts_kept_decisions():
    images = torch.rand(10, 3, 8, 8) * 0.5 + 0.1  # every mean positive: class 1
    classifier = MeanSign()
    assert faithfulness.agreement(classifier, images, images.clone()) == 1.0
    flipped = images.clone()
    flipped[:3] = -flipped[:3]
    assert faithfulness.agreement(classifier, images, flipped, batch_size=4) == pytest.approx(0.7)
    with pytest.raises(UserError, match="paired"):
        faithfulness.agreement(classifier, images, images[:5])


def test_swapped_condition_hands_g_another_class():
    two = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    assert torch.equal(faithfulness.swapped_condition(two), torch.tensor([[0.1, 0.9], [0.8, 0.2]]))
    three = torch.tensor([[0.7, 0.2, 0.1]])
    swapped = faithfulness.swapped_condition(three)
    assert torch.equal(swapped, torch.tensor([[0.1, 0.7, 0.2]]))
    assert (swapped.argmax(dim=1) != three.argmax(dim=1)).all()


def test_foreground_masks_on_real_shapes():
    dataset = build_dataset(DataConfig(dataset="shapes", resolution=32, num_train=8, num_test=64), "test")
    images = to_float(dataset.images)
    masks = faithfulness.foreground_masks(images)
    assert masks.shape == (64, 32, 32) and masks.dtype == torch.bool
    assert torch.equal(faithfulness.mask_iou(masks, masks), torch.ones(64, dtype=torch.float64))
    blank = images[:, :, :1, :1].expand_as(images).clone()  # the top-left (background) colour everywhere
    blank_masks = faithfulness.foreground_masks(blank)
    assert not blank_masks.any()
    assert float(faithfulness.mask_iou(masks, blank_masks).max()) < 0.05
    assert torch.equal(faithfulness.mask_iou(blank_masks, blank_masks), torch.ones(64, dtype=torch.float64))
    # mask area against the shape's true area from its size (circumradius) and kind: circle pi r^2, square 2 r^2,
    # triangle 3 sqrt(3) / 4 r^2 (a spot as dark as the background leaves a hole of up to 12% of a circle)
    area = masks.flatten(1).sum(dim=1).double()
    radius = dataset.factors[:, FACTOR_NAMES.index("size")].double() * 32
    kind = dataset.factors[:, FACTOR_NAMES.index("shape")].long()
    true_area = torch.tensor([math.pi, 2.0, 3 * math.sqrt(3) / 4], dtype=torch.float64)[kind] * radius**2
    assert np.corrcoef(area.numpy(), true_area.numpy())[0, 1] > 0.95
    assert ((area / true_area - 1).abs() < 0.3).all()


def test_factor_fidelity_of_images_with_themselves_is_perfect(probes, shapes16):
    images = to_float(shapes16.images[:48])
    same = faithfulness.factor_fidelity(probes, images, images.clone())
    assert set(same) == FIDELITY_KEYS
    assert all(same[key] == 1.0 for key in ("shape", "spot", "size", "shape_iou"))
    assert all(same[key] == 0.0 for key in FIDELITY_KEYS - {"shape", "spot", "size", "shape_iou"})
    other = faithfulness.factor_fidelity(probes, images, images.roll(1, dims=0))
    assert other["shape_iou"] < 0.5 and other["background_mae"] > 0.05 and other["size_mae"] > 0.01
    with pytest.raises(UserError, match="paired"):
        faithfulness.factor_fidelity(probes, images, images[:4])


def _check_ranges(metrics: dict) -> None:
    json.dumps(metrics)
    assert all(value is not None and math.isfinite(value) for value in metrics.values()), metrics
    for key, value in metrics.items():
        if "agreement" in key or key in {f"factor_{k}" for k in ("shape", "spot", "size", "shape_iou")}:
            assert 0.0 <= value <= 1.0, key
        else:
            assert value >= 0.0, key


def test_measure_on_the_tiny_cst_model(tiny, shapes16, probes):
    model = tiny[0]
    images = to_float(shapes16.images[:24])
    lpips = build_lpips("random")
    state = torch.get_rng_state()
    metrics = faithfulness.measure(model, images, oracle=model.classifier, probes=probes, lpips=lpips, samples=12,
                                   batch_size=10)
    assert torch.equal(torch.get_rng_state(), state)
    expected = {"num_images", "reconstruction_l1", "reconstruction_lpips", "explained_agreement",
                "oracle_agreement", "input_dependence_pixels", "input_dependence_features",
                "swapped_condition_agreement", "sample_frechet_classifier"} | {f"factor_{k}" for k in FIDELITY_KEYS}
    assert set(metrics) == expected
    _check_ranges(metrics)
    assert metrics["num_images"] == 24
    assert metrics["oracle_agreement"] == metrics["explained_agreement"]  # the oracle is the explained classifier
    with torch.no_grad():
        recs = model.reconstruct(images)
    assert metrics["reconstruction_l1"] == pytest.approx(float((recs - images).abs().mean()), rel=1e-4)
    again = faithfulness.measure(model, images, samples=12, batch_size=7)
    assert again["sample_frechet_classifier"] == pytest.approx(metrics["sample_frechet_classifier"], rel=1e-6)
    assert again["explained_agreement"] == metrics["explained_agreement"]
    assert "oracle_agreement" not in again and "factor_shape" not in again and "reconstruction_lpips" not in again


def test_measure_on_a_no_cst_model_leaves_train_flags_alone(tiny, shapes16):
    config = load_config("tiny")
    torch.manual_seed(0)
    generator, encoder, _ = build_networks(network_configs(config, 16, 3, 2, cst=False))
    model = StylexModel(generator, encoder, tiny[0].classifier, cst=False, step=0, metrics={})
    w_avg = generator.mapping.w_avg.clone()
    metrics = faithfulness.measure(model, to_float(shapes16.images[:8]), samples=4)
    assert "swapped_condition_agreement" not in metrics and "sample_frechet_classifier" in metrics
    _check_ranges(metrics)
    assert generator.training and encoder.training and not tiny[0].classifier.training
    assert torch.equal(generator.mapping.w_avg, w_avg)


class Shortcut(nn.Module):
    """The classifier shortcut: one template image per class, chosen from the condition alone."""

    def __init__(self, templates):
        super().__init__()
        self.register_buffer("templates", templates)
        self.cfg = SimpleNamespace(z_dim=4)

    def forward(self, w, cond, noise_mode="random"):
        return self.templates[cond.argmax(dim=1)]

    def mapping(self, z, update_w_avg=None):
        return z


def test_the_shortcut_passes_agreement_but_not_the_condition_swap(tiny, shapes16):
    classifier = tiny[0].classifier
    images = to_float(shapes16.images[:64])
    with torch.no_grad():
        predicted = classifier(images).argmax(dim=1)
    assert set(predicted.tolist()) == {0, 1}
    templates = torch.stack([images[(predicted == c).nonzero()[0, 0]] for c in (0, 1)])
    model = StylexModel(Shortcut(templates), nn.Identity(), classifier, cst=True, step=0, metrics={})
    metrics = faithfulness.measure(model, images, oracle=classifier)
    assert metrics["explained_agreement"] == 1.0
    assert metrics["swapped_condition_agreement"] == 0.0
    assert metrics["input_dependence_pixels"] < 0.8
    assert "input_dependence_pixels" in " ".join(faithfulness.gate_failures(metrics))


def test_gate_failures_lists_failed_present_gates():
    metrics = {"explained_agreement": 1.0, "oracle_agreement": 0.9, "input_dependence_pixels": 0.05,
               "factor_shape": 0.95, "factor_spot": float("nan"), "factor_size": None, "reconstruction_l1": 9.0}
    failures = faithfulness.gate_failures(metrics)
    assert failures == ["oracle_agreement 0.900 < 0.95", "input_dependence_pixels 0.050 < 0.8",
                        "factor_spot nan < 0.9"]
    assert faithfulness.gate_failures({}) == []
    assert faithfulness.gate_failures({"input_dependence_pixels": 0.8}) == []


def test_reconstruction_grid_shape_and_range():
    images = torch.rand(10, 3, 16, 16) * 2 - 1
    grid = faithfulness.reconstruction_grid(images, {"stylex": -images, "nocst": images * 3})
    assert grid.shape == (3, 3 * 18 + 2, 8 * 18 + 2)
    assert float(grid.min()) >= 0.0 and float(grid.max()) <= 1.0
    gray = faithfulness.reconstruction_grid(images[:3, :1], {"a": images[:3, :1]})
    assert gray.shape == (3, 2 * 18 + 2, 3 * 18 + 2)
    with pytest.raises(UserError, match="'bad'"):
        faithfulness.reconstruction_grid(images, {"bad": images[:, :, :8]})



def test_a_short_warmup_run_reconstructs_different_inputs_differently(tmp_path):
    """The reconstruction warm-up learns from the input: after 150 tiny steps the reconstructions of different
    images differ about as much as the images do (a collapsed, condition-only generator would be near 0)."""
    from stylex.classifier import Classifier, build_network
    from stylex.model import load_stylex
    from stylex.training import train_stylex

    config = load_config("tiny", ["train.steps=150", "train.warmup_steps=150", "train.checkpoint_every=1000",
                                  "train.lpips=off"])
    torch.manual_seed(0)
    classifier = Classifier(build_network("mobilenet_v2", 2, 16, 3, 0.25), ["other", "large-spotted"], 16, 3,
                            "mobilenet_v2", 0.25).eval()
    train_stylex(config, tmp_path, classifier)
    model = load_stylex(tmp_path / "checkpoints" / "stylex.pt", classifier)
    images = torch.stack([build_dataset(config.data, "test")[i][0] for i in range(32)])
    metrics = faithfulness.measure(model, images)
    assert metrics["input_dependence_pixels"] > 0.6, metrics  # 0.72 measured; a condition-only generator: ~0
    assert metrics["reconstruction_l1"] < 0.3, metrics
