"""The study analysis's input and who counts in it (DESIGN.md section 8; reference user-study.md C5).

Input is the tidy frame from ``studies.db.export_frames``: one row per answered trial with the columns
``participant, part, kind, method, domain, attr_i, attr_j, choice, correct, text_raw, text_norm, rt_ms``.
Practice rows never count anywhere, because participants are still learning the task there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from stylex.errors import UserError

REQUIRED_COLUMNS = ("participant", "part", "kind", "method", "domain", "attr_i", "correct")


def check_columns(responses: pd.DataFrame, extra: Iterable[str] = ()) -> None:
    missing = [c for c in (*REQUIRED_COLUMNS, *extra) if c not in responses.columns]
    if missing:
        raise UserError(
            f"responses lack the column(s) {', '.join(missing)}; pass the frame from studies.db export_frames"
        )


def correct_as_float(series: pd.Series) -> pd.Series:
    """``correct`` arrives as bool with None for unanswered/description rows; map it to 1.0/0.0/NaN."""
    return series.map(lambda v: np.nan if v is None or (isinstance(v, float) and math.isnan(v)) else float(bool(v)))


def exclusions(responses: pd.DataFrame, min_attention: float = 1.0) -> tuple[set[str], pd.DataFrame]:
    """Apply the pre-registered attention-check rule; return the kept participants and a per-participant report.

    A participant is excluded when their share of correct ``kind == 'attention'`` trials is below
    ``min_attention`` (default 1.0: any failed check excludes). Practice rows never count, neither for attention nor
    anywhere else, because participants are still learning the task there. Participants with no attention rows
    (e.g. a Part 2 design without catch trials) cannot fail the rule and are kept; the report shows
    ``n_attention == 0`` for them so that the reader can see it.
    """
    check_columns(responses)
    if not 0.0 <= min_attention <= 1.0:
        raise UserError(f"min_attention must lie in [0, 1], got {min_attention}")
    df = responses[responses["kind"] != "practice"]
    participants = sorted(pd.unique(df["participant"].astype(str)))
    att = df[df["kind"] == "attention"].copy()
    att["_c"] = correct_as_float(att["correct"]).fillna(0.0)  # an unanswered check counts as failed
    grouped = att.groupby(att["participant"].astype(str))["_c"]
    n_att = grouped.size()
    n_ok = grouped.sum()
    rows = []
    for pid in participants:
        n = int(n_att.get(pid, 0))
        k = int(n_ok.get(pid, 0))
        share = k / n if n else float("nan")
        excluded = bool(n and share < min_attention)
        rows.append(
            {
                "participant": pid,
                "n_attention": n,
                "n_attention_correct": k,
                "attention_share": share,
                "excluded": excluded,
                "reason": "attention" if excluded else "",
            }
        )
    report = pd.DataFrame(
        rows, columns=["participant", "n_attention", "n_attention_correct", "attention_share", "excluded", "reason"]
    )
    kept = set(report.loc[~report["excluded"], "participant"])
    return kept, report


def main_trials(responses: pd.DataFrame, part: str, kept: set[str] | None) -> pd.DataFrame:
    """The main trials of one part ('coherence' or 'description') answered by kept participants (default: those
    :func:`exclusions` keeps), with participant ids as text."""
    check_columns(responses)
    if kept is None:
        kept, _ = exclusions(responses)
    df = responses[(responses["part"] == part) & (responses["kind"] == "main")].copy()
    df["participant"] = df["participant"].astype(str)
    return df[df["participant"].isin(kept)]
