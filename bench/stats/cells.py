"""One method in one cell: the description of its runs, the SE of its mean under the cell's
noise-draw design (one draw, a draw per run, or J draws crossed with seeds) and the variance
components of a crossed cell.

Pure functions of arrays; the bootstrap takes an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

from bench.stats._common import AsDict, as_1d, sample_std

MIN_BOOT_N = 10  # fewest runs for a bootstrap interval


@dataclass(frozen=True)
class Description(AsDict):
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


def t_interval(x: Sequence[float] | np.ndarray, *, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of ``x`` ``(n,)``; NaNs when n < 2."""
    x = as_1d(x)
    n = x.size
    if n < 2:
        return math.nan, math.nan
    mean = float(x.mean())
    sem = sample_std(x) / math.sqrt(n)
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

    No bootstrap interval below ``MIN_BOOT_N`` runs: at n = 5 the BCa interval is about 0.6 times
    the t-interval and covers about 85% at a nominal 95% (73% at n = 3), so it would only look
    precise. With all values equal it is degenerate, and with n < 2 both intervals are NaN.
    ``note`` says which case was taken.
    """
    x = as_1d(x)
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return Description(0, nan, nan, nan, nan, nan, nan, "none", "no runs")
    mean = float(x.mean())
    std = sample_std(x)
    ci_low, ci_high = t_interval(x, confidence=confidence)
    if n < 2:
        return Description(n, mean, std, ci_low, ci_high, math.nan, math.nan, "none", "n<2: no interval")
    if n < MIN_BOOT_N:
        return Description(n, mean, std, ci_low, ci_high, math.nan, math.nan, "none",
                           f"n<{MIN_BOOT_N}: no bootstrap interval (it undercovers at small n)")
    if np.all(x == x[0]):
        return Description(n, mean, std, ci_low, ci_high, mean, mean, "percentile",
                           "all values equal: BCa undefined, degenerate interval")
    note = ""
    method = "BCa"
    low, high = _bootstrap_mean(x, confidence=confidence, n_boot=n_boot, rng=rng, method=method)
    if method == "BCa" and not (np.isfinite(low) and np.isfinite(high)):
        method, note = "percentile", "BCa failed: percentile interval"
        low, high = _bootstrap_mean(x, confidence=confidence, n_boot=n_boot, rng=rng, method=method)
    return Description(n, mean, std, ci_low, ci_high, low, high, method, note)


# --------------------------------------------------------------------------------------------
# The variance of a cell's mean: training seeds and noise draws
# --------------------------------------------------------------------------------------------

ONE_DRAW = "one draw"
DRAW_PER_RUN = "a draw per run"
CROSSED = "crossed"
DESIGNS = (ONE_DRAW, DRAW_PER_RUN, CROSSED)


@dataclass(frozen=True)
class CellEstimate(AsDict):
    """The mean of one method's runs in one cell with the standard error its design implies.

    ``design`` is how the runs relate to the noise draws: ``one draw`` (every run trained on the
    same noisy labels: the interval is conditional on that draw), ``a draw per run`` (the spread
    of the runs already holds the draw's variance) or ``crossed`` (J draws with several seeds
    each: ``s2_draw`` and ``s2_train`` estimated by one-way random-effects ANOVA, method of
    moments). ``se`` and ``df`` are what intervals and tests use.
    """

    n: int
    n_draws: int
    design: str
    mean: float
    std: float
    se: float
    df: float
    s2_draw: float
    s2_train: float

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """t-interval for the mean with the design's SE and df; NaNs when it has none."""
        if not (np.isfinite(self.se) and np.isfinite(self.df)):
            return math.nan, math.nan
        half = float(sps.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.mean - half, self.mean + half


def satterthwaite_df(terms: Sequence[tuple[float, float]]) -> float:
    """Satterthwaite df of a variance sum_k a_k, from (a_k, df_k) pairs (a_k = coefficient x mean square).

    Terms with infinite df (known variances) add to the sum but not to the denominator.
    """
    total = sum(a for a, _ in terms)
    denom = sum(a * a / d for a, d in terms if np.isfinite(d) and d > 0)
    if total <= 0:
        return math.nan
    return math.inf if denom == 0 else total * total / denom


def estimate_from_summary(mean: float, std: float, n: int, *, design: str = DRAW_PER_RUN) -> CellEstimate:
    """A cell given by its mean, std (ddof=1) and run count, as a user's own runs are."""
    n = int(n)
    se = float(std) / math.sqrt(n) if n >= 2 and np.isfinite(std) else math.nan
    df = float(n - 1) if n >= 2 else math.nan
    s2 = float(std) ** 2 if n >= 2 else math.nan
    return CellEstimate(n, 1 if design == ONE_DRAW else n, design, float(mean), float(std) if n >= 2 else math.nan,
                        se, df, math.nan, s2)


def estimate_cell(x: Sequence[float] | np.ndarray, draws: Sequence[object] | None = None) -> CellEstimate:
    """The mean of runs ``x`` ``(n,)`` and its SE, from the noise draw of each run ``draws`` ``(n,)``.

    * all runs on one draw (or ``draws`` None): SE = s/sqrt(n), df n - 1, conditional on the draw;
    * every run on its own draw: the same arithmetic, now covering the draw's variance too;
    * J >= 2 draws, some with several runs: the mean of the draws' means, with
      SE^2 = s2_draw/J + s2_train·mean(1/I_j)/J from one-way ANOVA (method of moments) and
      Satterthwaite df from the between- and within-draw mean squares (J - 1 when balanced). Pooling such runs as
      independent would drop the draw's variance from the SE.
    """
    x = as_1d(x)
    n = int(x.size)
    labels = np.zeros(n, dtype=int) if draws is None else pd_codes(draws)
    if labels.size != n:
        raise ValueError(f"{n} runs but {labels.size} draw labels")
    n_draws = int(np.unique(labels).size) if n else 0
    std = sample_std(x)
    if n_draws <= 1 or n_draws == n:
        design = ONE_DRAW if n_draws <= 1 else DRAW_PER_RUN
        s = estimate_from_summary(float(x.mean()) if n else math.nan, std, n, design=design)
        return CellEstimate(n, max(n_draws, 0), design, s.mean, s.std, s.se, s.df,
                            math.nan, s.s2_train if design == ONE_DRAW else math.nan)
    groups = [x[labels == g] for g in np.unique(labels)]
    sizes = np.array([g.size for g in groups], dtype=float)
    means = np.array([g.mean() for g in groups])
    j = len(groups)
    df_w = float(n - j)
    ms_w = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / df_w)
    ms_b = float((sizes * (means - x.mean()) ** 2).sum() / (j - 1))
    i0 = float((n - (sizes ** 2).sum() / n) / (j - 1))
    c_w = float((1.0 / sizes).mean() / j)  # coefficient of s2_train in Var(mean of draw means)
    # s2_draw enters the SE untruncated: the SE is then the between-draw mean square's, whose
    # t-interval on J - 1 df is exact for a balanced design; truncating it at 0 would overcover
    # (98% at sigma_draw = 0, J = 5, I = 2). The decomposition reports it truncated.
    terms = [(ms_b / (i0 * j), float(j - 1)), (ms_w * (c_w - 1.0 / (i0 * j)), df_w)]
    var = sum(a for a, _ in terms)
    if var <= 0:  # an unbalanced design whose untruncated estimate went negative
        terms = [(ms_w * c_w, df_w)]
        var = ms_w * c_w
    se = math.sqrt(max(var, 0.0))
    df = satterthwaite_df([t for t in terms if t[0] != 0]) if se > 0 else float(j - 1)
    return CellEstimate(n, j, CROSSED, float(means.mean()), std, se, df, max(0.0, (ms_b - ms_w) / i0), ms_w)


