"""Run configuration: nested dataclasses, JSON presets in `configs/` (or ./configs), `--set key=value` overrides.

A preset names only what differs from the defaults below. The resolved configuration (every field)
is written to `runs/<name>/config.json` and into every artifact a run produces.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from stylex.errors import UserError
from stylex.resources import PRESET_DIR

PRECISIONS = ("float32", "bfloat16")
# Names the config accepts before any heavy module is imported (torch, torchvision, lpips); tests/test_config.py
# checks that they equal the lists of the modules that implement them.
DATASETS = ("shapes", "shapes-multi", "fashion-mnist", "folder")
ARCHITECTURES = ("mobilenet_v2", "resnet18", "plain_cnn")
PRETRAINED_ARCHITECTURES = ("mobilenet_v2", "resnet18")
LPIPS_MODES = ("pretrained", "random", "off")
LPIPS_NETS = ("alex", "vgg", "squeeze")
SEED_MAX = 2**32 - 1  # numpy and torch both take seeds in this range; the trainer derives seed * 100003 + epoch


# ---- value checks: every message names the key, the allowed range and the value ----------------------------

def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(key: str, value, minimum: int, maximum: int | None = None, note: str = "") -> None:
    if _is_int(value) and value >= minimum and (maximum is None or value <= maximum):
        return
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer between {minimum} and {maximum}"
    raise UserError(f"{key} must be {allowed}{note}, got {value!r}")


def check_number(key: str, value, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False, note: str = "") -> None:
    """A finite int or float within [low, high] (or open at either end); NaN and infinities are refused."""
    ok = _is_number(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if low is not None and high is not None:
        allowed = f"a finite number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"a finite number {'>' if low_open else '>='} {low}"
    elif high is not None:
        allowed = f"a finite number {'<' if high_open else '<='} {high}"
    else:
        allowed = "a finite number"
    raise UserError(f"{key} must be {allowed}{note}, got {value!r}")


def check_choice(key: str, value, choices: typing.Sequence[str]) -> None:
    if value not in choices:
        raise UserError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def _check_types(section: str, obj) -> None:
    """The annotation check `--set` and presets get (`_coerce`), for dataclasses built in code as well; ints given
    for float fields become floats."""
    hints = typing.get_type_hints(type(obj))
    for item in dataclasses.fields(obj):
        value = getattr(obj, item.name)
        coerced = _coerce(value, hints[item.name], f"{section}.{item.name}")
        if coerced is not value:
            setattr(obj, item.name, coerced)


@dataclass
class DataConfig:
    dataset: str = "shapes"  # shapes | shapes-multi | fashion-mnist | folder
    root: str | None = None  # fashion-mnist IDX folder or the image-folder root
    classes: list[str] | None = None  # class names to keep, in label order; None = all
    resolution: int = 32  # images are resolution x resolution
    channels: int | None = None  # None = the dataset's own (shapes 3, fashion-mnist 1, folder 3)
    num_train: int = 10000  # shapes: images in the train split
    num_test: int = 2000  # shapes: images in the test split
    seed: int = 0  # shapes: generation seed; folder: hold-out split seed
    download: bool = False  # fashion-mnist: allow torchvision to download when files are missing
    skip_bad: bool = False  # folder: skip (and log) unreadable files instead of failing
    test_fraction: float = 0.1  # folder without train/ and test/ subfolders: held-out share

    def __post_init__(self):
        # The StylEx sizes (a power of two, 16..1024) are checked by `Config`: a DataConfig alone may describe any
        # size the loaders make (stylex.data checks their own lower bound).
        _check_types("data", self)
        check_choice("data.dataset", self.dataset, DATASETS)
        if self.root is not None and not self.root.strip():
            raise UserError("data.root must be a folder path or null, got ''")
        if self.classes is not None:
            if not self.classes or any(not name.strip() for name in self.classes):
                raise UserError(f"data.classes must be a non-empty list of class names or null, got {self.classes}")
            repeated = sorted({name for name in self.classes if self.classes.count(name) > 1})
            if repeated:
                raise UserError(f"data.classes must name each class once, got {', '.join(repeated)} twice or more")
        check_int("data.resolution", self.resolution, 1)
        if self.channels not in (None, 1, 3):
            raise UserError(f"data.channels must be 1, 3 or null (the dataset's own), got {self.channels!r}")
        check_int("data.num_train", self.num_train, 1)
        check_int("data.num_test", self.num_test, 1)
        check_int("data.seed", self.seed, 0, SEED_MAX)
        check_number("data.test_fraction", self.test_fraction, 0, 1, low_open=True, high_open=True)


@dataclass
class ClassifierConfig:
    arch: str = "mobilenet_v2"  # mobilenet_v2 | resnet18
    width: float = 1.0  # MobileNetV2 width multiplier
    pretrained: bool = False  # ImageNet weights, only from the torch cache
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-3  # AdamW peak learning rate (one-cycle schedule)
    weight_decay: float = 1e-4
    hflip: bool = False  # random horizontal flips while training
    seed: int = 0

    def __post_init__(self):
        _check_types("classifier", self)
        check_choice("classifier.arch", self.arch, ARCHITECTURES)
        check_number("classifier.width", self.width, 0, low_open=True)
        check_int("classifier.epochs", self.epochs, 1)
        check_int("classifier.batch_size", self.batch_size, 1)
        check_number("classifier.lr", self.lr, 0, low_open=True)
        check_number("classifier.weight_decay", self.weight_decay, 0)
        check_int("classifier.seed", self.seed, 0, SEED_MAX)
        if self.pretrained and self.arch not in PRETRAINED_ARCHITECTURES:
            raise UserError(f"classifier.pretrained=true needs classifier.arch {' or '.join(PRETRAINED_ARCHITECTURES)} "
                            f"(the architectures with ImageNet weights), got {self.arch!r}")


@dataclass
class OracleConfig:
    """The independent oracle classifier (`stylex train-classifier --oracle`, `oracle.pt`): trained on the same
    data with another architecture and seed than the explained classifier, never used in training or explaining,
    it judges whether reconstructions and counterfactuals keep or change the class (DESIGN section 5). Epochs,
    batch size, learning rate and flips are the classifier section's."""

    arch: str = "plain_cnn"
    width: float = 1.0
    seed: int = 1

    def __post_init__(self):
        _check_types("oracle", self)
        check_choice("oracle.arch", self.arch, ARCHITECTURES)
        check_number("oracle.width", self.width, 0, low_open=True)
        check_int("oracle.seed", self.seed, 0, SEED_MAX)


