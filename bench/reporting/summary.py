"""One row per (cell, method label): the description of its runs, the SE its noise-draw design
implies, the paper's number and the test against it, Holm-adjusted over the paper's table and
checked at n_p = 2, 5 and inf where the paper's run count is assumed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from bench import stats
from bench.papers import lookup
from bench.reporting.records import CELL

# methods that run a paper's method under another protocol, tested against its number
PAPER_METHOD = {"f_correction_patrini": "f_correction"}


@dataclass(frozen=True)
class Settings:
    """What a report computes with. ``default_paper_runs`` is the run count assumed for a paper
    number that has a std but no ``n_runs``; ``paper_runs`` maps a paper key to its own default."""

    protocol: str
    margin: float = 1.0
    alpha: float = 0.05
    confidence: float = 0.95
    n_boot: int = 2000
    seed: int = 0
    default_paper_runs: int = 5
    paper_runs: Mapping[str, int] = field(default_factory=dict)


def _first_value(values: pd.Series) -> object:
    """The first value that is not missing; None when all are."""
    values = values.dropna()
    return values.iloc[0] if not values.empty else None


def paper_run_count(prow: pd.Series, settings: Settings) -> tuple[float, bool, str]:
    """(n_p used, whether it is assumed, the std's basis) for a paper row.

    A std over epochs (``std_over: epochs``) is the wobble of one run's last epochs, not the
    spread of the paper's runs: it is not an SE, so the paper's mean is taken as exact (n_p inf)
    and the row says so. A std without a run count uses the paper's default run count
    (``Settings.paper_runs``, else ``default_paper_runs``) and the verdict is marked as assuming it.
    """
    over = str(prow.get("std_over") or "unknown").strip() or "unknown"
    if not np.isfinite(prow["std"]):
        return math.inf, False, "no std"
    if over == "epochs":
        return math.inf, False, over
    if np.isfinite(prow["n_runs"]):
        return float(prow["n_runs"]), False, over
    return float(settings.paper_runs.get(str(prow["paper"]), settings.default_paper_runs)), True, over


def family_size(papers: pd.DataFrame, prow: pd.Series) -> int:
    """The number of numbers in the paper's table (one dataset, one protocol): the Holm family."""
    same = (papers["paper"] == prow["paper"]) & (papers["table"] == prow["table"]) & \
        (papers["dataset"] == prow["dataset"]) & (papers["protocol"] == prow["protocol"])
    return int(same.sum())


def draw_source(group: pd.DataFrame) -> str:
    """``paper`` when every run's record says its noisy labels are the official code's own default
    draw (its ``noise_draw`` at the code's seed, :func:`bench.noise.is_papers_draw`), else
    ``suite``: a field the report does not know is not taken as the paper's draw."""
    from bench.noise import is_papers_draw

    if len(group) and "noise_draw" in group and all(
            is_papers_draw(d, s) for d, s in zip(group["noise_draw"], group["noise_seed"])):
        return "paper"
    return "suite"


def draw_note(design: str, source: str, n_draws: int) -> str:
    """What a cell's interval is conditional on, in words."""
    if design == stats.ONE_DRAW:
        return ("one draw, the paper's own: the interval is conditional on it, as the paper's number is"
                if source == "paper" else "one draw, not the paper's: the interval is conditional on it")
    if design == stats.CROSSED:
        return f"{n_draws} draws crossed with seeds: the SE separates draw and training variance"
    return "a draw per run: the interval covers the draw's variance"


def _cell_row(key: tuple, group: pd.DataFrame, settings: Settings, rng: np.random.Generator) -> tuple[dict, stats.CellEstimate]:
    dataset, noise_type, noise_rate, variant, label = key
    group = group[group["acc"].notna()]
    x = group["acc"].to_numpy(dtype=float)
    # a record without its noise_seed counts as sharing one unknown draw: never as its own draw
    draws = group["noise_seed"].astype(object).where(group["noise_seed"].notna(), "unknown")
    est = stats.estimate_cell(x, list(draws))
    desc = stats.describe(x, confidence=settings.confidence, n_boot=settings.n_boot, rng=rng)
    ci_low, ci_high = est.interval(settings.confidence) if est.n >= 2 else (math.nan, math.nan)
    source = draw_source(group)
    row = {"grid": group["grid"].iloc[0] if len(group) else None, "dataset": dataset, "noise_type": noise_type,
           "noise_rate": noise_rate, "noise_variant": variant, "method": str(group["method"].iloc[0]) if len(group) else None,
           "label": label,
           "protocol": _first_value(group["acc_protocol"]) if "acc_protocol" in group else settings.protocol,
           **{k: v for k, v in desc.as_dict().items() if k != "note"}, "mean": est.mean if est.n else math.nan,
           "ci_low": ci_low, "ci_high": ci_high, "design": est.design, "n_draws": est.n_draws,
           "draw_source": source, "draw_note": draw_note(est.design, source, est.n_draws),
           "se": est.se, "df": est.df, "s2_draw": est.s2_draw, "s2_train": est.s2_train,
           "realised_noise_rate": float(pd.to_numeric(group["realised_noise_rate"], errors="coerce").mean()),
           "paper": _first_value(group["paper"]), "note": desc.note}
    row.update(_components(x, list(draws), est, settings))
    return row, est


def _components(x: np.ndarray, draws: list, est: stats.CellEstimate, settings: Settings) -> dict:
    """The crossed cell's variance components with intervals (columns of the summary)."""
    keys = ("s2_draw_low", "s2_draw_high", "s2_train_low", "s2_train_high", "draw_share", "draw_share_low",
            "draw_share_high", "understatement", "understatement_low", "understatement_high")
    if est.design != stats.CROSSED:
        return {**dict.fromkeys(keys, math.nan), "components_approximate": None}
    c = stats.variance_components(x, draws, confidence=settings.confidence)
    return {"s2_draw_low": c.s2_draw_low, "s2_draw_high": c.s2_draw_high, "s2_train_low": c.s2_train_low,
            "s2_train_high": c.s2_train_high, "draw_share": c.share, "draw_share_low": c.share_low,
            "draw_share_high": c.share_high, "understatement": c.understatement,
            "understatement_low": c.understatement_low, "understatement_high": c.understatement_high,
            "components_approximate": c.approximate}


def paper_draw_var(est: stats.CellEstimate) -> float:
    """The variance the paper's own noise draw adds to Δ, where the cell can estimate it.

    A crossed cell's draws are the suite's, not the paper's, and the paper's mean sits on one
    draw of its own: Δ's variance gains σ²_draw. Elsewhere σ²_draw is not separable from the
    training variance and nothing is added (a one-draw cell says its interval is conditional)."""
    return float(est.s2_draw) if est.design == stats.CROSSED and np.isfinite(est.s2_draw) else 0.0


PAPER_COLUMNS = {"paper_table": None, "paper_mean": np.nan, "paper_std": np.nan, "paper_n": np.nan,
                 "paper_n_used": np.nan, "paper_n_assumed": False, "std_over": None, "provenance": None,
                 "family_size": np.nan, "test": None, "diff": np.nan, "diff_se": np.nan, "diff_df": np.nan,
                 "ci90_low": np.nan, "ci90_high": np.nan, "bound": np.nan, "p_within": np.nan,
                 "p_value": np.nan, "p_holm": np.nan, "p_tost": np.nan, "p_tost_holm": np.nan,
                 "attainable": None, "verdict": "", "verdict_text": "", "provisional": False,
                 "robust": None, "verdicts_by_np": "", "seeds_needed": np.nan, "seeds_needed_at": np.nan,
                 "delta_planned": np.nan}
ROBUST_NP = (2.0, 5.0, math.inf)  # the paper run counts a verdict that assumes one is checked at


def _paper_case(row: dict, key: tuple, est: stats.CellEstimate, papers: pd.DataFrame,
                settings: Settings) -> tuple | None:
    """Fill the paper columns of ``row`` and test the cell at its n_p (and, where n_p is assumed,
    at each of ``ROBUST_NP``); None where the paper has no number for the cell.

    Returns (Holm family key, family size, n_p used, n_p -> PaperTest)."""
    method = row["method"]
    prow = lookup(papers, paper=row["paper"], dataset=key[0], noise_type=key[1], noise_rate=key[2],
                  method=PAPER_METHOD.get(method, method), protocol=settings.protocol) if row["paper"] else None
    if prow is None:
        return None
    n_used, assumed, over = paper_run_count(prow, settings)
    fam = max(family_size(papers, prow), 1)
    row.update(paper_table=prow["table"], paper_mean=prow["mean"], paper_std=prow["std"],
               paper_n=prow["n_runs"], paper_n_used=n_used, paper_n_assumed=assumed, std_over=over,
               provenance=prow["provenance"], family_size=fam,
               provisional=prow["provenance"] == "recalled")
    scenarios = {n_p: stats.compare_to_paper(
        est, paper_mean=prow["mean"], paper_std=prow["std"], paper_n=n_p, margin=settings.margin,
        alpha=settings.alpha, family_size=fam, draw_var=paper_draw_var(est))
        for n_p in dict.fromkeys([n_used, *(ROBUST_NP if assumed else ())])}
    return (prow["paper"], prow["table"], key[0]), fam, n_used, scenarios


def summarise(runs: pd.DataFrame, papers: pd.DataFrame, settings: Settings, *, rng: np.random.Generator) -> pd.DataFrame:
    """One row per (cell, label): description, the paper's number and the test against it.

    Tests are Holm-adjusted within each paper table (all of its numbers count, tested here or
    not); the verdict uses the adjusted p-values. Where the paper's run count is assumed, the
    verdict is also computed at n_p = 2, 5 and inf, and ``robust`` says whether all agree.
    """
    rows, cases = [], []
    for key, group in runs.groupby(CELL + ["label"], dropna=False, sort=True):
        row, est = _cell_row(key, group, settings, rng)
        row.update(PAPER_COLUMNS)
        if est.n < 2:
            row["verdict"] = row["verdict_text"] = stats.TOO_FEW
        cases.append(_paper_case(row, key, est, papers, settings))
        rows.append(row)
    summary = pd.DataFrame(rows)
    _adjust(summary, cases, settings)
    return summary


def _adjust(summary: pd.DataFrame, cases: list, settings: Settings) -> None:
    """Holm within each paper table: once with every row's own n_p, and once per n_p of
    ``ROBUST_NP`` with the rows whose n_p is assumed set to it (the others keep theirs)."""
    families: dict = {}
    for i, case in enumerate(cases):
        if case is not None:
            families.setdefault(case[0], []).append(i)
    for members in families.values():
        fam = cases[members[0]][1]

        def adjusted(n_p: float | None, members: list[int] = members, fam: int = fam) -> list[dict]:
            tests = [cases[i][3].get(n_p, cases[i][3][cases[i][2]]) for i in members]
            return stats.apply_holm(tests, alpha=settings.alpha, family_size=fam)

        main = adjusted(None)
        robust = {n_p: adjusted(n_p) for n_p in ROBUST_NP}
        for pos, i in enumerate(members):
            kinds = {n_p: rows[pos]["verdict"] for n_p, rows in robust.items()} if summary.at[i, "paper_n_assumed"] else {}
            _fill(summary, i, cases[i][3][cases[i][2]], main[pos], kinds)


def _fill(summary: pd.DataFrame, i: int, test: stats.PaperTest, adj: dict, kinds: dict) -> None:
    values = {"test": test.test, "diff": test.diff, "diff_se": test.se, "diff_df": test.df,
              "ci90_low": test.ci90_low, "ci90_high": test.ci90_high, "bound": test.bound,
              "p_within": test.p_within, "p_value": test.p_value, "p_tost": test.p_tost,
              "p_holm": adj["p_holm"], "p_tost_holm": adj["p_tost_holm"], "attainable": test.attainable,
              "verdict": adj["verdict"], "verdict_text": stats.verdict_text(adj["verdict"], test.diff),
              "seeds_needed": test.seeds_needed, "seeds_needed_at": test.seeds_needed_at,
              "delta_planned": test.delta_planned}
    if summary.at[i, "paper_n_assumed"] and kinds:
        values["robust"] = len(set(kinds.values())) == 1
        values["verdicts_by_np"] = "; ".join(f"{np_text(n)}: {v}" for n, v in kinds.items())
    for col, value in values.items():
        summary.at[i, col] = value


def np_text(n_p: float) -> str:
    """A paper run count as printed: ``5``, ``∞``."""
    return "∞" if math.isinf(n_p) else f"{n_p:g}"
