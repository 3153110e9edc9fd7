"""Argument checks and weight initialisation shared by the model constructors."""

from __future__ import annotations

from torch import nn


def check_positive_int(name: str, value: object) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an ``int`` >= 1 (``bool`` refused).

    Example:
        >>> check_positive_int("width", 16)
        >>> check_positive_int("width", 0)
        Traceback (most recent call last):
        ...
        ValueError: width must be a positive integer, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_depth(model: str, depth: object, offset: int, examples: str) -> None:
    """Raise ``ValueError`` unless ``depth`` is ``6n + offset`` for an integer ``n >= 1``.

    Both CIFAR families are three stages of ``n`` repeated units of two weighted layers each
    (ResNet: ``6n + 2``; DenseNet-BC, whose bottleneck has two convolutions: ``6n + 4``), so a
    depth off that lattice names no network. ``examples`` lists valid depths for the message.

    Example:
        >>> check_depth("ResNetCifar", 20, offset=2, examples="8, 14, 20, ...")
        >>> check_depth("ResNetCifar", 21, offset=2, examples="8, 14, 20, ...")
        Traceback (most recent call last):
        ...
        ValueError: ResNetCifar depth must satisfy (depth - 2) % 6 == 0 with depth >= 8, i.e. 6n + 2 ...; got 21
    """
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"depth must be an integer, got {depth!r}")
    minimum = 6 + offset
    if depth < minimum or (depth - offset) % 6 != 0:
        raise ValueError(
            f"{model} depth must satisfy (depth - {offset}) % 6 == 0 with depth >= {minimum}, "
            f"i.e. 6n + {offset} for n >= 1: {examples}; got {depth}"
        )


def init_weights_(model: nn.Module, zero_linear_bias: bool) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions, BatchNorm weight 1 and bias 0, in place.

    ``zero_linear_bias`` also zeroes the bias of every ``nn.Linear`` (their weight keeps
    PyTorch's default). Modules are visited in ``model.modules()`` order, so the random
    draws, and hence a seeded network, are the same as initialising each module in turn.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif zero_linear_bias and isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
