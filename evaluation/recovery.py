"""Ground-truth recovery (DESIGN section 7, shapes only): which generative factor does each attribute change?

The shapes dataset is drawn from known factors (`stylex.data.shapes.FACTOR_NAMES`) and its label depends on
`CAUSAL_FACTORS` (size and spot) only. A good explanation's top attributes should therefore change the causal
factors, and a diverse one should change several of them. Generated images carry no factor labels, so we read
the factors back with **factor probes**: one small CNN (shared trunk, one head per factor) trained on real
shapes images to predict every factor.

For one attribute: render the reconstructions of the evaluation images that are not already of the attribute's
target class, render them again with the attribute's single edit (through `Method.edit`, so every method is
edited by its own rule), run the probes on both and measure, per factor, the mean change **in units of the
typical difference between two random training images** (`FactorProbes.reference`): 1.0 means "as much as
swapping this factor with that of a random image". The unit is computed from the true factors, i.e. what a
perfect probe would report. A probe that reads a factor poorly predicts shrunken values, so its changes come out
smaller, never amplified: normalizing by the probe's own (shrunken) spread instead let a weak rotation probe's
noise outrank a real size change. The attribute's factor is the one with the largest normalized change, or
"none" when even that stays below `min_change` (a dead attribute, or one that only adds generator artifacts).

Per-factor change on one image (before -> after), all in the probes' outputs:
    size, pos_x, pos_y, background   |delta| of the predicted value (natural units)
    shape                            total-variation distance of the class-probability vectors
    spot                             |delta| of the predicted spot probability
    hue                              distance between the predicted (cos, sin) of 2*pi*hue vectors
    rotation                         distance between predicted phase vectors of the same polygon (below)
Distances of predicted vectors (rather than of decoded angles) keep an unsure probe, whose vectors shrink
toward 0, from turning small pixel changes into large angle jumps.

Rotation is kept, not excluded: a generator coordinate that turns shapes is a real (non-causal) factor and
should not be labelled "none" or "shape". Only the visible rotation can be learnt: a square repeats every 1/4
turn and a triangle every 1/3, and a circle has none. The probes therefore have one phase head per polygon,
predicting (cos, sin) of 2*pi*period*rotation, trained on that polygon's images only. A rotation change counts
only to the extent an image is the same polygon before and after: per image and polygon the weight is
min(p_before, p_after) of that polygon, and the change is the weighted mean phase distance (0 when less than one
image's worth of weight remains, i.e. when the edit leaves almost no polygon in place).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evaluation.methods import Method
from stylex.artifacts import DamagedArtifact, cached, fingerprint, load_tagged, save_tagged
from stylex.attributes import Attribute
from stylex.data.base import ImageDataset, to_float
from stylex.data.shapes import CAUSAL_FACTORS, FACTOR_NAMES, SHAPE_NAMES
from stylex.editing import render
from stylex.errors import UserError
from stylex.model import StylexModel
from stylex.progress import progress_bar

log = logging.getLogger("stylex.recovery")

PROBES_FORMAT = "stylex-factor-probes"
REGRESSION_FACTORS = ("size", "pos_x", "pos_y", "background")
# polygon index in SHAPE_NAMES -> how many times its outline repeats per full turn
POLYGON_PERIODS = {SHAPE_NAMES.index("square"): 4, SHAPE_NAMES.index("triangle"): 3}
HEAD_OUTPUTS = {"shape": len(SHAPE_NAMES), "spot": 1, "hue": 2, "rotation": 2 * len(POLYGON_PERIODS),
                **{name: 1 for name in REGRESSION_FACTORS}}
NO_FACTOR = "none"
# Threshold for "this attribute changes some factor": a quarter of a random swap. On real 16 px renders (600-step
# probes), a full change of one factor moved most unrelated factors by 0.0-0.2 in these units; the spot also moved
# shape and size by ~0.3 and a size change moved shape and rotation by ~0.5, riding along with a true change of
# 1.8-2.2 that wins the argmax. So a largest change below 0.25 is no more than such cross-talk, while flipping the
# spot on an eighth of the images, or growing every shape by 0.022 of the side (random pairs differ by 0.085),
# already reaches it.
DEFAULT_MIN_CHANGE = 0.25
REFERENCE_IMAGES = 512  # images whose all-pairs differences define `FactorProbes.reference`
PREDICT_BATCH = 256
_COLUMN = {name: i for i, name in enumerate(FACTOR_NAMES)}


@dataclass
class ProbeSettings:
    """How the factor probes are trained; stored with them so a cached probe is reused only when it matches."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 32
    seed: int = 0


