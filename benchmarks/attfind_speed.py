"""AttFind effect-tensor speed: the published code's naive loop versus `compute_effects`, same model and device.

    python benchmarks/attfind_speed.py --config demo [--images 4] [--naive-coordinates 96] [--compare-bf16]
    python benchmarks/attfind_speed.py --config fashion-sneaker-boot-gpu --device cuda [--compare-bf16]
    python benchmarks/attfind_speed.py --run runs/demo [--variant stylex|stylex-nocst]
    python benchmarks/attfind_speed.py --run models/demo --run models/fashion-sneaker-boot --screen 32,64,128,256,512

Naive: `reference_effects` (one image, one coordinate, one direction, the whole generator and classifier per
edit, batch 1, fp32) on `--naive-images` images and `--naive-coordinates` conv coordinates spread evenly over all
layers. Fast: `compute_effects` on `--images` images and every conv coordinate. An edit is one (image,
coordinate, direction); both rates are edits/s, and the ratio is fast / naive. The script also prints the largest
difference between the two effect tensors on the edits both computed.

`--screen M1,M2,...` measures first-order screening (`attfind.screen`) instead, on each `--run`: on the AttFind
images the run's config names (attfind.num_images of its split, `--attfind-images` to use fewer) and style
statistics over them, as `stylex attfind` computes them, it times the naive loop (on `--naive-coordinates`), the
exact effects and each screened search, runs AttFind's selection on each, and prints per M: the coordinates kept,
wall time (screening pass included), edits/s-equivalent (the exact tensor's N x 2 x K edits / time) and its ratio
to the naive loop and to the exact path, and whether the top `attfind.num_attributes` list (coordinate and
direction, in order) is identical to the exact one, with the overlap count. An M >= K keeps every coordinate,
which is the exact computation bit for bit (tests/test_attfind_screen.py): its row times the screening pass for
real and adds the exact run's time instead of computing the same tensor again.

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
from stylex.attfind import Effects, compute_effects, find_attributes, reference_effects
from stylex.checkpoint import build_networks, network_configs
from stylex.classifier import Classifier, build_network
from stylex.config import Config, load_config
from stylex.data import ImageDataset, build_dataset
from stylex.editing import autocast, resolve_precision
from stylex.errors import UserError
from stylex.model import StylexModel, load_stylex
from stylex.pipeline import attfind_indices
from stylex.run import RunDir
from stylex.runtime import resolve_device
from stylex.screening import screen as screen_coordinates
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
    parser.add_argument("--run", action="append", default=[],
                        help="run folder with classifier.pt and checkpoints/<variant>.pt (repeat for several)")
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
    parser.add_argument("--screen", type=screen_list, default=None, metavar="M1,M2,...",
                        help="measure first-order screening with these M instead (speed and top-10 recall)")
    parser.add_argument("--attfind-images", type=int, default=0,
                        help="with --screen: AttFind images (0: the run config's attfind.num_images)")
    args = parser.parse_args()
    if args.attfind_images < 0:
        parser.error("--attfind-images must be >= 0")
    if args.images < 1 or args.naive_images < 1 or args.naive_coordinates < 1:
        parser.error("--images, --naive-images and --naive-coordinates must be >= 1")
    if args.naive_images > args.images:
        parser.error(f"--naive-images ({args.naive_images}) must be <= --images ({args.images}): the naive effects are "
                     "compared with the fast ones on the same images")
    if args.max_batch < 0:
        parser.error("--max-batch must be >= 0")
    return args


def screen_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--screen takes integers M >= 1 separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--screen takes integers M >= 1 separated by commas, got {text!r}")
    return values


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


def load_model(args: argparse.Namespace, run: str | None, config: Config, data: ImageDataset, device: torch.device
               ) -> tuple[StylexModel, str]:
    """The model and a line saying where it came from."""
    if run:
        classifier_file, checkpoint = run_files(run, args.variant)
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


def run_config(args: argparse.Namespace, run: str | None) -> tuple[Config, str]:
    """The config (`--config`, else RUN/config.json, else the demo preset) and its label."""
    overrides = list(args.overrides)
    if args.root:
        overrides.append(f"data.root={args.root}")
    preset = args.config
    if preset is None:
        stored = RunDir(run).config if run else None
        preset = str(stored) if stored is not None and stored.is_file() else "demo"
    config = load_config(preset, overrides)
    return config, config.name if preset.endswith(".json") else preset


def speed(args: argparse.Namespace, run: str | None) -> None:
    config, label = run_config(args, run)
    device = resolve_device(args.device or config.device)
    shift_size = config.attfind.shift_size if args.shift_size is None else args.shift_size
    data = build_dataset(config.data, "test")
    torch.manual_seed(args.seed)
    model, source = load_model(args, run, config, data, device)
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


# ---- --screen: first-order screening, its speed and its recall of the exact top attributes -----------------------

def warm_up(model: StylexModel, styles: list[torch.Tensor]) -> None:
    """One small forward and backward before anything is timed (lazy initialisation of kernels and autograd)."""
    rows = [s[:2].to(model.device).requires_grad_(True) for s in styles]
    with torch.enable_grad():
        image, _ = model.generator.synthesize(rows)
        model.classifier(image).sum().backward()


def top_list(effects: Effects, model: StylexModel, config: Config) -> list[tuple[int, int]]:
    """AttFind's ranked list (the merged one for two classes), as (coordinate, direction), top num_attributes."""
    cfg = config.attfind
    found = find_attributes(effects, model.classifier.classes, model.generator.layout, model.variant,
                            cfg.num_attributes, cfg.threshold, cfg.discard_inconsistent)
    return [a.edit for a in found.ranked()[:cfg.num_attributes]]


