import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from stylex.errors import UserError
from stylex.networks import (
    Discriminator,
    DiscriminatorConfig,
    Encoder,
    EncoderConfig,
    Generator,
    GeneratorConfig,
    SynthesisState,
    minibatch_std,
)
from stylex.ops import (
    EqualLinear,
    bias_lrelu,
    downsample2d,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

W_DIM = 32
TINY = {"channel_base": 256, "channel_max": 32}  # 32, 32, 16 channels at 4, 8, 16 px


def make_generator(resolution=16, c_dim=0, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = GeneratorConfig(img_resolution=resolution, z_dim=W_DIM, w_dim=W_DIM, c_dim=c_dim, mapping_layers=2,
                          **{**TINY, **overrides})
    G = Generator(cfg).eval()
    with torch.no_grad():  # noise strength is 0 at init; make the noise visible to the tests
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.1)
    return G


def make_inputs(G, batch=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(batch, G.cfg.w_dim, generator=gen)
    cond = torch.randn(batch, G.cfg.c_dim, generator=gen).softmax(dim=1) if G.cfg.c_dim else None
    return w, cond


def assert_exact(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---- configs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [GeneratorConfig, EncoderConfig, DiscriminatorConfig])
@pytest.mark.parametrize("resolution", [48, 8, 2048, 100])
def test_bad_resolution_is_a_user_error(cls, resolution):
    with pytest.raises(UserError, match=f"^img_resolution must be a power of two between 16 and 1024, "
                                        f"got {resolution}$"):
        cls(img_resolution=resolution)


def test_config_validation():
    with pytest.raises(UserError, match="c_dim must be an integer >= 0"):
        GeneratorConfig(img_resolution=16, c_dim=-1)
    with pytest.raises(UserError, match="channel_base 8 leaves no channels at 16 px"):
        GeneratorConfig(img_resolution=16, channel_base=8)
    with pytest.raises(UserError, match="mbstd_channels must be 0 or divide the 32 channels"):
        DiscriminatorConfig(img_resolution=16, mbstd_channels=3, **TINY)
    with pytest.raises(UserError, match="unknown GeneratorConfig field"):
        GeneratorConfig.from_dict({"img_resolution": 16, "resolution": 16})
    with pytest.raises(UserError, match="EncoderConfig needs img_resolution"):
        EncoderConfig.from_dict({"w_dim": 16})
    with pytest.raises(TypeError, match="positional"):
        GeneratorConfig(16, 3, 64)  # keywords only: 64 could be z_dim or w_dim


def test_generator_config_fields_in_documented_order():
    names = [f.name for f in dataclasses.fields(GeneratorConfig)]
    assert names[:7] == ["img_resolution", "img_channels", "w_dim", "c_dim", "channel_base", "channel_max",
                         "mapping_layers"]  # DESIGN section 10


@pytest.mark.parametrize("cfg", [
    GeneratorConfig(img_resolution=32, c_dim=2, conv_clamp=256.0, fused_modconv=True),
    EncoderConfig(img_resolution=64, w_dim=16),
    DiscriminatorConfig(img_resolution=16, c_dim=3, mbstd_group_size=2),
])
def test_configs_round_trip_through_json(cfg):
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ---- FIR ops ------------------------------------------------------------------------------------------------

def test_setup_filter_is_normalized_outer_product():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and math.isclose(f.sum().item(), 1.0, rel_tol=1e-6)
    torch.testing.assert_close(f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)


def test_upsample_of_a_delta_is_the_scaled_separable_kernel():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1
    y = upsample2d(x, setup_filter())
    assert y.shape == (1, 1, 8, 8)
    taps = torch.tensor([1.0, 3, 3, 1]) / 8 * 2  # 1-D filter times the 1-D share (2) of the gain 4
    expected = torch.zeros(8, 8)
    expected[1:5, 1:5] = torch.outer(taps, taps)  # the zero-inserted delta sits at 2, the filter spans 1..4
    torch.testing.assert_close(y[0, 0], expected)


def test_constant_images_stay_constant_inside_after_resampling():
    f = setup_filter()
    x = torch.full((2, 3, 8, 8), 0.7)
    up = upsample2d(x, f)
    down = downsample2d(x, f)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.full((2, 3, 12, 12), 0.7))
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.full((2, 3, 2, 2), 0.7))


