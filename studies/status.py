"""`stylex study status`: where a running study stands, read from its database (DESIGN.md section 8).

What an operator needs while participants come in: how many started, finished or were screened out in each part
and for each method; whether the methods stay balanced among completed plans (main trials per method, and the
fewest judgements any attribute has so far); for Part 3 (forward simulation), the same per between-subject group
(control or a method, assigned by arrival order) and whether the groups stay balanced among completed
participants; how many attention and comprehension checks failed; and how long the screens take (medians, from
what the database stores: ``trial.shown_at`` and the response's ``rt_ms``, the participant's ``consent_at`` and
``completed_at``).

Counting (:func:`count_status`) is a pure function of three frames, so it is tested on its own; reading
(:func:`read_status`) is one read-only transaction on the database; formatting (:func:`format_status`) turns the
result into plain-text tables for a terminal.

Why it reads the way it does:

* ``participants.comprehension_tries`` (attempts at the comprehension check, the passing one included) came with
  schema version 2, so the reader asks SQLite which columns the file has and selects the column only when it is
  there (a version-1 file read through an engine that does not check the version shows "n/a"), instead of
  selecting the ORM table, which would fail on such a file.
* Failures come from the audit log: one ``comprehension_failed`` event per failed try and one ``screened_out``
  event with ``{"reason": "attention" | "comprehension"}`` per screening; attention-check failures are also counted
  from the answers themselves (wrong answers to ``kind == 'attention'`` trials), which needs no event.
* Screens are timed on the server (``rt_ms`` = submit - first render), so the medians include network and GIF
  download time: good for spotting a screen that takes too long or participants who click through, not for
  psychophysics.

Imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import Engine, inspect, literal_column, select

from studies.tables import PARTS, SCREEN_OUT_REASONS, STATUSES, Event, Participant, Response, Trial
from stylex.errors import UserError

COMPREHENSION_FAILED = "comprehension_failed"
SCREENED_OUT = "screened_out"

PARTICIPANT_COLUMNS = ["participant_id", "part", "status", "consent_at", "completed_at", "comprehension_tries"]
TRIAL_COLUMNS = ["trial_id", "participant_id", "kind", "method", "domain", "attr_i", "shown_at", "correct_option",
                 "choice", "rt_ms", "submitted_at"]
EVENT_COLUMNS = ["participant_id", "kind", "reason"]

#: Screens timed per participant rather than per trial: consent until the first trial (instructions and the
#: comprehension check), and consent until the completion code.
INSTRUCTIONS_SCREEN = "instructions (consent to first trial)"
SESSION_SCREEN = "whole session (completed)"
#: Part 3's screens: the group's learning screens (kind "learn", answered with Continue) and its test trials.
LEARNING_SCREEN = "learning screen"
TEST_SCREEN = "test trial"
FORWARD = "forward"

GROUP_COLUMNS = ["group", "participants", "started", "completed", "screened_out", "learning_answered", "tests_shown",
                 "tests_answered"]
GROUP_BALANCE_COLUMNS = ["group", "participants", "share", "tests", "min_per_participant", "max_per_participant"]


@dataclass(frozen=True)
class StudyStatus:
    """Where one study stands. Every frame has one row per part (and method) in a fixed order, zeros included, so
    an empty part shows as zeros rather than disappearing.

    * ``participants`` (per part): ``participants`` (everyone who consented), ``started`` (was shown at least one
      trial), then one column per participant status (``tables.STATUSES``; ``consented`` = has not been shown a
      trial yet).
    * ``methods`` (per part and method, main trials of Parts 1-2): participants who ``started`` (were shown a trial
      of the method), ``completed`` and ``screened_out`` among them, ``trials_shown`` and ``trials_answered``.
    * ``balance`` (per part and method of Parts 1-2, answered main trials of *completed* participants):
      ``participants``, ``trials``, ``share`` of the part's trials, ``min_per_participant`` /
      ``max_per_participant``, ``attributes`` (distinct domain x attribute) and ``fewest_per_attribute``
      (judgements of the least-seen one).
    * ``groups`` (per Part 3 group, control first; ``GROUP_COLUMNS``): ``participants`` (consented and given a
      plan of the group: the group is fixed at consent), ``started`` (shown a screen), ``completed`` and
      ``screened_out`` among the participants (a Part 3 participant is screened out by the comprehension check,
      before any screen), ``learning_answered`` (learning screens acknowledged), ``tests_shown`` and
      ``tests_answered`` (test trials).
    * ``group_balance`` (per Part 3 group, *completed* participants; ``GROUP_BALANCE_COLUMNS``): ``participants``,
      their ``share`` of the completed Part 3 participants, ``tests`` (answered test trials) and
      ``min_per_participant`` / ``max_per_participant``.
    * ``failures`` (per part): attention checks answered and failed, participants with a failed check, failed
      comprehension tries and the participants behind them, ``comprehension_tries`` (the sum of
      ``participants.comprehension_tries``: attempts, passing ones included; <NA> when no participant has a value,
      as in a database that predates that column), and screenings by reason
      (``screened_out_without_reason``: status screened_out with no ``screened_out`` event naming a reason).
    * ``timing`` (per part and screen): ``n`` and ``median_seconds`` of answered practice, main and attention
      trials (Part 3: learning screens and test trials), of the instructions (consent to first trial shown) and of
      whole completed sessions.
    """

    study_id: str
    participants: pd.DataFrame
    methods: pd.DataFrame
    balance: pd.DataFrame
    failures: pd.DataFrame
    timing: pd.DataFrame
    groups: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=GROUP_COLUMNS))
    group_balance: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=GROUP_BALANCE_COLUMNS))
    read_at: datetime | None = None
    database: str | None = None


# ---------------------------------------------------------------------------------------------------- counting


def _distinct(frame: pd.DataFrame, mask: pd.Series) -> int:
    return int(frame.loc[mask, "participant_id"].nunique())


def _participant_counts(participants: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    statuses = [*STATUSES, *sorted(set(participants["status"]) - set(STATUSES))]  # a new status still shows
    seen = set(trials.loc[trials["shown_at"].notna(), "participant_id"])
    rows = []
    for part in PARTS:
        mine = participants[participants["part"] == part]
        row = {"part": part, "participants": len(mine), "started": int(mine["participant_id"].isin(seen).sum())}
        row.update({status: int((mine["status"] == status).sum()) for status in statuses})
        rows.append(row)
    return pd.DataFrame(rows, columns=["part", "participants", "started", *statuses])


def _method_counts(main: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (part, method), group in main.groupby(["part", "method"], sort=True):
        shown = group["shown_at"].notna()
        started = set(group.loc[shown, "participant_id"])
        status_of = group.drop_duplicates("participant_id").set_index("participant_id")["status"]
        rows.append({"part": part, "method": method, "started": len(started),
                     "completed": int(sum(status_of[p] == "completed" for p in started)),
                     "screened_out": int(sum(status_of[p] == "screened_out" for p in started)),
                     "trials_shown": int(shown.sum()), "trials_answered": int(group["answered"].sum())})
    return pd.DataFrame(rows, columns=["part", "method", "started", "completed", "screened_out", "trials_shown",
                                       "trials_answered"])


def _balance(main: pd.DataFrame) -> pd.DataFrame:
    done = main[(main["status"] == "completed") & main["answered"]]
    part_totals = done.groupby("part").size()
    rows = []
    for (part, method), group in done.groupby(["part", "method"], sort=True):
        per_participant = group.groupby("participant_id").size()
        per_attribute = group.groupby(["domain", "attr_i"], dropna=False).size()
        rows.append({"part": part, "method": method, "participants": len(per_participant), "trials": len(group),
                     "share": len(group) / int(part_totals[part]),
                     "min_per_participant": int(per_participant.min()),
                     "max_per_participant": int(per_participant.max()),
                     "attributes": len(per_attribute), "fewest_per_attribute": int(per_attribute.min())})
    return pd.DataFrame(rows, columns=["part", "method", "participants", "trials", "share", "min_per_participant",
                                       "max_per_participant", "attributes", "fewest_per_attribute"])


def _group_order(groups) -> list[str]:
    from studies.forward import CONTROL  # here: studies.forward loads scipy, which Parts 1-2 do not need

    groups = set(groups)
    return [*([CONTROL] if CONTROL in groups else []), *sorted(groups - {CONTROL})]


def _group_counts(forward: pd.DataFrame) -> pd.DataFrame:
    """Part 3 per group; ``forward`` holds the trials of Part 3 participants (``method`` is the group)."""
    rows = []
    for group in _group_order(forward["method"].dropna()):
        mine = forward[forward["method"] == group]
        status_of = mine.drop_duplicates("participant_id").set_index("participant_id")["status"]
        learn, test = mine[mine["kind"] == "learn"], mine[mine["kind"] == "main"]
        rows.append({"group": group, "participants": len(status_of),
                     "started": int(mine.loc[mine["shown_at"].notna(), "participant_id"].nunique()),
                     "completed": int((status_of == "completed").sum()),
                     "screened_out": int((status_of == "screened_out").sum()),
                     "learning_answered": int(learn["answered"].sum()),
                     "tests_shown": int(test["shown_at"].notna().sum()), "tests_answered": int(test["answered"].sum())})
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def _group_balance(forward: pd.DataFrame) -> pd.DataFrame:
    """Part 3 per group among completed participants (answered test trials)."""
    done = forward[(forward["status"] == "completed") & forward["method"].notna()]
    n_completed = done["participant_id"].nunique()
    rows = []
    for group in _group_order(done["method"]):
        mine = done[done["method"] == group]
        per_participant = mine[(mine["kind"] == "main") & mine["answered"]].groupby("participant_id").size()
        per_participant = per_participant.reindex(mine["participant_id"].unique(), fill_value=0)
        rows.append({"group": group, "participants": len(per_participant),
                     "share": len(per_participant) / n_completed, "tests": int(per_participant.sum()),
                     "min_per_participant": int(per_participant.min()),
                     "max_per_participant": int(per_participant.max())})
    return pd.DataFrame(rows, columns=GROUP_BALANCE_COLUMNS)


def _failures(participants: pd.DataFrame, trials: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    part_of = participants.set_index("participant_id")["part"]
    events = events.assign(part=events["participant_id"].map(part_of))
    screened_with_reason = set(events.loc[events["kind"] == SCREENED_OUT, "participant_id"])
    # All <NA>: the database predates the column (or nobody has a value), which is not the same as zero tries.
    tries_known = bool(participants["comprehension_tries"].notna().any())
    rows = []
    for part in PARTS:
        attention = trials[(trials["part"] == part) & (trials["kind"] == "attention") & trials["answered"]]
        failed = attention[attention["choice"] != attention["correct_option"]]
        comprehension = events[(events["part"] == part) & (events["kind"] == COMPREHENSION_FAILED)]
        screened = events[(events["part"] == part) & (events["kind"] == SCREENED_OUT)]
        mine = participants[participants["part"] == part]
        row = {"part": part, "attention_answered": len(attention), "attention_failed": len(failed),
               "participants_failed_attention": int(failed["participant_id"].nunique()),
               "comprehension_failures": len(comprehension),
               "participants_failed_comprehension": int(comprehension["participant_id"].nunique()),
               "comprehension_tries": int(mine["comprehension_tries"].fillna(0).sum()) if tries_known else pd.NA}
        for reason in SCREEN_OUT_REASONS:
            row[f"screened_out_{reason}"] = int(screened.loc[screened["reason"] == reason,
                                                             "participant_id"].nunique())
        row["screened_out_without_reason"] = int(((mine["status"] == "screened_out")
                                                  & ~mine["participant_id"].isin(screened_with_reason)).sum())
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["comprehension_tries"] = frame["comprehension_tries"].astype("Int64")
    return frame


def _seconds(delta: pd.Series) -> pd.Series:
    return delta.dt.total_seconds()


def _timing(participants: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    answered = trials[trials["answered"]].copy()
    # rt_ms is what the database computed at submit time; a response without it (a trial never marked shown) has
    # no time rather than a made-up one.
    answered["seconds"] = pd.to_numeric(answered["rt_ms"], errors="coerce") / 1000.0
    first_shown = trials.loc[trials["shown_at"].notna()].groupby("participant_id")["shown_at"].min()
    people = participants.set_index("participant_id")
    instructions = _seconds(first_shown - people.loc[first_shown.index, "consent_at"])
    sessions = people[people["status"] == "completed"]
    session_seconds = _seconds(sessions["completed_at"] - sessions["consent_at"])
    rows = []
    for part in PARTS:
        in_part = set(people.index[people["part"] == part])
        samples = {INSTRUCTIONS_SCREEN: instructions[instructions.index.isin(in_part)]}
        screens = ([(LEARNING_SCREEN, "learn"), (TEST_SCREEN, "main")] if part == FORWARD else
                   [(f"{kind} trial", kind) for kind in ("practice", "main", "attention")])
        for screen, kind in screens:
            samples[screen] = answered.loc[(answered["part"] == part) & (answered["kind"] == kind), "seconds"]
        samples[SESSION_SCREEN] = session_seconds[session_seconds.index.isin(in_part)]
        for screen, values in samples.items():
            values = values.dropna()
            rows.append({"part": part, "screen": screen, "n": len(values),
                         "median_seconds": float(values.median()) if len(values) else float("nan")})
    return pd.DataFrame(rows, columns=["part", "screen", "n", "median_seconds"])


def count_status(study_id: str, participants: pd.DataFrame, trials: pd.DataFrame, events: pd.DataFrame,
                 read_at: datetime | None = None, database: str | None = None) -> StudyStatus:
    """Count where the study stands from its participants (``PARTICIPANT_COLUMNS``; ``comprehension_tries`` all
    <NA> when the database has no such column), their planned trials with any answer (``TRIAL_COLUMNS``) and the
    ``comprehension_failed`` / ``screened_out`` events (``EVENT_COLUMNS``, ``reason`` from the detail). Pure."""
    for name, frame, columns in (("participants", participants, PARTICIPANT_COLUMNS),
                                 ("trials", trials, TRIAL_COLUMNS), ("events", events, EVENT_COLUMNS)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise UserError(f"{name} lack the column(s) {', '.join(missing)}; read them with studies.status."
                            "read_status_frames")
    trials = trials.merge(participants[["participant_id", "part", "status"]], on="participant_id", how="left")
    trials["answered"] = trials["submitted_at"].notna()
    # Part 3's groups are between-subject conditions, not methods every participant judges: counted apart
    main = trials[(trials["kind"] == "main") & trials["method"].notna() & (trials["part"] != FORWARD)]
    forward = trials[trials["part"] == FORWARD]
    return StudyStatus(study_id=study_id, participants=_participant_counts(participants, trials),
                       methods=_method_counts(main), balance=_balance(main),
                       failures=_failures(participants, trials, events), timing=_timing(participants, trials),
                       groups=_group_counts(forward), group_balance=_group_balance(forward),
                       read_at=read_at, database=database)


# ---------------------------------------------------------------------------------------------------- reading


def known_studies(engine: Engine) -> list[str]:
    from studies.tables import Study

    with engine.connect() as conn:
        return list(conn.execute(select(Study.id).order_by(Study.id)).scalars())


def choose_study(engine: Engine, study_id: str | None, where: str) -> str:
    """``study_id`` after checking that the database holds it; without one, the database's only study. Errors say
    which studies there are and what to pass."""
    studies = known_studies(engine)
    if study_id is not None:
        if study_id not in studies:
            held = ", ".join(map(repr, studies)) or "no study"
            raise UserError(f"study {study_id!r} is not in {where} (it holds {held}); pass one of them with --study")
        return study_id
    if not studies:
        raise UserError(f"{where} holds no study yet; register one with `stylex study build`")
    if len(studies) > 1:
        raise UserError(f"{where} holds several studies ({', '.join(map(repr, studies))}); choose one with --study")
    return studies[0]


def _reason(detail: str | None) -> str | None:
    try:
        value = json.loads(detail) if detail else None
    except json.JSONDecodeError:
        return None  # the audit log is free-form: an unreadable detail is a screening without a known reason
    return value.get("reason") if isinstance(value, dict) else None


def read_status_frames(engine: Engine, study_id: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(participants, trials, events) of one study, read in one transaction (one consistent snapshot)."""
    with engine.connect() as conn, conn.begin():
        has_tries = "comprehension_tries" in {c["name"] for c in inspect(conn).get_columns("participant")}
        tries = literal_column("participant.comprehension_tries") if has_tries else literal_column("NULL")
        people = conn.execute(
            select(Participant.id, Participant.part, Participant.status, Participant.consent_at,
                   Participant.completed_at, tries.label("comprehension_tries"))
            .where(Participant.study_id == study_id).order_by(Participant.id)).all()
        planned = conn.execute(
            select(Trial.id, Trial.participant_id, Trial.kind, Trial.method, Trial.domain, Trial.attr_i,
                   Trial.shown_at, Trial.correct_option, Response.choice, Response.rt_ms, Response.submitted_at)
            .join(Participant, Participant.id == Trial.participant_id)
            .outerjoin(Response, Response.trial_id == Trial.id)
            .where(Participant.study_id == study_id).order_by(Trial.participant_id, Trial.seq)).all()
        logged = conn.execute(
            select(Event.participant_id, Event.kind, Event.detail)
            .join(Participant, Participant.id == Event.participant_id)
            .where(Participant.study_id == study_id, Event.kind.in_((COMPREHENSION_FAILED, SCREENED_OUT)))
            .order_by(Event.id)).all()
    participants = pd.DataFrame([tuple(r) for r in people], columns=PARTICIPANT_COLUMNS)
    participants["comprehension_tries"] = pd.to_numeric(participants["comprehension_tries"]).astype("Int64")
    for column in ("consent_at", "completed_at"):
        participants[column] = pd.to_datetime(participants[column], utc=True)
    trials = pd.DataFrame([tuple(r) for r in planned], columns=TRIAL_COLUMNS)
    for column in ("shown_at", "submitted_at"):
        trials[column] = pd.to_datetime(trials[column], utc=True)
    events = pd.DataFrame([(r.participant_id, r.kind, _reason(r.detail)) for r in logged], columns=EVENT_COLUMNS)
    return participants, trials, events


