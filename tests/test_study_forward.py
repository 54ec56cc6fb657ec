"""Part 3 of the user study (forward simulation): design, response format, simulated participants, analysis and
power. A toy classifier on synthetic images: it says "bright" when the top-left patch is bright. The toy explanation
method's attribute GIFs brighten or darken that patch; the toy random baseline's change an irrelevant blob. Real
statsmodels throughout; every simulation is seeded. No torch."""

import io
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from statsmodels.stats.proportion import proportion_confint

from evaluation.report import document as doc
from studies import forward as fw
from studies import forward_analysis as fa
from stylex.errors import UserError

SIZE = 32
PATCH = (slice(4, 12), slice(4, 12))  # what the toy classifier looks at
BLOB = (slice(20, 28), slice(20, 28))  # what it ignores
BACKGROUNDS = [(60, 40, 90), (30, 90, 60), (90, 70, 30), (50, 50, 50), (20, 60, 100), (100, 30, 40)]


def _pixels(patch: int, blob: int, background: tuple[int, int, int]) -> np.ndarray:
    arr = np.empty((SIZE, SIZE, 3), np.uint8)
    arr[:] = background
    arr[PATCH] = patch
    arr[BLOB] = blob
    return arr


def _decision(patch: int) -> str:
    return "bright" if patch >= 128 else "dark"


def _sweep_gif(region: str, start: int, end: int, other: int, background: tuple[int, int, int]) -> bytes:
    """A ping-pong sweep of `region` from grey level `start` to `end` and back (the other region stays `other`)."""
    frames = []
    for t in (0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25):
        value = round(start + t * (end - start))
        patch, blob = (value, other) if region == "patch" else (other, value)
        frames.append(Image.fromarray(_pixels(patch, blob, background)))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def toy():
    """(test images, learning screens, asset loader). The test images' blob brightness is independent of the class
    (half of each class has a bright blob), so only the patch tells the classifier's decision."""
    assets: dict[str, bytes] = {}
    images = []
    for k in range(24):
        patch = (30, 50, 70, 90, 110, 120)[k % 6] + (0 if k < 12 else 110)  # 12 dark, then 12 bright patches
        blob = 200 if k % 2 else 60  # within each class, half bright and half dark blobs
        asset = f"test{k:02d}"
        assets[asset] = _png(_pixels(patch, blob, BACKGROUNDS[k % len(BACKGROUNDS)]))
        images.append({"image": asset, "classifier_decision": _decision(patch), "source": f"t{k}"})

    def screen(group: str, rank: int, region: str, target: str) -> dict:
        start, end = (40, 220) if target == "bright" else (220, 40)
        ids = []
        for k in range(2):
            asset = f"{group}{rank}-{k}"
            assets[asset] = _sweep_gif(region, start, end, 130, BACKGROUNDS[(rank + 2 * k) % len(BACKGROUNDS)])
            ids.append(asset)
        return {"attribute": rank, "target_class": target, "assets": ids, "sources": [f"l{group}{rank}{k}"
                                                                                   for k in range(2)]}

    learning = {"method": [screen("method", 1, "patch", "bright"), screen("method", 2, "patch", "dark")],
                "random": [screen("random", 1, "blob", "bright"), screen("random", 2, "blob", "dark")]}
    return images, learning, assets.__getitem__


# ---------------------------------------------------------------------------------------------------------- design


def test_assign_group_is_balanced_in_every_block_and_seeded():
    groups = ["control", "stylex", "wu"]
    assigned = [fw.assign_group(k, groups, seed=3) for k in range(30)]
    assert Counter(assigned) == {"control": 10, "stylex": 10, "wu": 10}
    for block in range(10):
        assert sorted(assigned[3 * block:3 * block + 3]) == groups
    assert assigned == [fw.assign_group(k, groups, seed=3) for k in range(30)]
    assert assigned != [fw.assign_group(k, groups, seed=4) for k in range(30)]
    for bad in (["control"], ["a", "a"], ["a", ""]):
        with pytest.raises(UserError, match="at least two distinct"):
            fw.assign_group(0, bad)
    with pytest.raises(UserError, match="participant_index"):
        fw.assign_group(-1, groups)


