"""Figures of a report (PNG, matplotlib with the Agg backend).

Every function takes plain pandas/numpy inputs, writes one file and returns its path, or None
when there is nothing to draw.
"""

from __future__ import annotations

import warnings

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on CI machines and servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats as sps  # noqa: E402

__all__ = ["accuracy_vs_noise", "epoch_curves", "cd_diagram", "mean_band"]

_DPI = 110
_PAPER_MARKERS = {"verified": ("D", "full"), "secondary": ("D", "none"), "recalled": ("x", "full")}


def _colors(labels: Sequence[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def accuracy_vs_noise(summary: pd.DataFrame, path: Path, *, protocol: str) -> Path | None:
    """Mean accuracy against noise rate with t-interval bars, one panel per (dataset, noise type).

    ``summary`` has one row per (cell, label) with columns dataset, noise_type, noise_rate,
    label, n, mean, ci_low, ci_high, paper_mean, provenance. Paper numbers are drawn as black
    markers whose shape says their provenance; single runs are hollow circles without a bar.
    """
    data = summary[summary["noise_rate"].notna()]
    if data.empty:
        return None
    panels = sorted(data.groupby(["dataset", "noise_type"]).groups)
    labels = sorted(data["label"].unique())
    colors = _colors(labels)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    offsets = dict(zip(labels, np.linspace(-0.006, 0.006, len(labels)) if len(labels) > 1 else [0.0]))
    for ax, (dataset, noise_type) in zip(axes.flat, panels):
        panel = data[(data["dataset"] == dataset) & (data["noise_type"] == noise_type)]
        for label, rows in panel.groupby("label"):
            rows = rows.sort_values("noise_rate")
            x = rows["noise_rate"].to_numpy() + offsets[label]
            y = rows["mean"].to_numpy()
            err = np.vstack([y - rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy() - y])
            many = rows["n"].to_numpy() >= 2
            ax.plot(x, y, "-", color=colors[label], alpha=0.6)
            ax.errorbar(x[many], y[many], yerr=err[:, many], fmt="o", color=colors[label], capsize=3,
                        label=label)
            if (~many).any():
                ax.plot(x[~many], y[~many], "o", mfc="none", color=colors[label])
            papers = rows[rows["paper_mean"].notna()]
            for prov, group in papers.groupby("provenance"):
                marker, fill = _PAPER_MARKERS.get(prov, ("*", "full"))
                ax.plot(group["noise_rate"], group["paper_mean"], marker, fillstyle=fill,
                        color=colors[label], mec="black", ms=7, ls="none")
        ax.set_title(f"{dataset}, {noise_type}")
        ax.set_xlabel("noise rate")
        ax.set_ylabel(f"test accuracy (%, {protocol})")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    for prov, (marker, fill) in _PAPER_MARKERS.items():
        handles.append(plt.Line2D([], [], marker=marker, fillstyle=fill, color="gray", mec="black", ls="none"))
        names.append(f"paper ({prov})")
    handles.append(plt.Line2D([], [], marker="o", mfc="none", color="gray", ls="none"))
    names.append("single run (no interval)")
    fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), bbox_to_anchor=(0.5, -0.02),
               fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(names) // 4), 1, 1))
    return _save(fig, path)


def mean_band(values: np.ndarray, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-epoch mean and t-interval of ``values`` ``(n_runs, n_epochs)``, ignoring NaN.

    Epochs with fewer than two finite values get a NaN band.
    """
    values = np.asarray(values, dtype=float)
    n = np.isfinite(values).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        # epochs where fewer than two runs have a value get NaN below; numpy's warning is noise
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.where(n > 0, values, 0.0), axis=0)
        mean = np.where(n > 0, mean, np.nan)
        sd = np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1 else np.full(values.shape[1], np.nan)
        half = sps.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    return mean, mean - half, mean + half


def _series(metrics: dict, key: str) -> np.ndarray:
    values = metrics.get(key) or []
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def epoch_curves(
    runs: pd.DataFrame,
    path: Path,
    *,
    metric: str,
    title: str,
    ylabel: str,
    scale: float = 1.0,
) -> Path | None:
    """Mean of ``metrics[metric]`` per epoch with a 95% t-interval band, one line per label.

    ``runs`` holds the records of one cell (columns label, metrics). Runs of one label are
    aligned on their epoch index and cut to the shortest. Labels without finite values (a method
    that selects nothing has no label precision) are left out; None when no label is left.
    """
    labels = sorted(runs["label"].unique())
    colors = _colors(labels)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    drawn = 0
    for label in labels:
        metrics = [m for m in runs.loc[runs["label"] == label, "metrics"] if isinstance(m, dict)]
        series = [_series(m, metric) for m in metrics]
        series = [s for s in series if s.size and np.isfinite(s).any()]
        if not series:
            continue
        length = min(s.size for s in series)
        values = np.vstack([s[:length] for s in series]) * scale
        epochs = _series(metrics[0], "epoch")[:length]
        if epochs.size != length or not np.isfinite(epochs).all():
            epochs = np.arange(1, length + 1, dtype=float)
        mean, low, high = mean_band(values)
        ax.plot(epochs, mean, color=colors[label], label=f"{label} (n={len(series)})")
        ax.fill_between(epochs, low, high, color=colors[label], alpha=0.2, lw=0)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def cd_diagram(
    ranks: Sequence[float],
    labels: Sequence[str],
    *,
    cd: float,
    path: Path,
    title: str = "",
) -> Path | None:
    """Critical-difference diagram (Demšar 2006): average ranks on an axis, with bars joining
    groups of methods whose ranks differ by less than ``cd``."""
    ranks = np.asarray(ranks, dtype=float)
    k = ranks.size
    if k < 2 or not np.isfinite(ranks).all():
        return None
    order = np.argsort(ranks)
    ranks, labels = ranks[order], [labels[i] for i in order]
    # Maximal groups of methods not separated by the critical difference.
    groups: list[tuple[int, int]] = []
    for i in range(k):
        j = i
        while j + 1 < k and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in groups):
            groups.append((i, j))
    half = math.ceil(k / 2)
    top = -0.3 - 0.18 * len(groups)  # label rows start below the group bars
    step = 0.4
    right = max(k, 1 + cd if np.isfinite(cd) else k)
    fig, ax = plt.subplots(figsize=(7.0, 1.4 + 0.3 * (half + len(groups))))
    ax.set_xlim(0.5, right + 0.5)
    ax.set_ylim(top - step * half - 0.2, 1.6)
    ax.axis("off")
    # Rank 1 (best) on the left.
    ax.hlines(0, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.12, color="black", lw=1)
        ax.text(r, 0.22, str(r), ha="center", va="bottom", fontsize=9)
    if np.isfinite(cd):
        ax.hlines(1.1, 1, 1 + cd, color="black", lw=2)
        ax.vlines([1, 1 + cd], 1.0, 1.2, color="black", lw=1)
        ax.text(1 + cd / 2, 1.25, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for g, (i, j) in enumerate(groups):
        ax.hlines(-0.2 - 0.18 * g, ranks[i] - 0.04, ranks[j] + 0.04, color="black", lw=3)
    for i, (r, label) in enumerate(zip(ranks, labels)):
        left = i < half
        y = top - step * (i if left else k - 1 - i)
        x_text = 0.55 if left else right + 0.45
        ax.plot([r, r, x_text], [0, y, y], color="gray", lw=0.8, zorder=0)
        ax.text(x_text, y, f"{label} ({r:.2f})", ha="right" if left else "left", va="center",
                fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)