def test_downsample_of_a_delta_and_filter_orientation():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 3] = 1
    y = downsample2d(x, setup_filter())
    taps = torch.tensor([1.0, 3, 3, 1]) / 8
    # padded by 1 the delta sits at 4; output j reads padded inputs 2j..2j+3 with the flipped filter:
    # j=1 meets it at flipped tap 2 (= 3/8), j=2 at flipped tap 0 (= 1/8), the others not at all.
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = torch.outer(taps[[2, 0]], taps[[2, 0]])
    torch.testing.assert_close(y[0, 0], expected)
    # upfirdn2d is a true convolution, y[i] = sum_a f[a] x[i + fw - 1 - a]: a delta reproduces an asymmetric
    # filter in its own orientation; flip_filter=True (cross-correlation) reproduces it flipped.
    f = setup_filter([1, 2], normalize=False)
    delta = torch.zeros(1, 1, 3, 3)
    delta[0, 0, 1, 1] = 1
    torch.testing.assert_close(upfirdn2d(delta, f)[0, 0, 0:2, 0:2], f)
    torch.testing.assert_close(upfirdn2d(delta, f, flip_filter=True)[0, 0, 0:2, 0:2], f.flip([0, 1]))


def test_upfirdn2d_matches_a_direct_definition():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5)
    f = torch.rand(3, 3)
    y = upfirdn2d(x, f, up=2, down=1, padding=(2, 1, 2, 1), gain=3.0)
    # direct: zero insertion, pad, true 2-D convolution (sum over taps of f[a, b] * u[i - a, j - b]), gain.
    u = torch.zeros(2, 3, 10, 10)
    u[:, :, ::2, ::2] = x
    u = F.pad(u, [2, 1, 2, 1])
    out = torch.zeros(2, 3, 11, 11)
    for a in range(3):
        for b in range(3):
            out += 3.0 * f[a, b] * u[:, :, 2 - a:13 - a, 2 - b:13 - b]
    torch.testing.assert_close(y, out, rtol=1e-5, atol=1e-5)
    assert upfirdn2d(x, f, down=2, padding=1).shape == (2, 3, 3, 3)
    assert upfirdn2d(x, f, padding=-1).shape == (2, 3, 1, 1)  # negative padding crops


# ---- modulated convolution ----------------------------------------------------------------------------------

@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("demodulate", [True, False])
def test_fused_and_non_fused_modulated_conv_agree(up, kernel, demodulate):
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 8, 6, 6), torch.randn(5, 8, kernel, kernel), torch.randn(3, 8)
    args = {"demodulate": demodulate, "up": up, "padding": kernel // 2, "resample_filter": setup_filter()}
    a = modulated_conv2d(x, weight, styles, fused=False, **args)
    b = modulated_conv2d(x, weight, styles, fused=True, **args)
    assert a.shape == (3, 5, 6 * up, 6 * up)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_matches_its_definition(fused, kernel, demodulate):
    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 4, 5, 5), torch.randn(6, 4, kernel, kernel), torch.rand(2, 4) + 0.5
    add = torch.randn(6, 5, 5)
    out = modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=kernel // 2, fused=fused, gain=1.5,
                           add=add)
    for b in range(2):
        w = weight * styles[b][None, :, None, None]
        if demodulate:
            w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        expected = 1.5 * F.conv2d(x[b:b + 1], w, padding=kernel // 2) + add
        torch.testing.assert_close(out[b:b + 1], expected, rtol=1e-5, atol=1e-5)


def test_upsampling_conv_is_zero_insertion_conv_then_filter():
    torch.manual_seed(0)
    x, weight, f = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3), setup_filter()
    fast = modulated_conv2d(x, weight, torch.ones(2, 4), demodulate=False, up=2, resample_filter=f)
    zero_inserted = upfirdn2d(x, torch.ones(1, 1), up=2)  # [10, 10]: a sample, then a zero
    slow = F.conv2d(zero_inserted, weight, padding=2)[:, :, :-1, :-1]  # full correlation, [11, 11]
    slow = upfirdn2d(slow, f, padding=1, gain=4)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_synthesis_layer_is_lrelu_of_conv_plus_noise_plus_bias(noise_mode):
    G = make_generator(16)
    layer = G.synthesis.b16.conv0  # the upsampling conv
    with torch.no_grad():
        layer.bias.normal_()
    x, s = torch.randn(2, 32, 8, 8), torch.rand(2, 32) + 0.5
    torch.manual_seed(3)
    out = layer(x, s, noise_mode)
    torch.manual_seed(3)
    conv = modulated_conv2d(x, layer.weight * layer.weight_gain, s, up=2, resample_filter=setup_filter())
    noise = {"const": layer.noise_const, "random": torch.randn(2, 1, 16, 16), "none": torch.zeros(())}[noise_mode]
    expected = bias_lrelu(conv + noise * layer.noise_strength, layer.bias)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_equal_linear_and_bias_lrelu():
    torch.manual_seed(0)
    layer = EqualLinear(10, 4, bias_init=1.0, lr_multiplier=0.01, activation=None)
    x = torch.randn(3, 10)
    effective_weight = layer.weight * 0.01 / math.sqrt(10)
    torch.testing.assert_close(layer(x), x @ effective_weight.t() + 1.0)  # effective bias = bias_init
    y = bias_lrelu(torch.tensor([[-1.0, 2.0]]), torch.tensor([0.5, 0.0]), clamp=2.0)
    torch.testing.assert_close(y, torch.tensor([[-0.1 * math.sqrt(2), 2.0]]))


