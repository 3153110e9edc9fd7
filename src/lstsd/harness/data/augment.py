"""Batched image augmentation on tensors (any device, no per-sample Python loop).

Example:
    >>> import torch
    >>> x = torch.randn(8, 3, 32, 32)
    >>> random_crop_flip(x, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip"]


def random_crop_flip(images: torch.Tensor, *, padding: int = 4, flip: bool = True, pad_mode: str = "constant",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad-and-random-crop plus random horizontal flip, per image, in one batched gather.

    The standard CIFAR recipe used by the paper: pad each side by ``padding`` pixels,
    crop a window of the original size at a uniformly random offset in
    ``[0, 2·padding]`` along each axis, then flip left-right with probability 0.5.

    Padding is zeros (``pad_mode="constant"``) or a mirror image (``"reflect"``). The
    images are usually already normalised, so a zero pad is the per-channel *mean*
    colour, not black.

    Args:
        images: ``N×C×H×W`` tensor (any dtype for constant padding; channels_last kept).
        padding: pixels added on each side (0 = flip only).
        flip: whether to apply the random horizontal flip.
        pad_mode: ``"constant"`` (zeros) or ``"reflect"``.
        generator: optional ``torch.Generator`` on ``images.device`` for reproducibility.
            Random draws, in order: row offsets, column offsets, flip coins.

    Example:
        >>> g = torch.Generator().manual_seed(1)
        >>> out = random_crop_flip(torch.arange(16.).view(1, 1, 4, 4), padding=1, generator=g)
        >>> out.shape
        torch.Size([1, 1, 4, 4])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {tuple(images.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if pad_mode not in ("constant", "reflect"):
        raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
    n, c, h, w = images.shape
    if pad_mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflect padding {padding} must be smaller than the image size {h}×{w}")
    if n == 0:
        return images.clone()
    channels_last = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    device = images.device

    padded = F.pad(images, (padding,) * 4, mode=pad_mode) if padding else images
    span = 2 * padding + 1
    top = torch.randint(span, (n, 1), device=device, generator=generator)
    left = torch.randint(span, (n, 1), device=device, generator=generator)
    rows = top + torch.arange(h, device=device)  # N×H: source row of every output row
    cols = left + torch.arange(w, device=device)  # N×W: source column of every output column
    if flip:
        flipped = torch.rand(n, 1, device=device, generator=generator) < 0.5
        cols = torch.where(flipped, cols.flip(1), cols)

    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=device).view(1, c, 1, 1)
    out = padded[batch, chan, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out
