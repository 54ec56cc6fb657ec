"""Wu et al. (StyleSpace, CVPR 2021) attribute-specific channels, adapted to a classifier (DESIGN section 7).

As in their `MAdvance.py`: styles are normalised by the *population* mean and std per channel,
z = (s - mu_pop) / sigma_pop; the score of a channel is |mean z| / std z over the *positive* images only
(a one-class signal-to-noise, std with ddof 0), channels are ranked by it, and toRGB channels are dropped
after ranking. Adapted to StylEx's setting: the positives of class c are the images the classifier assigns
to c, and the edit direction is sign(mean z) (their code discards the sign). Edits are made in units of the
population std (`s_c += alpha * sigma_pop,c`), not toward the min/max as AttFind's are; `edit_scale`
records that for the evaluations. This is not the difference-of-means estimator, which would be a variant.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from stylex.attfind import Attribute, AttributeSet
from stylex.editing import Edit, edit_columns
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.runtime import code_version
from stylex.stats import StyleStats

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
                "images_per_class": torch.bincount(predicted, minlength=len(classes)).tolist(),
                "edit_scale": "population std", "alpha": float(alpha)}
    return AttributeSet("wu", list(classes), per_class, None, layout.summary(), settings,
                        {"code_version": code_version(), **(provenance or {})})


def edit_styles(styles: Sequence[Tensor], layout: StyleLayout, stats: StyleStats, edits: Sequence[Edit],
                alpha: float | Tensor) -> list[Tensor]:
    """Wu et al.'s edit, `s_c += alpha * sigma_pop,c` toward the attribute (direction 1 adds, 0 subtracts),
    on every row of `styles` (one [B, dim] tensor per layer); sigma_pop is the std over the statistics' images.
    `alpha` may be a [B] tensor (one per row)."""

    def by_population_std(column: Tensor, coordinate: int, direction: int) -> Tensor:
        size = alpha.to(column) if isinstance(alpha, Tensor) else alpha
        sign = 1.0 if direction else -1.0
        return column + sign * size * stats.std[coordinate].to(column)

    return edit_columns(styles, layout, edits, by_population_std)