@dataclass
class StylexModelConfig:
    """Sizes of the StylEx networks (G, E, D); the image size and channels come from the data."""

    w_dim: int = 512
    z_dim: int = 512
    channel_base: int = 32768  # config-f: channels(res) = min(channel_base // res, channel_max)
    channel_max: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01

    def __post_init__(self):
        _check_types("model", self)
        for name in ("w_dim", "z_dim", "channel_base", "channel_max", "mapping_layers"):
            check_int(f"model.{name}", getattr(self, name), 1)
        check_number("model.mapping_lr_multiplier", self.mapping_lr_multiplier, 0, low_open=True)


@dataclass
class TrainConfig:
    """`stylex train`: StylEx (CST) or, with cst=false, the paper's "StylEx w/o classifier-specific training"."""

    cst: bool = True  # condition G and D on C(x) and add the classifier KL loss
    steps: int = 20000  # optimizer steps (each over batch_size images)
    batch_size: int = 32  # images per step, over all GPUs and accumulation rounds
    accumulate: int = 1  # gradient accumulation rounds per step
    lr: float = 0.002  # Adam learning rate of G and D (StyleGAN2)
    encoder_lr: float = 0.002
    beta1: float = 0.0
    beta2: float = 0.99
    r1_interval: int = 16  # lazy R1 every N steps (Adam's lr and betas of D are corrected for it)
    pl_interval: int = 4  # lazy path length every N steps (G's Adam corrected likewise when it is on)
    # Reconstruction warm-up: the first warmup_steps train E and G on L1 + LPIPS only (G sees the condition,
    # no KL, no discriminator, no noise path), with Adam lr warmup_lr and beta1 warmup_beta1; then the full
    # objective, its adversarial and classifier weights ramped linearly from 0 over adv_ramp_steps and
    # kl_ramp_steps, so the terms that can pull reconstructions away (DESIGN 5) come in gently.
    warmup_steps: int = 0
    warmup_lr: float = 0.005
    warmup_beta1: float = 0.9
    adv_ramp_steps: int = 0
    kl_ramp_steps: int = 0
    pl_batch_shrink: int = 2
    lpips: str = "pretrained"  # pretrained | random | off (random and off are for offline smoke runs)
    lpips_net: str = "alex"
    ema_kimg: float = 10.0  # half-life of the EMA generator/encoder, in thousands of images
    ema_rampup: float = 0.05  # EMA half-life ramps up over this share of the images seen (0: no ramp-up)
    checkpoint_every: int = 1000  # steps; a checkpoint is also written at exit and on Ctrl-C
    log_every: int = 50  # steps between TensorBoard scalars
    image_every: int = 1000  # steps between TensorBoard image grids (inputs | reconstructions | samples)
    eval_images: int = 512  # held-out images for the final reconstruction / agreement metrics
    eval_every: int = 0  # steps between faithfulness measurements logged to TensorBoard (0: only at the end)
    amp: bool = True  # bf16 autocast and TF32 on CUDA (CPU always runs fp32)
    seed: int = 0

    def __post_init__(self):
        _check_types("train", self)
        for name in ("steps", "batch_size", "accumulate", "r1_interval", "pl_interval", "pl_batch_shrink",
                     "checkpoint_every", "log_every", "image_every", "eval_images"):
            check_int(f"train.{name}", getattr(self, name), 1)
        for name in ("warmup_steps", "adv_ramp_steps", "kl_ramp_steps", "eval_every"):
            check_int(f"train.{name}", getattr(self, name), 0)
        check_int("train.seed", self.seed, 0, SEED_MAX)
        for name in ("lr", "encoder_lr", "warmup_lr"):
            check_number(f"train.{name}", getattr(self, name), 0, low_open=True)
        for name in ("beta1", "beta2", "warmup_beta1"):  # Adam's betas
            check_number(f"train.{name}", getattr(self, name), 0, 1, high_open=True)
        check_number("train.ema_kimg", self.ema_kimg, 0)
        check_number("train.ema_rampup", self.ema_rampup, 0)
        check_choice("train.lpips", self.lpips, LPIPS_MODES)
        check_choice("train.lpips_net", self.lpips_net, LPIPS_NETS)
        # Each accumulation round takes an equal share of the batch (the trainer checks processes x accumulate).
        if self.batch_size % self.accumulate:
            raise UserError(f"train.batch_size {self.batch_size} must be divisible by train.accumulate "
                            f"{self.accumulate}")


