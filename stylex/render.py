"""Drawing of explanations: the paper's figure style, per-attribute panels and animated GIFs.

Pure drawing: every image and probability arrives already computed (no generator or classifier calls here).
Images are torch tensors in [-1, 1], `[B, C, H, W]` or `[C, H, W]`, with C = 1 or 3. Datasets may be as small
as 16-32 px, so each image becomes a square *tile* of a display size (nearest-neighbour, pixels stay crisp).

Conventions, as in the StylEx paper: the classifier probability of the explained class sits in the top-left
corner of every tile, originals are unframed and counterfactuals carry a colored frame drawn inside the tile.
GIFs are written at the size they are displayed, because some browsers and page layouts show a resized GIF
as a still image.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from stylex.errors import UserError
from stylex.runtime import atomic_write_bytes

if TYPE_CHECKING:
    from torch import Tensor

    Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
    Color = tuple[int, int, int]

DEFAULT_FRAME_COLOR: tuple[int, int, int] = (230, 60, 60)
BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
LABEL_BOX_ALPHA = 170  # dark enough to read white text on a white image, light enough to see what it covers
MIN_TILE_SIZE = 16
MAX_TILE_SIZE = 2048
# Browsers play GIF frame delays below 20 ms as 100 ms, which would silently slow a sweep down.
MIN_GIF_FRAME_MS = 20
SWEEP_END_HOLD_MS = 600  # the two ends of a sweep are what the viewer compares, so they stay up longer

# Fonts tried, in order, for text the bundled font cannot draw (e.g. the arrows in "ch 17 ↑"); all local files.
FALLBACK_FONT_FILES = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "Arial Unicode.ttf", "arial.ttf")
ASCII_FALLBACKS = {"↑": "^", "↓": "v", "→": "->", "←": "<-", "×": "x", "−": "-", "…": "...", "·": "."}
_MISSING_GLYPH_PROBE = "\U0010fffd"  # a private-use code point no font draws: its glyph is the "missing" box


# ---------------------------------------------------------------------------------------------- tensors -> pixels


def to_uint8(images: Tensor | np.ndarray) -> np.ndarray:
    """Images in [-1, 1] (`[B, C, H, W]` or `[C, H, W]`, C = 1 or 3) -> uint8 `[B, H, W, 3]`, gray repeated."""
    batch = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if batch.ndim == 3:
        batch = batch.unsqueeze(0)
    if batch.ndim != 4:
        raise UserError(f"images must be [B, C, H, W] or [C, H, W], got shape {tuple(batch.shape)}; "
                        "pass image tensors, not a flat vector or a single channel")
    if batch.shape[1] not in (1, 3):
        raise UserError(f"images must have 1 (grayscale) or 3 (RGB) channels in dim 1, got shape "
                        f"{tuple(batch.shape)}; channels-last arrays need .permute(0, 3, 1, 2) first")
    if batch.numel() == 0:
        raise UserError(f"images are empty (shape {tuple(batch.shape)}); pass at least one image")
    if not torch.isfinite(batch).all():
        raise UserError("images contain NaN or infinity; check the generator output before rendering it")
    # floor(x + 0.5) rather than torch.round: half-to-even would send 0 to 128 but 1/255-spaced values unevenly.
    levels = torch.floor((batch.clamp(-1.0, 1.0) + 1.0) * 127.5 + 0.5).to(torch.uint8)
    if levels.shape[1] == 1:
        levels = levels.expand(-1, 3, -1, -1)
    return levels.permute(0, 2, 3, 1).contiguous().numpy()


def _single_image_u8(image: Tensor | np.ndarray, name: str) -> np.ndarray:
    batch = to_uint8(image)
    if batch.shape[0] != 1:
        raise UserError(f"{name} must be one image ([C, H, W] or [1, C, H, W]), got a batch of {batch.shape[0]}")
    return batch[0]


def _probabilities(values: float | Sequence[float] | Tensor | None, count: int, name: str) -> list[float | None]:
    """One probability (or None) per image; a single number is accepted when there is a single image."""
    if values is None:
        return [None] * count
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().flatten().tolist()
    if isinstance(values, (int, float)):
        values = [values]
    values = list(values)
    if len(values) != count:
        raise UserError(f"{name} has {len(values)} values for {count} images; give one probability per image")
    for value in values:
        _check_probability(value, name)
    return [float(value) for value in values]


def _check_probability(value: float | None, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
        raise UserError(f"{name} must be probabilities in [0, 1], got {value!r}; pass softmax outputs, not logits")


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_TILE_SIZE <= size <= MAX_TILE_SIZE:
        raise UserError(f"display size must be an integer from {MIN_TILE_SIZE} to {MAX_TILE_SIZE} px, got {size!r}")


def _check_color(color: Color | None) -> None:
    if color is None:
        return
    if len(color) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in color):
        raise UserError(f"frame_color must be three integers 0-255 (R, G, B), got {color!r}")


# ---------------------------------------------------------------------------------------------------- fonts


@functools.lru_cache(maxsize=64)
def _bundled_font(size: int) -> Font:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=64)
def _fallback_fonts(size: int) -> tuple[Font, ...]:
    fonts = []
    for file_name in FALLBACK_FONT_FILES:
        try:
            fonts.append(ImageFont.truetype(file_name, size))
        except OSError:  # not installed on this machine: the ASCII fallback still keeps the text readable
            continue
    return tuple(fonts)


def _glyph_signature(font: Font, character: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(character)
    return mask.size, bytes(mask)


@functools.lru_cache(maxsize=4096)
def _has_glyph(font: Font, character: str) -> bool:
    if character.isascii():
        return True
    return _glyph_signature(font, character) != _glyph_signature(font, _MISSING_GLYPH_PROBE)


def _font_for(text: str, size: int) -> tuple[Font, str]:
    """A font that draws every character of `text`, else the bundled font with ASCII stand-ins."""
    for font in (_bundled_font(size), *_fallback_fonts(size)):
        if all(_has_glyph(font, character) for character in text):
            return font, text
    font = _bundled_font(size)
    readable = "".join(
        character if _has_glyph(font, character) else ASCII_FALLBACKS.get(character, "?") for character in text)
    return font, readable


def _label_font_size(tile_size: int) -> int:
    return max(9, round(tile_size * 0.11))


def _title_font_size(tile_size: int) -> int:
    return max(10, round(tile_size * 0.095))


def _line_height(font: Font) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def _text_width(font: Font, text: str) -> float:
    return font.getlength(text)


def _fit_width(text: str, font: Font, max_width: int) -> str:
    """Shorten `text` with an ellipsis so that it fits `max_width` pixels."""
    if _text_width(font, text) <= max_width:
        return text
    ellipsis = "…" if _has_glyph(font, "…") else "..."
    for cut in range(len(text) - 1, 0, -1):
        candidate = text[:cut].rstrip() + ellipsis
        if _text_width(font, candidate) <= max_width:
            return candidate
    return ellipsis


def _wrap(text: str, font: Font, max_width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and _text_width(font, candidate) > max_width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return [_fit_width(line, font, max_width) for line in lines]


# ---------------------------------------------------------------------------------------------------- tiles


def frame_width_for(size: int) -> int:
    """Frame thickness used by the figure functions: about 3 % of the tile, so it shows at any display size."""
    return max(2, round(size / 32))


def tile_gap(size: int) -> int:
    """White space between tiles and around a figure for tiles of `size` px."""
    return max(2, size // 32)


def tile(
    image_u8: np.ndarray,
    size: int,
    probability: float | None = None,
    caption: str | None = None,
    frame_color: Color | None = None,
    frame_width: int = 4,
) -> Image.Image:
    """One image as a size x size tile: probability top-left, optional caption at the bottom, optional frame.

    The frame is drawn inside the tile so that framed and unframed tiles line up in a figure.
    """
    _check_size(size)
    _check_probability(probability, "probability")
    _check_color(frame_color)
    if not isinstance(image_u8, np.ndarray) or image_u8.dtype != np.uint8 or image_u8.ndim != 3 \
            or image_u8.shape[2] != 3:
        shape = getattr(image_u8, "shape", None)
        raise UserError(f"tile needs a uint8 array [H, W, 3], got {type(image_u8).__name__} with shape {shape}; "
                        "convert tensors with to_uint8 first")
    if isinstance(frame_width, bool) or not isinstance(frame_width, int) or not 1 <= frame_width <= size // 4:
        raise UserError(f"frame_width must be an integer from 1 to {size // 4} px for a {size} px tile, "
                        f"got {frame_width!r}")
    picture = Image.fromarray(image_u8, "RGB").resize((size, size), Image.Resampling.NEAREST)
    inset = 0
    if frame_color is not None:
        ImageDraw.Draw(picture).rectangle((0, 0, size - 1, size - 1), outline=tuple(frame_color), width=frame_width)
        inset = frame_width  # labels sit inside the frame, so the frame stays a closed border
    if probability is None and not caption:
        return picture
    overlay = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    if probability is not None:
        _draw_probability(overlay, f"{probability:.2f}", size, inset)
    if caption:
        _draw_caption(overlay, caption, size, inset)
    return Image.alpha_composite(picture.convert("RGBA"), overlay).convert("RGB")


def _draw_probability(overlay: Image.Image, text: str, size: int, inset: int) -> None:
    font = _bundled_font(_label_font_size(size))
    left, top, right, bottom = font.getbbox(text)
    padding = max(2, round(size * 0.025))
    box = (inset, inset, inset + right - left + 2 * padding, inset + bottom - top + 2 * padding)
    draw = ImageDraw.Draw(overlay)
    draw.rectangle(box, fill=(0, 0, 0, LABEL_BOX_ALPHA))
    draw.text((inset + padding - left, inset + padding - top), text, font=font, fill=(255, 255, 255, 255))


def _draw_caption(overlay: Image.Image, caption: str, size: int, inset: int) -> None:
    font, text = _font_for(caption, _label_font_size(size))
    padding = max(1, round(size * 0.015))
    text = _fit_width(text, font, size - 2 * inset - 2 * padding)
    band_top = size - inset - _line_height(font) - 2 * padding
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((inset, band_top, size - 1 - inset, size - 1 - inset), fill=(0, 0, 0, LABEL_BOX_ALPHA))
    draw.text((size // 2, band_top + padding), text, font=font, fill=(255, 255, 255, 255), anchor="ma")


# --------------------------------------------------------------------------------------------------- figures


def counterfactual_figure(
    original: Tensor,
    counterfactuals: Tensor,
    p_original: float,
    p_counterfactuals: float | Sequence[float] | Tensor,
    titles: Sequence[str] | None = None,
    size: int = 128,
    frame_color: Color | None = DEFAULT_FRAME_COLOR,
    header: str | None = None,
) -> Image.Image:
    """The paper's figure: the original, then each counterfactual framed, probabilities top-left.

    `titles` go under the tiles: K of them (one per counterfactual; the original is then titled "original")
    or K + 1 (the first is the original's).
    """
    _check_size(size)
    _check_color(frame_color)
    original_u8 = _single_image_u8(original, "original")
    counterfactual_u8 = to_uint8(counterfactuals)
    count = counterfactual_u8.shape[0]
    _check_probability(p_original, "p_original")
    probabilities = [p_original, *_probabilities(p_counterfactuals, count, "p_counterfactuals")]
    frame = frame_width_for(size)
    tiles = [tile(original_u8, size, probabilities[0])]
    tiles += [tile(image, size, probability, frame_color=frame_color, frame_width=frame)
              for image, probability in zip(counterfactual_u8, probabilities[1:], strict=True)]
    return _compose(tiles, rows=1, size=size, header=header, titles=_figure_titles(titles, count))


def _figure_titles(titles: Sequence[str] | None, count: int) -> list[str] | None:
    if titles is None:
        return None
    if isinstance(titles, str):
        titles = [titles]
    titles = [str(title) for title in titles]
    if len(titles) == count:
        return ["original", *titles]
    if len(titles) == count + 1:
        return titles
    raise UserError(f"titles has {len(titles)} entries for {count} counterfactuals; "
                    f"give {count} (one per counterfactual) or {count + 1} (the original's first)")


def attribute_panel(
    originals: Tensor,
    counterfactuals: Tensor,
    p_originals: float | Sequence[float] | Tensor,
    p_counterfactuals: float | Sequence[float] | Tensor,
    title: str | None = None,
    size: int = 96,
    frame_color: Color | None = DEFAULT_FRAME_COLOR,
) -> Image.Image:
    """One attribute over several images: originals on the top row, the same images edited (framed) below."""
    _check_size(size)
    _check_color(frame_color)
    original_u8 = to_uint8(originals)
    counterfactual_u8 = to_uint8(counterfactuals)
    count = original_u8.shape[0]
    if counterfactual_u8.shape[0] != count:
        raise UserError(f"attribute_panel got {count} originals but {counterfactual_u8.shape[0]} counterfactuals; "
                        "give one edited image per original")
    p_top = _probabilities(p_originals, count, "p_originals")
    p_bottom = _probabilities(p_counterfactuals, count, "p_counterfactuals")
    frame = frame_width_for(size)
    top_row = [tile(image, size, probability) for image, probability in zip(original_u8, p_top, strict=True)]
    bottom_row = [tile(image, size, probability, frame_color=frame_color, frame_width=frame)
                  for image, probability in zip(counterfactual_u8, p_bottom, strict=True)]
    return _compose(top_row + bottom_row, rows=2, size=size, header=title, titles=None)


def _compose(tiles: list[Image.Image], rows: int, size: int, header: str | None,
             titles: list[str] | None) -> Image.Image:
    """Tiles on a white canvas in `rows` rows with gaps, a wrapped header above and one title under each column."""
    columns = len(tiles) // rows
    gap = tile_gap(size)
    width = columns * size + (columns + 1) * gap
    header_font, header_text = _font_for(header or "", _title_font_size(size) + 1)
    header_lines = _wrap(header_text, header_font, width - 2 * gap) if header else []
    header_height = len(header_lines) * _line_height(header_font) + (gap if header_lines else 0)
    title_size = _title_font_size(size)
    title_height = _line_height(_bundled_font(title_size)) + gap if titles else 0
    grid_top = gap + header_height
    height = grid_top + rows * size + (rows - 1) * gap + title_height + gap
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for line_number, line in enumerate(header_lines):
        draw.text((gap, gap + line_number * _line_height(header_font)), line, font=header_font, fill=TEXT_COLOR)
    for index, picture in enumerate(tiles):
        row, column = divmod(index, columns)
        canvas.paste(picture, (gap + column * (size + gap), grid_top + row * (size + gap)))
    titles_top = grid_top + rows * size + (rows - 1) * gap + gap // 2
    for column, title in enumerate(titles or []):
        font, text = _font_for(title, title_size)
        text = _fit_width(text, font, size)
        center = gap + column * (size + gap) + size // 2
        draw.text((center, titles_top), text, font=font, fill=TEXT_COLOR, anchor="ma")
    return canvas


# ---------------------------------------------------------------------------------------------------- saving


def _check_suffix(path: Path, suffix: str) -> None:
    if path.suffix.lower() != suffix:
        raise UserError(f"{path} must end in {suffix}: the file is written as {suffix[1:].upper()}")




def save_png(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save `image` as PNG at `path` (parents created, atomic). Returns the path."""
    path = Path(path)
    _check_suffix(path, ".png")
    if not isinstance(image, Image.Image):
        raise UserError(f"save_png needs a PIL image, got {type(image).__name__}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


def _frame_array(frame: Image.Image | np.ndarray, index: int) -> np.ndarray:
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if isinstance(frame, np.ndarray) and frame.dtype == np.uint8:
        if frame.ndim == 2:
            return np.repeat(frame[:, :, None], 3, axis=2)
        if frame.ndim == 3 and frame.shape[2] == 3:
            return frame
    raise UserError(f"GIF frame {index} must be a PIL image or a uint8 array [H, W, 3] or [H, W], got "
                    f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}")


def _durations(durations_ms: int | Sequence[int], count: int) -> list[int]:
    durations = [durations_ms] * count if isinstance(durations_ms, int) else list(durations_ms)
    if len(durations) != count:
        raise UserError(f"durations_ms has {len(durations)} values for {count} frames; give one or one per frame")
    for duration in durations:
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < MIN_GIF_FRAME_MS:
            raise UserError(f"GIF frame durations must be integers of at least {MIN_GIF_FRAME_MS} ms (browsers "
                            f"slow shorter frames down to 100 ms), got {duration!r}")
    return durations


def _shared_palette(frames: np.ndarray) -> np.ndarray:
    """Reduce all frames to one common 256-color palette.

    Pillow would otherwise pick a palette per frame, and regions that are identical in every frame could get
    different colors: a flicker GIF would then show changes that are not in the images.
    """
    count, height, width, _ = frames.shape
    strip = Image.fromarray(frames.reshape(count * height, width, 3), "RGB")
    if strip.getcolors(maxcolors=256) is None:  # more than 256 colors
        strip = strip.quantize(colors=256, method=Image.Quantize.MEDIANCUT).convert("RGB")
    return np.asarray(strip).reshape(count, height, width, 3)


def save_gif(
    frames: Sequence[Image.Image | np.ndarray],
    path: str | os.PathLike[str],
    durations_ms: int | Sequence[int] = 500,
    loop: int = 0,
) -> Path:
    """Write an animated GIF (parents created, atomic) that loops `loop` times, 0 = forever. Returns the path.

    Frames must all have the same size and are shown at that size. Pillow merges a frame identical to the one
    before it into that frame (adding its duration), so playback is unchanged but the file may hold fewer frames.
    """
    path = Path(path)
    _check_suffix(path, ".gif")
    frames = list(frames)
    if len(frames) < 2:
        raise UserError(f"an animated GIF needs at least 2 frames, got {len(frames)}; save a single image with "
                        "save_png")
    arrays = [_frame_array(frame, index) for index, frame in enumerate(frames)]
    sizes = sorted({(array.shape[1], array.shape[0]) for array in arrays})
    if len(sizes) > 1:
        raise UserError(f"all GIF frames must have the same size, got (width, height) {sizes}; render every frame "
                        "at the same display size")
    durations = _durations(durations_ms, len(arrays))
    if isinstance(loop, bool) or not isinstance(loop, int) or loop < 0:
        raise UserError(f"loop must be a count >= 0 (0 = forever), got {loop!r}")
    data = iio.imwrite("<bytes>", _shared_palette(np.stack(arrays)), extension=".gif", plugin="pillow",
                       duration=durations, loop=loop)
    return atomic_write_bytes(path, data)


def flicker_gif(
    original: Tensor,
    counterfactual: Tensor,
    p_original: float,
    p_counterfactual: float,
    path: str | os.PathLike[str],
    size: int = 128,
    hold_ms: tuple[int, int] = (700, 700),
    frame_color: Color | None = DEFAULT_FRAME_COLOR,
) -> Path:
    """Two frames alternating forever: the original (unframed) and the counterfactual (framed)."""
    _check_size(size)
    _check_probability(p_original, "p_original")
    _check_probability(p_counterfactual, "p_counterfactual")
    if len(hold_ms) != 2:
        raise UserError(f"hold_ms must be two durations (original, counterfactual), got {hold_ms!r}")
    frames = [
        tile(_single_image_u8(original, "original"), size, p_original),
        tile(_single_image_u8(counterfactual, "counterfactual"), size, p_counterfactual, frame_color=frame_color,
             frame_width=frame_width_for(size)),
    ]
    return save_gif(frames, path, durations_ms=list(hold_ms))


def sweep_gif(
    images: Tensor,
    probabilities: Sequence[float] | Tensor,
    path: str | os.PathLike[str],
    size: int = 128,
    frame_ms: int = 80,
    pingpong: bool = True,
    frame_color: Color | None = DEFAULT_FRAME_COLOR,
) -> Path:
    """A smooth edit as an animation: `images` [T, C, H, W] from unedited to fully edited, looping forever.

    The first image is the unedited one and stays unframed; every later one is framed. With `pingpong` the
    sequence plays forward then backward without repeating its ends (2T - 2 frames). The two ends are held
    for SWEEP_END_HOLD_MS (at least `frame_ms`) so the viewer can compare them.
    """
    _check_size(size)
    images_u8 = to_uint8(images)
    count = images_u8.shape[0]
    if count < 2:
        raise UserError(f"sweep_gif needs at least 2 images (unedited, edited), got {count}")
    labels = _probabilities(probabilities, count, "probabilities")
    frame = frame_width_for(size)
    tiles = [tile(image, size, probability, frame_color=None if index == 0 else frame_color, frame_width=frame)
             for index, (image, probability) in enumerate(zip(images_u8, labels, strict=True))]
    order = list(range(count)) + (list(range(count - 2, 0, -1)) if pingpong else [])
    _durations(frame_ms, 1)  # reject a bad frame_ms before it meets max() below
    end_hold = max(frame_ms, SWEEP_END_HOLD_MS)
    durations = [end_hold if index in (0, count - 1) else frame_ms for index in order]
    return save_gif([tiles[index] for index in order], path, durations_ms=durations)


__all__ = [
    "DEFAULT_FRAME_COLOR",
    "attribute_panel",
    "counterfactual_figure",
    "flicker_gif",
    "frame_width_for",
    "save_gif",
    "save_png",
    "sweep_gif",
    "tile",
    "tile_gap",
    "to_uint8",
]
