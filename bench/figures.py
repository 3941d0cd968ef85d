"""Figures of a report (PNG, matplotlib with the Agg backend, seaborn for the curves).

Every function takes plain pandas/numpy inputs, writes one file and returns its path, or None
when there is nothing to draw. Each interval drawn is one the report states: the cells'
intervals of the report's tables (:func:`accuracy_vs_noise`), and the per-epoch t-interval of
the mean over a cell's runs (:func:`epoch_curves`); seaborn's default bootstrap, which the
report does not use below 10 runs, is never drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on CI machines and servers

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.typing import FillStyleType  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench import stats  # noqa: E402

__all__ = ["accuracy_vs_noise", "epoch_curves", "cd_diagram", "t_interval"]

_DPI = 110
_PAPER_MARKERS: dict[str, tuple[str, FillStyleType]] = {"verified": ("D", "full"), "secondary": ("D", "none"), "recalled": ("x", "full")}


def _colors(labels: Sequence[str]) -> dict[str, tuple]:
    palette = sns.color_palette("tab10" if len(labels) <= 10 else "tab20", len(labels))
    return dict(zip(labels, palette))


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def accuracy_vs_noise(summary: pd.DataFrame, path: Path, *, protocol: str) -> Path | None:
    """Mean accuracy against noise rate with each cell's 95% interval as a bar, one panel per
    (dataset, noise type).

    ``summary`` has one row per (cell, label) with columns dataset, noise_type, noise_rate,
    label, n, mean, ci_low, ci_high, paper_mean, provenance. The bars are the intervals of the
    report's tables, drawn as given (not recomputed: a cell with crossed noise draws has a
    variance-components interval): over the training seeds, and over the noise draws where the
    cell has several, conditional on the one draw its runs share otherwise. Paper numbers are
    drawn as black markers whose shape says their provenance; single runs are hollow circles
    without a bar.
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
            ax.errorbar(x[many], y[many], yerr=err[:, many], fmt="o", color=colors[label], capsize=3)
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
    handles = [plt.Line2D([], [], marker="o", color=colors[label]) for label in labels]
    names = list(labels)
    for prov, (marker, fill) in _PAPER_MARKERS.items():
        handles.append(plt.Line2D([], [], marker=marker, fillstyle=fill, color="gray", mec="black", ls="none"))
        names.append(f"paper ({prov})")
    handles.append(plt.Line2D([], [], marker="o", mfc="none", color="gray", ls="none"))
    names.append("single run (no interval)")
    fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), bbox_to_anchor=(0.5, -0.02),
               fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(names) // 4), 1, 1))
    return _save(fig, path)


def t_interval(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float]:
    """:func:`bench.stats.t_interval` of the finite ``values`` (seaborn hands over a group's
    values, NaN included): the report's cell interval; NaN bounds with fewer than two."""
    x = np.asarray(values, dtype=float)
    return stats.t_interval(x[np.isfinite(x)], confidence=confidence)


def _series(metrics: dict, key: str) -> np.ndarray:
    values = metrics.get(key) or []
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _epoch_table(runs: pd.DataFrame, metric: str, scale: float) -> pd.DataFrame:
    """One row per (run, epoch) with columns label, name (the label with its run count), run,
    epoch, value: the runs of each label with a finite value of ``metric``, aligned on the epoch
    index and cut to the label's shortest run."""
    frames = []
    for label in sorted(runs["label"].unique()):
        metrics = [m for m in runs.loc[runs["label"] == label, "metrics"] if isinstance(m, dict)]
        pairs = [(m, _series(m, metric)) for m in metrics]
        pairs = [(m, s) for m, s in pairs if s.size and np.isfinite(s).any()]
        if not pairs:
            continue
        length = min(s.size for _, s in pairs)
        epochs = _series(pairs[0][0], "epoch")[:length]
        if epochs.size != length or not np.isfinite(epochs).all():
            epochs = np.arange(1, length + 1, dtype=float)
        for run, (_, series) in enumerate(pairs):
            frames.append(pd.DataFrame({"label": label, "name": f"{label} (n={len(pairs)})",
                                        "run": run, "epoch": epochs,
                                        "value": series[:length] * scale}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def epoch_curves(
    runs: pd.DataFrame,
    path: Path,
    *,
    metric: str,
    title: str,
    ylabel: str,
    scale: float = 1.0,
) -> Path | None:
    """Mean of ``metrics[metric]`` per epoch over the runs of each label, one line per label,
    with the 95% t-interval of that mean as a band (:func:`t_interval`; none at epochs with
    fewer than two values).

    ``runs`` holds the records of one cell (columns label, metrics). The band covers what
    differs between those runs, their training seeds, and their noise draws only when each run
    draws its own: it is conditional on the draw the runs share otherwise, as the cell's
    interval in the report. Runs of one label are aligned on their epoch index and cut to the
    shortest. Labels without finite values (a method that selects nothing has no label
    precision) are left out; None when no label is left.
    """
    table = _epoch_table(runs, metric, scale)
    if table.empty:
        return None
    colors = _colors(sorted(runs["label"].unique()))  # a label's colour in every figure of a cell
    names = dict(zip(table["name"], table["label"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    sns.lineplot(data=table, x="epoch", y="value", hue="name", hue_order=list(names),
                 palette={name: colors[label] for name, label in names.items()},
                 estimator="mean", errorbar=t_interval, err_kws={"alpha": 0.2, "lw": 0}, ax=ax)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", title="mean over runs, 95% t-band", title_fontsize="small")
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
    unsorted = np.asarray(ranks, dtype=float)
    k = unsorted.size
    if k < 2 or not np.isfinite(unsorted).all():
        return None
    order = np.argsort(unsorted)
    ranked, names = unsorted[order], [labels[i] for i in order]
    # Maximal groups of methods not separated by the critical difference.
    groups: list[tuple[int, int]] = []
    for i in range(k):
        j = i
        while j + 1 < k and ranked[j + 1] - ranked[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in groups):
            groups.append((i, j))
    half = math.ceil(k / 2)
    top = -0.3 - 0.18 * len(groups)  # label rows start below the group bars
    step = 0.4
    right = float(max(k, 1 + cd if np.isfinite(cd) else k))
    fig, ax = plt.subplots(figsize=(7.0, 1.4 + 0.3 * (half + len(groups))))
    ax.set_xlim(0.5, right + 0.5)
    ax.set_ylim(top - step * half - 0.2, 1.6)
    ax.axis("off")
    # Rank 1 (best) on the left.
    ax.hlines(0, 1, k, color="black", lw=1)
    for tick in range(1, k + 1):
        ax.vlines(tick, 0, 0.12, color="black", lw=1)
        ax.text(tick, 0.22, str(tick), ha="center", va="bottom", fontsize=9)
    if np.isfinite(cd):
        ax.hlines(1.1, 1, 1 + cd, color="black", lw=2)
        ax.vlines([1, 1 + cd], 1.0, 1.2, color="black", lw=1)
        ax.text(1 + cd / 2, 1.25, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for g, (i, j) in enumerate(groups):
        ax.hlines(-0.2 - 0.18 * g, ranked[i] - 0.04, ranked[j] + 0.04, color="black", lw=3)
    for i, (r, label) in enumerate(zip(ranked, names)):
        left = i < half
        y = top - step * (i if left else k - 1 - i)
        x_text = 0.55 if left else right + 0.45
        ax.plot([r, r, x_text], [0, y, y], color="gray", lw=0.8, zorder=0)
        ax.text(x_text, y, f"{label} ({r:.2f})", ha="right" if left else "left", va="center",
                fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)

