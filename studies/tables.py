"""The study database's tables (SQLAlchemy 2 declarative schema) and the vocabulary its CHECK constraints enforce.

The Part 1 answer key (``correct_option``) is a column of ``study_item`` and ``trial`` only; nothing that serves a
page selects it. Timestamps are UTC ISO-8601 text of fixed width, so they sort as text and read unambiguously in
other tools. Imports no torch (the participant app loads it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, TypeDecorator, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 4
"""Bump when a table changes, and say in ``ADDED_COLUMNS`` what the new version adds: files written with an older
version are upgraded in place by :func:`studies.engines.upgrade_schema`, files of any other version are refused."""

ADDED_COLUMNS: dict[int, dict[str, tuple[str, ...]]] = {
    # version 2: sessions bound to participants and the comprehension check (issue 15)
    2: {"participant": ("session_token", "platform_session_id", "comprehension_tries", "comprehension_passed_at")},
    # version 3: Part 3, forward simulation (issue 15 item 6): learning screens' labels, the classifier's decision
    # (the test trials' answer key) and the participant's prediction
    3: {"trial": ("target_class", "classifier_decision"), "study_item": ("target_class", "classifier_decision"),
        "response": ("prediction",)},
}
"""{version: {table: columns that version appended}}. Only appended columns with a default or NULL, so an upgrade is
``ALTER TABLE ... ADD COLUMN`` and keeps every row."""

REBUILT_TABLES: dict[int, tuple[str, ...]] = {
    # version 3: Part 3 widened the CHECKs of participant.part ('forward'), trial.kind ('learn') and study_item.part (3)
    3: ("participant", "trial", "study_item"),
    # version 4: assets and items keyed per study (their ids were unique over the whole file, so a second study from
    # the same materials could not register its GIFs and items)
    4: ("asset", "study_item"),
}
"""{version: tables whose constraints that version changed}. SQLite cannot alter a constraint in place, so an upgrade
rebuilds these tables with this code's definition and copies every row (:func:`studies.engines.upgrade_schema`)."""

PARTS = ("coherence", "description", "forward")
# "screened_out": ended early by the screening of studies/app.py (failed attention or comprehension checks).
STATUSES = ("consented", "in_progress", "completed", "screened_out")
SCREEN_OUT_REASONS = ("attention", "comprehension")
# "learn": a Part 3 learning screen (attribute GIFs and the class they push toward), answered by "Continue" only.
TRIAL_KINDS = ("practice", "main", "attention", "learn")
OPTIONS = ("A", "B")
MAX_PID_CHARS = 128


def utcnow() -> datetime:
    """What the UTC columns store (a naive datetime is refused by :class:`UTCDateTime`)."""
    return datetime.now(timezone.utc)


