"""The numbers the papers report, as targets for the benchmark.

``bench/paper_numbers.csv`` holds one row per number a paper reports (test accuracy in percent):

============  ===============================================================================
paper         lower-case key: ``coteaching``, ``jocor``, ``dividemix``, ``self_learning``, ``rsl``
table         the table of the paper (``README`` for numbers from a repository's README)
method        suite name (``standard``, ``jocor``, ...); baselines the suite does not implement
              keep a lower-case name of their own (``bootstrap``, ``mlnt``, ...)
dataset       ``mnist``, ``cifar10``, ``cifar100``, ``clothing1m``, ``food101n``, ``webvision``
noise_type    ``symmetric``, ``symmetric_inclusive``, ``pairflip``, ``asymmetric``, ``human``
noise_rate    nominal rate; blank for ``human``
network       suite network name, blank where the suite has none
protocol      ``last``, ``best``, ``last10`` (mean of the last ten epochs) or ``val_loss``
              (the epoch of lowest loss on a noisy validation split)
mean, std     percent; std blank when the paper gives none
n_runs        blank when the paper does not say
provenance    ``verified`` (read from the source), ``secondary`` (read from a source quoting the
              paper) or ``recalled`` (from memory of the literature; a lead, not a target)
note          what the mapping assumed, conflicting copies, the other columns of a table
============  ===============================================================================

Not included: the Co-teaching+ paper tables (no readable copy; the runs of its official code
published by a ReScience reproduction are not paper numbers), the RSL label-precision table
(not an accuracy), and CIFAR-N (no paper number in the sources). For WebVision the row holds the
WebVision-val top-1 accuracy and the note the top-5 and ILSVRC12 columns.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

__all__ = ["PAPER_NUMBERS_CSV", "COLUMNS", "PROVENANCES", "PROTOCOLS", "load_paper_numbers", "lookup"]

PAPER_NUMBERS_CSV = Path(__file__).with_name("paper_numbers.csv")
COLUMNS = ("paper", "table", "method", "dataset", "noise_type", "noise_rate", "network", "protocol",
           "mean", "std", "n_runs", "provenance", "note")
PROVENANCES = ("verified", "secondary", "recalled")
PROTOCOLS = ("last", "best", "last10", "val_loss")
_NUMERIC = ("noise_rate", "mean", "std", "n_runs")
_REQUIRED = ("paper", "table", "method", "dataset", "noise_type", "protocol", "mean", "provenance")


def _number(text: str, *, column: str, line: int) -> float:
    if text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"line {line}: {column} {text!r} is not a number") from None


def _check_row(row: dict, line: int) -> dict:
    for col in _REQUIRED:
        if (row.get(col) or "").strip() == "":
            raise ValueError(f"line {line}: {col} is empty")
    if row["provenance"] not in PROVENANCES:
        raise ValueError(f"line {line}: provenance {row['provenance']!r} is not one of {', '.join(PROVENANCES)}")
    if row["protocol"] not in PROTOCOLS:
        raise ValueError(f"line {line}: protocol {row['protocol']!r} is not one of {', '.join(PROTOCOLS)}")
    out = {col: (row.get(col) or "").strip() for col in COLUMNS}
    for col in _NUMERIC:
        out[col] = _number(out[col], column=col, line=line)
    if not 0.0 <= out["mean"] <= 100.0:
        raise ValueError(f"line {line}: mean {out['mean']} is outside [0, 100]")
    if not math.isnan(out["std"]) and out["std"] < 0:
        raise ValueError(f"line {line}: std {out['std']} is negative")
    if not math.isnan(out["noise_rate"]) and not 0.0 <= out["noise_rate"] <= 1.0:
        raise ValueError(f"line {line}: noise_rate {out['noise_rate']} is outside [0, 1]")
    return out


def load_paper_numbers(path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate the paper numbers; one row per reported number.

    Raises ``ValueError`` naming the file and line of the first bad row (missing column, empty
    required field, unknown provenance or protocol, a mean outside [0, 100]).
    """
    path = Path(path) if path is not None else PAPER_NUMBERS_CSV
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: line 1: missing columns {', '.join(missing)}")
        rows = []
        for row in reader:
            try:
                rows.append(_check_row(row, reader.line_num))
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in _NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def lookup(
    df: pd.DataFrame,
    *,
    paper: str,
    dataset: str,
    noise_type: str,
    noise_rate: float | None,
    method: str,
    protocol: str,
    table: str | None = None,
    tol: float = 1e-6,
) -> pd.Series | None:
    """The paper's number for one setting, or None.

    ``noise_rate`` is compared with tolerance ``tol``; None or NaN matches a blank rate (real-world
    noise). When a paper has the number twice (its table and its repository README) the table
    wins unless ``table`` asks for the other.
    """
    if df is None or df.empty or not paper:
        return None
    mask = (
        (df["paper"].str.lower() == str(paper).lower())
        & (df["dataset"] == dataset)
        & (df["noise_type"] == noise_type)
        & (df["method"] == method)
        & (df["protocol"] == protocol)
    )
    if noise_rate is None or (isinstance(noise_rate, float) and math.isnan(noise_rate)):
        mask &= df["noise_rate"].isna()
    else:
        mask &= (df["noise_rate"] - float(noise_rate)).abs() <= tol
    if table is not None:
        mask &= df["table"] == table
    hits = df[mask]
    if hits.empty:
        return None
    if len(hits) > 1:
        hits = hits.assign(_readme=hits["table"].eq("README")).sort_values("_readme", kind="stable")
        hits = hits.drop(columns="_readme")
    return hits.iloc[0]