# ---- generator ----------------------------------------------------------------------------------------------

def test_generator_exposes_its_layout_and_image_shape():
    G = make_generator(16, c_dim=2)
    assert G.layout.names == ("b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0",
                              "b16.conv1", "b16.torgb")
    assert G.num_ws == 6 and G.layout.conv_dim == 32 + 32 + 32 + 32 + 16
    w, cond = make_inputs(G)
    styles = G.w_to_styles(w, cond)
    assert [tuple(s.shape) for s in styles] == [(3, layer.dim) for layer in G.layout.layers]
    image = G(w, cond, noise_mode="const")
    assert image.shape == (3, 3, 16, 16) and torch.isfinite(image).all()
    assert Generator(G.cfg.to_dict()).layout == G.layout


def test_styles_are_raw_affine_outputs_around_one():
    G = make_generator(16)
    w = torch.randn(64, W_DIM)
    styles = G.w_to_styles(w)
    for layer, s in zip(G.layout.layers, styles, strict=True):
        module = G.synthesis.get_submodule(layer.name)
        torch.testing.assert_close(s, module.affine(w), rtol=0, atol=0)  # toRGB gain is not in the style
        assert abs(s.mean().item() - 1) < 0.2 and 0.5 < s.std().item() < 1.5


def test_forward_is_synthesize_of_w_to_styles():
    G = make_generator(16, c_dim=2)
    w, cond = make_inputs(G)
    assert_exact(G(w, cond, noise_mode="const"), G.synthesize(G.w_to_styles(w, cond))[0])
    torch.manual_seed(7)
    random_forward = G(w, cond)
    torch.manual_seed(7)
    assert_exact(random_forward, G.synthesize(G.w_to_styles(w, cond), noise_mode="random")[0])


def test_noise_modes():
    G = make_generator(16)
    w, _ = make_inputs(G)
    styles = G.w_to_styles(w)
    const = G.synthesize(styles)[0]
    assert_exact(const, G.synthesize(styles, noise_mode="const")[0])
    assert not torch.allclose(G.synthesize(styles, noise_mode="random")[0],
                              G.synthesize(styles, noise_mode="random")[0])
    assert not torch.allclose(G.synthesize(styles, noise_mode="none")[0], const)
    with pytest.raises(UserError, match="noise_mode must be one of const, random, none"):
        G.synthesize(styles, noise_mode="fixed")


def test_suffix_run_from_every_layer_equals_the_full_run():
    G = make_generator(32, c_dim=2)
    w, cond = make_inputs(G, batch=2)
    styles = G.w_to_styles(w, cond)
    image, states = G.synthesize(styles, return_states=True)
    assert len(states) == G.layout.num_layers and all(isinstance(s, SynthesisState) for s in states)
    assert states[0].img is None and states[1].img is None and states[2].img.shape[-1] == 4
    assert G.synthesize(styles)[1] is None
    for index in range(G.layout.num_layers):
        suffix, suffix_states = G.synthesize(styles, start=index, state=states[index], return_states=True)
        torch.testing.assert_close(suffix, image, rtol=1e-5, atol=1e-5)
        assert suffix_states[:index] == [None] * index
        # layers before `start` are never read
        partial = [None] * index + styles[index:]
        torch.testing.assert_close(G.synthesize(partial, start=index, state=states[index])[0], image,
                                   rtol=1e-5, atol=1e-5)


