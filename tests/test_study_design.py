from collections import Counter

import pytest

from studies.design import plan_trials
from stylex.errors import UserError


def items(methods=("stylex", "wu"), attributes=6, attention=2):
    rows = []
    for method in methods:
        for i in range(attributes):
            rows.append({"item_id": f"{method}-{i}", "part": 1, "kind": "main", "method": method, "domain": "shapes",
                         "attr_i": i, "attr_j": (i + 1) % attributes, "assets": [f"{method}{i}{k}" for k in "lrab"]})
            rows.append({"item_id": f"{method}-d{i}", "part": 2, "kind": "describe", "method": method,
                         "domain": "shapes", "attr_i": i, "attr_j": None,
                         "assets": [f"{method}{i}{k}" for k in "0123"]})
    for k in range(attention):
        rows.append({"item_id": f"att-{k}", "part": 1, "kind": "attention", "method": methods[k % len(methods)],
                     "domain": "shapes", "attr_i": 0, "attr_j": None, "assets": [f"att{k}{x}" for x in "lrab"]})
    key = {row["item_id"]: "AB"[n % 2] for n, row in enumerate(rows) if row["part"] == 1}
    return rows, key


def test_part1_plan_is_balanced_seeded_and_spreads_attention_checks():
    rows, key = items()
    plan = plan_trials(rows, "coherence", seed=3, answer_key=key)
    assert [t["seq"] for t in plan] == list(range(len(plan)))
    assert plan[0]["kind"] == "practice"
    kinds = [t["kind"] for t in plan]
    assert kinds.count("main") == 12 and kinds.count("attention") == 2
    positions = [n for n, kind in enumerate(kinds) if kind == "attention"]
    assert positions[0] > 1 and positions[1] - positions[0] > 1
    main_methods = [t["method"] for t in plan if t["kind"] == "main"]
    for prefix in range(2, len(main_methods) + 1, 2):  # dealt round-robin: every even prefix is balanced
        counts = Counter(main_methods[:prefix])
        assert counts["stylex"] == counts["wu"]
    assert all(t["correct_option"] == key[f"{t['method']}-{t['attr_i']}"] for t in plan if t["kind"] == "main")
    assert plan == plan_trials(rows, "coherence", seed=3, answer_key=key)
    assert plan != plan_trials(rows, "coherence", seed=4, answer_key=key)


def test_part2_plan_has_every_describe_item_and_no_key():
    rows, _ = items()
    plan = plan_trials(rows, "description", seed=1)
    assert len(plan) == 12 and all("correct_option" not in t and t["attr_j"] is None for t in plan)


def test_bad_inputs():
    rows, _ = items()
    with pytest.raises(UserError, match="answer key"):
        plan_trials(rows, "coherence", seed=0)
    with pytest.raises(UserError, match="part must be"):
        plan_trials(rows, "both", seed=0)
    with pytest.raises(UserError, match="no answer key"):
        plan_trials(rows, "coherence", seed=0, answer_key={})
