"""Rendering: pixel mapping, tiles, figures and GIFs written to real files and read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from stylex import render
from stylex.errors import UserError

FRAME = (230, 60, 60)


def gradient_images(count: int, channels: int = 3, resolution: int = 16) -> torch.Tensor:
    """Distinct smooth images in [-1, 1]: a diagonal gradient plus a square whose brightness depends on the index."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, resolution), torch.linspace(-1, 1, resolution), indexing="ij")
    images = []
    for index in range(count):
        base = (x + y) / 2
        square = (x.abs() < 0.4) & (y.abs() < 0.4)
        base = torch.where(square, torch.tensor(-1.0 + 2.0 * index / max(count, 2)), base)
        images.append(torch.stack([base, -base, x][:channels]) if channels == 3 else base[None])
    return torch.stack(images)


def border_pixels(image: np.ndarray, left: int, top: int, size: int, width: int) -> np.ndarray:
    """The pixels of a `width`-px ring on the inside edge of the tile at (left, top)."""
    region = image[top:top + size, left:left + size]
    mask = np.zeros((size, size), dtype=bool)
    mask[:width, :] = mask[-width:, :] = mask[:, :width] = mask[:, -width:] = True
    return region[mask]


def gif_frames(path) -> tuple[list[np.ndarray], Image.Image]:
    opened = Image.open(path)
    return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(opened)], opened


# ---------------------------------------------------------------------------------------------------- to_uint8


def test_to_uint8_maps_range_with_round_half_up():
    images = torch.tensor([-1.0, 0.0, 1.0, -1 + 1 / 127.5]).reshape(1, 1, 1, 4)
    assert render.to_uint8(images)[0, 0, :, 0].tolist() == [0, 128, 255, 1]


def test_to_uint8_clamps_out_of_range_values():
    images = torch.tensor([-3.0, 7.0]).reshape(1, 1, 1, 2)
    assert render.to_uint8(images)[0, 0, :, 0].tolist() == [0, 255]


def test_to_uint8_repeats_grayscale_and_accepts_one_image():
    gray = gradient_images(1, channels=1)[0]
    out = render.to_uint8(gray)
    assert out.shape == (1, 16, 16, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert render.to_uint8(gradient_images(4)).shape == (4, 16, 16, 3)


@pytest.mark.parametrize("shape", [(16, 16), (2, 1, 1, 16, 16), (1, 2, 16, 16), (4, 16, 16, 3)])
def test_to_uint8_rejects_wrong_shapes(shape):
    with pytest.raises(UserError, match="images must"):
        render.to_uint8(torch.zeros(shape))


def test_to_uint8_rejects_nan():
    with pytest.raises(UserError, match="NaN"):
        render.to_uint8(torch.full((1, 3, 4, 4), float("nan")))


# -------------------------------------------------------------------------------------------------------- tile


def test_tile_upscales_with_nearest_neighbour():
    image = render.to_uint8(gradient_images(1))[0]
    out = np.asarray(render.tile(image, 64))
    assert out.shape == (64, 64, 3)
    assert (out == np.repeat(np.repeat(image, 4, axis=0), 4, axis=1)).all()


def test_tile_probability_changes_top_left_only():
    image = render.to_uint8(gradient_images(1))[0]
    plain = np.asarray(render.tile(image, 128))
    labelled = np.asarray(render.tile(image, 128, probability=0.93))
    assert (labelled[:16, :32] != plain[:16, :32]).any()
    assert (labelled[64:, 64:] == plain[64:, 64:]).all()


def test_tile_frame_is_drawn_inside_with_the_frame_color():
    image = render.to_uint8(gradient_images(1))[0]
    framed = np.asarray(render.tile(image, 96, probability=0.5, frame_color=FRAME, frame_width=3))
    assert framed.shape == (96, 96, 3)
    assert (border_pixels(framed, 0, 0, 96, 3) == FRAME).all()
    assert (framed[3:-3, 3:-3] != FRAME).any(axis=-1).any()


def test_tile_caption_draws_at_the_bottom_and_falls_back_for_arrows():
    image = render.to_uint8(gradient_images(1))[0]
    plain = np.asarray(render.tile(image, 128))
    captioned = np.asarray(render.tile(image, 128, caption="b8.conv1 ch 17 ↑"))
    assert (captioned[-12:] != plain[-12:]).any()
    assert (captioned[:32] == plain[:32]).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"probability": 1.5}, "probabilities in"),
    ({"frame_color": (300, 0, 0)}, "frame_color"),
    ({"size": 4}, "display size"),
    ({"frame_width": 0, "frame_color": FRAME}, "frame_width"),
])
def test_tile_rejects_bad_arguments(kwargs, message):
    image = render.to_uint8(gradient_images(1))[0]
    arguments = {"size": 64, **kwargs}
    with pytest.raises(UserError, match=message):
        render.tile(image, **arguments)


