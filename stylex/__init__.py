"""stylex-suite: explain image classifiers with StylEx (Lang et al., ICCV 2021) and evaluate the explanations."""

from stylex.errors import UserError
from stylex.layout import StyleLayout

__all__ = ["StyleLayout", "UserError", "load"]


def load(folder, variant: str = "stylex", device="cpu"):
    """`stylex.load(run_dir_or_models_dir, variant="stylex"|"stylex-nocst")`: see `stylex.model.load` (imported on
    first use, so that importing `stylex` stays free of torch for the study app)."""
    from stylex.model import load as load_model

    return load_model(folder, variant, device)
