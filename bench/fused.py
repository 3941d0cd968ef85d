"""Several runs of one architecture trained as one fused model.

The seeds of a grid cell (or the two networks of a co-training method) have the same
architecture, the same batch size and different weights and data orders. :class:`FusedNetworks`
stacks the parameters and buffers of G such networks along a leading group dimension
(``torch.func.stack_module_state``) and runs them with ``torch.func.vmap`` over
``functional_call``. vmap's batching rules turn every convolution into one grouped convolution
(G x the groups) and every linear layer into one batched matmul, so the G networks run as one
stream of kernels as large as G separate steps, which is what small networks need to fill a GPU
(HFTA, Wang et al., MLSys 2021, fuse by hand the same way).

BatchNorm: the stacked running statistics are passed to vmap as batched tensors; the batching
rule of ``batch_norm`` normalises each run's channels with that run's own batch statistics and
updates that run's slice of the stacked running mean and variance in place (checked in
``tests/test_fused.py`` against G unfused networks). Nothing is replaced by a stateless norm.

Optimisers: Adam, AdamW and SGD with momentum and weight decay act elementwise, so one optimiser
over the stacked parameters performs exactly G independent updates (different learning rates
per run would need one parameter group per run; every run of a cell shares them). Anything that
couples parameters globally (gradient-norm clipping, LARS) would not be per-run.

Precision: the forward passes run under the runs' autocast (fp32 unless ``train.precision:
bf16``, CUDA bf16 autocast), the losses in fp32, as unfused steps. Under ``torch.autocast``
vmap leaves convolutions and linear layers with batched weights in fp32, and its BatchNorm rule
refuses bf16 inputs with fp32 running statistics; :meth:`FusedNetworks.forward` therefore casts
the input and the conv/linear weights itself and runs BatchNorm in fp32, which is what an
unfused AMP step computes.

Randomness: dropout inside vmap draws independent masks per run (``randomness="different"``),
but from one generator, so a fused run with dropout does not reproduce its unfused twin's masks;
networks without dropout (mlp, cnn6, lenet, preact_resnet18) match their twins up to float
rounding.

Training: a :class:`~methods.base.BatchMethod` is a pure per-batch loss, and
:func:`vmap_loss` runs that same loss over the stacked runs (``torch.func.vmap``), so a fused
step computes, run by run, what the method's own step computes; :func:`stacked_forward` feeds
each run's batch to its networks (for a two-network method, 2G-way fusion). The method's one
epoch loop (:meth:`~methods.base.BatchMethod.fit_epoch`) drives both. Batches come from
:func:`fused_train_batches`, which draws each run's own shuffled order from the same generator
seeds as :meth:`bench.engine.RunContext.train_batches`, so a fused run sees exactly the batches
of its unfused twin. Crop+flip augmentation is not fused (the Co-teaching family trains
without it).
"""

from __future__ import annotations

import copy
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from methods.base import BatchLoss, LossFn

__all__ = ["FusedNetworks", "fused_train_batches", "fused_channels_last", "stacked_forward",
           "vmap_loss"]


def _safe(name: str) -> str:
    # register_parameter refuses dotted names
    return name.replace(".", "__")


