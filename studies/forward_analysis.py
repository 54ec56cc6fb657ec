"""Analysis and power of Part 3 of the user study, forward simulation (DESIGN.md section 8; user-study.md D1, D3, D6).

Input is the response frame of ``studies.forward`` (one row per answered test trial: participant, group, trial,
image, classifier_decision, prediction, correct, rt_ms). The measure is the accuracy of predicting the classifier.

Why the analysis looks the way it does:

* Pooled accuracy per group with its Wilson 95% interval (D1) treats trials as independent although they cluster
  within participants: it is descriptive.
* Inference is the GEE of Parts 1-2 (``studies.analysis.gee``): ``correct ~ C(group)``, binomial family, logit link,
  exchangeable working correlation within participants, robust (sandwich) SEs, the reference level ``control``.
  Groups are between-subject, so every coefficient compares different people; the participant clusters carry that.
* The headline difference of accuracies (group - reference) gets a participant bootstrap interval. Because groups
  are fixed by design, participants are resampled *within* each group (a stratified cluster bootstrap): every
  resample keeps the group sizes, and no resample can lack a group.
* :func:`forward_power` repeats whole planted studies (``studies.forward.planted_forward_responses``) and counts how
  often the GEE finds the benefit, like ``studies.simulate.power`` does for Part 1.

Imports no torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from evaluation.report import document as doc
from studies.analysis import gee
from studies.forward import CONTROL, check_forward_responses, planted_forward_responses
from stylex.errors import UserError

__all__ = [
    "ACCURACY_COLUMNS",
    "COMPARISON_COLUMNS",
    "POWER_COLUMNS",
    "analyze_forward",
    "compare_forward",
    "forward_accuracy",
    "forward_power",
    "power_table",
    "power_table_markdown",
]

ACCURACY_COLUMNS = ["group", "n_participants", "n_trials", "correct", "accuracy", "ci_low", "ci_high",
                    "mean_over_participants", "std_over_participants"]
COMPARISON_COLUMNS = ["group", "reference", "accuracy", "reference_accuracy", "difference", "difference_ci_low",
                      "difference_ci_high", "log_odds_ratio", "log_odds_ci_low", "log_odds_ci_high", "se_robust",
                      "odds_ratio", "or_ci_low", "or_ci_high", "p_value"]
POWER_COLUMNS = ["acc_group", "acc_control", "n_per_group", "trials", "n_sims", "power", "power_ci_low",
                 "power_ci_high", "mean_difference", "gee_failures", "participant_sd", "alpha"]
FORMULA = "correct ~ C(group)"
#: Numerical failures of a GEE fit (singular designs, empty groups) that are reported rather than raised.
GEE_FAILURES = (ValueError, np.linalg.LinAlgError, ZeroDivisionError)


def _group_order(groups: Sequence[str], reference: str | None) -> list[str]:
    """The reference first (when given and present), then the other groups alphabetically."""
    rest = sorted(g for g in groups if g != reference)
    return [reference, *rest] if reference in groups else rest


# ---------------------------------------------------------------------------------------------------------- accuracy


def forward_accuracy(responses: pd.DataFrame, reference: str | None = CONTROL) -> pd.DataFrame:
    """Accuracy of predicting the classifier per group (see ``ACCURACY_COLUMNS``), the reference group first.

    ``accuracy`` pools trials, with a two-sided 95% Wilson interval ``ci_low``/``ci_high`` (never the normal
    interval, which leaves [0, 1] at k=0 or k=n); descriptive only, since trials cluster within participants.
    ``mean/std_over_participants``: mean and s.d. (ddof=1; NaN for a single participant) of per-participant
    accuracy, the "mean ± s.d." reading of Parts 1-2.
    """
    df = check_forward_responses(responses)
    rows = []
    for group in _group_order(df["group"].unique(), reference):
        cell = df[df["group"] == group]
        n, k = len(cell), int(cell["correct"].sum())
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        per_participant = cell.groupby("participant")["correct"].mean()
        rows.append({"group": group, "n_participants": len(per_participant), "n_trials": n, "correct": k,
                     "accuracy": k / n, "ci_low": float(lo), "ci_high": float(hi),
                     "mean_over_participants": float(per_participant.mean()),
                     "std_over_participants": float(per_participant.std(ddof=1)) if len(per_participant) > 1
                     else float("nan")})
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


# -------------------------------------------------------------------------------------------------------- comparison


def _stratified_bootstrap(df: pd.DataFrame, order: list[str], n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Bootstrap pooled accuracy per group: participants resampled with replacement within their group, accuracy
    recomputed as sum(correct) / sum(trials) over the resampled participants (participants with more answered
    trials weigh more, exactly as in the pooled accuracy)."""
    rng = np.random.default_rng(seed)
    per = df.groupby(["group", "participant"])["correct"].agg(["sum", "count"])
    boot = {}
    for group in order:  # a fixed order, so the draws and hence the interval depend on the seed only
        k = per.loc[group, "sum"].to_numpy(float)
        n = per.loc[group, "count"].to_numpy(float)
        idx = rng.integers(0, len(k), size=(n_boot, len(k)))
        boot[group] = k[idx].sum(axis=1) / n[idx].sum(axis=1)
    return boot


