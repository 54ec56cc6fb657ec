"""Part 1 of the user study: accuracy per method x domain (DESIGN.md section 8; reference user-study.md D1, D2, D4).

Pooled accuracy and its Wilson interval (D1) treat trials as independent, but trials cluster within participants
and within attributes: they are *descriptive*. The paper's "0.96 ± 0.047" does not say what the std is over (D4), so
both readings are reported and labelled: ``std_over_participants`` and ``std_over_attributes``, both with ddof=1
(the pandas default).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from studies.responses import correct_as_float, main_trials


def main_part1(responses: pd.DataFrame, kept: set[str] | None) -> pd.DataFrame:
    """Main coherence trials of kept participants with an answer, with ``correct`` as float and an attribute id."""
    df = main_trials(responses, "coherence", kept)
    df["correct"] = correct_as_float(df["correct"])
    df = df[df["correct"].notna()]
    df["method"] = df["method"].astype(str)
    df["domain"] = df["domain"].astype(str)
    # Attribute indices are only unique within a method and domain: attribute 3 of StylEx is not attribute 3 of Wu.
    df["attribute"] = df["method"] + "/" + df["domain"] + "/" + df["attr_i"].astype(int).astype(str)
    return df.reset_index(drop=True)


ACCURACY_COLUMNS = [
    "method",
    "domain",
    "n",
    "correct",
    "accuracy",
    "ci_low",
    "ci_high",
    "n_participants",
    "mean_over_participants",
    "std_over_participants",
    "n_attributes",
    "mean_over_attributes",
    "std_over_attributes",
    "p_binom_greater",
    "p_binom_two_sided",
    "p_participants_ttest",
    "p_participants_ttest_holm",
]


def accuracy_table(responses: pd.DataFrame, kept: set[str] | None = None) -> pd.DataFrame:
    """Accuracy per method x domain on main Part 1 trials of kept participants.

    Columns (see ``ACCURACY_COLUMNS``):

    * ``accuracy`` with a two-sided 95% Wilson interval ``ci_low``/``ci_high`` (never statsmodels' default normal
      interval, which leaves [0, 1] at k=0 or k=n). It pools trials, so it is descriptive only.
    * ``mean/std_over_participants`` and ``mean/std_over_attributes``: the two readings of the paper's "mean ± std"
      (ddof=1; NaN when there is a single unit).
    * ``p_binom_greater`` / ``p_binom_two_sided``: exact binomial test of pooled trials against chance 0.5.
    * ``p_participants_ttest``: one-sided one-sample t-test of per-participant accuracy against 0.5, which respects
      clustering within participants (D2), and its Holm correction over all cells.

    ``kept`` defaults to the participants kept by :func:`exclusions` with its default threshold.
    """
    df = main_part1(responses, kept)
    rows = []
    for (method, domain), cell in df.groupby(["method", "domain"], sort=True):
        n = len(cell)
        k = int(cell["correct"].sum())
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        per_p = cell.groupby("participant")["correct"].mean()
        per_a = cell.groupby("attribute")["correct"].mean()
        if len(per_p) >= 2 and per_p.std(ddof=1) > 0:
            p_t = float(stats.ttest_1samp(per_p, 0.5, alternative="greater").pvalue)
        else:
            p_t = float("nan")
        rows.append(
            {
                "method": method,
                "domain": domain,
                "n": n,
                "correct": k,
                "accuracy": k / n,
                "ci_low": float(lo),
                "ci_high": float(hi),
                "n_participants": len(per_p),
                "mean_over_participants": float(per_p.mean()),
                "std_over_participants": float(per_p.std(ddof=1)) if len(per_p) > 1 else float("nan"),
                "n_attributes": len(per_a),
                "mean_over_attributes": float(per_a.mean()),
                "std_over_attributes": float(per_a.std(ddof=1)) if len(per_a) > 1 else float("nan"),
                "p_binom_greater": float(stats.binomtest(k, n, 0.5, alternative="greater").pvalue),
                "p_binom_two_sided": float(stats.binomtest(k, n, 0.5, alternative="two-sided").pvalue),
                "p_participants_ttest": p_t,
            }
        )
    table = pd.DataFrame(rows, columns=ACCURACY_COLUMNS[:-1])
    table["p_participants_ttest_holm"] = np.nan
    valid = table["p_participants_ttest"].notna()
    if valid.any():
        table.loc[valid, "p_participants_ttest_holm"] = multipletests(
            table.loc[valid, "p_participants_ttest"], method="holm"
        )[1]
    return table[ACCURACY_COLUMNS]
