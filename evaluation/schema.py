"""The benchmark results as typed objects: what `stylex benchmark` writes to metrics.json (format
"stylex-benchmark", version 1) and what the report reads.

Results are checked once, when read (`BenchmarkResults.from_dict`, `read_results`): a missing or malformed field is
a UserError that names the field and where the results came from, so the code that presents them needs no defensive
checks of its own. `to_dict()` gives back the JSON as it was read, key order included (keys this schema does not
interpret are kept as they are), so a report re-rendered from metrics.json writes the same file again.

Methods are open-ended: the results hold whichever methods were run, each with its own label, generator (variant)
and edit rule; a method without image-level strategies has null curves for them. Sections a run did not produce
(no "fid" when the distance was skipped, no "recovery" or "off_target" off the shapes dataset, no metric that
`--metrics` left out) are None.

Naming rule (DESIGN.md section 7): a Frechet distance on anything but InceptionV3 features is never called FID;
results that label such a distance "FID" are rejected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from evaluation.records import (
    INTEGER,
    NUMBER,
    NUMBER_OR_NULL,
    SCALAR,
    TEXT,
    At,
    Reader,
    Readers,
    Record,
    list_of,
    map_of,
    or_null,
    read_field,
    read_object,
)
from stylex.errors import UserError

FORMAT = "stylex-benchmark"
FORMAT_VERSION = 1
INCEPTION_FEATURES = "inception"

Number = int | float


def _shift_sizes(read: Reader) -> Reader:
    """A map keyed by shift sizes; JSON keys are strings, so each must read as a number ("0.5", "1.0")."""
    def read_shifts(value: object, at: At) -> dict:
        shifts = map_of(read)(value, at)
        for shift in shifts:
            try:
                float(shift)
            except ValueError:
                raise at.entry(shift).error("must be keyed by a shift size such as '1.0'") from None
        return shifts

    return read_shifts


# ---------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class Run(Record):
    name: str
    config: str
    run_dir: str
    code_version: str
    device: str
    created: str
    wall_time_s: Number | None = None
    READ: ClassVar[Readers] = {**dict.fromkeys(("name", "config", "run_dir", "code_version", "device", "created"),
                                             TEXT), "wall_time_s": NUMBER}


@dataclass(frozen=True, kw_only=True)
class Dataset(Record):
    name: str
    classes: tuple[str, ...]
    resolution: int | None = None
    READ: ClassVar[Readers] = {"name": TEXT, "classes": list_of(TEXT), "resolution": INTEGER}


@dataclass(frozen=True, kw_only=True)
class Classifier(Record):
    arch: str
    test_accuracy: Number | None
    oracle_arch: str | None = None
    oracle_test_accuracy: Number | None = None
    READ: ClassVar[Readers] = {"arch": TEXT, "test_accuracy": NUMBER_OR_NULL, "oracle_arch": TEXT,
                               "oracle_test_accuracy": NUMBER}


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
    READ: ClassVar[Readers] = {"rank": INTEGER, "layer": TEXT, "channel": INTEGER, "direction": TEXT, "target": TEXT,
                               "score": NUMBER_OR_NULL, "mean_effect": NUMBER,
                               **dict.fromkeys(("panel", "flicker", "sweep"), TEXT)}


@dataclass(frozen=True, kw_only=True)
class Method(Record):
    label: str
    variant: str  # the key of the generator the method explains
    edit_rule: str
    attributes: tuple[Attribute, ...] = ()
    description: str | None = None  # what the method does, in a phrase (the report's reading guide)
    READ: ClassVar[Readers] = {"label": TEXT, "variant": TEXT, "edit_rule": TEXT,
                               "attributes": list_of(Attribute.read), "description": TEXT}


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
                "gate_failures": read_field(data, at, "gate_failures", list_of(TEXT), optional=True)}

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
    READ: ClassVar[Readers] = dict.fromkeys(("fraction", "ci_low", "ci_high"), NUMBER_OR_NULL)


@dataclass(frozen=True, kw_only=True)
class CurvePoint(Interval):
    """Sufficiency with the top k attributes changed: `flipped` of `images` images flipped."""

    k: int
    flipped: int
    images: int
    READ: ClassVar[Readers] = {**dict.fromkeys(("k", "flipped", "images"), INTEGER), **Interval.READ}


# {method: {strategy ("class_level", "independent", "subset"): points, or None where the method has no such strategy}}
Curves = dict[str, dict[str, tuple[CurvePoint, ...] | None]]


@dataclass(frozen=True, kw_only=True)
class Sufficiency(Record):
    num_images: int
    shift_size: Number
    max_k: int
    curves: Curves
    READ: ClassVar[Readers] = {"num_images": INTEGER, "shift_size": NUMBER, "max_k": INTEGER,
                               "curves": map_of(map_of(or_null(list_of(CurvePoint.read))))}


@dataclass(frozen=True, kw_only=True)
class Table3Row(Record):
    """One dataset's row of Table 3: a sufficiency interval per method key (None: the method has no value)."""

    dataset: str
    cells: Mapping[str, Interval | None] = field(default_factory=dict)

    @classmethod
    def _read_fields(cls, data, at):
        cells = {key: or_null(Interval.read)(value, at.key(key)) for key, value in data.items() if key != "dataset"}
        return {"dataset": read_field(data, at, "dataset", TEXT), "cells": cells}

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
    READ: ClassVar[Readers] = {"k": INTEGER, "strategy": TEXT, "rows": list_of(Table3Row.read)}


