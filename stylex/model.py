"""The trained explainer (`stylex.load`): EMA generator and encoder, the classifier they explain and its one
conditioning rule.

Model code: it reads checkpoints through `stylex.checkpoint` and never imports the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from stylex.checkpoint import build_networks, read_checkpoint
from stylex.classifier import Classifier
from stylex.classifier import load as load_classifier
from stylex.errors import UserError
from stylex.networks import Encoder, Generator
from stylex.resources import find_folder
from stylex.run import VARIANTS, RunDir, variant_name


def condition_from_logits(logits: torch.Tensor, cst: bool) -> torch.Tensor | None:
    """What G and D are conditioned on: C(x) as softmax probabilities with classifier-specific training, nothing
    for the w/o-CST baseline. Training and explaining both condition through here."""
    return logits.float().softmax(dim=1) if cst else None


@dataclass
class StylexModel:
    """The trained explainer: EMA generator and encoder plus the classifier they were trained against (and, when
    loaded from a folder that has one, the independent oracle classifier that judges reconstructions)."""

    generator: Generator
    encoder: Encoder
    classifier: Classifier
    cst: bool
    step: int
    metrics: dict
    oracle: Classifier | None = None

    @torch.no_grad()
    def condition(self, images: torch.Tensor) -> torch.Tensor | None:
        """C(x) as softmax probabilities for a CST model, None for the w/o-CST baseline."""
        return condition_from_logits(self.classifier(images), self.cst) if self.cst else None

    @property
    def variant(self) -> str:
        return variant_name(self.cst)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @torch.no_grad()
    def styles(self, images: torch.Tensor) -> list[torch.Tensor]:
        """StyleSpace coordinates of images: one [B, dim] tensor per style layer, `G.layout` order, fp32."""
        return self.generator.w_to_styles(self.encoder(images).float(), self.condition(images))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.generator(self.encoder(images), self.condition(images), noise_mode="const")


def load_stylex(path: Path, classifier: Classifier, device: str | torch.device = "cpu") -> StylexModel:
    """The EMA networks of one checkpoint, frozen, with the classifier they explain."""
    payload = read_checkpoint(Path(path))
    generator, encoder, _ = build_networks(payload["networks"])
    generator.load_state_dict(payload["state"]["G_ema"])
    encoder.load_state_dict(payload["state"]["E_ema"])
    return StylexModel(generator.to(device).eval().requires_grad_(False),
                       encoder.to(device).eval().requires_grad_(False),
                       classifier.to(device).eval().requires_grad_(False),
                       payload["cst"], payload["step"], payload.get("metrics", {}))


def load(folder: str | Path, variant: str = "stylex", device: str | torch.device = "cpu") -> StylexModel:
    """A trained StylEx (`variant="stylex"`) or w/o-CST baseline (`"stylex-nocst"`) from a run directory or a
    shipped models folder (`classifier.pt`, `checkpoints/<variant>.pt`, optionally `oracle.pt`): the public entry
    point for notebooks and checks, `model.reconstruct(images)`, `model.styles(images)`, `model.classifier`."""
    if variant not in VARIANTS:
        raise UserError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    found = find_folder(folder)  # the working directory first, then the models shipped in the package
    if found is None:
        raise UserError(f"no folder {folder}; pass a run directory (runs/NAME) or a models folder (models/demo)")
    run = RunDir(found)
    classifier = load_classifier(run.classifier, map_location=device)
    model = load_stylex(run.checkpoint(variant), classifier, device)
    if run.oracle.is_file():
        model.oracle = load_classifier(run.oracle, map_location=device).requires_grad_(False)
    return model
