"""The report's tables, in the paper's layouts (:data:`LAYOUTS`), named by what they show.

* ``methods_by_network`` (paper Table 1, one data set): rows = methods, columns = networks.
* ``network_methods_by_dataset`` (paper Table 2; text data sets, or several data sets): rows =
  network × method, columns = data sets.

When the methods are LSTSD and its variants only (:func:`variants_vs_lstsd`, paper Table 3),
each cell adds its difference to full LSTSD in parentheses.

Every cell is ``mean ± std`` over seeds (sample std, n − 1) and the table says n: in the caption
when every cell has the same n, in each cell otherwise. A cell of one seed (n = 1) shows the value
alone: there is no spread to show. Besides: the paired differences to one row
(:func:`paired_table`), the teachers' diagnostics (:func:`teacher_table`) and the cost
(:func:`cost_table`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path  # noqa: F401 - the examples build RunRecords
from typing import Any

from ..errors import ReportError
from ..metrics import lower_is_better, metric_label
from ..registry import is_text_dataset
from ..rundir import RunRecord
from .grouping import differences_between_rows, matching_row

__all__ = ["LAYOUTS", "choose_layout", "cost_table", "epoch_tables", "paired_table", "results_table",
           "teacher_names", "teacher_table", "variants_vs_lstsd"]

LAYOUTS = ("methods_by_network", "network_methods_by_dataset")


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


def _predictor_rows(records: list[RunRecord], split: str = "test") -> dict[str, str]:
    """Each extra predictor's row label (``mean_teacher (teacher)``) mapped to the row of the runs that report it."""
    return {f"{r.row} ({extra})": r.row for r in records for extra in _predictors([r], split, r.metrics[0])}


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


def _row_order(records: list[RunRecord], methods: list[str] | None) -> list[str]:
    labels = list(dict.fromkeys(r.row for r in records))
    if not methods:
        return labels
    method_of = {r.row: r.method for r in records}
    rank = {m: i for i, m in enumerate(methods)}
    return sorted(labels, key=lambda label: (rank.get(method_of[label], len(rank)), labels.index(label)))