def test_plan_balances_classes_shuffles_and_hides_nothing_else(toy):
    images, learning, _ = toy
    plan = fw.plan_forward_trials(images, "method", seed=5, learning_screens=learning, n_trials=20)
    assert plan["group"] == "method" and plan["classes"] == ["bright", "dark"]
    assert [s["assets"] for s in plan["learning"]] == [s["assets"] for s in learning["method"]]
    decisions = [t["classifier_decision"] for t in plan["test"]]
    assert Counter(decisions) == {"bright": 10, "dark": 10}
    assert [t["trial"] for t in plan["test"]] == list(range(20))
    assert len({t["image"] for t in plan["test"]}) == 20
    truth = {i["image"]: i["classifier_decision"] for i in images}
    assert all(truth[t["image"]] == t["classifier_decision"] for t in plan["test"])
    # shuffled: not all of one class first; seeded: the same plan again, another with another seed
    assert decisions != sorted(decisions)
    assert plan == fw.plan_forward_trials(images, "method", seed=5, learning_screens=learning, n_trials=20)
    assert plan["test"] != fw.plan_forward_trials(images, "method", 6, learning, 20)["test"]
    odd = fw.plan_forward_trials(images, "control", seed=1, learning_screens=learning, n_trials=7)
    assert odd["learning"] == [] and sorted(Counter(t["classifier_decision"] for t in odd["test"]).values()) == [3, 4]


def test_plan_refuses_bad_input(toy):
    images, learning, _ = toy
    with pytest.raises(UserError, match="unknown group 'wu'"):
        fw.plan_forward_trials(images, "wu", 0, learning)
    with pytest.raises(UserError, match="has 12 test image"):
        fw.plan_forward_trials(images, "method", 0, learning, n_trials=30)
    with pytest.raises(UserError, match="at least two classifier decisions"):
        fw.plan_forward_trials([i for i in images if i["classifier_decision"] == "dark"], fw.CONTROL, 0)
    with pytest.raises(UserError, match="more than once"):
        fw.plan_forward_trials([*images, images[0]], fw.CONTROL, 0)
    with pytest.raises(UserError, match="only 'control' may see no attributes"):
        fw.plan_forward_trials(images, "method", 0, {"method": []})
    with pytest.raises(UserError, match="points to class 'cat'"):
        fw.plan_forward_trials(images, "method", 0, {"method": [{"assets": ["x"], "target_class": "cat"}]})
    with pytest.raises(UserError, match="needs the 'target_class'"):
        fw.plan_forward_trials(images, "method", 0, {"method": [{"assets": ["x"]}]})
    leaked = {"method": [{**learning["method"][0], "sources": ["t3"]}]}
    with pytest.raises(UserError, match="t3 also appear in the learning GIFs"):
        fw.plan_forward_trials(images, "method", 0, leaked)


# ------------------------------------------------------------------------------------------------- response format


def test_response_format_scores_server_side_and_is_checked():
    trial = {"trial": 3, "image": "img", "classifier_decision": "dark"}
    rows = [fw.score_trial("p1", "control", trial, "dark", 1200), fw.score_trial("p2", "stylex", trial, "bright")]
    frame = fw.responses_frame(rows)
    assert list(frame.columns) == fw.RESPONSE_COLUMNS
    assert frame["correct"].tolist() == [True, False] and str(frame["correct"].dtype) == "boolean"
    assert frame["rt_ms"].tolist()[0] == 1200 and frame["rt_ms"].isna().tolist() == [False, True]
    checked = fw.check_forward_responses(frame)
    assert checked["correct"].tolist() == [1.0, 0.0]
    tampered = frame.copy()
    tampered.loc[1, "correct"] = True
    with pytest.raises(UserError, match="disagrees"):
        fw.check_forward_responses(tampered)
    both = fw.responses_frame([*rows, fw.score_trial("p1", "stylex", trial, "dark")])
    with pytest.raises(UserError, match="p1 appear in more than one group"):
        fw.check_forward_responses(both)
    with pytest.raises(UserError, match="no answered"):
        fw.check_forward_responses(frame.iloc[0:0])
    with pytest.raises(UserError, match="lack the column"):
        fw.check_forward_responses(frame.drop(columns=["prediction"]))


