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
from scipy import special
from scipy import stats as sps
from statsmodels.stats.power import TTestIndPower, TTestPower
# Imported here, not lazily inside statsmodels: its import installs an "always" filter for
# ConvergenceWarning that would otherwise override the local ignore in seeds_needed.
from statsmodels.tools import sm_exceptions as _sm_exceptions  # noqa: F401

__all__ = [
    "Description", "CellEstimate", "PaperTest", "PairedComparison", "FriedmanResult",
    "VERDICTS", "DESIGNS", "NEMENYI_Q05", "MIN_BOOT_N", "MIN_CD_CELLS",
    "describe", "t_interval", "estimate_cell", "estimate_from_summary", "satterthwaite_df",
    "compare_to_paper", "test_against_paper", "paper_se", "verdict", "verdict_text", "holm", "apply_holm",
    "tost_power", "seeds_for_equivalence", "paired_comparison", "probability_of_improvement",
    "clopper_pearson", "sign_test", "average_ranks", "friedman", "iman_davenport", "nemenyi_q",
    "critical_difference", "iqm", "iqm_interval", "seeds_needed",
]

MIN_BOOT_N = 10  # fewest runs for a bootstrap interval
MIN_CD_CELLS = 10  # fewest cells to rank methods on (Demšar 2006: N > 10 for the Friedman approximation)