@dataclass(frozen=True, kw_only=True)
class DistancePoint(Record):
    """The distance to the real images with the top i attributes changed."""

    i: int
    value: Number | None
    READ: ClassVar[Readers] = {"i": INTEGER, "value": NUMBER_OR_NULL}


@dataclass(frozen=True, kw_only=True)
class Distance(Record):
    """The Frechet distance between real and generated images ("fid" in the results), under `label`."""

    features: str
    label: str
    num_images: int
    reference: str
    reconstruction: Mapping[str, Number | None]  # by generator key
    perturbation: Mapping[str, Mapping[str, tuple[DistancePoint, ...] | None]]  # {method: {shift size: points}}
    READ: ClassVar[Readers] = {"features": TEXT, "label": TEXT, "num_images": INTEGER, "reference": TEXT,
                               "reconstruction": map_of(NUMBER_OR_NULL),
                               "perturbation": map_of(_shift_sizes(or_null(list_of(DistancePoint.read))))}

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
        values = super()._read_fields(data, at)
        if not values["label"].strip():
            raise at.key("label").error("must name the distance, got an empty string")
        if values["features"] != INCEPTION_FEATURES and "FID" in values["label"]:
            raise at.key("label").error(
                f"is {values['label']!r}, but the distance was computed on {values['features']!r} features: only "
                "Inception features give FID; name it as a Frechet distance on those features")
        return values


@dataclass(frozen=True, kw_only=True)
class MethodRecovery(Record):
    """How well a method's top-k attributes recover the known generative factors (the rest, such as each
    attribute's factor changes, is kept in `extra`)."""

    precision: Number | None
    distinct_factors: int | None
    distinct_causal: int | None
    factors: tuple[str, ...]  # the factor each top attribute changes, in rank order
    READ: ClassVar[Readers] = {"precision": NUMBER_OR_NULL, "distinct_factors": or_null(INTEGER),
                               "distinct_causal": or_null(INTEGER), "factors": list_of(TEXT)}


@dataclass(frozen=True, kw_only=True)
class Recovery(Record):
    k: int
    causal: tuple[str, ...]
    factors: tuple[str, ...]
    probe_quality: Mapping[str, Number | None]
    methods: Mapping[str, MethodRecovery]
    READ: ClassVar[Readers] = {"k": INTEGER, "causal": list_of(TEXT), "factors": list_of(TEXT),
                               "probe_quality": map_of(NUMBER_OR_NULL),
                               "methods": map_of(MethodRecovery.read)}


# ---------------------------------------------------------------------------------------------------- the battery
# The counterfactual metrics of issue 14, each a section a run may lack; the layouts are the metric modules'
# (evaluation/metrics/), checked here like every other section.


@dataclass(frozen=True, kw_only=True)
class Mean(Record):
    """A mean over counterfactuals, its standard deviation and the normal 95% interval of the mean."""

    mean: Number
    std: Number
    ci_low: Number
    ci_high: Number
    READ: ClassVar[Readers] = dict.fromkeys(("mean", "std", "ci_low", "ci_high"), NUMBER)