def test_tile_rejects_tensors_and_channels_first_arrays():
    with pytest.raises(UserError, match="uint8 array"):
        render.tile(np.zeros((3, 16, 16), dtype=np.uint8), 64)


# ----------------------------------------------------------------------------------------------------- figures


def test_counterfactual_figure_layout_and_frames():
    size, count = 96, 3
    gap, frame = render.tile_gap(size), render.frame_width_for(size)
    images = gradient_images(count + 1)
    figure = render.counterfactual_figure(images[0], images[1:], 0.9, [0.6, 0.3, 0.1], size=size, frame_color=FRAME)
    assert figure.size == ((count + 1) * size + (count + 2) * gap, size + 2 * gap)
    pixels = np.asarray(figure)
    assert not (border_pixels(pixels, gap, gap, size, frame) == FRAME).all(axis=-1).any()
    for column in range(1, count + 1):
        assert (border_pixels(pixels, gap + column * (size + gap), gap, size, frame) == FRAME).all()
    assert (pixels[:gap] == 255).all() and (pixels[:, gap + size:2 * gap + size] == 255).all()


def test_counterfactual_figure_titles_and_header_add_rows_not_columns():
    images = gradient_images(3)
    bare = render.counterfactual_figure(images[0], images[1:], 0.9, [0.5, 0.2], size=64)
    titled = render.counterfactual_figure(images[0], images[1:], 0.9, [0.5, 0.2], size=64,
                                          titles=["b8.conv1 ch 17 ↑", "b16.conv0 ch 3 ↓"], header="class: sneaker")
    assert titled.width == bare.width and titled.height > bare.height
    assert (np.asarray(titled)[-render.tile_gap(64) - 12:] != 255).any()  # title text under the tiles


def test_counterfactual_figure_rejects_mismatched_inputs():
    images = gradient_images(3)
    with pytest.raises(UserError, match="p_counterfactuals has 1 values for 2 images"):
        render.counterfactual_figure(images[0], images[1:], 0.9, [0.5])
    with pytest.raises(UserError, match="titles has 3 entries"):
        render.counterfactual_figure(images[0], images[1:2], 0.9, 0.5, titles=["a", "b", "c"])
    with pytest.raises(UserError, match="original must be one image"):
        render.counterfactual_figure(images[:2], images[1:], 0.9, [0.5, 0.2])


def test_attribute_panel_grid_frames_the_bottom_row_only():
    size, count = 64, 4
    gap, frame = render.tile_gap(size), render.frame_width_for(size)
    originals = gradient_images(count, channels=1)
    panel = render.attribute_panel(originals, -originals, [0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4], size=size)
    assert panel.size == (count * size + (count + 1) * gap, 2 * size + 3 * gap)
    pixels = np.asarray(panel)
    for column in range(count):
        left = gap + column * (size + gap)
        assert not (border_pixels(pixels, left, gap, size, frame) == FRAME).all(axis=-1).any()
        assert (border_pixels(pixels, left, 2 * gap + size, size, frame) == FRAME).all()
    titled = render.attribute_panel(originals, -originals, [0.9] * 4, [0.1] * 4, size=size, title="attribute 1")
    assert titled.width == panel.width and titled.height > panel.height


def test_attribute_panel_needs_one_counterfactual_per_original():
    with pytest.raises(UserError, match="3 originals but 2 counterfactuals"):
        render.attribute_panel(gradient_images(3), gradient_images(2), [0.5] * 3, [0.5] * 2)


# ------------------------------------------------------------------------------------------------------ saving


