"""Figures of the question sections (``bench.questions``): PNG, matplotlib with the Agg backend.

Every function takes plain numpy / pandas inputs, writes one file and returns its path, or None
when there is nothing to draw. Lines and bars are drawn by seaborn; bands and error bars are the
95% t-interval of the mean over the runs (:func:`bench.figures.t_interval`, the report's cell
interval), so they are conditional on whatever the runs share (a noise draw, where they share one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

import seaborn as sns

from bench.figures import _colors, _save, plt, t_interval

__all__ = ["curves_with_bands", "accuracy_by_parameter", "per_class_bars", "accuracy_vs_kept_noise",
           "accuracy_by_draw"]


def _band(ax, x: np.ndarray, values: np.ndarray, *, color, label: str) -> None:
    """The mean of ``values`` (runs, epochs) per x with its t-band, one seaborn line."""
    runs, epochs = np.indices(values.shape)
    long = pd.DataFrame({"x": x[: values.shape[1]][epochs.ravel()], "run": runs.ravel(),
                         "value": values.ravel()}).dropna()
    sns.lineplot(data=long, x="x", y="value", estimator="mean", errorbar=t_interval, color=color,
                 label=f"{label} (n={values.shape[0]})", err_kws={"alpha": 0.2, "lw": 0}, ax=ax)


def _finish(ax, *, xlabel: str, ylabel: str, title: str | None = None,
            legend_size: float = 8) -> None:
    """Title, axis labels, grid and legend of one panel."""
    if title is not None:
        ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def _per_setting(frame: pd.DataFrame, figsize: tuple[float, float]):
    """A figure with one axes, and (setting, its rows, its colour) per setting of ``frame`` in
    order of appearance."""
    settings = list(dict.fromkeys(frame["setting"]))
    colors = _colors(settings)
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax, [(s, frame[frame["setting"] == s], colors[s]) for s in settings]


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
        _finish(ax, xlabel=xlabel, ylabel=ylabel, title=title, legend_size=7)
    fig.tight_layout()
    return _save(fig, path)


def accuracy_by_parameter(frame: pd.DataFrame, path: Path, *, parameter: str, ylabel: str) -> Path | None:
    """Accuracy against a method parameter, one line with its band per setting and every run as
    a dot. ``frame``: one row per run, columns setting, value (the parameter), acc."""
    if frame.empty:
        return None
    fig, ax, groups = _per_setting(frame, (5.6, 4.0))
    for setting, rows, color in groups:
        sns.lineplot(data=rows, x="value", y="acc", estimator="mean", errorbar=t_interval,
                     marker="o", color=color, label=setting, err_kws={"alpha": 0.2, "lw": 0},
                     ax=ax)
        ax.plot(rows["value"], rows["acc"], ".", color=color, alpha=0.5)
    _finish(ax, xlabel=parameter, ylabel=ylabel)
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
    fig, axes = plt.subplots(1, len(settings), figsize=(4.8 * len(settings), 3.6), squeeze=False)
    for ax, setting in zip(axes.flat, settings):
        rows = counts[counts["setting"] == setting]
        sns.barplot(data=rows, x="cls", y="count", hue="arm", hue_order=arms, palette=colors,
                    estimator="mean", errorbar=t_interval, capsize=0.1, err_kws={"lw": 1}, ax=ax)
        ax.set_title(setting, fontsize=10)
        ax.set_xlabel("noisy class")
        ax.set_ylabel("selected samples")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def accuracy_vs_kept_noise(cells: pd.DataFrame, path: Path, *, ylabel: str) -> Path | None:
    """Accuracy against the kept set's noise rate, one point per cell with t-interval bars on
    both axes, labelled with its parameter, one colour per setting. ``cells``: columns setting,
    value, noise, noise_low, noise_high, acc, acc_low, acc_high (noise in percent)."""
    if cells.empty:
        return None
    fig, ax, groups = _per_setting(cells, (5.6, 4.2))
    for setting, rows, color in groups:
        rows = rows.sort_values("noise")
        xerr = np.vstack([rows["noise"] - rows["noise_low"], rows["noise_high"] - rows["noise"]])
        yerr = np.vstack([rows["acc"] - rows["acc_low"], rows["acc_high"] - rows["acc"]])
        ax.errorbar(rows["noise"], rows["acc"], xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr),
                    fmt="o-", color=color, capsize=2, label=setting)
        for _, row in rows.iterrows():
            ax.annotate(f"{row['value']:g}", (row["noise"], row["acc"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    _finish(ax, xlabel="label noise of the kept set (%)", ylabel=ylabel)
    fig.tight_layout()
    return _save(fig, path)


def accuracy_by_draw(runs: pd.DataFrame, path: Path, *,
                     paper: Mapping[tuple[str, str], float] | None = None) -> Path | None:
    """Each run's accuracy per noise draw, one panel per (setting, method): the runs as dots, each
    draw's mean as a bar, the grand mean of the suite's draws as a dashed line and the paper's
    number (``paper``: {(setting, method): number}) as a dotted red one. ``runs``: one row per
    run, columns setting, method, draw (``suite`` or an official sampler's name), noise_seed, seed,
    acc. The dots of a draw are spread in seed order, so the same runs give the same file."""
    runs = runs.dropna(subset=["acc"])
    if runs.empty:
        return None
    runs = runs.assign(x=[f"draw {int(s)}" if d == "suite" else f"{d} (official)"
                          for d, s in zip(runs["draw"], runs["noise_seed"])])
    settings = list(dict.fromkeys(runs["setting"]))
    methods = sorted(set(runs["method"]))
    fig, axes = plt.subplots(len(settings), len(methods), figsize=(3.6 * len(methods), 3.2 * len(settings)),
                             squeeze=False)
    for (i, setting), (k, method) in ((a, b) for a in enumerate(settings) for b in enumerate(methods)):
        ax = axes[i][k]
        rows = runs[(runs["setting"] == setting) & (runs["method"] == method)]
        if rows.empty:
            ax.set_visible(False)
            continue
        order = sorted(set(rows["x"]), key=lambda v: (v.endswith("(official)"), v))
        sns.pointplot(data=rows, x="x", y="acc", order=order, estimator="mean", errorbar=None,
                      color="black", markers="_", linestyles="none", ax=ax)
        for j, label in enumerate(order):   # each run a point, spread by seed (no random jitter)
            acc = rows.loc[rows["x"] == label].sort_values("seed")["acc"].to_numpy(dtype=float)
            ax.scatter(j + np.linspace(-0.12, 0.12, acc.size) * (acc.size > 1), acc, color="tab:blue", s=16,
                       alpha=0.7, zorder=3)
        suite = rows[rows["draw"] == "suite"]
        if not suite.empty:
            ax.axhline(suite.groupby("noise_seed")["acc"].mean().mean(), color="grey", linestyle="--",
                       linewidth=1, label="mean of the suite's draws")
        number = (paper or {}).get((setting, method))
        if number is not None:
            ax.axhline(number, color="tab:red", linestyle=":", linewidth=1.2, label=f"paper {number:g}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.set_title(f"{method}, {setting}", fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("test accuracy (%)")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
