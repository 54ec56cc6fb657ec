"""First-order screening of AttFind (`attfind.screen`, stylex/screening.py): the estimates it ranks by, that a
screen keeping every coordinate is the exact search bit for bit, that a coordinate dominating the classifier
is always kept, and that exact and screened effect caches never stand in for each other."""

import copy
import dataclasses
import json
import shutil

import pytest
import torch
from torch import nn

from stylex import attfind as attfind_module
from stylex import screening
from stylex.attfind import attfind, compute_effects, find_attributes
from stylex.config import load_config
from stylex.editing import shifted
from stylex.errors import UserError
from stylex.pipeline import attfind_variant, open_run

# ---- the first-order estimates -----------------------------------------------------------------------------------


@torch.no_grad()
def finite_differences(model, styles, stats, shift_size, coordinates):
    """[N, 2, len(coordinates), C]: AttFind's exact effect of each edit (full generator and classifier), in the
    model's and styles' precision."""
    layout = model.generator.layout
    baseline = model.classifier(model.generator.synthesize(styles)[0])
    out = torch.empty(styles[0].shape[0], 2, len(coordinates), baseline.shape[1], dtype=baseline.dtype)
    for column, k in enumerate(coordinates):
        name, channel = layout.locate(k)
        index = layout.layer(name).index
        for direction in (0, 1):
            edited = list(styles)
            edited[index] = styles[index].clone()
            target = stats.targets(direction)[k].to(styles[index].dtype)
            edited[index][:, channel] = shifted(styles[index][:, channel], target, shift_size)
            out[:, direction, column] = model.classifier(model.generator.synthesize(edited)[0]) - baseline
    return out


def test_first_order_effects_match_finite_differences_for_a_small_shift(tiny):
    """In float64, gradient x displacement equals the exact effect of a shift of 1e-8 (finite differences)
    within rtol 1e-4, with atol 1e-4 of the largest effect for effects that are ~0 (measured: 1e-6 of the
    largest), on every coordinate, both directions, both classes. Larger shifts cross ReLU6 kinks of the tiny
    model on a few edits (1e-6: 2 of 3200 values off by 2%), which is the second-order error screening
    accepts, not a wrong gradient."""
    model, styles, stats = tiny
    double = copy.deepcopy(model)
    double.generator.double()
    double.classifier.double()
    styles = [s[:3].double() for s in styles]
    shift = 1e-8
    layout = model.generator.layout
    gradients = screening.style_gradients(double, styles).double()
    estimate = screening.first_order_effects(gradients, layout.conv_flatten(styles), stats, shift)
    exact = finite_differences(double, styles, stats, shift, list(range(layout.conv_dim)))
    assert estimate.shape == exact.shape == (3, 2, layout.conv_dim, 2)
    largest = float(exact.abs().max())
    assert largest > 1e-12, "the tiny model's effects are too small for a meaningful comparison"
    torch.testing.assert_close(estimate, exact, rtol=1e-4, atol=1e-4 * largest)


def test_screening_scores_are_attfind_scores_of_the_estimates():
    """Per class: mean over the images not predicted as that class of the clipped estimate; a class every image
    is predicted as keeps nothing."""
    gradients = torch.tensor([[[1.0, -1.0], [0.5, 2.0]],  # image 0: [K=2, C=2]
                              [[-3.0, 1.0], [1.0, 1.0]]])  # image 1
    conv_styles = torch.zeros(2, 2)

    class Stats:
        minimum, maximum = torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 4.0])

    scores = screening.screening_scores(gradients, conv_styles, Stats, 0.5, torch.tensor([1, 1]))
    # class 0, images 0 and 1; d=1: displacement 0.5 * max = [0.5, 2]: estimates [0.5, 1] and [-1.5, 2]
    torch.testing.assert_close(scores[0, 1], torch.tensor([0.25, 1.5], dtype=torch.float64))
    # d=0: displacement [-0.5, -1]: estimates [-0.5, -0.5] and [1.5, -1]
    torch.testing.assert_close(scores[0, 0], torch.tensor([0.75, 0.0], dtype=torch.float64))
    assert torch.isinf(scores[1]).all() and (scores[1] < 0).all()  # every image is predicted 1
    assert screening.kept_coordinates(scores, 1).tolist() == [0, 1]  # (c0, d0) keeps 0, (c0, d1) keeps 1


