"""Faithfulness of a trained StylEx generator + encoder (DESIGN sections 5 and 9).

G sees the classifier's output C(x) in every style affine, so it can reproduce the classifier's decision from the
condition alone and ignore E(x) (the "classifier shortcut"): one image per class gives agreement 1.0. Agreement
is therefore never reported on its own; the battery adds metrics the shortcut cannot satisfy:

    reconstruction_l1 / _lpips       mean |x' - x| / LPIPS(x', x) of the reconstructions x' = G(E(x), C(x))
    explained_agreement              share of x' given the class of x by the explained classifier
    oracle_agreement                 the same judged by an independent classifier never used in training
    input_dependence_pixels          mean pairwise distance of the x' / of the x: collapse 0, identity 1
    input_dependence_features        the same on the classifier's penultimate features
    swapped_condition_agreement      (CST) share of decisions kept when G gets another class's probabilities:
                                     1 = the decision comes from E(x), low = it comes from the condition
    factor_*                         (shapes) factor probes read the same shape, size, spot, ... off x' as off x;
                                     factor_shape_iou = IoU of the foreground masks of x and x'
    sample_frechet_classifier        classifier-feature Frechet distance (not FID) of noise samples to the x
"""

from __future__ import annotations

import contextlib
import math

import torch
import torchvision
from torch import Tensor, nn

from evaluation.fid import FrechetStats, classifier_extractor, frechet_distance
from stylex.data.shapes import SIZE_THRESHOLD
from stylex.errors import UserError
from stylex.progress import progress_bar

FOREGROUND_THRESHOLD = 0.35  # max-over-channels |pixel - background| of a shapes foreground pixel
AGREEMENT_BATCH = 256
GATES = {"explained_agreement": 0.95, "oracle_agreement": 0.95, "input_dependence_pixels": 0.8,
         "factor_shape": 0.9, "factor_size": 0.9, "factor_spot": 0.9, "factor_shape_iou": 0.8}


@contextlib.contextmanager
def _eval_mode(*modules):
    """Eval mode inside the block; every submodule's train/eval flag restored afterwards."""
    modes = [(m, m.training) for module in modules if isinstance(module, nn.Module) for m in module.modules()]
    for module in modules:
        if isinstance(module, nn.Module):
            module.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _device(module) -> torch.device:
    parameter = next(module.parameters(), None) if isinstance(module, nn.Module) else None
    return parameter.device if parameter is not None else torch.device("cpu")


def input_dependence(inputs, outputs) -> float:
    """Mean pairwise L2 distance of the outputs over that of the inputs (rows flattened, all pairs i < j)."""
    inputs = torch.as_tensor(inputs).detach().cpu().double().flatten(1)
    outputs = torch.as_tensor(outputs).detach().cpu().double().flatten(1)
    if inputs.shape[0] < 2 or inputs.shape[0] != outputs.shape[0]:
        raise UserError(f"input dependence needs at least 2 paired rows, got {inputs.shape[0]} inputs and "
                        f"{outputs.shape[0]} outputs")
    spread = float(torch.pdist(inputs).mean())
    if not spread > 0:
        raise UserError("input dependence is undefined when all inputs are equal (zero pairwise distance)")
    return float(torch.pdist(outputs).mean()) / spread


@torch.no_grad()
def predictions(classifier, images: Tensor, batch_size: int = AGREEMENT_BATCH) -> Tensor:
    device = _device(classifier)
    with _eval_mode(classifier):
        return torch.cat([classifier(images[i:i + batch_size].to(device, torch.float32)).argmax(dim=1).cpu()
                          for i in range(0, images.shape[0], batch_size)])


def agreement(classifier, images: Tensor, reconstructions: Tensor, batch_size: int = AGREEMENT_BATCH) -> float:
    """Share of rows where the classifier's argmax on the reconstruction equals its argmax on the image."""
    if images.shape[0] == 0 or images.shape[0] != reconstructions.shape[0]:
        raise UserError(f"agreement needs paired, non-empty batches, got {images.shape[0]} images and "
                        f"{reconstructions.shape[0]} reconstructions")
    same = predictions(classifier, images, batch_size) == predictions(classifier, reconstructions, batch_size)
    return float(same.double().mean())


def swapped_condition(probabilities: Tensor) -> Tensor:
    """Another class's probabilities: the class axis rolled by one (2 classes: swapped)."""
    return probabilities.roll(1, dims=1)


