"""Run records on disk: one JSON file per run, written atomically; read back into pandas."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from bench.atomic import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd


SCHEMA_VERSION = 1

REQUIRED_KEYS = (
    "schema_version", "run_id", "grid", "label", "method", "method_params", "dataset", "network",
    "noise_type", "noise_rate", "noise_variant", "noise_seed", "seed", "epochs", "train",
    "reference", "realised_noise_rate", "transition_matrix", "metrics", "test_acc_last",
    "test_acc_best", "test_acc_last10", "wall_seconds", "device", "env", "status", "error",
)


def _clean(value: Any) -> Any:
    """JSON has no NaN: write non-finite floats as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_record(path: str | Path, record: dict) -> Path:
    """Write ``record`` to ``path`` atomically (:mod:`bench.atomic`).

    A reader (or a runner killed at any moment) sees either no file or the whole record; a
    record that JSON cannot hold raises before anything is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_clean(record), indent=1, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def move_aside(path: str | Path) -> Path:
    """Rename a damaged file to ``<name>.damaged-<UTC time>`` beside it (kept for a look,
    ignored by every reader); returns the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.replace(path, target)
    return target


def read_record(path: str | Path) -> dict:
    with open(path) as fh:
        return json.load(fh)


class DamagedRecord(ValueError):
    """A record file that cannot be used: unreadable, not JSON, or not a run record."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def read_valid_record(path: str | Path) -> dict:
    """The record at ``path``; :class:`DamagedRecord` (with the reason) when the file is not
    JSON, not an object, or not a valid record (:func:`validate_record`). FileNotFoundError
    when there is no file."""
    try:
        record = read_record(path)
    except FileNotFoundError:
        raise
    except UnicodeDecodeError:
        raise DamagedRecord(path, "not a text file") from None
    except ValueError as exc:
        raise DamagedRecord(path, f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise DamagedRecord(path, f"cannot be read ({exc.strerror or exc})") from None
    if not isinstance(record, dict):
        raise DamagedRecord(path, f"a JSON {type(record).__name__}, not a record object")
    try:
        problems = validate_record(record)
    except (TypeError, AttributeError, KeyError) as exc:
        problems = [f"malformed field ({type(exc).__name__}: {exc})"]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DamagedRecord(path, f"not a valid record: {problems[0]}{more}")
    return record


def scan_records(results_dir: str | Path, grid: str | None = None
                 ) -> tuple[list[tuple[Path, dict]], list[tuple[Path, str]]]:
    """(path, record) of every valid record under ``results_dir`` (one grid or all), and
    (path, reason) of every file left out because it is damaged or not a run record."""
    good, problems = [], []
    for path in iter_record_paths(results_dir, grid):
        try:
            good.append((path, read_valid_record(path)))
        except FileNotFoundError:  # removed (moved aside) while scanning
            continue
        except DamagedRecord as exc:
            problems.append((path, exc.reason))
    return good, problems


def validate_record(record: dict) -> list[str]:
    """Problems with a record's schema (an empty list when it is valid)."""
    problems = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in record]
    if problems:
        return problems
    if record["status"] not in ("ok", "failed"):
        problems.append(f"status {record['status']!r} is neither ok nor failed")
    if record["status"] == "ok":
        m = record["metrics"]
        n = len(m.get("epoch", []))
        if n == 0:
            problems.append("an ok record has no epochs")
        for key in ("test_acc", "train_loss", "selected_count", "label_precision",
                    "label_recall", "selected_per_class"):
            if len(m.get(key, [])) != n:
                problems.append(f"metrics.{key} has {len(m.get(key, []))} entries, not {n}")
        for name, series in {**m.get("test_acc_networks", {}), **m.get("extra", {})}.items():
            if len(series) != n:
                problems.append(f"metrics series {name!r} has {len(series)} entries, not {n}")
        for key in ("test_acc_last", "test_acc_best", "test_acc_last10"):
            v = record[key]
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 100.0:
                problems.append(f"{key} = {v!r} is not a percentage")
    elif not record.get("error"):
        problems.append("a failed record has no error text")
    return problems


def iter_record_paths(results_dir: str | Path, grid: str | None = None) -> Iterable[Path]:
    root = Path(results_dir)
    folders = [root / grid] if grid else sorted(p for p in root.glob("*") if p.is_dir())
    for folder in folders:
        yield from sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def load_records(results_dir: str | Path, grid: str | None = None, *,
                 include_failed: bool = False) -> pd.DataFrame:
    """All records under ``results_dir`` (one grid or all) as a DataFrame, one row per run.

    Scalar keys become columns; ``metrics``, ``method_params``, ``train``, ``reference`` and
    ``env`` stay as dict columns; ``paper`` and ``protocol`` are lifted out of ``reference``.
    Files that are damaged or not run records are left out, never raised:
    ``frame.attrs["left_out"]`` lists them as ``(path, reason)`` string pairs.
    """
    import pandas as pd

    rows = []
    good, problems = scan_records(results_dir, grid)
    for path, rec in good:
        if rec.get("status") != "ok" and not include_failed:
            continue
        rec = dict(rec)
        rec["path"] = str(path)
        ref = rec.get("reference") or {}
        rec["paper"] = ref.get("paper")
        rec["protocol"] = ref.get("protocol")
        rows.append(rec)
    frame = pd.DataFrame(rows)
    frame.attrs["left_out"] = [(str(path), reason) for path, reason in problems]
    return frame