def test_kept_coordinates_union_ties_and_bad_settings():
    scores = torch.tensor([[[3.0, 1.0, 1.0, 0.0], [0.0, 0.0, 5.0, 1.0]]])  # [C=1, 2, K=4]
    assert screening.kept_coordinates(scores, 1).tolist() == [0, 2]
    # the tie between coordinates 1 and 2 in direction 0 keeps the lower one
    assert screening.kept_coordinates(scores, 2).tolist() == [0, 1, 2, 3]
    assert screening.kept_coordinates(scores, 100).tolist() == [0, 1, 2, 3]  # M > K keeps everything
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UserError, match="M >= 1"):
            screening.kept_coordinates(scores, bad)


# ---- screened AttFind on the tiny model ---------------------------------------------------------------------------


def attribute_lists(found):
    return ({c: [(a.coordinate, a.direction, a.mean_effect) for a in v] for c, v in found.per_class.items()},
            [(a.coordinate, a.direction, a.score) for a in found.merged])


def test_screen_of_k_or_more_is_the_exact_search_bit_for_bit(tiny):
    model, styles, stats = tiny
    layout = model.generator.layout
    conv_dim = layout.conv_dim
    exact = compute_effects(model, styles, stats, chunk_images=2, max_batch=37, progress=False)
    exact_found = find_attributes(exact, ["a", "b"], layout, "stylex", threshold=5.0)
    assert exact_found.merged, "the tiny model should find attributes"
    for keep in (conv_dim, 3 * conv_dim):
        screened = compute_effects(model, styles, stats, chunk_images=2, max_batch=37, progress=False, screen=keep)
        assert torch.equal(screened.coordinates, torch.arange(conv_dim))
        assert torch.equal(screened.effect, exact.effect) and torch.equal(screened.baseline, exact.baseline)
        found = find_attributes(screened, ["a", "b"], layout, "stylex", threshold=5.0)
        assert attribute_lists(found) == attribute_lists(exact_found)
        assert screened.meta["screen"] == keep and screened.meta["kept_coordinates"] == conv_dim
        assert found.settings["screen"] == keep and found.settings["screened_coordinates"] == conv_dim
    assert exact.meta["screen"] == 0 and not exact.screened and "screen" not in exact_found.settings


def test_screened_search_selects_only_kept_coordinates_with_their_exact_effects(tiny):
    model, styles, stats = tiny
    exact = compute_effects(model, styles, stats, max_batch=64, progress=False)
    screened = compute_effects(model, styles, stats, max_batch=64, progress=False, screen=4)
    kept = screened.coordinates
    assert 4 <= len(kept) <= 16 and torch.equal(kept, kept.unique())  # 4 per (class, direction), sorted union
    # kept columns: the exact effects (computed in other batches, so equal up to fp32 summation order)
    torch.testing.assert_close(screened.effect[:, :, kept], exact.effect[:, :, kept], rtol=1e-3, atol=1e-4)
    dropped = torch.ones(model.generator.layout.conv_dim, dtype=torch.bool)
    dropped[kept] = False
    assert (screened.effect[:, :, dropped] == 0).all()
    found = find_attributes(screened, ["a", "b"], model.generator.layout, "stylex", threshold=5.0)
    assert found.ranked() and {a.coordinate for a in found.ranked()} <= set(kept.tolist())
    assert found.settings["screen"] == 4 and found.settings["screened_coordinates"] == len(kept)
    # the unchanged selection: the same lists as AttFind on the exact tensor with the dropped coordinates zeroed
    masked = exact.effect.clone()
    masked[:, :, dropped] = 0
    for target in (0, 1):
        expected = attfind(masked, exact.predicted, target, threshold=5.0)
        assert [a.edit for a in attfind(screened, exact.predicted, target, threshold=5.0)] == [a.edit for a in expected]


