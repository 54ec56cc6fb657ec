"""Part 3 (forward simulation) in the study database: a plan of ``studies.forward`` stored as trials (learning
screens, then test trials whose answer key is the classifier's decision), answered once each, exported in
``forward.RESPONSE_COLUMNS`` and analysed by ``forward_analysis``. Real SQLite files (the fixtures of
test_study_app); the app's Part 3 screens come next (see the module docstring of studies/app.py)."""

import pytest
from test_study_app import METHODS, STUDY, make_study

from studies import db
from studies.design import forward_trials
from studies.forward import CONTROL, RESPONSE_COLUMNS, assign_group, check_forward_responses, plan_forward_trials
from studies.forward_analysis import forward_accuracy
from stylex.errors import UserError

CLASSES = ("classcat", "classdog")


@pytest.fixture
def study(tmp_path, monkeypatch):
    yield make_study(tmp_path, monkeypatch)
    db.dispose_engines()


def _forward_material(manifest: dict) -> tuple[list[dict], dict[str, list[dict]]]:
    """Test images and learning screens from the synthetic materials: each method's Part 1 GIFs are its learning
    screens (attribute 1 pushes toward the first class, attribute 2 toward the second, two GIFs each); the other
    assets serve as test stills, so no test image appears in a learning screen."""
    items = [item for item in manifest["items"] if item["kind"] == "main"]
    screens = {method: [{"assets": item["assets"][:2], "target_class": CLASSES[item["attr_i"] - 1],
                         "attribute": item["attr_i"]} for item in items if item["method"] == method]
               for method in METHODS}
    shown = {asset for group in screens.values() for screen in group for asset in screen["assets"]}
    stills = sorted(a["asset_id"] for a in manifest["assets"] if a["asset_id"] not in shown)
    images = [{"image": asset, "classifier_decision": CLASSES[k % 2]} for k, asset in enumerate(stills)]
    return images, screens


def _run_participant(engine, pid: str, group: str, images, screens, answer) -> dict:
    """Consent, plan and answer every screen through the database layer as the app does; returns the plan."""
    participant = db.get_or_create_participant(engine, STUDY, pid, "forward", seed=len(pid))
    plan = plan_forward_trials(images, group, seed=len(pid), learning_screens=screens, n_trials=6)
    assert db.add_trials(engine, participant, forward_trials(plan))
    assert not db.add_trials(engine, participant, forward_trials(plan))  # a plan is made once
    while (trial := db.next_trial(engine, participant)) is not None:
        assert "classifier_decision" not in trial and "correct_option" not in trial  # the key stays server-side
        db.mark_shown(engine, trial["trial_id"])
        if trial["kind"] == "learn":
            assert trial["target_class"] in CLASSES and len(trial["assets"]) == 2
            assert db.record_prediction(engine, trial["trial_id"], None)
            continue
        assert trial["target_class"] is None and len(trial["assets"]) == 1
        assert db.forward_classes(engine, participant) == list(CLASSES)
        prediction = answer(trial["assets"][0])
        assert db.record_prediction(engine, trial["trial_id"], prediction)
        assert not db.record_prediction(engine, trial["trial_id"], CLASSES[0])  # a double submit records once
    assert db.finish(engine, participant, lambda: f"CODE-{pid}") == f"CODE-{pid}"
    return plan


def test_forward_study_from_plan_to_analysis(study):
    _url, _key, manifest, engine = study
    images, screens = _forward_material(manifest)
    decision = {item["image"]: item["classifier_decision"] for item in images}
    groups = [CONTROL, *METHODS]
    answers = {  # a group that predicts perfectly, one that always says the first class, one always wrong
        METHODS[0]: lambda image: decision[image],
        CONTROL: lambda image: CLASSES[0],
        METHODS[1]: lambda image: CLASSES[1] if decision[image] == CLASSES[0] else CLASSES[0],
    }
    plans = {}
    for index in range(2 * len(groups)):
        group = assign_group(index, groups)
        plans[f"fwd{index}"] = _run_participant(engine, f"fwd{index}", group, images, screens, answers[group])

    responses = db.forward_responses(engine)
    assert list(responses.columns) == RESPONSE_COLUMNS and len(responses) == 6 * len(plans)
    trials = db.export_frames(engine)["trials"]
    assert trials["answered"].all()  # learning screens and test trials alike, in the trials export too
    for pid, plan in plans.items():
        mine = responses[responses["participant"] == pid]
        assert list(mine["trial"]) == list(range(6)) and set(mine["group"]) == {plan["group"]}
        assert list(mine["image"]) == [t["image"] for t in plan["test"]]
        assert list(mine["classifier_decision"]) == [t["classifier_decision"] for t in plan["test"]]
        assert mine["rt_ms"].notna().all()
    check_forward_responses(responses)
    accuracy = forward_accuracy(responses).set_index("group")
    assert list(accuracy.index) == groups
    assert accuracy.loc[METHODS[0], "accuracy"] == 1.0 and accuracy.loc[METHODS[1], "accuracy"] == 0.0
    assert accuracy.loc[CONTROL, "accuracy"] == 0.5  # balanced classes: one class always is right half the time
    # Parts 1-2's export leaves Part 3 out (its format differs); the trials frame keeps every stored trial
    frames = db.export_frames(engine)
    assert frames["responses"].empty and set(frames["trials"]["kind"]) == {"learn", "main"}
    assert frames["forward"].equals(responses)  # `stylex study export` writes it as forward.csv


def test_forward_answers_are_checked(study):
    _url, _key, manifest, engine = study
    images, screens = _forward_material(manifest)
    participant = db.get_or_create_participant(engine, STUDY, "checked", "forward", seed=1)
    plan = plan_forward_trials(images, METHODS[0], seed=1, learning_screens=screens, n_trials=4)
    db.add_trials(engine, participant, forward_trials(plan))
    learn = db.next_trial(engine, participant)
    with pytest.raises(UserError, match="a learning screen none"):
        db.record_prediction(engine, learn["trial_id"], CLASSES[0])
    db.record_prediction(engine, learn["trial_id"], None)
    db.record_prediction(engine, db.next_trial(engine, participant)["trial_id"], None)
    test = db.next_trial(engine, participant)
    assert test["kind"] == "main"
    with pytest.raises(UserError, match="a test trial needs a prediction"):
        db.record_prediction(engine, test["trial_id"], None)
    with pytest.raises(UserError, match="is not one of the classes"):
        db.record_prediction(engine, test["trial_id"], "classbird")
    with pytest.raises(UserError, match="belongs to the 'forward' part"):
        db.record_choice(engine, test["trial_id"], "A")
    part1 = db.get_or_create_participant(engine, STUDY, "partone", "coherence", seed=2)
    with pytest.raises(UserError, match="belong to Part 3 only"):
        db.add_trials(engine, part1, forward_trials(plan))
    assert not db.add_trials(engine, participant, [])  # it has a plan: nothing is stored or checked again
    bad = forward_trials(plan)
    bad[-1]["classifier_decision"] = None
    other = db.get_or_create_participant(engine, STUDY, "other", "forward", seed=3)
    with pytest.raises(UserError, match="needs one image, a classifier_decision"):
        db.add_trials(engine, other, bad)
    assert db.next_trial(engine, other) is None  # the refused plan stored nothing