def test_suffix_run_broadcasts_one_images_state_over_edits():
    G = make_generator(16)
    w, _ = make_inputs(G, batch=2)
    styles = G.w_to_styles(w)
    _, states = G.synthesize(styles, return_states=True)
    layer = G.layout.layer("b8.conv1")
    k = 4
    # image 1, four edits of one coordinate each; the other layers' styles are expanded, not copied
    edited = [s[1:2].expand(k, -1) for s in styles]
    edit = styles[layer.index][1:2].repeat(k, 1)
    edit[torch.arange(k), torch.arange(k)] += 2.0
    edited[layer.index] = edit
    cached = G.synthesize(edited, start=layer.index, state=states[layer.index].select(1).expand(k))[0]
    full = G.synthesize([s.expand(k, -1) if s.shape[0] == 1 else s for s in edited])[0]
    assert cached.shape == (k, 3, 16, 16)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
    # the state is broadcast automatically, and a cached state can be detached
    auto = G.synthesize(edited, start=layer.index, state=states[layer.index].select(1).detach())[0]
    torch.testing.assert_close(auto, cached, rtol=0, atol=0)


def test_synthesis_state_helpers():
    x, img = torch.arange(4.0).reshape(4, 1, 1, 1), torch.zeros(4, 3, 2, 2)
    state = SynthesisState(x, img)
    assert state.select(-1).x.flatten().tolist() == [3.0] and state.select(torch.tensor(2)).batch_size == 1
    assert state.select(torch.tensor([0, 2])).x.flatten().tolist() == [0.0, 2.0]
    expanded = state.select(1).expand(5)
    assert expanded.x.shape == (5, 1, 1, 1) and expanded.img.shape == (5, 3, 2, 2)
    assert expanded.x.data_ptr() == x[1:2].data_ptr()  # a view, not a copy
    assert state.expand(4) is state
    leaf = torch.ones(1, 1, 1, 1, requires_grad=True)
    assert not SynthesisState(leaf * 2, None).detach().x.requires_grad


def test_synthesize_rejects_bad_starts_and_states():
    G = make_generator(16)
    w, _ = make_inputs(G)
    styles = G.w_to_styles(w)
    _, states = G.synthesize(styles, return_states=True)
    with pytest.raises(UserError, match=r"pass state=states\[3\]"):
        G.synthesize(styles, start=3)
    with pytest.raises(UserError, match=r"the state entering b8\.conv1 must have features"):
        G.synthesize(styles, start=3, state=states[2])
    with pytest.raises(UserError, match="start must be a style layer index"):
        G.synthesize(styles, start=len(styles))
    with pytest.raises(UserError, match="one style tensor per style layer"):
        G.synthesize(styles[:-1])
    with pytest.raises(UserError, match="disagree on the batch size"):
        G.synthesize([*styles[:-1], styles[-1][:2]])
    with pytest.raises(UserError, match="expand"):
        states[3].expand(5)


def test_editing_styles_never_changes_parameters():
    G = make_generator(16, c_dim=2)
    before = {name: t.clone() for name, t in G.state_dict().items()}
    w, cond = make_inputs(G)
    styles = G.w_to_styles(w, cond)
    base = G.synthesize(styles)[0]
    name, channel = G.layout.locate(40)
    edited_styles = [s.clone() for s in styles]
    edited_styles[G.layout.layer(name).index][:, channel] += 5.0
    edited = G.synthesize(edited_styles)[0]
    assert not torch.allclose(edited, base)
    for name, tensor in G.state_dict().items():
        assert_exact(tensor, before[name])
    assert_exact(G.synthesize(styles)[0], base)


def test_w_and_repeated_w_plus_give_identical_styles():
    G = make_generator(16, c_dim=2)
    w, cond = make_inputs(G)
    w_plus = w[:, None].repeat(1, G.num_ws, 1)
    for a, b in zip(G.w_to_styles(w, cond), G.w_to_styles(w_plus, cond), strict=True):
        assert_exact(a, b)
    # changing W+ row 1 changes exactly the layers that read it: b4.torgb and b8.conv0
    w_plus[:, 1] += 1.0
    changed = [layer.name for layer, a, b in zip(G.layout.layers, G.w_to_styles(w, cond),
                                                 G.w_to_styles(w_plus, cond), strict=True) if not torch.equal(a, b)]
    assert changed == ["b4.torgb", "b8.conv0"]
    with pytest.raises(UserError, match=r"w must be \[B, 32\]"):
        G.w_to_styles(torch.zeros(3, G.num_ws + 1, W_DIM), cond)


