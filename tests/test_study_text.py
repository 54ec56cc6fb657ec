"""Normalising the participants' descriptions (studies/text.py): zero-width and control characters, word counts
after normalising, text without letters, and the database and analysis using the normalised text."""

import pandas as pd
import pytest

from studies import analysis, db
from studies.text import DescriptionError, check_description, normalize_text, words
from stylex.errors import UserError

ZWSP, ZWJ, RLO, NUL, SHY, BOM = "\u200b", "\u200d", "\u202e", "\x00", "\u00ad", "\ufeff"


@pytest.mark.parametrize(("raw", "norm", "n_words"), [
    ("hair gets darker", "hair gets darker", 3),
    ("  glasses  ", "glasses", 1),
    (f"hair{ZWSP}darker", "hair darker", 2),                 # a zero-width space is a word break
    (ZWSP.join("abcdef"), "a b c d e f", 6),                 # ... so six words joined by it are six words
    (f"ha{SHY}ir{ZWJ}{BOM}cut", "haircut", 1),               # joiners and soft hyphens never break a word
    (f"bigger{NUL}eyes", "bigger eyes", 2),
    ("older\nface\r\n", "older face", 2),
    (f"{RLO}dark hair", "dark hair", 2),                     # right-to-left override gone
    ("\u2066smile\u2069", "smile", 1),                       # bidi isolates
    ("\uff48\uff41\uff49\uff52", "hair", 1),                 # full-width letters (NFKC)
    ("\ufb01ne lines", "fine lines", 2),                     # ligature (NFKC)
    ("red,green,blue", "red,green,blue", 3),                 # punctuation separates words as in the analysis
    ("hair-colour don't", "hair-colour don't", 2),           # ... but not word-internal hyphens and apostrophes
    ("\u3164\u2800", "", 0),                                 # blank "filler" letters
    ("=1+1", "=1+1", 2),
    ("", "", 0),
])
def test_normalize_text_and_words(raw, norm, n_words):
    assert normalize_text(raw) == norm
    assert len(words(norm)) == n_words
    assert normalize_text(norm) == norm  # idempotent


@pytest.mark.parametrize("raw", [
    ZWSP.join("abcdef"),            # 6 words once a zero-width space counts as a break
    "one two three four five",
    "=1+1", "123", "!!!", "- + @",  # no letter
    "", "   ", ZWSP * 5, f"{NUL}\n\t{RLO}", "\u3164",  # empty after normalising
    "x" * 41,                       # too long
    None,
])
def test_check_description_refuses(raw):
    with pytest.raises(DescriptionError, match="Please describe the change"):
        check_description(raw, max_words=4, max_chars=40)


def test_check_description_accepts_and_returns_the_normalised_text():
    assert check_description(f"hair{ZWSP}darker", 4, 40) == "hair darker"
    assert check_description(f"{RLO}smile{NUL}\n", 4, 40) == "smile"
    assert check_description('=HYPERLINK("http://x.y")', 4, 40) == '=HYPERLINK("http://x.y")'  # has letters; CSV
    assert check_description("le ciel bleu", 4, 40) == "le ciel bleu"


def test_database_stores_raw_and_normalised(tmp_path):
    from test_study_db import STUDY, _assets, _participant_with_plan, _trial_ids

    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    db.create_schema(engine)
    db.add_study(engine, STUDY, "pilot", "f" * 64, _assets(8))
    participant = _participant_with_plan(engine, "p-text", 4, part="description")
    trials = _trial_ids(engine, participant)
    raw = f"{RLO}hair{ZWSP}darker{NUL}\n"
    assert db.record_description(engine, trials[0], raw)
    for bad in ("=1+1", ZWSP * 3, f"{NUL}\n"):
        with pytest.raises(UserError, match="no letters"):
            db.record_description(engine, trials[1], bad)
    with pytest.raises(UserError, match="not the normalised form"):
        db.record_description(engine, trials[1], "older face", "old face")
    responses = db.export_frames(engine)["responses"]
    db.dispose_engines()
    assert responses["text_raw"].tolist() == [raw]  # kept exactly as typed
    assert responses["text_norm"].tolist() == ["hair darker"]


def test_analysis_reads_the_normalised_text():
    rows = [{"participant": f"p{k}", "part": "description", "kind": "main", "method": "m", "domain": "d",
             "attr_i": 0, "attr_j": None, "choice": None, "correct": None, "rt_ms": 1000, **texts}
            for k, texts in enumerate([
                {"text_raw": f"hair{ZWSP}darker", "text_norm": "hair darker"},
                {"text_raw": "darker hair", "text_norm": None},                 # no text_norm: normalised here
                {"text_raw": f"{RLO}dark{NUL}hair", "text_norm": float("nan")},  # CSV round trip: NaN
            ])]
    row = analysis.word_agreement(pd.DataFrame(rows), kept={"p0", "p1", "p2"}).iloc[0]
    assert row["n_descriptions"] == 3 and row["n_empty"] == 0
    assert row["shared_by_all"] and row["shared_words"] == "dark hair"
