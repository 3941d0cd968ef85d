"""bench.stats.arms: checked by simulation against known truth and on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.stats import arms

N_SIM = 2000


def _binomial_band(p: float, n: int = N_SIM) -> tuple[float, float]:
    """A 99.9% band for the share of n Bernoulli(p) outcomes: the test's own tolerance."""
    half = 3.3 * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def test_paired_interval_covers_the_true_difference_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true_diff, hits = 1.5, 0
    for _ in range(N_SIM):
        seed_effect = rng.normal(70, 5, size=5)          # shared by both arms: pairing removes it
        a = seed_effect + true_diff + rng.normal(0, 1, size=5)
        b = seed_effect + rng.normal(0, 1, size=5)
        t = arms.paired_test(a, b)
        hits += t.ci_low <= true_diff <= t.ci_high
    low, high = _binomial_band(0.95)
    assert low <= hits / N_SIM <= high


def test_welch_interval_covers_with_unequal_variances_and_sizes():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(N_SIM):
        a, b = rng.normal(80, 4, size=4), rng.normal(78, 0.5, size=9)
        t = arms.welch_test(a, b)
        hits += t.ci_low <= 2.0 <= t.ci_high
    low, high = _binomial_band(0.95)
    assert low <= hits / N_SIM <= high


def test_sign_flip_is_exact_under_a_symmetric_null():
    rng = np.random.default_rng(3)
    # n = 6: the attainable levels are multiples of 1/32 (p = 2k/64); 4/64 is one of them
    ps = np.array([arms.sign_flip_p(rng.standard_t(3, size=6)) for _ in range(N_SIM)])
    low, high = _binomial_band(4 / 64)
    assert low <= np.mean(ps <= 4 / 64 + 1e-12) <= high
    assert ps.min() == pytest.approx(2 / 64)


def test_sign_flip_enumerates_all_sign_vectors():
    d = np.array([1.0, 2.0, 3.0])
    # |mean| of the 8 sign vectors: 2, 2 (all flipped), 0 (x2: ±(1+2-3)), 4/3 (x2), 2/3 (x2)
    assert arms.sign_flip_p(d) == pytest.approx(2 / 8)
    assert arms.sign_flip_p(np.zeros(4)) == 1.0
    assert math.isnan(arms.sign_flip_p([]))


def test_sign_flip_samples_above_the_exact_limit_and_needs_an_rng():
    d = np.random.default_rng(4).normal(0.8, 1, size=arms.EXACT_SIGN_FLIP_MAX_N + 4)
    with pytest.raises(ValueError, match="rng"):
        arms.sign_flip_p(d)
    p1 = arms.sign_flip_p(d, rng=np.random.default_rng(0))
    p2 = arms.sign_flip_p(d, rng=np.random.default_rng(0))
    assert p1 == p2
    # the permutation p approximates the t-test's for a near-normal sample of 20
    assert p1 == pytest.approx(sps.ttest_1samp(d, 0).pvalue, abs=0.02)


def test_paired_test_agrees_with_scipy_and_detects_a_true_effect():
    a = np.array([71.0, 73.5, 69.0, 75.0, 72.0])
    b = np.array([70.0, 72.0, 69.5, 73.0, 70.5])
    t = arms.paired_test(a, b)
    ref = sps.ttest_rel(a, b)
    assert t.p_t == pytest.approx(ref.pvalue)
    assert t.diff == pytest.approx(1.1)
    assert t.p_wilcoxon == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert t.df == 4 and t.n_a == 5
    # power: a 2-point effect with pairing noise sd 1 over 8 seeds is detected almost always
    rng = np.random.default_rng(5)
    rejects = 0
    for _ in range(200):
        base = rng.normal(60, 8, size=8)
        res = arms.paired_test(base + 2 + rng.normal(0, 1, 8), base + rng.normal(0, 1, 8))
        rejects += res.p_t < 0.05
    assert rejects / 200 > 0.9


def test_paired_test_below_two_pairs_is_untested():
    t = arms.paired_test([1.0], [2.0])
    assert t.diff == -1.0 and math.isnan(t.p_t) and math.isnan(t.ci_low)
    with pytest.raises(ValueError):
        arms.paired_test([1.0, 2.0], [1.0])


def test_tost_controls_its_error_at_the_margin():
    """At a true difference exactly on the margin, TOST claims equivalence at most 5% of the time."""
    rng = np.random.default_rng(6)
    claims, n_sim = 0, N_SIM // 2
    for _ in range(n_sim):
        base = rng.normal(70, 3, size=10)
        claims += arms.paired_test(base + 1.0 + rng.normal(0, 0.5, 10), base, margin=1.0).p_tost < 0.05
    assert claims / n_sim <= _binomial_band(0.05, n_sim)[1]


