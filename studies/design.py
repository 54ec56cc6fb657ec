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

import hashlib
import json
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


RANDOM_BASELINE = "random"
"""The method key of the random-attribute baseline: in Part 3 it is what the control group learns from, when the
materials have it, rather than a group of its own (DESIGN.md section 8: the control sees none, or random ones)."""


def participant_seed(study_id: str, pid: str) -> int:
    """The seed of a participant's plan, from the study and the participant id: a reload, a second browser or a
    simulated participant with the same id gets the same plan. ``pid=""`` seeds the study's Part 3 group order."""
    return int(hashlib.sha256(f"{study_id}\0{pid}".encode()).hexdigest()[:15], 16)


def forward_material(items: Sequence[dict], answer_key: dict[str, str]) -> tuple[list[dict], dict, list[str]]:
    """(test images, learning screens by group, groups) of a study's Part 3 items (``studies.db.study_items``), the
    input of ``studies.forward.plan_forward_trials`` and ``assign_group``. Server side only: the images carry the
    classifier's decision. Groups: ``control`` first, then every method with learning screens but the random
    baseline, whose screens become the control's."""
    from studies.forward import CONTROL  # here, not at the top: studies.forward loads scipy, Parts 1-2 need none

    part3 = [item for item in items if item.get("part") == 3]
    images = [{"image": item["assets"][0], "classifier_decision": answer_key.get(item["item_id"])}
              for item in part3 if item["kind"] == "test"]
    screens: dict[str, list[dict]] = {}
    learn = sorted((item for item in part3 if item["kind"] == "learn"), key=lambda i: (i["method"], i["attr_i"]))
    for item in learn:  # in the method's ranking (attr_i is the rank)
        group = CONTROL if item["method"] == RANDOM_BASELINE else item["method"]
        screens.setdefault(group, []).append({"assets": item["assets"], "target_class": item["target_class"],
                                              "attribute": item["attr_i"]})
    if not images or not screens:
        raise UserError("the study has no Part 3 material (test images and learning screens); build it with "
                        "`stylex study build`")
    return images, screens, [CONTROL, *sorted(group for group in screens if group != CONTROL)]


def forward_trials(plan: dict) -> list[dict]:
    """The stored trials of a Part 3 plan (``studies.forward.plan_forward_trials``): the group's learning screens
    first (kind "learn", in the method's ranking order), then the test trials (kind "main", one still image each,
    with the classifier's decision as the answer key). ``method`` holds the group on every trial, so the export can
    give each response its group; ``attr_i`` keeps a learning screen's attribute when the plan names it."""
    group = plan["group"]
    trials = [{"seq": seq, "kind": "learn", "method": group, "attr_i": screen.get("attribute"),
               "assets": list(screen["assets"]), "target_class": screen["target_class"]}
              for seq, screen in enumerate(plan["learning"])]
    offset = len(trials)
    trials += [{"seq": offset + test["trial"], "kind": "main", "method": group, "assets": [test["image"]],
                "classifier_decision": test["classifier_decision"]} for test in plan["test"]]
    return trials


def forward_trial_row(participant_id: int, trial: dict, seq: int, kind: str, assets) -> dict:
    """A Part 3 trial: a learning screen (kind "learn": its GIFs and the class they push toward) or a test trial
    (kind "main": one still image and the classifier's decision, the answer key). ``method`` is the group."""
    group, target, decision = trial.get("method"), trial.get("target_class"), trial.get("classifier_decision")
    if not isinstance(group, str) or not group:
        raise UserError(f"Part 3 trial {seq} needs the participant's group as 'method'")
    if not isinstance(assets, list | tuple) or not assets or not all(isinstance(a, str) and a for a in assets):
        raise UserError(f"Part 3 trial {seq} needs a non-empty list of asset ids, got {assets!r}")
    if kind == "learn" and (not isinstance(target, str) or not target or decision is not None):
        raise UserError(f"Part 3 learning screen {seq} needs a target_class and no classifier_decision")
    if kind == "main" and (len(assets) != 1 or not isinstance(decision, str) or not decision or target is not None):
        raise UserError(f"Part 3 test trial {seq} needs one image, a classifier_decision and no target_class")
    if kind not in ("learn", "main") or trial.get("correct_option") is not None:
        raise UserError(f"Part 3 trial {seq} must be a 'learn' or 'main' trial without correct_option")
    return {"participant_id": participant_id, "seq": seq, "kind": kind, "method": group,
            "domain": trial.get("domain"), "attr_i": trial.get("attr_i"), "attr_j": None,
            "assets": json.dumps(list(assets)), "correct_option": None, "target_class": target,
            "classifier_decision": decision}
