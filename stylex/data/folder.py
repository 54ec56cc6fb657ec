"""Image folders with one subfolder per class (AFHQ, PlantVillage, labelled-FFHQ style).

Layouts:
    root/<class>/<image>                    the test split is a stratified, seeded hold-out of
                                            data.test_fraction of each class (seed: data.seed)
    root/train/<class>/<image> plus root/test/<class>/... (or root/val/...): those folders are the splits

Classes are the sorted subfolder names (of root/train in the second layout), or data.classes in the
given order. Every non-hidden file directly inside a class folder must be a readable image
(extensions: IMAGE_EXTENSIONS); nested folders are ignored. Files are checked once at construction
and decoded lazily per item: to 8-bit RGB or L by `stylex.data.images` (16-bit, float, CMYK, palette and
alpha images scaled or composited there, unsupported ones refused), resized so the shorter side equals the
resolution (bicubic, antialiased), then center-cropped to a square.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylex.data.base import ImageDataset, to_float
from stylex.data.images import open_image, refusal, short_reason
from stylex.errors import UserError

logger = logging.getLogger("stylex.data")

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TEST_FOLDER_NAMES = ("test", "val")
MAX_LISTED_PATHS = 20
_PROBLEM_CACHE: dict[tuple[str, int, int], str | None] = {}


class FolderDataset(ImageDataset):
    """Lazily decoded image files; `paths[i]` is the file behind item i."""

    def __init__(
        self, paths: list[Path], labels: list[int], classes: list[str], resolution: int, channels: int
    ) -> None:
        self.paths = list(paths)
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.classes = list(classes)
        self.resolution = resolution
        self.channels = channels

    def load_u8(self, index: int) -> torch.Tensor:
        return load_image(self.paths[index], self.resolution, self.channels)

    def images_u8(self, indices: torch.Tensor) -> torch.Tensor:
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(indices) == 0:
            return torch.empty(0, self.channels, self.resolution, self.resolution, dtype=torch.uint8)
        return torch.stack([self.load_u8(int(i)) for i in indices])

    def __getitem__(self, index: int) -> tuple:
        return to_float(self.load_u8(index)), int(self.labels[index])


def load_image(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """Decode one file to uint8 [C, R, R]: shorter side resized to R, then center-cropped."""
    image = open_image(path, channels, draft_size=resolution)
    width, height = image.size
    scale = resolution / min(width, height)
    new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    image = image.resize(new_size, Image.Resampling.BICUBIC)
    left, top = (new_size[0] - resolution) // 2, (new_size[1] - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    return pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1).contiguous()


def image_problem(path: Path) -> str | None:
    """Why `path` is not a usable image, or None when it is."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image file type"
    try:
        with Image.open(path) as opened:
            image_format = opened.format
            opened.verify()
        with Image.open(path) as opened:
            # verify() checks PNG chunk checksums but does not decode other formats at all, so a
            # truncated JPEG would pass; decoding (cheaply, at a reduced JPEG scale) catches that.
            if image_format != "PNG":
                opened.draft(opened.mode, (64, 64))
                opened.load()
            # Checked here, not when a loader worker first decodes it, so one error lists every such file.
            return refusal(opened)
    except Exception as err:  # PIL reports bad data with many exception types
        return short_reason(err)


def visible_entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def class_folder_names(folder: Path) -> list[str]:
    return [entry.name for entry in visible_entries(folder) if entry.is_dir()]


def class_files(folder: Path) -> list[Path]:
    return [Path(entry.path) for entry in visible_entries(folder) if entry.is_file()]


def split_layout(root: Path) -> tuple[Path, Path | None]:
    """(train folder, test folder), or (root, None) when the test split must be held out."""
    if (root / "train").is_dir():
        for name in TEST_FOLDER_NAMES:
            if (root / name).is_dir():
                return root / "train", root / name
    return root, None


def check_root(root_setting: str | None) -> Path:
    if not root_setting:
        raise UserError("the folder dataset needs an image folder; pass --root DIR or --set data.root=DIR")
    root = Path(root_setting).expanduser()
    if not root.exists():
        raise UserError(f"image folder {root} does not exist; pass --root DIR with one subfolder per class")
    if not root.is_dir():
        raise UserError(f"{root} is a file, not a folder; pass --root DIR with one subfolder per class")
    return root


def select_classes(found: list[str], requested: list[str] | None, where: Path) -> list[str]:
    if not found:
        raise UserError(f"no class subfolders in {where}; put each class's images in its own subfolder")
    if requested is None:
        return found
    if not requested:
        raise UserError(f"data.classes is empty; pick some of: {', '.join(found)} (or null for all)")
    for name in requested:
        if name not in found:
            raise UserError(f"no class folder '{name}' in {where}; found classes: {', '.join(found)}")
    if len(set(requested)) != len(requested):
        raise UserError(f"data.classes lists a class twice ({', '.join(requested)}); list each once")
    return list(requested)


