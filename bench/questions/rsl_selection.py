"""``rsl_vs_smallloss_mnist``: does RSL's class-wise selection beat small-loss selection at the
same budget?

Per noise setting, class-wise against global selection on the final accuracy (Holm across the
settings), the selected set's size and label noise, and the selected count per noisy class at
the last epoch, where the two rules spend the same budget differently.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench import question_figures
from bench.questions.common import PAIRING, Context, Question, comparison_text, fmt, mean_ci, param, \
    settings, table, tests_table, two_arm_test
from bench.stats import arms

def _final_entry(record: pd.Series, key: str) -> Any:
    values = [v for v in ((record.get("metrics") or {}).get(key) or []) if v is not None]
    return values[-1] if values else None


def _class_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, noisy class): the selected count of the run's last epoch."""
    rows = []
    for _, record in runs.iterrows():
        counts = _final_entry(record, "selected_per_class")
        for cls, count in enumerate(counts or []):
            rows.append({"setting": record["setting"], "arm": record["arm"], "run_id": record["run_id"],
                         "seed": record["seed"], "cls": cls, "count": float(count)})
    return pd.DataFrame(rows, columns=["setting", "arm", "run_id", "seed", "cls", "count"])


def _body(ctx: Context, acc: pd.Series) -> list[str]:
    runs = ctx.runs.assign(acc=acc, arm=param(ctx.runs, "selection").fillna("classwise"),
                           setting=settings(ctx.runs))
    runs = runs.assign(size=[_final_entry(r, "selected_count") for _, r in runs.iterrows()],
                       precision=[_final_entry(r, "label_precision") for _, r in runs.iterrows()])
    runs["size"] = pd.to_numeric(runs["size"], errors="coerce")
    runs["noise"] = 100 * (1 - pd.to_numeric(runs["precision"], errors="coerce"))
    names = sorted(runs["setting"].unique())
    tests = arms.holm_verdicts([
        two_arm_test(runs[(runs["setting"] == s) & (runs["arm"] == "classwise")],
                     runs[(runs["setting"] == s) & (runs["arm"] == "global")], margin=ctx.margin, rng=ctx.rng)
        for s in names], alpha=ctx.alpha)
    answer = "; ".join(comparison_text(t, f"at {s}, classwise − global = ") for s, t in zip(names, tests))
    counts = _class_counts(runs)
    lines = [f"**Answer:** {answer or 'no runs yet'} (final test accuracy, points)." + _sets_text(runs, counts), ""]
    lines += table(["setting", "arm", "final accuracy (%)", "selected", "label noise of the selected set (%)"],
                    [(s, a, mean_ci(g["acc"]), mean_ci(g["size"], 0), mean_ci(g["noise"], 1))
                     for (s, a), g in runs.groupby(["setting", "arm"], sort=True)])
    if tests:
        lines += [f"Class-wise against global selection, {PAIRING}; Holm across the settings:", ""]
        lines += tests_table([(f"{s}: classwise − global", t) for s, t in zip(names, tests)])
    lines += _class_table(counts)
    return lines + ctx.figure(question_figures.per_class_bars, counts, "question_rsl_per_class.png",
                              "selected samples per noisy class, class-wise against global")


def _sets_text(runs: pd.DataFrame, counts: pd.DataFrame) -> str:
    """One sentence on the sets the two rules train on: per setting and arm, the range of the
    per-class counts (means over seeds) and the selected set's label noise."""
    if counts.empty:
        return ""
    per_class = counts.groupby(["setting", "arm", "cls"])["count"].mean()
    noise = runs.groupby(["setting", "arm"])["noise"].mean()
    parts = []
    for setting in sorted(counts["setting"].unique()):
        arms_text = [f"{arm} {per_class[(setting, arm)].min():,.0f}-{per_class[(setting, arm)].max():,.0f} per "
                     f"noisy class at {fmt(noise.get((setting, arm), math.nan), 1)}% label noise"
                     for arm in sorted(counts.loc[counts["setting"] == setting, "arm"].unique())]
        parts.append(f"at {setting} " + ", ".join(arms_text))
    return (" The sets they train on (last epoch, means over seeds): " + "; ".join(parts) + ".")


def _class_table(counts: pd.DataFrame) -> list[str]:
    if counts.empty:
        return ["No run recorded its per-class selection.", ""]
    means = counts.groupby(["setting", "cls", "arm"])["count"].mean().unstack("arm")
    arms = list(means.columns)
    rows = []
    for (setting, cls), row in means.iterrows():
        diff = row["classwise"] - row["global"] if {"classwise", "global"} <= set(arms) else math.nan
        rows.append((setting, cls, *(fmt(row[a], 0) for a in arms), fmt(diff, 0)))
    return ["Selected samples per noisy class at the last epoch (the set the final network trains on; "
            "mean over seeds): where the two rules spend the same budget differently.", "",
            *table(["setting", "noisy class", *arms, "classwise − global"], rows)]


QUESTION = Question(
    "Does RSL's class-wise selection beat small-loss selection at the same budget?",
    "RSL ranks each noisy class by its samples' mean loss and keeps num(i) of it; is that better "
    "than vanilla small-loss selection of the same total budget over the whole set (MNIST, "
    "asymmetric 40%, symmetric 50% and 80%)?", "last", _body)