def test_planted_responses_shape_and_errors():
    responses = fw.planted_forward_responses({"control": 0.6, "stylex": 0.8}, n_per_group=5, trials=9, seed=2)
    assert list(responses.columns) == fw.RESPONSE_COLUMNS and len(responses) == 10 * 9
    per = responses.groupby("participant")["group"].agg(["nunique", "first", "size"])
    assert (per["nunique"] == 1).all() and (per["size"] == 9).all()
    assert Counter(per["first"]) == {"control": 5, "stylex": 5}
    assert fw.planted_forward_responses({"control": 0.6, "stylex": 0.8}, 5, 9, seed=2).equals(responses)
    perfect = fw.planted_forward_responses({"control": 0.0, "stylex": 1.0}, 3, 4, seed=0, participant_sd=0.5)
    assert perfect.groupby("group")["correct"].mean().to_dict() == {"control": 0.0, "stylex": 1.0}
    for bad in (1.2, -0.1):
        with pytest.raises(UserError, match="must lie in \\[0, 1\\]"):
            fw.planted_forward_responses({"control": 0.5, "stylex": bad}, 3, 4)
    with pytest.raises(UserError, match="at least two distinct"):
        fw.planted_forward_responses({"control": 0.5}, 3, 4)


def test_planted_accuracy_is_the_pooled_accuracy_even_with_participant_effects():
    responses = fw.planted_forward_responses({"control": 0.6, "stylex": 0.85}, n_per_group=400, trials=20, seed=9,
                                             participant_sd=0.8)
    pooled = responses.groupby("group")["correct"].mean()
    assert abs(pooled["control"] - 0.6) < 0.015 and abs(pooled["stylex"] - 0.85) < 0.015


# ------------------------------------------------------------------------------------------------------- observer


def test_observer_reads_the_class_from_learnt_changes(toy):
    images, learning, load = toy
    observer = fw.ForwardObserver(load)
    observer.learn(learning["method"])
    for item in images:
        bright, dark = observer.scores(item["image"], ["bright", "dark"])
        assert (bright > 0 > dark) == (item["classifier_decision"] == "bright"), item
        assert observer.predict(item["image"], ["bright", "dark"]) == item["classifier_decision"]
    naive = fw.ForwardObserver(load, seed=1)  # a control observer: nothing learnt, so it guesses
    assert not naive.scores(images[0]["image"], ["bright", "dark"]).any()
    guesses = [naive.predict(item["image"], ["bright", "dark"]) for item in images]
    assert set(guesses) == {"bright", "dark"}
    with pytest.raises(UserError, match="noise"):
        fw.ForwardObserver(load, noise=-1)


def test_observer_participants_end_to_end(toy):
    images, learning, load = toy
    responses = fw.run_forward_participants(images, learning, n_per_group=8, load_asset=load, noise=0.15, seed=3)
    assert list(responses.columns) == fw.RESPONSE_COLUMNS and responses["rt_ms"].isna().all()
    accuracy = fa.forward_accuracy(responses).set_index("group")
    assert list(accuracy.index) == ["control", "method", "random"]
    assert (accuracy["n_participants"] == 8).all() and (accuracy["n_trials"] == 160).all()
    # the method's attributes change what the classifier uses: well above chance, below perfect (noise 0.15);
    # the random baseline's and no attributes teach nothing: chance (0.5) inside their Wilson intervals
    assert 0.75 < accuracy.loc["method", "accuracy"] < 1.0
    for group in ("control", "random"):
        assert accuracy.loc[group, "ci_low"] < 0.5 < accuracy.loc[group, "ci_high"], group
    comparison = fa.compare_forward(responses, n_boot=500).get("comparisons").set_index("group")
    assert comparison.loc["method", "p_value"] < 0.001 and comparison.loc["method", "difference_ci_low"] > 0.2
    assert comparison.loc["random", "difference_ci_low"] < 0 < comparison.loc["random", "difference_ci_high"]


