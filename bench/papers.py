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
protocol      ``last``, ``best``, ``last10`` (mean of the last ten epochs), ``clean_val`` (test
              accuracy at the epoch of best accuracy on a clean held-out validation set) or
              ``val_loss`` (the epoch of lowest loss on a noisy validation split)
mean, std     percent; std blank when the paper gives none
n_runs        the number of runs behind the mean where a source states it (where, in ``note``);
              blank when no source says; a whole number >= 1
std_over      what the std is taken over: ``runs`` (across independent runs), ``epochs`` (e.g.
              the last ten epochs of one run: no run-to-run variance in it) or ``unknown``;
              blank exactly when ``std`` is blank
provenance    ``verified`` (read from the source), ``secondary`` (read from a source quoting the
              paper) or ``recalled`` (from memory of the literature; a lead, not a target)
note          what the mapping assumed, conflicting copies, the other columns of a table
============  ===============================================================================

Not included: the Co-teaching+ paper tables (no readable copy; the runs of its official code
published by a ReScience reproduction are not paper numbers), the RSL label-precision table
(not an accuracy), and CIFAR-N (no paper number in the sources). For WebVision the row holds the
WebVision-val top-1 accuracy and the note the top-5 and ILSVRC12 columns.

The paper's own uncertainty: where a std is given without a run count, a test needs an assumed
n. :data:`DEFAULT_N_RUNS` holds one per paper, with its reason, and :func:`paper_runs` returns
the stated count or that default, marked as assumed, so that a verdict can say it relied on it.

``bench/claims.csv`` holds the papers' ordinal claims ("JoCoR beats Co-teaching+ at symmetric
80% on MNIST"), one row each:

============  ===============================================================================
paper, table  as above: the table whose numbers (or text) make the claim
dataset       as above
noise_type    as above
noise_rate    as above; blank for ``human``
better        the method the paper places higher (suite names as above)
worse         the method it places lower
protocol      as above
provenance    the weaker of the provenances of the two numbers (``recalled`` if either is)
source        where the paper states it: its table, or a quoted sentence of its text
note          what the claim rests on
============  ===============================================================================

:func:`load_claims` validates it with the same one-line errors; ``bench.claims`` tests it.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from bench.protocols import PROTOCOLS

__all__ = ["PAPER_NUMBERS_CSV", "CLAIMS_CSV", "COLUMNS", "CLAIM_COLUMNS", "PROVENANCES", "PROTOCOLS",
           "STD_OVER", "DEFAULT_N_RUNS", "load_paper_numbers", "load_claims", "lookup", "paper_runs"]

PAPER_NUMBERS_CSV = Path(__file__).with_name("paper_numbers.csv")
CLAIMS_CSV = Path(__file__).with_name("claims.csv")
COLUMNS = ("paper", "table", "method", "dataset", "noise_type", "noise_rate", "network", "protocol",
           "mean", "std", "n_runs", "std_over", "provenance", "note")
CLAIM_COLUMNS = ("paper", "table", "dataset", "noise_type", "noise_rate", "better", "worse", "protocol",
                 "provenance", "source", "note")
PROVENANCES = ("verified", "secondary", "recalled")
STD_OVER = ("runs", "epochs", "unknown")
_NUMERIC = ("noise_rate", "mean", "std", "n_runs")
_REQUIRED = ("paper", "table", "method", "dataset", "noise_type", "protocol", "mean", "provenance")
_CLAIM_REQUIRED = ("paper", "table", "dataset", "noise_type", "better", "worse", "protocol", "provenance",
                   "source")

# The run count assumed behind a paper's mean where no source states one (reference:
# methods.md of the project's sources). A test that uses it says so.
DEFAULT_N_RUNS = {
    # Trials not stated in any retrievable source; 5 is likely: the Co-teaching+ scripts of the
    # same group, on the same noisify code, run seeds 1-5.
    "coteaching": 5,
    # Recalled as "mean ± std over 5 trials"; its scripts run seeds 1-5 (no table in the registry).
    "coteaching_plus": 5,
    # Recalled as "mean ± std over several runs", count not stated; the code descends from
    # Co-teaching's, so the same 5 is assumed.
    "jocor": 5,
    # The author states "one run only" for Clothing1M (issue #1); Table 1 gives no std either.
    "dividemix": 1,
    # One test accuracy per setting, no std and no run count: a single run.
    "self_learning": 1,
    # No std and no run count in Tables 2-4: apparently a single run.
    "rsl": 1,
}


def _number(text: str, *, column: str, line: int) -> float:
    if text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"line {line}: {column} {text!r} is not a number") from None


