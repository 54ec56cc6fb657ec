"""StyleSpace layout: the one object that knows every style layer of a StyleGAN2 generator and its indices.

A style layer is a modulated layer of the synthesis network; its style s is the output of the layer's affine,
one scale per *input* channel (so `dim` = input channels). Per resolution block, in order:
`b4.conv1`, `b4.torgb`, then for every resolution r >= 8: `b{r}.conv0` (upsampling conv), `b{r}.conv1`,
`b{r}.torgb`. Channels follow config-f: `channels(r) = min(channel_base // r, channel_max)`.

Two flat coordinate systems exist: the full vector (all layers, the Wu et al. / StyleCLIP convention) and
the conv-only vector (toRGB excluded), which is what attribute search ranks (StylEx "sindex"). Conv-only
index k <-> (layer name, channel) conversions live here and nowhere else.

The layout is pure arithmetic: it needs no model, and torch is imported only by the tensor helpers.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from stylex.errors import UserError

if TYPE_CHECKING:
    from torch import Tensor

class StyleIndexError(UserError, IndexError):
    """A flat style coordinate or a channel outside the layout (an IndexError that the CLI reports as a UserError)."""


@dataclass(frozen=True)
class StyleLayer:
    index: int  # position in the full (conv + toRGB) layer list
    name: str  # e.g. "b32.conv1"
    kind: str  # "conv" | "torgb"
    resolution: int  # output resolution of the block the layer belongs to
    dim: int  # style size = input channels of the layer
    w_index: int  # which W+ row feeds the layer's affine
    offset: int  # start in the full flat style vector
    conv_offset: int | None  # start in the conv-only flat vector; None for toRGB layers

    @property
    def is_conv(self) -> bool:
        return self.kind == "conv"

    @property
    def full_slice(self) -> slice:
        return slice(self.offset, self.offset + self.dim)


def block_channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """Config-f channel rule: feature maps of the block whose output is `resolution` px."""
    return min(channel_base // resolution, channel_max)


def _check_power_of_two(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or value < low or value & (value - 1):
        raise UserError(f"{name} must be a power of two >= {low}, got {value!r}")


@dataclass(frozen=True)
class StyleLayout:
    """Every style layer of a generator with `img_resolution` output pixels, in synthesis order."""

    img_resolution: int
    channel_base: int = 32768
    channel_max: int = 512
    layers: tuple[StyleLayer, ...] = field(init=False, repr=False, compare=False)
    conv_layers: tuple[StyleLayer, ...] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, StyleLayer] = field(init=False, repr=False, compare=False)
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _conv_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_power_of_two("img_resolution", self.img_resolution, 4)
        if not isinstance(self.channel_base, int) or not isinstance(self.channel_max, int) or self.channel_max < 1:
            raise UserError(f"channel_base and channel_max must be positive integers, got "
                            f"{self.channel_base!r} and {self.channel_max!r}")
        if self.channel_base < self.img_resolution:
            raise UserError(f"channel_base {self.channel_base} leaves no channels at {self.img_resolution} px "
                            f"(channels = channel_base // resolution); use channel_base >= {self.img_resolution}")
        layers: list[StyleLayer] = []
        offset = conv_offset = num_conv = 0

        def add(name: str, kind: str, resolution: int, dim: int) -> None:
            nonlocal offset, conv_offset, num_conv
            is_conv = kind == "conv"
            # W+ row = convs seen so far: a conv reads its own ordinal, a toRGB the row of the *next* conv0.
            layers.append(StyleLayer(index=len(layers), name=name, kind=kind, resolution=resolution, dim=dim,
                                     w_index=num_conv, offset=offset,
                                     conv_offset=conv_offset if is_conv else None))
            offset += dim
            if is_conv:
                conv_offset += dim
                num_conv += 1

        def channels(resolution: int) -> int:
            return block_channels(resolution, self.channel_base, self.channel_max)

        add("b4.conv1", "conv", 4, channels(4))
        add("b4.torgb", "torgb", 4, channels(4))
        resolution = 8
        while resolution <= self.img_resolution:
            add(f"b{resolution}.conv0", "conv", resolution, channels(resolution // 2))
            add(f"b{resolution}.conv1", "conv", resolution, channels(resolution))
            add(f"b{resolution}.torgb", "torgb", resolution, channels(resolution))
            resolution *= 2
        conv_layers = tuple(layer for layer in layers if layer.is_conv)
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "conv_layers", conv_layers)
        object.__setattr__(self, "_by_name", {layer.name: layer for layer in layers})
        object.__setattr__(self, "_starts", tuple(layer.offset for layer in layers))
        object.__setattr__(self, "_conv_starts", tuple(layer.conv_offset for layer in conv_layers))

    # ---- sizes ------------------------------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def total_dim(self) -> int:
        return sum(layer.dim for layer in self.layers)

    @property
    def conv_dim(self) -> int:
        return sum(layer.dim for layer in self.conv_layers)

    @property
    def num_ws(self) -> int:
        """W+ rows: one per conv layer plus one for the last toRGB (each toRGB shares the next conv0's row)."""
        return len(self.conv_layers) + 1

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    # ---- index conversions ------------------------------------------------------------------------------------

    def layer(self, name: str) -> StyleLayer:
        try:
            return self._by_name[name]
        except KeyError:
            raise UserError(f"no style layer named {name!r} at {self.img_resolution} px; the layers are "
                            f"{', '.join(self.names)}") from None

    def locate(self, k: int) -> tuple[str, int]:
        """Conv-only flat index k -> (conv layer name, channel)."""
        k = operator.index(k)
        if not 0 <= k < self.conv_dim:
            raise StyleIndexError(f"conv style coordinate {k} is out of range: this layout has {self.conv_dim} "
                                  f"conv coordinates (0..{self.conv_dim - 1})")
        layer = self.conv_layers[bisect.bisect_right(self._conv_starts, k) - 1]
        return layer.name, k - layer.conv_offset

    def conv_index(self, name: str, channel: int) -> int:
        """(conv layer name, channel) -> conv-only flat index; the inverse of `locate`."""
        layer = self.layer(name)
        if not layer.is_conv:
            raise UserError(f"{name} is a toRGB layer; conv-only coordinates exist for conv layers only")
        return layer.conv_offset + self._check_channel(layer, channel)

    def locate_full(self, i: int) -> tuple[str, int]:
        """Full (conv + toRGB) flat index i -> (layer name, channel)."""
        i = operator.index(i)
        if not 0 <= i < self.total_dim:
            raise StyleIndexError(f"style coordinate {i} is out of range: this layout has {self.total_dim} "
                                  f"coordinates (0..{self.total_dim - 1})")
        layer = self.layers[bisect.bisect_right(self._starts, i) - 1]
        return layer.name, i - layer.offset

    @staticmethod
    def _check_channel(layer: StyleLayer, channel: int) -> int:
        channel = operator.index(channel)
        if not 0 <= channel < layer.dim:
            raise StyleIndexError(f"channel {channel} is out of range for {layer.name}, which has {layer.dim} "
                                  f"channels (0..{layer.dim - 1})")
        return channel

    # ---- tensor helpers (torch imported lazily so that the layout works without it) ---------------------------

    def _check_styles(self, styles: Sequence[Tensor], expected: int, what: str) -> None:
        if len(styles) != expected:
            raise UserError(f"expected {expected} {what} style tensors (one per style layer, layout order), "
                            f"got {len(styles)}")

    def _conv_styles(self, styles: Sequence[Tensor]) -> list[Tensor]:
        """Accept either the full list (one tensor per layer, as from `w_to_styles`) or the conv layers only."""
        if len(styles) == self.num_layers:
            return [styles[layer.index] for layer in self.conv_layers]
        self._check_styles(styles, len(self.conv_layers), f"conv (or {self.num_layers} full)")
        return list(styles)

    def conv_flatten(self, styles: Sequence[Tensor]) -> Tensor:
        """Per-layer styles -> conv-only flat styles [B, conv_dim] (toRGB layers dropped)."""
        import torch

        conv_styles = self._conv_styles(styles)
        for layer, s in zip(self.conv_layers, conv_styles, strict=True):
            if s.shape[-1] != layer.dim:
                raise UserError(f"style of {layer.name} has {s.shape[-1]} channels, the layout says {layer.dim}")
        return torch.cat(conv_styles, dim=-1)

    def flatten(self, styles: Sequence[Tensor]) -> Tensor:
        """Full per-layer styles -> flat styles [B, total_dim] (conv and toRGB, layout order)."""
        import torch

        self._check_styles(styles, self.num_layers, "full")
        return torch.cat(list(styles), dim=-1)

    # ---- persistence ------------------------------------------------------------------------------------------

    def summary(self) -> dict:
        """JSON-able description stored in checkpoints; `from_summary` rebuilds (and checks) the layout."""
        return {
            "img_resolution": self.img_resolution, "channel_base": self.channel_base,
            "channel_max": self.channel_max, "num_ws": self.num_ws, "total_dim": self.total_dim,
            "conv_dim": self.conv_dim, "layers": [asdict(layer) for layer in self.layers],
        }

    @classmethod
    def from_summary(cls, summary: dict) -> StyleLayout:
        try:
            layout = cls(summary["img_resolution"], summary["channel_base"], summary["channel_max"])
        except KeyError as err:
            raise UserError(f"style layout summary lacks {err.args[0]!r}; it is not a stylex layout summary") from None
        stored = summary.get("layers")
        if stored is not None and stored != [asdict(layer) for layer in layout.layers]:
            raise UserError("the stored style layout differs from the one this code builds for "
                            f"{layout.img_resolution} px (channel_base {layout.channel_base}, channel_max "
                            f"{layout.channel_max}); the checkpoint was written by an incompatible version")
        return layout
