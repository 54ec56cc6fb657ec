"""The `stylex` command: parses arguments and calls library functions, nothing more. The packages built on stylex
add their subcommands as plug-ins (COMMAND_PLUGINS), using the shared options and error handling defined here."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from stylex.config import Config, available_presets, load_config, save_config
from stylex.errors import UserError
from stylex.run import RunDir

COMMAND_PLUGINS = "stylex.commands"
"""Entry-point group of the packages that add subcommands (evaluation: faithfulness, benchmark; studies: study).
Each entry names a function that takes argparse's subcommands object and adds its parsers, each with the `handler`
that `main` runs (add_command sets it). The packages declare their entries in pyproject.toml, so stylex never
imports them (DESIGN section 2: studies -> evaluation -> baselines -> stylex)."""

TRAINING_MONITORS = "stylex.training_monitors"
"""Entry-point group of what `stylex train` measures while it trains (evaluation: held-out faithfulness). Each entry
names a factory (config, run_dir, classifier, device) -> monitor; a monitor is (G_ema, E_ema) -> dict of metrics
that the trainer logs beside its losses."""


def load_plugins(group: str) -> list[tuple[str, Any]]:
    """(name, loaded object) of every entry point of `group`, in name order, so the help lists the same commands in
    the same order on every install. A plug-in that fails to import is left out with one warning line naming it:
    the core commands and the other plug-ins still run."""
    loaded = []
    for entry in sorted(metadata.entry_points(group=group), key=lambda entry: entry.name):
        try:
            loaded.append((entry.name, entry.load()))
        except Exception as err:  # whatever its module raises while importing, not only ImportError
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            print(f"warning: plug-in {entry.name!r} ({entry.value}) is left out: {reason}", file=sys.stderr)
    return loaded


def installed_monitor(config: Config, run_dir: Path, classifier, device):
    """The monitor `stylex train` hands the trainer: those of all `stylex.training_monitors` plug-ins merged into
    one, or None when none is installed (training then logs its losses only).

    A group of its own rather than the evaluation plug-in taking over the `train` command: the command, its options
    and its run-folder handling stay in one place, in stylex, and a plug-in contributes only what it measures."""
    monitors = [factory(config, run_dir, classifier, device) for _, factory in load_plugins(TRAINING_MONITORS)]
    if not monitors:
        return None

    def monitor(generator, encoder) -> dict:
        metrics = {}
        for measure in monitors:
            metrics.update(measure(generator, encoder))
        return metrics

    return monitor


def at_least(minimum: int):
    """argparse type: an integer >= minimum (argparse names the option in its error line)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


@contextlib.contextmanager
def removed_if_failed(run_dir: Path):
    """A command that creates the run folder (and the runs folder above it) and then fails with a user error
    before writing anything but config.json leaves nothing behind, so a mistyped command changes nothing on disk."""
    created = []
    folder = run_dir
    while not folder.exists() and folder != folder.parent:
        created.append(folder)
        folder = folder.parent
    try:
        yield
    except UserError:
        if created and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {RunDir(run_dir).config.name}:
            RunDir(run_dir).config.unlink(missing_ok=True)
            for folder in created:
                with contextlib.suppress(OSError):  # not empty: something else wrote there meanwhile
                    folder.rmdir()
        raise


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo",
                        help=f"preset name ({', '.join(available_presets())}) or path to a .json file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set classifier.epochs=3 (repeatable)")
    parser.add_argument("--name", help="run name (default: the config's name); outputs go to RUNS/NAME/")
    parser.add_argument("--runs-dir", default="runs", type=Path, help="folder holding run directories")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the config's, auto)")
    parser.add_argument("--root", help="dataset folder (sets data.root)")


def resolve_config(args: argparse.Namespace) -> tuple[Config, Path]:
    overrides = list(args.overrides)
    if args.name:
        overrides.append(f"name={args.name}")
    if args.device:
        overrides.append(f"device={args.device}")
    if args.root:
        overrides.append(f"data.root={args.root}")
    config = load_config(args.config, overrides)
    return config, args.runs_dir / config.name


def cmd_train_classifier(args: argparse.Namespace) -> None:
    """Train MobileNetV2 / ResNet-18 on the configured data, evaluate it on the held-out split, save
    RUNS/NAME/classifier.pt."""
    from stylex.runtime import resolve_device
    from stylex.train_classifier import train_classifier

    config, run_dir = resolve_config(args)
    resolve_device(config.device)  # an absent GPU is refused before anything is written
    with removed_if_failed(run_dir):
        save_config(config, run_dir)
        train_classifier(config, run_dir, retrain=args.retrain, oracle=args.oracle)


