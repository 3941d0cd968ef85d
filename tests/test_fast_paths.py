"""The engine's fast data path trains exactly like the official code's plain one.

The official repositories feed a DataLoader over per-sample ``ToTensor`` transforms; the engine
gathers whole batches from device-resident uint8 tensors. Given the same sample order and the
same initial weights, both must produce the same batches and the same trained network.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from bench.config import RunSpec, TrainConfig
from bench.engine import RunContext, prepare


class ToTensorDataset(Dataset):
    """Per-sample conversion as torchvision's ToTensor does it: uint8 HWC/CHW -> float / 255."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]).float().div(255.0), int(self.labels[i]), i


def test_device_resident_batches_match_a_plain_dataloader() -> None:
    spec = RunSpec(grid="t", label="standard", method="standard", method_params={},
                   dataset="digits", network="mlp", noise_type="symmetric", noise_rate=0.2,
                   noise_seed=0, seed=3,
                   train=TrainConfig(epochs=2, batch_size=64, drop_last=True))
    device = torch.device("cpu")
    data, noisy, _ = prepare(spec, device)
    ctx = RunContext(spec, data, noisy, device)

    # the order the engine will use for this epoch, replayed for the DataLoader
    order = torch.randperm(ctx.num_train, generator=torch.Generator().manual_seed(spec.seed))
    plain = DataLoader(ToTensorDataset(data.train_images.numpy(), noisy), batch_size=64,
                       sampler=order.tolist(), drop_last=True)

    torch.manual_seed(0)
    fast_net = ctx.make_network()
    plain_net = ctx.make_network()
    plain_net.load_state_dict(fast_net.state_dict())
    fast_opt = torch.optim.Adam(fast_net.parameters(), lr=1e-3)
    plain_opt = torch.optim.Adam(plain_net.parameters(), lr=1e-3)

    n_batches = 0
    for (x_fast, y_fast, idx_fast), (x_plain, y_plain, idx_plain) in zip(ctx.train_batches(),
                                                                         plain):
        assert torch.equal(idx_fast, idx_plain)
        assert torch.equal(y_fast, y_plain)
        assert torch.equal(x_fast, x_plain)
        for net, opt, x, y in ((fast_net, fast_opt, x_fast, y_fast),
                               (plain_net, plain_opt, x_plain, y_plain)):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        n_batches += 1
    assert n_batches == ctx.num_train // 64
    for p_fast, p_plain in zip(fast_net.parameters(), plain_net.parameters()):
        torch.testing.assert_close(p_fast, p_plain, rtol=0, atol=0)
