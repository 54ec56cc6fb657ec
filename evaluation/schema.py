"""The benchmark results as typed objects: what `stylex benchmark` writes to metrics.json (format
"stylex-benchmark", version 1) and what the report reads.

Results are checked once, when read (`BenchmarkResults.from_dict`, `read_results`): a missing or malformed field is
a UserError that names the field and where the results came from, so the code that presents them needs no defensive
checks of its own. `to_dict()` gives back the JSON as it was read, key order included (keys this schema does not
interpret are kept as they are), so a report re-rendered from metrics.json writes the same file again.

Methods are open-ended: the results hold whichever methods were run, each with its own label, generator (variant)
and edit rule; a method without image-level strategies has null curves for them. Sections a run did not produce
(no "fid" when the distance was skipped, no "recovery" off the shapes dataset) are None.

Naming rule (DESIGN.md section 7): a Frechet distance on anything but InceptionV3 features is never called FID;
results that label such a distance "FID" are rejected.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylex.errors import UserError

FORMAT = "stylex-benchmark"
FORMAT_VERSION = 1
INCEPTION_FEATURES = "inception"

Number = int | float

# ---------------------------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class _At:
    """Where a value sits in the results being read, for messages that name the field and the file."""

    source: str
    path: str = ""

    def key(self, name: str) -> _At:
        return _At(self.source, f"{self.path}.{name}" if self.path else name)

    def entry(self, name: str) -> _At:
        return _At(self.source, f"{self.path}[{name!r}]")

    def index(self, position: int) -> _At:
        return _At(self.source, f"{self.path}[{position}]")

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

    def __call__(self, value: object, at: _At) -> Any:
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

Reader = Callable[[object, _At], Any]


def _object(value: object, at: _At) -> Mapping:
    if not isinstance(value, Mapping):
        raise at.error(f"must be an object, got {_shown(value)}")
    return value


def _list_of(read: Reader) -> Reader:
    def read_list(value: object, at: _At) -> tuple:
        if not isinstance(value, list):
            raise at.error(f"must be a list, got {_shown(value)}")
        return tuple(read(item, at.index(position)) for position, item in enumerate(value))

    read_list.expected = "a list"
    return read_list


def _map_of(read: Reader) -> Reader:
    def read_map(value: object, at: _At) -> dict:
        return {name: read(item, at.entry(name)) for name, item in _object(value, at).items()}

    return read_map


def _or_null(read: Reader) -> Reader:
    def read_or_null(value: object, at: _At) -> Any:
        return None if value is None else read(value, at)

    read_or_null.expected = f"{getattr(read, 'expected', 'an object')} or null"
    return read_or_null


def _shift_sizes(read: Reader) -> Reader:
    """A map keyed by shift sizes; JSON keys are strings, so each must read as a number ("0.5", "1.0")."""
    def read_shifts(value: object, at: _At) -> dict:
        shifts = _map_of(read)(value, at)
        for shift in shifts:
            try:
                float(shift)
            except ValueError:
                raise at.entry(shift).error("must be keyed by a shift size such as '1.0'") from None
        return shifts

    return read_shifts


def _field(data: Mapping, at: _At, key: str, read: Reader, *, optional: bool = False) -> Any:
    """data[key] read by `read`; an optional field that is absent or null is None, a required one must be there."""
    if key not in data or (optional and data[key] is None):
        if optional:
            return None
        raise at.key(key).error(f"is missing ({getattr(read, 'expected', 'an object')})")
    return read(data[key], at.key(key))


# ---------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, kw_only=True)
class Record:
    """An object of the results. `extra` keeps the keys this schema does not interpret and `key_order` the order
    the keys were read in, so that `to_dict` gives back what was read; an object built in code has neither and
    writes its fields in declaration order, leaving out optional ones (default None) that are None."""

    extra: Mapping[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def read(cls, value: object, at: _At):
        data = _object(value, at)
        values = cls._read_fields(data, at)
        known = cls._json_keys(values)
        return cls(**values, extra={key: data[key] for key in data if key not in known}, key_order=tuple(data))

    @classmethod
    def _read_fields(cls, data: Mapping, at: _At) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _json_keys(cls, values: Mapping[str, Any]) -> set[str]:
        return set(values)

    def _json_items(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)
                if item.name not in ("extra", "key_order")}

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


@dataclass(frozen=True, kw_only=True)
class Run(Record):
    name: str
    config: str
    run_dir: str
    code_version: str
    device: str
    created: str
    wall_time_s: Number | None = None

    @classmethod
    def _read_fields(cls, data, at):
        values = {key: _field(data, at, key, TEXT)
                  for key in ("name", "config", "run_dir", "code_version", "device", "created")}
        return {**values, "wall_time_s": _field(data, at, "wall_time_s", NUMBER, optional=True)}


@dataclass(frozen=True, kw_only=True)
class Dataset(Record):
    name: str
    classes: tuple[str, ...]
    resolution: int | None = None

    @classmethod
    def _read_fields(cls, data, at):
        return {"name": _field(data, at, "name", TEXT),
                "classes": _field(data, at, "classes", _list_of(TEXT)),
                "resolution": _field(data, at, "resolution", INTEGER, optional=True)}


@dataclass(frozen=True, kw_only=True)
class Classifier(Record):
    arch: str
    test_accuracy: Number | None
    oracle_arch: str | None = None
    oracle_test_accuracy: Number | None = None

    @classmethod
    def _read_fields(cls, data, at):
        return {"arch": _field(data, at, "arch", TEXT),
                "test_accuracy": _field(data, at, "test_accuracy", NUMBER_OR_NULL),
                "oracle_arch": _field(data, at, "oracle_arch", TEXT, optional=True),
                "oracle_test_accuracy": _field(data, at, "oracle_test_accuracy", NUMBER, optional=True)}


@dataclass(frozen=True, kw_only=True)
class Attribute(Record):
    """One of a method's top attributes, with the figures the benchmark copied into the report folder (paths
    relative to it; None when the method has no figures)."""

    rank: int
    layer: str
    channel: int
    direction: str
    target: str
    score: Number | None
    mean_effect: Number | None = None
    panel: str | None = None
    flicker: str | None = None
    sweep: str | None = None

    @classmethod
    def _read_fields(cls, data, at):
        values = {"rank": _field(data, at, "rank", INTEGER), "layer": _field(data, at, "layer", TEXT),
                  "channel": _field(data, at, "channel", INTEGER),
                  "direction": _field(data, at, "direction", TEXT),
                  "target": _field(data, at, "target", TEXT),
                  "score": _field(data, at, "score", NUMBER_OR_NULL),
                  "mean_effect": _field(data, at, "mean_effect", NUMBER, optional=True)}
        return values | {key: _field(data, at, key, TEXT, optional=True) for key in ("panel", "flicker", "sweep")}


@dataclass(frozen=True, kw_only=True)
class Method(Record):
    label: str
    variant: str  # the key of the generator the method explains
    edit_rule: str
    attributes: tuple[Attribute, ...] = ()
    description: str | None = None  # what the method does, in a phrase (the report's reading guide)

    @classmethod
    def _read_fields(cls, data, at):
        values = {key: _field(data, at, key, TEXT) for key in ("label", "variant", "edit_rule")}
        attributes = _field(data, at, "attributes", _list_of(Attribute.read), optional=True)
        return {**values, "attributes": attributes or (),
                "description": _field(data, at, "description", TEXT, optional=True)}


@dataclass(frozen=True, kw_only=True)
class Generator(Record):
    """A generator's faithfulness measurements by name (open-ended: numbers, or text such as the LPIPS mode) and
    the gates of DESIGN section 9 it missed."""

    measurements: Mapping[str, Any] = field(default_factory=dict)
    gate_failures: tuple[str, ...] | None = None

    @classmethod
    def _read_fields(cls, data, at):
        measurements = {key: SCALAR(value, at.key(key)) for key, value in data.items() if key != "gate_failures"}
        return {"measurements": measurements,
                "gate_failures": _field(data, at, "gate_failures", _list_of(TEXT), optional=True)}

    @classmethod
    def _json_keys(cls, values):
        return {*values["measurements"], "gate_failures"}

    def _json_items(self):
        return {**self.measurements, "gate_failures": self.gate_failures}


@dataclass(frozen=True, kw_only=True)
class Interval(Record):
    """A fraction of images with its Wilson 95% interval (null where it could not be computed)."""

    fraction: Number | None
    ci_low: Number | None
    ci_high: Number | None

    @classmethod
    def _read_fields(cls, data, at):
        return {key: _field(data, at, key, NUMBER_OR_NULL) for key in ("fraction", "ci_low", "ci_high")}


@dataclass(frozen=True, kw_only=True)
class CurvePoint(Interval):
    """Sufficiency with the top k attributes changed: `flipped` of `images` images flipped."""

    k: int
    flipped: int
    images: int

    @classmethod
    def _read_fields(cls, data, at):
        counts = {key: _field(data, at, key, INTEGER) for key in ("k", "flipped", "images")}
        return counts | super()._read_fields(data, at)

    def _json_items(self):
        items = super()._json_items()
        return {key: items[key] for key in ("k", "flipped", "images", "fraction", "ci_low", "ci_high")}


# {method: {strategy ("class_level", "independent", "subset"): points, or None where the method has no such strategy}}
Curves = dict[str, dict[str, tuple[CurvePoint, ...] | None]]


@dataclass(frozen=True, kw_only=True)
class Sufficiency(Record):
    num_images: int
    shift_size: Number
    max_k: int
    curves: Curves

    @classmethod
    def _read_fields(cls, data, at):
        return {"num_images": _field(data, at, "num_images", INTEGER),
                "shift_size": _field(data, at, "shift_size", NUMBER),
                "max_k": _field(data, at, "max_k", INTEGER),
                "curves": _field(data, at, "curves", _map_of(_map_of(_or_null(_list_of(CurvePoint.read)))))}


@dataclass(frozen=True, kw_only=True)
class Table3Row(Record):
    """One dataset's row of Table 3: a sufficiency interval per method key (None: the method has no value)."""

    dataset: str
    cells: Mapping[str, Interval | None] = field(default_factory=dict)

    @classmethod
    def _read_fields(cls, data, at):
        cells = {key: _or_null(Interval.read)(value, at.key(key)) for key, value in data.items() if key != "dataset"}
        return {"dataset": _field(data, at, "dataset", TEXT), "cells": cells}

    @classmethod
    def _json_keys(cls, values):
        return {"dataset", *values["cells"]}

    def _json_items(self):
        return {"dataset": self.dataset, **self.cells}


