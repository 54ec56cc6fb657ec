"""`stylex study plan`: the study's pre-registration, written next to its materials before data come in, and the
hash that `stylex study analyze` prints to show which plan it followed (DESIGN.md section 8; user-study.md C5, D6).

The plan is Markdown with the hypotheses of both parts, the primary test (the GEE that ``study analyze`` runs), the
exclusion rules the analysis applies, the planned number of participants from a power analysis
(:func:`studies.simulate.power` with the GEE, on the design read from the materials' manifest) and the exact
commands of the analysis. When the materials hold Part 3 (forward simulation) material, the plan gets a Part 3
section of its own: groups, hypotheses per method group, the GEE against control, Part 3's exclusions and the planned
participants per group (:func:`studies.forward_analysis.forward_power`). Its last line records the SHA-256 of every
byte above it, so ``head -n -1`` of the file piped into ``sha256sum`` reproduces it, and any later edit shows:
:func:`studies.plan_file.read_plan` recomputes the hash and says when the two differ.

Why it is made the way it is:

* Everything in the plan is derived from the manifest and the command's options, and nothing from the clock, so
  the same materials and options give the same plan and the same hash (the simulation is seeded).
* The design numbers (trials per method, attributes, attention checks) come from the manifest rather than from
  options, so the power analysis simulates the study that will actually be served. Part 3's test trials per
  participant depend on the classes of its test images, which are the classifier's decisions: the answer key, which
  lives only in the study database, so Part 3 materials need ``--db`` (read-only; only the class counts are used).
* The file, its hash line and reading it back are :mod:`studies.plan_file`'s.

Imports no torch.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from evaluation.report import document as doc
from stylex.errors import UserError

DEFAULT_EFFECT = "0.8,0.6"
DEFAULT_FORWARD_EFFECT = "0.8,0.6"
DEFAULT_GRID = (10, 20, 40, 80)
DEFAULT_SIMS = 200
DEFAULT_TARGET_POWER = 0.8
ALPHA = 0.05
#: Random-intercept SDs on the logit scale for the power simulation (user-study.md D6: realistic is 0.5-0.8).
PARTICIPANT_SD = 0.5
ATTRIBUTE_SD = 0.5


# ---------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Effect:
    """The difference the study should detect: accuracy of a compared method (e.g. StylEx) and of the reference."""

    method_accuracy: float
    reference_accuracy: float

    def __str__(self) -> str:
        return f"{self.method_accuracy:g} vs {self.reference_accuracy:g}"


def parse_effect(text: str) -> Effect:
    """``"0.8,0.6"`` -> Effect(0.8, 0.6); the compared method's accuracy first, then the reference's."""
    return _parse_accuracies(text, "--effect", "the compared method's", "the reference's")


def parse_forward_effect(text: str) -> Effect:
    """``"0.8,0.6"`` -> Effect(0.8, 0.6) for Part 3: a method group's accuracy of predicting the classifier first,
    then the control group's."""
    return _parse_accuracies(text, "--forward-effect", "the method group's", "the control group's")


def _parse_accuracies(text: str, option: str, first: str, second: str) -> Effect:
    parts = [part.strip() for part in str(text).split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 2 or not all(0.0 < v < 1.0 for v in values):
        raise UserError(f"{option} {text!r}: give two accuracies strictly between 0 and 1, {first} then {second}, "
                        f"e.g. {option} 0.8,0.6")
    if values[0] <= values[1]:
        raise UserError(f"{option} {text!r}: the hypothesis is that {first[:-2]} is better, so its accuracy (first) "
                        f"must be above {second} (second), e.g. {option} 0.8,0.6")
    return Effect(values[0], values[1])


def parse_grid(text: str) -> tuple[int, ...]:
    """``"10,20,40"`` -> (10, 20, 40): participant numbers to simulate, increasing, each at least 2."""
    try:
        grid = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        grid = ()
    if not grid or any(n < 2 for n in grid) or list(grid) != sorted(set(grid)):
        raise UserError(f"--grid {text!r}: give increasing participant numbers of at least 2, e.g. --grid 10,20,40")
    return grid


@dataclass(frozen=True)
class ForwardDesign:
    """What one Part 3 (forward simulation) participant does, read from the Part 3 items of the manifest and the
    classes of its test images (the answer key in the study database), as ``studies.design.forward_material`` and
    ``studies.forward.forward_participant_plan`` read them for the app."""

    groups: tuple[str, ...]  # control first, as forward_material orders them
    screens_per_group: dict[str, int]  # learning screens; control: 0, or the random baseline's
    images_per_class: dict[str, int]  # test images in the materials per classifier decision
    test_trials: int  # per participant

    @property
    def compared(self) -> tuple[str, ...]:
        return self.groups[1:]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(self.images_per_class))


