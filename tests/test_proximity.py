import pytest
import torch

from evaluation.proximity import proximity
from stylex.errors import UserError
from stylex.losses import build_lpips


def test_proximity_of_the_identity_is_zero_and_grows_with_the_change():
    lpips = build_lpips("random")
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 32, 32, generator=generator) * 2 - 1
    l1, perceptual = proximity(images, images.clone(), lpips)
    assert torch.equal(l1, torch.zeros(4)) and torch.allclose(perceptual, torch.zeros(4), atol=1e-7)
    small, large = images.clone(), images.clone()
    small[:, :, :8, :8] += 0.2
    large[:, :, :16, :16] += 0.8
    l1_small, lpips_small = proximity(images, small, lpips)
    l1_large, lpips_large = proximity(images, large, lpips)
    assert torch.allclose(l1_small, torch.full((4,), 0.2 * 64 / 1024))  # 0.2 on a 16th of the pixels
    assert torch.allclose(l1_large, torch.full((4,), 0.8 / 4))
    assert bool((lpips_large > lpips_small).all()) and bool((lpips_small > 0).all())


def test_proximity_refuses_mismatched_images():
    with pytest.raises(UserError, match="same shape"):
        proximity(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 4), build_lpips("random"))
