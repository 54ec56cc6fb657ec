"""StylEx checkpoint files: network configs + state_dicts + layout summary + code version (+ training state).

No pickled code: a checkpoint is a dict of tensors and plain values (`torch.load(weights_only=True)`), and
networks are rebuilt from their config. I/O only: `stylex.model` turns a checkpoint into the trained explainer.
"""

from __future__ import annotations

from pathlib import Path

from stylex.artifacts import DamagedArtifact, load_tagged, save_tagged
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

CHECKPOINT_FORMAT = "stylex-checkpoint"


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
    save_tagged(payload, path, CHECKPOINT_FORMAT)


def read_checkpoint(path: Path, map_location="cpu") -> dict:
    if not path.is_file():
        raise UserError(f"no StylEx checkpoint at {path}; train one with `stylex train --config ...` "
                        "(add --no-cst for the w/o-CST baseline)")
    try:
        return load_tagged(path, CHECKPOINT_FORMAT, map_location)
    except DamagedArtifact as err:
        raise UserError(f"{path} is not a readable StylEx checkpoint ({err.reason})") from None