def forward_design(items: Sequence[dict], answer_key: dict[str, str]) -> ForwardDesign:
    """The Part 3 design of a study's items (manifest or ``db.study_items``) with the answer key joined on."""
    from studies.design import forward_material
    from studies.forward import count_test_trials

    images, screens, groups = forward_material(items, answer_key)
    undecided = sum(1 for image in images if image["classifier_decision"] in (None, ""))
    if undecided:
        raise UserError(f"{undecided} Part 3 test image(s) have no classifier decision in the study database; it "
                        "was loaded from other materials (pass the --db and --study the materials were built into)")
    per_class: dict[str, int] = {}
    for image in images:
        per_class[str(image["classifier_decision"])] = per_class.get(str(image["classifier_decision"]), 0) + 1
    if len(per_class) < 2:
        raise UserError(f"the Part 3 test images hold one classifier decision only ({', '.join(per_class)}); "
                        "predicting the classifier needs at least two classes")
    return ForwardDesign(
        groups=tuple(groups),
        screens_per_group={group: len(screens.get(group, ())) for group in groups},
        images_per_class=dict(sorted(per_class.items())),
        test_trials=count_test_trials(images),  # the app's number (studies.forward.forward_participant_plan)
    )


def study_answer_key(db_url: str, study_id: str, manifest_sha256: str) -> dict[str, str]:
    """The answer key of ``study_id`` in the study database at ``db_url`` (opened read-only, nothing created), after
    checking that the study was loaded from the manifest with ``manifest_sha256``."""
    from studies import db

    engine = db.open_readonly(db_url)
    try:
        with db.session_scope(engine) as session:
            study = session.get(db.Study, study_id)
            loaded = None if study is None else study.manifest_sha256
        if loaded is None:
            raise UserError(f"study {study_id!r} is not in {db.database_path(db_url)}; pass the --study id the "
                            "materials were loaded as by `stylex study build`")
        if loaded != manifest_sha256:
            raise UserError(f"study {study_id!r} in {db.database_path(db_url)} was loaded from another manifest "
                            f"(SHA-256 {loaded}, these materials' is {manifest_sha256}); pass the matching --db and "
                            "--study")
        return db.study_items(engine, study_id)[1]
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Design:
    """What one participant of each part does, read from the materials' manifest."""

    study_id: str
    manifest_sha256: str
    methods: tuple[str, ...]
    reference: str
    domains: tuple[str, ...]
    main_per_method: dict[str, int]
    attributes_per_method: dict[str, int]
    attention_checks: int
    practice_trials: int
    describe_per_method: dict[str, int]
    forward: ForwardDesign | None = None  # Part 3, when the materials have it

    @property
    def compared(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m != self.reference)

    @property
    def formula(self) -> str:
        """The GEE formula :func:`studies.analysis.compare_methods` uses for this design."""
        return "correct ~ C(method)" + (" + C(domain)" if len(self.domains) > 1 else "")


