"""StylEx training losses as pure functions, plus the frozen LPIPS distance.

Total loss (DESIGN section 5): L_adv (non-saturating logistic) + L_reg (lazy R1 on D, lazy path length on G)
+ L_rec (L1(x', x) + LPIPS(x', x) + L1(E(x'), E(x))) + L_cls (KL[C(x') || C(x)]), with x' = G(E(x), C(x)).
The functions here return unweighted means; the trainer multiplies them by `stylex.config.LossWeights`
(and, for the lazy regularisers, by the interval). Every reduction runs in fp32, whatever dtype the inputs come in.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path

import lpips
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from stylex.errors import UserError

logger = logging.getLogger(__name__)

LPIPS_MODES = ("pretrained", "random", "off")
# lpips trunk name -> torchvision weights whose file the hub cache must hold (name taken from the URL, so it
# follows torchvision: alexnet-owt-7be5be79.pth, vgg16-397923af.pth, squeezenet1_1-b8a52dc0.pth).
LPIPS_BACKBONES = {
    "alex": torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
    "vgg": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    "squeeze": torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
}
# AlexNet's 11x11/4 stem and two 3x3/2 pools leave a 1x1 map at 32 px and fail below about 31 px.
LPIPS_MIN_SIZE = 32


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {list(a.shape)} vs {list(b.shape)}")


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss of G: mean softplus(-D(G(z)))."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_adversarial_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic loss of D: mean softplus(D(fake)) + mean softplus(-D(real))."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def r1_penalty(real_images: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """R1: batch mean of the squared gradient norm of D's logits w.r.t. the real images (summed over pixels).

    `real_images` must have `requires_grad=True` before D runs on them. The graph is kept (create_graph=True)
    so the penalty trains D. Convention (StyleGAN2 lazy regularisation): the caller adds
    `r1_gamma / 2 * interval * r1_penalty(...)` every `interval` D steps."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def path_length_penalty(fake_images: torch.Tensor, w: torch.Tensor, mean_path_length: float | torch.Tensor,
                        decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regulariser; returns (penalty, new_mean_path_length, path_lengths).

    y = torch.randn_like(fake_images) / sqrt(H * W); g = d(sum(fake_images * y)) / dw, kept in the graph.
    `w` is [B, w_dim] (length = |g|) or [B, num_ws, w_dim] (length = sqrt(mean over ws of |g_i|^2), exactly
    StyleGAN2's reduction, for which pl_weight 2 was tuned; a w broadcast inside G should be passed as
    [B, w_dim], which gives the Jacobian norm of the broadcast w). The running mean moves by `decay` towards
    the batch mean of the lengths (no gradient), and penalty = mean((lengths - new_mean)^2). Pure: the caller
    stores the returned mean (a detached fp32 scalar) and applies `pl_weight * interval * penalty`.
    """
    if w.ndim not in (2, 3):
        raise ValueError(f"w must be [B, w_dim] or [B, num_ws, w_dim], got {list(w.shape)}")
    height, width = fake_images.shape[-2:]
    noise = torch.randn_like(fake_images) / math.sqrt(height * width)
    (grad,) = torch.autograd.grad((fake_images * noise).float().sum(), w, create_graph=True)
    squared = grad.float().square().sum(-1)
    lengths = (squared.mean(1) if w.ndim == 3 else squared).sqrt()
    old = torch.as_tensor(mean_path_length, dtype=torch.float32, device=lengths.device)
    new_mean = old.lerp(lengths.detach().mean(), decay)
    penalty = (lengths - new_mean).square().mean()
    return penalty, new_mean, lengths


def l1_reconstruction(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel difference |x' - x|."""
    _check_same_shape(reconstruction, images, "l1_reconstruction")
    return (reconstruction.float() - images.float()).abs().mean()


