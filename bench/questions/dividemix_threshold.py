"""``dividemix_threshold``: does DivideMix's accuracy follow its clean set's noise rate?

Per (setting, p_threshold) cell, the size and label noise of net1's kept set at the threshold it
trained with and the accuracy (the mean of the last ten epochs: the best epoch can fall in the
warm-up, which p does not touch); per setting, Spearman's rho between the kept set's noise and
the accuracy across the thresholds within each seed, its mean over the seeds, and a stratified
permutation test, Holm across the settings.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import question_figures, stats
from bench.cost_model import estimate_grid_hours
from bench.left_out import GRIDS_DIR
from bench.questions.common import Context, Question, expected_runs, fmt, fmt_p, mean_ci, p_text, settings, \
    table
from bench.stats import arms, t_interval

def _threshold_cells(kept: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (setting, value), g in kept.groupby(["setting", "p_threshold"], sort=True):
        noise, acc = 100 * g["noise_kept"].to_numpy(dtype=float), g["acc"].to_numpy(dtype=float)
        n_low, n_high = t_interval(noise[np.isfinite(noise)]) if np.isfinite(noise).sum() >= 2 else (math.nan,) * 2
        a_low, a_high = t_interval(acc) if acc.size >= 2 else (math.nan, math.nan)
        rows.append({"setting": setting, "value": value, "noise": float(np.nanmean(noise)), "noise_low": n_low,
                     "noise_high": n_high, "acc": float(acc.mean()), "acc_low": a_low, "acc_high": a_high,
                     "size": mean_ci(g["size"], 0), "size_mean": float(g["size"].mean()), "noise_text": mean_ci(noise, 1), "acc_text": mean_ci(acc)})
    return pd.DataFrame(rows)


def _seed_matrix(kept: pd.DataFrame, column: str) -> np.ndarray:
    """(cells, seeds) of ``column``, cells (setting, p) in sorted order, NaN where missing."""
    return kept.pivot_table(index=["setting", "p_threshold"], columns="seed", values=column).to_numpy(dtype=float)


def _follows(c: arms.Correlation, p_holm: float, alpha: float) -> str:
    """What the within-seed rho and its Holm-adjusted permutation test say about "accuracy follows
    the kept set's noise"."""
    if not np.isfinite(c.rho):
        return (f"not tested: rho is undefined over {c.n_cells} threshold(s) (it needs 3 or more "
                "in a seed, neither noise nor accuracy constant)")
    if not np.isfinite(p_holm):
        return "not tested"
    if p_holm >= alpha:
        return f"not shown either way (permutation {p_text(p_holm)}, Holm)"
    direction = ("the accuracy follows it (falls as the kept set's noise rises)" if c.rho < 0
                 else "the accuracy rises with it (the opposite of following it)")
    return f"{direction} (permutation {p_text(p_holm)}, Holm)"


def _rho_text(c: arms.Correlation) -> str:
    interval = f" [{fmt(c.ci_low)}, {fmt(c.ci_high)}]" if np.isfinite(c.ci_low) else ""
    return f"{fmt(c.rho)}{interval}"


def _answer(name: str, c: arms.Correlation, p_holm: float, alpha: float) -> str:
    if not np.isfinite(c.rho):
        return f"at {name}, {_follows(c, p_holm, alpha)}"
    return (f"at {name}, rho = {_rho_text(c)} over {c.n_cells} thresholds x {c.n_seeds} seeds: "
            f"{_follows(c, p_holm, alpha)}")


def _range_lines(cells: pd.DataFrame) -> list[str]:
    """How far the kept set moves between the lowest and the highest threshold, per setting."""
    out = []
    for setting, g in cells.groupby("setting", sort=True):
        if len(g) < 2:
            continue
        lo, hi = g.loc[g["value"].idxmin()], g.loc[g["value"].idxmax()]
        out.append(f"{setting}: from p = {lo['value']:g} to {hi['value']:g} the kept set goes from "
                   f"{lo['size_mean']:.0f} to {hi['size_mean']:.0f} samples and its label noise from {fmt(lo['noise'], 1)}% "
                   f"to {fmt(hi['noise'], 1)}%, the accuracy from {fmt(lo['acc'])} to {fmt(hi['acc'])}")
    return (["How much the threshold moves the kept set (means over seeds): " + "; ".join(out) + ".", ""]
            if out else [])


