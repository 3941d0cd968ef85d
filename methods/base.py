"""What every method implements, and what the engine gives it.

A method sees the noisy labels only. It trains through a :class:`bench.engine.RunContext`
(``ctx``) that hands out networks, optimisers and batches already on the training device; the
engine, which alone knows the clean labels, evaluates and computes the selection diagnostics
from what :meth:`Method.train_epoch` returns.

A method file defines a frozen dataclass of hyper-parameters whose defaults are the official
code's values (each field citing its source) and a :class:`Method` subclass registered with
``@METHODS.register(name)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from bench.engine import RunContext


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
    """

    Config: ClassVar[type] = NoConfig
    report: ClassVar[str] = "net1"
    score_kind: ClassVar[str | None] = None
    # attributes fixed at construction by the config and the run (a split, per-class counts,
    # a phase's first epoch): a checkpoint leaves them out, a fresh instance holds them already
    constant_state: ClassVar[tuple[str, ...]] = ()

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


def config_fields(config_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls)]
