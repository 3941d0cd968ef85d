"""One run: data on the device, noise, the method's epochs, evaluation, diagnostics, record.

Data flow: :func:`run` loads the dataset (uint8 tensors moved once to the device), draws the
noisy labels from (dataset, noise type, rate, noise seed), builds the method with a
:class:`RunContext`, and for each epoch calls the method's ``train_epoch``, evaluates every
network on the test set and scores the method's selection against the clean labels (for a
method that scores samples, also the selection curve of :mod:`bench.selection`). The record
is written atomically by :mod:`bench.store`. Full state is checkpointed every few epochs and a
run resumes from its last checkpoint.

With ``train.clean_val_fraction`` a clean, class-stratified validation set is held out of the
training images after the noise draw and scored every epoch (``metrics.val_acc``); the record
then carries ``test_acc_clean_val`` and ``clean_val_epoch`` (protocol ``clean_val``). Runs train
in fp32 unless ``train.precision: bf16`` (CUDA autocast); ``env`` records which.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import platform
import socket
import subprocess
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from bench import selection, store
from bench.atomic import atomic_write
from bench.config import RunSpec
from bench.data import ImageData, hold_out_clean, load_dataset
from bench.errors import BenchError, ConfigError
from bench.models import build_network
from bench.noise import apply_noise, realised_noise_rate, realised_transition_matrix
from bench.protocols import clean_val_index
from bench.registry import METHODS

CHECKPOINT_VERSION = 1


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run: None (fp32) unless ``precision`` is ``bf16`` on CUDA.

    Every official code trains in fp32, so ``fp32`` is the default: PyTorch's default TF32
    policy applies (recorded in the record's ``env``). bf16 is CUDA autocast only; asked for on
    another device it is refused rather than silently run in fp32.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type != "cuda":
            raise ConfigError(f"train.precision bf16 runs under CUDA autocast; this run's "
                              f"device is {device.type} (use precision fp32)")
        return torch.bfloat16
    raise ConfigError(f"train.precision must be fp32 or bf16, got {precision!r}")


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class RunContext:
    """What a method may use: noisy labels, networks, optimisers, batches, RNGs, on the device.

    Attributes:
        noisy_labels: (N,) int64 on the device.
        num_train, num_classes, epochs, start_epoch, device, seed.
        noise_type, noise_rate: the nominal noise (methods such as Co-teaching assume the rate
            is known and use it as their forget rate).
        nominal_transition_matrix: (K, K) numpy T[clean, noisy] of the configured noise model,
            or None where it has none (human, instance noise).
        compile: networks from :meth:`make_network` are compiled with ``torch.compile``.
        np_rng: numpy Generator for the method's own randomness (mixup, sampling).
    """

    def __init__(self, spec: RunSpec, data: ImageData, noisy_labels: np.ndarray,
                 device: torch.device, *, nominal_transition_matrix=None,
                 compile: bool = False) -> None:
        self.spec = spec
        self.compile = compile
        # the noise model's T[clean, noisy] as configured (None for human / instance noise):
        # what a method that "knows T" may use; never the clean labels
        self.nominal_transition_matrix = (
            None if nominal_transition_matrix is None
            else np.asarray(nominal_transition_matrix, dtype=np.float64))
        self.train_cfg = spec.train
        self.device = device
        self.dataset = spec.dataset
        self.num_classes = data.num_classes
        self.num_train = len(noisy_labels)
        self.epochs = spec.train.epochs
        self.start_epoch = spec.train.start_epoch
        self.seed = spec.seed
        self.noise_type = spec.noise_type
        self.noise_rate = spec.noise_rate
        self.image_shape = data.image_shape
        self.noisy_labels = torch.as_tensor(noisy_labels, dtype=torch.long, device=device)
        self._images = data.train_images.to(device) if data.in_memory else data.train_images
        self._mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        self._std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
        self.loader_gen = torch.Generator().manual_seed(spec.seed)
        self.aug_gen = torch.Generator(device=device).manual_seed(spec.seed + 1)
        self.np_rng = np.random.default_rng(spec.seed)
        self.visited = torch.zeros(self.num_train, dtype=torch.bool, device=device)
        self._optimizers: list[tuple[torch.optim.Optimizer, float]] = []
        self.autocast_dtype = autocast_dtype(spec.train.precision, device)
        self.use_amp = self.autocast_dtype is not None

    # -- networks and optimisers -------------------------------------------------------------
    def make_network(self, network: str | None = None) -> nn.Module:
        """The run's network, or the registered ``network`` a method's protocol prescribes."""
        c, h, _ = self.image_shape
        net = build_network(network or self.spec.network, in_channels=c, num_classes=self.num_classes,
                            image_size=h, options=self.train_cfg.network_options)
        net = net.to(self.device)
        if self.device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        if self.compile:
            net.compile()   # in place: parameter names and checkpoints stay those of the module
        return net

    def make_optimizer(self, params, *, lr: float | None = None) -> torch.optim.Optimizer:
        """The run's optimiser over ``params``; the engine applies the schedule each epoch."""
        cfg = self.train_cfg
        lr = cfg.lr if lr is None else lr
        # fused kernels: one update kernel for all parameters (CPU and CUDA), same arithmetic
        opt: torch.optim.Optimizer
        if cfg.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay, fused=True)
        elif cfg.optimizer == "adagrad":  # Keras 2.0 Adagrad: zero accumulator, epsilon 1e-8
            opt = torch.optim.Adagrad(params, lr=lr, eps=1e-8, weight_decay=cfg.weight_decay,
                                      fused=True)
        else:
            opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay, fused=True)
        self._optimizers.append((opt, lr))
        return opt

    def learning_rate(self, epoch: int, base_lr: float) -> float:
        cfg = self.train_cfg
        if cfg.schedule == "coteaching" and epoch >= cfg.decay_start:
            return (cfg.epochs - epoch) / (cfg.epochs - cfg.decay_start) * base_lr
        if cfg.schedule == "multistep":
            return base_lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        return base_lr

    def apply_schedule(self, epoch: int) -> None:
        """Set lr (and, for the Co-teaching schedule, Adam's beta1 0.9 -> 0.1) for ``epoch``."""
        for opt, base_lr in self._optimizers:
            for group in opt.param_groups:
                group["lr"] = self.learning_rate(epoch, base_lr)
                if self.train_cfg.schedule == "coteaching" and "betas" in group:
                    beta1 = 0.1 if epoch >= self.train_cfg.decay_start else 0.9
                    group["betas"] = (beta1, group["betas"][1])

    def autocast(self):
        """CUDA bf16 autocast under ``train.precision: bf16``; else a no-op (fp32)."""
        if self.use_amp:
            return torch.autocast("cuda", dtype=self.autocast_dtype)
        return contextlib.nullcontext()

    # -- data --------------------------------------------------------------------------------
    def fetch(self, idx: torch.Tensor, *, augment: bool = True) -> torch.Tensor:
        """Float images (B, C, H, W) of training samples ``idx``, transformed on the device."""
        if isinstance(self._images, torch.Tensor):
            raw = self._images[idx]
        else:
            raw = self._images.load(idx.cpu().numpy(), train=augment).to(self.device)
        return self.transform(raw, augment=augment)

    def transform(self, raw: torch.Tensor, *, augment: bool) -> torch.Tensor:
        x = raw.float().div_(255.0)
        if augment and self.train_cfg.augment == "crop_flip":
            x = random_crop_flip(x, padding=4, generator=self.aug_gen)
        if self.train_cfg.normalize:
            x = (x - self._mean) / self._std
        if self.device.type == "cuda" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_batches(self, *, batch_size: int | None = None, augment: bool = True,
                      indices: torch.Tensor | None = None,
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Shuffled ``(x, noisy_y, idx)`` mini-batches of one epoch, per the train config.

        indices: restrict the epoch to these sample indices (e.g. a selected subset).
        """
        cfg = self.train_cfg
        bs = batch_size or cfg.batch_size
        pool = torch.arange(self.num_train) if indices is None else indices.cpu()
        order = pool[torch.randperm(len(pool), generator=self.loader_gen)].to(self.device)
        stop = len(order) - (len(order) % bs if cfg.drop_last else 0)
        for it, start in enumerate(range(0, stop, bs)):
            if cfg.max_iters_per_epoch is not None and it >= cfg.max_iters_per_epoch:
                break
            idx = order[start:start + bs]
            self.visited[idx] = True
            yield self.fetch(idx, augment=augment), self.noisy_labels[idx], idx

    @property
    def train_images(self) -> Any:
        """The training images: a uint8 tensor on the device, or a reader for on-disk data."""
        return self._images

    def normalization(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(C,) mean and std the batches are normalised with, or None without
        ``train.normalize``."""
        if not self.train_cfg.normalize:
            return None
        return self._mean.flatten(), self._std.flatten()

    def mark_all_visited(self) -> None:
        """For methods that rank every training sample (not only the batches they visit), so
        that label recall is computed over the whole training set."""
        self.visited.fill_(True)

    def eval_train_batches(self, *, batch_size: int = 1024,
                           ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """All training samples in order, untransformed by augmentation: ``(x, noisy_y, idx)``."""
        for start in range(0, self.num_train, batch_size):
            idx = torch.arange(start, min(start + batch_size, self.num_train), device=self.device)
            yield self.fetch(idx, augment=False), self.noisy_labels[idx], idx

    # -- checkpoint state --------------------------------------------------------------------
    def rng_state(self) -> dict:
        state = {"loader": self.loader_gen.get_state(), "aug": self.aug_gen.get_state(),
                 "torch": torch.get_rng_state(),
                 "numpy": json.dumps(self.np_rng.bit_generator.state)}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def set_rng_state(self, state: dict) -> None:
        self.loader_gen.set_state(state["loader"])
        self.aug_gen.set_state(state["aug"])
        torch.set_rng_state(state["torch"])
        self.np_rng.bit_generator.state = json.loads(state["numpy"])
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)


def random_crop_flip(x: torch.Tensor, *, padding: int, generator: torch.Generator) -> torch.Tensor:
    """RandomCrop(size, padding) with zero padding + RandomHorizontalFlip, batched on the device.

    x: (B, C, H, W) float. Each sample gets its own offset and flip.
    """
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]    # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]    # (B, 1, W)
    flip = torch.rand(b, device=x.device, generator=generator) < 0.5
    cols = torch.where(flip[:, None, None], 2 * dx[:, None, None] + w - 1 - cols, cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


# ---- evaluation ------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(method, ctx: RunContext, test_x: Any, test_y: torch.Tensor, *,
             drop_last: bool | None = None) -> dict[str, float]:
    """Test accuracy (percent) of every network the method exposes.

    drop_last: score only whole test batches (default ``train.test_drop_last``).
    """
    cfg = ctx.train_cfg
    total = len(test_y)
    if cfg.test_drop_last if drop_last is None else drop_last:
        # the official loaders score only whole batches (9,984 of 10,000)
        total -= total % cfg.test_batch_size
        if total == 0:
            raise ConfigError(f"test_drop_last with test_batch_size {cfg.test_batch_size} "
                              f"scores none of the {len(test_y)} test images")
    correct: dict[str, torch.Tensor] = {}
    for start in range(0, total, 1024):
        stop = min(start + 1024, total)
        if isinstance(test_x, torch.Tensor):
            raw = test_x[start:stop]
        else:
            raw = test_x.load(np.arange(start, stop), train=False).to(ctx.device)
        x = ctx.transform(raw, augment=False)
        with ctx.autocast():
            logits = method.predict(x)
        for name, out in logits.items():
            hits = (out.argmax(1) == test_y[start:stop]).sum()
            correct[name] = correct.get(name, 0) + hits
    return {k: 100.0 * float(v) / total for k, v in correct.items()}