def _sql_in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime stored as fixed-width ISO-8601 text.

    SQLAlchemy's SQLite DateTime drops the timezone; storing text with an explicit +00:00 keeps rows unambiguous
    when the file is read by other tools, and the fixed width keeps text order equal to time order."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(timezone.utc)")
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")

    def process_result_value(self, value: str | None, dialect: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class Base(DeclarativeBase):
    pass


class Study(Base):
    """One deployment of the study; ``manifest_sha256`` pins the materials folder it serves."""

    __tablename__ = "study"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    manifest_sha256: Mapped[str] = mapped_column(String(64))


class Asset(Base):
    """A GIF in the materials folder of one study. ``asset_id`` is opaque (content-hash based) so a URL reveals
    nothing; the method/domain/attribute columns are for the analysis side only. Keyed per study: two studies built
    from the same run (a pilot and the main study, say) share GIF files and so asset ids."""

    __tablename__ = "asset"
    __table_args__ = (UniqueConstraint("study_id", "sha256", name="uq_asset_study_sha256"),)

    asset_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"), primary_key=True, index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    relpath: Mapped[str] = mapped_column(Text)
    method: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[str | None] = mapped_column(Text)
    attr_rank: Mapped[int | None] = mapped_column(Integer)
    role: Mapped[str | None] = mapped_column(Text)


class Participant(Base):
    """A person in one part of one study. UNIQUE(study_id, external_pid): a returning Prolific id resumes, but only
    in the browser session it is bound to.

    ``session_token`` is the random token the app put in the first browser's URL, ``platform_session_id`` the
    platform's session id of that visit (Prolific's SESSION_ID) when the link had one; a later visit must bring one of
    the two (``stylex study release`` clears both, so the next browser binds again). ``comprehension_tries`` counts
    submitted attempts at the comprehension check, the passing one included (0: never attempted, or a participant
    from before the check existed); ``comprehension_passed_at`` is when it was passed."""

    __tablename__ = "participant"
    __table_args__ = (
        UniqueConstraint("study_id", "external_pid", name="uq_participant_study_pid"),
        CheckConstraint(_sql_in("part", PARTS), name="ck_participant_part"),
        CheckConstraint(_sql_in("status", STATUSES), name="ck_participant_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"))
    external_pid: Mapped[str] = mapped_column(String(MAX_PID_CHARS))
    part: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="consented")
    seed: Mapped[int] = mapped_column(Integer)
    consent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completion_code: Mapped[str | None] = mapped_column(String(64))
    # Schema version 2 (appended, so that upgrading a version 1 file is ALTER TABLE ... ADD COLUMN: ADDED_COLUMNS).
    session_token: Mapped[str | None] = mapped_column(String(64))
    platform_session_id: Mapped[str | None] = mapped_column(String(MAX_PID_CHARS))
    comprehension_tries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    comprehension_passed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ItemColumns:
    """What a study item and a planned trial both carry: the condition (for analysis), the four asset ids in
    display order (JSON list) and the Part 1 answer key (``correct_option``, never sent to the browser)."""

    method: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[str | None] = mapped_column(Text)
    attr_i: Mapped[int | None] = mapped_column(Integer)
    attr_j: Mapped[int | None] = mapped_column(Integer)
    assets: Mapped[str] = mapped_column(Text)
    correct_option: Mapped[str | None] = mapped_column(String(1))
    # Schema version 3, Part 3 (``method`` holds the group there); last, since an upgrade appends them to the table.
    # ``target_class``: the label of a learning screen, shown to the participant. ``classifier_decision``: a test
    # image's answer key, never shown.
    target_class: Mapped[str | None] = mapped_column(Text)
    classifier_decision: Mapped[str | None] = mapped_column(Text)


class Trial(ItemColumns, Base):
    """One screen of a participant's plan. ``assets`` is a JSON list of 4 asset ids in display order (Part 1: the
    two reference GIFs, then options A and B). ``correct_option`` is the Part 1 answer key, copied from
    ``study_item`` when the plan is made."""

    __tablename__ = "trial"
    __table_args__ = (
        UniqueConstraint("participant_id", "seq", name="uq_trial_participant_seq"),
        CheckConstraint(_sql_in("kind", TRIAL_KINDS), name="ck_trial_kind"),
        CheckConstraint(f"correct_option IS NULL OR {_sql_in('correct_option', OPTIONS)}", name="ck_trial_correct"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Response(Base):
    """The answer to a trial; UNIQUE(trial_id) is what makes a double submit record once."""

    __tablename__ = "response"
    __table_args__ = (CheckConstraint(f"choice IS NULL OR {_sql_in('choice', OPTIONS)}", name="ck_response_choice"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id"), unique=True)
    choice: Mapped[str | None] = mapped_column(String(1))
    text_raw: Mapped[str | None] = mapped_column(Text)
    text_norm: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rt_ms: Mapped[int | None] = mapped_column(Integer)
    # Schema version 3: the class a Part 3 participant predicted (NULL for Parts 1-2 and for learning screens).
    prediction: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """Audit log; ``detail`` is JSON text. Kinds written by the app and the CLI (``stylex study status`` counts some):
    consent, completed, duplicate_submit, invalid_text, missing_asset, consent_error; session_bound (a browser took
    a participant id), session_refused (another browser tried the id), session_released (``stylex study release``);
    comprehension_failed ({"try": n, "wrong": [question ids]}); screened_out ({"reason": "attention" |
    "comprehension", ...})."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participant.id"), index=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


class StudyItem(ItemColumns, Base):
    """An item of the study's materials (one manifest item), keyed per study like assets (two studies from the same
    materials share item ids). ``correct_option`` is the Part 1 answer key: it lives here and in ``trial`` only,
    and ``study_items`` returns it separately from the items."""

    __tablename__ = "study_item"
    __table_args__ = (
        CheckConstraint("part IN (1, 2, 3)", name="ck_item_part"),
        CheckConstraint(f"correct_option IS NULL OR {_sql_in('correct_option', OPTIONS)}", name="ck_item_correct"),
    )

    item_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"), primary_key=True, index=True)  # version 4
    part: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))


class SchemaVersion(Base):
    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)

