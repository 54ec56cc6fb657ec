"""Part 3 of the user study, forward simulation: the design and simulated participants (DESIGN.md section 8).

A participant of Part 3 first sees a *learning phase*: the top attributes of one explanation method, each as its
sweep GIFs (as in Part 1) labelled with the class the attribute pushes the classifier toward. Then, in the *test
phase*, they see new still images with no explanation and predict the classifier's decision on each. Groups are
between-subject: one per explanation method (e.g. ``stylex``, ``wu``) and a ``control`` group that sees no
attributes, or the ``random`` baseline's attributes when the study gives it learning screens. Accuracy of predicting
the classifier is the measure of how useful an explanation is (``studies.forward_analysis``).

What this module gives the app and the analysis:

* :func:`assign_group`: balanced between-subject assignment by arrival order (seeded permuted blocks).
* :func:`plan_forward_trials`: one participant's plan (pure and seeded): the learning screens of their group and
  the test trials, classes balanced, shuffled. The classifier's decision in each test trial is the hidden answer
  key: the app stores it server-side and never renders it.
* The response format (:data:`RESPONSE_COLUMNS`, :func:`score_trial`, :func:`responses_frame`,
  :func:`check_forward_responses`): the tidy per-trial rows the app stores and the analysis reads.
* Simulated participants: :func:`planted_forward_responses` (planted accuracies, for the analysis and power) and
  :class:`ForwardObserver` / :func:`run_forward_participants` (a participant that learns from the GIF pixels), and
  :func:`run_forward_study_participants` (the same observers through the study database, like the app, for pilots).

Imports no torch.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize
from sqlalchemy import Engine

from studies import db
from studies.design import forward_material, forward_trials, participant_seed
from studies.simulate import change_signature, gif_frames
from stylex.errors import UserError

__all__ = [
    "CONTROL",
    "DEFAULT_TEST_TRIALS",
    "RESPONSE_COLUMNS",
    "ForwardObserver",
    "assign_group",
    "check_forward_responses",
    "count_test_trials",
    "forward_participant_plan",
    "plan_forward_trials",
    "planted_forward_responses",
    "responses_frame",
    "run_forward_participants",
    "run_forward_study_participants",
    "score_trial",
]

#: The group that sees no attributes (or, when the study gives it learning screens, the random baseline's).
CONTROL = "control"
DEFAULT_TEST_TRIALS = 20

RESPONSE_COLUMNS = ["participant", "group", "trial", "image", "classifier_decision", "prediction", "correct", "rt_ms"]
"""One row per answered test trial; the app stores exactly these columns (learning screens are not responses):

