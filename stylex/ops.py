"""Pure-PyTorch StyleGAN2 primitives: equalized-lr layers, FIR resampling, modulated convolution, bias + lrelu.

Everything here runs on any device in fp32 and under `torch.autocast` (bf16): element-wise ops cast their
parameters to the activation dtype, and the demodulation coefficients are computed in fp32 with autocast off.
Images and feature maps are [B, C, H, W]; a FIR filter is a 2-D tensor [fh, fw] that sums to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
DEFAULT_FILTER = (1, 3, 3, 1)  # StyleGAN2's binomial resampling filter


def upcast_half(t: Tensor) -> Tensor:
    """Half-precision tensors to fp32; fp32 and fp64 unchanged (tests may run in double)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def autocast_off(device: torch.device):
    """Run a block in full precision even inside `torch.autocast` (style affines, demodulation)."""
    return torch.autocast(device_type=device.type, enabled=False)


# ---- activation ---------------------------------------------------------------------------------------------

def bias_lrelu(x: Tensor, b: Tensor | None = None, clamp: float | None = None, gain: float = SQRT2) -> Tensor:
    """x + b (b broadcast over dim 1), leaky ReLU(0.2), times `gain` (sqrt(2) keeps the signal variance),
    then clipped to [-clamp, clamp] when `clamp` is set (a guard for reduced precision)."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if dim == 1 else 1 for dim in range(x.ndim)])
    x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


# ---- equalized learning rate layers -------------------------------------------------------------------------

class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: weights are stored N(0, 1) / lr_multiplier and scaled at run time
    by lr_multiplier / sqrt(in_features), so every layer learns at the same speed whatever its fan-in.

    `bias_init` is the effective bias at initialization (the style affines use 1, so styles start around 1).
    `activation="lrelu"` applies `bias_lrelu` (gain sqrt(2)); None is linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_multiplier: float = 1.0, activation: str | None = None):
        super().__init__()
        if activation not in (None, "lrelu"):
            raise ValueError(f"activation must be None or 'lrelu', got {activation!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:  # [B, in] -> [B, out]
        weight = self.weight * self.weight_gain
        bias = self.bias * self.bias_gain if self.bias is not None else None
        if self.activation is None:
            return F.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))
        return bias_lrelu(F.linear(x, weight.to(x.dtype)), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, activation={self.activation}")


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate (weights N(0, 1), scaled by 1/sqrt(fan_in) at run time).

    `down=2` downsamples as StyleGAN2 does: FIR-filter the input, then a stride-2 conv. Odd kernels only;
    the output keeps the input size (or half of it). `clamp` clips the activation output."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str | None = None, down: int = 1, resample_filter: Sequence[int] = DEFAULT_FILTER,
                 clamp: float | None = None):
        super().__init__()
        if activation not in (None, "lrelu"):
            raise ValueError(f"activation must be None or 'lrelu', got {activation!r}")
        if kernel_size % 2 != 1 or down not in (1, 2):
            raise ValueError(f"EqualConv2d needs an odd kernel and down in (1, 2), got {kernel_size}, {down}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.activation = activation
        self.down = down
        self.clamp = clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        weight = (self.weight * self.weight_gain).to(x.dtype)
        if self.down == 1:
            x = F.conv2d(x, weight, padding=self.kernel_size // 2)
        else:
            # Total FIR padding so that (H + pad - fw + 1 - k) // 2 + 1 == H // 2.
            fw = self.resample_filter.shape[-1]
            pad = fw - self.down + self.kernel_size - 1
            x = upfirdn2d(x, self.resample_filter, padding=((pad + 1) // 2, pad // 2))
            x = F.conv2d(x, weight, stride=self.down)
        if self.activation == "lrelu":
            return bias_lrelu(x, self.bias, clamp=self.clamp)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype)[None, :, None, None]
        return x if self.clamp is None else x.clamp(-self.clamp, self.clamp)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, down={self.down}, "
                f"activation={self.activation}")


# ---- FIR resampling -----------------------------------------------------------------------------------------

def setup_filter(taps: Sequence[float] = DEFAULT_FILTER, normalize: bool = True) -> Tensor:
    """1-D taps -> separable 2-D filter [n, n] (outer product), normalized to sum 1 by default."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"filter taps must be a non-empty 1-D sequence, got shape {list(f.shape)}")
    f = f[:, None] * f[None, :]
    return f / f.sum() if normalize else f


