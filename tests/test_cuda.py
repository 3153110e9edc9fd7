"""The CUDA paths, on a GPU: every test here is marked ``cuda`` and skipped where torch sees no GPU.
``benchmarks/gpu_check.sh`` (``make gpu-check``) runs them, with the cost benchmarks, in one command.

What they check, against the CPU path where there is one:

* **Banks on the GPU and in pinned host memory**: the per-sample methods (LSTSD dense fp32/fp16 and
  top-k, Temporal Ensembling, PS-KD) fed the same logits on the GPU, with banks beside the model and
  with ``bank_device="cpu"`` (pinned host memory, non-blocking copies), give the CPU's losses,
  gradients and banks within floating-point tolerance.
* **AMP**: the harness trains LSTSD in bf16 autocast and in fp16 with loss scaling (banks on the GPU
  and in host memory): finite losses, both teachers on, every row recorded; a plain loop's AMP
  losses follow fp32's.
* **Two ranks on one GPU**: nccl (skipped, saying so, where NCCL refuses two ranks on one GPU) and
  gloo with CUDA tensors: banks identical on both ranks and equal to one process's, per sample and
  per token.
* **Per token, a tiny Llama**: top-k banks equal to the CPU run's; the ``sampled`` format draws with a
  generator on the logits' device, deterministically, without touching CUDA's global generator; a
  step under bf16 autocast.
* **Integrations**: Lightning (``bf16-mixed`` on the GPU) and the HF Trainer (bf16, the tiny Llama).

``LSTSD_TEST_DEVICE=cpu`` runs them on the CPU instead (the GPU-only parts skipped or reduced), to
check the tests themselves on a machine without a GPU: ``LSTSD_TEST_DEVICE=cpu pytest -m cuda
tests/test_cuda.py``.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from lstsd.bank import Bank
from lstsd.methods import Method, create_method
from lstsd.tokens import TokenBank
from processes import free_port

DEVICE = torch.device(os.environ.get("LSTSD_TEST_DEVICE", "cuda"))
ON_GPU = DEVICE.type == "cuda"

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(ON_GPU and not torch.cuda.is_available(), reason="needs CUDA (torch sees no GPU)")]

needs_gpu = pytest.mark.skipif(not ON_GPU, reason="GPU only (LSTSD_TEST_DEVICE=cpu)")

N, C, B, EPOCHS = 40, 10, 8, 4


def logit_table(seed: int = 0, shape: tuple[int, ...] = (EPOCHS, N, C)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


def tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a state_dict, on the CPU (extra state left out)."""
    return {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}


def assert_states_close(got: dict[str, Any], want: dict[str, Any], **tolerance: float) -> None:
    got, want = tensors(got), tensors(want)
    assert got.keys() == want.keys()
    for key in want:
        if want[key].is_floating_point():
            torch.testing.assert_close(got[key], want[key], msg=lambda m, k=key: f"{k}: {m}", **tolerance)
        else:
            assert torch.equal(got[key], want[key]), key


def banks(method: nn.Module) -> list[nn.Module]:
    return [m for m in method.modules() if isinstance(m, (Bank, TokenBank))]


# ----------------------------------------------------------------------------- banks: GPU, pinned host, CPU
SAMPLE_SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "lstsd-dense-fp32": ("lstsd", {"generation_epochs": 2, "bank_dtype": "float32"}),
    "lstsd-dense-fp16": ("lstsd", {"generation_epochs": 2}),
    "lstsd-topk3": ("lstsd", {"generation_epochs": 2, "bank_format": "topk", "bank_topk": 3}),
    "temporal_ensembling": ("temporal_ensembling", {}),
    "ps_kd": ("ps_kd", {}),
}
PLACES = {"gpu": {}, "pinned-host": {"bank_device": "cpu"}}


