"""The ``lstsd`` command line.

::

    lstsd train --config configs/paper/cifar100_resnet20_lstsd.yaml [--set epochs=10 lr=0.05 ...] [--resume]
    lstsd compare --preset quick [--methods vanilla,lstsd | all] [--seeds 0,1,2] [--set k=v ...] [--jobs 2]
    lstsd sweep --preset sweep-generation-epochs [--grid method_args.lstsd.generation_epochs=1,2,3] [--jobs 2]
    lstsd report runs/compare-quick/*
    lstsd data fetch vader
    lstsd list

Before it trains, ``train`` checks the whole run (the config names its data set, model and method;
the method accepts its settings; the output folder can be written) and prints the resolved
settings and the number of steps; ``compare`` checks every run of the comparison the same way
before the first one starts, and warns when a method's distillation would never start.

``--jobs N`` makes N runs at once, each with ``cores // N`` threads (:mod:`lstsd.harness.parallel`);
under ``torchrun`` only rank 0 prints, an error is printed by one process, ``--jobs`` is refused,
and a process that dies makes the others stop with one line naming it and the resume command.

Foreseeable faults (a bad config or preset, data missing where it was asked for, an output folder
that cannot be written, a full disk, a diverged run, Ctrl-C, SIGTERM) end with one line on stderr,
``lstsd <command>: error: <what> — <what to do>``, and exit status 2 (130 after Ctrl-C, 143 after
SIGTERM, with the command that resumes). ``--debug`` prints the traceback as well.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..methods import Method, available_methods, create_method
from .config import (
    TrainConfig,
    apply_overrides,
    check_required,
    config_differences,
    load_config,
    parse_override,
    read_yaml,
    select_method_args,
)
from .ddp import first_to_report
from .errors import ConfigError, ConfigNotFoundError, HarnessError, OutputError, ReportError, is_disk_full, one_line
from .registry import available_datasets, available_models, dataset_entry, model_kind
from .report import (
    collect,
    cost_table,
    epoch_tables,
    find_runs,
    paired_table,
    results_table,
    teacher_table,
    write_plots,
)
from .rundir import CHECKPOINT, CONFIG, METRICS, RESULTS, absolute, is_finished, resume_command
from .runtime import Interrupted, hold_signals, resolve_device, same_precision, stop_on_signals
from .text.generation import create_sequence_method

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
# Placeholder sizes to build a method before its data is loaded: enough to check its settings.
_PLACEHOLDER_SAMPLES, _PLACEHOLDER_CLASSES = 8, 1000


@dataclass
class _Context:
    """What the error handler needs to say what to do: the command and the run in progress."""

    command: str
    argv: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    run_name: str | None = None
    position: str = ""

    def command_line(self) -> str:
        return shlex.join(["lstsd", *self.argv])


# ----------------------------------------------------------------------------- presets
def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("lstsd.harness.presets").iterdir()
                  if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset: ``config`` (the shared run settings), ``methods``, ``seeds``, per-method ``method_args``,
    and optionally ``arms`` (named arms, several of one method with other settings: :func:`preset_arms`)."""
    path = Path(name)
    if not path.is_file():
        if path.is_dir() or name not in preset_names():
            raise ConfigNotFoundError(f"unknown preset {name!r}",
                                      f"use one of {', '.join(preset_names())}, or the path of a preset YAML file")
        path = Path(str(resources.files("lstsd.harness.presets") / f"{name}.yaml"))
    preset = read_yaml(path)
    unknown = set(preset) - {"description", "config", "methods", "seeds", "method_args", "sweep", "arms"}
    if unknown:
        raise ConfigError(f"{path}: unknown preset key(s) {sorted(unknown)}",
                          "a preset holds description, config, methods, seeds, method_args, arms and sweep")
    preset.setdefault("name", path.stem)
    preset_arms(preset)   # checked now: a bad arm is refused before anything runs
    return preset


