"""RSL_WM (Gui, Wang, Tian, IJCAI 2021): Weighted MixMatch on RSL's class-wise selection.

Steps 1-2 are RSL's (:mod:`methods.rsl`): ``sel_epoch`` CE epochs with the loss record, then the
class-wise selection. The selected samples become MixMatch's labelled set, all others its
unlabelled set, and a fresh network is trained with MixMatch as the official
guixianjin/RSL ``Weighted_MixMatch_train_CIFAR.py`` does (117ca13):

* Labelled batches are drawn WITH replacement, n_labelled draws per pass, by the weights
  ``w = exp(-kappa (l_bar - l_min(i)) / (l_max(i) - l_min(i)))``, kappa = -ln 0.7 (so w in
  [0.7, 1]), where l_min(i) / l_max(i) are the smallest and largest mean loss over ALL samples
  labelled i (``main.py`` step 2; ``WeightedRandomSampler``); the labelled and unlabelled
  loaders drop their last partial batch and restart when they run out.
* Per iteration (``iterations`` = 1024 per epoch, ``--val-iteration``): one augmented view of
  64 labelled samples with their one-hot noisy labels, two views of 64 unlabelled samples whose
  guess is the mean softmax of the network (train mode) over both views, sharpened with
  T = 0.5; ``lambda' = max(lambda, 1 - lambda)``, ``lambda ~ Beta(0.75, 0.75)``; the 3B inputs
  and targets are mixed with one permutation and passed through the network in three chunks
  with MixMatch's interleave (BatchNorm statistics); ``L_x`` soft CE, ``L_u`` MSE, loss =
  L_x + w_u L_u with ``w_u = 75 * clip((epoch + batch / 1024) / 500, 0, 1)`` (ramped over the
  whole MixMatch training; no uniform-prior penalty).
* Adam lr 0.002 (its own optimiser, no schedule: the grid's optimiser and schedule drive step
  1 only). After every step the EMA model is updated with decay 0.999 and then the raw weights
  are multiplied by ``1 - 0.02 * lr``; at the end of each epoch the raw model's BatchNorm
  buffers are copied into the EMA model. The EMA model is the one evaluated (``net1``).
* The code sets lambda_u = 75 on both datasets (a comment mentions 75 -> 150 for CIFAR-100).

Epochs: ``epochs - start_epoch`` must equal ``sel_epoch + mixmatch_epochs`` to reproduce the code
(200 + 500, with 1024 iterations each); a longer run is refused, a shorter one stops MixMatch
early (smoke tests only; the ramp still spans ``mixmatch_epochs``). ``max_iters_per_epoch``
also caps ``iterations``.

Protocol: as RSL's (:mod:`methods.rsl`), 10% of every class held out clean
(``train.clean_val_fraction: 0.1``); protocol ``clean_val`` picks among the MixMatch epochs the
EMA model's best validation accuracy, the first of equal bests (``is_best = val_acc >
best_acc``).

Deviations: the code's crop is reflect-padded by 4 with offsets 0..7 (``np.random.randint(0,
h - new_h)`` excludes 8); here the engine's zero-padded crop with offsets 0..8 is used. Labelled
and unlabelled sets need at least ``batch_size`` samples each (the code's loaders would be empty
otherwise).
Logged: ``selected`` as RSL; extra ``phase`` (1 or 4) and ``lambda_u`` (at the epoch start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.registry import METHODS
from methods.base import EpochResult, descend
from methods.mixmatch import (cycling_batches, interleave, linear_rampup, mix_coefficient,
                              mixup, sharpen, soft_cross_entropy, softmax_mse)
from methods.rsl import SelectionConfig, SmallLossSelection


@dataclass(frozen=True)
class RSLWMConfig(SelectionConfig):
    kappa: float = -math.log(0.7)      # main.py --kappa
    mixmatch_epochs: int = 500         # Weighted_MixMatch_train_CIFAR.py --epochs 500
    iterations: int = 1024             # --val-iteration
    batch_size: int = 64               # --batch-size
    lr: float = 0.002                  # --lr (Adam)
    alpha: float = 0.75                # --alpha
    temperature: float = 0.5           # --T
    lambda_u: float = 75.0             # args.lambda_u = 75 (both datasets)
    ema_decay: float = 0.999           # --ema-decay
    weight_decay_factor: float = 0.02  # WeightEMA: wd = 0.02 * lr applied to the raw weights

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mixmatch_epochs < 1 or self.iterations < 1 or self.batch_size < 1:
            raise ValueError("mixmatch_epochs, iterations and batch_size must be >= 1")


def loss_weights(mean_loss: torch.Tensor, noisy_labels: torch.Tensor, *, kappa: float,
                 num_classes: int) -> torch.Tensor:
    """(N,) ``exp(-kappa (l - l_min(y)) / (l_max(y) - l_min(y)))``, min/max per noisy class."""
    lo = torch.full((num_classes,), float("inf"), device=mean_loss.device)
    hi = torch.full((num_classes,), float("-inf"), device=mean_loss.device)
    lo = lo.scatter_reduce(0, noisy_labels, mean_loss, reduce="amin")
    hi = hi.scatter_reduce(0, noisy_labels, mean_loss, reduce="amax")
    spread = hi[noisy_labels] - lo[noisy_labels]
    # a class whose losses are all equal (e.g. one sample) would divide 0 by 0: weight 1
    t = torch.where(spread > 0, (mean_loss - lo[noisy_labels]) / spread.clamp(min=1e-12), 0.0)
    return torch.exp(-kappa * t)


@METHODS.register("rsl_wm")
class RSLWeightedMixMatch(SmallLossSelection):
    Config = RSLWMConfig
    report = "net1"
    # coarse: MixMatch's steps carry three batches per iteration (one labelled view, two
    # unlabelled) after RSL's step 1
    training_passes = 3.0
    eval_networks = 1          # the EMA model (net1)
    clean_val_ties = "first"       # Weighted_MixMatch_train_CIFAR.py: is_best = val_acc > best_acc

    def __init__(self, config: RSLWMConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.check_epochs(config.mixmatch_epochs, "mixmatch_epochs")
        # a fresh network for MixMatch; net1 becomes its EMA copy at the switch
        self.model = ctx.make_network()
        self.mixmatch_optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.weights: torch.Tensor | None = None

    def train_epoch(self, epoch: int) -> EpochResult:
        if epoch < self.phase2_start:
            return self.selection_epoch(epoch)
        if epoch == self.phase2_start:
            self.finish_selection()
            self.weights = loss_weights(self.loss_sum / self.config.sel_epoch,
                                        self.ctx.noisy_labels, kappa=self.config.kappa,
                                        num_classes=self.ctx.num_classes)
            self.net1.load_state_dict(self.model.state_dict())   # WeightEMA.__init__ copies
        mm_epoch = epoch - self.phase2_start
        loss = self.mixmatch_epoch(mm_epoch)
        self.ctx.visited.fill_(True)
        return EpochResult(train_loss=float(loss), selected=self.selected,
                           extra={"phase": 4.0, "lambda_u": self.lambda_u_at(mm_epoch)})

    def selection_weights(self) -> torch.Tensor:
        """(N,) the labelled samples' draw weights; a RuntimeError before the selection is made."""
        if self.weights is None:
            raise RuntimeError("the draw weights are set with the selection, at the end of step 1")
        return self.weights

    def lambda_u_at(self, mm_epoch: float) -> float:
        cfg = self.config
        return cfg.lambda_u * linear_rampup(mm_epoch, length=cfg.mixmatch_epochs)

    def mixmatch_epoch(self, mm_epoch: int) -> torch.Tensor:
        ctx, cfg = self.ctx, self.config
        model, ema, opt = self.model, self.net1, self.mixmatch_optimizer
        b, k = cfg.batch_size, ctx.num_classes
        selected, weights = self.selected_set(), self.selection_weights()
        lab_idx = torch.nonzero(selected).flatten()
        unl_idx = torch.nonzero(~selected).flatten()
        labelled = cycling_batches(lab_idx, b, generator=ctx.aug_gen, drop_last=True,
                                   weights=weights[lab_idx])
        unlabelled = cycling_batches(unl_idx, b, generator=ctx.aug_gen, drop_last=True)
        iterations = cfg.iterations
        if ctx.train_cfg.max_iters_per_epoch is not None:
            iterations = min(iterations, ctx.train_cfg.max_iters_per_epoch)
        params = [p for p in model.parameters()]
        ema_params = [p for p in ema.parameters()]
        decay = 1.0 - cfg.weight_decay_factor * cfg.lr
        model.train()
        total = torch.zeros((), device=ctx.device)
        for it in range(iterations):
            x_idx, u_idx = next(labelled), next(unlabelled)
            x = ctx.fetch(x_idx)
            u1, u2 = ctx.fetch(u_idx), ctx.fetch(u_idx)
            with torch.no_grad(), ctx.autocast():
                p = (torch.softmax(model(u1).float(), 1) + torch.softmax(model(u2).float(), 1)) / 2
                guess = sharpen(p, temperature=cfg.temperature)
            targets = torch.cat([F.one_hot(ctx.noisy_labels[x_idx], k).float(), guess, guess])
            lam = mix_coefficient(ctx.np_rng, alpha=cfg.alpha)
            perm = torch.randperm(3 * b, device=ctx.device, generator=ctx.aug_gen)
            mixed_x, mixed_t = mixup(torch.cat([x, u1, u2]), targets, lam=lam, perm=perm)
            chunks = interleave(list(torch.split(mixed_x, b)), b)
            with ctx.autocast():
                logits = interleave([model(c).float() for c in chunks], b)
            loss_x = soft_cross_entropy(logits[0], mixed_t[:b])
            loss_u = softmax_mse(torch.cat(logits[1:]), mixed_t[b:])
            loss = loss_x + self.lambda_u_at(mm_epoch + it / cfg.iterations) * loss_u
            descend(opt, loss)
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, params, 1.0 - cfg.ema_decay)
                torch._foreach_mul_(params, decay)
            total += loss.detach()
        with torch.no_grad():  # WeightEMA.step(bn=True): BatchNorm buffers to the EMA model
            for dst, src in zip(ema.buffers(), model.buffers()):
                dst.copy_(src)
        return total / iterations
