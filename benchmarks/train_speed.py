"""Training throughput of `stylex train` per phase (reconstruction warm-up, full objective) on this device.

    python benchmarks/train_speed.py --config demo [--steps 30] [--threads 1,2] [--no-cst]

Runs the real Trainer's step (`Trainer.train_step`: the warm-up phase, or the full objective with the lazy
regularisers at their intervals) in a temporary run directory with a random-init classifier of the right shape
(throughput does not depend on the classifier's weights), and prints steps/s and images/s per phase and thread
count, plus the ratios measured in this run: full step / warm-up step, and what a second thread buys.
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
from stylex.training import FULL, WARMUP, Trainer


def steps_per_second(trainer: Trainer, phase: str, steps: int, untimed: int) -> float:
    trainer.step = 0 if phase == WARMUP else trainer.train_cfg.warmup_steps
    batches = trainer.batches()

    def run(count: int) -> float:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(count):
            trainer.train_step(next(batches)[0])
            trainer.step += 1
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    run(untimed)
    return steps / run(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per phase and thread count")
    parser.add_argument("--untimed", type=int, default=5, help="steps run before timing (allocator, caches)")
    parser.add_argument("--threads", default="", help="CPU thread counts to compare, e.g. 1,2 (default: torch's)")
    parser.add_argument("--no-cst", action="store_true")
    parser.add_argument("--root")
    args = parser.parse_args()
    overrides = [*args.overrides, "train.lpips=random", "train.checkpoint_every=1000000",
                 "train.log_every=1000000", "train.image_every=1000000", "train.warmup_steps=1000000"]
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
    thread_counts = [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]
    batch = config.train.batch_size
    rates: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir), classifier)
        device = torch.cuda.get_device_name() if trainer.device.type == "cuda" else "cpu"
        print(f"config {args.config} ({'cst' if config.train.cst else 'no-cst'}), {data.resolution}px, batch {batch}, "
              f"device {device}")
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for phase in (WARMUP, FULL):
                rate = rates[threads, phase] = steps_per_second(trainer, phase, args.steps, args.untimed)
                print(f"  {phase:>6} phase, {threads} thread(s): {rate:.2f} steps/s, {rate * batch:.1f} images/s")
    for threads in thread_counts:
        print(f"full step / warm-up step ({threads} thread(s)): {rates[threads, WARMUP] / rates[threads, FULL]:.2f}x")
    if len(thread_counts) > 1:
        low, high = min(thread_counts), max(thread_counts)
        for phase in (WARMUP, FULL):
            print(f"{high} threads vs {low}, {phase} phase: {rates[high, phase] / rates[low, phase]:.2f}x")


if __name__ == "__main__":
    main()
