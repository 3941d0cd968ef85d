"""Statistics for benchmark results: intervals, tests against papers, comparisons of methods.

Everything here is a pure function of numpy arrays. Anything random takes an explicit
``numpy.random.Generator`` so that a report is reproducible from its seed. Accuracies are in
percent, so a ``margin`` of 1.0 means one accuracy point.

Conventions:

* one *cell* is a (dataset, noise type, noise rate, noise variant) setting, one *run* is a seed;
* ``x`` of shape ``(n_seeds,)`` holds one accuracy per run of one method in one cell;
* cells with fewer than two runs are described but never tested.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower
# Imported here, not lazily inside statsmodels: its import installs an "always" filter for
# ConvergenceWarning that would otherwise override the local ignore in seeds_needed.
from statsmodels.tools import sm_exceptions as _sm_exceptions  # noqa: F401

__all__ = [
    "Description",
    "PaperTest",
    "PairedComparison",
    "FriedmanResult",
    "VERDICTS",
    "NEMENYI_Q05",
    "describe",
    "t_interval",
    "test_against_paper",
    "verdict",
    "holm",
    "apply_holm",
    "paired_comparison",
    "probability_of_improvement",
    "average_ranks",
    "friedman",
    "nemenyi_q",
    "critical_difference",
    "iqm",
    "iqm_interval",
    "seeds_needed",
]

REPRODUCED = "reproduced"
BELOW = "below"
ABOVE = "above"
INCONCLUSIVE = "inconclusive"
TOO_FEW = "too few runs"
NO_PAPER = "no paper number"
VERDICTS = (REPRODUCED, BELOW, ABOVE, INCONCLUSIVE, TOO_FEW, NO_PAPER)

# Demšar (2006), Table 5(a): studentised range q_0.05 / sqrt(2) for k = 2..10 classifiers.
NEMENYI_Q05 = {2: 1.960, 3: 2.344, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


def _as_1d(x: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-d array of runs, got shape {arr.shape}")
    return arr


def _std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.size >= 2 else math.nan


# --------------------------------------------------------------------------------------------
# One method in one cell
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Description:
    """Summary of the runs of one method in one cell."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    boot_low: float
    boot_high: float
    boot_method: str
    note: str

    def as_dict(self) -> dict:
        return asdict(self)