def results_table(records: list[RunRecord], *, methods: list[str] | None = None, split: str = "test",
                  metric: str | None = None, layout: str | None = None) -> str:
    """A markdown table of ``split`` ``metric`` (default: each data set's headline metric).

    Args:
        records: finished runs (:func:`collect`, which also labels runs whose settings differ).
        methods: the rows' methods, in order (default: as first seen).
        split: ``"test"`` or ``"val"``.
        metric: a metric name (default: each run's headline metric).
        layout: one of :data:`LAYOUTS` (default: :func:`choose_layout`).

    Example:
        >>> runs = [RunRecord(Path("."), method, "resnet20", "digits", seed, {"test_accuracy": acc + seed}, [], {})
        ...         for method, acc in (("vanilla", 90.0), ("lstsd", 92.5)) for seed in (0, 1)]
        >>> print(results_table(runs))
        test accuracy (%), mean ± std over n = 2 seeds (0, 1), final epoch
        <BLANKLINE>
        | Method | resnet20 |
        |---|---|
        | vanilla | 90.50 ± 0.71 |
        | lstsd | 93.00 ± 0.71 |
        >>> print(results_table(runs[::2]).splitlines()[0])   # one seed: n = 1, no "± 0.00"
        test accuracy (%), one seed per cell (n = 1: no spread to show; seed 0), final epoch
    """
    if not records:
        raise ReportError("no finished runs to report", "pass run folders that hold results.json, or a "
                          "comparison folder")
    layout = layout or choose_layout(records)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown table layout {layout!r}; available: {', '.join(LAYOUTS)}")
    rows_in_order = _row_order(records, methods)
    method_of = {r.row: r.method for r in records}
    datasets = list(dict.fromkeys(r.dataset for r in records))
    models = list(dict.fromkeys(r.model for r in records))
    by_dataset = layout == "network_methods_by_dataset"
    if not by_dataset and len(datasets) > 1:
        raise ValueError(f"layout methods_by_network shows one data set, these runs have {len(datasets)} "
                         f"({', '.join(datasets)}); use network_methods_by_dataset")
    col_keys = datasets if by_dataset else models
    row_keys = [(m, row) for m in models for row in rows_in_order] if by_dataset else \
        [(None, row) for row in rows_in_order]

    cells: dict[tuple[Any, str, str, str], list[float]] = defaultdict(list)
    for r in records:
        name = metric or r.metrics[0]
        col = r.dataset if by_dataset else r.model
        row_model = r.model if by_dataset else None
        cells[(row_model, r.row, col, "")].append(r.final.get(f"{split}_{name}", float("nan")))
        for extra in _predictors([r], split, name):
            cells[(row_model, r.row, col, extra)].append(r.final[f"{split}_{name}_{extra}"])

    present_methods = list(dict.fromkeys(r.method for r in records))
    lstsd_rows = [row for row in rows_in_order if method_of[row] == "lstsd"]
    vs_lstsd = variants_vs_lstsd(present_methods) and len(lstsd_rows) == 1
    reference = {(rm, col): _mean_std(cells[(rm, lstsd_rows[0], col, "")])[0]
                 for rm, _ in row_keys for col in col_keys
                 if cells.get((rm, lstsd_rows[0], col, ""))} if vs_lstsd else {}
    ns = {len(v) for v in cells.values() if v}
    uniform_n = next(iter(ns)) if len(ns) == 1 else None

    def cell(values: list[float], row_model: Any, col: str) -> str:
        if not values:
            return "—"
        mean, std = _mean_std(values)
        d = digits
        text = f"{mean:.{d}f}" if len(values) == 1 else f"{mean:.{d}f} ± {std:.{d}f}"
        if vs_lstsd and (row_model, col) in reference:
            text += f" ({mean - reference[(row_model, col)]:+.{d}f})"
        if uniform_n is None:
            text += f" (n={len(values)})"
        return text

    metric_names = sorted({metric or r.metrics[0] for r in records})
    digits = 3 if all(lower_is_better(m) for m in metric_names) else 2   # a loss per token: 3 decimals
    header_first = ["Network", "Method"] if by_dataset else ["Method"]
    lines = ["| " + " | ".join(header_first + col_keys) + " |",
             "|" + "---|" * (len(header_first) + len(col_keys))]
    for row_model, row in row_keys:
        extras = sorted({k[3] for k in cells if k[0] == row_model and k[1] == row and k[3]})
        for extra in [""] + extras:
            values = [cells.get((row_model, row, col, extra), []) for col in col_keys]
            if not any(values):
                continue
            label = row if not extra else f"{row} ({extra})"
            first = [row_model or "", label] if by_dataset else [label]
            lines.append("| " + " | ".join(first + [cell(v, row_model, c) for v, c in zip(values, col_keys)]) + " |")
    seeds = ", ".join(str(s) for s in sorted({r.seed for r in records}))
    if uniform_n == 1:
        spread = f"one seed per cell (n = 1: no spread to show; seed {seeds})"
    elif uniform_n is not None:
        spread = f"mean ± std over n = {uniform_n} seeds ({seeds})"
    else:
        spread = f"mean ± std over seeds ({seeds}), n per cell in parentheses"
    caption = (f"{split} {'/'.join(metric_label(m) for m in metric_names)}, {spread}, final epoch"
               + ("; in parentheses: difference to LSTSD" if vs_lstsd else ""))
    differing = differences_between_rows(records)
    if differing:
        caption += ("\nnote: rows differ in more than the method: " + ", ".join(differing)
                    + " (see each run's config.yaml)")
    legend = dict.fromkeys(f"  {r.arm} = {r.method}" + (f" ({r.arm_settings})" if r.arm_settings else "")
                           for r in records if r.arm)
    if legend:
        caption += ("\nrows named by the preset's arms (the method, and what sets the arm apart from the method's "
                    "other rows here):\n" + "\n".join(legend))
    return caption + "\n\n" + "\n".join(lines)


