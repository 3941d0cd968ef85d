"""Forward correction, F-correction (Patrini et al., CVPR 2017), in two stages.

Stage 1 trains a network with plain cross-entropy on the noisy labels. Its softmax outputs on
all training samples then give the transition matrix: for each class i the "perfect example"
x_i of that class is picked and row i of T is its softmax vector, T[i, j] = p(j | x_i),
row-normalised (row-stochastic ``T[clean, noisy]``, the suite's convention). Stage 2 trains a
FRESH network with the forward-corrected loss ``-log((softmax(f(x)) @ T)[y])``.

Follows Patrini's official code, giorgiop/loss-correction (Keras):

* ``NoiseEstimator`` (``models.py``): with ``filter_outlier`` the example of class i is the
  sample with the highest p(i | x) among those below the 97th percentile of that column
  (``np.percentile(..., 97, interpolation='higher')``, values ``>=`` it set to 0); without it,
  the sample with the highest p(i | x). ``experiment.py`` sets ``filter_outlier`` True except
  for CIFAR-100 (here CIFAR-100 and CIFAR-100N, via ``setting_defaults``); the JoCoR code keeps
  the same per-dataset variable (``main.py``, unused there). Rows are then normalised
  (``row_normalize=True``, ``alpha=0``).
* Quirk kept (``inplace_filter_quirk: true``): ``robust_eta = eta_corr[:, i]`` is a numpy view,
  so zeroing the outliers of column i also zeroes them in the probability matrix that later
  rows are read from. ``false`` filters a copy.
* Forward loss (``loss.py`` ``robust('forward')``): the softmax output is clipped to
  [1e-7, 1 - 1e-7] (Keras' epsilon) before the product with T.
* T is estimated with the stage-1 network in eval mode on all training samples, without
  augmentation (Keras ``predict`` on ``X_train``).

Budget split (this suite's choice): the run's epochs ``start_epoch .. epochs-1`` are shared;
the first ``estimation_epochs`` (default 20) train the stage-1 network, T is estimated at the
start of the next epoch, and the stage-2 network (freshly initialised, its Adam state reset)
trains for the remaining epochs under the run's schedule at those epoch numbers (so the lr decay
starts at the same epoch as for every other method). Patrini trains each stage for a full
budget (e.g. 40 epochs on MNIST) and restores the stage-1 checkpoint with the lowest loss on a
10% noisy validation split before estimating; there is no validation split here, so T comes
from the stage-1 network at the end of its epochs. His protocol is the method
``f_correction_patrini`` below (a separate name, so that this one's run_ids stay). The JoCoR and Co-teaching tables ran
F-correction as a baseline whose code is not released: how they split the epochs, which
checkpoint they estimated from and whether they filtered outliers could not be determined.

Variant beyond the code (Patrini's "forward T" rows, with the true matrix): the method
``f_correction_nominal`` skips stage 1 and trains one network with the forward loss under the
noise model's configured T (``ctx.nominal_transition_matrix``, e.g. ``1 - r`` on the diagonal
and ``r / (K - 1)`` elsewhere for symmetric noise) for every epoch. It separates the error of
the estimate from what the correction itself achieves under the protocol; it needs a noise model
with a matrix (not human or instance noise).

Logged: ``extra.stage`` (1 or 2) and ``extra.estimated_noise_rate`` = 1 - mean(diag T), the
noise rate the estimate implies for balanced classes (None during stage 1). The method never
sees clean labels, so it computes no error against the true T (the engine records the realised
matrix). The full estimate is kept in ``transition_matrix`` (K, K), checkpointed. During stage 1
the test accuracy is the stage-1 network's. No selection: ``selected`` is None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from bench.registry import METHODS
from methods.base import EpochResult, Method, NoConfig, descend

KERAS_EPSILON = 1e-7  # loss.py clips the softmax to [eps, 1 - eps]


@dataclass(frozen=True)
class FCorrectionConfig:
    estimation_epochs: int = 20        # suite's choice: CE epochs before T is estimated
    filter_outlier: bool = True        # experiment.py: True, False for CIFAR-100
    outlier_percentile: float = 97.0   # models.py NoiseEstimator: np.percentile(..., 97)
    inplace_filter_quirk: bool = True  # models.py: filtering a numpy view edits eta_corr

    def __post_init__(self) -> None:
        if self.estimation_epochs < 1:
            raise ValueError(f"estimation_epochs must be >= 1, got {self.estimation_epochs}")
        if not 0.0 < self.outlier_percentile <= 100.0:
            raise ValueError("outlier_percentile must be in (0, 100]")


def estimate_transition_matrix(probs: torch.Tensor, *, filter_outlier: bool = True,
                               percentile: float = 97.0,
                               inplace_quirk: bool = True) -> torch.Tensor:
    """Row-stochastic (K, K) estimate of T from softmax outputs ``probs`` (N, K).

    Row i is the softmax vector of class i's "perfect example": the argmax of column i, or,
    with ``filter_outlier``, the argmax among the values below the column's ``percentile``
    (``higher`` interpolation). ``inplace_quirk``: the zeroed outliers stay zeroed in ``probs``
    for the rows picked later, as the numpy view in ``NoiseEstimator.fit``.
    """
    eta = probs.detach().float().clone()
    k = eta.shape[1]
    t = torch.empty(k, k, dtype=eta.dtype, device=eta.device)
    for i in range(k):
        column = eta[:, i]
        if filter_outlier:
            threshold = torch.quantile(column, percentile / 100.0, interpolation="higher")
            column = column.masked_fill(column >= threshold, 0.0)
            if inplace_quirk:
                eta[:, i] = column
        t[i] = eta[torch.argmax(column)]
    return t / t.sum(1, keepdim=True)


def forward_corrected_loss(logits: torch.Tensor, labels: torch.Tensor,
                           transition_matrix: torch.Tensor, *,
                           eps: float = KERAS_EPSILON) -> torch.Tensor:
    """(B,) -log((clip(softmax(logits)) @ T)[y]): the forward-corrected cross-entropy."""
    probs = F.softmax(logits, dim=1).clamp(eps, 1.0 - eps)
    noisy_probs = probs @ transition_matrix.to(probs.dtype)
    return -torch.log(noisy_probs.gather(1, labels[:, None]).squeeze(1))


class ForwardCorrection(Method):
    """One network ``net1`` trained on :meth:`batch_loss`: cross-entropy while
    ``transition_matrix`` is None, the forward-corrected loss once it is set.

    The training loop the methods below share; each decides where its T comes from.
    """

    report = "net1"
    training_passes = 1.0    # one network; the two stages share the run's epochs
    eval_networks = 1
    train_pool: torch.Tensor | None = None   # the samples trained on (None: all)
    network_name: str | None = None          # None: the run's network

    def __init__(self, config: object, ctx) -> None:
        super().__init__(config, ctx)
        self.net1 = ctx.make_network()
        self.optimizer = ctx.make_optimizer(self.net1.parameters())
        self.transition_matrix: torch.Tensor | None = None

    def batch_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch: cross-entropy in stage 1, the forward loss in stage 2."""
        if self.transition_matrix is None:
            return F.cross_entropy(logits, labels)
        return forward_corrected_loss(logits, labels, self.transition_matrix).mean()

    def epoch_extra(self, epoch: int) -> dict:
        t = self.transition_matrix
        return {"estimated_noise_rate": None if t is None else 1.0 - float(t.diagonal().mean()),
                "stage": 1.0 if t is None else 2.0}

    def train_epoch(self, epoch: int) -> EpochResult:
        ctx = self.ctx
        self.net1.train()
        total, batches = torch.zeros((), device=ctx.device), 0
        for x, y, _ in ctx.train_batches(indices=self.train_pool):
            with ctx.autocast():
                logits = self.net1(x).float()
            loss = self.batch_loss(logits, y)
            descend(self.optimizer, loss)
            total += loss.detach()
            batches += 1
        return EpochResult(train_loss=float(total) / max(batches, 1),
                           extra=self.epoch_extra(epoch))


