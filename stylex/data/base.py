"""Shared dataset machinery: the `ImageDataset` contract, uint8 <-> float conversion, batching.

Every dataset stores or decodes images as uint8 [C, H, W] and hands them out as float32 in [-1, 1].
In-memory datasets (shapes, fashion-mnist) keep one uint8 tensor so batches are a single indexing
operation; lazy datasets (folder) decode per item and are batched by a `DataLoader` with workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from stylex.errors import UserError

# ITU-R 601-2 luma, the same weights PIL uses for convert("L"), so folder and tensor paths agree.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
LOADER_WORKERS = 2


def to_float(u8: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (x / 127.5 - 1)."""
    if u8.dtype != torch.uint8:
        raise TypeError(f"to_float expects a uint8 tensor, got {u8.dtype}")
    return u8.to(torch.float32) / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float images in [-1, 1] -> uint8, rounding to the nearest level."""
    return ((images + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def convert_channels(u8: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert uint8 [..., C, H, W] between 1 (gray) and 3 (RGB) channels."""
    have = u8.shape[-3]
    if have == channels:
        return u8
    if have == 1 and channels == 3:
        return u8.expand(*u8.shape[:-3], 3, *u8.shape[-2:]).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.float32).view(3, 1, 1)
        gray = (u8.to(torch.float32) * weights).sum(dim=-3, keepdim=True)
        return gray.round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {have} channels to {channels}")


class ImageDataset(Dataset):
    """Images with integer labels; items are (float32 [C, H, W] in [-1, 1], int label)."""

    classes: list[str]
    channels: int
    resolution: int
    labels: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def images_u8(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] for the given indices."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple:
        image = self.images_u8(torch.tensor([int(index)]))[0]
        return to_float(image), int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, classes={self.classes}, "
            f"channels={self.channels}, resolution={self.resolution})"
        )


class InMemoryImageDataset(ImageDataset):
    """All images held as one uint8 tensor `images` [N, C, H, W]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels.to(torch.long)
        self.classes = list(classes)
        self.channels = int(images.shape[1])
        self.resolution = int(images.shape[-1])

    def images_u8(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images[torch.as_tensor(indices, dtype=torch.long)]

    def __getitem__(self, index: int) -> tuple:
        return to_float(self.images[index]), int(self.labels[index])


def epoch_order(num_items: int, shuffle: bool, seed: int) -> torch.Tensor:
    if not shuffle:
        return torch.arange(num_items)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_items, generator=generator)


def iterate_batches(
    dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x float32 [B, C, H, W] in [-1, 1], y long [B]); the order depends only on `seed`.

    Both paths visit the same order for the same seed, so switching storage never changes training.
    """
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    order = epoch_order(len(dataset), shuffle, seed)
    if isinstance(dataset, InMemoryImageDataset):
        yield from _tensor_batches(dataset, order, batch_size, drop_last)
    else:
        yield from _loader_batches(dataset, order, batch_size, drop_last)


def _tensor_batches(
    dataset: InMemoryImageDataset, order: torch.Tensor, batch_size: int, drop_last: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        if drop_last and len(indices) < batch_size:
            return
        yield to_float(dataset.images[indices]), dataset.labels[indices]


def _loader_batches(
    dataset: Dataset, order: torch.Tensor, batch_size: int, drop_last: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    workers = min(LOADER_WORKERS, os.cpu_count() or 1)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order.tolist(),
        drop_last=drop_last,
        num_workers=workers,
        persistent_workers=False,
    )
    for batch in loader:
        yield batch[0], batch[1].to(torch.long)
