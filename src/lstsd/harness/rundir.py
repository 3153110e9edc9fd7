"""A run folder: the names of its files, how to tell one, how to finish one, and its one reader.

The trainer (:mod:`lstsd.harness.trainer`) writes a run into one folder:

* ``config.yaml`` (:data:`CONFIG`): the run's resolved settings, written before the first epoch;
* ``metrics.jsonl`` (:data:`METRICS`): one JSON row per finished epoch (its ``epoch`` key counts from 0);
* ``checkpoint.pt`` (:data:`CHECKPOINT`): everything needed to resume, rewritten every epoch;
* ``results.json`` (:data:`RESULTS`): the final metrics and costs, written last, so a run is
  *finished* exactly when it has one.

Every other module takes these names, :func:`is_run_dir`, :func:`absolute` and :func:`read_run`
from here, so the layout is defined once.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     run = Path(tmp, "run"); run.mkdir()
    ...     before = is_run_dir(run), is_finished(run)
    ...     _ = (run / CONFIG).write_text("epochs: 3\\n")
    ...     before, is_run_dir(run), is_finished(run), resume_hint(run).startswith("it stopped before")
    ((False, False), True, False, True)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ReportError

__all__ = ["CHECKPOINT", "CONFIG", "METRICS", "RESULTS", "RUN_FILES", "RunRecord", "absolute", "is_finished",
           "is_run_dir", "point_label", "read_config", "read_metrics", "read_results", "read_run", "resume_command",
           "resume_hint"]

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
# Any of these marks a folder as a run (finished or not); results.json comes first: it says "finished".
RUN_FILES = (RESULTS, CONFIG, CHECKPOINT, METRICS)
# What results.json must hold for the tables and plots to read it.
_RESULTS_KEYS = ("method", "model", "dataset", "seed", "final", "cost")


def absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute without resolving links (messages name the folder the user gave, from anywhere).

    Example:
        >>> absolute("runs/a").is_absolute(), absolute("/x/../y")
        (True, PosixPath('/y'))
    """
    return Path(os.path.abspath(os.fspath(path)))


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding any of a run's files (:data:`RUN_FILES`), finished or not."""
    folder = Path(path)
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


def is_finished(run_dir: str | os.PathLike) -> bool:
    """Whether the run in ``run_dir`` finished (it wrote :data:`RESULTS`)."""
    return (Path(run_dir) / RESULTS).is_file()


def resume_command(run_dir: str | os.PathLike, world_size: int = 1) -> str:
    """The command that continues the run in ``run_dir`` from its checkpoint, with an absolute path
    (it works from any folder); under ``torchrun`` with the run's number of processes.

    Example:
        >>> resume_command("/runs/a")
        'lstsd train --config /runs/a/config.yaml --resume'
        >>> resume_command("/runs/a", world_size=2)
        'torchrun --nproc_per_node=2 -m lstsd.harness.cli train --config /runs/a/config.yaml --resume'
    """
    launcher = f"torchrun --nproc_per_node={world_size} -m lstsd.harness.cli" if world_size > 1 else "lstsd"
    return f"{launcher} train --config {absolute(Path(run_dir) / CONFIG)} --resume"


def resume_hint(run_dir: str | os.PathLike) -> str:
    """What to do with an unfinished run folder, with absolute paths (works from any folder).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     resume_hint(tmp).startswith("nothing to resume")
        True
    """
    run = absolute(run_dir)
    config = run / CONFIG
    if config.is_file() and (run / CHECKPOINT).is_file():
        return f"finish it with: {resume_command(run)}"
    if config.is_file():
        return f"it stopped before its first epoch ended; start it again with: lstsd train --config {config}"
    return f"nothing to resume there (no {CONFIG}): run it again with the command that made it"


def epochs_done(run_dir: str | os.PathLike) -> str:
    """``"1/12 epochs done"`` for an unfinished run (``?`` for what cannot be read): for notes only."""
    run = Path(run_dir)
    try:
        done = sum(1 for line in (run / METRICS).read_text().splitlines() if line.strip())
    except OSError:
        done = 0
    total = "?"
    try:
        import yaml
        total = (yaml.safe_load((run / CONFIG).read_text()) or {}).get("epochs", "?")
    except Exception:  # noqa: BLE001 - only for the note: an unreadable config shows "?"
        pass
    return f"{done}/{total} epochs done"