@METHODS.register("f_correction")
class FCorrection(ForwardCorrection):
    Config = FCorrectionConfig

    def record_extras(self) -> dict:
        return {"estimated_transition_matrix": self.transition_matrix}

    @classmethod
    def setting_defaults(cls, *, dataset: str, noise_type: str,
                         noise_rate: float | None) -> dict:
        return {"filter_outlier": False} if dataset in ("cifar100", "cifar100n") else {}

    @torch.no_grad()
    def estimate(self) -> torch.Tensor:
        """T from the current network's softmax on every training sample (eval mode)."""
        self.net1.eval()
        chunks = []
        for x, _, _ in self.ctx.eval_train_batches():
            with self.ctx.autocast():
                chunks.append(F.softmax(self.net1(x).float(), dim=1))
        cfg = self.config
        return estimate_transition_matrix(torch.cat(chunks), filter_outlier=cfg.filter_outlier,
                                          percentile=cfg.outlier_percentile,
                                          inplace_quirk=cfg.inplace_filter_quirk)

    def start_stage2(self) -> None:
        """Estimate T, then restart from a freshly initialised network and optimiser state."""
        self.transition_matrix = self.estimate()
        fresh = self.ctx.make_network(self.network_name)
        self.net1.load_state_dict(fresh.state_dict())
        self.optimizer.state.clear()

    def train_epoch(self, epoch: int) -> EpochResult:
        """Stage 1 until ``estimation_epochs`` have run, then T is estimated and stage 2 starts."""
        if (self.transition_matrix is None
                and epoch >= self.ctx.start_epoch + self.config.estimation_epochs):
            self.start_stage2()
        return super().train_epoch(epoch)