def test_unconditional_generator_has_w_dim_affines_and_rejects_cond():
    G = make_generator(16, c_dim=0)
    affines = [G.synthesis.get_submodule(name).affine for name in G.layout.names]
    assert all(affine.in_features == W_DIM for affine in affines)
    w, _ = make_inputs(G)
    with pytest.raises(UserError, match=r"unconditional \(c_dim=0\)"):
        G.w_to_styles(w, torch.full((3, 2), 0.5))


def test_conditional_generator_concatenates_cond_before_every_affine():
    G = make_generator(16, c_dim=2)
    affines = [G.synthesis.get_submodule(name).affine for name in G.layout.names]
    assert all(affine.in_features == W_DIM + 2 for affine in affines)
    w, _ = make_inputs(G)
    cond_a = torch.tensor([[0.9, 0.1]]).repeat(3, 1)
    cond_b = torch.tensor([[0.1, 0.9]]).repeat(3, 1)
    styles_a, styles_b = G.w_to_styles(w, cond_a), G.w_to_styles(w, cond_b)
    assert all(not torch.allclose(a, b) for a, b in zip(styles_a, styles_b, strict=True))
    assert not torch.allclose(G(w, cond_a, noise_mode="const"), G(w, cond_b, noise_mode="const"))
    torch.testing.assert_close(styles_a[0], affines[0](torch.cat([w, cond_a], dim=1)), rtol=0, atol=0)
    with pytest.raises(UserError, match=r"conditional \(c_dim=2\): pass cond"):
        G(w)
    with pytest.raises(UserError, match=r"cond must be the classifier's probabilities \[B, 2\]"):
        G(w, torch.full((3, 3), 1 / 3))


def test_mapping_tracks_w_avg_in_training_and_truncates():
    G = make_generator(16)
    z = torch.randn(8, W_DIM)
    assert G.mapping(z).shape == (8, W_DIM)
    assert torch.count_nonzero(G.mapping.w_avg) == 0  # eval mode: no update
    G.train()
    w = G.mapping(z)
    torch.testing.assert_close(G.mapping.w_avg, w.detach().mean(0) * (1 - 0.995))
    G.eval()
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.0), G.mapping.w_avg.expand(8, -1))
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.5), (G.mapping(z) + G.mapping.w_avg) / 2)


def test_fused_generator_matches_the_default_path():
    G = make_generator(16, c_dim=2)
    fused = Generator(GeneratorConfig.from_dict({**G.cfg.to_dict(), "fused_modconv": True})).eval()
    fused.load_state_dict(G.state_dict())
    w, cond = make_inputs(G)
    torch.testing.assert_close(fused(w, cond, noise_mode="const"), G(w, cond, noise_mode="const"),
                               rtol=1e-4, atol=1e-5)


def test_conv_clamp_bounds_the_features():
    G = make_generator(16, conv_clamp=0.05)
    w, _ = make_inputs(G)
    _, states = G.synthesize(G.w_to_styles(w), return_states=True)
    for layer, state in zip(G.layout.layers[1:], states[1:], strict=True):
        assert state.x.abs().max() <= 0.05 + 1e-7, layer.name


def test_generator_runs_under_bf16_autocast_with_fp32_styles():
    G = make_generator(16, c_dim=2)
    z = torch.randn(2, W_DIM)
    cond = torch.full((2, 2), 0.5)
    reference = G(G.mapping(z), cond, noise_mode="const")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = G.mapping(z)
        styles = G.w_to_styles(w, cond)
        image = G.synthesize(styles)[0]
    assert w.dtype == torch.float32 and all(s.dtype == torch.float32 for s in styles)
    assert image.dtype == torch.float32 and torch.isfinite(image).all()
    assert (image - reference).abs().max() < 0.1 * reference.abs().max()


# ---- encoder and discriminator ------------------------------------------------------------------------------

def make_encoder(resolution=16, seed=0):
    torch.manual_seed(seed)
    return Encoder(EncoderConfig(img_resolution=resolution, w_dim=W_DIM, **TINY))


def make_discriminator(resolution=16, c_dim=0, seed=0):
    torch.manual_seed(seed)
    return Discriminator(DiscriminatorConfig(img_resolution=resolution, c_dim=c_dim, **TINY))


