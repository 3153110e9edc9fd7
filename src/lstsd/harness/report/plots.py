"""The report's plots: each data set's headline metric per epoch, each row's loss components per
epoch (each part as it enters the loss, from the weights the trainer logged), and each row's
teachers (good? different?).

Epochs: plots count from 1 (``epoch 1/12`` is the first); the ``epoch`` key of ``metrics.jsonl``
counts from 0, so its row ``"epoch": 0`` is plotted at epoch 1.
"""

from __future__ import annotations

import os
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..metrics import lower_is_better, metric_label
from ..rundir import METRICS, RunRecord, absolute
from .tables import teacher_names

__all__ = ["fit_texts", "logged_weights", "write_plots", "write_teacher_plot"]


def _series(records: list[RunRecord], key: str,
            weight_key: str | None = None) -> tuple[list[int], list[float], list[float], list[float]]:
    """1-based epochs where every run has ``key``, with the mean, min and max over runs; each value
    times the same row's ``weight_key`` when one is given (a part of the loss as it enters the loss)."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for r in records:
        for row in r.rows:
            if key in row and (weight_key is None or weight_key in row):
                by_epoch[row["epoch"]].append(row[key] * (row[weight_key] if weight_key else 1.0))
    epochs = sorted(e for e, v in by_epoch.items() if len(v) == len(records))
    return ([e + 1 for e in epochs], [statistics.fmean(by_epoch[e]) for e in epochs],
            [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs])


def _file_part(text: str) -> str:
    """A label made safe for a file name: ``resnet(depth=8,width=16)`` -> ``resnet-depth8-width16``."""
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9_.]+", "-", text.replace("=", ""))).strip("-")


# Distinct marker, size and line style per curve: curves that coincide stay visible (the larger,
# hollow markers of the earlier curves ring the smaller ones drawn over them).
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
_LINESTYLES = ("-", "--", "-.", ":")


def _band(ax: Any, k: int, x: list[int], mean: list[float], lo: list[float], hi: list[float], label: str,
          **style: Any) -> None:
    size = max(3.0, 9.0 - 1.5 * (k % 5))
    options = dict(marker=_MARKERS[k % len(_MARKERS)], markersize=size, linestyle=_LINESTYLES[k % len(_LINESTYLES)],
                   markerfacecolor="none" if k % 2 == 0 else None, linewidth=1.6, label=label)
    options.update(style)
    line, = ax.plot(x, mean, **options)
    if any(a != b for a, b in zip(lo, hi)):
        ax.fill_between(x, lo, hi, alpha=0.12, color=line.get_color())


def fit_texts(fig: Any, margin: float = 0.96) -> None:
    """Lay ``fig`` out so that its titles and axis labels fit inside it: one too long for the figure
    (a text model's name, ``text_cnn(dropout=0.5,embed_dim=128,num_filters=100)``; a long y label on
    a short figure) is wrapped onto more lines, then the figure is laid out again. Without it the
    text runs past the figure's edge and is cut off in the PNG."""
    import textwrap
    for _ in range(3):                       # wrapping moves the axes: measure again after each layout
        fig.tight_layout()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        changed = False
        for ax in fig.axes:
            for text, vertical in ((ax.title, False), (ax.xaxis.label, False), (ax.yaxis.label, True)):
                content = text.get_text()
                if not content:
                    continue
                extent = text.get_window_extent(renderer)
                # Centred on its axes: the room is twice the distance from its centre to the nearer edge.
                low, high, size = ((extent.y0, extent.y1, extent.height) if vertical else
                                   (extent.x0, extent.x1, extent.width))
                start, end = (box.y0, box.y1) if vertical else (box.x0, box.x1)
                room = margin * 2 * min((low + high) / 2 - start, end - (low + high) / 2)
                if size <= room or room <= 0:
                    continue
                longest = max(len(line) for line in content.splitlines())
                chars = max(12, int(longest * room / size) - 1)
                wrapped = "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) or line
                                    for line in content.splitlines())
                if wrapped != content:
                    text.set_text(wrapped)
                    changed = True
        if not changed:
            return
    fig.tight_layout()


