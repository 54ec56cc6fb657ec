"""stylex-suite: explain image classifiers with StylEx (Lang et al., ICCV 2021) and evaluate the explanations."""

from stylex.errors import UserError
from stylex.layout import StyleLayout

__all__ = ["StyleLayout", "UserError"]
