"""CPU-hours of runs to come from finished records: which records count, and the median."""

from __future__ import annotations

import copy
import json

import pytest

from bench.config import expand_grid
from bench.recorded_cost import (cost_key, estimate_from_records, record_cost_key,
                                 recorded_seconds, scan_recorded_seconds)
from bench.run_record import new_record


def specs(**train):
    grid = {"name": "g", "dataset": "digits", "network": "mlp",
            "train": {"epochs": 3, "batch_size": 32, **train},
            "methods": {"standard": {}, "coteaching": {}},
            "noise": [{"type": "symmetric", "rate": 0.4}], "seeds": 3}
    return expand_grid(grid).runs


def finished(spec, seconds: float, *, host: str = "h", threads: int = 1, **changes) -> dict:
    import torch

    rec = new_record(spec, torch.device("cpu"), compile=False)
    rec.update(status="ok", wall_seconds=seconds)
    rec["env"].update(hostname=host, cpu_threads=threads)
    rec.update(changes)
    return rec


def test_a_record_has_the_cost_key_of_its_spec() -> None:
    for spec in specs():
        rec = json.loads(json.dumps(finished(spec, 1.0)))   # as read back from disk
        assert record_cost_key(rec) == cost_key(spec)
    a, b = specs(), specs(epochs=4)
    assert cost_key(a[0]) != cost_key(b[0])
    assert record_cost_key({"method": "standard"}) is None


def test_only_finished_cpu_runs_of_this_host_and_thread_count_count() -> None:
    spec = next(s for s in specs() if s.method == "standard")
    good = finished(spec, 10.0)
    others = [finished(spec, 99.0, host="elsewhere"), finished(spec, 99.0, threads=2),
              finished(spec, 99.0, status="failed"), finished(spec, 99.0, device="cuda:0"),
              finished(spec, 99.0, reused_from={"grid": "x"}), finished(spec, 0.0),
              finished(spec, 99.0, fused={"run_ids": []})]
    for other in others:
        other["run_id"] += "-other"
    dup = copy.deepcopy(good)
    dup["wall_seconds"] = 99.0   # the same run_id again counts once
    got = recorded_seconds([good, dup, *others], host="h", threads=1)
    assert got == {cost_key(spec): [10.0]}


def test_each_run_takes_the_median_of_its_twins_and_uncovered_runs_are_counted_apart() -> None:
    runs = specs()
    std = [s for s in runs if s.method == "standard"]
    cot = [s for s in runs if s.method == "coteaching"]
    seconds = {cost_key(std[0]): [100.0, 300.0, 1000.0]}
    est = estimate_from_records(runs, seconds, threads=1)
    assert est["covered"] == len(std) == 3 and est["uncovered"] == len(cot) == 3
    assert est["cpu_hours"] == pytest.approx(3 * 300.0 / 3600)
    assert est["by_method"] == {"standard": pytest.approx(3 * 300.0 / 3600)}
    assert est["records"] == 3
    two = estimate_from_records(std, seconds, threads=2)   # CPU-hours: wall x threads
    assert two["cpu_hours"] == pytest.approx(2 * est["cpu_hours"])


def test_scan_reads_every_grid_folder_and_skips_unreadable_files(tmp_path) -> None:
    spec = specs()[0]
    for grid, seconds in (("a", 5.0), ("b", 7.0)):
        folder = tmp_path / grid
        folder.mkdir()
        rec = finished(spec, seconds)
        rec["run_id"] += grid
        (folder / f"{grid}.json").write_text(json.dumps(rec))
    (tmp_path / "a" / "broken.json").write_text("{not json")
    got = scan_recorded_seconds(tmp_path, threads=1, host="h")
    assert sorted(got[cost_key(spec)]) == [5.0, 7.0]


def test_at_any_thread_count_the_twins_count_in_cpu_seconds() -> None:
    spec = specs()[0]
    one, two = finished(spec, 10.0, threads=1), finished(spec, 10.0, threads=2)
    two["run_id"] += "-2"
    got = recorded_seconds([one, two], host="h", threads=None)
    assert sorted(got[cost_key(spec)]) == [10.0, 20.0]
    est = estimate_from_records([spec], got, threads=None)
    assert est["cpu_hours"] == pytest.approx(15.0 / 3600)