def test_holm_verdicts_use_the_adjusted_p_values():
    strong = arms.TwoArmTest("paired", 5, 5, 3.0, 0.5, 4, 1.6, 4.4, 0.004, 0.06, 0.06, 0.99, 1.0)
    border = arms.TwoArmTest("paired", 5, 5, 1.0, 0.4, 4, 0.1, 2.1, 0.04, 0.06, 0.06, 0.5, 1.0)
    tiny = arms.TwoArmTest("paired", 5, 5, 0.1, 0.1, 4, -0.2, 0.4, 0.4, 0.6, 0.6, 0.001, 1.0)
    small = arms.TwoArmTest("paired", 5, 5, 0.3, 0.05, 4, 0.16, 0.44, 0.001, 0.06, 0.06, 0.001, 1.0)
    untested = arms.paired_test([1.0], [1.0])
    out = arms.holm_verdicts([strong, border, tiny, small, untested])
    assert [t.verdict for t in out] == [arms.DIFFERENT, arms.INCONCLUSIVE, arms.EQUIVALENT,
                                        arms.SMALL_DIFFERENCE, ""]
    assert out[0].p_holm == pytest.approx(3 * 0.004)
    assert out[1].p_holm == pytest.approx(0.08)   # 0.04 alone would have been called different
    assert out[0].p_exact_holm == pytest.approx(min(1.0, 4 * 0.06))
    assert np.isnan(out[4].p_exact_holm)


def test_largest_dip_finds_the_deepest_fall_below_the_running_max():
    dip = arms.largest_dip([60.0, 20.0, 30.0, 65.0, 50.0, 10.0])
    assert (dip.depth, dip.position, dip.trough, dip.peak) == (40.0, 1, 20.0, 60.0)
    assert arms.largest_dip([10.0, 20.0, 30.0]).depth == 0.0
    assert arms.largest_dip([50.0, np.nan, 40.0, 45.0]).position == 2
    assert math.isnan(arms.largest_dip([50.0]).depth)


def test_spearman_within_seeds_is_reproducible_and_finds_a_monotone_relation():
    rng = np.random.default_rng(7)
    noise_rate = np.repeat(np.linspace(0.05, 0.4, 6)[:, None], 3, axis=1) + rng.normal(0, 0.01, (6, 3))
    acc = 95 - 60 * noise_rate + rng.normal(0, 3, (6, 3))
    c1 = arms.spearman_within_seeds(noise_rate, acc, rng=np.random.default_rng(0), n_perm=500)
    c2 = arms.spearman_within_seeds(noise_rate, acc, rng=np.random.default_rng(0), n_perm=500)
    assert c1 == c2
    assert c1.rho < -0.8 and c1.n_cells == 6 and c1.n_seeds == 3 and len(c1.per_seed) == 3
    assert c1.p_value < 0.01 and -1.0 <= c1.ci_low <= c1.rho <= c1.ci_high < 0


def test_spearman_within_seeds_test_holds_its_level_and_its_interval_covers_without_a_relation():
    rng = np.random.default_rng(8)
    rejected, covered, n_sim = 0, 0, 300
    for _ in range(n_sim):
        # the cells' x trend within each seed (as the kept noise falls with p); y is unrelated
        x = np.linspace(1, 0, 5)[:, None] + rng.normal(0, 0.05, (5, 3))
        c = arms.spearman_within_seeds(x, rng.normal(size=(5, 3)), rng=rng, n_perm=300)
        rejected += c.p_value < 0.05
        covered += c.ci_low <= 0 <= c.ci_high
    assert rejected / n_sim <= 0.05 + 0.035    # a valid (discrete, so conservative) test
    assert covered / n_sim >= 0.90


def test_spearman_within_seeds_cannot_reject_on_two_seeds_of_three_cells():
    """A perfect rank agreement in both seeds: the permutation p stays near 2/36, the t-interval
    over two identical rhos is undefined rather than a point."""
    x = np.array([[0.5, 0.6], [0.4, 0.45], [0.3, 0.2]])
    c = arms.spearman_within_seeds(x, 100 * x, rng=np.random.default_rng(0), n_perm=4000)
    assert c.rho == pytest.approx(1.0) and c.per_seed == (1.0, 1.0)
    assert abs(c.p_value - 2 / 36) < 0.015 and c.p_value > 0.05
    assert math.isnan(c.ci_low) and math.isnan(c.ci_high)


def test_spearman_within_seeds_handles_missing_cells_and_bad_shapes():
    x = np.array([[0.1, 0.12, np.nan], [0.2, 0.21, 0.19], [0.3, np.nan, 0.31], [0.4, 0.41, 0.39]])
    y = 90 - 100 * x
    c = arms.spearman_within_seeds(x, y, rng=np.random.default_rng(0), n_perm=100)
    assert c.rho == pytest.approx(-1.0) and c.n_seeds == 3   # each seed keeps its three cells
    with pytest.raises(ValueError):
        arms.spearman_within_seeds(x, y[:, :2], rng=np.random.default_rng(0))
    flat = arms.spearman_within_seeds(np.ones((4, 2)), y[:, :2], rng=np.random.default_rng(0))
    assert math.isnan(flat.rho) and flat.n_seeds == 0 and math.isnan(flat.ci_low)