def w_reconstruction(w_of_reconstruction: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean absolute latent difference |E(x') - E(x)|; whether either side is detached is the caller's choice."""
    _check_same_shape(w_of_reconstruction, w, "w_reconstruction")
    return (w_of_reconstruction.float() - w.float()).abs().mean()


def classifier_kl(logits_reconstruction: torch.Tensor, logits_original: torch.Tensor) -> torch.Tensor:
    """KL[C(x') || C(x)] = sum_c p'(c) (log p'(c) - log p(c)), batch mean, from logits in fp32.

    p' = softmax(C(x')) is the distribution being trained, p = softmax(C(x)) the target (detached, so the
    gradient reaches only `logits_reconstruction`). This is the direction the StylEx paper writes. It is the
    mode-seeking (zero-forcing) KL on the reconstruction's distribution: x' is penalised most for putting
    probability on classes the original does not have. The ReScience code computes the other direction,
    KLDivLoss(batchmean, log_target) on log-softmax of C(G) against C(x), i.e. KL[C(x) || C(x')].
    """
    _check_same_shape(logits_reconstruction, logits_original, "classifier_kl")
    log_p_rec = F.log_softmax(logits_reconstruction.float(), dim=1)
    log_p = F.log_softmax(logits_original.detach().float(), dim=1)
    return (log_p_rec.exp() * (log_p_rec - log_p)).sum(1).mean()


def lpips_backbone_path(net: str) -> Path:
    """Where the torchvision ImageNet weights of an LPIPS trunk must be: the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(LPIPS_BACKBONES[net].url).name


def _load_backbone(model: lpips.LPIPS, net: str) -> None:
    """Copy torchvision's ImageNet `features.*` tensors into the lpips trunk (its `slice{k}.{i}` modules)."""
    path = lpips_backbone_path(net)
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.net.state_dict()
    for name in target:
        key = re.sub(r"^slice\d+\.", "features.", name)
        if key not in source or source[key].shape != target[name].shape:
            raise UserError(f"{path} does not hold torchvision's ImageNet weights for the LPIPS {net} trunk "
                            f"({key} missing or of another shape); replace it with {LPIPS_BACKBONES[net].url}")
        target[name] = source[key]
    model.net.load_state_dict(target)


class PerceptualDistance(nn.Module):
    """Per-image LPIPS distance [B] between images in [-1, 1] (the lpips package's convention), frozen.

    Modes:
    - 'pretrained': the trunk's ImageNet weights come only from the torch hub cache
      (`lpips_backbone_path(net)`, e.g. <hub>/checkpoints/alexnet-owt-7be5be79.pth), the calibrated linear
      layers from the lpips package. A missing file is a UserError; nothing is ever downloaded.
    - 'random': random-init trunk with the package's linear layers; offline, for tests and smoke runs. The
      numbers are not comparable with published LPIPS (a warning is logged).
    - 'off': always zeros (the trainer logs that the term is off).
    One-channel images are repeated to three; images smaller than 32 px are upsampled (bilinear) to 32 first,
    because AlexNet's strided stem and pools collapse smaller maps. Parameters never need gradients and the
    module stays in eval mode (the package's dropout must stay off), but gradients flow to the inputs.
    """

    def __init__(self, mode: str = "pretrained", net: str = "alex"):
        super().__init__()
        if mode not in LPIPS_MODES:
            raise UserError(f"unknown LPIPS mode {mode!r}; choose one of {', '.join(LPIPS_MODES)} "
                            "(--set train.lpips=...)")
        if net not in LPIPS_BACKBONES:
            raise UserError(f"unknown LPIPS network {net!r}; choose one of {', '.join(LPIPS_BACKBONES)}")
        self.mode = mode
        self.net_name = net
        self.model = None
        if mode == "off":
            return
        if mode == "pretrained":
            path = lpips_backbone_path(net)
            if not path.is_file():
                raise UserError(
                    f"LPIPS needs the ImageNet weight file {path.name} in {path.parent} (torchvision's file, "
                    f"{LPIPS_BACKBONES[net].url}; copy it there from a machine that has it), or choose "
                    "--set train.lpips=random (random trunk, offline smoke runs) or --set train.lpips=off explicitly"
                )
        else:
            logger.warning("LPIPS uses a randomly initialised %s trunk (train.lpips=random): its values are not "
                           "comparable with published LPIPS numbers", net)
        with warnings.catch_warnings():
            # lpips passes torchvision the deprecated `pretrained=` argument; pnet_rand=True means weights=None,
            # so torchvision never reaches the network.
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
        if mode == "pretrained":
            _load_backbone(model, net)
        model.requires_grad_(False)
        self.model = model
        self.eval()

    def train(self, mode: bool = True) -> PerceptualDistance:
        return super().train(False)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, net={self.net_name!r}"

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise UserError(f"LPIPS compares 1- or 3-channel images [B, C, H, W], got {list(images.shape)}; "
                            "choose --set train.lpips=off for other data")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        height, width = images.shape[-2:]
        if min(height, width) < LPIPS_MIN_SIZE:
            scale = LPIPS_MIN_SIZE / min(height, width)
            size = (max(LPIPS_MIN_SIZE, round(height * scale)), max(LPIPS_MIN_SIZE, round(width * scale)))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return images

    def forward(self, reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        _check_same_shape(reconstruction, images, "PerceptualDistance")
        if self.model is None:
            return reconstruction.new_zeros(reconstruction.shape[0], dtype=torch.float32)
        distance = self.model(self._prepare(reconstruction), self._prepare(images))
        return distance.float().reshape(reconstruction.shape[0])


def build_lpips(mode: str = "pretrained", net: str = "alex") -> PerceptualDistance:
    """The LPIPS distance for `train.lpips` = mode (see `PerceptualDistance`)."""
    return PerceptualDistance(mode, net)
