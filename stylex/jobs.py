"""The jobs the command line runs on a run directory: `stylex attfind` and `stylex explain`.

`attfind_run`: stats, effects, AttFind (`stylex.pipeline`) and the attribute figures (`stylex.figures`).
`explain_image_file`: one image file -> Independent or Subset explanation -> figure, GIFs, `summary.json`.
"""

from __future__ import annotations

from pathlib import Path

from stylex.data.images import read_image
from stylex.errors import UserError
from stylex.explain import STRATEGIES, check_count, explain
from stylex.figures import render_attributes, write_explanation
from stylex.pipeline import attfind_variant, open_run
from stylex.stats import load_stats


def attfind_run(run_dir: Path, cst: bool = True, overrides: list[str] | None = None, device: str | None = None,
                recompute: bool = False, progress: bool = True) -> Path:
    """Stats, effects, AttFind and rendering for one StylEx variant of a run; returns the attribute file."""
    ctx = open_run(run_dir, cst, overrides, device)
    result = attfind_variant(ctx, recompute, progress)
    path = ctx.run.attributes(ctx.variant)
    if result is None:
        return path
    out_dir = ctx.run.figures(ctx.variant)
    figures = render_attributes(ctx, result.attributes, result.styles, result.stats, out_dir,
                                effects=result.effects)
    print(result.attributes.format())
    print(f"wrote {path} and {len(figures.files)} figures/GIFs under {out_dir}")
    return path


def explain_image_file(run_dir: Path, image_path: Path, strategy: str = "independent", target: str | None = None,
                       num_attributes: int = 5, cst: bool = True, out_dir: Path | None = None,
                       overrides: list[str] | None = None, device: str | None = None) -> Path:
    """Explain the classifier's decision on one image file; writes figure.png, GIFs and summary.json into
    `out_dir` (created if missing; files of the same name in it are replaced)."""
    # Argument checks come before the run is loaded, so a mistyped command fails at once and writes nothing.
    check_count("--attributes", num_attributes)
    if strategy not in STRATEGIES:
        raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not Path(image_path).is_file():
        raise UserError(f"no image file at {image_path}")
    if out_dir is not None:
        check_output_folder(Path(out_dir), "--out")
    ctx = open_run(run_dir, cst, overrides, device)
    cfg = ctx.config.attfind
    stats = load_stats(ctx.run_dir, ctx.variant)
    if stats is None:
        raise UserError(f"no style statistics for {ctx.variant} in {ctx.run_dir}; run `stylex attfind --run "
                        f"{ctx.run_dir}` first (it computes stats.pt)")
    generator = ctx.model.generator
    image = read_image(image_path, generator.cfg.img_resolution, generator.cfg.img_channels).to(ctx.device)
    target_index = None
    if target is not None:
        if target not in ctx.classes:
            raise UserError(f"unknown target class {target!r}; classes: {', '.join(ctx.classes)}")
        target_index = ctx.classes.index(target)
    styles = ctx.model.styles(image)
    options = {"target": target_index, "shift_size": cfg.shift_size, "precision": cfg.precision}
    options["num_attributes" if strategy == "independent" else "max_attributes"] = num_attributes
    explanation = explain(ctx.model, styles, stats, strategy, **options)
    out_dir = Path(out_dir) if out_dir else ctx.run.explanation(Path(image_path).stem, strategy)
    write_explanation(ctx, explanation, image, styles, stats, out_dir)
    return out_dir


def check_output_folder(folder: Path, option: str) -> None:
    """A folder to write into: missing (it is created) or a folder, never a file or under one."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder} is a file, not a folder: name a new or existing folder")
    blocking = next((p for p in folder.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UserError(f"{option} {folder} lies under {blocking}, which is a file, not a folder")


