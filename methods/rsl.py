"""RSL (Gui, Wang, Tian, IJCAI 2021): class-wise selection by the mean loss over CE training.

As the official guixianjin/RSL ``main.py`` runs it (117ca13):

* Step 1: plain CE training for ``sel_epoch`` epochs; after every epoch each training sample's
  loss is recorded, in eval mode but on the AUGMENTED training loader (random crop/flip), as the
  code (``record_augment: false`` records on the un-augmented images). ``l_bar`` = the mean of
  the recorded losses.
* Step 2: for every noisy class i, rank the samples labelled i by ``l_bar`` and keep the
  ``num(i)`` smallest, ``num(i) = n_i * max(1 - (1 + beta) eta_i, (1 - beta)(1 - eta_i))``,
  beta = 0.2, truncated to an integer, with eta_i the class-i noise rate assumed KNOWN.
* Step 3 ("RSL" in the tables): a FRESH network trained with CE on the selected set only,
  under the same schedule (restarted); ``retrain_epochs`` of them.

eta_i as the code derives it from the nominal rate r: here
``eta_i = 1 - T[i, i] / sum_j T[j, i]``, the noisy fraction of the samples labelled i under the
nominal matrix T[clean, noisy] and a uniform class prior. It reproduces the code's values:
uniform noise (``symmetric_inclusive``) ``r (K-1)/K`` (the code's 0.9 r on CIFAR-10, 0.99 r on
CIFAR-100); ``pairflip`` r; ``asymmetric`` (RSL's "structured") per noisy class: r/(1+r) for
the classes that only receive flips (0, 1, 7), r for cat and dog, 0 for the others (the code's
``each_class_noise_rate``). ``symmetric`` gives r; ``instance`` r; ``none`` 0. Human noise has
no nominal rate: set ``assumed_noise_rate``.

n_i: the code fixes 4,500 (CIFAR-10) / 450 (CIFAR-100), i.e. N/K of its 45,000 training
images; here n_i = N/K of the run's training set, which is the code's 4,500 / 450 under its
protocol (``train.clean_val_fraction: 0.1``, the 5,000 clean validation images held out) and
5,000 / 500 without it. For structured noise the code instead balances the classes
(``class_balance_num``): available_i = (count of noisy label i) * prop_i, z_i = available_i /
prior_i, gamma = [1, (1 + max z / min z) / 2, max z / min z][gamma_index], num(i) =
min(gamma * min z * prior_i, available_i); ``class_balance`` (on for ``asymmetric`` noise, as
the code) does the same.

Epochs: the run's epochs are split, ``sel_epoch`` for step 1 then ``retrain_epochs`` for step 3;
the grid's ``epochs - start_epoch`` must equal their sum to reproduce the code (200 + 200). A
longer run is refused; a shorter one cuts step 3 short (smoke tests only). The engine's
learning-rate schedule is re-applied from 0 in step 3 (the code builds a new MultiStepLR); the
multistep and constant schedules are supported (the Co-teaching schedule is keyed to the run's
total epochs). The optimiser keeps its settings; its state (momentum) is cleared at the switch.

Protocol (``bench/grids/rsl_cifar10.yaml``): the code holds out 10% of every class as a clean
validation set (``train.clean_val_fraction: 0.1``, :func:`bench.data.hold_out_clean`), and its
"best" is the test accuracy at the step-3 epoch of best validation accuracy, the latest of equal
bests (``if val_accuracy >= val_best``): protocol ``clean_val``, with ``reported_model_from``
the first step-3 epoch. The network is ``wrn28_2`` with the code's own initialisation.

Option beyond the code: ``selection: global`` keeps the ``sum_i num(i)`` samples of smallest
mean loss over the whole training set, ignoring their labels: vanilla small-loss selection at
RSL's budget, to measure what the class-wise rule adds. The default ``classwise`` is the code.

Logged: ``selected`` is, during step 1, the selection the current mean loss would give (a
diagnostic), and during step 3 the selected training set; extra ``phase`` (1 or 3). During
step 1 ``scores`` is each sample's mean-loss rank quantile in the pool the selection ranks (its
noisy class, or the whole set under ``global``), for the selection curve; none in step 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from bench.noise import (asymmetric_map, class_map_matrix, pairflip_matrix, symmetric_matrix,
                         symmetric_inclusive_matrix)
from bench.registry import METHODS
from methods.base import EpochResult, Method, descend
from methods.small_loss import rank_quantiles, small_loss_indices


SELECTIONS = ("classwise", "global")


@dataclass(frozen=True)
class SelectionConfig:
    sel_epoch: int = 200               # main.py --sel_epoch (epochs averaged; step 1 length)
    beta: float = 0.2                  # main.py --beta
    gamma_index: int = 1               # main.py --gamma_index: gamma = (1 + max z/min z) / 2
    class_balance: bool = False        # main.py: class_balance_num for Structured only
    record_augment: bool = True        # util.py epoch_count_entropy_loss on noisy_trainloader
    assumed_noise_rate: float | None = None  # eta for noise without a nominal matrix (human)
    selection: str = "classwise"       # main.py: num(i) per noisy class; "global": same budget

    def __post_init__(self) -> None:
        if self.sel_epoch < 1 or self.gamma_index not in (0, 1, 2):
            raise ValueError("sel_epoch must be >= 1 and gamma_index one of 0, 1, 2")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")


@dataclass(frozen=True)
class RSLConfig(SelectionConfig):
    retrain_epochs: int = 200          # main.py step 3: epoch_num = 200


def class_noise_rates(*, noise_type: str, noise_rate: float | None, num_classes: int,
                      dataset: str, assumed: float | None = None) -> np.ndarray:
    """(K,) eta_i = noisy fraction of the samples labelled i under the nominal matrix."""
    if assumed is not None:
        return np.full(num_classes, float(assumed))
    if noise_type == "none":
        return np.zeros(num_classes)
    builders = {"symmetric": symmetric_matrix, "symmetric_inclusive": symmetric_inclusive_matrix,
                "pairflip": pairflip_matrix}
    if noise_type not in (*builders, "asymmetric", "instance"):
        raise ConfigError(f"RSL needs the class noise rates of {noise_type!r} noise: set the "
                          "method's assumed_noise_rate")
    if noise_rate is None:
        raise ConfigError(f"RSL needs the noise rate of {noise_type!r} noise")
    if noise_type == "instance":
        return np.full(num_classes, float(noise_rate))
    if noise_type == "asymmetric":
        t = class_map_matrix(num_classes, noise_rate, asymmetric_map(dataset, num_classes))
    else:
        t = builders[noise_type](num_classes, noise_rate)
    # rounded so that e.g. 0.5 * 0.9 comes out as the code's 0.45, not 0.44999999999999996
    return np.round(1.0 - np.diag(t) / t.sum(axis=0), 12)


def selection_counts(class_rates: np.ndarray, noisy_counts: np.ndarray, *, beta: float,
                     n_per_class: float, class_balance: bool = False,
                     gamma_index: int = 1) -> np.ndarray:
    """(K,) int num(i) of samples kept per noisy class."""
    prop = np.maximum(1 - (1 + beta) * class_rates, (1 - beta) * (1 - class_rates))
    if not class_balance:
        return (n_per_class * prop).astype(np.int64)
    prior = np.full(len(prop), 1.0 / len(prop))
    available = noisy_counts * prop
    z = available / prior
    gamma = [1.0, (1.0 + z.max() / z.min()) / 2, z.max() / z.min()][gamma_index]
    return np.minimum(gamma * z.min() * prior, available).astype(np.int64)


def class_ranks(mean_loss: torch.Tensor, noisy_labels: torch.Tensor,
                num_classes: int) -> torch.Tensor:
    """(N,) rank of every sample's ``mean_loss`` among the samples of its noisy class (0 the
    smallest)."""
    order = torch.argsort(mean_loss)
    order = order[torch.sort(noisy_labels[order], stable=True).indices]
    sorted_labels = noisy_labels[order]
    sizes = torch.bincount(noisy_labels, minlength=num_classes)
    starts = torch.cumsum(sizes, 0) - sizes
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order), device=order.device) - starts[sorted_labels]
    return ranks


def select_per_class(mean_loss: torch.Tensor, noisy_labels: torch.Tensor,
                     counts: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the ``counts[i]`` samples of smallest ``mean_loss`` among those labelled i."""
    ranks = class_ranks(mean_loss, noisy_labels, len(counts))
    return ranks < counts.to(ranks.device)[noisy_labels]