def run_per_sample(name: str, settings: dict[str, Any], device: torch.device,
                   ) -> tuple[Method, list[torch.Tensor], list[torch.Tensor]]:
    """``EPOCHS`` epochs of fixed logits (a shuffled order per epoch); the losses and logits' gradients."""
    method = create_method(name, num_samples=N, num_classes=C, **settings)
    method.setup(nn.Identity(), epochs=EPOCHS, steps_per_epoch=N // B)
    table, y = logit_table(), torch.arange(N) % C
    losses, grads = [], []
    for epoch in range(EPOCHS):
        method.start_epoch(epoch)
        order = torch.randperm(N, generator=torch.Generator().manual_seed(epoch))
        for k in range(0, N, B):
            idx = order[k:k + B]
            logits = table[epoch, idx].to(device).requires_grad_()
            loss = method.loss(logits, y[idx].to(device), idx.to(device))
            loss.backward()
            losses.append(loss.detach().cpu())
            grads.append(logits.grad.cpu())
        method.end_epoch()
    return method, losses, grads


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("scenario", list(SAMPLE_SCENARIOS))
def test_banks_on_the_gpu_and_in_pinned_host_memory_give_the_cpu_s_results(scenario: str, place: str):
    name, settings = SAMPLE_SCENARIOS[scenario]
    if place == "pinned-host" and name == "temporal_ensembling":
        pytest.skip("Temporal Ensembling keeps its bank beside the model (no bank_device setting)")
    reference, want_losses, want_grads = run_per_sample(name, settings, torch.device("cpu"))
    method, losses, grads = run_per_sample(name, {**settings, **PLACES[place]}, DEVICE)
    # fp16 rows may round one ulp apart where the GPU's softmax differs from the CPU's in its last bit
    torch.testing.assert_close(torch.stack(losses), torch.stack(want_losses), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.stack(grads), torch.stack(want_grads), rtol=1e-4, atol=1e-5)
    fp16 = "dense-fp16" in scenario or "topk" in scenario or name == "ps_kd"
    assert_states_close(method.state_dict(), reference.state_dict(),
                        **(dict(rtol=1e-3, atol=1e-3) if fp16 else dict(rtol=1e-5, atol=1e-6)))
    for bank in banks(method):
        for buffer in bank.buffers():
            if place == "gpu":                              # followed the logits to the GPU
                assert buffer.device.type == DEVICE.type
            else:                                           # stayed in host memory, pinned on a GPU machine
                assert buffer.device.type == "cpu" and (buffer.is_pinned() or not ON_GPU)


@needs_gpu
def test_a_method_moves_to_the_gpu_and_back_and_its_state_loads_across_devices():
    method, _, _ = run_per_sample("lstsd", {"generation_epochs": 2, "bank_dtype": "float32"}, DEVICE)
    on_cpu = create_method("lstsd", num_samples=N, num_classes=C, generation_epochs=2, bank_dtype="float32")
    on_cpu.load_state_dict(method.state_dict())
    assert all(b.device.type == "cpu" for b in on_cpu.buffers())
    back = create_method("lstsd", num_samples=N, num_classes=C, generation_epochs=2, bank_dtype="float32").to(DEVICE)
    back.load_state_dict(on_cpu.state_dict())
    assert all(b.device.type == "cuda" for b in back.buffers())
    assert_states_close(back.state_dict(), method.state_dict(), rtol=0, atol=0)


# ----------------------------------------------------------------------------- AMP
def harness_config(tmp_path: Path, precision: str, bank_device: str | None) -> Any:
    from lstsd.harness.config import TrainConfig
    method_args: dict[str, Any] = {"generation_epochs": 1}
    if bank_device:
        method_args["bank_device"] = bank_device
    return TrainConfig.from_dict(dict(
        dataset="digits", train_subset=240, model="resnet", model_args={"depth": 8, "width": 8}, method="lstsd",
        method_args=method_args, epochs=3, batch_size=32, lr=0.1, eval_batch_size=500, progress="none",
        augment=False, device=str(DEVICE), precision=precision, run_dir=str(tmp_path / "run")))


@pytest.mark.parametrize("bank_device", [None, "cpu"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_harness_trains_lstsd_under_amp(tmp_path: Path, precision: str, bank_device: str | None):
    """bf16 autocast, and fp16 autocast with loss scaling (GradScaler), as ``precision: auto`` picks on GPUs."""
    import json

    from lstsd.harness.trainer import Trainer
    if precision == "fp16" and not ON_GPU:
        pytest.skip("fp16 AMP needs CUDA")
    trainer = Trainer(harness_config(tmp_path, precision, bank_device), log=None)
    results = trainer.fit()
    assert results["cost"]["precision"] == precision and results["cost"]["device"].startswith(DEVICE.type)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [v for r in rows for k, v in r.items() if k.startswith("loss_")]
    assert torch.isfinite(torch.tensor(losses)).all(), rows
    assert rows[-1]["loss_long"] > 0 and rows[-1]["loss_short"] > 0, rows[-1]       # both teachers on
    assert results["final"]["test_accuracy"] > 30, results["final"]                  # 10 classes: 10% is chance
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    for bank in banks(trainer.method):
        assert bool(bank.recorded.all())
        assert bank.recorded.device.type == ("cpu" if bank_device else DEVICE.type)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_amp_losses_of_a_plain_loop_follow_fp32(precision: str):
    if precision == "fp16" and not ON_GPU:
        pytest.skip("fp16 AMP needs CUDA")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, 32, generator=g).to(DEVICE), (torch.arange(N) % C).to(DEVICE)

    def run(amp: bool) -> tuple[list[float], Method]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, C)).to(DEVICE)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        # A scale that overflows no step here: a skipped step would part the trajectory from fp32's.
        scaler = torch.amp.GradScaler(DEVICE.type, init_scale=2.0**10, enabled=amp and precision == "fp16")
        method = create_method("lstsd", num_samples=N, num_classes=C, generation_epochs=1)
        losses = []
        for epoch in range(3):
            method.start_epoch(epoch)
            for k in range(0, N, B):
                idx = torch.arange(k, k + B, device=DEVICE)
                with torch.autocast(DEVICE.type, dtype=dtype, enabled=amp):
                    logits = model(x[idx])
                    loss = method.loss(logits, y[idx], idx)
                if amp:
                    assert logits.dtype == dtype
                opt.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                losses.append(float(loss.detach()))
            method.end_epoch()
        if scaler.is_enabled():
            assert scaler.get_scale() == 2.0**10, "a step was skipped (inf/NaN gradients in fp16)"
        return losses, method

    want, _ = run(amp=False)
    got, method = run(amp=True)
    assert all(torch.isfinite(torch.tensor(got)))
    assert got == pytest.approx(want, rel=5e-2), (got, want)
    parts = method.loss_components()
    assert float(parts["long"]) > 0 and float(parts["short"]) > 0


