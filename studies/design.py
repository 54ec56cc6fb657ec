"""Per-participant trial plans (pure functions; no torch, no database).

A plan is made once, when a participant consents, from the study's items (the manifest's items with the answer
key joined on from the database) and the participant's seed:
- Part 1 ("coherence"): every main item of every method, methods interleaved in a seeded order so each
  participant sees all methods equally often and no method sits at the start or the end; the attention items
  are spread over the plan (never first, never adjacent); one practice trial (a copy of an attention item's
  structure, marked 'practice', not analysed) comes first.
- Part 2 ("description"): every describe item, shuffled with the seed.
The returned dicts are what `studies.db.add_trials` stores.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from stylex.errors import UserError

PART_OF = {1: "coherence", 2: "description"}


def _trial(item: dict, seq: int, kind: str, answer_key: dict[str, str] | None) -> dict:
    trial = {"seq": seq, "kind": kind, "method": item.get("method"), "domain": item.get("domain"),
             "attr_i": item.get("attr_i"), "attr_j": item.get("attr_j"), "assets": list(item["assets"])}
    if answer_key is not None:
        if item["item_id"] not in answer_key:
            raise UserError(f"item {item['item_id']} has no answer key; load the study with the key from "
                            "`build_materials`")
        trial["correct_option"] = answer_key[item["item_id"]]
    if kind != "main":
        trial["method"] = trial["method"] if kind == "attention" else None
    return trial


def balanced_order(items: Sequence[dict], rng: random.Random) -> list[dict]:
    """Items of every method, shuffled within each method, then dealt round-robin in a seeded method order, so
    every prefix of the plan holds the methods in (nearly) equal numbers."""
    by_method: dict[str, list[dict]] = {}
    for item in items:
        by_method.setdefault(str(item.get("method")), []).append(item)
    for group in by_method.values():
        rng.shuffle(group)
    methods = sorted(by_method)
    order: list[dict] = []
    while any(by_method.values()):
        rng.shuffle(methods)
        for method in methods:
            if by_method[method]:
                order.append(by_method[method].pop())
    return order


def plan_trials(items: Sequence[dict], part: str, seed: int, answer_key: dict[str, str] | None = None,
                practice: bool = True) -> list[dict]:
    """The trial plan of one participant of `part` ('coherence' or 'description')."""
    if part not in PART_OF.values():
        raise UserError(f"part must be coherence or description, got {part!r}")
    rng = random.Random(seed)
    if part == "description":
        describe = [item for item in items if item.get("part") == 2]
        if not describe:
            raise UserError("the study has no Part 2 (describe) items")
        rng.shuffle(describe)
        return [_trial(item, seq, "main", None) for seq, item in enumerate(describe)]
    if answer_key is None:
        raise UserError("a Part 1 plan needs the answer key")
    main = [item for item in items if item.get("part") == 1 and item.get("kind") == "main"]
    attention = [item for item in items if item.get("part") == 1 and item.get("kind") == "attention"]
    if not main:
        raise UserError("the study has no Part 1 main items")
    order = balanced_order(main, rng)
    # attention checks at evenly spaced positions (never first, never adjacent to each other)
    slots = sorted({round((k + 1) * len(order) / (len(attention) + 1)) for k in range(len(attention))})
    planned: list[tuple[dict, str]] = [(item, "main") for item in order]
    for offset, (slot, item) in enumerate(zip(slots, attention, strict=False)):
        planned.insert(slot + offset, (item, "attention"))
    if practice and attention:
        planned.insert(0, (attention[0], "practice"))
    return [_trial(item, seq, kind, answer_key) for seq, (item, kind) in enumerate(planned)]
