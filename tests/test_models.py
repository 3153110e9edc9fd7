"""Tests for lstsd.harness.models (CIFAR ResNets and DenseNet-BC)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import lstsd.harness.models as models_pkg
from lstsd.harness.models import DenseNetBC, ResNetCifar, available_models, build_model
from lstsd.harness.models.resnet import PadShortcut

# Published sizes: He et al. 2016, Table 6; Huang et al. 2017, Table 2 (DenseNet-BC L=100, k=12).
PUBLISHED_PARAMS = {
    "resnet20": 0.27e6,
    "resnet32": 0.46e6,
    "resnet56": 0.85e6,
    "resnet110": 1.7e6,
    "densenet100": 0.8e6,
}

# Exact counts of this implementation (regression pins), for 10 and 100 classes.
EXACT_PARAMS = {
    "resnet20": {10: 269_722, 100: 275_572},
    "resnet32": {10: 464_154, 100: 470_004},
    "resnet56": {10: 853_018, 100: 858_868},
    "resnet110": {10: 1_727_962, 100: 1_733_812},
    "densenet100": {10: 769_162, 100: 800_032},
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def resnet_params_option_a(depth: int, width: int, in_ch: int, classes: int) -> int:
    """Independent count: convs + BNs + fc only (no shortcut parameters)."""
    n = (depth - 2) // 6
    total = in_ch * 9 * width + 2 * width  # stem conv + BN
    cin = width
    for cout in (width, 2 * width, 4 * width):
        for _ in range(n):
            total += cin * 9 * cout + cout * 9 * cout + 4 * cout
            cin = cout
    return total + cin * classes + classes


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_param_count_matches_published(name: str) -> None:
    model = build_model(name, num_classes=100)
    count = n_params(model)
    assert count == pytest.approx(PUBLISHED_PARAMS[name], rel=0.03)
    assert count == EXACT_PARAMS[name][100]
    assert n_params(build_model(name, num_classes=10)) == EXACT_PARAMS[name][10]


@pytest.mark.parametrize("depth", [20, 32, 56, 110])
def test_resnet_has_only_conv_bn_fc_params(depth: int) -> None:
    model = ResNetCifar(depth=depth, num_classes=100)
    assert n_params(model) == resnet_params_option_a(depth, 16, 3, 100)
    n_shortcuts = 0
    for module in model.modules():
        if isinstance(module, PadShortcut):
            n_shortcuts += 1
            assert n_params(module) == 0
            assert not list(module.buffers())
    assert n_shortcuts == 2  # first block of stages 2 and 3


def test_pad_shortcut_subsamples_and_zero_pads() -> None:
    x = randn(2, 4, 7, 7)
    y = PadShortcut(stride=2, extra_channels=4)(x)
    assert y.shape == (2, 8, 4, 4)
    torch.testing.assert_close(y[:, :4], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 4:]) == 0


@pytest.mark.parametrize(
    "name,kwargs,num_classes",
    [
        ("resnet20", {}, 10),
        ("resnet32", {}, 100),
        ("resnet56", {}, 7),
        ("resnet", {"depth": 8, "width": 8}, 5),
        ("densenet_bc", {"depth": 22}, 10),
    ],
)
def test_output_shape_small(name: str, kwargs: dict, num_classes: int) -> None:
    model = build_model(name, num_classes=num_classes, **kwargs)
    out = model(randn(2, 3, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet110", "densenet100"])
def test_output_shape_big(name: str) -> None:
    model = build_model(name, num_classes=100)
    with torch.no_grad():
        out = model(randn(2, 3, 32, 32))
    assert out.shape == (2, 100)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [28, 8])
@pytest.mark.parametrize("name,kwargs", [("resnet20", {}), ("densenet_bc", {"depth": 22})])
def test_grayscale_and_small_inputs(name: str, kwargs: dict, size: int) -> None:
    model = build_model(name, num_classes=10, in_channels=1, **kwargs)
    out = model(randn(2, 1, size, size))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert model.conv1.weight.grad is not None
    assert model.conv1.weight.shape[1] == 1


@pytest.mark.parametrize("name,kwargs", [("resnet20", {}), ("densenet_bc", {"depth": 22})])
def test_channels_last_bf16_autocast(name: str, kwargs: dict) -> None:
    model = build_model(name, num_classes=10, **kwargs).to(memory_format=torch.channels_last)
    x = randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_channels_last_matches_contiguous_in_eval() -> None:
    model = build_model("resnet", depth=8, num_classes=10).eval()
    x = randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last)
        )
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_width_scaling_is_about_quadratic() -> None:
    base = n_params(build_model("resnet20", num_classes=10))
    for width, lo, hi in [(32, 3.8, 4.0), (8, 0.24, 0.27)]:
        count = n_params(build_model("resnet20", num_classes=10, width=width))
        assert count == resnet_params_option_a(20, width, 3, 10)
        assert lo < count / base < hi
    m = build_model("resnet20", num_classes=10, width=32)
    assert m.fc.in_features == 128 and m.layer1[0].conv1.out_channels == 32


def test_densenet_structure() -> None:
    model = DenseNetBC(depth=100, growth_rate=12, num_classes=100)
    assert model.num_layers_per_block == 16
    assert model.conv1.out_channels == 24
    # 24 + 16*12 = 216 -> 108 -> 108 + 192 = 300 -> 150 -> 150 + 192 = 342
    assert model.trans1.conv.out_channels == 108
    assert model.trans2.conv.out_channels == 150
    assert model.feature_dim == 342
    assert model.block1[0].conv1.out_channels == 48  # bottleneck: 4k
    assert n_params(DenseNetBC(depth=100, growth_rate=24, num_classes=100)) > 2.5e6
    assert n_params(DenseNetBC(depth=100, compression=1.0, num_classes=100)) > 0.8e6


def test_init() -> None:
    model = build_model("resnet20", num_classes=10)
    bn = model.layer2[0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    conv = model.layer3[1].conv2  # fan_out = 64 * 9 -> std = sqrt(2 / 576)
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.1)
    # The classifier's bias: PyTorch's default for ResNet, zero for DenseNet-BC (each as documented).
    assert not torch.all(model.fc.bias == 0)
    assert torch.all(build_model("densenet_bc", depth=10, num_classes=10).fc.bias == 0)


@pytest.mark.parametrize("depth", [0, 19, 21, 2, 7])
def test_invalid_resnet_depth(depth: int) -> None:
    with pytest.raises(ValueError, match=r"6n \+ 2.*20, 26, 32"):
        ResNetCifar(depth=depth)


@pytest.mark.parametrize("depth", [99, 101, 4])
def test_invalid_densenet_depth(depth: int) -> None:
    with pytest.raises(ValueError, match=r"6n \+ 4.*100"):
        build_model("densenet_bc", depth=depth, num_classes=10)


def test_invalid_values() -> None:
    with pytest.raises(ValueError, match="width"):
        build_model("resnet20", num_classes=10, width=0)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet20", num_classes=0)
    with pytest.raises(ValueError, match="compression"):
        build_model("densenet100", num_classes=10, compression=1.5)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match="resnet20.*") as info:
        build_model("resnet18", num_classes=10)
    for name in available_models():
        assert name in str(info.value)


def test_unknown_and_missing_kwargs() -> None:
    with pytest.raises(TypeError, match=r"'widht'.*accepted:.*width") as info:
        build_model("resnet20", num_classes=10, widht=32)
    assert "in_channels" in str(info.value)
    with pytest.raises(TypeError, match=r"'depth'.*depth=20"):
        build_model("resnet20", num_classes=10, depth=32)
    with pytest.raises(TypeError, match=r"'growth'.*growth_rate"):
        build_model("densenet100", num_classes=10, growth=12)
    with pytest.raises(TypeError, match="requires.*'depth'"):
        build_model("resnet", num_classes=10)
    with pytest.raises(TypeError):
        build_model("resnet20")  # num_classes is required


def test_registry() -> None:
    names = available_models()
    assert names == sorted(names)
    assert set(names) == {
        "resnet20", "resnet32", "resnet56", "resnet110", "resnet", "densenet100", "densenet_bc"
    }
    assert isinstance(build_model("ResNet20", num_classes=10), ResNetCifar)  # case-insensitive
    assert isinstance(build_model("densenet100", num_classes=10), DenseNetBC)
    assert build_model("resnet", depth=44, num_classes=10).num_blocks == 7
    assert build_model("densenet100", num_classes=10, growth_rate=6).conv1.out_channels == 12
    assert set(models_pkg.__all__) >= {"ResNetCifar", "DenseNetBC", "build_model", "available_models"}


def test_no_torchvision_and_docstrings() -> None:
    pkg_dir = Path(models_pkg.__file__).parent
    for path in pkg_dir.glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+torchvision", path.read_text(), re.M), path
    for obj in (ResNetCifar, DenseNetBC, build_model, available_models):
        assert obj.__doc__ and ">>>" in obj.__doc__ and "20" in obj.__doc__
    assert "typo" in DenseNetBC.__doc__ and "80" in DenseNetBC.__doc__
