import logging
import math
from pathlib import Path

import lpips
import pytest
import torch
import torchvision

from stylex.config import LossWeights, resolved_pl_weight, resolved_r1_gamma
from stylex.errors import UserError
from stylex.losses import (
    PerceptualDistance,
    build_lpips,
    classifier_kl,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    l1_reconstruction,
    lpips_backbone_path,
    path_length_penalty,
    r1_penalty,
    w_reconstruction,
)


def softplus(x):
    return math.log1p(math.exp(x))


def test_adversarial_losses_match_hand_values():
    fake = torch.tensor([0.0, math.log(3.0)])
    expected = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    assert generator_adversarial_loss(fake).item() == pytest.approx(expected, rel=1e-6)
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    expected = (softplus(0.0) + softplus(-1.0)) / 2 + (softplus(0.0) + softplus(-2.0)) / 2
    assert discriminator_adversarial_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)


def test_adversarial_gradient_signs():
    fake = torch.randn(8, requires_grad=True)
    generator_adversarial_loss(fake).backward()
    assert (fake.grad < 0).all()  # G gains by raising D(G(z))
    real, fake = torch.randn(8, requires_grad=True), torch.randn(8, requires_grad=True)
    discriminator_adversarial_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()


def test_adversarial_losses_are_fp32():
    logits = torch.randn(4, dtype=torch.bfloat16)
    assert generator_adversarial_loss(logits).dtype == torch.float32
    assert discriminator_adversarial_loss(logits, logits).dtype == torch.float32


def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
    torch.manual_seed(0)
    a = torch.randn(3, 8, 8, requires_grad=True)
    images = torch.randn(5, 3, 8, 8, requires_grad=True)
    logits = (a * images).sum(dim=(1, 2, 3))
    penalty = r1_penalty(images, logits)
    torch.testing.assert_close(penalty, a.detach().square().sum())
    penalty.backward()  # create_graph=True: the penalty trains D's parameters
    torch.testing.assert_close(a.grad, 2 * a.detach())