def cost_table(records: list[RunRecord], against: str | None = None) -> str:
    """Training time per step, relative to vanilla where vanilla was run on the same network, or to
    the row ``against`` (as in :func:`paired_table`, e.g. a sweep's ``lambda_long=0.0``) when given;
    a teacher's or an ensemble's row (``mean_teacher (teacher)``) stands for the runs that report it.

    Example:
        >>> runs = [RunRecord(Path("."), "lstsd", "resnet20", "digits", 0, {}, [],
        ...                   {"seconds_per_step": t, "extra_forward_passes": 0}, label=label)
        ...         for label, t in (("lstsd (lambda_long=0.0)", 0.2), ("lstsd (lambda_long=2.4)", 0.21))]
        >>> print(cost_table(runs, "lambda_long=0.0").splitlines()[-1])
        | resnet20 | lstsd (lambda_long=2.4) | 0 | 210.0 | 1.05× |
    """
    per: dict[tuple[str, str], list[float]] = defaultdict(list)
    extra: dict[str, int] = {}
    for r in records:
        per[(r.model, r.row)].append(r.cost["seconds_per_step"])
        extra[r.row] = r.cost.get("extra_forward_passes", 0)
    owners = _predictor_rows(records)
    reference = "vanilla" if against is None else matching_row(records, against, extra_rows=owners)
    reference = owners.get(reference, reference)   # a predictor costs what the run that reports it costs
    lines = ["| Network | Method | extra forwards/step | ms/step (median) | vs " + reference + " |",
             "|---|---|---|---|---|"]
    for (model, row), values in per.items():
        ms = 1000 * statistics.median(values)
        base = per.get((model, reference))
        ratio = f"{ms / (1000 * statistics.median(base)):.2f}×" if base else "—"
        lines.append(f"| {model} | {row} | {extra[row]} | {ms:.1f} | {ratio} |")
    return ("Cost (wall time of whole runs, not interleaved, and shared with any runs made beside them "
            "(--jobs): a rough figure; see benchmarks/ for interleaved ratios)\n\n" + "\n".join(lines))