@dataclass(frozen=True, kw_only=True)
class FaithfulMethod(Record):
    """A method's sufficiency over the `kept` of `images` images whose reconstruction keeps the real image's
    decision (every point counts `kept` images); a strategy the method lacks is None."""

    kept: int
    images: int
    curves: Mapping[str, tuple[CurvePoint, ...] | None]
    READ: ClassVar[Readers] = {"kept": INTEGER, "images": INTEGER,
                               "curves": map_of(or_null(list_of(CurvePoint.read)))}


@dataclass(frozen=True, kw_only=True)
class FaithfulJudge(Record):
    methods: Mapping[str, FaithfulMethod]
    READ: ClassVar[Readers] = {"methods": map_of(FaithfulMethod.read)}


@dataclass(frozen=True, kw_only=True)
class FaithfulSufficiency(Record):
    """Sufficiency over the images whose reconstruction keeps the decision, per judge of that decision: "explained"
    (the explained classifier) and "oracle" (the independent classifier; absent when the run has none)."""

    shift_size: Number
    max_k: int
    judges: Mapping[str, FaithfulJudge]
    READ: ClassVar[Readers] = {"shift_size": NUMBER, "max_k": INTEGER, "judges": map_of(FaithfulJudge.read)}


@dataclass(frozen=True, kw_only=True)
class ClassLevelMetric(Record):
    """A metric of the class-level counterfactuals: per method, its points in k order, each with its `k`."""

    strategy: str
    shift_size: Number
    methods: Mapping[str, tuple[Any, ...]]


_CLASS_LEVEL: Readers = {"strategy": TEXT, "shift_size": NUMBER}


@dataclass(frozen=True, kw_only=True)
class ValidityPoint(Interval):
    """Of `images` counterfactuals, `flipped` changed the explained classifier's decision and `confirmed` of those
    the oracle's too: fraction = confirmed / images (Wilson 95%), agreement = confirmed / flipped (None: no flip)."""

    k: int
    images: int
    flipped: int
    confirmed: int
    agreement: Number | None
    READ: ClassVar[Readers] = {**dict.fromkeys(("k", "images", "flipped", "confirmed"), INTEGER), **Interval.READ,
                               "agreement": NUMBER_OR_NULL}


@dataclass(frozen=True, kw_only=True)
class Validity(ClassLevelMetric):
    methods: Mapping[str, tuple[ValidityPoint, ...]]
    READ: ClassVar[Readers] = {**_CLASS_LEVEL, "methods": map_of(list_of(ValidityPoint.read))}


@dataclass(frozen=True, kw_only=True)
class CoutPoint(Mean):
    """COUT (Khorram & Fuxin 2022, in [-1, 1]) of `n` counterfactuals with the top k attributes changed."""

    k: int
    n: int
    READ: ClassVar[Readers] = {"k": INTEGER, **Mean.READ, "n": INTEGER}


@dataclass(frozen=True, kw_only=True)
class Cout(ClassLevelMetric):
    steps: int
    methods: Mapping[str, tuple[CoutPoint, ...]]
    READ: ClassVar[Readers] = {"steps": INTEGER, **_CLASS_LEVEL, "methods": map_of(list_of(CoutPoint.read))}


@dataclass(frozen=True, kw_only=True)
class ProximityPoint(Record):
    """L1 and LPIPS of `n` counterfactuals with the top k attributes changed to the reconstructions they edit."""

    k: int
    l1: Mean
    lpips: Mean
    n: int
    READ: ClassVar[Readers] = {"k": INTEGER, "l1": Mean.read, "lpips": Mean.read, "n": INTEGER}


@dataclass(frozen=True, kw_only=True)
class Proximity(ClassLevelMetric):
    lpips_mode: str
    methods: Mapping[str, tuple[ProximityPoint, ...]]
    READ: ClassVar[Readers] = {"lpips_mode": TEXT, **_CLASS_LEVEL,
                               "methods": map_of(list_of(ProximityPoint.read))}


