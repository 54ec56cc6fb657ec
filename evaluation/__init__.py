"""Evaluation of explanations: sufficiency, FID under perturbation, ground-truth recovery, the benchmark
and its report."""
