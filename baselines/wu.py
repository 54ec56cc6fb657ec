"""Wu et al. (StyleSpace, CVPR 2021) attribute-specific channels, adapted to a classifier (DESIGN section 7).

As in their `MAdvance.py`: styles are normalised by the *population* mean and std per channel,
z = (s - mu_pop) / sigma_pop; the score of a channel is |mean z| / std z over the *positive* images only
(a one-class signal-to-noise, std with ddof 0), channels are ranked by it, and toRGB channels are dropped
after ranking. Adapted to StylEx's setting: the positives of class c are the images the classifier assigns
to c, and the edit direction is sign(mean z) (their code discards the sign). Edits are made in units of the
population std (`s_c += alpha * sigma_pop,c`), not toward the min/max as AttFind's are; the attribute set's
edit rule records that for the evaluations. This is not the difference-of-means estimator, which would be a variant.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from stylex.attributes import Attribute, AttributeSet
from stylex.editing import EditRule
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.methods import AttributeMethod
from stylex.pipeline import AttFindResult, RunContext
from stylex.runtime import code_version

log = logging.getLogger("baselines.wu")

# One unit of shift moves a Wu channel by 3 population stds: about the distance from a typical style to its
# extreme over a few hundred images, where AttFind's shift of 1 takes it (Wu et al.'s own UI uses 5).
DEFAULT_ALPHA = 3.0
EPS = 1e-8  # keeps constant channels (std 0) from dividing by zero; they score 0


def scores(styles: Tensor, positives: Tensor, population: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(score [K], mean z over positives [K]) for styles [N, K]; population statistics from `population`
    ([M, K], default: all of `styles`)."""
    if styles.ndim != 2:
        raise UserError(f"styles must be [N, K] flattened style vectors, got {list(styles.shape)}")
    positives = torch.as_tensor(positives, dtype=torch.bool)
    if positives.shape != (styles.shape[0],):
        raise UserError(f"positives must be one bool per image ([{styles.shape[0]}]), got {list(positives.shape)}")
    if int(positives.sum()) < 2:
        raise UserError(f"Wu et al. selection needs at least 2 positive images, got {int(positives.sum())}; "
                        "use more images or check that the classifier predicts this class at all")
    reference = (styles if population is None else population).double()
    mean, std = reference.mean(dim=0), reference.std(dim=0, unbiased=False)
    z = (styles[positives].double() - mean) / (std + EPS)
    z_mean = z.mean(dim=0)
    return z_mean.abs() / (z.std(dim=0, unbiased=False) + EPS), z_mean


def select(styles: Tensor, positives: Tensor, num_attributes: int = 10, population: Tensor | None = None,
           target: int | None = None) -> list[Attribute]:
    """Top `num_attributes` coordinates of conv-only flattened styles [N, K] for the positive images [N] (bool).

    Each attribute: `coordinate` (conv-only flat index), `direction` (1 = increase the coordinate, 0 =
    decrease; the sign of the positives' mean z), `mean_effect` (the positives' mean z), `score`."""
    if num_attributes < 1:
        raise UserError(f"num_attributes must be >= 1, got {num_attributes}")
    score, z_mean = scores(styles, positives, population)
    order = score.argsort(descending=True)[:num_attributes]
    return [Attribute(int(k), int(z_mean[k] > 0), float(z_mean[k]), target, float(score[k])) for k in order]


def select_from_layers(styles: Sequence[Tensor], layout: StyleLayout, positives: Tensor, num_attributes: int = 10,
                       target: int | None = None) -> list[Attribute]:
    """Wu et al.'s procedure on per-layer styles (conv and toRGB, layout order): rank every channel, then
    drop toRGB channels (their `RemovePG`); coordinates are returned in the conv-only flat index."""
    full = layout.flatten(styles)
    score, z_mean = scores(full, positives)
    chosen = []
    for index in score.argsort(descending=True).tolist():
        name, channel = layout.locate_full(index)
        if not layout.layer(name).is_conv:
            continue
        chosen.append(Attribute(layout.conv_index(name, channel), int(z_mean[index] > 0), float(z_mean[index]),
                                target, float(score[index])))
        if len(chosen) == num_attributes:
            break
    return chosen


def attribute_set(styles: Sequence[Tensor], layout: StyleLayout, predicted: Tensor, classes: list[str],
                  num_attributes: int = 10, alpha: float = DEFAULT_ALPHA,
                  provenance: dict | None = None) -> AttributeSet:
    """Per class c: Wu et al. channels with positives = images predicted as c (directions move toward c).
    `alpha` (population stds per unit of shift) is recorded with the set, so every evaluation edits alike."""
    predicted = torch.as_tensor(predicted)
    per_class = {}
    for c, name in enumerate(classes):
        if int((predicted == c).sum()) < 2:  # no consistent deviation to measure: nothing moves images toward c
            log.warning("Wu et al.: fewer than 2 of %d images are predicted as %s; no attributes toward it",
                        len(predicted), name)
            per_class[c] = []
            continue
        per_class[c] = select_from_layers(styles, layout, predicted == c, num_attributes, target=c)
    settings = {"num_attributes": num_attributes, "num_images": int(predicted.numel()),
                "images_per_class": torch.bincount(predicted, minlength=len(classes)).tolist()}
    return AttributeSet("wu", list(classes), per_class, None, layout.summary(), settings,
                        {"code_version": code_version(), **(provenance or {})}, population_std_rule(alpha))


def population_std_rule(alpha: float = DEFAULT_ALPHA) -> EditRule:
    """Wu et al.'s edit, `s_c += shift * alpha * sigma_pop,c` toward the attribute."""
    return EditRule("population std", float(alpha))


def select_for_run(ctx: RunContext, found: AttFindResult) -> AttributeSet:
    """Wu et al. on the AttFind images of the w/o-CST generator: positives of class c = images whose
    reconstruction the classifier assigns to c (the classifier scores generated images, as Wu et al.'s
    attribute classifiers do)."""
    return attribute_set(found.styles, ctx.model.generator.layout, found.effects.predicted, ctx.classes,
                         ctx.config.attfind.num_attributes, ctx.config.evaluation.wu_alpha,
                         provenance={"checkpoint_step": ctx.model.step, "stats_source": found.stats.source})


# The paper compares selection methods on a standard StyleGAN2: Wu et al. runs on the w/o-CST generator.
METHOD = AttributeMethod("wu", "Wu et al.", "stylex-nocst", select_for_run, order=10,
                         description="StyleSpace selection of Wu et al. (CVPR 2021)")
