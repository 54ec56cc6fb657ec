import pytest
import torch

from baselines import wu
from stylex.attributes import AttributeSet
from stylex.editing import EditRule
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.stats import StyleStats


def planted(n=400, k=60, seed=0):
    """Random styles where positives (the first half) sit consistently above the population on channel 17
    and below it on channel 42 (weaker), like an attribute a classifier responds to."""
    generator = torch.Generator().manual_seed(seed)
    styles = torch.randn(n, k, generator=generator) * 3 + 1
    positives = torch.zeros(n, dtype=torch.bool)
    positives[: n // 2] = True
    styles[positives, 17] = 9.0 + 0.3 * torch.randn(n // 2, generator=generator)
    styles[positives, 42] = -2.0 + 1.0 * torch.randn(n // 2, generator=generator)
    return styles, positives


def test_planted_channels_rank_first_with_their_directions():
    styles, positives = planted()
    chosen = wu.select(styles, positives, num_attributes=5)
    assert [(a.coordinate, a.direction) for a in chosen[:2]] == [(17, 1), (42, 0)]
    assert chosen[0].score > chosen[1].score > chosen[2].score
    # the score is |mean z| / std z over the positives, z normalised by the population (ddof 0)
    z = (styles - styles.mean(0)) / styles.std(0, unbiased=False)
    expected = z[positives, 17].mean().abs() / z[positives, 17].std(unbiased=False)
    assert chosen[0].score == pytest.approx(float(expected), rel=1e-6)
    assert chosen[0].mean_effect == pytest.approx(float(z[positives, 17].mean()), rel=1e-6)


def test_population_statistics_can_come_from_another_set():
    styles, positives = planted()
    shifted_population = styles + 100.0  # every positive now sits far below this population on every channel
    chosen = wu.select(styles, positives, num_attributes=3, population=shifted_population)
    assert all(a.direction == 0 for a in chosen)


def test_torgb_channels_are_ranked_but_never_returned():
    layout = StyleLayout(16, channel_base=256, channel_max=8)
    generator = torch.Generator().manual_seed(1)
    n = 200
    styles = [torch.randn(n, layer.dim, generator=generator) for layer in layout.layers]
    positives = torch.arange(n) < 80
    torgb = layout.layer("b8.torgb").index
    styles[torgb][positives, 3] = 50.0 + 0.01 * torch.randn(80, generator=generator)  # strongest of all
    conv = layout.layer("b16.conv0").index
    styles[conv][positives, 5] = -7.0 + 0.5 * torch.randn(80, generator=generator)
    chosen = wu.select_from_layers(styles, layout, positives, num_attributes=layout.conv_dim)
    assert len(chosen) == layout.conv_dim
    assert len({a.coordinate for a in chosen}) == layout.conv_dim  # every conv coordinate, no toRGB one
    assert (chosen[0].coordinate, chosen[0].direction) == (layout.conv_index("b16.conv0", 5), 0)
    # the same ranking as the conv-only flat selection
    flat = wu.select(layout.conv_flatten(styles), positives, num_attributes=10)
    assert [a.coordinate for a in flat] == [a.coordinate for a in chosen[:10]]


def test_attribute_set_per_class_and_round_trip(tmp_path):
    layout = StyleLayout(8, channel_base=64, channel_max=4)
    generator = torch.Generator().manual_seed(2)
    styles = [torch.randn(50, layer.dim, generator=generator) for layer in layout.layers]
    predicted = (torch.arange(50) >= 20).long()
    styles[layout.layer("b8.conv1").index][predicted == 1, 2] += 6.0
    found = wu.attribute_set(styles, layout, predicted, ["a", "b"], num_attributes=3)
    assert found.merged is None and found.edit_rule == EditRule("population std", wu.DEFAULT_ALPHA)
    top_b = found.toward(1)[0]
    assert (top_b.coordinate, top_b.direction, top_b.target) == (layout.conv_index("b8.conv1", 2), 1, 1)
    assert found.toward(0)[0].coordinate == top_b.coordinate and found.toward(0)[0].direction == 0
    loaded = AttributeSet.load(found.save(tmp_path / "attributes" / "wu.json"))
    assert loaded.per_class == found.per_class and loaded.method == "wu" and loaded.edit_rule == found.edit_rule
    assert found.to_dict()["settings"]["edit_scale"] == "population std"  # the file records the rule


def test_bad_inputs():
    styles, positives = planted()
    with pytest.raises(UserError, match="at least 2 positive"):
        wu.select(styles, torch.zeros(len(styles), dtype=torch.bool))
    with pytest.raises(UserError, match="one bool per image"):
        wu.select(styles, positives[:-1])
    with pytest.raises(UserError, match=r"\[N, K\]"):
        wu.select(styles[0], positives)


def test_wu_edit_moves_alpha_population_stds_toward_the_attribute():
    layout = StyleLayout(8, channel_base=64, channel_max=4)
    generator = torch.Generator().manual_seed(3)
    styles = [torch.randn(6, layer.dim, generator=generator) for layer in layout.layers]
    stats = StyleStats.from_styles(layout.conv_flatten(styles), {"test": True})
    k = layout.conv_index("b8.conv0", 1)
    name, channel = layout.locate(k)
    index = layout.layer(name).index
    up = wu.population_std_rule(2.5).apply(styles, layout, stats, [(k, 1)])
    down = wu.population_std_rule(1.0).apply(styles, layout, stats, [(k, 0)], torch.full((6,), 2.5))
    step = 2.5 * stats.std[k]
    assert torch.allclose(up[index][:, channel] - styles[index][:, channel], step.expand(6))
    assert torch.allclose(styles[index][:, channel] - down[index][:, channel], step.expand(6))
    untouched = [i for i in range(layout.conv_dim) if i != k]
    assert torch.equal(layout.conv_flatten(up)[:, untouched], layout.conv_flatten(styles)[:, untouched])
    assert up[index] is not styles[index]  # the input styles are never modified


def test_a_class_nobody_is_assigned_to_gets_no_attributes(caplog):
    layout = StyleLayout(8, channel_base=64, channel_max=4)
    generator = torch.Generator().manual_seed(4)
    styles = [torch.randn(30, layer.dim, generator=generator) for layer in layout.layers]
    found = wu.attribute_set(styles, layout, torch.zeros(30, dtype=torch.long), ["a", "b"], num_attributes=3)
    assert found.per_class[1] == [] and len(found.per_class[0]) == 3
    assert "fewer than 2" in caplog.text
