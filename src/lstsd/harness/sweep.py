"""``lstsd sweep``: a grid over any config keys × seeds, a table and a plot of the metric against
each swept value (with a band over the seeds).

A grid axis is ``KEY=V1,V2,...`` (values read as YAML: ``1``, ``0.5``, ``true``, ``fp32``), or
several keys that move together, ``KEY1,KEY2=A1:B1,A2:B2,...`` (e.g. the λ-scale sweep
``method_args.lambda_long,method_args.lambda_short=0:0,1.2:2.0,2.4:4.0``). Several axes make the
product. Keys are config keys, dotted into ``model_args``/``method_args``.

Example:
    >>> axes = [parse_axis("method_args.generation_epochs=1,3"), parse_axis("lr,batch_size=0.1:128,0.05:64")]
    >>> [point_overrides(p) for p in grid_points(axes)][:2]
    [['method_args.generation_epochs=1', 'lr=0.1', 'batch_size=128'], ['method_args.generation_epochs=1', ...]]
    >>> point_label(grid_points(axes)[0])
    'generation_epochs1-lr0.1-batch_size128'
"""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .metrics import metric_label
from .rundir import point_label, read_results

__all__ = ["Axis", "grid_points", "parse_axis", "point_label", "point_overrides", "sweep_plot", "sweep_table"]


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: the keys that move together and their values (one tuple per step)."""

    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]

    @property
    def label(self) -> str:
        return ",".join(k.split(".")[-1] for k in self.keys)


def parse_axis(spec: str) -> Axis:
    """``KEY=V1,V2`` or ``KEY1,KEY2=A1:B1,A2:B2`` → an :class:`Axis`; a clear error for anything else."""
    if "=" not in spec:
        raise ConfigError(f"--grid {spec!r} has no '='", "write it as KEY=V1,V2,... (e.g. "
                          "method_args.generation_epochs=1,2,3) or KEY1,KEY2=A1:B1,A2:B2")
    left, right = spec.split("=", 1)
    keys = tuple(k.strip() for k in left.split(","))
    if not all(keys) or not all(re.fullmatch(r"[A-Za-z_][\w.]*", k) for k in keys):
        raise ConfigError(f"--grid {spec!r}: {left!r} is not a key or a comma-separated list of keys",
                          "name config keys, e.g. lr or method_args.lambda_long,method_args.lambda_short")
    steps = [s.strip() for s in right.split(",") if s.strip()]
    if not steps:
        raise ConfigError(f"--grid {spec!r} has no values", "list them after '=': KEY=V1,V2,...")
    values = []
    for step in steps:
        parts = step.split(":") if len(keys) > 1 else [step]
        if len(parts) != len(keys):
            raise ConfigError(f"--grid {spec!r}: {step!r} has {len(parts)} value(s) for {len(keys)} keys",
                              f"give each step as {':'.join(['V'] * len(keys))}")
        try:
            values.append(tuple(yaml.safe_load(p) for p in parts))
        except yaml.YAMLError:
            raise ConfigError(f"--grid {spec!r}: cannot read {step!r}", "write plain numbers, words or true/false") \
                from None
    if len(set(values)) != len(values):
        raise ConfigError(f"--grid {spec!r} repeats a value", "list each value once")
    return Axis(keys, tuple(values))


def grid_points(axes: list[Axis]) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the axes' steps: ``((key, value), ...)`` per point, the first axis slowest."""
    points = []
    for combo in itertools.product(*(axis.values for axis in axes)):
        points.append(tuple((k, v) for axis, step in zip(axes, combo) for k, v in zip(axis.keys, step)))
    return points


def point_overrides(point: tuple[tuple[str, Any], ...]) -> list[str]:
    """The ``--set`` overrides of a grid point."""
    return [f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in point]


@dataclass
class SweepResult:
    """The finished runs of one grid point: its values and each seed's headline metric."""

    point: tuple[tuple[str, Any], ...]
    values: list[float]
    metric: str


def collect_sweep(points: list[tuple[tuple[str, Any], ...]], run_dirs: list[list[Path]],
                  split: str = "test") -> list[SweepResult]:
    """Each run's headline metric on ``split``, from its ``results.json``
    (:func:`~lstsd.harness.rundir.read_results`)."""
    out = []
    for point, dirs in zip(points, run_dirs):
        values, metric = [], "accuracy"
        for d in dirs:
            results = read_results(d)
            metric = results["metrics"][0]
            values.append(results["final"][f"{split}_{metric}"])
        out.append(SweepResult(point, values, metric))
    return out


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f} (n = 1)"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f} (n = {len(values)})"


def sweep_table(results: list[SweepResult], axes: list[Axis], split: str = "test") -> str:
    """A markdown table: one row per grid point, the swept values and the metric (mean ± std over seeds)."""
    keys = [k for axis in axes for k in axis.keys]
    metric = results[0].metric if results else "accuracy"
    lines = ["| " + " | ".join(k.split(".")[-1] for k in keys) + f" | {split} {metric_label(metric)} |",
             "|" + "---|" * (len(keys) + 1)]
    for r in results:
        lines.append("| " + " | ".join(str(v) for _, v in r.point) + f" | {_cell(r.values)} |")
    best = max(results, key=lambda r: statistics.fmean(r.values)) if results else None
    caption = f"{split} {metric_label(metric)}, mean ± std over seeds, final epoch"
    if best is not None:
        caption += f"; highest mean at {', '.join(f'{k.split(chr(46))[-1]}={v}' for k, v in best.point)}"
    return caption + "\n\n" + "\n".join(lines)


def sweep_plot(results: list[SweepResult], axes: list[Axis], path: Path, *, title: str, split: str = "test") -> Path:
    """The metric against the first axis (mean, band = min–max over seeds), one line per combination
    of the other axes. Numeric values are spaced by value, others evenly."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    first = axes[0]
    numeric = all(isinstance(v[0], (int, float)) and not isinstance(v[0], bool) for v in first.values)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n_first = len(first.keys)
    lines: dict[tuple, list[SweepResult]] = {}
    for r in results:
        lines.setdefault(tuple(r.point[n_first:]), []).append(r)
    for rest, rs in lines.items():
        xs = [r.point[0][1] if numeric else i for i, r in enumerate(rs)]
        means = [statistics.fmean(r.values) for r in rs]
        line, = ax.plot(xs, means, marker="o", label=", ".join(f"{k.split('.')[-1]}={v}" for k, v in rest) or None)
        ax.fill_between(xs, [min(r.values) for r in rs], [max(r.values) for r in rs], alpha=0.15,
                        color=line.get_color())
    if not numeric:
        ax.set_xticks(range(len(first.values)), [":".join(map(str, v)) for v in first.values])
    metric = results[0].metric if results else "accuracy"
    ax.set(xlabel=first.label, ylabel=f"{split} {metric_label(metric)}: mean, band = min-max over seeds", title=title)
    ax.grid(alpha=0.3)
    if any(lines):
        ax.legend(fontsize=8)
    from .report.plots import fit_texts
    fit_texts(fig)
    os.makedirs(path.parent, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