def reported_accuracy(method, accs: dict[str, float]) -> float:
    if method.report == "ensemble":
        return accs["ensemble"]
    if method.report == "mean":
        nets = [v for k, v in accs.items() if k != "ensemble"]
        return float(np.mean(nets))
    return accs["net1"]


def selection_diagnostics(selected: torch.Tensor, visited: torch.Tensor,
                          noisy: torch.Tensor, clean: torch.Tensor, num_classes: int) -> dict:
    """Label precision and recall of a selected set against the clean labels.

    precision = |selected and correctly labelled| / |selected|;
    recall = |selected and correctly labelled| / |visited and correctly labelled|.
    """
    known = clean >= 0
    correct = (noisy == clean) & known
    sel = selected.bool()
    n_sel = int(sel.sum())
    hit = int((sel & correct).sum())
    pool = int((visited & correct).sum())
    return {
        "selected_count": n_sel,
        "label_precision": hit / max(int((sel & known).sum()), 1) if known.any() else None,
        "label_recall": hit / pool if pool else None,
        "selected_per_class": torch.bincount(noisy[sel], minlength=num_classes).tolist(),
    }


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


# ---- the run ---------------------------------------------------------------------------------

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
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def prepare(spec: RunSpec, device: torch.device, *, data_root: str | Path | None = None,
            verify: bool = True, data: ImageData | None = None):
    """Load the data and draw the run's noisy labels: (data, noisy_labels, noise_info).

    noise_info holds the record's noise fields, ``data_split`` (the split sizes) and, under
    ``_nominal_matrix``, the noise model's full-precision matrix (None where it has none) for
    :class:`RunContext`. With ``train.clean_val_fraction`` the data returned is the training
    part, with the held-out clean set as its ``val_images`` / ``val_labels``.
    data: the run's dataset when already loaded (the seeds of a fused cell share it).
    """
    if data is None:
        data = load_dataset(spec.dataset, root=data_root, verify=verify)
    if spec.smoke_limits is not None:
        data = smoke_subset(data, spec.smoke_limits)
    clean = data.train_labels
    features = None
    if spec.noise_type == "instance":
        features = data.train_images.reshape(len(clean), -1).float().div(255.0).numpy()
    human_labels = None
    if spec.noise_type == "human":
        if not data.human_labels:
            raise ConfigError(f"dataset {spec.dataset!r} has no human label sets; use one of "
                              "cifar10n, cifar100n, clothing1m, food101n, webvision")
        variant = spec.noise_variant or data.default_noise_variant
        if variant not in data.human_labels:
            raise ConfigError(f"{spec.dataset} has no label set {variant!r}; known: "
                              f"{', '.join(sorted(data.human_labels))}")
        human_labels = data.human_labels[variant]
    draw = apply_noise(spec.noise_type, clean, num_classes=data.num_classes,
                       rate=spec.noise_rate, noise_seed=spec.noise_seed, dataset=spec.dataset,
                       variant=spec.noise_variant, features=features, human_labels=human_labels,
                       draw=spec.noise_draw)
    data, noisy, split = _split(spec, data, draw.noisy_labels)
    clean = data.train_labels
    known = clean >= 0
    info = {
        "noise_draw": spec.noise_draw,
        "data_split": split,
        "realised_noise_rate": (realised_noise_rate(clean[known], noisy[known])
                                if known.any() else None),
        "transition_matrix": realised_transition_matrix(
            clean[known], noisy[known], data.num_classes).round(6).tolist(),
        "nominal_transition_matrix": (None if draw.nominal_transition_matrix is None else
                                      draw.nominal_transition_matrix.round(6).tolist()),
        # unrounded, for the run's context (popped before the info goes into the record)
        "_nominal_matrix": draw.nominal_transition_matrix,
    }
    return data, noisy, info


