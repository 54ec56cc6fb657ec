"""Tests for studies.analysis on simulated participants with planted accuracies (reference user-study.md D6)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from studies import analysis as an
from stylex.errors import UserError

PLANTED = {"stylex": 0.9, "wu": 0.65}
N_PARTICIPANTS = 40
FAILING = {"p900", "p901", "p902"}


def _row(pid, part, kind, method, domain, attr_i, attr_j, correct, text=None):
    return {
        "participant": pid,
        "part": part,
        "kind": kind,
        "method": method,
        "domain": domain,
        "attr_i": attr_i,
        "attr_j": attr_j,
        "choice": None if correct is None else ("A" if correct else "B"),
        "correct": correct,
        "text_raw": text,
        "text_norm": None if text is None else text.lower(),
        "rt_ms": 3000,
    }


def simulate(seed: int = 7, domains=("shapes",)) -> pd.DataFrame:
    """40 good participants x 12 main trials per method and domain (6 attributes, each twice), 2 attention checks
    each, plus 3 participants who fail one attention check and answer at chance. Everyone also gets two wrong
    practice trials, which must count nowhere."""
    rng = np.random.default_rng(seed)
    rows = []
    pids = [f"p{i:03d}" for i in range(N_PARTICIPANTS)] + sorted(FAILING)
    for pid in pids:
        failing = pid in FAILING
        rows.append(_row(pid, "coherence", "practice", "stylex", domains[0], 0, 1, False))
        rows.append(_row(pid, "coherence", "practice", "wu", domains[0], 2, 3, False))
        for domain in domains:
            for method, p in PLANTED.items():
                for t in range(12):
                    attr = t % 6
                    ok = bool(rng.random() < (0.5 if failing else p))
                    rows.append(_row(pid, "coherence", "main", method, domain, attr, (attr + 1) % 6, ok))
        rows.append(_row(pid, "coherence", "attention", "stylex", domains[0], 0, 5, True))
        rows.append(_row(pid, "coherence", "attention", "wu", domains[0], 1, 4, not failing))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def responses() -> pd.DataFrame:
    return simulate()


@pytest.fixture(scope="module")
def kept(responses):
    return an.exclusions(responses)[0]


@pytest.fixture(scope="module")
def acc(responses, kept):
    return an.accuracy_table(responses, kept)


@pytest.fixture(scope="module")
def comparison(responses, kept):
    return an.compare_methods(responses, kept, n_boot=500)


def test_exclusions_drop_exactly_failing(responses):
    kept, report = an.exclusions(responses)
    assert set(report["participant"]) - kept == FAILING
    assert len(kept) == N_PARTICIPANTS
    failing = report.set_index("participant").loc[sorted(FAILING)]
    assert (failing["attention_share"] == 0.5).all() and (failing["reason"] == "attention").all()
    # Practice rows never count: good participants have exactly 2 attention rows, both correct.
    good = report[~report["excluded"]]
    assert (good["n_attention"] == 2).all() and (good["attention_share"] == 1.0).all()
    # A looser threshold keeps everyone.
    assert len(an.exclusions(responses, min_attention=0.5)[0]) == N_PARTICIPANTS + len(FAILING)


def test_accuracy_table_recovers_planted(acc):
    assert list(acc.columns) == an.ACCURACY_COLUMNS
    for method, p in PLANTED.items():
        row = acc[acc["method"] == method].iloc[0]
        assert row["n"] == N_PARTICIPANTS * 12
        assert row["n_participants"] == N_PARTICIPANTS and row["n_attributes"] == 6
        assert row["ci_low"] < p < row["ci_high"], (method, row["ci_low"], row["ci_high"])
        assert row["accuracy"] == pytest.approx(row["correct"] / row["n"])
        assert row["std_over_participants"] > 0 and row["std_over_attributes"] > 0
    stylex = acc[acc["method"] == "stylex"].iloc[0]
    assert stylex["p_binom_greater"] < 0.05 and stylex["p_binom_two_sided"] < 0.05
    assert stylex["p_participants_ttest_holm"] < 0.05


def test_mean_pm_std_conventions_hand_computed():
    # 2 participants x 2 attributes: p0 gets both attributes right, p1 only attribute 0.
    rows = [
        _row(pid, "coherence", "main", "m", "d", attr, 9, ok)
        for pid, attr, ok in [("a", 0, True), ("a", 1, True), ("b", 0, True), ("b", 1, False)]
    ]
    row = an.accuracy_table(pd.DataFrame(rows)).iloc[0]
    assert row["accuracy"] == 0.75
    assert row["std_over_participants"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    assert row["std_over_attributes"] == pytest.approx(np.std([1.0, 0.5], ddof=1))


def test_wilson_edge_cases():
    rows = [_row(f"p{i}", "coherence", "main", "m", "d", i % 2, 9, True) for i in range(10)]
    rows += [_row(f"p{i}", "coherence", "main", "z", "d", i % 2, 9, False) for i in range(10)]
    table = an.accuracy_table(pd.DataFrame(rows)).set_index("method")
    assert table.loc["m", "ci_high"] == pytest.approx(1.0) and 0.6 < table.loc["m", "ci_low"] < 1.0
    assert table.loc["z", "ci_low"] == pytest.approx(0.0, abs=1e-12) and 0.0 < table.loc["z", "ci_high"] < 0.4


def test_gee_and_bayes_find_stylex_better(comparison):
    assert comparison["reference"] == "wu"
    gee = comparison["gee"]["terms"]["method:stylex"]
    assert gee["log_odds_ratio"] > 0 and gee["odds_ratio"] > 1 and gee["p_value"] < 0.01
    assert gee["or_ci_low"] > 1
    bayes = comparison["bayes_mixed"]["terms"]["method:stylex"]
    assert bayes["posterior_mean"] > 0 and bayes["posterior_sd"] > 0
    boot = comparison["bootstrap"][0]
    assert boot["method"] == "stylex" and 0 < boot["ci_low"] < boot["difference"] < boot["ci_high"]


def test_compare_methods_needs_two_methods(responses):
    with pytest.raises(UserError, match="at least 2 methods"):
        an.compare_methods(responses[responses["method"] == "stylex"])


def test_two_domains_adds_domain_term():
    res = an.compare_methods(simulate(seed=3, domains=("shapes", "faces")), n_boot=100)
    assert "C(domain)" in res["gee"]["formula"] and "domain:shapes" in res["gee"]["terms"]
    assert {b["domain"] for b in res["bootstrap"]} == {"faces", "shapes"}


@pytest.mark.parametrize(
    ("word", "lemma"),
    [
        ("bigger", "big"),
        ("larger", "large"),
        ("happier", "happy"),
        ("smiling", "smile"),
        ("running", "run"),
        ("bearded", "beard"),
        ("wrinkles", "wrinkle"),
        ("eyebrows", "eyebrow"),
        ("glasses", "glass"),
        ("bushes", "bush"),
        ("flies", "fly"),
        ("ring", "ring"),
        ("red", "red"),
        ("flower", "flower"),
        ("hair", "hair"),
        ("curled", "curl"),
    ],
)
def test_lemmatize(word, lemma):
    assert an.lemmatize(word) == lemma


def test_normalize_words():
    assert an.normalize_words("Bigger!") == ["big"]
    assert an.normalize_words("The LEAVES get greyer, grey") == ["leaf", "greyer", "gray"]
    assert an.normalize_words("more smiling, smiles") == ["smile"]
    assert an.normalize_words("") == [] and an.normalize_words(None) == []
    assert an.normalize_words("the very") == []


def _descriptions() -> pd.DataFrame:
    texts = {
        0: ["bigger", "larger size", "Bigger!", "big"],
        1: ["darker colour", "dark", "Darker", "color"],
        2: ["bigger shape", "big", "size", "?!"],
    }
    rows = []
    for attr, ts in texts.items():
        for i, t in enumerate(ts):
            rows.append(_row(f"q{i}", "description", "main", "stylex", "shapes", attr, None, None, t))
    rows.append(_row("q0", "description", "practice", "stylex", "shapes", 0, None, None, "square"))
    return pd.DataFrame(rows)


def test_word_agreement_and_shared_top_words():
    table = an.word_agreement(_descriptions()).set_index("attribute")
    a0 = table.loc[0]
    assert a0["top_word"] == "big" and a0["top_count"] == 3 and a0["top_share"] == pytest.approx(0.75)
    assert a0["n_descriptions"] == 4 and not a0["shared_by_all"]
    a1 = table.loc[1]
    assert a1["top_word"] == "dark" and a1["top_share"] == pytest.approx(0.75) and not a1["shared_by_all"]
    a2 = table.loc[2]
    assert a2["n_descriptions"] == 3 and a2["n_empty"] == 1 and a2["top_word"] == "big"
    shared = an.shared_top_words(table.reset_index())
    assert shared[["attr_a", "attr_b", "word"]].values.tolist() == [[0, 2, "big"]]


def test_word_agreement_shared_by_all():
    rows = [
        _row(f"q{i}", "description", "main", "wu", "d", 0, None, None, t)
        for i, t in enumerate(["big smile", "smiling", "Smiles wider"])
    ]
    row = an.word_agreement(pd.DataFrame(rows)).iloc[0]
    assert row["shared_by_all"] and row["shared_words"] == "smile" and row["top_share"] == 1.0


def test_table2_formats_cells(acc):
    md = an.table2(acc)
    row = acc[acc["method"] == "stylex"].iloc[0]
    cell = f"{row['accuracy']:.2f} ± {row['std_over_attributes']:.3f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    assert cell in md and md.splitlines()[0] == "| Domain | stylex | wu |" and "| shapes |" in md
    assert "over participants" in an.table2(acc, over="participants")
    toy = pd.DataFrame(
        [
            {
                "method": "stylex",
                "domain": "faces",
                "accuracy": 0.96,
                "ci_low": 0.931,
                "ci_high": 0.978,
                "std_over_attributes": 0.047,
                "std_over_participants": 0.1,
            }
        ]
    )
    assert "| faces | 0.96 ± 0.047 [0.93, 0.98] |" in an.table2(toy)
    tex = an.table2_latex(toy)
    assert "±" not in tex and "\\toprule" in tex and "0.96 $\\pm$ 0.047 [0.93, 0.98]" in tex and "\\bottomrule" in tex
    with pytest.raises(UserError):
        an.table2(toy, over="items")


def test_analyze_and_write_report(tmp_path):
    responses = pd.concat([simulate(seed=11), _descriptions()], ignore_index=True)
    result = an.analyze(responses)
    json.dumps(result, allow_nan=False)  # strictly JSON: no NaN, no numpy scalars
    assert set(result["exclusions"]["excluded"]) == FAILING
    assert result["comparison"]["gee"]["terms"]["method:stylex"]["p_value"] < 0.01
    assert len(result["shared_top_words"]) == 1
    paths = an.write_report(result, tmp_path / "report")
    for name in ("analysis.md", "table2.tex", "accuracy.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "GEE" in md and "Part 2" in md and "distinctness failures): 1" in md


def test_analyze_single_method_reports_error():
    responses = simulate(seed=5)
    result = an.analyze(responses[responses["method"] == "stylex"])
    assert "at least 2 methods" in result["comparison"]["error"]
    assert len(result["accuracy"]) == 1


def _toy_accuracy() -> pd.DataFrame:
    """stylex in two domains, wu_et|al only in faces: one Table 2 cell has no trials."""
    cell = {"ci_low": 0.931, "ci_high": 0.978, "std_over_attributes": 0.047, "std_over_participants": None}
    return pd.DataFrame([{"method": "stylex", "domain": "faces", "accuracy": 0.96, **cell},
                         {"method": "wu_et|al", "domain": "faces", "accuracy": 0.70, **cell},
                         {"method": "stylex", "domain": "birds_2", "accuracy": 0.80, **cell}])


def test_table2_markdown_and_latex_come_from_one_table():
    caption = ("Accuracy (pooled over trials) ± s.d. over participants (ddof=1) [Wilson 95% CI, descriptive: trials "
               "cluster within participants and attributes]. Chance is 0.5.")
    assert an.table2(_toy_accuracy(), over="participants") == (
        "| Domain | stylex | wu_et\\|al |\n|---|---|---|\n"
        "| faces | 0.96 ± n/a [0.93, 0.98] | 0.70 ± n/a [0.93, 0.98] |\n"
        "| birds_2 | 0.80 ± n/a [0.93, 0.98] | – |\n\n" + caption + "\n")
    assert an.table2_latex(_toy_accuracy()).splitlines() == [
        r"\begin{table}[t]", r"\centering", r"\begin{tabular}{lcc}", r"\toprule", r"Domain & stylex & wu\_et|al \\",
        r"\midrule", r"faces & 0.96 $\pm$ 0.047 [0.93, 0.98] & 0.70 $\pm$ 0.047 [0.93, 0.98] \\",
        r"birds\_2 & 0.80 $\pm$ 0.047 [0.93, 0.98] & -- \\", r"\bottomrule", r"\end{tabular}",
        r"\caption{Accuracy (pooled over trials) $\pm$ s.d. over attributes (ddof=1) [Wilson 95\% CI, descriptive: "
        r"trials cluster within participants and attributes]. Chance is 0.5.}", r"\end{table}"]


def test_report_without_part1_writes_a_note(tmp_path):
    result = an.analyze(_descriptions())
    paths = an.write_report(result, tmp_path)
    assert "plot" not in paths and not (tmp_path / "accuracy.png").exists()
    assert (tmp_path / "table2.tex").read_text(encoding="utf-8") == "% no Part 1 data\n"
    md = paths["markdown"].read_text(encoding="utf-8")
    assert md.startswith("# User study analysis\n\nRows: 13. Participants kept: 4, excluded: 0 (attention share < 1.0)."
                         "\n\n## Part 2: word agreement\n\n| method | domain | attribute | n_descriptions |")
    assert md.endswith("Attribute pairs sharing a top word (distinctness failures): 1\n\n"
                       "| method | domain | attr_a | attr_b | word |\n|---|---|---|---|---|\n"
                       "| stylex | shapes | 0 | 2 | big |\n")


def test_the_analysis_imports_no_torch():
    code = ("import sys, studies.analysis; "
            "print(sorted(name for name in ('torch', 'matplotlib') if name in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"


@pytest.mark.parametrize("summary", ["plan followed: plans/p.md (SHA-256 " + "a" * 64 + ")",
                                     "no pre-registered plan found (no --plan or --materials given); this analysis "
                                     "follows no plan"])
def test_report_names_the_plan_it_followed(tmp_path, summary):
    result = an.analyze(_descriptions())
    result["plan"] = {"path": None, "summary": summary}  # what `stylex study analyze` adds (studies.plan)
    md = an.write_report(result, tmp_path)["markdown"].read_text(encoding="utf-8")
    assert f"excluded: 0 (attention share < 1.0).\n\n{summary[0].upper()}{summary[1:]}.\n\n## Part 2" in md
