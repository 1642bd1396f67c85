"""Evaluation runs over a store (per-word metrics exactly as the annotation literature computes them), choosing
settings by cross-validation (``annot tune``), stored runs and their reports."""