def _split(spec: RunSpec, data: ImageData, noisy: np.ndarray):
    """The clean validation split of ``train.clean_val_fraction``: (data, noisy, sizes)."""
    fraction = spec.train.clean_val_fraction
    if fraction == 0:
        return data, noisy, {"train": len(noisy), "clean_val": 0}
    # the noise is drawn on every image first, then the clean split made, as RSL's scripts
    data, noisy = hold_out_clean(data, noisy, fraction=fraction, seed=spec.noise_seed)
    assert data.val_labels is not None, "hold_out_clean returns the clean validation labels"
    return data, noisy, {"train": len(noisy), "clean_val": len(data.val_labels),
                         "clean_val_fraction": fraction, "split_seed": spec.noise_seed}


def smoke_subset(data: ImageData, limits: dict) -> ImageData:
    """The first ``limit_train`` training and ``limit_test`` test images of ``data`` (in memory),
    human label sets cut alike; a smoke run's data (see :func:`bench.config.smoke_spec`)."""
    if not data.in_memory:
        raise ConfigError(f"smoke runs need an in-memory dataset; {data.name} is read from files")
    n, m = limits.get("limit_train"), limits.get("limit_test")
    return dataclasses.replace(
        data, train_images=data.train_images[:n], train_labels=data.train_labels[:n],
        test_images=data.test_images[:m], test_labels=data.test_labels[:m],
        human_labels={k: v[:n] for k, v in data.human_labels.items()})


