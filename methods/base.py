"""What every method implements, and what the engine gives it.

A method sees the noisy labels only. It trains through a :class:`bench.engine.RunContext`
(``ctx``) that hands out networks, optimisers and batches already on the training device; the
engine, which alone knows the clean labels, evaluates and computes the selection diagnostics
from what :meth:`Method.train_epoch` returns.

A method file defines a frozen dataclass of hyper-parameters whose defaults are the official
code's values (each field citing its source) and a :class:`Method` subclass registered with
``@METHODS.register(name)``.

A method that trains by one loop over mini-batches (Standard, the Co-teaching family, JoCoR,
Decoupling, MentorNet PD) is a :class:`BatchMethod`: it declares its networks and optimiser
layout, a per-step state and a pure per-batch loss on the networks' logits, and
:meth:`BatchMethod.fit_epoch` is the one loop that trains it. The same loss, vmapped over
stacked runs, trains the seeds of a cell as one fused model (:mod:`bench.fused_run`). Methods
with phases of their own (F-correction, DivideMix, ...) implement ``train_epoch`` directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from bench.context import RunContext


@dataclass(frozen=True)
class NoConfig:
    """A method without hyper-parameters."""


@dataclass
class EpochResult:
    """What one training epoch reports.

    train_loss: mean training loss of the epoch (a float: call ``.item()`` once per epoch).
    selected: (N,) bool tensor, the samples the method selected / labelled this epoch (e.g.
        the first network's small-loss picks, DivideMix's labelled set), or None for methods
        that do not select. The engine scores it against the clean labels.
    extra: method-specific diagnostics, one float each (e.g. forget_rate, lambda_u).
    scores: (N,) float tensor, the per-sample score the method ranked by this epoch (NaN for
        samples it did not score), of its class's ``score_kind``; None when it scored nothing.
        The engine turns it into the record's selection curve (:mod:`bench.selection`).
    """

    train_loss: float
    selected: torch.Tensor | None = None
    extra: dict[str, float] = field(default_factory=dict)
    scores: torch.Tensor | None = None


class Method:
    """Base class of an LNL method.

    Subclasses set ``Config`` and ``report`` and implement ``__init__`` (build networks and
    optimisers through ``ctx``) and ``train_epoch``.

    report: which accuracy the paper reports: ``net1``, ``mean`` (mean of the networks'
        accuracies, as JoCoR), or ``ensemble`` (the networks' summed logits, as DivideMix).
    score_kind: None, or the kind of the ``EpochResult.scores`` the method exposes:
        ``posterior`` (kept when score > p) or ``keep_fraction`` (rank quantile in its ranked
        pool, kept when score <= f); see :mod:`bench.selection`.
    constant_state: the attributes a checkpoint leaves out; every other attribute set in
        ``__init__`` is checkpointed (:meth:`state_dict`), whatever training does with it.
    training_passes: the training cost of an epoch, in steps of one network over the training
        set (None: a schedule of its own, which :mod:`bench.cost_model` counts);
        eval_networks: the networks evaluated on the test set each epoch. Every registered
        method declares both, for the cost model.
    """

    Config: ClassVar[type] = NoConfig
    report: ClassVar[str] = "net1"
    score_kind: ClassVar[str | None] = None
    # attributes fixed at construction by the config and the run (a split, per-class counts,
    # a phase's first epoch): a checkpoint leaves them out, a fresh instance holds them already
    constant_state: ClassVar[tuple[str, ...]] = ()
    training_passes: ClassVar[float | None]
    eval_networks: ClassVar[int]

    def __init__(self, config: Any, ctx: "RunContext") -> None:
        self.config = config
        self.ctx = ctx

    @classmethod
    def setting_defaults(cls, *, dataset: str, noise_type: str,
                         noise_rate: float | None) -> dict:
        """Official per-setting hyper-parameters (e.g. JoCoR's lambda per noise rate)."""
        return {}

    # -- to implement -----------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> EpochResult:
        raise NotImplementedError

    # -- evaluation -------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """Named networks to evaluate (default: attributes net1, net2, ... that are modules)."""
        nets = {k: v for k, v in vars(self).items()
                if k.startswith("net") and isinstance(v, nn.Module)}
        return dict(sorted(nets.items()))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of each network (B, K) and, for ``report == 'ensemble'``, their sum."""
        out = {}
        for name, net in self.networks().items():
            net.eval()
            out[name] = net(x).float()
        if self.report == "ensemble":
            out["ensemble"] = torch.stack(list(out.values())).sum(0)
        return out

    def record_extras(self) -> dict:
        """Per-run results to keep in the record's ``method_state`` (e.g. an estimated T)."""
        return {}

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """What a checkpoint keeps: every instance attribute but ``config``, ``ctx`` and the
        declared ``constant_state``; networks and optimisers as their own ``state_dict()``.

        Taken by structure, not from a list, so that no state a method adds can be forgotten.
        The other values must be checkpoint data: None, booleans, numbers, strings, tensors and
        lists, tuples and dicts of them, or numpy arrays and scalars (kept as tensors and Python
        numbers, given back as numpy by :meth:`load_state_dict`). Anything else is a TypeError
        that names the attribute.
        """
        state: dict[str, Any] = {}
        for name, value in vars(self).items():
            if name in _RUN_ATTRIBUTES or name in self.constant_state:
                continue
            if isinstance(value, _STATEFUL):
                state[name] = value.state_dict()
            elif isinstance(value, np.ndarray):
                state[name] = _array_state(self, name, value)
            elif isinstance(value, np.generic):
                state[name] = value.item()
            else:
                _check_checkpoint_data(self, name, value)
                state[name] = value
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` into this instance (a fresh one of the same run).

        Values take the form the instance holds: a network or optimiser loads its state,
        numpy values become numpy again, and tensors go to the device of the tensor they
        replace (the run's device where the attribute holds no tensor).
        """
        for name, value in state.items():
            current = getattr(self, name, None)
            if isinstance(current, _STATEFUL):
                current.load_state_dict(value)
            elif isinstance(current, np.ndarray):
                setattr(self, name, value.numpy().astype(current.dtype, copy=False))
            elif isinstance(current, np.generic):
                setattr(self, name, type(current)(value))
            else:
                device = current.device if isinstance(current, torch.Tensor) else self.ctx.device
                setattr(self, name, _to_device(value, device))


# the run's inputs, which a fresh instance is built from
_RUN_ATTRIBUTES = frozenset({"config", "ctx"})
# attributes whose state a checkpoint keeps through their own state_dict()
_STATEFUL = (nn.Module, torch.optim.Optimizer)
_LEAVES = (type(None), bool, int, float, str, torch.Tensor)


def _check_checkpoint_data(method: Method, name: str, value: Any) -> None:
    """TypeError unless ``value`` is checkpoint data (see :meth:`Method.state_dict`)."""
    if isinstance(value, _LEAVES):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_checkpoint_data(method, name, item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_checkpoint_data(method, name, key)
            _check_checkpoint_data(method, name, item)
        return
    raise TypeError(
        f"{type(method).__name__}.{name} holds a {type(value).__name__}, which a checkpoint "
        "cannot keep: hold tensors, numbers, strings or None (or lists, tuples and dicts of "
        "them), or list the attribute in constant_state if training never changes it")


def _array_state(method: Method, name: str, value: np.ndarray) -> torch.Tensor:
    """A numpy attribute as the tensor a checkpoint keeps (a copy)."""
    try:
        return torch.tensor(value)
    except TypeError:
        raise TypeError(f"{type(method).__name__}.{name} is a numpy array of {value.dtype}, "
                        "which a checkpoint cannot keep") from None


def _to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss``: clear the gradients, back-propagate, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def config_fields(config_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls)]


# ---- methods that are a loss ------------------------------------------------------------------

class BatchLoss(NamedTuple):
    """What a :class:`BatchMethod`'s loss gives for one mini-batch of B samples.

    losses: one scalar per optimiser, in the order of :meth:`BatchMethod.optimizers`; the first
        is the epoch's reported ``train_loss``.
    selected: (B,) bool, the samples the method selected in this batch, or None.
    scores: (B,) float, the per-sample score behind the selection (NaN where unscored), or None.

    Under :func:`torch.func.vmap` (fused runs) every tensor gains a leading run dimension.
    """

    losses: tuple[torch.Tensor, ...]
    selected: torch.Tensor | None = None
    scores: torch.Tensor | None = None


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Logits for the loss in at least fp32: bf16/fp16 out of autocast is cast up, fp32 and
    fp64 are kept as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


class EpochTally:
    """One epoch's bookkeeping of a batch loop: the reported loss and, by dataset index, the
    selection and scores, for one run (``runs=None``) or for G fused runs (every tensor with a
    leading run dimension).

    per_sample: ``train_loss`` is the mean over samples (each batch weighted by its size), as
        Standard reports it; otherwise the mean over batches, as the small-loss codes print it.
    """

    def __init__(self, num_train: int, device: torch.device, *, runs: int | None = None,
                 per_sample: bool = False) -> None:
        self.lead: tuple[int, ...] = () if runs is None else (runs,)
        self.num_train = num_train
        self.device = device
        self.per_sample = per_sample
        self.total = torch.zeros(self.lead, device=device)
        self.count = 0
        self.selected: torch.Tensor | None = None
        self.scores: torch.Tensor | None = None

    def add(self, out: BatchLoss, idx: torch.Tensor) -> None:
        """Account one batch: ``out`` of the samples ``idx`` ((B,), or (G, B) when fused)."""
        weight = idx.shape[-1] if self.per_sample else 1
        self.total += out.losses[0].detach() * weight
        self.count += weight
        if out.selected is not None:
            if self.selected is None:
                self.selected = torch.zeros(self.lead + (self.num_train,), dtype=torch.bool,
                                            device=self.device)
            self.selected.scatter_(-1, idx, out.selected.detach())
        if out.scores is not None:
            if self.scores is None:
                self.scores = torch.full(self.lead + (self.num_train,), float("nan"),
                                         device=self.device)
            self.scores.scatter_(-1, idx, out.scores.detach().to(self.scores.dtype))

    def results(self, extra: dict[str, float]) -> list[EpochResult]:
        """One :class:`EpochResult` per run (a single one when not fused)."""
        totals = self.total.reshape(-1).cpu()
        rows = totals.shape[0]

        def row(t: torch.Tensor | None, g: int) -> torch.Tensor | None:
            return None if t is None else t.reshape(rows, self.num_train)[g]

        return [EpochResult(train_loss=float(totals[g]) / max(self.count, 1),
                            selected=row(self.selected, g), extra=dict(extra),
                            scores=row(self.scores, g))
                for g in range(rows)]


Forward = Callable[[torch.Tensor], Sequence[torch.Tensor]]
LossFn = Callable[[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor, Any], BatchLoss]


class BatchMethod(Method):
    """A method that is a loss: networks, an optimiser layout, a per-step state and a pure
    per-batch loss, trained by the one loop :meth:`fit_epoch`.

    num_networks: how many networks a run trains (``net1``, ``net2``, ...), all of the run's
        architecture, built in order (so their initial weights follow the run's seed).
    joint_optimizer: one optimiser over every network's parameters (``optimizer``, as JoCoR);
        otherwise one per network (``optimizer1``, ``optimizer2``, as Co-teaching), or
        ``optimizer`` when there is one network.
    fusable: :meth:`batch_loss` runs under :func:`torch.func.vmap` (no data-dependent shapes,
        no host synchronisation), so the seeds of a cell can train as one fused model.
    per_sample_loss: ``train_loss`` is the per-sample mean over the epoch (see
        :class:`EpochTally`).
    training_passes, eval_networks: ``num_networks`` each, set for every subclass: each network
        trains one step per batch and is evaluated.

    Subclasses implement :meth:`batch_loss` and, where the loss depends on the epoch or the
    step, :meth:`step_state` (and :meth:`epoch_extra` for per-epoch diagnostics). The loop
    counts ``global_step`` (iterations over the run), which the checkpoint keeps with every
    other attribute, so a resumed run continues the count.
    """

    num_networks: ClassVar[int] = 1
    joint_optimizer: ClassVar[bool] = False
    fusable: ClassVar[bool] = True
    per_sample_loss: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.training_passes = float(cls.num_networks)
        cls.eval_networks = cls.num_networks

    def __init__(self, config: Any, ctx: "RunContext") -> None:
        super().__init__(config, ctx)
        nets = [ctx.make_network() for _ in range(self.num_networks)]
        for i, net in enumerate(nets, 1):
            setattr(self, f"net{i}", net)
        if self.joint_optimizer or len(nets) == 1:
            self.optimizer = ctx.make_optimizer([p for net in nets for p in net.parameters()])
        else:
            for i, net in enumerate(nets, 1):
                setattr(self, f"optimizer{i}", ctx.make_optimizer(net.parameters()))
        self.global_step = 0

    # -- to implement -----------------------------------------------------------------------
    def step_state(self, epoch: int, step: int) -> Any:
        """The loss's per-step state at batch ``step`` (0-based) of ``epoch`` (a forget rate, a
        warm-up gate, ...): host values only, the same for every fused run of a cell."""
        return None

    def batch_loss(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor,
                   indices: torch.Tensor, state: Any) -> BatchLoss:
        """The loss of one mini-batch, a pure function of its arguments.

        logits: one (B, K) tensor per network, in fp32 (or fp64); labels: (B,) noisy labels;
        indices: (B,) dataset indices of the samples; state: :meth:`step_state`'s value.
        """
        raise NotImplementedError

    def epoch_extra(self, epoch: int) -> dict[str, float]:
        """Per-epoch diagnostics for ``EpochResult.extra`` (e.g. the forget rate)."""
        return {}

    # -- the loop ---------------------------------------------------------------------------
    def ordered_networks(self) -> list[nn.Module]:
        """``net1``, ``net2``, ...: the order of :meth:`batch_loss`'s logits."""
        return [getattr(self, f"net{i}") for i in range(1, self.num_networks + 1)]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The run's optimisers, in the order of ``BatchLoss.losses``."""
        if self.joint_optimizer or self.num_networks == 1:
            return [self.optimizer]
        return [getattr(self, f"optimizer{i}") for i in range(1, self.num_networks + 1)]

    def train_epoch(self, epoch: int) -> EpochResult:
        nets = self.ordered_networks()
        for net in nets:
            net.train()
        tally = EpochTally(self.ctx.num_train, self.ctx.device,
                           per_sample=self.per_sample_loss)
        self.fit_epoch(epoch, self.ctx.train_batches(),
                       forward=lambda x: [net(x) for net in nets], loss=self.batch_loss,
                       optimizers=self.optimizers(), tally=tally)
        return tally.results(self.epoch_extra(epoch))[0]

    def fit_epoch(self, epoch: int,
                  batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], *,
                  forward: Forward, loss: LossFn, optimizers: Sequence[torch.optim.Optimizer],
                  tally: EpochTally) -> None:
        """Train one epoch over ``batches`` of ``(x, labels, indices)``.

        forward: x -> one logits tensor per network, run under the context's autocast.
        loss: :meth:`batch_loss`, or its vmapped form for fused runs (then every tensor has a
            leading run dimension and the losses are (G,), one per run: their sum trains each
            run's parameters on its own loss).
        optimizers: the optimisers the losses' sum steps (one over stacked fused parameters
            acts as one per run: every supported optimiser updates elementwise).
        """
        for step, (x, y, idx) in enumerate(batches):
            state = self.step_state(epoch, step)
            with self.ctx.autocast():
                logits = tuple(forward(x))
            out = loss(tuple(upcast(z) for z in logits), y, idx, state)
            objective = out.losses[0]
            for term in out.losses[1:]:
                objective = objective + term
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            objective.sum().backward()
            for optimizer in optimizers:
                optimizer.step()
            tally.add(out, idx)
            self.global_step += 1