def _check_row(row: dict[str, str | None], line: int) -> dict[str, str | float]:
    for col in _REQUIRED:
        if (row.get(col) or "").strip() == "":
            raise ValueError(f"line {line}: {col} is empty")
    _check_choice(row, "provenance", PROVENANCES, line)
    _check_choice(row, "protocol", PROTOCOLS, line)
    text = {col: (row.get(col) or "").strip() for col in COLUMNS}
    numbers = {col: _number(text[col], column=col, line=line) for col in _NUMERIC}
    if not 0.0 <= numbers["mean"] <= 100.0:
        raise ValueError(f"line {line}: mean {numbers['mean']} is outside [0, 100]")
    if not math.isnan(numbers["std"]) and numbers["std"] < 0:
        raise ValueError(f"line {line}: std {numbers['std']} is negative")
    _check_rate(numbers["noise_rate"], line)
    _check_uncertainty(numbers["n_runs"], numbers["std"], text["std_over"], line)
    return {**text, **numbers}


def _check_rate(rate: float, line: int) -> None:
    if not math.isnan(rate) and not 0.0 <= rate <= 1.0:
        raise ValueError(f"line {line}: noise_rate {rate} is outside [0, 1]")


def _check_choice(row: Mapping[str, str | None], col: str, choices: tuple[str, ...], line: int) -> None:
    if row[col] not in choices:
        raise ValueError(f"line {line}: {col} {row[col]!r} is not one of {', '.join(choices)}")


def _check_uncertainty(n_runs: float, std: float, std_over: str, line: int) -> None:
    if not math.isnan(n_runs) and (n_runs < 1 or n_runs != int(n_runs)):
        raise ValueError(f"line {line}: n_runs {n_runs:g} is not a whole number >= 1")
    if math.isnan(std):
        if std_over:
            raise ValueError(f"line {line}: std_over {std_over!r} is given without a std")
    elif std_over not in STD_OVER:
        raise ValueError(f"line {line}: std_over {std_over!r} is not one of {', '.join(STD_OVER)} "
                         "(required where a std is given)")


_RowCheck = Callable[[dict[str, str | None], int], dict[str, str | float]]


def _read_csv(path: Path, columns: tuple[str, ...], check_row: _RowCheck, numeric: tuple[str, ...]) -> pd.DataFrame:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: line 1: missing columns {', '.join(missing)}")
        rows = []
        for row in reader:
            try:
                rows.append(check_row(row, reader.line_num))
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
    df = pd.DataFrame(rows, columns=list(columns))
    for col in numeric:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def load_paper_numbers(path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate the paper numbers; one row per reported number.

    Raises ``ValueError`` naming the file and line of the first bad row (missing column, empty
    required field, unknown provenance or protocol, a mean outside [0, 100], an ``n_runs`` that
    is not a whole number >= 1, a ``std_over`` missing beside a std or given without one).
    """
    path = Path(path) if path is not None else PAPER_NUMBERS_CSV
    return _read_csv(path, COLUMNS, _check_row, _NUMERIC)


def _check_claim(row: dict[str, str | None], line: int) -> dict[str, str | float]:
    for col in _CLAIM_REQUIRED:
        if (row.get(col) or "").strip() == "":
            raise ValueError(f"line {line}: {col} is empty")
    text = {col: (row.get(col) or "").strip() for col in CLAIM_COLUMNS}
    _check_choice(text, "provenance", PROVENANCES, line)
    _check_choice(text, "protocol", PROTOCOLS, line)
    if text["better"] == text["worse"]:
        raise ValueError(f"line {line}: better and worse are both {text['better']!r}")
    rate = _number(text["noise_rate"], column="noise_rate", line=line)
    _check_rate(rate, line)
    return {**text, "noise_rate": rate}


def load_claims(path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate the papers' ordinal claims; one row per claim "better beats worse".

    Raises ``ValueError`` naming the file and line of the first bad row (missing column, empty
    required field, unknown provenance or protocol, a rate outside [0, 1], better = worse).
    """
    path = Path(path) if path is not None else CLAIMS_CSV
    return _read_csv(path, CLAIM_COLUMNS, _check_claim, ("noise_rate",))


def paper_runs(row: pd.Series | dict) -> tuple[float, bool]:
    """``(n_p, assumed)``: the run count behind a paper number's mean, and whether it is assumed.

    The stated ``n_runs`` where there is one (``assumed`` False), else the paper's
    :data:`DEFAULT_N_RUNS` (``assumed`` True). With ``std_over`` ``epochs`` the std carries no
    run-to-run variance: n_p is still the count of runs behind the mean. Raises ``ValueError``
    for a paper with no stated count and no default.
    """
    n = float(row["n_runs"]) if row["n_runs"] is not None else math.nan
    if math.isfinite(n):
        return n, False
    paper = str(row["paper"]).lower()
    if paper not in DEFAULT_N_RUNS:
        raise ValueError(f"paper {row['paper']!r} states no run count and has no default in DEFAULT_N_RUNS")
    return float(DEFAULT_N_RUNS[paper]), True


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