@dataclass(frozen=True)
class VarianceComponents(AsDict):
    """How the spread of a crossed cell (J draws x I seeds) splits between the noise draw and the
    training seed, with (``confidence``) intervals; NaNs where the design has no such split.

    ``p_draw`` tests sigma2_draw = 0 (the one-way ANOVA F-test, exact under normality for
    balanced and unbalanced designs alike). ``share`` is the draw's share of a run's variance,
    sigma2_draw / (sigma2_draw + sigma2_train) (the intraclass correlation of runs on one draw);
    ``understatement`` = 1 / sqrt(1 - share) is
    by how much a std over seeds at one fixed draw (what a paper reports) understates the std a
    re-implementer sees, whose runs fall on other draws. Balanced designs: sigma2_train's interval
    is exact (chi-square on N - J df), the share's exact (F on J - 1, N - J df; Searle), and
    sigma2_draw's the modified large-sample interval of Graybill and Wang (Burdick and Graybill
    1992). Unbalanced designs use I0 = (N - sum I_j^2 / N) / (J - 1) in place of I
    (``approximate``).
    """

    n_draws: int
    runs_per_draw: float
    s2_draw: float
    s2_draw_low: float
    s2_draw_high: float
    s2_train: float
    s2_train_low: float
    s2_train_high: float
    share: float
    share_low: float
    share_high: float
    understatement: float
    understatement_low: float
    understatement_high: float
    approximate: bool
    p_draw: float = math.nan     # F-test of sigma2_draw = 0: MSB / MSW on (J - 1, N - J) df