def selection_scores(mean_loss: torch.Tensor, noisy_labels: torch.Tensor, num_classes: int, *,
                     selection: str = "classwise") -> torch.Tensor:
    """(N,) rank quantile ``(rank + 1) / n`` of each sample's ``mean_loss`` in the pool the
    selection ranks: its noisy class (``classwise``) or the whole set (``global``)."""
    if selection == "global":
        return rank_quantiles(mean_loss)
    sizes = torch.bincount(noisy_labels, minlength=num_classes)
    ranks = class_ranks(mean_loss, noisy_labels, num_classes)
    return (ranks + 1).float() / sizes[noisy_labels].float()


def select(mean_loss: torch.Tensor, noisy_labels: torch.Tensor, counts: torch.Tensor, *,
           selection: str = "classwise") -> torch.Tensor:
    """(N,) bool selected set: ``counts[i]`` per noisy class i (``classwise``, RSL), or the
    ``counts.sum()`` smallest mean losses of the whole set (``global``, vanilla small-loss
    selection at the same budget)."""
    if selection == "classwise":
        return select_per_class(mean_loss, noisy_labels, counts)
    mask = torch.zeros_like(noisy_labels, dtype=torch.bool)
    mask[small_loss_indices(mean_loss, int(counts.sum()))] = True
    return mask


