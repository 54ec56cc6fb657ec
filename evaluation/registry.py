"""Plug-ins by declaration: every module of a package that defines a module-level object of the right type
(`METHOD` in `baselines/`, `METRIC` in `evaluation/metrics/`) is registered, in (order, name) order."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import TypeVar

from stylex.errors import UserError

Entry = TypeVar("Entry")


def collect(package: ModuleType, attribute: str, kind: type[Entry], name_of: str) -> list[Entry]:
    """The `attribute` of each module in `package` that is a `kind`, sorted by (entry.order, its name); two
    entries of one name are refused (`name_of` names the field that must be unique)."""
    found = []
    for module_info in pkgutil.iter_modules(package.__path__):
        entry = getattr(importlib.import_module(f"{package.__name__}.{module_info.name}"), attribute, None)
        if isinstance(entry, kind):
            found.append(entry)
    return sort_unique(found, name_of)


def sort_unique(entries: list[Entry], name_of: str) -> list[Entry]:
    names = [getattr(entry, name_of) for entry in entries]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise UserError(f"registered twice ({name_of}): {', '.join(duplicated)}")
    return sorted(entries, key=lambda entry: (entry.order, getattr(entry, name_of)))
