import pytest
import torch

from evaluation import sufficiency
from evaluation.intervals import wilson_interval
from evaluation.methods import Method
from stylex.attfind import compute_effects, find_attributes
from stylex.errors import UserError


def test_curve_on_a_hand_built_case():
    flipped = torch.tensor([[0, 1, 1], [0, 0, 1], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    rows = sufficiency.curve(flipped)
    assert [r["k"] for r in rows] == [1, 2, 3]
    assert [r["flipped"] for r in rows] == [1, 2, 3]
    assert [r["fraction"] for r in rows] == [0.25, 0.5, 0.75]
    assert (rows[1]["ci_low"], rows[1]["ci_high"]) == wilson_interval(2, 4)
    assert all(r["images"] == 4 for r in rows)
    with pytest.raises(UserError, match="booleans"):
        sufficiency.curve(torch.zeros(0, 3))


def test_curves_on_a_real_tiny_model(tiny):
    model, styles, stats = tiny
    effects = compute_effects(model, styles, stats, shift_size=2.0, progress=False)
    found = find_attributes(effects, model.classifier.classes, model.generator.layout, "stylex", threshold=5.0)
    class_flips = sufficiency.class_level(model, styles, Method.of("stylex", found, stats), max_k=4, shift_size=2.0)
    assert class_flips.shape == (5, 4)
    subset_flips = sufficiency.image_level(model, styles, stats, "subset", max_k=4, shift_size=2.0,
                                           effects=effects.effect)
    # a subset that flipped within k steps has flipped within k + 1: the curve never goes down
    assert (subset_flips[:, 1:] >= subset_flips[:, :-1]).all()
    independent_flips = sufficiency.image_level(model, styles, stats, "independent", max_k=4, shift_size=2.0,
                                                effects=effects.effect)
    # Subset re-evaluates and stops at the first flip, so it flips at least wherever Independent's top-1 does
    assert (subset_flips[:, 0] >= independent_flips[:, 0]).all()
    for rows in (sufficiency.curve(class_flips), sufficiency.curve(subset_flips)):
        assert all(0 <= r["ci_low"] <= r["fraction"] <= r["ci_high"] <= 1 for r in rows)
