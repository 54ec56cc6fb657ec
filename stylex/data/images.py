"""Decoding image files into the suite's 8-bit L or RGB, for the folder dataset and `stylex explain`.

PIL's `convert("RGB")` clips 16-bit and float images instead of scaling them (a 16-bit PNG comes out 99 %
white), so every mode is mapped here by its real range, or refused with a message saying what to do:

    L, RGB                        as they are
    1 (bilevel)                   0 / 255
    I;16, I;16L, I;16B, I;16N     16-bit gray: value / 65535 * 255
    I                             32-bit integer gray, as PIL decodes some 16-bit files: read as 16-bit
                                  when every value lies in [0, 65535], refused otherwise
    F                             float gray: value * 255 when every value lies in [0, 1], refused otherwise
    CMYK, YCbCr, HSV              PIL's conversion to RGB
    P                             the palette's colours; transparent entries as alpha below
    RGBA, RGBa, LA, La, PA        composited onto black (ALPHA_BACKGROUND)
    anything else (LAB, ...)      refused

16-bit RGB(A) PNGs need no case of their own: Pillow decodes them as 8-bit RGB(A) from the high byte of each
sample, which is the same scaling. Transparent pixels become black because black is the background of the
suite's own datasets (Fashion-MNIST pads with 0) and of most classifier training cut-outs stored with alpha;
a classifier trained on white-background photos needs its images flattened onto white before they come here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylex.errors import UserError

log = logging.getLogger("stylex.data.images")

ALPHA_BACKGROUND = 0
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
CONVERTIBLE_TO_RGB = frozenset({"CMYK", "YCbCr", "HSV"})
ALPHA_MODES = {"RGBA": "RGB", "RGBa": "RGB", "LA": "L", "La": "L", "PA": "RGB"}
SUPPORTED_MODES = frozenset({"L", "RGB", "1", "I", "F", "P", *SIXTEEN_BIT_MODES, *CONVERTIBLE_TO_RGB, *ALPHA_MODES})
SIXTEEN_BIT_MAX = 65535
MAX_REASON_CHARS = 80
SAVE_AS = "save it as an 8- or 16-bit gray or sRGB PNG"


def short_reason(err: Exception) -> str:
    """An exception as one short line, for messages that list many files."""
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def refusal(image: Image.Image) -> str | None:
    """Why `image` cannot be decoded faithfully (its mode, and what to do), or None when it can.

    Only integer and float images are loaded to look at their values; every other mode is judged by name.
    """
    mode = image.mode
    if mode not in SUPPORTED_MODES:
        return f"PIL mode {mode} is not supported; {SAVE_AS}"
    if mode == "I":
        values = np.asarray(image)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > SIXTEEN_BIT_MAX:
            return f"PIL mode I (32-bit integer) with values {low} to {high}, outside 16-bit 0-65535; {SAVE_AS}"
    if mode == "F":
        values = np.asarray(image)
        if not np.isfinite(values).all():
            return f"PIL mode F (float) with NaN or infinite values; {SAVE_AS}"
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            return (f"PIL mode F (float) with values {low:g} to {high:g}, only [0, 1] is read; "
                    f"rescale it to [0, 1] or {SAVE_AS}")
    return None


def scaled_to_u8(values: np.ndarray, top: float) -> Image.Image:
    scaled = np.rint(values.astype(np.float64) * (255.0 / top))
    return Image.fromarray(scaled.clip(0, 255).astype(np.uint8), mode="L")


def composite_on_background(image: Image.Image) -> Image.Image:
    """Alpha images over ALPHA_BACKGROUND, as 8-bit L or RGB."""
    target = ALPHA_MODES[image.mode]
    # Premultiplied (RGBa, La) and palette-with-alpha (PA) images become straight-alpha ones first.
    straight = image.convert("RGBA" if target == "RGB" else "LA")
    pixels = np.asarray(straight, dtype=np.float64)
    colour, alpha = pixels[..., :-1], pixels[..., -1:] / 255.0
    flat = np.rint(colour * alpha + ALPHA_BACKGROUND * (1.0 - alpha)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(flat[..., 0] if target == "L" else flat, mode=target)


def to_8bit(image: Image.Image, path: Path | str) -> Image.Image:
    """`image` as 8-bit "L" (gray sources) or "RGB" (colour sources), scaled by its mode's range.

    Refused modes and values raise UserError naming `path`, the mode and what to do.
    """
    reason = refusal(image)
    if reason is not None:
        raise UserError(f"cannot use image {path}: {reason}")
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        return scaled_to_u8(np.asarray(image), SIXTEEN_BIT_MAX)
    if mode == "F":
        return scaled_to_u8(np.asarray(image), 1.0)
    if mode == "P" and "transparency" in image.info:
        return composite_on_background(image.convert("RGBA"))
    if mode in ALPHA_MODES:
        return composite_on_background(image)
    # 1, P without transparency, CMYK, YCbCr, HSV: PIL's own conversions are exact for these.
    return image.convert("L" if mode == "1" else "RGB")


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """8-bit L/RGB -> the model's channels: gray is replicated, colour goes to ITU-R 601-2 luma (PIL's "L")."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    mode = "L" if channels == 1 else "RGB"
    return image if image.mode == mode else image.convert(mode)


def decode(image: Image.Image, path: Path | str, channels: int) -> Image.Image:
    """An opened PIL image as 8-bit "L" (channels 1) or "RGB" (channels 3); see the module docstring."""
    return to_channels(to_8bit(image, path), channels)


def open_image(path: Path | str, channels: int, draft_size: int | None = None) -> Image.Image:
    """Decode the file at `path` to an 8-bit "L" or "RGB" PIL image (the first frame of animations).

    `draft_size` lets JPEG decode at the smallest DCT scale still covering that many pixels, much faster
    for large photos. Unreadable files and refused modes raise UserError naming the file.
    """
    try:
        with Image.open(path) as opened:
            if draft_size is not None:
                opened.draft("L" if channels == 1 else "RGB", (draft_size, draft_size))
            opened.load()
            image = decode(opened, path, channels)
            # Closing the file also frees an image that decode returned unchanged, so keep a copy.
            return opened.copy() if image is opened else image
    except UserError:
        raise
    except Exception as err:  # PIL reports bad data with many exception types
        raise UserError(f"cannot decode image {path} ({short_reason(err)}); fix or remove the file") from None


def read_image(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """An image file as a [1, C, R, R] tensor in [-1, 1], converted to the model's channels and size."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no image file at {path}")
    # The folder dataset decodes through the same function, so 16-bit, float, CMYK, palette and alpha
    # files are scaled (or refused) the same way for training and for explaining.
    image = open_image(path, channels)
    if image.size != (resolution, resolution):
        log.info("resizing %s from %dx%d to the model's %dx%d", path, *image.size, resolution, resolution)
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1.0
