"""Tests and intervals for the questions a grid asks of its own arms (``bench.questions``).

Pure functions of numpy arrays; anything random takes an explicit ``numpy.random.Generator``.
Accuracies are in percent, so a ``margin`` of 1.0 is one accuracy point.

* :func:`paired_test`: arm a against arm b on shared seeds (same seed = same noise draw): the
  mean difference with its t-interval, the paired t-test, the exact sign-flip (permutation)
  test and the exact Wilcoxon signed-rank test, and the equivalence test (TOST) within a margin;
* :func:`welch_test`: the same for two arms that share nothing (Welch's unequal-variance t);
* :func:`holm_verdicts`: Holm over a family of such tests and the three-way verdict;
* :func:`largest_dip`: a training curve's deepest fall below its running maximum;
* :func:`spearman_within_seeds`: Spearman's rank correlation across cells within each seed
  (one noise draw), its mean over the seeds with a t-interval, and a stratified permutation
  test (the cells permuted within each seed);
* :func:`blocked_anova`: whether any of several arms differs, seeds as blocks: the block ANOVA's
  F-test and its stratified permutation test (the arms permuted within each seed).
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from scipy import stats as sps

from bench.stats.paper import holm

__all__ = ["TwoArmTest", "Dip", "Correlation", "DIFFERENT", "SMALL_DIFFERENCE", "EQUIVALENT", "INCONCLUSIVE",
           "EXACT_SIGN_FLIP_MAX_N", "sign_flip_p", "paired_test", "welch_test", "holm_verdicts",
           "largest_dip", "spearman_within_seeds", "EXACT_BLOCK_PERMUTATIONS_MAX", "BlockedAnova", "blocked_anova"]

DIFFERENT = "different"
SMALL_DIFFERENCE = "different, within the margin"
EQUIVALENT = "equivalent"
INCONCLUSIVE = "inconclusive"
EXACT_SIGN_FLIP_MAX_N = 16   # 2^16 sign vectors; above it the test samples them
EXACT_BLOCK_PERMUTATIONS_MAX = 50_000   # arrangements the block permutation test enumerates


@dataclass(frozen=True)
class TwoArmTest:
    """Arm a against arm b; ``diff`` = mean(a) - mean(b).

    ``ci_low`` / ``ci_high``: the ``confidence`` t-interval of the difference. ``p_t``: the
    paired (or Welch) t-test; ``p_exact``: the sign-flip permutation test of the paired
    differences (NaN for Welch); ``p_wilcoxon``: the Wilcoxon signed-rank test (NaN for Welch);
    ``p_tost``: the equivalence test within ±``margin`` (two one-sided t-tests). ``p_holm``,
    ``p_exact_holm``, ``p_tost_holm`` and ``verdict`` are filled in by :func:`holm_verdicts`.
    """

    kind: str
    n_a: int
    n_b: int
    diff: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_t: float
    p_exact: float
    p_wilcoxon: float
    p_tost: float
    margin: float
    p_holm: float = math.nan
    p_exact_holm: float = math.nan
    p_tost_holm: float = math.nan
    verdict: str = ""


def _as_1d(x: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-d array of runs, got shape {arr.shape}")
    return arr


@functools.lru_cache(maxsize=None)
def _all_signs(n: int) -> np.ndarray:
    """(2^n, n): every vector of n signs."""
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    signs.setflags(write=False)
    return signs


def sign_flip_p(d: Sequence[float] | np.ndarray, *, rng: np.random.Generator | None = None,
                n_resamples: int = 20000) -> float:
    """Two-sided p of the sign-flip test of mean(d) = 0 for paired differences ``d`` ``(n,)``.

    Under the null each difference is symmetric about 0, so every sign vector is equally likely:
    p = the share of sign vectors whose |mean| reaches the observed one. Exact (all 2^n
    vectors) up to :data:`EXACT_SIGN_FLIP_MAX_N` pairs; above it ``n_resamples`` random vectors
    from ``rng`` (required then), counting the observed one. NaN without a pair.
    """
    d = _as_1d(d)
    n = d.size
    if n == 0:
        return math.nan
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= EXACT_SIGN_FLIP_MAX_N:
        return float(np.mean(np.abs(_all_signs(n) @ d) / n >= observed - tol))
    if rng is None:
        raise ValueError(f"{n} pairs: the sign-flip test samples sign vectors and needs an rng")
    signs = rng.choice((1.0, -1.0), size=(n_resamples, n))
    hits = int(np.sum(np.abs(signs @ d) / n >= observed - tol))
    return (hits + 1) / (n_resamples + 1)


def _t_parts(diff: float, se: float, df: float, *, confidence: float, margin: float
             ) -> tuple[float, float, float, float]:
    """(ci_low, ci_high, p_t, p_tost) of a difference with standard error ``se`` on ``df``."""
    if not (np.isfinite(se) and np.isfinite(df)) or df <= 0:
        return math.nan, math.nan, math.nan, math.nan
    if se == 0.0:
        inside = abs(diff) < margin
        return diff, diff, 0.0 if diff else 1.0, 0.0 if inside else 1.0
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    p_t = float(2 * sps.t.sf(abs(diff) / se, df))
    p_tost = max(float(sps.t.sf((diff + margin) / se, df)), float(sps.t.cdf((diff - margin) / se, df)))
    return diff - half, diff + half, p_t, p_tost


def _wilcoxon_p(d: np.ndarray) -> float:
    if d.size == 0 or np.all(d == 0):
        return 1.0 if d.size else math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exact-distribution and ties warnings at tiny n
        return float(sps.wilcoxon(d, zero_method="wilcox").pvalue)


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                confidence: float = 0.95, margin: float = 1.0,
                rng: np.random.Generator | None = None) -> TwoArmTest:
    """Arm ``a`` against arm ``b`` ``(n,)``, aligned so that ``a[i]`` and ``b[i]`` share a seed
    (and with it the noise draw): t on the n differences (df n - 1), the exact sign-flip and
    Wilcoxon tests, and TOST within ±``margin``. Untested (NaNs) below two pairs."""
    a, b = _as_1d(a), _as_1d(b)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal shapes, got {a.shape} and {b.shape}")
    d = a - b
    n = int(d.size)
    diff = float(d.mean()) if n else math.nan
    if n < 2:
        return TwoArmTest("paired", n, n, diff, math.nan, math.nan, math.nan, math.nan, math.nan,
                          math.nan, math.nan, math.nan, margin)
    se, df = float(d.std(ddof=1)) / math.sqrt(n), float(n - 1)
    ci_low, ci_high, p_t, p_tost = _t_parts(diff, se, df, confidence=confidence, margin=margin)
    return TwoArmTest("paired", n, n, diff, se, df, ci_low, ci_high, p_t, sign_flip_p(d, rng=rng),
                      _wilcoxon_p(d), p_tost, margin)


def welch_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
               confidence: float = 0.95, margin: float = 1.0) -> TwoArmTest:
    """Arm ``a`` ``(n_a,)`` against arm ``b`` ``(n_b,)`` that share no seed or draw: Welch's
    t-interval and test with Welch-Satterthwaite df, and TOST within ±``margin``. Untested
    (NaNs) when an arm has fewer than two runs."""
    a, b = _as_1d(a), _as_1d(b)
    diff = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    if a.size < 2 or b.size < 2:
        return TwoArmTest("welch", a.size, b.size, diff, math.nan, math.nan, math.nan, math.nan,
                          math.nan, math.nan, math.nan, math.nan, margin)
    va, vb = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)) if se > 0 else float(a.size + b.size - 2)
    ci_low, ci_high, p_t, p_tost = _t_parts(diff, se, df, confidence=confidence, margin=margin)
    return TwoArmTest("welch", a.size, b.size, diff, se, df, ci_low, ci_high, p_t, math.nan,
                      math.nan, p_tost, margin)


def holm_verdicts(tests: Sequence[TwoArmTest], *, alpha: float = 0.05) -> list[TwoArmTest]:
    """Holm-adjust the t, sign-flip and equivalence p-values over the family ``tests`` and give
    each its verdict: ``different`` (adjusted difference p < alpha), ``different, within the
    margin`` (and the adjusted TOST p < alpha as well: a real but small difference),
    ``equivalent`` (only the adjusted TOST p < alpha), else ``inconclusive``; untested ones get
    no verdict."""
    p_holm = holm([t.p_t for t in tests])
    p_exact_holm = holm([t.p_exact for t in tests])
    p_tost_holm = holm([t.p_tost for t in tests])
    out = []
    for t, ph, peh, pth in zip(tests, p_holm, p_exact_holm, p_tost_holm):
        if not np.isfinite(ph):
            kind = ""
        elif ph < alpha:
            kind = SMALL_DIFFERENCE if pth < alpha else DIFFERENT
        elif pth < alpha:
            kind = EQUIVALENT
        else:
            kind = INCONCLUSIVE
        out.append(replace(t, p_holm=float(ph), p_exact_holm=float(peh), p_tost_holm=float(pth), verdict=kind))
    return out


@dataclass(frozen=True)
class Dip:
    """The deepest fall of a curve below its running maximum before its last entry: ``depth``
    (running max - value, 0 for a curve that never falls), at ``position`` (index into the
    curve), down to ``trough`` from ``peak``."""

    depth: float
    position: int
    trough: float
    peak: float


def largest_dip(curve: Sequence[float] | np.ndarray) -> Dip:
    """:class:`Dip` of ``curve`` ``(T,)`` over its entries 0..T-2 (the last one is the final
    accuracy, reported on its own); NaN entries are skipped. NaNs for fewer than two entries."""
    y = _as_1d(curve)[:-1]
    ok = np.flatnonzero(np.isfinite(y))
    if ok.size == 0:
        return Dip(math.nan, -1, math.nan, math.nan)
    values = y[ok]
    peaks = np.maximum.accumulate(values)
    drops = peaks - values
    at = int(np.argmax(drops))
    return Dip(float(drops[at]), int(ok[at]), float(values[at]), float(peaks[at]))


@dataclass(frozen=True)
class Correlation:
    """The mean over ``n_seeds`` seeds of Spearman's rho across ``n_cells`` cells within each
    seed (``per_seed``), the stratified permutation p-value of a mean rho of 0, and the
    ``confidence`` t-interval over the seeds (clipped to [-1, 1]; NaN where it cannot be had)."""

    rho: float
    p_value: float
    ci_low: float
    ci_high: float
    n_cells: int
    n_seeds: int
    per_seed: tuple[float, ...]


def _spearman_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of every column pair of ``x`` and ``y`` ``(cells, B)`` over the cells where
    both are finite (average ranks for ties: Pearson's r of the ranks); NaN for a column with
    fewer than three such cells or without spread."""
    ok = np.isfinite(x) & np.isfinite(y)
    rx = sps.rankdata(np.where(ok, x, np.nan), axis=0, nan_policy="omit")
    ry = sps.rankdata(np.where(ok, y, np.nan), axis=0, nan_policy="omit")
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cx, cy = rx - np.nanmean(rx, axis=0), ry - np.nanmean(ry, axis=0)
        rho = np.nansum(cx * cy, axis=0) / np.sqrt(np.nansum(cx ** 2, axis=0) * np.nansum(cy ** 2, axis=0))
    return np.where(ok.sum(axis=0) >= 3, rho, np.nan)


