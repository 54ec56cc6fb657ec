import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import pytorch_fid.inception
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from evaluation.fid import (
    CLASSIFIER_LABEL,
    FID_LABEL,
    RANDOM_FID_LABEL,
    FrechetStats,
    InceptionPool3,
    _fid_inception_architecture,
    build_extractor,
    classifier_extractor,
    distance_to_reference,
    frechet_distance,
    inception_extractor,
    reference_statistics,
)
from stylex.artifacts import fingerprint
from stylex.classifier import Classifier, build_network
from stylex.errors import UserError


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache. Only TORCH_HOME is set: torch.hub.set_dir would pin the folder for the rest of
    the session (restoring it pins the old path too), hiding other tests' TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert Path(torch.hub.get_dir()) == tmp_path / "hub"
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def random_inception():
    return inception_extractor("cpu", weights="random")


def images(n: int, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=generator) * 2 - 1


def small_classifier(arch: str = "mobilenet_v2") -> Classifier:
    torch.manual_seed(0)
    net = build_network(arch, num_classes=2, resolution=16, channels=3, width=0.25)
    return Classifier(net, ["a", "b"], 16, 3, arch=arch, width=0.25)


def test_random_inception_fid_is_zero_against_itself_and_positive_for_another_set(random_inception, no_network):
    assert random_inception.label == RANDOM_FID_LABEL and random_inception.fingerprint == "inception-random-seed0"
    real = images(4)
    features = random_inception.features(real, batch_size=3)
    assert features.shape == (4, 2048) and features.dtype == np.float64
    reference = FrechetStats.from_features(features)
    assert abs(frechet_distance(reference, reference)) < 1e-6
    inverted = distance_to_reference(random_inception, reference, -real)
    assert inverted > 1e-3


