"""A cell against the number a paper reports: the difference and equivalence tests with the
paper's own SE, the four-way verdict, Holm over the paper's table and design-based seed counts.

:func:`compare_to_paper` is the one pure function behind every verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import special
from scipy import stats as sps

from bench.stats._common import AsDict
from bench.stats.cells import CROSSED, CellEstimate, estimate_cell, satterthwaite_df

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
class PaperTest(AsDict):
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


# The name starts with "test"; keep pytest from collecting it when a test module imports it.
test_against_paper.__test__ = False  # type: ignore[attr-defined]
