"""Tables and plots from finished runs, in the paper's layouts.

Table layouts (:data:`LAYOUTS`), named by what they show:

* ``methods_by_network`` (paper Table 1, one data set): rows = methods, columns = networks.
* ``network_methods_by_dataset`` (paper Table 2; text data sets, or several data sets): rows =
  network × method, columns = data sets.

When the methods are LSTSD and its variants only (:func:`variants_vs_lstsd`, paper Table 3),
each cell adds its difference to full LSTSD in parentheses.

Every cell is ``mean ± std`` over seeds (sample std, n − 1), with n shown when runs differ in n.
"""

from __future__ import annotations

import os
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .registry import is_text_dataset
from .trainer import iterate_runs

LAYOUTS = ("methods_by_network", "network_methods_by_dataset")


@dataclass
class RunRecord:
    """One finished run, as the tables and plots read it (``results.json`` and ``metrics.jsonl``)."""

    run_dir: Path
    method: str
    model: str
    dataset: str
    seed: int
    final: dict[str, float]
    rows: list[dict[str, Any]]
    cost: dict[str, Any]
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])


def collect(run_dirs: list[str | os.PathLike]) -> list[RunRecord]:
    """Read finished runs (``results.json`` + ``metrics.jsonl``)."""
    return [RunRecord(run_dir=d, method=r["method"], model=r["model"], dataset=r["dataset"], seed=r["seed"],
                      final=r["final"], rows=rows, cost=r["cost"], metrics=list(r.get("metrics", ["accuracy"])))
            for d, r, rows in iterate_runs(run_dirs)]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _predictors(records: list[RunRecord], split: str, metric: str) -> list[str]:
    """Extra predictors reported beside the model (``ensemble``, ``teacher``), in first-seen order."""
    prefix = f"{split}_{metric}_"
    seen: list[str] = []
    for r in records:
        for key in r.final:
            if key.startswith(prefix) and key[len(prefix):] not in seen:
                seen.append(key[len(prefix):])
    return seen


def choose_layout(records: list[RunRecord]) -> str:
    """``network_methods_by_dataset`` for runs over several data sets or a text data set, else ``methods_by_network``.

    Example:
        >>> def run(dataset):
        ...     return RunRecord(Path("."), "vanilla", "resnet20", dataset, 0, {"test_accuracy": 90.0}, [], {})
        >>> [choose_layout(runs) for runs in ([run("digits")], [run("glue_rte")], [run("digits"), run("cifar10")])]
        ['methods_by_network', 'network_methods_by_dataset', 'network_methods_by_dataset']
    """
    datasets = {r.dataset for r in records}
    by_dataset = len(datasets) > 1 or any(is_text_dataset(d) for d in datasets)
    return "network_methods_by_dataset" if by_dataset else "methods_by_network"


def variants_vs_lstsd(methods: list[str]) -> bool:
    """Whether ``methods`` are LSTSD and its variants only (paper Table 3): cells then add the difference to LSTSD.

    Example:
        >>> variants_vs_lstsd(["lstsd", "lstsd_wo_long"]), variants_vs_lstsd(["vanilla", "lstsd"])
        (True, False)
    """
    return "lstsd" in methods and all(m.startswith("lstsd") for m in methods) and len(methods) > 1


def results_table(records: list[RunRecord], *, methods: list[str] | None = None, split: str = "test",
                  metric: str | None = None, layout: str | None = None) -> str:
    """A markdown table of ``split`` ``metric`` (default: each data set's headline metric).

    Args:
        records: finished runs (:func:`collect`).
        methods: the rows' methods, in order (default: as first seen).
        split: ``"test"`` or ``"val"``.
        metric: a metric name (default: each run's headline metric).
        layout: one of :data:`LAYOUTS` (default: :func:`choose_layout`).

    Example:
        >>> runs = [RunRecord(Path("."), method, "resnet20", "digits", 0, {"test_accuracy": acc}, [], {})
        ...         for method, acc in (("vanilla", 90.0), ("lstsd", 92.5))]
        >>> print(results_table(runs))
        test accuracy (%), mean ± std over seeds [0], final epoch
        <BLANKLINE>
        | Method | resnet20 |
        |---|---|
        | vanilla | 90.00 ± 0.00 |
        | lstsd | 92.50 ± 0.00 |
    """
    if not records:
        raise ValueError("no finished runs to report")
    layout = layout or choose_layout(records)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown table layout {layout!r}; available: {', '.join(LAYOUTS)}")
    methods = methods or list(dict.fromkeys(r.method for r in records))
    datasets = list(dict.fromkeys(r.dataset for r in records))
    models = list(dict.fromkeys(r.model for r in records))
    by_dataset = layout == "network_methods_by_dataset"
    if not by_dataset and len(datasets) > 1:
        raise ValueError(f"layout methods_by_network shows one data set, these runs have {len(datasets)} "
                         f"({', '.join(datasets)}); use network_methods_by_dataset")
    col_keys = datasets if by_dataset else models
    row_keys = [(m, meth) for m in models for meth in methods] if by_dataset else [(None, meth) for meth in methods]

    cells: dict[tuple[Any, str, str], list[float]] = defaultdict(list)
    for r in records:
        name = metric or r.metrics[0]
        col = r.dataset if by_dataset else r.model
        row_model = r.model if by_dataset else None
        cells[(row_model, r.method, col, "")].append(r.final.get(f"{split}_{name}", float("nan")))
        for extra in _predictors([r], split, name):
            cells[(row_model, r.method, col, extra)].append(r.final[f"{split}_{name}_{extra}"])

    vs_lstsd = variants_vs_lstsd(methods)
    reference = {col: _mean_std(cells[(rm, "lstsd", col, "")])[0]
                 for rm, _ in row_keys for col in col_keys if cells.get((rm, "lstsd", col, ""))} if vs_lstsd else {}
    ns = {len(v) for v in cells.values()}

    def cell(values: list[float], col: str) -> str:
        if not values:
            return "—"
        mean, std = _mean_std(values)
        text = f"{mean:.2f} ± {std:.2f}"
        if vs_lstsd and col in reference:
            text += f" ({mean - reference[col]:+.2f})"
        if len(ns) > 1:
            text += f" (n={len(values)})"
        return text

    metric_names = sorted({metric or r.metrics[0] for r in records})
    header_first = ["Network", "Method"] if by_dataset else ["Method"]
    lines = ["| " + " | ".join(header_first + col_keys) + " |",
             "|" + "---|" * (len(header_first) + len(col_keys))]
    for row_model, meth in row_keys:
        extras = sorted({k[3] for k in cells if k[0] == row_model and k[1] == meth and k[3]})
        for extra in [""] + extras:
            values = [cells.get((row_model, meth, col, extra), []) for col in col_keys]
            if not any(values):
                continue
            label = meth if not extra else f"{meth} ({extra})"
            first = [row_model or "", label] if by_dataset else [label]
            lines.append("| " + " | ".join(first + [cell(v, c) for v, c in zip(values, col_keys)]) + " |")
    seeds = sorted({r.seed for r in records})
    caption = (f"{split} {'/'.join(metric_names)} (%), mean ± std over seeds {seeds}, final epoch"
               + ("; in parentheses: difference to LSTSD" if vs_lstsd else ""))
    return caption + "\n\n" + "\n".join(lines)