def foreground_masks(images: Tensor, threshold: float = FOREGROUND_THRESHOLD) -> Tensor:
    """[B, H, W] bool: pixels whose max-over-channels |difference| from the image's background (the median colour
    of its border pixels) exceeds `threshold`. Made for `shapes`; a spot as dark as the background is a hole."""
    if images.ndim != 4:
        raise UserError(f"foreground masks need images [B, C, H, W], got {list(images.shape)}")
    images = images.detach().float()
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values  # [B, C]
    return (images - background[:, :, None, None]).abs().amax(dim=1) > threshold


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU [B] of paired boolean masks [B, H, W]; 1 where both are empty."""
    intersection = (a & b).flatten(1).sum(dim=1).double()
    union = (a | b).flatten(1).sum(dim=1).double()
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


def factor_fidelity(probes, images: Tensor, reconstructions: Tensor) -> dict[str, float]:
    """How well the factors read off the reconstructions (`FactorProbes.predict`) match those read off the
    images: shares of equal decisions (shape class, spot, large size), mean absolute errors, the circular hue
    error in turns, and the mean IoU of the foreground masks."""
    if images.shape != reconstructions.shape or images.shape[0] == 0:
        raise UserError(f"factor fidelity needs paired, non-empty image batches, got {list(images.shape)} and "
                        f"{list(reconstructions.shape)}")
    real, rec = probes.predict(images), probes.predict(reconstructions)

    def share(a: Tensor, b: Tensor) -> float:
        return float((a == b).double().mean())

    hue = (real["hue"] - rec["hue"]).abs().remainder(1.0)
    result = {"shape": share(real["shape"].argmax(dim=1), rec["shape"].argmax(dim=1)),
              "spot": share(real["spot"] >= 0.5, rec["spot"] >= 0.5),
              "size": share(real["size"] >= SIZE_THRESHOLD, rec["size"] >= SIZE_THRESHOLD)}
    for name in ("size", "pos_x", "pos_y", "background"):
        result[f"{name}_mae"] = float((real[name] - rec[name]).abs().double().mean())
    result["hue_error"] = float(torch.minimum(hue, 1.0 - hue).double().mean())
    result["shape_iou"] = float(mask_iou(foreground_masks(images), foreground_masks(reconstructions)).mean())
    return result


@torch.no_grad()
def measure(model, images: Tensor, *, oracle=None, probes=None, lpips=None, feature_classifier=None,
            samples: int = 0, batch_size: int = 64, progress: bool = False) -> dict:
    """The faithfulness battery (module docstring) of a `StylexModel` on real `images` [N >= 2, C, H, W] in [-1, 1].

    `lpips`: a callable (a, b) -> [B] distances; `feature_classifier`: whose penultimate features the feature
    metrics use (default: the explained classifier); `samples` > 0: also the sample Frechet distance, from that
    many noise samples (z from seed 0; CST condition = the real images' probabilities, cycled)."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] < 2 or not images.is_floating_point():
        shape = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise UserError(f"faithfulness needs float images [N >= 2, C, H, W] in [-1, 1], got {shape}")
    if batch_size < 1 or samples < 0 or samples == 1:
        raise UserError(f"batch_size must be >= 1 and samples 0 or >= 2, got {batch_size} and {samples}")
    generator, device = model.generator, _device(model.generator)
    recs, swapped, conditions, distances = [], [], [], []
    with _eval_mode(generator, model.encoder, model.classifier):
        starts = range(0, images.shape[0], batch_size)
        for start in progress_bar(starts, desc="faithfulness", unit="batch", disable=not progress):
            x = images[start:start + batch_size].to(device, torch.float32)
            w, cond = model.encoder(x), model.condition(x)
            rec = generator(w, cond, noise_mode="const").float()
            recs.append(rec.cpu())
            if lpips is not None:
                distances.append(lpips(rec, x).detach().double().flatten().cpu())
            if cond is not None:
                conditions.append(cond.cpu())
                swapped.append(generator(w, swapped_condition(cond), noise_mode="const").float().cpu())
        generated = []
        if samples:
            z = torch.randn(samples, generator.cfg.z_dim, generator=torch.Generator().manual_seed(0))
            cond_all = torch.cat(conditions)[torch.arange(samples) % images.shape[0]] if conditions else None
            for start in range(0, samples, batch_size):
                cond = None if cond_all is None else cond_all[start:start + batch_size].to(device)
                w = generator.mapping(z[start:start + batch_size].to(device), update_w_avg=False)
                generated.append(generator(w, cond, noise_mode="const").float().cpu())
    recs, images = torch.cat(recs), images.detach().float().cpu()
    metrics = {"num_images": int(images.shape[0]), "reconstruction_l1": float((recs - images).abs().double().mean())}
    if lpips is not None:
        metrics["reconstruction_lpips"] = float(torch.cat(distances).mean())
    metrics["explained_agreement"] = agreement(model.classifier, images, recs)
    if oracle is not None:
        metrics["oracle_agreement"] = agreement(oracle, images, recs)
    metrics["input_dependence_pixels"] = input_dependence(images, recs)
    extractor = classifier_extractor(feature_classifier if feature_classifier is not None else model.classifier)
    real_features = extractor.features(images, batch_size)
    metrics["input_dependence_features"] = input_dependence(real_features, extractor.features(recs, batch_size))
    if swapped:
        metrics["swapped_condition_agreement"] = agreement(model.classifier, images, torch.cat(swapped))
    if probes is not None:
        metrics.update({f"factor_{k}": v for k, v in factor_fidelity(probes, images, recs).items()})
    if samples:
        sample_stats = FrechetStats.from_features(extractor.features(torch.cat(generated), batch_size))
        metrics["sample_frechet_classifier"] = frechet_distance(sample_stats, FrechetStats.from_features(real_features))
    return metrics


def gate_failures(metrics: dict) -> list[str]:
    """The DESIGN section 9 gates (`GATES`) the metrics miss, e.g. "oracle_agreement 0.912 < 0.95"; metrics that
    are absent or None are skipped, a NaN fails."""
    failures = []
    for name, bound in GATES.items():
        value = metrics.get(name)
        if value is not None and not (math.isfinite(value) and value >= bound):
            failures.append(f"{name} {value:.3f} < {bound:g}")
    return failures


def reconstruction_grid(images: Tensor, rows: dict[str, Tensor], columns: int = 8) -> Tensor:
    """[3, H', W'] image in [0, 1]: the first `columns` real images, then the same items of each row set below."""
    count = min(columns, images.shape[0])
    parts = [images[:count]]
    for name, row in rows.items():
        if row.shape[0] < count or row.shape[1:] != images.shape[1:]:
            raise UserError(f"grid row {name!r} has shape {list(row.shape)}, the images {list(images.shape)}")
        parts.append(row[:count])
    grid = torch.cat([part.detach().float().cpu() for part in parts]).clamp(-1.0, 1.0).add(1.0).div(2.0)
    return torchvision.utils.make_grid(grid, nrow=count, padding=2, pad_value=1.0)
