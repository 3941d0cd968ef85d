"""A run's record: built before the run starts, extended each epoch, completed at its end.

:func:`new_record` is the record of a run about to start (its configuration, ``status:
running``, the environment it runs in); :func:`record_epoch` evaluates an epoch's networks and
appends the epoch to the record's ``metrics`` (test accuracies, training loss, the selection
scored against the clean labels, the selection curve, the clean validation accuracy);
:func:`finish_record` completes the record of a run that trained every epoch and
:func:`failed_record` is the record of one that died before it could write its own. The
schema is in ``docs/record-schema.md``.
"""

from __future__ import annotations

import platform
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import selection, store
from bench.config import RunSpec
from bench.context import RunContext, autocast_dtype
from bench.evaluation import evaluate, reported_accuracy, selection_diagnostics
from bench.protocols import clean_val_index


def new_record(spec: RunSpec, dev: torch.device, *, compile: bool = False) -> dict:
    """The record of a run about to start (``status: running``, no metrics yet)."""
    record = _base_record(spec, dev)
    record["env"]["torch_compile"] = bool(compile)
    return record


def failed_record(spec: RunSpec, error: str, *, device: str | None = None) -> dict:
    """A complete ``failed`` record for a run that died before it could write its own."""
    record = _base_record(spec, torch.device("cpu"))
    record.update(status="failed", error=error, device=device or "unknown", finished_at=utc_now())
    return record


def record_epoch(metrics: dict, epoch: int, method, ctx: RunContext, result,
                 test: tuple[Any, torch.Tensor], clean: torch.Tensor, *,
                 val: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """Evaluate the epoch's networks and append the epoch to ``metrics``: test accuracies,
    training loss, the selection scored against the clean labels, the selection curve and,
    with a clean validation set ``val``, its accuracy. Returns the test accuracies."""
    accs = evaluate(method, ctx, *test)
    _score_corrected_labels(method, result, clean)
    _append_epoch(metrics, epoch, result, accs, reported_accuracy(method, accs), ctx, clean)
    _append_selection_curve(metrics, method, result, ctx, clean)
    if val is not None:   # the clean held-out set: every image scored
        val_accs = evaluate(method, ctx, *val, drop_last=False)
        metrics.setdefault("val_acc", []).append(reported_accuracy(method, val_accs))
    return accs


def finish_record(record: dict, method, metrics: dict) -> None:
    """Complete the record of a run that trained every epoch (``status: ok``)."""
    selection.thin_per_class(metrics)
    record.update(_final_metrics(metrics))
    record.update(_clean_val_choice(method, metrics))
    record["method_state"] = _jsonable_state(method.record_extras())
    record["metrics"] = metrics
    record["status"] = "ok"


def empty_metrics() -> dict:
    """The ``metrics`` of a record before its first epoch."""
    return {"epoch": [], "test_acc": [], "test_acc_networks": {}, "train_loss": [],
            "selected_count": [], "label_precision": [], "label_recall": [],
            "selected_per_class": [], "extra": {}}


def environment(device: torch.device, *, precision: str = "fp32") -> dict:
    """Versions, host and the numeric precision of a run (its autocast dtype, TF32 policy)."""
    from importlib.metadata import PackageNotFoundError, version

    try:  # importing torchvision just for its version costs seconds per worker
        tv_version = version("torchvision")
    except PackageNotFoundError:
        tv_version = None
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "torchvision": tv_version, "numpy": np.__version__,
           "cuda": torch.version.cuda if device.type == "cuda" else None,
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "cpu_threads": torch.get_num_threads(), "hostname": socket.gethostname(),
           "platform": platform.platform(), "git_sha": git_sha()}
    env.update(precision_env(precision, device))
    return env