def compare_forward(responses: pd.DataFrame, reference: str = CONTROL, n_boot: int = 2000,
                    seed: int = 0) -> dict[str, Any]:
    """Compare every group with ``reference`` (default ``control``).

    Returns a dict with ``reference``, ``groups`` (reference first), ``formula``, ``n_participants``, ``n_trials``,
    ``n_boot``, ``seed``, ``exchangeable_correlation`` (the GEE's estimated within-participant correlation),
    ``gee_error`` (None, or why the GEE could not be fitted; its columns are then NaN) and ``comparisons``: a frame
    with one row per other group (``COMPARISON_COLUMNS``):

    * ``accuracy``, ``reference_accuracy``, ``difference`` (group - reference, pooled) and its 95% percentile
      interval from a participant bootstrap stratified by group (``n_boot`` resamples, ``seed``);
    * the GEE coefficient of the group (``log_odds_ratio`` with its 95% Wald interval, robust ``se_robust``), the
      ``odds_ratio`` with its interval, and the two-sided Wald ``p_value``.
    """
    df = check_forward_responses(responses)
    groups = sorted(df["group"].unique())
    if reference not in groups:
        raise UserError(f"unknown reference group {reference!r}; the responses have groups {groups}")
    if len(groups) < 2:
        raise UserError(f"comparing groups needs at least two groups with answers, found {groups}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise UserError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    order = _group_order(groups, reference)
    df["group"] = pd.Categorical(df["group"], categories=order)  # first category = the GEE's reference level
    result: dict[str, Any] = {"reference": reference, "groups": order, "formula": FORMULA,
                              "n_participants": int(df["participant"].nunique()), "n_trials": len(df),
                              "n_boot": n_boot, "seed": seed, "exchangeable_correlation": float("nan"),
                              "gee_error": None}
    try:
        fit = gee(df, FORMULA)
        terms = fit["terms"]
        result["exchangeable_correlation"] = fit["exchangeable_correlation"]
    except GEE_FAILURES as exc:
        terms = {}
        result["gee_error"] = f"{type(exc).__name__}: {exc}"
    boot = _stratified_bootstrap(df, order, n_boot, seed)
    accuracy = df.groupby("group", observed=True)["correct"].mean()
    rows = []
    for group in order[1:]:
        lo, hi = np.percentile(boot[group] - boot[reference], [2.5, 97.5])
        term = terms.get(f"group:{group}")
        b = term["log_odds_ratio"] if term else float("nan")
        half = 1.959963984540054 * term["se_robust"] if term else float("nan")  # the z of a two-sided 95% interval
        rows.append({"group": group, "reference": reference, "accuracy": float(accuracy[group]),
                     "reference_accuracy": float(accuracy[reference]),
                     "difference": float(accuracy[group] - accuracy[reference]),
                     "difference_ci_low": float(lo), "difference_ci_high": float(hi), "log_odds_ratio": b,
                     "log_odds_ci_low": b - half, "log_odds_ci_high": b + half,
                     "se_robust": term["se_robust"] if term else float("nan"),
                     "odds_ratio": math.exp(b) if term else float("nan"),
                     "or_ci_low": term["or_ci_low"] if term else float("nan"),
                     "or_ci_high": term["or_ci_high"] if term else float("nan"),
                     "p_value": term["p_value"] if term else float("nan")})
    result["comparisons"] = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    return result


# ------------------------------------------------------------------------------------------------------------ power


def _gee_finds(responses: pd.DataFrame, planted_sign: float, alpha: float) -> bool | None:
    """Whether the GEE of one simulated study finds the planted effect; None when the fit fails (counted as a miss).
    With no planted difference (sign 0), any p < alpha counts: the row then estimates the false-positive rate."""
    df = check_forward_responses(responses)
    df["group"] = pd.Categorical(df["group"], categories=[CONTROL, "method"])
    try:
        with warnings.catch_warnings():
            # small simulated studies can separate perfectly or converge slowly; the p-value then says so
            warnings.simplefilter("ignore")
            term = gee(df, FORMULA)["terms"]["group:method"]
    except (*GEE_FAILURES, KeyError):
        return None
    p, effect = term["p_value"], term["log_odds_ratio"]
    if not math.isfinite(p):
        return None
    return bool(p < alpha and (planted_sign == 0 or np.sign(effect) == planted_sign))


def forward_power(acc_group: float, acc_control: float, participants_grid: Sequence[int] = (10, 20, 40),
                  trials: int = 20, sims: int = 100, seed: int = 0, *, alpha: float = 0.05,
                  participant_sd: float = 0.5) -> pd.DataFrame:
    """Share of simulated Part 3 studies in which the GEE finds the group's benefit over control at ``alpha``.

    Each simulated study: :func:`studies.forward.planted_forward_responses` with a group 'method' at ``acc_group``
    and ``control`` at ``acc_control``, ``n`` participants per group for each ``n`` of ``participants_grid``,
    ``trials`` test trials each, participant random intercepts of SD ``participant_sd`` on the logit scale (D6:
    0.5-0.8 is realistic; the planted accuracies stay the expected pooled ones). A study "finds the benefit" when
    the GEE's two-sided p < ``alpha`` and its coefficient has the planted sign; with equal accuracies the row
    is the false-positive rate instead. A fit that fails counts as a miss and is counted in ``gee_failures``.

    Columns ``POWER_COLUMNS``; ``power_ci_low/high`` is the Wilson 95% interval from ``sims`` studies and
    ``mean_difference`` the mean simulated accuracy difference (method - control).
    """
    for name, acc in (("acc_group", acc_group), ("acc_control", acc_control)):
        if not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
            raise UserError(f"{name} must lie in [0, 1], got {acc!r}")
    grid = list(participants_grid)
    if not grid or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2 for n in grid):
        raise UserError(f"participants_grid must hold participant numbers per group of at least 2, got {grid!r}")
    if trials < 1 or sims < 1:
        raise UserError(f"trials and sims must be >= 1, got {trials} and {sims}")
    if not 0.0 < alpha < 1.0:
        raise UserError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    planted_sign = float(np.sign(acc_group - acc_control))
    rows = []
    for g, n in enumerate(grid):
        hits, failures, differences = 0, 0, []
        for s in range(sims):
            # a distinct, reproducible seed per (grid point, simulation), as in studies.simulate.power
            responses = planted_forward_responses({CONTROL: acc_control, "method": acc_group}, int(n), trials,
                                                  seed=seed * 1_000_003 + g * 10_007 + s,
                                                  participant_sd=participant_sd)
            found = _gee_finds(responses, planted_sign, alpha)
            failures += found is None
            hits += bool(found)
            correct = responses["correct"].astype(float)
            is_method = responses["group"] == "method"
            differences.append(float(correct[is_method].mean() - correct[~is_method].mean()))
        lo, hi = proportion_confint(hits, sims, alpha=0.05, method="wilson")
        rows.append({"acc_group": float(acc_group), "acc_control": float(acc_control), "n_per_group": int(n),
                     "trials": int(trials), "n_sims": int(sims), "power": hits / sims, "power_ci_low": float(lo),
                     "power_ci_high": float(hi), "mean_difference": float(np.mean(differences)),
                     "gee_failures": failures, "participant_sd": float(participant_sd), "alpha": float(alpha)})
    return pd.DataFrame(rows, columns=POWER_COLUMNS)


