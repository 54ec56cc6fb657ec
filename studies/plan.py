"""`stylex study plan`: the study's pre-registration, written next to its materials before data come in, and the
hash that `stylex study analyze` prints to show which plan it followed (DESIGN.md section 8; user-study.md C5, D6).

The plan is Markdown with the hypotheses of both parts, the primary test (the GEE that ``study analyze`` runs), the
exclusion rules the analysis applies, the planned number of participants from a power analysis
(:func:`studies.simulate.power` with the GEE, on the design read from the materials' manifest) and the exact
commands of the analysis. Its last line records the SHA-256 of every byte above it, so ``head -n -1`` of the file
piped into ``sha256sum`` reproduces it, and any later edit shows: :func:`read_plan` recomputes the hash and says
when the two differ.

Why it is made the way it is:

* Everything in the plan is derived from the manifest and the command's options, and nothing from the clock, so
  the same materials and options give the same plan and the same hash (the simulation is seeded).
* The design numbers (trials per method, attributes, attention checks) come from the manifest rather than from
  options, so the power analysis simulates the study that will actually be served.
* A written plan is never silently replaced: a pre-registration is only worth something if it does not change
  after it was published, so a different plan at the same path needs ``--force``.

Imports no torch.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from evaluation.report import document as doc
from stylex.errors import UserError

PLAN_NAME = "preregistration.md"
HASH_LINE_PREFIX = "Plan SHA-256 (of every byte above this line): "
_HASH_LINE = re.compile(re.escape(HASH_LINE_PREFIX) + r"([0-9a-f]{64})\n?\Z")
DEFAULT_EFFECT = "0.8,0.6"
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
    parts = [part.strip() for part in str(text).split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 2 or not all(0.0 < v < 1.0 for v in values):
        raise UserError(f"--effect {text!r}: give two accuracies strictly between 0 and 1, the compared method's "
                        "then the reference's, e.g. --effect 0.8,0.6")
    if values[0] <= values[1]:
        raise UserError(f"--effect {text!r}: the hypothesis is that the compared method is better, so its accuracy "
                        "(first) must be above the reference's (second), e.g. --effect 0.8,0.6")
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

    @property
    def compared(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m != self.reference)

    @property
    def formula(self) -> str:
        """The GEE formula :func:`studies.analysis.compare_methods` uses for this design."""
        return "correct ~ C(method)" + (" + C(domain)" if len(self.domains) > 1 else "")


def study_design(materials: str | Path, study_id: str | None = None) -> Design:
    """The design of the study in ``materials`` (its manifest is checked: every GIF present with its sha256);
    ``study_id`` is the id the study has in its database (default: the manifest's, as `study build` uses)."""
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
    return Design(
        study_id=study_id or str(manifest.get("study_id") or materials.name),
        manifest_sha256=sha256_hex(manifest_file(materials).read_bytes()),
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
              sims: int = DEFAULT_SIMS, seed: int = 0, target: float = DEFAULT_TARGET_POWER) -> str:
    """The plan's Markdown without its hash line (the part the hash covers); runs the power analysis."""
    if not 0.0 < target < 1.0:
        raise UserError(f"--target-power must lie strictly between 0 and 1, got {target}")
    if sims < 1:
        raise UserError(f"--sims must be at least 1, got {sims}")
    if not effects:
        raise UserError("state at least one --effect, e.g. --effect 0.8,0.6")
    results = power_analysis(design, effects, grid, sims, seed, target)
    planned = max(needed for _, _, needed in results)
    try:
        version = metadata.version("stylex-suite")
    except metadata.PackageNotFoundError:
        version = "unknown version"
    blocks: list[doc.Block] = [
        doc.heading(1, doc.plain(f"Pre-registration: user study {design.study_id}")),
        _text(f"Written by `stylex study plan` (stylex-suite {version}) from the materials whose manifest has "
              f"SHA-256 {design.manifest_sha256}, before any data are analysed."),
        *_design_blocks(design), *_hypothesis_blocks(design), *_test_blocks(design), *_exclusion_blocks(),
        *_power_blocks(design, results, target, sims, seed, planned), *_command_blocks(design, plan_path),
    ]
    # a blank line before the hash line keeps it a paragraph of its own in Markdown
    return doc.render_markdown(blocks) + "\n"


# ---------------------------------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class PlanRecord:
    """A plan file: the SHA-256 of its text (every byte above the hash line) and the hash written in it."""

    path: Path
    sha256: str
    recorded_sha256: str | None

    @property
    def matches(self) -> bool:
        return self.recorded_sha256 == self.sha256

    def summary(self) -> str:
        """One line for the terminal and the report."""
        followed = f"plan followed: {self.path} (SHA-256 {self.sha256})"
        if self.recorded_sha256 is None:
            return f"{followed}; the file records no hash of its own, so `stylex study plan` did not write it"
        if not self.matches:
            return (f"{followed}; WARNING: the plan was changed after it was written, its last line records "
                    f"SHA-256 {self.recorded_sha256}")
        return followed

    def as_json(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "recorded_sha256": self.recorded_sha256,
                "matches": self.matches, "summary": self.summary()}


def _split(data: bytes) -> tuple[bytes, str | None]:
    """(the bytes the hash covers, the recorded hash or None); a file without a hash line is covered whole."""
    start = data.rfind(HASH_LINE_PREFIX.encode())
    if start != -1 and (start == 0 or data[start - 1:start] == b"\n"):
        found = _HASH_LINE.match(data[start:].decode("utf-8", errors="replace"))
        if found:
            return data[:start], found.group(1)
    return data, None


def read_plan(path: str | Path) -> PlanRecord:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no plan at {path}; write one with `stylex study plan --materials DIR` (or leave out "
                        "--plan to analyse without one)")
    body, recorded = _split(path.read_bytes())
    return PlanRecord(path=path, sha256=hashlib.sha256(body).hexdigest(), recorded_sha256=recorded)


def check_plan_target(path: str | Path, force: bool = False) -> None:
    """Refuse to go on when ``path`` is a folder, or already holds a plan and ``force`` is not given: checked before
    the power analysis, so a refusal costs nothing."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; name the plan file to write (default: DIR/{PLAN_NAME})")
    if path.exists() and not force:
        raise UserError(f"{path} already holds a plan (SHA-256 {read_plan(path).sha256}); a pre-registration must "
                        "not change once published: pass --out to write a new one elsewhere, or --force to replace "
                        "it")


def write_plan(text: str, path: str | Path, force: bool = False) -> PlanRecord:
    """Write ``text`` plus its hash line to ``path``; an existing different plan is replaced only with ``force``."""
    path = Path(path)
    body = text.encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    data = body + f"{HASH_LINE_PREFIX}{digest}\n".encode()
    if path.is_dir():
        raise UserError(f"{path} is a folder; name the plan file to write (default: DIR/{PLAN_NAME})")
    if path.exists() and path.read_bytes() != data and not force:  # written meanwhile by someone else
        old = read_plan(path)
        raise UserError(f"{path} already holds another plan (SHA-256 {old.sha256}); a pre-registration must not "
                        "change once published: pass --out to write this one elsewhere, or --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # readers never see half a plan
    return PlanRecord(path=path, sha256=digest, recorded_sha256=digest)


def find_plan(plan: str | Path | None, materials: str | Path | None) -> PlanRecord | None:
    """The plan an analysis follows: ``plan`` (which must exist), else ``materials/preregistration.md`` when there
    is one, else None."""
    if plan is not None:
        return read_plan(plan)
    if materials is not None and (Path(materials) / PLAN_NAME).is_file():
        return read_plan(Path(materials) / PLAN_NAME)
    return None


def no_plan_note(materials: str | Path | None) -> str:
    where = f"none at {Path(materials) / PLAN_NAME}" if materials is not None else "no --plan or --materials given"
    return (f"no pre-registered plan found ({where}); this analysis follows no plan. Write one before collecting "
            "data with `stylex study plan --materials DIR`, then pass --plan FILE or --materials DIR")