@dataclass(frozen=True, kw_only=True)
class Table3(Record):
    k: int
    strategy: str
    rows: tuple[Table3Row, ...]

    @classmethod
    def _read_fields(cls, data, at):
        return {"k": _field(data, at, "k", INTEGER), "strategy": _field(data, at, "strategy", TEXT),
                "rows": _field(data, at, "rows", _list_of(Table3Row.read))}


@dataclass(frozen=True, kw_only=True)
class DistancePoint(Record):
    """The distance to the real images with the top i attributes changed."""

    i: int
    value: Number | None

    @classmethod
    def _read_fields(cls, data, at):
        return {"i": _field(data, at, "i", INTEGER), "value": _field(data, at, "value", NUMBER_OR_NULL)}


@dataclass(frozen=True, kw_only=True)
class Distance(Record):
    """The Frechet distance between real and generated images ("fid" in the results), under `label`."""

    features: str
    label: str
    num_images: int
    reference: str
    reconstruction: Mapping[str, Number | None]  # by generator key
    perturbation: Mapping[str, Mapping[str, tuple[DistancePoint, ...] | None]]  # {method: {shift size: points}}

    @property
    def is_fid(self) -> bool:
        return self.features == INCEPTION_FEATURES

    @property
    def shift_sizes(self) -> list[str]:
        """The shift sizes with a curve of any method, in numeric order (JSON keys are strings: "0.5" < "1.0")."""
        return sorted({shift for by_shift in self.perturbation.values() for shift, points in by_shift.items()
                       if points}, key=float)

    @classmethod
    def _read_fields(cls, data, at):
        values = {key: _field(data, at, key, TEXT) for key in ("features", "label", "reference")}
        if not values["label"].strip():
            raise at.key("label").error("must name the distance, got an empty string")
        if values["features"] != INCEPTION_FEATURES and "FID" in values["label"]:
            raise at.key("label").error(
                f"is {values['label']!r}, but the distance was computed on {values['features']!r} features: only "
                "Inception features give FID; name it as a Frechet distance on those features")
        points = _shift_sizes(_or_null(_list_of(DistancePoint.read)))
        return {**values, "num_images": _field(data, at, "num_images", INTEGER),
                "reconstruction": _field(data, at, "reconstruction", _map_of(NUMBER_OR_NULL)),
                "perturbation": _field(data, at, "perturbation", _map_of(points))}


