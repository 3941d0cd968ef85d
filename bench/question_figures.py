"""Figures of the question sections (``bench.questions``): PNG, matplotlib with the Agg backend.

Every function takes plain numpy / pandas inputs, writes one file and returns its path, or None
when there is nothing to draw. Bands and bars are 95% t-intervals over seeds
(:func:`bench.figures.mean_band`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from bench.figures import _colors, _save, mean_band, plt

__all__ = ["curves_with_bands", "accuracy_by_parameter", "per_class_bars", "accuracy_vs_kept_noise"]


def _band(ax, x: np.ndarray, values: np.ndarray, *, color, label: str) -> None:
    mean, low, high = mean_band(values)
    ax.plot(x[: mean.size], mean, color=color, label=f"{label} (n={values.shape[0]})")
    ax.fill_between(x[: mean.size], low, high, color=color, alpha=0.2, linewidth=0)


def curves_with_bands(panels: Sequence[tuple[str, str, Mapping[str, np.ndarray]]], path: Path, *,
                      xlabel: str = "epoch", markers: Mapping[str, float] | None = None) -> Path | None:
    """One panel per (title, ylabel, {arm: values (runs, epochs)}): the mean per epoch with its
    band over runs, one line per arm (epochs numbered from 1); ``markers`` draws a dotted
    vertical line at an epoch of an arm (where its treatment starts) in the arm's colour."""
    panels = [p for p in panels if any(v.size for v in p[2].values())]
    if not panels:
        return None
    arms = list(dict.fromkeys(arm for _, _, curves in panels for arm in curves))
    colors = _colors(arms)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (title, ylabel, curves) in zip(axes.flat, panels):
        for arm, values in curves.items():
            if values.size:
                _band(ax, np.arange(1, values.shape[1] + 1), values, color=colors[arm], label=arm)
            if markers and arm in markers:
                ax.axvline(markers[arm], color=colors[arm], linestyle=":", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def accuracy_by_parameter(frame: pd.DataFrame, path: Path, *, parameter: str, ylabel: str) -> Path | None:
    """Accuracy against a method parameter, one line with its band per setting and every run as
    a dot. ``frame``: one row per run, columns setting, value (the parameter), acc."""
    if frame.empty:
        return None
    settings = list(dict.fromkeys(frame["setting"]))
    colors = _colors(settings)
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for setting in settings:
        rows = frame[frame["setting"] == setting]
        values = sorted(rows["value"].unique())
        grouped = [rows.loc[rows["value"] == v, "acc"].to_numpy(dtype=float) for v in values]
        width = max(len(g) for g in grouped)
        padded = np.array([np.pad(g, (0, width - len(g)), constant_values=np.nan) for g in grouped]).T
        mean, low, high = mean_band(padded)
        ax.plot(values, mean, "-o", color=colors[setting], label=setting)
        ax.fill_between(values, low, high, color=colors[setting], alpha=0.2, linewidth=0)
        ax.plot(rows["value"], rows["acc"], ".", color=colors[setting], alpha=0.5)
    ax.set_xlabel(parameter)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def per_class_bars(counts: pd.DataFrame, path: Path) -> Path | None:
    """Mean selected count per noisy class with t-interval bars, one panel per setting and one
    bar per arm. ``counts``: one row per (run, class), columns setting, arm, run_id, cls, count."""
    if counts.empty:
        return None
    settings = list(dict.fromkeys(counts["setting"]))
    arms = list(dict.fromkeys(counts["arm"]))
    colors = _colors(arms)
    width = 0.8 / len(arms)
    fig, axes = plt.subplots(1, len(settings), figsize=(4.8 * len(settings), 3.6), squeeze=False)
    for ax, setting in zip(axes.flat, settings):
        for i, arm in enumerate(arms):
            rows = counts[(counts["setting"] == setting) & (counts["arm"] == arm)]
            if rows.empty:
                continue
            table = rows.pivot_table(index="run_id", columns="cls", values="count")
            mean, low, high = mean_band(table.to_numpy(dtype=float))
            x = table.columns.to_numpy(dtype=float) + (i - (len(arms) - 1) / 2) * width
            err = np.vstack([mean - low, high - mean])
            ax.bar(x, mean, width=width, color=colors[arm], label=arm,
                   yerr=np.where(np.isfinite(err), err, 0.0), capsize=2)
        ax.set_title(setting, fontsize=10)
        ax.set_xlabel("noisy class")
        ax.set_ylabel("selected samples")
        ax.set_xticks(sorted(counts["cls"].unique()))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def accuracy_vs_kept_noise(cells: pd.DataFrame, path: Path, *, ylabel: str) -> Path | None:
    """Accuracy against the kept set's noise rate, one point per cell with t-interval bars on
    both axes, labelled with its parameter, one colour per setting. ``cells``: columns setting,
    value, noise, noise_low, noise_high, acc, acc_low, acc_high (noise in percent)."""
    if cells.empty:
        return None
    settings = list(dict.fromkeys(cells["setting"]))
    colors = _colors(settings)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for setting in settings:
        rows = cells[cells["setting"] == setting].sort_values("noise")
        xerr = np.vstack([rows["noise"] - rows["noise_low"], rows["noise_high"] - rows["noise"]])
        yerr = np.vstack([rows["acc"] - rows["acc_low"], rows["acc_high"] - rows["acc"]])
        ax.errorbar(rows["noise"], rows["acc"], xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr),
                    fmt="o-", color=colors[setting], capsize=2, label=setting)
        for _, row in rows.iterrows():
            ax.annotate(f"{row['value']:g}", (row["noise"], row["acc"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("label noise of the kept set (%)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
