"""Simulated Part 3 participants through the study database (``forward.run_forward_study_participants``), the way
a pilot runs them: consent, group by arrival order, the group's learning screens, the test stills, completion, all
with the app's ``studies.db`` calls; then the stored predictions exported and analysed by ``forward_analysis``.
Real SQLite files; the materials of test_study_forward_app (GIF and PNG files with a manifest, loaded with
``load_study`` and read back through ``manifest.asset_paths``) and the toy classifier of test_study_forward, whose
learning screens do carry the classifier's rule. No torch."""

import hashlib
import json
import re
from collections import Counter

import pytest
from sqlalchemy import select
from test_study_app import METHODS, STUDY
from test_study_forward import toy  # noqa: F401  (a fixture: the toy classifier's images, screens and loader)
from test_study_forward_app import CLASSES, N_STILLS, forward_study

from studies import db
from studies.design import participant_seed
from studies.forward import (
    CONTROL,
    RESPONSE_COLUMNS,
    ForwardObserver,
    assign_group,
    check_forward_responses,
    run_forward_study_participants,
)
from studies.forward_analysis import analyze_forward
from studies.manifest import asset_paths
from stylex.errors import UserError

GROUPS = [CONTROL, *sorted(METHODS)]  # the random baseline's screens teach the control group
N_LEARN = 2  # attributes 1 and 2 of the group's method (or of the random baseline)
N_TEST = 2 * N_STILLS  # every still: the materials allow that many balanced test trials (< DEFAULT_TEST_TRIALS)


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    """Two complete blocks of simulated participants (two per group) on the app's Part 3 test materials."""
    folder = tmp_path_factory.mktemp("pilot")
    with pytest.MonkeyPatch.context() as monkeypatch:  # forward_study also configures the app: not needed here
        _manifest, decisions, engine = forward_study(folder, monkeypatch)
    paths = asset_paths(folder / "materials")

    def load(asset_id: str) -> bytes:
        return paths[asset_id].read_bytes()

    ids = run_forward_study_participants(engine, STUDY, 2 * len(GROUPS), load, seed=0)
    yield engine, load, ids, decisions
    db.dispose_engines()


def _screens(engine, participant_id: int) -> list[dict]:
    """The participant's planned trials in order, each with its stored answers (read from the database itself, so a
    double answer would show)."""
    with db.session_scope(engine) as session:
        trials = session.execute(select(db.Trial).where(db.Trial.participant_id == participant_id)
                                 .order_by(db.Trial.seq)).scalars().all()
        answers = Counter()
        predictions, rts = {}, {}
        for response in session.execute(select(db.Response).where(
                db.Response.trial_id.in_([t.id for t in trials]))).scalars():
            answers[response.trial_id] += 1
            predictions[response.trial_id], rts[response.trial_id] = response.prediction, response.rt_ms
        return [{"kind": t.kind, "group": t.method, "shown_at": t.shown_at, "answers": answers[t.id],
                 "prediction": predictions.get(t.id), "rt_ms": rts.get(t.id), "assets": json.loads(t.assets),
                 "target_class": t.target_class, "decision": t.classifier_decision} for t in trials]


def _events(engine, kind: str) -> Counter:
    with db.session_scope(engine) as session:
        return Counter(session.execute(select(db.Event.participant_id).where(db.Event.kind == kind)).scalars())


def test_groups_are_balanced_by_arrival_order(pilot):
    engine, _load, ids, _decisions = pilot
    assert len(set(ids)) == len(ids) == 2 * len(GROUPS)
    groups = []
    for index, participant_id in enumerate(ids):
        participant = db.get_participant(engine, participant_id)
        assert participant["external_pid"] == f"sim-0-{index:04d}" and participant["part"] == "forward"
        assert participant["seed"] == participant_seed(STUDY, participant["external_pid"])  # as the app seeds it
        assert participant["status"] == "completed" and participant["completion_code"] == f"SIM-{participant_id:06d}"
        assert participant["comprehension_tries"] == 1 and participant["comprehension_passed_at"] is not None
        (group,) = {screen["group"] for screen in _screens(engine, participant_id)}
        assert group == assign_group(index, GROUPS, seed=participant_seed(STUDY, ""))
        groups.append(group)
    assert Counter(groups) == dict.fromkeys(GROUPS, 2)  # two complete permuted blocks
    assert sorted(groups[:3]) == sorted(groups[3:]) == sorted(GROUPS)  # every block holds every group once


def test_every_screen_is_shown_and_answered_once(pilot):
    engine, _load, ids, _decisions = pilot
    for participant_id in ids:
        screens = _screens(engine, participant_id)
        assert [s["kind"] for s in screens] == ["learn"] * N_LEARN + ["main"] * N_TEST
        assert all(s["shown_at"] is not None and s["answers"] == 1 and s["rt_ms"] is not None for s in screens)
        learn, test = screens[:N_LEARN], screens[N_LEARN:]
        assert all(s["prediction"] is None for s in learn)  # "Continue"
        assert [s["target_class"] for s in learn] == list(CLASSES)
        assert all(s["prediction"] in CLASSES for s in test)
        assert db.next_trial(engine, participant_id) is None
    assert _events(engine, "consent") == _events(engine, "completed") == dict.fromkeys(ids, 1)


