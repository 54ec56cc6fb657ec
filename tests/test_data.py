"""Datasets: procedural shapes, Fashion-MNIST IDX files, image folders, and batching."""

from __future__ import annotations

import gzip
import logging
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylex.config import DataConfig
from stylex.data import ImageDataset, InMemoryImageDataset, build_dataset, iterate_batches, to_float
from stylex.data.base import convert_channels, epoch_order
from stylex.data.fashion_mnist import DEFAULT_ROOT
from stylex.data.shapes import (
    CAUSAL_FACTORS,
    FACTOR_NAMES,
    LARGE_SIZE_RANGE,
    SMALL_SIZE_RANGE,
    label_of,
    render,
    sample_factors,
)
from stylex.errors import UserError


def shapes_config(**overrides) -> DataConfig:
    return replace(DataConfig(dataset="shapes", num_train=64, num_test=32), **overrides)


# ---------------------------------------------------------------- shapes


def test_shapes_same_seed_gives_identical_data():
    first = build_dataset(shapes_config(seed=3), "train")
    second = build_dataset(shapes_config(seed=3), "train")
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.labels, second.labels)
    assert torch.equal(first.factors, second.factors)


def test_shapes_seed_and_split_change_the_data():
    reference = build_dataset(shapes_config(seed=3, num_test=64), "train")
    other_seed = build_dataset(shapes_config(seed=4), "train")
    test_split = build_dataset(shapes_config(seed=3, num_test=64), "test")
    assert not torch.equal(reference.factors, other_seed.factors)
    assert not torch.equal(reference.images, other_seed.images)
    assert not torch.equal(reference.factors, test_split.factors)
    assert not torch.equal(reference.images, test_split.images)