# ----------------------------------------------------------------------------- two ranks on one GPU
WORLD, RANK_BATCH, DIST_N, DIST_EPOCHS, V, T = 2, 4, 11, 3, 16, 6   # 11 samples: the sampler repeats one


def rank_batches(rank: int, epoch: int) -> list[torch.Tensor]:
    sampler = DistributedSampler(range(DIST_N), num_replicas=WORLD, rank=rank, shuffle=True, seed=3)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler))
    return [order[k:k + RANK_BATCH] for k in range(0, len(order), RANK_BATCH)]


def token_labels() -> torch.Tensor:
    """A prompt of 2 tokens (no loss) and answers of different lengths per example."""
    labels = torch.randint(0, V, (DIST_N, T), generator=torch.Generator().manual_seed(5))
    labels[:, :2] = -100
    for i in range(DIST_N):
        labels[i, 3 + i % 3:] = -100
    return labels


DIST_SCENARIOS: dict[str, dict[str, Any]] = {
    "per-sample": {"generation_epochs": 2, "bank_dtype": "float32"},
    "per-token": {"generation_epochs": 2, "per_token": True, "bank_topk": 4, "bank_dtype": "float32",
                  "temperature": 1.0},
}


def dist_batch(scenario: str, epoch: int, idx: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and targets of ``idx``; a sample drawn by both ranks gets other logits on each."""
    if scenario == "per-sample":
        return logit_table(1, (DIST_EPOCHS, DIST_N, C))[epoch, idx] + 0.25 * rank, torch.arange(DIST_N)[idx] % C
    return logit_table(2, (DIST_EPOCHS, DIST_N, T, V))[epoch, idx] + 0.25 * rank, token_labels()[idx]


def dist_method(scenario: str) -> Method:
    settings = DIST_SCENARIOS[scenario]
    method = create_method("lstsd", num_samples=DIST_N, num_classes=V if settings.get("per_token") else C, **settings)
    method.setup(nn.Identity(), epochs=DIST_EPOCHS, steps_per_epoch=2)
    return method


def _rank_worker(rank: int, backend: str, port: int, out_dir: str, device_type: str) -> None:
    """One rank: every scenario on ``device_type`` (both ranks on device 0), its states saved; an error
    is written to ``rank{rank}.err`` for the test to read."""
    out = Path(out_dir)
    try:
        torch.set_num_threads(1)
        device = torch.device(device_type, 0) if device_type == "cuda" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
        for scenario in DIST_SCENARIOS:
            method = dist_method(scenario)
            for epoch in range(DIST_EPOCHS):
                method.start_epoch(epoch)
                for idx in rank_batches(rank, epoch):
                    logits, targets = dist_batch(scenario, epoch, idx, rank)
                    method.loss(logits.to(device), targets.to(device), idx.to(device))
                method.end_epoch()
            torch.save(tensors(method.state_dict()), out / f"{scenario}-rank{rank}.pt")
        dist.barrier()
        (out / f"rank{rank}.ok").write_text("ok")
        dist.destroy_process_group()
    except BaseException as err:   # noqa: BLE001 - reported to the test
        (out / f"rank{rank}.err").write_text(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
        os._exit(1)                # no teardown: a process group left broken could hang in it


def single_process_reference(scenario: str) -> Method:
    """What one process writes when each step feeds both ranks' batches (rank 0's first), each sample
    once: the lowest rank's occurrence of a sample drawn twice, as the row exchange keeps."""
    method = dist_method(scenario)
    for epoch in range(DIST_EPOCHS):
        method.start_epoch(epoch)
        for per_rank in zip(*(rank_batches(r, epoch) for r in range(WORLD))):
            seen: set[int] = set()
            rows, targets, indices = [], [], []
            for rank, idx in enumerate(per_rank):
                logits, y = dist_batch(scenario, epoch, idx, rank)
                for k, i in enumerate(idx.tolist()):
                    if i not in seen:
                        seen.add(i)
                        rows.append(logits[k])
                        targets.append(y[k])
                        indices.append(i)
            method.loss(torch.stack(rows), torch.stack(targets), torch.tensor(indices))
        method.end_epoch()
    return method


