"""Slow: on real MNIST with 50% symmetric noise, every sample-selection method beats plain CE.

Outside `make test` (`make test-slow`). A short schedule without lr decay lets CE start to
memorise the noisy labels within the budget, which is the effect the selection methods exist to
resist. Each method is compared with CE on the same noisy labels (same noise seed) and the same
seed; the margin is the last-epoch accuracy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import engine
from bench.config import RunSpec, TrainConfig, resolve_method_params

pytestmark = pytest.mark.slow

DATA_ROOT = Path(os.environ.get("DATA_ROOT", Path(__file__).resolve().parents[2] / "shared/data"))
EPOCHS = 15

# phase lengths scaled to the short budget; everything else at the official defaults
SHORT = {
    "coteaching": {"num_gradual": 5},
    "coteaching_plus": {"num_gradual": 5},
    "jocor": {"num_gradual": 5},
    "mentornet": {"num_gradual": 5},
    "decoupling": {},
    "dividemix": {"warm_up": 5, "rampup_length": 5},
    "rsl": {"sel_epoch": 7, "retrain_epochs": 8},
}


def spec_for(method: str, params: dict) -> RunSpec:
    resolved = resolve_method_params(method, params, dataset="mnist", noise_type="symmetric",
                                     noise_rate=0.5)
    return RunSpec(grid="slow", label=method, method=method, method_params=resolved,
                   dataset="mnist", network="mlp", noise_type="symmetric", noise_rate=0.5,
                   noise_seed=0, seed=1,
                   train=TrainConfig(epochs=EPOCHS, batch_size=128, optimizer="adam", lr=0.001))


@pytest.fixture(scope="module")
def standard_last() -> float:
    if not (DATA_ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"MNIST not found under DATA_ROOT={DATA_ROOT}")
    rec = engine.run(spec_for("standard", {}), device="cpu", data_root=DATA_ROOT)
    assert rec["status"] == "ok", rec["error"]
    return rec["test_acc_last"]


@pytest.mark.parametrize("method", sorted(SHORT))
def test_selection_method_beats_standard_ce(method: str, standard_last: float) -> None:
    rec = engine.run(spec_for(method, SHORT[method]), device="cpu", data_root=DATA_ROOT)
    assert rec["status"] == "ok", rec["error"]
    assert rec["test_acc_last"] > standard_last, (
        f"{method} last-epoch accuracy {rec['test_acc_last']:.2f} does not beat standard CE "
        f"{standard_last:.2f}")
