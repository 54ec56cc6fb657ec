"""Image decoding (stylex.data.images): every PIL mode scaled by its real range, composited, or refused by name.

All inputs are real files written to tmp_path and read back through Pillow, as the folder dataset and
`stylex explain` read them.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylex.config import DataConfig
from stylex.data import build_dataset
from stylex.data.images import ALPHA_BACKGROUND, open_image, read_image
from stylex.errors import UserError

WIDTH, HEIGHT = 64, 32


def gradient16() -> np.ndarray:
    """uint16 [H, W] running over the full 0..65535 range, so a clipping decoder shows up as white."""
    return np.linspace(0, 65535, WIDTH * HEIGHT).round().astype(np.uint16).reshape(HEIGHT, WIDTH)


def expected_u8(values16: np.ndarray) -> np.ndarray:
    return np.rint(values16.astype(np.float64) * 255 / 65535).astype(np.int64)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png16(path: Path, samples: np.ndarray, color_type: int) -> Path:
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit colour): samples uint16 [H, W, C]."""
    height, width = samples.shape[:2]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
                     + png_chunk(b"IEND", b""))
    return path


def pixels(path: Path, channels: int) -> np.ndarray:
    image = open_image(path, channels)
    assert image.mode == ("L" if channels == 1 else "RGB")
    return np.asarray(image).astype(np.int64)


def test_16bit_gray_png_is_scaled_not_saturated(tmp_path):
    values = gradient16()
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as opened:
        assert opened.mode in ("I;16", "I")  # what Pillow hands over for a 16-bit gray PNG
        assert np.asarray(opened.convert("L")).mean() > 250  # the clipping this module exists to avoid
    gray = pixels(path, 1)
    assert np.array_equal(gray, expected_u8(values))
    assert (gray == 255).mean() < 0.01 and abs(gray.mean() - 127.5) < 1
    rgb = pixels(path, 3)
    assert all(np.array_equal(rgb[..., c], gray) for c in range(3))


def test_16bit_big_endian_tiff(tmp_path):
    values = gradient16()
    path = tmp_path / "gray16be.tif"
    Image.frombytes("I;16B", (WIDTH, HEIGHT), values.astype(">u2").tobytes()).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "I;16B"
    assert np.array_equal(pixels(path, 1), expected_u8(values))


def test_16bit_rgb_and_rgba_png(tmp_path):
    values = gradient16()
    samples = np.stack([values, values[:, ::-1], np.full_like(values, 30000)], axis=-1)
    rgb = pixels(write_png16(tmp_path / "rgb16.png", samples, color_type=2), 3)
    # Pillow keeps each sample's high byte, which is within one level of the exact scaling.
    assert np.abs(rgb - expected_u8(samples)).max() <= 1
    assert abs(rgb[..., 0].mean() - 127.5) < 1 and (rgb == 255).mean() < 0.01
    opaque = np.concatenate([samples, np.full_like(values, 65535)[..., None]], axis=-1)
    rgba = pixels(write_png16(tmp_path / "rgba16.png", opaque, color_type=6), 3)
    assert np.array_equal(rgba, rgb)
    gray_alpha = np.stack([values, np.full_like(values, 65535)], axis=-1)
    gray = pixels(write_png16(tmp_path / "la16.png", gray_alpha, color_type=4), 1)
    assert np.abs(gray - expected_u8(values)).max() <= 1