def _save(fig: Any, ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fit_texts(fig)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path



def logged_weights(runs: list[RunRecord], parts: list[str]) -> dict[str, float | None] | None:
    """Each loss part's weight as the trainer logged it (``weight_<part>`` beside ``loss_<part>`` in
    every row of ``metrics.jsonl``: ``total = Σ weight × part``): a number when it is the same in
    every epoch of every run where its part is not zero (where the part is zero its weight changes
    nothing: LSTSD's first mini-generation), ``None`` when it changes over the epochs
    (``rampup_epochs``, PS-KD's α_t). ``None`` instead of the dict when a row that logged a part
    lacks its weight (a run written before the weights were logged).

    Example:
        >>> def run(long_weights):
        ...     rows = [{"epoch": e, "loss_ce": 1.0, "loss_long": 0.5 * min(e, 1), "weight_ce": 1.0, "weight_long": w}
        ...             for e, w in enumerate(long_weights)]
        ...     return RunRecord(Path("."), "lstsd", "r", "d", 0, {}, rows, {})
        >>> logged_weights([run([0.0, 2.4, 2.4])], ["ce", "long"])        # 0 while the part is 0: still 2.4
        {'ce': 1.0, 'long': 2.4}
        >>> logged_weights([run([0.0, 1.2, 2.4])], ["ce", "long"])        # ramped up
        {'ce': 1.0, 'long': None}
        >>> old = run([2.4, 2.4]); del old.rows[1]["weight_long"]; print(logged_weights([old], ["ce", "long"]))
        None
    """
    weights: dict[str, float | None] = {}
    for part in parts:
        every: set[float] = set()      # the weights of every epoch
        active: set[float] = set()     # those of the epochs where the part is not zero
        for r in runs:
            for row in r.rows:
                if f"loss_{part}" not in row:
                    continue
                if f"weight_{part}" not in row:
                    return None
                weight = float(row[f"weight_{part}"])
                every.add(weight)
                if row[f"loss_{part}"] != 0:
                    active.add(weight)
        seen = active or every
        if not seen:
            weights[part] = 1.0                  # no row logged it: nothing is drawn
        else:
            weights[part] = next(iter(seen)) if len(seen) == 1 else None
    return weights


def _term(part: str) -> str:
    """How a loss part is named in the plot: the distillation terms are KL divergences."""
    return f"KL {part}" if part in ("long", "short", "kd") else part


def _loss_plot(runs: list[RunRecord], parts: list[str], path: Path, title: str) -> Path:
    """The loss components of one row per epoch, each weighted as it enters the loss when the runs
    logged the weights (so the parts add up to the total), with the weighted KL terms also drawn
    unweighted; the parts as logged otherwise."""
    import matplotlib.pyplot as plt
    weights = logged_weights(runs, parts)
    # A weight that does not change is shown as a number; one that changes over the epochs (rampup_epochs,
    # PS-KD's α_t) as λ(e): either way each epoch's part is drawn times that epoch's weight.
    constant = {p: w for p, w in (weights or {}).items() if w is not None}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    k = 0

    def factor(part: str, times: str) -> str:
        if part not in constant:
            return f"λ(e){times}"
        return "" if constant[part] == 1.0 else f"{constant[part]:g}{times}"

    for part in parts:
        label = _term(part) if weights is None else factor(part, " × ") + _term(part)
        _band(ax, k, *_series(runs, f"loss_{part}", None if weights is None else f"weight_{part}"), label)
        k += 1
    _band(ax, k, *_series(runs, "loss_total"), "total", color="black", linestyle="-", linewidth=2.2)
    k += 1
    unweighted = [p for p in parts if weights is not None and p != "ce" and constant.get(p) != 1.0]
    for part in unweighted:
        _band(ax, k, *_series(runs, f"loss_{part}"), f"{_term(part)} (unweighted)", linestyle=":",
              linewidth=1.0, alpha=0.7)
        k += 1
    if weights is not None:
        formula = "total = " + " + ".join(factor(p, "·") + _term(p) for p in parts)
        if len(constant) < len(parts):
            formula += "; λ(e): its weight in epoch e"
        if unweighted:
            what = "the KL terms" if all(_term(p).startswith("KL") for p in unweighted) else "those parts"
            formula += f"; dotted: {what} unweighted"
    else:
        formula = "parts as logged (unweighted); their weights are not known here, so they need not add up"
    ax.set(xlabel="epoch (1 = first)", ylabel="mean training loss", title=f"{title}\n{formula}")
    ax.title.set_fontsize(9)
    return _save(fig, ax, path)


def write_plots(records: list[RunRecord], out_dir: str | os.PathLike, *, split: str = "test",
                notes: list[str] | None = None) -> list[Path]:
    """PNG plots: each data set's headline metric on ``split`` per epoch per row; the loss
    components per epoch of each row; each row's teachers.

    Epochs are counted from 1 (``metrics.jsonl``'s ``epoch`` key + 1). The loss plot shows each
    part as it enters the loss (``2.4 × KL long``, from the ``weight_<part>`` the trainer logged),
    so the parts add up to the total, with the unweighted KL divergences dotted beside them.

    A curve is drawn over the epochs that every run of its row logged, so a run whose
    ``metrics.jsonl`` is empty or missing (nothing per epoch, though its ``results.json`` counts in
    the tables) is left out of the plots, with a note naming it appended to ``notes``; the other
    runs of its row are drawn.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        if not r.rows:
            if notes is not None:
                notes.append(f"{absolute(r.run_dir / METRICS)} holds no epoch: {r.row} seed {r.seed} is left out of "
                             "the plots (its final result is in the tables)")
            continue
        groups[(r.dataset, r.model, r.row)].append(r)

    for dataset, model in dict.fromkeys((d, m) for d, m, _ in groups):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        # This data set's own headline metric: runs of another data set may report another one
        # (glue_cola: Matthews correlation), and their key would be missing here.
        metric = next(r.metrics[0] for r in records if (r.dataset, r.model) == (dataset, model))
        k = 0
        for (d, m, row), runs in groups.items():
            if (d, m) != (dataset, model):
                continue
            x, mean, lo, hi = _series(runs, f"{split}_{metric}")
            if not x:
                continue
            _band(ax, k, x, mean, lo, hi, f"{row} (n={len(runs)})")
            k += 1
        ax.set(xlabel="epoch (1 = first)", ylabel=f"{split} {metric_label(metric)}: mean, band = min-max over seeds",
               title=f"{model} on {dataset}: {split} {metric}")
        name = metric if lower_is_better(metric) else "accuracy"   # loss_<data>_<model>.png for a language model
        written.append(_save(fig, ax, out / f"{name}_{_file_part(dataset)}_{_file_part(model)}.png"))

    for (dataset, model, row), runs in groups.items():
        if not runs[0].rows:
            continue
        parts = [k.removeprefix("loss_") for k in runs[0].rows[0] if k.startswith("loss_") and k != "loss_total"]
        if len(parts) < 2:
            continue   # cross-entropy only: nothing to decompose
        path = out / f"loss_components_{_file_part(row)}_{_file_part(dataset)}_{_file_part(model)}.png"
        written.append(_loss_plot(runs, parts, path, f"{row}: loss components ({model}, {dataset})"))

    for (dataset, model, row), runs in groups.items():
        path = out / f"teachers_{_file_part(row)}_{_file_part(dataset)}_{_file_part(model)}.png"
        if write_teacher_plot(runs, path, title=f"{row}: its teachers ({model}, {dataset})"):
            written.append(path)
    return written


def write_teacher_plot(runs: list[RunRecord], path: Path, *, title: str) -> bool:
    """One figure per method: each teacher's quality (accuracy of its argmax) against the student's
    own training accuracy, and its difference from the student (KL at T; % argmax disagreement),
    across epochs and mini-generations (the paper's thesis: a teacher should be good *and*
    different). ``False`` (nothing written) for a method without a teacher."""
    names = teacher_names(runs)
    if not names:
        return False
    import matplotlib.pyplot as plt
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    k = 0
    _band(top, k, *_series(runs, "train_accuracy"), "student (training accuracy)", color="black", linewidth=2.2)
    for name in names:
        k += 1
        _band(top, k, *_series(runs, f"teacher_{name}_quality"), f"{name} teacher: accuracy of its argmax")
    top.set(ylabel="% of training samples", title=f"{title}\ngood? teachers' accuracy vs the student's")
    top.title.set_fontsize(9)
    right = bottom.twinx()
    for j, name in enumerate(names):
        _band(bottom, j, *_series(runs, f"teacher_{name}_kl"), f"{name}: KL(teacher ‖ student at T)")
        _band(right, j + len(names), *_series(runs, f"teacher_{name}_disagreement"),
              f"{name}: argmax disagreement (%, right)", linestyle=":")
    bottom.set(xlabel="epoch (1 = first)", ylabel="mean KL (nats)", title="different? teacher vs student")
    bottom.title.set_fontsize(9)
    right.set_ylabel("% of samples whose argmax differs")
    lines = bottom.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    bottom.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=7)
    from matplotlib.ticker import MaxNLocator
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    fit_texts(fig)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