def test_save_png_creates_folders_and_leaves_no_temporary_files(tmp_path):
    figure = render.tile(render.to_uint8(gradient_images(1))[0], 32, 0.5)
    path = render.save_png(figure, tmp_path / "a" / "b" / "figure.png")
    assert path == tmp_path / "a" / "b" / "figure.png"
    assert (np.asarray(Image.open(path).convert("RGB")) == np.asarray(figure)).all()
    render.save_png(figure, path)  # overwriting goes through the same atomic replace
    assert sorted(p.name for p in path.parent.iterdir()) == ["figure.png"]


def test_save_png_rejects_other_suffixes(tmp_path):
    with pytest.raises(UserError, match=r"must end in \.png"):
        render.save_png(Image.new("RGB", (4, 4)), tmp_path / "figure.jpg")


def test_flicker_gif_has_two_different_frames_looping_forever(tmp_path):
    images = gradient_images(2)
    path = render.flicker_gif(images[0], images[1], 0.9, 0.2, tmp_path / "gifs" / "flicker.gif", size=96)
    frames, opened = gif_frames(path)
    assert len(frames) == 2 and opened.info["loop"] == 0 and opened.size == (96, 96)
    assert (frames[0] != frames[1]).any()
    assert sorted(p.name for p in path.parent.iterdir()) == ["flicker.gif"]


def test_flicker_gif_keeps_both_frames_when_only_the_frame_differs(tmp_path):
    image = gradient_images(1)[0]
    frames, _ = gif_frames(render.flicker_gif(image, image, 0.5, 0.5, tmp_path / "same.gif", size=64))
    assert len(frames) == 2


def test_flicker_gif_keeps_unchanged_regions_identical_across_frames(tmp_path):
    # A per-frame palette would recolor the unchanged middle and show a change that is not in the images.
    image = gradient_images(1, resolution=32)[0]
    edited = image.clone()
    edited[:, 28:, 28:] = 1.0  # only the bottom-right corner changes
    frames, _ = gif_frames(render.flicker_gif(image, edited, 0.5, 0.4, tmp_path / "f.gif", size=128))
    assert (frames[0][24:96, 24:96] == frames[1][24:96, 24:96]).all()


@pytest.mark.parametrize("pingpong, expected", [(True, 2 * 5 - 2), (False, 5)])
def test_sweep_gif_frame_count_loop_and_size(tmp_path, pingpong, expected):
    images = gradient_images(5)
    path = render.sweep_gif(images, [0.9, 0.7, 0.5, 0.3, 0.1], tmp_path / "sweep.gif", size=64, pingpong=pingpong)
    frames, opened = gif_frames(path)
    assert len(frames) == expected and opened.info["loop"] == 0 and opened.size == (64, 64)
    frame = render.frame_width_for(64)
    assert not (border_pixels(frames[0], 0, 0, 64, frame) == FRAME).all(axis=-1).all()
    assert all((np.abs(border_pixels(f, 0, 0, 64, frame).astype(int) - FRAME) <= 8).all() for f in frames[1:])
    if pingpong:  # forward then backward, without repeating the ends
        assert (frames[3] == frames[5]).all() and (frames[1] == frames[7]).all()


def test_sweep_gif_needs_two_images(tmp_path):
    with pytest.raises(UserError, match="at least 2 images"):
        render.sweep_gif(gradient_images(1), [0.5], tmp_path / "s.gif")


def test_save_gif_accepts_arrays_and_per_frame_durations(tmp_path):
    frames = [np.full((20, 30, 3), value, dtype=np.uint8) for value in (0, 120, 250)]
    path = render.save_gif(frames, tmp_path / "a.gif", durations_ms=[100, 200, 300])
    read, opened = gif_frames(path)
    assert len(read) == 3 and opened.size == (30, 20) and opened.info["loop"] == 0
    durations = [frame.info["duration"] for frame in ImageSequence.Iterator(Image.open(path))]
    assert durations == [100, 200, 300]


def test_save_gif_refuses_one_frame_and_mismatched_sizes(tmp_path):
    with pytest.raises(UserError, match="at least 2 frames"):
        render.save_gif([Image.new("RGB", (8, 8))], tmp_path / "one.gif")
    with pytest.raises(UserError, match="same size"):
        render.save_gif([Image.new("RGB", (8, 8)), Image.new("RGB", (9, 8))], tmp_path / "two.gif")
    with pytest.raises(UserError, match="at least 20 ms"):
        render.save_gif([Image.new("RGB", (8, 8))] * 2, tmp_path / "fast.gif", durations_ms=5)
    assert list(tmp_path.iterdir()) == []
