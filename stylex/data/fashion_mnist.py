"""Fashion-MNIST from the four official IDX `.gz` files, with class selection by name.

Files are read from `data.root` (default: the Debian package `dataset-fashion-mnist`'s folder) or
from `root/FashionMNIST/raw`, where torchvision's downloader leaves them. The 28x28 images are padded
with background (0, i.e. -1) to 32x32 and then resized (bilinear, antialiased) if the resolution
differs.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stylex.data.base import InMemoryImageDataset, convert_channels
from stylex.errors import UserError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
TORCHVISION_SUBDIR = Path("FashionMNIST") / "raw"
CLASS_NAMES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
EXTRA_ALIASES = {"t-shirt/top": "t-shirt", "tshirt": "t-shirt", "top": "t-shirt"}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
NATIVE_SIZE = 28
PADDED_SIZE = 32
HOW_TO_GET = (
    "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
    "pass --root DIR / --set data.root=DIR, or allow downloading with --set data.download=true"
)


def normalize_class_name(name: str) -> str:
    return name.strip().lower().replace(" ", "-").replace("_", "-")


def _alias_table() -> dict[str, int]:
    table = {}
    for index, name in enumerate(CLASS_NAMES):
        table[name] = index
        table[name.replace("-", "")] = index
    for alias, name in EXTRA_ALIASES.items():
        table[alias] = CLASS_NAMES.index(name)
    return table


CLASS_ALIASES = _alias_table()


def class_indices(names: list[str] | None) -> list[int]:
    """Official label indices for the requested names, in the requested order; None = all ten."""
    if names is None:
        return list(range(len(CLASS_NAMES)))
    if not names:
        raise UserError(f"data.classes is empty; pick some of: {', '.join(CLASS_NAMES)} (or null for all)")
    indices = []
    for name in names:
        index = CLASS_ALIASES.get(normalize_class_name(name))
        if index is None:
            raise UserError(f"unknown fashion-mnist class '{name}'; valid names: {', '.join(CLASS_NAMES)}")
        if index in indices:
            raise UserError(f"fashion-mnist class '{name}' is listed twice in data.classes; list each once")
        indices.append(index)
    return indices


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes; any format problem is a UserError naming the file."""
    try:
        with gzip.open(path, "rb") as stream:
            payload = stream.read()
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"cannot read {path}: {err}; replace it with an intact copy") from None
    dims = magic - 2048
    header_size = 4 + 4 * dims
    if len(payload) < header_size:
        raise UserError(f"{path} is truncated ({len(payload)} bytes, header alone needs {header_size})")
    (found_magic,) = struct.unpack(">i", payload[:4])
    if found_magic != magic:
        raise UserError(f"{path} has IDX magic number {found_magic}, expected {magic}; is it the right file?")
    shape = struct.unpack(f">{dims}i", payload[4:header_size])
    expected = header_size + int(np.prod(shape))
    if len(payload) != expected:
        raise UserError(
            f"{path} is truncated or padded: {len(payload)} bytes, expected {expected} for {shape}"
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header_size).reshape(shape)


IDX_FILE_NAMES = [name for pair in SPLIT_FILES.values() for name in pair]


def find_files_folder(root: Path) -> Path | None:
    """The folder holding all four IDX files: root itself or torchvision's root/FashionMNIST/raw."""
    for folder in (root, root / TORCHVISION_SUBDIR):
        if all((folder / name).is_file() for name in IDX_FILE_NAMES):
            return folder
    return None


def download(root: Path) -> None:
    # Imported here so that torchvision's import cost is paid only when downloading.
    from torchvision.datasets import FashionMNIST

    try:
        root.mkdir(parents=True, exist_ok=True)
        FashionMNIST(str(root), train=True, download=True)
    except Exception as err:  # network and disk failures surface in many types
        reason = " ".join(str(err).split())
        raise UserError(f"downloading fashion-mnist into {root} failed ({reason}); {HOW_TO_GET}") from None


def locate(root: Path, allow_download: bool) -> Path:
    folder = find_files_folder(root)
    if folder is None and allow_download:
        download(root)
        folder = find_files_folder(root)
    if folder is not None:
        return folder
    if not root.exists():
        raise UserError(f"fashion-mnist folder {root} does not exist; {HOW_TO_GET}")
    missing = [name for name in IDX_FILE_NAMES if not (root / name).is_file()]
    raise UserError(f"fashion-mnist folder {root} lacks {', '.join(missing)}; {HOW_TO_GET}")


def pad_and_resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N, 1, 28, 28] -> uint8 [N, 1, R, R]: pad with background to 32, then resize if needed."""
    margin = (PADDED_SIZE - NATIVE_SIZE) // 2
    padded = F.pad(images, (margin, margin, margin, margin), value=0)
    if resolution == PADDED_SIZE:
        return padded
    resized = F.interpolate(
        padded.to(torch.float32),
        size=(resolution, resolution),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def build_fashion_mnist(cfg, split: str) -> InMemoryImageDataset:
    indices = class_indices(cfg.classes)
    folder = locate(Path(cfg.root) if cfg.root else DEFAULT_ROOT, cfg.download)
    images_name, labels_name = SPLIT_FILES[split]
    images = read_idx(folder / images_name, IMAGES_MAGIC)
    official_labels = read_idx(folder / labels_name, LABELS_MAGIC)
    if images.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE):
        raise UserError(
            f"{folder / images_name} holds {images.shape[1]}x{images.shape[2]} images, fashion-mnist is "
            f"{NATIVE_SIZE}x{NATIVE_SIZE}; point data.root at the fashion-mnist files"
        )
    if len(images) != len(official_labels):
        raise UserError(
            f"{folder / images_name} has {len(images)} images but {folder / labels_name} has "
            f"{len(official_labels)} labels; replace them with matching files"
        )
    remap = np.full(256, -1, dtype=np.int64)
    remap[indices] = np.arange(len(indices))
    labels = remap[official_labels]
    keep = np.flatnonzero(labels >= 0)
    selected = torch.from_numpy(images[keep].copy()).unsqueeze(1)
    pixels = convert_channels(pad_and_resize(selected, cfg.resolution), cfg.channels or 1)
    return InMemoryImageDataset(pixels, torch.from_numpy(labels[keep]), [CLASS_NAMES[i] for i in indices])
