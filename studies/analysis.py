"""Statistics for the two-part user study (DESIGN.md section 8; reference user-study.md C5, D1-D6).

Input is the tidy frame from ``studies.db.export_frames``: one row per answered trial with the columns
``participant, part, kind, method, domain, attr_i, attr_j, choice, correct, text_raw, text_norm, rt_ms``.

Why the analysis looks the way it does:

* Pooled accuracy and its Wilson interval (D1) treat trials as independent, but trials cluster within participants
  and within attributes. They are *descriptive* (``studies.accuracy``); inference about methods comes from the GEE
  (clusters = participants, robust SEs), the Bayesian mixed logistic model (crossed random intercepts for
  participants and attributes) and a participant cluster bootstrap (D3), here.
* The paper's "0.96 ± 0.047" does not say what the std is over (D4), so both readings are reported and labelled:
  ``std_over_participants`` and ``std_over_attributes``, both with ddof=1 (the pandas default).
* Only 6 attributes per method and domain are studied: any method comparison generalising beyond these six
  attributes rests on few degrees of freedom. The report says so.
* Part 2 word agreement uses a tiny rule-based lemmatiser so that the suite has no NLTK/spaCy dependency and no
  runtime corpus download (D5, ``studies.word_agreement``). Its limits are documented on :func:`lemmatize`.

This module is the analysis's entry point: :func:`analyze` runs every part and :func:`write_report` writes the
files (``studies.analysis_report``); the parts live in ``studies.responses`` (input and exclusions),
``studies.accuracy`` and ``studies.word_agreement``, and their public names are available here too.

The analysis imports no torch: it runs on the study server and in notebooks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from studies.accuracy import ACCURACY_COLUMNS, accuracy_table, main_part1
from studies.analysis_report import accuracy_plot, table2, table2_latex, write_report
from studies.responses import exclusions
from studies.word_agreement import (
    COMPARATIVE_BASES,
    STOPWORDS,
    SYNONYMS,
    WORD_COLUMNS,
    lemmatize,
    normalize_words,
    shared_top_words,
    word_agreement,
)
from stylex.errors import UserError

__all__ = [
    "ACCURACY_COLUMNS",
    "COMPARATIVE_BASES",
    "DEFAULT_REFERENCE",
    "STOPWORDS",
    "SYNONYMS",
    "WORD_COLUMNS",
    "accuracy_plot",
    "accuracy_table",
    "analyze",
    "compare_methods",
    "exclusions",
    "gee",
    "lemmatize",
    "main_part1",
    "normalize_words",
    "shared_top_words",
    "table2",
    "table2_latex",
    "word_agreement",
    "write_report",
]

#: The baseline that other methods are compared against when it is present (Wu et al., as in the paper).
DEFAULT_REFERENCE = "wu"


# ---------------------------------------------------------------------------------------------------------------------
# Part 1: comparing methods (D3)
# ---------------------------------------------------------------------------------------------------------------------


def _pick_reference(methods: list[str], reference: str | None) -> str:
    if reference is not None:
        if reference not in methods:
            raise UserError(f"reference method {reference!r} is not among the methods {methods}")
        return reference
    return DEFAULT_REFERENCE if DEFAULT_REFERENCE in methods else methods[0]


def _term_name(name: str) -> str:
    """``C(method)[T.stylex]`` -> ``method:stylex``: readable keys for the JSON report."""
    m = re.fullmatch(r"C\((\w+)\)\[T\.(.+)\]", name)
    return f"{m.group(1)}:{m.group(2)}" if m else name


def gee(df: pd.DataFrame, formula: str) -> dict[str, Any]:
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    model = smf.gee(
        formula,
        groups="participant",
        data=df,
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    fit = model.fit()
    ci = fit.conf_int()
    terms = {}
    for name in fit.params.index:
        if name == "Intercept":
            continue
        b = float(fit.params[name])
        terms[_term_name(name)] = {
            "log_odds_ratio": b,
            "se_robust": float(fit.bse[name]),
            "odds_ratio": math.exp(b),
            "or_ci_low": math.exp(float(ci.loc[name, 0])),
            "or_ci_high": math.exp(float(ci.loc[name, 1])),
            "p_value": float(fit.pvalues[name]),
        }
    return {
        "formula": formula,
        "n_obs": int(fit.nobs),
        "n_clusters": int(df["participant"].nunique()),
        "exchangeable_correlation": float(model.cov_struct.dep_params),
        "terms": terms,
    }


def _bayes_mixed(df: pd.DataFrame, formula: str, seed: int) -> dict[str, Any]:
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    vc: dict[str, str] = {}
    if df["participant"].nunique() > 1:
        vc["participant"] = "0 + C(participant)"
    if df["attribute"].nunique() > 1:
        vc["attribute"] = "0 + C(attribute)"
    if not vc:
        raise UserError("the Bayesian mixed model needs more than one participant or attribute")
    model = BinomialBayesMixedGLM.from_formula(formula, vc, df, vcp_p=1, fe_p=2)
    fit = model.fit_vb(rng=np.random.default_rng(seed))
    terms = {}
    for name, mean, sd in zip(model.exog_names, fit.fe_mean, fit.fe_sd, strict=True):
        if name == "Intercept":
            continue
        terms[_term_name(name)] = {
            "posterior_mean": float(mean),
            "posterior_sd": float(sd),
            "odds_ratio": math.exp(float(mean)),
            "cri_low": float(mean - 1.96 * sd),
            "cri_high": float(mean + 1.96 * sd),
        }
    # vcp_mean are posterior means of log-SDs of the random intercepts, in model.vcp_names order.
    re_sd = {name: math.exp(float(v)) for name, v in zip(model.vcp_names, fit.vcp_mean, strict=True)}
    return {
        "formula": formula,
        "random_intercepts": sorted(vc),
        "random_effect_sd": re_sd,
        "terms": terms,
        "note": "variational Bayes (fit_vb); VB posterior SDs are known to be too small, cross-check with GEE",
    }


def _bootstrap_difference(
    df: pd.DataFrame, reference: str, others: list[str], n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """Participant cluster bootstrap of pooled accuracy differences (method - reference) per domain.

    Participants are resampled with replacement and pooled accuracy is recomputed as sum(correct)/sum(trials) over
    the resampled participants, so participants who saw only one method are handled naturally.
    """
    rng = np.random.default_rng(seed)
    out = []
    for domain, ddf in df.groupby("domain", sort=True):
        pids = np.array(sorted(ddf["participant"].unique()))
        k = ddf.pivot_table(index="participant", columns="method", values="correct", aggfunc="sum", fill_value=0)
        n = ddf.pivot_table(index="participant", columns="method", values="correct", aggfunc="count", fill_value=0)
        k, n = k.reindex(pids).fillna(0), n.reindex(pids).fillna(0)
        idx = rng.integers(0, len(pids), size=(n_boot, len(pids)))
        for method in others:
            if method not in k.columns or reference not in k.columns:
                continue
            km, nm = k[method].to_numpy(float), n[method].to_numpy(float)
            kr, nr = k[reference].to_numpy(float), n[reference].to_numpy(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                boot = km[idx].sum(1) / nm[idx].sum(1) - kr[idx].sum(1) / nr[idx].sum(1)
            lo, hi = np.nanpercentile(boot, [2.5, 97.5])
            out.append(
                {
                    "domain": domain,
                    "method": method,
                    "reference": reference,
                    "difference": float(km.sum() / nm.sum() - kr.sum() / nr.sum()),
                    "ci_low": float(lo),
                    "ci_high": float(hi),
                    "n_boot": n_boot,
                }
            )
    return out


def compare_methods(
    responses: pd.DataFrame,
    kept: set[str] | None = None,
    reference: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare methods on main Part 1 trials: GEE, Bayesian mixed logistic model and a cluster bootstrap.

    * GEE (population-averaged): ``correct ~ C(method) [+ C(domain)]``, Binomial family, exchangeable working
      correlation within participants, robust SEs. Odds ratios vs ``reference`` with 95% CIs.
    * ``BinomialBayesMixedGLM`` fitted by ``fit_vb`` (``fit_map`` collapses the variances on this design, D3) with
      crossed random intercepts for participant and attribute, so the attribute-level variance, which dominates with
      six attributes per method, is in the model. Conditional effects are larger than GEE's marginal ones.
    * Cluster bootstrap over participants of the accuracy difference per domain (the easiest number to explain).

    ``reference`` defaults to ``DEFAULT_REFERENCE`` ('wu') when present, else the alphabetically first method.
    Raises :class:`UserError` with fewer than two methods. A model that fails numerically reports ``{"error": ...}``
    instead of taking the rest of the analysis down with it.
    """
    df = main_part1(responses, kept)
    methods = sorted(df["method"].unique())
    if len(methods) < 2:
        raise UserError(
            f"comparing methods needs at least 2 methods with main Part 1 answers, found {methods or 'none'}"
        )
    ref = _pick_reference(methods, reference)
    order = [ref] + [m for m in methods if m != ref]
    df["method"] = pd.Categorical(df["method"], categories=order)  # first category = reference level
    domains = sorted(df["domain"].unique())
    formula = "correct ~ C(method)" + (" + C(domain)" if len(domains) > 1 else "")
    result: dict[str, Any] = {
        "reference": ref,
        "methods": order,
        "domains": domains,
        "n_trials": len(df),
        "n_participants": int(df["participant"].nunique()),
        "n_attributes": int(df["attribute"].nunique()),
        "caveat": (
            "attributes are items (6 per method and domain); comparisons generalising beyond these attributes rest "
            "on few degrees of freedom"
        ),
    }
    try:
        result["gee"] = gee(df, formula)
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as exc:
        result["gee"] = {"formula": formula, "error": f"{type(exc).__name__}: {exc}"}
    try:
        result["bayes_mixed"] = _bayes_mixed(df, formula, seed)
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as exc:
        result["bayes_mixed"] = {"formula": formula, "error": f"{type(exc).__name__}: {exc}"}
    result["bootstrap"] = _bootstrap_difference(df, ref, order[1:], n_boot, seed)
    return result