def variance_components(x: Sequence[float] | np.ndarray, draws: Sequence[object], *,
                        confidence: float = 0.95) -> VarianceComponents:
    """sigma2_draw, sigma2_train, the draw's share and the fixed-draw understatement of runs ``x``
    ``(n,)`` on noise draws ``draws`` ``(n,)``, by one-way random-effects ANOVA (see
    :class:`VarianceComponents`)."""
    x = as_1d(x)
    labels = pd_codes(draws)
    groups = [x[labels == g] for g in np.unique(labels)]
    sizes = np.array([g.size for g in groups], dtype=float)
    j, n = len(groups), int(x.size)
    nan = math.nan
    if j < 2 or n <= j:
        return VarianceComponents(j, nan, *(nan,) * 12, False)
    df_b, df_w = float(j - 1), float(n - j)
    means = np.array([g.mean() for g in groups])
    ms_w = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / df_w)
    ms_b = float((sizes * (means - x.mean()) ** 2).sum() / df_b)
    i0 = float((n - (sizes ** 2).sum() / n) / df_b)
    a = (1.0 - confidence) / 2
    s2_train = ms_w
    train_low = df_w * ms_w / float(sps.chi2.ppf(1 - a, df_w))
    train_high = df_w * ms_w / float(sps.chi2.ppf(a, df_w))
    s2_draw = max(0.0, (ms_b - ms_w) / i0)
    # modified large-sample interval for (MSB - MSW) / I0
    f_up, f_lo = float(sps.f.ppf(1 - a, df_b, df_w)), float(sps.f.ppf(a, df_b, df_w))
    g1 = 1 - df_b / float(sps.chi2.ppf(1 - a, df_b))
    h1 = df_b / float(sps.chi2.ppf(a, df_b)) - 1
    g2 = 1 - df_w / float(sps.chi2.ppf(1 - a, df_w))
    h2 = df_w / float(sps.chi2.ppf(a, df_w)) - 1
    g12 = ((f_up - 1) ** 2 - g1 ** 2 * f_up ** 2 - h2 ** 2) / f_up
    h12 = ((1 - f_lo) ** 2 - h1 ** 2 * f_lo ** 2 - g2 ** 2) / f_lo
    diff = ms_b - ms_w
    low = diff - math.sqrt(max(g1 ** 2 * ms_b ** 2 + h2 ** 2 * ms_w ** 2 + g12 * ms_b * ms_w, 0.0))
    high = diff + math.sqrt(max(h1 ** 2 * ms_b ** 2 + g2 ** 2 * ms_w ** 2 + h12 * ms_b * ms_w, 0.0))
    draw_low, draw_high = max(0.0, low / i0), max(0.0, high / i0)
    # the intraclass correlation and its F interval
    ratio = ms_b / ms_w if ms_w > 0 else math.inf

    def icc(f: float) -> float:
        return float(np.clip((f - 1) / (f + i0 - 1), 0.0, 1.0)) if np.isfinite(f) else 1.0

    share = s2_draw / (s2_draw + s2_train) if s2_draw + s2_train > 0 else nan
    share_low, share_high = icc(ratio / f_up), icc(ratio / f_lo)

    def under(r: float) -> float:
        return 1.0 / math.sqrt(1.0 - r) if r < 1 else math.inf

    if ms_w > 0:
        p_draw = float(sps.f.sf(ratio, df_b, df_w))
    else:   # no spread within draws: any spread between them is the draw's
        p_draw = 0.0 if ms_b > 0 else nan
    return VarianceComponents(j, float(sizes.mean()), s2_draw, draw_low, draw_high, s2_train, train_low,
                              train_high, share, share_low, share_high, under(share) if np.isfinite(share) else nan,
                              under(share_low), under(share_high), bool(np.unique(sizes).size > 1), p_draw)


