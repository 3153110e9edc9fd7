"""Banks under torch.distributed: two gloo processes on the CPU keep every per-sample bank
bit-identical, equal to what one process fed the same logits writes, padded duplicates included.

One ``torch.multiprocessing`` spawn (two ranks) runs every scenario and saves each rank's method
state after every epoch; the tests compare those files with a single-process reference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from lstsd.distributed import RowExchange
from lstsd.methods import create_method
from processes import gloo_rank, spawn_ranks, torchrun

N, C, BATCH, EPOCHS, WORLD = 11, 5, 4, 4, 2   # 11 samples on 2 ranks: the sampler repeats one
SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "lstsd": ("lstsd", {"generation_epochs": 2, "bank_dtype": "float32"}),
    "lstsd_fp16_topk": ("lstsd", {"generation_epochs": 2, "bank_format": "topk", "bank_topk": 3}),
    "temporal_ensembling": ("temporal_ensembling", {}),
    "ps_kd": ("ps_kd", {}),
    "lstsd_list_fallback": ("lstsd", {"generation_epochs": 2, "bank_dtype": "float32"}),
}


def logit_table(seed: int = 0) -> torch.Tensor:
    return torch.randn(EPOCHS, N, C, generator=torch.Generator().manual_seed(seed)) * 2


def rank_logits(table: torch.Tensor, epoch: int, idx: torch.Tensor, rank: int) -> torch.Tensor:
    # A sample drawn by both ranks gets different logits on each (batch norm would do the same):
    # only a deterministic choice of one keeps the ranks' banks identical.
    return table[epoch, idx] + 0.25 * rank


def rank_batches(rank: int, epoch: int) -> list[torch.Tensor]:
    sampler = DistributedSampler(range(N), num_replicas=WORLD, rank=rank, shuffle=True, seed=3)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler))
    return [order[k:k + BATCH] for k in range(0, len(order), BATCH)]


def build(name: str, kwargs: dict[str, Any]):
    method = create_method(name, num_samples=N, num_classes=C, **kwargs)
    method.setup(torch.nn.Identity(), epochs=EPOCHS, steps_per_epoch=2)
    return method


def _worker(rank: int, port: int, out_dir: str) -> None:
    with gloo_rank(rank, port, WORLD):
        table = logit_table()
        y = torch.arange(N) % C
        for scenario, (name, kwargs) in SCENARIOS.items():
            if scenario == "lstsd_list_fallback":   # a backend without the fused all-gather
                def refuse(*_: Any, **__: Any) -> None:
                    raise RuntimeError("this backend does not support all_gather_single")
                dist.all_gather_single = refuse          # type: ignore[attr-defined]
                dist.all_gather_into_tensor = refuse     # type: ignore[assignment]
            method = build(name, kwargs)
            for epoch in range(EPOCHS):
                method.start_epoch(epoch)
                for idx in rank_batches(rank, epoch):
                    method.loss(rank_logits(table, epoch, idx, rank), y[idx], idx)
                method.end_epoch()
                torch.save(method.state_dict(), Path(out_dir) / f"{scenario}-rank{rank}-epoch{epoch}.pt")
        # A batch larger than the one the ranks agreed on is refused (not a hang or a wrong write).
        exchange = RowExchange()
        exchange(torch.arange(2), torch.zeros(2, C))
        try:
            exchange(torch.arange(3), torch.zeros(3, C))
        except ValueError as err:
            (Path(out_dir) / f"capacity-rank{rank}.txt").write_text(str(err))


@pytest.fixture(scope="module")
def ranks_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    spawn_ranks(_worker, out, WORLD)
    return out


def single_process_reference(name: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """One process fed, at each step, every rank's rows (rank 0 first), each sample once."""
    table = logit_table()
    y = torch.arange(N) % C
    method = build(name, kwargs)
    states = []
    for epoch in range(EPOCHS):
        method.start_epoch(epoch)
        per_rank = [rank_batches(r, epoch) for r in range(WORLD)]
        for step in range(len(per_rank[0])):
            idx = torch.cat([per_rank[r][step] for r in range(WORLD)])
            logits = torch.cat([rank_logits(table, epoch, per_rank[r][step], r) for r in range(WORLD)])
            seen: set[int] = set()   # first occurrence in rank order, written out independently
            keep = torch.tensor([k for k, i in enumerate(idx.tolist()) if not (i in seen or seen.add(i))])
            method.loss(logits[keep], y[idx[keep]], idx[keep])
        method.end_epoch()
        states.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in method.state_dict().items()})
    return states


def test_the_sampler_really_pads_with_a_duplicate():
    drawn = torch.cat([torch.cat(rank_batches(r, 0)) for r in range(WORLD)])
    assert drawn.numel() == 12 and torch.unique(drawn).numel() == N


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_banks_are_identical_on_both_ranks_and_equal_to_one_process(ranks_output: Path, scenario: str):
    name, kwargs = SCENARIOS[scenario]
    reference = single_process_reference(name, kwargs)
    for epoch in range(EPOCHS):
        states = [torch.load(ranks_output / f"{scenario}-rank{r}-epoch{epoch}.pt", weights_only=True)
                  for r in range(WORLD)]
        tensors = [k for k, v in states[0].items() if isinstance(v, torch.Tensor)]
        assert tensors, "the method keeps per-sample state"
        for key in tensors:
            assert torch.equal(states[0][key], states[1][key]), f"{scenario} epoch {epoch}: {key} differs between ranks"
            assert torch.equal(states[0][key], reference[epoch][key]), \
                f"{scenario} epoch {epoch}: {key} differs from the single-process reference"
        recorded = [v for k, v in states[0].items() if k.endswith("recorded")]
        assert any(r.all() for r in recorded), "every sample is written every epoch (into some bank)"


def test_a_batch_larger_than_the_agreed_capacity_is_refused(ranks_output: Path):
    for r in range(WORLD):
        assert "same batch_size" in (ranks_output / f"capacity-rank{r}.txt").read_text()


def test_one_process_passes_rows_through_without_a_collective():
    exchange = RowExchange()
    idx = torch.tensor([2, 0])
    rows = torch.rand(2, C)
    got_idx, (got_rows,) = exchange(idx, rows)
    assert got_idx is idx and got_rows is rows and not exchange.active


@pytest.mark.slow
def test_the_ddp_example_runs_under_torchrun_with_identical_banks():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = torchrun([str(root / "examples" / "ddp_loop.py"), "--epochs", "4", "--bank-format", "topk"],
                    env=env, timeout=300, finished=lambda run: "banks identical on every rank: True" in run.stdout)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 ranks, banks identical on every rank: True" in done.stdout