@dataclass(frozen=True, kw_only=True)
class MethodRecovery(Record):
    """How well a method's top-k attributes recover the known generative factors (the rest, such as each
    attribute's factor changes, is kept in `extra`)."""

    precision: Number | None
    distinct_factors: int | None
    distinct_causal: int | None
    factors: tuple[str, ...]  # the factor each top attribute changes, in rank order

    @classmethod
    def _read_fields(cls, data, at):
        return {"precision": _field(data, at, "precision", NUMBER_OR_NULL),
                "distinct_factors": _field(data, at, "distinct_factors", _or_null(INTEGER)),
                "distinct_causal": _field(data, at, "distinct_causal", _or_null(INTEGER)),
                "factors": _field(data, at, "factors", _list_of(TEXT))}


@dataclass(frozen=True, kw_only=True)
class Recovery(Record):
    k: int
    causal: tuple[str, ...]
    factors: tuple[str, ...]
    probe_quality: Mapping[str, Number | None]
    methods: Mapping[str, MethodRecovery]

    @classmethod
    def _read_fields(cls, data, at):
        return {"k": _field(data, at, "k", INTEGER),
                "causal": _field(data, at, "causal", _list_of(TEXT)),
                "factors": _field(data, at, "factors", _list_of(TEXT)),
                "probe_quality": _field(data, at, "probe_quality", _map_of(NUMBER_OR_NULL)),
                "methods": _field(data, at, "methods", _map_of(MethodRecovery.read))}


