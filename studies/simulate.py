"""Simulated participants for pilots, sanity checks and power analysis (DESIGN.md section 8; user-study.md D6).

Two kinds of simulation, for two jobs:

* :class:`Observer` + :func:`run_participants` go through the *same database layer as the app*
  (``get_or_create_participant``, ``add_trials``, ``next_trial``, ``mark_shown``, ``record_choice`` /
  ``record_description``, ``finish``), looking only at what the page would show: the asset ids of the trial in display
  order, turned into GIF bytes by a loader. Correctness is scored server-side from the answer key in the database, so
  a pilot with simulated participants exercises plan, storage, export and analysis end to end.
* :func:`planted_responses` skips GIFs and the database and draws answers with planted accuracies straight into the
  analysis input format (the columns of ``studies.db.export_frames``'s ``responses``). It is fast enough for
  :func:`power`, which repeats whole simulated studies to choose the number of participants.

The module imports no torch.
"""

from __future__ import annotations

import functools
import io
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import stats
from sqlalchemy import Engine

from studies import analysis, db
from studies.design import plan_trials
from stylex.errors import UserError

__all__ = [
    "SIGNATURE_SIZE",
    "Observer",
    "change_signature",
    "load_responses",
    "planted_responses",
    "power",
    "run_participants",
]

SIGNATURE_SIZE = 32
"""Frames are resized to at most this many pixels per side before differencing: GIF dithering and palette noise
average out, and a signature stays small enough to cache for a whole study."""

PLANTED_COLUMNS = ["participant", "part", "kind", "method", "domain", "attr_i", "attr_j", "choice", "correct",
                   "text_raw", "text_norm", "rt_ms"]

REGION_WORDS = ("left", "right", "top", "bottom", "center")
CHANNEL_WORDS = ("red", "green", "blue")


# ---------------------------------------------------------------------------------------------------------- observer


def gif_frames(gif: bytes) -> list[np.ndarray]:
    """All frames of a GIF as float32 RGB arrays in [0, 1], downsampled to ``SIGNATURE_SIZE``."""
    with Image.open(io.BytesIO(gif)) as image:
        n = getattr(image, "n_frames", 1)
        frames = []
        for k in range(n):
            image.seek(k)
            frame = image.convert("RGB")
            scale = SIGNATURE_SIZE / max(frame.size)
            if scale < 1:
                frame = frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale))),
                                     Image.Resampling.BOX)
            frames.append(np.asarray(frame, dtype=np.float32) / 255.0)
    return frames


@functools.lru_cache(maxsize=4096)
def change_signature(gif: bytes) -> np.ndarray:
    """The change a GIF shows: middle frame minus first frame, per pixel and RGB channel (shape H x W x 3).

    Sweeps are ping-pong (shift 0 -> max -> 0), so the middle frame is the far end of the change. A still GIF (one
    frame, or identical frames) has an all-zero signature. Cached on the bytes: every observer sees the same GIFs."""
    frames = gif_frames(gif)
    diff = frames[len(frames) // 2] - frames[0]
    diff.setflags(write=False)
    return diff


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a.ravel(), b.ravel()) / (na * nb))


