"""The pre-registration as a file: where it lives, the SHA-256 line that ends it, and reading it back to say which
plan an analysis followed (``stylex study plan`` writes it, ``stylex study analyze`` prints its hash). What the plan
says is :mod:`studies.plan`'s.

A written plan is never silently replaced: a pre-registration is only worth something if it does not change after
it was published, so a different plan at the same path needs ``force``.

Imports no torch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from stylex.errors import UserError

PLAN_NAME = "preregistration.md"
HASH_LINE_PREFIX = "Plan SHA-256 (of every byte above this line): "
_HASH_LINE = re.compile(re.escape(HASH_LINE_PREFIX) + r"([0-9a-f]{64})\n?\Z")


@dataclass(frozen=True)
class PlanRecord:
    """A plan file: the SHA-256 of its text (every byte above the hash line) and the hash written in it."""

    path: Path
    sha256: str
    recorded_sha256: str | None

    @property
    def matches(self) -> bool:
        return self.recorded_sha256 == self.sha256

    def summary(self) -> str:
        """One line for the terminal and the report."""
        followed = f"plan followed: {self.path} (SHA-256 {self.sha256})"
        if self.recorded_sha256 is None:
            return f"{followed}; the file records no hash of its own, so `stylex study plan` did not write it"
        if not self.matches:
            return (f"{followed}; WARNING: the plan was changed after it was written, its last line records "
                    f"SHA-256 {self.recorded_sha256}")
        return followed

    def as_json(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "recorded_sha256": self.recorded_sha256,
                "matches": self.matches, "summary": self.summary()}


def _split(data: bytes) -> tuple[bytes, str | None]:
    """(the bytes the hash covers, the recorded hash or None); a file without a hash line is covered whole."""
    start = data.rfind(HASH_LINE_PREFIX.encode())
    if start != -1 and (start == 0 or data[start - 1:start] == b"\n"):
        found = _HASH_LINE.match(data[start:].decode("utf-8", errors="replace"))
        if found:
            return data[:start], found.group(1)
    return data, None


def read_plan(path: str | Path) -> PlanRecord:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no plan at {path}; write one with `stylex study plan --materials DIR` (or leave out "
                        "--plan to analyse without one)")
    body, recorded = _split(path.read_bytes())
    return PlanRecord(path=path, sha256=hashlib.sha256(body).hexdigest(), recorded_sha256=recorded)


def check_plan_target(path: str | Path, force: bool = False) -> None:
    """Refuse to go on when ``path`` is a folder, or already holds a plan and ``force`` is not given: checked before
    the power analysis, so a refusal costs nothing."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; name the plan file to write (default: DIR/{PLAN_NAME})")
    if path.exists() and not force:
        raise UserError(f"{path} already holds a plan (SHA-256 {read_plan(path).sha256}); a pre-registration must "
                        "not change once published: pass --out to write a new one elsewhere, or --force to replace "
                        "it")


def write_plan(text: str, path: str | Path, force: bool = False) -> PlanRecord:
    """Write ``text`` plus its hash line to ``path``; an existing different plan is replaced only with ``force``."""
    path = Path(path)
    body = text.encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    data = body + f"{HASH_LINE_PREFIX}{digest}\n".encode()
    if path.is_dir():
        raise UserError(f"{path} is a folder; name the plan file to write (default: DIR/{PLAN_NAME})")
    if path.exists() and path.read_bytes() != data and not force:  # written meanwhile by someone else
        old = read_plan(path)
        raise UserError(f"{path} already holds another plan (SHA-256 {old.sha256}); a pre-registration must not "
                        "change once published: pass --out to write this one elsewhere, or --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # readers never see half a plan
    return PlanRecord(path=path, sha256=digest, recorded_sha256=digest)


def find_plan(plan: str | Path | None, materials: str | Path | None) -> PlanRecord | None:
    """The plan an analysis follows: ``plan`` (which must exist), else ``materials/preregistration.md`` when there
    is one, else None."""
    if plan is not None:
        return read_plan(plan)
    if materials is not None and (Path(materials) / PLAN_NAME).is_file():
        return read_plan(Path(materials) / PLAN_NAME)
    return None


def no_plan_note(materials: str | Path | None) -> str:
    where = f"none at {Path(materials) / PLAN_NAME}" if materials is not None else "no --plan or --materials given"
    return (f"no pre-registered plan found ({where}); this analysis follows no plan. Write one before collecting "
            "data with `stylex study plan --materials DIR`, then pass --plan FILE or --materials DIR")