def preset_arms(preset: dict[str, Any]) -> list[PlanArm] | None:
    """The preset's named arms (``None`` without an ``arms`` key), for comparisons that hold one method
    several times with other settings::

        arms:
          vanilla: {method: vanilla}
          lstsd-quarter: {method: lstsd, method_args: {lambda_long: 0.6, lambda_short: 1.0}}

    An arm's ``method_args`` go on top of the preset's ``method_args`` of its method; its runs are
    ``<name>-seed<seed>``.

    Example:
        >>> quarter = {"method": "lstsd", "method_args": {"lambda_long": 0.6}}
        >>> arms = preset_arms({"name": "p", "arms": {"quarter": quarter}})
        >>> arms[0].method, arms[0].name, arms[0].overrides
        ('lstsd', 'quarter', ('method_args.lambda_long=0.6',))
    """
    arms = preset.get("arms")
    if arms is None:
        return None
    where = f"preset {preset.get('name')!r}"
    fix = "write arms as NAME: {method: METHOD, method_args: {KEY: VALUE, ...}}"
    if not isinstance(arms, dict) or not arms:
        raise ConfigError(f"{where}: arms must be a mapping of arm names to their method and settings", fix)
    out: list[PlanArm] = []
    for name, arm in arms.items():
        if not isinstance(arm, dict) or set(arm) - {"method", "method_args"} or "method" not in arm:
            raise ConfigError(f"{where}: arm {name!r} must hold a method and optional method_args, got {arm!r}", fix)
        if arm["method"] not in available_methods():
            raise ConfigError(f"{where}: arm {name!r} has unknown method {arm['method']!r}",
                              f"use one of {', '.join(available_methods())}")
        if _file_name(str(name)) != str(name):
            raise ConfigError(f"{where}: arm name {name!r} cannot name a run folder",
                              "use letters, digits, '-', '_' and '.' only")
        settings = arm.get("method_args") or {}
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}: arm {name!r} has method_args {settings!r}, not a mapping", fix)
        out.append(PlanArm(arm["method"], str(name),
                           tuple(f"method_args.{k}={json.dumps(v)}" for k, v in settings.items())))
    return out


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``method_args.<method>.<key>=v`` (or ``method_args.<method>={key: v, ...}``) applies to that
    method only, as ``method_args.<key>=v`` on top of its settings; everything else to every run.

    Example:
        >>> _split_overrides(["epochs=2", "method_args.lstsd.temperature=4", "method_args.lstsd={lambda_long: 1}"])
        (['epochs=2'], {'lstsd': ['method_args.temperature=4', 'method_args.lambda_long=1']})
    """
    shared: list[str] = []
    per_method: dict[str, list[str]] = {}
    for text in overrides:
        parts = text.split("=", 1)[0].split(".")
        if len(parts) >= 3 and parts[0] == "method_args" and parts[1] in available_methods():
            per_method.setdefault(parts[1], []).append("method_args." + text.split(".", 2)[2])
            continue
        if len(parts) == 2 and parts[0] == "method_args" and parts[1] in available_methods():
            value = parse_override(text)[1]
            if isinstance(value, dict):   # the whole mapping of one method: each key on its own
                per_method.setdefault(parts[1], []).extend(
                    f"method_args.{key}={json.dumps(item)}" for key, item in value.items())
                continue
        shared.append(text)
    return shared, per_method


def _apply_method_overrides(values: dict[str, Any], per_method: dict[str, list[str]]) -> dict[str, Any]:
    """``values`` (a config with its ``method``) with the ``method_args.METHOD.KEY=VALUE`` overrides applied.

    The run's ``method_args`` are first reduced to its method's own, flat (as a run's saved
    ``config.yaml`` holds them), then the overrides of that method are set on top, so they win over
    the file's values whichever form it uses. An override for another method would change nothing:
    it is refused.

    Example:
        >>> saved = {"method": "lstsd", "method_args": {"generation_epochs": 1, "temperature": 2.0}}
        >>> _apply_method_overrides(saved, {"lstsd": ["method_args.temperature=4"]})["method_args"]
        {'generation_epochs': 1, 'temperature': 4}
    """
    if not per_method:
        return values
    method = values.get("method")
    others = sorted(set(per_method) - {method})
    if others:
        raise ConfigError(f"--set method_args.{others[0]}.… does not apply: this run's method is {method}, so "
                          f"{others[0]}'s settings would change nothing",
                          f"drop it, set method={others[0]} as well, or write method_args.{method}.KEY=VALUE "
                          f"(or method_args.KEY=VALUE) for {method}'s settings")
    current = values.get("method_args") or {}
    if isinstance(current, dict):   # anything else is refused by the config's own check
        values = dict(values, method_args=select_method_args(dict(current), str(method)))
    return apply_overrides(values, per_method.get(str(method), []))


# ----------------------------------------------------------------------------- checks before a run
def check_output_folder(folder: str | os.PathLike, fix: str) -> None:
    """Raise :class:`~lstsd.harness.errors.OutputError` unless ``folder`` exists as a writable folder
    or can be created (its nearest existing ancestor is a writable folder). Creates nothing.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_output_folder(Path(tmp, "new", "run"), "use --out")      # can be created: fine
        ...     _ = Path(tmp, "file").write_text("x")
        ...     check_output_folder(Path(tmp, "file", "run"), "use --out")
        Traceback (most recent call last):
        ...
        lstsd.harness.errors.OutputError: cannot create the output folder .../file/run: .../file is a file — use --out
    """
    target = absolute(folder)
    existing = target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create the output folder {target}: {existing} is a file", fix)
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only_fs(existing) else "no write permission"
        raise OutputError(f"cannot write the output folder {target}: {existing} is not writable ({why})", fix)


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def check_run(cfg: TrainConfig, fix: str) -> Method:
    """Check what can be checked before the data is loaded: the data set and model names, the device
    and the method's settings. Returns the method built with placeholder sizes (its settings resolved)."""
    try:
        dataset_entry(cfg.dataset)
        model_kind(cfg.model)
    except ValueError as err:
        raise ConfigError(f"{cfg.name}: {err}", "see `lstsd list`") from None
    try:
        resolve_device(cfg.device)
    except (ValueError, RuntimeError) as err:
        raise ConfigError(_with_fix(f"{cfg.name}: {err}", "use --set device=auto (or cpu)")) from None
    # A text-generation task's causal LM gives B × T × V logits: its method must take them per token.
    build = create_sequence_method if dataset_entry(cfg.dataset).kind == "text_generation" else create_method
    try:
        return build(cfg.method, num_samples=_PLACEHOLDER_SAMPLES, num_classes=_PLACEHOLDER_CLASSES,
                     **cfg.method_args)
    except (ValueError, TypeError) as err:
        if isinstance(err, HarnessError) and err.fix:   # says its own fix (a method a causal LM cannot take)
            raise ConfigError(f"{cfg.name}: {err.what}", err.fix) from None
        text = str(err) if str(err).startswith("method ") else f"method {cfg.method!r}: {err}"
        raise ConfigError(f"{cfg.name}: {one_line(text)}", fix) from None


