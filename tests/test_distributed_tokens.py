"""Per-token banks under torch.distributed: two gloo processes on the CPU keep every per-token bank
bit-identical (the number of rows a step exchanges changes from step to step and grows past the
first step's), equal to what one process fed every rank's rows writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DistributedSampler

from lstsd.methods import create_method
from processes import gloo_rank, spawn_ranks

N, V, T, BATCH, EPOCHS, WORLD = 11, 12, 9, 2, 3, 2
SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "lstsd_topk": ("lstsd", {"generation_epochs": 1, "bank_topk": 3, "bank_dtype": "float32"}),
    "lstsd_sampled": ("lstsd", {"generation_epochs": 1, "bank_format": "sampled", "bank_samples": 4}),
    "ps_kd": ("ps_kd", {"bank_topk": 2}),
    "temporal_ensembling": ("temporal_ensembling", {"bank_topk": 3}),
}


def labels() -> torch.Tensor:
    """Example i supervises tokens 2 … 2 + (i % 5): 1 to 5 of them, so steps exchange different counts."""
    out = torch.full((N, T), -100)
    for i in range(N):
        out[i, 2:3 + i % 5 + 1] = (torch.arange(i % 5 + 2) + i) % V
    return out


def logit_table() -> torch.Tensor:
    return torch.randn(EPOCHS, N, T, V, generator=torch.Generator().manual_seed(0)) * 2


def rank_batches(rank: int, epoch: int) -> list[torch.Tensor]:
    sampler = DistributedSampler(range(N), num_replicas=WORLD, rank=rank, shuffle=True, seed=3)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler))
    return [order[k:k + BATCH] for k in range(0, len(order), BATCH)]


def build(name: str, settings: dict[str, Any]) -> Any:
    method = create_method(name, num_samples=N, num_classes=V, per_token=True, **settings)
    method.setup(torch.nn.Identity(), epochs=EPOCHS, steps_per_epoch=3)
    return method


def _worker(rank: int, port: int, out_dir: str) -> None:
    with gloo_rank(rank, port, WORLD):
        table, y = logit_table(), labels()
        for scenario, (name, settings) in SCENARIOS.items():
            method = build(name, settings)
            for epoch in range(EPOCHS):
                method.start_epoch(epoch)
                for idx in rank_batches(rank, epoch):
                    method.loss(table[epoch, idx] + 0.25 * rank, y[idx], idx)
                method.end_epoch()
            torch.save(method.state_dict(), Path(out_dir) / f"{scenario}-rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp-tokens")
    spawn_ranks(_worker, out, WORLD)
    return out


def single_process_reference(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """One process fed, at each step, every rank's examples (rank 0 first), each example once."""
    table, y = logit_table(), labels()
    method = build(name, settings)
    for epoch in range(EPOCHS):
        method.start_epoch(epoch)
        per_rank = [rank_batches(r, epoch) for r in range(WORLD)]
        for step in range(len(per_rank[0])):
            seen: set[int] = set()
            idx, logits = [], []
            for r in range(WORLD):
                for i in per_rank[r][step].tolist():
                    if i not in seen:
                        seen.add(i)
                        idx.append(i)
                        logits.append(table[epoch, i] + 0.25 * r)
            method.loss(torch.stack(logits), y[idx], torch.tensor(idx))
        method.end_epoch()
    return method.state_dict()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_per_token_banks_are_identical_on_both_ranks(ranks_output: Path, scenario: str):
    states = [torch.load(ranks_output / f"{scenario}-rank{r}.pt", weights_only=True) for r in range(WORLD)]
    tensors = [k for k, v in states[0].items() if isinstance(v, torch.Tensor)]
    assert any(k.endswith("values") for k in tensors)
    for key in tensors:
        assert torch.equal(states[0][key], states[1][key]), f"{scenario}: {key} differs between ranks"
    counts = [v for k, v in states[0].items() if k.endswith(".counts")][0]     # a bank's (per example) counts
    assert counts.tolist() == [i % 5 + 2 for i in range(N)]          # every example, its own count


@pytest.mark.parametrize("scenario", ["lstsd_topk", "ps_kd", "temporal_ensembling"])   # sampled: drawn per rank
def test_per_token_banks_equal_one_process_fed_every_rank_s_rows(ranks_output: Path, scenario: str):
    state = torch.load(ranks_output / f"{scenario}-rank0.pt", weights_only=True)
    reference = single_process_reference(*SCENARIOS[scenario])
    for key, value in reference.items():
        if isinstance(value, torch.Tensor) and not key.endswith("offsets"):   # layout order may differ
            if key.endswith(("values", "ids", "recorded")):
                continue
            assert torch.equal(state[key], value), key
    # Compare the targets token by token through the layouts (each keeps its own order).
    for prefix in {k.rsplit(".", 1)[0] for k in reference if k.endswith(".values")}:
        mine = {n: state[f"{prefix}.{n}"] for n in ("counts", "offsets", "values", "ids")}
        theirs = {n: reference[f"{prefix}.{n}"] for n in ("counts", "offsets", "values", "ids")}
        for i in range(N):
            a = slice(int(mine["offsets"][i]), int(mine["offsets"][i] + mine["counts"][i]))
            b = slice(int(theirs["offsets"][i]), int(theirs["offsets"][i] + theirs["counts"][i]))
            assert torch.equal(mine["values"][a], theirs["values"][b]), (prefix, i)
            assert torch.equal(mine["ids"][a], theirs["ids"][b]), (prefix, i)


def _fsdp_worker(rank: int, port: int, out_dir: str) -> None:
    # FSDP2 (fully_shard) on the CPU with gloo: the banks live outside the sharded model, so the
    # method sees whole logits and exchanges rows as under DDP.
    transformers = pytest.importorskip("transformers")
    from torch.distributed.fsdp import fully_shard
    with gloo_rank(rank, port, WORLD):
        torch.manual_seed(0)
        config = transformers.LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
        model = transformers.LlamaForCausalLM(config)
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        method = build("lstsd", {"generation_epochs": 1})
        ids = torch.randint(0, V, (N, T), generator=torch.Generator().manual_seed(1))
        y = labels()
        for epoch in range(2):
            method.start_epoch(epoch)
            for idx in rank_batches(rank, epoch):
                method.loss(model(input_ids=ids[idx]).logits, y[idx], idx).backward()
                opt.step()
                opt.zero_grad()
            method.end_epoch()
        torch.save(method.state_dict(), Path(out_dir) / f"fsdp-rank{rank}.pt")


def test_per_token_lstsd_trains_an_fsdp_sharded_model_with_identical_banks(tmp_path: Path):
    pytest.importorskip("transformers")
    spawn_ranks(_fsdp_worker, tmp_path, WORLD)
    states = [torch.load(tmp_path / f"fsdp-rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for key, value in states[0].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, states[1][key]), key
    assert [v for k, v in states[0].items() if k.endswith("short_term_bank.counts")][0].tolist() == \
        [i % 5 + 2 for i in range(N)]