class MarkedState:
    """A synthesis state that also carries the planted coordinate's value, for runs resumed after its layer."""

    def __init__(self, inner, value):
        self.inner, self.value = inner, value

    def select(self, rows):
        return MarkedState(self.inner.select(rows), self.value[rows])


class MarkingGenerator(nn.Module):
    """The tiny generator, with the top-left pixel replaced by a mark whose brightness follows one conv
    coordinate, (s_k - center) / spread: a spurious feature, like a watermark, that one style coordinate draws and
    no other coordinate changes."""

    def __init__(self, generator, coordinate, center, spread):
        super().__init__()
        self.inner, self.layout = generator, generator.layout
        name, self.channel = self.layout.locate(coordinate)
        self.index = self.layout.layer(name).index
        self.center, self.spread = center, spread

    def synthesize(self, styles, start=0, state=None, return_states=False, noise_mode="const"):
        if start > self.index:  # resumed after the coordinate's layer: its value travels with the state
            value, state = state.value, state.inner
        else:
            value = styles[self.index][:, self.channel]
        image, states = self.inner.synthesize(styles, start, state, return_states, noise_mode)
        where = torch.zeros_like(image[:1])
        where[0, 0, 0, 0] = 1.0
        image = image * (1 - where) + ((value - self.center) / self.spread)[:, None, None, None] * where
        if states is not None:
            states = [MarkedState(s, value) if s is not None and i > self.index else s for i, s in enumerate(states)]
        return image, states


class MarkReader(nn.Module):
    """The tiny classifier plus `gain` times the mark, added to logit 0 and subtracted from logit 1."""

    def __init__(self, base, gain):
        super().__init__()
        self.base, self.gain = base, gain
        self.num_classes, self.classes = base.num_classes, base.classes

    def forward(self, images):
        return self.base(images) + self.gain * images[:, 0, 0, 0, None] * torch.tensor([1.0, -1.0])


@pytest.mark.parametrize("layer_index, channel", [(0, 5), (1, 30), (2, 0), (3, 17), (4, 9)])  # every conv layer
def test_a_planted_coordinate_that_dominates_the_classifier_is_always_kept(tiny, layer_index, channel):
    """The generator draws a mark that follows one coordinate and the classifier reads it with a gain of 200 logits
    per spread of that coordinate (the tiny model's own effects reach ~6): screening with M = 1 keeps it, and the
    screened search picks it first for both classes, as the exact one does."""
    model, styles, stats = tiny
    layout = model.generator.layout
    coordinate = layout.conv_layers[layer_index].conv_offset + channel
    values = layout.conv_flatten(styles)[:, coordinate].sort().values
    spread = float(stats.maximum[coordinate] - stats.minimum[coordinate])
    # centred in the wider of the two middle gaps between the 5 images' values: the mark pushes some to each class
    middle = max((values[1], values[2]), (values[2], values[3]), key=lambda pair: float(pair[1] - pair[0]))
    center = float(sum(middle) / 2)
    planted = dataclasses.replace(model, generator=MarkingGenerator(model.generator, coordinate, center, spread),
                                  classifier=MarkReader(model.classifier, 200.0))
    exact = compute_effects(planted, styles, stats, max_batch=64, progress=False)
    predicted = exact.predicted
    assert len(predicted.unique()) == 2, "the planted classifier should still predict both classes"
    others = exact.effect.clone()
    others[:, :, coordinate] = 0
    assert exact.effect[:, :, coordinate].abs().max() > 3 * others.abs().max(), "the planted coordinate dominates"
    screened = compute_effects(planted, styles, stats, max_batch=64, progress=False, screen=1)
    assert coordinate in screened.coordinates.tolist()
    for target in (0, 1):
        expected = attfind(exact, predicted, target)[0]
        first = attfind(screened, predicted, target)[0]
        assert expected.coordinate == coordinate
        assert (first.coordinate, first.direction) == (coordinate, expected.direction)