def study_design(materials: str | Path, study_id: str | None = None, db_url: str | None = None) -> Design:
    """The design of the study in ``materials`` (its manifest is checked: every GIF present with its sha256);
    ``study_id`` is the id the study has in its database (default: the manifest's, as `study build` uses).

    ``db_url``: the study database, read-only, for the classes of Part 3's test images (the answer key lives only
    there); needed when the materials hold Part 3 items, checked (study present, same manifest) whenever given."""
    from studies.analysis import DEFAULT_REFERENCE
    from studies.manifest import load_manifest, manifest_file, sha256_hex

    materials = Path(materials)
    if not materials.is_dir():
        raise UserError(f"no materials folder at {materials}; build it with `stylex study build --out ...`")
    if not manifest_file(materials).is_file():
        raise UserError(f"{materials} holds no manifest.json; build the materials with `stylex study build`")
    manifest = load_manifest(materials)
    items = manifest["items"]
    main = [item for item in items if item.get("part") == 1 and item.get("kind") == "main"]
    methods = tuple(sorted({str(item["method"]) for item in main}))
    if len(methods) < 2:
        raise UserError(f"the materials in {materials} hold Part 1 items of {len(methods)} method(s) "
                        f"({', '.join(methods) or 'none'}); a comparison needs at least 2")
    attention = sum(1 for item in items if item.get("part") == 1 and item.get("kind") == "attention")
    describe = [item for item in items if item.get("part") == 2]
    study_id = study_id or str(manifest.get("study_id") or materials.name)
    manifest_sha256 = sha256_hex(manifest_file(materials).read_bytes())
    answer_key = study_answer_key(db_url, study_id, manifest_sha256) if db_url is not None else None
    forward = None
    if any(item.get("part") == 3 for item in items):
        if answer_key is None:
            raise UserError(f"the materials in {materials} hold Part 3 (forward simulation) items, whose test images' "
                            "classes (the classifier's decisions) live only in the study database: pass --db URL, "
                            "the database `stylex study build` loaded them into")
        forward = forward_design(items, answer_key)
    return Design(
        study_id=study_id,
        manifest_sha256=manifest_sha256,
        methods=methods,
        # the same choice as analysis._pick_reference: Wu et al. when present, else the first method
        reference=DEFAULT_REFERENCE if DEFAULT_REFERENCE in methods else methods[0],
        domains=tuple(sorted({str(item["domain"]) for item in main})),
        main_per_method={m: sum(1 for item in main if item["method"] == m) for m in methods},
        attributes_per_method={m: len({(item["domain"], item["attr_i"]) for item in main if item["method"] == m})
                               for m in methods},
        attention_checks=attention,
        practice_trials=1 if attention else 0,  # design.plan_trials: one practice copy of an attention item
        describe_per_method={m: sum(1 for item in describe if item.get("method") == m) for m in methods},
        forward=forward,
    )


# ---------------------------------------------------------------------------------------------------- power


def planned_participants(power_table: pd.DataFrame, target: float) -> int | None:
    """The smallest simulated number of participants whose power reaches ``target``; None when none does."""
    reached = power_table.loc[power_table["power"] >= target, "n_participants"]
    return int(reached.min()) if len(reached) else None


def power_analysis(design: Design, effects: Sequence[Effect], grid: Sequence[int], sims: int, seed: int,
                   target: float) -> list[tuple[Effect, pd.DataFrame, int]]:
    """(effect, power table, planned participants) per effect, simulated with the GEE at the per-comparison alpha
    (Bonferroni over the compared methods). Raises when an effect does not reach ``target`` within ``grid``."""
    from studies.simulate import power

    # the fewest trials and attributes any method has: the power of its comparison is the lowest
    trials = min(design.main_per_method.values())
    attributes = min(design.attributes_per_method.values())
    alpha = ALPHA / len(design.compared)
    results = []
    for effect in effects:
        with warnings.catch_warnings():
            # small simulated studies can separate perfectly or not converge; power() counts those as misses
            warnings.simplefilter("ignore")
            table = power(effect.method_accuracy, effect.reference_accuracy, participants_grid=tuple(grid),
                          trials_per_method=trials, n_sims=sims, alpha=alpha, seed=seed, test="gee",
                          participant_sd=PARTICIPANT_SD, attribute_sd=ATTRIBUTE_SD, attributes=attributes)
        planned = planned_participants(table, target)
        if planned is None:
            raise UserError(f"with effect {effect} the GEE reaches power {table['power'].max():.2f} at most with up "
                            f"to {max(grid)} participants, below the target {target}; pass a larger --grid (e.g. "
                            f"--grid {max(grid)},{2 * max(grid)},{4 * max(grid)}) or a larger --effect")
        results.append((effect, table, planned))
    return results