def _padding4(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """int (all sides) | (before, after) for both axes | (x0, x1, y0, y1) -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = tuple(padding)
    if len(padding) == 2:
        return padding[0], padding[1], padding[0], padding[1]
    if len(padding) == 4:
        return padding
    raise ValueError(f"padding must be an int, (before, after) or (x0, x1, y0, y1), got {padding}")


def upfirdn2d(x: Tensor, f: Tensor, up: int = 1, down: int = 1, padding: int | Sequence[int] = 0,
              flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad, FIR-filter, downsample by striding; the same on both axes.

    1. insert `up - 1` zeros after every pixel: [H, W] -> [H * up, W * up];
    2. pad with zeros (x0, x1, y0, y1); negative values crop;
    3. convolve every channel with `f` (a true convolution: the filter is flipped for F.conv2d's
       cross-correlation unless `flip_filter`), the filter scaled by `gain`;
    4. keep every `down`-th pixel (as a strided conv).
    Output size per axis: (H * up + pad0 + pad1 - fh) // down + 1."""
    batch, channels, height, width = x.shape
    x0, x1, y0, y1 = _padding4(padding)
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    if min(x0, x1, y0, y1) < 0:
        x = x[:, :, max(-y0, 0):x.shape[2] - max(-y1, 0), max(-x0, 0):x.shape[3] - max(-x1, 0)]
    f = f.to(x.dtype) * gain
    if not flip_filter:
        f = f.flip([0, 1])
    weight = f[None, None].expand(channels, 1, *f.shape)  # depthwise: one copy of the filter per channel
    return F.conv2d(x, weight, stride=down, groups=channels)


def upsample2d(x: Tensor, f: Tensor, up: int = 2, padding: int | Sequence[int] = 0, gain: float = 1.0) -> Tensor:
    """FIR upsampling: [H, W] -> [H * up, W * up]. The gain up**2 restores the energy lost to zero insertion
    (a normalized 2-D filter), so a constant image stays constant away from the borders."""
    x0, x1, y0, y1 = _padding4(padding)
    fh, fw = f.shape
    pads = (x0 + (fw + up - 1) // 2, x1 + (fw - up) // 2, y0 + (fh + up - 1) // 2, y1 + (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=pads, gain=gain * up * up)


def downsample2d(x: Tensor, f: Tensor, down: int = 2, padding: int | Sequence[int] = 0,
                 gain: float = 1.0) -> Tensor:
    """FIR downsampling (anti-aliasing filter, then stride): [H, W] -> [H // down, W // down]."""
    x0, x1, y0, y1 = _padding4(padding)
    fh, fw = f.shape
    pads = (x0 + (fw - down + 1) // 2, x1 + (fw - down) // 2, y0 + (fh - down + 1) // 2, y1 + (fh - down) // 2)
    return upfirdn2d(x, f, down=down, padding=pads, gain=gain)


# ---- modulated convolution ----------------------------------------------------------------------------------

def conv2d_resample(x: Tensor, weight: Tensor, f: Tensor | None = None, up: int = 1, padding: int = 0,
                    groups: int = 1) -> Tensor:
    """conv2d (`padding` applies), or with `up=2` an upsampling conv: [H, W] -> [2H, 2W] (`padding` ignored).

    The upsampling conv is a stride-2 transposed conv followed by the FIR filter (gain 4): one conv on the small
    input instead of a conv on the zero-inserted image. The kernel is flipped so that a weight means the same
    spatial pattern in both paths. `weight` is [O, I / groups, k, k] as for conv2d."""
    weight = weight.to(x.dtype)
    if up == 1:
        return F.conv2d(x, weight, padding=padding, groups=groups)
    if up != 2 or f is None:
        raise ValueError(f"conv2d_resample supports up in (1, 2) (up=2 needs a filter), got up={up}")
    out_channels, in_per_group, kh, kw = weight.shape
    # conv_transpose2d wants [I, O / groups, k, k]: swap in/out within each group.
    weight = weight.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    weight = weight.reshape(groups * in_per_group, out_channels // groups, kh, kw).flip([2, 3])
    x = F.conv_transpose2d(x, weight, stride=2, groups=groups)  # [2H + k - 2]
    # Total FIR padding so that the result is exactly 2H: (2H + k - 2) + pad - fw + 1 == 2H.
    pad = f.shape[-1] + 1 - kw
    return upfirdn2d(x, f, padding=((pad + 1) // 2, pad // 2), gain=4)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True, up: int = 1,
                     padding: int = 0, fused: bool = False, resample_filter: Tensor | None = None,
                     gain: float = 1.0, add: Tensor | None = None) -> Tensor:
    """StyleGAN2 modulated convolution, returning `gain * conv + add`.

    x [B, I, H, W], weight [O, I, k, k] (already times its equalized-lr gain), styles [B, I] (or [1, I]).
    Each sample's kernel is weight * styles[b] over input channels; with `demodulate` each output channel's
    kernel is rescaled to unit norm. Padding applies to up=1 (k // 2 keeps the size); up=2 always returns 2H.
    `add` (broadcastable to the output: noise, bias) and `gain` are applied in the same pass as the
    demodulation (one torch.addcmul) instead of three more passes over the activations.

    fused=False (default): scale x by the styles, one shared-weight conv, scale the output by the
    demodulation coefficients; the batch shares one weight, which is what cuDNN/oneDNN are fast at and what
    AttFind's many-edits-per-forward batches need. fused=True: per-sample kernels as one grouped conv.
    1x1 kernels without upsampling (toRGB) always take a batched matmul with per-sample weights: it reads the
    input once, where scaling it first would write a copy of it."""
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if styles.shape[-1] != in_channels:
        raise ValueError(f"styles have {styles.shape[-1]} channels but the conv has {in_channels} inputs")
    if styles.shape[0] != batch:
        styles = styles.expand(batch, in_channels)

    if fused or (kh == kw == 1 and up == 1):
        w = weight[None] * styles[:, None, :, None, None]  # [B, O, I, k, k]
        with autocast_off(x.device):
            w = upcast_half(w)
            if demodulate:
                w = w * torch.rsqrt(w.square().sum(dim=[2, 3, 4]) + 1e-8)[:, :, None, None, None]
            if gain != 1:
                w = w * gain
        if kh == kw == 1 and up == 1:
            out = torch.matmul(w.reshape(batch, out_channels, in_channels).to(x.dtype), x.flatten(2))  # [B, O, HW]
            out = out.reshape(batch, out_channels, *x.shape[2:])
        else:
            out = conv2d_resample(x.reshape(1, batch * in_channels, *x.shape[2:]),
                                  w.reshape(batch * out_channels, in_channels, kh, kw), resample_filter, up=up,
                                  padding=padding, groups=batch)
            out = out.reshape(batch, out_channels, *out.shape[2:])
        return out if add is None else out + add.to(out.dtype)

    scale = None  # per-sample output scale [B, O]
    if demodulate:
        with autocast_off(x.device):
            # sum_{i,kh,kw} (w * s_i)^2 = (s^2) @ (sum_k w^2)^T: [B, I] @ [I, O] -> [B, O], no [B, O, I, k, k].
            wsq = upcast_half(weight).square().sum(dim=[2, 3])  # [O, I]
            scale = torch.rsqrt(upcast_half(styles).square() @ wsq.t() + 1e-8) * gain  # [B, O]
    out = conv2d_resample(x * styles.to(x.dtype)[:, :, None, None], weight, resample_filter, up=up, padding=padding)
    if scale is not None:
        scale = scale.to(out.dtype)[:, :, None, None]
        return out * scale if add is None else torch.addcmul(add.to(out.dtype), out, scale)
    if add is None:
        return out * gain if gain != 1 else out
    return torch.add(add.to(out.dtype), out, alpha=gain)