@dataclass(frozen=True, kw_only=True)
class OffTargetPoint(Record):
    """Per counterfactual with the top k attributes changed: the non-causal factors the probes see change
    (`off_target`), whether a causal one changed, and the share of counterfactuals in which each factor changed."""

    k: int
    n: int
    off_target: Mean
    causal_changed: Interval
    per_factor: Mapping[str, Number]
    READ: ClassVar[Readers] = {"k": INTEGER, "n": INTEGER, "off_target": Mean.read,
                               "causal_changed": Interval.read, "per_factor": map_of(NUMBER)}


@dataclass(frozen=True, kw_only=True)
class OffTarget(ClassLevelMetric):
    min_change: Number
    causal: tuple[str, ...]
    factors: tuple[str, ...]
    methods: Mapping[str, tuple[OffTargetPoint, ...]]
    READ: ClassVar[Readers] = {**_CLASS_LEVEL, "min_change": NUMBER, "causal": list_of(TEXT),
                               "factors": list_of(TEXT), "methods": map_of(list_of(OffTargetPoint.read))}


@dataclass(frozen=True, kw_only=True)
class Timing(Record):
    seconds_per_image: Number
    images: int
    READ: ClassVar[Readers] = {"seconds_per_image": NUMBER, "images": INTEGER}


@dataclass(frozen=True, kw_only=True)
class Runtime(Record):
    """Seconds per explained image on `device`, per method and strategy (image-level ones for image-level methods)."""

    device: str
    images: int
    methods: Mapping[str, Mapping[str, Timing]]
    READ: ClassVar[Readers] = {"device": TEXT, "images": INTEGER, "methods": map_of(map_of(Timing.read))}


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
    faithful_sufficiency: FaithfulSufficiency | None = None
    validity: Validity | None = None
    cout: Cout | None = None
    proximity: Proximity | None = None
    off_target: OffTarget | None = None
    runtime: Runtime | None = None

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
        return cls.read(data, At(source))

    READ: ClassVar[Readers] = {
        "format": TEXT, "format_version": INTEGER, "run": Run.read, "dataset": Dataset.read,
        "classifier": Classifier.read, "methods": map_of(Method.read), "generators": map_of(Generator.read),
        "reconstruction_grid": TEXT, "sufficiency": Sufficiency.read, "table3": Table3.read, "fid": Distance.read,
        "timings": map_of(NUMBER_OR_NULL), "settings": read_object, "recovery": Recovery.read,
        "faithful_sufficiency": FaithfulSufficiency.read, "validity": Validity.read, "cout": Cout.read,
        "proximity": Proximity.read, "off_target": OffTarget.read, "runtime": Runtime.read}

    def ordered(self, keys: Iterable[str]) -> list[str]:
        """`keys` (of methods, or of generators, which share their method's key) in the order of the methods in the
        results, any other keys after them in their own order, each once."""
        unique = list(dict.fromkeys(keys))
        return [key for key in self.methods if key in unique] + [key for key in unique if key not in self.methods]

    def label(self, key: str) -> str:
        """The display name of a method, or of a generator through the method of the same key; else the key."""
        method = self.methods.get(key)
        return key if method is None else method.label


RESULTS_FILE = "metrics.json"
WHAT_TO_PASS = ("pass a run directory (runs/NAME), its report folder or the metrics.json written by "
                "`stylex benchmark`")


def results_file(source: str | Path) -> Path:
    """The metrics.json a source names: the file itself, else a run directory's report/metrics.json, else a report
    folder's metrics.json. A UserError names the source and what to pass when there is none."""
    path = Path(source)
    if path.is_file() or path.suffix == ".json":
        candidates = [path]
    else:
        candidates = [path / "report" / RESULTS_FILE, path / RESULTS_FILE]
    found = next((candidate for candidate in candidates if candidate.is_file()), None)
    if found is None:
        looked = " or ".join(str(candidate) for candidate in candidates)
        raise UserError(f"{source}: no benchmark results there (looked for {looked}); {WHAT_TO_PASS}")
    return found


def read_results(source: str | Path) -> BenchmarkResults:
    """The results a source names (`results_file`), checked."""
    path = results_file(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error}); {WHAT_TO_PASS}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file; {WHAT_TO_PASS}") from None
    return BenchmarkResults.from_dict(data, source=str(path))
