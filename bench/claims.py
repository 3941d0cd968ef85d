"""The papers' ordinal claims, tested on the suite's runs.

A claim (one row of ``bench/claims.csv``, see :mod:`bench.papers`) says that in one setting
method ``better`` scores above method ``worse``. It is tested with the paired comparison of the
two methods across the runs they share, paired by ``(seed, noise_seed)``: the paired t-test of
``better - worse`` from :func:`bench.stats.paired_comparison`, Holm-adjusted over the claims of
one paper table that could be tested. The outcome is

* ``holds``: the adjusted p-value is below ``alpha`` and ``better`` scores higher;
* ``reversed``: the adjusted p-value is below ``alpha`` and ``worse`` scores higher;
* ``not shown``: the runs do not separate the two methods (or there are too few pairs);
* ``no runs``: the grid has no run of one of the two methods in that setting.

A claim is an ordering, so it is judged even where the paper's numbers are only recalled; the
section written by :func:`claims_markdown` says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import stats
from bench.reporting import text
from bench.tables import markdown_table

__all__ = ["OUTCOMES", "HOLDS", "REVERSED", "NOT_SHOWN", "NO_RUNS", "RESULT_COLUMNS", "evaluate_claims",
           "claims_markdown"]

HOLDS, REVERSED, NOT_SHOWN, NO_RUNS = "holds", "reversed", "not shown", "no runs"
OUTCOMES = (HOLDS, REVERSED, NOT_SHOWN, NO_RUNS)
RESULT_COLUMNS = ("n", "mean_diff", "ci_low", "ci_high", "p_value", "p_holm", "outcome", "reason")
_TOL = 1e-6


def _rate_key(rate: float | None) -> float:
    """The noise rate rounded to the matching tolerance; -1 for a blank rate (real-world noise)."""
    rate = math.nan if rate is None else float(rate)
    return -1.0 if math.isnan(rate) else round(rate / _TOL) * _TOL


def _index_runs(runs: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Runs by (dataset, noise_type, rate, method name), nominal noise model and finite accuracy only.

    A grid that runs variants of a method under other labels: a claim is about the method as its
    paper ran it, i.e. the label equal to the method's name.
    """
    keep = np.isfinite(pd.to_numeric(runs["acc"], errors="coerce"))
    if "noise_variant" in runs:
        keep &= runs["noise_variant"].fillna("").astype(str).eq("")
    runs = runs[keep]
    runs = runs.assign(_rate=pd.to_numeric(runs["noise_rate"], errors="coerce").map(_rate_key),
                       _name=runs["label"].fillna(runs["method"]) if "label" in runs else runs["method"])
    return dict(tuple(runs.groupby(["dataset", "noise_type", "_rate", "_name"], sort=False)))


def _test_claim(claim: pd.Series, index: dict[tuple, pd.DataFrame]) -> dict:
    nan = math.nan
    out = dict(n=0, mean_diff=nan, ci_low=nan, ci_high=nan, p_value=nan, p_holm=nan, outcome=NO_RUNS, reason="")
    cell = (claim["dataset"], claim["noise_type"], _rate_key(claim["noise_rate"]))
    names = (claim["better"], claim["worse"])
    found = {name: index[cell + (name,)] for name in names if cell + (name,) in index}
    missing = [name for name in names if name not in found]
    if missing:
        out["reason"] = f"no runs of {' and '.join(missing)}"
        return out
    out["outcome"] = NOT_SHOWN
    by_pair = []
    for name in names:
        r = found[name]
        accs = dict(zip(zip(r["seed"], r["noise_seed"]), r["acc"].astype(float)))
        if len(accs) < len(r):
            out["reason"] = f"several runs of {name} share a (seed, noise_seed): not paired"
            return out
        by_pair.append(accs)
    shared = sorted(set(by_pair[0]) & set(by_pair[1]))
    out["n"] = len(shared)
    if len(shared) < 2:
        out["reason"] = f"{len(shared)} shared (seed, noise_seed): not tested"
        return out
    x_a, x_b = (np.array([accs[k] for k in shared]) for accs in by_pair)
    # the pairs' noise draws: in a crossed design the comparison takes the draw-level SE
    cmp = stats.paired_comparison(x_a, x_b, draws=[noise_seed for _, noise_seed in shared])
    out.update(mean_diff=cmp.mean_diff, ci_low=cmp.ci_low, ci_high=cmp.ci_high, p_value=cmp.p_t)
    return out


def _outcome(mean_diff: float, p_holm: float, alpha: float) -> str:
    if not (np.isfinite(p_holm) and p_holm < alpha):
        return NOT_SHOWN
    return HOLDS if mean_diff > 0 else REVERSED


