"""bench.atomic: the target holds its old content or its new one, and no temporary file is left
by a write that fails."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import atomic, locks, store
from bench.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_each_writer_replaces_the_target(tmp_path) -> None:
    target = tmp_path / "t.bin"
    assert atomic_write_bytes(target, b"\x00old") == target
    assert target.read_bytes() == b"\x00old"
    atomic_write_text(target, "néw")
    assert target.read_text(encoding="utf-8") == "néw"
    atomic_write_json(target, {"a": [1, 2]}, indent=1)
    assert json.loads(target.read_text()) == {"a": [1, 2]}
    assert _entries(tmp_path) == ["t.bin"]


def test_the_file_gets_the_mode_of_a_plain_open(tmp_path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic", "x")
    assert stat.S_IMODE((tmp_path / "atomic").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.parametrize("exists", [False, True], ids=["new", "existing"])
def test_a_writer_that_fails_half_way_leaves_the_old_content_and_no_temporary_file(
        tmp_path, exists) -> None:
    target = tmp_path / "t.json"
    if exists:
        target.write_text("old")

    def half(fh) -> None:
        fh.write(b'{"run_id": ')
        fh.flush()
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, half)
    assert _entries(tmp_path) == (["t.json"] if exists else [])
    if exists:
        assert target.read_text() == "old"


def test_the_previous_content_is_kept_where_asked(tmp_path) -> None:
    target, previous = tmp_path / "c.pt", tmp_path / "c.pt.prev"
    atomic_write_bytes(target, b"1")
    atomic_write(target, lambda fh: fh.write(b"2"), previous=previous)
    assert (target.read_bytes(), previous.read_bytes()) == (b"2", b"1")
    atomic_write(target, lambda fh: fh.write(b"3"), previous=previous)
    assert (target.read_bytes(), previous.read_bytes()) == (b"3", b"2")

    def fail(fh) -> None:
        fh.write(b"4")
        raise RuntimeError("PytorchStreamWriter failed writing file")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail, previous=previous)
    assert (target.read_bytes(), previous.read_bytes()) == (b"3", b"2")
    assert _entries(tmp_path) == ["c.pt", "c.pt.prev"]


def test_a_target_that_did_not_exist_leaves_no_previous(tmp_path) -> None:
    atomic_write_text(tmp_path / "t", "new")  # no previous asked
    atomic_write(tmp_path / "u", lambda fh: fh.write(b"new"), previous=tmp_path / "u.prev")
    assert _entries(tmp_path) == ["t", "u"]


def test_a_failed_rename_leaves_the_old_content_and_no_temporary_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "t"
    target.write_text("old")

    def refuse(src, dst) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(PermissionError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and _entries(tmp_path) == ["t"]


def test_an_object_json_cannot_hold_touches_nothing(tmp_path) -> None:
    target = tmp_path / "t.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert target.read_text() == "old" and _entries(tmp_path) == ["t.json"]


def test_the_file_then_the_folder_are_fsynced_around_the_rename(tmp_path, monkeypatch) -> None:
    target = tmp_path / "t"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic_write_text(target, "new")
    assert events == ["fsync file", "replace", "fsync dir"]


def test_a_process_killed_while_writing_leaves_the_old_content(tmp_path) -> None:
    """SIGKILL in the middle of a write: the target is untouched, and what is left is a
    ``.<name>.*.tmp`` file, the pattern the runner sweeps."""
    target = tmp_path / "t.json"
    target.write_text("old")
    ready = tmp_path / "ready"
    code = (f"import time; from pathlib import Path; from bench.atomic import atomic_write\n"
            f"def slow(fh):\n"
            f"    fh.write(b'partial'); fh.flush(); Path({str(ready)!r}).touch(); time.sleep(60)\n"
            f"atomic_write({str(target)!r}, slow)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), "the writer never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.glob(".t.json.*.tmp")] != []


def test_records_and_locks_are_written_through_it(tmp_path, monkeypatch) -> None:
    written: list[str] = []
    real = atomic.atomic_write_text

    def spy(path, text, **kwargs):
        written.append(Path(path).name)
        return real(path, text, **kwargs)

    monkeypatch.setattr(atomic, "atomic_write_text", spy)
    monkeypatch.setattr(store, "atomic_write_text", spy)
    store.write_record(tmp_path / "r.json", {"run_id": "x"})
    lock = locks.acquire(tmp_path / "x.lock", locks.owner_info(runner="r", run_id="x"),
                         stale_seconds=60)
    assert lock is not None
    assert lock.heartbeat()
    lock.release()
    assert written == ["r.json", "x.lock", "x.lock"]
