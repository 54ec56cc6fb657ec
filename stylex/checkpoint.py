"""StylEx checkpoints: network configs + state_dicts + layout summary + code version (+ training state).

No pickled code: a checkpoint is a dict of tensors and plain values (`torch.load(weights_only=True)`), and
networks are rebuilt from their config. `load_stylex` gives the explanation side what it needs (the EMA
generator and encoder, the classifier, CST or not) without importing the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from stylex.classifier import Classifier
from stylex.config import Config
from stylex.errors import UserError
from stylex.networks import (
    Discriminator,
    DiscriminatorConfig,
    Encoder,
    EncoderConfig,
    Generator,
    GeneratorConfig,
)
from stylex.resources import find_folder
from stylex.runtime import atomic_torch_save, code_version

CHECKPOINT_FORMAT = "stylex-checkpoint"


def variant_name(cst: bool) -> str:
    """'stylex' for classifier-specific training, 'stylex-nocst' for the paper's w/o-CST baseline."""
    return "stylex" if cst else "stylex-nocst"


def checkpoint_path(run_dir: Path, cst: bool) -> Path:
    return run_dir / "checkpoints" / f"{variant_name(cst)}.pt"


def network_configs(config: Config, resolution: int, channels: int, num_classes: int, cst: bool) -> dict:
    model = config.model
    c_dim = num_classes if cst else 0
    common = {"img_resolution": resolution, "img_channels": channels, "channel_base": model.channel_base,
              "channel_max": model.channel_max}
    return {
        "G": GeneratorConfig(**common, z_dim=model.z_dim, w_dim=model.w_dim, c_dim=c_dim,
                             mapping_layers=model.mapping_layers,
                             mapping_lr_multiplier=model.mapping_lr_multiplier).to_dict(),
        "E": EncoderConfig(**common, w_dim=model.w_dim).to_dict(),
        "D": DiscriminatorConfig(**common, c_dim=c_dim).to_dict(),
    }


def build_networks(configs: dict) -> tuple[Generator, Encoder, Discriminator]:
    return Generator(configs["G"]), Encoder(configs["E"]), Discriminator(configs["D"])


def save_checkpoint(path: Path, payload: dict) -> None:
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "format_version": 1, "code_version": code_version(),
                       **payload}, path)


def read_checkpoint(path: Path, map_location="cpu") -> dict:
    if not path.is_file():
        raise UserError(f"no StylEx checkpoint at {path}; train one with `stylex train --config ...` "
                        "(add --no-cst for the w/o-CST baseline)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file raises one of several torch/pickle errors
        raise UserError(f"{path} is not a readable StylEx checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a StylEx checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    return payload


VARIANTS = ("stylex", "stylex-nocst")


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
        return self.classifier(images).float().softmax(dim=1) if self.cst else None

    @property
    def variant(self) -> str:
        return variant_name(self.cst)

    @torch.no_grad()
    def styles(self, images: torch.Tensor) -> list[torch.Tensor]:
        """StyleSpace coordinates of images: one [B, dim] tensor per style layer, `G.layout` order, fp32."""
        return self.generator.w_to_styles(self.encoder(images).float(), self.condition(images))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.generator(self.encoder(images), self.condition(images), noise_mode="const")


def load_stylex(path: Path, classifier: Classifier, device: str | torch.device = "cpu") -> StylexModel:
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
    from stylex.classifier import load as load_classifier

    if variant not in VARIANTS:
        raise UserError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    found = find_folder(folder)  # the working directory first, then the models shipped in the package
    if found is None:
        raise UserError(f"no folder {folder}; pass a run directory (runs/NAME) or a models folder (models/demo)")
    folder = found
    classifier = load_classifier(folder / "classifier.pt", map_location=device)
    model = load_stylex(checkpoint_path(folder, variant == "stylex"), classifier, device)
    if (folder / "oracle.pt").is_file():
        model.oracle = load_classifier(folder / "oracle.pt", map_location=device).requires_grad_(False)
    return model