def _warm_up_lines(runs: pd.DataFrame) -> list[str]:
    """Why the section does not use the best epoch: how many runs peaked in the warm-up, before p acts."""
    peaked, total = 0, 0
    for _, r in runs.iterrows():
        acc = [a for a in ((r.get("metrics") or {}).get("test_acc") or []) if a is not None]
        warm_up = (r.get("method_params") or {}).get("warm_up")
        if not acc or warm_up is None:
            continue
        total += 1
        peaked += int(np.argmax(acc)) < int(warm_up)
    if not total:
        return []
    return [f"The best epoch is not used: in {peaked} of {total} runs the best test accuracy came in "
            "the warm-up (cross-entropy on all samples), before p_threshold acts, so the best epoch "
            "cannot follow the threshold; the section reports the mean of the last ten epochs.", ""]


PAPER_SCALE_GRID = "dividemix_threshold_cifar10"


def _scope_lines() -> list[str]:
    """What this grid answers and what it leaves to the CIFAR-10 grid, with that grid's GPU cost."""
    runs = expected_runs(PAPER_SCALE_GRID, GRIDS_DIR)
    if not runs:
        return []
    est = estimate_grid_hours(runs)
    return [f"Answered here on MNIST with the MLP; not answered here: the write-up's own scale, "
            f"CIFAR-10 with a CNN. Grid `{PAPER_SCALE_GRID}` ({len(runs)} runs, PreAct ResNet-18 under "
            f"the official protocol) asks it there; its dry run estimates {est['gpu_hours']:.3g} "
            f"GPU-hours, from the {est['throughput_source']}.", ""]


def _body(ctx: Context, acc: pd.Series) -> list[str]:
    from bench.selection import trained_threshold_table

    kept = trained_threshold_table(ctx.runs.assign(acc=acc))
    if kept.empty:
        return ["**Answer:** not yet: no run recorded the kept set of the threshold it trained with.", ""]
    kept = kept.assign(setting=settings(kept))
    cells = _threshold_cells(kept)
    # per setting only: pooled across settings, rho would rank the settings (their noise and
    # accuracy differ for reasons other than p), not the thresholds
    corr = [(name, arms.spearman_within_seeds(_seed_matrix(g, "noise_kept"), _seed_matrix(g, "acc"),
                                                rng=ctx.rng)) for name, g in kept.groupby("setting", sort=True)]
    p_holm = stats.holm(np.array([c.p_value for _, c in corr], dtype=float))
    lines = ["**Answer:** Spearman's rho between the kept set's label noise and the accuracy across "
             "the thresholds within each seed, mean over the seeds [95% t-interval]: "
             + "; ".join(_answer(name, c, p, ctx.alpha) for (name, c), p in zip(corr, p_holm)) + ".", ""]
    lines += _range_lines(cells) + _warm_up_lines(ctx.runs)
    lines += ["Per p_threshold, at each run's last epoch: the size of net1's kept (labelled) set at the "
              "threshold it trained with, that set's label noise (1 − precision against the clean labels) "
              "and the accuracy (mean of the last ten epochs); mean [95% CI] (seeds).", ""]
    lines += table(["setting", "p_threshold", "kept", "label noise of the kept set (%)", "accuracy (%)"],
                    [(r["setting"], f"{r['value']:g}", r["size"], r["noise_text"], r["acc_text"])
                     for _, r in cells.iterrows()])
    lines += ["Spearman's rho between the kept set's noise and the accuracy across the thresholds of "
              "one seed (one noise draw, shared by the thresholds of a setting), averaged over the "
              "seeds, with a t-interval over the seeds (none where every seed gives the same rho); "
              "p: the permutation test of an accuracy that does not depend on the threshold (the "
              "accuracies permuted across the thresholds within each seed), Holm across the settings.", ""]
    lines += table(["setting", "thresholds", "seeds", "rho per seed", "mean rho [95% CI]", "p", "p (Holm)",
                    "accuracy"],
                    [(name, c.n_cells, c.n_seeds, ", ".join(fmt(r) for r in c.per_seed) or "n/a", _rho_text(c),
                      fmt_p(c.p_value), fmt_p(p), _follows(c, p, ctx.alpha)) for (name, c), p in zip(corr, p_holm)])
    lines += _scope_lines()
    return lines + ctx.figure(question_figures.accuracy_vs_kept_noise, cells,
                              "question_dividemix_threshold.png",
                              "accuracy against the kept set's label noise per p_threshold",
                              ylabel="test accuracy (%)")


QUESTION = Question(
    "Does DivideMix's accuracy follow its clean set's noise rate?",
    "Trying p_threshold by hand, the clean set shrank and its noise fell with p while the accuracy "
    "did not follow: does accuracy follow the clean set's noise rate?", "last10", _body)