def distillation_warnings(cfg: TrainConfig, method: Method) -> list[str]:
    """Warnings for a run whose distillation never starts: ``epochs`` ≤ one mini-generation (LSTSD and
    its variants: ``generation_epochs``; the snapshot methods: ``cycle_epochs``).

    Example:
        >>> cfg = TrainConfig(dataset="digits", method="lstsd", epochs=3, method_args={"generation_epochs": 3})
        >>> method = create_method("lstsd", num_samples=8, num_classes=10, **cfg.method_args)
        >>> print(distillation_warnings(cfg, method)[0])   # doctest: +ELLIPSIS
        lstsd: epochs=3 ≤ generation_epochs=3: training never reaches a second mini-generation, so ...
    """
    generations = getattr(method, "generations", None)
    length = getattr(generations, "length", None)
    if not isinstance(length, int) or cfg.epochs > length:
        return []
    setting = str(getattr(generations, "name", "generation_epochs")).split()[0]
    what = ("the ensemble never holds more than one snapshot" if cfg.method == "snapshot_ensembles" else
            "distillation never starts (the run is plain cross-entropy training)")
    return [f"{cfg.method}: epochs={cfg.epochs} ≤ {setting}={length}: training never reaches a second "
            f"mini-generation, so {what} — raise epochs above {length} or lower {setting}"]


def describe_run(cfg: TrainConfig) -> str:
    """One line with the settings that decide what a run costs and means.

    Example:
        >>> cfg = TrainConfig(name="demo", dataset="digits", model="resnet", model_args={"depth": 8},
        ...                   method="vanilla", epochs=2, run_dir="/tmp/demo")
        >>> print(describe_run(cfg))
        demo: digits (all training samples), model resnet(depth=8), method vanilla (its defaults), 2 epochs, ...,
        seed 0, device auto, precision auto -> /tmp/demo
    """
    subset = "all training samples" if cfg.train_subset is None else f"train_subset={cfg.train_subset:g}"
    if cfg.val_fraction:
        subset += f", val_fraction={cfg.val_fraction:g}"
    model_args = ",".join(f"{k}={v}" for k, v in sorted(cfg.model_args.items()))
    model = f"{cfg.model}({model_args})" if model_args else cfg.model
    shown = ", ".join(f"{k}={v}" for k, v in cfg.method_args.items()) or "its defaults"
    return (f"{cfg.name}: {cfg.dataset} ({subset}), model {model}, method {cfg.method} ({shown})"
            + f", {cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:g}, seed {cfg.seed}, "
              f"device {cfg.device}, precision {cfg.precision} -> {absolute(cfg.run_path())}")


def describe_steps(trainer: Any) -> str:
    """The number of steps a built trainer will run (its data is loaded by then)."""
    cfg = trainer.cfg
    samples = len(trainer.task.data.train)
    per_epoch = int(getattr(trainer, "steps_per_epoch", 0) or len(trainer.train_loader))
    return (f"{samples} training samples, batch {cfg.batch_size}: {per_epoch} steps/epoch × {cfg.epochs} epochs = "
            f"{per_epoch * cfg.epochs} steps on {getattr(trainer, 'device', cfg.device)} "
            f"({getattr(trainer, 'precision', cfg.precision)})")


def _own_run_folder(config_path: Path) -> Path | None:
    """The run folder a ``config.yaml`` was written into (it holds the run's files), if it is one."""
    folder = config_path.parent
    if config_path.name == CONFIG and any((folder / f).exists() for f in (CHECKPOINT, METRICS, RESULTS)):
        return absolute(folder)
    return None


# ----------------------------------------------------------------------------- compare
def compare(preset_name: str, *, methods: list[str] | None = None, seeds: list[int] | None = None,
            overrides: list[str] | None = None, out_dir: str | None = None,
            log: Callable[[str], None] = print, warn: Callable[[str], None] | None = None,
            context: _Context | None = None, jobs: int = 1, threads: int | None = None) -> tuple[list[Path], str]:
    """Run every method × seed of a preset (or every arm × seed: :func:`preset_arms`), reusing finished runs;
    return run dirs and the report text.

    Every run's settings are checked (:func:`check_run`) before the first one trains; ``jobs`` runs
    go at once (:func:`run_plan`).
    """
    _refuse_jobs_under_torchrun(jobs)
    warn = warn or _on_stderr("lstsd compare: warning: ")
    preset = load_preset(preset_name)
    arms = preset_arms(preset)
    if arms is not None:   # named arms: --methods picks an arm by its name, else the arms of a method
        names = {a.name for a in arms}
        chosen = [a for a in arms if not methods or a.name in methods
                  or any(m == a.method and m not in names for m in methods)]
        missing = [m for m in methods or [] if not any(m in (a.name, a.method) for a in arms)]
        if missing:
            raise ConfigError(f"preset {preset['name']!r} has no arm named or of method {missing[0]!r}",
                              f"use some of {', '.join(a.name for a in arms)}")
        arms = chosen
        methods = list(dict.fromkeys(a.method for a in arms))
    methods = methods or list(preset.get("methods", ["vanilla", "lstsd"]))
    if methods == ["all"]:
        methods = available_methods()
    unknown = [m for m in methods if m not in available_methods()]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}", f"use some of {', '.join(available_methods())}, or all")
    seeds = seeds if seeds is not None else list(preset.get("seeds", [0]))
    root = Path(out_dir or Path("runs") / f"compare-{preset['name']}")
    base = dict(preset.get("config", {}))
    shared, per_method = _split_overrides(overrides or [])
    for method in sorted(set(per_method) - set(methods)):
        warn(f"--set method_args.{method}.… is ignored: {method} is not among the methods compared "
             f"({', '.join(methods)})")
    check_required(apply_overrides(base, shared), f"preset {preset['name']!r} (its config: section)",
                   keys=("dataset", "model"))

    # Every run's config and method, checked before anything trains.
    arms = arms if arms is not None else [PlanArm(method, method) for method in methods]
    counted = f"{len(arms)} arms" if preset.get("arms") else f"{len(methods)} methods"
    plan = build_plan(preset, arms, seeds, root, shared, per_method)
    runs = _check_and_run(plan, root, "fix the preset's method_args or pass --set method_args.METHOD.KEY=VALUE",
                          f"lstsd compare --preset {preset['name']}: {counted} × {len(seeds)} seeds",
                          warn=warn, log=log, jobs=jobs, threads=threads, context=context)
    if not _main_process():
        return runs, ""   # under torchrun, rank 0 alone writes the plots
    return runs, _tables_and_plots(runs, root / "plots", methods=methods)


