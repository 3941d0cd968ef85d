"""``self_learning_eta``: does the paper's prototype diversity threshold (eta < 0.95) explain
Deep Self-Learning's accuracy collapse after its first label correction?

Arms by ``eta_threshold`` (``eta 0.95``, the paper's, ``eta 0.99``, ``eta 1``: the plain densest
samples), all correcting from epoch 1; the higher thresholds are tested against 0.95 on the dip
and on the final accuracy. The threshold explains the collapse where a higher one has a
significantly smaller dip; it does not where every higher one's dip is within the margin of the
paper's.
"""

from __future__ import annotations


from bench.questions.common import Question, comparison_text, mean_ci
from bench.questions.self_learning import Arms, Comparison, body_of, dips_text
from bench.stats import arms

REFERENCE = "eta 0.95"


def _explains(dip_tests: list[arms.TwoArmTest]) -> str:
    """Whether the dip tests of the higher thresholds say the threshold explains the collapse."""
    if any(t.verdict == arms.DIFFERENT and t.diff < 0 for t in dip_tests):
        return "a higher threshold has a smaller dip: the threshold explains (part of) the collapse"
    if dip_tests and all(t.verdict in (arms.EQUIVALENT, arms.SMALL_DIFFERENCE) for t in dip_tests):
        return "no higher threshold changes the dip beyond the margin: the threshold does not explain the collapse"
    return "no higher threshold is shown to change the dip: the threshold is not shown to explain the collapse"


def _answer(comparison: Comparison) -> str:
    if REFERENCE not in comparison.by_arm:
        return "**Answer:** not yet: no run at the paper's threshold, eta 0.95."
    if not comparison.compared:
        return (f"**Answer:** not yet: no run at a higher threshold; the dip (points below the running "
                f"maximum, mean [95% CI] (seeds)) is {dips_text(comparison.by_arm)}.")
    pairs = list(zip(comparison.compared, comparison.dip, comparison.final))
    dips = "; ".join(comparison_text(t, f"{a} − {REFERENCE} = ") for a, t, _ in pairs)
    finals = "; ".join(comparison_text(t, f"{a} − {REFERENCE} = ") for a, _, t in pairs)
    base = comparison.by_arm[REFERENCE]
    return (f"**Answer:** {_explains(comparison.dip)}. The dip (points below the running maximum, mean "
            f"[95% CI] (seeds)) is {dips_text(comparison.by_arm)}; a higher threshold changes it by {dips}. "
            f"The final accuracy at eta 0.95 is {mean_ci(base['acc'])}%, and a higher threshold changes it "
            f"by {finals}.")


ARMS = Arms(parameter="eta_threshold", name=lambda v: f"eta {float(v):g}", reference=REFERENCE,
            others="Higher thresholds", figure="question_self_learning_eta.png", answer=_answer)


QUESTION = Question(
    "Does the paper's prototype diversity threshold (eta < 0.95) explain the accuracy collapse after "
    "the first correction?",
    "Deep Self-Learning keeps as prototypes the densest samples whose similarity to any denser one is "
    "below 0.95; in the features of a small network trained from scratch the densest samples of a "
    "class are near-duplicates, so the rule may keep sparse, mostly mislabelled ones. Does raising "
    "the threshold to 0.99 or 1.0 (the plain densest samples) remove the collapse after the first "
    "correction?", "last", body_of(ARMS))
