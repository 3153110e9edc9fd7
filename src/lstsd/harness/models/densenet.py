"""DenseNet-BC for CIFAR-sized inputs (Huang et al., 2017).

Reference:
    Gao Huang, Zhuang Liu, Laurens van der Maaten, Kilian Q. Weinberger. "Densely
    Connected Convolutional Networks." CVPR 2017.

Example:
    >>> import torch
    >>> model = DenseNetBC(depth=40, num_classes=10)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_depth, check_positive_int, init_weights_

__all__ = ["Bottleneck", "DenseNetBC", "Transition"]


class Bottleneck(nn.Module):
    """DenseNet-B layer: BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k), output concatenated to input.

    Reference: Huang et al., "Densely Connected Convolutional Networks", CVPR 2017.

    Args:
        in_channels: channels of the (concatenated) input.
        growth_rate: ``k``, the number of new channels this layer adds.

    Example:
        >>> import torch
        >>> Bottleneck(24, 12)(torch.randn(2, 24, 8, 8)).shape
        torch.Size([2, 36, 8, 8])
    """

    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        inter = 4 * growth_rate
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, inter, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter)
        self.conv2 = nn.Conv2d(inter, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``cat([x, new_features], dim=1)``."""
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class Transition(nn.Module):
    """DenseNet transition layer: BN-ReLU-conv1x1-avgpool2x2.

    Reference: Huang et al., "Densely Connected Convolutional Networks", CVPR 2017.

    Args:
        in_channels: input channels.
        out_channels: output channels (``floor(compression * in_channels)`` in DenseNet-BC).

    Example:
        >>> import torch
        >>> Transition(48, 24)(torch.randn(2, 48, 8, 8)).shape
        torch.Size([2, 24, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Compress channels and halve the spatial resolution."""
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetBC(nn.Module):
    """DenseNet-BC for CIFAR of Huang et al. (2017), by default DenseNet-BC-100 with k=12.

    Reference:
        Gao Huang, Zhuang Liu, Laurens van der Maaten, Kilian Q. Weinberger. "Densely
        Connected Convolutional Networks." CVPR 2017. DenseNet-BC (L=100, k=12) has
        0.8M parameters.

    Layout: conv3x3 stem with ``init_channels`` (default ``2 * growth_rate``) outputs,
    three dense blocks of ``(depth - 4) // 6`` :class:`Bottleneck` layers each,
    separated by :class:`Transition` layers with ``compression`` (0.5), then
    BN-ReLU-global average pooling-linear. Works for any input of at least 4x4 pixels
    (8x8 digits, 28x28 Fashion-MNIST with ``in_channels=1``, 32x32 CIFAR).

    Note on the LSTSD paper (Jiang et al., AAAI 2020): it states that the DenseNet's
    "base feature length and growth rate are 24 and 80". We read "growth rate 80" as a
    typo: a 100-layer DenseNet-BC with k=80 would have about 33M parameters, unlike the
    0.8M-parameter DenseNet-BC-100 (k=12) of Huang et al. to which CIFAR-100 accuracies
    around 78% belong. We therefore default to k=12 with 24 (= 2k) initial channels;
    ``growth_rate`` (and ``init_channels``) remain configurable.

    Initialisation: Kaiming-normal (fan_out, ReLU) for convolutions, BatchNorm weight 1
    and bias 0, linear bias 0 (PyTorch default for the linear weight).

    Args:
        depth: total depth L with ``(L - 4) % 6 == 0`` (e.g. 40, 100, 190, 250).
        num_classes: number of output logits.
        growth_rate: ``k``, channels added by each bottleneck layer.
        compression: ``theta`` in (0, 1], channel reduction factor of transition layers.
        in_channels: channels of the input images.
        init_channels: stem output channels; ``None`` means ``2 * growth_rate``.

    Attributes:
        feature_dim: size of the pooled feature vector fed to ``fc``.

    Example:
        >>> import torch
        >>> model = DenseNetBC(depth=100, growth_rate=12, num_classes=100)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 100])
    """

    def __init__(
        self,
        depth: int = 100,
        num_classes: int = 10,
        growth_rate: int = 12,
        compression: float = 0.5,
        in_channels: int = 3,
        init_channels: int | None = None,
    ) -> None:
        super().__init__()
        check_depth("DenseNetBC", depth, offset=4, examples="10, 16, 22, 28, 34, 40, ..., 100, ..., 190, ..., 250, ...")
        check_positive_int("num_classes", num_classes)
        check_positive_int("growth_rate", growth_rate)
        check_positive_int("in_channels", in_channels)
        if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not (
            0.0 < float(compression) <= 1.0
        ):
            raise ValueError(f"compression must be in (0, 1], got {compression!r}")
        if init_channels is None:
            init_channels = 2 * growth_rate
        check_positive_int("init_channels", init_channels)

        self.depth = depth
        self.num_layers_per_block = (depth - 4) // 6
        self.growth_rate = growth_rate
        self.compression = float(compression)
        self.in_channels = in_channels
        self.num_classes = num_classes

        self.conv1 = nn.Conv2d(in_channels, init_channels, 3, padding=1, bias=False)
        channels = init_channels
        blocks: list[nn.Module] = []
        for block_idx in range(3):
            layers: list[nn.Module] = []
            for _ in range(self.num_layers_per_block):
                layers.append(Bottleneck(channels, growth_rate))
                channels += growth_rate
            blocks.append(nn.Sequential(*layers))
            if block_idx < 2:
                out_channels = max(1, int(math.floor(self.compression * channels)))
                blocks.append(Transition(channels, out_channels))
                channels = out_channels
        (self.block1, self.trans1, self.block2, self.trans2, self.block3) = blocks
        self.bn = nn.BatchNorm2d(channels)
        self.feature_dim = channels
        self.fc = nn.Linear(channels, num_classes)

        init_weights_(self, zero_linear_bias=True)

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the globally pooled features of shape ``(B, feature_dim)``."""
        out = self.conv1(x)
        out = self.trans1(self.block1(out))
        out = self.trans2(self.block2(out))
        out = F.relu(self.bn(self.block3(out)))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits of shape ``(B, num_classes)`` for images ``x`` of shape ``(B, C, H, W)``."""
        return self.fc(self.forward_features(x))