def test_export_read_back_and_analysed(pilot):
    engine, _load, ids, decisions = pilot
    responses = db.forward_responses(engine)
    assert list(responses.columns) == RESPONSE_COLUMNS and len(responses) == len(ids) * N_TEST
    assert responses.equals(db.export_frames(engine)["forward"])
    assert db.export_frames(engine)["responses"].empty  # Parts 1-2's format leaves Part 3 out
    check_forward_responses(responses)
    assert set(responses["participant"]) == {f"sim-0-{k:04d}" for k in range(len(ids))}
    assert (responses["classifier_decision"] == responses["image"].map(decisions)).all()
    assert responses["rt_ms"].notna().all()
    for participant, mine in responses.groupby("participant"):
        assert list(mine["trial"]) == list(range(N_TEST)) and sorted(mine["image"]) == sorted(decisions), participant
    result = analyze_forward(responses)
    accuracy = {row["group"]: row for row in result["accuracy"]}
    assert list(accuracy) == GROUPS
    assert all(row["n_participants"] == 2 and row["n_trials"] == 2 * N_TEST for row in accuracy.values())
    assert {row["group"] for row in result["comparisons"]} == set(METHODS)
    # These materials carry no signal: the stills are flat colours whose classifier decision alternates with their
    # index, and every group's learning GIFs are colour ramps unrelated to it, so knowing a method's attributes
    # cannot help. Measured: every group, noise-free observers included, scores exactly 0.5. So only "no group
    # beats chance" is asserted here; the benefit of informative attributes is test_informative_attributes_...
    for group, row in accuracy.items():
        assert row["ci_low"] < 0.5 < row["ci_high"], group
    for row in result["comparisons"]:
        assert row["difference_ci_low"] <= 0 <= row["difference_ci_high"], row


def test_a_rerun_with_the_same_seed_adds_nobody(pilot):
    engine, load, ids, _decisions = pilot
    before = db.export_frames(engine)
    assert run_forward_study_participants(engine, STUDY, len(ids), load, seed=0) == ids
    after = db.export_frames(engine)
    for name in ("participants", "trials", "forward"):
        assert after[name].equals(before[name]), name
    assert _events(engine, "completed") == dict.fromkeys(ids, 1)


# ------------------------------------------------------------------ materials that carry the classifier's rule


def _toy_study(tmp_path, toy_material):
    """The toy of test_study_forward registered as a study: the method's screens (the patch the classifier reads)
    as group "stylex", the random baseline's (an irrelevant blob) teaching control, the distinct stills (6 per class)
    as test images."""
    images, learning, load = toy_material
    distinct = {}  # the toy repeats each still once (k and k + 6); a study registers every file once (sha256)
    for image in images:
        distinct.setdefault(load(image["image"]), image)
    images = list(distinct.values())
    ids = [asset for screens in learning.values() for screen in screens for asset in screen["assets"]]
    ids += [image["image"] for image in images]
    engine = db.get_engine(f"sqlite:///{tmp_path / 'toy.sqlite'}")
    db.create_schema(engine)
    db.add_study(engine, "toy", "toy", "0" * 64, [{"asset_id": a, "sha256": hashlib.sha256(load(a)).hexdigest(),
                                                   "relpath": f"{a}.bin"} for a in ids])
    items, key = [], {}
    for method, group in (("method", "stylex"), ("random", "random")):
        for screen in learning[method]:
            items.append({"item_id": f"learn-{group}-{screen['attribute']}", "part": 3, "kind": "learn",
                          "method": group, "domain": "toy", "attr_i": screen["attribute"], "assets": screen["assets"],
                          "target_class": screen["target_class"]})
    for k, image in enumerate(images):
        items.append({"item_id": f"test-{k:02d}", "part": 3, "kind": "test", "domain": "toy",
                      "assets": [image["image"]]})
        key[f"test-{k:02d}"] = image["classifier_decision"]
    db.add_items(engine, "toy", items, key)
    return engine, load


def test_informative_attributes_beat_control_through_the_database(tmp_path, toy):  # noqa: F811
    engine, load = _toy_study(tmp_path, toy)
    ids = run_forward_study_participants(engine, "toy", 8, load, seed=3)
    responses = db.forward_responses(engine)
    assert len(responses) == 8 * 12  # every distinct still, classes balanced
    result = analyze_forward(responses)
    accuracy = {row["group"]: row for row in result["accuracy"]}
    assert list(accuracy) == [CONTROL, "stylex"] and all(row["n_participants"] == 4 for row in accuracy.values())
    # the stylex screens change exactly the patch the classifier reads: a noise-free observer predicts every still;
    # control learnt from random's blob, which says nothing about the class (half of each class has a bright blob)
    assert accuracy["stylex"]["accuracy"] == 1.0
    assert accuracy[CONTROL]["ci_low"] < 0.5 < accuracy[CONTROL]["ci_high"]
    (comparison,) = result["comparisons"]
    assert comparison["group"] == "stylex" and comparison["difference_ci_low"] > 0.2
    assert len(ids) == 8 and all(db.get_participant(engine, p)["status"] == "completed" for p in ids)
    db.dispose_engines()