def cmd_train(args: argparse.Namespace) -> None:
    """Train the StyleGAN2 generator, encoder and discriminator against RUNS/NAME/classifier.pt. Checkpoints go to
    RUNS/NAME/checkpoints/stylex[-nocst].pt, TensorBoard logs to RUNS/NAME/tensorboard/. Multi-GPU / multi-node:
    torchrun --nproc_per_node N -m stylex train ..."""
    from stylex.training import load_run_classifier, train_stylex, training_device

    if args.no_cst:
        args.overrides.append("train.cst=false")
    config, run_dir = resolve_config(args)
    is_main = int(os.environ.get("RANK", "0")) == 0
    device = training_device(config)
    classifier = load_run_classifier(run_dir, args.classifier, device)
    # only the process that writes config.json may take it back
    with removed_if_failed(run_dir) if is_main else contextlib.nullcontext():
        if is_main:
            save_config(config, run_dir)
        # only the process that writes measures faithfulness
        monitor = installed_monitor(config, run_dir, classifier, device) if is_main else None
        train_stylex(config, run_dir, classifier, resume=args.resume, monitor=monitor)


def cmd_eval_classifier(args: argparse.Namespace) -> None:
    """Evaluate a suite classifier.pt or a TorchScript classifier."""
    from stylex import classifier as classifiers
    from stylex.data import build_dataset
    from stylex.runtime import resolve_device
    from stylex.train_classifier import evaluate, report

    config, run_dir = resolve_config(args)
    path = Path(args.classifier) if args.classifier else RunDir(run_dir).classifier
    device = resolve_device(config.device)
    classes = args.classes.split(",") if args.classes else None
    model = classifiers.load(path, map_location=device, classes=classes)
    dataset = build_dataset(config.data, args.split)
    report(model, {"test": evaluate(model, dataset, device)})


def cmd_attfind(args: argparse.Namespace) -> None:
    """Encode the AttFind images, compute style statistics (RUN/stats.pt) and the effect tensor
    (RUN/effects/VARIANT/, resumable), select attributes (RUN/attributes/VARIANT.json) and render panels and GIFs
    (RUN/attfind/VARIANT/). Settings: the attfind section of the config (--set attfind.KEY=VALUE). Multi-GPU:
    torchrun --nproc_per_node N -m stylex attfind --run-dir RUN"""
    from stylex.jobs import attfind_run

    attfind_run(args.run, cst=not args.no_cst, overrides=args.overrides, device=args.device,
                recompute=args.recompute)


def cmd_explain(args: argparse.Namespace) -> None:
    """Counterfactual explanation of one image: figure.png (reconstruction beside counterfactuals), flicker.gif,
    sweep.gif and summary.json in RUN/explanations/IMAGE-STRATEGY/ (or --out). Needs the style statistics written
    by `stylex attfind`."""
    from stylex.jobs import explain_image_file

    explain_image_file(args.run, args.image, strategy=args.strategy, target=args.target,
                       num_attributes=args.attributes, cst=not args.no_cst, out_dir=args.out,
                       overrides=args.overrides, device=args.device)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    # --run-dir is the same option under a name torchrun's own parser does not mistake for its --run-path
    parser.add_argument("--run", "--run-dir", dest="run", required=True, type=Path,
                        help="run directory, e.g. runs/demo")
    parser.add_argument("--no-cst", action="store_true", help="use the w/o-CST baseline's checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value of the run, e.g. --set attfind.shift_size=2 (repeatable)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the run config's)")


def cmd_preview_data(args: argparse.Namespace) -> None:
    config, run_dir = resolve_config(args)
    out = Path(args.out) if args.out else RunDir(run_dir).data_preview(args.split)
    check_image_output(out, "--out" if args.out else "--runs-dir/--name")
    from stylex.preview import save_class_grid

    save_class_grid(config.data, args.split, out, per_class=args.per_class)
    print(f"wrote {out}")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def check_image_output(out: Path, option: str) -> None:
    """An image file to be written: its format comes from the suffix, and it must not be (or lie under) something
    that is not a folder; an existing image file is replaced."""
    if out.is_dir():
        raise UserError(f"{option} {out} is a folder; name an image file such as {out / 'preview.png'}")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{option} must name an image file ending in {', '.join(IMAGE_SUFFIXES)}, got {out}")
    from stylex.jobs import check_output_folder

    check_output_folder(out.parent, option)


def cmd_show_config(args: argparse.Namespace) -> None:
    if args.list:
        print("\n".join(available_presets()))
        return
    config, _ = resolve_config(args)
    print(config.to_json())