* ``participant`` (str): the participant's id, the cluster of the GEE.
* ``group`` (str): the between-subject group, e.g. ``control``, ``stylex``, ``wu``.
* ``trial`` (int): position of the trial in the participant's test phase, from 0.
* ``image`` (str): asset id of the test image shown.
* ``classifier_decision`` (str): the classifier's decision on the image (the answer key, never shown).
* ``prediction`` (str): the class the participant predicted.
* ``correct`` (nullable boolean): ``prediction == classifier_decision``.
* ``rt_ms`` (Int64, may be missing): time from showing the image to the answer, as in Parts 1-2.
"""


# ---------------------------------------------------------------------------------------------------------- design


def _check_groups(groups: Sequence[str]) -> list[str]:
    groups = list(groups)
    if len(groups) < 2 or len(set(groups)) != len(groups) or not all(isinstance(g, str) and g for g in groups):
        raise UserError(f"groups must be at least two distinct non-empty names, got {groups!r}")
    return groups


def assign_group(participant_index: int, groups: Sequence[str], seed: int = 0) -> str:
    """The group of the participant who arrived ``participant_index``-th (0, 1, 2, ...) in a Part 3 study.

    Permuted blocks: participants are dealt in blocks of ``len(groups)``, each block a seeded permutation of the
    groups, so after every complete block all groups have the same number of participants and the order within a
    block cannot be predicted without the seed. Pure: the app can recompute any participant's group from its index.
    """
    groups = _check_groups(groups)
    if isinstance(participant_index, bool) or not isinstance(participant_index, (int, np.integer)) \
            or participant_index < 0:
        raise UserError(f"participant_index must be an integer >= 0, got {participant_index!r}")
    block, position = divmod(int(participant_index), len(groups))
    order = list(groups)
    # a str seed: random.Random hashes it with SHA-512, so the draw does not depend on PYTHONHASHSEED
    random.Random(f"forward-groups:{seed}:{block}").shuffle(order)
    return order[position]


def _check_images(images: Sequence[Mapping]) -> list[dict]:
    pool = []
    for item in images:
        if not isinstance(item, Mapping) or not item.get("image") or item.get("classifier_decision") in (None, ""):
            raise UserError(f"every test image needs an 'image' (asset id) and a 'classifier_decision', got {item!r}")
        pool.append({"image": str(item["image"]), "classifier_decision": str(item["classifier_decision"]),
                     "source": item.get("source")})
    ids = [item["image"] for item in pool]
    if len(set(ids)) != len(ids):
        raise UserError("the test images list an asset id more than once")
    if len({item["classifier_decision"] for item in pool}) < 2:
        raise UserError("the test images need at least two classifier decisions (classes) to predict between")
    return pool


def _balanced_test_trials(pool: Sequence[dict], n_trials: int, rng: random.Random) -> list[dict]:
    """``n_trials`` images, the classes as equal as possible (floor/ceil, the extra ones to random classes), in a
    random order, so that a participant who always answers one class scores about 1/K."""
    by_class: dict[str, list[dict]] = {}
    for item in pool:
        by_class.setdefault(item["classifier_decision"], []).append(item)
    classes = sorted(by_class)
    quota = dict.fromkeys(classes, n_trials // len(classes))
    for extra in rng.sample(classes, n_trials % len(classes)):
        quota[extra] += 1
    chosen = []
    for name in classes:
        if len(by_class[name]) < quota[name]:
            raise UserError(f"class {name!r} has {len(by_class[name])} test image(s), but {n_trials} balanced test "
                            f"trials need {quota[name]}; add images or lower n_trials")
        chosen += rng.sample(by_class[name], quota[name])
    rng.shuffle(chosen)
    return [{"trial": k, "image": item["image"], "classifier_decision": item["classifier_decision"]}
            for k, item in enumerate(chosen)]


def _check_screens(group: str, screens: Sequence[Mapping], classes: set[str]) -> list[dict]:
    checked = []
    for screen in screens:
        assets = screen.get("assets") if isinstance(screen, Mapping) else None
        if not assets or isinstance(assets, str) or not all(isinstance(a, str) and a for a in assets):
            raise UserError(f"a learning screen of group {group!r} needs a non-empty list of GIF asset ids "
                            f"('assets'), got {screen!r}")
        if screen.get("target_class") in (None, ""):
            raise UserError(f"a learning screen of group {group!r} needs the 'target_class' its attribute pushes the "
                            f"classifier toward (its label on the screen), got {screen!r}")
        target = str(screen["target_class"])
        if target not in classes:
            raise UserError(f"a learning screen of group {group!r} points to class {target!r}, which is not among "
                            f"the classifier decisions of the test images {sorted(classes)}")
        checked.append({**screen, "assets": list(assets), "target_class": target})
    return checked


def plan_forward_trials(images: Sequence[Mapping], group: str, seed: int,
                        learning_screens: Mapping[str, Sequence[Mapping]] | None = None,
                        n_trials: int = DEFAULT_TEST_TRIALS) -> dict:
    """One Part 3 participant's plan: ``{"group", "classes", "learning", "test"}``.

    * ``images``: the pool of test images, dicts with ``image`` (asset id of a still image), ``classifier_decision``
      (the class the classifier predicts for it) and optionally ``source`` (the dataset image it shows).
    * ``learning_screens``: group -> its screens in display order (the method's ranking), each a dict with
      ``assets`` (the attribute's sweep GIF asset ids), ``target_class`` (the class the attribute pushes toward,
      shown as the screen's label), optionally ``attribute`` and ``sources`` (the dataset images of the GIFs).
      ``control`` needs no entry (it then sees no attributes); every other group needs screens.
    * ``learning``: the group's screens (``[]`` for a control without screens).
    * ``test``: ``n_trials`` dicts ``{"trial", "image", "classifier_decision"}``, classes balanced, shuffled with
      ``seed``. ``classifier_decision`` is the answer key: store it, never render it.

    Test images must be new to the participant: when both sides give sources, a test image whose source appears in
    the group's GIFs is refused (the GIF's first frame would show it, next to the class it is pushed *away from*).
    """
    if group != CONTROL and group not in (learning_screens or {}):
        known = sorted({CONTROL, *(learning_screens or {})})
        raise UserError(f"unknown group {group!r}; groups with learning screens: {known}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise UserError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    pool = _check_images(images)
    classes = {item["classifier_decision"] for item in pool}
    screens = _check_screens(group, (learning_screens or {}).get(group, ()), classes)
    if group != CONTROL and not screens:
        raise UserError(f"group {group!r} has no learning screens; only {CONTROL!r} may see no attributes")
    shown = {str(s) for screen in screens for s in screen.get("sources") or ()}
    reused = sorted(str(item["source"]) for item in pool if item["source"] is not None and str(item["source"]) in shown)
    if reused:
        raise UserError(f"test image source(s) {', '.join(reused)} also appear in the learning GIFs of group "
                        f"{group!r}; the test phase must show new images")
    test = _balanced_test_trials(pool, n_trials, random.Random(f"forward-test:{seed}"))
    return {"group": group, "classes": sorted(classes), "learning": screens, "test": test}


def forward_participant_plan(engine: Engine, study_id: str, participant_id: int, seed: int, items: Sequence[dict],
                             answer_key: Mapping[str, str]) -> list[dict]:
    """The trials to store for a Part 3 participant who just consented (the app and the simulated participants call
    this, so both get the same plan): the group of its arrival order (:func:`assign_group` over
    ``db.forward_index``, balanced in permuted blocks seeded by the study, so the next group cannot be guessed from a
    link), then :func:`plan_forward_trials` with as many balanced test trials as the materials allow, at most
    :data:`DEFAULT_TEST_TRIALS`. ``items`` and ``answer_key`` are ``db.study_items``'s."""
    images, screens, groups = forward_material(items, dict(answer_key))
    group = assign_group(db.forward_index(engine, participant_id), groups, seed=participant_seed(study_id, ""))
    return forward_trials(plan_forward_trials(images, group, seed, screens, count_test_trials(images)))


def count_test_trials(images: Sequence[Mapping]) -> int:
    """How many test trials a Part 3 participant answers: as many as the test images allow with the classes
    balanced (classes x the smallest class's images), at most :data:`DEFAULT_TEST_TRIALS`; 0 without images."""
    per_class: dict[str, int] = {}
    for image in images:
        decision = str(image["classifier_decision"])
        per_class[decision] = per_class.get(decision, 0) + 1
    return min(DEFAULT_TEST_TRIALS, len(per_class) * min(per_class.values(), default=0))


# ------------------------------------------------------------------------------------------------- response format


def score_trial(participant: str, group: str, test_trial: Mapping, prediction: str, rt_ms: int | None = None) -> dict:
    """The stored row of one answered test trial (see :data:`RESPONSE_COLUMNS`); ``correct`` is computed here,
    server-side, from the planned trial's answer key."""
    prediction = str(prediction)
    decision = str(test_trial["classifier_decision"])
    return {"participant": str(participant), "group": str(group), "trial": int(test_trial["trial"]),
            "image": str(test_trial["image"]), "classifier_decision": decision, "prediction": prediction,
            "correct": prediction == decision, "rt_ms": None if rt_ms is None else int(rt_ms)}


def responses_frame(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Rows of :func:`score_trial` as the typed response frame (``correct`` nullable boolean, ``trial`` int,
    ``rt_ms`` Int64)."""
    frame = pd.DataFrame(list(rows), columns=RESPONSE_COLUMNS)
    frame["trial"] = frame["trial"].astype("int64")
    frame["correct"] = frame["correct"].astype("boolean")
    frame["rt_ms"] = frame["rt_ms"].astype("Int64")
    return frame


def check_forward_responses(responses: pd.DataFrame) -> pd.DataFrame:
    """The answered trials of a response frame, checked: every column present, at least one answered trial, each
    participant in one group only (the design is between-subject), and ``correct`` equal to
    ``prediction == classifier_decision``. Rows without a prediction (unanswered) are left out."""
    if not isinstance(responses, pd.DataFrame):
        raise UserError(f"responses must be a pandas DataFrame with columns {RESPONSE_COLUMNS}")
    missing = [c for c in RESPONSE_COLUMNS if c not in responses.columns]
    if missing:
        raise UserError(f"Part 3 responses lack the column(s) {', '.join(missing)}; expected {RESPONSE_COLUMNS}")
    df = responses[responses["prediction"].notna()].copy()
    if df.empty:
        raise UserError("no answered Part 3 trials in the responses")
    for column in ("participant", "group", "image", "classifier_decision", "prediction"):
        df[column] = df[column].astype(str)
    groups_per_participant = df.groupby("participant")["group"].nunique()
    mixed = sorted(groups_per_participant[groups_per_participant > 1].index)
    if mixed:
        raise UserError(f"participant(s) {', '.join(mixed[:5])} appear in more than one group; Part 3 is "
                        "between-subject")
    expected = df["prediction"] == df["classifier_decision"]
    stored = df["correct"].astype("boolean")
    if stored.isna().any() or (stored.astype(bool) != expected).any():
        raise UserError("'correct' disagrees with prediction == classifier_decision in some rows; the responses "
                        "are corrupted or were scored against another answer key")
    df["correct"] = expected.astype(float)
    return df.reset_index(drop=True)


# ------------------------------------------------------------------------------------------- planted participants


def _marginal_intercept(accuracy: float, participant_sd: float) -> float:
    """The logit intercept z with E[expit(z + u)] = accuracy for u ~ N(0, participant_sd^2), so that the planted
    accuracy is the expected pooled accuracy even with participant random intercepts (plain logit(accuracy) would
    pull it toward 0.5). Gauss-Hermite quadrature; 40 nodes are exact to ~1e-10 here."""
    if participant_sd == 0.0:
        return math.log(accuracy / (1.0 - accuracy))
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()

    def gap(z: float) -> float:
        return float(np.sum(weights / (1.0 + np.exp(-(z + participant_sd * nodes))))) - accuracy

    return float(optimize.brentq(gap, -40.0, 40.0, xtol=1e-12))


def planted_forward_responses(accuracies: Mapping[str, float], n_per_group: int, trials: int = DEFAULT_TEST_TRIALS,
                              seed: int = 0, *, participant_sd: float = 0.0,
                              classes: Sequence[str] = ("class_0", "class_1")) -> pd.DataFrame:
    """Synthetic Part 3 responses with planted accuracies per group, in the response format.

    ``n_per_group`` participants per group (assigned with :func:`assign_group`, so exactly that many), each
    answering ``trials`` test trials with balanced classes. A trial is correct with probability
    ``expit(z_group + u_participant)``, u ~ N(0, ``participant_sd``^2) on the logit scale, where ``z_group`` is
    calibrated so that the expected pooled accuracy of the group is its planted accuracy. A wrong answer is another
    class drawn uniformly. ``rt_ms`` is drawn uniformly from 800-6000 ms, a plausible range with no meaning.
    """
    groups = _check_groups(list(accuracies))
    for group, acc in accuracies.items():
        if not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
            raise UserError(f"accuracy of group {group!r} must lie in [0, 1], got {acc!r}")
    if n_per_group < 1 or trials < 1:
        raise UserError(f"n_per_group and trials must be >= 1, got {n_per_group} and {trials}")
    if participant_sd < 0:
        raise UserError(f"participant_sd must be >= 0, got {participant_sd}")
    classes = [str(c) for c in classes]
    if len(set(classes)) < 2:
        raise UserError(f"classes must hold at least two distinct names, got {classes!r}")
    rng = np.random.default_rng(seed)
    # degenerate accuracies 0 and 1 have no finite logit; they mean "always wrong" / "always right"
    intercept = {g: _marginal_intercept(a, participant_sd) for g, a in accuracies.items() if 0.0 < a < 1.0}
    pool = [{"image": f"img-{c}-{k:03d}", "classifier_decision": c} for c in classes for k in range(trials)]
    rows = []
    for index in range(n_per_group * len(groups)):
        group = assign_group(index, groups, seed)
        participant = f"sim-{index:04d}"
        u = rng.normal(0.0, participant_sd) if participant_sd else 0.0
        acc = accuracies[group]
        p = float(acc) if group not in intercept else 1.0 / (1.0 + math.exp(-(intercept[group] + u)))
        test = _balanced_test_trials(pool, trials, random.Random(f"forward-planted:{seed}:{index}"))
        for trial in test:
            decision = trial["classifier_decision"]
            wrong = [c for c in classes if c != decision]
            prediction = decision if rng.random() < p else str(rng.choice(wrong))
            rows.append(score_trial(participant, group, trial, prediction, int(rng.integers(800, 6000))))
    return responses_frame(rows)


# ------------------------------------------------------------------------------------------------------- observer


@functools.lru_cache(maxsize=4096)
def _still(data: bytes) -> np.ndarray:
    """The first frame of an image (PNG, JPEG or GIF), downsampled exactly like change signatures are, so that an
    image and a signature line up pixel for pixel."""
    frame = gif_frames(data)[0]
    frame.setflags(write=False)
    return frame


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return 0.0 if na == 0.0 or nb == 0.0 else float(np.dot(a.ravel(), b.ravel()) / (na * nb))


class ForwardObserver:
    """A simulated Part 3 participant that learns what each class looks like from the attribute GIFs alone.

    Learning: every GIF of a screen labelled with class c shows an image before (first frame) and after (middle
    frame) being pushed toward c; its change signature (``studies.simulate.change_signature``: after minus before)
    says which pixels move which way when the classifier leans to c. The observer keeps, per class, the mean of
    these signatures (each scaled to unit length, so that every GIF counts the same), and the mean "before" frame
    over all GIFs as the typical starting image.

    Test: a new still image x is predicted as the class whose learnt change it already shows most: the largest
    cosine between (x - typical starting image) and the class's mean change, each plus Gaussian noise of SD
    ``noise`` (cosines lie in [-1, 1]; large noise tends to chance). Only pixels the attributes change carry weight,
    so an explanation helps exactly as far as its attributes change what the classifier uses. A class without a
    learnt change scores 0. An observer that learnt nothing (the control group) guesses uniformly.
    Deterministic given the images and ``seed``.
    """

    def __init__(self, load_asset: Callable[[str], bytes], noise: float = 0.0, seed: int = 0):
        if noise < 0:
            raise UserError(f"noise must be >= 0, got {noise}")
        self.load_asset = load_asset
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self.class_change: dict[str, np.ndarray] = {}
        self.typical_start: np.ndarray | None = None

    def learn(self, screens: Sequence[Mapping]) -> None:
        """See the learning screens of a plan (each: ``assets`` GIF ids and ``target_class``)."""
        changes: dict[str, list[np.ndarray]] = {}
        starts = []
        for screen in screens:
            for asset in screen["assets"]:
                gif = self.load_asset(asset)
                change = change_signature(gif)
                norm = float(np.linalg.norm(change))
                if norm > 0:  # a GIF that shows no change teaches nothing about its class
                    changes.setdefault(str(screen["target_class"]), []).append(change / norm)
                starts.append(_still(gif))
        if starts and len({s.shape for s in starts}) > 1:
            raise UserError("the learning GIFs have different sizes; render them all at one display size")
        self.class_change = {c: np.mean(v, axis=0) for c, v in changes.items()}
        self.typical_start = np.mean(starts, axis=0) if starts else None

    def scores(self, image: str, classes: Sequence[str]) -> np.ndarray:
        """Noise-free score of each class for a test image (0 for every class before learning)."""
        if self.typical_start is None or not self.class_change:
            return np.zeros(len(classes))
        x = _still(self.load_asset(image))
        if x.shape != self.typical_start.shape:
            raise UserError(f"test image {image} is {x.shape[1]}x{x.shape[0]} after downsampling, the learning GIFs "
                            f"{self.typical_start.shape[1]}x{self.typical_start.shape[0]}; render both at one size")
        deviation = x - self.typical_start
        return np.array([_cosine(deviation, self.class_change[c]) if c in self.class_change else 0.0
                         for c in classes])

    def predict(self, image: str, classes: Sequence[str]) -> str:
        """The predicted classifier decision for a test image among ``classes``; ties are broken at random."""
        scores = self.scores(image, classes) + (self.rng.normal(0.0, self.noise, len(classes)) if self.noise else 0)
        best = np.flatnonzero(scores == scores.max())
        return str(classes[int(self.rng.choice(best))])


def run_forward_participants(images: Sequence[Mapping], learning_screens: Mapping[str, Sequence[Mapping]],
                             n_per_group: int, load_asset: Callable[[str], bytes], *,
                             groups: Sequence[str] | None = None, n_trials: int = DEFAULT_TEST_TRIALS,
                             noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Simulated Part 3 participants from plan to response frame: ``n_per_group`` per group, assigned with
    :func:`assign_group`, each planned with :func:`plan_forward_trials` and answered by a :class:`ForwardObserver`
    that sees only what the page would show (the learning GIFs with their class labels, then the test images).

    ``groups`` defaults to ``control`` followed by the other groups of ``learning_screens``. ``rt_ms`` is missing:
    an observer has no reaction time worth recording.
    """
    groups = _check_groups(groups if groups is not None else
                           [CONTROL, *(g for g in learning_screens if g != CONTROL)])
    if n_per_group < 1:
        raise UserError(f"n_per_group must be >= 1, got {n_per_group}")
    rng = random.Random(seed)
    rows = []
    for index in range(n_per_group * len(groups)):
        participant_seed = rng.randrange(2**31)
        group = assign_group(index, groups, seed)
        plan = plan_forward_trials(images, group, participant_seed, learning_screens, n_trials)
        observer = ForwardObserver(load_asset, noise=noise, seed=participant_seed)
        observer.learn(plan["learning"])
        for trial in plan["test"]:
            rows.append(score_trial(f"obs-{index:04d}", group, trial, observer.predict(trial["image"],
                                                                                       plan["classes"])))
    return responses_frame(rows)


# ------------------------------------------------------------------------------------ participants through the DB


def _learning_screens_seen(engine: Engine, participant_id: int) -> dict[int, dict]:
    """{trial id: screen} of the learning screens a participant was already shown, in plan order: what a returning
    participant remembers. Their own plan's rows only, and only what the page showed (``assets``, ``target_class``)."""
    import json

    from sqlalchemy import select

    with db.session_scope(engine) as session:
        rows = session.execute(
            select(db.Trial.id, db.Trial.assets, db.Trial.target_class)
            .where(db.Trial.participant_id == participant_id, db.Trial.kind == "learn", db.Trial.shown_at.is_not(None))
            .order_by(db.Trial.seq)).all()
    return {row.id: {"assets": json.loads(row.assets), "target_class": row.target_class} for row in rows}


def run_forward_study_participants(engine: Engine, study_id: str, n: int, load_asset: Callable[[str], bytes], *,
                                   noise: float = 0.0, seed: int = 0, stop_after: int | None = None) -> list[int]:
    """Run ``n`` simulated Part 3 participants through the study database, with the app's calls in the app's order
    (``studies.app``: ``_on_consent``, the instructions and comprehension check, ``_forward_screen``, the debrief);
    return their participant ids. For pilots: plan, storage, status, export and analysis all see them like people.

    Participant ``k`` has the external pid ``sim-<seed>-<k:04d>`` (another ``seed`` adds new people to the same
    study; an existing pid resumes at its first unanswered screen, and a finished one is left as it is). Consent:
    ``db.get_or_create_participant`` with ``design.participant_seed(study_id, pid)``, the group and plan from
    :func:`forward_participant_plan` (arrival order, so groups stay balanced in permuted blocks) over
    ``db.study_items``, ``db.add_trials`` (a "consent" event when this call stored the plan). Then a first-try pass
    of the comprehension check (``db.record_comprehension``), and screen by screen ``db.next_trial``,
    ``db.mark_shown`` and ``db.record_prediction``: ``None`` ("Continue") on a learning screen, on a test trial the
    class a :class:`ForwardObserver` (``noise``, seeded with the participant's seed) predicts among
    ``db.forward_classes``. Last, ``db.finish`` (code ``SIM-<participant id>``) and a "completed" event.

    The observer sees only what the pages show: the learning screens' GIFs (``load_asset``: asset id -> bytes, e.g.
    from ``studies.manifest.asset_paths``) with their ``target_class`` as ``next_trial`` serves them, the test
    image and the class buttons; the answer key stays in the database. A participant who resumes after the learning
    screens remembers the ones they were shown before. ``stop_after``: each participant answers at most this many
    screens in this call and then leaves without finishing (a dropout; a later call resumes them).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"n must be an integer >= 0, got {n!r}")
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 0):
        raise UserError(f"stop_after must be None or an integer >= 0, got {stop_after!r}")
    if noise < 0:
        raise UserError(f"noise must be >= 0, got {noise}")
    items, answer_key = db.study_items(engine, study_id)
    ids = []
    for k in range(n):
        pid = f"sim-{seed}-{k:04d}"
        participant = db.find_participant(engine, study_id, pid)
        if participant is None:  # the consent page, then _on_consent
            participant_id = db.get_or_create_participant(engine, study_id, pid, "forward",
                                                          participant_seed(study_id, pid))
            participant = db.get_participant(engine, participant_id)
        participant_id = participant["id"]
        if participant["part"] != "forward":
            raise UserError(f"participant {pid!r} of study {study_id!r} takes part in {participant['part']!r}, not "
                            "Part 3; simulate Part 3 with another seed")
        ids.append(participant_id)
        if participant["status"] in ("completed", "screened_out"):
            continue
        if not db.count_trials(engine, participant_id):
            plan = forward_participant_plan(engine, study_id, participant_id, participant["seed"], items, answer_key)
            if db.add_trials(engine, participant_id, plan):
                db.log_event(engine, "consent", participant_id, {"part": "forward", "trials": len(plan)})
        trial = db.next_trial(engine, participant_id)
        if db.awaits_comprehension(participant, trial):
            db.record_comprehension(engine, participant_id, participant["comprehension_tries"] + 1, [], None)
        observer = ForwardObserver(load_asset, noise=noise, seed=participant["seed"])
        screens = _learning_screens_seen(engine, participant_id)  # none for a new participant
        learnt, answered = False, 0
        while trial is not None and (stop_after is None or answered < stop_after):
            db.mark_shown(engine, trial["trial_id"])
            if trial["kind"] == "learn":
                screens[trial["trial_id"]] = {"assets": list(trial["assets"]), "target_class": trial["target_class"]}
                db.record_prediction(engine, trial["trial_id"], None)  # "Continue"
            else:
                if not learnt:  # the learning phase is over: what the participant takes into the test
                    observer.learn(list(screens.values()))
                    learnt = True
                classes = db.forward_classes(engine, participant_id)  # the class buttons
                db.record_prediction(engine, trial["trial_id"], observer.predict(trial["assets"][0], classes))
            answered += 1
            trial = db.next_trial(engine, participant_id)
        if trial is None:
            db.finish(engine, participant_id, lambda participant_id=participant_id: f"SIM-{participant_id:06d}")
    return ids
