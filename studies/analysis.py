"""Statistics for the two-part user study (DESIGN.md section 8; reference user-study.md C5, D1-D6).

Input is the tidy frame from ``studies.db.export_frames``: one row per answered trial with the columns
``participant, part, kind, method, domain, attr_i, attr_j, choice, correct, text_raw, text_norm, rt_ms``.

Why the analysis looks the way it does:

* Pooled accuracy and its Wilson interval (D1) treat trials as independent, but trials cluster within participants
  and within attributes. They are *descriptive*; inference about methods comes from the GEE (clusters =
  participants, robust SEs), the Bayesian mixed logistic model (crossed random intercepts for participants and
  attributes) and a participant cluster bootstrap (D3).
* The paper's "0.96 ± 0.047" does not say what the std is over (D4), so both readings are reported and labelled:
  ``std_over_participants`` and ``std_over_attributes``, both with ddof=1 (the pandas default).
* Only 6 attributes per method and domain are studied: any method comparison generalising beyond these six
  attributes rests on few degrees of freedom. The report says so.
* Part 2 word agreement uses a tiny rule-based lemmatiser so that the suite has no NLTK/spaCy dependency and no
  runtime corpus download (D5). Its limits are documented on :func:`lemmatize`.

The module imports no torch: it runs on the study server and in notebooks.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from studies.text import normalize_text
from stylex.errors import UserError

__all__ = [
    "DEFAULT_REFERENCE",
    "accuracy_plot",
    "accuracy_table",
    "analyze",
    "compare_methods",
    "exclusions",
    "lemmatize",
    "normalize_words",
    "shared_top_words",
    "table2",
    "table2_latex",
    "word_agreement",
    "write_report",
]

#: The baseline that other methods are compared against when it is present (Wu et al., as in the paper).
DEFAULT_REFERENCE = "wu"

_REQUIRED_COLUMNS = ("participant", "part", "kind", "method", "domain", "attr_i", "correct")


# ---------------------------------------------------------------------------------------------------------------------
# Input handling and exclusions (C5)
# ---------------------------------------------------------------------------------------------------------------------


def _check_columns(responses: pd.DataFrame, extra: Iterable[str] = ()) -> None:
    missing = [c for c in (*_REQUIRED_COLUMNS, *extra) if c not in responses.columns]
    if missing:
        raise UserError(
            f"responses lack the column(s) {', '.join(missing)}; pass the frame from studies.db export_frames"
        )


def _correct_as_float(series: pd.Series) -> pd.Series:
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
    _check_columns(responses)
    if not 0.0 <= min_attention <= 1.0:
        raise UserError(f"min_attention must lie in [0, 1], got {min_attention}")
    df = responses[responses["kind"] != "practice"]
    participants = sorted(pd.unique(df["participant"].astype(str)))
    att = df[df["kind"] == "attention"].copy()
    att["_c"] = _correct_as_float(att["correct"]).fillna(0.0)  # an unanswered check counts as failed
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


def main_part1(responses: pd.DataFrame, kept: set[str] | None) -> pd.DataFrame:
    """Main coherence trials of kept participants with an answer, with ``correct`` as float and an attribute id."""
    _check_columns(responses)
    if kept is None:
        kept, _ = exclusions(responses)
    df = responses[(responses["part"] == "coherence") & (responses["kind"] == "main")].copy()
    df["participant"] = df["participant"].astype(str)
    df = df[df["participant"].isin(kept)]
    df["correct"] = _correct_as_float(df["correct"])
    df = df[df["correct"].notna()]
    df["method"] = df["method"].astype(str)
    df["domain"] = df["domain"].astype(str)
    # Attribute indices are only unique within a method and domain: attribute 3 of StylEx is not attribute 3 of Wu.
    df["attribute"] = df["method"] + "/" + df["domain"] + "/" + df["attr_i"].astype(int).astype(str)
    return df.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------------------
# Part 1: accuracy per method x domain (D1, D2, D4)
# ---------------------------------------------------------------------------------------------------------------------

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
# Part 2: word agreement (D5)
# ---------------------------------------------------------------------------------------------------------------------

#: Function words and words that describe *that* something changes, not *what* changes. Deliberately small:
#: dropping content words (e.g. "bigger") would hide real agreement.
STOPWORDS = frozenset(
    """a an the and or of to in on at by for with from into onto up down out over under off as is are was were be
    been being it its this that these those there their his her he she they them becomes become becoming gets get
    getting got more less most least very much some any no not lot lots bit slightly slight change changes changed
    changing kind sort like just than then also only""".split()  # noqa: SIM905 -- a word list reads better as text
)

#: Spelling variants and project synonyms applied after lemmatisation (D5).
SYNONYMS: Mapping[str, str] = {
    "grey": "gray",
    "colour": "color",
    "eyeglass": "glass",
    "spectacle": "glass",
    "leave": "leaf",  # "leaves" lemmatises to "leave"; in image descriptions it is the noun
}

#: Adjectives whose comparative/superlative (-er/-est) is folded to the base. -er is not stripped in general because
#: too many nouns end in it (flower, water, hair, finger); listing bases keeps the rule predictable.
COMPARATIVE_BASES = frozenset(
    """big large small wide narrow long short tall high low dark light bright pale old young thick thin fat deep
    broad round soft hard sharp smooth straight warm cool cold hot red wet close loose strong weak dense sparse
    curly full heavy happy angry busy dirty fluffy hairy""".split()  # noqa: SIM905
)

_IRREGULAR = {"children": "child", "teeth": "tooth", "feet": "foot", "men": "man", "women": "woman", "mice": "mouse"}
_VOWELS = set("aeiou")


def _measure(stem: str) -> int:
    """Porter's measure m: the number of vowel-consonant sequences, used to decide when a stem needs its final e."""
    pattern = "".join(
        "v" if c in _VOWELS or (c == "y" and i > 0 and stem[i - 1] not in _VOWELS) else "c" for i, c in enumerate(stem)
    )
    return len(re.findall(r"v+c+", pattern))


