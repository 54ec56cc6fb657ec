import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from stylex.errors import UserError
from stylex.layout import StyleIndexError, StyleLayout


def tiny_layout():
    return StyleLayout(32, channel_base=256, channel_max=16)  # channels 16, 16, 16, 8 at 4, 8, 16, 32 px


@pytest.mark.parametrize("resolution, conv_dim, total_dim, num_ws, num_layers", [
    (256, 5760, 8704, 14, 20), (512, 5952, 8960, 16, 23), (1024, 6048, 9088, 18, 26)])
def test_config_f_counts_match_stylespace(resolution, conv_dim, total_dim, num_ws, num_layers):
    layout = StyleLayout(resolution, channel_base=32768, channel_max=512)
    assert (layout.conv_dim, layout.total_dim, layout.num_ws, layout.num_layers) == (
        conv_dim, total_dim, num_ws, num_layers)
    assert layout.total_dim - layout.conv_dim == sum(layer.dim for layer in layout.layers if not layer.is_conv)


def test_paper256_channel_config_changes_the_counts():
    layout = StyleLayout(256, channel_base=16384, channel_max=512)
    assert (layout.total_dim, layout.conv_dim) == (7424, 4928)


def test_layer_names_order_and_dims_at_256():
    layout = StyleLayout(256)
    names = ["b4.conv1", "b4.torgb"] + [f"b{r}.{kind}" for r in (8, 16, 32, 64, 128, 256)
                                        for kind in ("conv0", "conv1", "torgb")]
    assert [layer.name for layer in layout.layers] == names
    assert [layer.index for layer in layout.layers] == list(range(20))
    dims = {layer.name: layer.dim for layer in layout.layers}
    assert all(dims[name] == 512 for name in names[:14])
    assert (dims["b128.conv0"], dims["b128.conv1"], dims["b128.torgb"]) == (512, 256, 256)
    assert (dims["b256.conv0"], dims["b256.conv1"], dims["b256.torgb"]) == (256, 128, 128)
    assert [layer.kind for layer in layout.layers[:5]] == ["conv", "torgb", "conv", "conv", "torgb"]
    assert layout.layer("b64.conv0").resolution == 64


def test_offsets_are_contiguous():
    layout = StyleLayout(256)
    offset = conv_offset = 0
    for layer in layout.layers:
        assert layer.offset == offset
        offset += layer.dim
        if layer.kind == "conv":
            assert layer.conv_offset == conv_offset
            conv_offset += layer.dim
        else:
            assert layer.conv_offset is None
    assert (offset, conv_offset) == (layout.total_dim, layout.conv_dim)


def test_wu_positions_and_w_rows_at_1024():
    layout = StyleLayout(1024)
    assert [layer.index for layer in layout.conv_layers] == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21,
                                                             23, 24]
    assert [layer.index for layer in layout.layers if not layer.is_conv] == [1, 4, 7, 10, 13, 16, 19, 22, 25]
    assert layout.layers[6].name == "b16.conv1"  # StyleSpace's (6, 501) "smiling" id
    # A toRGB reads the W+ row of the next block's conv0; the last toRGB reads the extra last row.
    rows = {layer.name: layer.w_index for layer in layout.layers}
    assert rows["b4.conv1"] == 0 and rows["b4.torgb"] == rows["b8.conv0"] == 1 and rows["b8.conv1"] == 2
    assert [layer.w_index for layer in layout.conv_layers] == list(range(17))
    assert rows["b1024.torgb"] == layout.num_ws - 1 == 17


def test_locate_known_positions_at_256():
    layout = StyleLayout(256)
    assert layout.locate(0) == ("b4.conv1", 0)
    assert layout.locate(511) == ("b4.conv1", 511)
    assert layout.locate(512) == ("b8.conv0", 0)  # the toRGB of b4 is not in the conv-only vector
    assert layout.locate(5759) == ("b256.conv1", 127)
    assert layout.conv_index("b8.conv0", 0) == 512
    assert layout.locate(torch.tensor(512).item()) == ("b8.conv0", 0)