def spearman_within_seeds(x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator, n_perm: int = 2000,
                          confidence: float = 0.95) -> Correlation:
    """Spearman's rho between ``x`` and ``y`` ``(n_cells, n_seeds)`` across the cells of each
    seed (NaN where a cell lacks the seed; a seed needs three cells with both), averaged over the
    seeds that have one.

    Each seed is one noise draw shared by the cells (the thresholds of one setting), so the
    per-seed rhos are independent replicates of the within-draw association. The p-value is a
    stratified permutation test of "y does not depend on the cell": ``y`` permuted across the
    cells within each seed, ``n_perm`` times, two-sided on the mean rho, (1 + hits) / (1 + n_perm),
    so it is valid at any number of seeds (at two seeds and three cells it cannot go below
    2/36). The interval is the t-interval over the seeds (clipped to [-1, 1]); NaN below two
    seeds or where every seed gives the same rho, which a t-interval cannot bound.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"x and y must be (cells, seeds) of one shape, got {x.shape} and {y.shape}")
    n_cells = x.shape[0]
    per_seed = _spearman_columns(x, y)
    keep = np.isfinite(per_seed)
    rhos = per_seed[keep]
    n = int(rhos.size)
    if n == 0:
        return Correlation(math.nan, math.nan, math.nan, math.nan, n_cells, 0, ())
    mean = float(rhos.mean())
    xs, ys = x[:, keep], y[:, keep]
    # each seed's y permuted across its cells, laid out (cells, permutation, seed); a cell
    # missing in a seed stays missing
    perms = np.full((n_cells, n_perm, n), np.nan)
    for j in range(n):
        ok = np.flatnonzero(np.isfinite(xs[:, j]) & np.isfinite(ys[:, j]))
        picks = rng.permuted(np.broadcast_to(ok, (n_perm, ok.size)), axis=1)
        perms[ok, :, j] = ys[picks, j].T
    x_rep = np.broadcast_to(xs[:, None, :], perms.shape)
    null = _spearman_columns(x_rep.reshape(n_cells, -1), perms.reshape(n_cells, -1)).reshape(n_perm, n).mean(axis=1)
    p_value = float((1 + np.sum(np.abs(null) >= abs(mean) - 1e-12)) / (1 + n_perm))
    low = high = math.nan
    se = float(rhos.std(ddof=1)) / math.sqrt(n) if n >= 2 else 0.0
    if se > 0:
        half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * se
        low, high = max(-1.0, mean - half), min(1.0, mean + half)
    return Correlation(mean, p_value, low, high, n_cells, n, tuple(map(float, rhos)))


@dataclass(frozen=True)
class BlockedAnova:
    """Whether the arms of a randomised-block design differ at all: ``y`` is (blocks, arms), a
    block being one seed (one noise draw and one initialisation shared by every arm).

    ``f`` is the block ANOVA's F = MS_arms / MS_error on ``df_arms`` = arms - 1 and ``df_error``
    = (blocks - 1)(arms - 1) degrees of freedom, ``p_f`` its p-value under normal errors, and
    ``p_perm`` the stratified permutation test of the same F (each block's values permuted across
    the arms), which needs no normality: a bimodal arm (runs that drop a class) keeps its level.
    ``spread`` is the largest minus the smallest arm mean; ``p_floor`` the smallest p-value the
    permutation test can give at this design (1 / (arms!)^(blocks - 1) where it enumerates), so a
    caller can tell "no effect detected" from "this design cannot detect one".
    """

    f: float
    df_arms: int
    df_error: int
    p_f: float
    p_perm: float
    n_blocks: int
    n_arms: int
    spread: float
    p_floor: float


def _arm_sum_of_squares(y: np.ndarray) -> np.ndarray:
    """The between-arm sum of squares of ``y`` (..., blocks, arms), per leading index."""
    means = y.mean(axis=-2)
    return y.shape[-2] * ((means - means.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)


def _block_arrangements(b: int, k: int, *, rng: np.random.Generator, n_perm: int) -> tuple[np.ndarray, bool]:
    """(arrangements, b, k) orders of the arms within each block, the first block held fixed
    (relabelling the arms of every block alike leaves the statistic unchanged); every one of the
    (k!)^(b-1) where there are at most :data:`EXACT_BLOCK_PERMUTATIONS_MAX`, else ``n_perm``
    random ones. The flag says whether they are all of them."""
    if math.factorial(k) ** (b - 1) <= EXACT_BLOCK_PERMUTATIONS_MAX:
        orders = np.array(list(itertools.permutations(range(k))))
        rest = np.array(list(itertools.product(range(len(orders)), repeat=b - 1))).reshape(-1, b - 1)
        first = np.broadcast_to(np.arange(k), (len(rest), 1, k))
        return np.concatenate([first, orders[rest]], axis=1), True
    return rng.permuted(np.broadcast_to(np.arange(k), (n_perm, b, k)), axis=2), False


def blocked_anova(y: np.ndarray, *, rng: np.random.Generator, n_perm: int = 2000) -> BlockedAnova:
    """The randomised-block F-test of "no arm differs" on ``y`` (blocks, arms), all finite.

    Permuting the arms within each block leaves the total and the block sums of squares
    unchanged, so the F statistic is a monotone function of the between-arm sum of squares and
    the permutation test ranks that. It is exact (every arrangement) up to
    :data:`EXACT_BLOCK_PERMUTATIONS_MAX` arrangements, else ``n_perm`` random ones, p = (1 +
    hits) / (1 + n_perm). Both p-values are NaN below two blocks or two arms, or where the
    residual variance is zero.
    """
    y = np.asarray(y, dtype=float)
    if y.ndim != 2 or not np.isfinite(y).all():
        raise ValueError(f"y must be a finite (blocks, arms) array, got shape {y.shape}")
    b, k = y.shape
    spread = float(np.ptp(y.mean(axis=0))) if y.size else math.nan
    df_arms, df_error = k - 1, (b - 1) * (k - 1)
    if b < 2 or k < 2:
        return BlockedAnova(math.nan, df_arms, df_error, math.nan, math.nan, b, k, spread, math.nan)
    centred = y - y.mean()
    ss_arms = float(_arm_sum_of_squares(y))
    ss_blocks = k * float(((y.mean(axis=1) - y.mean()) ** 2).sum())
    ss_error = float((centred ** 2).sum()) - ss_arms - ss_blocks
    if ss_error <= 1e-12 * max(1.0, float((centred ** 2).sum())):
        return BlockedAnova(math.inf if ss_arms > 0 else math.nan, df_arms, df_error, math.nan, math.nan, b, k,
                            spread, math.nan)
    f = (ss_arms / df_arms) / (ss_error / df_error)
    orders, exact = _block_arrangements(b, k, rng=rng, n_perm=n_perm)
    null = _arm_sum_of_squares(np.take_along_axis(np.broadcast_to(y, orders.shape), orders, axis=2))
    hits = int(np.sum(null >= ss_arms * (1 - 1e-12)))
    p_perm, p_floor = (hits / len(orders), 1 / len(orders)) if exact else \
        ((1 + hits) / (1 + n_perm), 1 / (1 + n_perm))
    return BlockedAnova(float(f), df_arms, df_error, float(sps.f.sf(f, df_arms, df_error)), float(p_perm), b, k,
                        spread, float(p_floor))
