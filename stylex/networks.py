"""StylEx networks: a StyleGAN2 generator with an explicit StyleSpace API, an encoder, and a discriminator.

Generator
    `mapping(z) -> w`, then `w_to_styles(w, cond) -> styles` (one [B, dim] tensor per style layer, layout order,
    see `stylex.layout`), then `synthesize(styles) -> (image, states)`. The classifier output `cond` is
    concatenated to w before every style affine, so each style is an affine function of [w, C(x)].
    Styles follow the TF / StyleSpace convention: the raw affine output including its +1 bias init (values
    around 1); the toRGB weight gain is applied inside the layer, never to the exposed style.
    Editing a coordinate is editing a style tensor; parameters are never touched.
Encoder
    image -> w [B, w_dim], a discriminator-like ResNet trunk.
Discriminator
    StyleGAN2 ResNet discriminator with minibatch-std; conditional by projection on the classifier
    probabilities when c_dim > 0 (the classifier-specific training, CST, mode).

Model code only: no optimizers, no I/O, no training imports. Configs are frozen, JSON-serialisable dataclasses;
a network rebuilds identically from `Config.from_dict(cfg.to_dict())` plus its `state_dict`.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylex.errors import UserError
from stylex.layout import StyleLayout, block_channels
from stylex.ops import (
    DEFAULT_FILTER,
    LRELU_SLOPE,
    SQRT2,
    EqualConv2d,
    EqualLinear,
    autocast_off,
    modulated_conv2d,
    setup_filter,
    upcast_half,
    upsample2d,
)

MIN_RESOLUTION, MAX_RESOLUTION = 16, 1024
NOISE_MODES = ("const", "random", "none")
W_AVG_BETA = 0.995  # decay of the tracked mean of w (truncation centre), as in StyleGAN2


# ---- configs ------------------------------------------------------------------------------------------------

def check_resolution(img_resolution: Any) -> None:
    valid = isinstance(img_resolution, int) and not isinstance(img_resolution, bool)
    if not valid or not MIN_RESOLUTION <= img_resolution <= MAX_RESOLUTION or img_resolution & (img_resolution - 1):
        raise UserError(f"img_resolution must be a power of two between {MIN_RESOLUTION} and {MAX_RESOLUTION}, "
                        f"got {img_resolution}")


def _check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{type(cfg).__name__}.{name} must be a positive integer, got {value!r}")


class _Config:
    """to_dict / from_dict for the frozen network configs (from_dict rejects unknown keys by name)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        fields = dataclasses.fields(cls)
        known = {f.name for f in fields}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; known fields: "
                            f"{', '.join(sorted(known))}")
        missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in data]
        if missing:
            raise UserError(f"{cls.__name__} needs {', '.join(missing)}")
        return cls(**data)


@dataclass(frozen=True, kw_only=True)  # keywords only: a positional call cannot bind w_dim to another field
class GeneratorConfig(_Config):
    img_resolution: int  # output images are img_resolution x img_resolution (power of two, 16..1024)
    img_channels: int = 3
    w_dim: int = 512  # intermediate latent (output of the mapping network)
    c_dim: int = 0  # condition size = classifier classes (CST); 0 = unconditional
    channel_base: int = 32768  # config-f: channels(res) = min(channel_base // res, channel_max)
    channel_max: int = 512
    mapping_layers: int = 8
    z_dim: int = 512  # input latent
    mapping_lr_multiplier: float = 0.01  # the mapping MLP learns 100x slower, as in StyleGAN2
    fused_modconv: bool = False  # grouped-conv modulated conv; the shared-weight path is usually faster
    conv_clamp: float | None = None  # clip conv/toRGB outputs to +-conv_clamp (a reduced-precision guard)

    def __post_init__(self) -> None:
        check_resolution(self.img_resolution)
        _check_positive(self, "img_channels", "z_dim", "w_dim", "channel_base", "channel_max", "mapping_layers")
        if not isinstance(self.c_dim, int) or self.c_dim < 0:
            raise UserError(f"GeneratorConfig.c_dim must be an integer >= 0 (0 = unconditional), got {self.c_dim!r}")
        if self.conv_clamp is not None and not self.conv_clamp > 0:
            raise UserError(f"GeneratorConfig.conv_clamp must be positive or None, got {self.conv_clamp!r}")
        if not self.mapping_lr_multiplier > 0:
            raise UserError(f"GeneratorConfig.mapping_lr_multiplier must be positive, got "
                            f"{self.mapping_lr_multiplier!r}")
        StyleLayout(self.img_resolution, self.channel_base, self.channel_max)  # checks the channel settings