def holdout_split(files: list[Path], fraction: float, seed: int, class_name: str) -> dict[str, list[Path]]:
    """Seeded per-class hold-out; the stream depends on the class name so it ignores the class subset."""
    count = len(files)
    test_count = round(count * fraction)
    # At least one held-out image per class that can spare one, never the class's last image.
    test_count = min(max(test_count, 1), count - 1) if count >= 2 else 0
    rng = np.random.default_rng([seed, zlib.crc32(class_name.encode("utf-8"))])
    test_positions = set(rng.permutation(count)[:test_count].tolist())
    return {
        "test": [f for i, f in enumerate(files) if i in test_positions],
        "train": [f for i, f in enumerate(files) if i not in test_positions],
    }


def check_test_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise UserError(
            f"data.test_fraction must be between 0 and 1 (exclusive), got {fraction}; "
            "e.g. --set data.test_fraction=0.1"
        )


def class_candidates(folder: Path, name: str) -> list[Path]:
    class_folder = folder / name
    if not class_folder.is_dir():
        raise UserError(f"{folder} has no folder for class '{name}'; every split needs all class folders")
    files = class_files(class_folder)
    if not files:
        raise UserError(f"class folder {class_folder} has no files; add images or drop the class")
    return files


def bad_files_message(problems: dict[Path, str], folder: Path) -> str:
    listed = [f"{path} ({reason})" for path, reason in list(problems.items())[:MAX_LISTED_PATHS]]
    more = len(problems) - len(listed)
    tail = f" and {more} more" if more > 0 else ""
    return (
        f"found {len(problems)} unreadable or non-image file(s) under {folder}: {'; '.join(listed)}{tail}; "
        "fix or remove them, or pass --set data.skip_bad=true to skip them"
    )


def cached_image_problem(path: Path) -> str | None:
    # Building train then test checks the same hold-out files twice; a changed file gets rechecked.
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _PROBLEM_CACHE:
        _PROBLEM_CACHE[key] = image_problem(path)
    return _PROBLEM_CACHE[key]


def find_bad_files(per_class: dict[str, list[Path]], skip_bad: bool, folder: Path) -> set[Path]:
    """Check every file; fail listing all bad ones, or with skip_bad log them and return them."""
    problems = {}
    for files in per_class.values():
        for path in files:
            reason = cached_image_problem(path)
            if reason is not None:
                problems[path] = reason
    if problems and not skip_bad:
        raise UserError(bad_files_message(problems, folder))
    for path, reason in problems.items():
        logger.warning("skipping unreadable file %s (%s)", path, reason)
    return set(problems)


def check_nonempty(per_class: dict[str, list[Path]], folder: Path, split: str, held_out: bool) -> None:
    if not any(per_class.values()):
        raise UserError(
            f"no usable images for the {split} split under {folder}; add images to the class folders"
        )
    for name, files in per_class.items():
        if files:
            continue
        if held_out and split == "test":
            # A one-image class legitimately has no held-out image; say so, don't fail.
            logger.warning("class '%s' has no usable images in the held-out test split of %s", name, folder)
        else:
            raise UserError(
                f"class folder {folder / name} has no usable images for the {split} split; "
                "add images or drop the class with --set data.classes=..."
            )


def build_folder(cfg, split: str) -> FolderDataset:
    root = check_root(cfg.root)
    train_folder, test_folder = split_layout(root)
    classes = select_classes(class_folder_names(train_folder), cfg.classes, train_folder)
    folder = test_folder if (split == "test" and test_folder is not None) else train_folder
    candidates = {name: class_candidates(folder, name) for name in classes}
    # All files are checked, not only this split's, so one error lists every problem at once.
    bad = find_bad_files(candidates, cfg.skip_bad, folder)
    held_out = test_folder is None
    if held_out:
        check_test_fraction(cfg.test_fraction)
        # Split before dropping bad files so a skipped file never moves good ones between splits.
        candidates = {
            name: holdout_split(files, cfg.test_fraction, cfg.seed, name)[split]
            for name, files in candidates.items()
        }
    per_class = {name: [path for path in files if path not in bad] for name, files in candidates.items()}
    check_nonempty(per_class, folder, split, held_out)
    paths = [path for name in classes for path in per_class[name]]
    labels = [label for label, name in enumerate(classes) for _ in per_class[name]]
    return FolderDataset(paths, labels, classes, cfg.resolution, cfg.channels or 3)