def test_r1_is_a_batch_mean_of_per_image_sums():
    images = torch.randn(4, 1, 5, 5, requires_grad=True)
    logits = images.square().sum(dim=(1, 2, 3))  # gradient 2x
    expected = (2 * images.detach()).square().sum(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(r1_penalty(images, logits), expected)


def linear_generator(shape=(2, 4, 4), w_dim=6, num_ws=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pixels = math.prod(shape)
    a = torch.randn(*([num_ws] if num_ws else []), pixels, w_dim, generator=generator).requires_grad_()

    def synthesize(w):
        if num_ws:
            return torch.einsum("lpd,bld->bp", a, w).reshape(w.shape[0], *shape)
        return (w @ a.T).reshape(w.shape[0], *shape)

    return a, synthesize


@pytest.mark.parametrize("num_ws", [None, 3])
def test_path_lengths_equal_the_analytic_jacobian_norm(num_ws):
    a, synthesize = linear_generator(num_ws=num_ws)
    w = torch.randn(5, *([num_ws] if num_ws else []), 6, requires_grad=True)
    images = synthesize(w)
    torch.manual_seed(7)
    _, _, lengths = path_length_penalty(images, w, 0.0)
    torch.manual_seed(7)  # the same noise, drawn as the function documents
    noise = torch.randn_like(images).flatten(1) / math.sqrt(4 * 4)
    if num_ws:
        grads = torch.einsum("lpd,bp->bld", a.detach(), noise)
        expected = grads.square().sum(-1).mean(1).sqrt()
    else:
        expected = (noise @ a.detach()).norm(dim=1)
    torch.testing.assert_close(lengths, expected)


def test_mean_squared_path_length_matches_frobenius_norm():
    a, synthesize = linear_generator()
    w = torch.randn(4000, 6, requires_grad=True)
    torch.manual_seed(1)
    _, _, lengths = path_length_penalty(synthesize(w), w, 0.0)
    expected = a.detach().square().sum() / 16  # E|A^T y|^2 with y ~ N(0, I / (H W))
    assert lengths.detach().square().mean().item() == pytest.approx(expected.item(), rel=0.05)


def test_path_length_mean_update_and_penalty():
    a, synthesize = linear_generator(num_ws=2)
    w = torch.randn(6, 2, 6, requires_grad=True)
    penalty, new_mean, lengths = path_length_penalty(synthesize(w), w, torch.tensor(1.5), decay=0.1)
    expected_mean = 1.5 + 0.1 * (lengths.detach().mean() - 1.5)
    torch.testing.assert_close(new_mean, expected_mean)
    assert not new_mean.requires_grad and new_mean.dtype == torch.float32
    torch.testing.assert_close(penalty, (lengths - expected_mean).square().mean())
    penalty.backward()  # create_graph=True: the penalty trains G
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_path_length_rejects_a_flat_w_of_wrong_rank():
    w = torch.randn(6, requires_grad=True)
    with pytest.raises(ValueError, match="w must be"):
        path_length_penalty(w.reshape(1, 1, 2, 3), w, 0.0)


def test_reconstruction_losses():
    x, y = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    assert l1_reconstruction(y, x).item() == pytest.approx(0.5)
    w = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    assert w_reconstruction(w, torch.zeros_like(w)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        l1_reconstruction(x, x[:1])


def manual_kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def test_kl_is_zero_for_equal_logits_and_positive_otherwise():
    logits = torch.randn(4, 5)
    assert classifier_kl(logits, logits.clone()).abs().item() < 1e-6
    assert classifier_kl(logits, torch.randn(4, 5)).item() > 0


def test_kl_direction_is_reconstruction_against_original():
    rec, orig = torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    p_rec, p_orig = rec.softmax(1)[0].tolist(), orig.softmax(1)[0].tolist()
    forward, reverse = manual_kl(p_rec, p_orig), manual_kl(p_orig, p_rec)
    assert abs(forward - reverse) > 0.1  # an asymmetric example
    assert classifier_kl(rec, orig).item() == pytest.approx(forward, rel=1e-5)


def test_kl_is_a_batch_mean():
    rec, orig = torch.randn(3, 4), torch.randn(3, 4)
    rows = [manual_kl(r.softmax(0).tolist(), o.softmax(0).tolist()) for r, o in zip(rec, orig, strict=True)]
    assert classifier_kl(rec, orig).item() == pytest.approx(sum(rows) / 3, rel=1e-5)


def test_kl_gradient_reaches_only_the_reconstruction_and_runs_in_fp32():
    rec = torch.randn(4, 3, requires_grad=True)
    orig = torch.randn(4, 3, requires_grad=True)
    loss = classifier_kl(rec, orig)
    loss.backward()
    assert rec.grad is not None and rec.grad.abs().sum() > 0 and orig.grad is None
    assert classifier_kl(rec.bfloat16(), orig.bfloat16()).dtype == torch.float32
    big = torch.tensor([[1000.0, -1000.0]])
    assert torch.isfinite(classifier_kl(big, -big))


def test_loss_weights_defaults_and_validation():
    weights = LossWeights()
    assert (weights.r1_gamma, weights.pl_weight, weights.lpips, weights.w_rec) == (None, None, 0.1, 0.1)
    # None = resolution-aware: StyleGAN2-ADA's R1 heuristic, path length off below 128 px
    assert resolved_r1_gamma(weights, 32, 16) == pytest.approx(0.0128)
    assert resolved_r1_gamma(weights, 1024, 32) == pytest.approx(6.5536)
    assert (resolved_pl_weight(weights, 32), resolved_pl_weight(weights, 256)) == (0.0, 2.0)
    assert resolved_r1_gamma(LossWeights(r1_gamma=10.0), 32, 16) == 10.0
    with pytest.raises(UserError, match="kl"):
        LossWeights(kl=-1.0)
    with pytest.raises(UserError, match="r1_gamma"):
        LossWeights(r1_gamma=float("nan"))


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def random_lpips():
    torch.manual_seed(0)
    return PerceptualDistance("random")


def test_random_lpips_distance_properties(random_lpips, no_network):
    torch.manual_seed(1)
    x, y = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    same = random_lpips(x, x.clone())
    assert same.shape == (3,) and same.abs().max().item() < 1e-6
    different = random_lpips(x, y)
    assert different.shape == (3,) and (different > 0).all()


def test_random_lpips_logs_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="stylex.losses"):
        PerceptualDistance("random")
    assert "not comparable" in caplog.text


def test_lpips_on_small_gray_images_upsamples_and_repeats_channels(random_lpips):
    x, y = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    distance = random_lpips(x, y)
    assert distance.shape == (2,) and (distance > 0).all()

    def by_hand(images):
        images = images.repeat(1, 3, 1, 1)
        return torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)

    torch.testing.assert_close(distance, random_lpips.model(by_hand(x), by_hand(y)).flatten())


def test_lpips_gradient_flows_to_the_input_not_the_parameters(random_lpips):
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    random_lpips(x, torch.rand(2, 3, 32, 32) * 2 - 1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in random_lpips.parameters())


def test_lpips_stays_in_eval_mode(random_lpips):
    random_lpips.train()
    assert not random_lpips.training and not any(m.training for m in random_lpips.modules())
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(random_lpips(x, y), random_lpips(x, y), rtol=0, atol=0)  # dropout off


def test_lpips_rejects_other_channel_counts(random_lpips):
    x = torch.zeros(1, 4, 32, 32)
    with pytest.raises(UserError, match="1- or 3-channel"):
        random_lpips(x, x)


@pytest.mark.parametrize("net, file", [("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth")])
def test_pretrained_lpips_without_backbone_file_is_a_clear_error(torch_home, no_network, net, file):
    with pytest.raises(UserError) as info:
        PerceptualDistance("pretrained", net)
    message = str(info.value)
    assert file in message and str(torch_home / "hub" / "checkpoints") in message
    assert "train.lpips=random" in message and "train.lpips=off" in message


def test_pretrained_lpips_loads_backbone_from_the_hub_cache(torch_home, no_network):
    path = lpips_backbone_path("alex")
    assert path == torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    torch.manual_seed(3)
    saved = torchvision.models.alexnet().state_dict()
    torch.save(saved, path)
    distance = build_lpips("pretrained", "alex")
    trunk = distance.model.net.state_dict()
    assert len(trunk) == 10  # the five convs' weights and biases
    for k, index in enumerate([0, 3, 6, 8, 10], start=1):
        for kind in ("weight", "bias"):
            torch.testing.assert_close(trunk[f"slice{k}.{index}.{kind}"], saved[f"features.{index}.{kind}"],
                                       rtol=0, atol=0)
    linear = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", map_location="cpu",
                        weights_only=True)
    torch.testing.assert_close(distance.model.lin0.model[1].weight, linear["lin0.model.1.weight"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert distance(x, x.flip(-1)).shape == (2,)


def test_pretrained_lpips_rejects_a_wrong_backbone_file(torch_home):
    path = lpips_backbone_path("alex")
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="does not hold torchvision's ImageNet weights"):
        PerceptualDistance("pretrained")


def test_lpips_off_returns_zeros():
    distance = PerceptualDistance("off")
    x = torch.rand(3, 1, 8, 8)
    result = distance(x, -x)
    assert result.shape == (3,) and (result == 0).all() and list(distance.parameters()) == []


def test_unknown_lpips_mode_or_network_is_a_user_error():
    with pytest.raises(UserError, match="pretrained, random, off"):
        PerceptualDistance("imagenet")
    with pytest.raises(UserError, match="alex, vgg, squeeze"):
        PerceptualDistance("random", net="resnet")
