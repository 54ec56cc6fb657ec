"""`stylex train`: StylEx training (DESIGN section 5), or the w/o-CST baseline with `cst=False`.

Each step: a G/E phase (noise path z -> G(w, C(x)) and encoder path x' = G(E(x), C(x)), adversarial
+ L1 + LPIPS + w-reconstruction + classifier KL), the lazy path-length term every `pl_interval` steps,
then a D phase (logistic loss on reals vs both kinds of fakes, lazy R1 every `r1_interval` steps). The
lazy regularisers are added to their phase's loss (scaled by the interval), so no extra optimizer steps.

Distributed: under `torchrun`, each process takes a shard of every batch and the gradients of G, E and D
are averaged over processes before each optimizer step (as the official StyleGAN2 code does instead of
DDP wrappers, because the regularisers need double backward and G is entered through several methods).
Only rank 0 writes. Checkpoints carry optimizer, step, data position and RNG state, so a resumed run
continues exactly (deterministic on CPU).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from stylex import losses
from stylex.artifacts import config_diff, write_json
from stylex.checkpoint import build_networks, network_configs, read_checkpoint, save_checkpoint
from stylex.classifier import Classifier
from stylex.config import Config, resolved_pl_weight, resolved_r1_gamma
from stylex.data import ImageDataset, build_dataset, iterate_batches
from stylex.errors import UserError
from stylex.model import condition_from_logits
from stylex.progress import progress_bar
from stylex.run import RunDir, variant_name
from stylex.runtime import Distributed, process_device

log = logging.getLogger("stylex.training")

# Settings that may change when a run is resumed (length and cadence), everything else must match.
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "log_every", "image_every", "eval_images", "eval_every"}
WARMUP, FULL = "warmup", "full"


def lazy_adam(lr: float, betas: tuple[float, float], interval: int) -> tuple[float, tuple[float, float]]:
    """Adam settings for a network whose regulariser runs every `interval` steps as an extra share of the step
    (StyleGAN2's lazy regularisation): lr and betas scaled by interval / (interval + 1)."""
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)


class TrainingDiverged(UserError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def training_device(config: Config) -> torch.device:
    return process_device(config.device)


def _set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, live: torch.nn.Module, beta: float) -> None:
    for p_ema, p in zip(ema.parameters(), live.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), live.buffers(), strict=True):
        b_ema.copy_(b)