def read_status(engine: Engine, study_id: str | None = None, database: str | None = None) -> StudyStatus:
    """The status of ``study_id`` (default: the database's only study) on an open engine (read-only is enough)."""
    study_id = choose_study(engine, study_id, database or str(engine.url.database))
    read_at = datetime.now(timezone.utc)
    return count_status(study_id, *read_status_frames(engine, study_id), read_at=read_at, database=database)


# ---------------------------------------------------------------------------------------------------- formatting


def _text_table(frame: pd.DataFrame, floats: dict[str, str] | None = None) -> str:
    if frame.empty:
        return "  (nothing yet)"
    shown = frame.copy()
    for column, spec in (floats or {}).items():
        shown[column] = [("–" if pd.isna(v) else format(v, spec)) for v in shown[column]]
    shown = shown.astype(object).where(shown.notna(), "n/a")
    return "\n".join("  " + line for line in shown.to_string(index=False).splitlines())


def format_status(status: StudyStatus) -> str:
    """Plain-text tables for a terminal (one section per table, a line under each saying how to read it)."""
    when = status.read_at.strftime("%Y-%m-%d %H:%M:%S UTC") if status.read_at else "now"
    where = f" in {status.database}" if status.database else ""
    sections = [
        f"Study {status.study_id!r}{where}, read {when}",
        "Participants per part\n" + _text_table(status.participants)
        + "\n  participants: everyone who consented; started: was shown a trial; consented: not shown a trial yet",
        "Per method (main trials)\n" + _text_table(status.methods)
        + "\n  started: participants shown a trial of the method; completed / screened_out: of those",
        "Balance among completed plans (answered main trials)\n"
        + _text_table(status.balance, {"share": ".3f"})
        + "\n  fewest_per_attribute: judgements of the method's least-seen attribute",
        "Part 3 groups (assigned at consent, by arrival order)\n" + _text_table(status.groups)
        + "\n  participants: consented with a plan of the group; started: was shown a screen; learning_answered:"
          "\n  learning screens acknowledged; tests_shown / tests_answered: test trials",
        "Part 3 balance among completed participants (answered test trials)\n"
        + _text_table(status.group_balance, {"share": ".3f"})
        + "\n  share: of the completed Part 3 participants",
        "Checks failed\n" + _text_table(status.failures.set_index("part").T.rename_axis("").reset_index())
        + "\n  comprehension_failures: comprehension_failed events (one per failed try); comprehension_tries: "
          "attempts,\n  passing ones included (n/a: a database from before the comprehension check)",
        "Median seconds per screen (server-side: includes network and GIF loading)\n"
        + _text_table(status.timing, {"median_seconds": ".1f"}),
    ]
    return "\n\n".join(sections) + "\n"
