"""CIFAR-style classification models for the lstsd research harness.

Implemented from the papers (torchvision is not used):

* :class:`ResNetCifar` -- He et al., "Deep Residual Learning for Image Recognition",
  CVPR 2016, Sec. 4.2 (depth 6n + 2, option-A identity shortcuts).
* :class:`DenseNetBC` -- Huang et al., "Densely Connected Convolutional Networks",
  CVPR 2017 (DenseNet-BC, default L=100, k=12).

Models are built by name through :func:`build_model`, which validates the keyword
arguments that the harness passes through from user configuration.

Example:
    >>> import torch
    >>> model = build_model("resnet20", num_classes=100)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 100])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .densenet import DenseNetBC
from .resnet import ResNetCifar

__all__ = ["DenseNetBC", "ResNetCifar", "available_models", "build_model"]


@dataclass(frozen=True)
class _ModelSpec:
    """How to build one registered model name."""

    factory: Callable[..., nn.Module]
    fixed: dict[str, Any] = field(default_factory=dict)
    optional: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    description: str = ""


_RESNET_OPTIONAL = ("width",)
_DENSENET_OPTIONAL = ("growth_rate", "compression", "init_channels")

_REGISTRY: dict[str, _ModelSpec] = {
    **{
        f"resnet{d}": _ModelSpec(
            ResNetCifar,
            fixed={"depth": d},
            optional=_RESNET_OPTIONAL,
            description=f"CIFAR ResNet-{d} (He et al. 2016), option-A shortcuts",
        )
        for d in (20, 32, 56, 110)
    },
    "resnet": _ModelSpec(
        ResNetCifar,
        optional=_RESNET_OPTIONAL,
        required=("depth",),
        description="CIFAR ResNet of any depth 6n+2 (He et al. 2016)",
    ),
    "densenet100": _ModelSpec(
        DenseNetBC,
        fixed={"depth": 100},
        optional=_DENSENET_OPTIONAL,
        description="DenseNet-BC-100, k=12 (Huang et al. 2017)",
    ),
    "densenet_bc": _ModelSpec(
        DenseNetBC,
        optional=_DENSENET_OPTIONAL,
        required=("depth",),
        description="DenseNet-BC of any depth 6n+4 (Huang et al. 2017)",
    ),
}


def available_models() -> list[str]:
    """Return the sorted names accepted by :func:`build_model`.

    Names: ``resnet20``, ``resnet32``, ``resnet56``, ``resnet110`` and ``resnet``
    (He et al., CVPR 2016); ``densenet100`` and ``densenet_bc`` (Huang et al., CVPR 2017).

    Example:
        >>> "resnet20" in available_models()
        True
    """
    return sorted(_REGISTRY)


def build_model(name: str, *, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build a registered model by name.

    Models follow He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016,
    CIFAR ResNets with option-A shortcuts) and Huang et al., "Densely Connected
    Convolutional Networks" (CVPR 2017, DenseNet-BC).

    Accepted extra keyword arguments per name:

    * ``resnet20``/``resnet32``/``resnet56``/``resnet110``: ``width`` (default 16).
    * ``resnet``: ``depth`` (required, 6n + 2), ``width``.
    * ``densenet100``: ``growth_rate`` (default 12), ``compression`` (0.5),
      ``init_channels`` (default ``2 * growth_rate``).
    * ``densenet_bc``: ``depth`` (required, 6n + 4) plus the ``densenet100`` options.

    Args:
        name: model name (case-insensitive), one of :func:`available_models`.
        num_classes: number of output logits.
        in_channels: channels of the input images (3 for RGB, 1 for grey-scale).
        **kwargs: model-specific options listed above.

    Returns:
        The freshly initialised model (on CPU, float32).

    Raises:
        ValueError: unknown ``name`` (the message lists the available names) or an
            invalid option value such as a bad depth.
        TypeError: an unknown or missing keyword argument (the message names it and
            lists the accepted ones).

    Example:
        >>> model = build_model("resnet20", num_classes=100)
        >>> model = build_model("resnet", depth=44, width=32, num_classes=10, in_channels=1)
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    spec = _REGISTRY.get(key)
    if spec is None:
        raise ValueError(
            f"unknown model {name!r}; available models: {', '.join(available_models())}"
        )
    accepted = spec.required + spec.optional
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        hint = ""
        if any(k in spec.fixed for k in unknown):
            hint = f" ({key!r} fixes {', '.join(f'{k}={v}' for k, v in spec.fixed.items())})"
        raise TypeError(
            f"unknown keyword argument(s) {', '.join(map(repr, unknown))} for model {key!r}{hint}; "
            f"accepted: num_classes, in_channels"
            + "".join(f", {k}" for k in accepted)
        )
    missing = [k for k in spec.required if k not in kwargs]
    if missing:
        raise TypeError(
            f"model {key!r} requires keyword argument(s) {', '.join(map(repr, missing))}"
        )
    return spec.factory(
        num_classes=num_classes, in_channels=in_channels, **spec.fixed, **kwargs
    )
