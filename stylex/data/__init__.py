"""Datasets for StylEx experiments: procedural shapes (ground truth), Fashion-MNIST, image folders.

build_dataset(cfg.data, "train") -> ImageDataset     items: (float32 [C, H, W] in [-1, 1], label)
iterate_batches(dataset, batch_size, shuffle, seed)  -> (x [B, C, H, W], y [B]) batches
"""

from stylex.data.base import ImageDataset, InMemoryImageDataset, convert_channels, iterate_batches, to_float
from stylex.data.build import DATASET_NAMES, SPLITS, build_dataset

__all__ = [
    "DATASET_NAMES",
    "SPLITS",
    "ImageDataset",
    "InMemoryImageDataset",
    "build_dataset",
    "convert_channels",
    "iterate_batches",
    "to_float",
]
