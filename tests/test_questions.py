"""bench.questions: the question sections on synthetic records of the real grids' run specs.

Every record is built from a run spec the grid file expands to (its run_id, label, parameters,
noise and seed) with the structure of a real record (bench.store.validate_record passes), and
metrics constructed so that the answer is known.
"""

from __future__ import annotations

import re
import numpy as np
import pandas as pd
import pytest

from bench import questions
from bench.config import load_grid
from bench.left_out import GRIDS_DIR
from bench.selection import POINTS
from bench.store import validate_record, write_record

K = 10


def _specs(grid: str) -> list:
    return list(load_grid(GRIDS_DIR / f"{grid}.yaml").runs)


def _record(spec, test_acc, *, extra=None, selected_per_class=None, selected_count=None,
            label_precision=None, selection_curve=None, wall=360.0, threads=2) -> dict:
    test_acc = [float(v) for v in test_acc]
    n = len(test_acc)
    metrics = {"epoch": list(range(n)), "test_acc": test_acc, "test_acc_networks": {"net1": test_acc},
               "train_loss": [1.0] * n, "selected_count": selected_count or [None] * n,
               "label_precision": label_precision or [None] * n, "label_recall": [None] * n,
               "selected_per_class": selected_per_class or [None] * n, "extra": extra or {}}
    if selection_curve is not None:
        metrics["selection_curve"] = selection_curve
    record = {**spec.to_dict(), "run_id": spec.run_id, "schema_version": 1, "epochs": n, "realised_noise_rate": spec.noise_rate,
              "transition_matrix": [], "metrics": metrics, "test_acc_last": test_acc[-1],
              "test_acc_best": max(test_acc), "test_acc_last10": float(np.mean(test_acc[-10:])),
              "wall_seconds": wall, "device": "cpu", "env": {"cpu_threads": threads}, "status": "ok",
              "error": None}
    assert validate_record(record) == []
    return record