@dataclass(frozen=True)
class EncoderConfig(_Config):
    img_resolution: int
    img_channels: int = 3
    w_dim: int = 512
    channel_base: int = 32768
    channel_max: int = 512

    def __post_init__(self) -> None:
        check_resolution(self.img_resolution)
        _check_positive(self, "img_channels", "w_dim", "channel_base", "channel_max")
        _check_channels(self.img_resolution, self.channel_base)


@dataclass(frozen=True)
class DiscriminatorConfig(_Config):
    img_resolution: int
    img_channels: int = 3
    c_dim: int = 0  # > 0: projection conditioning on the classifier probabilities [B, c_dim]
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group_size: int = 4  # minibatch-std group (reduced to a divisor of the batch when needed)
    mbstd_channels: int = 1  # minibatch-std feature maps; 0 disables the layer

    def __post_init__(self) -> None:
        check_resolution(self.img_resolution)
        _check_positive(self, "img_channels", "channel_base", "channel_max", "mbstd_group_size")
        _check_channels(self.img_resolution, self.channel_base)
        if not isinstance(self.c_dim, int) or self.c_dim < 0:
            raise UserError(f"DiscriminatorConfig.c_dim must be an integer >= 0, got {self.c_dim!r}")
        final_channels = block_channels(4, self.channel_base, self.channel_max)
        if not isinstance(self.mbstd_channels, int) or self.mbstd_channels < 0 or (
                self.mbstd_channels and final_channels % self.mbstd_channels):
            raise UserError(f"DiscriminatorConfig.mbstd_channels must be 0 or divide the {final_channels} "
                            f"channels at 4x4, got {self.mbstd_channels!r}")


def _check_channels(img_resolution: int, channel_base: int) -> None:
    if channel_base < img_resolution:
        raise UserError(f"channel_base {channel_base} leaves no channels at {img_resolution} px "
                        f"(channels = channel_base // resolution); use channel_base >= {img_resolution}")


def _check_cond(cond: Tensor | None, c_dim: int, batch: int, who: str) -> Tensor | None:
    if c_dim == 0:
        if cond is not None:
            raise UserError(f"this {who} is unconditional (c_dim=0) but got a condition; pass cond=None or "
                            f"build it with c_dim = the number of classifier classes")
        return None
    if cond is None:
        raise UserError(f"this {who} is conditional (c_dim={c_dim}): pass cond, the classifier's "
                        f"probabilities [B, {c_dim}]")
    if cond.ndim != 2 or cond.shape[1] != c_dim or cond.shape[0] not in (1, batch):
        raise UserError(f"cond must be the classifier's probabilities [B, {c_dim}] with B = {batch}, "
                        f"got shape {list(cond.shape)}")
    return cond.expand(batch, c_dim)


# ---- mapping ------------------------------------------------------------------------------------------------