def test_random_inception_is_deterministic_and_leaves_the_global_rng_alone(random_inception):
    state = torch.get_rng_state()
    again = inception_extractor("cpu", weights="random")
    assert torch.equal(torch.get_rng_state(), state)
    for (name, ours), theirs in zip(random_inception.network.state_dict().items(),
                                    again.network.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name


def test_inception_pool3_matches_pytorch_fid_inceptionv3(monkeypatch):
    """Our [-1, 1] pool3 network equals pytorch-fid's InceptionV3 on the same [0, 1] images and weights."""
    torch.manual_seed(0)
    inception = _fid_inception_architecture()
    # pytorch-fid's builder would download the real weights; hand it the same network instead.
    monkeypatch.setattr(pytorch_fid.inception, "fid_inception_v3", lambda: inception)
    reference = pytorch_fid.inception.InceptionV3([pytorch_fid.inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                                                  resize_input=True, normalize_input=True).eval()
    ours = InceptionPool3(inception).eval()
    batch = images(1)
    with torch.no_grad():
        expected = reference((batch + 1) / 2)[0].flatten(1)
        torch.testing.assert_close(ours(batch), expected, rtol=1e-4, atol=1e-5)


def test_gray_images_are_repeated_to_rgb_for_inception(random_inception):
    gray = images(1, channels=1)
    np.testing.assert_allclose(random_inception.features(gray), random_inception.features(gray.repeat(1, 3, 1, 1)),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(UserError, match="C = 1 or 3"):
        random_inception.features(images(1, channels=4))


def test_missing_inception_weights_is_a_clear_error(hub_dir, no_network):
    with pytest.raises(UserError) as info:
        inception_extractor(weights="cache")
    message = str(info.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message and str(hub_dir / "checkpoints") in message
    assert pytorch_fid.inception.FID_WEIGHTS_URL in message
    assert "--features classifier" in message and CLASSIFIER_LABEL in message


def test_inception_weights_load_from_the_hub_cache_only(hub_dir, no_network):
    torch.manual_seed(1)
    saved = _fid_inception_architecture().state_dict()
    path = hub_dir / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    path.parent.mkdir(parents=True)
    torch.save(saved, path)
    extractor = inception_extractor(weights="cache")
    assert extractor.label == FID_LABEL == "FID"
    assert extractor.fingerprint == "inception-pt_inception-2015-12-05-6726825d"
    loaded = extractor.network.state_dict()
    for ours, theirs in [("blocks.0.0.conv.weight", "Conv2d_1a_3x3.conv.weight"),
                         ("blocks.3.2.branch_pool.bn.running_var", "Mixed_7c.branch_pool.bn.running_var")]:
        torch.testing.assert_close(loaded[ours], saved[theirs], rtol=0, atol=0)


def test_unreadable_inception_weights_and_unknown_modes_are_user_errors(hub_dir):
    path = hub_dir / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated download")
    with pytest.raises(UserError, match="not pytorch-fid's Inception weight file"):
        inception_extractor(weights="cache")
    with pytest.raises(UserError, match="cache, random"):
        inception_extractor(weights="imagenet")


def test_classifier_features_are_the_input_of_the_last_linear_layer():
    classifier = small_classifier().train()
    extractor = build_extractor("classifier", classifier, "cpu")
    head = classifier.net.classifier[-1]
    assert extractor.label == CLASSIFIER_LABEL == "classifier-feature Frechet distance"
    assert "FID" not in extractor.label
    assert extractor.dim == head.in_features and extractor.fingerprint.startswith("classifier-")
    batch = images(5)
    features = extractor.features(batch, batch_size=2)
    assert features.shape == (5, head.in_features) and features.dtype == np.float64
    classifier.eval()
    with torch.no_grad():
        logits, from_features = classifier(batch), head(torch.from_numpy(features).float())
    np.testing.assert_allclose(from_features.numpy(), logits.numpy(), rtol=1e-4, atol=1e-5)
    # The classifier is left as it was: training mode back on, no hook left behind.
    classifier.train()
    extractor.features(batch[:2])
    assert classifier.training and all(module.training for module in classifier.modules())
    assert not head._forward_pre_hooks


def test_classifier_fingerprint_follows_the_weights():
    classifier = small_classifier()
    first = classifier_extractor(classifier).fingerprint
    assert classifier_extractor(classifier).fingerprint == first
    with torch.no_grad():
        classifier.net.classifier[-1].bias.add_(1.0)
    assert classifier_extractor(classifier).fingerprint != first


def test_classifier_feature_distance_end_to_end():
    classifier = small_classifier("resnet18")
    extractor = classifier_extractor(classifier)
    assert extractor.dim == classifier.net.fc.in_features == 512
    real = images(6)
    reference = FrechetStats.from_features(extractor.features(real))
    assert distance_to_reference(extractor, reference, real) < 1e-6
    assert distance_to_reference(extractor, reference, images(6, seed=1).clamp(0, 1)) > 1e-6
    with pytest.raises(UserError, match="expects images of shape"):
        extractor.features(images(2, channels=1))


def test_build_extractor_rejects_unknown_names():
    with pytest.raises(UserError, match="unknown feature extractor 'lpips'; choose one of inception, classifier"):
        build_extractor("lpips", None, "cpu")


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    a, b = FrechetStats(mu_a, np.diag(var_a), 100), FrechetStats(mu_b, np.diag(var_b), 100)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    distance = frechet_distance(a, b)
    assert isinstance(distance, float) and distance == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, a) == 0.0
    with pytest.raises(UserError, match="different feature extractors"):
        frechet_distance(a, FrechetStats(np.zeros(2), np.eye(2), 100))


@pytest.mark.parametrize("count_a, count_b", [(10, 12), (10, 200), (200, 10), (200, 300)])
def test_frechet_distance_agrees_with_pytorch_fid(count_a, count_b):
    """The low-rank formula (a set smaller than its 64 dimensions) and pytorch-fid's sqrtm give one number."""
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(64, 64)) * 0.3
    a = FrechetStats.from_features(rng.normal(size=(count_a, 64)) @ mixing)
    b = FrechetStats.from_features(rng.normal(size=(count_b, 64)) + 0.2)
    assert (a.factor is None) == (count_a >= 64) and (b.factor is None) == (count_b >= 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy on singular covariances, and pytorch-fid's deprecated sqrtm call
        expected = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) < 1e-6 * np.trace(a.sigma)


def test_frechet_stats_need_two_finite_images():
    with pytest.raises(UserError, match="at least 2 images"):
        FrechetStats.from_features(np.zeros((1, 4)))
    with pytest.raises(UserError, match="non-finite"):
        FrechetStats.from_features(np.array([[0.0, 1.0], [np.nan, 1.0], [1.0, 2.0]]))
    stats = FrechetStats.from_features(np.random.default_rng(0).normal(size=(50, 3)))
    assert stats.mu.shape == (3,) and stats.sigma.shape == (3, 3) and stats.num_images == 50


def test_reference_statistics_are_computed_once_and_reused(tmp_path, caplog):
    features = np.random.default_rng(0).normal(size=(6, 16))  # fewer images than dimensions: a factor too
    calls = []

    def compute() -> FrechetStats:
        calls.append(1)
        return FrechetStats.from_features(features)

    parts = {"extractor": "inception-random-seed0", "data": "shapes", "split": "test", "images": 6}
    folder = tmp_path / "fid"
    first = reference_statistics(folder, parts, compute)
    assert len(calls) == 1
    path = folder / f"{fingerprint(parts)}.npz"
    assert path.is_file() and [p.name for p in folder.iterdir()] == [path.name]  # no temp file left

    second = reference_statistics(folder, dict(reversed(parts.items())), compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(second.mu, first.mu)
    np.testing.assert_array_equal(second.sigma, first.sigma)
    np.testing.assert_array_equal(second.factor, first.factor)
    assert second.num_images == 6 and frechet_distance(second, first) == 0.0
    other = reference_statistics(folder, {**parts, "split": "train"}, compute)  # another reference, beside it
    assert len(calls) == 2 and len(list(folder.iterdir())) == 2 and other.num_images == 6

    path.write_bytes(b"not an npz")
    with caplog.at_level(logging.WARNING, logger="stylex.artifacts"):
        third = reference_statistics(folder, parts, compute)
    assert "damaged" in caplog.text and len(calls) == 3
    np.testing.assert_array_equal(third.sigma, first.sigma)
    assert reference_statistics(folder, parts, compute).num_images == 6 and len(calls) == 3
