import pytest
from statsmodels.stats.proportion import proportion_confint

from evaluation.intervals import wilson_interval
from stylex.errors import UserError


@pytest.mark.parametrize(("successes", "trials"), [(0, 10), (3, 10), (10, 10), (481, 1000), (1, 3)])
def test_wilson_matches_statsmodels(successes, trials):
    low, high = wilson_interval(successes, trials)
    ref_low, ref_high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    assert (low, high) == pytest.approx((ref_low, ref_high), abs=1e-12)


def test_wilson_known_value_and_edges():
    # 8 of 10 at 95%: the textbook Wilson interval (0.4902, 0.9433)
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(UserError, match="successes"):
        wilson_interval(6, 5)