@dataclass
class LossWeights:
    """Multipliers of the loss terms. Sources of the defaults:

    - adv 1.0: the GAN terms unscaled (StyleGAN2, and the ReScience StylEx code).
    - r1_gamma None = resolution-aware, StyleGAN2-ADA's heuristic 0.0002 * res^2 / batch (0.0128 at 32 px and
      batch 16; 10 is config-f's value for 1024 px). The caller applies gamma / 2 * interval.
    - pl_weight None = resolution-aware: 2 (StyleGAN2) from 128 px up, 0 below, as StyleGAN2-ADA's low-resolution
      (cifar) setting, where a single broadcast w makes the regulariser fight reconstruction.
    - l1 1.0, lpips 0.1, w_rec 0.1, kl 1.0: the ReScience StylEx code (rec weight 1, LPIPS 0.1, 0.1 x L1 on
      the encoder's w, kl_scaling 1); the paper gives no values.
    """

    adv: float = 1.0
    r1_gamma: float | None = None
    pl_weight: float | None = None
    l1: float = 1.0
    lpips: float = 0.1
    w_rec: float = 0.1
    kl: float = 1.0

    def __post_init__(self):
        _check_types("loss", self)
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None and item.name in ("r1_gamma", "pl_weight"):
                continue
            check_number(f"loss.{item.name}", value, 0, note=" (a loss weight)")


def resolved_r1_gamma(weights: LossWeights, resolution: int, batch_size: int) -> float:
    if weights.r1_gamma is not None:
        return weights.r1_gamma
    return 0.0002 * resolution ** 2 / batch_size


def resolved_pl_weight(weights: LossWeights, resolution: int) -> float:
    if weights.pl_weight is not None:
        return weights.pl_weight
    return 2.0 if resolution >= 128 else 0.0


