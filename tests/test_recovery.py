import logging
import math

import pytest
import torch

from evaluation import recovery
from evaluation.methods import Method
from stylex.attributes import Attribute, AttributeSet
from stylex.config import load_config
from stylex.data import InMemoryImageDataset, build_dataset, to_float
from stylex.data.shapes import FACTOR_NAMES, render
from stylex.editing import render as render_styles
from stylex.errors import UserError

# Brief training, same resolution as the tiny fixture's generator (16 px). Measured on the 1024 test images
# (single-threaded CPU, ~5 s): spot accuracy 0.90 (majority share 0.67), size R^2 0.82, shape accuracy 0.76.
TEST_PROBES = recovery.ProbeSettings(steps=400, batch_size=64, width=16)
PROBE_DATA = ["data.num_train=2048", "data.num_test=1024"]


@pytest.fixture(scope="module")
def shapes_splits():
    config = load_config("tiny", PROBE_DATA)
    return build_dataset(config.data, "train"), build_dataset(config.data, "test")


@pytest.fixture(scope="module")
def probes(shapes_splits):
    return recovery.train_probes(shapes_splits[0], TEST_PROBES, progress=False)


def test_probes_read_the_causal_factors_well_above_chance(probes, shapes_splits):
    quality = probes.quality(shapes_splits[1])
    assert set(quality) == set(FACTOR_NAMES)
    spot_share = float((shapes_splits[1].factors[:, FACTOR_NAMES.index("spot")] >= 0.5).float().mean())
    assert quality["spot"] >= max(0.8, spot_share + 0.1)  # the majority share is 0.67 here
    assert quality["size"] >= 0.6  # R^2; chance is 0
    assert quality["shape"] >= 0.5  # chance is 1/3
    assert quality["background"] >= 0.9  # a flat gray level is the easiest factor


def test_predictions_are_in_natural_units(probes, shapes_splits):
    images = to_float(shapes_splits[1].images[:32])
    predicted = probes.predict(images)
    assert set(predicted) == set(FACTOR_NAMES)
    assert predicted["shape"].shape == (32, 3)
    assert torch.allclose(predicted["shape"].sum(dim=1), torch.ones(32))
    for name in ("hue", "rotation", "spot"):
        assert ((predicted[name] >= 0) & (predicted[name] <= 1)).all(), name
    truth = shapes_splits[1].factors[:32]
    size_error = (predicted["size"] - truth[:, FACTOR_NAMES.index("size")]).abs().mean()
    assert size_error < 0.05  # sizes span 0.18-0.42 of the image side


def test_save_and_load_round_trip(probes, shapes_splits, tmp_path):
    path = probes.save(tmp_path / "probes.pt")
    loaded = recovery.FactorProbes.load(path)
    images = to_float(shapes_splits[1].images[:16])
    original, restored = probes.predict(images), loaded.predict(images)
    assert all(torch.equal(original[name], restored[name]) for name in FACTOR_NAMES)
    assert loaded.reference == probes.reference and loaded.settings == probes.settings


def test_probe_cache_is_reused_only_when_settings_match(shapes_splits, tmp_path, caplog):
    path = tmp_path / "probes.pt"
    quick = recovery.ProbeSettings(steps=2, batch_size=16, width=4)
    first = recovery.load_or_train_probes(path, shapes_splits[1], quick, progress=False)
    written = path.stat().st_mtime_ns
    again = recovery.load_or_train_probes(path, shapes_splits[1], quick, progress=False)
    assert path.stat().st_mtime_ns == written
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(),
                                                 strict=True))
    other = recovery.load_or_train_probes(path, shapes_splits[1], recovery.ProbeSettings(steps=2, batch_size=16,
                                                                                         width=4, seed=1),
                                          progress=False)
    assert other.settings.seed == 1 and recovery.FactorProbes.load(path).settings.seed == 1
    path.write_bytes(b"not a probe file")  # a damaged cache is work to redo: named in a warning, then retrained
    with caplog.at_level(logging.WARNING, logger="stylex.artifacts"):
        retrained = recovery.load_or_train_probes(path, shapes_splits[1], quick, progress=False)
    assert "damaged" in caplog.text and str(path) in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), retrained.state_dict().values(),
                                                 strict=True))  # training is deterministic
    with pytest.raises(UserError, match="factor-probe"):
        path.write_bytes(b"not a probe file")
        recovery.FactorProbes.load(path)


