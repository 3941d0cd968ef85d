"""The statistical report of a grid: ``python -m bench.report``.

For every grid under ``results/`` it writes

* ``reports/<grid>.md``: per dataset the mean accuracy with its 95% interval and run count for
  every method and noise setting, the paper's number with its provenance, the test against it
  (Holm-adjusted) and a verdict; the methods of each cell compared pairwise on shared seeds;
  Friedman test, average ranks, critical difference and IQM across cells;
* ``reports/<grid>/summary.csv``: one row per (cell, method label) with every number above;
* ``reports/<grid>/class_drops.csv``: per (cell, method label) with per-class selection counts,
  the runs whose selected set lost a whole class (see ``dropped_classes``), also listed in the
  markdown: one cause of a bimodal cell at high noise;
* ``reports/<grid>/collapses.csv``: per (cell, method label), the runs whose accuracy ended at
  chance level (see ``collapses``), also listed in the markdown: a collapsed seed is what
  stretches a cell's t-interval past [0, 100];
* ``reports/<grid>/*.png``: accuracy against noise rate, test accuracy and label precision per
  epoch, and the critical-difference diagram.

Cells with fewer than two runs are shown, marked with a dagger, and never tested.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from bench import stats
from bench.errors import BenchError
from bench.papers import load_paper_numbers, lookup

__all__ = ["ReportError", "Settings", "build_report", "summarise", "pairwise", "across_cells", "main"]

CELL = ["dataset", "noise_type", "noise_rate", "noise_variant"]
PROTOCOLS = ("last", "best", "last10", "val_loss")
PROTOCOL_TEXT = {
    "last": "test accuracy at the last epoch",
    "best": "best test accuracy over all epochs",
    "last10": "mean test accuracy over the last ten epochs",
    "val_loss": "test accuracy of the last stage's epoch of lowest loss on a noisy validation split",
}
# methods that run a paper's method under another protocol, tested against its number
PAPER_METHOD = {"f_correction_patrini": "f_correction"}
DAGGER = "†"
DROP_SHARE = 0.5  # a class is dropped when unselected in at least this share of epochs
CHANCE_FACTOR = 1.5  # a run has collapsed when its accuracy is at most this multiple of chance


class ReportError(BenchError):
    """Bad input for a report (no records, unknown grid); printed as one line, exit status 2."""


@dataclass(frozen=True)
class Settings:
    protocol: str
    margin: float = 1.0
    alpha: float = 0.05
    confidence: float = 0.95
    n_boot: int = 2000
    seed: int = 0


# --------------------------------------------------------------------------------------------
# Reading the records
# --------------------------------------------------------------------------------------------


def find_grids(results_dir: Path, grid: str | None = None) -> list[str]:
    """The grids to report on: ``grid`` if it has records, else every folder with records."""
    known = sorted(p.name for p in results_dir.iterdir() if p.is_dir() and any(p.glob("*.json"))) \
        if results_dir.is_dir() else []
    if grid is not None:
        if grid in known:
            return [grid]
        if (results_dir / grid).is_dir():
            raise ReportError(f"no run records in {results_dir / grid}")
        listed = ", ".join(known) if known else "none"
        raise ReportError(f"unknown grid {grid!r}: grids with records in {results_dir}: {listed}")
    if not known:
        raise ReportError(f"no run records in {results_dir} (run a grid first)")
    return known


def _from_curve(metrics: object, protocol: str) -> float:
    curve = np.array([np.nan if v is None else v for v in (metrics or {}).get("test_acc", [])], dtype=float) \
        if isinstance(metrics, dict) else np.array([])
    if curve.size == 0:
        return math.nan
    if protocol == "val_loss":
        return _at_lowest_val_loss(metrics, curve)
    return float({"last": curve[-1], "best": np.nanmax(curve), "last10": np.nanmean(curve[-10:])}[protocol])


def _at_lowest_val_loss(metrics: dict, curve: np.ndarray) -> float:
    """Test accuracy at the first epoch of lowest ``extra.val_loss`` within the last ``extra.stage``
    (Keras' ``ModelCheckpoint(monitor='val_loss', save_best_only=True)``); NaN without a val_loss."""
    extra = metrics.get("extra") or {}
    val = np.array([np.nan if v is None else v for v in extra.get("val_loss") or []], dtype=float)
    if val.size != curve.size or np.isnan(val).all():
        return math.nan
    stage = np.array([np.nan if v is None else v for v in extra.get("stage") or [1.0] * val.size], dtype=float)
    val[stage != np.nanmax(stage)] = np.nan
    return float(curve[int(np.nanargmin(val))])


def load_runs(results_dir: Path, grid: str) -> pd.DataFrame:
    """The successful runs of one grid, one row per run, with the cell columns normalised."""
    from bench.store import load_records

    try:
        runs = load_records(results_dir, grid)
    except (OSError, ValueError) as err:
        raise ReportError(f"cannot read the records of grid {grid!r}: {err}") from None
    if "smoke" in runs:  # smoke runs check that a path trains; they are never reported
        runs = runs[runs["smoke"].ne(True)]
    if runs.empty:
        raise ReportError(f"no successful runs in {results_dir / grid}")
    runs = runs.copy()
    for col, default in (("label", None), ("paper", None), ("protocol", None), ("noise_variant", None),
                         ("noise_seed", 0), ("seed", 0), ("metrics", None), ("realised_noise_rate", np.nan)):
        if col not in runs:
            runs[col] = default
    runs["label"] = runs["label"].fillna(runs["method"])
    runs["grid"] = grid
    runs["noise_rate"] = pd.to_numeric(runs["noise_rate"], errors="coerce").astype(float)
    # "" rather than None so that groupby keeps cells without a variant together.
    runs["noise_variant"] = runs["noise_variant"].fillna("").astype(str)
    return runs


def grid_protocol(runs: pd.DataFrame) -> str:
    """The grid's ``reference.protocol`` (the most common one), else ``last10``."""
    values = runs["protocol"].dropna()
    values = values[values.isin(PROTOCOLS)]
    return str(values.mode().iloc[0]) if not values.empty else "last10"


def with_accuracy(runs: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Add ``acc``: the accuracy the protocol reports, from the record or else its curve."""
    col = f"test_acc_{protocol}"
    acc = pd.to_numeric(runs[col], errors="coerce") if col in runs else pd.Series(np.nan, index=runs.index)
    fallback = runs["metrics"].map(lambda m: _from_curve(m, protocol))
    # a method that selects its reported checkpoint on validation loss is reported at it
    selected = runs["metrics"].map(lambda m: _from_curve(m, "val_loss"))
    return runs.assign(acc=selected.fillna(acc.fillna(fallback)).astype(float),
                       acc_protocol=np.where(selected.notna(), "val_loss", protocol))


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


def _first(values: pd.Series) -> object:
    values = values.dropna()
    return values.iloc[0] if not values.empty else None


def summarise(runs: pd.DataFrame, papers: pd.DataFrame, settings: Settings, *, rng: np.random.Generator) -> pd.DataFrame:
    """One row per (cell, label): description, the paper's number and the test against it.

    Tests are Holm-adjusted across each dataset's table; the verdict uses the adjusted p-values.
    """
    rows, tests = [], []
    for key, group in runs.groupby(CELL + ["label"], dropna=False, sort=True):
        dataset, noise_type, noise_rate, variant, label = key
        x = group["acc"].dropna().to_numpy(dtype=float)
        desc = stats.describe(x, confidence=settings.confidence, n_boot=settings.n_boot, rng=rng)
        method, paper = str(group["method"].iloc[0]), _first(group["paper"])
        prow = lookup(papers, paper=paper, dataset=dataset, noise_type=noise_type, noise_rate=noise_rate,
                      method=PAPER_METHOD.get(method, method), protocol=settings.protocol) if paper else None
        row = {"grid": group["grid"].iloc[0], "dataset": dataset, "noise_type": noise_type,
               "noise_rate": noise_rate, "noise_variant": variant, "method": method, "label": label,
               "protocol": _first(group["acc_protocol"]) if "acc_protocol" in group else settings.protocol, **{k: v for k, v in desc.as_dict().items() if k != "note"},
               "realised_noise_rate": float(pd.to_numeric(group["realised_noise_rate"], errors="coerce").mean()),
               "paper": paper, "paper_table": None, "paper_mean": np.nan, "paper_std": np.nan,
               "paper_n": np.nan, "provenance": None, "diff": np.nan, "test": None, "p_value": np.nan,
               "p_holm": np.nan, "p_tost": np.nan, "p_tost_holm": np.nan,
               "verdict": stats.TOO_FEW if desc.n < 2 else "", "seeds_needed": np.nan, "note": desc.note}
        test = None
        if prow is not None:
            row.update(paper_table=prow["table"], paper_mean=prow["mean"], paper_std=prow["std"],
                       paper_n=prow["n_runs"], provenance=prow["provenance"])
            test = stats.test_against_paper(x, paper_mean=prow["mean"], paper_std=prow["std"],
                                            paper_n=prow["n_runs"], margin=settings.margin, alpha=settings.alpha)
            row.update(diff=test.diff, test=test.test, p_value=test.p_value, p_tost=test.p_tost,
                       verdict=test.verdict, seeds_needed=test.seeds_needed)
        rows.append(row)
        tests.append(test)
    summary = pd.DataFrame(rows)
    for _, idx in summary.groupby("dataset").groups.items():
        tested = [i for i in idx if tests[i] is not None]
        for i, adj in zip(tested, stats.apply_holm([tests[i] for i in tested], alpha=settings.alpha)):
            summary.loc[i, ["p_holm", "p_tost_holm", "verdict", "seeds_needed"]] = [
                adj["p_holm"], adj["p_tost_holm"], adj["verdict"], adj["seeds_needed"]]
    return summary


def _by_seed(group: pd.DataFrame) -> pd.Series:
    # A rerun of the same (seed, noise_seed) is averaged so that pairs stay one-to-one.
    return group.groupby(["seed", "noise_seed"])["acc"].mean().dropna()


def pairwise(runs: pd.DataFrame, settings: Settings, *, rng: np.random.Generator) -> pd.DataFrame:
    """Every pair of labels within each cell, paired by (seed, noise_seed); Holm within a cell."""
    out = []
    for cell, group in runs.groupby(CELL, dropna=False, sort=True):
        per_label = {label: _by_seed(g) for label, g in group.groupby("label", sort=True)}
        rows = []
        for a, b in itertools.combinations(sorted(per_label), 2):
            joined = pd.concat([per_label[a], per_label[b]], axis=1, join="inner").to_numpy()
            res = stats.paired_comparison(joined[:, 0], joined[:, 1], confidence=settings.confidence,
                                          n_boot=settings.n_boot, rng=rng)
            rows.append({**dict(zip(CELL, cell)), "a": a, "b": b, **res.as_dict()})
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame["p_t_holm"] = stats.holm(frame["p_t"])
        frame["p_wilcoxon_holm"] = stats.holm(frame["p_wilcoxon"])
        out.append(frame)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


@dataclass
class Across:
    """Friedman / ranks / CD over cells where every label ran, and IQM per dataset."""

    labels: list[str]
    n_cells: int
    friedman: stats.FriedmanResult | None
    iqm: pd.DataFrame
    note: str


def across_cells(runs: pd.DataFrame, summary: pd.DataFrame, settings: Settings, *,
                 rng: np.random.Generator) -> Across:
    # A string key per cell: NaN rates (real-world noise) would otherwise vanish from the index.
    keyed = summary.assign(cell=["|".join(map(str, key)) for key in summary[CELL].itertuples(index=False)])
    matrix = keyed.pivot(index="cell", columns="label", values="mean")
    complete = matrix.dropna()
    note = ""
    if len(complete) < len(matrix):
        note = f"{len(matrix) - len(complete)} of {len(matrix)} cells left out: not every method ran there"
    labels = [str(c) for c in complete.columns]
    result = stats.friedman(complete.to_numpy(), alpha=settings.alpha) \
        if len(labels) >= 2 and len(complete) >= 1 else None
    iqm_rows = []
    for (dataset, label), group in runs.groupby(["dataset", "label"], sort=True):
        per_cell = [g["acc"].dropna().to_numpy() for _, g in group.groupby(CELL[1:], dropna=False)]
        value, low, high = stats.iqm_interval(per_cell, confidence=settings.confidence,
                                              n_boot=settings.n_boot, rng=rng)
        iqm_rows.append({"dataset": dataset, "label": label, "cells": len(per_cell),
                         "runs": int(sum(len(c) for c in per_cell)), "iqm": value, "low": low, "high": high})
    return Across(labels, len(complete), result, pd.DataFrame(iqm_rows), note)


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


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def _f(x: object, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float, np.floating)) and np.isfinite(x) else ""


def _p(p: object) -> str:
    if not isinstance(p, (int, float, np.floating)) or not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def setting_name(noise_type: str, noise_rate: float, variant: str = "") -> str:
    rate = f" {noise_rate * 100:g}%" if isinstance(noise_rate, float) and np.isfinite(noise_rate) else ""
    return f"{noise_type}{rate}" + (f" ({variant})" if variant else "")


def _settings(frame: pd.DataFrame) -> list[str]:
    """The setting name of each row of a frame with the noise columns of CELL."""
    return [setting_name(t, r, v) for t, r, v in zip(frame["noise_type"], frame["noise_rate"], frame["noise_variant"])]


def _slug(dataset: str, noise_type: str, noise_rate: float, variant: str) -> str:
    rate = f"_{noise_rate:g}" if np.isfinite(noise_rate) else ""
    return f"{dataset}_{noise_type}{rate}" + (f"_{variant}" if variant else "")


def _ours(row: pd.Series) -> str:
    if row["n"] < 2:
        return f"{_f(row['mean'])} ({row['n']}) {DAGGER}"
    return f"{_f(row['mean'])} [{_f(row['ci_low'])}, {_f(row['ci_high'])}] ({row['n']})"


def _paper(row: pd.Series) -> str:
    if not np.isfinite(row["paper_mean"]):
        return ""
    std = f" ± {_f(row['paper_std'])}" if np.isfinite(row["paper_std"]) else ""
    return f"{_f(row['paper_mean'])}{std} ({row['provenance']})"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def _drops_section(drops: pd.DataFrame) -> list[str]:
    """The runs whose selection dropped a whole class, or one line saying that none did."""
    if drops.empty:
        return []
    head = ["### Classes dropped by the selection", ""]
    hits = drops[drops["n_dropped"] > 0]
    if hits.empty:
        return head + [f"No run's selected set lost a whole class (none of its samples selected in the last "
                       f"epoch and in at least {DROP_SHARE:.0%} of the epochs).", ""]
    shown = pd.DataFrame({
        "setting": _settings(hits),
        "method": hits["label"],
        "runs": [f"{k} of {n}" for k, n in zip(hits["n_dropped"], hits["n"])],
        "seed: classes (first epoch without them)": ["; ".join(f"{s}: {', '.join(map(str, c))} ({int(e)})"
                                                 for s, c, e in zip(seeds, classes, start))
                                       for seeds, classes, start in zip(hits["seeds"], hits["classes"], hits["from_epoch"])],
        "accuracy, these runs": hits["acc_dropped"].map(_f),
        "accuracy, the others": hits["acc_kept"].map(_f),
    })
    return head + [f"Runs whose selected set held no sample of some class (by its noisy label) in the last epoch "
                   f"and in at least {DROP_SHARE:.0%} of the epochs: the networks stop learning that class, "
                   f"which costs about one class's share of the test accuracy.", "", _table(shown), ""]


def _collapse_section(found: pd.DataFrame) -> list[str]:
    """The runs that ended at chance level; nothing when none did."""
    hits = found[found["n_collapsed"] > 0]
    if hits.empty:
        return []
    shown = pd.DataFrame({
        "setting": _settings(hits),
        "method": hits["label"],
        "runs": [f"{k} of {n}" for k, n in zip(hits["n_collapsed"], hits["n"])],
        "seed (at chance from epoch)": ["; ".join(f"{s} ({e})" if e is not None else f"{s}" for s, e in zip(seeds, start))
                                        for seeds, start in zip(hits["seeds"], hits["from_epoch"])],
        "accuracy, these runs": hits["acc_collapsed"].map(_f),
        "accuracy, the others": hits["acc_others"].map(_f),
        "median, all runs": hits["median"].map(_f),
    })
    return ["### Runs at chance level", "",
            f"Runs whose accuracy is at most {CHANCE_FACTOR:g} times chance (100/C %): training collapsed and "
            f"the networks do no better than a guess. Such a run is a failure of the method on that seed, not "
            f"spread around the mean; it pulls the cell's mean down and widens its t-interval, past [0, 100] "
            f"with few seeds (the BCa interval stays inside).", "", _table(shown), ""]


def _dataset_section(dataset: str, summary: pd.DataFrame, pairs: pd.DataFrame, settings: Settings,
                     figures: dict[str, Path], drops: pd.DataFrame | None = None,
                     collapsed: pd.DataFrame | None = None) -> list[str]:
    data = summary[summary["dataset"] == dataset].copy()
    data["setting"] = _settings(data)
    settings_order = list(dict.fromkeys(data["setting"]))
    matrix = data.assign(cell=data.apply(_ours, axis=1)).pivot(index="label", columns="setting", values="cell")
    matrix = matrix.reindex(columns=settings_order).fillna("").reset_index().rename(columns={"label": "method"})
    lines = [f"## {dataset}", "", "Mean test accuracy (%) [95% t-interval over seeds] (runs):", "", _table(matrix), ""]
    against = pd.DataFrame({
        "setting": data["setting"], "method": data["label"],
        "ours [95% CI]": data.apply(_ours, axis=1),
        "BCa 95%": [f"[{_f(lo)}, {_f(hi)}]" if np.isfinite(lo) else "" for lo, hi in zip(data["boot_low"], data["boot_high"])],
        "realised noise": data["realised_noise_rate"].map(lambda v: _f(v, 3)),
        "paper": data.apply(_paper, axis=1), "Δ": data["diff"].map(_f),
        "p (Holm)": data["p_holm"].map(_p), "TOST p (Holm)": data["p_tost_holm"].map(_p),
        "verdict": data["verdict"],
        "seeds for equivalence": [_f(s, 0) if v == stats.INCONCLUSIVE else "" for s, v in zip(data["seeds_needed"], data["verdict"])],
    })
    if not data["paper_mean"].notna().any():  # no paper number here: keep our own columns
        against = against.drop(columns=["paper", "Δ", "p (Holm)", "TOST p (Holm)", "verdict",
                                        "seeds for equivalence"])
        lines += ["### Intervals (no paper number for this table)", "", _table(against), ""]
    else:
        lines += ["### Against the paper", "", _table(against), ""]
    if drops is not None:
        lines += _drops_section(drops[drops["dataset"] == dataset])
    if collapsed is not None:
        lines += _collapse_section(collapsed[collapsed["dataset"] == dataset])
    cell_pairs = pairs[pairs["dataset"] == dataset] if not pairs.empty else pairs
    if not cell_pairs.empty:
        lines += ["### Methods compared within each cell (paired by seed)", "",
                  "The mean difference, its interval, the t-test and the Wilcoxon test pair the runs of a and b "
                  "by seed; P(a > b) does not: it is the share of all (run of a, run of b) pairs in which a "
                  "scores higher (the probability of improvement, ties counting one half), with a percentile "
                  "bootstrap interval.", ""]
        for cell, group in cell_pairs.groupby(CELL[1:], dropna=False, sort=True):
            shown = pd.DataFrame({
                "a": group["a"], "b": group["b"], "pairs": group["n"].astype(str),
                "mean a − b [95% CI]": [f"{_f(d)} [{_f(lo)}, {_f(hi)}]" if n >= 2 else f"{_f(d)} {DAGGER}"
                                        for d, lo, hi, n in zip(group["mean_diff"], group["ci_low"], group["ci_high"], group["n"])],
                "t-test p (Holm)": group["p_t_holm"].map(_p), "Wilcoxon p (Holm)": group["p_wilcoxon_holm"].map(_p),
                "P(a > b) [95% CI]": [f"{_f(p)} [{_f(lo)}, {_f(hi)}]" if np.isfinite(lo) else _f(p)
                                      for p, lo, hi in zip(group["prob_improvement"], group["poi_low"], group["poi_high"])],
            })
            lines += [f"**{setting_name(*cell)}**", "", _table(shown), ""]
    curves = [(key[0], key[1:], path) for key, path in figures.items()
              if isinstance(key, tuple) and key[1] == dataset]
    if curves:
        lines.append("Per-epoch curves (mean and 95% band): " + ", ".join(
            f"[{kind.replace('_', ' ')}, {setting_name(*cell[1:])}]({path.parent.name}/{path.name})" for kind, cell, path in curves))
        lines.append("")
    return lines


def _tested_cd(fr: stats.FriedmanResult) -> float:
    """The Nemenyi critical difference where the Friedman test ran, else NaN: without the omnibus
    test the CD means nothing, so it is neither printed nor drawn."""
    return fr.cd if np.isfinite(fr.statistic) else math.nan


def _across_section(across: Across, settings: Settings, figures: dict) -> list[str]:
    lines = ["## Across cells", ""]
    fr = across.friedman
    if fr is None:
        lines += ["Fewer than two methods or no cell where every method ran: no ranking.", ""]
    else:
        if np.isfinite(_tested_cd(fr)):
            test = (f"Friedman χ² = {_f(fr.statistic)}, p = {_p(fr.p_value)}; {fr.n_cells} cells, {fr.k} methods; "
                    f"Nemenyi critical difference (α = {settings.alpha:g}) = {_f(fr.cd)} ranks.")
        else:
            test = f"Friedman test not run ({fr.note}); {fr.n_cells} cells, {fr.k} methods."
        lines += [test, ""]
        ranks = pd.DataFrame({"method": across.labels, "average rank": [_f(r) for r in fr.ranks]})
        lines += [_table(ranks.iloc[np.argsort(fr.ranks)]), ""]
    if across.note:
        lines += [f"({across.note}.)", ""]
    if not across.iqm.empty:
        iqm = across.iqm.assign(**{"IQM [95% CI]": [f"{_f(v)} [{_f(lo)}, {_f(hi)}]" for v, lo, hi in
                                                    zip(across.iqm["iqm"], across.iqm["low"], across.iqm["high"])]})
        shown = iqm.pivot(index="label", columns="dataset", values="IQM [95% CI]").fillna("").reset_index()
        lines += ["Interquartile mean of all runs per dataset (25% trimmed mean; stratified bootstrap "
                  "interval resampling runs within each cell):", "", _table(shown.rename(columns={"label": "method"})), ""]
    for key, title in (("accuracy_vs_noise", "Accuracy against noise rate"), ("cd_diagram", "Critical-difference diagram")):
        if key in figures:
            path = figures[key]
            lines += [f"![{title}]({path.parent.name}/{path.name})", ""]
    return lines


def compute_text(runs: pd.DataFrame) -> str:
    """Where the runs trained and for how long (runs copied from another grid counted apart)."""
    if "wall_seconds" not in runs or "device" not in runs:
        return ""
    reused = runs["reused_from"].notna() if "reused_from" in runs else pd.Series(False, index=runs.index)
    own = runs[~reused]
    parts = []
    for device, group in own.groupby(own["device"].fillna("unknown").astype(str).str.split(":").str[0]):
        hours = pd.to_numeric(group["wall_seconds"], errors="coerce").sum() / 3600.0
        parts.append(f"{hours:.1f} h on {device} over {_plural(len(group), 'run')} "
                     f"({hours * 60 / max(len(group), 1):.1f} min per run)")
    text = "Compute (run wall time): " + "; ".join(parts) if parts else ""
    if reused.any():
        sources = ", ".join(sorted({str(r.get("grid")) for r in runs.loc[reused, "reused_from"]}))
        n = int(reused.sum())
        text += (f"{'; ' if text else 'Compute: '}{_plural(n, 'run')} "
                 f"{'is an identical configuration' if n == 1 else 'are identical configurations'} "
                 f"trained for grid {sources} and reused here")
    return text + "." if text else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render(grid: str, summary: pd.DataFrame, pairs: pd.DataFrame, across: Across, settings: Settings,
           figures: dict, compute: str = "", drops: pd.DataFrame | None = None,
           collapsed: pd.DataFrame | None = None) -> str:
    n_runs = int(summary["n"].sum())
    lines = [
        f"# Report: {grid}", "",
        f"{n_runs} runs, {summary[CELL].drop_duplicates().shape[0]} noise settings, "
        f"{summary['label'].nunique()} methods. Protocol `{settings.protocol}`: {PROTOCOL_TEXT[settings.protocol]}."
        + "".join(f" {', '.join(sorted(set(summary.loc[summary['protocol'] == p, 'label'])))}: protocol `{p}`, "
                  f"{PROTOCOL_TEXT[p]}." for p in sorted(set(summary["protocol"]) - {settings.protocol}))
        + (f" {compute}" if compute else ""), "",
        f"Against a paper's number: Welch's t-test when the paper gives std and run count, else a one-sample "
        f"t-test; equivalence by two one-sided tests within ±{settings.margin:g} accuracy points; p-values "
        f"Holm-adjusted across each dataset's table. Verdicts: **reproduced** (equivalent within the margin), "
        f"**below** / **above** (significantly different), **inconclusive** (neither; the seeds column says how "
        f"many seeds equivalence would need at the observed std), **{stats.TOO_FEW}** ({DAGGER}: one run, "
        f"shown but never tested). A paper number's provenance is in brackets: verified, secondary (a source "
        f"quoting the paper) or recalled (from memory of the literature, a lead only).", "",
    ]
    for dataset in dict.fromkeys(summary["dataset"]):
        lines += _dataset_section(dataset, summary, pairs, settings, figures, drops, collapsed)
    lines += _across_section(across, settings, figures)
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# Figures and the whole report
# --------------------------------------------------------------------------------------------


def _draw(grid_dir: Path, runs: pd.DataFrame, summary: pd.DataFrame, across: Across, settings: Settings) -> dict:
    from bench import figures as fig

    out: dict = {}
    path = fig.accuracy_vs_noise(summary, grid_dir / "accuracy_vs_noise.png", protocol=settings.protocol)
    if path:
        out["accuracy_vs_noise"] = path
    for cell, group in runs.groupby(CELL, dropna=False, sort=True):
        name = setting_name(*cell[1:])
        slug = _slug(*cell)
        for metric, ylabel, scale in (("test_acc", "test accuracy (%)", 1.0),
                                      ("label_precision", "label precision of the selected set (%)", 100.0)):
            path = fig.epoch_curves(group, grid_dir / f"{metric}_{slug}.png", metric=metric,
                                    title=f"{cell[0]}, {name}", ylabel=ylabel, scale=scale)
            if path:
                out[(metric, *cell)] = path
    fr = across.friedman
    if fr is not None and np.isfinite(_tested_cd(fr)):
        path = fig.cd_diagram(fr.ranks, across.labels, cd=fr.cd, path=grid_dir / "cd_diagram.png",
                              title=f"average ranks over {fr.n_cells} cells")
        if path:
            out["cd_diagram"] = path
    return out


def build_report(results_dir: str | Path, out_dir: str | Path, *, grid: str | None = None,
                 protocol: str | None = None, margin: float = 1.0, seed: int = 0, figures: bool = True,
                 n_boot: int = 2000, papers: pd.DataFrame | None = None) -> list[Path]:
    """Write the report of each grid (or of ``grid``); returns the markdown files written."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    papers = load_paper_numbers() if papers is None else papers
    written = []
    for name in find_grids(results_dir, grid):
        runs = load_runs(results_dir, name)
        settings = Settings(protocol=protocol or grid_protocol(runs), margin=margin, n_boot=n_boot, seed=seed)
        runs = with_accuracy(runs, settings.protocol)
        rng = np.random.default_rng(seed)
        summary = summarise(runs, papers, settings, rng=rng)
        pairs = pairwise(runs, settings, rng=rng)
        across = across_cells(runs, summary, settings, rng=rng)
        grid_dir = out_dir / name
        grid_dir.mkdir(parents=True, exist_ok=True)
        if figures:  # figures of an earlier report that this one would not draw must not linger
            for stale in grid_dir.glob("*.png"):
                stale.unlink()
        drawn = _draw(grid_dir, runs, summary, across, settings) if figures else {}
        summary.to_csv(grid_dir / "summary.csv", index=False)
        md = out_dir / f"{name}.md"
        drops = class_drops(runs)
        drops.to_csv(grid_dir / "class_drops.csv", index=False)
        collapsed = collapses(runs)
        collapsed.to_csv(grid_dir / "collapses.csv", index=False)
        md.write_text(render(name, summary, pairs, across, settings, drawn, compute_text(runs), drops, collapsed),
                      encoding="utf-8")
        written.append(md)
    return written


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="folder of run records (default: results)")
    p.add_argument("--out", default="reports", help="folder for the reports (default: reports)")
    p.add_argument("--grid", default=None, help="report on this grid only (default: every grid)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="accuracy to report (default: the grid's reference.protocol, else last10)")
    p.add_argument("--margin", type=float, default=1.0, help="equivalence margin in accuracy points (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--no-figures", action="store_true", help="write no PNG files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        written = build_report(args.results, args.out, grid=args.grid, protocol=args.protocol,
                               margin=args.margin, seed=args.seed, figures=not args.no_figures,
                               n_boot=args.n_boot)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