def power_table(power: pd.DataFrame) -> doc.Table:
    """The power table (one or more :func:`forward_power` results concatenated) as a document table with a caption
    below that says how to read it; render it with ``evaluation.report.document``."""
    missing = [c for c in POWER_COLUMNS if c not in power.columns]
    if missing or power.empty:
        raise UserError(f"a power table needs the non-empty result of forward_power (missing: {missing or 'rows'})")
    header = ["Accuracy (method vs control)", "Participants per group", "Test trials", "Power [Wilson 95%]",
              "Mean accuracy difference", "Simulated studies", "GEE failures"]
    rows = [[doc.plain(f"{r.acc_group:g} vs {r.acc_control:g}"), doc.plain(str(int(r.n_per_group))),
             doc.plain(str(int(r.trials))), doc.plain(f"{r.power:.2f} [{r.power_ci_low:.2f}, {r.power_ci_high:.2f}]"),
             doc.plain(f"{r.mean_difference:+.3f}"), doc.plain(str(int(r.n_sims))), doc.plain(str(int(r.gee_failures)))]
            for r in power.itertuples()]
    alphas = ", ".join(f"{a:g}" for a in sorted(power["alpha"].unique()))
    sds = ", ".join(f"{s:g}" for s in sorted(power["participant_sd"].unique()))
    caption = doc.plain(
        "Power of Part 3: the share of simulated studies in which the GEE (correct ~ C(group), binomial, logit, "
        "exchangeable working correlation within participant, robust SEs, reference = control) finds the method "
        f"group above control at two-sided alpha {alphas}. Participant random intercepts with SD {sds} on the logit "
        "scale; the planted accuracies are the expected pooled ones. Intervals are Wilson 95% over the simulated "
        "studies.")
    return doc.table([doc.plain(h) for h in header], rows, numeric=[False, *[True] * (len(header) - 1)],
                     caption=(caption,), caption_below=True)


