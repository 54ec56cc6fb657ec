"""`generators`: the faithfulness battery of both generators (DESIGN section 5) and their reconstruction grid."""

from __future__ import annotations

import shutil

from evaluation import generators
from evaluation.metrics.base import Metric, MetricInputs
from stylex.artifacts import fingerprint
from stylex.run import VARIANTS

RECONSTRUCTION_GRID = "reconstructions.png"


def measure(inputs: MetricInputs) -> dict:
    """{variant: held-out faithfulness metrics}, cached by the weights; the grid is copied into the report."""
    config = inputs.config
    contexts = {}
    for item in inputs.items:
        contexts.setdefault(item.ctx.variant, item.ctx)
    contexts = {variant: contexts[variant] for variant in VARIANTS if variant in contexts}  # the grid's row order
    key = {variant: {"step": ctx.model.step, "weights": fingerprint(ctx.model.generator),
                     "encoder": fingerprint(ctx.model.encoder)} for variant, ctx in contexts.items()}
    key.update(stage="faithfulness", eval_images=config.train.eval_images, probes=config.evaluation.probe_steps,
               oracle=inputs.run.oracle.is_file(), lpips=config.train.lpips)
    models = {variant: ctx.model for variant, ctx in contexts.items()}
    measured = inputs.cached("faithfulness", key, lambda: generators.measure_run(config, inputs.run.root, models,
                                                                                 inputs.device, inputs.progress))
    grid = generators.grid_path(inputs.run.root)
    if not grid.is_file():  # cached numbers, but the picture was removed: draw it again
        generators.write_grid(models, generators.held_out_images(config), inputs.run.root)
    inputs.report_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(grid, inputs.report_dir / RECONSTRUCTION_GRID)
    return {variant: {"lpips_mode": config.train.lpips,
                      **{k: v for k, v in measured[variant].items() if k != "reconstruction_lpips"},
                      "lpips": measured[variant].get("reconstruction_lpips")} for variant in contexts}


METRIC = Metric("generators", measure, order=0)
