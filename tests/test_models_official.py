"""The networks against transliterations of the official code, on small tensors.

* DivideMix ``PreResNet.py`` ``PreActBlock`` (LiJunnan1992/DivideMix d9d3058): the identity
  shortcut is ``nn.Sequential()`` applied to ``relu(bn1(x))``.
* RSL ``network_models/wideresnet.py`` ``WideResNet`` (guixianjin/RSL 117ca13): its blocks and
  its init loop.

The ``_Official*`` classes below are transliterations written for these tests.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError
from bench.models import _PreActBlock, build_network


class _OfficialPreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride,
                                                    bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out += shortcut
        return out


def _copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers in registration order (the two modules name them apart)."""
    src_t = list(src.parameters()) + list(src.buffers())
    dst_t = list(dst.parameters()) + list(dst.buffers())
    assert [t.shape for t in src_t] == [t.shape for t in dst_t]
    with torch.no_grad():
        for s, d in zip(src_t, dst_t):
            d.copy_(s)


def _randomise_bn(module: nn.Module, gen: torch.Generator) -> None:
    # non-trivial BN affine parameters and running statistics, so that bn1 matters
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


@pytest.mark.parametrize("c_in, c_out, stride", [(4, 4, 1), (4, 8, 2), (4, 8, 1)])
@pytest.mark.parametrize("train", [False, True])
def test_preact_block_equals_the_official_block(c_in, c_out, stride, train) -> None:
    gen = torch.Generator().manual_seed(0)
    ours, official = _PreActBlock(c_in, c_out, stride), _OfficialPreActBlock(c_in, c_out, stride)
    _randomise_bn(ours, gen)
    _copy_by_order(ours, official)
    ours.train(train)
    official.train(train)
    x = torch.randn(3, c_in, 6, 6, generator=gen)
    torch.testing.assert_close(ours(x), official(x), rtol=0, atol=0)


@pytest.mark.parametrize("c_in, c_out, stride", [(5, 5, 1), (3, 6, 2)])
def test_block_output_is_conv_path_plus_shortcut_of_relu_bn1_x(c_in, c_out, stride) -> None:
    """Identity block: conv path + relu(bn1(x)); downsampling: + a 1x1 conv of relu(bn1(x))."""
    gen = torch.Generator().manual_seed(c_in)
    block = _PreActBlock(c_in, c_out, stride).eval()
    _randomise_bn(block, gen)
    x = torch.randn(2, c_in, 8, 8, generator=gen)
    pre = F.relu(block.bn1(x))
    conv_path = block.conv2(F.relu(block.bn2(block.conv1(pre))))
    identity = stride == 1 and c_in == c_out
    out = block(x)
    torch.testing.assert_close(out, conv_path + (pre if identity else block.shortcut(pre)),
                               rtol=0, atol=0)
    assert out.shape == (2, c_out, 8 // stride, 8 // stride)
    if identity:   # and not the raw input: the two differ wherever bn1 + relu changes x
        assert not torch.allclose(out, conv_path + x, atol=1e-3)


def test_preact_resnet18_identity_blocks_carry_the_preactivation() -> None:
    net = build_network("preact_resnet18", in_channels=3, num_classes=10, image_size=32)
    blocks = [m for m in net.modules() if isinstance(m, _PreActBlock)]
    assert len(blocks) == 8
    assert sum(isinstance(b.shortcut, nn.Identity) for b in blocks) == 5   # 2 + 1 + 1 + 1


# ---- RSL's WideResNet ----------------------------------------------------------------------

class _OfficialWideBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, activate_before_residual=False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=0.001)
        self.relu1 = nn.LeakyReLU(negative_slope=0.1)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes, momentum=0.001)
        self.relu2 = nn.LeakyReLU(negative_slope=0.1)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(
            in_planes, out_planes, 1, stride=stride, padding=0, bias=False) or None
        self.activate_before_residual = activate_before_residual

    def forward(self, x):
        if not self.equalInOut and self.activate_before_residual:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class _OfficialWideResNet(nn.Module):
    def __init__(self, num_classes, depth=28, widen_factor=2):
        super().__init__()
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, ch[0], 3, stride=1, padding=1, bias=False)

        def stage(c_in, c_out, stride, abr):
            return nn.Sequential(*[_OfficialWideBlock(c_in if i == 0 else c_out, c_out,
                                                      stride if i == 0 else 1, abr)
                                   for i in range(n)])

        self.block1 = stage(ch[0], ch[1], 1, True)
        self.block2 = stage(ch[1], ch[2], 2, False)
        self.block3 = stage(ch[2], ch[3], 2, False)
        self.bn1 = nn.BatchNorm2d(ch[3], momentum=0.001)
        self.relu = nn.LeakyReLU(negative_slope=0.1)
        self.fc = nn.Linear(ch[3], num_classes)
        self.nChannels = ch[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / fan))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight.data)
                m.bias.data.zero_()

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        out = F.avg_pool2d(out, 8)
        return self.fc(out.view(-1, self.nChannels))


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_wrn28_2_default_init_is_the_official_one_weight_for_weight() -> None:
    """The modules are built and re-initialised in the code's order: one seed, same weights."""
    torch.manual_seed(7)
    official = _OfficialWideResNet(10)
    torch.manual_seed(7)
    ours = build_network("wrn28_2", in_channels=3, num_classes=10, image_size=32)
    a, b = _weights(official), _weights(ours)
    assert [t.shape for t in a] == [t.shape for t in b]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("train", [False, True])
def test_wrn28_2_forward_equals_the_official_network(train) -> None:
    torch.manual_seed(3)
    ours = build_network("wrn28_2", in_channels=3, num_classes=10, image_size=32)
    official = _OfficialWideResNet(10)
    gen = torch.Generator().manual_seed(4)
    _randomise_bn(ours, gen)
    _copy_by_order(ours, official)
    ours.train(train)
    official.train(train)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    torch.testing.assert_close(ours(x), official(x), rtol=1e-5, atol=1e-5)


def test_wrn_official_init_statistics() -> None:
    torch.manual_seed(0)
    net = build_network("wrn28_2", in_channels=3, num_classes=10, image_size=32)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    big = max(convs, key=lambda m: m.weight.numel())   # 128 x 128 x 3 x 3
    expected = math.sqrt(2.0 / (9 * big.out_channels))
    assert abs(float(big.weight.detach().std()) / expected - 1) < 0.02
    head = net.classifier
    assert float(head.bias.detach().abs().max()) == 0.0
    xavier = math.sqrt(2.0 / (head.in_features + head.out_features))
    assert abs(float(head.weight.detach().std()) / xavier - 1) < 0.15


def test_wrn28_2_pytorch_init_option_differs_and_bad_init_is_refused() -> None:
    torch.manual_seed(5)
    default = build_network("wrn28_2", in_channels=3, num_classes=10, image_size=32)
    torch.manual_seed(5)
    plain = build_network("wrn28_2", in_channels=3, num_classes=10, image_size=32,
                          options={"init": "pytorch"})
    assert float(plain.classifier.bias.detach().abs().max()) > 0    # nn.Linear's default bias init
    assert not torch.equal(default.classifier.weight, plain.classifier.weight)
    with pytest.raises(ConfigError, match="init must be official or pytorch"):
        build_network("wrn28_2", in_channels=3, num_classes=10, image_size=32,
                      options={"init": "xavier"})