class MappingNetwork(nn.Module):
    """z [B, z_dim] -> w [B, w_dim]: pixel-norm, then an lrelu MLP with a reduced learning rate. Unconditional:
    StylEx conditions through the style affines only.

    `w_avg` (a buffer) tracks the mean w with decay W_AVG_BETA while the module is in training mode (or when
    `update_w_avg=True`); `truncation_psi` < 1 pulls w toward it."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, lr_multiplier: float = 0.01,
                 w_avg_beta: float = W_AVG_BETA):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        for i in range(num_layers):
            in_features = z_dim if i == 0 else w_dim
            setattr(self, f"fc{i}", EqualLinear(in_features, w_dim, lr_multiplier=lr_multiplier, activation="lrelu"))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, truncation_psi: float = 1.0, update_w_avg: bool | None = None) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise UserError(f"z must have shape [B, {self.z_dim}], got {list(z.shape)}")
        with autocast_off(z.device):  # the mapping stays in full precision (see DESIGN 5)
            x = upcast_half(z)
            x = x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)
            for i in range(self.num_layers):
                x = getattr(self, f"fc{i}")(x)
            if self.training if update_w_avg is None else update_w_avg:
                with torch.no_grad():
                    self.w_avg.copy_(x.detach().mean(dim=0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))
            if truncation_psi != 1:
                x = self.w_avg.to(x.dtype).lerp(x, truncation_psi)
        return x  # [B, w_dim]


# ---- synthesis ----------------------------------------------------------------------------------------------

@dataclass
class SynthesisState:
    """What enters a style layer: the features `x` [B, C, H, W] and the RGB skip `img` [B, img_channels, h, h]
    accumulated so far (at the previous block's resolution when entering a toRGB; None before b4.torgb)."""

    x: Tensor
    img: Tensor | None

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    def expand(self, k: int) -> SynthesisState:
        """Broadcast one image's state to k rows (views, no copy); a state with k rows is returned as is."""
        if self.batch_size == k:
            return self
        if self.batch_size != 1:
            raise UserError(f"expand(k) broadcasts a state of one image, this one has {self.batch_size}; "
                            "pick a row first with select(i)")
        img = None if self.img is None else self.img.expand(k, -1, -1, -1)
        return SynthesisState(self.x.expand(k, -1, -1, -1), img)

    def select(self, rows: int | slice | Tensor) -> SynthesisState:
        """Rows of a batched state; an integer (Python, numpy or 0-d tensor) keeps the batch dimension ([1, ...])."""
        is_index_tensor = isinstance(rows, Tensor) and rows.ndim > 0
        if not isinstance(rows, slice) and not is_index_tensor:
            row = operator.index(rows) % self.batch_size
            rows = slice(row, row + 1)
        return SynthesisState(self.x[rows], None if self.img is None else self.img[rows])

    def detach(self) -> SynthesisState:
        return SynthesisState(self.x.detach(), None if self.img is None else self.img.detach())



class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling x2) + noise + bias + lrelu. Takes its style s, not w: the
    `affine` (w_dim + c_dim -> in_channels, bias init 1) is used only by `Generator.w_to_styles`."""

    def __init__(self, in_channels: int, out_channels: int, w_features: int, resolution: int, up: int = 1,
                 conv_clamp: float | None = None, fused_modconv: bool = False,
                 resample_filter: tuple[int, ...] = DEFAULT_FILTER):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.fused_modconv = fused_modconv
        self.affine = EqualLinear(w_features, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))  # learned; 0 at init as in StyleGAN2
        self.register_buffer("noise_const", torch.randn(resolution, resolution))  # the fixed 'const' noise
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.weight_gain = 1 / math.sqrt(in_channels * 9)

    def forward(self, x: Tensor, s: Tensor, noise_mode: str = "const") -> Tensor:
        # lrelu(conv + noise + bias) * sqrt(2), computed as lrelu(sqrt(2) * (conv + noise + bias)) (a positive gain
        # commutes with lrelu) so that gain, bias and const noise ride on the demodulation pass, and the random
        # noise and the lrelu work in place on that fresh output (autograd keeps none of them).
        offset = self.bias[:, None, None]  # [O, 1, 1]
        if noise_mode == "const":
            offset = offset + self.noise_const * self.noise_strength  # [O, R, R]
        x = modulated_conv2d(x, self.weight * self.weight_gain, s, demodulate=True, up=self.up, padding=1,
                             fused=self.fused_modconv, resample_filter=self.resample_filter, gain=SQRT2,
                             add=offset * SQRT2)  # [B, O, R, R]
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x.add_(noise * (self.noise_strength * SQRT2).to(x.dtype))
        x = F.leaky_relu(x, LRELU_SLOPE, inplace=True)
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)

    def step(self, state: SynthesisState, s: Tensor, noise_mode: str) -> SynthesisState:
        return SynthesisState(self(state.x, s, noise_mode), state.img)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, resolution={self.resolution}, up={self.up}"


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation + bias: features -> RGB, added to the upsampled RGB skip."""

    def __init__(self, in_channels: int, img_channels: int, w_features: int, resolution: int,
                 conv_clamp: float | None = None, fused_modconv: bool = False,
                 resample_filter: tuple[int, ...] = DEFAULT_FILTER):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.conv_clamp = conv_clamp
        self.fused_modconv = fused_modconv
        self.affine = EqualLinear(w_features, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        # Applied to the weight (TF convention), so the exposed style is the raw affine output.
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        y = modulated_conv2d(x, self.weight * self.weight_gain, s, demodulate=False, fused=self.fused_modconv,
                             add=self.bias[:, None, None])
        if self.conv_clamp is not None:
            y = y.clamp(-self.conv_clamp, self.conv_clamp)
        return upcast_half(y)  # the RGB skip accumulates in fp32 even under autocast

    def step(self, state: SynthesisState, s: Tensor, noise_mode: str) -> SynthesisState:
        y = self(state.x, s)  # [B, img_channels, R, R]
        # The skip entering a toRGB is at the previous block's resolution (None at b4).
        img = y if state.img is None else upsample2d(state.img, self.resample_filter) + y
        return SynthesisState(state.x, img)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, resolution={self.resolution}"


class SynthesisBlock(nn.Module):
    """One resolution: `conv0` (upsampling; absent at 4x4), `conv1`, `torgb`; b4 also holds the constant input."""

    def __init__(self, cfg: GeneratorConfig, resolution: int):
        super().__init__()
        channels = block_channels(resolution, cfg.channel_base, cfg.channel_max)
        w_features = cfg.w_dim + cfg.c_dim
        common = {"conv_clamp": cfg.conv_clamp, "fused_modconv": cfg.fused_modconv}
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(channels, 4, 4))
        else:
            in_channels = block_channels(resolution // 2, cfg.channel_base, cfg.channel_max)
            self.conv0 = SynthesisLayer(in_channels, channels, w_features, resolution, up=2, **common)
        self.conv1 = SynthesisLayer(channels, channels, w_features, resolution, **common)
        self.torgb = ToRGBLayer(channels, cfg.img_channels, w_features, resolution, **common)


class SynthesisNetwork(nn.Module):
    """Blocks b4 .. b{img_resolution}; every style layer is one `state -> state` step (see `forward`)."""

    def __init__(self, cfg: GeneratorConfig, layout: StyleLayout):
        super().__init__()
        self.cfg = cfg
        self.layout = layout
        resolution = 4
        while resolution <= cfg.img_resolution:
            setattr(self, f"b{resolution}", SynthesisBlock(cfg, resolution))
            resolution *= 2

    @property
    def style_layers(self) -> list[SynthesisLayer | ToRGBLayer]:
        """The style layer modules in layout order (looked up by name, so module swaps stay visible)."""
        return [self.get_submodule(name) for name in self.layout.names]

    def w_to_styles(self, w: Tensor, cond: Tensor | None = None) -> list[Tensor]:
        cfg, layout = self.cfg, self.layout
        if w.ndim == 2 and w.shape[1] == cfg.w_dim:
            rows = None
        elif w.ndim == 3 and w.shape[1:] == (layout.num_ws, cfg.w_dim):
            rows = {}
        else:
            raise UserError(f"w must be [B, {cfg.w_dim}] (one w for every layer) or [B, {layout.num_ws}, "
                            f"{cfg.w_dim}] (W+), got {list(w.shape)}")
        cond = _check_cond(cond, cfg.c_dim, w.shape[0], "generator")
        with autocast_off(w.device):  # styles are computed and exposed in full precision
            w = upcast_half(w)
            if cond is not None:
                cond = cond.to(w.dtype)

            def affine_input(w_row: Tensor) -> Tensor:  # [B, w_dim + c_dim]
                return w_row if cond is None else torch.cat([w_row, cond], dim=1)

            shared = affine_input(w) if rows is None else None
            styles = []
            for spec, module in zip(layout.layers, self.style_layers, strict=True):
                if rows is None:
                    features = shared
                else:
                    if spec.w_index not in rows:  # a toRGB and the next conv0 share one row
                        rows[spec.w_index] = affine_input(w[:, spec.w_index])
                    features = rows[spec.w_index]
                styles.append(module.affine(features))  # [B, dim], around 1
        return styles

    def forward(self, styles: list[Tensor], start: int = 0, state: SynthesisState | None = None,
                return_states: bool = False, noise_mode: str = "const"
                ) -> tuple[Tensor, list[SynthesisState | None] | None]:
        layout = self.layout
        num_layers = layout.num_layers
        if noise_mode not in NOISE_MODES:
            raise UserError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        if isinstance(start, bool) or not hasattr(start, "__index__") or not 0 <= operator.index(start) < num_layers:
            raise UserError(f"start must be a style layer index 0..{num_layers - 1}, got {start!r}")
        start = operator.index(start)
        if len(styles) != num_layers:
            raise UserError(f"synthesize needs one style tensor per style layer ({num_layers}, layout order; "
                            f"entries before `start` may be None), got {len(styles)}")
        for spec in layout.layers[start:]:
            s = styles[spec.index]
            if not isinstance(s, Tensor) or s.ndim != 2 or s.shape[1] != spec.dim:
                got = list(s.shape) if isinstance(s, Tensor) else repr(s)
                raise UserError(f"the style of {spec.name} must be a tensor [B, {spec.dim}], got {got}")
        batch_sizes = {styles[i].shape[0] for i in range(start, num_layers)}
        if state is not None:
            batch_sizes.add(state.batch_size)
        batch = max(batch_sizes)
        if not batch_sizes <= {1, batch}:
            raise UserError(f"styles and state disagree on the batch size ({sorted(batch_sizes)}); each must have "
                            f"{batch} rows or 1 (broadcast)")

        first = layout.layers[start]
        if state is None:
            if start != 0:
                raise UserError(f"synthesize(start={start}) resumes from a cached state: pass state=states[{start}] "
                                "from a run with return_states=True")
            const = self.get_submodule("b4").const
            state = SynthesisState(const[None].expand(batch, -1, -1, -1), None)
        else:
            in_resolution = first.resolution // 2 if first.name.endswith(".conv0") else first.resolution
            if tuple(state.x.shape[1:]) != (first.dim, in_resolution, in_resolution):
                raise UserError(f"the state entering {first.name} must have features [B, {first.dim}, "
                                f"{in_resolution}, {in_resolution}], got {list(state.x.shape)}; pass "
                                f"states[{start}] for start={start}")
            state = state.expand(batch)

        states: list[SynthesisState | None] | None = [None] * num_layers if return_states else None
        for index, module in enumerate(self.style_layers[start:], start=start):
            if states is not None:
                states[index] = state
            state = module.step(state, styles[index], noise_mode)
        return state.img, states


# ---- generator ----------------------------------------------------------------------------------------------

class Generator(nn.Module):
    """StyleGAN2 generator with the StyleSpace API of DESIGN section 4.

    `forward(w, cond)` is exactly `synthesize(w_to_styles(w, cond))[0]`, so training and editing share one
    code path. Images are [B, img_channels, R, R], roughly in [-1, 1] (no tanh, as in StyleGAN2)."""

    def __init__(self, cfg: GeneratorConfig | dict):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = GeneratorConfig.from_dict(cfg)
        self.cfg = cfg
        self.layout = StyleLayout(cfg.img_resolution, cfg.channel_base, cfg.channel_max)
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_multiplier)
        self.synthesis = SynthesisNetwork(cfg, self.layout)

    @property
    def num_ws(self) -> int:
        return self.layout.num_ws

    def w_to_styles(self, w: Tensor, cond: Tensor | None = None) -> list[Tensor]:
        """w [B, w_dim] (every layer) or [B, num_ws, w_dim] (W+), cond [B, c_dim] (classifier probabilities;
        None iff c_dim == 0) -> one style [B, dim] per style layer, layout order, fp32 even under autocast."""
        return self.synthesis.w_to_styles(w, cond)

    def synthesize(self, styles: list[Tensor], start: int = 0, state: SynthesisState | None = None,
                   return_states: bool = False, noise_mode: str = "const"
                   ) -> tuple[Tensor, list[SynthesisState | None] | None]:
        """Run style layers start.. and return (image, states).

        styles: one tensor [B or 1, dim] per style layer (entries before `start` are not read and may be None).
        state: the state entering layer `start` (`states[start]` of an earlier run; one image's state is
            broadcast to the batch); None for start=0 (the constant input).
        return_states: fill `states[i]` (the state entering layer i, i >= start); otherwise states is None.
        noise_mode: 'const' (fixed per-layer noise buffers: deterministic, what editing needs), 'random', 'none'.
        """
        return self.synthesis(styles, start=start, state=state, return_states=return_states, noise_mode=noise_mode)

    def forward(self, w: Tensor, cond: Tensor | None = None, noise_mode: str = "random") -> Tensor:
        return self.synthesize(self.w_to_styles(w, cond), noise_mode=noise_mode)[0]