@pytest.mark.parametrize("backend", ["nccl", "gloo"])
def test_two_ranks_on_one_gpu_keep_identical_banks(tmp_path: Path, backend: str):
    if backend == "nccl" and not (ON_GPU and dist.is_nccl_available()):
        pytest.skip("nccl needs CUDA and a torch built with NCCL")
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_rank_worker, args=(r, backend, port, str(tmp_path), DEVICE.type))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 90
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        if any((tmp_path / f"rank{r}.err").exists() for r in range(WORLD)):   # one failed: the other may wait
            deadline = min(deadline, time.monotonic() + 10)                   # for it forever
        time.sleep(0.2)
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for r in hung:
        procs[r].kill()
        procs[r].join(10)
    errors = [(tmp_path / f"rank{r}.err").read_text() for r in range(WORLD) if (tmp_path / f"rank{r}.err").exists()]
    if errors:
        text = "\n".join(errors)
        first = " | ".join(e.splitlines()[0] for e in errors)
        if backend == "nccl" and any(s in text.lower() for s in ("duplicate gpu", "invalid usage", "invalidusage")):
            pytest.skip(f"nccl refuses two ranks on one GPU: {first[:300]}")
        if backend == "gloo" and ON_GPU and "support" in text.lower():   # gloo on CUDA tensors: not a claimed path
            pytest.skip(f"gloo refuses this collective on CUDA tensors: {first[:300]}")
        pytest.fail(f"{backend}, 2 ranks on one {DEVICE.type} device: {text}")
    assert not hung, f"{backend}: ranks {hung} did not finish in 90 s (killed)"
    assert all((tmp_path / f"rank{r}.ok").exists() for r in range(WORLD)), \
        f"{backend}: the ranks ended with exit codes {[p.exitcode for p in procs]} and no report (see their stderr)"
    for scenario in DIST_SCENARIOS:
        states = [torch.load(tmp_path / f"{scenario}-rank{r}.pt", weights_only=True) for r in range(WORLD)]
        assert_states_close(states[1], states[0], rtol=0, atol=0)          # bit-identical on both ranks
        reference = single_process_reference(scenario)
        assert_states_close(states[0], reference.state_dict(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- per token, a tiny Llama
LM_V, LM_N, LM_T = 64, 6, 10


def tiny_llama(seed: int = 0) -> Any:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=LM_V, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(config)


def lm_data() -> tuple[torch.Tensor, torch.Tensor]:
    """LM_N examples of LM_T tokens: a prompt of 3 (no loss), an answer, padding (no loss) after it."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, LM_V, (LM_N, LM_T), generator=g)
    labels = ids.clone()
    labels[:, :3] = -100
    for i, end in enumerate([10, 8, 6, 9, 7, 10]):
        labels[i, end:] = -100
    return ids, labels


def run_lm(device: torch.device, epochs: int = 3, *, autocast: torch.dtype | None = None,
           check_global_rng: bool = False, **settings: Any) -> tuple[Method, list[float]]:
    """LSTSD per token on the tiny Llama, ``epochs`` epochs of two batches (E = 1); top-k banks unless
    ``settings`` name another format (the sampled default draws differently on each device)."""
    settings.setdefault("bank_format", "topk")
    model = tiny_llama().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    method = create_method("lstsd", num_samples=LM_N, num_classes=LM_V, per_token=True, generation_epochs=1,
                           **settings)
    ids, labels = (t.to(device) for t in lm_data())
    losses = []
    for epoch in range(epochs):
        method.start_epoch(epoch)
        for idx in (torch.tensor([4, 0, 2]), torch.tensor([1, 5, 3])):
            idx = idx.to(device)
            with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                logits = model(input_ids=ids[idx]).logits
                before = torch.cuda.get_rng_state() if check_global_rng and device.type == "cuda" else None
                loss = method.loss(logits, labels[idx], idx)
                if before is not None:
                    assert torch.equal(torch.cuda.get_rng_state(), before), "the bank drew from CUDA's global generator"
            opt.zero_grad()
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
            opt.step()
            losses.append(float(loss.detach()))
        method.end_epoch()
    return method, losses


def test_per_token_topk_banks_on_the_gpu_equal_the_cpu_run():
    want_method, want = run_lm(torch.device("cpu"))
    method, got = run_lm(DEVICE)
    assert got == pytest.approx(want, rel=1e-4)
    for bank, ref in zip(banks(method), banks(want_method)):
        assert isinstance(bank, TokenBank) and bank.device.type == "cpu"           # per-token banks: host memory
        assert bank.values.is_pinned() or not ON_GPU
        assert torch.equal(bank.counts, ref.counts) and torch.equal(bank.recorded, ref.recorded)
        assert bool(bank.recorded[:bank.filled].all())
        # The top-k probabilities (sorted) agree; ids may swap only where two probabilities tie.
        torch.testing.assert_close(bank.values[:bank.filled].float(), ref.values[:ref.filled].float(),
                                   rtol=2e-3, atol=2e-3)
        same_ids = (bank.ids[:bank.filled] == ref.ids[:ref.filled]).float().mean()
        assert same_ids >= 0.99, float(same_ids)
    parts = method.loss_components()
    assert float(parts["long"]) > 0 and float(parts["short"]) > 0


def test_per_token_sampled_banks_train_on_the_gpu_without_touching_the_global_generator():
    method, losses = run_lm(DEVICE, bank_format="sampled", bank_samples=6, check_global_rng=True)
    assert all(torch.isfinite(torch.tensor(losses)))
    for bank in banks(method):
        assert bank.format == "sampled" and bool(bank.recorded[:bank.filled].all())
        values, ids = bank.values[:bank.filled].float(), bank.ids[:bank.filled]
        torch.testing.assert_close(values.sum(dim=1), torch.ones(bank.filled), rtol=0, atol=1e-3)   # shares of 6 draws
        assert bool(((ids >= 0) & (ids < LM_V)).all())
    parts = method.loss_components()
    assert float(parts["long"]) > 0 and float(parts["short"]) > 0


def test_sampled_draws_on_the_logits_device_are_seeded_and_follow_the_teacher():
    """The draws use a generator on the probabilities' device (CUDA's multinomial), seeded by the bank:
    the same bank state draws the same tokens; with many draws each token's share is its probability."""
    teacher = torch.softmax(logit_table(3, (1, 16)), dim=1)
    probs = teacher.expand(2000, 16).to(DEVICE)                    # 2,000 tokens with the same teacher
    draws = [TokenBank(2000, 16, bank_format="sampled", k=16, dtype=torch.float32).encode(probs) for _ in range(2)]
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert draws[0][0].device == probs.device
    values, ids = draws[0]
    shares = torch.zeros(2000, 16, device=DEVICE).scatter_add_(1, ids.long(), values.float()).mean(dim=0)
    torch.testing.assert_close(shares.cpu(), teacher[0], rtol=0, atol=0.01)     # 32,000 draws in all


def test_a_per_token_step_under_bf16_autocast_follows_fp32():
    _, want = run_lm(DEVICE, epochs=2)
    method, got = run_lm(DEVICE, epochs=2, autocast=torch.bfloat16)
    assert got == pytest.approx(want, rel=5e-2), (got, want)
    assert all(bool(b.recorded[:b.filled].all()) for b in banks(method))


# ----------------------------------------------------------------------------- integrations
def test_lightning_trains_lstsd_on_the_gpu_in_bf16_mixed():
    L = pytest.importorskip("lightning.pytorch")
    import lstsd
    from lstsd.integrations.lightning import LSTSDCallback, training_loss

    class Model(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, C))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y, idx = batch
            return training_loss(self, self.net(x), y, idx, inputs=x)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    g = torch.Generator().manual_seed(0)
    data = lstsd.IndexedDataset(torch.utils.data.TensorDataset(torch.randn(N, 32, generator=g), torch.arange(N) % C))
    loader = torch.utils.data.DataLoader(data, batch_size=B, shuffle=True)
    callback = LSTSDCallback("lstsd", num_samples=N, num_classes=C, network="net", generation_epochs=1)
    trainer = L.Trainer(max_epochs=3, accelerator="gpu" if ON_GPU else "cpu", devices=1, precision="bf16-mixed",
                        callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(Model(), loader)
    for bank in banks(callback.method):
        assert bank.recorded.device.type == DEVICE.type and bool(bank.recorded.all())
    parts = callback.method.loss_components()
    assert all(torch.isfinite(v).all() for v in parts.values()), parts
    assert float(parts["long"]) > 0 and float(parts["short"]) > 0


def test_the_hf_trainer_trains_a_causal_lm_per_token_on_the_gpu(tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from lstsd.integrations.transformers import LSTSDTrainer, add_index_column

    ids, labels = lm_data()
    rows = [{"input_ids": i.tolist(), "labels": lab.tolist()} for i, lab in zip(ids, labels)]
    model = tiny_llama()
    args = transformers.TrainingArguments(
        str(tmp_path / "out"), num_train_epochs=3, per_device_train_batch_size=3, learning_rate=0.05,
        save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=1, use_cpu=not ON_GPU, bf16=ON_GPU,
        seed=0, data_seed=0, lr_scheduler_type="constant", optim="sgd")
    trainer = LSTSDTrainer(model=model, args=args, train_dataset=add_index_column(rows),
                           data_collator=transformers.default_data_collator, method="lstsd",
                           method_settings={"generation_epochs": 1, "temperature": 1.0})
    trainer.train()
    assert next(model.parameters()).device.type == DEVICE.type
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    for bank in banks(trainer.method):
        assert isinstance(bank, TokenBank) and bool(bank.recorded[:bank.filled].all())
        assert bank.filled == int((labels[:, 1:] != -100).sum())
    parts = trainer.method.loss_components()
    assert float(parts["long"]) > 0 and float(parts["short"]) > 0


def test_cross_entropy_of_the_method_equals_torch_s_on_the_gpu():
    """The first mini-generation's loss is plain cross-entropy on the device (a sanity check of the
    method's own CE on CUDA kernels)."""
    logits = logit_table()[0].to(DEVICE)
    y = (torch.arange(N) % C).to(DEVICE)
    method = create_method("lstsd", num_samples=N, num_classes=C)
    method.start_epoch(0)
    torch.testing.assert_close(method.loss(logits, y, torch.arange(N, device=DEVICE)), F.cross_entropy(logits, y))