def forward_alpha(forward: ForwardDesign) -> float:
    """The per-comparison alpha of Part 3: Bonferroni over the method groups compared with control."""
    return ALPHA / len(forward.compared)


def forward_participant_sd() -> float:
    """The participant random-intercept SD of the Part 3 power simulation: ``forward_power``'s default."""
    from studies.forward_analysis import forward_power

    return float(inspect.signature(forward_power).parameters["participant_sd"].default)


def forward_power_analysis(forward: ForwardDesign, effects: Sequence[Effect], grid: Sequence[int], sims: int,
                           seed: int, target: float) -> list[tuple[Effect, pd.DataFrame, int]]:
    """(effect, power table, planned participants per group) per Part 3 effect: ``forward_power`` with ``grid``
    read as participants *per group*, the design's test trials per participant, the per-comparison alpha and
    ``forward_power``'s default participant SD. Raises when an effect does not reach ``target`` within ``grid``."""
    from studies.forward_analysis import forward_power

    results = []
    for effect in effects:
        table = forward_power(effect.method_accuracy, effect.reference_accuracy, participants_grid=tuple(grid),
                              trials=forward.test_trials, sims=sims, seed=seed, alpha=forward_alpha(forward))
        reached = table.loc[table["power"] >= target, "n_per_group"]
        if not len(reached):
            raise UserError(f"Part 3: with effect {effect} the GEE reaches power {table['power'].max():.2f} at most "
                            f"with up to {max(grid)} participants per group, below the target {target}; pass a "
                            f"larger --grid (e.g. --grid {max(grid)},{2 * max(grid)},{4 * max(grid)}) or a larger "
                            "--forward-effect")
        results.append((effect, table, int(reached.min())))
    return results


# ---------------------------------------------------------------------------------------------------- the text


def _text(*parts: str | doc.Span) -> doc.Paragraph:
    return doc.Paragraph(doc.inline(*(doc.plain(p) if isinstance(p, str) else p for p in parts)))


def _code(text: str) -> doc.Span:
    return doc.Span(text, code=True)


def _bullets(*items: Sequence[str | doc.Span]) -> doc.Bullets:
    return doc.Bullets(tuple(doc.inline(*(doc.plain(p) if isinstance(p, str) else p for p in item))
                             for item in items))


def _design_blocks(design: Design) -> list[doc.Block]:
    per_method = ", ".join(f"{m}: {design.main_per_method[m]} ({design.attributes_per_method[m]} attributes)"
                           for m in design.methods)
    describe = ", ".join(f"{m}: {design.describe_per_method[m]}" for m in design.methods)
    return [doc.heading(2, doc.plain("Design")), _bullets(
        ["Part 1 (coherence): each participant sees every main item of every method, methods interleaved; main "
         f"trials per method: {per_method}; domains: {', '.join(design.domains)}; {design.attention_checks} "
         f"attention check(s) spread over the trials; {design.practice_trials} practice trial first (never "
         "analysed)."],
        ["Part 2 (description), other participants: every attribute once, described in 1-4 words; items per "
         f"method: {describe}."],
        [f"Reference method: {design.reference}; compared: {', '.join(design.compared)}."],
    )]


def _hypothesis_blocks(design: Design) -> list[doc.Block]:
    ref = design.reference
    part1 = [[f"H1-{m}: the attributes of {m} are more coherent than those of {ref}: participants pick the option "
              f"that shows the same attribute as the two example GIFs more often for {m} than for {ref} (odds "
              f"ratio of {m} vs {ref} above 1; the paper's Table 2 comparison)."] for m in design.compared]
    part2 = [[f"H2-{m}: the attributes of {m} are better described than those of {ref}: a larger share of "
              f"descriptions contain the attribute's most frequent word (top_share), more attributes whose "
              "descriptions all share a word (shared_by_all), and fewer attribute pairs sharing a top word."]
             for m in design.compared]
    return [doc.heading(2, doc.plain("Hypotheses")), _bullets(*part1, *part2),
            _text("Part 2 is reported descriptively per method and attribute (word tables of `study analyze`); no "
                  "test is planned for it, and the sample size is planned for Part 1.")]