@dataclass
class AttFindConfig:
    """`stylex attfind` / `stylex explain`: style statistics, the effect tensor, AttFind and rendering.

    Defaults follow the official notebook: effects on logits of the reconstruction, shift toward the
    min/max over the AttFind images with shift_size 1, threshold t = 1 logit, M = 10 attributes."""

    split: str = "test"  # images for statistics, effects and AttFind (held out from StylEx training)
    num_images: int = 250  # images in the AttFind set (the official notebook: 250)
    seed: int = 0  # which images: the first num_images of a permutation of the split with this seed
    shift_size: float = 1.0  # s_k += shift_size * (target_k - s_k), target = min or max over the AttFind set
    threshold: float = 1.0  # an image is explained once its summed clipped logit effects reach this
    num_attributes: int = 10  # M: attributes per class
    discard_inconsistent: bool = False  # skip coordinates whose both directions raise the target logit
    chunk_images: int = 8  # images per saved effect chunk (what a killed run can lose)
    max_batch: int = 0  # edits per generator forward; 0 = sized from free memory
    precision: str = "float32"  # float32 | bfloat16 (opt-in; benchmarks/attfind_speed.py --compare-bf16)
    # M > 0: exact effects only for the M coordinates per class and direction with the largest first-order
    # effect (gradient x displacement); 0 = every coordinate. Exact stays the default: on both shipped models
    # (K = 224) M = 64 gave the exact top list at ~2x, M <= 32 departed from it by rank 3-5, and no M was both
    # identical and 10x faster (benchmarks/attfind_speed.py --screen)
    screen: int = 0
    panel_images: int = 4  # images per attribute panel, where the attribute moves the logit most
    display_size: int = 128  # pixels per image in rendered figures and GIFs
    render_attributes: int = 10  # attributes rendered as panels and GIFs

    def __post_init__(self):
        _check_types("attfind", self)
        check_choice("attfind.split", self.split, ("train", "test"))
        check_choice("attfind.precision", self.precision, PRECISIONS)
        for name in ("num_images", "num_attributes", "chunk_images", "panel_images", "display_size"):
            check_int(f"attfind.{name}", getattr(self, name), 1)
        for name in ("max_batch", "render_attributes"):
            check_int(f"attfind.{name}", getattr(self, name), 0)
        check_int("attfind.screen", self.screen, 0, note=" (0 = exact effects of every coordinate; M > K is exact too)")
        check_int("attfind.seed", self.seed, 0, SEED_MAX)
        for name in ("shift_size", "threshold"):
            check_number(f"attfind.{name}", getattr(self, name), 0, low_open=True)


STRATEGIES = ("class_level", "independent", "subset")
FID_FEATURES = ("inception", "classifier")


@dataclass
class EvaluationConfig:
    """`stylex benchmark`: the comparison of Wu et al., StylEx w/o CST and StylEx (DESIGN section 7).

    Every metric is measured on the AttFind images (their effect tensors are already computed), the first
    num_images of them; the paper used 1000."""

    num_images: int = 0  # images evaluated, the first of the AttFind set; 0 = all of it
    max_k: int = 10  # sufficiency curves over k = 1..max_k attributes
    table_k: int = 10  # the k of the Table 3 cell (class-level top-k, as the paper)
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    subset_candidates: int = 32  # Subset searches the image's best single attributes, this many
    wu_alpha: float = 3.0  # Wu et al. edits: population stds moved per unit of shift
    fid_features: str = "inception"  # inception (FID, needs the pytorch-fid weights cached) | classifier
    fid_shift_sizes: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5])
    fid_top: int = 10  # FID of counterfactuals with the top-i attributes changed, i = 1..fid_top
    recovery_k: int = 10  # shapes only: precision and distinctness of each method's top-k
    probe_steps: int = 3000  # training steps of the shapes factor probes (600 read shape kind 85% right)
    runtime_images: int = 4  # images explained one at a time to time each method and strategy
    start_from: str = ""  # folder of trained models (classifier.pt, checkpoints/) copied into a new run

    def __post_init__(self):
        _check_types("evaluation", self)
        unknown = sorted(set(self.strategies) - set(STRATEGIES))
        if unknown or not self.strategies:
            raise UserError(f"evaluation.strategies must be a non-empty subset of {', '.join(STRATEGIES)}, "
                            f"got {self.strategies}")
        check_choice("evaluation.fid_features", self.fid_features, FID_FEATURES)
        for name in ("max_k", "table_k", "subset_candidates", "fid_top", "recovery_k", "probe_steps",
                     "runtime_images"):
            check_int(f"evaluation.{name}", getattr(self, name), 1)
        check_int("evaluation.num_images", self.num_images, 0, note=" (0 = all AttFind images)")
        if self.table_k > self.max_k:
            raise UserError(f"evaluation.table_k ({self.table_k}) must be <= evaluation.max_k ({self.max_k})")
        check_number("evaluation.wu_alpha", self.wu_alpha, 0, low_open=True)
        if not self.fid_shift_sizes:
            raise UserError("evaluation.fid_shift_sizes needs at least one shift size, got []")
        for value in self.fid_shift_sizes:
            check_number("evaluation.fid_shift_sizes", value, 0, low_open=True, note=" (each of them)")