def paired_table(records: list[RunRecord], against: str, split: str = "test") -> str:
    """Each row's difference to the row ``against``, paired by seed: the same seed gives both runs the
    same initial weights and the same batches, so the per-seed difference removes most of the
    seed-to-seed spread that the ``mean ± std`` of each row carries. The paired t statistic
    (mean / (std / √n), n − 1 degrees of freedom) says how far that difference is from noise.

    ``against`` names one row (:func:`matching_row`): its label (``vanilla``) or settings that only it
    has (a sweep's ``lambda_long=0``). A predictor a run reports beside its network (Mean Teacher's
    ``teacher``, Snapshot Ensembles' ``ensemble``) gets a row of its own, labelled as in
    :func:`results_table` (``mean_teacher (teacher)``), and ``against`` may name it by that label.

    Example:
        >>> runs = [RunRecord(Path("."), m, "resnet20", "digits", s, {"test_accuracy": a}, [], {})
        ...         for m, accs in (("vanilla", (80.0, 82.0, 81.0)), ("lstsd", (80.5, 82.5, 80.9)))
        ...         for s, a in enumerate(accs)]
        >>> print(paired_table(runs, "vanilla").splitlines()[-1])
        | resnet20 | lstsd | +0.30 ± 0.35 | 2 / 0 / 1 | +1.50 | 0.27 |
        >>> runs[-1].final["test_accuracy_teacher"] = 81.5   # lstsd seed 2 also reports a teacher
        >>> print(paired_table(runs, "vanilla").splitlines()[-1])
        | resnet20 | lstsd (teacher) | +0.50 | 1 / 0 / 0 | — | — |
    """
    from scipy.stats import t as t_distribution

    value: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    metric_of: dict[str, str] = {}
    for r in records:
        key = f"{split}_{r.metrics[0]}"
        metric_of[r.row] = r.metrics[0]
        metric_of.update({f"{r.row} ({extra})": r.metrics[0] for extra in _predictors([r], split, r.metrics[0])})
        if key in r.final:
            value[(r.dataset, r.model, r.row)][r.seed] = r.final[key]
        for extra in _predictors([r], split, r.metrics[0]):   # a teacher or ensemble, as its own row
            value[(r.dataset, r.model, f"{r.row} ({extra})")][r.seed] = r.final[f"{key}_{extra}"]
    base_row = matching_row(records, against, extra_rows=_predictor_rows(records, split))
    several_datasets = len({r.dataset for r in records}) > 1
    head = ["Data set"] * several_datasets + ["Network", "Method", "difference (mean ± std)",
                                              "better / equal / worse (seeds)", "paired t", "p (two-sided)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (dataset, model, row), per_seed in value.items():
        reference = value.get((dataset, model, base_row), {})
        seeds = sorted(set(per_seed) & set(reference))
        if row == base_row or not seeds:
            continue
        diffs = [per_seed[s] - reference[s] for s in seeds]
        mean, std = _mean_std(diffs)
        d = 3 if lower_is_better(metric_of[row]) else 2
        spread = f"{mean:+.{d}f}" if len(diffs) == 1 else f"{mean:+.{d}f} ± {std:.{d}f}"
        sign = -1 if lower_is_better(metric_of[row]) else 1        # a lower loss is better
        tally = (f"{sum(sign * d > 0 for d in diffs)} / {sum(d == 0 for d in diffs)} / "
                 f"{sum(sign * d < 0 for d in diffs)}")
        t = None if len(diffs) < 2 or std == 0 else mean / (std / math.sqrt(len(diffs)))
        shown = ["—", "—"] if t is None else [f"{t:+.2f}", f"{2 * t_distribution.sf(abs(t), len(diffs) - 1):.2g}"]
        lines.append("| " + " | ".join([dataset] * several_datasets + [model, row, spread, tally, *shown]) + " |")
    metrics = "/".join(metric_label(m) for m in sorted({r.metrics[0] for r in records}))
    units = "" if all(lower_is_better(r.metrics[0]) for r in records) else "points; "
    return (f"Paired by seed against {base_row!r}: {split} {metrics} of each row minus its value on the same seed "
            f"({units}same seed = same initial weights and batches); paired t = mean / (std / √n), with n − 1 "
            f"degrees of freedom (|t| > 4.30 is significant at 5% for n = 3, > 2.78 for n = 5), and its two-sided p "
            f"(not corrected for the number of rows compared)\n\n" + "\n".join(lines))


def epoch_tables(records: list[RunRecord], against: str | None = None) -> list[str]:
    """For runs evaluated before training (the language-model task): the held-out loss and the
    forgetting probe per epoch, mean over seeds, from before training to the last epoch, with each
    run's best epoch; with ``against``, the paired differences at each run's best epoch and of the
    probe at the last epoch (:func:`paired_table`). ``[]`` for other runs.

    The best epoch is chosen on the same held-out set it is reported on: an optimistic figure, shown
    because it says whether a method only delays its best or reaches a better one; the final epoch
    stays the headline.

    Example:
        >>> curve = [{"epoch": 0, "test_loss": 2.8, "probe_loss": 4.6},
        ...          {"epoch": 1, "test_loss": 3.0, "probe_loss": 4.7}]
        >>> run = RunRecord(Path("."), "vanilla", "lm", "words", 0, {"test_loss": 3.0}, curve, {}, metrics=["loss"],
        ...                 before={"test_loss": 4.5, "probe_loss": 4.8})
        >>> print(epoch_tables([run])[0].splitlines()[-1])
        | lm | vanilla | 4.500 | **2.800** | 3.000 | 2.800 (1) |
    """
    curves = [r for r in records if r.before and any(f"test_{r.metrics[0]}" in row for row in r.rows)]
    if not curves:
        return []
    epochs = sorted({int(row["epoch"]) for r in curves for row in r.rows if "epoch" in row})
    metric = curves[0].metrics[0]
    out = []
    for key, what in ((f"test_{metric}", f"held-out {metric_label(metric)}"),
                      ("probe_loss", "forgetting probe: loss on text not fine-tuned on (per token, lower is better)")):
        if not any(key in r.before for r in curves):
            continue
        groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
        for r in curves:
            groups[(r.model, r.row)].append(r)
        head = ["Network", "Method", "before"] + [str(e + 1) for e in epochs] + (["best (epochs)"] if "test" in key
                                                                                 else [])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for (model, row), runs in groups.items():
            values = [[v for r in runs if (v := _last(r, key, e + 1)) is not None] for e in epochs]
            means = [f"{statistics.mean(v):.3f}" if v else "—" for v in values]
            if "test" in key and any(values):
                lowest = min((k for k, v in enumerate(values) if v), key=lambda k: statistics.mean(values[k]))
                means[lowest] = f"**{means[lowest]}**"
            cells = [model, row, _mean_of([r.before.get(key) for r in runs], ".3f"), *means]
            if "test" in key:
                bests = [_best(r, key) for r in runs]
                cells.append(_mean_of([b[1] for b in bests if b], ".3f")
                             + f" ({', '.join(str(b[0] + 1) for b in bests if b)})")
            lines.append("| " + " | ".join(cells) + " |")
        n = sorted({len(runs) for runs in groups.values()})
        seeds = f"n = {n[0]} seed{'s' * (n[0] != 1)}" if len(n) == 1 else f"n = {n[0]}–{n[-1]} seeds"
        best = ("; bold: the best epoch of the mean; best (epochs): each seed's lowest epoch, mean and epochs, "
                "chosen on this same held-out set (optimistic)" if "test" in key else "")
        out.append(f"The {what}, per epoch (mean over seeds, {seeds}; before: the pretrained model){best}\n\n"
                   + "\n".join(lines))
    if against is not None:
        at_best = [replace(r, final={**r.final, f"test_{metric}": b[1]})
                   for r in curves if (b := _best(r, f"test_{metric}"))]
        out.append("At each run's best epoch (chosen on the held-out set itself: optimistic). "
                   + paired_table(at_best, against))
        if all("probe_loss" in r.final for r in curves):
            out.append("The forgetting probe at the final epoch. " + paired_table(curves, against, split="probe"))
    return out


def _best(record: RunRecord, key: str) -> tuple[int, float] | None:
    """``(epoch, value)`` of the lowest ``key`` over the epochs of ``record`` (0-based epoch)."""
    values = [(int(row["epoch"]), float(row[key])) for row in record.rows if key in row]
    return min(values, key=lambda ev: ev[1]) if values else None


def _last(record: RunRecord, key: str, epoch: int | None = None) -> float | None:
    """``key`` in the last epoch of ``record`` that logged it, or in ``epoch`` (1-based) only."""
    for row in reversed(record.rows):
        if key in row and (epoch is None or row.get("epoch") == epoch - 1):
            return float(row[key])
    return None


def _mean_of(values: list[float | None], fmt: str) -> str:
    present = [v for v in values if v is not None]
    return format(statistics.mean(present), fmt) if present else "—"


def teacher_table(records: list[RunRecord], epoch: int | None = None) -> str:
    """The student's training accuracy and each teacher's diagnostics at the last epoch (or at
    ``epoch``, counted from 1 as the plots do), mean over seeds.

    The paper's thesis (Introduction) is that a teacher helps when it is good *and* different from
    the student: this table puts the two side by side (:mod:`lstsd.diagnostics`): each teacher's
    accuracy on the training samples it covers, KL(teacher ‖ student at T) and how often its argmax
    disagrees with the student's; for sparse per-token teachers also the % of their probability
    held by the stored tokens (``stored_mass``: the rest is a pull toward uniform). Training
    accuracy is measured on the fly (train mode, augmented batches) and says how far each run
    fits, or overfits, its training set. ``""`` when no run logged training accuracy.

    Example:
        >>> row = {"train_accuracy": 90.0, "teacher_short_quality": 88.0, "teacher_short_kl": 0.01,
        ...        "teacher_short_disagreement": 3.0}
        >>> runs = [RunRecord(Path("."), "lstsd", "resnet20", "digits", 0, {"test_accuracy": 80.0}, [row], {}),
        ...         RunRecord(Path("."), "vanilla", "resnet20", "digits", 0, {"test_accuracy": 81.0},
        ...                   [{"train_accuracy": 99.0}], {})]
        >>> print(teacher_table(runs).splitlines()[-2])
        | resnet20 | lstsd | 90.0 | 88.0 / 0.010 / 3.0 |
    """
    if not any(_last(r, "train_accuracy", epoch) is not None for r in records):
        return ""
    names = teacher_names(records)
    sparse = {name for name in names if any(_last(r, f"teacher_{name}_stored_mass", epoch) is not None
                                            for r in records)}
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.model, r.row)].append(r)
    several_datasets = len({dataset for dataset, _, _ in groups}) > 1
    head = ["Data set"] * several_datasets + ["Network", "Method", "train acc. (%)"]
    head += [f"{name} teacher: acc. (%) / KL / disagree (%)" + (" / stored mass (%)" if name in sparse else "")
             for name in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (dataset, model, row), runs in groups.items():
        cells = [dataset] * several_datasets + [model, row,
                                                 _mean_of([_last(r, "train_accuracy", epoch) for r in runs], ".1f")]
        for name in names:
            what = ("quality", "kl", "disagreement") + (("stored_mass",) if name in sparse else ())
            parts = [[_last(r, f"teacher_{name}_{w}", epoch) for r in runs] for w in what]
            cells.append("—" if all(v is None for v in parts[0]) else
                         " / ".join(_mean_of(v, fmt) for v, fmt in zip(parts, (".1f", ".3f", ".1f", ".1f"))))
        lines.append("| " + " | ".join(cells) + " |")
    when = "the last epoch" if epoch is None else f"epoch {epoch}"
    return (f"The student and its teachers at {when} (mean over seeds): a teacher helps when it is "
            "good and different (the paper's thesis)\n\n" + "\n".join(lines))


def teacher_names(runs: list[RunRecord]) -> list[str]:
    """The teachers whose diagnostics (``teacher_<name>_quality`` ...) the runs logged, in first-seen order."""
    names: list[str] = []
    for r in runs:
        for row in r.rows:
            for key in row:
                if key.startswith("teacher_") and key.endswith("_quality"):
                    name = key.removeprefix("teacher_").removesuffix("_quality")
                    if name not in names:
                        names.append(name)
    return names


