"""Procedural shapes: the suite's ground truth, where the factors that decide the label are known.

Each image shows one colored shape (circle, square or triangle) on a gray background, optionally
with a small near-black spot at its center. Images are rendered from signed-distance functions with
a ~1 px anti-aliased edge, vectorised in torch, so any resolution >= 16 works.

Generative factors (columns of `factors`, in `FACTOR_NAMES` order, all stored as float):
    shape       0 circle, 1 square, 2 triangle (categorical)
    size        circumradius (radius of the circle through the corners) as a fraction of the image
                side; bimodal with a gap: small in [0.18, 0.26], large in [0.32, 0.42]
    hue         shape color hue in [0, 1), full saturation and value (HSV -> RGB)
    pos_x       horizontal center in [0, 1] of the range that keeps the shape inside the image
                (0 = touching the left edge, 1 = touching the right edge)
    pos_y       vertical center likewise (0 = touching the top edge)
    rotation    rotation in [0, 1) of a full turn (no visible effect on circles; a square repeats
                every 1/4 turn, a triangle every 1/3 turn)
    background  background gray level in [-0.9, 0.3] on the [-1, 1] image scale
    spot        1 when a near-black disk of radius 0.35 * size sits at the shape's center, else 0

Causal factors are `size` and `spot` only (`CAUSAL_FACTORS`); "large" means size >= 0.29, the middle
of the gap. Label rules (`label_of`):
    shapes        classes ["other", "large-spotted"]; label = 1 iff large AND spot, else 0
    shapes-multi  classes ["small", "small-spotted", "large", "large-spotted"]; label = 2*large + spot

Sampling per split: labels first, balanced (exactly half / a quarter of the split each, the remainder
going to the lowest labels, then shuffled); then the causal factors given the label (binary label 0
picks uniformly one of the cells small, small-spotted, large); then every other factor independently.
The random stream is numpy's Generator seeded with [seed, split id, variant id], so train and test,
and shapes and shapes-multi, never share images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from stylex.data.base import InMemoryImageDataset, convert_channels, to_float, to_uint8
from stylex.errors import UserError

FACTOR_NAMES = ("shape", "size", "hue", "pos_x", "pos_y", "rotation", "background", "spot")
CAUSAL_FACTORS = ("size", "spot")
SHAPE_NAMES = ("circle", "square", "triangle")
BINARY_CLASSES = ["other", "large-spotted"]
MULTI_CLASSES = ["small", "small-spotted", "large", "large-spotted"]
SMALL_SIZE_RANGE = (0.18, 0.26)
LARGE_SIZE_RANGE = (0.32, 0.42)
SIZE_THRESHOLD = 0.29
BACKGROUND_RANGE = (-0.9, 0.3)
SPOT_RADIUS_RATIO = 0.35
SPOT_LEVEL = -0.85  # near black but not clipped, so the spot edge anti-aliases like the shape edge
MIN_RESOLUTION = 16
SPLIT_IDS = {"train": 0, "test": 1}
VARIANT_IDS = {2: 0, 4: 1}
# Pixels per rendering chunk: ~1 MB float temporaries stay in CPU cache, 3-4x faster than big chunks.
RENDER_CHUNK_PIXELS = 1 << 18

_COLUMN = {name: i for i, name in enumerate(FACTOR_NAMES)}


def classes_for(num_classes: int) -> list[str]:
    if num_classes == 2:
        return list(BINARY_CLASSES)
    if num_classes == 4:
        return list(MULTI_CLASSES)
    raise ValueError(f"shapes has 2 or 4 classes, not {num_classes}")


def label_of(factors: Mapping[str, float] | Sequence[float] | torch.Tensor, num_classes: int):
    """Label from the causal factors only: an int for one dict/row, a LongTensor for [N, F] rows."""
    if isinstance(factors, Mapping):
        size, spot = float(factors["size"]), float(factors["spot"])
    else:
        rows = torch.as_tensor(factors, dtype=torch.float32)
        size, spot = rows[..., _COLUMN["size"]], rows[..., _COLUMN["spot"]]
    large = (size >= SIZE_THRESHOLD) * 1
    spotted = (spot >= 0.5) * 1
    if num_classes == 2:
        label = large * spotted
    elif num_classes == 4:
        label = 2 * large + spotted
    else:
        raise ValueError(f"shapes has 2 or 4 classes, not {num_classes}")
    return label.to(torch.long) if isinstance(label, torch.Tensor) and label.dim() > 0 else int(label)


def factors_as_dict(row: torch.Tensor) -> dict[str, float]:
    return {name: float(row[i]) for i, name in enumerate(FACTOR_NAMES)}


def balanced_labels(rng: np.random.Generator, count: int, num_classes: int) -> np.ndarray:
    return rng.permutation(np.arange(count) % num_classes)


def causal_cells(rng: np.random.Generator, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """(large, spot) 0/1 arrays consistent with each label."""
    if num_classes == 4:
        return labels // 2, labels % 2
    # Binary label 0 covers three (large, spot) cells; pick one uniformly so neither factor alone
    # predicts the label.
    other_cells = np.array([[0, 0], [0, 1], [1, 0]])
    cells = other_cells[rng.integers(0, 3, size=len(labels))]
    cells[labels == 1] = (1, 1)
    return cells[:, 0], cells[:, 1]


def sample_factors(
    rng: np.random.Generator, count: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(factors float32 [N, F], labels long [N]) drawn label-first as the module docstring describes."""
    labels = balanced_labels(rng, count, num_classes)
    large, spot = causal_cells(rng, labels, num_classes)
    small_size = rng.uniform(*SMALL_SIZE_RANGE, size=count)
    large_size = rng.uniform(*LARGE_SIZE_RANGE, size=count)
    columns = {
        "size": np.where(large == 1, large_size, small_size),
        "spot": spot.astype(np.float64),
        "shape": rng.integers(0, len(SHAPE_NAMES), size=count).astype(np.float64),
        "hue": rng.uniform(0.0, 1.0, size=count),
        "pos_x": rng.uniform(0.0, 1.0, size=count),
        "pos_y": rng.uniform(0.0, 1.0, size=count),
        "rotation": rng.uniform(0.0, 1.0, size=count),
        "background": rng.uniform(*BACKGROUND_RANGE, size=count),
    }
    factors = np.stack([columns[name] for name in FACTOR_NAMES], axis=1)
    return torch.from_numpy(factors).to(torch.float32), torch.from_numpy(labels).to(torch.long)


