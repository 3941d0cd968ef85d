"""A grid's records as a report reads them: the grids with records, one row per run that joins a
cell (cell columns normalised), the records left out, and the accuracy each run reports under a
protocol (from the record, else from its per-epoch curve)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.left_out import GRIDS_DIR, split_runs
from bench.protocols import PROTOCOLS, clean_val_index

CELL = ["dataset", "noise_type", "noise_rate", "noise_variant"]


class ReportError(BenchError):
    """Bad input for a report (no records, unknown grid); printed as one line, exit status 2."""


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


def from_curve(metrics: object, protocol: str) -> float:
    """The accuracy ``protocol`` reports, from a record's per-epoch ``metrics``; NaN without a curve."""
    if not isinstance(metrics, dict):
        return math.nan
    curve = np.array([np.nan if v is None else v for v in metrics.get("test_acc", [])], dtype=float)
    if curve.size == 0:
        return math.nan
    if protocol == "clean_val":   # records made with a clean split carry test_acc_clean_val
        pos = clean_val_index(metrics.get("val_acc", []))
        return math.nan if pos is None else float(curve[pos])
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
    """The runs of one grid that join its cells, one row per run (see :func:`load_grid_runs`);
    ``attrs["left_out"]`` lists the damaged files skipped, as (path, reason) pairs."""
    runs, _, damaged = load_grid_runs(results_dir, grid)
    runs.attrs["left_out"] = damaged
    return runs


def load_grid_runs(results_dir: Path, grid: str, *, grids_dir: Path = GRIDS_DIR) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """(runs that join cells, with the cell columns normalised; records left out, with ``why``;
    damaged files as (path, reason), from the store's ``attrs["left_out"]``)."""
    from bench.store import load_records

    try:
        records = load_records(results_dir, grid, include_failed=True)
        runs, left = split_runs(records, grid, grids_dir=grids_dir)
    except (OSError, ValueError, BenchError) as err:
        raise ReportError(f"cannot read the records of grid {grid!r}: {err}") from None
    damaged = list(records.attrs.get("left_out") or [])
    if "smoke" in runs:  # smoke runs check that a path trains; they are never reported
        runs = runs[runs["smoke"].ne(True)]
    if runs.empty:
        why = f": {len(left)} left out, e.g. {left['why'].iloc[0]}" if len(left) else ""
        if damaged:
            why += (f" ({len(damaged)} damaged record(s) left out, e.g. {damaged[0][0]}: "
                    f"{damaged[0][1]})")
        raise ReportError(f"no successful runs in {results_dir / grid}{why}")
    for path, reason in damaged:
        print(f"warning: record left out of the report: {path}: {reason}", file=sys.stderr)
    runs = runs.copy()
    for col, default in (("label", None), ("paper", None), ("protocol", None), ("noise_variant", None),
                         ("noise_seed", 0), ("seed", 0), ("metrics", None), ("realised_noise_rate", np.nan),
                         ("noise_draw", "suite")):
        if col not in runs:
            runs[col] = default
    runs["label"] = runs["label"].fillna(runs["method"])
    runs["grid"] = grid
    runs["noise_rate"] = pd.to_numeric(runs["noise_rate"], errors="coerce").astype(float)
    # "" rather than None so that groupby keeps cells without a variant together.
    runs["noise_variant"] = runs["noise_variant"].fillna("").astype(str)
    runs.attrs = {}
    return runs, left, damaged


def grid_protocol(runs: pd.DataFrame) -> str:
    """The grid's ``reference.protocol`` (the most common one), else ``last10``."""
    values = runs["protocol"].dropna()
    values = values[values.isin(PROTOCOLS)]
    return str(values.mode().iloc[0]) if not values.empty else "last10"


def with_accuracy(runs: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Add ``acc``: the accuracy the protocol reports, from the record or else its curve."""
    col = f"test_acc_{protocol}"
    acc = pd.to_numeric(runs[col], errors="coerce") if col in runs else pd.Series(np.nan, index=runs.index)
    fallback = runs["metrics"].map(lambda m: from_curve(m, protocol))
    # a method that selects its reported checkpoint on validation loss is reported at it
    selected = runs["metrics"].map(lambda m: from_curve(m, "val_loss"))
    return runs.assign(acc=selected.fillna(acc.fillna(fallback)).astype(float),
                       acc_protocol=np.where(selected.notna(), "val_loss", protocol))
