"""Train the classifier to be explained and measure it on the held-out split."""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from stylex.artifacts import config_diff
from stylex.classifier import Classifier, build_network, load, load_imagenet_backbone
from stylex.config import ClassifierConfig, Config
from stylex.data import ImageDataset, build_dataset, iterate_batches
from stylex.errors import UserError
from stylex.progress import progress_bar
from stylex.run import RunDir
from stylex.runtime import resolve_device

log = logging.getLogger("stylex.classifier")


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; CPU stays in fp32."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def evaluate(classifier: Classifier, dataset: ImageDataset, device: torch.device,
             batch_size: int = 256) -> dict:
    """Accuracy and confusion matrix (rows = true class, columns = predicted) on `dataset`."""
    if dataset.num_classes != classifier.num_classes:
        raise UserError(f"the classifier has {classifier.num_classes} classes ({', '.join(classifier.classes)}) "
                        f"but the data has {dataset.num_classes} ({', '.join(dataset.classes)}); "
                        "select matching classes with data.classes")
    classifier.eval()
    confusion = torch.zeros(dataset.num_classes, classifier.num_classes, dtype=torch.long)
    for images, labels in iterate_batches(dataset, batch_size, shuffle=False):
        with autocast_for(device):
            predicted = classifier(images.to(device)).argmax(dim=1).cpu()
        confusion += torch.bincount(labels * classifier.num_classes + predicted,
                                    minlength=confusion.numel()).view_as(confusion)
    return {"accuracy": confusion.diagonal().sum().item() / max(1, len(dataset)), "confusion": confusion.tolist(),
            "num_images": len(dataset)}


def format_confusion(confusion: list[list[int]], classes: list[str]) -> str:
    width = max(6, *(len(c) for c in classes)) + 1
    lines = [" " * width + "".join(f"{c:>{width}}" for c in classes) + "   <- predicted"]
    for name, row in zip(classes, confusion, strict=True):
        lines.append(f"{name:>{width}}" + "".join(f"{n:>{width}}" for n in row))
    return "\n".join(lines)


def oracle_settings(config: Config) -> ClassifierConfig:
    """The classifier settings of the independent oracle: the oracle section's architecture, width and seed."""
    oracle = config.oracle
    if oracle.seed == config.classifier.seed and oracle.arch == config.classifier.arch:
        raise UserError("the oracle must differ from the explained classifier: set oracle.arch or oracle.seed "
                        f"to something else than classifier.arch={config.classifier.arch} and "
                        f"classifier.seed={config.classifier.seed}")
    return dataclasses.replace(config.classifier, arch=oracle.arch, width=oracle.width, seed=oracle.seed,
                               pretrained=False)


def _provenance(config: Config, settings: ClassifierConfig) -> dict:
    """The parts of the config a trained classifier depends on."""
    return {"data": dataclasses.asdict(config.data), "classifier": dataclasses.asdict(settings)}


def _reusable(path: Path, config: Config, settings: ClassifierConfig) -> Classifier | None:
    if not path.is_file():
        return None
    existing = load(path)
    differing = config_diff(_provenance(config, settings), existing.config)
    if not differing:
        return existing
    raise UserError(f"{path} was trained with a different config (differs in {', '.join(differing)}); "
                    "pass --retrain to replace it, or --name to use another run directory")


def train_classifier(config: Config, run_dir: Path, retrain: bool = False, oracle: bool = False) -> Classifier:
    """Train (or reuse the matching) `run_dir/classifier.pt`, or with `oracle` the independent `oracle.pt`;
    prints the held-out accuracy and confusion."""
    path = RunDir(run_dir).classifier_file(oracle)
    settings = oracle_settings(config) if oracle else config.classifier
    device = resolve_device(config.device)
    test_set = build_dataset(config.data, "test")
    if not retrain and (existing := _reusable(path, config, settings)) is not None:
        print(f"reusing {path} (same data and classifier config; --retrain trains again)")
        report(existing, existing.metrics)
        return existing

    train_set = build_dataset(config.data, "train")
    torch.manual_seed(settings.seed)
    net = build_network(settings.arch, train_set.num_classes, train_set.resolution, train_set.channels,
                        settings.width)
    if settings.pretrained:
        left_out = load_imagenet_backbone(net, settings.arch, train_set.channels)
        log.info("ImageNet weights loaded; left at random init: %s", ", ".join(left_out))
    classifier = Classifier(net, train_set.classes, train_set.resolution, train_set.channels, settings.arch,
                            settings.width, config=_provenance(config, settings)).to(device)

    steps_per_epoch = -(-len(train_set) // settings.batch_size)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr,
                                                   total_steps=settings.epochs * steps_per_epoch)
    for epoch in range(settings.epochs):
        classifier.train()
        bar = progress_bar(iterate_batches(train_set, settings.batch_size, shuffle=True, seed=settings.seed + epoch),
                   total=steps_per_epoch, desc=f"classifier epoch {epoch + 1}/{settings.epochs}", unit="batch")
        seen = correct = 0
        for images, labels in bar:
            images, labels = images.to(device), labels.to(device)
            if settings.hflip:
                flip = torch.rand(images.shape[0], device=device) < 0.5
                images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            with autocast_for(device):
                logits = classifier(images)
                loss = F.cross_entropy(logits.float(), labels)
            if not torch.isfinite(loss):
                raise UserError(f"classifier loss became {loss.item()} at epoch {epoch + 1}; "
                                "lower classifier.lr and train again")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += labels.numel()
            correct += (logits.argmax(1) == labels).sum().item()
            bar.set_postfix(loss=f"{loss.item():.4f}", train_acc=f"{correct / seen:.3f}")

    recalibrate_batchnorm(classifier, train_set, device, settings.batch_size)
    classifier.metrics = {"test": evaluate(classifier, test_set, device),
                          "train_accuracy_last_epoch": correct / max(1, seen)}
    classifier.save(path)
    print(f"saved {path}")
    report(classifier, classifier.metrics)
    return classifier.eval()


@torch.no_grad()
def recalibrate_batchnorm(classifier: Classifier, dataset: ImageDataset, device: torch.device, batch_size: int,
                          max_images: int = 8192) -> None:
    """Re-estimate BatchNorm running statistics with the final weights ("precise BN").

    The running averages kept during training mix statistics of earlier weights; on short runs they can
    be far enough off to make the eval-mode network predict one class everywhere."""
    norms = [m for m in classifier.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    classifier.train()
    seen = 0
    for images, _ in iterate_batches(dataset, batch_size, shuffle=True, seed=1234):
        with autocast_for(device):
            classifier(images.to(device))
        seen += images.shape[0]
        if seen >= max_images:
            break
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    classifier.eval()


def report(classifier: Classifier, metrics: dict) -> None:
    test = metrics["test"]
    print(f"test accuracy: {test['accuracy']:.4f} on {test['num_images']} held-out images")
    print(format_confusion(test["confusion"], classifier.classes))