def _test_blocks(design: Design) -> list[doc.Block]:
    alpha = ALPHA / len(design.compared)
    return [doc.heading(2, doc.plain("Primary test")), _text(
        "A GEE on the main Part 1 trials of the kept participants: ", _code(design.formula),
        f", binomial family (logit link), exchangeable working correlation within participants, robust (sandwich) "
        f"standard errors, reference level {design.reference}. H1-m is supported when the odds ratio of m vs "
        f"{design.reference} is above 1 and its two-sided Wald p-value is below {alpha:g} ({ALPHA:g} divided by "
        f"{len(design.compared)} comparison(s), Bonferroni)."),
        _text("Reported, not used for the decision: the Bayesian mixed logistic model (random intercepts for "
              "participants and attributes, variational Bayes), a participant cluster bootstrap of the accuracy "
              "difference per domain, pooled accuracy per method and domain with Wilson 95% intervals, binomial "
              "tests against chance (0.5), and mean ± s.d. over attributes and over participants.")]


def _exclusion_blocks() -> list[doc.Block]:
    from studies.analysis import analyze

    min_attention = inspect.signature(analyze).parameters["min_attention"].default
    every = " (so any failed check excludes)" if min_attention == 1.0 else ""
    return [doc.heading(2, doc.plain("Exclusions")), _bullets(
        [f"Attention: a participant whose share of correct attention checks is below {min_attention} is excluded "
         f"from every analysis{every}."],
        ["Comprehension: a person who does not pass the comprehension check after the instructions is screened out "
         "by the app before any trial and contributes no responses."],
        ["Practice trials never count."],
        ["Participants who stop before the end: the trials they answered are analysed like the others (the analysis "
         "reads every answered trial; it has no completion rule)."],
        ["Sensitivity: accuracy without any exclusion is reported next to the main table."],
    )]


def _power_blocks(design: Design, results: Sequence[tuple[Effect, pd.DataFrame, int]], target: float,
                  sims: int, seed: int, planned: int) -> list[doc.Block]:
    trials = min(design.main_per_method.values())
    attributes = min(design.attributes_per_method.values())
    blocks: list[doc.Block] = [doc.heading(2, doc.plain("Planned sample size")), _text(
        f"Power of the primary test, simulated ({sims} studies per row, seed {seed}) with ",
        _code("studies.simulate.power(test='gee')"),
        f": {trials} main trials per method and participant over {attributes} attributes, random intercepts with "
        f"SD {PARTICIPANT_SD:g} (participants) and {ATTRIBUTE_SD:g} (attributes) on the logit scale, alpha "
        f"{ALPHA / len(design.compared):g}. A study detects the effect when p < alpha and the odds ratio is above 1. "
        "Power intervals are Wilson 95% over the simulated studies; mean_difference is the simulated accuracy "
        "difference and mean_ci_width the width of its 95% interval (paired t over participants), averaged.")]
    columns = ["n_participants", "power", "power_ci_low", "power_ci_high", "mean_difference", "mean_ci_width"]
    for effect, table, needed in results:
        rows = [[str(int(row.n_participants)), *(f"{getattr(row, c):.3f}" for c in columns[1:])]
                for row in table.itertuples()]
        blocks += [doc.heading(3, doc.plain(f"Effect: accuracy {effect} (compared method vs reference)")),
                   doc.table(columns, rows, numeric=[True] * len(columns)),
                   _text(f"Power reaches {target:g} at {needed} participants.")]
    blocks.append(_text(
        f"Planned N: {planned} participants in Part 1 who complete it and pass the exclusions (the largest of the "
        f"numbers above, so that every stated effect reaches power {target:g}); recruitment continues until that "
        f"many are kept, and stops then. Part 2: {planned} other participants."))
    return blocks


