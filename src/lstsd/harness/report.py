"""Tables and plots from finished runs, in the paper's layouts.

Which runs (:func:`find_runs`): run folders, comparison folders (a folder of run folders, such as
``runs/compare-quick``) and glob patterns, in any mix. What is not a finished run is skipped with a
note (a ``plots/`` folder, a stray file, an unfinished run: the note says how to finish it, with
absolute paths so the command works from any folder). A folder given twice counts once.

Which runs are averaged (:func:`group_runs`): only runs whose settings are the same except the
seed. Settings are read from each run's ``config.yaml``; the keys that never change a result
(:data:`IGNORED_KEYS`: :data:`~lstsd.harness.config.RESUMABLE_CHANGES`, ``seed``, ``name``) are
left out, and ``method_args`` are compared with the method's defaults filled in. Runs of one method
whose settings differ get rows of their own, labelled by what differs, e.g. ``lstsd (lr=0.05)``.
Two runs with the same settings *and* seed count once.

Table layouts (:data:`LAYOUTS`), named by what they show:

* ``methods_by_network`` (paper Table 1, one data set): rows = methods, columns = networks.
* ``network_methods_by_dataset`` (paper Table 2; text data sets, or several data sets): rows =
  network × method, columns = data sets.

When the methods are LSTSD and its variants only (:func:`variants_vs_lstsd`, paper Table 3),
each cell adds its difference to full LSTSD in parentheses.

Every cell is ``mean ± std`` over seeds (sample std, n − 1) and the table says n: in the caption
when every cell has the same n, in each cell otherwise. A cell of one seed (n = 1) shows the value
alone: there is no spread to show.

Epochs: plots and messages count from 1 (``epoch 1/12`` is the first); the ``epoch`` key of
``metrics.jsonl`` counts from 0, so its row ``"epoch": 0`` is plotted at epoch 1.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RESUMABLE_CHANGES, TrainConfig
from .errors import ReportError
from .registry import is_text_dataset

LAYOUTS = ("methods_by_network", "network_methods_by_dataset")
RESULTS, METRICS, CONFIG, CHECKPOINT = "results.json", "metrics.jsonl", "config.yaml", "checkpoint.pt"
RUN_FILES = (RESULTS, CONFIG, CHECKPOINT, METRICS)
# Config keys that never change a run's result, so runs that differ only there are averaged together.
IGNORED_KEYS = frozenset(RESUMABLE_CHANGES | {"seed", "name"})
# What places a run in the table (its column and its row's method), so never part of a row's label.
_PLACE_KEYS = ("dataset", "model", "method")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class RunRecord:
    """One finished run, as the tables and plots read it (``results.json``, ``metrics.jsonl``, ``config.yaml``).

    ``label`` is the run's row name: its method, plus the settings that set it apart from other
    runs of that method when there are any (:func:`group_runs`); empty means the method.
    """

    run_dir: Path
    method: str
    model: str
    dataset: str
    seed: int
    final: dict[str, float]
    rows: list[dict[str, Any]]
    cost: dict[str, Any]
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    data_source: dict[str, Any] = field(default_factory=dict)

    @property
    def row(self) -> str:
        """The row this run is counted in: ``label`` or, without one, the method."""
        return self.label or self.method


# ----------------------------------------------------------------------------- finding runs
def _abs(path: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(path))


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)


def resume_hint(run_dir: str | os.PathLike) -> str:
    """What to do with an unfinished run folder, with absolute paths (works from any folder).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     resume_hint(tmp).startswith("nothing to resume")
        True
    """
    run = Path(_abs(run_dir))
    config = run / CONFIG
    if config.is_file() and (run / CHECKPOINT).is_file():
        return f"finish it with: lstsd train --config {config} --resume"
    if config.is_file():
        return f"it stopped before its first epoch ended; start it again with: lstsd train --config {config}"
    return f"nothing to resume there (no {CONFIG}): run it again with the command that made it"


def _epochs_done(run: Path) -> str:
    try:
        done = sum(1 for line in (run / METRICS).read_text().splitlines() if line.strip())
    except OSError:
        done = 0
    total = "?"
    try:
        import yaml
        total = (yaml.safe_load((run / CONFIG).read_text()) or {}).get("epochs", "?")
    except Exception:  # noqa: BLE001 - only for the note
        pass
    return f"{done}/{total} epochs done"


def find_runs(paths: list[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """The finished run folders among ``paths``, in order, each once; and notes on what was skipped.

    A path may be a run folder, a comparison folder (its run folders are taken; other entries such
    as ``plots/`` are passed over silently), a run's ``results.json`` or ``config.yaml``, or a glob
    pattern the shell did not expand (``'runs/compare-quick/*'``).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     run = Path(tmp, "lstsd-seed0"); run.mkdir(); _ = (run / "results.json").write_text("{}")
        ...     Path(tmp, "plots").mkdir()
        ...     runs, notes = find_runs([tmp, run, Path(tmp, "plots")])
        ...     [p.name for p in runs], [n.split(": ", 1)[1] for n in notes]
        (['lstsd-seed0'], ['given more than once: counted once', 'not a run (no results.json, config.yaml or checkpoint.pt) nor a folder of runs: skipped'])
    """
    runs: list[Path] = []
    notes: list[str] = []
    seen: set[str] = set()

    def add(run: Path) -> None:
        key = os.path.realpath(run)
        if key in seen:
            notes.append(f"{_abs(run)}: given more than once: counted once")
            return
        seen.add(key)
        if (run / RESULTS).is_file():
            runs.append(run)
        else:
            notes.append(f"{_abs(run)}: an unfinished run ({_epochs_done(run)}): skipped — {resume_hint(run)}")

    def visit(path: Path) -> None:
        if path.is_file():
            if path.name in (RESULTS, CONFIG):
                visit(path.parent)
            else:
                notes.append(f"{_abs(path)}: a file, not a run folder: skipped")
        elif _is_run_dir(path):
            add(path)
        elif path.is_dir():
            children = [c for c in sorted(path.iterdir()) if _is_run_dir(c)]
            if children:
                for child in children:
                    add(child)
            else:
                notes.append(f"{_abs(path)}: not a run (no {RESULTS}, {CONFIG} or {CHECKPOINT}) nor a folder "
                             "of runs: skipped")
        else:
            notes.append(f"{_abs(path)}: does not exist: skipped")

    for item in paths:
        text = os.fspath(item)
        if not Path(text).exists() and _GLOB_CHARS.search(text):
            matches = sorted(glob.glob(os.path.expanduser(text)))
            if not matches:
                notes.append(f"{text}: matches nothing: skipped")
            for match in matches:
                visit(Path(match))
        else:
            visit(Path(text).expanduser())
    return runs, notes


# ----------------------------------------------------------------------------- reading runs
def _read_json(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{_abs(path)} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})",
                          fix) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{_abs(path)} cannot be read ({err})", fix) from None


def read_run(run_dir: str | os.PathLike) -> RunRecord:
    """One finished run; :class:`~lstsd.harness.errors.ReportError` naming the file that is missing or corrupt."""
    run = Path(run_dir)
    results_path = run / RESULTS
    if not results_path.is_file():
        raise ReportError(f"{_abs(run)} has no {RESULTS}: it is not a finished run", resume_hint(run))
    rewrite = (f"delete it and write it again from the final checkpoint with: lstsd train --config "
               f"{_abs(run / CONFIG)} --resume" if (run / CHECKPOINT).is_file() and (run / CONFIG).is_file()
               else "run it again")
    results = _read_json(results_path, rewrite)
    needed = ("method", "model", "dataset", "seed", "final", "cost")
    if not isinstance(results, dict) or any(k not in results for k in needed):
        missing = [k for k in needed if not isinstance(results, dict) or k not in results]
        raise ReportError(f"{_abs(results_path)} is not an lstsd results file (lacks {', '.join(missing)})", rewrite)
    rows: list[dict[str, Any]] = []
    metrics_path = run / METRICS
    if metrics_path.is_file():
        for number, line in enumerate(metrics_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ReportError(f"{_abs(metrics_path)} line {number} is not valid JSON ({err.msg})",
                                  "delete the broken line, or run the run again") from None
    config: dict[str, Any] = {}
    if (run / CONFIG).is_file():
        import yaml
        try:
            config = yaml.safe_load((run / CONFIG).read_text()) or {}
        except yaml.YAMLError as err:
            raise ReportError(f"{_abs(run / CONFIG)} is not valid YAML ({err})",
                              "restore it (results.json and checkpoint.pt hold the same settings)") from None
    return RunRecord(run_dir=run, method=results["method"], model=results["model"], dataset=results["dataset"],
                     seed=results["seed"], final=results["final"], rows=rows, cost=results["cost"],
                     metrics=list(results.get("metrics", ["accuracy"])), config=config,
                     data_source=dict(results.get("data_source") or {}))


def collect(run_dirs: list[str | os.PathLike], notes: list[str] | None = None) -> list[RunRecord]:
    """Read finished runs and group them (:func:`group_runs`); what was set aside is appended to ``notes``."""
    records = [read_run(d) for d in run_dirs]
    kept, grouping_notes = group_runs(records)
    if notes is not None:
        notes.extend(grouping_notes)
    return kept


# ----------------------------------------------------------------------------- grouping
def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {}


def _full_method_args(method: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with the method's defaults filled in (so ``{}`` and the defaults written out compare equal)."""
    key = method + json.dumps(args, sort_keys=True, default=str)
    if key not in _METHOD_DEFAULTS:
        try:
            from ..methods import create_method
            _METHOD_DEFAULTS[key] = dict(create_method(method, num_samples=2, num_classes=1000, **args).hparams())
        except Exception:  # noqa: BLE001 - an unknown or changed method: compare what was written
            _METHOD_DEFAULTS[key] = dict(args)
    return _METHOD_DEFAULTS[key]


