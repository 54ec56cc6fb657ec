"""The study's operations on its database: register a study and its items, make a participant and their trial
plan, serve the next trial, record answers once, issue the completion code, log events.

Every other module and the tests reach the database through this one name: it also exports the tables
(:mod:`studies.tables`), opening the file (:mod:`studies.engines`) and getting data out (:mod:`studies.export`).

Why it looks the way it does:

* Double submissions are absorbed by the schema, not by the caller: ``response.trial_id`` is UNIQUE and answers go
  in with ``INSERT ... ON CONFLICT(trial_id) DO NOTHING``, so the first answer wins and the return value says
  whether this call stored it. A reload resumes because progress is "the lowest trial without a response".
* The Part 1 answer key (``trial.correct_option``) lives only in the database; ``next_trial`` never returns it,
  so the participant app cannot leak it into a page.
* Response times are measured on the server, ``submitted_at - shown_at``: they include network and GIF download
  time, good enough for exclusions.
* Free-text answers are stored twice: ``text_raw`` exactly as typed, ``text_norm`` as normalised by
  :mod:`studies.text` (NFKC, invisible and control characters removed or made word breaks); the analysis reads
  ``text_norm``.

The module imports no torch: the participant app must start fast and serve prebuilt files only.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from studies.design import forward_trial_row
from studies.engines import (
    BUSY_TIMEOUT_MS,
    check_database_file,
    check_schema,
    create_schema,
    database_path,
    dispose_engines,
    get_engine,
    make_engine,
    open_readonly,
    session_scope,
    upgrade_schema,
)
from studies.export import FORMULA_PREFIXES, RESPONSE_COLUMNS, backup, csv_safe, export_frames, forward_responses
from studies.tables import (
    MAX_PID_CHARS,
    OPTIONS,
    PARTS,
    SCHEMA_VERSION,
    SCREEN_OUT_REASONS,
    STATUSES,
    TRIAL_KINDS,
    Asset,
    Base,
    Event,
    Participant,
    Response,
    SchemaVersion,
    Study,
    StudyItem,
    Trial,
    utcnow,
)
from studies.text import normalize_text
from stylex.errors import UserError

__all__ = [
    "ASSETS_PER_TRIAL", "BUSY_TIMEOUT_MS", "FORMULA_PREFIXES", "ITEM_KINDS", "MAX_PID_CHARS", "MAX_TEXT_CHARS",
    "OPTIONS", "PARTS", "RESPONSE_COLUMNS", "SCHEMA_VERSION", "SCREEN_OUT_REASONS", "STATUSES", "TRIAL_KINDS",
    "Asset", "Base", "Event", "Participant", "Response", "SchemaVersion", "Study", "StudyItem", "Trial", "add_items",
    "add_study", "add_trials", "attention_failures", "awaits_comprehension", "backup", "bind_session",
    "check_database_file", "check_schema", "count_trials", "create_schema", "csv_safe", "database_path",
    "dispose_engines", "export_frames", "find_participant", "finish", "forward_classes", "forward_index",
    "forward_responses", "get_engine", "get_or_create_participant", "get_participant", "is_answered", "log_event",
    "make_engine", "mark_shown", "next_trial", "open_readonly", "record_choice", "record_comprehension",
    "record_description", "record_prediction", "release_session", "response_correct", "screen_out_on_attention",
    "session_matches", "session_scope", "study_exists", "study_items", "upgrade_schema", "utcnow",
]

ASSETS_PER_TRIAL = 4
MAX_TEXT_CHARS = 200


def add_study(engine: Engine, study_id: str, name: str, manifest_sha256: str, assets: list[dict]) -> bool:
    """Register a study and its assets; True if this call created it.

    Re-running with the same manifest is a no-op, so the materials builder can be re-run safely. A different
    manifest for an existing study id is refused: trials already served point at the old assets."""
    rows = [_asset_row(study_id, asset) for asset in assets]
    with session_scope(engine) as session:
        existing = session.get(Study, study_id)
        if existing is not None:
            if existing.manifest_sha256 != manifest_sha256:
                raise UserError(f"study {study_id!r} already exists with manifest {existing.manifest_sha256}, "
                                f"not {manifest_sha256}; use a new study id for new materials")
            return False
        session.add(Study(id=study_id, name=name, created_at=utcnow(), manifest_sha256=manifest_sha256))
        session.flush()
        if rows:
            session.execute(sqlite_insert(Asset).values(rows)
                            .on_conflict_do_nothing(index_elements=["asset_id", "study_id"]))
        return True


_ASSET_REQUIRED = ("asset_id", "sha256", "relpath")
_ASSET_OPTIONAL = ("method", "domain", "attr_rank", "role")


def _asset_row(study_id: str, asset: dict) -> dict:
    missing = [key for key in _ASSET_REQUIRED if not asset.get(key)]
    unknown = sorted(set(asset) - set(_ASSET_REQUIRED) - set(_ASSET_OPTIONAL))
    if missing or unknown:
        raise UserError(f"bad asset record {asset!r}: missing {missing}, unknown keys {unknown}")
    return {"study_id": study_id, **{key: asset.get(key) for key in (*_ASSET_REQUIRED, *_ASSET_OPTIONAL)}}


def get_or_create_participant(engine: Engine, study_id: str, external_pid: str, part: str, seed: int) -> int:
    """The participant id for ``external_pid`` in this study, created (status 'consented') on first call.

    Called when consent is given; a returning id gets its existing row back unchanged (its part and seed are kept,
    so the plan is stable, even when the link of a later visit names the other part)."""
    if part not in PARTS:
        raise UserError(f"part must be one of {PARTS}, got {part!r}")
    if not isinstance(external_pid, str) or not external_pid.strip() or len(external_pid) > MAX_PID_CHARS \
            or not external_pid.isprintable():
        raise UserError(f"invalid participant id {external_pid!r}")
    with session_scope(engine) as session:
        if session.get(Study, study_id) is None:
            raise UserError(f"unknown study {study_id!r}; build the materials and register the study first")
        session.execute(
            sqlite_insert(Participant)
            .values(study_id=study_id, external_pid=external_pid, part=part, status="consented", seed=int(seed),
                    consent_at=utcnow())
            .on_conflict_do_nothing(index_elements=["study_id", "external_pid"])
        )
        return session.execute(
            select(Participant.id).where(Participant.study_id == study_id, Participant.external_pid == external_pid)
        ).scalar_one()


def forward_index(engine: Engine, participant_id: int) -> int:
    """The arrival order of a Part 3 participant in its study (0, 1, ...; ``forward.assign_group``'s input): how
    many Part 3 participants of the study have a smaller id. Ids are unique, so concurrent arrivals never share one."""
    with session_scope(engine) as session:
        me = session.get(Participant, participant_id)
        return session.execute(select(func.count(Participant.id)).where(
            Participant.study_id == me.study_id, Participant.part == "forward", Participant.id < me.id)).scalar()


def get_participant(engine: Engine, participant_id: int) -> dict | None:
    """The participant's row as a dict (the app routes on ``status``), or None if unknown."""
    with session_scope(engine) as session:
        row = session.get(Participant, participant_id)
        return None if row is None else {c.key: getattr(row, c.key) for c in Participant.__table__.columns}


def add_trials(engine: Engine, participant_id: int, trials: list[dict]) -> bool:
    """Store the participant's whole trial plan; True if this call stored it, False if a plan already existed.

    A plan is created once, at consent: a reload or a second tab must not reshuffle trials. The check and the
    insert share one IMMEDIATE transaction, so two concurrent calls cannot both insert; UNIQUE(participant_id, seq)
    is the backstop."""
    with session_scope(engine) as session:
        participant = session.get(Participant, participant_id)
        if participant is None:
            raise UserError(f"unknown participant {participant_id}")
        has_plan = session.execute(select(Trial.id).where(Trial.participant_id == participant_id).limit(1)).first()
        if has_plan is not None:
            return False
        rows = [_trial_row(participant, trial) for trial in trials]
        seqs = [row["seq"] for row in rows]
        if len(set(seqs)) != len(seqs):
            raise UserError(f"trial plan for participant {participant_id} repeats seq numbers")
        used = {asset_id for row in rows for asset_id in json.loads(row["assets"])}
        known = set(session.execute(select(Asset.asset_id).where(Asset.study_id == participant.study_id,
                                                                 Asset.asset_id.in_(used))).scalars())
        if used - known:
            raise UserError(f"trial plan uses assets not registered for study {participant.study_id!r}: "
                            f"{sorted(used - known)[:5]}")
        if rows:
            session.execute(sqlite_insert(Trial).values(rows))
        return True


def _trial_row(participant: Participant, trial: dict) -> dict:
    """Validate one planned trial against the participant's part and return its column values."""
    allowed = {"seq", "kind", "method", "domain", "attr_i", "attr_j", "assets", "correct_option", "target_class",
               "classifier_decision"}
    unknown = sorted(set(trial) - allowed)
    if unknown:
        raise UserError(f"unknown trial keys {unknown} in {trial!r}")
    seq, kind, assets = trial.get("seq"), trial.get("kind", "main"), trial.get("assets")
    correct = trial.get("correct_option")
    if not isinstance(seq, int) or seq < 0:
        raise UserError(f"trial seq must be a non-negative int, got {seq!r}")
    if kind not in TRIAL_KINDS:
        raise UserError(f"trial kind must be one of {TRIAL_KINDS}, got {kind!r}")
    if participant.part == "forward":
        return forward_trial_row(participant.id, trial, seq, kind, assets)
    if kind == "learn" or trial.get("target_class") is not None or trial.get("classifier_decision") is not None:
        raise UserError(f"trial {seq}: learning screens and classifier decisions belong to Part 3 only")
    if not isinstance(assets, list | tuple) or len(assets) != ASSETS_PER_TRIAL \
            or not all(isinstance(a, str) and a for a in assets):
        raise UserError(f"trial {seq} needs a list of {ASSETS_PER_TRIAL} asset ids, got {assets!r}")
    if participant.part == "coherence" and correct not in OPTIONS:
        raise UserError(f"Part 1 trial {seq} needs correct_option in {OPTIONS}, got {correct!r}")
    if participant.part == "description" and (correct is not None or trial.get("attr_j") is not None):
        raise UserError(f"Part 2 trial {seq} has no answer key and no second attribute")
    if kind == "main" and (not trial.get("method") or not trial.get("domain") or trial.get("attr_i") is None):
        raise UserError(f"main trial {seq} needs method, domain and attr_i")
    return {"participant_id": participant.id, "seq": seq, "kind": kind, "method": trial.get("method"),
            "domain": trial.get("domain"), "attr_i": trial.get("attr_i"), "attr_j": trial.get("attr_j"),
            "assets": json.dumps(list(assets)), "correct_option": correct}


def forward_classes(engine: Engine, participant_id: int) -> list[str]:
    """The classes a Part 3 participant chooses between (the buttons of a test trial), sorted. They are the values
    of the answer key, but not which trial has which, so showing them leaks nothing."""
    with session_scope(engine) as session:
        return sorted(session.execute(
            select(Trial.classifier_decision).distinct()
            .where(Trial.participant_id == participant_id, Trial.classifier_decision.is_not(None))).scalars())


def next_trial(engine: Engine, participant_id: int) -> dict | None:
    """The lowest-seq trial without a response, or None when the plan is done (or was never made).

    Returns only what the page needs: ids, kind, asset ids in display order and progress counts. The answer key and
    the condition (method, attributes) stay in the database so the participant app cannot leak them."""
    answered = select(Response.trial_id)
    with session_scope(engine) as session:
        trial = session.execute(
            select(Trial).where(Trial.participant_id == participant_id, Trial.id.not_in(answered))
            .order_by(Trial.seq).limit(1)
        ).scalar_one_or_none()
        if trial is None:
            return None
        n_total = session.execute(select(func.count(Trial.id)).where(Trial.participant_id == participant_id)).scalar()
        n_done = session.execute(select(func.count(Response.id)).join(Trial, Trial.id == Response.trial_id)
                                 .where(Trial.participant_id == participant_id)).scalar()
        return {"trial_id": trial.id, "participant_id": participant_id, "seq": trial.seq, "kind": trial.kind,
                "assets": json.loads(trial.assets), "shown_at": trial.shown_at, "n_done": n_done, "n_total": n_total,
                "target_class": trial.target_class}  # a learning screen's label; classifier_decision stays here


def mark_shown(engine: Engine, trial_id: int) -> bool:
    """Record the first time a trial was rendered (later renders keep it, so rt_ms spans the whole first view);
    True if this call set it. The first shown trial also moves a 'consented' participant to 'in_progress'."""
    now = utcnow()
    with session_scope(engine) as session:
        result = session.execute(
            update(Trial).where(Trial.id == trial_id, Trial.shown_at.is_(None)).values(shown_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return False
        session.execute(
            update(Participant)
            .where(Participant.id == select(Trial.participant_id).where(Trial.id == trial_id).scalar_subquery(),
                   Participant.status == "consented")
            .values(status="in_progress", started_at=now)
            .execution_options(synchronize_session=False)
        )
        return True


def record_choice(engine: Engine, trial_id: int, choice: str) -> bool:
    """Store a Part 1 answer; True if this call stored it, False if the trial already had one (double submit)."""
    if choice not in OPTIONS:
        raise UserError(f"choice must be one of {OPTIONS}, got {choice!r}")
    return _record(engine, trial_id, "coherence", {"choice": choice})


def record_description(engine: Engine, trial_id: int, text_raw: str, text_norm: str | None = None) -> bool:
    """Store a Part 2 description, raw as typed and normalised by :func:`studies.text.normalize_text`; True if this
    call stored it.

    The normalised text is computed here, so every writer stores the same normalisation; ``text_norm``, when given,
    must equal it. Refused: raw text that is not a string of 1 to ``MAX_TEXT_CHARS`` characters, and text without a
    letter once normalised (empty, only invisible or control characters, ``=1+1``). The word limit is the app's."""
    if not isinstance(text_raw, str) or not text_raw or len(text_raw) > MAX_TEXT_CHARS:
        raise UserError(f"description must be non-empty text of at most {MAX_TEXT_CHARS} characters")
    norm = normalize_text(text_raw)
    if not any(ch.isalpha() for ch in norm) or len(norm) > MAX_TEXT_CHARS:
        raise UserError(f"description {text_raw!r} has no letters once normalised ({norm!r}) or is too long")
    if text_norm is not None and text_norm != norm:
        raise UserError(f"text_norm {text_norm!r} is not the normalised form of {text_raw!r} ({norm!r}); "
                        "leave it out to have it computed")
    return _record(engine, trial_id, "description", {"text_raw": text_raw, "text_norm": norm})


def record_prediction(engine: Engine, trial_id: int, prediction: str | None) -> bool:
    """Store a Part 3 answer once: the predicted class of a test trial, or None to acknowledge a learning screen
    ("Continue"); True if this call stored it. A prediction must be one of the participant's classes."""
    with session_scope(engine) as session:
        row = session.execute(select(Trial.kind, Trial.participant_id).where(Trial.id == trial_id)).first()
    if row is None:
        raise UserError(f"unknown trial {trial_id}")
    if (row.kind == "learn") != (prediction is None):
        raise UserError(f"trial {trial_id} is a {row.kind!r} trial: a test trial needs a prediction, a learning "
                        "screen none")
    if prediction is not None and prediction not in forward_classes(engine, row.participant_id):
        raise UserError(f"prediction {prediction!r} is not one of the classes of trial {trial_id}")
    return _record(engine, trial_id, "forward", {"prediction": prediction})


def _record(engine: Engine, trial_id: int, part: str, values: dict) -> bool:
    """Insert a response once. The dedup is the UNIQUE(trial_id) conflict clause, never a read-then-write; the
    read of shown_at only computes the server-side response time."""
    with session_scope(engine) as session:
        row = session.execute(
            select(Trial.shown_at, Participant.part).join(Participant, Participant.id == Trial.participant_id)
            .where(Trial.id == trial_id)
        ).first()
        if row is None:
            raise UserError(f"unknown trial {trial_id}")
        if row.part != part:
            raise UserError(f"trial {trial_id} belongs to the {row.part!r} part, not {part!r}")
        now = utcnow()
        rt_ms = None if row.shown_at is None else max(0, round((now - row.shown_at).total_seconds() * 1000))
        result = session.execute(
            sqlite_insert(Response).values(trial_id=trial_id, submitted_at=now, rt_ms=rt_ms, **values)
            .on_conflict_do_nothing(index_elements=["trial_id"])
        )
        return result.rowcount == 1


def finish(engine: Engine, participant_id: int, code_factory: Callable[[], str]) -> str:
    """Issue the completion code exactly once and return it; later calls return the stored code. The call that
    issues it logs the 'completed' event in the same transaction, so the audit log has one per participant.

    Refused while trials are unanswered, so a code always means a full run."""
    with session_scope(engine) as session:
        participant = session.get(Participant, participant_id)
        if participant is None:
            raise UserError(f"unknown participant {participant_id}")
        if participant.completion_code is not None:
            return participant.completion_code
        if participant.status == "screened_out":
            raise UserError(f"participant {participant_id} was screened out; no completion code")
        open_trials = session.execute(
            select(func.count(Trial.id)).where(Trial.participant_id == participant_id,
                                               Trial.id.not_in(select(Response.trial_id)))
        ).scalar()
        if open_trials:
            raise UserError(f"participant {participant_id} still has {open_trials} unanswered trials")
        code = code_factory()
        if not isinstance(code, str) or not code:
            raise UserError(f"completion code factory returned {code!r}")
        participant.completion_code = code
        participant.status = "completed"
        participant.completed_at = utcnow()
        _add_event(session, "completed", participant_id)
        return code


def awaits_comprehension(participant: dict, trial: dict | None) -> bool:
    """Whether the app shows the instructions and the comprehension check before ``trial`` (``next_trial``'s): the
    plan's first screen, not shown yet, and the check not passed. A participant whose first screen was already shown
    (one from before the check existed) goes on with the trials."""
    return (trial is not None and trial["n_done"] == 0 and trial["shown_at"] is None
            and participant["comprehension_passed_at"] is None)


def log_event(engine: Engine, kind: str, participant_id: int | None = None, detail: dict | None = None) -> None:
    """Append to the audit log; ``detail`` is stored as JSON (non-JSON values via str)."""
    with session_scope(engine) as session:
        _add_event(session, kind, participant_id, detail)


def _add_event(session: Session, kind: str, participant_id: int | None, detail: dict | None = None) -> None:
    """An event in the caller's transaction, so a state change and its audit row commit together or not at all."""
    session.add(Event(participant_id=participant_id, ts=utcnow(), kind=kind,
                      detail=None if detail is None else json.dumps(detail, sort_keys=True, default=str)))


ITEM_KINDS = ("main", "attention", "describe", "learn", "test")


def add_items(engine: Engine, study_id: str, items: list[dict], answer_key: dict[str, str]) -> int:
    """Store the study's items with their answer key; returns how many rows this call inserted (0 on a re-run).

    Part 1 items (main and attention) need a key in ``OPTIONS``; Part 2 items have none. Part 3 items are learning
    screens ("learn": the GIFs of one attribute, ``method`` and the ``target_class`` they push toward) and test
    images ("test": one still, its key the classifier's decision). Every asset must be registered for the study."""
    rows = []
    for item in items:
        item_id, part, kind, assets = item.get("item_id"), item.get("part"), item.get("kind"), item.get("assets")
        if not isinstance(item_id, str) or not item_id or part not in (1, 2, 3) or kind not in ITEM_KINDS:
            raise UserError(f"bad study item {item!r}: needs item_id, part 1|2|3 and kind in {ITEM_KINDS}")
        size = {"learn": len(assets or ()) or 1, "test": 1}.get(kind, ASSETS_PER_TRIAL)
        if not isinstance(assets, list | tuple) or len(assets) != size:
            raise UserError(f"item {item_id} needs {size} asset ids, got {assets!r}")
        correct = answer_key.get(item_id) if part in (1, 3) and kind != "learn" else None
        if (part == 1 and correct not in OPTIONS) or (part == 3 and (kind == "test") != bool(correct)) \
                or (kind == "learn") != bool(item.get("target_class")) or (part == 3) != (kind in ("learn", "test")):
            raise UserError(f"item {item_id}: a Part 1 item needs a key in {OPTIONS}, a Part 3 test image its "
                            f"classifier decision, a Part 3 learning screen a target_class (key {correct!r})")
        rows.append({"item_id": item_id, "study_id": study_id, "part": part, "kind": kind,
                     "method": item.get("method"), "domain": item.get("domain"), "attr_i": item.get("attr_i"),
                     "attr_j": item.get("attr_j"), "assets": json.dumps(list(assets)),
                     "correct_option": correct if part == 1 else None, "target_class": item.get("target_class"),
                     "classifier_decision": correct if part == 3 else None})
    with session_scope(engine) as session:
        if session.get(Study, study_id) is None:
            raise UserError(f"unknown study {study_id!r}; register it (add_study) before its items")
        used = {a for row in rows for a in json.loads(row["assets"])}
        known = set(session.execute(select(Asset.asset_id).where(Asset.study_id == study_id,
                                                                 Asset.asset_id.in_(used))).scalars())
        if used - known:
            raise UserError(f"items use assets not registered for study {study_id!r}: {sorted(used - known)[:5]}")
        if not rows:
            return 0
        result = session.execute(sqlite_insert(StudyItem).values(rows)
                                 .on_conflict_do_nothing(index_elements=["item_id", "study_id"]))
        return max(result.rowcount, 0)


def study_items(engine: Engine, study_id: str) -> tuple[list[dict], dict[str, str]]:
    """(items without their answer key, {item_id: correct option}) for ``design.plan_trials``; server side only."""
    with session_scope(engine) as session:
        rows = session.execute(select(StudyItem).where(StudyItem.study_id == study_id)
                               .order_by(StudyItem.item_id)).scalars().all()
        items = [{"item_id": r.item_id, "part": r.part, "kind": r.kind, "method": r.method, "domain": r.domain,
                  "attr_i": r.attr_i, "attr_j": r.attr_j, "assets": json.loads(r.assets),
                  "target_class": r.target_class} for r in rows]
        key = {r.item_id: r.correct_option or r.classifier_decision for r in rows
               if (r.correct_option or r.classifier_decision) is not None}  # Part 3: the classifier's decision
        return items, key


def find_participant(engine: Engine, study_id: str, external_pid: str) -> dict | None:
    """The participant row for ``external_pid`` in this study, or None before consent."""
    with session_scope(engine) as session:
        row = session.execute(select(Participant).where(Participant.study_id == study_id,
                                                        Participant.external_pid == external_pid)).scalar_one_or_none()
        return None if row is None else {c.key: getattr(row, c.key) for c in Participant.__table__.columns}


def study_exists(engine: Engine, study_id: str) -> bool:
    with session_scope(engine) as session:
        return session.get(Study, study_id) is not None


def count_trials(engine: Engine, participant_id: int) -> int:
    """How many trials the participant's plan has (0: no plan was made)."""
    with session_scope(engine) as session:
        return session.execute(select(func.count(Trial.id)).where(Trial.participant_id == participant_id)).scalar()


def is_answered(engine: Engine, trial_id: int) -> bool:
    """Whether the trial already has a response (the app uses it to tell a participant that a late or repeated
    submit was not counted again; the UNIQUE constraint, not this check, is what prevents duplicates)."""
    with session_scope(engine) as session:
        return session.execute(select(Response.id).where(Response.trial_id == trial_id)).first() is not None


def response_correct(engine: Engine, trial_id: int) -> bool | None:
    """Whether the stored answer of a Part 1 trial matches its key (None without an answer or a key); server side,
    used for practice feedback."""
    with session_scope(engine) as session:
        row = session.execute(select(Trial.correct_option, Response.choice)
                              .join(Response, Response.trial_id == Trial.id).where(Trial.id == trial_id)).first()
        if row is None or row.correct_option is None or row.choice is None:
            return None
        return row.choice == row.correct_option



# ------------------------------------------------------------------------ sessions, comprehension check, screening


def _same_secret(given: str | None, stored: str | None) -> bool:
    return given is not None and stored is not None and hmac.compare_digest(given.encode(), stored.encode())


def session_matches(participant: dict, token: str | None, platform_session_id: str | None) -> bool:
    """Whether a visit with the app's URL ``token`` and the platform's ``platform_session_id`` (Prolific's SESSION_ID,
    None when the link has none) is the browser session ``participant`` is bound to: either one matching is enough,
    so a participant who reopens the study from Prolific in a new tab keeps going. An unbound participant (never
    bound, or released) matches no visit: :func:`bind_session` binds it."""
    return _same_secret(token, participant.get("session_token")) or _same_secret(
        platform_session_id, participant.get("platform_session_id"))


def bind_session(engine: Engine, participant_id: int, token: str, platform_session_id: str | None = None) -> bool:
    """Bind an unbound participant to this visit (logged as 'session_bound'), or check the visit against the
    binding; True if the visit may see the participant's screens.

    Check and bind share one IMMEDIATE transaction, so of two browsers racing for an unbound id exactly one wins."""
    if not isinstance(token, str) or not token:
        raise UserError(f"binding participant {participant_id} needs a session token, got {token!r}")
    with session_scope(engine) as session:
        participant = session.get(Participant, participant_id)
        if participant is None:
            raise UserError(f"unknown participant {participant_id}")
        if participant.session_token is None:
            participant.session_token, participant.platform_session_id = token, platform_session_id
            _add_event(session, "session_bound", participant_id, {"platform_session_id": platform_session_id})
            return True
        return session_matches({"session_token": participant.session_token,
                                "platform_session_id": participant.platform_session_id}, token, platform_session_id)


def release_session(engine: Engine, study_id: str, external_pid: str) -> bool:
    """Forget the browser session ``external_pid`` is bound to, so that the next browser opening its link binds it
    and continues (a participant who lost their browser); True if it was bound. Logged as 'session_released' with
    the platform session id it had (the token is a credential and is not logged)."""
    with session_scope(engine) as session:
        if session.get(Study, study_id) is None:
            raise UserError(f"unknown study {study_id!r}")
        participant = session.execute(select(Participant).where(
            Participant.study_id == study_id, Participant.external_pid == external_pid)).scalar_one_or_none()
        if participant is None:
            raise UserError(f"no participant {external_pid!r} in study {study_id!r} (ids are case-sensitive)")
        if participant.session_token is None:
            return False
        _add_event(session, "session_released", participant.id,
                   {"platform_session_id": participant.platform_session_id})
        participant.session_token = participant.platform_session_id = None
        return True


def _screen_out(session: Session, participant: Participant, reason: str, detail: dict) -> None:
    if reason not in SCREEN_OUT_REASONS:
        raise UserError(f"screen-out reason must be one of {SCREEN_OUT_REASONS}, got {reason!r}")
    participant.status = "screened_out"
    _add_event(session, "screened_out", participant.id, {"reason": reason, **detail})


def record_comprehension(engine: Engine, participant_id: int, attempt: int, wrong: Sequence[str],
                         max_failures: int | None) -> str:
    """Store attempt number ``attempt`` (1, 2, ...) at the comprehension check; ``wrong`` holds the ids of the
    questions answered wrongly (empty: passed). Returns what happened:

    * "passed": ``comprehension_passed_at`` is set;
    * "failed": logged as 'comprehension_failed' ({"try": attempt, "wrong": [...]});
    * "screened_out": failed, and this was failure number ``max_failures`` (None: never screen out), so the
      participant is screened out ('screened_out' event with reason "comprehension");
    * "stale": nothing stored, because the participant is not at this attempt (a double submit or an old form
      submitting again, or a participant who passed, finished or was screened out meanwhile).

    Every attempt before a pass is a failure, so ``comprehension_tries`` is also the number of failures until then."""
    with session_scope(engine) as session:
        participant = session.get(Participant, participant_id)
        if participant is None:
            raise UserError(f"unknown participant {participant_id}")
        if (participant.status in ("completed", "screened_out") or participant.comprehension_passed_at is not None
                or participant.comprehension_tries != attempt - 1):
            return "stale"
        participant.comprehension_tries = attempt
        if not wrong:
            participant.comprehension_passed_at = utcnow()
            return "passed"
        _add_event(session, "comprehension_failed", participant_id, {"try": attempt, "wrong": list(wrong)})
        if max_failures is not None and attempt >= max_failures:
            _screen_out(session, participant, "comprehension", {"failures": attempt})
            return "screened_out"
        return "failed"


def _attention_failures(session: Session, participant_id: int) -> int:
    return session.execute(
        select(func.count(Trial.id)).join(Response, Response.trial_id == Trial.id)
        .where(Trial.participant_id == participant_id, Trial.kind == "attention",
               Response.choice.is_not(None), Response.choice != Trial.correct_option)
    ).scalar()


def attention_failures(engine: Engine, participant_id: int) -> int:
    """How many attention trials the participant answered wrongly (practice trials do not count)."""
    with session_scope(engine) as session:
        return _attention_failures(session, participant_id)


def screen_out_on_attention(engine: Engine, participant_id: int, max_failures: int) -> bool:
    """Screen the participant out ('screened_out' event with reason "attention") once ``max_failures`` attention
    trials are answered wrongly; True if this call did. Count and status change share one transaction, so a
    double submit cannot screen out twice."""
    if not isinstance(max_failures, int) or max_failures < 1:
        raise UserError(f"max_failures must be a positive int, got {max_failures!r}")
    with session_scope(engine) as session:
        participant = session.get(Participant, participant_id)
        if participant is None:
            raise UserError(f"unknown participant {participant_id}")
        if participant.status not in ("consented", "in_progress"):
            return False
        failures = _attention_failures(session, participant_id)
        if failures < max_failures:
            return False
        _screen_out(session, participant, "attention", {"failures": failures})
        return True