@dataclass(frozen=True)
class DrawGap(AsDict):
    """What the noise draw explains of the gap between two cell means on different draws (a
    paper's and a re-implementation's), each over ``seeds`` training seeds on its one draw.

    The gap of the two means is D_a - D_b + (training means), with variance 2 sigma2_draw +
    2 sigma2_train / seeds. ``draw_half_width`` = z 2^0.5 sigma_draw bounds the gap the draw alone
    makes in ``confidence`` of draw pairs (training seeds averaged away); ``half_width`` bounds the
    whole gap at ``seeds`` seeds each; ``fraction`` = sigma2_draw / (sigma2_draw + sigma2_train /
    seeds) is the draw's part of the gap's variance. The intervals carry those of sigma2_draw and
    of the share (:class:`VarianceComponents`) through these monotone maps.
    """

    seeds: int
    draw_half_width: float
    draw_half_width_low: float
    draw_half_width_high: float
    half_width: float
    fraction: float
    fraction_low: float
    fraction_high: float


def draw_gap(components: VarianceComponents, *, seeds: int = 5, confidence: float = 0.95) -> DrawGap:
    """:class:`DrawGap` of a crossed cell's variance components at ``seeds`` seeds per mean."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    z = float(sps.norm.ppf(0.5 + confidence / 2)) * math.sqrt(2.0)

    def width(s2: float) -> float:
        return z * math.sqrt(s2) if np.isfinite(s2) and s2 >= 0 else math.nan

    def fraction(share: float) -> float:   # sigma2_d / (sigma2_d + sigma2_t / n) from the share
        if not np.isfinite(share):
            return math.nan
        return share * seeds / (share * seeds + 1.0 - share) if share < 1 else 1.0

    c = components
    total = c.s2_draw + c.s2_train / seeds if np.isfinite(c.s2_draw + c.s2_train) else math.nan
    return DrawGap(seeds, width(c.s2_draw), width(c.s2_draw_low), width(c.s2_draw_high), width(total),
                   fraction(c.share), fraction(c.share_low), fraction(c.share_high))


def pd_codes(values: Sequence[object]) -> np.ndarray:
    """Integer codes of arbitrary hashable labels, in order of first appearance."""
    seen: dict = {}
    return np.array([seen.setdefault(v, len(seen)) for v in values], dtype=int)