def test_probes_need_factors_and_matching_images(probes, shapes_splits):
    plain = InMemoryImageDataset(shapes_splits[1].images, shapes_splits[1].labels, shapes_splits[1].classes)
    with pytest.raises(UserError, match="shapes dataset"):
        recovery.train_probes(plain, TEST_PROBES, progress=False)
    with pytest.raises(UserError, match="16 px 3-channel"):
        probes.predict(torch.zeros(2, 3, 32, 32))
    with pytest.raises(UserError, match="16 px 3-channel"):
        probes.predict(torch.zeros(2, 1, 16, 16))
    with pytest.raises(UserError, match="to_float"):
        probes.predict(shapes_splits[1].images[:2])


def _rendered(factors: torch.Tensor) -> torch.Tensor:
    return to_float(render(factors, 16))


@pytest.mark.parametrize(("factor", "before", "after"), [("spot", 0.0, 1.0), ("size", 0.21, 0.38)])
def test_factor_changes_single_out_the_factor_changed_on_real_renders(probes, shapes_splits, factor, before, after):
    rows = shapes_splits[1].factors[:64].clone()
    rows[:, FACTOR_NAMES.index("size")] = 0.36  # large enough for the spot to span a few pixels at 16 px
    rows[:, FACTOR_NAMES.index(factor)] = before
    edited = rows.clone()
    edited[:, FACTOR_NAMES.index(factor)] = after
    changes = recovery.factor_changes(probes, _rendered(rows), _rendered(edited))
    assert set(changes) == set(FACTOR_NAMES)
    assert recovery.changed_factor(changes) == factor
    others = max(value for name, value in changes.items() if name != factor)
    assert changes[factor] >= 0.5 and changes[factor] > 1.5 * others, changes


def test_an_unchanged_image_changes_no_factor(probes, shapes_splits):
    images = to_float(shapes_splits[1].images[:8])
    changes = recovery.factor_changes(probes, images, images.clone())
    assert all(value == 0.0 for value in changes.values())
    assert recovery.changed_factor(changes) == "none"
    with pytest.raises(UserError, match="paired"):
        recovery.factor_changes(probes, images, images[:4])


def test_recovery_summary_on_hand_built_rows():
    labels = ["spot", "hue", "size", "none", "spot", "rotation", "background"]
    rows = [{"factor": label} for label in labels]
    summary = recovery.recovery_summary(rows, k=5)
    assert summary == {"top_k": 5, "precision": 3 / 5, "distinct_factors": 3, "distinct_causal": 2,
                       "factors": ["spot", "hue", "size", "none", "spot"]}
    everything = recovery.recovery_summary(rows, causal=("hue",), k=10)
    assert everything["top_k"] == 7 and everything["precision"] == 1 / 7
    assert everything["distinct_factors"] == 5 and everything["distinct_causal"] == 1
    assert recovery.recovery_summary([], k=10)["precision"] is None


def _hand_built_method(model, stats) -> Method:
    """Three attributes toward class 0, in the official binary format (merged list plus per-class lists)."""
    layout = model.generator.layout
    merged = [Attribute(0, 1, 0.5, 0, 1.0), Attribute(layout.conv_dim // 2, 0, 0.4, 0, 0.8),
              Attribute(layout.conv_dim - 1, 1, 0.3, 0, 0.6)]
    per_class = {0: merged, 1: [a.flipped(1) for a in merged]}
    attributes = AttributeSet("stylex", list(model.classifier.classes), per_class, merged, layout.summary(),
                              {"num_attributes": 3}, {"test": True})
    return Method.of("stylex", attributes, stats)


def test_recover_runs_end_to_end_on_a_real_tiny_model(tiny, probes):
    model, styles, stats = tiny
    method = _hand_built_method(model, stats)
    result = recovery.recover(model, styles, method, probes, k=2, shift_size=2.0)
    assert result["top_k"] == 2 and len(result["attributes"]) == 2
    assert [row["coordinate"] for row in result["attributes"]] == [0, model.generator.layout.conv_dim // 2]
    _, logits = render_styles(model, styles)
    not_target = int((logits.argmax(dim=1) != 0).sum())
    for row in result["attributes"]:
        assert row["factor"] in (*FACTOR_NAMES, "none")
        assert set(row["changes"]) == set(FACTOR_NAMES)
        assert all(math.isfinite(v) and v >= 0 for v in row["changes"].values())
        assert row["images"] == (not_target or len(logits))  # only images not yet of the target class
    causal = sum(label in ("size", "spot") for label in result["factors"])
    assert result["precision"] == causal / 2


def test_a_zero_shift_changes_nothing(tiny, probes):
    model, styles, stats = tiny
    method = _hand_built_method(model, stats)
    rows = recovery.attribute_factor_changes(model, styles, method, method.attributes.merged, probes,
                                             shift_size=0.0)
    assert [row["factor"] for row in rows] == ["none"] * 3
    # the edited images are rendered in other batches than the reconstructions: equal up to float rounding
    assert all(value < 1e-3 for row in rows for value in row["changes"].values())
