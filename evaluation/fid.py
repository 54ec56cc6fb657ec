"""FID under perturbation: Frechet distances between real images and reconstructions / counterfactuals.

The distance is pytorch-fid's (`calculate_frechet_distance` on the mean and covariance of 2048-d
InceptionV3 pool3 features); for sets with fewer images than dimensions it is computed exactly from a
low-rank factor instead of a [D, D] sqrtm (see `frechet_distance`). Images everywhere are float tensors in
[-1, 1], [B, C, H, W], C = 1 or 3.

Feature extractors (`build_extractor`):
- `inception`: pytorch-fid's FID Inception network, the same architecture and preprocessing as
  `pytorch_fid.inception.InceptionV3([3], resize_input=True, normalize_input=True)`. Its weights
  (`pt_inception-2015-12-05-6726825d.pth`) are read from the torch hub cache only and never downloaded: a
  missing file is a UserError that says where to put it. The result is called "FID".
- `classifier`: the penultimate features of the suite's classifier (the input of its last Linear layer), for
  offline runs. The result is a "classifier-feature Frechet distance" and never called FID: it is not
  comparable with any published FID.
`inception_extractor(weights="random")` is a deterministic random-init Inception for tests only.

Reference statistics (the real images) are computed once per extractor and data and kept by `reference_statistics`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid.fid_score import calculate_frechet_distance
from pytorch_fid.inception import (
    FID_WEIGHTS_URL,
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE_1,
    FIDInceptionE_2,
)
from scipy.linalg import LinAlgWarning
from torch import Tensor, nn

from stylex.artifacts import DamagedArtifact, cached
from stylex.artifacts import fingerprint as artifact_fingerprint
from stylex.classifier import Classifier
from stylex.errors import UserError
from stylex.progress import progress_bar
from stylex.runtime import atomic_write_bytes

log = logging.getLogger(__name__)

FEATURE_CHOICES = ("inception", "classifier")
INCEPTION_WEIGHTS = ("cache", "random")
INCEPTION_WEIGHTS_FILE = Path(FID_WEIGHTS_URL).name  # pt_inception-2015-12-05-6726825d.pth
INCEPTION_DIM = 2048
INCEPTION_SIZE = 299
FID_LABEL = "FID"
RANDOM_FID_LABEL = "FID (random-init Inception, test only)"
CLASSIFIER_LABEL = "classifier-feature Frechet distance"


def inception_weights_path() -> Path:
    """Where the FID Inception weights must be: the torch hub cache (`$TORCH_HOME/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def _check_images(images: Tensor, channels: tuple[int, ...] | None) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or (channels and images.shape[1] not in channels):
        want = "C = " + " or ".join(map(str, channels)) if channels else "any C"
        shape = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise UserError(f"Frechet distances need image tensors [B, C, H, W] in [-1, 1] with {want}, got {shape}")


@dataclasses.dataclass
class FeatureExtractor:
    """A frozen network mapping images in [-1, 1] to feature vectors, with what a report and a cache need.

    `label` is the name its distances must be reported under ("FID" only for the real Inception weights);
    `fingerprint` identifies the network and its weights, so cached reference statistics are never reused
    across extractors. `network` maps a float32 batch on `device` to features [B, dim].
    """

    name: str
    label: str
    fingerprint: str
    network: nn.Module
    device: torch.device
    dim: int

    @torch.no_grad()
    def features(self, images: Tensor, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Features [N, dim] as float64 (the precision the covariance and its square root are computed in).

        Runs in eval mode and no_grad, batch by batch on the extractor's device; the network's train/eval
        flags (a classifier shared with other code) are restored afterwards."""
        _check_images(images, None)
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        modes = [(module, module.training) for module in self.network.modules()]
        self.network.eval()
        try:
            chunks = []
            starts = range(0, images.shape[0], batch_size)
            for start in progress_bar(starts, desc=f"{self.name} features", unit="batch", disable=not progress):
                batch = images[start:start + batch_size].to(self.device, torch.float32)
                chunks.append(self.network(batch).double().cpu().numpy())
        finally:
            for module, training in modes:
                module.training = training
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float64)
        return np.concatenate(chunks)


def _fid_inception_architecture() -> torchvision.models.Inception3:
    """pytorch-fid's `fid_inception_v3()` without its weight download: torchvision's Inception3 with the
    1008-class head of the TensorFlow graph and the FID-patched Mixed blocks (TF-style average pooling and
    max pooling in the last block), so that the cached weight file loads with strict key and shape checks."""
    inception = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    inception.Mixed_5b = FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = FIDInceptionE_1(1280)
    inception.Mixed_7c = FIDInceptionE_2(2048)
    return inception


def _randomize(inception: nn.Module) -> None:
    """He-normal convolutions, so random features keep a usable scale through ~20 layers (PyTorch's default
    init shrinks the signal about 3x per conv, leaving pool3 features, and the distances, near zero)."""
    for module in inception.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")


class InceptionPool3(nn.Module):
    """pytorch-fid's `InceptionV3([3], resize_input=True, normalize_input=True)` for images in [-1, 1].

    The same blocks (up to the final average pool) and preprocessing: images are clamped to [-1, 1] (what
    saving them as 8-bit files, pytorch-fid's input, would do), gray ones repeated to RGB, mapped to [0, 1],
    resized bilinearly to 299x299 and mapped back to [-1, 1] exactly as InceptionV3 does. Returns [B, 2048].
    """

    def __init__(self, inception: torchvision.models.Inception3):
        super().__init__()
        self.blocks = nn.ModuleList([
            nn.Sequential(inception.Conv2d_1a_3x3, inception.Conv2d_2a_3x3, inception.Conv2d_2b_3x3,
                          nn.MaxPool2d(kernel_size=3, stride=2)),
            nn.Sequential(inception.Conv2d_3b_1x1, inception.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)),
            nn.Sequential(inception.Mixed_5b, inception.Mixed_5c, inception.Mixed_5d, inception.Mixed_6a,
                          inception.Mixed_6b, inception.Mixed_6c, inception.Mixed_6d, inception.Mixed_6e),
            nn.Sequential(inception.Mixed_7a, inception.Mixed_7b, inception.Mixed_7c,
                          nn.AdaptiveAvgPool2d(output_size=(1, 1))),
        ])
        self.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images, (1, 3))
        x = images.clamp(-1.0, 1.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x + 1.0) / 2.0
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        for block in self.blocks:
            x = block(x)
        return x.flatten(1)


def inception_extractor(device: str | torch.device = "cpu", weights: str = "cache") -> FeatureExtractor:
    """pytorch-fid's Inception pool3 features; the weights come from the torch hub cache only.

    weights="cache": `inception_weights_path()` must hold pytorch-fid's file, else a UserError says where to
    put it and names the offline alternative. weights="random": the same architecture, deterministically
    random (seed 0, without touching the caller's RNG state), labelled as test-only."""
    if weights not in INCEPTION_WEIGHTS:
        raise UserError(f"unknown Inception weights {weights!r}; choose one of {', '.join(INCEPTION_WEIGHTS)}")
    if weights == "cache":
        path = inception_weights_path()
        if not path.is_file():
            raise UserError(
                f"FID needs pytorch-fid's Inception weight file {path.name} in {path.parent} (download it from "
                f"{FID_WEIGHTS_URL} on a machine with internet and copy it there; it is never downloaded at run "
                "time), or choose --features classifier, which reports a classifier-feature Frechet distance "
                "(the classifier's penultimate features; not FID)"
            )
        inception = _fid_inception_architecture()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            inception.load_state_dict(state)
        except Exception as err:  # torch.load and load_state_dict raise many types for a file that is not it
            raise UserError(f"{path} is not pytorch-fid's Inception weight file ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}); replace it with {FID_WEIGHTS_URL}"
                            ) from None
        label, fingerprint = FID_LABEL, f"inception-{path.stem}"
    else:
        log.warning("Frechet distances use a randomly initialised Inception (test only): they are not FID and "
                    "not comparable with any published number")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            inception = _fid_inception_architecture()
            _randomize(inception)
        label, fingerprint = RANDOM_FID_LABEL, "inception-random-seed0"
    device = torch.device(device)
    network = InceptionPool3(inception).to(device).eval()
    return FeatureExtractor("inception", label, fingerprint, network, device, INCEPTION_DIM)


class PenultimateFeatures(nn.Module):
    """The input of a classifier's last Linear layer, captured by a forward hook for the duration of a call.

    Going through `Classifier.forward` keeps its input check (channels and size must match the classifier);
    the hook is removed after every call, so the classifier is left as it was found."""

    def __init__(self, classifier: Classifier, head: nn.Linear):
        super().__init__()
        self.classifier = classifier
        self.head = head

    def forward(self, images: Tensor) -> Tensor:
        captured: list[Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        try:
            self.classifier(images)
        finally:
            handle.remove()
        if not captured:
            raise UserError("the classifier's last Linear layer is not used by its forward pass, so it has no "
                            "penultimate features; use --features inception")
        return captured[-1].flatten(1)


def classifier_extractor(classifier: Classifier) -> FeatureExtractor:
    """Penultimate features of the suite's classifier (MobileNetV2 or ResNet-18), on the classifier's device.

    Distances in this space are labelled "classifier-feature Frechet distance" and must never be called FID.
    TorchScript classifiers have no hookable nn.Linear and are refused."""
    linears = [module for module in classifier.net.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise UserError("classifier features need a suite-built classifier (MobileNetV2 or ResNet-18 checkpoint) "
                        "with a final Linear layer; this one has none (TorchScript?); use --features inception")
    head = linears[-1]
    parameter = next(classifier.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    fingerprint = f"classifier-{artifact_fingerprint(classifier.net)}"
    return FeatureExtractor("classifier", CLASSIFIER_LABEL, fingerprint, PenultimateFeatures(classifier, head),
                            device, head.in_features)


def build_extractor(features: str, classifier: Classifier | None, device: str | torch.device) -> FeatureExtractor:
    """The extractor the user chose (`--features`): "inception" (FID, weights from the torch cache) or
    "classifier" (a classifier-feature Frechet distance, offline)."""
    if features == "inception":
        return inception_extractor(device)
    if features == "classifier":
        if classifier is None:
            raise UserError("--features classifier needs the classifier being explained")
        return classifier_extractor(classifier)
    raise UserError(f"unknown feature extractor {features!r}; choose one of {', '.join(FEATURE_CHOICES)}")


@dataclasses.dataclass
class FrechetStats:
    """Mean [D] and covariance [D, D] (float64) of a set's features, as pytorch-fid computes them.

    `factor` [D, N] (centered features / sqrt(N - 1), so sigma = factor @ factor.T) is kept for sets with
    fewer images than dimensions: their covariance is singular, and the factor gives `frechet_distance` an
    exact formula that avoids scipy's sqrtm of a [D, D] matrix (slow, and inaccurate on singular input)."""

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int
    factor: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_features(cls, features: np.ndarray) -> FrechetStats:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] < 2:
            raise UserError(f"Frechet statistics need features of at least 2 images ([N >= 2, D]), got "
                            f"{list(features.shape)}")
        bad = int((~np.isfinite(features)).any(axis=1).sum())
        if bad:
            raise UserError(f"{bad} of {features.shape[0]} images have non-finite features (NaN or inf images?)")
        count, dim = features.shape
        mu = features.mean(axis=0)
        sigma = np.atleast_2d(np.cov(features, rowvar=False))
        factor = (features - mu).T / np.sqrt(count - 1) if count < dim else None
        return cls(mu, sigma, count, factor)


def _trace_sqrt_product(a: FrechetStats, b: FrechetStats) -> float | None:
    """tr sqrtm(sigma_a @ sigma_b) from a low-rank factor, or None when neither set has one.

    With sigma_a = F F^T, the nonzero eigenvalues of sigma_a sigma_b are those of the small PSD matrix
    F^T sigma_b F, and with sigma_b = G G^T their square roots are the singular values of F^T G: the same
    trace pytorch-fid takes from sqrtm, from an [N, N] problem instead of a [D, D] one."""
    if a.factor is not None and b.factor is not None:
        return float(np.linalg.svd(a.factor.T @ b.factor, compute_uv=False).sum())
    low, other = (a, b) if a.factor is not None else (b, a)
    if low.factor is None:
        return None
    small = low.factor.T @ other.sigma @ low.factor
    eigenvalues = np.linalg.eigvalsh((small + small.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


_WARNED_SMALL: set[tuple[int, int, int]] = set()


def frechet_distance(a: FrechetStats, b: FrechetStats) -> float:
    """The Frechet distance ||mu_a - mu_b||^2 + tr(sigma_a + sigma_b - 2 sqrtm(sigma_a sigma_b)), a float >= 0.

    pytorch-fid's `calculate_frechet_distance` when both sets have at least as many images as dimensions;
    when one has fewer (a low-rank `factor`), the same quantity through `_trace_sqrt_product` (matches
    pytorch-fid to ~1e-8 relative, tested; a 2048-d sqrtm costs tens of seconds of CPU). Round-off makes a
    set's distance to itself come out slightly negative; that is clipped to 0. With fewer images than
    dimensions the estimate is biased upward, which is logged."""
    for stats in (a, b):
        if stats.sigma.shape != (stats.dim, stats.dim) or (stats.factor is not None
                                                           and stats.factor.shape[0] != stats.dim):
            raise UserError(f"inconsistent Frechet statistics: mu {list(stats.mu.shape)}, sigma "
                            f"{list(stats.sigma.shape)}")
    if a.dim != b.dim:
        raise UserError(f"cannot compare Frechet statistics of {a.dim}-d and {b.dim}-d features (statistics "
                        "from different feature extractors?)")
    if min(a.num_images, b.num_images) <= a.dim and (a.num_images, b.num_images, a.dim) not in _WARNED_SMALL:
        _WARNED_SMALL.add((a.num_images, b.num_images, a.dim))  # once per size: a benchmark computes dozens
        log.warning("Frechet distance from %d and %d images in %d dimensions: the covariances are singular and "
                    "the distance is biased; use more images than feature dimensions for reportable numbers",
                    a.num_images, b.num_images, a.dim)
    trace_sqrt = _trace_sqrt_product(a, b)
    if trace_sqrt is not None:
        diff = a.mu - b.mu
        value = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * trace_sqrt
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=LinAlgWarning)  # the singular case, logged above
            warnings.filterwarnings("ignore", message=".*disp.*", category=DeprecationWarning)  # pytorch-fid's call
            try:
                value = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
            except ValueError as err:  # pytorch-fid's "Imaginary component" for a numerically unstable sqrtm
                raise UserError(f"the Frechet distance is numerically unstable ({err}); use more images") from None
    return max(float(value), 0.0)


class FrechetStore:
    """`artifacts.Store` for Frechet statistics: one .npz holding mu, sigma, N, the low-rank factor when there is
    one, and the fingerprint of what they were computed from."""

    def write(self, path: Path, stats: FrechetStats, key: dict, digest: str) -> None:
        arrays = {"mu": stats.mu, "sigma": stats.sigma, "num_images": np.int64(stats.num_images),
                  "key": np.str_(digest), "parts": np.str_(json.dumps(key, sort_keys=True, default=str))}
        if stats.factor is not None:
            arrays["factor"] = stats.factor
        buffer = io.BytesIO()  # numpy writes a file object as is, without appending another ".npz"
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    def read(self, path: Path) -> tuple[str | None, FrechetStats]:
        try:
            with np.load(path, allow_pickle=False) as data:
                mu, sigma, num_images = data["mu"], data["sigma"], int(data["num_images"])
                factor = data["factor"].astype(np.float64) if "factor" in data.files else None
                digest = str(data["key"]) if "key" in data.files else None
        except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise DamagedArtifact(path, f"{type(err).__name__}: {err}") from None
        dim = mu.shape[0] if mu.ndim == 1 else -1
        if sigma.shape != (dim, dim) or (factor is not None and factor.shape != (dim, num_images)):
            raise DamagedArtifact(path, f"mu {list(mu.shape)}, sigma {list(sigma.shape)} and the factor do not fit "
                                        "together")
        return digest, FrechetStats(mu.astype(np.float64), sigma.astype(np.float64), num_images, factor)


def reference_statistics(folder: Path, key: dict, compute: Callable[[], FrechetStats]) -> FrechetStats:
    """Reference statistics cached in `folder` as `<fingerprint of key>.npz`: several references (extractors,
    splits) live side by side; `key` must hold everything that changes them."""
    return cached(Path(folder) / f"{artifact_fingerprint(key)}.npz", key, compute, store=FrechetStore(),
                  what="reference statistics")


def distance_to_reference(extractor: FeatureExtractor, reference: FrechetStats, images: Tensor,
                          batch_size: int = 64) -> float:
    """The Frechet distance (report it under `extractor.label`) between `images` and the reference set."""
    return frechet_distance(FrechetStats.from_features(extractor.features(images, batch_size)), reference)