# ---------------------------------------------------------------------------------------------------------------------
# The whole analysis
# ---------------------------------------------------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    """numpy/pandas scalars -> Python, NaN -> None, frames -> list of records, sets -> sorted lists."""
    if isinstance(obj, pd.DataFrame):
        return [_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted(_jsonable(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def analyze(
    responses: pd.DataFrame, min_attention: float = 1.0, reference: str | None = None, seed: int = 0
) -> dict[str, Any]:
    """Run the whole analysis; every value in the result is JSON-serialisable (tables as lists of records).

    Keys: exclusions (kept, excluded, report), accuracy, comparison (or ``{"error": ...}`` when it cannot run, e.g.
    a single method), words, shared_top_words, n_rows, and the no-exclusion sensitivity accuracy table (C5).
    """
    kept, report = exclusions(responses, min_attention)
    has_part1 = bool(((responses["part"] == "coherence") & (responses["kind"] == "main")).any())
    has_part2 = bool(((responses["part"] == "description") & (responses["kind"] == "main")).any())
    all_participants = set(report["participant"])
    result: dict[str, Any] = {
        "n_rows": len(responses),
        "exclusions": {
            "min_attention": min_attention,
            "kept": kept,
            "excluded": set(report.loc[report["excluded"], "participant"]),
            "report": report,
        },
    }
    if has_part1:
        result["accuracy"] = accuracy_table(responses, kept)
        result["accuracy_no_exclusions"] = accuracy_table(responses, all_participants)
        try:
            result["comparison"] = compare_methods(responses, kept, reference=reference, seed=seed)
        except UserError as exc:
            result["comparison"] = {"error": str(exc)}
    if has_part2:
        words = word_agreement(responses, kept)
        result["words"] = words
        result["shared_top_words"] = shared_top_words(words)
    return _jsonable(result)