def test_a_participant_who_stopped_resumes_and_remembers_the_screens(tmp_path, toy):  # noqa: F811
    engine, load = _toy_study(tmp_path, toy)
    ids = run_forward_study_participants(engine, "toy", 2, load, seed=5, stop_after=1)  # one per group
    first_shown = {}
    for participant_id in ids:
        assert db.get_participant(engine, participant_id)["status"] == "in_progress"
        screens = _screens(engine, participant_id)
        assert [s["answers"] for s in screens] == [1] + [0] * (len(screens) - 1)  # the first learning screen only
        first_shown[participant_id] = screens[0]["shown_at"]
    assert run_forward_study_participants(engine, "toy", 2, load, seed=5) == ids  # resumes, adds nobody
    responses = db.forward_responses(engine)
    assert sorted(responses["group"].unique()) == [CONTROL, "stylex"]
    for participant_id in ids:
        screens = _screens(engine, participant_id)
        assert all(s["answers"] == 1 for s in screens) and db.next_trial(engine, participant_id) is None
        assert screens[0]["shown_at"] == first_shown[participant_id]  # not shown again
        assert db.get_participant(engine, participant_id)["comprehension_tries"] == 1  # asked once, at the start
        # the observer took the screen seen before the break into the test: it predicts exactly as one who saw
        # both learning screens in one go
        observer = ForwardObserver(load)
        observer.learn([s for s in screens if s["kind"] == "learn"])
        expected = [observer.predict(s["assets"][0], ["bright", "dark"]) for s in screens if s["kind"] == "main"]
        mine = responses[responses["participant"] == db.get_participant(engine, participant_id)["external_pid"]]
        assert list(mine["prediction"]) == expected
        if screens[0]["group"] == "stylex":
            assert mine["correct"].all()
    db.dispose_engines()


def test_refused_inputs(pilot):
    engine, load, _ids, _decisions = pilot
    with pytest.raises(UserError, match="n must be"):
        run_forward_study_participants(engine, STUDY, -1, load)
    with pytest.raises(UserError, match="stop_after"):
        run_forward_study_participants(engine, STUDY, 1, load, stop_after=-2)
    db.get_or_create_participant(engine, STUDY, "sim-9-0000", "coherence", seed=1)  # Parts 1-2 use the pid pattern
    with pytest.raises(UserError, match="takes part in 'coherence', not Part 3"):
        run_forward_study_participants(engine, STUDY, 1, load, seed=9)


def test_the_simulate_command_pilots_a_study(tmp_path, monkeypatch, capsys):
    """`stylex study simulate`: Part 3 and Part 1 pilots into one study, read back by `study status` and analysed
    by `study analyze`; refused when the study has a real participant (nothing added) or the seed's simulated
    participants belong to another part."""
    from stylex.cli import main

    _manifest, _decisions, engine = forward_study(tmp_path, monkeypatch)
    url, materials = str(engine.url), str(tmp_path / "materials")
    command = ["study", "simulate", "--db", url, "--materials", materials]
    assert main([*command, "--part", "forward", "--participants", str(len(GROUPS))]) == 0
    assert f"{len(GROUPS)} simulated participant(s) of forward" in capsys.readouterr().out
    assert main([*command, "--part", "coherence", "--participants", "2"]) == 2  # sim-0-* are Part 3 participants
    assert "take part in forward, not coherence; pass another --seed" in capsys.readouterr().err
    assert main([*command, "--part", "coherence", "--participants", "2", "--seed", "1"]) == 0
    capsys.readouterr()

    assert main(["study", "status", "--db", url]) == 0
    out = capsys.readouterr().out
    for group in GROUPS:  # one complete block: every group once, completed
        assert re.search(rf"{group}\s+1\s+1\s+1\s+0\s+{N_LEARN}\s+{N_TEST}\s+{N_TEST}\n", out), group
    assert re.search(r"coherence\s+2\s+2\s+0\s+0\s+2\s+0\n", out)
    assert main(["study", "analyze", "--db", url, "--out", str(tmp_path / "analysis")]) == 0
    analysis = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert [row["group"] for row in analysis["forward"]["accuracy"]] == GROUPS

    db.get_or_create_participant(engine, STUDY, "PROLIFIC123", "coherence", seed=1)  # a real person arrives
    before = len(db.export_frames(engine)["participants"])
    assert main([*command, "--part", "forward", "--participants", "1", "--seed", "2"]) == 2
    assert "has 1 real participant(s) (e.g. 'PROLIFIC123')" in capsys.readouterr().err
    assert len(db.export_frames(engine)["participants"]) == before
    db.dispose_engines()
