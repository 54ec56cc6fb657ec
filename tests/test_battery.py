"""The metric battery's measures on hand-built cases: faithful sufficiency, oracle validity, off-target changes."""

import numpy as np
import pytest
import torch

from evaluation import recovery
from evaluation.faithful_sufficiency import faithful_curve
from evaluation.off_target import off_target_summary
from evaluation.validity import validity_row
from stylex.data.shapes import CAUSAL_FACTORS, FACTOR_NAMES, sample_factors
from stylex.errors import UserError

# ---- faithful sufficiency ----------------------------------------------------------------------------------------

def test_faithful_sufficiency_counts_only_the_kept_images():
    # five images, k = 1..3; images 1 and 3 lost their decision in reconstruction (the unfaithful ones flip easily)
    flipped = torch.tensor([[0, 0, 1],
                            [1, 1, 1],
                            [0, 1, 1],
                            [1, 1, 1],
                            [0, 0, 0]], dtype=torch.bool)
    kept = torch.tensor([True, False, True, False, True])
    rows = faithful_curve(flipped, kept)
    assert [row["images"] for row in rows] == [3, 3, 3]
    assert [row["flipped"] for row in rows] == [0, 1, 2]
    assert [row["fraction"] for row in rows] == [0.0, 1 / 3, 2 / 3]
    assert all(row["ci_low"] <= row["fraction"] <= row["ci_high"] for row in rows)
    # all kept: plain sufficiency; none kept: nothing to count
    assert [row["flipped"] for row in faithful_curve(flipped, torch.ones(5, dtype=torch.bool))] == [2, 3, 4]
    assert faithful_curve(flipped, torch.zeros(5, dtype=torch.bool)) is None


def test_faithful_sufficiency_refuses_mismatched_inputs():
    with pytest.raises(UserError, match="one kept flag per image"):
        faithful_curve(torch.zeros(4, 3, dtype=torch.bool), torch.ones(5, dtype=torch.bool))


# ---- oracle validity ---------------------------------------------------------------------------------------------

def test_validity_counts_flips_the_oracle_confirms_over_all_counterfactuals():
    explained = torch.tensor([True, True, True, False, False, False, False, False])
    oracle = torch.tensor([True, False, True, True, False, False, False, False])  # image 3: oracle alone, not counted
    row = validity_row(4, explained, oracle)
    assert row["k"] == 4 and row["images"] == 8 and row["flipped"] == 3 and row["confirmed"] == 2
    assert row["fraction"] == 0.25 and row["agreement"] == pytest.approx(2 / 3)
    assert row["ci_low"] < 0.25 < row["ci_high"]
    nothing = validity_row(1, torch.zeros(8, dtype=torch.bool), oracle)
    assert nothing["fraction"] == 0.0 and nothing["agreement"] is None and nothing["ci_low"] == 0.0


def test_validity_refuses_unpaired_flips():
    with pytest.raises(UserError, match="one explained and one oracle flip per counterfactual"):
        validity_row(1, torch.zeros(3, dtype=torch.bool), torch.zeros(4, dtype=torch.bool))


# ---- off-target changes ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted():
    """Known factors of 64 shapes, their true probe-space outputs and the reference scales of those outputs."""
    factors, _ = sample_factors(np.random.default_rng(0), 64, num_classes=2)
    return factors, recovery.reference_scales(recovery.true_outputs(factors))


def changed(factors, edits):
    after = factors.clone()
    for row, name, value in edits:
        after[row, FACTOR_NAMES.index(name)] = value
    return after


def test_off_target_counts_planted_factor_changes(planted):
    factors, reference = planted
    rows = factors[:4].clone()
    rows[:, FACTOR_NAMES.index("shape")] = 1.0  # squares, so a rotation change is visible
    rows[:, FACTOR_NAMES.index("size")] = 0.2
    rows[:, FACTOR_NAMES.index("spot")] = 0.0
    after = changed(rows, [(0, "size", 0.4),                                 # causal only
                           (1, "size", 0.4), (1, "hue", (float(rows[1, 2]) + 0.5) % 1.0),   # causal + 1 off-target
                           (2, "background", 0.3 if float(rows[2, 6]) < -0.3 else -0.9),
                           (2, "pos_x", 1.0 - float(rows[2, 3])), (2, "rotation", float(rows[2, 5]) + 0.125)])
    # image 3 is left as it is
    changes = recovery.image_factor_changes(reference, recovery.true_outputs(rows), recovery.true_outputs(after))
    assert changes.shape == (4, len(FACTOR_NAMES))
    assert float(changes[3].abs().max()) == 0.0
    summary = off_target_summary(changes, FACTOR_NAMES, CAUSAL_FACTORS, recovery.DEFAULT_MIN_CHANGE)
    changed_rows = changes >= recovery.DEFAULT_MIN_CHANGE
    assert changed_rows[0].nonzero().flatten().tolist() == [FACTOR_NAMES.index("size")]
    assert set(changed_rows[2].nonzero().flatten().tolist()) == {FACTOR_NAMES.index(name) for name in
                                                                 ("background", "pos_x", "rotation")}
    assert summary["n"] == 4
    assert summary["off_target"]["mean"] == pytest.approx((0 + 1 + 3 + 0) / 4)
    assert summary["causal_changed"]["fraction"] == 0.5
    assert summary["per_factor"]["size"] == 0.5 and summary["per_factor"]["hue"] == 0.25
    assert summary["per_factor"]["spot"] == 0.0


def test_rotation_of_a_shape_that_stopped_being_a_polygon_is_not_counted(planted):
    factors, reference = planted
    rows = factors[:1].clone()
    rows[0, FACTOR_NAMES.index("shape")] = 1.0
    after = changed(rows, [(0, "shape", 0.0), (0, "rotation", float(rows[0, 5]) + 0.125)])
    changes = recovery.image_factor_changes(reference, recovery.true_outputs(rows), recovery.true_outputs(after))
    assert float(changes[0, FACTOR_NAMES.index("rotation")]) == 0.0
    assert float(changes[0, FACTOR_NAMES.index("shape")]) > recovery.DEFAULT_MIN_CHANGE


def test_off_target_refuses_unknown_causal_factors():
    with pytest.raises(UserError, match="not among the measured factors"):
        off_target_summary(torch.zeros(2, 2), ["size", "hue"], ["spot"], 0.25)
