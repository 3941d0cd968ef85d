"""Fused runs (bench.fused) against the same runs trained one by one."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.config import RunSpec, TrainConfig
from bench.data import ImageData, load_dataset
from bench.engine import RunContext
from bench.fused import (FusedNetworks, fused_channels_last, fused_train_batches,
                         stacked_forward, vmap_loss)
from bench.models import build_network
from methods.base import BatchMethod
from methods.jocor import JoCoR, jocor_loss
from methods.standard import Standard

RTOL, ATOL = 1e-4, 1e-5


def _random_images(n: int = 48, shape=(3, 32, 32), num_classes: int = 10) -> ImageData:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, size=(n, *shape), dtype=np.uint8))
    y = rng.integers(0, num_classes, size=n).astype(np.int64)
    return ImageData("random", x, y, x[:8], y[:8], num_classes, mean=(0.5,) * shape[0],
                     std=(0.25,) * shape[0])


def _data(kind: str, size: int = 32) -> ImageData:
    return load_dataset("digits") if kind == "digits" else _random_images(shape=(3, size, size))


def _context(data: ImageData, network: str, seed: int, batch_size: int) -> RunContext:
    spec = RunSpec(grid="test", label="standard", method="standard", method_params={},
                   dataset=data.name, network=network, seed=seed,
                   train=TrainConfig(epochs=1, batch_size=batch_size, lr=0.01))
    return RunContext(spec, data, data.train_labels, torch.device("cpu"))


def _fused_step(method: BatchMethod, fused: FusedNetworks, optimizer, x, y, idx, state):
    """One step of ``method``'s loss vmapped over the runs of ``fused``; returns its losses."""
    out = vmap_loss(method.batch_loss)(stacked_forward(fused, x, method.num_networks), y, idx,
                                       state)
    optimizer.zero_grad(set_to_none=True)
    sum(loss.sum() for loss in out.losses).backward()
    optimizer.step()
    return out


def _assert_same_state(fused: FusedNetworks, nets: list[torch.nn.Module]) -> None:
    for g, (got, want) in enumerate(zip(fused.unstack(), nets)):
        for (name, a), (_, b) in zip(got.state_dict().items(), want.state_dict().items()):
            torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=f"run {g} {name}")


# The CNN cases run in float64: a conv bias followed by BatchNorm has an analytically zero
# gradient, so in float32 it is pure rounding noise (~1e-6) that Adam normalises into +-lr
# steps whose sign depends on the summation order (two unfused runs on different convolution
# algorithms diverge the same way). In float64 the noise stays far below Adam's eps.
CASES = [("digits", "mlp", 3, 64, torch.float32), ("random", "cnn6", 2, 8, torch.float64)]


