"""The noise draw's share of a crossed cell's variance: exact and MLS intervals, by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

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