def add_command(commands, name: str, handler, summary: str, shared_options) -> argparse.ArgumentParser:
    """Add subcommand `name` to `commands` (argparse's subparsers action) and return its parser: `summary` is its
    line in `stylex --help`, the handler's docstring the description its own --help shows (argparse rewraps it),
    and `shared_options` adds the options it shares with its kind (add_config_options: a run made from a config;
    add_run_options: an existing run)."""
    parser = commands.add_parser(name, help=summary, description=handler.__doc__)
    shared_options(parser)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylex", description="Explain image classifiers with StylEx and evaluate the explanations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = add_command(commands, "train-classifier", cmd_train_classifier, "train the classifier to be explained",
                        add_config_options)
    train.add_argument("--retrain", action="store_true", help="train again even if a matching classifier.pt exists")
    train.add_argument("--oracle", action="store_true",
                       help="train the independent oracle classifier (oracle section: another architecture and "
                       "seed) into RUNS/NAME/oracle.pt; it judges reconstructions, never explains")

    train_gan = add_command(commands, "train", cmd_train, "train StylEx (or, with --no-cst, StylEx without "
                            "classifier-specific training)", add_config_options)
    train_gan.add_argument("--no-cst", action="store_true",
                           help="the paper's baseline: no classifier condition, no classifier loss")
    train_gan.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train_gan.add_argument("--classifier", help="classifier file (default: RUNS/NAME/classifier.pt)")

    evaluate = add_command(commands, "eval-classifier", cmd_eval_classifier,
                           "accuracy and confusion matrix of a classifier", add_config_options)
    evaluate.add_argument("--classifier", help="classifier file (default: RUNS/NAME/classifier.pt)")
    evaluate.add_argument("--classes", help="class names for a TorchScript file without suite metadata (a,b,...)")
    evaluate.add_argument("--split", default="test", choices=["train", "test"])

    find = add_command(commands, "attfind", cmd_attfind, "find classifier-specific attributes (AttFind) and render "
                       "them", add_run_options)
    find.add_argument("--recompute", action="store_true", help="discard stored statistics and effects first")

    explain = add_command(commands, "explain", cmd_explain, "explain the classifier's decision on one image "
                          "(Independent or Subset)", add_run_options)
    explain.add_argument("--image", required=True, type=Path, help="image file (resized to the model's size)")
    explain.add_argument("--strategy", default="independent", choices=["independent", "subset"])
    explain.add_argument("--target", help="class to move toward (default: the most probable other class)")
    explain.add_argument("--attributes", type=at_least(1), default=5,
                         help="attributes to select, >= 1 (subset: at most this many, stops at the flip)")
    explain.add_argument("--out", type=Path, help="output folder (created if missing; the files explain writes "
                         "replace those of the same name in it)")

    # Plug-in commands stand between the commands on a run and the utilities below, where they were listed when
    # they were built in.
    for _, add_commands in load_plugins(COMMAND_PLUGINS):
        add_commands(commands)

    preview = add_command(commands, "preview-data", cmd_preview_data,
                          "write a PNG grid of dataset images, one row per class", add_config_options)
    preview.add_argument("--split", default="train", choices=["train", "test"])
    preview.add_argument("--per-class", type=at_least(1), default=8, help="images per class row, >= 1")
    preview.add_argument("--out", help="PNG path, replaced if it exists (default: RUNS/NAME/data_preview_SPLIT.png)")

    show = add_command(commands, "show-config", cmd_show_config,
                       "print the resolved config (preset + --set overrides)", add_config_options)
    show.add_argument("--list", action="store_true", help="list the available presets")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only or full disk, a file where a folder belongs, no permission: one line
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


# errnos that only a write, a create or a rename raises
WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.EFBIG, errno.ENOTEMPTY, errno.EXDEV}


def describe_os_error(err: OSError) -> str:
    """`cannot write PATH: REASON` (or read): the errno or the path's state tells which of the two failed."""
    reason = err.strerror or str(err)
    if err.filename is None:
        return reason
    path = Path(os.fsdecode(err.filename))
    if err.errno in WRITE_ERRNOS:
        verb = "write"
    elif err.errno == errno.ENOENT:
        verb = "read"
    elif not path.exists():
        verb = "write"  # it was being created (e.g. a file stands where one of its folders belongs)
    elif err.errno in (errno.EACCES, errno.EPERM):
        verb = "write" if os.access(path, os.R_OK) else "read"
    else:
        verb = "access"
    return f"cannot {verb} {path}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
