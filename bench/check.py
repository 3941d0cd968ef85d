"""``python -m bench check``: your own runs of one setting against the paper and the suite's records.

A user gives the accuracies of their runs of one method in one setting, as a CSV (one row per
run) or as ``--mean``, ``--std`` and ``--n``, and gets the verdict of the suite's test against
the paper's number (:mod:`bench.papers`) and against the suite's own records of that setting
under ``results/`` (one row per grid that has it; grids are never pooled).

Every test used depends on the runs only through their mean, std and count, so ``--mean``,
``--std`` and ``--n`` give the same verdict as the runs themselves. The paper's std counts with
the run count the paper states, else the paper's default (``bench.papers.DEFAULT_N_RUNS``),
marked as assumed; a paper std over epochs, not runs, is left out. The verdict against the
suite's records treats their mean, std and run count the same way (Welch), conditional on the
records' own noise draws. :func:`judge` is the one place the test and verdict are computed.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.errors import BenchError
from bench.papers import PROTOCOLS, load_paper_numbers, lookup, paper_runs
from bench.tables import markdown_table

__all__ = ["CheckError", "Setting", "Judgement", "judge", "parse_noise", "read_accuracies", "summary_sample",
           "check", "add_subcommand"]

ACC_COLUMNS = ("acc", "accuracy", "test_acc")


class CheckError(BenchError):
    """Bad input for ``check``; printed as one line, exit status 2."""


@dataclass(frozen=True)
class Setting:
    paper: str
    method: str
    dataset: str
    noise_type: str
    noise_rate: float | None
    protocol: str | None


@dataclass(frozen=True)
class Judgement:
    """One test of the user's runs against a reference (the paper's number or a grid's records)."""

    ref_mean: float
    ref_std: float
    ref_n: float
    n_assumed: bool
    test: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_tost: float
    verdict: str


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