def _check_and_run(plan: list[TrainConfig], root: Path, fix: str, what: str, *, warn: Callable[[str], None],
                   log: Callable[[str], None], jobs: int, threads: int | None,
                   context: _Context | None) -> list[Path]:
    """Check every run of ``plan`` (:func:`check_plan`), say what runs where, and run them (:func:`run_plan`)."""
    check_plan(plan, root, fix, warn)
    log(f"{what} = {len(plan)} runs into {absolute(root)}")
    return run_plan(plan, jobs=jobs, threads=threads, log=log, context=context)


@dataclass(frozen=True)
class PlanArm:
    """One arm of a comparison or sweep: its method, the name its runs start with (``lstsd`` gives
    ``lstsd-seed0``...), and settings of its own (a sweep's grid point, as ``KEY=VALUE`` overrides)."""

    method: str
    name: str
    overrides: tuple[str, ...] = ()


def build_plan(preset: dict[str, Any], arms: list[PlanArm], seeds: list[int], root: Path, shared: list[str],
               per_method: dict[str, list[str]]) -> list[TrainConfig]:
    """The config of every arm × seed (in that order), each run in ``root/<arm name>-seed<seed>``.

    A run's settings, later ones winning: the preset's ``config``, the preset's ``method_args`` of
    its method, the ``shared`` overrides, the overrides of its method (``per_method``, from
    ``method_args.METHOD.KEY=VALUE``), then the arm's own.
    """
    base = dict(preset.get("config", {}))
    plan: list[TrainConfig] = []
    for arm in arms:
        for seed in seeds:
            name = f"{arm.name}-seed{seed}"
            values = dict(base, method=arm.method, seed=seed, name=name, run_dir=str(root / name))
            values["method_args"] = {**base.get("method_args", {}),
                                     **preset.get("method_args", {}).get(arm.method, {})}
            plan.append(load_config(None, shared + per_method.get(arm.method, []) + list(arm.overrides),
                                    base=values))
    return plan


def check_plan(plan: list[TrainConfig], root: Path, fix: str, warn: Callable[[str], None]) -> None:
    """Check every run of a comparison or sweep before the first one trains (:func:`check_run`, a
    reused folder holds the same settings, the output folder can be written); warn once per message."""
    warned: set[str] = set()
    for cfg in plan:
        built = check_run(cfg, fix)
        _check_same_run(cfg.run_path(), cfg)
        for message in distillation_warnings(cfg, built):
            if message not in warned:
                warned.add(message)
                warn(message)
    check_output_folder(root, "choose another folder with --out DIR")


def run_plan(plan: list[TrainConfig], *, jobs: int = 1, threads: int | None = None,
             log: Callable[[str], None] = print, context: _Context | None = None) -> list[Path]:
    """Make the runs of ``plan`` that are not finished (a finished one is reused, an interrupted one
    resumes), ``jobs`` at a time; return their run folders in the order of ``plan``."""
    from .parallel import RunRequest, run_all, threads_per_job
    threads_per_job(jobs)                     # refuse more jobs than cores before anything starts
    total, started = len(plan), time.perf_counter()
    position = {cfg.name: f"{k}/{total}" for k, cfg in enumerate(plan, 1)}
    todo: list[RunRequest] = []
    for cfg in plan:
        run_dir = cfg.run_path()
        if is_finished(run_dir):
            log(f"[{position[cfg.name]}] {cfg.name}: finished earlier, reused ({run_dir})")
            continue
        resume = (run_dir / CHECKPOINT).is_file()
        todo.append(RunRequest(cfg.to_dict(), resume))
        if jobs == 1 and context is not None:
            context.run_dir, context.run_name, context.position = run_dir, cfg.name, position[cfg.name]
    names = [r.config["name"] for r in todo]
    if todo:
        log(f"{len(todo)} run(s) to make, {jobs} at a time: " + ", ".join(names))

    def done(request: RunRequest, results: dict[str, Any]) -> None:
        headline = f"test_{results['metrics'][0]}"
        log(f"[{position[request.config['name']]}] {request.config['name']}: {headline} "
            f"{results['final'].get(headline, float('nan')):.2f} in {results['cost']['train_seconds']:.0f}s of "
            f"training, {results['cost']['threads']} thread(s) ({time.perf_counter() - started:.0f}s elapsed)")
    if jobs == 1:   # one at a time, here: a fault names the run in progress
        for request in todo:
            if context is not None:
                cfg = TrainConfig.from_dict(request.config)
                context.run_dir, context.run_name, context.position = cfg.run_path(), cfg.name, position[cfg.name]
            log(f"[{position[request.config['name']]}] {request.config['name']}"
                + (" (resuming)" if request.resume else ""))
            run_all([request], jobs=1, threads=threads, on_done=done)
    elif todo:
        run_all(todo, jobs=jobs, threads=threads, on_done=done)
    if context is not None:
        context.run_dir = None
    return [cfg.run_path() for cfg in plan]