# ---- settings, caches and the pipeline ----------------------------------------------------------------------------


def test_bad_screen_settings_are_refused(tiny):
    model, styles, stats = tiny
    for bad in (-1, 1.5, True):
        with pytest.raises(UserError, match="screen must be an integer >= 0"):
            compute_effects(model, styles, stats, progress=False, screen=bad)
    with pytest.raises(UserError, match=r"attfind\.screen must be an integer >= 0"):
        load_config("tiny", ["attfind.screen=-1"])
    assert load_config("tiny").attfind.screen == 0 and load_config("tiny", ["attfind.screen=64"]).attfind.screen == 64


def test_exact_and_screened_effect_caches_never_stand_in_for_each_other(tiny, tmp_path, monkeypatch):
    model, styles, stats = tiny
    out = tmp_path / "effects"
    exact = compute_effects(model, styles, stats, out_dir=out, chunk_images=2, max_batch=64, progress=False)
    screened = compute_effects(model, styles, stats, out_dir=out, chunk_images=2, max_batch=64, progress=False,
                               screen=3)
    assert sorted(p.name for p in out.glob("chunk-*.pt")) == ["chunk-00000.pt", "chunk-00001.pt", "chunk-00002.pt"]
    assert sorted(p.name for p in (out / "screen-3").glob("chunk-*.pt")) == sorted(p.name for p in out.glob("chunk-*"))
    assert "screen" not in json.loads((out / "meta.json").read_text())["inputs"]  # exact caches stay as they were
    record = json.loads((out / "screen-3" / "meta.json").read_text())
    assert record["inputs"]["screen"] == 3 and record["coordinates"] == screened.coordinates.tolist()

    # a rerun reads each back from its own folder: no chunk is computed, no screening is redone
    monkeypatch.setattr(attfind_module, "_chunk_effects", lambda *a: pytest.fail("a stored chunk was recomputed"))
    monkeypatch.setattr(attfind_module, "screen_coordinates", lambda *a: pytest.fail("screened again"))
    again_exact = compute_effects(model, styles, stats, out_dir=out, chunk_images=2, progress=False)
    again_screened = compute_effects(model, styles, stats, out_dir=out, chunk_images=2, progress=False, screen=3)
    assert torch.equal(again_exact.effect, exact.effect) and not again_exact.screened
    assert torch.equal(again_screened.effect, screened.effect)
    assert torch.equal(again_screened.coordinates, screened.coordinates)

    # exact chunks put where screened ones belong (and the other way round) are refused, never read as the other
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed / "screen-3", ignore=shutil.ignore_patterns("screen-*"))
    with pytest.raises(UserError, match="differs in: screen"):
        compute_effects(model, styles, stats, out_dir=mixed, chunk_images=2, progress=False, screen=3)
    shutil.copytree(out / "screen-3", tmp_path / "as-exact")
    with pytest.raises(UserError, match="differs in: screen"):
        compute_effects(model, styles, stats, out_dir=tmp_path / "as-exact", chunk_images=2, progress=False)


def test_screened_attfind_on_a_run_records_the_screen(tiny_run, tmp_path):
    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run, run_dir)  # AttFind writes stats and effects: the shared run stays as other tests need it
    ctx = open_run(run_dir, cst=True, overrides=["attfind.screen=8"])
    found = attfind_variant(ctx, progress=False)
    assert found.effects.screened and found.effects.meta["screen"] == 8
    kept = found.effects.coordinates.tolist()
    assert all(a.coordinate in kept for a in found.attributes.ranked())
    saved = json.loads(ctx.run.attributes(ctx.variant).read_text())
    assert saved["settings"]["screen"] == 8 and saved["settings"]["screened_coordinates"] == len(kept)
    assert saved["provenance"]["effects"]["screen"] == 8
    assert (run_dir / "effects" / "stylex" / "screen-8" / "meta.json").is_file()
    assert not list((run_dir / "effects" / "stylex").glob("chunk-*.pt")), "no exact chunks were written"
