"""`build_dataset`: the one entry point from a `DataConfig` to a dataset split."""

from __future__ import annotations

from collections.abc import Callable

from stylex.config import DataConfig
from stylex.data.base import ImageDataset
from stylex.data.fashion_mnist import build_fashion_mnist
from stylex.data.folder import build_folder
from stylex.data.shapes import build_shapes
from stylex.errors import UserError

SPLITS = ("train", "test")
MIN_RESOLUTION = 8

BUILDERS: dict[str, Callable[[DataConfig, str], ImageDataset]] = {
    "shapes": lambda cfg, split: build_shapes(cfg, split, num_classes=2),
    "shapes-multi": lambda cfg, split: build_shapes(cfg, split, num_classes=4),
    "fashion-mnist": build_fashion_mnist,
    "folder": build_folder,
}
DATASET_NAMES = tuple(BUILDERS)


def check_common(cfg: DataConfig, split: str) -> None:
    if cfg.dataset not in BUILDERS:
        raise UserError(f"unknown dataset '{cfg.dataset}'; choose one of: {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    if not isinstance(cfg.resolution, int) or cfg.resolution < MIN_RESOLUTION:
        raise UserError(f"data.resolution must be an integer >= {MIN_RESOLUTION}, got {cfg.resolution!r}")
    if cfg.channels not in (None, 1, 3):
        raise UserError(f"data.channels must be 1, 3 or null (the dataset's own), got {cfg.channels!r}")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise UserError(f"data.seed must be a non-negative integer, got {cfg.seed!r}")


def build_dataset(cfg: DataConfig, split: str) -> ImageDataset:
    """The `split` ("train" or "test") of the dataset `cfg` describes; bad settings raise UserError."""
    check_common(cfg, split)
    return BUILDERS[cfg.dataset](cfg, split)
