"""Methods compared: two methods paired across seeds (t, Wilcoxon, sign count, win rate with a
Clopper-Pearson interval), many methods across cells (Friedman, Iman-Davenport, Nemenyi), the
interquartile mean and the seeds a difference test needs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import TTestIndPower, TTestPower
# Imported here, not lazily inside statsmodels: its import installs an "always" filter for
# ConvergenceWarning that would otherwise override the local ignore in seeds_needed.
from statsmodels.tools import sm_exceptions as _sm_exceptions  # noqa: F401

from bench.stats._common import AsDict, as_1d
from bench.stats.cells import CROSSED, estimate_cell, t_interval

MIN_CD_CELLS = 10  # fewest cells to rank methods on (Demšar 2006: N > 10 for the Friedman approximation)

# Demšar (2006), Table 5(a): studentised range q_0.05 / sqrt(2) for k = 2..10 classifiers.
NEMENYI_Q05 = {2: 1.960, 3: 2.344, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}

# --------------------------------------------------------------------------------------------
# Two methods in one cell, paired across seeds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedComparison(AsDict):
    """Method a against method b on the same seeds; differences are a - b.

    ``wins`` / ``losses`` / ``ties`` count the seeds where a is above / below / equal to b;
    ``p_sign`` is the exact two-sided sign test on them. ``win_rate`` = (wins + ties/2) / n is
    P(a > b on a shared seed) with a Clopper-Pearson interval ``[win_low, win_high]`` (from the
    wins alone and from wins + ties). ``p_wilcoxon_min`` is the smallest p the exact Wilcoxon
    test can reach at this n (2 / 2^n): where it exceeds the level, the test cannot reject and the
    report shows the sign count instead.
    """

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    t_stat: float
    p_t: float
    w_stat: float
    p_wilcoxon: float
    p_wilcoxon_min: float
    wins: int
    losses: int
    ties: int
    p_sign: float
    win_rate: float
    win_low: float
    win_high: float
    note: str


def probability_of_improvement(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """P(a > b) = Mann-Whitney U / (n·m), ties counting one half (rliable's definition)."""
    a, b = as_1d(a), as_1d(b)
    if a.size == 0 or b.size == 0:
        return math.nan
    gt = (a[:, None] > b[None, :]).mean()
    eq = (a[:, None] == b[None, :]).mean()
    return float(gt + 0.5 * eq)


def clopper_pearson(k: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion k / n; NaNs when n = 0."""
    if n <= 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    low = 0.0 if k <= 0 else float(sps.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k >= n else float(sps.beta.ppf(1 - tail, k + 1, n - k))
    return low, high


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test p of ``wins`` against ``losses`` (ties dropped); 1 when none."""
    m = wins + losses
    return 1.0 if m == 0 else float(sps.binomtest(wins, m, 0.5).pvalue)


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    draws: Sequence[object] | None = None,
) -> PairedComparison:
    """Compare ``a`` and ``b`` ``(n_seeds,)``, aligned so that ``a[i]`` and ``b[i]`` share a seed.

    Paired t-test and Wilcoxon signed-rank test on a - b, the mean difference with its
    t-interval, the sign count with its exact test, and the paired win rate with a
    Clopper-Pearson interval (a percentile bootstrap of P(a > b) cannot leave the observed support:
    5 wins in 5 seeds gave [1.00, 1.00]). With the pairs' noise draws ``draws`` ``(n,)`` forming a
    crossed design, the mean difference, its interval and the t-test come from
    :func:`estimate_cell` on a - b (pairs on one draw are not independent); the counts do not.
    """
    a, b = as_1d(a), as_1d(b)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal shapes, got {a.shape} and {b.shape}")
    n = int(a.size)
    nan = math.nan
    d = a - b
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    ties = n - wins - losses
    win_rate = (wins + 0.5 * ties) / n if n else nan
    win_low, win_high = clopper_pearson(wins, n, confidence=confidence)[0], \
        clopper_pearson(wins + ties, n, confidence=confidence)[1]
    counts: dict[str, Any] = dict(wins=wins, losses=losses, ties=ties, p_sign=sign_test(wins, losses), win_rate=win_rate,
                  win_low=win_low, win_high=win_high)
    p_min = 2.0 / 2 ** n if n else nan
    if n < 2:
        mean_diff = float(d.mean()) if n else nan
        return PairedComparison(n, mean_diff, nan, nan, nan, nan, nan, nan, p_min, **counts, note="n<2: not tested")
    mean_diff = float(d.mean())
    ci_low, ci_high = t_interval(d, confidence=confidence)
    notes = []
    if np.all(d == d[0]):
        # Constant differences: the t statistic is ±inf or undefined; use its limit.
        t_stat = math.copysign(math.inf, mean_diff) if mean_diff else 0.0
        p_t = 0.0 if mean_diff else 1.0
        notes.append("constant differences")
    else:
        res = sps.ttest_rel(a, b)
        t_stat, p_t = float(res.statistic), float(res.pvalue)
    est = estimate_cell(d, draws) if draws is not None else None
    if est is not None and est.design == CROSSED and est.se > 0:
        mean_diff, (ci_low, ci_high) = est.mean, est.interval(confidence)
        t_stat = mean_diff / est.se
        p_t = float(2 * sps.t.sf(abs(t_stat), est.df))
        notes.append(f"{est.n_draws} draws crossed: draw-level SE; counts treat pairs as independent")
    if np.all(d == 0):
        w_stat, p_w = 0.0, 1.0
        notes.append("all differences zero")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exact-distribution and ties warnings at tiny n
            w = sps.wilcoxon(a, b, zero_method="wilcox")
        w_stat, p_w = float(w.statistic), float(w.pvalue)
    return PairedComparison(n, mean_diff, ci_low, ci_high, t_stat, p_t, w_stat, p_w, p_min, **counts,
                            note="; ".join(notes))


# --------------------------------------------------------------------------------------------
# Many methods across many cells
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test and Nemenyi critical difference on a (cells x methods) matrix."""

    n_cells: int
    k: int
    statistic: float
    p_value: float
    ranks: np.ndarray
    cd: float
    note: str
    f_statistic: float = math.nan
    f_p_value: float = math.nan
    df1: float = math.nan
    df2: float = math.nan

    @property
    def enough_cells(self) -> bool:
        """Whether there are enough cells to rank methods on (``MIN_CD_CELLS``)."""
        return self.n_cells >= MIN_CD_CELLS


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """Mean rank per method ``(k,)`` of ``scores`` ``(n_cells, k)``; rank 1 = highest score."""
    scores = np.asarray(scores, dtype=float)
    return sps.rankdata(-scores, axis=1).mean(axis=0)


def nemenyi_q(k: int, *, alpha: float = 0.05) -> float:
    """q_alpha of the Nemenyi test for ``k`` methods (Demšar's table for alpha 0.05, k <= 10).

    Other (k, alpha) come from the studentised range distribution with infinite degrees of
    freedom, which is what the table tabulates.
    """
    if k < 2:
        raise ValueError("the Nemenyi test needs at least 2 methods")
    if alpha == 0.05 and k in NEMENYI_Q05:
        return NEMENYI_Q05[k]
    return float(sps.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n_cells: int, *, alpha: float = 0.05) -> float:
    """Nemenyi CD = q_alpha · sqrt(k(k+1) / (6N)) for ``k`` methods over ``N`` cells."""
    return nemenyi_q(k, alpha=alpha) * math.sqrt(k * (k + 1) / (6.0 * n_cells))


def friedman(scores: np.ndarray, *, alpha: float = 0.05) -> FriedmanResult:
    """Friedman test, average ranks and Nemenyi CD for ``scores`` ``(n_cells, k)``.

    Rows with a missing value must be dropped by the caller. With fewer than three methods or
    two cells the test is not run (NaN statistic and a note); ranks and CD are still given when
    they are defined.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"expected a (cells x methods) matrix, got shape {scores.shape}")
    n_cells, k = scores.shape
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN: keep only cells where every method ran")
    ranks = average_ranks(scores) if n_cells else np.full(k, np.nan)
    cd = critical_difference(k, n_cells, alpha=alpha) if k >= 2 and n_cells >= 1 else math.nan
    if k < 3:
        return FriedmanResult(n_cells, k, math.nan, math.nan, ranks, cd, "Friedman needs >= 3 methods")
    if n_cells < 2:
        return FriedmanResult(n_cells, k, math.nan, math.nan, ranks, cd, "Friedman needs >= 2 cells")
    if np.all(scores == scores[:, :1]):
        return FriedmanResult(n_cells, k, math.nan, math.nan, ranks, cd, "all methods tie in every cell")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.friedmanchisquare(*scores.T)
    chi2 = float(res.statistic)
    f, df1, df2 = iman_davenport(chi2, n_cells, k)
    p_f = float(sps.f.sf(f, df1, df2)) if np.isfinite(f) else (0.0 if f == math.inf else math.nan)
    return FriedmanResult(n_cells, k, chi2, float(res.pvalue), ranks, cd, "", f, p_f, df1, df2)


def iman_davenport(chi2: float, n_cells: int, k: int) -> tuple[float, float, float]:
    """Iman-Davenport F = (N-1)chi2 / (N(k-1) - chi2) on (k-1, (k-1)(N-1)) df, the less
    conservative form of Friedman's statistic (Demšar 2006); inf when the ranks agree in every cell."""
    df1, df2 = float(k - 1), float((k - 1) * (n_cells - 1))
    denom = n_cells * (k - 1) - chi2
    f = math.inf if denom <= 0 else (n_cells - 1) * chi2 / denom
    return f, df1, df2


def iqm(x: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the 25% trimmed mean of all runs."""
    x = np.asarray(x, dtype=float).ravel()
    return float(sps.trim_mean(x, 0.25)) if x.size else math.nan


def iqm_interval(
    per_cell: Sequence[Sequence[float] | np.ndarray],
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """IQM over all runs of all cells, with a stratified percentile bootstrap interval.

    ``per_cell`` holds one ``(n_seeds_c,)`` array per cell; runs are resampled within each cell
    (rliable's stratified bootstrap), so every replicate keeps the cells' run counts.
    Returns (iqm, low, high).
    """
    cells = [np.asarray(c, dtype=float).ravel() for c in per_cell]
    cells = [c for c in cells if c.size]
    if not cells:
        return math.nan, math.nan, math.nan
    point = iqm(np.concatenate(cells))
    reps = np.concatenate([c[rng.integers(0, c.size, size=(n_boot, c.size))] for c in cells], axis=1)
    boot = sps.trim_mean(reps, 0.25, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return point, float(low), float(high)


# --------------------------------------------------------------------------------------------
# Power
# --------------------------------------------------------------------------------------------


def seeds_needed(
    std: float,
    *,
    difference: float,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    two_sample: bool = False,
) -> float:
    """Seeds needed to detect ``difference`` at run-to-run ``std`` with the given power.

    One-sample t-test against a fixed number by default (statsmodels ``TTestPower``); with
    ``two_sample`` the seeds per method for an independent two-sample t-test (``TTestIndPower``).
    Returns at least 2, and inf when ``difference`` is not positive.
    """
    if not (np.isfinite(std) and np.isfinite(difference)):
        return math.nan
    if difference <= 0:
        return math.inf
    if std <= 0:
        return 2.0
    effect = difference / std
    solver = TTestIndPower() if two_sample else TTestPower()
    kwargs = {"nobs1": None} if two_sample else {"nobs": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n = float(np.squeeze(solver.solve_power(effect_size=effect, alpha=alpha, power=power,
                                                    alternative=alternative, **kwargs)))
    except Exception:  # the root finder can fail at extreme effect sizes
        n = math.nan
    if not np.isfinite(n) or n <= 0:
        # Normal approximation, good enough where the t-based solver gives up.
        z_a = sps.norm.ppf(1 - (alpha / 2 if alternative == "two-sided" else alpha))
        n = ((z_a + sps.norm.ppf(power)) / effect) ** 2 * (2 if two_sample else 1)
    return float(max(2, math.ceil(n - 1e-9)))
