"""How a report writes numbers, p-values, settings and a cell's mean with its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd

PROTOCOL_TEXT = {
    "last": "test accuracy at the last epoch",
    "best": "best test accuracy over all epochs",
    "last10": "mean test accuracy over the last ten epochs",
    "clean_val": "test accuracy at the epoch of best accuracy on a clean validation set held out "
                 "of the training images",
    "val_loss": "test accuracy of the last stage's epoch of lowest loss on a noisy validation split",
}
DAGGER = "†"


def fmt(x: object, digits: int = 2) -> str:
    """A number with ``digits`` decimals; "" for a missing or infinite one."""
    return f"{x:.{digits}f}" if isinstance(x, (int, float, np.floating)) and np.isfinite(x) else ""


def sd(variance: float) -> float:
    """The square root of a variance; NaN for a missing or negative one."""
    return float(np.sqrt(variance)) if isinstance(variance, (int, float, np.floating)) and np.isfinite(variance) \
        and variance >= 0 else float("nan")


def fmt_p(p: object) -> str:
    """A p-value: three decimals, "<0.001" below that, "" when missing."""
    if not isinstance(p, (int, float, np.floating)) or not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def setting_name(noise_type: str, noise_rate: float, variant: str = "") -> str:
    """A noise setting in words: ``symmetric 50% (variant)``."""
    rate = f" {noise_rate * 100:g}%" if isinstance(noise_rate, float) and np.isfinite(noise_rate) else ""
    return f"{noise_type}{rate}" + (f" ({variant})" if variant else "")


def setting_names(frame: pd.DataFrame) -> list[str]:
    """The setting name of each row of a frame with the noise columns of CELL."""
    return [setting_name(t, r, v) for t, r, v in zip(frame["noise_type"], frame["noise_rate"], frame["noise_variant"])]


def slug(dataset: str, noise_type: str, noise_rate: float, variant: str) -> str:
    """A cell as a file-name stem: ``mnist_symmetric_0.5_variant``."""
    rate = f"_{noise_rate:g}" if np.isfinite(noise_rate) else ""
    return f"{dataset}_{noise_type}{rate}" + (f"_{variant}" if variant else "")


def ours_cell(row: pd.Series) -> str:
    """A summary row's mean [95% interval] (runs); a dagger where it has under two runs."""
    if row["n"] < 2:
        return f"{fmt(row['mean'])} ({row['n']}) {DAGGER}"
    return f"{fmt(row['mean'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}] ({row['n']})"


def paper_cell(row: pd.Series) -> str:
    """The paper's mean ± std (provenance) of a summary row; "" without a paper number."""
    if not np.isfinite(row["paper_mean"]):
        return ""
    std = f" ± {fmt(row['paper_std'])}" if np.isfinite(row["paper_std"]) else ""
    return f"{fmt(row['paper_mean'])}{std} ({row['provenance']})"


def p_relation(p: object) -> str:
    """A p-value after its relation: "= 0.003", "< 0.001"."""
    text = fmt_p(p)
    return f"< {text[1:]}" if text.startswith("<") else f"= {text}"
