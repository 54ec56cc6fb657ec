import json

import pytest

from stylex.config import Config, available_presets, load_config, parse_overrides, save_config
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
