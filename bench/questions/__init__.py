"""Report sections that answer the question a grid was built to ask.

Some grids ask one question of their own arms rather than of a paper's table: whether Deep
Self-Learning's later correction start removes its dip (``self_learning_start``), whether its
prototype diversity threshold explains the collapse after the first correction
(``self_learning_eta``), which JoCoR co_lambda is best and whether the default 0.1 loses
(``jocor_lambda_mnist``), whether RSL's class-wise selection beats plain small-loss selection at
its budget (``rsl_vs_smallloss_mnist``) and whether DivideMix's accuracy follows its kept set's
noise rate (``dividemix_threshold``), and how much of a reproduction gap the noise draw explains
(``noise_draw_mnist``). One module per question holds its :class:`Question`;
:mod:`bench.questions.common` what they share. :func:`question_sections` gives the markdown of the
grid's section (nothing for another grid). Each section opens with the question as it was put,
answers it in one sentence with its numbers, intervals and verdict, shows the tables and the
figure behind the answer, and ends with the compute the records took and the runs of the grid
that have no record yet.

``runs`` is one row per record, as :func:`bench.report.load_grid_runs` gives them (``acc``, the
accuracy under the report's protocol, when present). A section answers under its question's own
protocol, and says so where the report's differs.
Intervals are 95% t-intervals over seeds; arms are paired on the seed where the grid gives each
seed one noise draw shared by the arms (:mod:`bench.stats.arms`), and Holm runs over the tests that
answer one question. Verdicts (:func:`bench.arms.holm_verdicts`): ``different`` (Holm p <
0.05), ``different, within the margin`` (and TOST within ±``margin`` points after Holm),
``equivalent`` (TOST only), else ``inconclusive``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.left_out import GRIDS_DIR
from bench.questions import (dividemix_threshold, jocor_lambda, noise_draw, rsl_selection,
                             self_learning_eta, self_learning_start)
from bench.questions.common import (Context, Question, accuracy, compute_line, draw_lines, expected_runs,
                                    in_grid, left_out_lines, pair_on_seed, pending_lines, protocol_line,
                                    two_arm_test)

__all__ = ["QUESTIONS", "Question", "Context", "question_sections", "compute_line", "draw_lines",
           "pending_lines", "pair_on_seed", "two_arm_test"]

QUESTIONS: dict[str, Question] = {
    "self_learning_start": self_learning_start.QUESTION,
    "self_learning_eta": self_learning_eta.QUESTION,
    "jocor_lambda_mnist": jocor_lambda.QUESTION,
    "rsl_vs_smallloss_mnist": rsl_selection.QUESTION,
    "dividemix_threshold": dividemix_threshold.QUESTION,
    "noise_draw_mnist": noise_draw.QUESTION,
}


def question_sections(grid: str, runs: pd.DataFrame | None, figures_dir: str | Path, *,
                      figures: bool = True, grids_dir: str | Path = GRIDS_DIR, seed: int = 0,
                      margin: float = 1.0, alpha: float = 0.05) -> list[str]:
    """Markdown lines of the grid's question section ([] for a grid without a question).

    ``runs``: the grid's records, one row per run (None or empty: the section says there are
    none); figures are written into ``figures_dir`` and linked as from a report beside it;
    ``seed`` seeds the bootstrap and the sampled sign-flip tests.
    """
    question = QUESTIONS.get(grid)
    if question is None:
        return []
    expected = expected_runs(grid, Path(grids_dir))
    lines = [f"## Question: {question.title}", "", f"> {question.asked}", ""]
    if runs is None or runs.empty:
        total = f" (all {len(expected)} runs of the grid are pending)" if expected is not None else ""
        return lines + [f"No records of this grid yet{total}.", ""]
    runs, outside = in_grid(runs, expected)
    if runs.empty:
        return lines + [f"No records of this grid's configurations yet; {len(outside)} record(s) of other "
                        "configurations left out.", ""]
    ctx = Context(runs, Path(figures_dir), figures, np.random.default_rng(seed), margin, alpha, expected)
    lines += protocol_line(runs, question.protocol)
    lines += question.body(ctx, accuracy(runs, question.protocol))
    lines += draw_lines(runs) + [compute_line(runs), ""] + pending_lines(runs, expected)
    return lines + left_out_lines(outside)