# Demšar (2006), Table 5(a): studentised range q_0.05 / sqrt(2) for k = 2..10 classifiers.
NEMENYI_Q05 = {2: 1.960, 3: 2.344, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


class _AsDict:
    """``as_dict()`` for the result dataclasses below."""

    def as_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]


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
class Description(_AsDict):
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

    No bootstrap interval below ``MIN_BOOT_N`` runs: at n = 5 the BCa interval is about 0.6 times
    the t-interval and covers about 85% at a nominal 95% (73% at n = 3), so it would only look
    precise. With all values equal it is degenerate, and with n < 2 both intervals are NaN.
    ``note`` says which case was taken.
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
class CellEstimate(_AsDict):
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
    x = _as_1d(x)
    n = int(x.size)
    labels = np.zeros(n, dtype=int) if draws is None else pd_codes(draws)
    if labels.size != n:
        raise ValueError(f"{n} runs but {labels.size} draw labels")
    n_draws = int(np.unique(labels).size) if n else 0
    std = _std(x)
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
class VarianceComponents(_AsDict):
    """How the spread of a crossed cell (J draws x I seeds) splits between the noise draw and the
    training seed, with (``confidence``) intervals; NaNs where the design has no such split.

    ``share`` is the draw's share of a run's variance, sigma2_draw / (sigma2_draw + sigma2_train)
    (the intraclass correlation of runs on one draw); ``understatement`` = 1 / sqrt(1 - share) is
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


def variance_components(x: Sequence[float] | np.ndarray, draws: Sequence[object], *,
                        confidence: float = 0.95) -> VarianceComponents:
    """sigma2_draw, sigma2_train, the draw's share and the fixed-draw understatement of runs ``x``
    ``(n,)`` on noise draws ``draws`` ``(n,)``, by one-way random-effects ANOVA (see
    :class:`VarianceComponents`)."""
    x = _as_1d(x)
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

    return VarianceComponents(j, float(sizes.mean()), s2_draw, draw_low, draw_high, s2_train, train_low,
                              train_high, share, share_low, share_high, under(share) if np.isfinite(share) else nan,
                              under(share_low), under(share_high), bool(np.unique(sizes).size > 1))


def pd_codes(values: Sequence[object]) -> np.ndarray:
    """Integer codes of arbitrary hashable labels, in order of first appearance."""
    seen: dict = {}
    return np.array([seen.setdefault(v, len(seen)) for v in values], dtype=int)


# --------------------------------------------------------------------------------------------
# Against a paper number
# --------------------------------------------------------------------------------------------


REPRODUCED = "reproduced"
LOWER = "reproduced, reliably lower"
HIGHER = "reproduced, reliably higher"
BELOW = "below"
ABOVE = "above"
INCONCLUSIVE = "inconclusive"
TOO_FEW = "too few runs"
NO_PAPER = "no paper number"
VERDICTS = (REPRODUCED, LOWER, HIGHER, BELOW, ABOVE, INCONCLUSIVE, TOO_FEW, NO_PAPER)
SIGMA_UCB = 0.90  # one-sided confidence of the upper bound for sigma in the seed count
POWER = 0.8


@dataclass(frozen=True)
class PaperTest(_AsDict):
    """Our runs of one method in one cell against the number a paper reports.

    ``diff`` is ours - paper with ``se`` and ``df`` (Satterthwaite, over our SE, the paper's SE
    std/sqrt(n_p) and a known draw variance); ``ci90`` its (1 - 2 alpha) interval, the one TOST
    inverts; ``bound`` the smallest margin at which TOST passes (the farther end of ``ci90`` from
    zero); ``p_within`` P(|delta| < margin) under a flat prior (a t posterior with ``se``, ``df``).
    ``p_value`` tests delta = 0, ``p_tost`` equivalence within ``±margin``; ``verdict`` uses them
    unadjusted here and is recomputed by :func:`apply_holm` across the paper's table.
    ``attainable`` is False when the paper's SE and the draw variance alone keep TOST from passing
    at any number of seeds; ``seeds_needed`` and ``seeds_needed_at`` are design-based seed counts
    (at delta = 0 and at delta = ``delta_planned``), see :func:`seeds_for_equivalence`.
    """

    n: int
    mean: float
    std: float
    design: str
    paper_mean: float
    paper_std: float
    paper_n: float
    test: str
    diff: float
    se: float
    df: float
    ci90_low: float
    ci90_high: float
    bound: float
    p_within: float
    statistic: float
    p_value: float
    p_tost: float
    margin: float
    draw_var: float
    attainable: bool
    verdict: str
    seeds_needed: float
    seeds_needed_at: float
    delta_planned: float


def verdict(p_diff: float, p_tost: float, diff: float, *, alpha: float = 0.05,
            p_tost_raw: float | None = None) -> str:
    """The verdict from a difference p-value, an equivalence p-value and the signed difference.

    Equivalent and different: ``reproduced, reliably lower`` / ``higher``; equivalent only:
    ``reproduced``; different and not equivalent: ``below`` / ``above``; else ``inconclusive``.
    With adjusted p-values pass the unadjusted equivalence p as ``p_tost_raw``: a difference that
    was within the margin before adjustment is never called ``below``/``above`` after it (an
    adjustment only withdraws claims, so its verdict is the raw one or weaker).
    """
    if not (np.isfinite(p_diff) and np.isfinite(p_tost)):
        return TOO_FEW
    equivalent, different = p_tost < alpha, p_diff < alpha
    raw_equivalent = equivalent if p_tost_raw is None else p_tost_raw < alpha
    if equivalent and different:
        return LOWER if diff < 0 else HIGHER
    if equivalent:
        return REPRODUCED
    if different and not raw_equivalent:
        return BELOW if diff < 0 else ABOVE
    return INCONCLUSIVE


def verdict_text(kind: str, diff: float) -> str:
    """The verdict as printed: ``reproduced, reliably lower by 0.45``."""
    return f"{kind} by {abs(diff):.2f}" if kind in (LOWER, HIGHER) else kind


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


def _finite(v: float | None) -> float:
    return math.nan if v is None or not np.isfinite(v) else float(v)


def paper_se(paper_std: float | None, paper_n: float | None) -> tuple[float, float]:
    """(SE, df) of a paper's mean from its std and run count; (0, inf) when either is unknown or
    n is infinite: the paper's number is then taken as exact."""
    std, n = _finite(paper_std), paper_n
    if not np.isfinite(std) or n is None or not (n >= 2):
        return 0.0, math.inf
    if math.isinf(n):
        return 0.0, math.inf
    return std / math.sqrt(n), float(n - 1)


def _combined(ours_se: float, ours_df: float, p_se: float, p_df: float, draw_var: float) -> tuple[float, float]:
    terms = [(ours_se ** 2, ours_df), (p_se ** 2, p_df), (draw_var, math.inf)]
    terms = [(a, d) for a, d in terms if a > 0]
    var = sum(a for a, _ in terms)
    if var == 0:
        return 0.0, ours_df
    return math.sqrt(var), satterthwaite_df(terms)