def _frame(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(records)
    frame["protocol"] = frame["reference"].map(lambda r: r.get("protocol"))
    return frame


def _answer(lines: list[str]) -> str:
    return next(line for line in lines if line.startswith("**Answer:**"))


def _render(grid: str, records: list[dict], figures_dir) -> tuple[list[str], str, str]:
    """The grid's section from ``records``: its lines, their text and its answer line."""
    lines = questions.question_sections(grid, _frame(records), figures_dir)
    return lines, "\n".join(lines), _answer(lines)


def _estimate_after(text: str, prefix: str) -> tuple[float, float, float]:
    """(estimate, low, high) written as ``<prefix>x [low, high]`` in ``text``."""
    match = re.search(re.escape(prefix) + r"(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", text)
    assert match, f"{prefix!r} not in {text!r}"
    est, low, high = (float(v) for v in match.groups())
    return est, low, high


# ---- self_learning_start --------------------------------------------------------------------

SL_SHIFT = {1: 0.0, 3: 0.0, 5: -3.0}   # final accuracy of each start relative to start 1


def _self_learning_records(rng: np.random.Generator) -> tuple[list[dict], dict]:
    """Start 1 dips to 30% after its first corrected epoch; starts 3 and 5 never fall. Final
    accuracy: start 3 that of start 1 (equivalent), start 5 three points below."""
    base = {seed: 80 + rng.normal(0, 2) for seed in range(1, 6)}
    truth: dict = {"dip": {}, "corrected_last": {}}
    records = []
    for spec in _specs("self_learning_start"):
        start = spec.method_params.get("correction_start_epoch")
        final = base[spec.seed] + SL_SHIFT.get(start, -1.0) + rng.normal(0, 0.05)
        curve = np.linspace(60, final - 1, 15)
        curve[-1] = final
        extra = {}
        if start is not None:
            corrected = [None] * start + list(np.linspace(55, 70 + start, 15 - start))
            extra = {"corrected_label_acc": corrected}
            truth["corrected_last"].setdefault(start, []).append(corrected[-1])
        if start == 1:
            curve[2] = 30.0
            truth["dip"].setdefault(1, []).append(curve[1] - 30.0)
        records.append(_record(spec, curve, extra=extra))
    return records, truth


def test_self_learning_section_answers_with_dip_final_accuracy_and_paired_verdicts(tmp_path):
    records, truth = _self_learning_records(np.random.default_rng(0))
    lines = questions.question_sections("self_learning_start", _frame(records), tmp_path / "fig")
    text = "\n".join(lines)
    assert lines[0].startswith("## Question:") and lines[2].startswith("> A re-implementer")
    answer = _answer(lines)
    assert f"start 1 {np.mean(truth['dip'][1]):.1f} [" in answer
    assert "start 3 0.0 [0.0, 0.0] (5)" in answer and "start 5 0.0 [0.0, 0.0] (5)" in answer
    for start in (3, 5):
        est, low, high = _estimate_after(answer, f"start {start} − start 1 = ")
        assert est == pytest.approx(SL_SHIFT[start], abs=0.1) and low <= SL_SHIFT[start] <= high
    three, five = answer.split("start 3 − start 1 = ")[1].split("start 5 − start 1 = ")
    assert "equivalent within ±1" in three
    # 5 of 5 below: exact p 2 / 2^5, Holm over the two later starts at most doubles it
    assert "a difference" in five and "exact sign-flip Holm p = 0.125" in five
    # corrected labels: the last epoch's mean per start, and n/a before each start
    assert f"{np.mean(truth['corrected_last'][5]):.2f} [" in text
    assert "| 1 | n/a | n/a | n/a |" in text and "| 2 | 55.0 [55.0, 55.0] (5) | n/a | n/a |" in text
    assert (tmp_path / "fig" / "question_self_learning_start.png").is_file()
    assert "](fig/question_self_learning_start.png)" in text
    assert "Compute: 2 h wall time on cpu over 20 runs (4 CPU-hours)." in lines
    assert "Pending: nothing; all 20 runs of the grid have a record." in lines
    assert not any(line.startswith("Every run of a setting trained on one noise draw") for line in lines)


def test_self_learning_section_lists_pending_runs_and_tests_what_it_has(tmp_path):
    records, _ = _self_learning_records(np.random.default_rng(1))
    kept = [r for r in records if not (r["method_params"].get("correction_start_epoch") == 5
                                       or (r["method"] == "standard" and r["seed"] == 4))]
    lines = questions.question_sections("self_learning_start", _frame(kept), tmp_path, figures=False)
    text = "\n".join(lines)
    assert "Pending: 6 of the grid's 20 runs have no record yet" in text
    assert "| self_learning(correction_start_epoch=5) | symmetric 40% | 5 | 1, 2, 3, 4, 5 |" in text
    assert "| standard | symmetric 40% | 1 | 4 |" in text
    assert "start 5 − start 1" not in text and "start 3 − start 1 = " in _answer(lines)
    assert not list(tmp_path.glob("*.png"))


def test_records_the_grid_file_does_not_expand_to_are_left_out_and_named(tmp_path):
    records, _ = _self_learning_records(np.random.default_rng(1))
    stale = dict(records[0], run_id="0123456789abcdef", label="self_learning(old)")
    stale["method_params"] = dict(stale["method_params"], correction_start_epoch=2)
    lines = questions.question_sections("self_learning_start", _frame(records + [stale]), tmp_path,
                                        figures=False)
    assert "start 2" not in "\n".join(lines)
    assert lines[-2] == ("Left out of this section: 1 record(s) whose configuration the grid file does not "
                         "expand to (self_learning(old)).")
    only_stale = questions.question_sections("self_learning_start", _frame([stale]), tmp_path, figures=False)
    assert only_stale[-2] == ("No records of this grid's configurations yet; 1 record(s) of other "
                              "configurations left out.")


def test_arms_on_different_draws_are_compared_by_welch(tmp_path):
    records, _ = _self_learning_records(np.random.default_rng(2))
    for r in records:
        if r["method_params"].get("correction_start_epoch") == 3:
            r["noise_seed"] += 100
    text = "\n".join(questions.question_sections("self_learning_start", _frame(records), tmp_path,
                                                 figures=False))
    assert "| final accuracy, start 3 − start 1 | 5 vs 5 (Welch) |" in text
    assert "| final accuracy, start 5 − start 1 | 5 |" in text


# ---- self_learning_eta ----------------------------------------------------------------------

ETA_FINAL = {0.95: 0.0, 0.99: 0.0, 1.0: 5.0}   # final accuracy of each eta relative to 0.95


def _eta_records(rng: np.random.Generator, dips: dict[float, float]) -> tuple[list[dict], dict]:
    """Every eta corrects from epoch 1; the test accuracy falls by ``dips[eta]`` points at the
    third epoch. Final accuracy: eta 0.99 that of 0.95, eta 1.0 five points above."""
    base = {seed: 75 + rng.normal(0, 2) for seed in range(1, 6)}
    truth: dict = {"dip": {}, "corrected_last": {}}
    records = []
    for spec in _specs("self_learning_eta"):
        eta = spec.method_params["eta_threshold"]
        final = base[spec.seed] + ETA_FINAL[eta] + rng.normal(0, 0.05)
        curve = np.linspace(60, final - 1, 15)
        curve[-1] = final
        curve[2] = curve[1] - dips[eta] - rng.normal(0, 0.05) ** 2
        truth["dip"].setdefault(eta, []).append(curve[1] - curve[2])
        corrected = [None] + list(np.linspace(40, 60 + 10 * eta, 14) + rng.normal(0, 0.1))
        truth["corrected_last"].setdefault(eta, []).append(corrected[-1])
        records.append(_record(spec, curve, extra={"corrected_label_acc": corrected}))
    return records, truth


def test_eta_section_finds_the_threshold_explains_a_collapse_that_a_higher_one_removes(tmp_path):
    records, truth = _eta_records(np.random.default_rng(8), {0.95: 40.0, 0.99: 20.0, 1.0: 0.5})
    lines = questions.question_sections("self_learning_eta", _frame(records), tmp_path / "fig")
    text = "\n".join(lines)
    assert lines[0] == ("## Question: Does the paper's prototype diversity threshold (eta < 0.95) explain the "
                        "accuracy collapse after the first correction?")
    answer = _answer(lines)
    assert "the threshold explains (part of) the collapse" in answer
    assert f"eta 0.95 {np.mean(truth['dip'][0.95]):.1f} [" in answer
    dips, finals = answer.split("The final accuracy at eta 0.95 is ")
    for eta, name in ((0.99, "eta 0.99"), (1.0, "eta 1")):
        expected = np.mean(truth["dip"][eta]) - np.mean(truth["dip"][0.95])
        est, low, high = _estimate_after(dips, f"{name} − eta 0.95 = ")
        assert est == pytest.approx(expected, abs=0.01) and high < 0
        est, low, high = _estimate_after(finals, f"{name} − eta 0.95 = ")
        assert est == pytest.approx(ETA_FINAL[eta], abs=0.1) and low <= ETA_FINAL[eta] <= high
    assert "equivalent within ±1" in finals.split("eta 1 − eta 0.95")[0]
    assert "a difference" in finals.split("eta 1 − eta 0.95")[1]
    assert "Higher thresholds against eta 0.95, paired by seed" in text
    assert "| dip, eta 1 − eta 0.95 | 5 |" in text and "standard CE" not in text
    assert f"{np.mean(truth['corrected_last'][1.0]):.2f} [" in text
    assert "| 1 | n/a | n/a | n/a |" in text
    assert (tmp_path / "fig" / "question_self_learning_eta.png").is_file()
    assert "Pending: nothing; all 15 runs of the grid have a record." in lines


def test_eta_section_does_not_blame_the_threshold_for_a_dip_every_threshold_has(tmp_path):
    records, _ = _eta_records(np.random.default_rng(9), {0.95: 30.0, 0.99: 30.0, 1.0: 30.0})
    answer = _answer(questions.question_sections("self_learning_eta", _frame(records), tmp_path, figures=False))
    assert "the threshold does not explain the collapse" in answer
    assert answer.count("equivalent within ±1") >= 2


def test_eta_section_waits_for_a_higher_threshold(tmp_path):
    records, truth = _eta_records(np.random.default_rng(10), {0.95: 30.0, 0.99: 0.0, 1.0: 0.0})
    paper = [r for r in records if r["method_params"]["eta_threshold"] == 0.95]
    lines = questions.question_sections("self_learning_eta", _frame(paper), tmp_path, figures=False)
    assert _answer(lines) == ("**Answer:** not yet: no run at a higher threshold; the dip (points below the "
                              "running maximum, mean [95% CI] (seeds)) is eta 0.95 "
                              f"{questions.common.mean_ci(truth['dip'][0.95], 1)}.")
    assert "Pending: 10 of the grid's 15 runs have no record yet" in "\n".join(lines)


# ---- jocor_lambda_mnist -----------------------------------------------------------------------

BEST = {0.5: 0.8, 0.8: 0.9}


def _lambda_records(rng: np.random.Generator) -> list[dict]:
    """The accuracy peaks at co_lambda 0.8 (sym 50%) and 0.9 (sym 80%); 0.1 is 3 points lower."""
    base = {(rate, seed): (85 if rate == 0.5 else 40) + rng.normal(0, 1.5) for rate in BEST for seed in (1, 2, 3)}
    records = []
    for spec in _specs("jocor_lambda_mnist"):
        lam = spec.method_params["co_lambda"]
        effect = -3.0 if lam == 0.1 else -abs(lam - BEST[spec.noise_rate])
        acc = base[(spec.noise_rate, spec.seed)] + effect + rng.normal(0, 0.1)
        record = _record(spec, [acc - 5] * 5 + [acc] * 10)
        if lam == 0.95:
            record["reused_from"] = {"grid": "jocor_mnist", "record": "x.json"}
        records.append(record)
    return records


def test_lambda_section_finds_the_best_lambda_and_tests_the_default_against_it(tmp_path):
    lines, text, answer = _render("jocor_lambda_mnist", _lambda_records(np.random.default_rng(3)), tmp_path)
    assert re.search(r"at symmetric 50% the accuracy [^;]*; the best co_lambda is 0\.8 ", answer)
    assert re.search(r"at symmetric 80% the accuracy [^;]*; the best co_lambda is 0\.9 ", answer)
    for setting in ("symmetric 50%", "symmetric 80%"):
        part = answer.split(f"at {setting}")[1]
        est, low, high = _estimate_after(part, f"co_lambda 0.1 − {BEST[0.5 if '50' in setting else 0.8]:g} = ")
        assert est == pytest.approx(-3.0, abs=0.5) and high < 0
    assert answer.count("a difference") == 2
    assert "p = <" not in text and "permutation Holm p < 0.001" in answer   # a sentence writes "p < 0.001"
    assert answer.count("the accuracy depends on co_lambda (block F-test over 3 seeds x 6 values, F(5, 10) = ") == 2
    assert "| symmetric 80% | 3 x 6 |" in text
    assert "| symmetric 50% | 0.8 |" in text and "| symmetric 80%: 0.1 − 0.9 | 3 |" in text
    rows = [line for line in lines if line.startswith("| symmetric") and line.endswith("| best |")]
    assert len(rows) == 2
    records = _lambda_records(np.random.default_rng(3))
    reused = sum("reused_from" in r for r in records)
    assert reused == 6
    assert (f"Compute: {(len(records) - reused) * 0.1:g} h wall time on cpu over {len(records) - reused} runs "
            f"({(len(records) - reused) * 0.2:g} CPU-hours); {reused} run(s) reused from grid jocor_mnist, "
            "trained there.") == questions.compute_line(_frame(records))
    assert (tmp_path / "question_jocor_lambda.png").is_file()
    assert ("Every run of a setting trained on one noise draw (noise_seed 0): the intervals cover the training "
            "seeds and are conditional on that draw.") in lines


def test_lambda_section_finds_no_dependence_where_co_lambda_does_nothing(tmp_path):
    rng = np.random.default_rng(5)
    records = _lambda_records(rng)
    base = {(r["noise_rate"], r["seed"]): 80 + rng.normal(0, 3) for r in records}
    for r in records:   # the seed's accuracy plus noise: co_lambda has no effect
        r["test_acc_last10"] = base[(r["noise_rate"], r["seed"])] + rng.normal(0, 0.5)
    lines, text, answer = _render("jocor_lambda_mnist", records, tmp_path)
    assert answer.count("the accuracy does not depend on co_lambda detectably") == 2, answer
    # a value missing a seed leaves the design: the test runs on the complete values
    partial = [r for r in records if not (r["method_params"]["co_lambda"] == 0.5 and r["seed"] == 3)]
    _, text, _ = _render("jocor_lambda_mnist", partial, tmp_path)
    assert "| symmetric 50% | 3 x 5 |" in text and "| symmetric 80% | 3 x 5 |" in text
    # two values on three seeds: the permutation test cannot go below 1/4, and the answer says so
    two = [r for r in _lambda_records(rng) if r["method_params"]["co_lambda"] in (0.1, 0.5)]
    _, _, answer = _render("jocor_lambda_mnist", two, tmp_path)
    assert answer.count("cannot be told yet (3 seeds x 2 values: the permutation test's p cannot go below "
                        "0.250, 2 setting(s) under Holm)") == 2, answer


def test_lambda_section_tests_a_winning_default_against_the_runner_up(tmp_path):
    records = _lambda_records(np.random.default_rng(4))
    for r in records:   # the default now wins by 2 points over the best other value
        if r["method_params"]["co_lambda"] == 0.1:
            r["test_acc_last10"] += 5.0
    _, text, answer = _render("jocor_lambda_mnist", records, tmp_path)
    for setting, runner_up in (("symmetric 50%", 0.8), ("symmetric 80%", 0.9)):
        part = answer.split(f"at {setting}")[1]
        assert part.split("; ")[1].startswith("the best co_lambda is 0.1 with")
        est, low, high = _estimate_after(part, f"co_lambda 0.1 − {runner_up:g} = ")
        assert est == pytest.approx(2.0, abs=0.5) and low > 0
    assert "| symmetric 50%: 0.1 − 0.8 | 3 |" in text


# ---- rsl_vs_smallloss_mnist -------------------------------------------------------------------

CLASSWISE = [100] * K
GLOBAL = [140, 160, 10, 60, 130, 40, 120, 110, 100, 130]   # the same budget of 1,000


def _rsl_records(rng: np.random.Generator) -> list[dict]:
    """Class-wise keeps every class equally; global starves class 2 and wins nothing, except at
    symmetric 80%, where class-wise is 2 points better."""
    base = {(s.noise_type, s.noise_rate, s.seed): 90 + rng.normal(0, 1) for s in _specs("rsl_vs_smallloss_mnist")}
    records = []
    for spec in _specs("rsl_vs_smallloss_mnist"):
        classwise = spec.method_params["selection"] == "classwise"
        gain = 2.0 if classwise and spec.noise_rate == 0.8 else 0.0
        acc = base[(spec.noise_type, spec.noise_rate, spec.seed)] + gain + rng.normal(0, 0.05)
        counts = CLASSWISE if classwise else GLOBAL
        records.append(_record(spec, [acc - 1, acc - 0.5, acc], selected_per_class=[counts] * 3,
                               selected_count=[1000] * 3, label_precision=[0.9 if classwise else 0.8] * 3))
    return records


def test_rsl_section_pairs_the_arms_and_shows_the_per_class_counts(tmp_path):
    lines, text, answer = _render("rsl_vs_smallloss_mnist", _rsl_records(np.random.default_rng(4)), tmp_path)
    est, low, high = _estimate_after(answer, "at symmetric 80%, classwise − global = ")
    assert est == pytest.approx(2.0, abs=0.1) and low <= 2.0 <= high
    assert "a difference" in answer.split("at symmetric 80%")[1]
    est, low, high = _estimate_after(answer, "at symmetric 50%, classwise − global = ")
    assert low <= 0.0 <= high and "equivalent" in answer.split("at symmetric 50%")[1].split(";")[0]
    for cls, count in enumerate(GLOBAL):
        assert f"| asymmetric 40% | {cls} | 100 | {count} | {100 - count} |" in text
    assert "| symmetric 80% | classwise | " in text and "| 1000 [1000, 1000] (5) | 10.0 [10.0, 10.0] (5) |" in text
    assert ("at asymmetric 40% classwise 100-100 per noisy class at 10.0% label noise, global 10-160 per noisy "
            "class at 20.0% label noise;") in answer
    assert (tmp_path / "question_rsl_per_class.png").is_file()


# ---- dividemix_threshold ----------------------------------------------------------------------


def _curve(size: int, precision: float, epochs: int) -> dict:
    """A posterior selection curve whose kept set is ``size`` at ``precision`` at every point."""
    points = list(POINTS["posterior"])
    return {"kind": "posterior", "points": points,
            "size": [None] + [[size] * len(points)] * (epochs - 1),
            "precision": [None] + [[precision] * len(points)] * (epochs - 1),
            "recall": [None] + [[0.5] * len(points)] * (epochs - 1),
            "per_class": [None] + [[[size // K] * K] * len(points)] * (epochs - 1)}


def _dividemix_records(rng: np.random.Generator, slope: float) -> tuple[list[dict], pd.DataFrame]:
    """The kept set's noise falls with p; the accuracy is ``slope`` x its noise (in %) plus noise."""
    truth = []
    for spec in _specs("dividemix_threshold"):
        p = spec.method_params["p_threshold"]
        noise = (0.25 if spec.noise_type == "asymmetric" else 0.35) * (1 - p) + rng.normal(0, 0.005)
        acc = 90 + slope * 100 * noise + rng.normal(0, 0.2)
        truth.append({"spec": spec, "noise": noise, "acc": acc, "size": int(50000 * (1 - 0.6 * p))})
    records = [_record(t["spec"], [t["acc"] - 2, t["acc"], t["acc"] - 1],
                       selection_curve=_curve(t["size"], 1 - t["noise"], 3)) for t in truth]
    return records, pd.DataFrame(truth)


def test_dividemix_section_finds_accuracy_following_the_kept_noise(tmp_path):
    records, truth = _dividemix_records(np.random.default_rng(5), slope=-0.5)
    lines, text, answer = _render("dividemix_threshold", records, tmp_path)
    parts = answer.split("; ")
    assert len(parts) == 2, answer   # one rho per noise setting, across its 5 thresholds
    for part, setting in zip(parts, ("asymmetric 30%", "symmetric_inclusive 40%")):
        assert f"at {setting}, rho = " in part and "over 5 thresholds x 3 seeds" in part, part
        assert "the accuracy follows it (falls as the kept set's noise rises) (permutation p " in part
        assert float(re.split(r" \[| over", part.split("rho = ")[1])[0]) < -0.9
    assert "| all cells |" not in text   # no rho pooled across settings: it would rank the settings
    # the accuracy is the mean of the last ten epochs (here all three: acc - 2, acc, acc - 1)
    mean_acc = truth[[s.noise_type == "asymmetric" and s.method_params["p_threshold"] == 0.5
                      for s in truth["spec"]]]["acc"].mean() - 1
    assert "| asymmetric 30% | 0.5 | 35000 [35000, 35000] (3) |" in text and f"| {mean_acc:.2f} [" in text
    assert "in 30 of 30 runs the best test accuracy came in the warm-up" in text
    scope = next(line for line in lines if line.startswith("Answered here on MNIST"))
    assert "Grid `dividemix_threshold_cifar10` (30 runs" in scope and re.search(r"estimates [\d.]+ GPU-hours", scope)
    assert (tmp_path / "question_dividemix_threshold.png").is_file()


def test_dividemix_section_does_not_claim_a_relation_that_is_not_there(tmp_path):
    rng = np.random.default_rng(6)
    records, _ = _dividemix_records(rng, slope=0.0)
    for r in records:   # accuracy independent of the kept set: a fresh draw per run
        r["test_acc_last10"] = float(rng.normal(80, 3))
    answer = _answer(questions.question_sections("dividemix_threshold", _frame(records), tmp_path, figures=False))
    assert "follows it (" not in answer


def test_dividemix_section_says_why_a_rho_is_not_tested(tmp_path):
    records, _ = _dividemix_records(np.random.default_rng(7), slope=-0.5)
    kept = [r for r in records if r["method_params"]["p_threshold"] in (0.1, 0.9)]
    answer = _answer(questions.question_sections("dividemix_threshold", _frame(kept), tmp_path, figures=False))
    assert answer.count("not tested: rho is undefined over 2 threshold(s) (it needs 3 or more") == 2, answer
    assert "n/a" not in answer   # an untested setting says why, without empty numbers
    one_seed = [r for r in records if r["seed"] == 1]
    answer = _answer(questions.question_sections("dividemix_threshold", _frame(one_seed), tmp_path, figures=False))
    # one seed: the permutation test still holds (within that draw), the t-interval does not exist
    assert answer.count("over 5 thresholds x 1 seeds") == 2 and answer.count(" seeds: ") == 2, answer
    assert re.search(r"rho = -?[\d.]+ over 5 thresholds x 1 seeds", answer), answer


# ---- noise_draw_mnist --------------------------------------------------------------------------

DRAW_SD = {"jocor": 1.0, "coteaching": 0.5, "standard": 0.0}   # sigma_draw per method; sigma_train 0.2


def _draw_records(rng: np.random.Generator, *, official_shift: float = 0.0, drop_seed: int | None = None) -> list[dict]:
    """Every run of noise_draw_mnist: draw effects of DRAW_SD on the suite's draws, training noise
    0.2; the official draw's runs ``official_shift`` above the suite's grand mean, and those of seed
    ``drop_seed`` with a selection that never picks class 3."""
    effects = {(m, r, d): rng.normal(0, sd) for m, sd in DRAW_SD.items() for r in (0.5, 0.8) for d in range(5)}
    records = []
    for spec in _specs("noise_draw_mnist"):
        base = (90.0 if spec.noise_rate == 0.5 else 40.0)
        if spec.noise_draw == "suite":
            acc = base + effects[(spec.method, spec.noise_rate, spec.noise_seed)]
        else:
            acc = base + official_shift
        acc += rng.normal(0, 0.2)
        per_class = None
        if spec.noise_draw != "suite" and spec.seed == drop_seed:
            per_class = [[100] * 3 + [0] + [100] * 6] * 15
        records.append(_record(spec, [acc - 3] * 5 + [acc] * 10, selected_per_class=per_class))
    return records


def _components(records: list[dict], method: str, rate: float):
    from bench import stats

    suite = [r for r in records if r["method"] == method and r["noise_rate"] == rate
             and r.get("noise_draw", "suite") == "suite"]
    return stats.variance_components([r["test_acc_last10"] for r in suite], [r["noise_seed"] for r in suite])


def test_noise_draw_section_splits_the_draw_from_training_and_bounds_the_gap(tmp_path):
    records = _draw_records(np.random.default_rng(8))
    lines, text, answer = _render("noise_draw_mnist", records, tmp_path)
    assert "of 6 crossed cell(s)" in answer and "in 6 of 6 cell(s)" in answer
    from bench import stats

    cells = [(m, r) for m in sorted(DRAW_SD) for r in (0.5, 0.8)]
    holm = dict(zip(cells, stats.holm([_components(records, m, r).p_draw for m, r in cells])))
    assert f"detected in {sum(p < 0.05 for p in holm.values())} of 6 crossed cell(s)" in answer
    for (m, r), p in holm.items():
        bullet = next(line for line in lines if line.startswith(f"- {m} at symmetric {r * 100:g}%"))
        assert ("a draw effect (" if p < 0.05 else "no draw effect detected (") in bullet, bullet
    assert all(holm[("jocor", r)] < 0.05 for r in (0.5, 0.8))   # sigma_draw 1 against sigma_train 0.2
    for method in DRAW_SD:
        for rate in (0.5, 0.8):
            c = _components(records, method, rate)
            row = next(line for line in lines if line.startswith(f"| symmetric {rate * 100:g}% | {method} | 5 x 3 |"))
            assert f"| {np.sqrt(c.s2_draw):.3f} [{np.sqrt(c.s2_draw_low):.3f}, {np.sqrt(c.s2_draw_high):.3f}] |" in row
            assert f"| {np.sqrt(c.s2_train):.3f} [" in row
            half = 1.959964 * np.sqrt(2 * c.s2_draw)
            assert f"| ±{half:.2f} [" in row
            bullet = next(line for line in lines if line.startswith(f"- {method} at symmetric {rate * 100:g}%"))
            est, low, high = _estimate_after(bullet, "the draw alone ±")
            assert low <= 1.96 * np.sqrt(2) * DRAW_SD[method] <= high + 0.01, bullet
    # the widest cell of the answer is a jocor one, the method with the largest draw effect
    assert re.search(r"points \(95% of draw pairs; the widest cell, jocor at symmetric", answer), answer
    # a std over seeds at one draw understates most where the draw dominates
    assert _estimate_after(answer, "understates the spread on other draws by up to ×")[0] > 2.0
    assert "| ours − paper (paper's number) |" in text and "(52.66, recalled) |" in text
    assert (tmp_path / "question_noise_draw.png").is_file()


def test_noise_draw_section_finds_an_official_draw_outside_the_suite_draws(tmp_path):
    records = _draw_records(np.random.default_rng(9), official_shift=5.0, drop_seed=2)
    lines, text, answer = _render("noise_draw_mnist", records, tmp_path)
    assert "inside the range of one more of the suite's draws in 0 of 6 cell(s)" in answer
    rows = [line for line in lines if "| noisify |" in line]
    # every official-draw cell is outside, and its seed-2 run, which never selected class 3, is counted
    assert len(rows) == 6 and all(line.endswith("| outside | 1 of 3 |") for line in rows), rows
    assert answer.count("1 of its 3 runs dropping a class") == 6, answer


def test_noise_draw_section_waits_for_crossed_cells_and_names_the_missing_draws(tmp_path):
    records = [r for r in _draw_records(np.random.default_rng(10)) if r["seed"] == 1]
    lines, text, answer = _render("noise_draw_mnist", records, tmp_path)
    assert answer == ("**Answer:** not yet: no cell has two or more of the suite's draws with several "
                      "seeds each.")
    assert "coteaching at symmetric 50% (5 run(s) on 5 draw(s))" in text
    assert "| seed/noise seed |" in text and "| jocor | symmetric 80% | 10 | 2/0, 2/1, 2/2, 2/3, 2/4, 3/0, " in text


# ---- the entry point --------------------------------------------------------------------------


def test_a_grid_without_records_says_so_in_one_line_and_other_grids_get_nothing(tmp_path):
    lines = questions.question_sections("rsl_vs_smallloss_mnist", pd.DataFrame(), tmp_path)
    body = [line for line in lines[3:] if line]
    assert body == ["No records of this grid yet (all 30 runs of the grid are pending)."]
    assert questions.question_sections("jocor_mnist", pd.DataFrame(), tmp_path) == []
    assert set(questions.QUESTIONS) == {"self_learning_start", "self_learning_eta", "jocor_lambda_mnist",
                                        "noise_draw_mnist",
                                        "rsl_vs_smallloss_mnist", "dividemix_threshold"}


def test_compute_line_sums_cpu_hours_from_threads_and_wall_time():
    spec = _specs("rsl_vs_smallloss_mnist")[0]
    frame = _frame([_record(spec, [50.0], wall=1800.0, threads=4), _record(spec, [50.0], wall=1800.0, threads=1)])
    assert questions.compute_line(frame) == "Compute: 1 h wall time on cpu over 2 runs (2.5 CPU-hours)."


def test_sections_read_the_frame_the_report_loads(tmp_path):
    """End to end through the store and the report's loader: the records on disk, read as
    bench.report reads them (accuracy under the grid's protocol), give the same answer."""
    from bench.report import load_grid_runs, with_accuracy

    records = _rsl_records(np.random.default_rng(7))
    for r in records:
        write_record(tmp_path / "results" / r["grid"] / f"{r['run_id']}.json", r)
    runs, left, damaged = load_grid_runs(tmp_path / "results", "rsl_vs_smallloss_mnist")
    assert left.empty and not damaged
    runs = with_accuracy(runs, "last")
    from_disk = questions.question_sections("rsl_vs_smallloss_mnist", runs, tmp_path / "f", figures=False)
    in_memory = questions.question_sections("rsl_vs_smallloss_mnist", _frame(records), tmp_path / "f",
                                            figures=False)
    assert _answer(from_disk) == _answer(in_memory)
    assert "Pending: nothing; all 30 runs of the grid have a record." in from_disk


OWN_PROTOCOL = {"dividemix_threshold"}   # the best epoch falls in the warm-up, before p acts


@pytest.mark.parametrize("grid", sorted(questions.QUESTIONS))
def test_every_question_reads_the_accuracy_of_its_grids_protocol_or_says_which(grid: str):
    reference = _specs(grid)[0].reference
    assert (questions.QUESTIONS[grid].protocol == reference["protocol"]) == (grid not in OWN_PROTOCOL)


def test_a_question_with_its_own_protocol_answers_under_it_and_says_so(tmp_path):
    from bench.reporting.records import with_accuracy

    records, truth = _dividemix_records(np.random.default_rng(5), slope=-0.5)
    frame = with_accuracy(_frame(records), "best")   # as the report reads the grid: its protocol best
    lines = questions.question_sections("dividemix_threshold", frame, tmp_path, figures=False)
    text = "\n".join(lines)
    assert "Accuracy in this section: protocol `last10` (mean test accuracy over the last ten epochs), " \
           "not the report's `best`." in text
    mean_last10 = truth[[s.noise_type == "asymmetric" and s.method_params["p_threshold"] == 0.5
                         for s in truth["spec"]]]["acc"].mean() - 1
    row = next(line for line in lines if line.startswith("| asymmetric 30% | 0.5 | 35000 [35000, 35000] (3) |"))
    assert f"| {mean_last10:.2f} [" in row and f"| {mean_last10 + 1:.2f} [" not in row, row
    same = questions.question_sections("noise_draw_mnist", with_accuracy(_frame(_draw_records(
        np.random.default_rng(1))), "last10"), tmp_path, figures=False)
    assert not any(line.startswith("Accuracy in this section") for line in same)
