import json

import numpy as np
import pytest
import torch
from PIL import Image

from stylex.attfind import compute_effects
from stylex.editing import edit_styles, render
from stylex.errors import UserError
from stylex.explain import independent, subset, sweep


def one(styles, n):
    return [s[n:n + 1] for s in styles]


def logits_after(model, styles, stats, attributes, shift_size):
    edits = [(a.coordinate, a.direction) for a in attributes]
    return render(model, edit_styles(styles, model.generator.layout, stats, edits, shift_size))[1][0]


@pytest.fixture(scope="module")
def explanations(tiny):
    model, styles, stats = tiny
    return [subset(model, one(styles, n), stats, max_attributes=6, shift_size=2.0, candidates=12) for n in range(5)]


def test_subset_stops_exactly_when_the_decision_flips(tiny, explanations):
    model, styles, stats = tiny
    assert any(e.flipped_at is not None for e in explanations), "no image flipped: the test would be vacuous"
    for n, explanation in enumerate(explanations):
        predicted = explanation.logits.argmax(dim=1)
        assert explanation.logits.shape[0] == len(explanation.attributes) + 1
        # every step before the last keeps the decision; the last flips it, or the budget is spent
        assert (predicted[:-1] == explanation.source).all()
        if explanation.flipped_at is not None:
            assert explanation.flipped_at == len(explanation.attributes)
            assert predicted[-1] != explanation.source
        else:
            assert len(explanation.attributes) == 6 and predicted[-1] == explanation.source
        # the reported logits are the classifier re-run on the combined edit (not additive estimates)
        for i in (1, len(explanation.attributes)):
            recomputed = logits_after(model, one(styles, n), stats, explanation.attributes[:i], 2.0)
            torch.testing.assert_close(explanation.logits[i], recomputed, rtol=1e-4, atol=1e-5)


def test_subset_is_greedy_on_the_combined_edit(tiny, explanations):
    model, styles, stats = tiny
    explanation = explanations[0]
    first = explanation.attributes[0]
    # no other single candidate raises the target logit more than the first pick
    effect = compute_effects(model, one(styles, 0), stats, 2.0, progress=False).effect[0]
    best_single = effect[..., explanation.target].max()
    assert explanation.logits[1, explanation.target] - explanation.logits[0, explanation.target] == pytest.approx(
        float(best_single), abs=1e-4)
    assert effect[first.direction, first.coordinate, explanation.target] == pytest.approx(float(best_single), abs=1e-5)


def test_independent_ranks_single_effects_and_reports_cumulative_logits(tiny):
    model, styles, stats = tiny
    image = one(styles, 1)
    explanation = independent(model, image, stats, num_attributes=4)
    effect = compute_effects(model, image, stats, 1.0, progress=False).effect[0][..., explanation.target]
    singles = [float(effect[a.direction, a.coordinate]) for a in explanation.attributes]
    assert singles == sorted(singles, reverse=True) and len(singles) == 4
    assert singles[0] == pytest.approx(float(effect.max()), abs=1e-6)
    assert len({a.coordinate for a in explanation.attributes}) == 4
    assert explanation.logits.shape == (5, 2)
    # the explanation's logits come from a batch of 5 edits, the check from a batch of 1: fp32 convs may sum in
    # another order, which moved a near-zero logit of the tiny model by 2e-5
    torch.testing.assert_close(explanation.logits[4], logits_after(model, image, stats, explanation.attributes, 1.0),
                               rtol=1e-4, atol=1e-4)
    flips = (explanation.logits.argmax(1) != explanation.source).nonzero()
    assert explanation.flipped_at == (int(flips[0]) if len(flips) else None)


def test_explanations_reject_bad_input(tiny):
    model, styles, stats = tiny
    with pytest.raises(UserError, match="one image's styles"):
        independent(model, styles, stats)
    source = int(render(model, one(styles, 0))[1][0].argmax())
    with pytest.raises(UserError, match="target class"):
        subset(model, one(styles, 0), stats, target=source)


def test_sweep_goes_from_the_reconstruction_to_the_full_edit(tiny):
    model, styles, stats = tiny
    image = one(styles, 2)
    frames, logits = sweep(model, image, stats, [(3, 1)], shift_size=1.5, frames=5)
    assert frames.shape[0] == 5 and logits.shape == (5, 2)
    reconstruction, base = render(model, image)
    torch.testing.assert_close(frames[0], reconstruction[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[0], base[0], rtol=1e-4, atol=1e-5)
    full = render(model, edit_styles(image, model.generator.layout, stats, [(3, 1)], 1.5))[0]
    torch.testing.assert_close(frames[-1], full[0], rtol=1e-5, atol=1e-5)


def test_explain_cli_writes_figures_gifs_and_summary(tiny_run, tmp_path, capsys):
    from stylex.cli import main

    image_path = tmp_path / "input.png"
    Image.fromarray(np.full((20, 20, 3), 90, dtype=np.uint8)).save(image_path)  # any size: resized to 16 px
    assert main(["explain", "--run", str(tiny_run), "--image", str(image_path)]) == 2
    assert "stylex attfind" in capsys.readouterr().err  # needs the style statistics first
    assert main(["attfind", "--run", str(tiny_run)]) == 0
    out = tmp_path / "explained"
    assert main(["explain", "--run", str(tiny_run), "--image", str(image_path), "--strategy", "subset",
                 "--attributes", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == "subset" and 1 <= len(summary["attributes"]) <= 3
    assert len(summary["steps"]) == len(summary["attributes"]) + 1
    assert {"figure.png", "flicker.gif", "sweep.gif", "reconstruction.png"} <= set(summary["files"])
    for name in ("flicker.gif", "sweep.gif"):
        with Image.open(out / name) as gif:
            assert gif.n_frames >= 2 and gif.info.get("loop") == 0
    assert main(["explain", "--run", str(tiny_run), "--image", str(tmp_path / "nope.png")]) == 2
    assert "no image file" in capsys.readouterr().err
    assert main(["explain", "--run", str(tiny_run), "--image", str(image_path), "--target", "cat"]) == 2
    assert "unknown target class" in capsys.readouterr().err
