"""Training throughput (images/s) of `stylex train` for a named config on the current device.

    python benchmarks/train_speed.py --config fashion-sneaker-boot-gpu [--steps 50] [--warmup 10] [--no-cst]

Runs the real Trainer (all phases, lazy regularisers at their intervals) in a temporary run directory with a
random-init classifier of the right shape (throughput does not depend on the classifier's weights).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from stylex.classifier import Classifier, build_network
from stylex.config import load_config
from stylex.data import build_dataset
from stylex.training import Trainer, update_ema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-cst", action="store_true")
    parser.add_argument("--root")
    args = parser.parse_args()
    overrides = [*args.overrides, "train.lpips=random", "train.checkpoint_every=1000000",
                 "train.log_every=1000000", "train.image_every=1000000"]
    if args.no_cst:
        overrides.append("train.cst=false")
    if args.root:
        overrides.append(f"data.root={args.root}")
    config = load_config(args.config, overrides)
    data = build_dataset(config.data, "test")
    net = build_network(config.classifier.arch, data.num_classes, data.resolution, data.channels,
                        config.classifier.width)
    classifier = Classifier(net, data.classes, data.resolution, data.channels, config.classifier.arch,
                            config.classifier.width)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir), classifier)
        batches = trainer.batches()

        def run(steps: int) -> float:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(steps):
                images, _ = next(batches)
                trainer.generator_phase(images, regularize=trainer.step % config.train.pl_interval == 0)
                update_ema(trainer.G_ema, trainer.G, trainer.ema_beta())
                update_ema(trainer.E_ema, trainer.E, trainer.ema_beta())
                trainer.discriminator_phase(images, regularize=trainer.step % config.train.r1_interval == 0)
                trainer.step += 1
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - started

        run(args.warmup)
        seconds = run(args.steps)
    images = args.steps * config.train.batch_size
    cpu = f"cpu ({torch.get_num_threads()} threads)"
    device = torch.cuda.get_device_name() if trainer.device.type == "cuda" else cpu
    print(f"config {args.config} ({'cst' if config.train.cst else 'no-cst'}), {data.resolution}px, "
          f"batch {config.train.batch_size}, device {device}")
    print(f"{args.steps} steps in {seconds:.2f} s: {images / seconds:.1f} images/s, {args.steps / seconds:.2f} steps/s")


if __name__ == "__main__":
    main()
