"""A quick look at a dataset: one row of images per class, the class name at the start of the row."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from stylex.config import DataConfig
from stylex.data import build_dataset

DISPLAY_SIZE = 64  # pixels per image in the grid, so 16-32 px datasets stay legible


def save_class_grid(data: DataConfig, split: str, out: Path, per_class: int = 8) -> Path:
    dataset = build_dataset(data, split)
    label_width = 8 * max(len(name) for name in dataset.classes) + 12
    grid = Image.new("RGB", (label_width + per_class * (DISPLAY_SIZE + 2), len(dataset.classes) * (DISPLAY_SIZE + 2)),
                     "white")
    draw = ImageDraw.Draw(grid)
    for row, name in enumerate(dataset.classes):
        top = row * (DISPLAY_SIZE + 2)
        draw.text((4, top + DISPLAY_SIZE // 2 - 6), name, fill="black")
        indices = torch.nonzero(dataset.labels == row).flatten()[:per_class]
        for column, image in enumerate(dataset.images_u8(indices)):
            array = image.permute(1, 2, 0).numpy()
            tile = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
            tile = tile.convert("RGB").resize((DISPLAY_SIZE, DISPLAY_SIZE), Image.NEAREST)
            grid.paste(tile, (label_width + column * (DISPLAY_SIZE + 2), top))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