def test_locate_and_conv_index_round_trip_for_every_coordinate():
    layout = tiny_layout()
    seen = set()
    for k in range(layout.conv_dim):
        name, channel = layout.locate(k)
        assert layout.layer(name).kind == "conv" and 0 <= channel < layout.layer(name).dim
        assert layout.conv_index(name, channel) == k
        seen.add((name, channel))
    assert len(seen) == layout.conv_dim
    for i in range(layout.total_dim):
        name, channel = layout.locate_full(i)
        assert layout.layer(name).offset + channel == i


def test_out_of_range_coordinates_raise_clear_errors():
    layout = tiny_layout()
    for k in (-1, layout.conv_dim):
        with pytest.raises(IndexError, match=f"conv style coordinate {k} is out of range"):
            layout.locate(k)
    with pytest.raises(UserError, match=f"has {layout.conv_dim} conv coordinates"):
        layout.locate(layout.conv_dim)
    assert issubclass(StyleIndexError, UserError) and issubclass(StyleIndexError, IndexError)
    with pytest.raises(StyleIndexError, match=r"channel 16 is out of range for b8\.conv1"):
        layout.conv_index("b8.conv1", 16)
    with pytest.raises(UserError, match=r"b8\.torgb is a toRGB layer"):
        layout.conv_index("b8.torgb", 0)
    with pytest.raises(UserError, match=r"no style layer named 'b8\.conv2'"):
        layout.layer("b8.conv2")
    with pytest.raises(TypeError):
        layout.locate(1.5)


def test_conv_flatten_places_each_layer_at_its_offset():
    layout = tiny_layout()
    styles = [torch.randn(3, layer.dim) for layer in layout.layers]
    flat = layout.conv_flatten(styles)
    assert flat.shape == (3, layout.conv_dim)
    for layer in layout.conv_layers:
        part = flat[:, layer.conv_offset:layer.conv_offset + layer.dim]
        torch.testing.assert_close(part, styles[layer.index], rtol=0, atol=0)
    # the conv-only list is accepted too, and coordinate k is the located channel
    assert torch.equal(layout.conv_flatten([styles[layer.index] for layer in layout.conv_layers]), flat)
    name, channel = layout.locate(37)
    assert torch.equal(flat[:, 37], styles[layout.layer(name).index][:, channel])
    full = layout.flatten(styles)
    conv_columns = torch.cat([torch.arange(layer.offset, layer.offset + layer.dim) for layer in layout.conv_layers])
    assert full.shape == (3, layout.total_dim) and torch.equal(full[:, conv_columns], flat)


def test_flatten_rejects_wrong_sizes():
    layout = tiny_layout()
    with pytest.raises(UserError, match="expected"):
        layout.conv_flatten([torch.zeros(1, 16)])


def test_summary_is_json_and_rebuilds_the_layout():
    layout = StyleLayout(64, channel_base=2048, channel_max=128)
    summary = json.loads(json.dumps(layout.summary()))
    assert summary["conv_dim"] == layout.conv_dim and summary["num_ws"] == layout.num_ws
    assert StyleLayout.from_summary(summary) == layout
    assert StyleLayout.from_summary(summary).layers == layout.layers
    summary["layers"][0]["dim"] += 1
    with pytest.raises(UserError, match="stored style layout differs"):
        StyleLayout.from_summary(summary)


def test_layout_is_frozen_and_validates():
    layout = tiny_layout()
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.img_resolution = 64
    with pytest.raises(UserError, match="img_resolution must be a power of two"):
        StyleLayout(48)
    with pytest.raises(UserError, match="channel_base 16 leaves no channels at 32 px"):
        StyleLayout(32, channel_base=16)


def test_layout_works_without_importing_torch():
    code = ("import sys; from stylex.layout import StyleLayout; layout = StyleLayout(256); "
            "assert layout.locate(600) == ('b8.conv0', 88) and layout.conv_dim == 5760; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