# ----------------------------------------------------------------------------- sweep
def sweep(preset_name: str, *, grid: list[str] | None = None, method: str | None = None,
          seeds: list[int] | None = None, overrides: list[str] | None = None, out_dir: str | None = None,
          log: Callable[[str], None] = print, warn: Callable[[str], None] | None = None,
          context: _Context | None = None, jobs: int = 1, threads: int | None = None) -> tuple[list[Path], str]:
    """Every grid point × seed of one method on a preset's settings (reusing finished runs); return
    the run folders and the text of the table. The grid comes from ``grid`` or the preset's
    ``sweep: {grid: [...]}``; see :mod:`lstsd.harness.sweep` for the syntax."""
    from .sweep import collect_sweep, grid_points, parse_axis, point_label, point_overrides, sweep_plot, sweep_table
    _refuse_jobs_under_torchrun(jobs)
    warn = warn or _on_stderr("lstsd sweep: warning: ")
    preset = load_preset(preset_name)
    spec = preset.get("sweep") or {}
    method = method or spec.get("method") or list(preset.get("methods", ["lstsd"]))[0]
    if method not in available_methods():
        raise ConfigError(f"unknown method {method!r}", f"use one of {', '.join(available_methods())}")
    axes = [parse_axis(g) for g in (grid or spec.get("grid") or [])]
    if not axes:
        raise ConfigError(f"preset {preset['name']!r} has no sweep grid and no --grid was given",
                          "pass --grid KEY=V1,V2,... (e.g. --grid method_args.generation_epochs=1,2,3)")
    seeds = seeds if seeds is not None else list(preset.get("seeds", [0]))
    root = Path(out_dir or Path("runs") / f"sweep-{preset['name']}")
    base = dict(preset.get("config", {}))
    shared, per_method = _split_overrides(overrides or [])
    points = grid_points(axes)
    arms = [PlanArm(method, f"{method}-{point_label(point)}", tuple(point_overrides(point))) for point in points]
    plan = build_plan(preset, arms, seeds, root, shared, per_method)
    runs = _check_and_run(plan, root, "fix the --grid values or the preset's method_args",
                          f"lstsd sweep --preset {preset['name']}: {method}, {len(points)} grid points × "
                          f"{len(seeds)} seeds", warn=warn, log=log, jobs=jobs, threads=threads, context=context)
    if not _main_process():
        return runs, ""   # under torchrun, rank 0 alone writes the table and the plot
    per_point = [runs[k * len(seeds):(k + 1) * len(seeds)] for k in range(len(points))]
    results = collect_sweep(points, per_point)
    plot = sweep_plot(results, axes, root / "plots" / f"sweep_{_file_name(axes[0].label)}.png",
                      title=f"{method} on {base.get('dataset', '?')}: {preset['name']}")
    return runs, sweep_table(results, axes) + f"\n\nPlot:\n  {plot}"


def _main_process() -> bool:
    """False in the processes of rank > 0 under torchrun."""
    return int(os.environ.get("RANK", "0")) == 0


def _on_stderr(prefix: str) -> Callable[[str], None]:
    """A function that prints ``prefix + message`` on stderr, once per run: under ``torchrun`` every
    process meets the same warnings and notes, so rank 0 alone prints them."""
    def say(message: str) -> None:
        if _main_process():
            print(prefix + message, file=sys.stderr, flush=True)
    return say


def _refuse_jobs_under_torchrun(jobs: int) -> None:
    """``--jobs`` > 1 under ``torchrun``: refused at once (the spawned runs would each wait forever for
    a process group of their own)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and jobs != 1:
        raise ConfigError(f"--jobs {jobs} under torchrun ({world} processes): torchrun's processes already "
                          "share each run, one run at a time",
                          "drop --jobs (or run several runs at once without torchrun: lstsd compare --jobs N)")


def _file_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in text)


def _check_same_run(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to reuse or resume a run directory that holds a run with other settings."""
    saved_path = run_dir / CONFIG
    if not saved_path.is_file():
        return
    saved = read_yaml(saved_path)
    diff = config_differences(saved, cfg.to_dict())
    if "precision" in diff and same_precision(str(saved.get("precision", "auto")), cfg.precision,
                                              resolve_device(cfg.device)):
        diff.remove("precision")   # e.g. auto, which is fp32 on this CPU, and fp32: the same run
    if diff:
        raise ConfigError(f"{absolute(run_dir)} holds a run with other settings ({', '.join(diff)} differ)",
                          "pass --out with a fresh folder for this comparison")


# ----------------------------------------------------------------------------- report
def _default_plots_dir(paths: list[str], runs: list[Path]) -> Path:
    """``plots/`` in the comparison folder given, else beside the runs (in their common folder)."""
    if len(paths) == 1 and Path(paths[0]).is_dir() and not (Path(paths[0]) / RESULTS).exists() \
            and all(absolute(r).parent == absolute(paths[0]) for r in runs):
        return absolute(paths[0]) / "plots"
    return Path(os.path.commonpath([str(absolute(r).parent) for r in runs])) / "plots"