@pytest.mark.parametrize("kind,network,runs,batch,dtype", CASES)
def test_standard_fused_matches_unfused(kind, network, runs, batch, dtype) -> None:
    """G runs of ``standard`` with RunContext batches and fused Adam vs one fused model."""
    data, steps = _data(kind), 3
    contexts, nets, optimizers = [], [], []
    for seed in range(runs):
        ctx = _context(data, network, seed, batch)
        torch.manual_seed(seed)
        contexts.append(ctx)
        nets.append(ctx.make_network().to(dtype).train())
    fused = FusedNetworks([copy.deepcopy(n) for n in nets]).train()
    optimizers = [ctx.make_optimizer(n.parameters()) for ctx, n in zip(contexts, nets)]
    fused_opt = contexts[0].make_optimizer(fused.parameters())

    want_losses, want_idx = [], []
    for ctx, net, opt in zip(contexts, nets, optimizers):
        losses, idxs = [], []
        for (x, y, idx), _ in zip(ctx.train_batches(), range(steps)):
            loss = F.cross_entropy(net(x.to(dtype)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            idxs.append(idx)
        want_losses.append(torch.stack(losses))
        want_idx.append(torch.stack(idxs))

    images = data.train_images
    labels = torch.as_tensor(data.train_labels)
    gens = [torch.Generator().manual_seed(seed) for seed in range(runs)]
    method = Standard(Standard.Config(), contexts[0])
    got_losses, got_idx = [], []
    for (x, y, idx), _ in zip(fused_train_batches(images, labels, generators=gens,
                                                  batch_size=batch), range(steps)):
        assert x.shape == (runs, batch, *images.shape[1:]) and y.shape == (runs, batch)
        got_losses.append(_fused_step(method, fused, fused_opt, x.to(dtype), y, idx,
                                      None).losses[0].detach())
        got_idx.append(idx)

    torch.testing.assert_close(torch.stack(got_idx, 1), torch.stack(want_idx))
    torch.testing.assert_close(torch.stack(got_losses, 1), torch.stack(want_losses),
                               rtol=RTOL, atol=ATOL)
    _assert_same_state(fused, nets)   # weights and BatchNorm running statistics


@pytest.mark.parametrize("kind,network,dtype", [("digits", "mlp", torch.float32),
                                                ("random", "cnn6", torch.float64)])
def test_jocor_fused_matches_unfused(kind, network, dtype) -> None:
    """G JoCoR runs (2 networks each, one Adam over both) vs one 2G-way fused model."""
    # 16x16 images keep the 4-network float64 CNN case fast
    data, runs, batch, steps = _data(kind, size=16), 2, 16, 3
    co_lambda, forget_rate = 0.9, 0.25
    keep = int((1 - forget_rate) * batch)
    method = JoCoR(JoCoR.Config(co_lambda=co_lambda, stable_kl=False),
                   _context(data, network, seed=0, batch_size=batch))
    c, h, _ = data.image_shape
    torch.manual_seed(0)
    pairs = [[build_network(network, in_channels=c, num_classes=10, image_size=h).to(dtype)
              for _ in range(2)] for _ in range(runs)]
    fused = FusedNetworks([copy.deepcopy(p[0]) for p in pairs]
                          + [copy.deepcopy(p[1]) for p in pairs]).train()
    fused_opt = torch.optim.Adam(fused.parameters(), lr=0.01, fused=True)
    opts = [torch.optim.Adam(list(p[0].parameters()) + list(p[1].parameters()), lr=0.01,
                             fused=True) for p in pairs]

    images = data.train_images
    labels = torch.as_tensor(data.train_labels)
    gens = [torch.Generator().manual_seed(seed) for seed in range(runs)]
    for (x, y, idx), _ in zip(fused_train_batches(images, labels, generators=gens,
                                                  batch_size=batch), range(steps)):
        x = x.to(dtype)
        out = _fused_step(method, fused, fused_opt, x, y, idx, forget_rate)
        got, got_kept = out.losses[0].detach(), out.selected
        for g, ((net1, net2), opt) in enumerate(zip(pairs, opts)):
            loss, pick = jocor_loss(net1(x[g]), net2(x[g]), y[g], co_lambda=co_lambda,
                                    num_remember=keep)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            torch.testing.assert_close(got[g], loss.detach(), rtol=RTOL, atol=ATOL)
            assert set(torch.nonzero(got_kept[g]).flatten().tolist()) == set(pick.tolist())
    _assert_same_state(fused, [p[0] for p in pairs] + [p[1] for p in pairs])


def test_batchnorm_uses_and_updates_per_run_statistics() -> None:
    torch.manual_seed(0)
    nets = [build_network("cnn6", in_channels=3, num_classes=10, image_size=16)
            for _ in range(3)]
    fused = FusedNetworks([copy.deepcopy(n) for n in nets]).train()
    x = torch.randn(3, 8, 3, 16, 16) * torch.tensor([1.0, 3.0, 0.3]).view(3, 1, 1, 1, 1)
    for _ in range(2):
        out = fused(x)
        want = torch.stack([n(x[g]) for g, n in enumerate(nets)])
        torch.testing.assert_close(out, want, rtol=RTOL, atol=ATOL)
    buffers = fused.stacked_buffers()
    assert int(buffers["features.1.num_batches_tracked"][0]) == 2
    means = buffers["features.1.running_mean"]
    assert not torch.allclose(means[0], means[1])            # per-run, not shared
    _assert_same_state(fused, nets)
    fused.eval()
    for n in nets:
        n.eval()
    torch.testing.assert_close(fused(x), torch.stack([n(x[g]) for g, n in enumerate(nets)]),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3),
    lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
], ids=["adam-wd", "adam-fused", "sgd-momentum-wd"])
def test_one_optimiser_over_stacked_parameters_is_per_run(make_opt) -> None:
    torch.manual_seed(0)
    nets = [build_network("mlp", in_channels=1, num_classes=10, image_size=8) for _ in range(3)]
    fused = FusedNetworks([copy.deepcopy(n) for n in nets])
    opts = [make_opt(n.parameters()) for n in nets]
    fused_opt = make_opt(fused.parameters())
    for _ in range(4):
        grads = {name: torch.randn_like(p) for name, p in fused.stacked_parameters().items()}
        for name, p in fused.stacked_parameters().items():
            p.grad = grads[name].clone()
        fused_opt.step()
        for g, (net, opt) in enumerate(zip(nets, opts)):
            for name, p in net.named_parameters():
                p.grad = grads[name][g].clone()
            opt.step()
    _assert_same_state(fused, nets)