def _norm_input_fp32(module: nn.Module, args: tuple) -> tuple | None:
    # vmap's batch_norm rule rejects a bf16 input with fp32 running statistics (which must stay
    # fp32 to be updated in place), so normalise in fp32, as cuDNN does inside an AMP step
    x = args[0]
    if x.dtype in (torch.float16, torch.bfloat16):
        return (x.float(),) + args[1:]
    return None


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast casts to on ``device_type``, or None when autocast is off there."""
    try:
        on = torch.is_autocast_enabled(device_type)
        return torch.get_autocast_dtype(device_type) if on else None
    except TypeError:  # torch < 2.4: per-device functions
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None


def _norm_output_autocast(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    dtype = _autocast_dtype(out.device.type)
    return out if dtype is None else out.to(dtype)


class FusedNetworks(nn.Module):
    """G networks of one architecture as one module with stacked parameters.

    networks: G modules of identical structure (same parameter and buffer names and shapes);
        their current weights and buffers are copied into the stacked tensors.
    randomness: vmap's treatment of random ops (dropout): ``different`` (independent masks per
        run), ``same`` or ``error``.

    ``forward(x)``: x (G, B, ...) -> logits (G, B, K); with ``shared_input=True`` x is (B, ...)
    and every network sees the same batch. ``parameters()`` yields the stacked parameters
    (leading dimension G), for one optimiser that behaves as G per-run optimisers.
    """

    def __init__(self, networks: Sequence[nn.Module], *, randomness: str = "different") -> None:
        super().__init__()
        networks = list(networks)
        if not networks:
            raise ValueError("FusedNetworks needs at least one network")
        shapes = [[(n, tuple(t.shape)) for n, t in net.state_dict().items()] for net in networks]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("FusedNetworks: the networks differ in structure")
        self.num_runs = len(networks)
        self.randomness = randomness
        params, buffers = stack_module_state(networks)
        # a weightless copy that functional_call fills with one run's slices; kept in a tuple so
        # nn.Module does not register it (its meta tensors must never reach an optimiser)
        self._template = (copy.deepcopy(networks[0]).to("meta"),)
        self._blueprint = (copy.deepcopy(self._template[0]),)      # hook-free, for unstack()
        for module in self._template[0].modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.register_forward_pre_hook(_norm_input_fp32)
                module.register_forward_hook(_norm_output_autocast)
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        # weights of the layers autocast would run in bf16 (see forward)
        self._matmul_params = {f"{m}.{p}" if m else p
                               for m, mod in self._template[0].named_modules()
                               if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
                               for p, _ in mod.named_parameters(recurse=False)}
        for name, value in params.items():
            # contiguous, whatever the networks' memory format: vmap folds the group dimension
            # into the output channels, a free view only for this layout
            value = value.detach().clone(memory_format=torch.contiguous_format)
            self.register_parameter(_safe(name), nn.Parameter(value))
        for name, value in buffers.items():
            self.register_buffer(_safe(name), value.detach().clone())
        self.train(networks[0].training)

    @classmethod
    def from_factory(cls, factory, num_runs: int, **kwargs) -> "FusedNetworks":
        """G = ``num_runs`` fresh networks from ``factory()`` (drawn in order from torch's RNG)."""
        return cls([factory() for _ in range(num_runs)], **kwargs)

    def train(self, mode: bool = True) -> "FusedNetworks":
        super().train(mode)
        self._template[0].train(mode)
        return self

    def stacked_parameters(self) -> dict[str, torch.Tensor]:
        """Original parameter name -> stacked tensor (G, ...)."""
        return {n: getattr(self, _safe(n)) for n in self._param_names}

    def stacked_buffers(self) -> dict[str, torch.Tensor]:
        """Original buffer name -> stacked tensor (G, ...)."""
        return {n: getattr(self, _safe(n)) for n in self._buffer_names}

    def _one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._template[0], (params, buffers), (x,))

    def forward(self, x: torch.Tensor, *, shared_input: bool = False) -> torch.Tensor:
        params = self.stacked_parameters()
        dtype = _autocast_dtype(x.device.type)
        if dtype is not None:
            # Under vmap, autocast does not reach a convolution or a linear layer whose weight
            # is batched (they would run in fp32), so cast here what autocast would cast: the
            # input and the conv/linear weights (differentiably, as autocast does). BatchNorm
            # weights and every buffer stay fp32 (so the running statistics update in place)
            # and BatchNorm runs in fp32 (the hooks above), its output back in bf16.
            params = {k: v.to(dtype) if k in self._matmul_params else v
                      for k, v in params.items()}
            x = x.to(dtype)
        fn = vmap(self._one, in_dims=(0, 0, None if shared_input else 0),
                  randomness=self.randomness)
        return fn(params, self.stacked_buffers(), x)

    @torch.no_grad()
    def unstack(self) -> list[nn.Module]:
        """G ordinary modules holding the trained weights and buffers (on this module's device)."""
        first = next(iter(self.stacked_parameters().values()))
        nets = []
        for g in range(self.num_runs):
            net = copy.deepcopy(self._blueprint[0]).to_empty(device=first.device)
            for name, value in self.stacked_parameters().items():
                net.get_parameter(name).copy_(value[g])
            for name, value in self.stacked_buffers().items():
                net.get_buffer(name).copy_(value[g])
            nets.append(net.train(self.training))
        return nets

    def load_networks(self, networks: Sequence[nn.Module]) -> None:
        """Copy the weights and buffers of G networks into the stacked tensors."""
        if len(networks) != self.num_runs:
            raise ValueError(f"expected {self.num_runs} networks, got {len(networks)}")
        with torch.no_grad():
            for g, net in enumerate(networks):
                for name, value in self.stacked_parameters().items():
                    value[g].copy_(net.get_parameter(name))
                for name, value in self.stacked_buffers().items():
                    value[g].copy_(net.get_buffer(name))


# ---- batches ---------------------------------------------------------------------------------