def _angle_vector(turns: Tensor) -> Tensor:
    """[N] fractions of a turn -> [N, 2] (cos, sin) unit vectors."""
    angle = 2.0 * math.pi * turns
    return torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


def _vector_turns(vector: Tensor) -> Tensor:
    """[N, 2] (cos, sin) vectors -> [N] fractions of a turn in [0, 1)."""
    return torch.remainder(torch.atan2(vector[:, 1], vector[:, 0]) / (2.0 * math.pi), 1.0)


class FactorProbes(nn.Module):
    """A small CNN reading the shapes factors back from images (the module docstring says what for).

    Trunk: input plus two coordinate channels (position must survive pooling), three 3x3 convs (stride 1, 2,
    2), pooled to 4x4 and a hidden layer; then one linear head per factor. Regression heads predict
    standardized targets (`normalization` holds the training mean and std per factor); `predict` returns
    natural units. `reference[f]` is the mean change measure of factor f between two random training images,
    from their true factors (see `factor_changes`): the unit every change is divided by."""

    factor_names = FACTOR_NAMES

    def __init__(self, resolution: int, channels: int, settings: ProbeSettings,
                 normalization: dict[str, tuple[float, float]] | None = None,
                 reference: dict[str, float] | None = None, data: dict | None = None) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise UserError(f"factor probes read 1- or 3-channel images, got {channels} channels")
        self.resolution, self.channels, self.settings = int(resolution), int(channels), settings
        self.normalization = dict(normalization or {name: (0.0, 1.0) for name in REGRESSION_FACTORS})
        self.reference = dict(reference or {})
        self.data = dict(data or {})  # fingerprint of the training images, for the cache
        width = settings.width
        self.trunk = nn.Sequential(
            nn.Conv2d(channels + 2, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, 4 * width), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(4 * width, size) for name, size in HEAD_OUTPUTS.items()})
        line = torch.linspace(-1.0, 1.0, self.resolution)
        self.register_buffer("coordinates", torch.stack(torch.meshgrid(line, line, indexing="xy")), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.coordinates.device

    def check_images(self, images: Tensor) -> None:
        """Probes only read images like the ones they were trained on; anything else would be guessed."""
        expected = (self.channels, self.resolution, self.resolution)
        if not images.is_floating_point():
            raise UserError(f"the factor probes read float images in [-1, 1], got {images.dtype}; convert uint8 "
                            "images with stylex.data.to_float")
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise UserError(f"the factor probes were trained on {self.resolution} px {self.channels}-channel images "
                            f"[B, {', '.join(map(str, expected))}], got {list(images.shape)}; train them on the "
                            "run's own dataset settings (data.resolution, data.channels)")

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Raw head outputs (logits, standardized regressions, unnormalized vectors) for [B, C, H, W] images."""
        grid = self.coordinates.expand(images.shape[0], -1, -1, -1)
        features = self.trunk(torch.cat([images, grid], dim=1))
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def outputs(self, images: Tensor) -> dict[str, Tensor]:
        """The probe space the change measures work in, on CPU: shape probabilities [B, 3], spot probability
        [B], hue vector [B, 2], rotation phase vectors [B, polygons, 2], regressions in natural units [B]."""
        self.check_images(images)
        parts = []
        for start in range(0, images.shape[0], PREDICT_BATCH):
            raw = self(images[start:start + PREDICT_BATCH].to(self.device, torch.float32))
            parts.append({name: value.float().cpu() for name, value in raw.items()})
        if not parts:
            parts = [{name: torch.empty(0, size) for name, size in HEAD_OUTPUTS.items()}]
        raw = {name: torch.cat([p[name] for p in parts]) for name in HEAD_OUTPUTS}
        out = {"shape": raw["shape"].softmax(dim=1), "spot": raw["spot"][:, 0].sigmoid(), "hue": raw["hue"],
               "rotation": raw["rotation"].view(-1, len(POLYGON_PERIODS), 2)}
        for name in REGRESSION_FACTORS:
            mean, std = self.normalization[name]
            out[name] = raw[name][:, 0] * std + mean
        return out

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Factors in natural units: shape class probabilities [B, 3]; spot probability; hue in [0, 1);
        rotation as a fraction of a full turn modulo the symmetry of the most probable polygon (in [0, 1/4) for
        squares, [0, 1/3) for triangles, 0 for circles, whose rotation is invisible); size, positions and
        background as in `stylex.data.shapes`."""
        out = self.outputs(images)
        predicted_shape = out["shape"].argmax(dim=1)
        rotation = torch.zeros(predicted_shape.shape[0])
        for slot, (shape, period) in enumerate(POLYGON_PERIODS.items()):
            turns = _vector_turns(out["rotation"][:, slot]) / period
            rotation = torch.where(predicted_shape == shape, turns, rotation)
        return {"shape": out["shape"], "size": out["size"], "hue": _vector_turns(out["hue"]),
                "pos_x": out["pos_x"], "pos_y": out["pos_y"], "rotation": rotation,
                "background": out["background"], "spot": out["spot"]}

    @torch.no_grad()
    def quality(self, dataset: ImageDataset) -> dict[str, float]:
        """How well the probes read each factor on `dataset` (pass held-out images, e.g. the test split):
        accuracy for shape and spot; R^2 for the regressions; R^2 of the (cos, sin) vectors for hue and for
        rotation (polygons only, each against its own symmetry period). Chance is 1/3 (shape), the majority
        share (spot) and 0 (R^2)."""
        factors = _factors_of(dataset)
        out = self.outputs(_all_images(dataset))
        scores = {"shape": (out["shape"].argmax(dim=1) == factors[:, _COLUMN["shape"]].round().long()).float(),
                  "spot": ((out["spot"] >= 0.5) == (factors[:, _COLUMN["spot"]] >= 0.5)).float()}
        result = {name: float(value.mean()) for name, value in scores.items()}
        for name in REGRESSION_FACTORS:
            result[name] = _r_squared(out[name][:, None], factors[:, _COLUMN[name], None])
        result["hue"] = _r_squared(out["hue"], _angle_vector(factors[:, _COLUMN["hue"]]))
        predicted, target = _rotation_pairs(out["rotation"], factors)
        result["rotation"] = _r_squared(predicted, target) if len(target) > 1 else float("nan")
        return {name: result[name] for name in FACTOR_NAMES}

    def save(self, path: Path) -> Path:
        """A dict of tensors and plain values (loadable with weights_only=True), written atomically."""
        return save_tagged({"state": self.state_dict(), "settings": asdict(self.settings),
                            "factor_names": list(self.factor_names), "resolution": self.resolution,
                            "channels": self.channels,
                            "normalization": {k: list(v) for k, v in self.normalization.items()},
                            "reference": self.reference, "data": self.data}, path, PROBES_FORMAT)

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu") -> FactorProbes:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"no factor probes at {path}")
        try:
            return cls.read(path, device)
        except DamagedArtifact as err:
            raise UserError(f"{path} is not a readable factor-probe file ({err.reason}); delete it to retrain the "
                            "probes") from None

    @classmethod
    def read(cls, path: Path, device: str | torch.device = "cpu") -> FactorProbes:
        """The probes in a probe file; DamagedArtifact when it is unreadable or holds other factors."""
        payload = load_tagged(path, PROBES_FORMAT)
        if tuple(payload["factor_names"]) != FACTOR_NAMES:
            raise DamagedArtifact(path, f"it holds probes for factors {payload['factor_names']}, this code reads "
                                        f"{list(FACTOR_NAMES)}")
        probes = cls(payload["resolution"], payload["channels"], ProbeSettings(**payload["settings"]),
                     {k: tuple(v) for k, v in payload["normalization"].items()}, payload["reference"],
                     payload["data"])
        probes.load_state_dict(payload["state"])
        return probes.to(device).eval().requires_grad_(False)


def _r_squared(predicted: Tensor, target: Tensor) -> float:
    """1 - SSE / SST over all columns, around the target's own column means."""
    residual = ((predicted - target) ** 2).sum()
    total = ((target - target.mean(dim=0, keepdim=True)) ** 2).sum()
    return float(1.0 - residual / total) if total > 0 else float("nan")


def _rotation_pairs(rotation: Tensor, factors: Tensor) -> tuple[Tensor, Tensor]:
    """(predicted, target) phase vectors [M, 2] for the polygon images, each from its own polygon's head."""
    shapes = factors[:, _COLUMN["shape"]].round().long()
    predicted, target = [], []
    for slot, (shape, period) in enumerate(POLYGON_PERIODS.items()):
        rows = shapes == shape
        predicted.append(rotation[rows, slot])
        target.append(_angle_vector(period * factors[rows, _COLUMN["rotation"]]))
    return torch.cat(predicted), torch.cat(target)


def _factors_of(dataset: ImageDataset) -> Tensor:
    factors = getattr(dataset, "factors", None)
    names = tuple(getattr(dataset, "factor_names", ()))
    if not isinstance(factors, Tensor) or names != FACTOR_NAMES:
        raise UserError(f"ground-truth recovery needs the shapes dataset (data.dataset=shapes or shapes-multi), "
                        f"whose images come with their generative factors; {type(dataset).__name__} has none")
    return factors.float()


def _all_images(dataset: ImageDataset) -> Tensor:
    return to_float(dataset.images_u8(torch.arange(len(dataset))))


def _data_description(dataset: ImageDataset, factors: Tensor) -> dict:
    return {"resolution": dataset.resolution, "channels": dataset.channels, "num_images": len(dataset),
            "factors": fingerprint(factors)}


def _probe_loss(raw: dict[str, Tensor], factors: Tensor, normalization: dict[str, tuple[float, float]]) -> Tensor:
    """Sum of per-factor losses, each of order 1 at chance so no factor drowns the others."""
    shapes = factors[:, _COLUMN["shape"]].round().long()
    loss = F.cross_entropy(raw["shape"], shapes)
    loss = loss + F.binary_cross_entropy_with_logits(raw["spot"][:, 0], factors[:, _COLUMN["spot"]])
    loss = loss + F.mse_loss(raw["hue"], _angle_vector(factors[:, _COLUMN["hue"]]))
    for name in REGRESSION_FACTORS:
        mean, std = normalization[name]
        loss = loss + F.mse_loss(raw[name][:, 0], (factors[:, _COLUMN[name]] - mean) / std)
    rotation = raw["rotation"].view(-1, len(POLYGON_PERIODS), 2)
    predicted, target = _rotation_pairs(rotation, factors)
    if len(target):  # circles have no visible rotation: they do not train the phase heads
        loss = loss + F.mse_loss(predicted, target)
    return loss


def train_probes(dataset: ImageDataset, settings: ProbeSettings | None = None, device: str | torch.device = "cpu",
                 progress: bool = True) -> FactorProbes:
    """Train factor probes on a shapes dataset (real images with their factors; use the train split, keep the
    test split for `FactorProbes.quality`). Deterministic for a given seed on a given device."""
    settings = settings or ProbeSettings()
    if settings.steps < 1 or settings.batch_size < 1 or settings.width < 1 or not settings.lr > 0:
        raise UserError(f"probe settings need steps, batch_size, width >= 1 and lr > 0, got {settings}")
    factors = _factors_of(dataset)
    if len(dataset) < 2:
        raise UserError(f"factor probes need at least 2 training images, got {len(dataset)}")
    device = torch.device(device)
    normalization = {}
    for name in REGRESSION_FACTORS:
        column = factors[:, _COLUMN[name]]
        normalization[name] = (float(column.mean()), max(float(column.std()), 1e-6))
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG stream
        torch.manual_seed(settings.seed)
        probes = FactorProbes(dataset.resolution, dataset.channels, settings, normalization,
                              data=_data_description(dataset, factors)).to(device)
    images_u8 = dataset.images_u8(torch.arange(len(dataset)))
    optimizer = torch.optim.Adam(probes.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    generator = torch.Generator().manual_seed(settings.seed)
    order, position = torch.randperm(len(dataset), generator=generator), 0
    probes.train()
    bar = progress_bar(range(settings.steps), desc="factor probes", unit="step", disable=not progress, leave=False)
    for _ in bar:
        if position + settings.batch_size > len(order):  # a new epoch: every image once before any repeats
            order, position = torch.randperm(len(dataset), generator=generator), 0
        rows = order[position:position + settings.batch_size]
        position += len(rows)
        loss = _probe_loss(probes(to_float(images_u8[rows]).to(device)), factors[rows].to(device), normalization)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    probes.eval().requires_grad_(False)
    reference_rows = torch.randperm(len(dataset), generator=generator)[:REFERENCE_IMAGES]
    probes.reference = reference_scales(true_outputs(factors[reference_rows]))
    log.info("factor probes trained (%d steps, final batch loss %.3f)", settings.steps, loss.item())
    return probes


class _ProbeStore:
    """`artifacts.Store` for factor probes: the probe file itself records its settings and training images."""

    def __init__(self, device: str | torch.device):
        self.device = device

    def write(self, path: Path, probes: FactorProbes, key: dict, digest: str) -> None:
        probes.save(path)

    def read(self, path: Path) -> tuple[str, FactorProbes]:
        probes = FactorProbes.read(path, self.device)
        return fingerprint({"settings": asdict(probes.settings), "data": probes.data}), probes


def load_or_train_probes(path: Path, dataset: ImageDataset, settings: ProbeSettings | None = None,
                         device: str | torch.device = "cpu", progress: bool = True) -> FactorProbes:
    """The probes cached at `path` when they were trained with these settings on these images, else freshly
    trained ones (saved to `path`)."""
    settings = settings or ProbeSettings()
    key = {"settings": asdict(settings), "data": _data_description(dataset, _factors_of(dataset))}
    return cached(path, key, lambda: train_probes(dataset, settings, device, progress), store=_ProbeStore(device),
                  what="factor probes")


# ---- change measures --------------------------------------------------------------------------------------------

def _pair_distances(before: dict[str, Tensor], after: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """Per factor (distance, weight), broadcast over whatever leading dims `before` and `after` share; the
    factor's change is sum(weight * distance) / sum(weight). Only rotation has weights other than 1."""
    ones = torch.ones_like(after["spot"] - before["spot"])
    result = {"shape": (0.5 * (after["shape"] - before["shape"]).abs().sum(dim=-1), ones),
              "spot": ((after["spot"] - before["spot"]).abs(), ones),
              "hue": ((after["hue"] - before["hue"]).norm(dim=-1), ones)}
    for name in REGRESSION_FACTORS:
        result[name] = ((after[name] - before[name]).abs(), ones)
    polygons = list(POLYGON_PERIODS)
    same_polygon = torch.minimum(before["shape"][..., polygons], after["shape"][..., polygons])  # [..., P]
    phase = (after["rotation"] - before["rotation"]).norm(dim=-1)  # [..., P]
    result["rotation"] = ((same_polygon * phase).sum(dim=-1), same_polygon.sum(dim=-1))
    return result


def true_outputs(factors: Tensor) -> dict[str, Tensor]:
    """What a perfect probe would output for these factor rows (the probe space of `FactorProbes.outputs`)."""
    shapes = factors[:, _COLUMN["shape"]].round().long()
    out = {"shape": F.one_hot(shapes, len(SHAPE_NAMES)).float(), "spot": factors[:, _COLUMN["spot"]],
           "hue": _angle_vector(factors[:, _COLUMN["hue"]]),
           "rotation": torch.stack([_angle_vector(period * factors[:, _COLUMN["rotation"]])
                                    for period in POLYGON_PERIODS.values()], dim=1)}
    for name in REGRESSION_FACTORS:
        out[name] = factors[:, _COLUMN[name]]
    return out


def reference_scales(outputs: dict[str, Tensor]) -> dict[str, float]:
    """Mean change measure over all pairs of distinct images (given by their probe-space outputs): the unit of
    `factor_changes`."""
    before = {name: value.unsqueeze(1) for name, value in outputs.items()}
    after = {name: value.unsqueeze(0) for name, value in outputs.items()}
    count = outputs["spot"].shape[0]
    distinct = ~torch.eye(count, dtype=torch.bool)
    scales = {}
    for name, (distance, weight) in _pair_distances(before, after).items():
        weight = weight * distinct
        scales[name] = max(float((distance * weight).sum() / weight.sum().clamp_min(1e-12)), 1e-6)
    return scales


def _normalized_changes(probes: FactorProbes, before: dict[str, Tensor], after: dict[str, Tensor]
                        ) -> dict[str, float]:
    changes = {}
    for name, (distance, weight) in _pair_distances(before, after).items():
        total = float(weight.sum())
        # rotation on (almost) no polygon that stayed one: there is no rotation left to compare
        mean = float((distance * weight).sum()) / total if total >= 1.0 else 0.0
        changes[name] = mean / probes.reference[name]
    return {name: changes[name] for name in FACTOR_NAMES}


def image_factor_changes(reference: dict[str, float], before: dict[str, Tensor], after: dict[str, Tensor]
                         ) -> Tensor:
    """[N, factors] (FACTOR_NAMES order): each image's change of every factor between two probe-space outputs
    (`FactorProbes.outputs`, or `true_outputs` of known factors), divided by the factor's `reference` scale.
    Rotation counts only where the image is the same polygon before and after (else there is no angle to compare)."""
    columns = []
    for name, (distance, weight) in ((name, _pair_distances(before, after)[name]) for name in FACTOR_NAMES):
        comparable = weight >= 0.5
        change = torch.where(comparable, distance / weight.clamp_min(0.5), torch.zeros_like(distance))
        columns.append(change / reference[name])
    return torch.stack(columns, dim=1)


def factor_changes(probes: FactorProbes, before_images: Tensor, after_images: Tensor) -> dict[str, float]:
    """Mean change of every factor from `before_images` to `after_images` (paired rows), each divided by the
    factor's `probes.reference` (the mean change between two random training images' true factors): 1.0 = as
    much as swapping the factor with a random image's."""
    if before_images.shape != after_images.shape or before_images.shape[0] == 0:
        raise UserError(f"factor changes need paired, non-empty image batches, got {list(before_images.shape)} and "
                        f"{list(after_images.shape)}")
    return _normalized_changes(probes, probes.outputs(before_images), probes.outputs(after_images))


def changed_factor(changes: dict[str, float], min_change: float = DEFAULT_MIN_CHANGE) -> str:
    """The factor with the largest normalized change, or "none" when no change reaches `min_change`."""
    name = max(changes, key=changes.get)
    return name if changes[name] >= min_change else NO_FACTOR


# ---- attributes -------------------------------------------------------------------------------------------------

@torch.no_grad()
def attribute_factor_changes(model: StylexModel, styles: Sequence[Tensor], method: Method,
                             attributes: Sequence[Attribute], probes: FactorProbes, shift_size: float = 1.0,
                             batch_size: int = 64, min_change: float = DEFAULT_MIN_CHANGE) -> list[dict]:
    """One row per attribute: {"coordinate", "direction", "target", "images", "changes": {factor: normalized
    change}, "factor": the changed factor or "none"}.

    `styles`: the evaluation images' styles (one [N, dim] tensor per layer). Each attribute is applied, alone,
    by the method's own rule, to the images whose reconstruction is not yet of its target class (it is meant
    to move them there), or to all of them when every image already is or the attribute has no target."""
    layout = model.generator.layout
    if len(styles) != layout.num_layers or styles[0].shape[0] == 0:
        raise UserError(f"styles must be {layout.num_layers} non-empty tensors [N, dim], one per style layer")
    images, logits = render(model, styles, batch_size=batch_size)
    predicted = logits.argmax(dim=1).cpu()
    before = probes.outputs(images)
    rows = []
    for attribute in attributes:
        chosen = torch.arange(len(predicted))
        if attribute.target is not None and bool((predicted != attribute.target).any()):
            chosen = (predicted != attribute.target).nonzero().flatten()
        edited = method.edit([s[chosen] for s in styles], layout, [(attribute.coordinate, attribute.direction)],
                             shift_size)
        after_images, _ = render(model, edited, batch_size=batch_size)
        changes = _normalized_changes(probes, {name: value[chosen] for name, value in before.items()},
                                      probes.outputs(after_images))
        rows.append({"coordinate": attribute.coordinate, "direction": attribute.direction,
                     "target": attribute.target, "images": len(chosen), "changes": changes,
                     "factor": changed_factor(changes, min_change)})
    return rows


def recovery_summary(rows: Sequence[dict], causal: Sequence[str] = CAUSAL_FACTORS, k: int = 10) -> dict:
    """Scores of the first k rows (rank order): precision = share whose factor is causal (over the rows there
    are, None when there are none); distinct_factors = distinct factors other than "none"; distinct_causal =
    distinct causal factors among them; factors = the labels in rank order."""
    if k < 1:
        raise UserError(f"k must be at least 1, got {k}")
    labels = [row["factor"] for row in rows[:k]]
    causal = set(causal)
    found = {label for label in labels if label != NO_FACTOR}
    return {"top_k": len(labels),
            "precision": sum(label in causal for label in labels) / len(labels) if labels else None,
            "distinct_factors": len(found), "distinct_causal": len(found & causal), "factors": labels}


def recover(model: StylexModel, styles: Sequence[Tensor], method: Method, probes: FactorProbes, k: int = 10,
            shift_size: float = 1.0, min_change: float = DEFAULT_MIN_CHANGE) -> dict:
    """Ground-truth recovery of a method's top-k attributes, ranked as the report displays them."""
    ranked = method.attributes.ranked()[:k]
    rows = attribute_factor_changes(model, styles, method, ranked, probes, shift_size, min_change=min_change)
    return {"method": method.key, "shift_size": shift_size, "min_change": min_change, "attributes": rows,
            **recovery_summary(rows, k=k)}
