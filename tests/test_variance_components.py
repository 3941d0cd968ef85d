"""The noise draw's share of a crossed cell's variance: exact and MLS intervals, by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench import stats


def _cells(rng: np.random.Generator, *, draws: int, seeds: int, sd_draw: float, n: int):
    labels = np.repeat(np.arange(draws), seeds)
    for _ in range(n):
        effects = rng.normal(0.0, sd_draw, draws)
        yield (effects[:, None] + rng.normal(0.0, 1.0, (draws, seeds))).ravel(), labels


@pytest.mark.parametrize("draws, seeds, sd_draw", [(5, 3, 1.0), (5, 3, 2.0), (4, 4, 0.5)])
def test_intervals_cover_the_true_components(draws: int, seeds: int, sd_draw: float) -> None:
    rng = np.random.default_rng(11)
    share = sd_draw ** 2 / (sd_draw ** 2 + 1.0)
    hits = np.zeros(4)
    n = 2000
    for x, labels in _cells(rng, draws=draws, seeds=seeds, sd_draw=sd_draw, n=n):
        c = stats.variance_components(x, labels)
        hits += [c.s2_train_low <= 1.0 <= c.s2_train_high, c.s2_draw_low <= sd_draw ** 2 <= c.s2_draw_high,
                 c.share_low <= share <= c.share_high,
                 c.understatement_low <= 1 / math.sqrt(1 - share) <= c.understatement_high]
    coverage = hits / n
    assert np.all((coverage >= 0.93) & (coverage <= 0.97)), coverage


def test_a_hand_computed_balanced_cell() -> None:
    # two draws of three seeds: means 1 and 3, within-draw deviations -1, 0, 1
    x = np.array([0.0, 1.0, 2.0, 2.0, 3.0, 4.0])
    c = stats.variance_components(x, [0, 0, 0, 1, 1, 1])
    # MSW = 4 / 4 = 1; MSB = 3 * (1 + 1) / 1 = 6; sigma2_draw = (6 - 1) / 3
    assert c.s2_train == pytest.approx(1.0) and c.s2_draw == pytest.approx(5 / 3)
    assert c.share == pytest.approx((5 / 3) / (5 / 3 + 1)) and not c.approximate
    assert c.understatement == pytest.approx(1 / math.sqrt(1 - c.share))
    assert c.s2_draw_low <= c.s2_draw <= c.s2_draw_high and c.share_low <= c.share <= c.share_high


def test_no_split_without_replicated_draws() -> None:
    c = stats.variance_components(np.arange(4.0), [0, 1, 2, 3])
    assert math.isnan(c.share) and math.isnan(c.s2_draw_low)
    assert stats.variance_components(np.arange(4.0), [0, 0, 1, 2]).approximate


@pytest.mark.parametrize("sd_draw", [0.5, 1.0])
def test_the_draw_gap_bounds_gaps_between_draws_and_its_intervals_cover_the_truth(sd_draw: float) -> None:
    """J = 5 draws x I = 3 seeds (noise_draw_mnist's design), sigma_train = 1: the interval of the
    draw-only half-width and of the draw's fraction of a 5-seed gap cover their true values, and
    the true half-width bounds 95% of simulated gaps between two draws' true means."""
    rng = np.random.default_rng(12)
    truth_width = 1.959964 * math.sqrt(2) * sd_draw
    truth_fraction = sd_draw ** 2 / (sd_draw ** 2 + 1.0 / 5)
    hits = np.zeros(2)
    n = 2000
    for x, labels in _cells(rng, draws=5, seeds=3, sd_draw=sd_draw, n=n):
        g = stats.draw_gap(stats.variance_components(x, labels), seeds=5)
        hits += [g.draw_half_width_low <= truth_width <= g.draw_half_width_high,
                 g.fraction_low <= truth_fraction <= g.fraction_high]
    coverage = hits / n
    assert np.all((coverage >= 0.93) & (coverage <= 0.97)), coverage
    gaps = rng.normal(0, sd_draw, 20000) - rng.normal(0, sd_draw, 20000)
    assert np.mean(np.abs(gaps) <= truth_width) == pytest.approx(0.95, abs=0.01)
    # with the training seeds in: the whole gap of two 5-seed means
    g = stats.draw_gap(stats.VarianceComponents(5, 3.0, sd_draw ** 2, *(math.nan,) * 2, 1.0,
                                                *(math.nan,) * 8, False), seeds=5)
    means = gaps + rng.normal(0, 1 / math.sqrt(5), 20000) - rng.normal(0, 1 / math.sqrt(5), 20000)
    assert np.mean(np.abs(means) <= g.half_width) == pytest.approx(0.95, abs=0.01)


def test_the_draw_gap_of_a_hand_computed_cell() -> None:
    c = stats.variance_components(np.array([0.0, 1.0, 2.0, 2.0, 3.0, 4.0]), [0, 0, 0, 1, 1, 1])
    g = stats.draw_gap(c, seeds=5)
    assert g.draw_half_width == pytest.approx(1.959964 * math.sqrt(2 * 5 / 3), rel=1e-5)
    assert g.half_width == pytest.approx(1.959964 * math.sqrt(2 * (5 / 3 + 1 / 5)), rel=1e-5)
    assert g.fraction == pytest.approx((5 / 3) / (5 / 3 + 1 / 5))
    assert g.fraction_low <= g.fraction <= g.fraction_high
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        stats.draw_gap(c, seeds=0)


@pytest.mark.parametrize("draws, seeds", [(5, 3), (4, 2)])
def test_the_draw_test_holds_its_level_and_finds_a_large_draw_effect(draws: int, seeds: int) -> None:
    rng = np.random.default_rng(13)
    null = [stats.variance_components(x, labels).p_draw
            for x, labels in _cells(rng, draws=draws, seeds=seeds, sd_draw=0.0, n=2000)]
    assert np.mean(np.array(null) < 0.05) == pytest.approx(0.05, abs=0.015)
    # under sigma_draw = 1 (sigma_train 1), MSB / MSW is (1 + I) times an F: the exact power
    alt = [stats.variance_components(x, labels).p_draw
           for x, labels in _cells(rng, draws=draws, seeds=seeds, sd_draw=1.0, n=2000)]
    df_b, df_w = draws - 1, draws * (seeds - 1)
    power = float(sps.f.sf(sps.f.isf(0.05, df_b, df_w) / (1 + seeds), df_b, df_w))
    assert np.mean(np.array(alt) < 0.05) == pytest.approx(power, abs=0.03)
    # unbalanced: one draw with a single seed
    x, labels = next(_cells(rng, draws=5, seeds=3, sd_draw=0.0, n=1))
    c = stats.variance_components(x[1:], labels[1:])
    assert c.approximate and 0.0 <= c.p_draw <= 1.0
    assert math.isnan(stats.variance_components(np.ones(6), [0, 0, 0, 1, 1, 1]).p_draw)
