import pytest
import torch
import torchvision

from stylex import classifier as classifiers
from stylex.classifier import Classifier, build_network, load, load_imagenet_backbone
from stylex.errors import UserError


def make_classifier(arch="mobilenet_v2", resolution=32, channels=3, classes=("a", "b", "c")):
    torch.manual_seed(0)
    net = build_network(arch, len(classes), resolution, channels, width=0.5)
    return Classifier(net, list(classes), resolution, channels, arch, 0.5, metrics={"test": {"accuracy": 0.5}},
                      config={"data": {"dataset": "shapes"}}).eval()


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet18"])
@pytest.mark.parametrize("resolution, channels", [(16, 3), (32, 1), (64, 3)])
def test_networks_map_images_to_logits(arch, resolution, channels):
    model = make_classifier(arch, resolution, channels)
    logits = model(torch.rand(2, channels, resolution, resolution) * 2 - 1)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_small_inputs_keep_a_4x4_feature_map():
    net = build_network("mobilenet_v2", 2, 32, 3)
    assert net.features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (4, 4)


def test_checkpoint_round_trip_gives_same_logits(tmp_path):
    model = make_classifier()
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    model.save(tmp_path / "classifier.pt")
    loaded = load(tmp_path / "classifier.pt")
    assert loaded.classes == ["a", "b", "c"] and loaded.resolution == 32 and loaded.channels == 3
    assert loaded.metrics == {"test": {"accuracy": 0.5}} and loaded.config == {"data": {"dataset": "shapes"}}
    assert not loaded.training
    torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_torchscript_export_loads_with_metadata(tmp_path):
    model = make_classifier(arch="resnet18")
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    model.export_torchscript(tmp_path / "classifier.ts")
    loaded = load(tmp_path / "classifier.ts")
    assert isinstance(loaded.net, torch.jit.ScriptModule)
    assert loaded.classes == ["a", "b", "c"] and loaded.resolution == 32
    torch.testing.assert_close(loaded(images), model(images))


def test_foreign_torchscript_needs_class_names(tmp_path):
    net = torchvision.models.mobilenet_v2(num_classes=2).eval()
    torch.jit.script(net).save(str(tmp_path / "foreign.pt"))
    with pytest.raises(UserError, match="pass its class names"):
        load(tmp_path / "foreign.pt")
    loaded = load(tmp_path / "foreign.pt", classes=["cat", "dog"])
    assert loaded(torch.zeros(1, 3, 64, 64)).shape == (1, 2)


def test_wrong_image_size_is_a_clear_error():
    model = make_classifier(resolution=32)
    with pytest.raises(UserError, match=r"expects images of shape \[B, 3, 32, 32\].*got \[2, 3, 64, 64\]"):
        model(torch.zeros(2, 3, 64, 64))


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="neither a suite classifier checkpoint nor a TorchScript"):
        load(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="format tag"):
        load(tmp_path / "other.pt")


def test_pretrained_needs_the_weight_file_in_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = build_network("mobilenet_v2", 2, 32, 1)
    with pytest.raises(UserError, match=r"mobilenet_v2-b0353104\.pth in .*hub/checkpoints"):
        load_imagenet_backbone(net, "mobilenet_v2", channels=1)


def test_pretrained_backbone_loads_from_the_torch_cache(tmp_path, monkeypatch):
    # An ImageNet-shaped state dict (random init, offline) stands where torchvision's file would be.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    imagenet = torchvision.models.mobilenet_v2().state_dict()
    path = classifiers.pretrained_weights_path("mobilenet_v2")
    path.parent.mkdir(parents=True)
    torch.save(imagenet, path)
    net = build_network("mobilenet_v2", 2, 32, channels=1)
    left_out = load_imagenet_backbone(net, "mobilenet_v2", channels=1)
    assert set(left_out) == {"classifier.1.weight", "classifier.1.bias"}
    state = net.state_dict()
    torch.testing.assert_close(state["features.5.conv.1.0.weight"], imagenet["features.5.conv.1.0.weight"])
    torch.testing.assert_close(state["features.0.0.weight"], imagenet["features.0.0.weight"].sum(1, keepdim=True))