def compare_to_paper(
    ours: CellEstimate,
    *,
    paper_mean: float,
    paper_std: float | None = None,
    paper_n: float | None = None,
    margin: float = 1.0,
    alpha: float = 0.05,
    draw_var: float = 0.0,
    family_size: int = 1,
    delta_planned: float | None = None,
) -> PaperTest:
    """The verdict on our cell ``ours`` against a paper's mean, std and run count ``paper_n``.

    This is the one pure function behind every verdict (the report's and a user's own runs).
    The difference ours - paper has variance se_ours^2 + paper_std^2/paper_n + ``draw_var``
    (a known variance the caller adds, e.g. twice the draw variance when both means are
    conditional on different draws), with Satterthwaite df; ``paper_n`` inf or a missing std
    takes the paper's mean as exact. ``family_size`` is the size of the Holm family (the
    paper's table) and sets the level of the seed counts (alpha / family_size, the strictest
    Holm step). ``delta_planned`` (default margin / 2) is the second true difference at which
    seeds are counted.
    """
    nan = math.nan
    p_se, p_df = paper_se(paper_std, paper_n)
    draw_var = float(draw_var or 0.0)
    p_std, p_n = _finite(paper_std), (math.inf if paper_n is not None and math.isinf(paper_n) else _finite(paper_n))
    planned = margin / 2 if delta_planned is None else float(delta_planned)
    diff = ours.mean - float(paper_mean)
    test = "welch" if p_se > 0 else "one-sample"
    if draw_var > 0:
        test += " + draw variance"
    level = alpha / max(int(family_size), 1)
    attainable = _attainable(p_se, p_df, draw_var, margin=margin, alpha=level)
    sigma = _sigma_ucb(ours)
    needed = [seeds_for_equivalence(sigma, delta=d, margin=margin, alpha=level, paper_se=p_se, paper_df=p_df,
                                    draw_var=draw_var) for d in (0.0, planned)]
    if ours.n < 2 or not np.isfinite(ours.se):
        return PaperTest(ours.n, ours.mean, ours.std, ours.design, float(paper_mean), p_std, p_n, "none", diff,
                         nan, nan, nan, nan, nan, nan, nan, nan, nan, margin, draw_var, attainable, TOO_FEW,
                         needed[0], needed[1], planned)
    se, df = _combined(ours.se, ours.df, p_se, p_df, draw_var)
    stat, p_diff, p_tost = _tests_from_se(diff, se, df, margin)
    crit = float(sps.t.ppf(1 - alpha, df)) if se > 0 else 0.0
    lo, hi = diff - crit * se, diff + crit * se
    if se > 0:
        p_within = float(sps.t.cdf((margin - diff) / se, df) - sps.t.cdf((-margin - diff) / se, df))
    else:
        p_within = 1.0 if abs(diff) < margin else 0.0
    return PaperTest(ours.n, ours.mean, ours.std, ours.design, float(paper_mean), p_std, p_n, test, diff, se,
                     float(df), lo, hi, max(abs(lo), abs(hi)), p_within, stat, p_diff, p_tost, margin, draw_var,
                     attainable, verdict(p_diff, p_tost, diff, alpha=alpha), needed[0], needed[1], planned)


def test_against_paper(
    x: Sequence[float] | np.ndarray,
    *,
    paper_mean: float,
    paper_std: float | None = None,
    paper_n: float | None = None,
    draws: Sequence[object] | None = None,
    margin: float = 1.0,
    alpha: float = 0.05,
    draw_var: float = 0.0,
    family_size: int = 1,
) -> PaperTest:
    """:func:`compare_to_paper` on runs ``x`` ``(n_seeds,)`` with their noise draws ``draws``."""
    return compare_to_paper(estimate_cell(x, draws), paper_mean=paper_mean, paper_std=paper_std,
                            paper_n=paper_n, margin=margin, alpha=alpha, draw_var=draw_var,
                            family_size=family_size)


def _sigma_ucb(ours: CellEstimate, confidence: float = SIGMA_UCB) -> float:
    """Upper confidence bound for the per-run std: s·sqrt(df / chi2_{1-confidence}(df)).

    For a crossed design the per-run std of a run on a fresh draw, sqrt(s2_draw + s2_train), with
    the design's Satterthwaite df."""
    if ours.n < 2:
        return math.nan
    if ours.design == CROSSED:
        s, df = math.sqrt(ours.s2_draw + ours.s2_train), ours.df
    else:
        s, df = ours.std, ours.df
    if not (np.isfinite(s) and np.isfinite(df) and df > 0):
        return math.nan
    return float(s * math.sqrt(df / sps.chi2.ppf(1 - confidence, df)))


def _attainable(p_se: float, p_df: float, draw_var: float, *, margin: float, alpha: float) -> bool:
    """Whether TOST can pass at delta = 0 with infinitely many seeds: the paper's SE and the draw
    variance, the floor of the difference's SE, must leave room inside the margin."""
    floor = [(p_se ** 2, p_df), (draw_var, math.inf)]
    floor = [(a, d) for a, d in floor if a > 0]
    if not floor:
        return True
    se = math.sqrt(sum(a for a, _ in floor))
    return float(special.stdtrit(satterthwaite_df(floor), 1 - alpha)) * se < margin