def run(spec: RunSpec, *, device: str | None = None, results_dir: str | Path | None = None,
        checkpoint_dir: str | Path | None = None, checkpoint_every: int = 10,
        data_root: str | Path | None = None, verify_data: bool = True,
        on_epoch: Callable[[int, dict], None] | None = None,
        stop_after_epoch: int | None = None, compile: bool = False) -> dict:
    """Execute one run and return its record; write it under ``results_dir`` when given.

    A failure (an exception, a NaN loss, running out of memory) becomes a record with
    ``status: failed`` and the error text, never an exception, except for bad configuration
    (:class:`~bench.errors.BenchError`), which is raised for the caller to report.

    stop_after_epoch: stop (without a record) after checkpointing this epoch; for tests of
        interrupted runs.
    compile: compile the networks with ``torch.compile`` (an execution choice, not part of the
        run's configuration or run_id; recorded as ``env.torch_compile``).
    """
    dev = pick_device(device)
    record = new_record(spec, dev, compile=compile)
    t0 = time.perf_counter()
    elapsed_before = 0.0
    ckpt_path = Path(checkpoint_dir) / f"{spec.run_id}.pt" if checkpoint_dir else None
    warnings: list[str] = []  # problems the run survived (a checkpoint it could not write...)
    try:
        torch.manual_seed(spec.seed)
        data, noisy, info = prepare(spec, dev, data_root=data_root, verify=verify_data)
        nominal = info.pop("_nominal_matrix")
        record.update(info)
        ctx = RunContext(spec, data, noisy, dev, nominal_transition_matrix=nominal,
                         compile=compile)
        method = build_method(spec, ctx)
        clean = torch.as_tensor(data.train_labels, device=dev)
        test_x = data.test_images.to(dev) if data.in_memory else data.test_images
        test_y = torch.as_tensor(data.test_labels, device=dev)
        val = (None if data.val_images is None else
               (data.val_images.to(dev), torch.as_tensor(data.val_labels, device=dev)))
        metrics = _empty_metrics()
        first = spec.train.start_epoch
        resumed = (_load_checkpoint(ckpt_path, method, ctx, warnings)
                   if ckpt_path is not None else None)
        if resumed is not None:
            first, metrics, elapsed_before = resumed
        record["metrics"] = metrics  # a failed record keeps the epochs it completed
        for epoch in range(first, spec.train.epochs):
            ctx.apply_schedule(epoch)
            ctx.visited.zero_()
            result = method.train_epoch(epoch)
            if not math.isfinite(result.train_loss):
                raise NonFiniteLossError(f"training loss is {result.train_loss} at epoch {epoch}")
            accs = record_epoch(metrics, epoch, method, ctx, result, (test_x, test_y), clean,
                                val=val)
            if on_epoch is not None:
                on_epoch(epoch, {"test_acc": metrics["test_acc"][-1], **accs})
            last = epoch == spec.train.epochs - 1
            if ckpt_path is not None and not last and (epoch + 1 - first) % checkpoint_every == 0:
                _save_checkpoint(ckpt_path, epoch + 1, method, ctx, metrics,
                                 elapsed_before + time.perf_counter() - t0, warnings)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                if ckpt_path is not None:
                    _save_checkpoint(ckpt_path, epoch + 1, method, ctx, metrics,
                                     elapsed_before + time.perf_counter() - t0, warnings)
                return {}
        finish_record(record, method, metrics)
        record["wall_seconds"] = elapsed_before + time.perf_counter() - t0
    except BenchError:
        raise
    except Exception as exc:  # one failing run must not stop a grid
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        record["wall_seconds"] = elapsed_before + time.perf_counter() - t0
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    record["finished_at"] = _now()
    record["warnings"] = warnings
    if results_dir is not None:
        store.write_record(Path(results_dir) / spec.filename, record)
    if ckpt_path is not None and record["status"] == "ok":
        _remove_checkpoints(ckpt_path)
    return record


