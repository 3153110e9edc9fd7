"""ResNet for CIFAR-sized inputs (He et al., 2016, Section 4.2).

Reference:
    Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun. "Deep Residual Learning for
    Image Recognition." CVPR 2016, Section 4.2 ("CIFAR-10 and Analysis").

The network is a 3x3 convolution stem followed by three stages of ``n`` basic blocks
(two 3x3 convolutions each) with ``width``, ``2*width`` and ``4*width`` channels,
global average pooling and a linear classifier; depth = 6n + 2. Shortcuts are
parameter-free identities ("option A"): when a block halves the resolution and widens
the feature map, the shortcut subsamples with stride 2 and zero-pads the new channels.

Example:
    >>> import torch
    >>> model = ResNetCifar(depth=20, num_classes=100)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 100])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_depth, check_positive_int, init_weights_

__all__ = ["BasicBlock", "PadShortcut", "ResNetCifar", "valid_resnet_depths"]


def valid_resnet_depths(limit: int = 1202) -> list[int]:
    """Return the valid CIFAR-ResNet depths (6n + 2, n >= 1) up to ``limit``.

    He et al. (2016, Sec. 4.2) use depths 20, 32, 44, 56, 110 and 1202.

    Example:
        >>> valid_resnet_depths(56)
        [8, 14, 20, 26, 32, 38, 44, 50, 56]
    """
    return list(range(8, limit + 1, 6))


class PadShortcut(nn.Module):
    """Parameter-free "option A" shortcut of He et al. (2016).

    Subsamples the input spatially with ``stride`` (taking every ``stride``-th pixel,
    starting at 0, which matches the output grid of a 3x3 convolution with padding 1
    and the same stride) and appends ``extra_channels`` all-zero channels.

    Args:
        stride: spatial subsampling factor (1 = no subsampling).
        extra_channels: number of zero channels appended on the channel axis.

    Example:
        >>> import torch
        >>> PadShortcut(stride=2, extra_channels=16)(torch.randn(2, 16, 32, 32)).shape
        torch.Size([2, 32, 16, 16])
    """

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        if stride < 1 or extra_channels < 0:
            raise ValueError(
                f"PadShortcut needs stride >= 1 and extra_channels >= 0, "
                f"got stride={stride}, extra_channels={extra_channels}"
            )
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        """Subsample and zero-pad ``x`` of shape ``(B, C, H, W)``."""
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels > 0:
            # F.pad pads the last dims first: (W_left, W_right, H_top, H_bottom, C_front, C_back).
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class BasicBlock(nn.Module):
    """Two-layer residual block: conv3x3-BN-ReLU-conv3x3-BN, + shortcut, ReLU.

    Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.

    Args:
        in_channels: input channels.
        out_channels: output channels (``>= in_channels``; option-A shortcuts can only widen).
        stride: stride of the first convolution (and of the shortcut subsampling).

    Example:
        >>> import torch
        >>> BasicBlock(16, 32, stride=2)(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"option-A shortcuts cannot reduce channels ({in_channels} -> {out_channels})"
            )
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = PadShortcut(stride, out_channels - in_channels)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``x`` of shape ``(B, C_in, H, W)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """CIFAR ResNet of He et al. (2016, Sec. 4.2) with option-A (identity) shortcuts.

    Reference:
        Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun. "Deep Residual Learning for
        Image Recognition." CVPR 2016. Published sizes (10 classes): ResNet-20 0.27M,
        ResNet-32 0.46M, ResNet-56 0.85M, ResNet-110 1.7M parameters.

    Layout: conv3x3(``width``)-BN-ReLU, then three stages of ``n = (depth - 2) // 6``
    :class:`BasicBlock` s with ``width``, ``2*width``, ``4*width`` channels (stride 2 at
    the first block of stages 2 and 3), global average pooling, linear classifier.
    Because pooling is global, any input of at least 8x8 pixels works (e.g. 32x32
    CIFAR, 28x28 Fashion-MNIST with ``in_channels=1``, 8x8 scikit-learn digits).

    Initialisation: Kaiming-normal (fan_out, ReLU) for convolutions, BatchNorm weight 1
    and bias 0, PyTorch's default for the linear layer.

    Args:
        depth: total number of weighted layers, 6n + 2 (20, 32, 44, 56, 110, ...).
        num_classes: number of output logits.
        width: channels of the first stage (default 16, as in the paper).
        in_channels: channels of the input images (3 for RGB, 1 for grey-scale).

    Attributes:
        feature_dim: size of the pooled feature vector fed to ``fc`` (``4*width``).

    Example:
        >>> import torch
        >>> model = ResNetCifar(depth=20, num_classes=10, in_channels=1)
        >>> model(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        width: int = 16,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_depth("ResNetCifar", depth, offset=2, examples="8, 14, 20, 26, 32, 38, 44, 50, 56, ..., 110, ...")
        check_positive_int("num_classes", num_classes)
        check_positive_int("width", width)
        check_positive_int("in_channels", in_channels)

        self.depth = depth
        self.num_blocks = (depth - 2) // 6
        self.width = width
        self.in_channels = in_channels
        self.num_classes = num_classes

        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        channels = width
        stages: list[nn.Sequential] = []
        for stage_idx, stage_channels in enumerate((width, 2 * width, 4 * width)):
            blocks: list[nn.Module] = []
            for block_idx in range(self.num_blocks):
                stride = 2 if (stage_idx > 0 and block_idx == 0) else 1
                blocks.append(BasicBlock(channels, stage_channels, stride))
                channels = stage_channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.feature_dim = channels
        self.fc = nn.Linear(channels, num_classes)

        init_weights_(self, zero_linear_bias=False)

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the globally pooled features of shape ``(B, feature_dim)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits of shape ``(B, num_classes)`` for images ``x`` of shape ``(B, C, H, W)``."""
        return self.fc(self.forward_features(x))