def tost_power(delta: float, se: float, df: float, *, margin: float, alpha: float) -> float:
    """Approximate power of TOST at true difference ``delta`` (normal estimate, t critical value)."""
    if se <= 0:
        return 1.0 if abs(delta) < margin else 0.0
    crit = float(special.stdtrit(df, 1 - alpha))  # scipy.special: the t quantile without the overhead
    return float(max(0.0, special.ndtr((margin - delta) / se - crit) + special.ndtr((margin + delta) / se - crit) - 1))


def seeds_for_equivalence(
    sigma: float,
    *,
    delta: float = 0.0,
    margin: float = 1.0,
    alpha: float = 0.05,
    power: float = POWER,
    paper_se: float = 0.0,
    paper_df: float = math.inf,
    draw_var: float = 0.0,
    max_seeds: int = 100_000,
) -> float:
    """Seeds for TOST within ``±margin`` to pass with ``power`` when the true difference is ``delta``.

    Design-based: ``sigma`` is a planning value of the per-run std (the report passes an upper
    confidence bound, not the estimate), the difference's SE is sqrt(sigma^2/n + paper_se^2 +
    draw_var) with Satterthwaite df, and ``alpha`` is the adjusted level. Returns inf when no
    number of seeds is enough (|delta| >= margin, or the paper's SE and the draw variance leave
    too little room); NaN when sigma is unknown.
    """
    if not np.isfinite(sigma):
        return math.nan
    if abs(delta) >= margin:
        return math.inf

    def pw(n: int) -> float:
        se, df = _combined(sigma / math.sqrt(n), float(n - 1), paper_se, paper_df, draw_var)
        return tost_power(delta, se, df, margin=margin, alpha=alpha)

    if pw(max_seeds) < power:
        return math.inf
    lo, hi = 2, max_seeds
    if pw(lo) >= power:
        return float(lo)
    while hi - lo > 1:  # power rises with n: bisect for the first n that reaches it
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if pw(mid) < power else (lo, mid)
    return float(hi)


def holm(pvalues: Sequence[float] | np.ndarray, *, family_size: int | None = None) -> np.ndarray:
    """Holm-adjusted p-values ``(m,)``; NaN entries (untested) stay NaN.

    ``family_size`` (at least the number of tested p-values) counts hypotheses of the family
    that were not tested here, e.g. the rest of a paper's table; they enter as p = 1, so the
    tested ones are adjusted as if the whole family had been tested.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        extra = max(0, (family_size or 0) - int(ok.sum()))
        out[ok] = _holm(np.concatenate([p[ok], np.ones(extra)]))[: int(ok.sum())]
    return out


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment (as statsmodels' ``multipletests(method="holm")``, which is
    not used here because it runs a full garbage collection on every call)."""
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.maximum.accumulate(steps)
    return out


def apply_holm(tests: Sequence[PaperTest], *, alpha: float = 0.05, family_size: int | None = None) -> list[dict]:
    """Holm-adjust the difference and equivalence p-values of one family of tests.

    Returns one dict per test: its fields plus ``p_holm``, ``p_tost_holm`` and the verdict from
    the adjusted p-values, which keeps no claim the unadjusted verdict did not make: a
    ``reproduced`` cell can only stay so or turn ``inconclusive``, never ``below``/``above``.
    """
    p_holm = holm([t.p_value for t in tests], family_size=family_size)
    p_tost_holm = holm([t.p_tost for t in tests], family_size=family_size)
    rows = []
    for t, ph, pth in zip(tests, p_holm, p_tost_holm):
        row = t.as_dict()
        row["p_holm"] = float(ph)
        row["p_tost_holm"] = float(pth)
        if t.verdict != TOO_FEW:
            row["verdict"] = verdict(ph, pth, t.diff, alpha=alpha, p_tost_raw=t.p_tost)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Two methods in one cell, paired across seeds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedComparison(_AsDict):
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
    a, b = _as_1d(a), _as_1d(b)
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
    a, b = _as_1d(a), _as_1d(b)
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
    counts = dict(wins=wins, losses=losses, ties=ties, p_sign=sign_test(wins, losses), win_rate=win_rate,
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


# The name starts with "test"; keep pytest from collecting it when a test module imports it.
test_against_paper.__test__ = False  # type: ignore[attr-defined]