def point_label(point: tuple[tuple[str, Any], ...]) -> str:
    """A short, file-name-safe label of a sweep's grid point (the run folder's name part,
    ``<method>-<label>-seed<N>``; defined here, beside the run layout, for the report to recognise it).

    Example:
        >>> point_label((("method_args.lambda_long", 2.4), ("lr", "1e-3 x")))
        'lambda_long2.4-lr1e-3_x'
    """
    text = "-".join(f"{k.split('.')[-1]}{v}" for k, v in point)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)


@dataclass
class RunRecord:
    """One finished run, as the tables and plots read it (``results.json``, ``metrics.jsonl``, ``config.yaml``).

    ``label`` is the run's row name: its method, plus the settings that set it apart from other
    runs of that method when there are any (:func:`lstsd.harness.report.group_runs`), or the name of
    the preset's arm it was made for (``arm``), its settings then in ``arm_settings``; empty means the method.
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
    before: dict[str, float] = field(default_factory=dict)   # the task's evaluation before training (LMs)
    arm: str = ""            # the preset's arm the row is named by ("lstsd-quarter"), if it is
    arm_settings: str = ""   # what sets it apart from its method's other rows ("lambda_long=0.6, lambda_short=1.0")

    @property
    def row(self) -> str:
        """The row this run is counted in: ``label`` or, without one, the method."""
        return self.label or self.method


def _read_json(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{absolute(path)} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})",
                          fix) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{absolute(path)} cannot be read ({err})", fix) from None


def read_results(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A finished run's ``results.json``; :class:`~lstsd.harness.errors.ReportError` when it is missing,
    corrupt or not an lstsd results file (the message says how to write it again)."""
    run = Path(run_dir)
    results_path = run / RESULTS
    if not results_path.is_file():
        raise ReportError(f"{absolute(run)} has no {RESULTS}: it is not a finished run", resume_hint(run))
    rewrite = (f"delete it and write it again from the final checkpoint with: lstsd train --config "
               f"{absolute(run / CONFIG)} --resume" if (run / CHECKPOINT).is_file() and (run / CONFIG).is_file()
               else "run it again")
    results = _read_json(results_path, rewrite)
    if not isinstance(results, dict) or any(k not in results for k in _RESULTS_KEYS):
        missing = [k for k in _RESULTS_KEYS if not isinstance(results, dict) or k not in results]
        raise ReportError(f"{absolute(results_path)} is not an lstsd results file (lacks {', '.join(missing)})",
                          rewrite)
    return results


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl`` (``[]`` without one); ``ReportError`` naming a broken line."""
    metrics_path = Path(run_dir) / METRICS
    rows: list[dict[str, Any]] = []
    if metrics_path.is_file():
        for number, line in enumerate(metrics_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ReportError(f"{absolute(metrics_path)} line {number} is not valid JSON ({err.msg})",
                                  "delete the broken line, or run the run again") from None
    return rows


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run's ``config.yaml`` as written (``{}`` without one); ``ReportError`` when it is not YAML."""
    config_path = Path(run_dir) / CONFIG
    if not config_path.is_file():
        return {}
    import yaml
    try:
        return yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ReportError(f"{absolute(config_path)} is not valid YAML ({err})",
                          "restore it (results.json and checkpoint.pt hold the same settings)") from None


def read_run(run_dir: str | os.PathLike) -> RunRecord:
    """One finished run; :class:`~lstsd.harness.errors.ReportError` naming the file that is missing or corrupt."""
    run = Path(run_dir)
    results = read_results(run)
    return RunRecord(run_dir=run, method=results["method"], model=results["model"], dataset=results["dataset"],
                     seed=results["seed"], final=results["final"], rows=read_metrics(run), cost=results["cost"],
                     metrics=list(results.get("metrics", ["accuracy"])), config=read_config(run),
                     data_source=dict(results.get("data_source") or {}),
                     before=dict(results.get("before_training") or {}))
