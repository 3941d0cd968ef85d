"""Faults a cluster user meets: SIGTERM and SIGHUP, damaged and unwritable checkpoints, damaged
or foreign records, invalid options and the failure paths that must end with one line.

Each case asserts the one-line message, the exit code, and that no record is lost or
duplicated (a record is compared with the one an uninterrupted run writes)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench import locks, report, runner, store
from bench.__main__ import main as bench_main
from bench.config import load_grid

REPO = Path(__file__).resolve().parents[1]
# what differs between two runs of one configuration: timings and the machine's description
VOLATILE = {"wall_seconds", "started_at", "finished_at", "env", "attempts", "warnings"}


def grid(*, epochs: int = 3, batch_size: int = 64, seeds: int = 1) -> dict:
    return {"name": "g", "dataset": "digits", "network": "mlp",
            "train": {"epochs": epochs, "batch_size": batch_size},
            "methods": {"standard": {}},
            "noise": [{"type": "symmetric", "rate": [0.2, 0.4]}], "seeds": seeds}


def write(tmp_path: Path, g: dict) -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(g, sort_keys=False))
    return path


def options(root: Path, **kw) -> runner.RunnerOptions:
    kw.setdefault("progress", False)
    kw.setdefault("threads", 1)
    return runner.RunnerOptions(results=root / "results", **kw)


def stable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def records(folder: Path) -> dict[str, dict]:
    """run_id -> record of each record file; fails on a run recorded twice."""
    out: dict[str, dict] = {}
    for path in folder.glob("*.json"):
        rec = store.read_record(path)
        assert rec["run_id"] not in out, f"{rec['run_id']} recorded twice"
        out[rec["run_id"]] = rec
    return out


def assert_same_records(folder: Path, reference: dict[str, dict]) -> None:
    """Every run recorded once, ok, identical (timings aside) to the uninterrupted records."""
    got = records(folder)
    assert sorted(got) == sorted(reference)
    for run_id, rec in got.items():
        assert rec["status"] == "ok", rec["error"]
        assert stable(rec) == stable(reference[run_id])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``uninterrupted(grid) -> {run_id: record}`` of the grid run once without a fault
    (in this process, one thread; computed once per grid)."""
    cache: dict[str, dict[str, dict]] = {}

    def run(g: dict) -> dict[str, dict]:
        key = json.dumps(g, sort_keys=True)
        if key not in cache:
            root = tmp_path_factory.mktemp("reference")
            assert runner.run_grid(write(root, g), options=options(root)) == 0
            cache[key] = records(root / "results" / "g")
        return cache[key]

    return run


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``python -m bench ARGV`` in this process: (exit code, stdout, stderr)."""
    try:
        rc = bench_main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---- signals ------------------------------------------------------------------------------------

def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [
    signal.SIGTERM,
    # the same path; a second runner with two workers is ~30 s more on a loaded 2-core machine
    pytest.param(signal.SIGHUP, marks=pytest.mark.slow),
    pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stop_signal_ends_the_runner_and_its_workers_and_the_grid_resumes(
        signum, tmp_path, uninterrupted) -> None:
    """The signal reaches the runner alone (as docker and `kill PID` send it): its loky workers
    and resource tracker are ended, no lock is left, the in-flight checkpoints stay, one line
    says what stopped, exit 143 (130 for Ctrl-C); a second run completes the grid with the
    records of an uninterrupted run."""
    g = grid(epochs=12, batch_size=16)
    reference = uninterrupted(g)
    path = write(tmp_path, g)
    ckpts = tmp_path / "checkpoints" / "g"
    proc = _start(tmp_path, "run", str(path), "--jobs", "2", "--threads", "1", "--device",
                  "cpu", "--checkpoint-every", "1", "--no-progress")
    _wait_for(lambda: any(ckpts.glob("*.pt")) or proc.poll() is not None, timeout=90)
    tree = locks.descendants(proc.pid)
    starts = {pid: locks.process_start_time(pid) for pid in tree}
    assert tree and proc.poll() is None
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), err
    last = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert re.fullmatch(rf"interrupted by {name}: [12] run\(s\) in progress stopped \(checkpoints "
                        rf"kept in {re.escape(str(ckpts))}\); [01] of 2 runs recorded; run the "
                        r"same command again to resume", last), last
    assert "Traceback" not in err
    assert [pid for pid in tree if locks.pid_alive(pid, starts[pid])] == []
    assert list((tmp_path / "results" / "g" / ".locks").glob("*")) == []
    assert any(ckpts.glob("*.pt"))
    assert runner.run_grid(path, options=options(tmp_path)) == 0
    assert_same_records(tmp_path / "results" / "g", reference)
    assert list(ckpts.glob("*.pt*")) == []


# ---- checkpoints --------------------------------------------------------------------------------

def _checkpointed(tmp_path: Path, g: dict, *, stop_after: int) -> tuple[Path, runner.RunSpec]:
    """Checkpoints of the grid's first run stopped after epoch ``stop_after`` (every epoch)."""
    from bench import engine

    tmp_path.mkdir(exist_ok=True)
    spec = load_grid(write(tmp_path, g)).runs[0]
    ckpts = tmp_path / "checkpoints" / "g"
    assert engine.run(spec, device="cpu", checkpoint_dir=ckpts, checkpoint_every=1,
                      stop_after_epoch=stop_after) == {}
    return ckpts / f"{spec.run_id}.pt", spec


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.parametrize("keep_previous", [False, True], ids=["from-scratch", "from-previous"])
def test_a_truncated_checkpoint_is_named_moved_aside_and_the_run_restarts(
        keep_previous, tmp_path, capsys, uninterrupted) -> None:
    g = grid(epochs=4)
    reference = uninterrupted(g)
    ckpt, spec = _checkpointed(tmp_path, g, stop_after=1)
    previous = ckpt.with_name(ckpt.name + ".prev")
    assert previous.is_file()  # epoch 1's checkpoint, kept when epoch 2's was written
    if not keep_previous:
        previous.unlink()
    _truncate(ckpt)
    damaged = ckpt.read_bytes()
    capsys.readouterr()

    rc, out, err = cli(["run", str(tmp_path / "g.yaml"), "--results",
                        str(tmp_path / "results"), "--threads", "1", "--no-progress",
                        "--retries", "0"], capsys)
    assert rc == 0, out + err
    warning = f"checkpoint {ckpt} cannot be read (PytorchStreamReader failed reading zip archive"
    assert f"  warning: {warning}" in out and "moved to" in out and "Traceback" not in out + err
    aside = list(ckpt.parent.glob(f"{ckpt.name}.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged
    assert_same_records(tmp_path / "results" / "g", reference)
    rec = records(tmp_path / "results" / "g")[spec.run_id]
    assert rec["attempts"] == 1 and any(warning in w for w in rec["warnings"])
    assert not ckpt.exists() and not previous.exists()


def test_another_runs_checkpoint_is_moved_aside_and_the_run_starts_afresh(
        tmp_path, capsys, uninterrupted) -> None:
    """A one-network run's checkpoint under a Co-teaching run's name (a copied folder, a
    renamed file): it is never loaded into the wrong method."""
    g = {**grid(epochs=3), "methods": {"coteaching": {"num_gradual": 2}}}
    reference = uninterrupted(g)
    foreign, other = _checkpointed(tmp_path / "other", grid(epochs=3), stop_after=0)
    target = load_grid(write(tmp_path, g)).runs[0]
    ckpt = tmp_path / "checkpoints" / "g" / f"{target.run_id}.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(foreign.read_bytes())
    assert runner.run_grid(tmp_path / "g.yaml", options=options(tmp_path, retries=0)) == 0
    out = capsys.readouterr().out
    assert (f"  warning: checkpoint {ckpt} cannot be read (it is run {other.run_id}'s); moved to "
            f"{ckpt.name}.damaged-") in out
    assert_same_records(tmp_path / "results" / "g", reference)
    assert records(tmp_path / "results" / "g")[target.run_id]["attempts"] == 1


def test_a_checkpoint_the_method_refuses_fails_one_attempt_and_the_retry_starts_afresh(
        tmp_path, capsys, uninterrupted) -> None:
    """The run's own checkpoint with a weight of another shape: loading may have changed part
    of the state, so the attempt fails naming the file (moved aside); the retry starts afresh
    and ends with the uninterrupted record."""
    import torch

    g = grid(epochs=3)
    reference = uninterrupted(g)
    ckpt, spec = _checkpointed(tmp_path, g, stop_after=0)
    state = torch.load(ckpt, weights_only=True)
    net = state["method"]["net1"]
    first = next(iter(net))
    net[first] = torch.zeros(3, 3)
    torch.save(state, ckpt)
    assert runner.run_grid(tmp_path / "g.yaml", options=options(tmp_path, retries=1)) == 0
    out = capsys.readouterr().out
    # the run line keeps the error's first 160 characters
    line = f"attempt 1/2, will retry: RuntimeError: checkpoint {ckpt} does not fit this run, "
    assert line[:140] in out, out
    assert len(list(ckpt.parent.glob(f"{ckpt.name}.damaged-*"))) == 1
    assert_same_records(tmp_path / "results" / "g", reference)
    assert records(tmp_path / "results" / "g")[spec.run_id]["attempts"] == 2


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs, filled but for a few KiB (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        (mount / "filler").write_bytes(b"x" * 56 * 1024)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_checkpoint_disk_is_a_warning_and_the_runs_go_on(tmp_path, tiny_disk, capsys,
                                                                 uninterrupted) -> None:
    g = grid(epochs=3)
    reference = uninterrupted(g)
    ckpts = tiny_disk / "ck"
    rc = runner.run_grid(write(tmp_path, g),
                         options=options(tmp_path, checkpoints=ckpts, checkpoint_every=1))
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert re.search(rf"^  warning: cannot write checkpoint {re.escape(str(ckpts))}/[0-9a-f]{{16}}"
                     r"\.pt \(.*\); the run goes on without it$", out, re.M), out
    assert out.count("warning: cannot write checkpoint") == 2  # once for each run
    assert_same_records(tmp_path / "results" / "g", reference)
    for rec in records(tmp_path / "results" / "g").values():
        assert rec["attempts"] == 1
        assert len(rec["warnings"]) == 1 and "cannot write checkpoint" in rec["warnings"][0]
    assert [p.name for p in ckpts.rglob("*")] == []  # no partial file left behind


# ---- records ------------------------------------------------------------------------------------

DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "list": lambda text: "[1, 2, 3]\n",
    "foreign": lambda text: json.dumps({"hello": "world"}),
}
REASONS = {"truncated": "not valid JSON", "list": "a JSON list, not a record object",
           "foreign": "not a valid record: missing key 'schema_version'"}


def test_damaged_and_foreign_records_are_named_left_out_and_trained_again(tmp_path,
                                                                         capsys) -> None:
    g = grid(epochs=2, seeds=2)
    path = write(tmp_path, g)
    folder = tmp_path / "results" / "g"
    assert runner.run_grid(path, options=options(tmp_path)) == 0
    reference = records(folder)
    files = sorted(folder.glob("*.json"))
    damaged = dict(zip(DAMAGE, files))
    for kind, file in damaged.items():
        file.write_text(DAMAGE[kind](file.read_text()))
    capsys.readouterr()

    rc, out, err = cli(["status", str(path), "--results", str(tmp_path / "results")], capsys)
    assert rc == 0 and err == ""
    assert "left out: 3 damaged record(s), counted as pending" in out
    for kind, file in damaged.items():
        assert re.search(rf"^  {re.escape(str(file))}: {re.escape(REASONS[kind])}", out, re.M)
    assert re.search(r"^total .* 1 +0 +0 +3$", out, re.M)

    runs = report.load_runs(tmp_path / "results", "g")
    assert len(runs) == 1
    assert {Path(p).name: r.split(" (")[0] for p, r in runs.attrs["left_out"]} == {
        damaged[k].name: REASONS[k].split(" (")[0] for k in DAMAGE}
    capsys.readouterr()

    contents = {k: f.read_text() for k, f in damaged.items()}
    rc, out, err = cli(["run", str(path), "--results", str(tmp_path / "results"),
                        "--threads", "1", "--no-progress"], capsys)
    assert rc == 0 and "Traceback" not in out + err
    for kind, file in damaged.items():
        assert f"warning: damaged record {file}" in out
        aside = list(folder.glob(f"{file.name}.damaged-*"))
        assert len(aside) == 1 and aside[0].read_text() == contents[kind]
    assert "3 to run, 1 already recorded" in out
    assert_same_records(folder, reference)


def test_a_report_of_damaged_records_only_names_one(tmp_path, capsys) -> None:
    folder = tmp_path / "results" / "g"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text("[]")
    assert report.main(["--results", str(tmp_path / "results"), "--out",
                        str(tmp_path / "reports"), "--n-boot", "200"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == (f"error: no successful runs in {folder} (1 damaged record(s) left out, e.g. "
                    f"{folder / 'a.json'}: a JSON list, not a record object)")


# ---- options and failure paths ------------------------------------------------------------------

BAD_OPTIONS = [
    (["--stale-lock-minutes", "0"], "argument --stale-lock-minutes: a number >= 1 expected"),
    (["--jobs", "0"], "argument --jobs/-j: an integer >= 1 expected, got '0'"),
    (["--retries", "-1"], "argument --retries: an integer >= 0 expected, got '-1'"),
    (["--checkpoint-every", "0"], "argument --checkpoint-every: an integer >= 1 expected"),
    (["--threads", "x"], "argument --threads: an integer >= 1 expected, got 'x'"),
    (["--scheduler", "tcp://h:1"], "error: --scheduler needs --backend dask or ray"),
    (["--backend", "dask", "--scheduler", "nowhere"],
     "error: --scheduler takes an address such as tcp://host:8786, got 'nowhere'"),
    (["--devices", "gpu0"], "error: --devices takes names such as cuda:0,cuda:1, got 'gpu0'"),
    (["--only", "method"], "error: --only takes KEY=VALUE filters, got 'method'"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[a[0] for a, _ in BAD_OPTIONS])
def test_a_bad_option_is_one_line_with_exit_2(args, message, tmp_path, capsys) -> None:
    path = write(tmp_path, grid())
    rc, out, err = cli(["run", str(path), "--results", str(tmp_path / "results"), *args],
                       capsys)
    assert rc == 2
    assert message in one_line(err)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args,message", [
    (["--margin", "-1"], "argument --margin: a number > 0 expected, got '-1'"),
    (["--n-boot", "0"], "argument --n-boot: an integer >= 100 expected, got '0'"),
])
def test_a_bad_report_option_is_one_line_with_exit_2(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        report.main(args)
    assert exc.value.code == 2
    assert message in one_line(capsys.readouterr().err)


def test_only_before_the_grid_file_is_understood(tmp_path, capsys) -> None:
    path = write(tmp_path, grid())
    rc, out, err = cli(["status", "--results", str(tmp_path / "results"), "--only",
                        "noise_rate=0.2", str(path)], capsys)
    assert rc == 0 and err == ""
    assert "grid g (" in out and ": 1 runs" in out
    for only in (["noise_rate=0.2"], ["method"]):
        rc, out, err = cli(["status", "--only", *only], capsys)
        assert rc == 2 and "a grid file is required" in one_line(err)


def test_unwritable_results_and_report_folders_are_one_line(tmp_path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = write(tmp_path, grid())
    rc, out, err = cli(["run", str(path), "--results", str(blocker / "results"), "--threads",
                        "1", "--no-progress"], capsys)
    assert rc == 2
    assert one_line(err) == f"error: cannot write records to {blocker / 'results' / 'g'}: " \
                            "Not a directory"
    results = tmp_path / "results"
    assert runner.run_grid(path, options=options(tmp_path)) == 0
    capsys.readouterr()
    assert report.main(["--results", str(results), "--out", str(blocker / "reports"),
                        "--n-boot", "200", "--no-figures"]) == 2
    assert one_line(capsys.readouterr().err).startswith("error: cannot write the report: Not a "
                                                        "directory")
    assert len(records(results / "g")) == 2


def test_an_unreachable_dask_scheduler_is_one_line(tmp_path, capsys) -> None:
    pytest.importorskip("dask.distributed")
    import dask

    path = write(tmp_path, grid())
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        rc, out, err = cli(["run", str(path), "--results", str(tmp_path / "results"),
                            "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9",
                            "--no-progress", "--threads", "1"], capsys)
    assert rc == 2
    assert one_line(err).startswith("error: cannot reach the dask scheduler at tcp://127.0.0.1:9")
    assert list((tmp_path / "results" / "g").glob("*.json")) == []


def test_a_failed_download_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """torchvision cannot download (no network here, or simulated): one line naming the
    dataset and where to put its files."""
    import urllib.error

    from bench import data

    def offline(name, **_kw):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data, "load_dataset", offline)
    g = {**grid(), "dataset": "mnist", "network": "lenet"}
    rc, out, err = cli(["run", str(write(tmp_path, g)), "--download", "--results",
                        str(tmp_path / "results")], capsys)
    assert rc == 2
    assert one_line(err) == ("error: cannot download mnist: URLError: <urlopen error [Errno -3] "
                             "Temporary failure in name resolution>; without network, put its "
                             "files under the data root (docs/datasets.md)")


def test_status_into_a_closed_pipe_is_quiet(tmp_path) -> None:
    path = write(tmp_path, grid(seeds=20))
    proc = _start(tmp_path, "status", str(path))
    proc.stdout.close()  # as `| head` does once it has its lines
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert err == ""
