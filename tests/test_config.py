import json
import re

import pytest

from stylex.config import (
    Config,
    DataConfig,
    LossWeights,
    TrainConfig,
    available_presets,
    load_config,
    parse_overrides,
    save_config,
)
from stylex.errors import UserError


def test_presets_exist_and_resolve():
    assert {"demo", "fashion-sneaker-boot"} <= set(available_presets())
    demo = load_config("demo")
    assert demo.name == "demo" and demo.data.dataset == "shapes" and demo.data.resolution == 32
    fashion = load_config("fashion-sneaker-boot")
    assert fashion.data.dataset == "fashion-mnist" and fashion.data.classes == ["sneaker", "ankle-boot"]


def test_overrides_are_typed():
    config = load_config("demo", ["classifier.epochs=7", "classifier.lr=1", "data.classes=a, b",
                                  "data.root=/tmp/x", "classifier.hflip=true", "data.channels=null"])
    assert config.classifier.epochs == 7
    assert config.classifier.lr == 1.0 and isinstance(config.classifier.lr, float)
    assert config.data.classes == ["a", "b"]
    assert config.data.root == "/tmp/x"
    assert config.classifier.hflip is True
    assert config.data.channels is None


@pytest.mark.parametrize("pair, message", [
    ("classifier.epoch=3", "unknown config key(s) classifier.epoch"),
    ("classifier.epochs=many", "classifier.epochs must be int"),
    ("data.resolution=3.5", "data.resolution must be int"),
    ("nonsense", "--set expects key=value"),
])
def test_bad_overrides_are_named(pair, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("demo", [pair])


def test_unknown_preset_lists_available():
    with pytest.raises(UserError, match=r"available: .*demo"):
        load_config("no-such-preset")


def test_saved_config_round_trips(tmp_path):
    config = load_config("demo", ["data.seed=5"])
    path = save_config(config, tmp_path / "run")
    assert Config.from_dict(json.loads(path.read_text())) == config


def test_parse_overrides_nests():
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}


# ---- every value is checked where it is read ----------------------------------------------------------------

@pytest.mark.parametrize("pair, key, allowed", [
    ("classifier.batch_size=0", "classifier.batch_size", "an integer >= 1"),
    ("classifier.epochs=-1", "classifier.epochs", "an integer >= 1"),
    ("classifier.lr=NaN", "classifier.lr", "a finite number > 0"),
    ("classifier.width=0", "classifier.width", "a finite number > 0"),
    ("classifier.weight_decay=-0.1", "classifier.weight_decay", "a finite number >= 0"),
    ("classifier.arch=vgg", "classifier.arch", "one of mobilenet_v2, resnet18, plain_cnn"),
    ("oracle.width=Infinity", "oracle.width", "a finite number > 0"),
    ("train.checkpoint_every=0", "train.checkpoint_every", "an integer >= 1"),
    ("train.accumulate=0", "train.accumulate", "an integer >= 1"),
    ("train.lr=-1", "train.lr", "a finite number > 0"),
    ("train.steps=-5", "train.steps", "an integer >= 1"),
    ("train.steps=0", "train.steps", "an integer >= 1"),
    ("train.beta2=1", "train.beta2", "a finite number in [0, 1)"),
    ("train.ema_kimg=-Infinity", "train.ema_kimg", "a finite number >= 0"),
    ("train.lpips=vgg", "train.lpips", "one of pretrained, random, off"),
    ("train.seed=-1", "train.seed", "an integer between 0 and 4294967295"),
    ("data.resolution=33", "data.resolution", "a power of two between 16 and 1024"),
    ("data.resolution=2048", "data.resolution", "a power of two between 16 and 1024"),
    ("data.test_fraction=1", "data.test_fraction", "a finite number in (0, 1)"),
    ("data.num_train=0", "data.num_train", "an integer >= 1"),
    ("data.channels=2", "data.channels", "1, 3 or null"),
    ("data.dataset=imagenet", "data.dataset", "one of shapes, shapes-multi, fashion-mnist, folder"),
    ("model.mapping_layers=0", "model.mapping_layers", "an integer >= 1"),
    ("model.channel_base=8", "model.channel_base", ">= data.resolution"),
    ("loss.kl=-1", "loss.kl", "a finite number >= 0"),
    ("loss.r1_gamma=NaN", "loss.r1_gamma", "a finite number >= 0"),
    ("attfind.num_images=0", "attfind.num_images", "an integer >= 1"),
    ("attfind.threshold=NaN", "attfind.threshold", "a finite number > 0"),
    ("evaluation.probe_steps=0", "evaluation.probe_steps", "an integer >= 1"),
    ("evaluation.fid_shift_sizes=0.5,nan", "evaluation.fid_shift_sizes", "a finite number > 0"),
    ("device=gpu", "device", "auto, cpu, cuda, cuda:N or mps"),
    ("name=../elsewhere", "name", "a run folder name"),
])
def test_bad_values_name_key_range_and_value(pair, key, allowed):
    with pytest.raises(UserError) as caught:
        load_config("tiny", [pair])
    message = str(caught.value)
    value = pair.partition("=")[2]
    assert message.startswith(key + " ") and allowed in message and "\n" not in message
    assert value.split(",")[-1].lower().lstrip("-").replace("infinity", "inf") in message.lower(), message