# ------------------------------------------------------------------------------------------------------- analysis


def test_forward_accuracy_wilson_by_hand():
    rows = [fw.score_trial(p, g, {"trial": t, "image": f"i{t}", "classifier_decision": "a"}, answer)
            for p, g, answers in (("p1", "control", "aab"), ("p2", "control", "abb"), ("p3", "stylex", "aaa"))
            for t, answer in enumerate(answers)]
    table = fa.forward_accuracy(fw.responses_frame(rows))
    assert list(table.columns) == fa.ACCURACY_COLUMNS and list(table["group"]) == ["control", "stylex"]
    control, stylex = table.iloc[0], table.iloc[1]
    lo, hi = proportion_confint(3, 6, alpha=0.05, method="wilson")
    assert (control["n_participants"], control["n_trials"], control["correct"]) == (2, 6, 3)
    assert control["accuracy"] == 0.5 and np.isclose(control["ci_low"], lo) and np.isclose(control["ci_high"], hi)
    assert np.isclose(control["std_over_participants"], np.std([2 / 3, 1 / 3], ddof=1))
    # k = n: the Wilson interval stays inside [0, 1] and reaches 1; one participant has no s.d.
    assert stylex["accuracy"] == 1.0 and stylex["ci_high"] == pytest.approx(1.0) and stylex["ci_low"] < 1.0
    assert np.isnan(stylex["std_over_participants"])


@pytest.fixture(scope="module")
def benefit():
    responses = fw.planted_forward_responses({"control": 0.6, "stylex": 0.8}, n_per_group=30, trials=20, seed=11)
    return fa.compare_forward(responses, n_boot=2000, seed=0)


def test_compare_recovers_a_planted_benefit(benefit):
    assert benefit["reference"] == "control" and benefit["groups"] == ["control", "stylex"]
    assert benefit["gee_error"] is None and benefit["n_participants"] == 60 and benefit["n_trials"] == 1200
    row = benefit["comparisons"].iloc[0]
    assert list(benefit["comparisons"].columns) == fa.COMPARISON_COLUMNS
    assert row["difference_ci_low"] < 0.2 < row["difference_ci_high"] and row["difference_ci_low"] > 0
    assert row["p_value"] < 0.05 and row["odds_ratio"] > 1 and row["or_ci_low"] > 1
    assert row["log_odds_ci_low"] < row["log_odds_ratio"] < row["log_odds_ci_high"]
    assert np.isclose(np.exp(row["log_odds_ci_low"]), row["or_ci_low"])
    # 0.8 vs 0.6 is an odds ratio of (0.8/0.2)/(0.6/0.4) = 2.67
    assert row["or_ci_low"] < 8 / 3 < row["or_ci_high"]


def test_compare_covers_zero_without_a_benefit_and_is_seeded():
    responses = fw.planted_forward_responses({"control": 0.7, "wu": 0.7}, n_per_group=30, trials=20, seed=12,
                                             participant_sd=0.5)
    result = fa.compare_forward(responses, n_boot=2000, seed=1)
    row = result["comparisons"].iloc[0]
    assert row["difference_ci_low"] < 0 < row["difference_ci_high"] and row["p_value"] > 0.05
    again = fa.compare_forward(responses, n_boot=2000, seed=1)["comparisons"]
    pd.testing.assert_frame_equal(result["comparisons"], again)