def precision_env(precision: str, device: torch.device) -> dict:
    """The record's precision fields: ``precision``, ``autocast`` (dtype name or None) and
    PyTorch's TF32 policy as the run found it (matmul, cuDNN, float32 matmul precision)."""
    dtype = autocast_dtype(precision, device) if device.type == "cuda" else None
    return {"precision": precision,
            "autocast": None if dtype is None else str(dtype).removeprefix("torch."),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def git_sha() -> str | None:
    """The commit of the suite's checkout, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def utc_now() -> str:
    """The time now in UTC, to the second (the record's ``started_at``, ``finished_at``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _base_record(spec: RunSpec, dev: torch.device) -> dict:
    """Every field of a record, those a run fills in later None or empty."""
    rec = {"schema_version": store.SCHEMA_VERSION, "run_id": spec.run_id, "grid": spec.grid,
           "label": spec.label}
    rec.update(spec.config_dict())
    rec.update(epochs=spec.train.epochs, reference=dict(spec.reference),
               realised_noise_rate=None, transition_matrix=None, nominal_transition_matrix=None,
               metrics=empty_metrics(), test_acc_last=None, test_acc_best=None,
               test_acc_last10=None, test_acc_clean_val=None, clean_val_epoch=None,
               data_split=None, method_state={}, wall_seconds=None, device=str(dev),
               env=environment(dev, precision=spec.train.precision), status="running",
               error=None, warnings=[], started_at=utc_now(), finished_at=None)
    if spec.smoke_limits is not None:
        rec["smoke"] = True   # a check that the path trains, never a result
    return rec


def _append_selection_curve(metrics: dict, method, result, ctx: RunContext,
                            clean: torch.Tensor) -> None:
    """The epoch's selection curve from the method's ``scores`` (``metrics.selection_curve``,
    :mod:`bench.selection`), for methods that declare a ``score_kind``."""
    kind = getattr(method, "score_kind", None)
    curve = None
    if kind is not None and result.scores is not None:
        curve = selection.selection_curve(
            result.scores.detach().float().cpu().numpy(), ctx.noisy_labels.cpu().numpy(),
            clean.cpu().numpy(), kind=kind, num_classes=ctx.num_classes)
    selection.append_curve(metrics, curve, kind=kind, n_before=len(metrics["epoch"]) - 1)


def _append_epoch(metrics: dict, epoch: int, result, accs: dict, reported: float,
                  ctx: RunContext, clean: torch.Tensor) -> None:
    n_before = len(metrics["epoch"])
    metrics["epoch"].append(epoch)
    metrics["test_acc"].append(reported)
    for name, acc in accs.items():
        metrics["test_acc_networks"].setdefault(name, [None] * n_before).append(acc)
    metrics["train_loss"].append(float(result.train_loss))
    if result.selected is not None:
        diag = selection_diagnostics(result.selected, ctx.visited, ctx.noisy_labels, clean,
                                     ctx.num_classes)
    else:
        diag = dict.fromkeys(("selected_count", "label_precision", "label_recall",
                              "selected_per_class"))
    for key, value in diag.items():
        metrics[key].append(value)
    for key, value in result.extra.items():
        metrics["extra"].setdefault(key, [None] * n_before).append(
            None if value is None else float(value))
    for series in list(metrics["extra"].values()) + list(metrics["test_acc_networks"].values()):
        while len(series) < n_before + 1:
            series.append(None)


def _score_corrected_labels(method, result, clean: torch.Tensor) -> None:
    """Label-correcting methods expose ``corrected_labels`` (N,); score them here, where the
    clean labels are known, as ``extra.corrected_label_acc`` (percent of known labels)."""
    corrected = getattr(method, "corrected_labels", None)
    if corrected is None:
        return
    known = clean >= 0
    if known.any():
        hits = (corrected.to(clean.device)[known] == clean[known]).float().mean()
        result.extra["corrected_label_acc"] = 100.0 * float(hits)


def _jsonable_state(extras: dict) -> dict:
    out = {}
    for key, value in extras.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().tolist()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        out[key] = value
    return out


def _final_metrics(metrics: dict) -> dict:
    acc = metrics["test_acc"]
    return {"test_acc_last": acc[-1], "test_acc_best": max(acc),
            "test_acc_last10": float(np.mean(acc[-10:]))}


def _clean_val_choice(method, metrics: dict) -> dict:
    """``test_acc_clean_val`` and ``clean_val_epoch`` of a run with a clean validation set.

    The selection looks at the epochs from the method's ``reported_model_from`` on (the epochs
    that train the network it reports; all by default), ties broken by its ``clean_val_ties``.
    """
    if "val_acc" not in metrics:
        return {}
    first = getattr(method, "reported_model_from", None)
    start = 0 if first is None else int(np.searchsorted(metrics["epoch"], first))
    pos = clean_val_index(metrics["val_acc"], start=start,
                          ties=getattr(method, "clean_val_ties", "last"))
    return {"test_acc_clean_val": None if pos is None else metrics["test_acc"][pos],
            "clean_val_epoch": None if pos is None else metrics["epoch"][pos]}
