"""AttFind effect-tensor speed: the published code's naive loop versus `compute_effects`, same model and device.

    python benchmarks/attfind_speed.py --config demo [--images 4] [--naive-coordinates 96] [--compare-bf16]
    python benchmarks/attfind_speed.py --config fashion-sneaker-boot-gpu --device cuda [--compare-bf16]
    python benchmarks/attfind_speed.py --run runs/demo [--variant stylex|stylex-nocst]

Naive: `reference_effects` (one image, one coordinate, one direction, the whole generator and classifier per
edit, batch 1, fp32) on `--naive-images` images and `--naive-coordinates` conv coordinates spread evenly over all
layers. Fast: `compute_effects` on `--images` images and every conv coordinate. An edit is one (image,
coordinate, direction); both rates are edits/s, and the ratio is fast / naive. The script also prints the largest
difference between the two effect tensors on the edits both computed.

The model comes from `--run` (RUN/classifier.pt and RUN/checkpoints/<variant>.pt) when given; otherwise the
networks are random-init at the config's shape (speed does not depend on the weights). A random-init MobileNet
has logits around 1e-7, which would make the numeric comparison empty, so its BN running statistics are set
from 64 real test images and its final Linear is re-initialised with std 0.1 (logits of a few units; BN in eval
mode, as always here).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from stylex import classifier as classifiers
from stylex.attfind import Effects, compute_effects, reference_effects
from stylex.checkpoint import build_networks, network_configs
from stylex.classifier import Classifier, build_network
from stylex.config import Config, load_config
from stylex.data import ImageDataset, build_dataset
from stylex.editing import autocast, resolve_precision
from stylex.errors import UserError
from stylex.model import StylexModel, load_stylex
from stylex.run import RunDir
from stylex.runtime import resolve_device
from stylex.stats import StyleStats, encode_styles

STATS_IMAGES = 16  # images the style statistics (min / max targets) are taken over, at least
CALIBRATION_IMAGES = 64  # real images that set a random-init classifier's BN statistics
HEAD_STD = 0.1  # std of a random-init classifier's final Linear after calibration: logits of a few units


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="preset or .json (default: RUN/config.json with --run, else demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--root", help="data root (data.root)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the config's device)")
    parser.add_argument("--run", help="run folder with classifier.pt and checkpoints/<variant>.pt")
    parser.add_argument("--variant", choices=("stylex", "stylex-nocst"), default="stylex")
    parser.add_argument("--images", type=int, default=4, help="images for the fast path (all K coordinates)")
    parser.add_argument("--naive-images", type=int, default=1, help="images for the naive loop")
    parser.add_argument("--naive-coordinates", type=int, default=96,
                        help="conv coordinates for the naive loop, evenly spaced over all layers")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="fast path precision (the naive loop is always fp32)")
    parser.add_argument("--max-batch", type=int, default=0, help="edits per forward of the fast path (0: auto)")
    parser.add_argument("--shift-size", type=float, default=None, help="default: the config's attfind.shift_size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-init networks")
    parser.add_argument("--compare-bf16", action="store_true",
                        help="also run the fast path in float32 and bfloat16 and print their difference")
    args = parser.parse_args()
    if args.images < 1 or args.naive_images < 1 or args.naive_coordinates < 1:
        parser.error("--images, --naive-images and --naive-coordinates must be >= 1")
    if args.naive_images > args.images:
        parser.error(f"--naive-images ({args.naive_images}) must be <= --images ({args.images}): the naive effects are "
                     "compared with the fast ones on the same images")
    if args.max_batch < 0:
        parser.error("--max-batch must be >= 0")
    return args


def run_files(run: str, variant: str) -> tuple[Path, Path]:
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise SystemExit(f"--run {run}: no such folder")
    classifier_file = RunDir(run_dir).classifier
    checkpoint = RunDir(run_dir).checkpoint(variant)
    missing = [str(p) for p in (classifier_file, checkpoint) if not p.is_file()]
    if missing:
        raise SystemExit(f"--run {run} is not a trained StylEx run: missing {', '.join(missing)} (train the "
                         f"classifier and `stylex train{'' if variant == 'stylex' else ' --no-cst'}` first, or drop "
                         "--run to benchmark random-init networks)")
    return classifier_file, checkpoint


def load_model(args: argparse.Namespace, config: Config, data: ImageDataset, device: torch.device
               ) -> tuple[StylexModel, str]:
    """The model and a line saying where it came from."""
    if args.run:
        classifier_file, checkpoint = run_files(args.run, args.variant)
        classifier = classifiers.load(classifier_file, map_location=device)
        model = load_stylex(checkpoint, classifier, device)
        return model, f"trained: {checkpoint} (step {model.step}) + {classifier_file}"
    cst = args.variant == "stylex"
    generator, encoder, _ = build_networks(network_configs(config, data.resolution, data.channels, data.num_classes,
                                                           cst=cst))
    arch, width = config.classifier.arch, config.classifier.width
    net = build_network(arch, data.num_classes, data.resolution, data.channels, width)
    classifier = Classifier(net, data.classes, data.resolution, data.channels, arch, width).to(device)
    calibrated = calibrate(classifier, data, device)
    model = StylexModel(generator.to(device).eval().requires_grad_(False),
                        encoder.to(device).eval().requires_grad_(False),
                        classifier.eval().requires_grad_(False), cst, 0, {})
    return model, (f"random init ({args.variant}, config shape) + random-init {arch} x{width} classifier (BN running "
                   f"stats set from {calibrated} test images, final Linear re-initialised with std {HEAD_STD}; "
                   "eval mode)")


def calibrate(classifier: Classifier, data: ImageDataset, device: torch.device) -> int:
    """Give a random-init classifier logits of a few units, so that the effects are not ~1e-7.

    torchvision's MobileNetV2 init (kaiming fan_out, which counts 9 * C for a depthwise kernel) shrinks the
    activations by about the channel count at every depthwise conv, and eval-mode BN with the initial running
    stats (mean 0, var 1) does not undo it: the features reaching the head are ~1e-8. Setting the BN running
    stats from a few real images (a cumulative average, one train-mode pass) restores unit-scale features; the
    head then gets a larger std."""
    count = min(len(data), CALIBRATION_IMAGES)
    images = torch.stack([data[i][0] for i in range(count)]).to(device)
    norms = [m for m in classifier.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration pass
    classifier.train()
    with torch.no_grad():
        classifier(images)
    classifier.eval()
    head = [m for m in classifier.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.normal_(head.weight, std=HEAD_STD)
    nn.init.zeros_(head.bias)
    return count


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn):
    synchronize(device)
    started = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - started


def fast(model: StylexModel, styles: list[torch.Tensor], stats: StyleStats, shift_size: float, max_batch: int,
         precision: str) -> Effects:
    return compute_effects(model, styles, stats, shift_size, out_dir=None, max_batch=max_batch, precision=precision,
                           progress=False)


def timed_fast(model: StylexModel, styles: list[torch.Tensor], stats: StyleStats, shift_size: float,
               max_batch: int, precision: str, device: torch.device) -> tuple[Effects, float]:
    """Warm up, then time all images. On CUDA the warm-up is the whole untimed call (it is cheap there, and cuDNN
    picks kernels per shape: every edit-batch shape must have been seen); on CPU one small forward (lazy init;
    oneDNN's per-shape setup is negligible next to a CPU run, which would double)."""
    if device.type == "cuda":
        fast(model, styles, stats, shift_size, max_batch, precision)
    else:
        with torch.no_grad(), autocast(device, resolve_precision(precision)):
            image, _ = model.generator.synthesize([s[:1].to(device).expand(8, -1) for s in styles])
            model.classifier(image)
    return timed(device, lambda: fast(model, styles, stats, shift_size, max_batch, precision))


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def benchmark(args: argparse.Namespace) -> None:
    overrides = list(args.overrides)
    if args.root:
        overrides.append(f"data.root={args.root}")
    preset = args.config
    if preset is None:
        run_config = RunDir(args.run).config if args.run else None
        preset = str(run_config) if run_config is not None and run_config.is_file() else "demo"
    config = load_config(preset, overrides)
    label = config.name if preset.endswith(".json") else preset
    device = resolve_device(args.device or config.device)
    shift_size = config.attfind.shift_size if args.shift_size is None else args.shift_size
    data = build_dataset(config.data, "test")
    torch.manual_seed(args.seed)
    model, source = load_model(args, config, data, device)
    layout = model.generator.layout
    conv_dim, num_classes = layout.conv_dim, model.classifier.num_classes
    precision = resolve_precision(args.precision)

    count = max(args.images, STATS_IMAGES)
    if len(data) < max(count, 2):
        raise SystemExit(f"the test split has {len(data)} images; the benchmark needs {max(count, 2)}")
    all_styles = encode_styles(model, data, list(range(count)), device=device, progress=False)
    stats = StyleStats.from_styles(layout.conv_flatten(all_styles),
                                   {"split": "test", "num_images": count, "purpose": "attfind_speed benchmark"})
    styles = [s[:args.images] for s in all_styles]

    print(f"device      {describe_device(device)}")
    print(f"config      {label}, data {config.data.dataset} test split, {data.resolution}px, "
          f"{data.channels} channel(s)")
    print(f"model       {source}")
    print(f"layout      K = {conv_dim} conv coordinates in {len(layout.conv_layers)} conv layers "
          f"({', '.join(f'{s.name}:{s.dim}@{s.resolution}' for s in layout.conv_layers)}), {num_classes} classes")
    print(f"stats       min/max over {count} encoded test images, shift_size {shift_size}")

    # naive: the published loop
    picked = torch.linspace(0, conv_dim - 1, min(args.naive_coordinates, conv_dim)).round().long().unique()
    coordinates = picked.tolist()
    naive_images = list(range(args.naive_images))
    reference_effects(model, styles, stats, shift_size, images=[0], coordinates=coordinates[:1])  # warm-up
    naive, naive_seconds = timed(device, lambda: reference_effects(model, styles, stats, shift_size,
                                                                   images=naive_images, coordinates=coordinates))
    naive_edits = len(naive_images) * 2 * len(coordinates)
    naive_rate = naive_edits / naive_seconds

    # fast: compute_effects on every coordinate
    effects, fast_seconds = timed_fast(model, styles, stats, shift_size, args.max_batch, args.precision, device)
    fast_edits = args.images * 2 * conv_dim
    fast_rate = fast_edits / fast_seconds
    ratio = fast_rate / naive_rate

    compared = effects.effect[: len(naive_images)][:, :, picked]  # [n, 2, len(coordinates), C]
    max_diff = float((compared - naive).abs().max())
    scale = float(naive.abs().max())
    baseline_scale = float(effects.baseline.abs().max())

    print(f"naive       {naive_edits} edits ({len(naive_images)} image(s) x 2 directions x {len(coordinates)} "
          f"coordinates), batch 1, fp32: {naive_seconds:.2f} s, {naive_rate:.1f} edits/s")
    print(f"fast        {fast_edits} edits ({args.images} image(s) x 2 directions x {conv_dim} coordinates), "
          f"edit batch {effects.meta['edit_batch']}, {str(precision).removeprefix('torch.')}: {fast_seconds:.2f} s, "
          f"{fast_rate:.1f} edits/s")
    print(f"speed-up    {ratio:.1f}x (fast edits/s / naive edits/s)")
    print(f"agreement   max |effect_fast - effect_naive| = {max_diff:.3g} over the {naive.numel()} compared values; "
          f"max |effect_naive| = {scale:.3g}, max |baseline logit| = {baseline_scale:.3g}")

    if args.compare_bf16:
        slow_bf16 = device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported()
        if slow_bf16 and conv_dim > 256:
            print("note        this CPU has no native bf16 (no AVX512-BF16/AMX): bf16 convs fall back to slow "
                  "reference kernels; skipping the bf16 comparison for this model (try --config tiny)", flush=True)
            args.compare_bf16 = False
    if args.compare_bf16:
        results = {}
        for name in ("float32", "bfloat16"):
            if resolve_precision(name) == precision:
                results[name] = (effects, fast_seconds)
            else:
                results[name] = timed_fast(model, styles, stats, shift_size, args.max_batch, name, device)
        full, half = results["float32"][0], results["bfloat16"][0]
        bf16_diff = float((half.effect - full.effect).abs().max())
        bf16_scale = float(full.effect.abs().max())
        baseline_diff = float((half.baseline - full.baseline).abs().max())
        for name, (result, seconds) in results.items():
            print(f"{name:<11} {fast_edits} edits, edit batch {result.meta['edit_batch']}: {seconds:.2f} s, "
                  f"{fast_edits / seconds:.1f} edits/s")
        print(f"bf16 vs fp32 max |effect_bf16 - effect_fp32| = {bf16_diff:.3g}, relative to max |effect_fp32| "
              f"({bf16_scale:.3g}): {bf16_diff / max(bf16_scale, 1e-30):.3g}; max baseline logit difference "
              f"{baseline_diff:.3g}")

    print(f"RESULT attfind_speed device={device.type} config={label} K={conv_dim} "
          f"naive={naive_rate:.1f} edits/s fast={fast_rate:.1f} edits/s ratio={ratio:.1f}x "
          f"max_abs_diff={max_diff:.3g} max_abs_effect={scale:.3g}")


def main() -> None:
    args = parse_args()
    try:
        benchmark(args)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
