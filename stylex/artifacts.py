"""Cached artifacts: one fingerprint, one `cached(path, key, compute)`, one config diff, one tagged save/load.

Every file the suite computes and may reuse (effect chunks, style statistics, benchmark stages, FID reference
statistics, factor probes) is written atomically through `stylex.runtime`'s temp-file rule, records what it was
computed from, and is reused only while that still matches. An unreadable cache entry is work that can be
redone: it is recomputed with a warning, never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from stylex.runtime import atomic_torch_save, atomic_write_bytes, code_version

log = logging.getLogger("stylex.artifacts")

DIGEST_LENGTH = 16


# ---- fingerprints --------------------------------------------------------------------------------------------

def fingerprint(*parts: Any) -> str:
    """sha1 (first 16 hex digits) of any mix of tensors, modules (their state_dict), arrays, dataclasses,
    mappings, sequences and JSON values. Tensors count by dtype, shape and raw bytes, so two artifacts share a
    fingerprint only when they were computed from the same numbers."""
    hasher = hashlib.sha1()
    for part in parts:
        _update(hasher, part)
    return hasher.hexdigest()[:DIGEST_LENGTH]


def _update(hasher, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        hasher.update(f"T{tensor.dtype}{tuple(value.shape)};".encode())
        hasher.update(tensor.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        hasher.update(f"A{array.dtype}{array.shape};".encode())
        hasher.update(array.tobytes())
    elif isinstance(value, nn.Module):
        _update(hasher, value.state_dict())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _update(hasher, dataclasses.asdict(value))
    elif isinstance(value, Mapping):
        hasher.update(f"M{len(value)};".encode())
        for key in sorted(value, key=str):
            hasher.update(f"{key!s}=".encode())
            _update(hasher, value[key])
    elif isinstance(value, list | tuple):
        hasher.update(f"L{len(value)};".encode())
        for item in value:
            _update(hasher, item)
    else:
        hasher.update(json.dumps(value, sort_keys=True, default=str).encode() + b";")


# ---- config differences --------------------------------------------------------------------------------------

def config_diff(wanted: Mapping, found: Mapping, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted names of the settings in `wanted` whose value in `found` differs (missing counts as different);
    nested sections recurse. `ignore` holds leaf names that may differ (e.g. train.steps of a longer run)."""
    differing = []
    for key, value in wanted.items():
        other = found.get(key) if isinstance(found, Mapping) else None
        if isinstance(value, Mapping):
            differing += [f"{key}.{name}" for name in config_diff(value, other or {}, ignore)]
        elif key not in ignore and other != value:
            differing.append(str(key))
    return differing


# ---- tagged files ---------------------------------------------------------------------------------------------

def save_tagged(payload: dict, path: Path, format_tag: str, format_version: int = 1) -> Path:
    """A torch file of plain values and tensors, tagged with its format and the code version that wrote it."""
    path = Path(path)
    atomic_torch_save({"format": format_tag, "format_version": format_version, "code_version": code_version(),
                       **payload}, path)
    return path


class DamagedArtifact(Exception):
    """A file that exists but is not the artifact it should be (truncated, garbled, another format)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def load_tagged(path: Path, format_tag: str, map_location="cpu") -> dict:
    """The payload of a `save_tagged` file; DamagedArtifact when it is unreadable or of another format. OSError
    (permissions, I/O) passes through: that is not a damaged file and must not be deleted or replaced."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as err:  # torch reports a truncated or garbled file as RuntimeError, EOFError, pickle errors
        first_line = (str(err).splitlines() or [""])[0]
        raise DamagedArtifact(path, f"{type(err).__name__}: {first_line}") from None
    if not isinstance(payload, dict) or payload.get("format") != format_tag:
        raise DamagedArtifact(path, f"not a '{format_tag}' file")
    return payload


def write_text(path: Path, text: str) -> Path:
    """UTF-8 text, written atomically (a reader never sees half a file)."""
    return atomic_write_bytes(Path(path), text.encode())


def write_json(path: Path, value: Any) -> Path:
    """Indented JSON with a final newline, written atomically."""
    return write_text(path, json.dumps(value, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    """JSON from a file; DamagedArtifact when it does not parse."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedArtifact(path, f"not valid JSON ({err})") from None


# ---- cached(path, key, compute) -------------------------------------------------------------------------------

class Store(Protocol):
    """How one kind of cached value is written and read back together with the fingerprint of its key."""

    def write(self, path: Path, value: Any, key: Mapping, digest: str) -> None: ...

    def read(self, path: Path) -> tuple[str | None, Any]:
        """(digest of the key it was computed from, value); raises DamagedArtifact when unreadable."""
        ...


class JsonStore:
    """`{"key": digest, "depends_on": key, "code_version": ..., "value": value}` as JSON."""

    def write(self, path: Path, value: Any, key: Mapping, digest: str) -> None:
        write_json(path, {"key": digest, "depends_on": key, "code_version": code_version(), "value": value})

    def read(self, path: Path) -> tuple[str | None, Any]:
        stored = read_json(path)
        if not isinstance(stored, dict) or "value" not in stored:
            raise DamagedArtifact(path, "not a cached result (no 'value')")
        return stored.get("key"), stored["value"]


JSON = JsonStore()


def cached(path: Path, key: Mapping, compute: Callable[[], Any], store: Store = JSON, what: str = "result") -> Any:
    """The value stored at `path` when it was computed from `key` (everything it depends on), else `compute()`,
    stored there for the next call. A damaged file is named in a warning and recomputed."""
    path = Path(path)
    digest = fingerprint(key)
    if path.is_file():
        try:
            found, value = store.read(path)
        except DamagedArtifact as err:
            log.warning("cached %s %s is damaged (%s); computing it again", what, path, err.reason)
        else:
            if found == digest:
                log.info("reusing %s", path)
                return value
            log.info("%s was computed from other inputs; computing it again", path)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write(path, value, key, digest)
    return value