def test_encoder_maps_images_to_w():
    E = make_encoder(32)
    w = E(torch.rand(5, 3, 32, 32) * 2 - 1)
    assert w.shape == (5, W_DIM) and torch.isfinite(w).all()
    assert_exact(E(torch.zeros(1, 3, 32, 32)), E(torch.zeros(2, 3, 32, 32))[:1])  # no batch coupling
    with pytest.raises(UserError, match=r"expected images \[B, 3, 32, 32\]"):
        E(torch.zeros(1, 3, 16, 16))


@pytest.mark.parametrize("batch", [1, 3, 4, 5, 6])
def test_discriminator_scores_any_batch_size(batch):
    D = make_discriminator()
    logits = D(torch.randn(batch, 3, 16, 16))
    assert logits.shape == (batch, 1) and torch.isfinite(logits).all()


def test_minibatch_std_uses_a_divisor_of_the_batch():
    x = torch.randn(6, 4, 2, 2)
    out = minibatch_std(x, group_size=4)  # 6 is not divisible by 4: groups of 3
    assert out.shape == (6, 5, 2, 2)
    torch.testing.assert_close(out, torch.cat([minibatch_std(x[:3], 3), minibatch_std(x[3:], 3)]))
    stat = x[:3].std(dim=0, unbiased=False).mean()
    torch.testing.assert_close(out[0, 4], torch.full((2, 2), stat.item()), rtol=1e-4, atol=1e-5)


def test_projection_conditioning():
    D = make_discriminator(c_dim=2)
    assert sum(p.numel() for n, p in D.named_parameters() if n.startswith("embed")) == 2 * 32
    images = torch.randn(4, 3, 16, 16)
    a = D(images, torch.tensor([[1.0, 0.0]]).repeat(4, 1))
    b = D(images, torch.tensor([[0.0, 1.0]]).repeat(4, 1))
    assert a.shape == (4, 1) and not torch.allclose(a, b)
    with pytest.raises(UserError, match="conditional"):
        D(images)
    plain = make_discriminator(c_dim=0)
    assert plain.embed is None and not any("embed" in n for n, _ in plain.named_parameters())
    with pytest.raises(UserError, match="unconditional"):
        plain(images, torch.full((4, 2), 0.5))


def test_discriminator_supports_double_backward_for_r1():
    D = make_discriminator(c_dim=2)
    images = torch.randn(2, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(D(images, torch.full((2, 2), 0.5)).sum(), images, create_graph=True)
    grad.square().sum().backward()
    assert D.trunk.fromrgb.weight.grad is not None and torch.isfinite(D.trunk.fromrgb.weight.grad).all()


# ---- persistence and gradients ------------------------------------------------------------------------------

def test_networks_rebuild_identically_from_config_and_state_dict():
    G, E, D = make_generator(16, c_dim=2), make_encoder(), make_discriminator(c_dim=2)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    w, cond = make_inputs(G, batch=2)
    for module, run in [(G, lambda m: m(w, cond, noise_mode="const")), (E, lambda m: m(images)),
                        (D, lambda m: m(images, cond))]:
        config = json.loads(json.dumps(module.cfg.to_dict()))
        torch.manual_seed(123)  # a different init, overwritten by the state dict
        rebuilt = type(module)(type(module.cfg).from_dict(config)).eval()
        rebuilt.load_state_dict(module.state_dict())
        assert_exact(run(rebuilt), run(module))


def test_gradients_reach_every_parameter():
    G, E = make_generator(16, c_dim=2), make_encoder()
    G.train()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    cond = torch.full((2, 2), 0.5)
    G(E(images), cond).square().mean().backward()
    # the mapping network is not on the encoder path G(E(x)); every other parameter is
    for name, param in [*G.named_parameters(), *E.named_parameters()]:
        if name.startswith("mapping."):
            assert param.grad is None, name
        else:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
    G.zero_grad()
    G(G.mapping(torch.randn(2, W_DIM)), cond).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.mapping.parameters())


def test_path_length_double_backward_through_the_generator():
    G = make_generator(16)
    w = torch.randn(2, W_DIM, requires_grad=True)
    image = G(w)
    (grad,) = torch.autograd.grad((image * torch.randn_like(image)).sum(), w, create_graph=True)
    grad.square().sum().backward()
    assert G.synthesis.b16.conv1.weight.grad is not None