@pytest.mark.parametrize(
    ("dataset", "classes"),
    [
        ("shapes", ["other", "large-spotted"]),
        ("shapes-multi", ["small", "small-spotted", "large", "large-spotted"]),
    ],
)
@pytest.mark.parametrize("split", ["train", "test"])
def test_shapes_classes_are_balanced_and_follow_the_rule(dataset, classes, split):
    data = build_dataset(shapes_config(dataset=dataset, num_train=120, num_test=40), split)
    size = 120 if split == "train" else 40
    assert data.classes == classes and data.num_classes == len(classes)
    assert len(data) == size
    assert data.labels.bincount(minlength=len(classes)).tolist() == [size // len(classes)] * len(classes)
    assert torch.equal(data.labels, label_of(data.factors, len(classes)))
    assert data.factors.shape == (size, len(FACTOR_NAMES))


def test_binary_label_zero_covers_all_three_other_cells():
    factors, labels = sample_factors(np.random.default_rng(0), 600, 2)
    large = factors[:, FACTOR_NAMES.index("size")] >= 0.29
    spot = factors[:, FACTOR_NAMES.index("spot")] == 1
    negatives = labels == 0
    for cell_large, cell_spot in [(False, False), (False, True), (True, False)]:
        in_cell = negatives & (large == cell_large) & (spot == cell_spot)
        assert 60 < int(in_cell.sum()) < 140  # about 100 of 300 each
    assert not bool((negatives & large & spot).any())


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_shapes_images_have_the_requested_size_and_range(resolution):
    data = build_dataset(shapes_config(resolution=resolution, num_train=8), "train")
    assert isinstance(data, ImageDataset)
    assert data.images.shape == (8, 3, resolution, resolution) and data.images.dtype == torch.uint8
    assert data.resolution == resolution and data.channels == 3
    image, label, factors = data[5]
    assert image.shape == (3, resolution, resolution) and image.dtype == torch.float32
    assert float(image.min()) >= -1.0 and float(image.max()) <= 1.0
    assert label == int(data.labels[5])
    assert set(factors) == set(FACTOR_NAMES) and label == label_of(factors, 2)
    assert torch.equal(data.images_u8(torch.tensor([5, 1])), data.images[[5, 1]])


def test_shapes_rejects_tiny_resolution_and_custom_classes():
    with pytest.raises(UserError, match="resolution"):
        build_dataset(shapes_config(resolution=12), "train")
    with pytest.raises(UserError, match="fixed classes"):
        build_dataset(shapes_config(classes=["large-spotted"]), "train")


def test_gray_shapes_are_the_luminance_of_the_color_ones():
    color = build_dataset(shapes_config(num_train=4), "train")
    gray = build_dataset(shapes_config(num_train=4, channels=1), "train")
    assert gray.images.shape == (4, 1, 32, 32) and gray.channels == 1
    assert torch.equal(gray.images, convert_channels(color.images, 1))
    assert float((gray.images.float() - color.images.float().mean(1, keepdim=True)).abs().max()) < 128


def new_value(name: str, old: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random value of a non-causal factor that differs from `old` enough to be visible."""
    if name == "shape":
        return (old + torch.from_numpy(rng.integers(1, 3, size=len(old))).float()) % 3
    if name == "rotation":
        # Under a quarter turn so a square (period 1/4) or triangle (period 1/3) never maps onto itself.
        return (old + torch.from_numpy(rng.uniform(0.05, 0.2, size=len(old))).float()) % 1.0
    low, high = {"hue": (0.0, 1.0), "pos_x": (0.0, 1.0), "pos_y": (0.0, 1.0), "background": (-0.9, 0.3)}[name]
    span = high - low
    shift = torch.from_numpy(rng.uniform(0.15, 0.85, size=len(old))).float() * span
    changed = old + shift
    return torch.where(changed > high, changed - span, changed)


@pytest.mark.parametrize("num_classes", [2, 4])
def test_label_depends_only_on_causal_factors(num_classes):
    rng = np.random.default_rng(7)
    factors, labels = sample_factors(rng, 200, num_classes)
    images = render(factors, 32)
    for name in FACTOR_NAMES:
        if name in CAUSAL_FACTORS:
            continue
        column = FACTOR_NAMES.index(name)
        edited = factors.clone()
        edited[:, column] = new_value(name, factors[:, column], rng)
        assert torch.equal(label_of(edited, num_classes), labels), name
        visible = torch.ones(len(factors), dtype=torch.bool)
        if name == "rotation":
            visible = factors[:, FACTOR_NAMES.index("shape")] != 0  # a rotated circle is the same circle
        pixel_change = (render(edited, 32).int() - images.int()).abs().flatten(1).amax(1)
        assert bool((pixel_change[visible] > 20).all()), f"changing {name} left some images unchanged"


@pytest.mark.parametrize("num_classes", [2, 4])
def test_crossing_a_causal_threshold_changes_the_label(num_classes):
    factors, labels = sample_factors(np.random.default_rng(8), 200, num_classes)
    size, spot = FACTOR_NAMES.index("size"), FACTOR_NAMES.index("spot")
    large = factors[:, size] >= 0.29
    flipped_size = factors.clone()
    flipped_size[:, size] = torch.where(large, SMALL_SIZE_RANGE[0], LARGE_SIZE_RANGE[1])
    flipped_spot = factors.clone()
    flipped_spot[:, spot] = 1 - factors[:, spot]
    for edited, other_causal_set in [(flipped_size, factors[:, spot] == 1), (flipped_spot, large)]:
        changed = label_of(edited, num_classes) != labels
        if num_classes == 4:
            assert bool(changed.all())
        else:
            # Binary: a causal factor matters only while the other one is "on" (label = large AND spot).
            assert torch.equal(changed, other_causal_set)
        assert not torch.equal(render(edited, 32), render(factors, 32))


def test_label_of_accepts_a_dict_a_row_and_rows():
    row = torch.tensor([[1, 0.35, 0.5, 0.5, 0.5, 0.0, 0.0, 1]], dtype=torch.float32)
    as_dict = dict(zip(FACTOR_NAMES, row[0].tolist(), strict=True))
    assert label_of(as_dict, 2) == 1 and label_of(row[0], 2) == 1 and label_of(row, 4).tolist() == [3]
    as_dict["size"] = 0.2
    assert label_of(as_dict, 2) == 0 and label_of(as_dict, 4) == 1


# ---------------------------------------------------------------- fashion-mnist


def write_idx(path: Path, values: np.ndarray, magic: int) -> None:
    header = struct.pack(f">i{values.ndim}i", magic, *values.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + values.astype(np.uint8).tobytes())


def write_fake_fashion_mnist(root: Path, train_count: int = 40, test_count: int = 20) -> None:
    """Label k images are filled with 10 + 20 * k so every image reveals its official label."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, count in [("train", train_count), ("t10k", test_count)]:
        labels = np.arange(count) % 10
        images = np.broadcast_to((10 + 20 * labels)[:, None, None], (count, 28, 28))
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)


def fashion_config(root: Path, **overrides) -> DataConfig:
    return replace(DataConfig(dataset="fashion-mnist", root=str(root)), **overrides)


@pytest.mark.parametrize(("split", "count"), [("train", 40), ("test", 20)])
def test_fashion_mnist_selects_orders_and_remaps_classes(tmp_path, split, count):
    write_fake_fashion_mnist(tmp_path)
    data = build_dataset(fashion_config(tmp_path, classes=["Ankle boot", "t-shirt/top", "TROUSER"]), split)
    assert data.classes == ["ankle-boot", "t-shirt", "trouser"] and data.num_classes == 3
    official = {0: 9, 1: 0, 2: 1}
    per_class = count // 10
    assert len(data) == 3 * per_class
    assert data.labels.bincount().tolist() == [per_class] * 3
    assert data.images.shape == (3 * per_class, 1, 32, 32) and data.channels == 1
    # File order is kept: official labels cycle 0..9, so t-shirt, trouser, ankle-boot repeat.
    assert data.labels[:3].tolist() == [1, 2, 0]
    for index in range(len(data)):
        image, label = data[index]
        assert torch.all(image[:, :2, :] == -1) and torch.all(image[:, :, -2:] == -1)
        assert int(data.images[index, 0, 16, 16]) == 10 + 20 * official[label]


def test_fashion_mnist_all_classes_resize_and_channels(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    data = build_dataset(fashion_config(tmp_path, resolution=48, channels=3), "train")
    assert data.num_classes == 10 and data.classes[0] == "t-shirt" and data.classes[-1] == "ankle-boot"
    assert data.images.shape == (40, 3, 48, 48)
    assert torch.equal(data.labels, torch.arange(40) % 10)
    assert torch.equal(data.images[:, 0], data.images[:, 2])


def test_fashion_mnist_accepts_torchvision_layout(tmp_path):
    write_fake_fashion_mnist(tmp_path / "FashionMNIST" / "raw")
    assert len(build_dataset(fashion_config(tmp_path, classes=["tshirt"]), "test")) == 2


def test_fashion_mnist_unknown_class_lists_valid_names(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    with pytest.raises(UserError, match="sock") as caught:
        build_dataset(fashion_config(tmp_path, classes=["sneaker", "sock"]), "train")
    message = str(caught.value)
    assert "ankle-boot" in message and "t-shirt" in message and "\n" not in message


def test_fashion_mnist_missing_root_says_how_to_get_the_files(tmp_path):
    with pytest.raises(UserError) as caught:
        build_dataset(fashion_config(tmp_path / "nowhere"), "train")
    message = str(caught.value)
    assert "nowhere" in message and "dataset-fashion-mnist" in message and "data.download=true" in message
    assert "\n" not in message
    write_fake_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match=r"lacks t10k-labels-idx1-ubyte\.gz;"):
        build_dataset(fashion_config(tmp_path), "train")


def test_fashion_mnist_bad_files_name_the_file(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    labels_file = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(labels_file, np.arange(40) % 10, 2051)
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte\.gz.*magic"):
        build_dataset(fashion_config(tmp_path), "train")
    images_file = tmp_path / "train-images-idx3-ubyte.gz"
    write_fake_fashion_mnist(tmp_path)
    payload = gzip.decompress(images_file.read_bytes())
    images_file.write_bytes(gzip.compress(payload[:-100]))
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        build_dataset(fashion_config(tmp_path), "train")
    images_file.write_bytes(gzip.compress(payload)[:-50])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz"):
        build_dataset(fashion_config(tmp_path), "train")


def test_real_fashion_mnist_two_classes():
    if not (DEFAULT_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"real Fashion-MNIST not installed in {DEFAULT_ROOT} (apt-get install dataset-fashion-mnist)"
        )
    config = DataConfig(dataset="fashion-mnist", classes=["sneaker", "ankle-boot"])
    train, test = build_dataset(config, "train"), build_dataset(config, "test")
    assert (len(train), len(test)) == (12000, 2000)
    assert train.num_classes == 2 and train.classes == ["sneaker", "ankle-boot"]
    assert train.labels.bincount().tolist() == [6000, 6000]
    assert test.labels.bincount().tolist() == [1000, 1000]
    assert train.images.shape[1:] == (1, 32, 32) and int(train.images[:, :, :2].max()) == 0


# ---------------------------------------------------------------- folder


def save_image(path: Path, color, mode: str = "RGB", size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def write_class_folders(root: Path, per_class: int = 3) -> None:
    """cat: red RGB PNGs, dog: gray JPGs (single channel), with a hidden file that must be ignored."""
    for i in range(per_class):
        save_image(root / "cat" / f"cat{i}.png", (200, 30, 30))
        save_image(root / "dog" / f"dog{i}.jpg", 90, mode="L", size=(30, 50))
    (root / "dog" / ".DS_Store").write_bytes(b"\x00junk")


def folder_config(root: Path, **overrides) -> DataConfig:
    return replace(DataConfig(dataset="folder", root=str(root), test_fraction=0.34), **overrides)


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_folder_loads_rgb_and_gray_inputs(tmp_path, channels):
    write_class_folders(tmp_path)
    train = build_dataset(folder_config(tmp_path, resolution=16, channels=channels), "train")
    test = build_dataset(folder_config(tmp_path, resolution=16, channels=channels), "test")
    expected_channels = channels or 3
    assert train.classes == ["cat", "dog"] and train.channels == expected_channels
    assert (len(train), len(test)) == (4, 2)
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [0, 1]
    assert not set(train.paths) & set(test.paths)
    batch = train.images_u8(torch.arange(4))
    assert batch.shape == (4, expected_channels, 16, 16) and batch.dtype == torch.uint8
    image, label = train[0]
    assert image.shape == (expected_channels, 16, 16) and label == 0
    assert torch.allclose(image, to_float(batch[0]))
    red, gray = batch[0].float(), batch[2].float()
    if expected_channels == 3:
        assert red[:, 8, 8].tolist() == [200, 30, 30]
        assert torch.all((gray - 90).abs() <= 2)
    else:
        assert abs(float(red[0, 8, 8]) - (0.299 * 200 + 0.587 * 30 + 0.114 * 30)) <= 1


def test_folder_class_selection_and_order(tmp_path):
    write_class_folders(tmp_path)
    data = build_dataset(folder_config(tmp_path, classes=["dog", "cat"]), "train")
    assert data.classes == ["dog", "cat"] and data.labels.tolist() == [0, 0, 1, 1]
    assert all(path.parent.name == "dog" for path in data.paths[:2])
    with pytest.raises(UserError, match="found classes: cat, dog"):
        build_dataset(folder_config(tmp_path, classes=["cow"]), "train")


def test_folder_holdout_is_stratified_and_seeded(tmp_path):
    write_class_folders(tmp_path, per_class=10)
    config = folder_config(tmp_path, test_fraction=0.2, seed=5)
    train, test = build_dataset(config, "train"), build_dataset(config, "test")
    assert train.labels.bincount().tolist() == [8, 8] and test.labels.bincount().tolist() == [2, 2]
    assert len(set(train.paths) | set(test.paths)) == 20
    assert build_dataset(config, "test").paths == test.paths
    other_seeds = [build_dataset(replace(config, seed=seed), "test").paths for seed in range(6, 10)]
    assert any(paths != test.paths for paths in other_seeds)


def test_folder_uses_train_and_test_subfolders(tmp_path):
    write_class_folders(tmp_path / "train", per_class=3)
    write_class_folders(tmp_path / "val", per_class=1)
    train = build_dataset(folder_config(tmp_path), "train")
    test = build_dataset(folder_config(tmp_path), "test")
    assert train.classes == test.classes == ["cat", "dog"]
    assert (len(train), len(test)) == (6, 2)
    assert all(path.parent.parent.name == "val" for path in test.paths)


def write_bad_files(root: Path) -> list[Path]:
    truncated_png = root / "cat" / "broken.png"
    save_image(truncated_png, (1, 2, 3), size=(64, 64))
    truncated_png.write_bytes(truncated_png.read_bytes()[:60])
    truncated_jpg = root / "dog" / "broken.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(truncated_jpg)
    truncated_jpg.write_bytes(truncated_jpg.read_bytes()[:400])
    notes = root / "dog" / "notes.txt"
    notes.write_text("not an image")
    return [truncated_png, truncated_jpg, notes]


def test_folder_bad_files_give_one_error_listing_all(tmp_path):
    write_class_folders(tmp_path)
    bad = write_bad_files(tmp_path)
    with pytest.raises(UserError) as caught:
        build_dataset(folder_config(tmp_path, test_fraction=0.01), "train")
    message = str(caught.value)
    assert "\n" not in message and "skip_bad" in message
    for path in bad:
        assert str(path) in message


def test_folder_skip_bad_skips_and_logs(tmp_path, caplog):
    write_class_folders(tmp_path)
    bad = write_bad_files(tmp_path)
    config = folder_config(tmp_path, skip_bad=True, test_fraction=0.01)
    with caplog.at_level(logging.WARNING, logger="stylex.data"):
        train = build_dataset(config, "train")
    test = build_dataset(config, "test")
    good = {path for path in tmp_path.rglob("*") if path.is_file() and path.stem[:3] in ("cat", "dog")}
    assert len(good) == 6 and set(train.paths) | set(test.paths) == good
    assert len(train) + len(test) == 6
    assert train.images_u8(torch.arange(len(train))).shape == (len(train), 3, 32, 32)
    logged = " ".join(record.getMessage() for record in caplog.records if record.name == "stylex.data")
    for path in bad:
        assert str(path) in logged


def test_folder_bad_file_list_is_capped(tmp_path):
    write_class_folders(tmp_path)
    for i in range(25):
        (tmp_path / "cat" / f"junk{i:02d}.txt").write_text("x")
    with pytest.raises(UserError, match="and 5 more") as caught:
        build_dataset(folder_config(tmp_path, test_fraction=0.01), "train")
    assert "junk19" in str(caught.value) and "junk20" not in str(caught.value)


def test_folder_setup_problems_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_dataset(folder_config(tmp_path / "missing"), "train")
    with pytest.raises(UserError, match=r"data\.root"):
        build_dataset(DataConfig(dataset="folder"), "train")
    with pytest.raises(UserError, match="no class subfolders"):
        build_dataset(folder_config(tmp_path), "train")
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"")
    with pytest.raises(UserError, match="not a folder"):
        build_dataset(folder_config(a_file), "train")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(UserError, match="empty_class has no files"):
        build_dataset(folder_config(tmp_path), "train")


def test_unknown_dataset_and_split_are_user_errors():
    with pytest.raises(UserError, match="shapes-multi"):
        build_dataset(DataConfig(dataset="imagenet"), "train")
    with pytest.raises(UserError, match="train, test"):
        build_dataset(DataConfig(), "validation")


# ---------------------------------------------------------------- batching


def numbered_dataset(count: int) -> InMemoryImageDataset:
    """Image i is filled with the value i, so a batch reveals which items it holds."""
    images = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, 1, 4, 4).contiguous()
    return InMemoryImageDataset(images, torch.arange(count) % 3, ["a", "b", "c"])


def batch_ids(batches) -> list[int]:
    return [int(v) for x, _ in batches for v in torch.round((x[:, 0, 0, 0] + 1) * 127.5)]


def test_iterate_batches_shuffle_covers_every_item_once_and_is_seeded():
    data = numbered_dataset(50)
    first = list(iterate_batches(data, 16, shuffle=True, seed=1))
    assert [len(y) for _, y in first] == [16, 16, 16, 2]
    ids = batch_ids(first)
    assert sorted(ids) == list(range(50)) and ids != list(range(50))
    assert batch_ids(iterate_batches(data, 16, shuffle=True, seed=1)) == ids
    assert batch_ids(iterate_batches(data, 16, shuffle=True, seed=2)) != ids
    assert batch_ids(iterate_batches(data, 16, shuffle=False)) == list(range(50))
    for x, y in first:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 4, 4) and y.dtype == torch.long
        assert torch.equal(y, data.labels[torch.round((x[:, 0, 0, 0] + 1) * 127.5).long()])


def test_iterate_batches_drop_last():
    batches = list(iterate_batches(numbered_dataset(50), 16, shuffle=True, drop_last=True))
    assert [len(y) for _, y in batches] == [16, 16, 16]


def test_iterate_batches_on_shapes_yields_pairs():
    data = build_dataset(shapes_config(num_train=40), "train")
    batches = list(iterate_batches(data, 32, shuffle=True, seed=0))
    assert [tuple(x.shape) for x, _ in batches] == [(32, 3, 32, 32), (8, 3, 32, 32)]
    assert torch.equal(torch.cat([y for _, y in batches]), data.labels[epoch_order(40, True, 0)])


def test_iterate_batches_on_a_folder_uses_the_seeded_order(tmp_path):
    write_class_folders(tmp_path, per_class=5)
    data = build_dataset(folder_config(tmp_path, resolution=8, test_fraction=0.2), "train")
    batches = list(iterate_batches(data, 3, shuffle=True, seed=4))
    assert [len(y) for _, y in batches] == [3, 3, 2]
    x, y = batches[0]
    assert x.shape == (3, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(torch.cat([y for _, y in batches]), data.labels[epoch_order(len(data), True, 4)])
