import pytest
import torch

from baselines import wu
from evaluation.methods import Method
from stylex.attributes import AttributeSet
from stylex.editing import edit_by_population_std, edit_styles
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.stats import StyleStats


def setup(seed=5):
    layout = StyleLayout(8, channel_base=64, channel_max=4)
    generator = torch.Generator().manual_seed(seed)
    styles = [torch.randn(40, layer.dim, generator=generator) for layer in layout.layers]
    stats = StyleStats.from_styles(layout.conv_flatten(styles), {"test": True})
    predicted = (torch.arange(40) >= 20).long()
    return layout, styles, stats, predicted


def test_each_method_edits_by_its_own_rule():
    layout, styles, stats, predicted = setup()
    wu_set = wu.attribute_set(styles, layout, predicted, ["a", "b"], num_attributes=2, alpha=2.0)
    edits = [(a.coordinate, a.direction) for a in wu_set.toward(1)]
    wu_method = Method.of("wu", wu_set, stats)
    for got, want in zip(wu_method.edit(styles, layout, edits, 1.5),
                         edit_by_population_std(styles, layout, stats, edits, alpha=3.0), strict=True):
        assert torch.equal(got, want)  # shift 1.5 x alpha 2 population stds
    attfind_set = AttributeSet("stylex", ["a", "b"], {0: [], 1: []}, None, layout.summary(), {}, {})
    attfind_method = Method.of("stylex", attfind_set, stats)
    for got, want in zip(attfind_method.edit(styles, layout, edits, 0.5),
                         edit_styles(styles, layout, stats, edits, 0.5), strict=True):
        assert torch.equal(got, want)
    assert "sigma_pop" in wu_method.edit_rule and "min|max" in attfind_method.edit_rule
    assert (wu_method.variant, attfind_method.variant) == ("stylex-nocst", "stylex")


def test_unknown_method_is_refused():
    layout, styles, stats, predicted = setup()
    found = wu.attribute_set(styles, layout, predicted, ["a", "b"], num_attributes=1)
    with pytest.raises(UserError, match="unknown method"):
        Method.of("gradcam", found, stats)
