"""Selection curves: how a method's per-sample scores split the noisy training set.

A method that scores samples (DivideMix's GMM clean posterior, the small-loss ranking of
Co-teaching, JoCoR, MentorNet PD, RSL) exposes one score per training sample for the epoch and
declares its kind:

* ``posterior``: a clean probability; a sample is kept at threshold p when ``score > p``
  (DivideMix's ``prob > p_threshold``). Points: p = 0, 0.1, ..., 0.9.
* ``keep_fraction``: the sample's rank quantile ``(rank + 1) / n`` in the pool the method ranks
  (a mini-batch, a noisy class, the whole set), rank 0 the smallest loss; a sample is kept at
  keep fraction f when ``score <= f``, i.e. ``rank < floor(f n)``, the official codes'
  ``num_remember = int((1 - forget_rate) * n)`` (f n is taken with a 1e-9 tolerance, so that
  f = 0.1 of 100 keeps 10; the codes' ``int((1 - 0.9) * 100)`` is 9 in floating point).
  Points: f = 0.1, 0.2, ..., 1.0.

Unscored samples are NaN. At every point the curve gives the kept set's size, its label
precision (kept and correctly labelled / kept with a known clean label), its recall (kept and
correctly labelled / scored and correctly labelled) and its per-noisy-class counts, so one run
gives the whole threshold table. The engine, which alone knows the clean labels, calls
:func:`selection_curve` every epoch and stores the rows in ``metrics.selection_curve``
(docs/record-schema.md). Everything here is numpy/pandas/matplotlib on arrays: no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from bench.reporting.text import setting_name
from bench.tables import markdown_table

POINTS = {"posterior": tuple(round(0.1 * i, 1) for i in range(10)),
          "keep_fraction": tuple(round(0.1 * i, 1) for i in range(1, 11))}
_EPS = 1e-9     # f * n computed in floating point: 0.3 * 10 must keep 3
_DIGITS = 4


def kept_mask(scores: np.ndarray, kind: str, point: float) -> np.ndarray:
    """(N,) bool: the scored samples kept at ``point`` under the score ``kind``."""
    scored = ~np.isnan(scores)
    with np.errstate(invalid="ignore"):
        if kind == "posterior":
            return scored & (scores > point)
        if kind == "keep_fraction":
            return scored & (scores <= point + _EPS)
    raise ValueError(f"unknown score kind {kind!r}; known: {', '.join(POINTS)}")


def selection_curve(scores: np.ndarray, noisy: np.ndarray, clean: np.ndarray, *, kind: str,
                    num_classes: int, points: Sequence[float] | None = None) -> dict:
    """Size, label precision, recall and per-class counts of the kept set at every point.

    scores: (N,) float, NaN where unscored; noisy, clean: (N,) int labels (clean < 0: unknown).
    Returns ``{"size": [P], "precision": [P], "recall": [P], "per_class": [P][K]}`` (precision
    and recall rounded to 4 digits, None where their denominator is 0).
    """
    scores = np.asarray(scores, dtype=np.float64)
    noisy, clean = np.asarray(noisy), np.asarray(clean)
    known = clean >= 0
    correct = known & (noisy == clean)
    pool = int((correct & ~np.isnan(scores)).sum())
    out: dict = {"size": [], "precision": [], "recall": [], "per_class": []}
    for point in POINTS[kind] if points is None else points:
        kept = kept_mask(scores, kind, point)
        hit, judged = int((kept & correct).sum()), int((kept & known).sum())
        out["size"].append(int(kept.sum()))
        out["precision"].append(round(hit / judged, _DIGITS) if judged else None)
        out["recall"].append(round(hit / pool, _DIGITS) if pool else None)
        out["per_class"].append(np.bincount(noisy[kept], minlength=num_classes).tolist())
    return out


def append_curve(metrics: dict, curve: dict | None, *, kind: str | None, n_before: int) -> None:
    """Append one epoch's curve (or None) to ``metrics['selection_curve']``, aligned with
    ``metrics['epoch']`` (``n_before`` epochs already recorded).

    The first curve starts the store under its score ``kind``, which must then be given.
    """
    store = metrics.get("selection_curve")
    if store is None:
        if curve is None:
            return
        if kind is None:
            raise ValueError("a selection curve needs the kind of its scores")
        store = metrics["selection_curve"] = {
            "kind": kind, "points": list(POINTS[kind]),
            **{key: [None] * n_before for key in ("size", "precision", "recall", "per_class")}}
    for key in ("size", "precision", "recall", "per_class"):
        store[key].append(None if curve is None else curve[key])


PER_CLASS_EVERY = 10


def thin_per_class(metrics: dict, *, every: int = PER_CLASS_EVERY) -> None:
    """Keep the per-class kept counts of every ``every``-th scored epoch and of the last scored
    one, null elsewhere: they are K numbers per point and epoch (200 KB a 200-epoch record on 10
    classes, ten times that on 100), while the sizes, precisions and recalls stay per epoch."""
    curve = metrics.get("selection_curve")
    if not curve:
        return
    scored = [pos for pos, size in enumerate(curve["size"]) if size is not None]
    keep = set(scored[::every]) | set(scored[-1:])
    curve["per_class"] = [counts if pos in keep else None for pos, counts in enumerate(curve["per_class"])]


# ---- analysis of records --------------------------------------------------------------------

_CELL = ["label", "dataset", "noise_type", "noise_rate"]


def _rows(record: dict) -> Iterable[dict]:
    metrics = record.get("metrics") or {}
    curve = metrics.get("selection_curve")
    if not curve:
        return
    base = {key: record.get(key) for key in (*_CELL, "seed", "noise_seed", "run_id")}
    base["label"] = base["label"] or record.get("method")
    for pos, epoch in enumerate(metrics.get("epoch", [])):
        if curve["size"][pos] is None:
            continue
        for j, point in enumerate(curve["points"]):
            counts = None if curve["per_class"][pos] is None else curve["per_class"][pos][j]
            precision = curve["precision"][pos][j]
            yield {**base, "epoch": epoch, "kind": curve["kind"], "point": point,
                   "size": curve["size"][pos][j],
                   "precision": np.nan if precision is None else precision,
                   "recall": np.nan if curve["recall"][pos][j] is None else curve["recall"][pos][j],
                   "min_class_kept": np.nan if counts is None else min(counts),
                   "per_class": None if counts is None else tuple(counts)}


def selection_curve_table(records: pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
    """One row per (run, epoch, point) of every record with a selection curve.

    Columns: label, dataset, noise_type, noise_rate, seed, noise_seed, run_id, epoch, kind,
    point, size, precision, recall, min_class_kept, per_class (tuple of K counts).
    """
    if isinstance(records, pd.DataFrame):
        records = records.to_dict("records")
    rows = [row for record in records for row in _rows(record)]
    columns = [*_CELL, "seed", "noise_seed", "run_id", "epoch", "kind", "point", "size",
               "precision", "recall", "min_class_kept", "per_class"]
    return pd.DataFrame(rows, columns=columns)


def final_epoch_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cell and point, at each run's last scored epoch: means over the runs of the kept
    size, the kept set's noise rate (1 - precision), recall and the smallest class count."""
    if frame.empty:
        return frame
    last = frame.groupby("run_id")["epoch"].transform("max")
    final = frame[frame["epoch"] == last].assign(noise_kept=lambda f: 1 - f["precision"])
    return (final.groupby([*_CELL, "kind", "point"], dropna=False)
            .agg(runs=("run_id", "nunique"), epoch=("epoch", "max"), size=("size", "mean"),
                 noise_kept=("noise_kept", "mean"), recall=("recall", "mean"),
                 min_class_kept=("min_class_kept", "mean"))
            .reset_index())