def power_table_markdown(power: pd.DataFrame) -> str:
    """:func:`power_table` as Markdown (GitHub tables), for the pre-registration and the report."""
    return doc.render_markdown([power_table(power)])


def analyze_forward(responses: pd.DataFrame, reference: str = CONTROL, seed: int = 0) -> dict[str, Any]:
    """What `stylex study analyze` reports for Part 3, as JSON-ready records: accuracy per group, and the GEE and
    bootstrap comparison of every group with `reference` (or why it could not be made, e.g. one group only)."""
    accuracy = forward_accuracy(responses, reference=reference if reference in set(responses["group"]) else None)
    result: dict[str, Any] = {"reference": reference, "accuracy": _records(accuracy)}
    try:
        comparison = compare_forward(responses, reference=reference, seed=seed)
    except UserError as error:  # e.g. a pilot with a single group: the accuracies still stand
        result["comparison_error"] = str(error)
        return result
    result.update(formula=comparison["formula"], gee_error=comparison["gee_error"],
                  comparisons=_records(comparison["comparisons"]))
    return result


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (NaN as None), for analysis.json."""
    return [{key: (None if isinstance(value, float) and math.isnan(value) else
                   value.item() if hasattr(value, "item") else value) for key, value in row.items()}
            for row in frame.to_dict("records")]
