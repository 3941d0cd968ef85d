"""The one-line errors where a missing value would be a bug, and the registered noise draws.

Each guard replaces a None that used to surface later as an unrelated TypeError or KeyError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import selection
from bench.errors import ConfigError
from bench.noise import RegisteredDraw, apply_noise, is_papers_draw
from bench.registry import NOISE_DRAWS
from methods.f_correction import FCorrection, FCorrectionNominal, ForwardCorrection
from methods.rsl import RSL, class_noise_rates
from methods.rsl_wm import RSLWeightedMixMatch

_CURVE = {"size": [1] * 10, "precision": [1.0] * 10, "recall": [0.5] * 10, "per_class": [[1, 0]] * 10}


def test_the_first_selection_curve_needs_its_kind() -> None:
    metrics: dict = {"epoch": [0]}
    with pytest.raises(ValueError, match="kind"):
        selection.append_curve(metrics, _CURVE, kind=None, n_before=0)
    assert "selection_curve" not in metrics


def test_later_epochs_append_under_the_stored_kind() -> None:
    metrics: dict = {"epoch": [0, 1]}
    selection.append_curve(metrics, _CURVE, kind="keep_fraction", n_before=0)
    selection.append_curve(metrics, None, kind=None, n_before=1)
    stored = metrics["selection_curve"]
    assert stored["kind"] == "keep_fraction" and stored["points"] == list(selection.POINTS["keep_fraction"])
    assert stored["size"] == [[1] * 10, None]


@pytest.mark.parametrize("noise_type", ["symmetric", "pairflip", "asymmetric", "instance"])
def test_rsl_class_rates_need_a_noise_rate(noise_type: str) -> None:
    with pytest.raises(ConfigError, match=f"noise rate of '{noise_type}' noise"):
        class_noise_rates(noise_type=noise_type, noise_rate=None, num_classes=10, dataset="cifar10")


def test_rsl_class_rates_without_a_matrix_still_ask_for_an_assumed_rate() -> None:
    with pytest.raises(ConfigError, match="assumed_noise_rate"):
        class_noise_rates(noise_type="human", noise_rate=None, num_classes=10, dataset="cifar10n")
    rates = class_noise_rates(noise_type="human", noise_rate=None, num_classes=10, dataset="cifar10n",
                              assumed=0.2)
    np.testing.assert_array_equal(rates, np.full(10, 0.2))


def test_rsl_step3_state_is_refused_before_the_selection() -> None:
    rsl = object.__new__(RSL)
    rsl.selected = None
    with pytest.raises(RuntimeError, match="end of step 1"):
        rsl.selected_set()
    rsl.selected = torch.tensor([True, False])
    assert rsl.selected_set() is rsl.selected
    wm = object.__new__(RSLWeightedMixMatch)
    wm.weights = None
    with pytest.raises(RuntimeError, match="end of step 1"):
        wm.selection_weights()


def test_f_correction_nominal_shares_the_loop_not_the_estimating_config() -> None:
    assert issubclass(FCorrection, ForwardCorrection) and issubclass(FCorrectionNominal, ForwardCorrection)
    assert not issubclass(FCorrectionNominal, FCorrection)
    assert FCorrectionNominal.train_epoch is ForwardCorrection.train_epoch
    assert FCorrection.train_epoch is not ForwardCorrection.train_epoch


def test_registered_draws_carry_their_settings_and_their_samplers_doc() -> None:
    for name in NOISE_DRAWS.names():
        draw = NOISE_DRAWS.get(name)
        assert isinstance(draw, RegisteredDraw), name
        assert draw.__doc__ == draw.sample.__doc__ and draw.__wrapped__ is draw.sample, name
    assert NOISE_DRAWS.get("noisify").official_seed == 0
    assert NOISE_DRAWS.get("dividemix").official_seed == 123
    assert NOISE_DRAWS.get("suite").noise_types is None


def test_a_registered_draw_samples_as_its_sampler() -> None:
    clean = np.arange(200) % 10
    kwargs = dict(noise_type="symmetric", num_classes=10, rate=0.4, seed=3, dataset="cifar10",
                  variant=None, features=None, human_labels=None)
    direct = NOISE_DRAWS.get("noisify").sample(clean, **kwargs)
    applied = apply_noise("symmetric", clean, num_classes=10, rate=0.4, noise_seed=3, dataset="cifar10",
                          draw="noisify")
    np.testing.assert_array_equal(applied.noisy_labels, direct.noisy_labels)
    assert (applied.noisy_labels != clean).any()


@pytest.mark.parametrize(("draw", "seed", "expected"), [
    ("noisify", np.int64(0), True), ("dividemix", 123.0, True), ("dividemix", 7, False),
    ("noisify", None, False), ("suite", 0, False), (None, 0, False), ("unknown", 0, False)])
def test_papers_draw_reads_the_draws_official_seed(draw, seed, expected: bool) -> None:
    assert is_papers_draw(draw, seed) is expected
