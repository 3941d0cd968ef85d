"""Known answers for bench.stats, with scipy and statsmodels as references where they exist."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW, ttost_ind

from bench import stats


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------- describe


def test_t_interval_of_one_to_five() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    d = stats.describe(x, rng=rng(), n_boot=500)
    half = sps.t.ppf(0.975, 4) * math.sqrt(2.5) / math.sqrt(5)
    assert (d.n, d.mean, d.std) == (5, 3.0, pytest.approx(math.sqrt(2.5)))
    assert d.ci_low == pytest.approx(3 - half) and d.ci_high == pytest.approx(3 + half)
    assert d.ci_low == pytest.approx(1.036757, abs=1e-6)
    ref = sps.t.interval(0.95, 4, loc=3.0, scale=sps.sem(x))
    assert (d.ci_low, d.ci_high) == pytest.approx(ref)


def test_bca_matches_scipy() -> None:
    x = rng(3).normal(70, 2, size=12)
    d = stats.describe(x, rng=np.random.default_rng(7), n_boot=999)
    ref = sps.bootstrap((x,), np.mean, n_resamples=999, method="BCa", rng=np.random.default_rng(7))
    assert d.boot_method == "BCa"
    assert (d.boot_low, d.boot_high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert d.boot_low < d.mean < d.boot_high


@pytest.mark.parametrize(
    "x, method, finite",
    [([], "none", False), ([71.0], "none", False), ([70.0, 72.0], "none", False),
     (list(np.linspace(70, 72, 9)), "none", False), ([3.0] * 10, "percentile", True)],
)
def test_describe_fallbacks(x: list[float], method: str, finite: bool) -> None:
    d = stats.describe(x, rng=rng(), n_boot=200)
    assert d.n == len(x)
    assert d.boot_method == method
    assert np.isfinite(d.boot_low) == finite and np.isfinite(d.boot_high) == finite
    if len(x) < 2:
        assert math.isnan(d.ci_low) and d.note
    if 2 <= len(x) < stats.MIN_BOOT_N:
        assert "no bootstrap" in d.note and np.isfinite(d.ci_low)
    if len(x) == 10:
        assert d.boot_low == d.boot_high == d.ci_low == d.ci_high == 3.0


def test_bca_below_ten_runs_would_undercover() -> None:
    """Why no bootstrap interval is shown below MIN_BOOT_N: at n = 5 BCa covers well under 95%."""
    g = rng(11)
    hits = 0
    for _ in range(300):
        x = g.normal(0, 1, 5)
        ref = sps.bootstrap((x,), np.mean, n_resamples=300, method="BCa", rng=g).confidence_interval
        hits += ref.low <= 0 <= ref.high
    assert hits / 300 < 0.9


def test_describe_is_reproducible() -> None:
    x = [70.1, 71.3, 69.8, 70.7, 70.2]
    assert stats.describe(x, rng=rng(5), n_boot=300) == stats.describe(x, rng=rng(5), n_boot=300)


# ------------------------------------------------------------------------------- against a paper


def test_welch_from_summary_equals_scipy_on_raw_arrays() -> None:
    x = rng(1).normal(75, 1.0, size=5)
    y = rng(2).normal(76, 0.5, size=6)
    res = stats.test_against_paper(x, paper_mean=y.mean(), paper_std=y.std(ddof=1), paper_n=len(y))
    ref = sps.ttest_ind(x, y, equal_var=False)
    assert res.test == "welch"
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.df == pytest.approx(ref.df)
    tost = ttost_ind(x, y, -1.0, 1.0, usevar="unequal")
    assert res.p_tost == pytest.approx(tost[0])


def test_one_sample_without_paper_std() -> None:
    x = np.array([78.9, 79.6, 79.2, 79.8, 79.0])
    res = stats.test_against_paper(x, paper_mean=79.41, paper_std=0.25)  # no n: the number is fixed
    ref = sps.ttest_1samp(x, 79.41)
    assert res.test == "one-sample"
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.p_tost == pytest.approx(DescrStatsW(x).ttost_mean(79.41 - 1.0, 79.41 + 1.0)[0])


@pytest.mark.parametrize(
    "x, paper, expected",
    [
        ([79.3, 79.5, 79.4, 79.6, 79.2], 79.41, "reproduced"),
        ([78.9, 79.0, 78.95, 79.05, 78.85], 79.41, "reproduced, reliably lower"),
        ([76.3, 76.5, 76.4, 76.6, 76.2], 79.41, "below"),
        ([82.3, 82.5, 82.4, 82.6, 82.2], 79.41, "above"),
        ([75.0, 84.0, 79.0, 81.0, 77.0], 79.41, "inconclusive"),
        ([79.4], 79.41, "too few runs"),
    ],
)
def test_verdicts(x: list[float], paper: float, expected: str) -> None:
    res = stats.test_against_paper(x, paper_mean=paper)
    assert res.verdict == expected
    if expected == "too few runs":
        assert math.isnan(res.p_value) and math.isnan(res.p_tost)
    else:
        # the 90% interval is what TOST inverts: equivalence iff it lies inside the margin
        assert (res.bound < res.margin) == (res.p_tost < 0.05)
        assert res.ci90_low <= res.diff <= res.ci90_high and res.bound == max(-res.ci90_low, res.ci90_high)
    if expected == "inconclusive":
        assert res.seeds_needed > len(x) and np.isfinite(res.seeds_needed)
    assert stats.verdict_text(res.verdict, res.diff).startswith(expected)


def test_verdict_text_names_the_gap() -> None:
    assert stats.verdict_text(stats.LOWER, -0.453) == "reproduced, reliably lower by 0.45"
    assert stats.verdict_text(stats.BELOW, -3.0) == "below"


def test_zero_variance_uses_the_limits() -> None:
    assert stats.test_against_paper([80.0, 80.0, 80.0], paper_mean=80.2).verdict == "reproduced, reliably lower"
    res = stats.test_against_paper([85.0, 85.0, 85.0], paper_mean=80.0)
    assert (res.verdict, res.p_value) == ("above", 0.0)


def test_paper_se_and_draw_variance_widen_the_difference() -> None:
    x = np.array([79.3, 79.5, 79.4, 79.6, 79.2])
    exact = stats.test_against_paper(x, paper_mean=79.41)
    welch = stats.test_against_paper(x, paper_mean=79.41, paper_std=0.5, paper_n=5)
    drawn = stats.test_against_paper(x, paper_mean=79.41, paper_std=0.5, paper_n=5, draw_var=0.2)
    assert exact.se < welch.se < drawn.se
    assert welch.se == pytest.approx(math.sqrt(x.var(ddof=1) / 5 + 0.25 / 5))
    assert drawn.se == pytest.approx(math.sqrt(welch.se ** 2 + 0.2))
    assert exact.p_within > welch.p_within > drawn.p_within
    assert drawn.test == "welch + draw variance"
    # infinitely many paper runs: the paper's number is exact
    assert stats.test_against_paper(x, paper_mean=79.41, paper_std=0.5, paper_n=math.inf).se == pytest.approx(exact.se)


def test_posterior_probability_within_the_margin() -> None:
    x = np.array([79.3, 79.5, 79.4, 79.6, 79.2])
    res = stats.test_against_paper(x, paper_mean=79.41)
    ref = sps.t.cdf((1 - res.diff) / res.se, res.df) - sps.t.cdf((-1 - res.diff) / res.se, res.df)
    assert res.p_within == pytest.approx(ref)


def test_equivalence_unattainable_when_the_paper_se_exceeds_the_margin() -> None:
    """JoCoR sym-80: paper std 4.55 over (assumed) 5 runs: no number of our seeds can show ±1."""
    x = rng(8).normal(85, 1, 5)
    res = stats.test_against_paper(x, paper_mean=84.89, paper_std=4.55, paper_n=5)
    assert not res.attainable and res.seeds_needed == math.inf
    ok = stats.test_against_paper(x, paper_mean=84.89, paper_std=0.1, paper_n=5)
    assert ok.attainable and np.isfinite(ok.seeds_needed)


def test_seeds_for_equivalence_is_design_based() -> None:
    plain = stats.seeds_for_equivalence(1.0, delta=0.0, margin=1.0, alpha=0.05)
    # approximate power just reaches 0.8 at that n and not one seed earlier
    def pw(n: int) -> float:
        return stats.tost_power(0.0, 1 / math.sqrt(n), n - 1, margin=1.0, alpha=0.05)
    assert pw(int(plain)) >= 0.8 > pw(int(plain) - 1)
    assert stats.seeds_for_equivalence(1.0, delta=0.5) > plain
    assert stats.seeds_for_equivalence(1.0, alpha=0.05 / 24) > plain
    assert stats.seeds_for_equivalence(1.0, paper_se=0.2, paper_df=4) > plain
    assert stats.seeds_for_equivalence(1.0, delta=1.0) == math.inf
    assert stats.seeds_for_equivalence(1.0, paper_se=2.0, paper_df=4) == math.inf
    assert math.isnan(stats.seeds_for_equivalence(math.nan))


def test_holm_known_vector() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    out = stats.holm([0.01, np.nan, 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    # the rest of the family (untested here) counts as p = 1
    assert stats.holm([0.01, 0.04], family_size=5) == pytest.approx(multipletests([0.01, 0.04, 1, 1, 1], method="holm")[1][:2])


def test_holm_matches_statsmodels_on_random_vectors() -> None:
    g = rng(12)
    for _ in range(10):  # statsmodels collects garbage on every call: keep this short
        p = g.uniform(0, 0.2, g.integers(1, 30))
        p[g.integers(0, p.size)] = p[0]  # a tie
        assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_holm_turns_a_verdict_inconclusive_never_below() -> None:
    borderline = stats.test_against_paper([77.0, 78.9, 78.2, 79.0, 77.4], paper_mean=79.41)
    assert borderline.verdict == "below" and 0.01 < borderline.p_value < 0.05
    clear = stats.test_against_paper([76.3, 76.5, 76.4, 76.6, 76.2], paper_mean=79.41)
    rows = stats.apply_holm([borderline, borderline, clear])
    assert rows[0]["p_holm"] == pytest.approx(min(1.0, 2 * borderline.p_value))
    assert rows[0]["verdict"] == "inconclusive" and rows[2]["verdict"] == "below"
    # equivalent and different before adjusting, equivalence lost after: inconclusive, not below
    close = stats.test_against_paper([78.45, 78.75, 78.6, 78.9, 78.55], paper_mean=79.41)
    assert close.verdict == stats.LOWER and close.p_tost > 0.01
    row = stats.apply_holm([close], family_size=24)[0]
    assert row["p_holm"] < 0.05 <= row["p_tost_holm"]
    assert row["verdict"] == "inconclusive"


# ------------------------------------------------------------------------------- two methods


def test_probability_of_improvement_known_arrays() -> None:
    assert stats.probability_of_improvement([1, 2, 3], [2, 2, 2]) == pytest.approx(0.5)
    assert stats.probability_of_improvement([3, 4], [1, 2, 3]) == pytest.approx(5.5 / 6)
    assert stats.probability_of_improvement([5, 6], [1, 2]) == 1.0
    a, b = rng(4).normal(size=7), rng(5).normal(size=6)
    u = sps.mannwhitneyu(a, b).statistic
    assert stats.probability_of_improvement(a, b) == pytest.approx(u / (7 * 6))


def test_paired_comparison_against_scipy() -> None:
    a = np.array([80.1, 81.0, 79.5, 80.7, 80.2, 81.3])
    b = np.array([79.0, 80.2, 79.9, 79.1, 79.0, 80.0])
    res = stats.paired_comparison(a, b)
    assert res.p_t == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert res.p_wilcoxon == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert (res.ci_low, res.ci_high) == pytest.approx(stats.t_interval(a - b))
    assert res.mean_diff == pytest.approx((a - b).mean())
    assert (res.wins, res.losses, res.ties) == (5, 1, 0)
    assert res.p_sign == pytest.approx(sps.binomtest(5, 6).pvalue)
    assert res.win_rate == pytest.approx(5 / 6)
    # Clopper-Pearson from the beta quantiles (statsmodels' method="beta")
    from statsmodels.stats.proportion import proportion_confint
    assert (res.win_low, res.win_high) == pytest.approx(proportion_confint(5, 6, method="beta"))
    assert res.p_wilcoxon_min == pytest.approx(2 / 2 ** 6)


def test_win_rate_interval_leaves_the_observed_support() -> None:
    """Five wins in five seeds: the old bootstrap gave [1.00, 1.00]; Clopper-Pearson does not."""
    res = stats.paired_comparison([2.0, 3, 4, 5, 6], [1.0, 2, 3, 4, 5])
    assert res.win_rate == 1.0 and res.win_high == 1.0
    assert res.win_low == pytest.approx(0.025 ** (1 / 5))
    assert res.p_sign == pytest.approx(0.0625) == res.p_wilcoxon_min


def test_paired_comparison_in_a_crossed_design_uses_the_draws() -> None:
    g = rng(13)
    draw = np.repeat(g.normal(0, 2, 3), 4)  # a method x draw interaction shared by each draw's pairs
    a, b = 80 + draw + g.normal(0, 0.3, 12), np.full(12, 80.0) + g.normal(0, 0.3, 12)
    draws = np.repeat([0, 1, 2], 4)
    res = stats.paired_comparison(a, b, draws=draws)
    est = stats.estimate_cell(a - b, draws)
    assert (res.ci_low, res.ci_high) == pytest.approx(est.interval(0.95))
    assert res.p_t == pytest.approx(2 * sps.t.sf(abs(est.mean / est.se), 2))
    naive = stats.paired_comparison(a, b)
    assert naive.ci_high - naive.ci_low < res.ci_high - res.ci_low and "crossed" in res.note
    # a draw per pair (or one draw for all) keeps the plain paired t-test
    assert stats.paired_comparison(a, b, draws=range(12)).p_t == pytest.approx(naive.p_t)


def test_clopper_pearson_edges() -> None:
    assert stats.clopper_pearson(0, 5)[0] == 0.0 and stats.clopper_pearson(5, 5)[1] == 1.0
    assert all(math.isnan(v) for v in stats.clopper_pearson(0, 0))


def test_paired_comparison_degenerate() -> None:
    same = stats.paired_comparison([70.0, 71.0, 72.0], [70.0, 71.0, 72.0])
    assert (same.p_t, same.p_wilcoxon, same.mean_diff, same.p_sign) == (1.0, 1.0, 0.0, 1.0)
    assert "zero" in same.note and same.ties == 3 and same.win_rate == 0.5
    one = stats.paired_comparison([70.0], [69.0])
    assert one.n == 1 and math.isnan(one.p_t) and one.mean_diff == 1.0
    with pytest.raises(ValueError):
        stats.paired_comparison([1.0, 2.0], [1.0])


# ------------------------------------------------------------------------------- across cells


def test_critical_difference_k4_n10() -> None:
    assert stats.critical_difference(4, 10) == pytest.approx(2.569 * math.sqrt(4 * 5 / 60))
    assert stats.critical_difference(4, 10) == pytest.approx(1.4832, abs=1e-4)


def test_nemenyi_table_matches_studentized_range() -> None:
    for k, q in stats.NEMENYI_Q05.items():
        assert q == pytest.approx(sps.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2), abs=2e-3)
    assert stats.nemenyi_q(12) > stats.nemenyi_q(10)


def test_friedman_against_scipy() -> None:
    scores = np.array([[80.0, 82.0, 85.0], [70.0, 71.0, 75.0], [60.0, 66.0, 64.0], [90.0, 91.0, 93.0],
                       [50.0, 49.0, 58.0]])
    res = stats.friedman(scores)
    ref = sps.friedmanchisquare(*scores.T)
    assert res.statistic == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)
    assert res.ranks == pytest.approx([2.8, 2.0, 1.2])
    assert res.cd == pytest.approx(stats.critical_difference(3, 5))
    # Iman-Davenport from its definition (Demšar 2006, eq. 3)
    n, k, chi2 = 5, 3, ref.statistic
    f = (n - 1) * chi2 / (n * (k - 1) - chi2)
    assert (res.f_statistic, res.df1, res.df2) == pytest.approx((f, 2, 8))
    assert res.f_p_value == pytest.approx(sps.f.sf(f, 2, 8))
    assert not res.enough_cells


def test_friedman_guards() -> None:
    two = stats.friedman(np.array([[1.0, 2.0], [3.0, 1.0]]))
    assert math.isnan(two.statistic) and "3 methods" in two.note
    assert two.ranks == pytest.approx([1.5, 1.5])
    one_cell = stats.friedman(np.array([[1.0, 2.0, 3.0]]))
    assert math.isnan(one_cell.p_value)
    with pytest.raises(ValueError):
        stats.friedman(np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 3.0]]))


def test_iqm_and_stratified_interval() -> None:
    x = np.arange(1.0, 9.0)
    assert stats.iqm(x) == pytest.approx(sps.trim_mean(x, 0.25)) == pytest.approx(4.5)
    cells = [rng(1).normal(70, 1, 5), rng(2).normal(80, 1, 5), rng(3).normal(60, 1, 3)]
    value, low, high = stats.iqm_interval(cells, rng=rng(9), n_boot=500)
    assert value == pytest.approx(stats.iqm(np.concatenate(cells)))
    assert low <= value <= high
    assert stats.iqm_interval(cells, rng=rng(9), n_boot=500) == (value, low, high)
    # resampling within cells: a constant cell stays constant
    assert stats.iqm_interval([np.full(4, 50.0)], rng=rng(), n_boot=100) == (50.0, 50.0, 50.0)


# ------------------------------------------------------------------------------- power


def test_seeds_needed() -> None:
    expected = math.ceil(TTestPower().solve_power(effect_size=0.5, alpha=0.05, power=0.8))
    assert stats.seeds_needed(2.0, difference=1.0) == expected == 34
    assert stats.seeds_needed(1.0, difference=0.5, two_sample=True) == 64
    assert stats.seeds_needed(0.0, difference=1.0) == 2
    assert stats.seeds_needed(1.0, difference=0.0) == math.inf
    assert stats.seeds_needed(1.0, difference=50.0) == 2  # the root finder gives up here
    assert stats.seeds_needed(1.0, difference=0.5, alternative="larger") < 34


# ------------------------------------------------------------------------------- simulation


def test_simulated_coverage_and_false_rejections() -> None:
    """2,000 cells of 5 seeds: t-intervals cover the true mean ~95%, tests reject a true number ~5%."""
    g = rng(2024)
    mu, sigma, cells, n = 70.0, 1.5, 2000, 5
    runs = g.normal(mu, sigma, size=(cells, n))
    intervals = np.array([stats.t_interval(r) for r in runs])
    coverage = np.mean((intervals[:, 0] <= mu) & (mu <= intervals[:, 1]))
    one_sample = np.array([stats.test_against_paper(r, paper_mean=mu).p_value for r in runs])
    # the paper's own 5 runs, as summary statistics, for Welch
    paper = g.normal(mu, sigma, size=(cells, n))
    welch = np.array([stats.test_against_paper(r, paper_mean=p.mean(), paper_std=p.std(ddof=1), paper_n=n).p_value
                      for r, p in zip(runs, paper)])
    # TOST at a true difference equal to the margin must not claim equivalence more than ~5%
    edge = np.array([stats.test_against_paper(r, paper_mean=mu - 0.5, margin=0.5).p_tost for r in runs])
    assert 0.93 <= coverage <= 0.97
    assert np.mean(one_sample < 0.05) <= 0.065
    assert np.mean(welch < 0.05) <= 0.065
    assert np.mean(edge < 0.05) <= 0.065