# ---- encoder and discriminator ------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """StyleGAN2 ResNet D block: [B, C_in, R, R] -> [B, C_out, R/2, R/2]; the skip is a 1x1 FIR-downsampling conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation="lrelu", down=2)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor) -> Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)  # sqrt(0.5) keeps the variance


class ResidualTrunk(nn.Module):
    """fromRGB at full resolution, then residual blocks down to 4x4: [B, C, R, R] -> [B, channels(4), 4, 4]."""

    def __init__(self, img_resolution: int, img_channels: int, channel_base: int, channel_max: int):
        super().__init__()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.fromrgb = EqualConv2d(img_channels, block_channels(img_resolution, channel_base, channel_max), 1,
                                   activation="lrelu")
        self.resolutions = []
        resolution = img_resolution
        while resolution > 4:
            setattr(self, f"b{resolution}", ResidualBlock(block_channels(resolution, channel_base, channel_max),
                                                          block_channels(resolution // 2, channel_base, channel_max)))
            self.resolutions.append(resolution)
            resolution //= 2
        self.out_channels = block_channels(4, channel_base, channel_max)

    def forward(self, img: Tensor) -> Tensor:
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise UserError(f"expected images [B, {', '.join(map(str, expected))}], got {list(img.shape)}")
        x = self.fromrgb(img)
        for resolution in self.resolutions:
            x = getattr(self, f"b{resolution}")(x)
        return x


class Encoder(nn.Module):
    """StylEx encoder: image [B, C, R, R] in [-1, 1] -> w [B, w_dim] (fp32), a discriminator-like trunk with a
    3x3 conv and two linear layers on the 4x4 features. No minibatch-std: an encoding depends on its image only."""

    def __init__(self, cfg: EncoderConfig | dict):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = EncoderConfig.from_dict(cfg)
        self.cfg = cfg
        self.trunk = ResidualTrunk(cfg.img_resolution, cfg.img_channels, cfg.channel_base, cfg.channel_max)
        channels = self.trunk.out_channels
        # The hidden layer is at least w_dim wide: a head narrower than w (32 features for a 128-d w on the CPU
        # demo) kept the encoder from carrying shape kind and rotation, which G renders from an optimised w.
        hidden = max(channels, cfg.w_dim)
        self.conv = EqualConv2d(channels, channels, 3, activation="lrelu")
        self.fc = EqualLinear(channels * 16, hidden, activation="lrelu")
        self.out = EqualLinear(hidden, cfg.w_dim)

    def forward(self, img: Tensor) -> Tensor:
        x = self.conv(self.trunk(img))  # [B, C, 4, 4]
        return upcast_half(self.out(self.fc(x.flatten(1))))  # [B, w_dim]


def minibatch_std(x: Tensor, group_size: int, num_channels: int = 1) -> Tensor:
    """Append `num_channels` maps of the feature std within groups of samples: [B, C, H, W] -> [B, C + F, H, W].

    Groups are consecutive rows; the group size is the largest divisor of B that is <= group_size, so any
    batch size works (B = 6 with group_size 4 uses groups of 3; a prime B > group_size uses groups of 1)."""
    batch, channels, height, width = x.shape
    group = next(g for g in range(min(group_size, batch), 0, -1) if batch % g == 0)
    y = upcast_half(x).reshape(batch // group, group, num_channels, channels // num_channels, height, width)
    y = (y - y.mean(dim=1, keepdim=True)).square().mean(dim=1)  # [n, F, c, H, W] variance over the group
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n, F]
    y = y[:, None, :, None, None].expand(-1, group, -1, height, width).reshape(batch, num_channels, height, width)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 ResNet discriminator: image [B, C, R, R] (and cond [B, c_dim] when c_dim > 0) -> logits [B, 1].

    With c_dim > 0 the score is conditioned by projection (Miyato & Koyama 2018) on the classifier
    probabilities: score = out(h) + sum(embed(cond) * h) / sqrt(dim(h)), h the last hidden features."""

    def __init__(self, cfg: DiscriminatorConfig | dict):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = DiscriminatorConfig.from_dict(cfg)
        self.cfg = cfg
        self.trunk = ResidualTrunk(cfg.img_resolution, cfg.img_channels, cfg.channel_base, cfg.channel_max)
        channels = self.trunk.out_channels
        self.conv = EqualConv2d(channels + cfg.mbstd_channels, channels, 3, activation="lrelu")
        self.fc = EqualLinear(channels * 16, channels, activation="lrelu")
        self.out = EqualLinear(channels, 1)
        self.embed = EqualLinear(cfg.c_dim, channels, bias=False) if cfg.c_dim > 0 else None

    def forward(self, img: Tensor, cond: Tensor | None = None) -> Tensor:
        cond = _check_cond(cond, self.cfg.c_dim, img.shape[0], "discriminator")
        x = self.trunk(img)  # [B, C, 4, 4]
        if self.cfg.mbstd_channels:
            x = minibatch_std(x, self.cfg.mbstd_group_size, self.cfg.mbstd_channels)
        h = self.fc(self.conv(x).flatten(1))  # [B, C]
        score = self.out(h)  # [B, 1]
        if self.embed is not None:
            projection = (self.embed(cond.to(h.dtype)) * h).sum(dim=1, keepdim=True) / math.sqrt(h.shape[1])
            score = score + projection
        return upcast_half(score)