def test_palette_with_and_without_transparency(tmp_path):
    indices = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    indices[:, WIDTH // 2 :] = 1
    palette = [200, 30, 30, 10, 220, 40] + [0] * (256 * 3 - 6)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette)
    image.save(tmp_path / "palette.png")
    rgb = pixels(tmp_path / "palette.png", 3)
    assert rgb[0, 0].tolist() == [200, 30, 30] and rgb[0, -1].tolist() == [10, 220, 40]
    image.save(tmp_path / "palette.gif", transparency=1)
    with Image.open(tmp_path / "palette.gif") as opened:
        assert opened.mode == "P" and opened.info.get("transparency") == 1
    rgb = pixels(tmp_path / "palette.gif", 3)
    assert rgb[0, 0].tolist() == [200, 30, 30] and rgb[0, -1].tolist() == [ALPHA_BACKGROUND] * 3


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_becomes_rgb(tmp_path, suffix):
    path = tmp_path / f"cmyk{suffix}"
    Image.new("CMYK", (WIDTH, HEIGHT), (0, 255, 255, 0)).save(path)  # no cyan, full magenta and yellow: red
    with Image.open(path) as opened:
        assert opened.mode == "CMYK"
    rgb = pixels(path, 3)
    assert np.abs(rgb[HEIGHT // 2, WIDTH // 2] - [255, 0, 0]).max() <= 3
    gray = pixels(path, 1)
    assert abs(int(gray[HEIGHT // 2, WIDTH // 2]) - round(0.299 * 255)) <= 3


def test_alpha_is_composited_onto_black(tmp_path):
    rgba = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, : WIDTH // 2, 3] = 255
    rgba[:, WIDTH // 2 :, 3] = 128
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    rgb = pixels(tmp_path / "rgba.png", 3)
    assert ALPHA_BACKGROUND == 0
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[1, 0].tolist() == [200, 100, 50]
    assert rgb[1, -1].tolist() == [round(v * 128 / 255) for v in (200, 100, 50)]
    la = np.stack([np.full((HEIGHT, WIDTH), 180, np.uint8), rgba[..., 3]], axis=-1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    gray = pixels(tmp_path / "la.png", 1)
    assert gray[0, 0] == 0 and gray[1, 0] == 180 and gray[1, -1] == round(180 * 128 / 255)


def test_float_tiff_in_range_is_scaled(tmp_path):
    values = np.linspace(0.0, 1.0, WIDTH * HEIGHT, dtype=np.float32).reshape(HEIGHT, WIDTH)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "F"
    assert np.array_equal(pixels(path, 1), np.rint(values.astype(np.float64) * 255).astype(np.int64))


@pytest.mark.parametrize(("values", "shown"), [((-0.5, 2.0), "-0.5 to 2"), ((0.0, float("nan")), "NaN")])
def test_float_tiff_out_of_range_is_refused(tmp_path, values, shown):
    array = np.full((HEIGHT, WIDTH), 0.5, dtype=np.float32)
    array[0, 0], array[0, 1] = values
    path = tmp_path / "float-bad.tif"
    Image.fromarray(array).save(path)
    with pytest.raises(UserError) as caught:
        open_image(path, 3)
    message = str(caught.value)
    assert str(path) in message and "mode F" in message and shown in message and "\n" not in message


def test_32bit_integer_tiff(tmp_path):
    values = gradient16().astype(np.int32)
    Image.fromarray(values).save(tmp_path / "int32.tif")
    assert np.array_equal(pixels(tmp_path / "int32.tif", 1), expected_u8(values))
    values[0, 0] = 70000
    Image.fromarray(values).save(tmp_path / "int32-wide.tif")
    with pytest.raises(UserError, match=r"int32-wide\.tif.*mode I .*70000"):
        open_image(tmp_path / "int32-wide.tif", 1)


def test_unsupported_mode_and_bad_file_name_the_file(tmp_path):
    Image.new("LAB", (8, 8), (50, 60, 70)).save(tmp_path / "lab.tif")
    with pytest.raises(UserError, match=r"lab\.tif: PIL mode LAB is not supported; save it as"):
        open_image(tmp_path / "lab.tif", 3)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UserError, match=r"cannot decode image .*text\.png"):
        open_image(tmp_path / "text.png", 3)


def test_bilevel_and_8bit_are_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(pixels(tmp_path / "rgb.png", 3), rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    assert np.array_equal(pixels(tmp_path / "gray.png", 1), rgb[..., 0])
    Image.fromarray(rgb[..., 0] > 127).save(tmp_path / "bits.png")
    assert np.array_equal(pixels(tmp_path / "bits.png", 1), np.where(rgb[..., 0] > 127, 255, 0))


# ---------------------------------------------------------------- the two callers


def test_explain_reads_a_16bit_png_by_its_range(tmp_path):
    values = gradient16()
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    image = read_image(path, resolution=WIDTH, channels=1)  # resized to 64x64 from 64x32
    assert image.shape == (1, 1, WIDTH, WIDTH)
    assert -0.1 < float(image.mean()) < 0.1 and float((image >= 0.999).float().mean()) < 0.05
    square = tmp_path / "square16.png"
    Image.fromarray(np.resize(values, (WIDTH, WIDTH))).save(square)
    exact = read_image(square, resolution=WIDTH, channels=3)
    want = torch.from_numpy(expected_u8(np.resize(values, (WIDTH, WIDTH)))).float() / 127.5 - 1
    assert torch.allclose(exact[0, 0], want) and torch.equal(exact[0, 0], exact[0, 2])


def test_folder_dataset_reads_16bit_and_lists_refused_files(tmp_path):
    level = 20000
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((16, 16), level, dtype=np.uint16)).save(tmp_path / cls / f"{i}.png")
    config = replace(DataConfig(dataset="folder", root=str(tmp_path), test_fraction=0.5), resolution=8)
    data = build_dataset(config, "train")
    batch = data.images_u8(torch.arange(len(data)))
    assert batch.shape == (2, 3, 8, 8) and torch.all(batch == round(level * 255 / 65535))
    bad = tmp_path / "b" / "float.tif"
    Image.fromarray(np.full((16, 16), 3.0, dtype=np.float32)).save(bad)
    with pytest.raises(UserError) as caught:
        build_dataset(config, "train")
    message = str(caught.value)
    assert str(bad) in message and "mode F" in message and "skip_bad" in message
    skipped = build_dataset(replace(config, skip_bad=True), "train")
    assert bad not in skipped.paths and bad not in build_dataset(replace(config, skip_bad=True), "test").paths
