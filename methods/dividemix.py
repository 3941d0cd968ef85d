"""DivideMix (Li, Socher, Hoi, ICLR 2020), as the official LiJunnan1992/DivideMix code trains it.

Two networks. Warm-up: each is trained alone with cross-entropy on all the data. Then every
epoch: each network's per-sample losses are fitted with a two-component GMM whose low-mean
component gives every sample a clean probability w; the samples with w > ``p_threshold`` are
labelled, the rest unlabelled; each network is trained with MixMatch on its PEER's division
(co-divide) while the peer is in eval mode (``Train_cifar.py`` ``train``, ``eval_train``,
``warmup``; ``dataloader_cifar.py``).

Faithful to the code (d9d3058):

* Warm-up for ``warm_up`` epochs (10 CIFAR-10, 30 CIFAR-100), net1 then net2, each with its own
  shuffled pass of the grid's ``batch_size`` (the code's 2 x 64 = 128), mean CE. The
  negative-entropy confidence penalty ``mean sum p log p`` is added only for asymmetric noise:
  the code branches on its ``noise_mode == 'asym'`` (``confidence_penalty`` per setting).
* Division: per-sample CE in eval mode without augmentation over the whole training set,
  min-max normalised; at noise rate 0.9 only (``args.r == 0.9``) the GMM sees the mean of the
  last 5 normalised loss vectors (``loss_history`` per setting). Both branches read the KNOWN
  noise rate and type: hyper-parameter leakage kept from the code, as are ``lambda_u`` and
  ``p_threshold`` per setting. GMM: sklearn, 2 components, max_iter 10, tol 1e-2,
  reg_covar 5e-4; the code passes no random_state (k-means initialisation from the global
  numpy state); here each fit gets a seed drawn from ``ctx.np_rng``, so runs are reproducible.
* MixMatch per batch of ``batch_size`` (64) labelled + 64 unlabelled samples, two augmented
  views each. Label co-refinement ``w y + (1 - w) mean(softmax(net(x1)), softmax(net(x2)))``
  and co-guessing ``mean of softmax(net(u1, u2)) and softmax(peer(u1, u2))``, both sharpened
  with T; ``lambda ~ Beta(4, 4)``, ``lambda' = max(lambda, 1 - lambda)``, 4B inputs and targets
  mixed with one permutation; one forward pass of the 4B mixed inputs; ``L_x`` soft CE,
  ``L_u`` MSE; ``lambda_u`` ramped linearly over 16 epochs after warm-up with the fractional
  epoch ``epoch + batch_idx / (N_labelled // 64 + 1)``; uniform-prior penalty
  ``sum_c pi_c log(pi_c / mean p_c)`` over all 4B mixed predictions; loss = L_x + lambda_u L_u +
  penalty. The labelled loader keeps its last partial batch (ceil(N_labelled / 64) iterations);
  the unlabelled one restarts with a new shuffle when it runs out.
* Co-guessing and co-refinement run the CURRENT network in train mode (BatchNorm on batch
  statistics, running statistics updated), as the code (issue #44; the author says eval mode is
  safe): ``guess_eval_mode: true`` uses eval mode for those passes. The peer is in eval mode.
* ``lambda_u`` per setting (paper Appendix B Table 7, as the reference lists it): CIFAR-10
  sym 0.2 -> 0, 0.5 -> 25, 0.8 -> 25, 0.9 -> 50, asym 0.4 -> 0; CIFAR-100 sym 0.2 -> 25,
  0.5/0.8/0.9 -> 150; elsewhere the argparse default 25. ``p_threshold`` 0.6 at rate 0.9 (author,
  issue #10), else 0.5. DivideMix's ``sym`` is the ``symmetric_inclusive`` noise type, its
  ``asym`` the ``asymmetric`` one.
* ``report = "ensemble"``: the test accuracy of the summed logits of both networks.

Deviations: where the peer's division leaves no unlabelled sample the code would crash; here the
batch is mixed from the labelled views alone (L_u = 0). Mixup permutations come from the
device generator and lambda from ``ctx.np_rng`` (the code: torch's and numpy's global states).

Logged: ``selected`` is net1's labelled set (the division of net1's own GMM, on which net2 is
trained; the engine scores its size and label precision), ``scores`` net1's clean probability
(the selection curve over p = 0, ..., 0.9; none during warm-up); extra ``labelled_fraction`` (of
net1's division), ``labelled_fraction_net2`` and ``lambda_u`` (its value at the epoch start);
``train_loss`` is net1's mean loss (CE during warm-up).
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from bench.registry import METHODS
from methods.base import EpochResult, Method, descend
from methods.mixmatch import (cycling_batches, linear_rampup, mix_coefficient, mixup, sharpen,
                              soft_cross_entropy, softmax_mse)

# Train_cifar.py, Table 7 of the paper's Appendix B (values through the issues, see docstring)
LAMBDA_U = {
    ("cifar10", "symmetric_inclusive"): {0.2: 0.0, 0.5: 25.0, 0.8: 25.0, 0.9: 50.0},
    ("cifar10", "asymmetric"): {0.4: 0.0},
    ("cifar100", "symmetric_inclusive"): {0.2: 25.0, 0.5: 150.0, 0.8: 150.0, 0.9: 150.0},
}


@dataclass(frozen=True)
class DivideMixConfig:
    warm_up: int = 10                  # Train_cifar.py: 10 (cifar10), 30 (cifar100)
    lambda_u: float = 25.0             # --lambda_u default; per setting from Table 7
    p_threshold: float = 0.5           # --p_threshold; 0.6 at 90% noise (issue #10)
    temperature: float = 0.5           # --T
    alpha: float = 4.0                 # --alpha (Beta(alpha, alpha) of mixup)
    batch_size: int = 64               # --batch_size: labelled and unlabelled batch each
    rampup_length: float = 16.0        # linear_rampup(rampup_length=16)
    confidence_penalty: bool = False   # NegEntropy in warm-up; True for asym (as the code)
    loss_history: int = 1              # eval_train: 5 when args.r == 0.9, else the last only
    gmm_max_iter: int = 10             # GaussianMixture(max_iter=10, ...)
    gmm_tol: float = 1e-2              # GaussianMixture(tol=1e-2)
    gmm_reg_covar: float = 5e-4        # GaussianMixture(reg_covar=5e-4)
    guess_eval_mode: bool = False      # False: net.train() while guessing, as the code (#44)

    def __post_init__(self) -> None:
        if self.warm_up < 0 or self.loss_history < 1 or self.batch_size < 1:
            raise ValueError("warm_up must be >= 0, loss_history and batch_size >= 1")
        if not 0.0 <= self.p_threshold <= 1.0 or self.temperature <= 0 or self.alpha <= 0:
            raise ValueError("p_threshold must be in [0, 1], temperature and alpha > 0")


def gmm_clean_probability(loss: np.ndarray, *, random_state: int, max_iter: int = 10,
                          tol: float = 1e-2, reg_covar: float = 5e-4) -> np.ndarray:
    """(N,) posterior of the lower-mean component of a 2-component GMM fitted to ``loss`` (N,)."""
    x = np.asarray(loss).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar,
                          random_state=random_state)
    with warnings.catch_warnings():  # 10 EM steps, as the official code: rarely converged
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(x)
    return gmm.predict_proba(x)[:, gmm.means_.argmin()]


def min_max_normalise(loss: torch.Tensor) -> torch.Tensor:
    return (loss - loss.min()) / (loss.max() - loss.min())


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Confidence penalty ``mean_b sum_k p log p`` (NegEntropy of the code)."""
    probs = torch.softmax(logits, dim=1)
    return torch.mean(torch.sum(probs.log() * probs, dim=1))


