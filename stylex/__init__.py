"""stylex-suite: explain image classifiers with StylEx (Lang et al., ICCV 2021) and evaluate the explanations."""

from stylex.errors import UserError

__all__ = ["UserError"]
