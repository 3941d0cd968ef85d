"""bench.figures: the bands drawn are the intervals the docstrings state."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import figures


def test_t_interval_is_the_t_interval_of_the_mean() -> None:
    values = [90.0, 91.5, 89.0, 92.0, float("nan")]
    finite = np.array(values[:4])
    expected = sps.t.interval(0.95, 3, loc=finite.mean(), scale=sps.sem(finite))
    assert figures.t_interval(values) == pytest.approx(expected)
    assert all(math.isnan(b) for b in figures.t_interval([90.0, float("nan")]))


def test_epoch_curves_draw_the_mean_and_its_t_band(tmp_path, monkeypatch) -> None:
    acc = {"a": [[50.0, 60.0, 70.0], [52.0, 64.0, 71.0], [54.0, 62.0, 75.0, 80.0]],
           "b": [[40.0, 41.0, 42.0]]}
    runs = pd.DataFrame([{"label": label, "metrics": {"epoch": list(range(len(s))), "test_acc": s}}
                         for label, series in acc.items() for s in series])
    drawn = {}
    real_save = figures._save

    def keep(fig, path: Path) -> Path:
        ax = fig.axes[0]
        drawn["lines"] = [np.asarray(line.get_ydata()) for line in ax.get_lines()]
        drawn["bands"] = [path.vertices for c in ax.collections for path in c.get_paths()]
        drawn["legend"] = [t.get_text() for t in ax.get_legend().get_texts()]
        return real_save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    path = figures.epoch_curves(runs, tmp_path / "c.png", metric="test_acc", title="t", ylabel="y")
    assert path is not None and path.stat().st_size > 1000
    assert drawn["legend"] == ["a (n=3)", "b (n=1)"]
    values = np.array([s[:3] for s in acc["a"]])          # cut to the shortest run
    assert any(len(y) == 3 and np.allclose(y, values.mean(axis=0)) for y in drawn["lines"])
    assert len(drawn["bands"]) == 1   # a's band; b, a single run, has none
    band = drawn["bands"][0][:, 1]
    low, high = zip(*(figures.t_interval(values[:, e]) for e in range(3)))
    assert np.isclose(band.min(), min(low)) and np.isclose(band.max(), max(high))


def test_nothing_to_draw_is_none(tmp_path) -> None:
    runs = pd.DataFrame([{"label": "a", "metrics": {"epoch": [0, 1], "label_precision": [None, None]}}])
    assert figures.epoch_curves(runs, tmp_path / "c.png", metric="label_precision", title="t",
                                ylabel="y") is None
    assert not (tmp_path / "c.png").exists()


def test_accuracy_by_draw_writes_the_same_file_for_the_same_runs(tmp_path) -> None:
    from bench import question_figures

    rng = np.random.default_rng(0)
    runs = pd.DataFrame([{"setting": f"symmetric {rate}%", "method": method, "draw": draw, "noise_seed": noise,
                          "seed": seed, "acc": 90 + rng.normal()}
                         for rate in (50, 80) for method in ("jocor", "standard")
                         for draw, noise in (("suite", 0), ("suite", 1), ("noisify", 0)) for seed in (1, 2, 3)])
    first = question_figures.accuracy_by_draw(runs, tmp_path / "a.png", paper={("symmetric 50%", "jocor"): 91.0})
    again = question_figures.accuracy_by_draw(runs, tmp_path / "b.png",
                                              paper={("symmetric 50%", "jocor"): 91.0})
    assert first is not None and again is not None
    assert first.read_bytes() == again.read_bytes()   # no random jitter: a report regenerates byte for byte
