"""The networks of the papers.

Every network splits into ``features`` (input -> (B, D) penultimate features) and ``classifier``
(a Linear D -> K), so label-correction methods can read the features. Factories are registered
as ``NETWORKS[name](in_channels=, num_classes=, image_size=, **options)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError
from bench.registry import NETWORKS


class Classifier(nn.Module):
    """features -> Linear head."""

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _conv_bn(c_in: int, c_out: int, *, padding: int = 1, momentum: float = 0.1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=padding), nn.BatchNorm2d(c_out, momentum=momentum)]


@NETWORKS.register("mlp")
def mlp(*, in_channels: int, num_classes: int, image_size: int, hidden: int = 256) -> nn.Module:
    """MLP d-256-K of JoCoR and Co-teaching+ on MNIST (model/cnn.py MLPNet)."""
    features = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, hidden),
                             nn.ReLU())
    return Classifier(features, hidden, num_classes)


def _he_normal_truncated(linear: nn.Linear) -> nn.Linear:
    """Keras 2.0 ``he_normal``: N(0, 2 / fan_in) truncated at two standard deviations; zero bias."""
    std = (2.0 / linear.in_features) ** 0.5
    nn.init.trunc_normal_(linear.weight, std=std, a=-2.0 * std, b=2.0 * std)
    nn.init.zeros_(linear.bias)
    return linear


@NETWORKS.register("mlp_patrini")
def mlp_patrini(*, in_channels: int, num_classes: int, image_size: int,
                hidden: int = 128, dropout: float = 0.2) -> nn.Module:
    """MLP d-128-128-K with ReLU and Dropout(0.2) after each hidden layer (Patrini et al.,
    giorgiop/loss-correction ``models.py`` MNISTModel), Keras ``he_normal`` initialisation."""
    dim = in_channels * image_size ** 2
    features = nn.Sequential(nn.Flatten(), _he_normal_truncated(nn.Linear(dim, hidden)),
                             nn.ReLU(), nn.Dropout(dropout),
                             _he_normal_truncated(nn.Linear(hidden, hidden)), nn.ReLU(),
                             nn.Dropout(dropout))
    net = Classifier(features, hidden, num_classes)
    _he_normal_truncated(net.classifier)
    return net


@NETWORKS.register("cnn6")
def cnn6(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """JoCoR's CNN (model/cnn.py): six 3x3 convs 64,64,P,128,128,P,196,16,P with BN+ReLU."""
    layers: list[nn.Module] = []
    widths = [(in_channels, 64), (64, 64), None, (64, 128), (128, 128), None, (128, 196),
              (196, 16), None]
    for w in widths:
        if w is None:
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += _conv_bn(*w) + [nn.ReLU()]
    layers.append(nn.Flatten())
    side = image_size // 8
    return Classifier(nn.Sequential(*layers), 16 * side * side, num_classes)


class _Dropout2dAlwaysOn(nn.Module):
    """Co-teaching calls ``F.dropout2d`` without ``training=``, so it is active at test time too."""

    def __init__(self, p: float, at_eval: bool) -> None:
        super().__init__()
        self.p, self.at_eval = p, at_eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout2d(x, self.p, training=self.training or self.at_eval)


@NETWORKS.register("cnn9")
def cnn9(*, in_channels: int, num_classes: int, image_size: int,
         dropout_at_eval: bool = True) -> nn.Module:
    """Co-teaching's 9-conv CNN (model.py CNN), LeakyReLU(0.01), Dropout2d 0.25 after each pool.

    dropout_at_eval: True (default) keeps the official code's quirk: dropout stays on during
        evaluation, so test accuracy is stochastic. False gives the corrected network.
    """
    act = lambda: nn.LeakyReLU(0.01)  # noqa: E731
    layers: list[nn.Module] = []
    for c_in, c_out in [(in_channels, 128), (128, 128), (128, 128)]:
        layers += _conv_bn(c_in, c_out) + [act()]
    layers += [nn.MaxPool2d(2, 2), _Dropout2dAlwaysOn(0.25, dropout_at_eval)]
    for c_in, c_out in [(128, 256), (256, 256), (256, 256)]:
        layers += _conv_bn(c_in, c_out) + [act()]
    layers += [nn.MaxPool2d(2, 2), _Dropout2dAlwaysOn(0.25, dropout_at_eval)]
    for c_in, c_out in [(256, 512), (512, 256), (256, 128)]:
        layers += _conv_bn(c_in, c_out, padding=0) + [act()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), 128, num_classes)