def test_unstack_round_trip_and_structure_check() -> None:
    torch.manual_seed(0)
    nets = [build_network("lenet", in_channels=3, num_classes=10, image_size=32)
            for _ in range(2)]
    fused = FusedNetworks(nets)
    back = fused.unstack()
    assert all(type(b) is type(n) for b, n in zip(back, nets))
    _assert_same_state(fused, nets)
    x = torch.rand(2, 4, 3, 32, 32)
    torch.testing.assert_close(fused(x), torch.stack([back[g](x[g]) for g in range(2)]))
    shared = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(fused(shared, shared_input=True),
                               torch.stack([n(shared) for n in nets]))
    assert all(p.shape[0] == 2 for p in fused.parameters())
    fused.load_networks(list(reversed(nets)))
    _assert_same_state(fused, list(reversed(nets)))
    other = build_network("lenet", in_channels=1, num_classes=10, image_size=32)
    with pytest.raises(ValueError, match="structure"):
        FusedNetworks([nets[0], other])


def test_fused_channels_last_keeps_values() -> None:
    x = torch.rand(3, 4, 2, 5, 5)
    y = fused_channels_last(x)
    assert torch.equal(x, y)
    assert y.permute(1, 3, 4, 0, 2).is_contiguous()
    # the view vmap's convolution rule takes is channels_last
    folded = y.movedim(0, 1).reshape(4, 6, 5, 5)
    assert folded.is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast_reaches_the_fused_layers() -> None:
    """CPU autocast stands in for CUDA's: under vmap autocast alone would leave convolutions
    with batched weights in fp32, and vmap's BatchNorm rejects bf16 inputs with fp32 stats."""
    torch.manual_seed(0)
    nets = [build_network("cnn6", in_channels=3, num_classes=10, image_size=16)
            for _ in range(2)]
    fused = FusedNetworks([copy.deepcopy(n) for n in nets]).train()
    x = torch.rand(2, 8, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused(fused_channels_last(x))
        want = torch.stack([n(x[g]) for g, n in enumerate(nets)])
    assert out.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want.float(), rtol=0.05, atol=0.05)
    for name, value in fused.stacked_buffers().items():
        if value.is_floating_point():
            assert value.dtype == torch.float32
            torch.testing.assert_close(value[0], nets[0].get_buffer(name), rtol=0.01, atol=1e-3)
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in fused.parameters())
    # the unstacked networks carry no fused-only hooks
    plain = fused.unstack()[0]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in plain.modules())