def _blocks(rng: np.random.Generator, effects: np.ndarray, n_blocks: int, noise) -> np.ndarray:
    """(blocks, arms): a block effect shared by the arms of a seed, the arms' effects, noise."""
    return rng.normal(80, 5, size=(n_blocks, 1)) + effects + noise(rng, (n_blocks, effects.size))


def test_blocked_anova_agrees_with_statsmodels_anovarm():
    import pandas as pd
    from statsmodels.stats.anova import AnovaRM

    rng = np.random.default_rng(3)
    y = _blocks(rng, np.linspace(0, 2, 6), 3, lambda r, s: r.normal(0, 1, s))
    got = arms.blocked_anova(y, rng=rng)
    frame = pd.DataFrame([(i, j, y[i, j]) for i in range(3) for j in range(6)], columns=["seed", "arm", "acc"])
    table = AnovaRM(frame, "acc", "seed", within=["arm"]).fit().anova_table
    assert got.f == pytest.approx(table["F Value"].iloc[0], rel=1e-9)
    assert got.p_f == pytest.approx(table["Pr > F"].iloc[0], rel=1e-9)
    assert (got.df_arms, got.df_error, got.n_blocks, got.n_arms) == (5, 10, 3, 6)
    assert got.spread == pytest.approx(np.ptp(y.mean(axis=0)))


@pytest.mark.parametrize("noise", [
    pytest.param(lambda r, s: r.normal(0, 1, s), id="normal"),
    # a run that drops a class: 8 points lower one time in five, the JoCoR 80% shape
    pytest.param(lambda r, s: r.normal(0, 0.5, s) - 8 * (r.random(s) < 0.2), id="bimodal"),
])
def test_blocked_anova_permutation_holds_its_level_on_three_seeds_of_six_arms(noise):
    rng = np.random.default_rng(11)
    n_sim = 400
    p = np.array([arms.blocked_anova(_blocks(rng, np.zeros(6), 3, noise), rng=rng, n_perm=400).p_perm
                  for _ in range(n_sim)])
    low, high = _binomial_band(0.05, n_sim)
    assert low <= (p <= 0.05).mean() <= high, (p <= 0.05).mean()


def test_blocked_anova_f_test_holds_its_level_and_both_detect_an_effect():
    rng = np.random.default_rng(12)
    normal = lambda r, s: r.normal(0, 1, s)  # noqa: E731
    null = [arms.blocked_anova(_blocks(rng, np.zeros(6), 3, normal), rng=rng, n_perm=200).p_f for _ in range(N_SIM)]
    low, high = _binomial_band(0.05)
    assert low <= np.mean(np.array(null) <= 0.05) <= high
    # the arms 0, 1, ..., 5 points apart at 3 seeds with noise sd 1: both tests reject nearly always
    effect = [arms.blocked_anova(_blocks(rng, np.arange(6.0), 3, normal), rng=rng, n_perm=400) for _ in range(200)]
    assert np.mean([t.p_f <= 0.05 for t in effect]) > 0.95
    assert np.mean([t.p_perm <= 0.05 for t in effect]) > 0.95


def test_blocked_anova_edge_cases():
    rng = np.random.default_rng(0)
    one_block = arms.blocked_anova(np.array([[90.0, 91.0, 92.0]]), rng=rng)
    assert math.isnan(one_block.p_f) and math.isnan(one_block.p_perm) and one_block.spread == 2.0
    assert math.isnan(one_block.p_floor)
    # no residual variance: the arms differ by exact constants in every block
    exact = arms.blocked_anova(np.array([[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]]), rng=rng)
    assert exact.f == math.inf and math.isnan(exact.p_f)
    with pytest.raises(ValueError, match="finite"):
        arms.blocked_anova(np.array([[1.0, np.nan], [2.0, 3.0]]), rng=rng)
    with pytest.raises(ValueError, match="blocks, arms"):
        arms.blocked_anova(np.ones(4), rng=rng)


def test_blocked_anova_enumerates_small_designs_exactly():
    rng = np.random.default_rng(2)
    y = np.array([[1.0, 2.0, 3.5], [0.5, 2.5, 2.9]])
    got = arms.blocked_anova(y, rng=rng)
    # by hand: block 0 fixed, the 3! orders of block 1; the statistic is the arm means' spread
    stats = []
    for order in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
        stats.append(np.var((y[0] + y[1][order]) / 2))
    assert got.p_floor == pytest.approx(1 / 6)
    assert got.p_perm == pytest.approx(np.mean(np.array(stats) >= stats[0] - 1e-12))
    # exact at three seeds of three arms: never below 1/36 and, under the null, at most its level
    assert arms.blocked_anova(_blocks(rng, np.arange(3.0) * 50, 3, lambda r, s: r.normal(0, 1, s)),
                              rng=rng).p_perm == pytest.approx(1 / 36)
    null = [arms.blocked_anova(_blocks(rng, np.zeros(3), 3, lambda r, s: r.normal(0, 1, s)), rng=rng).p_perm
            for _ in range(N_SIM)]
    assert np.mean(np.array(null) <= 0.1) <= _binomial_band(0.1)[1]
    assert np.mean(np.array(null) <= 1 / 36 + 1e-9) >= _binomial_band(1 / 36)[0]