def run_settings(record: RunRecord) -> dict[str, Any]:
    """The settings that define a run's result, flattened (``method_args.lambda_long``), seed left out.

    Keys a config lacks (written by an older version) take today's defaults; the data's checksum
    (``results.json``'s ``data_source``) counts as a setting, ``data.sha256`` (``None`` when the run
    did not record one: such runs are not told apart from the others by it).
    """
    config = {**TrainConfig().to_dict(), **record.config} if record.config else {}
    if config:
        config["method_args"] = _full_method_args(config.get("method", record.method),
                                                  dict(config.get("method_args") or {}))
    flat = {k: v for k, v in _flatten(config).items() if k.split(".")[0] not in IGNORED_KEYS}
    flat["data.sha256"] = record.data_source.get("sha256")
    return flat


def _show(value: Any, key: str = "") -> str:
    if key == "data.sha256":
        return value[:12] if isinstance(value, str) else "unrecorded"
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _short(key: str) -> str:
    name = key.removeprefix("method_args.")
    return name if name != key and name not in TrainConfig.__dataclass_fields__ else key


def group_runs(records: list[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """Give each run its row label; drop runs that repeat another's settings and seed. Returns ``(kept, notes)``.

    Runs of one method (in the same column) whose settings differ are labelled by the settings that
    differ, so they are never averaged together.

    Example:
        >>> def run(lr, seed):
        ...     config = {"dataset": "digits", "model": "resnet", "method": "vanilla", "lr": lr, "seed": seed}
        ...     return RunRecord(Path(f"r{lr}-{seed}"), "vanilla", "resnet", "digits", seed, {}, [], {}, config=config)
        >>> kept, notes = group_runs([run(0.1, 0), run(0.1, 1), run(0.05, 0), run(0.1, 1)])
        >>> [r.row for r in kept]
        ['vanilla (lr=0.1)', 'vanilla (lr=0.1)', 'vanilla (lr=0.05)']
        >>> "same settings and seed (1) as" in notes[0] and notes[0].endswith("counted once")
        True
    """
    settings = [run_settings(r) for r in records]
    arms: dict[tuple[str, str, str], dict[str, list[int]]] = defaultdict(dict)
    for i, (r, s) in enumerate(zip(records, settings)):
        key = json.dumps(s, sort_keys=True, default=str)
        arms[(r.dataset, r.model, r.method)].setdefault(key, []).append(i)
    label_keys: dict[str, set[str]] = defaultdict(set)
    for (_, _, method), by_settings in arms.items():
        if len(by_settings) < 2:
            continue
        members = [settings[ids[0]] for ids in by_settings.values()]
        for k in set().union(*members):
            if k.split(".")[0] in _PLACE_KEYS or k.startswith("model_args."):
                continue
            values = {json.dumps(m.get(k), sort_keys=True, default=str) for m in members}
            if k == "data.sha256":
                values.discard("null")          # a run that did not record its data is not told apart by it
            if len(values) > 1:
                label_keys[method].add(k)
    kept: list[RunRecord] = []
    notes: list[str] = []
    first_of: dict[tuple[Any, ...], RunRecord] = {}
    for r, s in zip(records, settings):
        keys = sorted(label_keys.get(r.method, ()))
        r.label = (f"{r.method} (" + ", ".join(f"{_short(k)}={_show(s.get(k), k)}" for k in keys) + ")") if keys \
            else r.method
        identity = (r.dataset, r.model, r.method, json.dumps(s, sort_keys=True, default=str), r.seed)
        if identity in first_of:
            notes.append(f"{_abs(r.run_dir)}: same settings and seed ({r.seed}) as {_abs(first_of[identity].run_dir)}"
                         ": counted once")
            continue
        first_of[identity] = r
        kept.append(r)
    return kept, notes


def _differences_between_rows(records: list[RunRecord]) -> list[str]:
    """Settings other than the method's own that differ between rows of one column (worth a caption note)."""
    by_column: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.config:
            by_column[(r.dataset, r.model)].append(run_settings(r))
    keys: set[str] = set()
    for members in by_column.values():
        for k in set().union(*members) if members else ():
            if k.split(".")[0] in _PLACE_KEYS or k.startswith(("model_args.", "method_args.")):
                continue
            values = {json.dumps(m.get(k), sort_keys=True, default=str) for m in members}
            if k == "data.sha256":
                values.discard("null")
            if len(values) > 1:
                keys.add(k)
    return sorted(keys)


# ----------------------------------------------------------------------------- tables
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
        text = f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} ± {std:.2f}"
        if vs_lstsd and (row_model, col) in reference:
            text += f" ({mean - reference[(row_model, col)]:+.2f})"
        if uniform_n is None:
            text += f" (n={len(values)})"
        return text

    metric_names = sorted({metric or r.metrics[0] for r in records})
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
    caption = (f"{split} {'/'.join(metric_names)} (%), {spread}, final epoch"
               + ("; in parentheses: difference to LSTSD" if vs_lstsd else ""))
    differing = _differences_between_rows(records)
    if differing:
        caption += ("\nnote: rows differ in more than the method: " + ", ".join(differing)
                    + " (see each run's config.yaml)")
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


def _same_value(shown: str, wanted: str) -> bool:
    """``wanted`` (as typed after ``key=``) names the value ``shown``: equal text, or equal numbers (``0`` = ``0.0``)."""
    if shown == wanted:
        return True
    try:
        return float(shown) == float(wanted)
    except ValueError:
        return False


def _row_has(record: RunRecord, part: str) -> bool:
    """Whether a run has the setting ``part`` names: ``key=value`` (``key`` as in the row labels, e.g.
    ``lambda_long``, or in full, ``method_args.lambda_long``), or a bare value of any of its settings
    or its method's name (``teacher_student``)."""
    label_parts = record.row.removeprefix(record.method).strip(" ()").split(", ")
    if part in label_parts:                     # as the label shows it (also for runs without a config)
        return True
    settings = {**run_settings(record), "method": record.method}
    if "=" in part:
        key, wanted = (text.strip() for text in part.split("=", 1))
        return any(key in (k, _short(k)) and _same_value(_show(v, k), wanted) for k, v in settings.items())
    return any(_show(v, k) == part for k, v in settings.items())


def matching_row(records: list[RunRecord], against: str, extra_rows: Iterable[str] = ()) -> str:
    """The row ``against`` names; ``ReportError`` unless exactly one row fits.

    ``against`` is a row's whole label, or comma-separated parts that each name one of the row's
    settings, ``key=value`` (``lambda_long=0``, ``method_args.rampup_epochs=6``) or a bare value
    (``vanilla``, ``teacher_student``), in any order. The parts are checked against each run's full
    settings, not against the label's text, so a spec keeps naming the same row when runs added to a
    folder add settings to the labels. A value with a comma in it (a list) is named by the whole label.
    ``extra_rows`` (a teacher's or an ensemble's row, ``mean_teacher (teacher)``) are named by their
    whole label only.

    Example:
        >>> runs = [RunRecord(Path("."), "lstsd", "resnet20", "digits", 0, {}, [], {}, label=label,
        ...                   config={"method": "lstsd", "method_args": {"lambda_long": lam, "rampup_epochs": ramp}})
        ...         for label, lam, ramp in (("lstsd (lambda_long=0.0, rampup_epochs=0)", 0.0, 0),
        ...                                  ("lstsd (lambda_long=2.4, rampup_epochs=0)", 2.4, 0),
        ...                                  ("lstsd (lambda_long=2.4, rampup_epochs=6)", 2.4, 6))]
        >>> matching_row(runs, "lambda_long=0")
        'lstsd (lambda_long=0.0, rampup_epochs=0)'
        >>> matching_row(runs, "rampup_epochs=0, lambda_long=2.4")
        'lstsd (lambda_long=2.4, rampup_epochs=0)'
    """
    rows = list(dict.fromkeys(r.row for r in records))
    base = [row for row in [*rows, *extra_rows] if row == against]
    if not base:
        parts = [part.strip() for part in against.split(",") if part.strip()]
        base = [row for row in rows if parts and all(
            any(_row_has(r, part) for r in records if r.row == row) for part in parts)]
    if len(base) != 1:
        if base:
            raise ReportError(f"--against {against!r} matches {len(base)} rows ({'; '.join(base)})",
                              "add a setting that only one of them has, as key=value after a comma")
        raise ReportError(f"--against {against!r} matches no row",
                          "name one row: its label, or settings that only it has as key=value, comma-separated; "
                          "rows: " + "; ".join(dict.fromkeys([*rows, *extra_rows])))
    return base[0]


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
    for r in records:
        key = f"{split}_{r.metrics[0]}"
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
        spread = f"{mean:+.2f}" if len(diffs) == 1 else f"{mean:+.2f} ± {std:.2f}"
        tally = f"{sum(d > 0 for d in diffs)} / {sum(d == 0 for d in diffs)} / {sum(d < 0 for d in diffs)}"
        t = None if len(diffs) < 2 or std == 0 else mean / (std / math.sqrt(len(diffs)))
        shown = ["—", "—"] if t is None else [f"{t:+.2f}", f"{2 * t_distribution.sf(abs(t), len(diffs) - 1):.2g}"]
        lines.append("| " + " | ".join([dataset] * several_datasets + [model, row, spread, tally, *shown]) + " |")
    metrics = "/".join(sorted({r.metrics[0] for r in records}))
    return (f"Paired by seed against {base_row!r}: {split} {metrics} of each row minus its value on the same seed "
            f"(points; same seed = same initial weights and batches); paired t = mean / (std / √n), with n − 1 "
            f"degrees of freedom (|t| > 4.30 is significant at 5% for n = 3, > 2.78 for n = 5), and its two-sided p "
            f"(not corrected for the number of rows compared)\n\n" + "\n".join(lines))


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
    disagrees with the student's. Training accuracy is measured on the fly (train mode, augmented
    batches) and says how far each run fits, or overfits, its training set. ``""`` when no run
    logged training accuracy.

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
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.model, r.row)].append(r)
    several_datasets = len({dataset for dataset, _, _ in groups}) > 1
    head = ["Data set"] * several_datasets + ["Network", "Method", "train acc. (%)"]
    head += [f"{name} teacher: acc. (%) / KL / disagree (%)" for name in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (dataset, model, row), runs in groups.items():
        cells = [dataset] * several_datasets + [model, row,
                                                 _mean_of([_last(r, "train_accuracy", epoch) for r in runs], ".1f")]
        for name in names:
            parts = [[_last(r, f"teacher_{name}_{what}", epoch) for r in runs]
                     for what in ("quality", "kl", "disagreement")]
            cells.append("—" if all(v is None for v in parts[0]) else
                         " / ".join(_mean_of(v, fmt) for v, fmt in zip(parts, (".1f", ".3f", ".1f"))))
        lines.append("| " + " | ".join(cells) + " |")
    when = "the last epoch" if epoch is None else f"epoch {epoch}"
    return (f"The student and its teachers at {when} (mean over seeds): a teacher helps when it is "
            "good and different (the paper's thesis)\n\n" + "\n".join(lines))


# ----------------------------------------------------------------------------- plots
def _series(records: list[RunRecord], key: str,
            weight: float = 1.0) -> tuple[list[int], list[float], list[float], list[float]]:
    """1-based epochs where every run has ``key``, with the mean, min and max over runs (× ``weight``)."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for r in records:
        for row in r.rows:
            if key in row:
                by_epoch[row["epoch"]].append(weight * row[key])
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


def _save(fig: Any, ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# The weight of each logged loss component in the method's loss, by hyper-parameter name.
_COMPONENT_WEIGHTS = {"long": "lambda_long", "short": "lambda_short", "kd": "lambda_teacher"}


def component_weights(record: RunRecord, parts: list[str]) -> dict[str, float] | None:
    """The weight of each loss component in the run's total (``ce`` 1, ``long`` λ^L, ...), or ``None``
    when they cannot be read from its settings or do not add up to the logged total.

    Example:
        >>> rows = [{"epoch": 0, "loss_ce": 1.0, "loss_long": 0.5, "loss_short": 0.25, "loss_total": 3.2}]
        >>> run = RunRecord(Path("."), "lstsd", "r", "d", 0, {}, rows, {}, config={"method_args": {}})
        >>> component_weights(run, ["ce", "long", "short"])
        {'ce': 1.0, 'long': 2.4, 'short': 4.0}
    """
    hparams = _full_method_args(record.method, dict(record.config.get("method_args") or {}))
    if hparams.get("rampup_epochs"):
        return None   # the weight changes from epoch to epoch
    weights: dict[str, float] = {}
    for part in parts:
        if part == "ce":
            weights[part] = 1.0
        elif _COMPONENT_WEIGHTS.get(part) in hparams:
            weights[part] = float(hparams[_COMPONENT_WEIGHTS[part]])
        else:
            return None
    for row in record.rows:
        if "loss_total" in row and all(f"loss_{p}" in row for p in parts):
            total = sum(weights[p] * row[f"loss_{p}"] for p in parts)
            if abs(total - row["loss_total"]) > 1e-3 * max(1.0, abs(row["loss_total"])):
                return None
    return weights


def write_plots(records: list[RunRecord], out_dir: str | os.PathLike, *, split: str = "test") -> list[Path]:
    """PNG plots: ``split`` accuracy per epoch per row; the loss components per epoch of each row.

    Epochs are counted from 1 (``metrics.jsonl``'s ``epoch`` key + 1). The loss plot shows each
    part as it enters the loss (``2.4 × KL long``), so the parts add up to the total, with the
    unweighted KL divergences dashed beside them.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.dataset, r.model, r.row)].append(r)

    for dataset, model in dict.fromkeys((d, m) for d, m, _ in groups):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        metric = records[0].metrics[0]
        k = 0
        for (d, m, row), runs in groups.items():
            if (d, m) != (dataset, model):
                continue
            x, mean, lo, hi = _series(runs, f"{split}_{metric}")
            if not x:
                continue
            _band(ax, k, x, mean, lo, hi, f"{row} (n={len(runs)})")
            k += 1
        ax.set(xlabel="epoch (1 = first)", ylabel=f"{split} {metric} (%): mean, band = min-max over seeds",
               title=f"{model} on {dataset}: {split} {metric}")
        written.append(_save(fig, ax, out / f"accuracy_{_file_part(dataset)}_{_file_part(model)}.png"))

    for (dataset, model, row), runs in groups.items():
        if not runs[0].rows:
            continue
        parts = [k.removeprefix("loss_") for k in runs[0].rows[0] if k.startswith("loss_") and k != "loss_total"]
        if len(parts) < 2:
            continue   # cross-entropy only: nothing to decompose
        weights = component_weights(runs[0], parts)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        k = 0
        def term(part: str) -> str:
            return f"KL {part}" if part in ("long", "short", "kd") else part
        for part in parts:
            w = weights[part] if weights else 1.0
            _band(ax, k, *_series(runs, f"loss_{part}", w), term(part) if w == 1.0 else f"{w:g} × {term(part)}")
            k += 1
        _band(ax, k, *_series(runs, "loss_total"), "total", color="black", linestyle="-", linewidth=2.2)
        k += 1
        unweighted = [p for p in parts if weights and p != "ce" and weights[p] != 1.0]
        for part in unweighted:
            _band(ax, k, *_series(runs, f"loss_{part}"), f"{term(part)} (unweighted)", linestyle=":",
                  linewidth=1.0, alpha=0.7)
            k += 1
        if weights:
            formula = "total = " + " + ".join(term(p) if weights[p] == 1.0 else f"{weights[p]:g}·{term(p)}"
                                              for p in parts)
            if unweighted:
                formula += "; dotted: the KL terms unweighted"
        else:
            formula = "parts as logged (unweighted); their weights are not known here, so they need not add up"
        ax.set(xlabel="epoch (1 = first)", ylabel="mean training loss",
               title=f"{row}: loss components ({model}, {dataset})\n{formula}")
        ax.title.set_fontsize(9)
        written.append(_save(fig, ax, out / f"loss_components_{_file_part(row)}_{_file_part(dataset)}_"
                                            f"{_file_part(model)}.png"))

    for (dataset, model, row), runs in groups.items():
        path = out / f"teachers_{_file_part(row)}_{_file_part(dataset)}_{_file_part(model)}.png"
        if write_teacher_plot(runs, path, title=f"{row}: its teachers ({model}, {dataset})"):
            written.append(path)
    return written


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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
