"""The run's context: what a method trains with, on the run's device.

:class:`RunContext` holds the noisy labels and the training images on the device (uint8, moved
once), makes the run's networks and optimisers and applies the learning-rate schedule, yields
the epoch's shuffled mini-batches (transformed and augmented on the device), opens the run's
autocast (fp32 unless ``train.precision: bf16`` on CUDA) and keeps the run's random generators,
whose state a checkpoint saves and restores.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from bench.config import RunSpec
from bench.data import ImageData
from bench.errors import ConfigError
from bench.models import build_network


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
    """The named device, or for None and ``auto`` CUDA when there is one, else the CPU."""
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