def _restore_e(stem: str) -> str:
    """Undo the spelling changes of -ing/-ed: undouble (running -> run), restore e (smiling -> smile)."""
    if len(stem) >= 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz" and stem[-1] not in _VOWELS:
        return stem[:-1]
    if stem.endswith(("at", "bl", "iz", "v", "c")):
        return stem + "e"
    cvc = (
        len(stem) >= 3
        and stem[-1] not in _VOWELS
        and stem[-1] not in "wxy"
        and stem[-2] in _VOWELS
        and stem[-3] not in _VOWELS
    )
    if _measure(stem) == 1 and cvc:
        return stem + "e"
    return stem


def lemmatize(word: str) -> str:
    """Fold one lowercase token to a lemma with a few English rules.

    Rules, in order: a handful of irregular plurals; comparatives/superlatives of the adjectives in
    ``COMPARATIVE_BASES`` (bigger -> big, larger -> large, happier -> happy); plurals (-ies -> -y, -sses -> -ss,
    -ches/-shes/-xes/-zes -> drop -es, -s -> drop unless -ss/-us/-is); -ing and -ed with Porter-style undoubling and
    e-restoration (smiling -> smile, running -> run, bearded -> beard), only when the stem keeps a vowel (so
    "ring", "red" and "bed" survive).

    Limits (why it is not a real lemmatiser): no part-of-speech, so "glasses" -> "glass" and "leaves" -> "leave"
    (fixed by ``SYNONYMS``); other -er comparatives and irregular comparatives (better, worse) are kept;
    e-restoration misfires on some words ("shaded" -> "shade" is right, "fitted" -> "fit" right, but e.g.
    "opened" -> "open" only by Porter's measure rule). It only has to make participants' 1-4 word descriptions of
    the same visual change collide, and errors are consistent across attributes, which is what agreement needs.
    """
    w = word
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    for suffix in ("est", "er"):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            stem = w[: -len(suffix)]
            candidates = [stem, stem + "e"]
            if len(stem) >= 2 and stem[-1] == stem[-2]:
                candidates.append(stem[:-1])
            if stem.endswith("i"):
                candidates.append(stem[:-1] + "y")
            for cand in candidates:
                if cand in COMPARATIVE_BASES:
                    return cand
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if w.endswith("sses"):
        return w[:-2]
    if len(w) > 4 and w.endswith(("ches", "shes", "xes", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and not w.endswith("eed"):
            stem = w[: -len(suffix)]
            if len(stem) >= 2 and any(c in _VOWELS or c == "y" for c in stem):
                return _restore_e(stem)
    return w


def normalize_words(text: str | None, synonyms: Mapping[str, str] | None = None) -> list[str]:
    """Normalise a free-text description into distinct content-word lemmas, in order of first appearance.

    NFKC + lowercase, keep ``[a-z'-]`` runs (so punctuation and digits go, "Bigger!" -> "bigger"), split hyphens,
    drop possessive 's, drop ``STOPWORDS`` (before and after lemmatising), :func:`lemmatize`, apply ``synonyms``
    (default ``SYNONYMS``), and de-duplicate within the description so one participant repeating a word counts once.
    """
    if not text:
        return []
    synonyms = SYNONYMS if synonyms is None else synonyms
    folded = unicodedata.normalize("NFKC", str(text)).lower().replace("\u2019", "'")
    out: list[str] = []
    for token in re.findall(r"[a-z']+", folded):
        token = token.strip("'")
        if token.endswith("'s"):
            token = token[:-2]
        if len(token) < 2 or token in STOPWORDS:
            continue
        lemma = lemmatize(token)
        lemma = synonyms.get(lemma, lemma)
        if lemma in STOPWORDS or lemma in out:
            continue
        out.append(lemma)
    return out


WORD_COLUMNS = [
    "method",
    "domain",
    "attribute",
    "n_descriptions",
    "n_empty",
    "top_word",
    "top_count",
    "top_share",
    "top_tied",
    "shared_by_all",
    "shared_words",
    "words",
]


def word_agreement(responses: pd.DataFrame, kept: set[str] | None = None) -> pd.DataFrame:
    """Word agreement per (method, domain, attribute) on main Part 2 descriptions of kept participants.

    ``n_descriptions`` counts descriptions with at least one content word (``n_empty`` counts the others, which C5
    excludes). ``top_word`` is the most frequent lemma (ties broken alphabetically, flagged in ``top_tied``),
    ``top_share`` the share of descriptions containing it, ``shared_by_all`` the paper's criterion (one word appears in
    every description) with the words in ``shared_words``. ``words`` is the frequency table as "word:count" text.
    Descriptions are read from ``text_norm``, the text the participant was held to (NFKC, invisible and control
    characters removed or turned into word breaks; :func:`studies.text.normalize_text`), and where it is missing from
    ``text_raw`` passed through the same normaliser; :func:`normalize_words` then lemmatises it. (Databases written
    before ``text_norm`` held the normalised text stored lemmatised words there, which :func:`normalize_words`
    leaves as they are.)
    """
    _check_columns(responses)
    if kept is None:
        kept, _ = exclusions(responses)
    df = responses[(responses["part"] == "description") & (responses["kind"] == "main")].copy()
    df["participant"] = df["participant"].astype(str)
    df = df[df["participant"].isin(kept)]
    raw = df["text_raw"] if "text_raw" in df.columns else pd.Series(None, index=df.index, dtype=object)
    norm = df["text_norm"] if "text_norm" in df.columns else pd.Series(None, index=df.index, dtype=object)
    texts = [n if isinstance(n, str) else normalize_text(r if isinstance(r, str) else None)
             for n, r in zip(norm, raw, strict=True)]
    df["_words"] = [normalize_words(t if isinstance(t, str) else None) for t in texts]
    rows = []
    for (method, domain, attr), cell in df.groupby(["method", "domain", "attr_i"], sort=True):
        word_lists = [w for w in cell["_words"] if w]
        n = len(word_lists)
        counts = Counter(itertools.chain.from_iterable(word_lists))
        if counts:
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            top, top_count = ranked[0]
            tied = len(ranked) > 1 and ranked[1][1] == top_count
            shared = sorted(set.intersection(*(set(w) for w in word_lists)))
        else:
            top, top_count, tied, shared, ranked = None, 0, False, [], []
        rows.append(
            {
                "method": str(method),
                "domain": str(domain),
                "attribute": int(attr),
                "n_descriptions": n,
                "n_empty": len(cell) - n,
                "top_word": top,
                "top_count": int(top_count),
                "top_share": top_count / n if n else float("nan"),
                "top_tied": bool(tied),
                "shared_by_all": bool(shared),
                "shared_words": " ".join(shared),
                "words": ", ".join(f"{w}:{c}" for w, c in ranked),
            }
        )
    return pd.DataFrame(rows, columns=WORD_COLUMNS)


def shared_top_words(table: pd.DataFrame) -> pd.DataFrame:
    """Pairs of attributes of the same method and domain whose top words coincide: a distinctness failure.

    With six attributes there are C(6, 2) = 15 pairs per method and domain; fewer collisions mean participants
    named the attributes differently, i.e. the attributes are distinct.
    """
    rows = []
    for (method, domain), cell in table.dropna(subset=["top_word"]).groupby(["method", "domain"], sort=True):
        recs = cell.sort_values("attribute")[["attribute", "top_word"]].to_records(index=False)
        for (a, wa), (b, wb) in itertools.combinations(recs, 2):
            if wa == wb:
                rows.append({"method": method, "domain": domain, "attr_a": int(a), "attr_b": int(b), "word": wa})
    return pd.DataFrame(rows, columns=["method", "domain", "attr_a", "attr_b", "word"])


# ---------------------------------------------------------------------------------------------------------------------
# Tables and plot
# ---------------------------------------------------------------------------------------------------------------------


def _std_column(over: str) -> str:
    if over not in ("attributes", "participants"):
        raise UserError(f"over must be 'attributes' or 'participants', got {over!r}")
    return f"std_over_{over}"


def _cell(row: pd.Series, std_col: str) -> str:
    std = row[std_col]
    std_txt = "n/a" if std is None or pd.isna(std) else f"{std:.3f}"
    return f"{row['accuracy']:.2f} ± {std_txt} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _grid(acc_table: pd.DataFrame, over: str) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    std_col = _std_column(over)
    methods = list(dict.fromkeys(acc_table["method"]))
    domains = list(dict.fromkeys(acc_table["domain"]))
    cells = {(r["domain"], r["method"]): _cell(r, std_col) for _, r in acc_table.iterrows()}
    return methods, domains, cells


def _caption(over: str) -> str:
    return (
        f"Accuracy (pooled over trials) ± s.d. over {over} (ddof=1) [Wilson 95% CI, descriptive: trials cluster within "
        "participants and attributes]. Chance is 0.5."
    )


def table2(acc_table: pd.DataFrame, over: str = "attributes") -> str:
    """Markdown table in the paper's Table 2 layout: rows = domains, columns = methods, "acc ± std [lo, hi]" cells.

    ``over`` picks which std is shown ('attributes' or 'participants'); the caption says which.
    """
    methods, domains, cells = _grid(acc_table, over)
    lines = ["| Domain | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for d in domains:
        lines.append(f"| {d} | " + " | ".join(cells.get((d, m), "–") for m in methods) + " |")
    lines.append("")
    lines.append(_caption(over))
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    """Escape LaTeX specials; ± becomes math so that the file compiles without inputenc tricks."""
    escaped = re.sub(r"([\\&%$#_{}])", lambda m: "\\textbackslash{}" if m.group(1) == "\\" else "\\" + m.group(1), text)
    return escaped.replace("±", "$\\pm$")


def table2_latex(acc_table: pd.DataFrame, over: str = "attributes") -> str:
    """The same table as LaTeX (booktabs), ready for ``\\input``; needs ``\\usepackage{booktabs}``."""
    methods, domains, cells = _grid(acc_table, over)
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        "\\begin{tabular}{l" + "c" * len(methods) + "}",
        "\\toprule",
        "Domain & " + " & ".join(_tex(m) for m in methods) + " \\\\",
        "\\midrule",
    ]
    for d in domains:
        row = [_tex(cells.get((d, m), "--")) for m in methods]
        lines.append(_tex(d) + " & " + " & ".join(row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{_tex(_caption(over))}}}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def accuracy_plot(acc_table: pd.DataFrame, path: str | Path) -> Path:
    """Grouped bars (domain groups, one bar per method) with Wilson 95% error bars and the chance line.

    Uses ``Figure`` + ``FigureCanvasAgg`` rather than pyplot so that it is thread-safe on a server and leaves no
    global figure state behind.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    methods = list(dict.fromkeys(acc_table["method"]))
    domains = list(dict.fromkeys(acc_table["domain"]))
    fig = Figure(figsize=(max(4.0, 1.6 * len(domains) * max(1, len(methods)) / 2 + 2), 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(domains))
    for i, method in enumerate(methods):
        sub = acc_table[acc_table["method"] == method].set_index("domain").reindex(domains)
        acc = sub["accuracy"].to_numpy(float)
        err = np.vstack([acc - sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float) - acc])
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, acc, width, yerr=err, capsize=3, label=method)
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, domains)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (Wilson 95% CI)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Bundle and report
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


def _md_table(records: list[Mapping[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in records]
    return "\n".join(lines) + "\n"


def write_report(result: Mapping[str, Any], folder: str | Path) -> dict[str, Path]:
    """Write ``analysis.md``, ``table2.tex`` and ``accuracy.png`` into ``folder`` from an :func:`analyze` result.

    Works from the JSON-able result (not live frames) so that a stored ``analyze`` output can be re-rendered.
    Without Part 1 data the table and plot files hold a note instead of numbers / are not written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": folder / "analysis.md", "latex": folder / "table2.tex", "plot": folder / "accuracy.png"}
    ex = result["exclusions"]
    md = [
        "# User study analysis",
        "",
        f"Rows: {result['n_rows']}. Participants kept: {len(ex['kept'])}, excluded: {len(ex['excluded'])} "
        f"(attention share < {ex['min_attention']}).",
        "",
    ]
    if ex["excluded"]:
        md += ["Excluded: " + ", ".join(ex["excluded"]), ""]
    acc = result.get("accuracy")
    if acc:
        acc_df = pd.DataFrame(acc)
        md += ["## Part 1: accuracy (Table 2 layout)", "", table2(acc_df, "attributes"), table2(acc_df, "participants")]
        md += ["### All numbers", "", _md_table(acc, ACCURACY_COLUMNS)]
        if result.get("accuracy_no_exclusions"):
            md += ["### Sensitivity: no exclusions", "", table2(pd.DataFrame(result["accuracy_no_exclusions"]))]
        paths["latex"].write_text(table2_latex(acc_df), encoding="utf-8")
        accuracy_plot(acc_df, paths["plot"])
        md += ["![accuracy](accuracy.png)", ""]
    else:
        paths["latex"].write_text("% no Part 1 data\n", encoding="utf-8")
        paths.pop("plot")
    comp = result.get("comparison")
    if comp:
        md += ["## Part 1: method comparison", ""]
        if "error" in comp:
            md += [f"Not run: {comp['error']}", ""]
        else:
            md += [f"Reference method: {comp['reference']}. Caveat: {comp['caveat']}.", ""]
            gee = comp["gee"]
            md += [f"### GEE (`{gee['formula']}`, exchangeable, clusters = participants)", ""]
            if "error" in gee:
                md += [f"Failed: {gee['error']}", ""]
            else:
                recs = [{"term": t, **v} for t, v in gee["terms"].items()]
                cols = ["term", "odds_ratio", "or_ci_low", "or_ci_high", "p_value", "log_odds_ratio", "se_robust"]
                md += [_md_table(recs, cols)]
            bm = comp["bayes_mixed"]
            md += ["### Bayesian mixed logistic model (random intercepts: participant, attribute; fit_vb)", ""]
            if "error" in bm:
                md += [f"Failed: {bm['error']}", ""]
            else:
                recs = [{"term": t, **v} for t, v in bm["terms"].items()]
                md += [_md_table(recs, ["term", "posterior_mean", "posterior_sd", "cri_low", "cri_high", "odds_ratio"])]
                md += [f"Random-effect SDs: {bm['random_effect_sd']}. {bm['note']}.", ""]
            md += ["### Participant cluster bootstrap of accuracy differences", ""]
            md += [_md_table(comp["bootstrap"], ["domain", "method", "reference", "difference", "ci_low", "ci_high"])]
    if result.get("words") is not None:
        md += ["## Part 2: word agreement", "", _md_table(result["words"], WORD_COLUMNS[:-1])]
        shared = result.get("shared_top_words") or []
        md += [f"Attribute pairs sharing a top word (distinctness failures): {len(shared)}", ""]
        if shared:
            md += [_md_table(shared, ["method", "domain", "attr_a", "attr_b", "word"])]
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    return paths
