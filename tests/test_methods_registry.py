"""The method registry, the shared interface's defaults, and IndexedDataset."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lstsd import IndexedDataset
from lstsd.losses import cross_entropy
from lstsd.methods import _REGISTRY, Method, Vanilla, available_methods, create_method, register_method


def test_create_method_by_name_passes_settings():
    method = create_method("lstsd", num_samples=10, num_classes=3, generation_epochs=2, temperature=1.0)
    assert method.name == "lstsd" and method.generations.length == 2 and method.distillation.temperature == 1.0


def test_unknown_name_and_unknown_setting_are_clear():
    with pytest.raises(ValueError, match="unknown method 'lstdd'.*lstsd"):
        create_method("lstdd", num_samples=10, num_classes=3)
    with pytest.raises(ValueError, match="does not accept \\['lambda_lng'\\]"):
        create_method("lstsd", num_samples=10, num_classes=3, lambda_lng=1.0)


def test_register_custom_method_and_refuse_duplicates():
    class Doubled(Method):
        def compute_loss(self, epoch, logits, targets, indices, *, model, inputs):
            ce = cross_entropy(logits, targets)
            return 2 * ce, {"ce": (ce, 2.0)}

    register_method("test_doubled", Doubled)
    try:
        m = create_method("test_doubled", num_samples=4, num_classes=2)
        m.start_epoch(0)
        logits, y = torch.randn(3, 2), torch.tensor([0, 1, 1])
        assert m.loss(logits, y, None).item() == pytest.approx(
            2 * torch.nn.functional.cross_entropy(logits, y).item())
        with pytest.raises(ValueError, match="already registered"):
            register_method("test_doubled", Doubled)
    finally:
        _REGISTRY.pop("test_doubled")
    assert "test_doubled" not in available_methods()


def test_vanilla_is_cross_entropy_and_default_hooks():
    m = create_method("vanilla", num_samples=4, num_classes=3)
    model = torch.nn.Linear(2, 3)
    assert m.configure_lr_scheduler(torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, steps_per_epoch=3) is None
    m.start_epoch(0)
    x, y = torch.randn(4, 2), torch.tensor([0, 2, 1, 1])
    loss = m.loss(model(x), y, torch.arange(4))
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(model(x), y).item())
    assert set(m.loss_components()) == {"ce", "total"}
    m.end_epoch(model)
    probs = m.eval_predictions(model, x)
    assert list(probs) == ["model"]
    torch.testing.assert_close(probs["model"], torch.softmax(model(x), dim=1))
    state = m.state_dict()
    fresh = Vanilla(4, 3)
    fresh.load_state_dict(state)
    assert fresh.next_epoch == 1


def test_indexed_dataset_yields_indices_through_a_dataloader():
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10) % 3
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=4, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    seen = []
    for xb, yb, idx in loader:
        assert idx.dtype == torch.int64
        torch.testing.assert_close(xb[:, 0], x[idx, 0])
        torch.testing.assert_close(yb, y[idx])
        seen += idx.tolist()
    assert sorted(seen) == list(range(10))


def test_indexed_dataset_errors():
    with pytest.raises(TypeError, match="map-style"):
        IndexedDataset(iter([1, 2]))
    with pytest.raises(ValueError, match="\\(x, y\\) pairs"):
        IndexedDataset([(1, 2, 3)])[0]
    assert IndexedDataset([(1, 2), (3, 4)])[-1] == (3, 4, 1)


def test_a_method_that_overrides_the_loss_template_is_refused_when_defined():
    # Method.loss checks the batch and moves the state beside the logits; a subclass that replaced it
    # would skip both silently, so defining one is an error that names compute_loss.
    with pytest.raises(TypeError, match="overrides Method.loss.*implement compute_loss"):
        class Bypass(Method):
            def loss(self, logits, targets, indices=None, *, model=None, inputs=None, num_items_in_batch=None):
                return cross_entropy(logits, targets)
