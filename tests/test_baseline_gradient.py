import copy
import shutil

import torch

from baselines import gradient
from evaluation.methods import get
from stylex.attfind import compute_effects
from stylex.editing import TOWARD_EXTREMES
from stylex.pipeline import attfind_variant, open_run


def test_the_first_order_computation_is_the_one_screened_attfind_uses():
    """One implementation, in model code (stylex never imports baselines): the baseline and `attfind.screen`
    rank by the same estimates."""
    from stylex import screening

    assert gradient.style_gradients is screening.style_gradients
    assert gradient.first_order_effects is screening.first_order_effects


def test_style_gradients_match_central_differences(tiny):
    """In float64 the gradients agree with central differences of the logits."""
    model, styles, _ = tiny
    double = copy.deepcopy(model)
    double.generator.double()
    double.classifier.double()
    styles = [s[:3].double() for s in styles]
    gradients = gradient.style_gradients(double, styles)
    layout = model.generator.layout
    step = 1e-8  # the tiny model has ReLU6 kinks close by: larger steps cross them
    for k in torch.linspace(0, layout.conv_dim - 1, 12).long().tolist():
        name, channel = layout.locate(k)
        index = layout.layer(name).index
        logits = []
        for sign in (1, -1):
            moved = [s.clone() for s in styles]
            moved[index][:, channel] += sign * step
            with torch.no_grad():
                logits.append(double.classifier(double.generator.synthesize(moved)[0]))
        central = (logits[0] - logits[1]) / (2 * step)
        torch.testing.assert_close(gradients[:, k].double(), central, rtol=1e-4, atol=1e-6)


def test_first_order_effects_follow_the_exact_effects_for_small_shifts(tiny):
    """Gradient x displacement approaches AttFind's exact effect tensor as the shift shrinks."""
    model, styles, stats = tiny
    gradients = gradient.style_gradients(model, styles)
    conv_styles = model.generator.layout.conv_flatten(styles)
    correlations = []
    for shift in (1e-2, 1e-3):
        exact = compute_effects(model, styles, stats, shift, progress=False).effect.double()
        estimate = gradient.first_order_effects(gradients, conv_styles, stats, shift).double()
        assert estimate.shape == exact.shape
        correlations.append(float(torch.corrcoef(torch.stack([estimate.flatten(), exact.flatten()]))[0, 1]))
    assert correlations[1] > 0.95 and correlations[1] >= correlations[0]


def test_a_coordinate_that_dominates_the_gradient_is_selected_first():
    """Planted: one coordinate's gradient is far larger than every other's, so AttFind on the estimates picks it
    first for both classes (in the direction that raises each class's logit)."""
    n, k = 6, 12
    gradients = torch.full((n, k, 2), 0.01)
    gradients[:, 7, 0], gradients[:, 7, 1] = 5.0, -5.0
    conv_styles = torch.zeros(n, k)

    class Stats:
        minimum, maximum = -torch.ones(k), torch.ones(k)

    estimate = gradient.first_order_effects(gradients, conv_styles, Stats, 1.0)
    assert estimate[0, 1, 7, 0] == 5.0 and estimate[0, 0, 7, 0] == -5.0  # grad x (target - s)
    from stylex.attfind import attfind

    predicted = torch.tensor([1, 1, 1, 0, 0, 0])
    assert (attfind(estimate, predicted, 0)[0].coordinate, attfind(estimate, predicted, 0)[0].direction) == (7, 1)
    assert (attfind(estimate, predicted, 1)[0].coordinate, attfind(estimate, predicted, 1)[0].direction) == (7, 0)


def test_gradient_is_registered_and_selects_from_a_run(tiny_run, tmp_path):
    spec = get("gradient")
    assert spec.variant == "stylex" and spec.image_level is False
    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run, run_dir)  # AttFind writes stats and effects: the shared run stays as other tests need it
    ctx = open_run(run_dir, cst=True)
    found = attfind_variant(ctx, progress=False)
    selected = spec.select(ctx, found)
    assert selected.method == "gradient" and selected.edit_rule == TOWARD_EXTREMES
    assert selected.merged is not None and 0 < len(selected.merged) <= ctx.config.attfind.num_attributes
    conv_dim = ctx.model.generator.layout.conv_dim
    assert all(0 <= a.coordinate < conv_dim and a.direction in (0, 1) for a in selected.ranked())