@dataclass(frozen=True, kw_only=True)
class BenchmarkResults(Record):
    """Everything one benchmark run measured. Sections default to None: the run did not produce them."""

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    run: Run
    dataset: Dataset
    classifier: Classifier | None = None
    methods: Mapping[str, Method]  # in the order the benchmark ran them: the order of every table and figure
    generators: Mapping[str, Generator] | None = None
    reconstruction_grid: str | None = None  # a picture in the report folder
    sufficiency: Sufficiency | None = None
    table3: Table3 | None = None
    fid: Distance | None = None
    timings: Mapping[str, Number | None] | None = None  # seconds per stage
    settings: Mapping[str, Any] | None = None
    recovery: Recovery | None = None

    @classmethod
    def from_dict(cls, data: object, source: str = "benchmark results") -> BenchmarkResults:
        """The results in `data` (metrics.json as loaded, or the benchmark's dict), checked; `source` names them in
        error messages."""
        if not isinstance(data, Mapping):
            raise UserError(f"{source}: the benchmark results must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise UserError(f"{source}: format is {data.get('format')!r}, expected {FORMAT!r}: pass the "
                            "metrics.json written by `stylex benchmark`")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise UserError(f"{source}: format_version {version!r} is not supported (this version of stylex-suite "
                            f"reads version {FORMAT_VERSION}); re-run the benchmark with this version")
        return cls.read(data, _At(source))

    @classmethod
    def _read_fields(cls, data, at):
        sections: dict[str, tuple[Reader, bool]] = {
            "format": (TEXT, False), "format_version": (INTEGER, True), "run": (Run.read, False),
            "dataset": (Dataset.read, False), "classifier": (Classifier.read, True),
            "methods": (_map_of(Method.read), False), "generators": (_map_of(Generator.read), True),
            "reconstruction_grid": (TEXT, True), "sufficiency": (Sufficiency.read, True),
            "table3": (Table3.read, True), "fid": (Distance.read, True),
            "timings": (_map_of(NUMBER_OR_NULL), True), "settings": (_object, True),
            "recovery": (Recovery.read, True)}
        values = {key: _field(data, at, key, read, optional=optional) for key, (read, optional) in sections.items()}
        if values["format_version"] is None:  # results written before the version was recorded
            del values["format_version"]
        return values

    def ordered(self, keys: Iterable[str]) -> list[str]:
        """`keys` (of methods, or of generators, which share their method's key) in the order of the methods in the
        results, any other keys after them in their own order, each once."""
        unique = list(dict.fromkeys(keys))
        return [key for key in self.methods if key in unique] + [key for key in unique if key not in self.methods]

    def label(self, key: str) -> str:
        """The display name of a method, or of a generator through the method of the same key; else the key."""
        method = self.methods.get(key)
        return key if method is None else method.label


def read_results(path: str | Path) -> BenchmarkResults:
    """A metrics.json written by the benchmark, checked."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error}); pass the metrics.json written by `stylex benchmark`"
                        ) from None
    return BenchmarkResults.from_dict(data, source=str(path))