def _forward_blocks(design: Design, results: Sequence[tuple[Effect, pd.DataFrame, int]], target: float, sims: int,
                    seed: int) -> list[doc.Block]:
    """The Part 3 section: design, hypotheses, primary test, exclusions, planned participants, where the analysis
    reports it."""
    from studies.forward import DEFAULT_TEST_TRIALS
    from studies.forward_analysis import FORMULA, compare_forward, power_table

    forward = design.forward
    assert forward is not None
    control, compared = forward.groups[0], forward.compared
    alpha = forward_alpha(forward)
    control_sees = (f"the random baseline's attributes ({forward.screens_per_group[control]} learning screen(s))"
                    if forward.screens_per_group[control] else "no attributes (no learning screens)")
    screens = ", ".join(f"{g}: {forward.screens_per_group[g]}" for g in forward.groups)
    classes = ", ".join(f"{c} ({n} image(s))" for c, n in forward.images_per_class.items())
    smallest = min(forward.images_per_class.values())
    blocks: list[doc.Block] = [doc.heading(2, doc.plain("Part 3: forward simulation")), _text(
        "Other participants (a participant id belongs to one part) learn one explanation's attributes and then "
        "predict the classifier's decision on new images; the measure is the accuracy of that prediction."),
        doc.heading(3, doc.plain("Part 3 design")), _bullets(
        [f"Groups, between-subject: {', '.join(forward.groups)}; {control} sees {control_sees}, every other group "
         "the attributes of its method."],
        [f"Learning screens per group: {screens}; each shows one attribute's GIFs labelled with the class it pushes "
         "the classifier toward, in the method's ranking. Learning screens are not responses."],
        [f"Test phase: {forward.test_trials} test trials per participant (the app's min({DEFAULT_TEST_TRIALS}, "
         f"classes x smallest class count) = min({DEFAULT_TEST_TRIALS}, {len(forward.classes)} x {smallest})), each "
         "a new still image with no explanation, answered with one button per class; classes balanced, order "
         f"shuffled per participant. Classes (the classifier's decisions on the test images): {classes}."],
        [f"Assignment: by arrival order in permuted blocks of {len(forward.groups)} (each block a permutation of the "
         "groups seeded by the study id), so after every complete block all groups have the same number of "
         "participants."],
    )]
    blocks += [doc.heading(3, doc.plain("Part 3 hypotheses")), _bullets(
        *([f"H3-{g}: participants who learned the attributes of {g} predict the classifier's decision on new images "
           f"more accurately than {control} (odds ratio of {g} vs {control} above 1)."] for g in compared))]
    n_boot = inspect.signature(compare_forward).parameters["n_boot"].default
    blocks += [doc.heading(3, doc.plain("Part 3 primary test")), _text(
        "A GEE on the answered Part 3 test trials: ", _code(FORMULA),
        f", binomial family (logit link), exchangeable working correlation within participants, robust (sandwich) "
        f"standard errors, reference level {control}. H3-g is supported when the odds ratio of g vs {control} is "
        f"above 1 and its two-sided Wald p-value is below {alpha:g} ({ALPHA:g} divided by {len(compared)} "
        "comparison(s), Bonferroni)."),
        _text(f"Reported, not used for the decision: the accuracy difference of every method group minus {control} "
              "with a 95% percentile interval from a participant bootstrap stratified by group "
              f"({n_boot} resamples), pooled accuracy per group with Wilson 95% intervals, and mean ± s.d. of "
              "accuracy over participants.")]
    blocks += [doc.heading(3, doc.plain("Part 3 exclusions")), _bullets(
        ["Comprehension: a person who does not pass Part 3's comprehension check after the instructions is screened "
         "out by the app before any trial and contributes no responses."],
        ["Part 3 has no attention checks (its trials are learning screens and test trials only), so the attention "
         "rule above does not apply to it."],
        ["Unanswered test trials are left out; participants who stop before the end: the test trials they answered "
         "are analysed like the others (no completion rule)."],
        ["No other exclusion: every answered test trial of every Part 3 participant is analysed, so no separate "
         "sensitivity analysis is planned."],
    )]
    sd = forward_participant_sd()
    blocks += [doc.heading(3, doc.plain("Part 3 planned sample size")), _text(
        f"Power of the Part 3 primary test, simulated ({sims} studies per row, seed {seed}) with ",
        _code("studies.forward_analysis.forward_power"),
        f": one method group against {control}, {forward.test_trials} test trials per participant, participant "
        f"random intercepts with SD {sd:g} on the logit scale (forward_power's default), alpha {alpha:g}; the "
        "participant numbers are per group. A study detects the effect when p < alpha and the odds ratio is above 1."),
        power_table(pd.concat([table for _, table, _ in results], ignore_index=True)),
        _bullets(*([f"Effect {effect} (method group vs {control}): power reaches {target:g} at {needed} participants "
                    "per group."] for effect, _, needed in results))]
    per_group = max(needed for _, _, needed in results)
    blocks.append(_text(
        f"Planned N for Part 3: {per_group} participants per group (the largest of the numbers above, so that every "
        f"stated effect reaches power {target:g}), {per_group} x {len(forward.groups)} groups = "
        f"{per_group * len(forward.groups)} participants in all; recruitment continues until every group has "
        f"{per_group} participants with answered test trials, and stops then."))
    blocks += [doc.heading(3, doc.plain("Part 3 analysis")), _text(
        "The ", _code("stylex study analyze"), " command below analyses Part 3 from the same snapshot: its results "
        "are the section ", _code("## Part 3: predicting the classifier (forward simulation)"), " of analysis.md and "
        "the key ", _code("forward"), " of analysis.json (", _code("accuracy"), " per group; ", _code("comparisons"),
        f": every method group against {control}, with the GEE odds ratio and p-value and the bootstrap "
        "difference).")]
    return blocks