def report(run_dirs: list[str], out_dir: str | None = None,
           note: Callable[[str], None] | None = None, against: str | None = None,
           teachers_epoch: int | None = None) -> str:
    """The tables of finished runs; the plots go to ``out_dir`` (default: ``plots`` beside the runs).

    ``run_dirs`` may name run folders, comparison folders and glob patterns; what is not a finished
    run is skipped, each with a line to ``note`` (default: stderr). ``against`` adds the differences
    to that row, paired by seed (:func:`~lstsd.harness.report.paired_table`); ``teachers_epoch``
    (from 1) shows the teachers' diagnostics at that epoch instead of the last.
    """
    note = note or _on_stderr("lstsd report: note: ")
    paths = [os.fspath(p) for p in run_dirs]
    runs, notes = find_runs(paths)
    unreadable: list[ReportError] = []
    records = collect(runs, notes, unreadable)
    if not records and len(unreadable) == len(runs) == 1:
        raise unreadable[0]          # the one run given cannot be read: that is the error
    for message in notes:
        note(message)
    if not records:
        what = (f"{absolute(paths[0])} is not a finished run nor a folder of finished runs" if len(paths) == 1 else
                f"none of the {len(paths)} paths given is a finished run or a folder of finished runs")
        raise ReportError(what, "pass run folders that hold results.json, a comparison folder (lstsd compare "
                                "--out DIR), or a glob such as runs/compare-quick/*")
    if teachers_epoch is not None and not any(row.get("epoch") == teachers_epoch - 1
                                              for r in records for row in r.rows):
        longest = max((len(r.rows) for r in records), default=0)
        raise ReportError(f"--teachers-epoch {teachers_epoch}: no run logged that epoch",
                          f"give an epoch from 1 to {longest}")
    paired = paired_table(records, against) if against else ""
    plots_dir = Path(out_dir) if out_dir else _default_plots_dir(paths, runs)
    check_output_folder(plots_dir, "pass --out DIR for the plots")
    return _tables_and_plots_of(records, plots_dir, paired=paired, teachers_epoch=teachers_epoch, against=against,
                                note=note)


def _tables_and_plots(run_dirs: list[str] | list[Path], plots_dir: Path, methods: list[str] | None = None) -> str:
    """The results and cost tables of finished runs, and the paths of their plots, written to ``plots_dir``."""
    notes: list[str] = []
    records = collect(run_dirs, notes)
    note = _on_stderr("lstsd: note: ")
    for message in notes:
        note(message)
    return _tables_and_plots_of(records, plots_dir, methods, note=note)


def _tables_and_plots_of(records: list, plots_dir: Path, methods: list[str] | None = None, paired: str = "",
                         teachers_epoch: int | None = None, against: str | None = None,
                         note: Callable[[str], None] | None = None) -> str:
    notes: list[str] = []
    plots = write_plots(records, plots_dir, notes=notes)
    for message in notes:
        (note or _on_stderr("lstsd: note: "))(message)
    tables = [results_table(records, methods=methods), paired, *epoch_tables(records, against),
              teacher_table(records, teachers_epoch), cost_table(records, against)]
    return "\n\n".join([t for t in tables if t] + ["Plots:\n" + "\n".join(f"  {p}" for p in plots)])


# ----------------------------------------------------------------------------- subcommands
def _train(args: argparse.Namespace) -> None:
    from .trainer import Trainer
    ctx: _Context = args.context
    config_path = Path(args.config)
    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data_dir={args.data_dir}")
    if args.download:
        overrides.append("download=true")
    shared, per_method = _split_overrides(overrides)
    values = apply_overrides(read_yaml(config_path), shared)
    check_required(values, str(config_path))
    values = _apply_method_overrides(values, per_method)
    values.setdefault("name", config_path.stem)
    own = _own_run_folder(config_path)
    overridden = {parse_override(text)[0][0] for text in overrides}
    if own is not None and not overridden & {"run_dir", "out_dir", "name"}:
        values["run_dir"] = str(own)      # a run's own config.yaml resumes that run, from any folder
    cfg = load_config(None, [], base=values)
    ctx.run_dir, ctx.run_name = cfg.run_path(), cfg.name
    check_output_folder(cfg.run_path(), "choose a writable folder with --set out_dir=DIR (or run_dir=DIR)")
    method = check_run(cfg, "fix method_args in the config file or pass --set method_args.KEY=VALUE")
    print(f"lstsd train: {describe_run(cfg)}", flush=True)
    for message in distillation_warnings(cfg, method):
        _on_stderr("lstsd train: warning: ")(message)
    trainer = Trainer(cfg)
    print(f"lstsd train: {describe_steps(trainer)}", flush=True)
    results = trainer.fit(resume=args.resume)
    print(f"finished: {results['final']} -> {absolute(cfg.run_path() / RESULTS)}")


def _seeds(text: str | None) -> list[int] | None:
    """``--seeds 0,1,2`` as integers (``None`` when not given: the preset's seeds)."""
    try:
        return [int(s) for s in _csv(text) or []] if text else None
    except ValueError:
        raise ConfigError(f"--seeds {text!r} is not a list of integers", "write it as --seeds 0,1,2") from None


def _compare(args: argparse.Namespace) -> None:
    _, text = compare(args.preset, methods=_csv(args.methods), seeds=_seeds(args.seeds), overrides=args.overrides,
                      out_dir=args.out, context=args.context, jobs=args.jobs, threads=args.threads)
    print("\n" + text)