def new_record(spec: RunSpec, dev: torch.device, *, compile: bool = False) -> dict:
    """The record of a run about to start (``status: running``, no metrics yet)."""
    record = _base_record(spec, dev)
    record["env"]["torch_compile"] = bool(compile)
    return record


def build_method(spec: RunSpec, ctx: RunContext):
    """The run's method object, its config built from the spec's method parameters."""
    method_cls = METHODS.get(spec.method)
    return method_cls(method_cls.Config(**_config_kwargs(method_cls, spec.method_params)), ctx)


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


def _config_kwargs(method_cls, params: dict) -> dict:
    # JSON turns tuples into lists; give the frozen dataclass back its tuples
    types = {f.name: f.type for f in dataclasses.fields(method_cls.Config)}
    return {k: tuple(v) if isinstance(v, list) and "tuple" in str(types.get(k, "")) else v
            for k, v in params.items()}


def failed_record(spec: RunSpec, error: str, *, device: str | None = None) -> dict:
    """A complete ``failed`` record for a run that died before it could write its own."""
    record = _base_record(spec, torch.device("cpu"))
    record.update(status="failed", error=error, device=device or "unknown", finished_at=_now())
    return record


def _base_record(spec: RunSpec, dev: torch.device) -> dict:
    rec = {"schema_version": store.SCHEMA_VERSION, "run_id": spec.run_id, "grid": spec.grid,
           "label": spec.label}
    rec.update(spec.config_dict())
    rec.update(epochs=spec.train.epochs, reference=dict(spec.reference),
               realised_noise_rate=None, transition_matrix=None, nominal_transition_matrix=None,
               metrics=_empty_metrics(), test_acc_last=None, test_acc_best=None,
               test_acc_last10=None, test_acc_clean_val=None, clean_val_epoch=None,
               data_split=None, method_state={}, wall_seconds=None, device=str(dev),
               env=environment(dev, precision=spec.train.precision), status="running",
               error=None, warnings=[], started_at=_now(), finished_at=None)
    if spec.smoke_limits is not None:
        rec["smoke"] = True   # a check that the path trains, never a result
    return rec


