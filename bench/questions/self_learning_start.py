"""``self_learning_start``: does a later label-correction start remove Deep Self-Learning's dip?

Arms by ``correction_start_epoch`` (``start 1``, the paper's, ``start 3``, ``start 5``) and
standard CE under the same schedule; the later starts are tested against start 1.
"""

from __future__ import annotations


from bench.questions.common import Question, comparison_text, mean_ci
from bench.questions.self_learning import Arms, Comparison, body_of, dips_text

REFERENCE = "start 1"


def _answer(comparison: Comparison) -> str:
    if REFERENCE not in comparison.by_arm:
        return "**Answer:** not yet: no run starts the correction at epoch 1."
    base = comparison.by_arm[REFERENCE]
    finals = "; ".join(comparison_text(t, f"{a} − {REFERENCE} = ")
                       for a, t in zip(comparison.compared, comparison.final)) or "no later start has runs yet"
    return (f"**Answer:** the dip (points below the running maximum, mean [95% CI] (seeds)) is "
            f"{dips_text(comparison.by_arm)}; the final accuracy of start 1 is {mean_ci(base['acc'])}%, and a "
            f"later start changes it by {finals}.")


ARMS = Arms(parameter="correction_start_epoch", name=lambda v: f"start {int(v)}", reference=REFERENCE,
            others="Later starts", figure="question_self_learning_start.png", answer=_answer)


QUESTION = Question(
    "Does a later label-correction start remove Deep Self-Learning's dip?",
    "A re-implementer saw accuracy fall to about 30% after correcting from epoch 1, and a later "
    "start remove the dip without changing the final accuracy, and could not tell seed variance "
    "from the effect.", "last", body_of(ARMS))