class Observer:
    """A simulated participant that judges GIFs only by what changes between their frames.

    Part 1: the option whose change signature is most cosine-similar to the mean of the two references' signatures,
    after adding Gaussian noise of SD ``noise`` to each similarity (``noise=0``: a perfect change matcher; large
    ``noise``: coin flips, accuracy -> 0.5). Similarities lie in [-1, 1], so noise of about 0.1 already matters for
    similar attributes and noise >= 10 is chance.

    Part 2: a two-word description "<region> <channel>": where the change's energy (|difference|) sits relative to the
    image centre (left/right/top/bottom, or center when it does not move off-centre) and which RGB channel changes
    most, pooled over the four GIFs. With probability ``slip`` each word is replaced by a random vocabulary word.
    Deterministic given the GIFs and ``seed``.
    """

    def __init__(self, load_asset: Callable[[str], bytes], noise: float = 0.0, seed: int = 0, slip: float = 0.0):
        if noise < 0 or not 0.0 <= slip <= 1.0:
            raise UserError(f"noise must be >= 0 and slip in [0, 1], got noise={noise}, slip={slip}")
        self.load_asset = load_asset
        self.noise = float(noise)
        self.slip = float(slip)
        self.rng = np.random.default_rng(seed)

    def signature(self, asset_id: str) -> np.ndarray:
        return change_signature(self.load_asset(asset_id))

    def similarities(self, assets: Sequence[str]) -> tuple[float, float]:
        """Noise-free cosine similarity of options A and B to the mean reference change."""
        if len(assets) != db.ASSETS_PER_TRIAL:
            raise UserError(f"a Part 1 trial shows {db.ASSETS_PER_TRIAL} GIFs, got {len(assets)}")
        ref1, ref2, opt_a, opt_b = (self.signature(a) for a in assets)
        reference = (ref1 + ref2) / 2.0
        return _cosine(reference, opt_a), _cosine(reference, opt_b)

    def choose(self, assets: Sequence[str]) -> str:
        """'A' or 'B' for a Part 1 trial (assets in display order: two references, then options A and B)."""
        sims = np.asarray(self.similarities(assets)) + self.rng.normal(0.0, self.noise, size=2)
        if sims[0] == sims[1]:
            return "A" if self.rng.random() < 0.5 else "B"
        return "A" if sims[0] > sims[1] else "B"

    def describe(self, assets: Sequence[str]) -> str:
        """A 1-4 word description of the most prominent change shared by the GIFs of a Part 2 trial."""
        energy = sum(np.abs(self.signature(a)) for a in assets)
        per_pixel = energy.sum(axis=2)
        total = float(per_pixel.sum())
        if total == 0.0:
            region, channel = "center", "nothing"
        else:
            h, w = per_pixel.shape
            ys, xs = np.mgrid[0:h, 0:w]
            dy = float((per_pixel * ys).sum() / total) / max(h - 1, 1) - 0.5
            dx = float((per_pixel * xs).sum() / total) / max(w - 1, 1) - 0.5
            if max(abs(dx), abs(dy)) < 0.02:
                region = "center"
            elif abs(dx) >= abs(dy):
                region = "right" if dx > 0 else "left"
            else:
                region = "bottom" if dy > 0 else "top"
            channel = CHANNEL_WORDS[int(np.argmax(energy.reshape(-1, 3).sum(axis=0)))]
        words = [region, channel]
        vocab = (REGION_WORDS, CHANNEL_WORDS)
        for k in range(2):
            if self.slip and self.rng.random() < self.slip:
                words[k] = str(self.rng.choice(vocab[k]))
        return " ".join(words)


# ---------------------------------------------------------------------------------------- participants through the DB


def run_participants(engine: Engine, study_id: str, items: Sequence[dict], answer_key: dict[str, str] | None,
                     part: str, n: int, observer_factory: Callable[[int], Observer],
                     load_asset: Callable[[str], bytes] | None = None, seed: int = 0) -> list[int]:
    """Run ``n`` simulated participants of ``part`` through the study database; return their participant ids.

    Each gets ``external_pid`` ``sim-<seed>-<k>`` (so runs with other seeds add new people to the same study), a
    participant seed drawn from ``seed``, a plan from ``plan_trials(items, part, participant_seed, answer_key)``
    stored with ``add_trials`` (a "consent" event), a first-try pass of the comprehension check, and then answers trial
    by trial exactly like the app: ``next_trial`` (which carries no answer key), ``mark_shown``, ``record_choice`` /
    ``record_description``, and ``finish`` (a "completed" event). The observer comes
    from ``observer_factory(participant_seed)``; ``load_asset`` (asset id -> GIF bytes), when given, replaces the
    observer's own loader. A participant whose pid already exists resumes where it stopped.
    """
    if part not in db.PARTS:
        raise UserError(f"part must be one of {db.PARTS}, got {part!r}")
    if n < 0:
        raise UserError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    ids = []
    for k in range(n):
        participant_seed = rng.randrange(2**31)
        pid = db.get_or_create_participant(engine, study_id, f"sim-{seed}-{k:04d}", part, participant_seed)
        participant = db.get_participant(engine, pid)
        stored_seed = participant["seed"]
        plan = plan_trials(items, part, stored_seed, answer_key if part == "coherence" else None)
        if db.add_trials(engine, pid, plan):
            db.log_event(engine, "consent", pid, {"part": part, "trials": len(plan)})
        if db.awaits_comprehension(participant, db.next_trial(engine, pid)):
            db.record_comprehension(engine, pid, participant["comprehension_tries"] + 1, [], None)
        observer = observer_factory(stored_seed)
        if load_asset is not None:
            observer.load_asset = load_asset
        while (trial := db.next_trial(engine, pid)) is not None:
            db.mark_shown(engine, trial["trial_id"])
            if part == "coherence":
                db.record_choice(engine, trial["trial_id"], observer.choose(trial["assets"]))
            else:
                text = observer.describe(trial["assets"])
                db.record_description(engine, trial["trial_id"], text)  # normalised by the db layer
        db.finish(engine, pid, lambda pid=pid: f"SIM-{pid:06d}")
        ids.append(pid)
    return ids