def _empty_metrics() -> dict:
    return {"epoch": [], "test_acc": [], "test_acc_networks": {}, "train_loss": [],
            "selected_count": [], "label_precision": [], "label_recall": [],
            "selected_per_class": [], "extra": {}}


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


def _previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint before the last one is kept (for when the last one is damaged)."""
    return path.with_name(path.name + ".prev")


def _warn(warnings: list[str], message: str, *, once_per: str | None = None) -> None:
    """A problem the run survives, kept in the record's ``warnings`` (which the runner prints
    with the run's line), once per message (or per message starting with ``once_per``)."""
    if not any(w.startswith(once_per or message) for w in warnings):
        warnings.append(message)


def _save_checkpoint(path: Path, next_epoch: int, method, ctx: RunContext, metrics: dict,
                     elapsed: float, warnings: list[str]) -> None:
    """Write the run's full state atomically, keeping the previous checkpoint as ``.prev``.

    A checkpoint that cannot be written (a full or read-only disk) is a warning: the run goes
    on without it and the last good checkpoint stays.
    """
    state = {"version": CHECKPOINT_VERSION, "run_id": ctx.spec.run_id, "next_epoch": next_epoch,
             "method": method.state_dict(), "rng": ctx.rng_state(),
             "metrics": json.dumps(metrics), "elapsed": elapsed}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: torch.save(state, fh), previous=_previous_checkpoint(path))
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError
        _warn(warnings, f"cannot write checkpoint {path} ({_first_line(exc)}); the run goes "
                        "on without it", once_per=f"cannot write checkpoint {path} ")


