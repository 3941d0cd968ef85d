"""Selection curves: the pure computation against hand-computed examples, the methods' score
hooks (every method that declares a score kind), the record's curve, the table, the figure and
the report section."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bench import engine, selection, store
from bench.registry import METHODS
from methods.rsl import select, selection_scores
from methods.small_loss import rank_quantiles


def test_posterior_curve_by_hand() -> None:
    # 6 samples, 3 classes; samples 1 and 4 mislabelled; sample 5 unscored
    scores = np.array([0.95, 0.05, 0.6, 0.35, 0.15, np.nan])
    noisy = np.array([0, 1, 1, 2, 0, 2])
    clean = np.array([0, 2, 1, 2, 1, 2])
    curve = selection.selection_curve(scores, noisy, clean, kind="posterior", num_classes=3,
                                      points=[0.0, 0.1, 0.5, 0.9])
    # p=0: all 5 scored (3 of them correct: 0, 2, 3); p=0.1: drops sample 1 (wrong);
    # p=0.5: keeps 0 and 2 (both correct); p=0.9: keeps 0 alone
    assert curve["size"] == [5, 4, 2, 1]
    assert curve["precision"] == [0.6, 0.75, 1.0, 1.0]
    # recall over the scored correct samples (0, 2, 3); sample 5 is correct but unscored
    assert curve["recall"] == [1.0, 1.0, round(2 / 3, 4), round(1 / 3, 4)]
    assert curve["per_class"] == [[2, 2, 1], [2, 1, 1], [1, 1, 0], [1, 0, 0]]


def test_keep_fraction_curve_by_hand_and_unknown_clean_labels() -> None:
    scores = np.array([0.25, 0.5, 0.75, 1.0, 0.25, 0.5, 0.75, 1.0])   # two pools of 4
    noisy = np.array([0, 0, 1, 1, 1, 1, 0, 0])
    clean = np.array([0, 0, 0, -1, 1, 0, 0, 0])   # sample 3 of unknown clean label
    curve = selection.selection_curve(scores, noisy, clean, kind="keep_fraction",
                                      num_classes=2, points=[0.25, 0.5, 1.0])
    assert curve["size"] == [2, 4, 8]
    # correct: 0, 1, 4 (sample 6 noisy 0 clean 0 also correct) -> 0, 1, 4, 6
    # correct: 0, 1, 4, 6, 7; sample 3 counts in no precision
    assert curve["precision"] == [1.0, 0.75, round(5 / 7, 4)]
    assert curve["recall"] == [0.4, 0.6, 1.0]
    assert curve["per_class"] == [[1, 1], [2, 2], [4, 4]]


def test_empty_kept_set_has_no_precision() -> None:
    curve = selection.selection_curve(np.array([0.2, 0.3]), np.array([0, 1]), np.array([0, 1]),
                                      kind="posterior", num_classes=2, points=[0.5])
    assert curve == {"size": [0], "precision": [None], "recall": [0.0], "per_class": [[0, 0]]}


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown score kind"):
        selection.kept_mask(np.zeros(3), "margin", 0.5)


@pytest.mark.parametrize("batch", [1, 7, 64, 128, 100])
def test_keep_fraction_keeps_the_smallest_floor_f_n(batch: int) -> None:
    loss = torch.rand(batch, generator=torch.Generator().manual_seed(batch))
    q = rank_quantiles(loss).numpy()
    for f in selection.POINTS["keep_fraction"]:
        kept = selection.kept_mask(q, "keep_fraction", f)
        assert kept.sum() == math.floor(f * batch + 1e-9)
        # the codes' int((1 - forget_rate) n) is the same count up to floating point
        assert 0 <= kept.sum() - int((1 - (1 - f)) * batch) <= 1
        # the kept samples are the smallest losses
        if 0 < kept.sum() < batch:
            assert loss.numpy()[kept].max() < loss.numpy()[~kept].min()


def test_append_curve_aligns_with_epochs() -> None:
    metrics: dict = {"epoch": [0]}
    selection.append_curve(metrics, None, kind="posterior", n_before=0)   # warm-up: nothing
    assert "selection_curve" not in metrics
    curve = {"size": [1] * 10, "precision": [1.0] * 10, "recall": [0.5] * 10,
             "per_class": [[1, 0]] * 10}
    metrics["epoch"].append(1)
    selection.append_curve(metrics, curve, kind="posterior", n_before=1)
    metrics["epoch"].append(2)
    selection.append_curve(metrics, None, kind="posterior", n_before=2)
    stored = metrics["selection_curve"]
    assert stored["kind"] == "posterior" and stored["points"][0] == 0.0
    assert stored["size"] == [None, [1] * 10, None]


def test_rsl_global_selection_keeps_the_same_budget() -> None:
    loss = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.05, 0.9])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    counts = torch.tensor([2, 2])
    classwise = select(loss, labels, counts)
    global_ = select(loss, labels, counts, selection="global")
    assert classwise.tolist() == [True, True, False, False, True, False, True, False]
    assert global_.tolist() == [True, True, True, False, False, False, True, False]
    assert int(classwise.sum()) == int(global_.sum()) == 4
    q = selection_scores(loss, labels, 2).tolist()
    assert q == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.5, 0.75, 0.25, 1.0])
    assert selection_scores(loss, labels, 2, selection="global")[6] == pytest.approx(1 / 8)


SCORING = [name for name in METHODS.names() if getattr(METHODS.get(name), "score_kind", None)]
TINY = {"dividemix": ({"warm_up": 1}, {}), "rsl": ({"sel_epoch": 1, "retrain_epochs": 1}, {}),
        "rsl_wm": ({"sel_epoch": 1, "mixmatch_epochs": 1, "iterations": 2}, {})}


def test_the_small_loss_family_and_dividemix_declare_scores() -> None:
    assert {"coteaching", "jocor", "mentornet", "dividemix", "rsl"} <= set(SCORING)


@pytest.mark.parametrize("method", SCORING)
def test_scoring_methods_produce_a_curve(method: str, make_spec) -> None:
    params, train = TINY.get(method, ({}, {}))
    spec = make_spec(method=method, method_params=params, train=train, noise_rate=0.4)
    record = engine.run(spec)
    assert record["status"] == "ok", record["error"]
    assert store.validate_record(record) == []
    curve = record["metrics"]["selection_curve"]
    kind = METHODS.get(method).score_kind
    assert curve["kind"] == kind and curve["points"] == list(selection.POINTS[kind])
    n = len(record["metrics"]["epoch"])
    assert all(len(curve[key]) == n for key in ("size", "precision", "recall", "per_class"))
    rows = [pos for pos, size in enumerate(curve["size"]) if size is not None]
    assert rows, "no epoch was scored"
    for pos in rows:
        sizes = curve["size"][pos]
        assert sizes == sorted(sizes, reverse=(kind == "posterior"))   # monotone in the point
        assert [sum(c) for c in curve["per_class"][pos]] == sizes
        assert all(p is None or 0.0 <= p <= 1.0 for p in curve["precision"][pos])
    if kind == "keep_fraction":   # f = 1 keeps every scored sample, recall 1
        assert curve["recall"][rows[0]][-1] == 1.0


def test_curve_table_figure_and_section(make_spec, tmp_path) -> None:
    records = []
    for seed in (1, 2):
        spec = make_spec(method="coteaching", seed=seed, noise_rate=0.4)
        records.append(engine.run(spec))
    frame = selection.selection_curve_table(pd.DataFrame(records))
    assert len(frame) == 2 * 2 * 10          # runs x epochs x points
    assert set(frame["kind"]) == {"keep_fraction"} and frame["per_class"].map(len).eq(10).all()
    one = frame[(frame["run_id"] == records[0]["run_id"]) & (frame["epoch"] == 1)]
    curve = records[0]["metrics"]["selection_curve"]
    assert one["size"].tolist() == curve["size"][1]
    path = selection.draw_selection_curves(frame, tmp_path / "curves.png")
    assert path is not None and path.stat().st_size > 1000
    lines = selection.selection_section(records, tmp_path / "grid")
    assert lines[0] == "## Selection curves"
    assert sum(line.startswith("| coteaching |") for line in lines) == 10
    assert (tmp_path / "grid" / "selection_curves.png").is_file()
    assert any("grid/selection_curves.png" in line for line in lines)
    summary = selection.final_epoch_summary(frame)
    last = summary[summary["point"] == 1.0].iloc[0]
    assert last["runs"] == 2 and last["recall"] == pytest.approx(1.0)


def test_records_without_curves_give_no_section(tmp_path) -> None:
    assert selection.selection_curve_table([{"metrics": {"epoch": [0]}}]).empty
    assert selection.selection_section([{"metrics": {"epoch": [0]}}], tmp_path) == []
    empty = selection.selection_curve_table([])
    assert selection.draw_selection_curves(empty, tmp_path / "x.png") is None


def test_coteaching_plus_score_ranks_the_disagreement_set() -> None:
    from methods.coteaching_plus import coteaching_plus_selection

    gen = torch.Generator().manual_seed(3)
    l1, l2 = torch.randn(32, 4, generator=gen), torch.randn(32, 4, generator=gen)
    y = torch.randint(0, 4, (32,), generator=gen)
    _, _, keep1, score1 = coteaching_plus_selection(l1, l2, y, torch.arange(1, 33),
                                                    forget_rate=0.5, gate_open=True)
    disagree = l1.argmax(1) != l2.argmax(1)
    assert torch.equal(~torch.isnan(score1), disagree)
    n = int(disagree.sum())
    assert sorted(score1[disagree].tolist()) == pytest.approx([(r + 1) / n for r in range(n)])
    kept = selection.kept_mask(score1.numpy(), "keep_fraction", 0.5)
    assert kept.tolist() == keep1.tolist()


def _posterior_record(p: float, seed: int, acc: float, precision_at: dict) -> dict:
    points = list(selection.POINTS["posterior"])
    prec = [precision_at.get(q, 0.5) for q in points]
    curve = {"kind": "posterior", "points": points, "size": [None, [100 - 10 * i for i in range(10)]],
             "precision": [None, prec], "recall": [None, [1.0] * 10],
             "per_class": [None, [[50 - 5 * i, 50 - 5 * i] for i in range(10)]]}
    return {"run_id": f"r{p}{seed}", "label": f"dividemix(p_threshold={p})", "method": "dividemix",
            "dataset": "mnist", "noise_type": "asymmetric", "noise_rate": 0.3, "seed": seed,
            "noise_seed": seed, "method_params": {"p_threshold": p}, "test_acc_last": acc,
            "metrics": {"epoch": [0, 1], "selection_curve": curve}}


def test_trained_threshold_table_and_the_accuracy_against_the_kept_set(tmp_path) -> None:
    precision = {0.1: 0.7, 0.5: 0.8, 0.9: 0.95}
    records = [_posterior_record(p, seed, acc + seed / 10, precision)
               for p, acc in ((0.1, 90.0), (0.5, 92.0), (0.9, 95.0)) for seed in (1, 2)]
    table = selection.trained_threshold_table(records)
    assert len(table) == 6
    row = table[(table["p_threshold"] == 0.5) & (table["seed"] == 1)].iloc[0]
    assert row["size"] == 50 and row["noise_kept"] == pytest.approx(0.2) and row["acc"] == 92.1
    lines = selection.selection_section(records, tmp_path / "g", figures=False)
    assert any(line.startswith("| dividemix(p_threshold=0.5) | asymmetric 30% | 2 | 92.15 ± 0.07 | 50 | 20.0 |")
               for line in lines), lines
    assert any(line.startswith("| dividemix(p_threshold=0.9) | asymmetric 30% | p = 0.9 |") for line in lines)


def test_per_class_counts_are_kept_every_tenth_scored_epoch_and_at_the_last() -> None:
    metrics: dict = {"epoch": []}
    for epoch in range(25):
        scored = epoch >= 3   # e.g. a warm-up that scores nothing
        p = len(selection.POINTS["posterior"])
        curve = {"size": [5] * p, "precision": [1.0] * p, "recall": [0.5] * p,
                 "per_class": [[epoch, 1]] * p} if scored else None
        selection.append_curve(metrics, curve, kind="posterior", n_before=epoch)
        metrics["epoch"].append(epoch)
    selection.thin_per_class(metrics, every=10)
    kept = [pos for pos, c in enumerate(metrics["selection_curve"]["per_class"]) if c is not None]
    assert kept == [3, 13, 23, 24]
    assert all(s is not None for s in metrics["selection_curve"]["size"][3:])
    table = selection.selection_curve_table([{"label": "m", "metrics": metrics}])
    p = len(selection.POINTS["posterior"])
    assert table["min_class_kept"].notna().sum() == 4 * p and len(table) == 22 * p
