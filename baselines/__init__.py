"""Baselines the benchmark compares StylEx against: Wu et al. StyleSpace selection and StylEx without
classifier-specific training (a training mode of `stylex train`, see `--no-cst`)."""