def _read_checkpoint(path: Path, run_id: str) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"version", "next_epoch", "method", "rng", "metrics", "elapsed"} - set(state)
    if missing:
        raise ValueError(f"no {', '.join(sorted(missing))}")
    if state["version"] != CHECKPOINT_VERSION:
        raise ValueError(f"unknown version {state['version']!r}")
    if state.get("run_id", run_id) != run_id:  # checkpoints before run_id was kept: trusted
        raise ValueError(f"it is run {state['run_id']}'s")
    return state


def _check_fits(method, state: dict) -> None:
    """The checkpoint holds exactly the method's state entries (a method's ``load_state_dict``
    takes what it is given: another version's checkpoint would leave some state new, some old)."""
    have, want = set(state), set(method.state_dict())
    if have != want:
        extra, absent = sorted(have - want), sorted(want - have)
        raise ValueError("; ".join(part for part in (
            f"unknown {', '.join(extra)}" if extra else "",
            f"no {', '.join(absent)}" if absent else "") if part))


def _load_checkpoint(path: Path, method, ctx: RunContext,
                     warnings: list[str]) -> tuple[int, dict, float] | None:
    """(next epoch, metrics, elapsed seconds) from the last readable checkpoint (``path``, else
    the one before it), or None to start from scratch. A checkpoint that cannot be read, is
    another run's, or lacks or adds state entries of the method is moved aside
    (``<name>.damaged-<time>``) with a warning naming it. One whose entries the method then
    refuses (a tensor of another shape) is moved aside too and the attempt fails, as the state
    may be half loaded; the next attempt starts from the checkpoint before it or from scratch."""
    for candidate in (path, _previous_checkpoint(path)):
        if not candidate.is_file():
            continue
        try:
            state = _read_checkpoint(candidate, ctx.spec.run_id)
            _check_fits(method, state["method"])
        except Exception as exc:  # truncated, another format, another run or method version
            then = ("resuming from the checkpoint before it, if any, else from scratch"
                    if candidate == path else "starting from scratch")
            _warn(warnings, f"checkpoint {candidate} cannot be read ({_first_line(exc)}); "
                            f"{_set_aside(candidate)}, {then}")
            continue
        try:
            method.load_state_dict(state["method"])
            ctx.set_rng_state(state["rng"])
        except Exception as exc:
            raise RuntimeError(f"checkpoint {candidate} does not fit this run, "
                               f"{_set_aside(candidate)} ({_first_line(exc)})") from exc
        return int(state["next_epoch"]), json.loads(state["metrics"]), float(state["elapsed"])
    return None


def _set_aside(path: Path) -> str:
    """Move a damaged checkpoint aside; says where (or why it stays, to be skipped again)."""
    try:
        return f"moved to {store.move_aside(path).name}"
    except OSError as exc:
        return f"left in place ({exc.strerror or exc})"


def _first_line(exc: BaseException) -> str:
    """The error's first sentence (torch's go on with advice), or its type's name."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    end = text.find(". ", 40)
    return text[:end] if end > 0 else text


def _remove_checkpoints(path: Path) -> None:
    for p in (path, _previous_checkpoint(path)):
        p.unlink(missing_ok=True)
