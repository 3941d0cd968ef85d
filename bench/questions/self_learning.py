"""Deep Self-Learning's arms compared on the dip after its label correction, the final accuracy
and the accuracy of the corrected labels: the body of the sections of the grids that vary one of
its parameters (``self_learning_start``, ``self_learning_eta``).

Every run gets its test curve, its dip (:func:`bench.arms.largest_dip`) and its corrected-label
curve; each arm is tested against a reference arm on the final accuracy and on the dip (Holm
within each of the two families), and the figure shows both curves per arm with a band over
seeds and a dotted line where the arm's correction starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from bench import question_figures
from bench.questions.common import PAIRING, Context, fmt, mean_ci, metric, param, stack, table, tests_table, two_arm_test
from bench.stats import arms

BASELINE = "standard CE"


@dataclass(frozen=True)
class Comparison:
    """The runs of each arm (in report order), the arms tested against the reference and their
    tests on the final accuracy and on the dip, each family Holm-adjusted."""

    by_arm: dict[str, pd.DataFrame]
    compared: list[str]
    final: list[arms.TwoArmTest]
    dip: list[arms.TwoArmTest]


@dataclass(frozen=True)
class Arms:
    """How a grid's runs are named and compared: the method parameter that tells the Deep
    Self-Learning arms apart and the arm name of its value (other methods are the baseline,
    ``standard CE``), the reference arm the others are tested against, the words that introduce
    their tests, the figure's file name and the answer sentence written from the comparison."""

    parameter: str
    name: Callable[[Any], str]
    reference: str
    others: str
    figure: str
    answer: Callable[[Comparison], str]


def dips_text(by_arm: dict[str, pd.DataFrame]) -> str:
    """``<arm> mean [low, high] (n)`` of the dip per Deep Self-Learning arm, joined by ``; ``."""
    return "; ".join(f"{a} {mean_ci(g['dip'], 1)}" for a, g in by_arm.items() if a != BASELINE)


def body_of(arms: Arms) -> Callable[[Context, pd.Series], list[str]]:
    """The section body (:func:`section_body`) of a Deep Self-Learning grid whose arms are
    ``arms``."""
    return lambda ctx, acc: section_body(ctx, acc, arms)


def section_body(ctx: Context, acc: pd.Series, arms: Arms) -> list[str]:
    """The answer, the per-arm table, the tests, the corrected labels per epoch and the figure."""
    comparison = _compare(ctx, acc, arms)
    lines = [arms.answer(comparison), ""]
    lines += ["Per arm over seeds: the final test accuracy; the dip, the largest fall of the test "
              "accuracy below its running maximum before the last epoch (0 when it never falls), the "
              "accuracy it fell to and the epoch (median); the accuracy of the corrected labels at the "
              "last epoch (against the clean labels).", ""]
    lines += table(["arm", "final accuracy (%)", "dip (points)", "fell to (%)", "dip epoch",
                    "corrected labels (%)"],
                   [(a, mean_ci(g["acc"]), mean_ci(g["dip"]), mean_ci(g["trough"]),
                     fmt(float(g["dip_epoch"].median()), 0), mean_ci(g["corrected_last"]))
                    for a, g in comparison.by_arm.items()])
    lines += _tests_lines(comparison, arms.reference, arms.others)
    corrected = {a: stack(list(g["corrected"])) for a, g in comparison.by_arm.items() if a != BASELINE}
    lines += _corrected_table(corrected)
    return lines + _figure(ctx, comparison.by_arm, corrected, arms.figure)


def _arm_names(runs: pd.DataFrame, arms: Arms) -> pd.Series:
    values = param(runs, arms.parameter)
    return pd.Series([arms.name(v) if m == "self_learning" and v is not None else BASELINE
                      for m, v in zip(runs["method"], values)], index=runs.index, dtype=object)


def _with_dips(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with each run's test curve, its dip (:func:`bench.arms.largest_dip`: depth,
    the accuracy it fell to, the epoch counted from 1) and its corrected-label accuracy curve."""
    curves = [metric(r, "test_acc") for _, r in runs.iterrows()]
    dips = [arms.largest_dip(c) for c in curves]
    corrected = [metric(r, "extra", "corrected_label_acc") for _, r in runs.iterrows()]
    return runs.assign(curve=curves, dip=[d.depth for d in dips], trough=[d.trough for d in dips],
                       dip_epoch=[d.position + 1 for d in dips], corrected=corrected,
                       corrected_last=[c[-1] if c.size else np.nan for c in corrected])


def _compare(ctx: Context, acc: pd.Series, arms: Arms) -> Comparison:
    """Every run with its dip, grouped by arm (the baseline last, the others by name), and the
    arms other than the reference tested against it (none without a reference run)."""
    runs = _with_dips(ctx.runs.assign(acc=acc, arm=_arm_names(ctx.runs, arms)))
    names = sorted(runs["arm"].unique(), key=lambda a: (a == BASELINE, a))
    by_arm = {a: runs[runs["arm"] == a] for a in names}
    compared = [a for a in names if a not in (BASELINE, arms.reference)] if arms.reference in by_arm else []
    return Comparison(by_arm, compared, _against(by_arm, compared, arms.reference, ctx, "acc"),
                      _against(by_arm, compared, arms.reference, ctx, "dip"))


def _against(by_arm: dict[str, pd.DataFrame], names: list[str], reference: str, ctx: Context, value: str
             ) -> list[arms.TwoArmTest]:
    """Each of ``names`` against ``reference`` on ``value``, Holm over them."""
    return arms.holm_verdicts([two_arm_test(by_arm[a], by_arm[reference], margin=ctx.margin, rng=ctx.rng,
                                              value=value) for a in names], alpha=ctx.alpha)


def _tests_lines(comparison: Comparison, reference: str, others: str) -> list[str]:
    if not comparison.compared:
        return []
    rows = ([(f"final accuracy, {a} − {reference}", t) for a, t in zip(comparison.compared, comparison.final)]
            + [(f"dip, {a} − {reference}", t) for a, t in zip(comparison.compared, comparison.dip)])
    return [f"{others} against {reference}, {PAIRING}; Holm within each of the two families (final "
            "accuracy, dip):", "", *tests_table(rows)]


def _corrected_table(corrected: dict[str, np.ndarray]) -> list[str]:
    if not corrected or not any(v.size for v in corrected.values()):
        return []
    epochs = max(v.shape[1] for v in corrected.values() if v.size)
    rows = []
    for e in range(epochs):
        rows.append([str(e + 1)] + [mean_ci(v[:, e], 1) if v.size and e < v.shape[1] else "n/a"
                                    for v in corrected.values()])
    return ["Accuracy of the corrected labels per epoch (%, mean [95% CI] (seeds); n/a before the "
            "correction starts):", "", *table(["epoch", *corrected], rows)]


def _figure(ctx: Context, by_arm: dict[str, pd.DataFrame], corrected: dict[str, np.ndarray],
            name: str) -> list[str]:
    """Test and corrected-label accuracy per epoch, a dotted line after each arm's last CE epoch."""
    if not ctx.figures:
        return []
    starts = {a: float(param(g, "correction_start_epoch").iloc[0]) + 0.5
              for a, g in by_arm.items() if a != BASELINE}
    path = question_figures.curves_with_bands(
        [("test accuracy", "test accuracy (%)", {a: stack(list(g["curve"])) for a, g in by_arm.items()}),
         ("corrected labels", "accuracy of the corrected labels (%)", corrected)],
        ctx.figures_dir / name, markers=starts)
    return ctx.figure_link(path, "test accuracy and corrected-label accuracy per epoch, band over seeds")