def _sweep(args: argparse.Namespace) -> None:
    _, text = sweep(args.preset, grid=args.grid or None, method=args.method, seeds=_seeds(args.seeds),
                    overrides=args.overrides, out_dir=args.out, context=args.context, jobs=args.jobs,
                    threads=args.threads)
    print("\n" + text)


def _report(args: argparse.Namespace) -> None:
    print(report(args.run_dirs, args.out, against=args.against, teachers_epoch=args.teachers_epoch))


def _data_fetch(args: argparse.Namespace) -> None:
    from .text.vader import fetch_vader
    print(f"VADER sentiment sets in {fetch_vader(force=args.force)}")


def _list(args: argparse.Namespace) -> None:
    print("methods: " + ", ".join(available_methods()))
    print("models: " + ", ".join(available_models()))
    print("datasets: " + ", ".join(available_datasets()))
    print("presets: " + ", ".join(preset_names()))


# ----------------------------------------------------------------------------- errors
def _continue_hint(ctx: _Context) -> str:
    """How to go on after a run stopped: the exact command, with absolute paths."""
    if ctx.command in ("compare", "sweep"):
        return ("run the same command again (finished runs are reused, an interrupted one resumes): "
                + ctx.command_line())
    if ctx.run_dir is not None and (ctx.run_dir / CHECKPOINT).is_file() and (ctx.run_dir / CONFIG).is_file():
        return f"continue with: {resume_command(ctx.run_dir, int(os.environ.get('WORLD_SIZE', '1')))}"
    return f"no epoch was saved yet: run the same command again: {ctx.command_line()}"


def _output_fix(ctx: _Context) -> str:
    return {"train": "choose a writable folder with --set out_dir=DIR",
            "compare": "choose a writable folder with --out DIR",
            "sweep": "choose a writable folder with --out DIR",
            "report": "write the plots elsewhere with --out DIR"}.get(ctx.command, "choose a writable folder")


def _with_fix(message: str, fix: str) -> str:
    """``message — fix`` unless the message already says what to do."""
    message = one_line(message)
    return message if " — " in message or "; " in message else f"{message} — {fix}"


def explain(err: BaseException, ctx: _Context) -> str | None:
    """The one-line message for a foreseeable fault, or ``None`` for an unforeseen one (a bug: traceback)."""
    # In a comparison, a fault while a run trains names the run first.
    run = (f"{ctx.run_name} ({ctx.position}): " if ctx.command in ("compare", "sweep") and ctx.run_dir is not None
           else "")
    if is_disk_full(err):
        where = getattr(err, "filename", None) or (absolute(ctx.run_dir) if ctx.run_dir else "the output folder")
        return f"{run}the disk is full (writing {where}) — free space there, then {_continue_hint(ctx)}"
    if isinstance(err, FloatingPointError):   # the trainer's divergence check (DivergedError is one too)
        return run + _with_fix(str(err), "lower lr or use precision=fp32, and start a new run")
    if isinstance(err, HarnessError):
        return run + str(err)
    if isinstance(err, BrokenProcessPool):
        return (f"a process making runs (--jobs) stopped abruptly (killed, or out of memory) — "
                f"{_continue_hint(ctx)}")
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{run}cannot write {err.filename or 'the output'}: {err.strerror} — {_output_fix(ctx)}"
    if isinstance(err, (NotADirectoryError, IsADirectoryError)) or (
            isinstance(err, FileExistsError) and err.filename is not None and err.errno == errno.EEXIST):
        return (f"{err.filename}: {err.strerror} (a file is where a folder should be, or the other way round)"
                f" — {_output_fix(ctx)}")
    if isinstance(err, ModuleNotFoundError):
        return _with_fix(str(err), f"install it: pip install {err.name or 'the missing package'}")
    if isinstance(err, (ValueError, FileNotFoundError, FileExistsError, TypeError, ImportError)):
        return _with_fix(str(err), f"see lstsd {ctx.command} --help")
    if isinstance(err, OSError):
        return run + _with_fix(str(err), f"check the path and the disk, then {_continue_hint(ctx)}"
                         if ctx.command in ("train", "compare", "sweep") else "check the path")
    return None


def _add_jobs(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--jobs", type=int, default=1, help="runs at once, each with cores // jobs threads "
                     "(default 1; never more than the cores)")
    sub.add_argument("--threads", type=int, help="threads per run (default cores // jobs); results are "
                     "bit-identical between runs made with the same thread count on the same CPU type")


