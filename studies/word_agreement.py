"""Part 2 of the user study: do participants name an attribute with the same words? (DESIGN.md section 8;
reference user-study.md D5).

Word agreement uses a tiny rule-based lemmatiser so that the suite has no NLTK/spaCy dependency and no runtime
corpus download. Its limits are documented on :func:`lemmatize`.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping

import pandas as pd

from studies.responses import main_trials
from studies.text import normalize_text

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
    df = main_trials(responses, "description", kept)
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