def evaluate_claims(claims: pd.DataFrame, runs: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Test each claim on ``runs``; one row per claim, its columns plus :data:`RESULT_COLUMNS`.

    ``runs`` has one row per run with columns ``method``, ``dataset``, ``noise_type``,
    ``noise_rate``, ``seed``, ``noise_seed`` and ``acc`` (as ``bench.report.with_accuracy``
    gives them; ``label`` and ``noise_variant`` are used when present), its ``acc`` scored by the
    claims' protocol: pass the claims of the grid's paper, table and protocol. ``mean_diff`` is
    better - worse with its 95% t-interval ``ci_low``-``ci_high`` over ``n`` pairs; ``p_value``
    the two-sided paired t-test, ``p_holm`` Holm-adjusted over the tested claims of the same
    (paper, table). The outcome is one of :data:`OUTCOMES`; ``reason`` says why a claim was not
    tested. The paired t-test needs no randomness.
    """
    claims = claims.reset_index(drop=True)
    index = _index_runs(runs)
    tested = [_test_claim(claim, index) for _, claim in claims.iterrows()]
    result = pd.concat([claims, pd.DataFrame(tested, index=claims.index, columns=list(RESULT_COLUMNS))], axis=1)
    p_holm = result["p_value"].to_numpy(float).copy()  # a family of one is its own adjustment
    for idx in result.groupby(["paper", "table"], sort=False).indices.values():
        if np.isfinite(p_holm[idx]).sum() > 1:
            p_holm[idx] = stats.holm(p_holm[idx])
    result["p_holm"] = p_holm
    ok = result["outcome"] != NO_RUNS
    result.loc[ok, "outcome"] = [_outcome(d, p, alpha) for d, p in zip(result.loc[ok, "mean_diff"],
                                                                          result.loc[ok, "p_holm"])]
    return result


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _setting(row: pd.Series) -> str:
    rate = "" if math.isnan(row["noise_rate"]) else f" {row['noise_rate'] * 100:g}%"
    return f"{row['dataset']} {row['noise_type']}{rate}"


def _num(x: float) -> str:
    return f"{x:+.2f}" if np.isfinite(x) else "–"


COLUMNS = ["table", "setting", "claim", "provenance", "pairs", "Δ [95% CI]", "p (Holm)", "outcome"]


def _row_cells(row: pd.Series) -> list[str]:
    """One claim as the cells of :data:`COLUMNS`."""
    interval = f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]" if np.isfinite(row["ci_low"]) else ""
    outcome = f"{row['outcome']} ({row['reason']})" if row["reason"] else row["outcome"]
    return [row["table"], _setting(row), f"{row['better']} > {row['worse']}", row["provenance"], str(int(row["n"])),
            f"{_num(row['mean_diff'])} {interval}", text.fmt_p(row["p_holm"]) or "–", outcome]


def claims_markdown(result: pd.DataFrame, *, alpha: float = 0.05) -> list[str]:
    """The "Claims of the paper" section for a report, from :func:`evaluate_claims`'s output."""
    lines = ["## Claims of the paper", ""]
    if result.empty:
        return lines + ["The registry holds no claim of this paper for this protocol.", ""]
    counts = result["outcome"].value_counts()
    summary = ", ".join(f"{outcome} {int(counts.get(outcome, 0))}" for outcome in OUTCOMES)
    lines += [
        "Each claim of the paper (`bench/claims.csv`: its table, or a sentence of its text) that one "
        "method scores above another in a setting, tested on our runs: the paired t-test of better − "
        "worse across the runs the two methods share, paired by (seed, noise_seed), Holm-adjusted over "
        f"the claims of each paper table; `holds` or `reversed` at adjusted p < {alpha:g}, else "
        "`not shown`. Δ is better − worse with its 95% t-interval.",
        "",
        "Claims are judged even where the paper's numbers are only `recalled` (the provenance column "
        "gives the weaker of the two numbers): an ordering is tested by our runs alone, but a recalled "
        "claim may not be the paper's.",
        "",
        f"{len(result)} claims: {summary}.",
        "",
    ]
    judged = result[result["outcome"] != NO_RUNS]
    if not judged.empty:
        lines += markdown_table([_row_cells(row) for _, row in judged.iterrows()], COLUMNS,
                                style="compact").splitlines() + [""]
    return lines + _no_runs_lines(result[result["outcome"] == NO_RUNS])


def _no_runs_lines(missing: pd.DataFrame) -> list[str]:
    """One line per paper table for the claims the grid has no runs for (settings, methods)."""
    lines = []
    for (paper, table), group in missing.groupby(["paper", "table"], sort=False):
        settings = ", ".join(dict.fromkeys(_setting(row) for _, row in group.iterrows()))
        lines.append(f"- No runs for {len(group)} claims of {paper} {table}: {settings}.")
    return lines + [""] if lines else []