# -------------------------------------------------------------------------------------------- planted responses


def planted_responses(accuracies: dict[str, float], n_participants: int, trials_per_method: int,
                      attributes: int = 6, attention_fail: float = 0.0, seed: int = 0, *, domain: str = "faces",
                      attention_trials: int = 2, participant_sd: float = 0.0, attribute_sd: float = 0.0
                      ) -> pd.DataFrame:
    """Synthetic Part 1 responses with planted accuracies, in the analysis input format.

    Every participant answers ``trials_per_method`` main trials of every method (attributes 1..``attributes``
    cycled, so each attribute is seen about equally often), ``attention_trials`` attention checks and one practice
    trial. ``correct`` is Bernoulli with probability ``logit^-1(logit(acc) + u_participant + v_attribute)``, where
    the random intercepts have SDs ``participant_sd`` and ``attribute_sd`` on the logit scale (D6 suggests 0.5-0.8
    for a realistic power analysis; with 0, the planted accuracy is the expected pooled accuracy, otherwise the
    pooled accuracy is pulled towards 0.5 a little). A participant fails all their attention checks with probability
    ``attention_fail`` (and is then excluded by the default rule).

    Columns: participant, part, kind, method, domain, attr_i, attr_j, choice, correct, text_raw, text_norm, rt_ms, with
    the dtypes of ``export_frames`` (``correct`` nullable boolean, attr_i/attr_j/rt_ms Int64).
    """
    if n_participants < 1 or trials_per_method < 1 or attributes < 1:
        raise UserError("n_participants, trials_per_method and attributes must be >= 1")
    for method, acc in accuracies.items():
        if not 0.0 <= acc <= 1.0:
            raise UserError(f"accuracy of {method!r} must lie in [0, 1], got {acc}")
    if not 0.0 <= attention_fail <= 1.0:
        raise UserError(f"attention_fail must lie in [0, 1], got {attention_fail}")
    rng = np.random.default_rng(seed)
    methods = list(accuracies)
    logit = {m: math.log(max(a, 1e-9) / max(1 - a, 1e-9)) for m, a in accuracies.items()}
    attr_effect = {(m, a): rng.normal(0.0, attribute_sd) if attribute_sd else 0.0
                   for m in methods for a in range(1, attributes + 1)}
    rows: list[dict] = []

    def row(pid: str, kind: str, method: str | None, attr_i: int, attr_j: int | None, correct: bool) -> dict:
        key = "A" if rng.random() < 0.5 else "B"
        choice = key if correct else ("B" if key == "A" else "A")
        return {"participant": pid, "part": "coherence", "kind": kind, "method": method, "domain": domain,
                "attr_i": attr_i, "attr_j": attr_j, "choice": choice, "correct": bool(correct), "text_raw": None,
                "text_norm": None, "rt_ms": int(rng.integers(1500, 9000))}

    for k in range(n_participants):
        pid = f"sim-{k:04d}"
        u = rng.normal(0.0, participant_sd) if participant_sd else 0.0
        fails = rng.random() < attention_fail
        rows.append(row(pid, "practice", None, 1, None, True))
        main = []
        for method in methods:
            for t in range(trials_per_method):
                attr = t % attributes + 1
                z = logit[method] + u + attr_effect[(method, attr)]
                p = 1.0 / (1.0 + math.exp(-z))
                other = (attr % attributes) + 1 if attributes > 1 else None
                main.append(row(pid, "main", method, attr, other, rng.random() < p))
        order = rng.permutation(len(main))
        main = [main[i] for i in order]
        for a in range(attention_trials):
            slot = round((a + 1) * len(main) / (attention_trials + 1)) + a
            main.insert(slot, row(pid, "attention", methods[a % len(methods)], 1, None, not fails))
        rows.extend(main)
    frame = pd.DataFrame(rows, columns=PLANTED_COLUMNS)
    frame["correct"] = frame["correct"].astype("boolean")
    for column in ("attr_i", "attr_j", "rt_ms"):
        frame[column] = frame[column].astype("Int64")
    return frame


