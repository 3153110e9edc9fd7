"""The shared toy problem of the method tests: a tiny MLP with batch norm (so buffers are exercised),
24 synthetic samples, seeded batches, and the plain training loop of the method interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from lstsd.methods import Method, create_method

N, C, D, B = 24, 3, 4, 8          # samples, classes, input features, batch size
STEPS = N // B                     # steps per epoch
LR = 0.1
T = 2.0


# ----------------------------------------------------------------------------- fixtures / helpers
def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, C))


def make_data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g)


def index_batches(num_samples: int, batch_size: int, epoch: int, *, seed: int = 0, pool: int | None = None,
                  drop: int = 0, drop_last: bool = False) -> list[torch.Tensor]:
    """The sample indices of each batch of ``epoch``: a seeded shuffle of ``[0, pool or num_samples)``
    without its last ``drop`` samples, in batches of ``batch_size`` (the last one smaller unless ``drop_last``)."""
    order = torch.randperm(pool or num_samples, generator=torch.Generator().manual_seed(1000 * seed + epoch))
    order = order[:len(order) - drop]
    out = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    return [idx for idx in out if not drop_last or len(idx) == batch_size]


def batches(data: tuple[torch.Tensor, torch.Tensor], epoch: int, pool: int = N,
            drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The toy data set's batches ``(x, y, idx)`` of ``epoch`` (see :func:`index_batches`)."""
    x, y = data
    for idx in index_batches(N, B, epoch, seed=1, pool=pool, drop_last=drop_last):
        yield x[idx], y[idx], idx


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=1e-4)


def run_epochs(method: Method, epochs: range, batches_of: Any, step: Any, *, model: nn.Module | None = None,
               on_epoch_end: Any = None) -> list[Any]:
    """The epoch protocol of the method interface: ``step(epoch, batch)`` for each batch of each epoch
    between ``start_epoch`` and ``end_epoch(model)``; returns what the steps returned."""
    out = []
    for epoch in epochs:
        method.start_epoch(epoch)
        for batch in batches_of(epoch):
            out.append(step(epoch, batch))
        method.end_epoch(model)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    return out


def train(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, method: Method, epochs: range,
          data: tuple[torch.Tensor, torch.Tensor], *, on_step: Any = None, on_epoch_end: Any = None,
          **batch_kw: Any) -> list[torch.Tensor]:
    """The plain training loop of the method interface on the toy data; returns the per-step losses."""
    model.train()

    def step(epoch: int, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y, idx = batch
        logits = model(x)
        loss = method.loss(logits, y, idx, model=model, inputs=x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.end_step(model)
        if sched is not None:
            sched.step()
        if on_step is not None:
            on_step(epoch, x, y, idx, logits)
        return loss.detach()

    return run_epochs(method, epochs, lambda epoch: batches(data, epoch, **batch_kw), step, model=model,
                      on_epoch_end=on_epoch_end)


def setup_run(name: str, seed: int = 0, epochs: int = 5, model: nn.Module | None = None, **hparams: Any):
    model = make_model(seed) if model is None else model
    opt = make_optimizer(model)
    method = create_method(name, num_samples=N, num_classes=C, **hparams)
    method.setup(model, epochs=epochs, steps_per_epoch=STEPS)
    sched = method.configure_lr_scheduler(opt, epochs=epochs, steps_per_epoch=STEPS)
    return model, opt, sched, method


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def model_with(state: dict[str, torch.Tensor]) -> nn.Module:
    m = make_model(99)
    m.load_state_dict(state)
    return m.eval()


def hand_kl(logits: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(z ‖ softmax(logits / T)) summed over classes, divided by the batch size."""
    z = teacher_probs.double()
    log_p = torch.log_softmax(logits.detach().double() / T, dim=1)
    per = (torch.where(z > 0, z * z.log(), torch.zeros_like(z)) - z * log_p).sum(1)
    if mask is not None:
        per = per * mask.double()
    return per.sum() / logits.shape[0]


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Exact recursive equality of nested dicts/lists/tensors."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{where}: tensors differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
