"""The grid runner: resuming after kill -9, checkpoints, concurrent runners, retries, a worker
that dies, the dask backend, filters, dry runs, status, grid files with errors, and the locks."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import engine, locks, runner, store
from bench.__main__ import main as bench_main
from bench.config import load_grid
from bench.errors import BenchError, ConfigError
from bench.grid import session as session_module
from bench.grid.session import RunSession
from bench.grid.worker import take_device
from bench.registry import METHODS
from methods.base import EpochResult
from methods.standard import Standard

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cpu_rate_cache(tmp_path, monkeypatch) -> None:
    """Dry runs calibrate the CPU rate into a cache of the test's own."""
    monkeypatch.setenv("LNLBENCH_CACHE", str(tmp_path / "cache"))


def grid(*, epochs: int = 1, seeds: int = 2, rates=(0.2, 0.4), batch_size: int = 64,
         name: str = "g") -> dict:
    return {"name": name, "dataset": "digits", "network": "mlp",
            "train": {"epochs": epochs, "batch_size": batch_size},
            "methods": {"standard": {}},
            "noise": [{"type": "symmetric", "rate": list(rates)}], "seeds": seeds}


def options(tmp_path: Path, **kw) -> runner.RunnerOptions:
    kw.setdefault("progress", False)
    kw.setdefault("threads", 1)  # as the in-process comparison runs (see conftest)
    return runner.RunnerOptions(results=tmp_path / "results", **kw)


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    """``python -m bench ARGS`` in a subprocess (one torch thread, output to files)."""
    if args[0] == "run" and "--threads" not in args:
        # the same thread count as the in-process runs: float sums depend on it
        args = (*args, "--threads", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    log = tmp_path / f"out{len(list(tmp_path.glob('out*.txt')))}.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def output(proc: subprocess.Popen) -> str:
    return proc.log.read_text()


def run_cli(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[int, str]:
    proc = start(tmp_path, *args)
    rc = proc.wait(timeout=timeout)
    return rc, output(proc)


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


def records(folder: Path) -> dict[str, dict]:
    """run_id -> record of every record file in ``folder``."""
    out = {}
    for path in folder.glob("*.json"):
        rec = store.read_record(path)
        assert rec["run_id"] not in out
        out[rec["run_id"]] = rec
    return out


def assert_complete(tmp_path: Path, grid_path: Path) -> dict[str, dict]:
    """Every cell recorded exactly once, ok, valid; nothing partial, temporary or locked left."""
    g = load_grid(grid_path)
    folder = tmp_path / "results" / g.name
    recs = records(folder)
    assert sorted(recs) == sorted(r.run_id for r in g.runs)
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(r.filename for r in g.runs)
    for rec in recs.values():
        assert rec["status"] == "ok", rec["error"]
        assert store.validate_record(rec) == []
    leftovers = [p for p in tmp_path.rglob(".*.tmp")] + list(folder.glob(".locks/*"))
    assert leftovers == []
    return recs


# ---- resuming -----------------------------------------------------------------------------------

def test_kill_9_mid_grid_and_mid_run_then_resume(tmp_path, write_grid, capsys) -> None:
    """SIGKILL the runner once a run is recorded and the next one has checkpointed; starting
    again records every cell exactly once, and the interrupted run resumes from its checkpoint
    to the record an uninterrupted run gives."""
    path = write_grid(grid(epochs=8, seeds=3, batch_size=16))
    runs = {r.run_id: r for r in load_grid(path).runs}
    folder = tmp_path / "results" / "g"
    ckpts = tmp_path / "checkpoints" / "g"

    def interrupted() -> list[str]:
        done = {p.name for p in folder.glob("*.json")}
        return [p.stem for p in ckpts.glob("*.pt") if runs[p.stem].filename not in done] \
            if done else []

    proc = start(tmp_path, "run", str(path), "--no-progress", "--checkpoint-every", "2")
    wait_for(lambda: interrupted() or proc.poll() is not None, timeout=90, interval=0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    in_progress = interrupted()
    done_at_kill = len(list(folder.glob("*.json")))
    assert len(in_progress) == 1 and 1 <= done_at_kill < len(runs)

    # what a kill during a record's or a checkpoint's write would leave
    pending = next(r for r in runs.values() if not (folder / r.filename).exists())
    (folder / f".{pending.filename}.x1y2z3.tmp").write_text('{"run_id": ')
    (ckpts / f".{pending.run_id}.pt.99999.tmp").write_bytes(b"partial")

    assert runner.run_grid(path, options=options(tmp_path, checkpoint_every=2)) == 0
    assert f"{len(runs) - done_at_kill} to run" in capsys.readouterr().out
    recs = assert_complete(tmp_path, path)
    assert all(rec["attempts"] == 1 for rec in recs.values())
    assert list(ckpts.glob("*")) == []
    uninterrupted = engine.run(runs[in_progress[0]], device="cpu")
    assert recs[in_progress[0]]["metrics"] == uninterrupted["metrics"]


# tiny settings that make each method pass through its phases within 4 epochs
TINY_PARAMS = {
    "coteaching": {"num_gradual": 2}, "coteaching_plus": {"num_gradual": 2, "init_epoch": 1},
    "jocor": {"num_gradual": 2}, "mentornet": {"num_gradual": 2}, "decoupling": {"init_iters": 10},
    "dividemix": {"warm_up": 1}, "f_correction": {"estimation_epochs": 1},
    "rsl": {"sel_epoch": 2, "retrain_epochs": 2},
    "rsl_wm": {"sel_epoch": 2, "mixmatch_epochs": 2, "iterations": 4},
    "self_learning": {"correction_start_epoch": 1, "num_samples": 16, "num_prototypes": 2},
}


@pytest.mark.parametrize("method", METHODS.names())
def test_resumed_run_gives_the_uninterrupted_record(method, tmp_path, make_spec) -> None:
    fields = {f.name for f in dataclasses.fields(METHODS.get(method).Config)}
    params = {k: v for k, v in TINY_PARAMS.get(method, {}).items() if k in fields}
    spec = make_spec(method=method, method_params=params,
                     train={"epochs": 4, "batch_size": 128, "max_iters_per_epoch": 4})
    full = engine.run(spec, device="cpu")
    assert full["status"] == "ok", full["error"]
    assert engine.run(spec, device="cpu", checkpoint_dir=tmp_path, stop_after_epoch=1) == {}
    resumed = engine.run(spec, device="cpu", checkpoint_dir=tmp_path)
    assert resumed["status"] == "ok", resumed["error"]
    differ = sorted(k for k in full["metrics"] if full["metrics"][k] != resumed["metrics"][k])
    assert differ == [], f"{method}: metrics {differ} differ after resuming at epoch 2"


# ---- several runners -------------------------------------------------------------------------

def test_two_concurrent_runners_record_each_cell_once(tmp_path, write_grid, capsys) -> None:
    """A runner in a subprocess and one in this process, started while the first is training."""
    path = write_grid(grid(epochs=6, seeds=4, batch_size=16))
    folder = tmp_path / "results" / "g"
    proc = start(tmp_path, "run", str(path), "--no-progress")
    wait_for(lambda: list(folder.glob(".locks/*.lock")) or proc.poll() is not None, timeout=90)
    assert runner.run_grid(path, options=options(tmp_path)) == 0
    assert proc.wait(timeout=120) == 0, output(proc)
    outs = [output(proc), capsys.readouterr().out]
    assert_complete(tmp_path, path)
    # the runs each runner trained itself (not "recorded by another process"): every cell once
    trained = [[line.split()[:4] for line in out.splitlines()
                if re.search(r"\sok\s+last10=", line) and "another process" not in line]
               for out in outs]
    assert all(trained), "each runner should have trained some runs:\n" + "\n".join(outs)
    cells = [[r.label, r.dataset, r.noise_label, f"s{r.seed}"] for r in load_grid(path).runs]
    assert sorted(trained[0] + trained[1]) == sorted(cells), "\n".join(outs)


def test_a_live_lock_is_skipped_and_a_dead_one_is_taken_over(tmp_path) -> None:
    path = tmp_path / "r.lock"
    first = locks.acquire(path, locks.owner_info(runner="a", run_id="r"), stale_seconds=60)
    assert first is not None
    assert locks.acquire(path, locks.owner_info(runner="b", run_id="r"), stale_seconds=60) is None
    assert locks.lock_is_live(path, stale_seconds=60)
    assert first.heartbeat() and locks.read_lock(path)["heartbeat"] >= first.info["started"]
    first.release()
    assert not path.exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    gone = {**locks.owner_info(runner="x", run_id="r"), "pid": int(dead), "pid_start": None}
    path.write_text(json.dumps(gone))
    assert not locks.lock_is_live(path, stale_seconds=60)
    taken = locks.acquire(path, locks.owner_info(runner="b", run_id="r"), stale_seconds=60)
    assert taken is not None and locks.read_lock(path)["runner"] == "b"
    taken.release()

    elsewhere = {**locks.owner_info(runner="y", run_id="r"), "host": "another-host"}
    path.write_text(json.dumps(elsewhere))
    assert locks.lock_is_live(path, stale_seconds=60)
    assert locks.acquire(path, locks.owner_info(runner="b", run_id="r"), stale_seconds=60) is None
    path.write_text(json.dumps({**elsewhere, "heartbeat": time.time() - 120}))
    assert not locks.lock_is_live(path, stale_seconds=60)
    taken = locks.acquire(path, locks.owner_info(runner="b", run_id="r"), stale_seconds=60)
    assert taken is not None
    taken.release()


def test_cells_locked_by_another_runner_are_waited_for(tmp_path, write_grid, monkeypatch) -> None:
    monkeypatch.setattr(session_module, "POLL_SECONDS", 0.05)
    path = write_grid(grid(seeds=1, rates=(0.2,)))
    spec = load_grid(path).runs[0]
    folder = tmp_path / "results" / "g"
    other = locks.acquire(folder / ".locks" / f"{spec.run_id}.lock",
                          locks.owner_info(runner="other", run_id=spec.run_id), stale_seconds=600)
    opts = options(tmp_path)
    assert RunSession("g", [spec], dataclasses.replace(opts, wait=False)).run() == 0
    assert not (folder / spec.filename).exists()  # left to the runner holding the lock

    import threading

    def finish_elsewhere() -> None:
        time.sleep(0.3)
        record = engine.run(spec, device="cpu")
        record["attempts"] = 1
        store.write_record(folder / spec.filename, record)
        other.release()

    thread = threading.Thread(target=finish_elsewhere)
    thread.start()
    assert RunSession("g", [spec], opts).run() == 0
    thread.join()
    assert store.read_record(folder / spec.filename)["status"] == "ok"


# ---- failures --------------------------------------------------------------------------------

def fail_first_calls(monkeypatch, n: int, *, seed: int = 1) -> list:
    """Make the first ``n`` training epochs of the runs with ``seed`` raise; returns the log."""
    calls = []
    original = Standard.train_epoch

    def flaky(self, epoch) -> EpochResult:
        if self.ctx.seed == seed:
            calls.append(epoch)
            if len(calls) <= n:
                raise RuntimeError("deliberate failure")
        return original(self, epoch)

    monkeypatch.setattr(Standard, "train_epoch", flaky)
    return calls


def test_a_failed_run_is_retried_and_its_record_replaced(tmp_path, write_grid, monkeypatch,
                                                          capsys) -> None:
    path = write_grid(grid(seeds=2, rates=(0.2,)))
    folder = tmp_path / "results" / "g"
    fail_first_calls(monkeypatch, 1)
    assert runner.run_grid(path, options=options(tmp_path, retries=0)) == 1
    failed = [r for r in records(folder).values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["attempts"] == 1
    assert "deliberate failure" in failed[0]["error"]
    assert "1 failed" in capsys.readouterr().out
    # attempts used up: a second call with the same limit leaves the failed record alone
    assert runner.run_grid(path, options=options(tmp_path, retries=0)) == 1

    assert runner.run_grid(path, options=options(tmp_path, retries=1)) == 0
    recs = assert_complete(tmp_path, path)
    assert sorted(r["attempts"] for r in recs.values()) == [1, 2]


def test_retries_within_one_call(tmp_path, write_grid, monkeypatch) -> None:
    path = write_grid(grid(seeds=2, rates=(0.2,)))
    fail_first_calls(monkeypatch, 2)  # the first run fails, then fails again on its retry
    assert runner.run_grid(path, options=options(tmp_path, retries=2)) == 0
    recs = assert_complete(tmp_path, path)
    assert sorted(r["attempts"] for r in recs.values()) == [1, 3]


def test_a_configuration_error_stops_the_grid_naming_the_cell(tmp_path, write_grid,
                                                               monkeypatch, capsys) -> None:
    def unusable(self, epoch):
        raise ConfigError("this method needs an assumed noise rate here")

    monkeypatch.setattr(Standard, "train_epoch", unusable)
    path = write_grid(grid(seeds=2, rates=(0.2,)))
    assert bench_main(["run", str(path), "--results", str(tmp_path / "results"),
                       "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: standard on digits symmetric-0.2 seed 1: this method needs an "
                   "assumed noise rate here")
    assert [p for p in (tmp_path / "results" / "g").rglob("*") if p.is_file()] == []


@pytest.mark.slow  # two loky workers importing torch, then a second pool: ~35 s on 2 cores
def test_a_killed_worker_becomes_a_retried_attempt(tmp_path, write_grid) -> None:
    path = write_grid(grid(epochs=25, seeds=2, batch_size=16))
    folder = tmp_path / "results" / "g"
    proc = start(tmp_path, "run", str(path), "--no-progress", "--jobs", "2")
    lock = wait_for(lambda: next(iter(folder.glob(".locks/*.lock")), None), timeout=90)
    info = wait_for(lambda: locks.read_lock(lock), timeout=5)
    assert info["pid"] != proc.pid  # the run is in a loky worker process
    os.kill(info["pid"], signal.SIGKILL)
    assert proc.wait(timeout=180) == 0, output(proc)
    recs = assert_complete(tmp_path, path)
    assert recs[info["run_id"]]["attempts"] == 2


@pytest.mark.slow
def test_a_killed_dask_worker_is_survived(tmp_path, write_grid) -> None:
    pytest.importorskip("dask.distributed")
    path = write_grid(grid(epochs=25, seeds=2, batch_size=16))
    folder = tmp_path / "results" / "g"
    proc = start(tmp_path, "run", str(path), "--no-progress", "--jobs", "2", "--backend", "dask")
    lock = wait_for(lambda: next(iter(folder.glob(".locks/*.lock")), None), timeout=120)
    info = wait_for(lambda: locks.read_lock(lock), timeout=5)
    os.kill(info["pid"], signal.SIGKILL)
    assert proc.wait(timeout=240) == 0, output(proc)
    assert_complete(tmp_path, path)


# ---- backends --------------------------------------------------------------------------------

def test_dask_local_cluster(tmp_path, write_grid) -> None:
    pytest.importorskip("dask.distributed")
    path = write_grid(grid(epochs=2, seeds=2))
    assert runner.run_grid(path, options=options(tmp_path, backend="dask", jobs=2,
                                                 threads=1)) == 0
    recs = assert_complete(tmp_path, path)
    assert len(recs) == 4 and len({r["env"]["hostname"] for r in recs.values()}) == 1


def test_ray_missing_names_the_extra(tmp_path, write_grid) -> None:
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed")
    except ImportError:
        pass
    path = write_grid(grid(seeds=1, rates=(0.2,)))
    with pytest.raises(BenchError, match=r"pip install 'lnlbench\[ray\]'"):
        runner.run_grid(path, options=options(tmp_path, backend="ray"))


def test_gpu_pool_slots_are_round_robin(tmp_path, write_grid) -> None:
    path = write_grid(grid(seeds=1, rates=(0.2,)))
    opts = options(tmp_path, devices=("cuda:0", "cuda:1"), runs_per_device=2)
    session = RunSession("g", list(load_grid(path).runs), opts)
    assert session.device_slots == ("cuda:0", "cuda:1", "cuda:0", "cuda:1")
    assert session.jobs == 4
    tasks = [session._task(spec, i) for i, spec in enumerate(load_grid(path).runs * 3)]
    taken = [take_device(t) for t in tasks[:3]]
    assert [d for d, _ in taken] == ["cuda:0", "cuda:1", "cuda:0"]
    for _, slot in taken:
        slot.release()
    shutil.rmtree(session.slot_dir)


# ---- selection, dry run, status ----------------------------------------------------------------

def test_only_filter_dry_run_and_status(tmp_path, write_grid, capsys) -> None:
    path = write_grid(grid(seeds=2))
    results = str(tmp_path / "results")
    assert bench_main(["run", str(path), "--results", results, "--dry-run",
                       "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "4 run(s) would run" in out and not (tmp_path / "results" / "g").exists()
    assert "GPU rates assumed (training images/s per network): mlp 1,000,000" in out
    cpu = re.search(r"^estimated CPU-hours on this machine: ([0-9.e-]+), one run after another "
                    r"at 1 thread\(s\) per run", out, re.M)
    assert cpu and float(cpu.group(1)) > 0, out
    assert re.search(r"^  CPU rates \(training images/s\): mlp 1x8x8 10 classes batch 64 "
                     r"[0-9,]+ \(measured now\)$", out, re.M), out
    assert "cnn6" not in out
    assert "from finished runs: none under" in out

    assert bench_main(["run", str(path), "--results", results, "--no-progress", "--threads", "1",
                       "--checkpoints", str(tmp_path / "ck"), "--only", "noise_rate=0.4"]) == 0
    recs = records(tmp_path / "results" / "g")
    assert len(recs) == 2 and {r["noise_rate"] for r in recs.values()} == {0.4}
    capsys.readouterr()

    assert bench_main(["run", str(path), "--results", results, "--dry-run",
                       "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 run(s) would run" in out and "batch 64 " in out and "(cached)" in out
    rows = {line.split()[1]: line.split()[3:] for line in out.splitlines()
            if line.startswith("digits")}
    assert rows["symmetric-0.4"][:4] == ["2", "0", "0", "0"]
    assert rows["symmetric-0.2"] == ["0", "0", "0", "2", "2"]
    # the two runs to run cost what the two finished ones took (same method, epochs, batch)
    seconds = sorted(r["wall_seconds"] for r in recs.values())
    recorded = re.search(r"^from finished runs on this host: ([0-9.e-]+) CPU-hours for 2 of the "
                         r"2 run\(s\) to run, .*\(2 records ", out, re.M)
    assert recorded, out
    assert float(recorded.group(1)) == pytest.approx(2 * sum(seconds) / 2 / 3600, rel=2e-3)

    spec = next(r for r in load_grid(path).runs if r.noise_rate == 0.2)
    held = locks.acquire(tmp_path / "results" / "g" / ".locks" / f"{spec.run_id}.lock",
                         locks.owner_info(runner="t", run_id=spec.run_id, epochs=1),
                         stale_seconds=60)
    assert bench_main(["status", str(path), "--results", results]) == 0
    out = capsys.readouterr().out
    held.release()
    assert re.search(r"digits\s+symmetric-0\.2\s+standard\s+0\s+0\s+1\s+1", out), out
    assert re.search(r"total\s+2 cells\s+2\s+0\s+1\s+1", out), out
    assert "running: standard digits symmetric-0.2" in out
    # what is left (the pending run, not the running one), from the finished runs at any thread count
    assert "from finished runs on this host: " in out and "CPU-hours for 1 of the 1 run(s)" in out, out

    assert bench_main(["run", str(path), "--results", results, "--only", "method=nope"]) == 2
    assert "no run of grid g matches" in capsys.readouterr().err


def test_an_identical_run_recorded_by_another_grid_is_reused(tmp_path, write_grid,
                                                            capsys) -> None:
    results = str(tmp_path / "results")
    common = ["--results", results, "--no-progress", "--checkpoints", str(tmp_path / "ck")]
    main = write_grid(grid(seeds=1, rates=(0.2,), name="main"), name="main")
    ablation = write_grid(grid(seeds=1, rates=(0.2, 0.4), name="ablation"), name="ablation")
    assert bench_main(["run", str(main), *common]) == 0
    capsys.readouterr()
    assert bench_main(["run", str(ablation), "--results", results, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 pending run(s) have an identical record" in out and "1 run(s) would run" in out
    assert bench_main(["run", str(ablation), "--results", results, "--dry-run",
                       "--no-reuse"]) == 0
    assert "2 run(s) would run" in capsys.readouterr().out
    assert bench_main(["run", str(ablation), *common]) == 0
    out = capsys.readouterr().out
    assert out.count("identical run reused from grid main") == 1, out

    trained = next(iter(records(tmp_path / "results" / "main").values()))
    recs = records(tmp_path / "results" / "ablation")
    reused = recs[trained["run_id"]]
    assert reused["reused_from"] == {"grid": "main", "record": f"{trained['label']}"
                                     f"-digits-symmetric-0.2-s1-{trained['run_id']}.json"}
    assert reused["grid"] == "ablation" and reused["metrics"] == trained["metrics"]
    assert store.validate_record(reused) == []
    other = next(r for r in recs.values() if r["run_id"] != trained["run_id"])
    assert "reused_from" not in other and other["noise_rate"] == 0.4

    # --no-reuse trains it: the same configuration gives the same numbers
    shutil.rmtree(tmp_path / "results" / "ablation")
    assert bench_main(["run", str(ablation), *common, "--no-reuse", "--only",
                       "noise_rate=0.2"]) == 0
    assert "reused" not in capsys.readouterr().out
    fresh = records(tmp_path / "results" / "ablation")[trained["run_id"]]
    assert "reused_from" not in fresh
    assert fresh["metrics"]["test_acc"] == trained["metrics"]["test_acc"]


def test_records_of_runs_no_longer_in_the_grid_are_named(tmp_path, write_grid, capsys) -> None:
    results = str(tmp_path / "results")
    common = ["--results", results, "--no-progress", "--checkpoints", str(tmp_path / "ck")]
    path = write_grid(grid(seeds=1, rates=(0.2,)))
    assert bench_main(["run", str(path), *common]) == 0
    assert "warning" not in capsys.readouterr().out
    # a changed setting: the old record's run no longer exists
    path = write_grid(grid(seeds=1, rates=(0.2,), batch_size=32))
    assert bench_main(["run", str(path), *common, "--only", "seed=1"]) == 0
    out = capsys.readouterr().out
    assert "warning: 1 record(s)" in out and "belong to no run of this grid" in out


# ---- grid files with errors --------------------------------------------------------------------

def test_malformed_yaml_reports_its_line_with_status_2(tmp_path, write_grid) -> None:
    path = write_grid("name: g\nmethods:\n  standard: {}\nnoise: [{type: symmetric, rate: 0.2}\n"
                      "seeds: 2\n")
    rc, out = run_cli(tmp_path, "run", str(path))
    assert rc == 2
    assert re.search(r"g\.yaml:\d+: malformed YAML", out), out
    assert "Traceback" not in out


@pytest.mark.parametrize("text, line, message", [
    ("name: g\nmethods:\n  standard: {}\n  no_such_method: {}\nnoise: {type: symmetric, "
     "rate: 0.2}\n", 4, "unknown method 'no_such_method'"),
    ("name: g\nmethods:\n  standard: {}\nnoise:\n  - type: symmetric\n    rate: 1.5\n",
     6, "noise rate 1.5"),
])
def test_grid_errors_name_the_line(text, line, message, tmp_path, write_grid, capsys) -> None:
    path = write_grid(text)
    assert bench_main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"g.yaml:{line}:" in err and message in err, err


def test_download_fetches_each_dataset_once_before_running(monkeypatch, tmp_path) -> None:
    """--download asks every dataset of the selected runs for its files once, in the runner."""
    import bench.data
    from bench.config import load_grid

    calls = []
    monkeypatch.setattr(bench.data, "load_dataset",
                        lambda name, *, root=None, download=False, verify=True:
                        calls.append((name, root, download)))
    runs = list(load_grid(Path(__file__).resolve().parents[1] / "bench/grids/jocor_mnist.yaml").runs)
    runner.download_datasets(runs, data_root=str(tmp_path))
    assert calls == [("mnist", str(tmp_path), True)]


def test_progress_shows_the_epoch_of_each_running_run(tmp_path, write_grid) -> None:
    """A run's epoch reaches its lock at once (not with the next heartbeat) and the bar's
    tail names it."""
    path = write_grid(grid(epochs=20))
    runs = load_grid(path).runs
    session = RunSession("g", runs, options(tmp_path))
    spec = runs[0]
    info = locks.owner_info(runner=session.token, run_id=spec.run_id, epochs=20)
    lock = locks.acquire(session.state.lock_path(spec), info, stale_seconds=60)
    try:
        assert session.postfix() == f"failed=0; standard {spec.noise_label} s1 starting"
        lock.set_progress(epoch=3)
        assert locks.read_lock(lock.path)["epoch"] == 3
        assert session.postfix() == f"failed=0; standard {spec.noise_label} s1 3/20"
        lock.set_progress(epoch=4)  # within a second of the last write: with the next one
        assert locks.read_lock(lock.path)["epoch"] == 3
    finally:
        lock.release()
    assert session.postfix() == "failed=0"


def test_the_demo_trains_every_registered_method() -> None:
    demo = load_grid(REPO / "bench" / "grids" / "demo.yaml")
    assert sorted({r.method for r in demo.runs}) == sorted(METHODS.names())


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_clean_demo_removes_what_the_demo_wrote_and_nothing_else(tmp_path) -> None:
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    demo = ["results/demo/a.json", "results/demo/.locks/b.lock", "checkpoints/demo/c.pt",
            "reports/demo/d.png", "reports/demo.md"]
    others = ["results/jocor_mnist/e.json", "checkpoints/jocor_mnist/f.pt",
              "reports/jocor_mnist.md", "reports/demo_extra.md", "reports/perf.json"]
    for name in demo + others:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    done = subprocess.run(["make", "-s", "clean-demo"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert [n for n in demo if (tmp_path / n).exists()] == []
    assert [n for n in others if not (tmp_path / n).exists()] == []
    assert not (tmp_path / "results" / "demo").exists()