def hue_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    """[N] hue in [0, 1) -> [N, 3] RGB in [0, 1] at full saturation and value."""
    offsets = torch.tensor([0.0, 4.0, 2.0])
    sector = torch.remainder(hue[:, None] * 6.0 + offsets, 6.0)
    return (torch.abs(sector - 3.0) - 1.0).clamp(0.0, 1.0)


def coverage(signed_distance: torch.Tensor) -> torch.Tensor:
    """Fraction of a pixel inside a shape given the signed distance in pixels: a 1 px linear ramp."""
    return (0.5 - signed_distance).clamp(0.0, 1.0)


def polygon_distance(
    dx: torch.Tensor, dy: torch.Tensor, circumradius: torch.Tensor, sides: torch.Tensor, angle: torch.Tensor
) -> torch.Tensor:
    """Signed distance to a regular polygon as the max over its edge half-planes.

    Exact inside and along edges, slightly short only beyond corners, which is invisible at 1 px AA.
    Supports 3 or 4 sides per image by letting a triangle repeat its first edge as a fourth.
    """
    inradius = circumradius * torch.cos(math.pi / sides)
    distance = None
    for edge in range(4):
        normal_angle = angle + 2.0 * math.pi * torch.remainder(torch.full_like(sides, edge), sides) / sides
        along_normal = dx * torch.cos(normal_angle) + dy * torch.sin(normal_angle) - inradius
        distance = along_normal if distance is None else torch.maximum(distance, along_normal)
    return distance


def shape_distance(factors: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, pixels: int) -> torch.Tensor:
    radius = factors[:, _COLUMN["size"], None, None] * pixels
    shape = factors[:, _COLUMN["shape"], None, None].round()
    angle = factors[:, _COLUMN["rotation"], None, None] * 2.0 * math.pi
    circle = torch.sqrt(dx * dx + dy * dy) - radius
    # Sides 4 for circles too: their polygon result is discarded, and 4 avoids a division by zero.
    sides = torch.where(shape == 2, 3.0, 4.0)
    polygon = polygon_distance(dx, dy, radius, sides, angle)
    return torch.where(shape == 0, circle, polygon)