@NETWORKS.register("lenet")
def lenet(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Co-teaching+'s CNN_small on CIFAR-10: LeNet-5 style, 5x5 convs 6 and 16, FC 120-84."""
    side = ((image_size - 4) // 2 - 4) // 2
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
    return Classifier(features, 84, num_classes)


class _PreActBlock(nn.Module):
    """DivideMix's PreResNet.py ``PreActBlock``: both shortcuts start from ``relu(bn1(x))``.

    The identity shortcut is ``nn.Sequential()`` applied to the pre-activated input, so an
    identity block returns ``conv_path + relu(bn1(x))``, not ``+ x`` (the variant of other
    PreAct ResNet copies); the downsampling one a 1x1 conv of the same ``relu(bn1(x))``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class _PreActResNetFeatures(nn.Module):
    def __init__(self, in_channels: int, blocks=(2, 2, 2, 2)) -> None:
        super().__init__()
        # DivideMix's PreResNet18: 3x3 stem conv 64 followed by BN+ReLU
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU())
        layers, c_in = [], 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            for j in range(n):
                layers.append(_PreActBlock(c_in, width, 2 if (j == 0 and i > 0) else 1))
                c_in = width
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


@NETWORKS.register("preact_resnet18")
def preact_resnet18(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """PreAct ResNet-18 as in DivideMix's PreResNet.py ``ResNet18`` (PreActBlock [2,2,2,2]).

    A 3x3 stem conv 64 with BN+ReLU, the blocks of :class:`_PreActBlock` (identity shortcuts
    carry ``relu(bn1(x))``), no final BN, Linear 512->K; PyTorch's default initialisation, as the
    code. DivideMix pools with avg_pool2d(4) on 4x4 maps; the adaptive pool is identical at 32x32.
    """
    return Classifier(_PreActResNetFeatures(in_channels), 512, num_classes)


class _WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, activate_before_residual: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in, momentum=0.001)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=0.001)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.equal = c_in == c_out
        self.shortcut = None if self.equal else nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        self.activate_before_residual = activate_before_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.equal:
            out = self.conv1(F.leaky_relu(self.bn1(x), 0.1))
        elif self.activate_before_residual:
            x = F.leaky_relu(self.bn1(x), 0.1)
            out = self.conv1(x)
        else:
            # as in the MixMatch WideResNet that RSL uses: the raw input feeds conv1 here
            out = self.conv1(x)
        out = self.conv2(F.leaky_relu(self.bn2(out), 0.1))
        return out + (x if self.shortcut is None else self.shortcut(x))


def wrn_official_init(net: nn.Module) -> None:
    """The init loop of RSL's ``network_models/wideresnet.py`` (MixMatch's WideResNet).

    In module order: conv weights ~ N(0, 2 / (k_h k_w c_out)) (He, fan-out), BatchNorm weight 1
    and bias 0, Linear weights Xavier-normal and bias 0.
    """
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight.data)
            m.bias.data.zero_()


@NETWORKS.register("wrn28_2")
def wrn28_2(*, in_channels: int, num_classes: int, image_size: int,
            init: str = "official") -> nn.Module:
    """WideResNet-28-2 of RSL / MixMatch (BN momentum 0.001, LeakyReLU 0.1, no dropout).

    init: ``official`` (default) re-initialises the weights as RSL's wideresnet.py does
        (:func:`wrn_official_init`; the modules are built in the code's order, so one torch
        seed gives the code's weights); ``pytorch`` keeps PyTorch's default initialisation.
    """
    if init not in ("official", "pytorch"):
        raise ConfigError(f"wrn28_2: init must be official or pytorch, got {init!r}")
    widths, n = (32, 64, 128), 4
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)]
    c_in = 16
    for i, w in enumerate(widths):
        for j in range(n):
            layers.append(_WideBlock(c_in, w, 2 if (j == 0 and i > 0) else 1,
                                     activate_before_residual=(i == 0 and j == 0)))
            c_in = w
    layers += [nn.BatchNorm2d(c_in, momentum=0.001), nn.LeakyReLU(0.1),
               nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    net = Classifier(nn.Sequential(*layers), c_in, num_classes)
    if init == "official":
        wrn_official_init(net)
    return net


def _torchvision_resnet(arch: str, *, in_channels: int, num_classes: int,
                        pretrained_path: str | None) -> nn.Module:
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    if pretrained_path:
        path = Path(pretrained_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"{arch}: ImageNet weights file {path} not found")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if in_channels != 3:
        raise ConfigError(f"{arch} expects 3-channel images")
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return Classifier(net, dim, num_classes)


@NETWORKS.register("resnet50")
def resnet50(*, in_channels: int, num_classes: int, image_size: int,
             pretrained_path: str | None = None) -> nn.Module:
    """torchvision ResNet-50 (Clothing1M); ImageNet weights from a local file when given."""
    return _torchvision_resnet("resnet50", in_channels=in_channels, num_classes=num_classes,
                               pretrained_path=pretrained_path)


@NETWORKS.register("resnet18")
def resnet18(*, in_channels: int, num_classes: int, image_size: int,
             pretrained_path: str | None = None) -> nn.Module:
    """torchvision ResNet-18 (JoCoR's Clothing1M network, trained without ImageNet weights)."""
    return _torchvision_resnet("resnet18", in_channels=in_channels, num_classes=num_classes,
                               pretrained_path=pretrained_path)


def build_network(name: str, *, in_channels: int, num_classes: int, image_size: int,
                  options: dict | None = None) -> nn.Module:
    factory = NETWORKS.get(name)
    try:
        return factory(in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                       **(options or {}))
    except TypeError as exc:
        raise ConfigError(f"network {name!r}: bad options {options}: {exc}") from None