def _command_blocks(design: Design, plan_path: Path) -> list[doc.Block]:
    return [doc.heading(2, doc.plain("Analysis commands")), _text(
        "Run on the server, with STUDY_DB set to the study's database URL (e.g. sqlite:///study.sqlite):"),
        _bullets([_code(f'stylex study status --db "$STUDY_DB" --study {design.study_id}')],
                 [_code('stylex study backup --db "$STUDY_DB" --out snapshot.sqlite')],
                 [_code(f"stylex study analyze --db sqlite:///snapshot.sqlite --out analysis --plan {plan_path}")]),
        _text("The analysis reads the snapshot, applies the exclusions above and writes analysis.md, "
              "analysis.json and table2.tex; it prints the SHA-256 of this plan, which must equal the one on the "
              f"last line. To check the hash by hand, pipe `head -n -1 {plan_path.name}` into `sha256sum`.")]


def plan_text(design: Design, plan_path: Path, effects: Sequence[Effect], grid: Sequence[int] = DEFAULT_GRID,
              sims: int = DEFAULT_SIMS, seed: int = 0, target: float = DEFAULT_TARGET_POWER,
              forward_effects: Sequence[Effect] = ()) -> str:
    """The plan's Markdown without its hash line (the part the hash covers); runs the power analysis (Part 3's too,
    for ``forward_effects``, when the design has Part 3)."""
    if not 0.0 < target < 1.0:
        raise UserError(f"--target-power must lie strictly between 0 and 1, got {target}")
    if sims < 1:
        raise UserError(f"--sims must be at least 1, got {sims}")
    if not effects:
        raise UserError("state at least one --effect, e.g. --effect 0.8,0.6")
    if design.forward is not None and not forward_effects:
        raise UserError("the materials hold Part 3: state at least one --forward-effect, e.g. --forward-effect 0.8,0.6")
    results = power_analysis(design, effects, grid, sims, seed, target)
    planned = max(needed for _, _, needed in results)
    forward = ([] if design.forward is None else
               _forward_blocks(design, forward_power_analysis(design.forward, forward_effects, grid, sims, seed,
                                                              target), target, sims, seed))
    try:
        version = metadata.version("stylex-suite")
    except metadata.PackageNotFoundError:
        version = "unknown version"
    blocks: list[doc.Block] = [
        doc.heading(1, doc.plain(f"Pre-registration: user study {design.study_id}")),
        _text(f"Written by `stylex study plan` (stylex-suite {version}) from the materials whose manifest has "
              f"SHA-256 {design.manifest_sha256}, before any data are analysed."),
        *_design_blocks(design), *_hypothesis_blocks(design), *_test_blocks(design), *_exclusion_blocks(),
        *_power_blocks(design, results, target, sims, seed, planned), *forward, *_command_blocks(design, plan_path),
    ]
    # a blank line before the hash line keeps it a paragraph of its own in Markdown
    return doc.render_markdown(blocks) + "\n"