def trained_threshold_table(runs: pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
    """One row per run that trained at a posterior threshold (``method_params.p_threshold``):
    its accuracy (``acc`` when the frame has it, else ``test_acc_last``) and the size and noise
    rate (1 - precision) of its kept set at that threshold, at its last scored epoch.

    Columns: label, dataset, noise_type, noise_rate, seed, run_id, p_threshold, acc, size,
    noise_kept.
    """
    frame = runs if isinstance(runs, pd.DataFrame) else pd.DataFrame(list(runs))
    curves = selection_curve_table(frame)
    columns = [*_CELL, "seed", "run_id", "p_threshold", "acc", "size", "noise_kept"]
    if curves.empty or "method_params" not in frame:
        return pd.DataFrame(columns=columns)
    acc = frame["acc"] if "acc" in frame else frame["test_acc_last"]
    trained = pd.DataFrame({"run_id": frame["run_id"], "acc": pd.to_numeric(acc),
                            "p_threshold": frame["method_params"].map(
                                lambda m: (m or {}).get("p_threshold"))}).dropna()
    curves = curves[curves["kind"] == "posterior"]
    if trained.empty or curves.empty:
        return pd.DataFrame(columns=columns)
    trained["p_threshold"] = trained["p_threshold"].astype(float)
    last = curves[curves["epoch"] == curves.groupby("run_id")["epoch"].transform("max")]
    merged = last.merge(trained, on="run_id")
    merged = merged[np.isclose(merged["point"], merged["p_threshold"])]
    return merged.assign(noise_kept=1 - merged["precision"])[columns].reset_index(drop=True)


def _threshold_lines(runs) -> list[str]:
    table = trained_threshold_table(runs)
    if table.empty:
        return []
    lines = ["", "Accuracy against the kept set of the threshold each run trained with (mean ± std "
             "over its runs; a grid that asks whether the accuracy follows the kept set's noise "
             "tests it in its question section, by seed):", ""]
    means = (table.groupby(_CELL, dropna=False, sort=True)
             .agg(runs=("run_id", "nunique"), acc=("acc", "mean"), sd=("acc", "std"),
                  size=("size", "mean"), noise=("noise_kept", "mean")).reset_index())
    rows = [[row["label"], setting_name(row["noise_type"], row["noise_rate"]), row["runs"],
             f"{row['acc']:.2f} ± {_fmt(row['sd'], '{:.2f}')}", f"{row['size']:.0f}",
             _fmt(100 * row["noise"], "{:.1f}")] for _, row in means.iterrows()]
    lines += markdown_table(rows, ["method", "setting", "runs", "accuracy (%)", "kept", "noise (%)"],
                            style="compact").splitlines()
    return lines


def draw_selection_curves(frame: pd.DataFrame, path: str | Path, *,
                          max_epochs: int = 8) -> Path | None:
    """Label precision against kept size, one panel per cell and one line per epoch (mean over
    the cell's runs; up to ``max_epochs`` epochs evenly spaced). None when nothing to draw."""
    if frame.empty:
        return None
    from bench.figures import _save, plt

    cells = list(frame.groupby(_CELL, dropna=False, sort=True))
    cols = min(3, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (cell, group) in zip(axes.flat, cells):
        epochs = np.unique(group["epoch"])
        shown = epochs[np.unique(np.linspace(0, len(epochs) - 1, max_epochs).round().astype(int))]
        cmap = plt.get_cmap("viridis")
        for i, epoch in enumerate(shown):
            mean = (group[group["epoch"] == epoch].groupby("point")[["size", "precision"]]
                    .mean().sort_index())
            ax.plot(mean["size"], 100 * mean["precision"], marker=".",
                    color=cmap(i / max(len(shown) - 1, 1)), label=f"epoch {epoch}")
        ax.set_title(f"{cell[0]}, {setting_name(cell[2], cell[3])}", fontsize=9)
        ax.set_xlabel("kept samples")
        ax.set_ylabel("label precision (%)")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, Path(path))


def _fmt(value: float, pattern: str) -> str:
    return "n/a" if value is None or not np.isfinite(value) else pattern.format(value)


def selection_section(runs: pd.DataFrame | Sequence[dict], out_dir: str | Path, *,
                      figures: bool = True, figure_link: str | None = None) -> list[str]:
    """Markdown lines of a report's "Selection curves" section ([] without curves).

    Draws ``out_dir/selection_curves.png`` (when ``figures``) and links it as ``figure_link``
    (default: ``<out_dir name>/selection_curves.png``, for a report written beside out_dir).
    """
    frame = selection_curve_table(runs)
    if frame.empty:
        return []
    lines = ["## Selection curves", "",
             "The kept set of each scoring method at every threshold (posterior p: kept when the "
             "clean probability exceeds p) or keep fraction (f: the fraction of each ranked pool "
             "with the smallest loss), against the clean labels, at each run's last scored "
             "epoch; means over the runs of a cell. Noise = 1 - label precision of the kept set; "
             "min class = the smallest per-noisy-class kept count.", ""]
    rows = [[row["label"], setting_name(row["noise_type"], row["noise_rate"]),
             ("p" if row["kind"] == "posterior" else "f") + f" = {row['point']:g}", row["runs"],
             f"{row['size']:.0f}", _fmt(100 * row["noise_kept"], "{:.1f}"), _fmt(100 * row["recall"], "{:.1f}"),
             f"{row['min_class_kept']:.0f}"] for _, row in final_epoch_summary(frame).iterrows()]
    lines += markdown_table(rows, ["method", "setting", "point", "runs", "kept", "noise (%)", "recall (%)",
                                   "min class"], style="compact").splitlines()
    lines += _threshold_lines(runs)
    out_dir = Path(out_dir)
    if figures and draw_selection_curves(frame, out_dir / "selection_curves.png"):
        link = figure_link or f"{out_dir.name}/selection_curves.png"
        lines += ["", f"![label precision against kept size per epoch]({link})"]
    return lines + [""]
