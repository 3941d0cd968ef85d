"""``jocor_lambda_mnist``: which JoCoR co_lambda is best, and does the default 0.1 lose?

Per noise setting, whether the accuracy depends on co_lambda at all (the block F-test with the
seeds as blocks, and its stratified permutation test; Holm across the settings), free of the
choice of a best value. Then the co_lambda of highest mean accuracy over its seeds is the best;
the default is tested against the best of the other values (the best itself, or the runner-up
where the default is the best; Holm across the settings), and the figure shows the accuracy
against co_lambda per setting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import question_figures
from bench.questions.common import Context, Question, comparison_text, fmt, fmt_p, mean_ci, p_text, param, \
    settings, table, tests_table, two_arm_test
from bench.stats import arms
from bench.stats.paper import holm

DEFAULT_LAMBDA = 0.1


def _best_value(group: pd.DataFrame) -> float:
    """The parameter value of highest mean accuracy, among those with two runs where any has."""
    means = group.groupby("value")["acc"].agg(["mean", "count"])
    eligible = means[means["count"] >= 2] if (means["count"] >= 2).any() else means
    return float(eligible["mean"].idxmax())


def _blocks(group: pd.DataFrame) -> pd.DataFrame:
    """(blocks, co_lambda) accuracies: a block is a (seed, noise_seed), one draw and one
    initialisation shared by the values; only values with the most blocks, and blocks with all
    of them, so that the design is complete."""
    wide = group.pivot_table(index=["seed", "noise_seed"], columns="value", values="acc", aggfunc="mean")
    wide = wide.loc[:, wide.notna().sum() == wide.notna().sum().max()]
    return wide.dropna()


def _anova_text(test: arms.BlockedAnova, p_holm: float, alpha: float, family: int) -> str:
    if not np.isfinite(p_holm):
        return "the accuracy's dependence on co_lambda is not tested (fewer than two seeds with every co_lambda)"
    if p_holm >= alpha and test.p_floor * family >= alpha:
        return (f"whether the accuracy depends on co_lambda cannot be told yet ({test.n_blocks} seeds x "
                f"{test.n_arms} values: the permutation test's p cannot go below {fmt(test.p_floor, 3)}, "
                f"{family} setting(s) under Holm)")
    word = "depends on co_lambda" if p_holm < alpha else "does not depend on co_lambda detectably"
    return (f"the accuracy {word} (block F-test over {test.n_blocks} seeds x {test.n_arms} values, "
            f"F({test.df_arms}, {test.df_error}) = {fmt(test.f)}, permutation Holm {p_text(p_holm)}, "
            f"means spanning {fmt(test.spread)} points)")


def _lambda_answer(setting: str, best: float, best_acc: pd.Series, rival: float | None,
                   test: arms.TwoArmTest | None, has_default: bool, anova: str) -> str:
    text = f"at {setting} {anova}; the best co_lambda is {best:g} with {mean_ci(best_acc)}%"
    if test is not None:
        return text + "; " + comparison_text(test, f"co_lambda {DEFAULT_LAMBDA:g} − {rival:g} = ")
    return text + ("" if has_default else f"; no run at co_lambda {DEFAULT_LAMBDA:g} yet")


def _body(ctx: Context, acc: pd.Series) -> list[str]:
    runs = ctx.runs.assign(acc=acc, value=pd.to_numeric(param(ctx.runs, "co_lambda"), errors="coerce"),
                           setting=settings(ctx.runs)).dropna(subset=["value"])
    groups = dict(list(runs.groupby("setting", sort=True)))
    best = {s: _best_value(g) for s, g in groups.items()}
    # the default against the best other value: the best, or the runner-up where the default wins
    rival = {s: _best_value(g[g["value"] != DEFAULT_LAMBDA]) for s, g in groups.items()
             if (g["value"] == DEFAULT_LAMBDA).any() and (g["value"] != DEFAULT_LAMBDA).any()}
    tests = dict(zip(rival, arms.holm_verdicts(
        [two_arm_test(groups[s][groups[s]["value"] == DEFAULT_LAMBDA], groups[s][groups[s]["value"] == r],
                      margin=ctx.margin, rng=ctx.rng) for s, r in rival.items()], alpha=ctx.alpha)))
    anova = {s: arms.blocked_anova(_blocks(g).to_numpy(), rng=ctx.rng) for s, g in groups.items()}
    perm_holm = dict(zip(anova, holm([a.p_perm for a in anova.values()])))
    f_holm = dict(zip(anova, holm([a.p_f for a in anova.values()])))
    family = int(np.isfinite(list(perm_holm.values())).sum())   # the settings Holm adjusts over
    parts = [_lambda_answer(s, best[s], g.loc[g["value"] == best[s], "acc"], rival.get(s), tests.get(s),
                            bool((g["value"] == DEFAULT_LAMBDA).any()),
                            _anova_text(anova[s], perm_holm[s], ctx.alpha, family))
             for s, g in groups.items()]
    lines = ["**Answer:** " + ("; ".join(parts) if parts else "no run has a co_lambda yet") + ".", "",
             "Whether the accuracy depends on co_lambda at all is tested per setting with the seeds as "
             "blocks (every value trained on each seed's one draw and initialisation): the block ANOVA's "
             "F-test and its stratified permutation test (each seed's accuracies permuted across the "
             "values), which does not assume normal errors (runs that drop a class make them bimodal) "
             "and gives the verdict; Holm across the settings.", "",
             *table(["setting", "seeds x values", "F (df)", "F-test Holm p", "permutation Holm p",
                     "spread of the means (points)"],
                    [(s, f"{a.n_blocks} x {a.n_arms}", f"{fmt(a.f)} ({a.df_arms}, {a.df_error})", fmt_p(f_holm[s]),
                      fmt_p(perm_holm[s]), fmt(a.spread)) for s, a in anova.items()]),
             "The best co_lambda is the one of highest mean accuracy over its seeds (with at least two "
             "where any has two), chosen on the same runs it is tested with: its interval and the "
             "difference to the default lean in its favour (where the default is the best, the "
             "difference to the runner-up leans in the default's).", ""]
    lines += table(["setting", "co_lambda", "accuracy (%) [95% CI] (seeds)", ""],
                    [(s, f"{v:g}", mean_ci(cell["acc"]), "best" if v == best[s] else "")
                     for s, g in groups.items() for v, cell in g.groupby("value")])
    if tests:
        lines += [f"co_lambda {DEFAULT_LAMBDA:g} against the best other value, per setting (Holm across "
                  "the settings):", ""]
        lines += tests_table([(f"{s}: {DEFAULT_LAMBDA:g} − {rival[s]:g}", t) for s, t in tests.items()])
    return lines + ctx.figure(question_figures.accuracy_by_parameter, runs,
                              "question_jocor_lambda.png",
                              "accuracy against co_lambda per noise setting, band over seeds",
                              parameter="co_lambda", ylabel="test accuracy (%)")


QUESTION = Question(
    "Which JoCoR co_lambda is best, and does the default 0.1 lose?",
    "The best lambda depends on dataset, noise and network, between 0.5 and 0.9; a user who kept "
    "the default 0.1 got 76% against 79.41 on CIFAR-10.", "last10", _body)