def parse_noise(text: str) -> tuple[str, float | None]:
    """``"symmetric:0.5"`` -> ``("symmetric", 0.5)``; a type alone (``"human"``) has no rate."""
    kind, sep, rate = text.partition(":")
    if not kind or (sep and not rate):
        raise CheckError(f"bad --noise {text!r}: expected TYPE:RATE such as symmetric:0.5, or TYPE alone")
    if not sep:
        return kind, None
    try:
        value = float(rate)
    except ValueError:
        raise CheckError(f"bad --noise {text!r}: rate {rate!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise CheckError(f"bad --noise {text!r}: rate {value:g} is outside [0, 1] (a fraction, not percent)")
    return kind, value


def _accuracy_column(fields: list[str], column: str | None, path: Path) -> str:
    if column is not None:
        if column not in fields:
            raise CheckError(f"{path}: no column {column!r} (columns: {', '.join(fields)})")
        return column
    if len(fields) == 1:
        return fields[0]
    found = [c for c in ACC_COLUMNS if c in fields]
    if not found:
        raise CheckError(f"{path}: no accuracy column (name one of {', '.join(ACC_COLUMNS)}, or give --column)")
    return found[0]


def read_accuracies(path: str | Path, *, column: str | None = None) -> np.ndarray:
    """The accuracies (percent) in one column of a CSV with a header, one row per run: ``(n,)``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip() for f in (reader.fieldnames or [])]
            if not fields:
                raise CheckError(f"{path}: empty file (expected a header and one row per run)")
            reader.fieldnames = fields
            col = _accuracy_column(fields, column, path)
            values = [_accuracy(row.get(col), col, reader.line_num, path) for row in reader]
    except OSError as err:
        raise CheckError(f"cannot read {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise CheckError(f"cannot read {path}: {err}") from None
    if not values:
        raise CheckError(f"{path}: no runs (no rows under the header)")
    return np.array(values, dtype=float)


def _accuracy(text: str | None, column: str, line: int, path: Path) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        raise CheckError(f"{path}: line {line}: {column} {text!r} is not a number") from None
    if not 0.0 <= value <= 100.0:
        raise CheckError(f"{path}: line {line}: {column} {value:g} is outside [0, 100] (percent)")
    return value


def summary_sample(mean: float, std: float, n: int) -> np.ndarray:
    """``(n,)`` values with exactly this mean and std (ddof 1): equivalent input for the t-tests."""
    if n < 1 or std < 0 or not (math.isfinite(mean) and math.isfinite(std)):
        raise CheckError(f"--mean {mean:g} --std {std:g} --n {n}: need a finite mean, std >= 0 and n >= 1")
    if n == 1:
        return np.array([mean])
    z = np.linspace(-1.0, 1.0, n)
    return mean + std * z / z.std(ddof=1)


# --------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------


def judge(x: np.ndarray, *, ref_mean: float, ref_std: float, ref_n: float, n_assumed: bool = False,
          margin: float = 1.0, alpha: float = 0.05) -> Judgement:
    """The user's runs ``x`` ``(n,)`` against a reference mean (with its std and run count, or NaN).

    The verdict of :func:`bench.stats.test_against_paper` (the report's own, with the reference's
    SE std/sqrt(n) in the difference's variance); Δ = ours − reference with its 90% interval.
    """
    pt = stats.test_against_paper(x, paper_mean=ref_mean, paper_std=ref_std, paper_n=ref_n, margin=margin,
                                  alpha=alpha)
    return Judgement(ref_mean, pt.paper_std, pt.paper_n, n_assumed, pt.test, pt.diff, pt.ci90_low,
                     pt.ci90_high, pt.p_value, pt.p_tost, stats.verdict_text(pt.verdict, pt.diff))


def _against_paper(x: np.ndarray, row: pd.Series, *, margin: float, alpha: float) -> tuple[Judgement, str]:
    """The test against the paper's row and the text of its run count for the table."""
    n_p, assumed = paper_runs(row)
    std = math.nan if row["std_over"] == "epochs" else float(row["std"])
    j = judge(x, ref_mean=float(row["mean"]), ref_std=std, ref_n=n_p if math.isfinite(std) else math.nan,
              n_assumed=assumed and math.isfinite(std), margin=margin, alpha=alpha)
    return j, _n_text(j, n_p, assumed)


# --------------------------------------------------------------------------------------------
# Looking the setting up
# --------------------------------------------------------------------------------------------


def _paper_rows(papers: pd.DataFrame, s: Setting) -> pd.DataFrame:
    mask = (papers["paper"] == s.paper) & (papers["method"] == s.method) & (papers["dataset"] == s.dataset) \
        & (papers["noise_type"] == s.noise_type)
    mask &= papers["noise_rate"].isna() if s.noise_rate is None else (papers["noise_rate"] - s.noise_rate).abs() <= 1e-6
    return papers[mask]


def _resolve_protocol(s: Setting, rows: pd.DataFrame) -> str:
    if s.protocol is not None:
        return s.protocol
    found = sorted(set(rows["protocol"]))
    if len(found) > 1:
        raise CheckError(f"the paper reports this setting under protocols {', '.join(found)}: give --protocol")
    return found[0] if found else "last10"


def _grids(results: Path) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The runs of every grid with records under ``results``, and a note per unreadable grid."""
    from bench.report import ReportError, find_grids, load_runs

    grids, notes = {}, []
    try:
        names = find_grids(results) if results.is_dir() else []
    except ReportError:
        names = []
    for grid in names:
        try:
            grids[grid] = load_runs(results, grid)
        except ReportError as err:
            notes.append(f"- records of grid {grid} left out: {err}")
    return grids, notes


def _record_cells(grids: dict[str, pd.DataFrame], s: Setting, protocol: str) -> dict[str, np.ndarray]:
    """Per grid, the accuracies of the method's runs of the setting (nominal noise model)."""
    from bench.report import with_accuracy

    cells = {}
    for grid, runs in grids.items():
        rate = runs["noise_rate"]
        mask = (runs["label"] == s.method) & (runs["dataset"] == s.dataset) & (runs["noise_type"] == s.noise_type) \
            & runs["noise_variant"].eq("")
        mask &= rate.isna() if s.noise_rate is None else (rate - s.noise_rate).abs() <= 1e-6
        if mask.any():
            acc = with_accuracy(runs[mask], protocol)["acc"].dropna().to_numpy(float)
            if acc.size:
                cells[grid] = acc
    return cells


def _setting_text(s: Setting) -> str:
    rate = "" if s.noise_rate is None else f" {s.noise_rate * 100:g}%"
    return f"{s.method} on {s.dataset} {s.noise_type}{rate}"


def _unknown_setting(s: Setting, papers: pd.DataFrame, grids: dict[str, pd.DataFrame], results: Path,
                     protocol: str) -> CheckError:
    known = set(papers["noise_type"]).union(*(set(r["noise_type"].dropna()) for r in grids.values()))
    if s.noise_type not in known:
        return CheckError(f"bad --noise: unknown noise type {s.noise_type!r} (the paper numbers and the records "
                          f"know {', '.join(sorted(known))})")
    return CheckError(f"no paper number of {s.paper} and no records under {results} for {_setting_text(s)} "
                      f"(protocol {protocol})")


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _fmt(x: float, spec: str = ".2f") -> str:
    return format(x, spec) if np.isfinite(x) else "–"


def _ref_text(j: Judgement) -> str:
    return f"{_fmt(j.ref_mean)} ± {_fmt(j.ref_std)}" if np.isfinite(j.ref_std) else _fmt(j.ref_mean)


def _n_text(j: Judgement, n_runs: float, assumed: bool) -> str:
    """The reference's run count, whether it is assumed, and whether the test used it."""
    count = f"{n_runs:g}" + (" (assumed)" if assumed else "")
    if j.test in ("welch", "none"):  # "none": too few of your runs to test
        return count
    return f"{count}; mean taken as exact" if np.isfinite(n_runs) else "mean taken as exact"


COLUMNS = ["against", "number", "source", "n", "test", "Δ = yours − it", "90% interval of Δ", "verdict"]


def _row(against: str, source: str, j: Judgement, n_text: str) -> list[str]:
    """One row of the table (:data:`COLUMNS`): a test of the user's runs against one reference."""
    return [against, _ref_text(j), source, n_text, j.test, _fmt(j.diff, "+.2f"),
            f"[{_fmt(j.ci_low, '+.2f')}, {_fmt(j.ci_high, '+.2f')}]", j.verdict]


def _header(s: Setting, protocol: str, x: np.ndarray, origin: str, margin: float) -> list[str]:
    mean, std = float(x.mean()), (float(x.std(ddof=1)) if x.size > 1 else math.nan)
    low, high = stats.t_interval(x) if x.size > 1 else (math.nan, math.nan)
    return [
        f"{_setting_text(s)}, protocol {protocol}, paper {s.paper}; "
        f"equivalence margin ±{margin:g} points",
        f"your runs ({origin}): n {x.size}, mean {_fmt(mean)}, std {_fmt(std)}, 95% interval "
        f"[{_fmt(low)}, {_fmt(high)}]",
        "",
    ]


def check(x: np.ndarray, s: Setting, *, origin: str, results: Path, margin: float = 1.0, alpha: float = 0.05,
          papers: pd.DataFrame | None = None) -> list[str]:
    """The lines of the check's table: ``x`` ``(n,)`` against the paper and each grid's records."""
    papers = load_paper_numbers() if papers is None else papers
    rows = _paper_rows(papers, s)
    protocol = _resolve_protocol(s, rows)
    row = lookup(papers, paper=s.paper, dataset=s.dataset, noise_type=s.noise_type, noise_rate=s.noise_rate,
                 method=s.method, protocol=protocol)
    grids, notes = _grids(results)
    cells = _record_cells(grids, s, protocol)
    if row is None and not cells:
        raise _unknown_setting(s, papers, grids, results, protocol)
    rows = []
    if row is not None:
        j, n_text = _against_paper(x, row, margin=margin, alpha=alpha)
        rows.append(_row(f"paper, {row['table']}", row["provenance"], j, n_text))
        notes += _paper_notes(row, j)
    else:
        notes.append(f"- no paper number of {s.paper} for this setting and protocol")
    for grid, acc in cells.items():
        j = judge(x, ref_mean=float(acc.mean()), ref_std=_std(acc), ref_n=float(acc.size), margin=margin, alpha=alpha)
        rows.append(_row(f"suite, {grid}", f"{acc.size} records", j, _n_text(j, float(acc.size), False)))
    if not cells:
        notes.append(f"- no records of this setting under {results}")
    return _header(s, protocol, x, origin, margin) + [markdown_table(rows, COLUMNS, style="compact"), ""] + notes


def _std(acc: np.ndarray) -> float:
    return float(acc.std(ddof=1)) if acc.size > 1 else math.nan


def _paper_notes(row: pd.Series, j: Judgement) -> list[str]:
    notes = []
    if row["provenance"] == "recalled":
        notes.append("- the paper's number is only recalled, not read from the paper: a lead, not a target")
    if j.n_assumed:
        notes.append(f"- the paper gives a std but no run count: n = {j.ref_n:g} is assumed "
                     "(bench.papers.DEFAULT_N_RUNS)")
    if j.test != "welch":
        notes.append("- the test takes the paper's mean as exact (no std, or a single run): the interval "
                     "leaves out the paper's own variance")
    if row["std_over"] == "epochs":
        notes.append("- the paper's std is over epochs, not runs: left out, the paper's mean taken as exact")
    return notes


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="your own runs of one setting against the paper and the suite's records",
                       description=__doc__.splitlines()[0])
    p.add_argument("--paper", required=True, help="paper key (jocor, coteaching, dividemix, rsl, self_learning)")
    p.add_argument("--method", required=True, help="suite method name (jocor, coteaching_plus, standard, ...)")
    p.add_argument("--dataset", required=True, help="mnist, cifar10, cifar100, clothing1m, ...")
    p.add_argument("--noise", required=True, metavar="TYPE[:RATE]", help="e.g. symmetric:0.5, asymmetric:0.4, human")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="what the accuracy is (default: the paper's protocol for this setting)")
    p.add_argument("--csv", default=None, metavar="FILE", help="CSV with a header, one row per run")
    p.add_argument("--column", default=None, help=f"accuracy column of the CSV (default: {', '.join(ACC_COLUMNS)})")
    p.add_argument("--mean", type=float, default=None, help="mean accuracy of your runs (percent)")
    p.add_argument("--std", type=float, default=None, help="std of your runs (ddof 1)")
    p.add_argument("--n", type=int, default=None, help="number of your runs")
    p.add_argument("--margin", type=float, default=1.0, help="equivalence margin in points (default 1)")
    p.add_argument("--alpha", type=float, default=0.05, help="level of the tests (default 0.05)")
    p.add_argument("--results", default="results", help="folder of the suite's run records (default: results)")
    p.set_defaults(func=_cmd_check)


def _sample(args: argparse.Namespace) -> tuple[np.ndarray, str]:
    summary = [args.mean, args.std, args.n]
    if args.csv is not None:
        if any(v is not None for v in summary):
            raise CheckError("give either --csv FILE or --mean M --std S --n N, not both")
        return read_accuracies(args.csv, column=args.column), args.csv
    if any(v is None for v in summary):
        raise CheckError("give --csv FILE, or all of --mean M --std S --n N")
    return summary_sample(args.mean, args.std, args.n), "--mean/--std/--n"


def _cmd_check(args: argparse.Namespace) -> int:
    noise_type, noise_rate = parse_noise(args.noise)
    x, origin = _sample(args)
    setting = Setting(args.paper.lower(), args.method, args.dataset, noise_type, noise_rate, args.protocol)
    print("\n".join(check(x, setting, origin=origin, results=Path(args.results), margin=args.margin,
                          alpha=args.alpha)))
    return 0
