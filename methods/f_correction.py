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
from the stage-1 network at the end of its epochs. The JoCoR and Co-teaching tables ran
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

import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from bench.registry import METHODS
from methods.base import EpochResult, Method, NoConfig

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


@METHODS.register("f_correction")
class FCorrection(Method):
    Config = FCorrectionConfig
    report = "net1"
    extra_state = ("transition_matrix",)

    def record_extras(self) -> dict:
        return {"estimated_transition_matrix": self.transition_matrix}

    @classmethod
    def setting_defaults(cls, *, dataset: str, noise_type: str,
                         noise_rate: float | None) -> dict:
        return {"filter_outlier": False} if dataset in ("cifar100", "cifar100n") else {}

    def __init__(self, config: FCorrectionConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.net1 = ctx.make_network()
        self.optimizer = ctx.make_optimizer(self.net1.parameters())
        self.transition_matrix: torch.Tensor | None = None

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
        fresh = self.ctx.make_network()
        self.net1.load_state_dict(fresh.state_dict())
        self.optimizer.state.clear()

    def train_epoch(self, epoch: int) -> EpochResult:
        ctx = self.ctx
        if (self.transition_matrix is None
                and epoch >= ctx.start_epoch + self.config.estimation_epochs):
            self.start_stage2()
        t = self.transition_matrix
        self.net1.train()
        total, batches = torch.zeros((), device=ctx.device), 0
        for x, y, _ in ctx.train_batches():
            with ctx.autocast():
                logits = self.net1(x).float()
            if t is None:
                loss = F.cross_entropy(logits, y)
            else:
                loss = forward_corrected_loss(logits, y, t).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
            batches += 1
        noise = None if t is None else 1.0 - float(t.diagonal().mean())
        return EpochResult(train_loss=float(total) / max(batches, 1),
                           extra={"estimated_noise_rate": noise,
                                  "stage": 1.0 if t is None else 2.0})


@METHODS.register("f_correction_nominal")
class FCorrectionNominal(FCorrection):
    """Forward correction with the noise model's known T from the first epoch (no estimation).

    Patrini et al.'s "forward T" (their tables' rows with the true matrix): one network trained
    for every epoch with ``-log((clip(softmax(f(x))) @ T)[y])``, T the configured noise model's
    ``T[clean, noisy]`` (``ctx.nominal_transition_matrix``; the realised matrix of the drawn
    labels differs from it by sampling only). A diagnostic beside ``f_correction``: the gap
    between the two is the cost of estimating T. Without a nominal matrix (human or instance
    noise) the run is refused.
    """

    Config = NoConfig

    @classmethod
    def setting_defaults(cls, *, dataset: str, noise_type: str,
                         noise_rate: float | None) -> dict:
        return {}

    def __init__(self, config: NoConfig, ctx) -> None:
        super().__init__(config, ctx)
        if ctx.nominal_transition_matrix is None:
            raise ConfigError(f"f_correction_nominal needs a noise model with a transition "
                              f"matrix; {ctx.noise_type!r} noise has none")
        # set before the first epoch, so train_epoch never enters stage 1
        self.transition_matrix = torch.as_tensor(ctx.nominal_transition_matrix,
                                                 dtype=torch.float32, device=ctx.device)

    def record_extras(self) -> dict:
        return {}   # T is the record's nominal_transition_matrix