class SmallLossSelection(Method):
    """Step 1 and 2 of RSL, shared by ``rsl`` and ``rsl_wm``: CE epochs, loss record, selection."""

    constant_state = ("counts", "phase2_start", "reported_model_from")
    score_kind = "keep_fraction"   # step 1: mean-loss rank quantile in the selection's pool

    @classmethod
    def setting_defaults(cls, *, dataset: str, noise_type: str,
                         noise_rate: float | None) -> dict:
        return {"class_balance": noise_type == "asymmetric"}   # main.py: Structured only

    def __init__(self, config: SelectionConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.net1 = ctx.make_network()
        self.optimizer = ctx.make_optimizer(self.net1.parameters())
        self.loss_sum = torch.zeros(ctx.num_train, device=ctx.device)
        self.selected: torch.Tensor | None = None
        rates = class_noise_rates(noise_type=ctx.noise_type, noise_rate=ctx.noise_rate,
                                  num_classes=ctx.num_classes, dataset=ctx.dataset,
                                  assumed=config.assumed_noise_rate)
        noisy_counts = torch.bincount(ctx.noisy_labels, minlength=ctx.num_classes).cpu().numpy()
        self.counts = torch.as_tensor(selection_counts(
            rates, noisy_counts, beta=config.beta, n_per_class=ctx.num_train / ctx.num_classes,
            class_balance=config.class_balance, gamma_index=config.gamma_index),
            device=ctx.device)
        self.phase2_start = ctx.start_epoch + config.sel_epoch
        # the clean-validation selection looks only at the epochs of the reported network
        self.reported_model_from = self.phase2_start

    def check_epochs(self, phase2_epochs: int, name: str) -> None:
        total = self.ctx.epochs - self.ctx.start_epoch
        if total > self.config.sel_epoch + phase2_epochs:
            raise ConfigError(f"train.epochs - start_epoch is {total}, more than sel_epoch + "
                              f"{name} = {self.config.sel_epoch} + {phase2_epochs}")

    def selection_epoch(self, epoch: int) -> EpochResult:
        """One step-1 epoch: CE on all samples, then the loss record."""
        loss = self.ce_epoch(self.net1, self.optimizer)
        self.record_losses()
        mean_loss = self.loss_sum / (epoch - self.ctx.start_epoch + 1)
        mask = select(mean_loss, self.ctx.noisy_labels, self.counts,
                      selection=self.config.selection)
        scores = selection_scores(mean_loss, self.ctx.noisy_labels, self.ctx.num_classes,
                                  selection=self.config.selection)
        self.ctx.visited.fill_(True)  # the selection ranks every sample
        return EpochResult(train_loss=float(loss), selected=mask, extra={"phase": 1.0},
                           scores=scores)

    def finish_selection(self) -> None:
        mean_loss = self.loss_sum / self.config.sel_epoch
        self.selected = select(mean_loss, self.ctx.noisy_labels, self.counts,
                               selection=self.config.selection)

    def selected_set(self) -> torch.Tensor:
        """(N,) bool: the set step 2 selected; a RuntimeError while step 1 still runs."""
        if self.selected is None:
            raise RuntimeError("the selected set is made at the end of step 1 (finish_selection)")
        return self.selected

    def ce_epoch(self, net, optimizer, indices: torch.Tensor | None = None) -> torch.Tensor:
        ctx = self.ctx
        net.train()
        total, count = torch.zeros((), device=ctx.device), 0
        for x, y, _ in ctx.train_batches(indices=indices):
            with ctx.autocast():
                loss = F.cross_entropy(net(x).float(), y)
            descend(optimizer, loss)
            total += loss.detach() * len(y)
            count += len(y)
        return total / max(count, 1)

    @torch.no_grad()
    def record_losses(self) -> None:
        ctx = self.ctx
        self.net1.eval()
        for start in range(0, ctx.num_train, 1024):
            idx = torch.arange(start, min(start + 1024, ctx.num_train), device=ctx.device)
            x = ctx.fetch(idx, augment=self.config.record_augment)
            with ctx.autocast():
                logits = self.net1(x).float()
            self.loss_sum[idx] += F.cross_entropy(logits, ctx.noisy_labels[idx], reduction="none")


@METHODS.register("rsl")
class RSL(SmallLossSelection):
    Config = RSLConfig
    report = "net1"
    # coarse: step 1's CE steps and per-epoch loss record of every sample, then step 3's
    # retraining of a fresh network
    training_passes = 2.0
    eval_networks = 1

    def __init__(self, config: RSLConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.check_epochs(config.retrain_epochs, "retrain_epochs")

    def train_epoch(self, epoch: int) -> EpochResult:
        ctx = self.ctx
        if epoch < self.phase2_start:
            return self.selection_epoch(epoch)
        if epoch == self.phase2_start:
            self.finish_selection()
            self.net1.load_state_dict(ctx.make_network().state_dict())
            self.optimizer.state.clear()
        for group in self.optimizer.param_groups:
            group["lr"] = ctx.learning_rate(epoch - self.phase2_start, ctx.train_cfg.lr)
        selected = self.selected_set()
        loss = self.ce_epoch(self.net1, self.optimizer, torch.nonzero(selected).flatten())
        ctx.visited.fill_(True)
        return EpochResult(train_loss=float(loss), selected=selected, extra={"phase": 3.0})
