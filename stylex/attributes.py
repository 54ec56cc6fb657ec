"""Attributes and attribute sets (`attributes/<method>.json`): what every method finds and every evaluation reads.

An attribute moves one conv style coordinate in one direction; an attribute set holds a method's attributes per
target class (and, for two classes, AttFind's merged list), the edit rule they are applied with, and where they
came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stylex.artifacts import DamagedArtifact, read_json, write_json
from stylex.editing import TOWARD_EXTREMES, EditRule
from stylex.errors import UserError
from stylex.layout import StyleLayout

ATTRIBUTES_FORMAT = "stylex-attributes"


@dataclass(frozen=True)
class Attribute:
    """A StyleSpace attribute: move conv coordinate `coordinate` toward its min (direction 0) or max (1)."""

    coordinate: int
    direction: int
    mean_effect: float  # mean clipped effect on the target logit over the images still unexplained when picked
    target: int | None = None  # the class whose logit this edit raises (the class it moves images toward)
    score: float | None = None  # binary merge: the official re-ranking score

    def flipped(self, target: int | None = None) -> Attribute:
        return Attribute(self.coordinate, 1 - self.direction, self.mean_effect, target, self.score)

    @property
    def edit(self) -> tuple[int, int]:
        return self.coordinate, self.direction

    def describe(self, layout: StyleLayout) -> dict:
        name, channel = layout.locate(self.coordinate)
        return {**asdict(self), "layer": name, "channel": channel,
                "direction_name": "toward max" if self.direction else "toward min"}

    def title(self, layout: StyleLayout, classes: list[str]) -> str:
        name, channel = layout.locate(self.coordinate)
        arrow = "↑" if self.direction else "↓"
        return f"{name} ch {channel} {arrow} (toward {classes[self.target]})"


@dataclass
class AttributeSet:
    """Everything a method found, in the format every evaluation reads (AttFind, Wu et al., ...).

    per_class[c]: attributes that move images toward class c, best first. For two classes, `merged` is the
    official merged list (directions toward class 0), and `toward(c)` derives both classes' lists from it.
    `edit_rule`: how the attributes move styles (recorded in the file's settings)."""

    method: str
    classes: list[str]
    per_class: dict[int, list[Attribute]]
    merged: list[Attribute] | None
    layout: dict  # StyleLayout.summary() of the generator the coordinates index
    settings: dict
    provenance: dict
    edit_rule: EditRule = field(default=TOWARD_EXTREMES)

    def toward(self, target: int) -> list[Attribute]:
        """Attributes that move an image toward class `target`, best first."""
        if self.merged is not None:
            return list(self.merged) if target == 0 else [a.flipped(target) for a in self.merged]
        return list(self.per_class[target])

    def ranked(self) -> list[Attribute]:
        """What figures and studies show, best first: the merged list (binary) or the per-class lists
        interleaved (the best of each class, then the second of each, ...)."""
        if self.merged is not None:
            return list(self.merged)
        lists = [self.per_class[c] for c in sorted(self.per_class)]
        return [lst[rank] for rank in range(max(map(len, lists), default=0)) for lst in lists if rank < len(lst)]

    def format(self) -> str:
        """The ranked attributes as text, one line each."""
        layout = StyleLayout.from_summary(self.layout)
        images = self.settings.get("images_per_class")
        lines = [f"{self.method}: images per predicted class {dict(zip(self.classes, images, strict=True))}"
                 if images is not None else f"{self.method}:"]
        for rank, a in enumerate(self.ranked(), 1):
            name, channel = layout.locate(a.coordinate)
            score = f"  score {a.score:+.3f}" if a.score is not None else ""
            lines.append(f"  {rank:2d}. {name} ch {channel:<4d} {'max' if a.direction else 'min'} -> "
                         f"{self.classes[a.target]:<16s} mean effect {a.mean_effect:.3f}{score}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        layout = StyleLayout.from_summary(self.layout)

        def rows(attributes: Sequence[Attribute]) -> list[dict]:
            return [{"rank": i + 1, **a.describe(layout)} for i, a in enumerate(attributes)]

        return {"format": ATTRIBUTES_FORMAT, "method": self.method, "classes": self.classes,
                "merged": None if self.merged is None else rows(self.merged),
                "per_class": {self.classes[c]: rows(v) for c, v in self.per_class.items()},
                "settings": {**self.settings, **self.edit_rule.to_settings()}, "provenance": self.provenance,
                "layout": self.layout}

    def save(self, path: Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> AttributeSet:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"no attribute file at {path}; run `stylex attfind --run RUN_DIR` first")
        try:
            data = read_json(path)
        except DamagedArtifact as err:
            raise UserError(f"{path} is {err.reason}; delete it and rerun stylex attfind") from None
        if not isinstance(data, dict) or data.get("format") != ATTRIBUTES_FORMAT:
            raise UserError(f"{path} is not a stylex attribute file")
        fields = ("coordinate", "direction", "mean_effect", "target", "score")

        def parse(rows: list[dict]) -> list[Attribute]:
            return [Attribute(**{f: row[f] for f in fields}) for row in rows]

        classes = data["classes"]
        rule = EditRule.from_settings(data["settings"])
        settings = {k: v for k, v in data["settings"].items() if k not in rule.to_settings()}
        return cls(data["method"], classes, {classes.index(name): parse(v) for name, v in data["per_class"].items()},
                   None if data["merged"] is None else parse(data["merged"]), data["layout"], settings,
                   data["provenance"], rule)
