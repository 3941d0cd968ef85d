"""lnlbench: a reproducibility benchmark for learning with noisy labels."""

__version__ = "0.1.0"
