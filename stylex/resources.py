"""The presets and shipped models, found the same way in a checkout and in an installed wheel.

A checkout keeps them at the top of the repository (`configs/<preset>.json`, `models/<name>/`, DESIGN section 2);
the wheel carries the same folders inside the package (`stylex/configs/`, `stylex/models/`, mapped there by
pyproject.toml's package-dir), so an installed suite runs `stylex benchmark --config demo` from any folder, offline.

A relative folder setting such as `models/demo` is looked up in the working directory first, so a user's own
folder of that name wins, and then among the shipped files.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_root() -> Path:
    """The folder holding `configs/` and `models/`: the package itself when installed from a wheel, else the
    checkout's root."""
    return _PACKAGE if (_PACKAGE / "configs").is_dir() else _PACKAGE.parent


PRESET_DIR = shipped_root() / "configs"


def folder_candidates(name: str | Path) -> list[Path]:
    """Where a folder setting may point, in lookup order: as given (relative to the working directory), then
    among the shipped files (relative names only)."""
    given = Path(name).expanduser()
    if given.is_absolute():
        return [given]
    return [given, shipped_root() / given]


def find_folder(name: str | Path) -> Path | None:
    """The first existing folder of `folder_candidates(name)`, or None."""
    return next((path for path in folder_candidates(name) if path.is_dir()), None)
