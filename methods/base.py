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
    """

    Config: ClassVar[type] = NoConfig
    report: ClassVar[str] = "net1"
    score_kind: ClassVar[str | None] = None
    # attributes beyond networks/optimisers that a checkpoint must keep (tensors, numbers)
    extra_state: ClassVar[tuple[str, ...]] = ()

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
        state: dict[str, Any] = {}
        for k, v in vars(self).items():
            if isinstance(v, (nn.Module, torch.optim.Optimizer)):
                state[k] = v.state_dict()
        for k in self.extra_state:
            state[k] = getattr(self, k)
        return state

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            current = getattr(self, k, None)
            if isinstance(current, (nn.Module, torch.optim.Optimizer)):
                current.load_state_dict(v)
            elif isinstance(v, torch.Tensor):
                setattr(self, k, v.to(self.ctx.device))
            else:
                setattr(self, k, v)


def config_fields(config_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls)]