class Trainer:
    def __init__(self, config: Config, run_dir: Path, classifier: Classifier, resume: bool = False,
                 monitor=None):
        self.config = config
        self.train_cfg = config.train
        self.weights = config.loss
        self.cst = config.train.cst
        self.run = RunDir(run_dir)
        self.variant = variant_name(self.cst)
        self.checkpoint = self.run.checkpoint(self.variant)
        self.device = training_device(config)
        self.dist = Distributed.from_environment(self.device)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                         if self.device.type == "cuda" and config.train.amp else nullcontext())
        if self.device.type == "cuda" and config.train.amp:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True

        self.train_set = build_dataset(config.data, "train")
        self.test_set = build_dataset(config.data, "test")
        self._check_classifier(classifier)
        self.classifier = classifier.to(self.device).eval().requires_grad_(False)
        self._check_batch()

        torch.manual_seed(config.train.seed)  # LPIPS(random) and the networks start identically on resume
        self.lpips = losses.build_lpips(config.train.lpips, config.train.lpips_net).to(self.device)
        self.net_configs = network_configs(config, self.train_set.resolution, self.train_set.channels,
                                           self.train_set.num_classes, self.cst)
        self.G, self.E, self.D = (m.to(self.device) for m in build_networks(self.net_configs))
        self.monitor = monitor  # (G_ema, E_ema) -> dict of faithfulness metrics, or None
        resolution, batch = self.train_set.resolution, config.train.batch_size
        self.r1_gamma = resolved_r1_gamma(config.loss, resolution, batch)
        self.pl_weight = resolved_pl_weight(config.loss, resolution)
        self.G_ema, self.E_ema = copy.deepcopy(self.G).eval(), copy.deepcopy(self.E).eval()
        _set_requires_grad(self.G_ema, False)
        _set_requires_grad(self.E_ema, False)
        betas = (config.train.beta1, config.train.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=config.train.lr, betas=betas)
        self.opt_E = torch.optim.Adam(self.E.parameters(), lr=config.train.encoder_lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=config.train.lr, betas=betas)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.mean_path_length = torch.zeros((), device=self.device)
        self.metrics: dict = {}
        self.last_saved_step: int | None = None
        if resume:
            self._resume()
        elif self.checkpoint.exists():
            raise UserError(f"{self.checkpoint} already exists; pass --resume to continue it, or --name to "
                            "train into another run directory")
        self.dist.broadcast(self.G, self.E, self.D, self.G_ema, self.E_ema)
        # Each process draws its own z and noise; rank 0 keeps the seed's stream so 1-process runs are exact.
        if not resume and self.dist.rank:
            torch.manual_seed(config.train.seed + 1000 * self.dist.rank)

    # ---- checks ------------------------------------------------------------------------------------------------
    def _check_classifier(self, classifier: Classifier) -> None:
        data = self.train_set
        if classifier.num_classes != data.num_classes:
            raise UserError(f"the classifier has {classifier.num_classes} classes ({', '.join(classifier.classes)}) "
                            f"but the data has {data.num_classes} ({', '.join(data.classes)}); train a "
                            "classifier on this data (stylex train-classifier) or select matching data.classes")
        probe = torch.zeros(1, data.channels, data.resolution, data.resolution)
        classifier.check_input(probe)

    def _check_batch(self) -> None:
        train = self.train_cfg
        shards = self.dist.world_size * train.accumulate
        if train.batch_size % shards:
            raise UserError(f"train.batch_size {train.batch_size} must be divisible by processes x accumulate "
                            f"= {self.dist.world_size} x {train.accumulate}")
        self.micro_batch = train.batch_size // shards
        if self.micro_batch * self.dist.world_size > len(self.train_set):
            raise UserError(f"train.batch_size {train.batch_size} is larger than the training set "
                            f"({len(self.train_set)} images)")

    # ---- state -------------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "config": self.config.to_dict(), "cst": self.cst, "networks": self.net_configs,
            "layout": self.G.layout.summary(), "step": self.step, "images_seen": self.step * self.train_cfg.batch_size,
            "data_position": {"epoch": self.epoch, "batch": self.batch_in_epoch},
            "mean_path_length": self.mean_path_length.detach().cpu(),
            "state": {name: {k: v.detach().cpu() for k, v in getattr(self, name).state_dict().items()}
                      for name in ("G", "E", "D", "G_ema", "E_ema")},
            "optimizers": {name: getattr(self, name).state_dict() for name in ("opt_G", "opt_E", "opt_D")},
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "metrics": self.metrics,
        }

    def save(self) -> None:
        if self.dist.is_main and self.last_saved_step != self.step:
            save_checkpoint(self.checkpoint, self.state())
            self.last_saved_step = self.step

    def _resume(self) -> None:
        payload = read_checkpoint(self.checkpoint, map_location="cpu")
        current = self.config.to_dict()
        defaults = Config().to_dict()  # a key newer than the checkpoint was trained with its default behaviour
        sections = ("data", "model", "train", "loss")
        saved = {section: {**defaults[section], **payload["config"].get(section, {})} for section in sections}
        differing = config_diff({section: current[section] for section in sections}, saved,
                                ignore=tuple(RESUMABLE_CHANGES))
        if differing:
            raise UserError(f"cannot resume {self.checkpoint}: the config differs in {', '.join(differing)}; "
                            "resume with the same settings or train into another --name")
        for name in ("G", "E", "D", "G_ema", "E_ema"):
            getattr(self, name).load_state_dict(payload["state"][name])
        for name in ("opt_G", "opt_E", "opt_D"):
            getattr(self, name).load_state_dict(payload["optimizers"][name])
        self.step = payload["step"]
        self.epoch, self.batch_in_epoch = payload["data_position"]["epoch"], payload["data_position"]["batch"]
        self.mean_path_length = payload["mean_path_length"].to(self.device)
        self.metrics = payload.get("metrics", {})
        self.last_saved_step = self.step
        torch.set_rng_state(payload["rng"]["torch"])
        if payload["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
        if self.dist.rank:
            torch.manual_seed(self.train_cfg.seed + 1000 * self.dist.rank + self.step)
        log.info("resumed %s at step %d", self.checkpoint, self.step)

    # ---- data --------------------------------------------------------------------------------------------------
    def batches(self):
        """Endless (images, labels) shards for this process, continuing from the saved data position."""
        per_step = self.micro_batch * self.train_cfg.accumulate
        while True:
            shard_size = per_step * self.dist.world_size
            stream = iterate_batches(self.train_set, shard_size, shuffle=True,
                                     seed=self.train_cfg.seed * 100003 + self.epoch, drop_last=True)
            for index, (images, labels) in enumerate(stream):
                if index < self.batch_in_epoch:
                    continue
                self.batch_in_epoch = index + 1
                rows = slice(self.dist.rank * per_step, (self.dist.rank + 1) * per_step)
                yield images[rows].to(self.device), labels[rows].to(self.device)
            self.epoch += 1
            self.batch_in_epoch = 0

    # ---- one step ----------------------------------------------------------------------------------------------
    def condition(self, logits: torch.Tensor) -> torch.Tensor | None:
        return condition_from_logits(logits, self.cst)

    def phase(self, step: int | None = None) -> str:
        """The schedule is a function of the step alone, so a resumed run continues in the same phase."""
        return WARMUP if (self.step if step is None else step) < self.train_cfg.warmup_steps else FULL

    def ramp(self, ramp_steps: int) -> float:
        """0 -> 1 linearly over `ramp_steps` steps after the warm-up (1 at once without a ramp)."""
        if ramp_steps <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.step - self.train_cfg.warmup_steps + 1) / ramp_steps))

    def _set_optimizer_settings(self) -> None:
        train = self.train_cfg
        if self.phase() == WARMUP:
            generator = encoder = (train.warmup_lr, (train.warmup_beta1, train.beta2))
        else:
            betas = (train.beta1, train.beta2)
            encoder = (train.encoder_lr, betas)
            generator = lazy_adam(train.lr, betas, train.pl_interval) if self.pl_weight > 0 else (train.lr, betas)
        discriminator = lazy_adam(train.lr, (train.beta1, train.beta2), train.r1_interval)
        for optimizer, (lr, betas) in ((self.opt_G, generator), (self.opt_E, encoder), (self.opt_D, discriminator)):
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = lr, betas

    def _zero_generator_and_encoder(self) -> None:
        _set_requires_grad(self.G, True)
        _set_requires_grad(self.E, True)
        self.opt_G.zero_grad(set_to_none=True)
        self.opt_E.zero_grad(set_to_none=True)

    def _step_generator_and_encoder(self) -> None:
        self.dist.average_gradients(self.G, self.E)
        self.opt_G.step()
        self.opt_E.step()

    def warmup_phase(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """E and G on reconstruction alone (L1 + LPIPS); G sees the condition it will be trained with."""
        weights, rounds = self.weights, self.train_cfg.accumulate
        self._zero_generator_and_encoder()
        totals: dict[str, torch.Tensor] = {}
        for x in images.chunk(rounds):
            with torch.no_grad(), self.autocast:
                logits_real = self.classifier(x).float()
            with self.autocast:
                reconstruction = self.G(self.E(x), self.condition(logits_real))
                terms = {"l1": losses.l1_reconstruction(reconstruction, x),
                         "lpips": self.lpips(reconstruction.float(), x).mean()}
            ((weights.l1 * terms["l1"] + weights.lpips * terms["lpips"]) / rounds).backward()
            with torch.no_grad(), self.autocast:
                logits_rec = self.classifier(reconstruction.detach()).float()
                terms["agreement"] = (logits_rec.argmax(1) == logits_real.argmax(1)).float().mean()
            for key, value in terms.items():
                totals[key] = totals.get(key, 0) + value.detach() / rounds
        self._step_generator_and_encoder()
        return totals

    def generator_phase(self, images: torch.Tensor, regularize: bool) -> dict[str, torch.Tensor]:
        weights, rounds = self.weights, self.train_cfg.accumulate
        adv_weight = weights.adv * self.ramp(self.train_cfg.adv_ramp_steps)
        kl_weight = weights.kl * self.ramp(self.train_cfg.kl_ramp_steps)
        _set_requires_grad(self.D, False)
        self._zero_generator_and_encoder()
        totals: dict[str, torch.Tensor] = {}
        for x in images.chunk(rounds):
            with torch.no_grad(), self.autocast:
                logits_real = self.classifier(x).float()
            cond = self.condition(logits_real)
            z = torch.randn(x.shape[0], self.G.cfg.z_dim, device=self.device)
            with self.autocast:
                fake = self.G(self.G.mapping(z, update_w_avg=True), cond)  # the one w_avg update per step
                w_real = self.E(x)
                reconstruction = self.G(w_real, cond)
                scores = self.D(torch.cat([fake, reconstruction]), None if cond is None else torch.cat([cond, cond]))
                terms = {
                    "g_adv": losses.generator_adversarial_loss(scores),
                    "l1": losses.l1_reconstruction(reconstruction, x),
                    "lpips": self.lpips(reconstruction.float(), x).mean(),
                    "w_rec": losses.w_reconstruction(self.E(reconstruction), w_real.detach()),
                }
                logits_rec = self.classifier(reconstruction).float()
            no_kl = torch.zeros((), device=x.device)
            terms["kl"] = losses.classifier_kl(logits_rec, logits_real) if self.cst else no_kl
            terms["adv_weight"], terms["kl_weight"] = no_kl + adv_weight, no_kl + kl_weight
            total = (adv_weight * terms["g_adv"] + weights.l1 * terms["l1"] + weights.lpips * terms["lpips"]
                     + weights.w_rec * terms["w_rec"] + kl_weight * terms["kl"])
            (total / rounds).backward()
            with torch.no_grad():
                terms["agreement"] = (logits_rec.argmax(1) == logits_real.argmax(1)).float().mean()
            for key, value in terms.items():
                totals[key] = totals.get(key, 0) + value.detach() / rounds
        if regularize and self.pl_weight > 0:
            totals["pl"] = self.path_length_term(images)
        self._step_generator_and_encoder()
        return totals

    def path_length_term(self, images: torch.Tensor) -> torch.Tensor:
        """Lazy path-length regularisation in fp32 on a shrunk batch of noise-path samples."""
        count = max(1, images.shape[0] // self.train_cfg.pl_batch_shrink)
        cond = None
        if self.cst:
            with torch.no_grad():
                cond = self.condition(self.classifier(images[:count]))
        w = self.G.mapping(torch.randn(count, self.G.cfg.z_dim, device=self.device), update_w_avg=False)
        fake = self.G(w, cond)
        penalty, new_mean, _ = losses.path_length_penalty(fake, w, self.dist.mean(self.mean_path_length))
        self.mean_path_length = self.dist.mean(new_mean)
        (penalty * self.pl_weight * self.train_cfg.pl_interval).backward()
        return penalty.detach()

    def discriminator_phase(self, images: torch.Tensor, regularize: bool) -> dict[str, torch.Tensor]:
        rounds = self.train_cfg.accumulate
        _set_requires_grad(self.D, True)
        _set_requires_grad(self.G, False)
        _set_requires_grad(self.E, False)
        self.opt_D.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        for x in images.chunk(rounds):
            with torch.no_grad(), self.autocast:
                cond = self.condition(self.classifier(x))
                z = torch.randn(x.shape[0], self.G.cfg.z_dim, device=self.device)
                fakes = torch.cat([self.G(self.G.mapping(z, update_w_avg=False), cond), self.G(self.E(x), cond)])
            doubled = None if cond is None else torch.cat([cond, cond])
            with self.autocast:
                real_scores = self.D(x, cond)
                fake_scores = self.D(fakes, doubled)
                terms = {"d_adv": losses.discriminator_adversarial_loss(real_scores, fake_scores),
                         "d_real": real_scores.float().mean(), "d_fake": fake_scores.float().mean()}
            loss = terms["d_adv"]
            if regularize and self.r1_gamma > 0:
                real = x.detach().requires_grad_(True)
                terms["r1"] = losses.r1_penalty(real, self.D(real, cond))  # fp32: double backward
                loss = loss + terms["r1"] * (self.r1_gamma / 2 * self.train_cfg.r1_interval)
            (loss / rounds).backward()
            for key, value in terms.items():
                totals[key] = totals.get(key, 0) + value.detach() / rounds
        self.dist.average_gradients(self.D)
        self.opt_D.step()
        return totals

    def train_step(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimizer step of the current phase (the step counter is advanced by the caller)."""
        train = self.train_cfg
        self._set_optimizer_settings()
        if self.phase() == WARMUP:
            terms = self.warmup_phase(images)
        else:
            terms = self.generator_phase(images, regularize=self.step % train.pl_interval == 0)
        update_ema(self.G_ema, self.G, self.ema_beta())
        update_ema(self.E_ema, self.E, self.ema_beta())
        if self.phase() == FULL:
            terms.update(self.discriminator_phase(images, regularize=self.step % train.r1_interval == 0))
        return terms

    def ema_beta(self) -> float:
        batch = self.train_cfg.batch_size
        half_life = self.train_cfg.ema_kimg * 1000
        if self.train_cfg.ema_rampup > 0:
            half_life = min(half_life, self.step * batch * self.train_cfg.ema_rampup)
        return 0.5 ** (batch / max(half_life, 1e-8))

    # ---- loop --------------------------------------------------------------------------------------------------
    def train(self) -> dict:
        train = self.train_cfg
        main = self.dist.is_main
        writer = None
        if main:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run.tensorboard(self.variant)))
        log_file = self.run.training_log(self.variant) if main else None
        if log_file:
            log_file.parent.mkdir(parents=True, exist_ok=True)
        bar = progress_bar(total=train.steps, initial=self.step, desc=f"train {self.variant}", unit="step",
                           disable=not main)
        batches = self.batches()
        started, images_done = time.perf_counter(), 0
        try:
            while self.step < train.steps:
                images, _ = next(batches)
                terms = self.train_step(images)
                values = dict(zip(terms, torch.stack([t.float() for t in terms.values()]).tolist(), strict=True))
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    kept = f"step {self.last_saved_step}" if self.last_saved_step is not None else "none yet"
                    raise TrainingDiverged(
                        f"loss {', '.join(bad)} became {values[bad[0]]} at step {self.step + 1}; stopped without "
                        f"saving, the last good checkpoint ({kept}) is kept at {self.checkpoint}; lower train.lr or "
                        "raise loss.r1_gamma and resume")
                self.step += 1
                images_done += images.shape[0] * self.dist.world_size
                bar.update(1)
                if main:
                    bar.set_postfix({k: f"{values[k]:.3f}" for k in ("g_adv", "d_adv", "l1", "kl") if k in values})
                    if self.step % train.log_every == 0 or self.step == train.steps:
                        rate = images_done / (time.perf_counter() - started)
                        self._log_scalars(writer, log_file, values, rate)
                    if self.step % train.image_every == 0:
                        self._log_images(writer)
                    if train.eval_every and self.step % train.eval_every == 0 and self.step < train.steps:
                        self._log_faithfulness(writer)
                if self.step % train.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            self.save()
            bar.close()
            raise
        bar.close()
        self.metrics = self.evaluate()
        self.last_saved_step = None  # the final metrics go into the checkpoint even if this step was just saved
        self.save()
        if main:
            self._log_images(writer)
            for key, value in self.metrics.items():
                if isinstance(value, float):
                    writer.add_scalar(f"final/{key}", value, self.step)
            writer.close()
            write_json(self.run.training_metrics(self.variant), self.metrics)
        return self.metrics

    def _log_faithfulness(self, writer) -> None:
        """The faithfulness battery on the EMA networks mid-run: TensorBoard and `logs/<variant>-eval.jsonl`."""
        values = self.evaluate()
        scalars = {k: v for k, v in values.items() if isinstance(v, float)}
        for key, value in scalars.items():
            writer.add_scalar(f"faithfulness/{key}", value, self.step)
        with self.run.evaluation_log(self.variant).open("a") as handle:
            handle.write(json.dumps({"step": self.step, "phase": self.phase(self.step - 1), **scalars}) + "\n")

    def _log_scalars(self, writer, log_file: Path, values: dict, rate: float) -> None:
        for key, value in values.items():
            writer.add_scalar(f"loss/{key}", value, self.step)
        writer.add_scalar("speed/images_per_second", rate, self.step)
        with log_file.open("a") as handle:
            handle.write(json.dumps({"step": self.step, "phase": self.phase(self.step - 1), **values}) + "\n")

    @torch.no_grad()
    def _log_images(self, writer) -> None:
        count = min(8, len(self.test_set))
        x = torch.stack([self.test_set[i][0] for i in range(count)]).to(self.device)
        cond = self.condition(self.classifier(x))
        reconstruction = self.G_ema(self.E_ema(x), cond, noise_mode="const")
        generator = torch.Generator(device="cpu").manual_seed(1234)
        z = torch.randn(count, self.G.cfg.z_dim, generator=generator).to(self.device)
        samples = self.G_ema(self.G_ema.mapping(z), cond, noise_mode="const")
        grid = make_grid(torch.cat([x, reconstruction, samples]).float().clamp(-1, 1), nrow=count,
                         normalize=True, value_range=(-1, 1))
        writer.add_image("inputs|reconstructions|samples", grid, self.step)
        folder = self.run.samples(self.variant)
        folder.mkdir(parents=True, exist_ok=True)
        save_image(grid, folder / f"step-{self.step:07d}.png")

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Reconstruction L1/LPIPS and classifier agreement of the EMA networks on held-out images, plus the
        monitor's faithfulness metrics (oracle agreement, input dependence, ...) when one is given."""
        metrics = evaluate_reconstruction(self.G_ema, self.E_ema, self.classifier, self.lpips, self.test_set,
                                          self.cst, self.train_cfg.eval_images, self.device,
                                          extra={"step": self.step, "variant": self.variant,
                                                 "lpips_mode": self.train_cfg.lpips})
        if self.monitor is not None:
            metrics.update(self.monitor(self.G_ema, self.E_ema))
        return metrics


@torch.no_grad()
def evaluate_reconstruction(generator, encoder, classifier, lpips_distance, dataset: ImageDataset, cst: bool,
                            max_images: int, device: torch.device, extra: dict | None = None) -> dict:
    count = min(max_images, len(dataset))
    l1 = perceptual = agree = 0.0
    seen = 0
    for images, _ in iterate_batches(dataset, 64, shuffle=False):
        images = images[: count - seen].to(device)
        logits = classifier(images).float()
        cond = condition_from_logits(logits, cst)
        reconstruction = generator(encoder(images), cond, noise_mode="const").float()
        l1 += (reconstruction - images).abs().flatten(1).mean(1).sum().item()
        perceptual += lpips_distance(reconstruction, images).sum().item()
        agree += (classifier(reconstruction).argmax(1) == logits.argmax(1)).sum().item()
        seen += images.shape[0]
        if seen >= count:
            break
    return {**(extra or {}), "eval_images": seen, "reconstruction_l1": l1 / seen, "reconstruction_lpips":
            perceptual / seen, "classifier_agreement": agree / seen}


def train_stylex(config: Config, run_dir: Path, classifier: Classifier, resume: bool = False, monitor=None) -> dict:
    trainer = Trainer(config, run_dir, classifier, resume=resume, monitor=monitor)
    if trainer.step >= config.train.steps and trainer.metrics:
        if trainer.dist.is_main:
            print(f"{trainer.checkpoint} has already reached step {trainer.step}; raise train.steps to go on")
        return trainer.metrics
    metrics = trainer.train()
    if trainer.dist.is_main:
        print(f"saved {trainer.checkpoint} (step {trainer.step})")
        print(format_metrics(metrics))
    return metrics


FAITHFULNESS_LABELS = (("oracle_agreement", "oracle agreement"), ("input_dependence_pixels", "input dependence"),
                       ("swapped_condition_agreement", "swapped-condition agreement"),
                       ("factor_shape", "shape kind kept"), ("factor_size", "size kept"), ("factor_spot", "spot kept"),
                       ("factor_shape_iou", "shape IoU"))


def format_metrics(metrics: dict) -> str:
    line = (f"{metrics['variant']} @ step {metrics['step']} on {metrics['eval_images']} held-out images: "
            f"reconstruction L1 {metrics['reconstruction_l1']:.4f}, LPIPS ({metrics['lpips_mode']}) "
            f"{metrics['reconstruction_lpips']:.4f}, classifier agreement {metrics['classifier_agreement']:.4f}")
    faithful = [f"{label} {metrics[key]:.3f}" for key, label in FAITHFULNESS_LABELS if key in metrics]
    if faithful:
        line += "\n  faithfulness: " + ", ".join(faithful)
    if "gate_failures" in metrics:
        failures = metrics["gate_failures"]
        line += "\n  gates (DESIGN 9): " + ("all met" if not failures else "missed " + "; ".join(failures))
    return line


def load_run_classifier(run_dir: Path, classifier_path: str | None, device) -> Classifier:
    from stylex.classifier import load

    path = Path(classifier_path) if classifier_path else RunDir(run_dir).classifier
    if not path.is_file():
        raise UserError(f"no classifier at {path}; train it first with `stylex train-classifier --config ...` "
                        "(same --name), or pass --classifier PATH")
    return load(path, map_location=device)

