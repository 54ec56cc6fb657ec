"""Typed records read from JSON and checked once, when read: a missing or malformed field is a UserError that names
the field and where the JSON came from (`At`), so the code that presents the records needs no defensive checks of
its own. `Record.to_dict()` gives back the JSON as it was read, key order and uninterpreted keys included.

`evaluation.schema` describes the benchmark results with these records."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from stylex.errors import UserError

# ---------------------------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class At:
    """Where a value sits in the results being read, for messages that name the field and the file."""

    source: str
    path: str = ""

    def key(self, name: str) -> At:
        return At(self.source, f"{self.path}.{name}" if self.path else name)

    def entry(self, name: str) -> At:
        return At(self.source, f"{self.path}[{name!r}]")

    def index(self, position: int) -> At:
        return At(self.source, f"{self.path}[{position}]")

    def error(self, problem: str) -> UserError:
        return UserError(f"{self.source}: {self.path or 'the results'} {problem}")


def _shown(value: object) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class _Kind:
    """A JSON scalar type: reading returns the value unchanged (an int stays an int) or raises naming the field."""

    expected: str
    accepts: Callable[[object], bool]

    def __call__(self, value: object, at: At) -> Any:
        if not self.accepts(value):
            raise at.error(f"must be {self.expected}, got {_shown(value)}")
        return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


TEXT = _Kind("a string", lambda value: isinstance(value, str))
INTEGER = _Kind("an integer", lambda value: isinstance(value, int) and not isinstance(value, bool))
NUMBER = _Kind("a number", _is_number)
NUMBER_OR_NULL = _Kind("a number or null", lambda value: value is None or _is_number(value))
SCALAR = _Kind("a string, number, boolean or null",
               lambda value: value is None or isinstance(value, (str, int, float, bool)))

Reader = Callable[[object, At], Any]
Readers = Mapping[str, Reader]


def read_object(value: object, at: At) -> Mapping:
    if not isinstance(value, Mapping):
        raise at.error(f"must be an object, got {_shown(value)}")
    return value


def list_of(read: Reader) -> Reader:
    def read_list(value: object, at: At) -> tuple:
        if not isinstance(value, list):
            raise at.error(f"must be a list, got {_shown(value)}")
        return tuple(read(item, at.index(position)) for position, item in enumerate(value))

    read_list.expected = "a list"
    return read_list


def map_of(read: Reader) -> Reader:
    def read_map(value: object, at: At) -> dict:
        return {name: read(item, at.entry(name)) for name, item in read_object(value, at).items()}

    return read_map


def or_null(read: Reader) -> Reader:
    def read_or_null(value: object, at: At) -> Any:
        return None if value is None else read(value, at)

    read_or_null.expected = f"{getattr(read, 'expected', 'an object')} or null"
    return read_or_null


def read_field(data: Mapping, at: At, key: str, read: Reader, *, optional: bool = False) -> Any:
    """data[key] read by `read`; an optional field that is absent or null is None, a required one must be there."""
    if key not in data or (optional and data[key] is None):
        if optional:
            return None
        raise at.key(key).error(f"is missing ({getattr(read, 'expected', 'an object')})")
    return read(data[key], at.key(key))


# ---------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, kw_only=True)
class Record:
    """An object of the results. Its JSON keys are its fields, each read by the reader `READ` names for it, in the
    order the benchmark writes them; a field with a default may be absent or null (it is then the default). `extra`
    keeps the keys this schema does not interpret and `key_order` the order the keys were read in, so that `to_dict`
    gives back what was read; an object built in code has neither and writes its fields in the order of `READ`,
    leaving out optional ones (default None) that are None."""

    READ: ClassVar[Readers] = {}

    extra: Mapping[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def read(cls, value: object, at: At):
        data = read_object(value, at)
        values = cls._read_fields(data, at)
        known = cls._json_keys(values)
        return cls(**values, extra={key: data[key] for key in data if key not in known}, key_order=tuple(data))

    @classmethod
    def _read_fields(cls, data: Mapping, at: At) -> dict[str, Any]:
        optional = {item.name for item in dataclasses.fields(cls) if _default(item) is not dataclasses.MISSING}
        values = {key: read_field(data, at, key, read, optional=key in optional) for key, read in cls.READ.items()}
        return {key: value for key, value in values.items() if value is not None or key not in optional}

    @classmethod
    def _json_keys(cls, values: Mapping[str, Any]) -> set[str]:
        return {*cls.READ, *values}

    def _json_items(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.READ}

    def to_dict(self) -> dict[str, Any]:
        items = {**self._json_items(), **self.extra}
        defaults = {item.name: _default(item) for item in dataclasses.fields(self)}

        def is_default(key: str) -> bool:
            return key in defaults and items[key] == defaults[key]

        if self.key_order:  # as read, then whatever was set since that is not a field's default
            keys = [key for key in self.key_order if key in items]
            keys += [key for key in items if key not in self.key_order and not is_default(key)]
        else:  # built in code: every field but the optional ones left at None
            keys = [key for key in items if not (items[key] is None and is_default(key))]
        return {key: _json(items[key]) for key in keys}


def _default(item: dataclasses.Field) -> Any:
    """A field's default value; dataclasses.MISSING (equal to no value) for a required field."""
    return item.default if item.default_factory is dataclasses.MISSING else item.default_factory()


def _json(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    return value