def fused_channels_last(x: torch.Tensor) -> torch.Tensor:
    """x (G, B, C, H, W) with the memory order (B, H, W, G, C).

    vmap's convolution rule folds the group dimension into the channels, viewing x as
    (B, G*C, H, W); with this memory order that view is channels_last without a copy, the
    layout cuDNN's bf16 kernels prefer. Values are unchanged.
    """
    g, b, c, h, w = x.shape
    return x.permute(1, 3, 4, 0, 2).contiguous().view(b, h, w, g, c).permute(3, 0, 4, 1, 2)


def fused_train_batches(images: torch.Tensor, labels: torch.Tensor, *,
                        generators: Sequence[torch.Generator], batch_size: int,
                        drop_last: bool = False, max_iters_per_epoch: int | None = None,
                        normalization: tuple[torch.Tensor, torch.Tensor] | None = None,
                        channels_last: bool = False,
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of per-run shuffled batches ``(x (G, B, C, H, W), y (G, B), idx (G, B))``.

    images: (N, C, H, W) uint8 on the training device; labels: (N,) int64 (one label set shared
        by every run) or (G, N) (per-run noisy labels).
    generators: one CPU ``torch.Generator`` per run; run g's order is
        ``randperm(N, generator=generators[g])``, exactly the order of
        ``RunContext.train_batches`` with ``loader_gen`` seeded by the run's seed.
    normalization: (C,) mean and std (:meth:`bench.engine.RunContext.normalization`), or None.

    The orders are drawn on the host once per epoch and moved in one copy; nothing in the loop
    waits for the device.
    """
    device = images.device
    n = images.shape[0]
    order = torch.stack([torch.randperm(n, generator=gen) for gen in generators]).to(device)
    runs = torch.arange(len(generators), device=device)[:, None]
    stop = n - (n % batch_size if drop_last else 0)
    for it, start in enumerate(range(0, stop, batch_size)):
        if max_iters_per_epoch is not None and it >= max_iters_per_epoch:
            break
        idx = order[:, start:start + batch_size]                       # (G, B)
        raw = images[idx]                                              # (G, B, C, H, W)
        if channels_last and raw.dim() == 5:
            raw = fused_channels_last(raw)
        x = raw.float().div_(255.0)
        if normalization is not None:
            mean, std = normalization
            shape = (1, 1, -1) + (1,) * (x.dim() - 3)
            x = (x - mean.view(shape)) / std.view(shape)
        y = labels[idx] if labels.dim() == 1 else labels[runs, idx]
        yield x, y, idx


# ---- fused training -------------------------------------------------------------------------

def stacked_forward(fused: FusedNetworks, x: torch.Tensor,
                    networks_per_run: int) -> tuple[torch.Tensor, ...]:
    """Logits of the networks of G runs, each run's batch fed to each of its networks.

    fused: ``networks_per_run * G`` networks ordered [net1 of runs 0..G-1, net2 of runs
        0..G-1, ...]; x: (G, B, ...). Returns one (G, B, K) tensor per network of a run.
    """
    g = x.shape[0]
    if fused.num_runs != networks_per_run * g:
        raise ValueError(f"{fused.num_runs} fused networks for {g} runs of "
                         f"{networks_per_run} network(s)")
    stacked = x
    if networks_per_run > 1:
        stacked = torch.cat([x] * networks_per_run)
        if x.dim() == 5 and x.permute(1, 3, 4, 0, 2).is_contiguous() and not x.is_contiguous():
            stacked = fused_channels_last(stacked)                     # keep the fused layout
    return tuple(fused(stacked).unflatten(0, (networks_per_run, g)).unbind(0))


def vmap_loss(batch_loss: LossFn) -> LossFn:
    """A :meth:`~methods.base.BatchMethod.batch_loss` over a leading run dimension.

    The returned function takes logits (G, B, K) per network, labels and indices (G, B) and the
    step state shared by the runs, and returns the :class:`~methods.base.BatchLoss` of every
    run: (G,) losses, (G, B) selection and scores. Each run's values are the loss's own.
    """
    def fused_loss(logits: tuple[torch.Tensor, ...], labels: torch.Tensor,
                   indices: torch.Tensor, state: Any) -> BatchLoss:
        def one_run(run_logits: tuple[torch.Tensor, ...], run_labels: torch.Tensor,
                    run_indices: torch.Tensor) -> dict:
            out = batch_loss(run_logits, run_labels, run_indices, state)
            # vmap returns tensors only: the fields a method leaves None are dropped here
            return {k: v for k, v in out._asdict().items() if v is not None}

        return BatchLoss(**vmap(one_run)(logits, labels, indices))

    return fused_loss