def common_prefix(a: list, b: list) -> int:
    """How many leading ranks two lists share: where a screened list first departs from the exact one."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def recall(args: argparse.Namespace, run: str | None) -> list[dict]:
    """One row per M (and the exact search first) for one model; prints its setup and a line per row."""
    config, label = run_config(args, run)
    device = resolve_device(args.device or config.device)
    cfg = config.attfind
    shift_size = cfg.shift_size if args.shift_size is None else args.shift_size
    data = build_dataset(config.data, cfg.split)
    torch.manual_seed(args.seed)
    model, source = load_model(args, run, config, data, device)
    layout = model.generator.layout
    conv_dim = layout.conv_dim
    indices = attfind_indices(config, data)
    preset_images = len(indices)
    if args.attfind_images:
        indices = indices[:args.attfind_images]
    styles = encode_styles(model, data, indices, device=device, progress=False)
    stats = StyleStats.from_styles(layout.conv_flatten(styles), {"split": cfg.split, "num_images": len(indices),
                                                                 "purpose": "attfind_speed --screen"})
    num_images = len(indices)
    edits = num_images * 2 * conv_dim  # the exact tensor: what every row's edits/s-equivalent is counted in
    name = run or label
    print(f"\n== {name}: {source}")
    print(f"device      {describe_device(device)}")
    print(f"setup       K = {conv_dim} conv coordinates, {model.classifier.num_classes} classes, {num_images} AttFind "
          f"images of the {cfg.split} split (seed {cfg.seed}), stats over them, shift_size {shift_size}, top "
          f"{cfg.num_attributes}, threshold {cfg.threshold}")
    if num_images < preset_images:
        print(f"note        REDUCED: {num_images} AttFind images instead of the config's {preset_images} "
              "(--attfind-images); recall may differ with all of them")

    warm_up(model, styles)
    picked = torch.linspace(0, conv_dim - 1, min(args.naive_coordinates, conv_dim)).round().long().unique().tolist()
    naive_images = list(range(args.naive_images))
    _, naive_seconds = timed(device, lambda: reference_effects(model, styles, stats, shift_size, images=naive_images,
                                                               coordinates=picked))
    naive_rate = len(naive_images) * 2 * len(picked) / naive_seconds
    print(f"naive       {naive_rate:.1f} edits/s ({len(naive_images)} image(s) x 2 x {len(picked)} coordinates, "
          "batch 1, fp32)")

    def effects_with(screen: int) -> Effects:
        return compute_effects(model, styles, stats, shift_size, out_dir=None, chunk_images=cfg.chunk_images,
                               max_batch=args.max_batch, precision=args.precision, progress=False, screen=screen)

    exact, exact_seconds = timed(device, lambda: effects_with(0))
    exact_top = top_list(exact, model, config)
    rows = [{"model": name, "K": conv_dim, "N": num_images, "M": "exact", "kept": conv_dim, "seconds": exact_seconds,
             "rate": edits / exact_seconds, "naive": naive_rate, "speedup": 1.0, "identical": True,
             "overlap": len(exact_top), "prefix": len(exact_top), "top": len(exact_top), "note": ""}]
    for keep in args.screen:
        if keep >= conv_dim:  # every coordinate kept: the exact computation, timed as screening pass + exact run
            kept, screen_seconds = timed(device, lambda keep=keep: screen_coordinates(model, styles, stats,
                                                                                      shift_size, keep))
            if len(kept) != conv_dim:
                raise UserError(f"M = {keep} >= K kept only {len(kept)} coordinates")
            seconds, top, note = screen_seconds + exact_seconds, exact_top, "M >= K: exact effects + screening pass"
        else:
            screened, seconds = timed(device, lambda keep=keep: effects_with(keep))
            kept, top, note = screened.coordinates, top_list(screened, model, config), ""
        rows.append({"model": name, "K": conv_dim, "N": num_images, "M": keep, "kept": len(kept), "seconds": seconds,
                     "rate": edits / seconds, "naive": naive_rate, "speedup": exact_seconds / seconds,
                     "identical": top == exact_top, "overlap": len(set(top) & set(exact_top)),
                     "prefix": common_prefix(top, exact_top), "top": len(exact_top), "note": note})
    for row in rows:
        print(f"RESULT attfind_screen model={row['model']} M={row['M']} kept={row['kept']} "
              f"seconds={row['seconds']:.2f} rate={row['rate']:.1f} ratio_naive={row['rate'] / naive_rate:.2f}x "
              f"ratio_exact={row['speedup']:.2f}x identical={row['identical']} overlap={row['overlap']}/{row['top']} "
              f"same_first={row['prefix']}")
    return rows


def print_table(rows: list[dict]) -> None:
    header = (f"{'model':<30} {'K':>5} {'N':>4} {'M':>6} {'kept':>5} {'time s':>8} {'edits/s eq':>11} "
              f"{'x naive':>8} {'x exact':>8} {'identical':>9} {'overlap':>8} {'same first':>10}  note")
    print("\n" + header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['model']:<30} {row['K']:>5} {row['N']:>4} {row['M']!s:>6} {row['kept']:>5} "
              f"{row['seconds']:>8.1f} {row['rate']:>11.1f} {row['rate'] / row['naive']:>7.2f}x "
              f"{row['speedup']:>7.2f}x {'yes' if row['identical'] else 'no':>9} "
              f"{row['overlap']:>4}/{row['top']:<3} {row['prefix']:>10}  {row['note']}")
    print("edits/s eq = the exact tensor's N x 2 x K edits / wall time (screening pass included); x naive: against "
          "the published loop (batch 1, full generator per edit) measured in the same run; identical: the same "
          "top list (coordinates, directions, order) as the exact search; overlap: shared (coordinate, direction) "
          "pairs; same first: leading ranks equal to the exact list's")


def main() -> None:
    args = parse_args()
    try:
        if args.screen:
            print_table([row for run in args.run or [None] for row in recall(args, run)])
        else:
            for run in args.run or [None]:
                speed(args, run)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