@dataclass
class Config:
    name: str = "demo"  # run directory name under the runs folder
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    model: StylexModelConfig = field(default_factory=StylexModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    attfind: AttFindConfig = field(default_factory=AttFindConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self):
        for name in ("name", "device"):
            if not isinstance(getattr(self, name), str):
                raise UserError(f"config key {name} must be str, got {getattr(self, name)!r}")
        if not self.name.strip() or self.name in (".", "..") or any(c in self.name for c in "/\\\0"):
            raise UserError(f"name must be a run folder name (not empty, no / or \\, not . or ..), got {self.name!r}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise UserError(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        _check_stylex_resolution(self.data.resolution)
        if self.model.channel_base < self.data.resolution:
            raise UserError(f"model.channel_base must be >= data.resolution ({self.data.resolution}): channels = "
                            f"channel_base // resolution, got {self.model.channel_base}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        return _build(cls, values, prefix="")


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


def _check_stylex_resolution(resolution: int) -> None:
    """The generator's rule (`stylex.networks.check_resolution`), applied when the config is read, so a classifier
    is never trained at a size StylEx cannot explain. Imported here: stylex.networks pulls in torch."""
    from stylex.networks import MAX_RESOLUTION, MIN_RESOLUTION, check_resolution

    try:
        check_resolution(resolution)
    except UserError:
        raise UserError(f"data.resolution must be a power of two between {MIN_RESOLUTION} and {MAX_RESOLUTION} "
                        f"(the sizes the StylEx generator makes), got {resolution!r}") from None


def _build(kind: type, values: dict, prefix: str):
    if not isinstance(values, dict):
        raise UserError(f"config section '{prefix.rstrip('.') or 'root'}' must be a JSON object")
    hints = typing.get_type_hints(kind)
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; "
            f"valid keys here: {', '.join(prefix + n for n in sorted(names))}"
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, prefix + name + ".")
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    return kind(**kwargs)


def _coerce(value, hint, key: str):
    """Check `value` against the field's annotation; accept ints for floats and CSV for lists."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise UserError(f"config key {key} may not be null")
    for option in options:
        if typing.get_origin(option) is list:
            items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
            item_type = typing.get_args(option)[0]
            if isinstance(items, list) and all(isinstance(v, str) for v in items) and item_type is str:
                return items
            if isinstance(items, list) and item_type is float and not any(isinstance(v, bool) for v in items):
                try:
                    return [float(v) for v in items]
                except (TypeError, ValueError):
                    pass
        elif option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif option in (bool, int, str) and type(value) is option:
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise UserError(f"config key {key} must be {expected}, got {value!r}")


def preset_folders() -> list[Path]:
    """Where `--config NAME` looks, in order: ./configs (a user's own presets win), then the package's."""
    return [Path.cwd() / "configs", PRESET_DIR]


def available_presets() -> list[str]:
    return sorted({p.stem for folder in preset_folders() for p in folder.glob("*.json")})


def _preset_path(preset: str) -> Path:
    as_path = Path(preset).expanduser()
    if as_path.suffix == ".json":
        if as_path.is_file():
            return as_path
        raise UserError(f"no config file {as_path}; pass an existing .json file or a preset name "
                        f"({', '.join(available_presets()) or 'none'})")
    for folder in preset_folders():
        candidate = folder / f"{preset}.json"
        if candidate.is_file():
            return candidate
    raise UserError(
        f"no config preset '{preset}'; available: {', '.join(available_presets()) or 'none'} "
        "(or pass a path to a .json file)"
    )


def parse_overrides(pairs: list[str]) -> dict:
    """`["data.seed=3", "classifier.arch=resnet18"]` -> nested dict; values parsed as JSON if they can be."""
    nested: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value (e.g. classifier.epochs=3), got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: '{part}' is a value, not a section")
        node[parts[-1]] = value
    return nested


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(preset: str = "demo", overrides: list[str] | None = None) -> Config:
    """Resolve a preset name (or .json path) plus `key=value` overrides into a `Config`."""
    path = _preset_path(preset)
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"config file {path} is not valid JSON: {err}") from None
    values.setdefault("name", path.stem)
    return Config.from_dict(_merge(values, parse_overrides(overrides or [])))


def save_config(config: Config, run_dir: Path) -> Path:
    # imported here: reading and checking configs (`show-config`, the study commands) needs no torch
    from stylex.artifacts import write_text
    from stylex.run import RunDir

    return write_text(RunDir(run_dir).config, config.to_json() + "\n")
