"""The classifier to be explained: MobileNetV2 (the paper's family) or ResNet-18, adapted to small images; and a
plain VGG-style CNN, the default architecture of the independent oracle classifier (DESIGN section 5).

`Classifier` wraps any network mapping images in [-1, 1] ([B, C, H, W]) to logits [B, num_classes] with
the metadata the suite needs (class names, image size, channels). `load(path)` reads a suite checkpoint
(`classifier.pt`: state_dict + metadata, no pickled code) or a TorchScript file.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.ops import Conv2dNormActivation

from stylex.errors import UserError
from stylex.runtime import atomic_torch_save, code_version

ARCHITECTURES = ("mobilenet_v2", "resnet18", "plain_cnn")
CHECKPOINT_FORMAT = "stylex-classifier"
TORCHSCRIPT_METADATA = "stylex_classifier.json"
# torchvision's ImageNet weight files, looked up in the torch hub cache only (no download at run time).
PRETRAINED_FILES = {"mobilenet_v2": "mobilenet_v2-b0353104.pth", "resnet18": "resnet18-f37072fd.pth"}


def downsampling_steps(resolution: int) -> int:
    """Stride-2 stages so that the last feature map is about 4x4 (ImageNet MobileNet has 5 at 224 px)."""
    return max(1, min(5, int(math.log2(resolution)) - 2))


def build_mobilenet_v2(num_classes: int, resolution: int, channels: int, width: float = 1.0) -> nn.Module:
    # torchvision's setting (expansion, out channels, repeats, stride); strides are redistributed below.
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
               [6, 320, 1, 1]]
    strided_stages = [1, 2, 3, 5]  # stages that downsample in the ImageNet network, in order
    steps = downsampling_steps(resolution)
    for stage in strided_stages:
        setting[stage][3] = 1
    # Small images keep their early resolution: downsample in the earliest stages, the stem last.
    for stage in strided_stages[:steps]:
        setting[stage][3] = 2
    stem_stride = 2 if steps == 5 else 1
    net = torchvision.models.MobileNetV2(num_classes=num_classes, width_mult=width,
                                         inverted_residual_setting=setting)
    stem_out = net.features[0][0].out_channels
    net.features[0] = Conv2dNormActivation(channels, stem_out, stride=stem_stride,
                                           norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
    return net


def build_resnet18(num_classes: int, resolution: int, channels: int) -> nn.Module:
    net = torchvision.models.resnet18(num_classes=num_classes)
    if resolution <= 64:
        # CIFAR-style stem: a 7x7/2 conv and max-pool would leave a 32-px image 8x8 before the first block.
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def build_plain_cnn(num_classes: int, resolution: int, channels: int, width: float = 1.0) -> nn.Module:
    """conv-BN-ReLU pairs at widths 32, 64, 128 (times `width`), each pair followed by a 2x2 max-pool until the
    map is about 4x4, then global average pooling and a linear head: cheap on a CPU and unlike MobileNetV2."""
    layers: list[nn.Module] = []
    in_channels = channels
    for stage in range(downsampling_steps(resolution)):
        out_channels = max(8, round(32 * 2 ** min(stage, 2) * width))
        for _ in range(2):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                       nn.ReLU(inplace=True)]
            in_channels = out_channels
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))


def build_network(arch: str, num_classes: int, resolution: int, channels: int, width: float = 1.0) -> nn.Module:
    if num_classes < 2:
        raise UserError(f"a classifier needs at least 2 classes, got {num_classes}")
    if arch == "mobilenet_v2":
        return build_mobilenet_v2(num_classes, resolution, channels, width)
    if arch == "resnet18":
        return build_resnet18(num_classes, resolution, channels)
    if arch == "plain_cnn":
        return build_plain_cnn(num_classes, resolution, channels, width)
    raise UserError(f"unknown classifier architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def pretrained_weights_path(arch: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / PRETRAINED_FILES[arch]


def load_imagenet_backbone(net: nn.Module, arch: str, channels: int) -> list[str]:
    """Copy every ImageNet tensor whose shape fits (a gray input conv gets the RGB kernels summed).

    Returns the names of the parameters left at random init (the head, and a resized stem)."""
    path = pretrained_weights_path(arch)
    if not path.is_file():
        raise UserError(
            f"--pretrained needs the ImageNet weight file {path.name} in {path.parent} (torchvision's file; "
            "copy it there from a machine that has it) or drop --pretrained to train from random init"
        )
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = net.state_dict()
    left_out = []
    for name, tensor in target.items():
        weight = source.get(name)
        if weight is not None and weight.ndim == 4 and weight.shape[1] == 3 and channels == 1:
            weight = weight.sum(dim=1, keepdim=True)
        if weight is not None and weight.shape == tensor.shape:
            target[name] = weight
        else:
            left_out.append(name)
    net.load_state_dict(target)
    return left_out


class Classifier(nn.Module):
    """A network plus what the suite must know about it; `forward` checks the input and returns logits."""

    def __init__(self, net: nn.Module, classes: list[str], resolution: int | None, channels: int | None,
                 arch: str = "torchscript", width: float = 1.0, metrics: dict | None = None,
                 config: dict | None = None):
        super().__init__()
        self.net = net
        self.classes = list(classes)
        self.resolution = resolution
        self.channels = channels
        self.arch = arch
        self.width = width
        self.metrics = dict(metrics or {})
        self.config = dict(config or {})

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def check_input(self, images: torch.Tensor) -> None:
        expected = [self.channels, self.resolution, self.resolution]
        if images.ndim != 4 or any(e is not None and e != s for e, s in zip(expected, images.shape[1:], strict=True)):
            want = "x".join("?" if e is None else str(e) for e in expected)
            raise UserError(
                f"the classifier expects images of shape [B, {want.replace('x', ', ')}] in [-1, 1], "
                f"got {list(images.shape)}; resize the data (data.resolution / data.channels) to match it "
                "or train a classifier at this size"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images)
        return self.net(images)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images).float().softmax(dim=1)

    def metadata(self) -> dict:
        return {
            "arch": self.arch, "width": self.width, "classes": self.classes, "resolution": self.resolution,
            "channels": self.channels, "metrics": self.metrics, "config": self.config,
            "code_version": code_version(),
        }

    def save(self, path: Path) -> None:
        if self.arch not in ARCHITECTURES:
            raise UserError(f"only suite-built classifiers can be saved as checkpoints; use "
                            f"export_torchscript for {self.arch!r}")
        state = {name: t.detach().cpu() for name, t in self.net.state_dict().items()}
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "format_version": 1, **self.metadata(),
                           "state_dict": state}, Path(path))

    def export_torchscript(self, path: Path) -> None:
        """A self-contained TorchScript file that `load` reads back with its class names and image size."""
        was_training = self.net.training
        scripted = torch.jit.script(self.net.eval().cpu())
        self.net.train(was_training)
        extra = {TORCHSCRIPT_METADATA: json.dumps(self.metadata())}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(scripted, str(path), _extra_files=extra)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def load(path: str | Path, map_location: str | torch.device = "cpu", classes: list[str] | None = None) -> Classifier:
    """Load a suite `classifier.pt` or a TorchScript classifier, in eval mode.

    A TorchScript file exported by the suite carries its class names and image size; for any other one,
    pass `classes` (the input size is then not checked)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"classifier file {path} does not exist; train one with `stylex train-classifier` "
                        "or pass the path of a TorchScript classifier")
    if _is_torchscript(path):
        extra = {TORCHSCRIPT_METADATA: ""}
        try:
            net = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
        except RuntimeError as err:
            raise UserError(f"{path} is not a loadable TorchScript file: {str(err).splitlines()[0]}") from None
        meta = json.loads(extra[TORCHSCRIPT_METADATA]) if extra[TORCHSCRIPT_METADATA] else {}
        names = classes or meta.get("classes")
        if not names:
            raise UserError(f"{path} is a TorchScript file without suite metadata; pass its class names "
                            "(classes=[...] / --classes a,b)")
        model = Classifier(net, names, meta.get("resolution"), meta.get("channels"),
                           metrics=meta.get("metrics"), config=meta.get("config"))
        return model.eval()
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise UserError(f"{path} is neither a suite classifier checkpoint nor a TorchScript file "
                        f"({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a suite classifier checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    net = build_network(payload["arch"], len(payload["classes"]), payload["resolution"], payload["channels"],
                        payload["width"])
    net.load_state_dict(payload["state_dict"])
    model = Classifier(net, payload["classes"], payload["resolution"], payload["channels"], payload["arch"],
                       payload["width"], payload.get("metrics"), payload.get("config"))
    return model.to(map_location).eval()