def test_bootstrap_interval_covers_the_planted_difference_in_most_studies():
    """Calibration of the headline interval: 95% intervals should miss the truth in about 1 of 20 studies."""
    covered = 0
    for seed in range(30):
        responses = fw.planted_forward_responses({"control": 0.6, "stylex": 0.8}, 20, 20, seed=100 + seed,
                                                 participant_sd=0.5)
        row = fa.compare_forward(responses, n_boot=1000, seed=seed)["comparisons"].iloc[0]
        covered += row["difference_ci_low"] < 0.2 < row["difference_ci_high"]
    assert covered >= 26  # P(<= 25 of 30 | coverage 0.95) is about 0.006


def test_compare_refuses_bad_input(benefit):
    responses = fw.planted_forward_responses({"control": 0.6, "stylex": 0.8}, 3, 4, seed=0)
    with pytest.raises(UserError, match="unknown reference group 'random'"):
        fa.compare_forward(responses, reference="random")
    with pytest.raises(UserError, match="at least two groups"):
        fa.compare_forward(responses[responses["group"] == "control"])
    with pytest.raises(UserError, match="no answered"):
        fa.compare_forward(responses.iloc[0:0])
    with pytest.raises(UserError, match="n_boot"):
        fa.compare_forward(responses, n_boot=0)
    with pytest.raises(UserError, match="no answered"):
        fa.forward_accuracy(responses.assign(prediction=None))


# ---------------------------------------------------------------------------------------------------------- power


def test_power_grows_with_participants_and_holds_alpha_without_effect():
    power = fa.forward_power(0.8, 0.6, participants_grid=(3, 30), trials=20, sims=20, seed=0)
    assert list(power.columns) == fa.POWER_COLUMNS and list(power["n_per_group"]) == [3, 30]
    assert power["power"].iloc[1] >= 0.9 and power["power"].iloc[1] > power["power"].iloc[0]
    assert (power["gee_failures"] == 0).all() and (abs(power["mean_difference"] - 0.2) < 0.05).all()
    null = fa.forward_power(0.7, 0.7, participants_grid=(20,), trials=20, sims=20, seed=1)
    assert null["power"].iloc[0] <= 0.2  # false positives only: about alpha
    assert fa.forward_power(0.8, 0.6, (3,), 20, 5, seed=0).equals(fa.forward_power(0.8, 0.6, (3,), 20, 5, seed=0))
    with pytest.raises(UserError, match="acc_group"):
        fa.forward_power(1.5, 0.6)
    with pytest.raises(UserError, match="participants_grid"):
        fa.forward_power(0.8, 0.6, participants_grid=(1,))
    with pytest.raises(UserError, match="alpha"):
        fa.forward_power(0.8, 0.6, alpha=0)


def test_power_table_markdown():
    power = pd.DataFrame([{"acc_group": 0.8, "acc_control": 0.6, "n_per_group": 10, "trials": 20, "n_sims": 100,
                           "power": 0.73, "power_ci_low": 0.636, "power_ci_high": 0.807, "mean_difference": 0.1994,
                           "gee_failures": 0, "participant_sd": 0.5, "alpha": 0.05}])
    md = fa.power_table_markdown(power)
    assert md.startswith("| Accuracy (method vs control) | Participants per group | Test trials | Power [Wilson 95%] |")
    assert "| 0.8 vs 0.6 | 10 | 20 | 0.73 [0.64, 0.81] | +0.199 | 100 | 0 |" in md
    assert "alpha 0.05" in md and "SD 0.5" in md
    assert isinstance(fa.power_table(power), doc.Table)
    with pytest.raises(UserError, match="forward_power"):
        fa.power_table_markdown(power.drop(columns=["alpha"]))


def test_part3_imports_no_torch():
    code = ("import sys, studies.forward, studies.forward_analysis; "
            "print(sorted(name for name in ('torch', 'matplotlib') if name in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"
