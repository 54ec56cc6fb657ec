"""`stylex study plan` writes the pre-registration with its hash; `stylex study analyze` prints the hash of the plan
it followed. A materials folder and a study database filled by simulated participants, real statsmodels (the power
analysis runs the GEE), no mocks. Part 3 (forward simulation): the materials of test_study_forward_app loaded into a
database whose Part 3 participants were planned as the app plans them and answered through the database layer."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from test_study_app import METHODS, STUDY
from test_study_cli import simulated_study
from test_study_forward_app import CLASSES, N_STILLS, forward_materials

from studies import db, plan, plan_file
from studies.design import participant_seed
from studies.forward import CONTROL, forward_participant_plan
from studies.forward_analysis import forward_power
from studies.manifest import load_study
from stylex.cli import main

# small enough to run in a second: 4 simulated studies at 6 and 12 participants, an effect the toy design detects
FAST = ["--effect", "0.95,0.5", "--grid", "6,12", "--sims", "4"]
# Part 3: the same grid (per group) and simulations, an effect whose power needs the larger grid point (seed 0)
FORWARD = ["--forward-effect", "0.95,0.5", "--forward-effect", "0.9,0.6"]
HASH = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A materials folder (2 methods x 2 attributes, 1 attention check) and a database with 4 Part 1 and 3 Part 2
    simulated participants; the database names the study 'teststudy', the manifest 'fromfile'."""
    folder, url = simulated_study(tmp_path_factory.mktemp("plan"))
    db.dispose_engines()
    yield folder, url


@pytest.fixture(scope="module")
def forward_study(tmp_path_factory):
    """(materials folder, database URL) of a study with Part 3: learning screens of both methods and the random
    baseline (control's), 2 x ``N_STILLS`` test stills; two blocks of Part 3 participants, each consented and planned
    as the app does (``forward_participant_plan``), who answer every test trial (right on two trials of three)."""
    root = tmp_path_factory.mktemp("plan3")
    folder, key, _, decisions = forward_materials(root / "materials")
    url = f"sqlite:///{root / 'study.sqlite'}"
    engine = db.get_engine(url)
    load_study(engine, folder, key, study_id=STUDY)
    items, answer_key = db.study_items(engine, STUDY)
    for index in range(6):
        pid = f"PID_plan3_{index}"
        participant = db.get_or_create_participant(engine, STUDY, pid, "forward", participant_seed(STUDY, pid))
        trials = forward_participant_plan(engine, STUDY, participant, participant_seed(STUDY, pid), items, answer_key)
        assert db.add_trials(engine, participant, trials)
        answered = 0
        while (trial := db.next_trial(engine, participant)) is not None:
            if trial["kind"] == "learn":
                db.record_prediction(engine, trial["trial_id"], None)
                continue
            right = decisions[trial["assets"][0]]
            wrong = CLASSES[1] if right == CLASSES[0] else CLASSES[0]
            db.record_prediction(engine, trial["trial_id"], wrong if (index + answered) % 3 == 0 else right)
            answered += 1
        assert answered == 2 * N_STILLS  # the app's number of test trials, which the plan states
    db.dispose_engines()
    yield folder, url


def _printed_hash(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("plan SHA-256: ")]
    assert len(lines) == 1, out
    return lines[0].removeprefix("plan SHA-256: ")


def _write_plan(folder: Path, capsys, *extra: str) -> tuple[Path, str]:
    assert main(["study", "plan", "--materials", str(folder), "--study", STUDY, *FAST, *extra]) == 0
    out = capsys.readouterr().out
    target = Path(extra[extra.index("--out") + 1]) if "--out" in extra else folder / plan_file.PLAN_NAME
    assert f"wrote {target}" in out
    return target, _printed_hash(out)


