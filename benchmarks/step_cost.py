"""Training-step cost of every registered method relative to vanilla (ResNet-20, CIFAR-100 shapes).

The LSTSD paper claims the method "brings almost no extra computational cost": its teachers are
stored probabilities, not networks run on the batch. This script measures one training step
(forward, the method's loss including any teacher forwards, backward, optimizer step, the
method's end-of-step hook and scheduler step) for each method on the same model and data.

Measurements are interleaved at the level of single steps: every repeat is one epoch of
``--steps`` steps for every method, run as rounds of one step of each method in turn (the order
rotates from round to round), so that bursts of load from other processes on a shared machine hit
all methods alike and each step is compared with a vanilla step taken seconds apart. Each method
keeps its own model, optimizer and state across repeats, and first runs a priming (untimed) epoch
so that every teacher is active (mini-generations of one epoch).

Reported per method: the extra forward passes it declares, the median ms per step over all timed
steps, and the ratio to vanilla — the median over rounds of (the method's step time / vanilla's
step time in the same round), with the interquartile range of those ratios.

Example (CPU, ≈ 2-3 min on 2 cores in bf16)::

    python benchmarks/step_cost.py --bf16
    python benchmarks/step_cost.py --device cuda --steps 20 --repeats 10 --bf16
    python benchmarks/step_cost.py --methods vanilla,lstsd,mean_teacher --steps 2 --repeats 3
    python benchmarks/step_cost.py --methods lstsd,lstsd:record_targets=after_update_eval --threads 2

A method may carry settings as ``NAME:KEY=VALUE:KEY=VALUE`` (values read as YAML scalars); it is
then reported under that spec.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from typing import Any

import torch

from lstsd.harness.models import build_model
from lstsd.methods import Method, available_methods, create_method

NUM_CLASSES = 100
# Settings that make every teacher active from the second epoch on (the first epoch primes).
# Methods not listed run with their defaults; a later method may need an entry here.
SETTINGS: dict[str, dict[str, Any]] = {
    "lstsd": {"generation_epochs": 1},
    "lstsd_wo_long": {"generation_epochs": 1},
    "lstsd_wo_short": {"generation_epochs": 1},
    "lstsd_single": {"generation_epochs": 1},
    "snapshot_ensembles": {"cycle_epochs": 1, "max_snapshots": 1},
    "snapshot_distillation": {"cycle_epochs": 1},
}


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"lstsd:record_targets=after_update_eval"`` -> ``("lstsd", {"record_targets": "after_update_eval"})``."""
    import yaml
    name, *pairs = spec.split(":")
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--methods {spec!r}: {pair!r} is not KEY=VALUE")
        settings[key] = yaml.safe_load(value)
    return name, settings


class Runner:
    """One method's model, optimizer, scheduler and state, advanced one epoch at a time."""

    def __init__(self, spec: str, args: argparse.Namespace, data: tuple[torch.Tensor, torch.Tensor]) -> None:
        torch.manual_seed(0)
        name, settings = parse_spec(spec)
        self.name = name
        self.args = args
        self.device = torch.device(args.device)
        self.x, self.y = data
        self.model = build_model("resnet20", num_classes=NUM_CLASSES).to(self.device)
        if args.bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        self.method: Method = create_method(name, num_samples=args.steps * args.batch_size,
                                            num_classes=NUM_CLASSES, **{**SETTINGS.get(name, {}), **settings})
        self.method.validate = False
        total_epochs = args.repeats + 1
        self.method.setup(self.model, epochs=total_epochs, steps_per_epoch=args.steps)
        self.sched = self.method.configure_lr_scheduler(self.opt, epochs=total_epochs, steps_per_epoch=args.steps)
        self.epoch = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.args.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def start_epoch(self) -> None:
        self.model.train()
        self.method.start_epoch(self.epoch)

    def step(self, step: int) -> float:
        """Training step ``step`` of the open epoch; returns its wall time in ms."""
        b = self.args.batch_size
        x = self.x[step * b:(step + 1) * b]
        y = self.y[step * b:(step + 1) * b]
        idx = torch.arange(step * b, (step + 1) * b, device=self.device)
        self._sync()
        start = time.perf_counter()
        with self._autocast():
            logits = self.model(x)
            loss = self.method.loss(logits, y, idx, model=self.model, inputs=x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.method.end_step(self.model)
        if self.sched is not None:
            self.sched.step()
        self._sync()
        return (time.perf_counter() - start) * 1e3

    def end_epoch(self) -> None:
        self.method.end_epoch(self.model)
        self.epoch += 1


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method per repeat (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds over the methods (default 5)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--methods", default="all", help="comma-separated names, or 'all' (vanilla is always added)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast and channels_last")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--steps, --repeats and --batch-size must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = available_methods() if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted({parse_spec(n)[0] for n in names} - set(available_methods()))
    if unknown:
        parser.error(f"unknown methods {unknown}; available: {', '.join(available_methods())}")
    names = ["vanilla"] + [n for n in names if n != "vanilla"]

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    x = torch.randn(n, 3, 32, 32, generator=g).to(device)
    if args.bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g).to(device)

    runners = {name: Runner(name, args, (x, y)) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}     # every timed step
    ratios: dict[str, list[float]] = {name: [] for name in names}    # step time / vanilla's, same round
    for repeat in range(args.repeats + 1):       # repeat 0 primes: warm-up, teachers become active
        for runner in runners.values():
            runner.start_epoch()
        for step in range(args.steps):
            shift = (repeat * args.steps + step) % len(names)
            round_ms = {name: runners[name].step(step) for name in names[shift:] + names[:shift]}
            if repeat == 0:
                continue
            for name, ms in round_ms.items():
                times[name].append(ms)
                ratios[name].append(ms / round_ms["vanilla"])
        for runner in runners.values():
            runner.end_epoch()
        print(f"{'priming' if repeat == 0 else f'repeat {repeat}/{args.repeats}'} done", file=sys.stderr, flush=True)

    dtype = "bf16 autocast, channels_last" if args.bf16 else "fp32"
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"ResNet-20, batch {args.batch_size}, 32x32x3, {NUM_CLASSES} classes, {args.device} ({dtype}{threads}); "
          f"{args.steps} steps x {args.repeats} interleaved repeats\n")
    print("| method | extra forwards | median ms/step | ratio to vanilla (IQR) |")
    print("|---|---:|---:|---|")
    for name in names:
        q1, q2, q3 = quartiles(ratios[name])
        print(f"| {name} | {runners[name].method.extra_forward_passes} | {statistics.median(times[name]):.1f} "
              f"| {q2:.2f} ({q1:.2f}–{q3:.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
