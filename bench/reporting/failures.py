"""Runs that failed in a way a mean hides: a selection that dropped a whole class, and training
that collapsed to chance level (the two causes of a bimodal cell at high noise)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.reporting.records import CELL

DROP_SHARE = 0.5  # a class is dropped when unselected in at least this share of epochs
CHANCE_FACTOR = 1.5  # a run has collapsed when its accuracy is at most this multiple of chance


def _per_class_counts(metrics: object) -> tuple[list, list]:
    """(epochs, per-class selected counts) of the epochs that have counts (none without selection)."""
    if not isinstance(metrics, dict):
        return [], []
    per_class = metrics.get("selected_per_class") or []
    kept = [(e, row) for e, row in zip(metrics.get("epoch") or range(1, len(per_class) + 1), per_class) if row]
    return [e for e, _ in kept], [row for _, row in kept]


def dropped_classes(metrics: object) -> tuple[list[int], int | None]:
    """Classes a run's selection dropped, and the first epoch in which none of them was selected.

    A class counts as dropped when the selected set held none of its (noisy-labelled) samples in
    the last epoch and in at least half of the epochs with per-class counts: a network that never
    trains on a class again cannot predict it, which costs about 1/C of the test accuracy. Classes
    that empty out only at the end (disagreement sets shrinking late, as in Decoupling) do not count.
    """
    epochs, rows = _per_class_counts(metrics)
    if not rows:
        return [], None
    zero = np.asarray(rows) == 0
    classes = [c for c in range(zero.shape[1]) if zero[-1, c] and zero[:, c].mean() >= DROP_SHARE]
    if not classes:
        return [], None
    first = int(np.argmax(zero[:, classes].all(axis=1)))  # first epoch with none of them selected
    return classes, int(epochs[first])


def class_drops(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, method label) with per-class selection counts: the runs that dropped a class."""
    counted = runs["metrics"].map(lambda m: bool(_per_class_counts(m)[1]))
    runs = runs[counted.astype(bool)]
    found = [dropped_classes(m) for m in runs["metrics"]]
    runs = runs.assign(dropped=[f[0] for f in found], from_epoch=[f[1] for f in found])
    rows = []
    for key, group in runs.groupby([*CELL, "label"], dropna=False, sort=True):
        hit = group["dropped"].map(bool)
        bad, good = group[hit].sort_values("seed"), group[~hit]
        rows.append({**dict(zip([*CELL, "label"], key)), "n": len(group), "n_dropped": int(hit.sum()),
                     "seeds": bad["seed"].tolist(), "classes": bad["dropped"].tolist(),
                     "from_epoch": bad["from_epoch"].tolist(),
                     "acc_dropped": float(bad["acc"].mean()) if len(bad) else math.nan,
                     "acc_kept": float(good["acc"].mean()) if len(good) else math.nan})
    return pd.DataFrame(rows, columns=[*CELL, "label", "n", "n_dropped", "seeds", "classes", "from_epoch",
                                       "acc_dropped", "acc_kept"])


def num_classes(record: pd.Series) -> int | None:
    """The number of classes of a run: the side of its realised transition matrix, else the width
    of its per-class selection counts; None when the record holds neither."""
    matrix = record.get("transition_matrix")
    if isinstance(matrix, list) and len(matrix) >= 2:
        return len(matrix)
    rows = _per_class_counts(record.get("metrics"))[1]
    return len(rows[0]) if rows and len(rows[0]) >= 2 else None


def collapsed_at(metrics: object, threshold: float) -> int | None:
    """First epoch from which a run's test accuracy stays at or below ``threshold`` to the end."""
    if not isinstance(metrics, dict) or not metrics.get("test_acc"):
        return None
    curve = np.array([np.nan if v is None else v for v in metrics["test_acc"]], dtype=float)
    above = np.flatnonzero(~(curve <= threshold))  # NaN counts as not collapsed
    start = 0 if above.size == 0 else int(above[-1]) + 1
    if start >= curve.size:
        return None
    epochs = metrics.get("epoch") or range(1, curve.size + 1)
    return int(list(epochs)[start])


def collapses(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, method label): the runs whose reported accuracy is at most CHANCE_FACTOR x chance.

    Such a run has stopped learning (typically the networks predict one class and the loss sits
    near log C): a failure of the method on that seed, not noise around the cell's mean, so the cell's
    mean and t-interval are shown next to its median and the mean of the other runs.
    """
    chance = 100.0 / runs.apply(num_classes, axis=1).astype(float)
    runs = runs.assign(chance=chance, threshold=CHANCE_FACTOR * chance)
    runs["collapsed"] = (runs["acc"] <= runs["threshold"]).fillna(False).astype(bool)
    rows = []
    for key, group in runs.groupby([*CELL, "label"], dropna=False, sort=True):
        bad, good = group[group["collapsed"]].sort_values("seed"), group[~group["collapsed"]]
        rows.append({**dict(zip([*CELL, "label"], key)), "n": len(group), "n_collapsed": len(bad),
                     "chance": float(group["chance"].iloc[0]),
                     "seeds": bad["seed"].tolist(),
                     "from_epoch": [collapsed_at(m, t) for m, t in zip(bad["metrics"], bad["threshold"])],
                     "acc_collapsed": float(bad["acc"].mean()) if len(bad) else math.nan,
                     "acc_others": float(good["acc"].mean()) if len(good) else math.nan,
                     "median": float(group["acc"].median())})
    return pd.DataFrame(rows, columns=[*CELL, "label", "n", "n_collapsed", "chance", "seeds", "from_epoch",
                                       "acc_collapsed", "acc_others", "median"])