@METHODS.register("f_correction_nominal")
class FCorrectionNominal(ForwardCorrection):
    """Forward correction with the noise model's known T from the first epoch (no estimation).

    Patrini et al.'s "forward T" (their tables' rows with the true matrix): one network trained
    for every epoch with ``-log((clip(softmax(f(x))) @ T)[y])``, T the configured noise model's
    ``T[clean, noisy]`` (``ctx.nominal_transition_matrix``; the realised matrix of the drawn
    labels differs from it by sampling only). A diagnostic beside ``f_correction``: the gap
    between the two is the cost of estimating T. Without a nominal matrix (human or instance
    noise) the run is refused. Nothing is kept in ``method_state``: T is the record's
    ``nominal_transition_matrix``.
    """

    Config = NoConfig

    def __init__(self, config: NoConfig, ctx) -> None:
        super().__init__(config, ctx)
        if ctx.nominal_transition_matrix is None:
            raise ConfigError(f"f_correction_nominal needs a noise model with a transition "
                              f"matrix; {ctx.noise_type!r} noise has none")
        # set before the first epoch: every epoch trains the forward loss
        self.transition_matrix = torch.as_tensor(ctx.nominal_transition_matrix,
                                                 dtype=torch.float32, device=ctx.device)


@dataclass(frozen=True)
class FCorrectionPatriniConfig(FCorrectionConfig):
    estimation_epochs: int = 40        # models.py MNISTModel.epochs = 40 (stage 1)
    val_fraction: float = 0.1          # experiment.py val_split = 0.1
    split_seed: int = 101              # models.py get_data: RandomState(101).permutation
    network: str = "mlp_patrini"       # models.py MNISTModel; "" keeps the run's network

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