def cost_table(records: list[RunRecord]) -> str:
    """Training time per step, relative to vanilla where vanilla was run on the same network."""
    per: dict[tuple[str, str], list[float]] = defaultdict(list)
    extra: dict[str, int] = {}
    for r in records:
        per[(r.model, r.method)].append(r.cost["seconds_per_step"])
        extra[r.method] = r.cost.get("extra_forward_passes", 0)
    lines = ["| Network | Method | extra forwards/step | ms/step (median) | vs vanilla |", "|---|---|---|---|---|"]
    for (model, method), values in per.items():
        ms = 1000 * statistics.median(values)
        base = per.get((model, "vanilla"))
        ratio = f"{ms / (1000 * statistics.median(base)):.2f}×" if base else "—"
        lines.append(f"| {model} | {method} | {extra[method]} | {ms:.1f} | {ratio} |")
    return ("Cost (wall time of whole runs, measured one after another: a rough figure; "
            "see benchmarks/ for interleaved ratios)\n\n" + "\n".join(lines))


def _series(records: list[RunRecord], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs where every run has ``key``, with the mean, min and max over runs."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for r in records:
        for row in r.rows:
            if key in row:
                by_epoch[row["epoch"]].append(row[key])
    epochs = sorted(e for e, v in by_epoch.items() if len(v) == len(records))
    return ([e + 1 for e in epochs], [statistics.fmean(by_epoch[e]) for e in epochs],
            [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs])


def _file_part(text: str) -> str:
    """A label made safe for a file name: ``resnet(depth=8,width=16)`` -> ``resnet-depth8-width16``."""
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9_.]+", "-", text.replace("=", ""))).strip("-")


def _band(ax: Any, x: list[int], mean: list[float], lo: list[float], hi: list[float], label: str) -> None:
    line, = ax.plot(x, mean, marker="o", markersize=3, label=label)
    ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())


def _save(fig: Any, ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(records: list[RunRecord], out_dir: str | os.PathLike, *, split: str = "test") -> list[Path]:
    """PNG plots: ``split`` accuracy per epoch per method; loss components per epoch for each method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.model, r.method)].append(r)

    for dataset, model in dict.fromkeys((d, m) for d, m, _ in groups):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        metric = records[0].metrics[0]
        for (d, m, method), runs in groups.items():
            if (d, m) != (dataset, model):
                continue
            x, mean, lo, hi = _series(runs, f"{split}_{metric}")
            if not x:
                continue
            _band(ax, x, mean, lo, hi, f"{method} (n={len(runs)})")
        ax.set(xlabel="epoch", ylabel=f"{split} {metric} (%): mean, band = min-max over seeds",
               title=f"{model} on {dataset}: {split} {metric}")
        written.append(_save(fig, ax, out / f"accuracy_{_file_part(dataset)}_{_file_part(model)}.png"))

    for (dataset, model, method), runs in groups.items():
        keys = [k for k in runs[0].rows[0] if k.startswith("loss_") and k != "loss_total"]
        if len(keys) < 2:
            continue   # cross-entropy only: nothing to decompose
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key in keys + ["loss_total"]:
            x, mean, lo, hi = _series(runs, key)
            _band(ax, x, mean, lo, hi, key.removeprefix("loss_"))
        ax.set(xlabel="epoch", ylabel="mean training loss", title=f"{method}: loss components ({model}, {dataset})")
        written.append(_save(fig, ax, out / f"loss_components_{method}_{_file_part(dataset)}_{_file_part(model)}.png"))
    return written
