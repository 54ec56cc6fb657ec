"""Small runtime helpers shared by every command: device choice, code version, atomic writes."""

from __future__ import annotations

import functools
import os
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from stylex.errors import UserError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; an explicit CUDA device that is absent is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for but no CUDA GPU is visible; use --device cpu")
    return device


@functools.cache
def code_version() -> str:
    """Package version plus the git commit of the checkout it runs from (with -dirty), when there is one."""
    try:
        version = metadata.version("stylex-suite")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    repo = Path(__file__).resolve().parent.parent
    if (repo / ".git").exists():
        try:
            sha = subprocess.run(
                ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=10"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            version += f"+g{sha}"
        except (OSError, subprocess.SubprocessError):
            pass
    return version


def atomic_torch_save(obj, path: Path) -> None:
    """Write to a temporary file and rename, so a crash never leaves a half-written artifact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
