"""Style statistics: per conv coordinate min / max / mean / std over a set of encoded images.

AttFind shifts a coordinate toward its minimum or maximum over the image set (official StylEx semantics),
Wu et al. normalise by the population mean and std. `stats.pt` in a run directory holds one `StyleStats`
per StylEx variant ('stylex', 'stylex-nocst'), each recording the images (split, N, seed) it was made from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from stylex.artifacts import DamagedArtifact, load_tagged, save_tagged
from stylex.data import ImageDataset
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.model import StylexModel
from stylex.progress import progress_bar
from stylex.run import RunDir

STATS_FORMAT = "stylex-style-stats"


@dataclass
class StyleStats:
    """Statistics of the conv-only flat style vector (K = layout.conv_dim coordinates)."""

    minimum: Tensor  # [K]
    maximum: Tensor  # [K]
    mean: Tensor  # [K]
    std: Tensor  # [K], population std (unbiased=False)
    num_images: int
    source: dict  # where the images came from: split, seed, dataset, indices digest, variant, step

    @classmethod
    def from_styles(cls, conv_styles: Tensor, source: dict) -> StyleStats:
        if conv_styles.ndim != 2 or conv_styles.shape[0] < 2:
            raise UserError(f"style statistics need conv styles [N >= 2, K], got {list(conv_styles.shape)}")
        styles = conv_styles.double()
        return cls(styles.min(0).values.float(), styles.max(0).values.float(), styles.mean(0).float(),
                   styles.std(0, unbiased=False).float(), conv_styles.shape[0], dict(source))

    @property
    def conv_dim(self) -> int:
        return self.minimum.numel()

    def targets(self, direction: int | Tensor) -> Tensor:
        """Shift targets: the minimum for direction 0, the maximum for direction 1 ([K], or [..., K])."""
        if isinstance(direction, int):
            if direction not in (0, 1):
                raise UserError(f"direction must be 0 (toward the minimum) or 1 (toward the maximum), got {direction}")
            return self.maximum if direction else self.minimum
        return torch.where(direction.bool(), self.maximum.to(direction.device), self.minimum.to(direction.device))

    def check_layout(self, layout: StyleLayout) -> None:
        if self.conv_dim != layout.conv_dim:
            raise UserError(f"style statistics cover {self.conv_dim} conv coordinates but the generator has "
                            f"{layout.conv_dim}; they belong to another model: recompute them (stylex attfind "
                            "--recompute)")

    def to_dict(self) -> dict:
        return {"minimum": self.minimum.cpu(), "maximum": self.maximum.cpu(), "mean": self.mean.cpu(),
                "std": self.std.cpu(), "num_images": self.num_images, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict) -> StyleStats:
        return cls(data["minimum"], data["maximum"], data["mean"], data["std"], data["num_images"], data["source"])


def load_stats(run_dir: Path, variant: str) -> StyleStats | None:
    """The run's statistics for a variant, or None when none were computed yet."""
    path = RunDir(run_dir).stats
    if not path.is_file():
        return None
    entries = _read(path)
    return StyleStats.from_dict(entries[variant]) if variant in entries else None


def save_stats(run_dir: Path, variant: str, stats: StyleStats) -> Path:
    path = RunDir(run_dir).stats
    entries = _read(path) if path.is_file() else {}
    entries[variant] = stats.to_dict()
    return save_tagged({"variants": entries}, path, STATS_FORMAT)


def _read(path: Path) -> dict:
    try:
        return load_tagged(path, STATS_FORMAT)["variants"]
    except DamagedArtifact as err:
        raise UserError(f"{path} is not readable style statistics ({err.reason}); delete it to recompute") from None


@torch.no_grad()
def encode_styles(model: StylexModel, dataset: ImageDataset, indices: list[int], batch_size: int = 64,
                  device: torch.device | str = "cpu", progress: bool = True) -> list[Tensor]:
    """Styles of dataset[indices] (E, then the affines with C(x) in CST mode): one [N, dim] CPU tensor per
    style layer, layout order."""
    chunks: list[list[Tensor]] = []
    for start in progress_bar(range(0, len(indices), batch_size), desc="encoding", unit="batch", disable=not progress,
                      leave=False):
        batch = torch.stack([dataset[i][0] for i in indices[start:start + batch_size]]).to(device)
        chunks.append([s.cpu() for s in model.styles(batch)])
    return [torch.cat(parts) for parts in zip(*chunks, strict=True)]