def build_parser() -> argparse.ArgumentParser:
    """The ``lstsd`` parser; each subcommand sets ``func``, the function that runs it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error, not only its one-line message")
    parser = argparse.ArgumentParser(prog="lstsd", description="Long Short-Term Sample Distillation: "
                                     "train, compare and report one-generation teacher-student methods.")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the traceback of an error, not only its one-line message")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", parents=[common], help="one run into a run directory")
    train.add_argument("--config", required=True, help="a YAML config (configs/paper/, configs/offline/) that names "
                       "at least dataset, model and method; or a run's config.yaml (with --resume)")
    train.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="override config values, e.g. --set epochs=10 method_args.temperature=1 "
                            "(repeatable; method=NAME takes method_args.NAME when the config has one)")
    train.add_argument("--resume", action="store_true", help="continue the run from its checkpoint")
    train.add_argument("--data-dir", help="the folder that holds the data set files (overrides data_dir and "
                       "$LSTSD_DATA; the data must be there)")
    train.add_argument("--download", action="store_true", help="download a missing data set when online")
    train.set_defaults(func=_train)

    comp = sub.add_parser("compare", parents=[common], help="every method × seed of a preset, then a table and plots")
    comp.add_argument("--preset", required=True, help="a preset name (see `lstsd list`) or a preset YAML file")
    comp.add_argument("--methods", help="comma-separated method names, or 'all' (a preset with arms: arm names "
                                            "or methods)")
    comp.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    comp.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                      help="override the shared config (e.g. epochs=20), or one method's settings with "
                           "method_args.METHOD.KEY=VALUE (e.g. method_args.lstsd.generation_epochs=4); repeatable")
    comp.add_argument("--out", help="output folder (default runs/compare-PRESET)")
    _add_jobs(comp)
    comp.set_defaults(func=_compare)

    swp = sub.add_parser("sweep", parents=[common], help="a grid over config keys × seeds for one method, then a "
                         "table and a plot of the metric against the swept values")
    swp.add_argument("--preset", required=True, help="the settings to start from: a preset name or YAML file "
                     "(sweep-generation-epochs and sweep-lambda-scale carry their own grid)")
    swp.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                     help="an axis of the grid (repeatable: the product is swept): KEY=V1,V2 or, for keys that "
                          "move together, KEY1,KEY2=A1:B1,A2:B2; e.g. method_args.generation_epochs=1,2,3,6,12")
    swp.add_argument("--method", help="the method swept (default: the preset's sweep method, or its first method)")
    swp.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    swp.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                     help="override the preset's settings for every run")
    swp.add_argument("--out", help="output folder (default runs/sweep-PRESET)")
    _add_jobs(swp)
    swp.set_defaults(func=_sweep)

    rep = sub.add_parser("report", parents=[common], help="the table and plots from finished runs")
    rep.add_argument("run_dirs", nargs="+", metavar="PATH",
                     help="run folders, comparison folders or glob patterns (what is not a finished run is skipped)")
    rep.add_argument("--out", help="where to write the plots (default: plots/ beside the runs)")
    rep.add_argument("--against", metavar="ROW",
                     help="add each row's difference to this row, paired by seed: a row label such as vanilla "
                          "or \"mean_teacher (teacher)\", "
                          "or settings only that row has, comma-separated key=value in any order, "
                          "e.g. \"lambda_long=2.4, rampup_epochs=0\"")
    rep.add_argument("--teachers-epoch", type=int, metavar="N",
                     help="show the teachers' diagnostics at epoch N (from 1) instead of the last")
    rep.set_defaults(func=_report)

    data = sub.add_parser("data", parents=[common], help="obtain data sets that install offline")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", parents=[common], help="download and cache a data set")
    fetch.add_argument("name", choices=["vader"])
    fetch.add_argument("--force", action="store_true")
    fetch.set_defaults(func=_data_fetch)

    sub.add_parser("list", parents=[common], help="the registered methods, models, data sets and presets") \
        .set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``lstsd`` command; return its exit status (0; 2 for a fault, printed as one line;
    130 after Ctrl-C, 143 after SIGTERM, with the command that continues).

    SIGTERM (``kill``, a scheduler, a container stop) is handled as Ctrl-C is: the step in progress
    is abandoned and the last checkpoint kept. Under ``torchrun`` an error or warning is printed once
    (not once per process), and each process ends without the interpreter's finalization
    (:func:`_end_process`: docs/known_issues.md).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not _main_process():   # under torchrun only rank 0 prints (errors go to stderr)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    args = build_parser().parse_args(argv)
    ctx = _Context(command=args.command, argv=argv)
    args.context = ctx
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        with stop_on_signals():
            args.func(args)
    except KeyboardInterrupt as stop:
        hold_signals()   # a second Ctrl-C or SIGTERM must not break off the report with a traceback
        if args.debug:
            traceback.print_exc()
        where = f" during {ctx.run_name}" + (f" ({ctx.position})" if ctx.position else "") if ctx.run_name else ""
        how = f" by {stop.name}" if isinstance(stop, Interrupted) else ""
        if first_to_report():
            print(f"lstsd {ctx.command}: error: interrupted{how}{where} — {_continue_hint(ctx)}"
                  if ctx.command in ("train", "compare", "sweep")
                  else f"lstsd {ctx.command}: error: interrupted{how} — run it again",
                  file=sys.stderr, flush=True)
        status = stop.exit_status if isinstance(stop, Interrupted) else EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - foreseeable faults become one line; the others re-raise
        message = explain(err, ctx)
        if message is None:
            _end_process(None)
            raise
        hold_signals()
        if args.debug:
            traceback.print_exc()
        if first_to_report():
            print(f"lstsd {ctx.command}: error: {message}", file=sys.stderr, flush=True)
        status = EXIT_ERROR
    finally:
        if threading.current_thread() is threading.main_thread():
            for s, handler in handlers.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
    _end_process(status)
    return status


def _end_process(status: int | None) -> None:
    """Under ``torchrun``, end this process now with ``status`` (``None``: an unforeseen error, which
    goes on to its traceback), after flushing the output: skipping the interpreter's finalization
    is what keeps gloo's worker threads from aborting the process after the run
    (``terminate called without an active exception``: docs/known_issues.md). The process group is
    destroyed first when every process finished its work."""
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not (dist.is_available() and dist.is_initialized()):
        return
    if status == 0:
        dist.destroy_process_group()
    if status is None:
        return
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