def load_responses(csv_path: str | Path | None = None, **planted: object) -> pd.DataFrame:
    """The responses frame for a notebook: an exported CSV when ``csv_path`` is given, else planted responses.

    CSV round trips lose dtypes, so ``correct`` is restored to nullable boolean and the integer columns to Int64.
    The fallback uses :func:`planted_responses` with ``planted`` (defaults: StylEx 0.9 vs Wu 0.6, 20 participants,
    12 trials per method, random-effect SDs 0.5)."""
    if csv_path:
        frame = pd.read_csv(csv_path)
        if "correct" in frame.columns:
            frame["correct"] = frame["correct"].map(
                lambda v: pd.NA if pd.isna(v) else str(v).strip().lower() in ("true", "1", "1.0")).astype("boolean")
        for column in ("attr_i", "attr_j", "rt_ms"):
            if column in frame.columns:
                frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
        return frame
    kwargs: dict = {"accuracies": {"stylex": 0.9, "wu": 0.6}, "n_participants": 20, "trials_per_method": 12,
                    "participant_sd": 0.5, "attribute_sd": 0.5}
    kwargs.update(planted)
    return planted_responses(**kwargs)


# ---------------------------------------------------------------------------------------------------------- power


def _paired_p(df: pd.DataFrame, method_a: str, method_b: str) -> tuple[float, float, float]:
    """Two-sided paired t-test of per-participant accuracy (a - b); returns (p, mean difference, 95% CI width)."""
    per = df.pivot_table(index="participant", columns="method", values="correct", aggfunc="mean")
    diff = (per[method_a] - per[method_b]).dropna().to_numpy(float)
    if len(diff) < 2:
        return float("nan"), float("nan"), float("nan")
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1))
    if sd == 0.0:
        return (0.0 if mean != 0 else 1.0), mean, 0.0
    se = sd / math.sqrt(len(diff))
    p = float(2 * stats.t.sf(abs(mean) / se, len(diff) - 1))
    width = float(2 * stats.t.ppf(0.975, len(diff) - 1) * se)
    return p, mean, width


def power(acc_a: float, acc_b: float, participants_grid: Sequence[int] = (5, 10, 20, 40), trials_per_method: int = 6,
          n_sims: int = 20, alpha: float = 0.05, seed: int = 0, *, test: str = "paired",
          participant_sd: float = 0.5, attribute_sd: float = 0.5, attributes: int = 6) -> pd.DataFrame:
    """Share of simulated studies that detect acc_a != acc_b at ``alpha``, for each number of participants.

    Each simulated study is :func:`planted_responses` for methods 'a' (``acc_a``) and 'b' (``acc_b``) with random
    intercepts of SD ``participant_sd`` / ``attribute_sd`` (logit scale), analysed after the default exclusions by

    * ``test='paired'`` (default, fast): a two-sided paired t-test of per-participant accuracy differences (every
      participant sees both methods), or
    * ``test='gee'``: the GEE of :func:`studies.analysis.compare_methods` (``correct ~ C(method)``, exchangeable
      working correlation within participants, robust SEs), about 10-50x slower.

    A study "detects" when p < alpha and the estimated difference has the planted sign. Columns: n_participants,
    power, power_ci_low/high (Wilson, from n_sims), mean_difference and mean_ci_width (paired-test CI of the accuracy
    difference, D6), n_sims, test. ``n_sims`` is small by default: raise it (>= 500) for a decision.
    """
    if test not in ("paired", "gee"):
        raise UserError(f"test must be 'paired' or 'gee', got {test!r}")
    if n_sims < 1:
        raise UserError(f"n_sims must be >= 1, got {n_sims}")
    from statsmodels.stats.proportion import proportion_confint

    sign = np.sign(acc_a - acc_b)
    rows = []
    for g, n in enumerate(participants_grid):
        hits, diffs, widths = 0, [], []
        for s in range(n_sims):
            responses = planted_responses({"a": acc_a, "b": acc_b}, int(n), trials_per_method, attributes,
                                          seed=seed * 1_000_003 + g * 10_007 + s, participant_sd=participant_sd,
                                          attribute_sd=attribute_sd)
            df = analysis.main_part1(responses, None)
            p, mean, width = _paired_p(df, "a", "b")
            if test == "gee":
                df["method"] = pd.Categorical(df["method"], categories=["b", "a"])
                try:
                    term = analysis.gee(df, "correct ~ C(method)")["terms"]["method:a"]
                    p, effect = term["p_value"], term["log_odds_ratio"]
                except (ValueError, np.linalg.LinAlgError, ZeroDivisionError, KeyError):
                    p, effect = float("nan"), 0.0
            else:
                effect = mean
            hits += bool(p < alpha and np.sign(effect) == sign)
            diffs.append(mean)
            widths.append(width)
        lo, hi = proportion_confint(hits, n_sims, alpha=0.05, method="wilson")
        rows.append({"n_participants": int(n), "power": hits / n_sims, "power_ci_low": float(lo),
                     "power_ci_high": float(hi), "mean_difference": float(np.nanmean(diffs)),
                     "mean_ci_width": float(np.nanmean(widths)), "n_sims": n_sims, "test": test})
    return pd.DataFrame(rows)