def t_interval(x: Sequence[float] | np.ndarray, *, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of ``x`` ``(n,)``; NaNs when n < 2."""
    x = _as_1d(x)
    n = x.size
    if n < 2:
        return math.nan, math.nan
    mean = float(x.mean())
    sem = _std(x) / math.sqrt(n)
    if sem == 0.0:
        return mean, mean
    low, high = sps.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return float(low), float(high)


# scipy >= 1.15 takes the generator as ``rng``; older releases call it ``random_state``.
_BOOTSTRAP_RNG = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"


def _bootstrap_mean(
    x: np.ndarray, *, confidence: float, n_boot: int, rng: np.random.Generator, method: str
) -> tuple[float, float]:
    with warnings.catch_warnings():
        # A degenerate or tiny sample makes BCa warn and return NaN; the caller falls back.
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            (x,), np.mean, n_resamples=n_boot, confidence_level=confidence, method=method,
            **{_BOOTSTRAP_RNG: rng},
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def describe(
    x: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator,
) -> Description:
    """n, mean, std (ddof=1), t-interval and BCa bootstrap interval of ``x`` ``(n_seeds,)``.

    BCa needs at least three distinct values to estimate its acceleration; with n = 2 or all
    values equal the percentile interval is used instead, and with n < 2 both intervals are NaN.
    ``note`` says which fallback was taken.
    """
    x = _as_1d(x)
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return Description(0, nan, nan, nan, nan, nan, nan, "none", "no runs")
    mean = float(x.mean())
    std = _std(x)
    ci_low, ci_high = t_interval(x, confidence=confidence)
    if n < 2:
        return Description(n, mean, std, ci_low, ci_high, math.nan, math.nan, "none", "n<2: no interval")
    if np.all(x == x[0]):
        return Description(n, mean, std, ci_low, ci_high, mean, mean, "percentile",
                           "all values equal: BCa undefined, degenerate interval")
    note = ""
    method = "BCa"
    if n < 3:
        method, note = "percentile", "n<3: BCa undefined, percentile interval"
    low, high = _bootstrap_mean(x, confidence=confidence, n_boot=n_boot, rng=rng, method=method)
    if method == "BCa" and not (np.isfinite(low) and np.isfinite(high)):
        method, note = "percentile", "BCa failed: percentile interval"
        low, high = _bootstrap_mean(x, confidence=confidence, n_boot=n_boot, rng=rng, method=method)
    return Description(n, mean, std, ci_low, ci_high, low, high, method, note)


# --------------------------------------------------------------------------------------------
# Against a paper number
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperTest:
    """Our runs of one method in one cell against the number a paper reports.

    ``p_value`` is the two-sided test of a difference, ``p_tost`` the equivalence test within
    ``±margin``; ``verdict`` uses them unadjusted here and is recomputed by :func:`apply_holm`
    with Holm-adjusted p-values across a table.
    """

    n: int
    mean: float
    std: float
    paper_mean: float
    paper_std: float
    paper_n: float
    test: str
    diff: float
    statistic: float
    df: float
    p_value: float
    p_tost: float
    margin: float
    power: float
    verdict: str
    seeds_needed: float

    def as_dict(self) -> dict:
        return asdict(self)


def verdict(p_diff: float, p_tost: float, diff: float, *, alpha: float = 0.05) -> str:
    """The verdict from a difference p-value, an equivalence p-value and the signed difference.

    Equivalence comes first: a difference smaller than the margin counts as reproduced even
    when many seeds make it significant.
    """
    if not (np.isfinite(p_diff) and np.isfinite(p_tost)):
        return TOO_FEW
    if p_tost < alpha:
        return REPRODUCED
    if p_diff < alpha:
        return BELOW if diff < 0 else ABOVE
    return INCONCLUSIVE


def _welch_df(v1: float, n1: int, v2: float, n2: int) -> float:
    """Welch-Satterthwaite degrees of freedom from variances ``v`` and sizes ``n``."""
    a, b = v1 / n1, v2 / n2
    return (a + b) ** 2 / (a**2 / (n1 - 1) + b**2 / (n2 - 1))


def _tests_from_se(diff: float, se: float, df: float, margin: float) -> tuple[float, float, float]:
    """(t statistic, two-sided p, TOST p) for a difference with standard error ``se``."""
    if se == 0.0:
        # Zero variance on both sides: the limits of the tests as the variance goes to zero.
        p_diff = 1.0 if diff == 0 else 0.0
        p_tost = 0.0 if abs(diff) < margin else 1.0
        return (math.copysign(math.inf, diff) if diff else 0.0), p_diff, p_tost
    t = diff / se
    p_diff = float(2 * sps.t.sf(abs(t), df))
    p_lower = float(sps.t.sf((diff + margin) / se, df))  # H0: diff <= -margin
    p_upper = float(sps.t.cdf((diff - margin) / se, df))  # H0: diff >= +margin
    return float(t), p_diff, max(p_lower, p_upper)


def test_against_paper(
    x: Sequence[float] | np.ndarray,
    *,
    paper_mean: float,
    paper_std: float | None = None,
    paper_n: float | None = None,
    margin: float = 1.0,
    alpha: float = 0.05,
    power: float | None = 0.8,
) -> PaperTest:
    """Test our runs ``x`` ``(n_seeds,)`` against a paper's mean (and std and run count).

    * With the paper's std and n: Welch's t-test from summary statistics
      (``scipy.stats.ttest_ind_from_stats``) and a Welch TOST.
    * Otherwise the paper's number is taken as fixed: a one-sample t-test and TOST.
    * n < 2 is never tested: verdict ``too few runs``.

    ``seeds_needed`` (only for an inconclusive verdict, and not when ``power`` is None) is the
    number of seeds at the observed std for the binding one-sided test of the TOST to reach
    ``power`` if the true difference is the observed one; infinite when the observed difference
    is outside the margin.
    """
    x = _as_1d(x)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = _std(x)
    p_std = math.nan if paper_std is None or not np.isfinite(paper_std) else float(paper_std)
    p_n = math.nan if paper_n is None or not np.isfinite(paper_n) else float(paper_n)
    diff = mean - float(paper_mean)
    nan = math.nan
    pw = nan if power is None else float(power)
    if n < 2:
        return PaperTest(n, mean, std, float(paper_mean), p_std, p_n, "none", diff,
                         nan, nan, nan, nan, margin, pw, TOO_FEW, nan)
    if np.isfinite(p_std) and np.isfinite(p_n) and p_n >= 2:
        test = "welch"
        v1, v2 = std**2, p_std**2
        se = math.sqrt(v1 / n + v2 / p_n)
        df = _welch_df(v1, n, v2, int(p_n)) if se > 0 else float(n + p_n - 2)
        if se > 0:
            res = sps.ttest_ind_from_stats(mean, std, n, paper_mean, p_std, p_n, equal_var=False)
            stat, p_diff = float(res.statistic), float(res.pvalue)
            _, _, p_tost = _tests_from_se(diff, se, df, margin)
        else:
            stat, p_diff, p_tost = _tests_from_se(diff, se, df, margin)
    else:
        test = "one-sample"
        se = std / math.sqrt(n)
        df = float(n - 1)
        stat, p_diff, p_tost = _tests_from_se(diff, se, df, margin)
    v = verdict(p_diff, p_tost, diff, alpha=alpha)
    needed = _seeds_for_equivalence(std, diff, margin=margin, alpha=alpha, power=pw) if v == INCONCLUSIVE else nan
    return PaperTest(n, mean, std, float(paper_mean), p_std, p_n, test, diff, stat, float(df),
                     p_diff, p_tost, margin, pw, v, needed)


def _seeds_for_equivalence(std: float, diff: float, *, margin: float, alpha: float, power: float) -> float:
    room = margin - abs(diff)
    if not (np.isfinite(std) and np.isfinite(diff) and np.isfinite(power)):
        return math.nan
    if room <= 0:
        return math.inf
    return seeds_needed(std, difference=room, alpha=alpha, power=power, alternative="larger")


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values ``(m,)``; NaN entries (untested) stay NaN and do not count."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def apply_holm(tests: Sequence[PaperTest], *, alpha: float = 0.05) -> list[dict]:
    """Holm-adjust the difference and equivalence p-values of a table of tests.

    Returns one dict per test: its fields plus ``p_holm``, ``p_tost_holm`` and the verdict
    recomputed from the adjusted p-values (adjusting only raises p-values, so a verdict can only
    turn inconclusive; ``seeds_needed`` is then filled in).
    """
    p_holm = holm([t.p_value for t in tests])
    p_tost_holm = holm([t.p_tost for t in tests])
    rows = []
    for t, ph, pth in zip(tests, p_holm, p_tost_holm):
        row = t.as_dict()
        row["p_holm"] = float(ph)
        row["p_tost_holm"] = float(pth)
        if t.verdict != TOO_FEW:
            row["verdict"] = verdict(ph, pth, t.diff, alpha=alpha)
        if row["verdict"] == INCONCLUSIVE and not np.isfinite(t.seeds_needed):
            row["seeds_needed"] = _seeds_for_equivalence(t.std, t.diff, margin=t.margin, alpha=alpha, power=t.power)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Two methods in one cell, paired across seeds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedComparison:
    """Method a against method b on the same seeds; differences are a - b."""

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    t_stat: float
    p_t: float
    w_stat: float
    p_wilcoxon: float
    prob_improvement: float
    poi_low: float
    poi_high: float
    note: str

    def as_dict(self) -> dict:
        return asdict(self)


def probability_of_improvement(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """P(a > b) = Mann-Whitney U / (n·m), ties counting one half (rliable's definition)."""
    a, b = _as_1d(a), _as_1d(b)
    if a.size == 0 or b.size == 0:
        return math.nan
    return float(_poi(a[None, :], b[None, :])[0])


def _poi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise P(a > b) for ``a`` ``(r, n)`` and ``b`` ``(r, m)``."""
    gt = (a[:, :, None] > b[:, None, :]).mean(axis=(1, 2))
    eq = (a[:, :, None] == b[:, None, :]).mean(axis=(1, 2))
    return gt + 0.5 * eq


def _poi_interval(
    a: np.ndarray, b: np.ndarray, *, confidence: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    # Independent resampling of each sample, as rliable's StratifiedIndependentBootstrap does.
    ia = rng.integers(0, a.size, size=(n_boot, a.size))
    ib = rng.integers(0, b.size, size=(n_boot, b.size))
    reps = _poi(a[ia], b[ib])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return float(low), float(high)


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator,
) -> PairedComparison:
    """Compare ``a`` and ``b`` ``(n_seeds,)``, aligned so that ``a[i]`` and ``b[i]`` share a seed.

    Paired t-test and Wilcoxon signed-rank test on a - b, the mean difference with its
    t-interval, and P(a > b) with a percentile bootstrap interval.
    """
    a, b = _as_1d(a), _as_1d(b)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal shapes, got {a.shape} and {b.shape}")
    n = int(a.size)
    nan = math.nan
    if n < 2:
        mean_diff = float((a - b).mean()) if n else nan
        poi = probability_of_improvement(a, b) if n else nan
        return PairedComparison(n, mean_diff, nan, nan, nan, nan, nan, nan, poi, nan, nan, "n<2: not tested")
    d = a - b
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
    if np.all(d == 0):
        w_stat, p_w = 0.0, 1.0
        notes.append("all differences zero")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exact-distribution and ties warnings at tiny n
            w = sps.wilcoxon(a, b, zero_method="wilcox")
        w_stat, p_w = float(w.statistic), float(w.pvalue)
    poi = probability_of_improvement(a, b)
    poi_low, poi_high = _poi_interval(a, b, confidence=confidence, n_boot=n_boot, rng=rng)
    return PairedComparison(n, mean_diff, ci_low, ci_high, t_stat, p_t, w_stat, p_w, poi,
                            poi_low, poi_high, "; ".join(notes))


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
    return FriedmanResult(n_cells, k, float(res.statistic), float(res.pvalue), ranks, cd, "")


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


# The name starts with "test"; keep pytest from collecting it when a test module imports it.
test_against_paper.__test__ = False  # type: ignore[attr-defined]
