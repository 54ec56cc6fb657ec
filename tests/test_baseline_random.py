import torch

from baselines import random as random_baseline
from evaluation.methods import get, registered


def test_random_attributes_are_seeded_distinct_and_report_their_exact_effect():
    generator = torch.Generator().manual_seed(0)
    effect = torch.randn(10, 2, 40, 3, generator=generator)
    predicted = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    first = random_baseline.random_attributes(effect, predicted, 5, seed=7)
    again = random_baseline.random_attributes(effect, predicted, 5, seed=7)
    other = random_baseline.random_attributes(effect, predicted, 5, seed=8)
    assert first == again and first != other
    assert sorted(first) == [0, 1, 2]
    for c, attributes in first.items():
        assert len(attributes) == 5 and len({a.coordinate for a in attributes}) == 5
        for a in attributes:
            assert a.target == c and a.direction in (0, 1) and 0 <= a.coordinate < 40
            expected = effect[predicted != c][:, a.direction, a.coordinate, c].double().mean()
            assert abs(a.mean_effect - float(expected)) < 1e-9
    assert len(random_baseline.random_attributes(effect, predicted, 99, seed=0)[0]) == 40  # at most K


def test_random_is_the_first_registered_method():
    spec = get("random")
    assert registered()[0] is spec and spec.variant == "stylex" and not spec.image_level