@METHODS.register("dividemix")
class DivideMix(Method):
    Config = DivideMixConfig
    report = "ensemble"
    training_passes = None     # warm-up then co-divide epochs: cost_model._dividemix_passes
    eval_networks = 2          # net1 and net2, whose summed logits are reported
    score_kind = "posterior"       # net1's GMM clean probability (its division)

    @classmethod
    def setting_defaults(cls, *, dataset: str, noise_type: str,
                         noise_rate: float | None) -> dict:
        family = "cifar100" if dataset.startswith("cifar100") else dataset
        out: dict = {"warm_up": 30 if family == "cifar100" else 10,
                     "confidence_penalty": noise_type == "asymmetric"}
        if noise_rate is not None and abs(noise_rate - 0.9) < 1e-9:
            out.update(loss_history=5, p_threshold=0.6)
        for rate, lam in LAMBDA_U.get((family, noise_type), {}).items():
            if noise_rate is not None and abs(noise_rate - rate) < 1e-9:
                out["lambda_u"] = lam
        return out

    def __init__(self, config: DivideMixConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.net1 = ctx.make_network()
        self.net2 = ctx.make_network()
        self.optimizer1 = ctx.make_optimizer(self.net1.parameters())
        self.optimizer2 = ctx.make_optimizer(self.net2.parameters())
        empty = torch.zeros(0, ctx.num_train, device=ctx.device)
        self.loss_history1, self.loss_history2 = empty, empty.clone()

    def lambda_u_at(self, epoch: float) -> float:
        cfg = self.config
        return cfg.lambda_u * linear_rampup(epoch, start=cfg.warm_up, length=cfg.rampup_length)

    def train_epoch(self, epoch: int) -> EpochResult:
        if epoch < self.config.warm_up:
            loss = self._warmup(self.net1, self.optimizer1)
            self._warmup(self.net2, self.optimizer2)
            return EpochResult(train_loss=float(loss), extra={"lambda_u": 0.0})
        prob1, self.loss_history1 = self._eval_train(self.net1, self.loss_history1)
        prob2, self.loss_history2 = self._eval_train(self.net2, self.loss_history2)
        pred1, pred2 = prob1 > self.config.p_threshold, prob2 > self.config.p_threshold
        loss = self._train(epoch, self.net1, self.net2, self.optimizer1, pred2, prob2)
        self._train(epoch, self.net2, self.net1, self.optimizer2, pred1, prob1)
        self.ctx.visited.fill_(True)  # every sample was divided
        fractions = torch.stack([pred1.float().mean(), pred2.float().mean()]).tolist()
        return EpochResult(train_loss=float(loss), selected=pred1, scores=prob1,
                           extra={"lambda_u": self.lambda_u_at(epoch),
                                  "labelled_fraction": fractions[0],
                                  "labelled_fraction_net2": fractions[1]})

    # -- phases ------------------------------------------------------------------------------
    def _warmup(self, net, optimizer) -> torch.Tensor:
        ctx = self.ctx
        net.train()
        total, batches = torch.zeros((), device=ctx.device), 0
        for x, y, _ in ctx.train_batches():
            with ctx.autocast():
                logits = net(x).float()
            loss = F.cross_entropy(logits, y)
            full = loss + neg_entropy(logits) if self.config.confidence_penalty else loss
            descend(optimizer, full)
            total += loss.detach()
            batches += 1
        return total / max(batches, 1)

    @torch.no_grad()
    def _eval_train(self, net, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean probability (N,) on the device, and the updated loss history (H, N)."""
        ctx, cfg = self.ctx, self.config
        net.eval()
        losses = torch.empty(ctx.num_train, device=ctx.device)
        for x, y, idx in ctx.eval_train_batches():
            with ctx.autocast():
                logits = net(x).float()
            losses[idx] = F.cross_entropy(logits, y, reduction="none")
        history = torch.cat([history, min_max_normalise(losses)[None]])[-cfg.loss_history:]
        seed = int(ctx.np_rng.integers(2 ** 31 - 1))
        prob = gmm_clean_probability(history.mean(0).cpu().numpy(), random_state=seed,
                                     max_iter=cfg.gmm_max_iter, tol=cfg.gmm_tol,
                                     reg_covar=cfg.gmm_reg_covar)
        return torch.as_tensor(prob, dtype=torch.float32, device=ctx.device), history

    def _train(self, epoch: int, net, peer, optimizer, labelled: torch.Tensor,
               prob: torch.Tensor) -> torch.Tensor:
        """One MixMatch epoch of ``net`` on the division (``labelled`` (N,), ``prob`` (N,))."""
        ctx, cfg = self.ctx, self.config
        k = ctx.num_classes
        net.train()
        peer.eval()
        lab_idx = torch.nonzero(labelled).flatten()
        unl_idx = torch.nonzero(~labelled).flatten()
        num_iter = len(lab_idx) // cfg.batch_size + 1          # the ramp's denominator
        unlabelled = (cycling_batches(unl_idx, cfg.batch_size, generator=ctx.aug_gen)
                      if len(unl_idx) else None)
        prior = torch.full((k,), 1.0 / k, device=ctx.device)
        total, batches = torch.zeros((), device=ctx.device), 0
        for it, (x1, y, idx) in enumerate(ctx.train_batches(batch_size=cfg.batch_size,
                                                            indices=lab_idx)):
            x2 = ctx.fetch(idx)
            views = [x1, x2]
            with torch.no_grad(), ctx.autocast():
                if cfg.guess_eval_mode:
                    net.eval()
                targets = []
                if unlabelled is not None:
                    u_idx = next(unlabelled)
                    u1, u2 = ctx.fetch(u_idx), ctx.fetch(u_idx)
                    views += [u1, u2]
                    pu_views = [torch.softmax(m(u).float(), 1) for m in (net, peer) for u in (u1, u2)]
                    pu = sum(pu_views[1:], start=pu_views[0]) / 4
                    targets = [sharpen(pu, temperature=cfg.temperature)] * 2
                px = (torch.softmax(net(x1).float(), 1) + torch.softmax(net(x2).float(), 1)) / 2
                w = prob[idx].unsqueeze(1)
                px = w * F.one_hot(y, k).float() + (1 - w) * px
                targets = [sharpen(px, temperature=cfg.temperature)] * 2 + targets
                net.train()
            inputs, all_targets = torch.cat(views), torch.cat(targets)
            lam = mix_coefficient(ctx.np_rng, alpha=cfg.alpha)
            perm = torch.randperm(len(inputs), device=ctx.device, generator=ctx.aug_gen)
            mixed_x, mixed_t = mixup(inputs, all_targets, lam=lam, perm=perm)
            with ctx.autocast():
                logits = net(mixed_x).float()
            b2 = 2 * len(idx)
            loss_x = soft_cross_entropy(logits[:b2], mixed_t[:b2])
            loss_u = (softmax_mse(logits[b2:], mixed_t[b2:]) if unlabelled is not None
                      else torch.zeros((), device=ctx.device))
            penalty = torch.sum(prior * torch.log(prior / torch.softmax(logits, 1).mean(0)))
            loss = loss_x + self.lambda_u_at(epoch + it / num_iter) * loss_u + penalty
            descend(optimizer, loss)
            total += loss.detach()
            batches += 1
        return total / max(batches, 1)