def test_plan_then_analyze_print_the_same_hash(study, tmp_path, capsys):
    folder, url = study
    target, printed = _write_plan(folder, capsys, "--out", str(tmp_path / "preregistration.md"))
    data = target.read_bytes()
    split = data.rindex(plan_file.HASH_LINE_PREFIX.encode())
    assert data[split:].decode() == f"{plan_file.HASH_LINE_PREFIX}{printed}\n"  # the last line records the hash ...
    assert hashlib.sha256(data[:split]).hexdigest() == printed  # ... of every byte above it

    assert main(["study", "analyze", "--db", url, "--out", str(tmp_path / "analysis"), "--plan", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"plan followed: {target} (SHA-256 {printed})" in out.splitlines()
    report = (tmp_path / "analysis" / "analysis.md").read_text(encoding="utf-8")
    assert f"Plan followed: {target} (SHA-256 {printed})." in report
    recorded = json.loads((tmp_path / "analysis" / "analysis.json").read_text())["plan"]
    assert recorded["sha256"] == recorded["recorded_sha256"] == printed and recorded["matches"] is True


def test_the_plan_says_what_the_analysis_does(study, tmp_path, capsys):
    folder, _ = study
    target, _ = _write_plan(folder, capsys, "--out", str(tmp_path / "plan.md"), "--effect", "0.9,0.6")
    text = target.read_text(encoding="utf-8")
    assert text.startswith(f"# Pre-registration: user study {STUDY}\n")
    for expected in (
        "main trials per method: methodalpha: 2 (2 attributes), methodbeta: 2 (2 attributes)",
        "1 attention check(s)", "Reference method: methodalpha; compared: methodbeta.",
        "H1-methodbeta: the attributes of methodbeta are more coherent than those of methodalpha",
        "H2-methodbeta: the attributes of methodbeta are better described than those of methodalpha",
        "`correct ~ C(method)`, binomial family", "exchangeable working correlation within participants",
        "share of correct attention checks is below 1.0 is excluded from every analysis (so any failed check",
        "screened out by the app before any trial", "Practice trials never count.",
        "### Effect: accuracy 0.95 vs 0.5", "### Effect: accuracy 0.9 vs 0.6",
        "| n\\_participants | power | power\\_ci\\_low |",
        f'`stylex study status --db "$STUDY_DB" --study {STUDY}`',
        f"`stylex study analyze --db sqlite:///snapshot.sqlite --out analysis --plan {target}`",
    ):
        assert expected in text, expected
    assert re.search(r"\n\| 6 \| \d\.\d{3} \|", text) and re.search(r"\n\| 12 \| \d\.\d{3} \|", text)
    needed = [int(n) for n in re.findall(r"Power reaches 0\.8 at (\d+) participants\.", text)]
    assert len(needed) == 2 and f"Planned N: {max(needed)} participants in Part 1" in text


def test_the_plan_is_deterministic_and_never_silently_replaced(study, tmp_path, capsys):
    folder, _ = study
    out = tmp_path / "plan.md"
    _, first = _write_plan(folder, capsys, "--out", str(out))
    written = out.read_bytes()
    assert main(["study", "plan", "--materials", str(folder), "--study", STUDY, *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"already holds a plan (SHA-256 {first})" in err and "--force" in err
    assert out.read_bytes() == written
    _, again = _write_plan(folder, capsys, "--out", str(out), "--force")
    assert again == first and out.read_bytes() == written  # same materials and options, same plan


def test_analyze_finds_the_plan_next_to_the_materials(study, tmp_path, capsys):
    folder, url = study
    target, printed = _write_plan(folder, capsys)
    try:
        assert main(["study", "analyze", "--db", url, "--out", str(tmp_path / "a"), "--materials",
                     str(folder)]) == 0
        assert f"plan followed: {target} (SHA-256 {printed})" in capsys.readouterr().out

        # an edit after the plan was written shows: the text's hash and the recorded one are both printed
        target.write_bytes(target.read_bytes().replace(b"## Exclusions", b"## Exclusions (edited)"))
        assert main(["study", "analyze", "--db", url, "--out", str(tmp_path / "b"), "--materials",
                     str(folder)]) == 0
        out = capsys.readouterr().out
        changed = plan_file.read_plan(target).sha256
        assert changed != printed
        assert (f"plan followed: {target} (SHA-256 {changed}); WARNING: the plan was changed after it was written, "
                f"its last line records SHA-256 {printed}") in out
        assert json.loads((tmp_path / "b" / "analysis.json").read_text())["plan"]["matches"] is False
    finally:
        target.unlink()


def test_analyze_without_a_plan_says_so(study, tmp_path, capsys):
    folder, url = study
    assert not (folder / plan_file.PLAN_NAME).exists()
    for extra, where in (([], "no --plan or --materials given"),
                         (["--materials", str(folder)], f"none at {folder / plan_file.PLAN_NAME}")):
        out_dir = tmp_path / str(len(extra))
        assert main(["study", "analyze", "--db", url, "--out", str(out_dir), *extra]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"no pre-registered plan found ({where}); this analysis follows no plan.")
        assert "No pre-registered plan found" in (out_dir / "analysis.md").read_text(encoding="utf-8")
        assert json.loads((out_dir / "analysis.json").read_text())["plan"]["path"] is None


def test_a_plan_without_a_hash_line(tmp_path):
    hand_written = tmp_path / "plan.md"
    hand_written.write_text("# My plan\n\nAnalyse everything.\n", encoding="utf-8")
    record = plan_file.read_plan(hand_written)
    assert record.sha256 == hashlib.sha256(hand_written.read_bytes()).hexdigest()
    assert record.recorded_sha256 is None and not record.matches
    assert "records no hash of its own" in record.summary()


def test_the_plan_of_a_study_with_part3(forward_study, tmp_path, capsys):
    folder, url = forward_study
    target, printed = _write_plan(folder, capsys, "--db", url, *FORWARD, "--out", str(tmp_path / "plan.md"))
    text = target.read_text(encoding="utf-8")
    part3 = text[text.index("\n## Part 3: forward simulation\n"):text.index("\n## Analysis commands\n")]
    groups = [CONTROL, *METHODS]  # the random baseline's screens are control's: no group of its own
    for expected in (
        f"Groups, between-subject: {', '.join(groups)}; control sees the random baseline's attributes (2 learning "
        "screen(s))", "Learning screens per group: control: 2, methodalpha: 2, methodbeta: 2;",
        f"Test phase: {2 * N_STILLS} test trials per participant (the app's min(20, classes x smallest class count) "
        f"= min(20, 2 x {N_STILLS}))", f"Classes (the classifier's decisions on the test images): {CLASSES[0]} "
        f"({N_STILLS} image(s)), {CLASSES[1]} ({N_STILLS} image(s)).", "permuted blocks of 3",
        "`correct ~ C(group)`, binomial family", "reference level control",
        "two-sided Wald p-value is below 0.025 (0.05 divided by 2 comparison(s), Bonferroni)",
        "Part 3 has no attention checks", "participant random intercepts with SD 0.5 on the logit scale "
        "(forward_power's default), alpha 0.025", "| Accuracy (method vs control) | Participants per group |",
        "section `## Part 3: predicting the classifier (forward simulation)` of analysis.md and the key `forward` of "
        "analysis.json",
    ):
        assert expected in part3, expected
    hypotheses = re.findall(r"\n- H3-(\w+): participants who learned the attributes of \1 predict the classifier's "
                            r"decision on new images more accurately than control", part3)
    assert hypotheses == list(METHODS)
    assert "H3-control" not in text and "H3-random" not in text
    # the power rows and the planned N per group agree with forward_power run here with the same settings
    planned = []
    for acc, control_acc in ((0.95, 0.5), (0.9, 0.6)):
        table = forward_power(acc, control_acc, (6, 12), trials=2 * N_STILLS, sims=4, seed=0, alpha=0.025)
        for row in table.itertuples():
            assert (f"| {acc:g} vs {control_acc:g} | {row.n_per_group} | {2 * N_STILLS} | {row.power:.2f} "
                    f"[{row.power_ci_low:.2f}, {row.power_ci_high:.2f}] | {row.mean_difference:+.3f} | 4 | "
                    f"{row.gee_failures} |") in part3
        needed = int(table.loc[table["power"] >= 0.8, "n_per_group"].min())
        assert (f"Effect {acc:g} vs {control_acc:g} (method group vs control): power reaches 0.8 at {needed} "
                "participants per group.") in part3
        planned.append(needed)
    assert planned == [6, 12]  # so the plan must take the larger of the two
    assert ("Planned N for Part 3: 12 participants per group (the largest of the numbers above, so that every "
            "stated effect reaches power 0.8), 12 x 3 groups = 36 participants in all") in part3
    assert text.endswith(f"{plan_file.HASH_LINE_PREFIX}{printed}\n")


def test_part3_plan_then_analyze_print_the_same_hash(forward_study, tmp_path, capsys):
    folder, url = forward_study
    target, printed = _write_plan(folder, capsys, "--db", url, *FORWARD, "--out", str(tmp_path / "plan.md"))
    assert main(["study", "analyze", "--db", url, "--out", str(tmp_path / "analysis"), "--plan", str(target)]) == 0
    assert f"plan followed: {target} (SHA-256 {printed})" in capsys.readouterr().out.splitlines()
    result = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert result["plan"]["sha256"] == result["plan"]["recorded_sha256"] == printed
    assert [row["group"] for row in result["forward"]["accuracy"]] == [CONTROL, *METHODS]
    report = (tmp_path / "analysis" / "analysis.md").read_text(encoding="utf-8")
    assert "## Part 3: predicting the classifier (forward simulation)" in report


def test_materials_without_part3_get_no_part3_section(study, tmp_path, capsys):
    folder, url = study
    out = tmp_path / "plan.md"
    _, first = _write_plan(folder, capsys, "--out", str(out))
    written = out.read_bytes()
    assert b"Part 3" not in written and b"H3-" not in written and b"forward" not in written
    # --db (checked, but read only for Part 3) and --forward-effect change nothing when there is no Part 3
    _, second = _write_plan(folder, capsys, "--db", url, "--forward-effect", "0.7,0.6", "--out", str(out), "--force")
    assert second == first and out.read_bytes() == written
    assert plan.study_design(folder).forward is None


PLAN_ERRORS = [
    ("--effect 0.6,0.8", "must be above the reference's"),
    ("--effect 0.8", "give two accuracies strictly between 0 and 1"),
    ("--effect 1.2,0.5", "give two accuracies strictly between 0 and 1"),
    ("--effect high,low", "give two accuracies strictly between 0 and 1"),
    ("--grid 20,10", "give increasing participant numbers of at least 2"),
    ("--grid 1", "give increasing participant numbers of at least 2"),
    ("--sims 0", "--sims must be at least 1"),
    ("--target-power 1.5", "--target-power must lie strictly between 0 and 1"),
    ("--out {tmp}", "is a folder; name the plan file to write"),
    ("--effect 0.52,0.5 --grid 4 --sims 3 --target-power 0.95", "pass a larger --grid"),
    ("--forward-effect 0.6,0.8", "--forward-effect '0.6,0.8': the hypothesis is that the method group is better, so "
                                 "its accuracy (first) must be above the control group's (second)"),
    ("--forward-effect 0.8", "--forward-effect '0.8': give two accuracies strictly between 0 and 1"),
    ("--forward-effect 0.8,1", "give two accuracies strictly between 0 and 1, the method group's then the control "
                               "group's, e.g. --forward-effect 0.8,0.6"),
    ("--forward-effect 0.8,0.6 --forward-effect high,low", "--forward-effect 'high,low': give two accuracies"),
    ("--db sqlite:///{tmp}/typo.sqlite", "typo.sqlite"),
]


@pytest.mark.parametrize(("arguments", "message"), PLAN_ERRORS, ids=[a for a, _ in PLAN_ERRORS])
def test_plan_bad_inputs(study, tmp_path, arguments, message, capsys):
    folder, _ = study
    before = sorted(folder.rglob("*"))
    argv = ["study", "plan", "--materials", str(folder), *arguments.format(tmp=tmp_path).split()]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert sorted(folder.rglob("*")) == before and list(tmp_path.iterdir()) == []


FORWARD_ERRORS = [
    ("", "hold Part 3 (forward simulation) items, whose test images' classes (the classifier's decisions) live only "
         "in the study database: pass --db URL"),
    ("--db {url} --study otherstudy", "study 'otherstudy' is not in"),
    ("--db {url} --study {study} --effect 0.95,0.5 --grid 6 --sims 3 --forward-effect 0.52,0.5",
     "Part 3: with effect 0.52 vs 0.5 the GEE reaches power"),
]


@pytest.mark.parametrize(("arguments", "message"), FORWARD_ERRORS, ids=[a or "no --db" for a, _ in FORWARD_ERRORS])
def test_part3_plan_bad_inputs(forward_study, tmp_path, arguments, message, capsys):
    folder, url = forward_study
    before = sorted(folder.rglob("*"))
    argv = ["study", "plan", "--materials", str(folder), "--out", str(tmp_path / "plan.md"),
            *arguments.format(url=url, study=STUDY).split()]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    if "GEE reaches power" in message:
        assert "pass a larger --grid (e.g. --grid 6,12,24) or a larger --forward-effect" in err
    assert sorted(folder.rglob("*")) == before and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("materials", "message"), [("nothing", "no materials folder at"),
                                                    ("empty", "holds no manifest.json")])
def test_plan_needs_built_materials(tmp_path, materials, message, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["study", "plan", "--materials", str(tmp_path / materials)]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_analyze_with_a_missing_plan_stops_before_writing(study, tmp_path, capsys):
    _, url = study
    assert main(["study", "analyze", "--db", url, "--out", str(tmp_path / "out"), "--plan",
                 str(tmp_path / "typo.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no plan at {tmp_path / 'typo.md'}; write one with `stylex study plan")
    assert list(tmp_path.iterdir()) == []


def test_design_and_planned_participants(study):
    folder, _ = study
    design = plan.study_design(folder)
    assert design.study_id == "fromfile" and plan.study_design(folder, STUDY).study_id == STUDY
    assert design.methods == ("methodalpha", "methodbeta") and design.reference == "methodalpha"
    assert design.main_per_method == {"methodalpha": 2, "methodbeta": 2}
    assert design.attention_checks == 1 and design.practice_trials == 1
    assert design.formula == "correct ~ C(method)" and HASH.fullmatch(design.manifest_sha256)
    table = pd.DataFrame({"n_participants": [10, 20, 40], "power": [0.5, 0.81, 0.79]})
    assert plan.planned_participants(table, 0.8) == 20
    assert plan.planned_participants(table, 0.9) is None