def render_chunk(factors: torch.Tensor, resolution: int) -> torch.Tensor:
    size = factors[:, _COLUMN["size"], None, None]
    # Map pos in [0, 1] onto the centers whose bounding circle stays inside the image.
    center_x = (size + factors[:, _COLUMN["pos_x"], None, None] * (1.0 - 2.0 * size)) * resolution
    center_y = (size + factors[:, _COLUMN["pos_y"], None, None] * (1.0 - 2.0 * size)) * resolution
    pixel_centers = torch.arange(resolution, dtype=torch.float32) + 0.5
    dx = pixel_centers.view(1, 1, -1) - center_x
    dy = pixel_centers.view(1, -1, 1) - center_y
    shape_alpha = coverage(shape_distance(factors, dx, dy, resolution))
    spot_radius = SPOT_RADIUS_RATIO * size * resolution
    spot_alpha = (
        coverage(torch.sqrt(dx * dx + dy * dy) - spot_radius) * factors[:, _COLUMN["spot"], None, None]
    )
    color = hue_to_rgb(factors[:, _COLUMN["hue"]]) * 2.0 - 1.0
    background = factors[:, _COLUMN["background"], None, None, None]
    image = background + (color[:, :, None, None] - background) * shape_alpha[:, None]
    image = image + (SPOT_LEVEL - image) * spot_alpha[:, None]
    return to_uint8(image)


def render(factors: torch.Tensor, resolution: int) -> torch.Tensor:
    """Render factor rows [N, F] (`FACTOR_NAMES` order) to uint8 RGB images [N, 3, H, W]."""
    factors = torch.as_tensor(factors, dtype=torch.float32).reshape(-1, len(FACTOR_NAMES))
    chunk = max(1, RENDER_CHUNK_PIXELS // (resolution * resolution))
    parts = [
        render_chunk(factors[start : start + chunk], resolution) for start in range(0, len(factors), chunk)
    ]
    if not parts:
        return torch.empty(0, 3, resolution, resolution, dtype=torch.uint8)
    return torch.cat(parts)


class ShapesDataset(InMemoryImageDataset):
    """Rendered shapes; items are (image, label, factors dict). `factors` is float [N, F]."""

    factor_names = FACTOR_NAMES

    def __init__(
        self, factors: torch.Tensor, labels: torch.Tensor, num_classes: int, resolution: int, channels: int
    ) -> None:
        images = convert_channels(render(factors, resolution), channels)
        super().__init__(images, labels, classes_for(num_classes))
        self.factors = factors

    def __getitem__(self, index: int) -> tuple:
        return to_float(self.images[index]), int(self.labels[index]), factors_as_dict(self.factors[index])


def split_size(cfg, split: str) -> int:
    key = "num_train" if split == "train" else "num_test"
    count = getattr(cfg, key)
    if not isinstance(count, int) or count < 1:
        raise UserError(
            f"data.{key} must be a positive integer, got {count!r}; set it with --set data.{key}=N"
        )
    return count


def check_shapes_config(cfg, num_classes: int) -> None:
    fixed = classes_for(num_classes)
    if cfg.classes is not None and list(cfg.classes) != fixed:
        raise UserError(
            f"dataset {cfg.dataset} has fixed classes {', '.join(fixed)}; remove data.classes "
            "(--set data.classes=null)"
        )
    if cfg.resolution < MIN_RESOLUTION:
        raise UserError(
            f"shapes needs data.resolution >= {MIN_RESOLUTION} to draw the spot, got {cfg.resolution}; "
            f"use e.g. --set data.resolution=32"
        )


def build_shapes(cfg, split: str, num_classes: int) -> ShapesDataset:
    check_shapes_config(cfg, num_classes)
    count = split_size(cfg, split)
    rng = np.random.default_rng([cfg.seed, SPLIT_IDS[split], VARIANT_IDS[num_classes]])
    factors, labels = sample_factors(rng, count, num_classes)
    return ShapesDataset(factors, labels, num_classes, cfg.resolution, cfg.channels or 3)