def test_cross_field_rules():
    with pytest.raises(UserError, match=r"train\.batch_size 8 must be divisible by train\.accumulate 3"):
        load_config("tiny", ["train.accumulate=3"])
    with pytest.raises(UserError, match=r"classifier\.pretrained=true needs classifier\.arch"):
        load_config("tiny", ["classifier.arch=plain_cnn", "classifier.pretrained=true"])
    with pytest.raises(UserError, match=r"evaluation\.table_k \(11\) must be <= evaluation\.max_k \(10\)"):
        load_config("tiny", ["evaluation.table_k=11"])


def _numeric_fields():
    """(section.key, annotation) of every int and float field of every section."""
    import dataclasses
    import typing

    for section in dataclasses.fields(Config):
        kind = typing.get_type_hints(Config)[section.name]
        if not dataclasses.is_dataclass(kind):
            continue
        for item, hint in typing.get_type_hints(kind).items():
            options = typing.get_args(hint) or (hint,)
            if int in options or float in options:
                yield f"{section.name}.{item}", float in options


@pytest.mark.parametrize("key, is_float", list(_numeric_fields()))
def test_every_numeric_field_refuses_out_of_range_and_non_finite(key, is_float):
    bad = ["-1", "NaN", "Infinity", "-Infinity"] if is_float else ["-1", "1.5", "true"]
    for value in bad:
        with pytest.raises(UserError, match=rf"^(config key )?{re.escape(key)} "):
            load_config("tiny", [f"{key}={value}"])


def test_dataclasses_built_in_code_are_checked_too():
    with pytest.raises(UserError, match=r"data\.resolution must be int"):
        DataConfig(resolution="32")
    with pytest.raises(UserError, match=r"train\.steps must be an integer >= 1, got 0"):
        TrainConfig(steps=0)
    assert isinstance(LossWeights(kl=1).kl, float)
    # A DataConfig alone may describe any size the loaders make; a run (Config) needs one StylEx can generate.
    assert DataConfig(resolution=48).resolution == 48
    with pytest.raises(UserError, match=r"data\.resolution must be a power of two"):
        Config(data=DataConfig(resolution=48))


def test_name_lists_match_the_modules_that_implement_them():
    from stylex import classifier, losses, networks
    from stylex import config as config_module
    from stylex.data import DATASET_NAMES

    assert config_module.DATASETS == DATASET_NAMES
    assert config_module.ARCHITECTURES == classifier.ARCHITECTURES
    assert set(config_module.PRETRAINED_ARCHITECTURES) == set(classifier.PRETRAINED_FILES)
    assert config_module.LPIPS_MODES == losses.LPIPS_MODES
    assert set(config_module.LPIPS_NETS) == set(losses.LPIPS_BACKBONES)
    with pytest.raises(UserError, match="between 16 and 1024"):
        load_config("tiny", [f"data.resolution={networks.MIN_RESOLUTION // 2}"])
    load_config("tiny", [f"data.resolution={networks.MAX_RESOLUTION}", "model.channel_base=1024"])


def test_presets_are_valid():
    for preset in available_presets():
        load_config(preset)
