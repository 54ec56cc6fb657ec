import pytest
import torch
from torch import nn

from evaluation.cout import cout, cout_from_curves, transition_curves
from stylex.errors import UserError

STEPS = 20


class PixelVote(nn.Module):
    """A classifier that looks at one pixel only: class 1 when pixel (0, 0) is positive, confidently."""

    def forward(self, images):
        value = images[:, 0, 0, 0]
        return torch.stack([-20 * value, 20 * value], dim=1)


def images(key_value: float, others: float, count: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    reconstruction = torch.full((count, 3, 16, 16), -1.0)
    counterfactual = torch.full_like(reconstruction, others)
    counterfactual[:, 0, 0, 0] = key_value
    return reconstruction, counterfactual


def test_a_counterfactual_equal_to_the_reconstruction_scores_zero():
    reconstruction, _ = images(1.0, 0.0)
    classes = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    assert torch.equal(cout(PixelVote(), reconstruction, reconstruction.clone(), *classes, STEPS), torch.zeros(3))


def test_a_full_flip_by_the_first_pasted_pixels_scores_near_one():
    reconstruction, counterfactual = images(1.0, -0.9)  # the decisive pixel changes most, so it is pasted first
    source, target = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    curves = transition_curves(PixelVote(), reconstruction, counterfactual, source, target, STEPS)
    assert curves.shape == (3, STEPS + 1)
    assert torch.allclose(curves[:, 0], torch.full((3,), -1.0)) and torch.allclose(curves[:, 1:], torch.ones(3, STEPS))
    scores = cout(PixelVote(), reconstruction, counterfactual, source, target, STEPS)
    assert torch.allclose(scores, torch.full((3,), 1 - 1 / (2 * STEPS)))  # only the first segment is a ramp
    away = cout(PixelVote(), reconstruction, counterfactual, target, source, STEPS)  # toward the other class
    assert torch.allclose(away, -scores)


def test_a_flip_by_the_last_pasted_pixel_scores_near_zero():
    reconstruction, counterfactual = images(0.5, 0.9)  # every other pixel changes more: the decisive one comes last
    source, target = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    scores = cout(PixelVote(), reconstruction, counterfactual, source, target, STEPS)
    assert torch.allclose(scores, torch.full((3,), 1 / (2 * STEPS)), atol=1e-6)


def test_cout_from_curves_is_half_the_trapezoid_area_of_the_change():
    curves = torch.tensor([[-1.0, 0.0, 1.0], [0.2, 0.2, 0.2]])
    assert torch.allclose(cout_from_curves(curves), torch.tensor([0.5 * (0.5 * 0.5 + 1.5 * 0.5), 0.0]))


def test_bad_inputs_are_refused():
    reconstruction, counterfactual = images(1.0, 0.0)
    zeros, ones = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    with pytest.raises(UserError, match="same shape"):
        cout(PixelVote(), reconstruction, counterfactual[:2], zeros, ones)
    with pytest.raises(UserError, match="one source and one target"):
        cout(PixelVote(), reconstruction, counterfactual, zeros[:2], ones)
    with pytest.raises(UserError, match="must differ"):
        cout(PixelVote(), reconstruction, counterfactual, zeros, zeros)
    with pytest.raises(UserError, match="steps"):
        cout(PixelVote(), reconstruction, counterfactual, zeros, ones, steps=0)