def noisy_validation_split(num_train: int, fraction: float, seed: int,
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: Keras' ``validation_split`` after Patrini's permutation.

    ``get_data`` permutes the training set with ``RandomState(seed)``; ``fit`` then holds out
    its last ``fraction`` (``split_at = int(N * (1 - fraction))``), noisy labels included.
    """
    perm = np.random.RandomState(seed).permutation(num_train)
    split_at = int(num_train * (1.0 - fraction))
    return perm[:split_at], perm[split_at:]


@METHODS.register("f_correction_patrini")
class FCorrectionPatrini(FCorrection):
    """F-correction under Patrini's own protocol (giorgiop/loss-correction, Keras).

    * ``experiment.py`` holds out a 10% split of the (noisy) training set (``val_split``,
      Keras ``validation_split``: the last 10% after ``get_data``'s ``RandomState(101)``
      permutation); both stages train on the other 90%.
    * Stage 1 trains ``crossentropy`` (``loss.py``: softmax clipped to [1e-7, 1 - 1e-7], as the
      forward loss) for ``estimation_epochs`` = 40 (``MNISTModel.epochs``); ``fit_model``'s
      ``ModelCheckpoint(monitor='val_loss', save_best_only=True)`` keeps the epoch of lowest
      validation loss (the first, on ties), and ``load_model`` restores it. T is estimated from
      that checkpoint on all training samples, validation split included (``est.fit(X_train)``).
    * Stage 2 (``est_forward``) builds a fresh network, trains the forward loss for the
      remaining epochs (40 more in the grid) and again keeps the checkpoint of lowest
      validation loss, the forward loss on the noisy split. ``evaluate_model`` scores that
      checkpoint: the run's reported accuracy is the test accuracy at that epoch (protocol
      ``val_loss``), read from the curve with the ``extra.val_loss`` the method logs each epoch.
    * Network ``mlp_patrini`` (784-128-128-10, dropout 0.2, ``he_normal``) and Keras' Adagrad
      (lr 0.01) are set by the grid (``network`` here, ``train.optimizer: adagrad``), as are
      his batch size (128, ``num_batch``), epoch without iteration cap and last partial batch,
      and the full test set.

    Kept from the suite: the run's noisy labels (the grid's noise model and noise seed, not
    Patrini's ``noisify_with_P(random_state=run)``). Logged per epoch: ``extra.val_loss``,
    ``extra.stage``, ``extra.estimated_noise_rate``. Recorded in ``method_state``: the estimate
    of T and the selected epochs of both stages.
    """

    Config = FCorrectionPatriniConfig
    constant_state = ("network_name", "train_pool", "val_idx")
    training_passes = 0.93   # trains 90%, one forward of the other 10%

    def __init__(self, config: FCorrectionPatriniConfig, ctx) -> None:
        Method.__init__(self, config, ctx)
        self.network_name = config.network or None
        self.net1 = ctx.make_network(self.network_name)
        self.optimizer = ctx.make_optimizer(self.net1.parameters())
        self.transition_matrix: torch.Tensor | None = None
        train_idx, val_idx = noisy_validation_split(ctx.num_train, config.val_fraction,
                                                    config.split_seed)
        self.train_pool = torch.as_tensor(train_idx)
        self.val_idx = torch.as_tensor(val_idx, device=ctx.device)
        self.best_state: dict | None = None
        self.best_val_loss = float("inf")
        self.best_epoch = -1
        self.stage1_epoch = -1

    def record_extras(self) -> dict:
        return {"estimated_transition_matrix": self.transition_matrix,
                "stage1_selected_epoch": self.stage1_epoch, "selected_epoch": self.best_epoch}

    def batch_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, labels).mean()

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B,) the stage's Keras loss: clipped cross-entropy, then the forward loss."""
        t = self.transition_matrix
        if t is None:
            t = torch.eye(logits.shape[1], device=logits.device)
        return forward_corrected_loss(logits, labels, t)

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss of the stage on the noisy validation split, dropout off (Keras)."""
        self.net1.eval()
        total = torch.zeros((), device=self.ctx.device)
        for chunk in self.val_idx.split(1024):
            x = self.ctx.fetch(chunk, augment=False)
            with self.ctx.autocast():
                logits = self.net1(x).float()
            total += self.loss(logits, self.ctx.noisy_labels[chunk]).sum()
        return float(total) / len(self.val_idx)

    def keep_if_best(self, epoch: int, val_loss: float) -> None:
        """``ModelCheckpoint(save_best_only=True)``: keep the epoch whose loss is strictly lower."""
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_epoch = val_loss, epoch
            self.best_state = {k: v.detach().clone() for k, v in self.net1.state_dict().items()}

    def start_stage2(self) -> None:
        """Restore stage 1's selected checkpoint, estimate T, restart the selection."""
        self.net1.load_state_dict(self.best_state)
        self.stage1_epoch = self.best_epoch
        super().start_stage2()
        self.best_state, self.best_val_loss, self.best_epoch = None, float("inf"), -1

    def epoch_extra(self, epoch: int) -> dict:
        """Score the epoch on the validation split and keep the checkpoint it selects."""
        val_loss = self.validation_loss()
        self.keep_if_best(epoch, val_loss)
        return {**super().epoch_extra(epoch), "val_loss": val_loss}
