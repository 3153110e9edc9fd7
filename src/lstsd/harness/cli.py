"""The ``lstsd`` command line.

::

    lstsd train --config configs/paper/cifar100_resnet20_lstsd.yaml [--set epochs=10 ...] [--resume]
    lstsd compare --preset quick [--methods vanilla,lstsd | all] [--seeds 0,1,2] [--set k=v ...]
    lstsd report runs/compare-quick/*
    lstsd data fetch vader
    lstsd list
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from ..methods import available_methods
from .config import TrainConfig, apply_overrides, config_differences, load_config, read_yaml
from .registry import available_datasets, available_models
from .report import collect, cost_table, results_table, write_plots
from .trainer import CHECKPOINT, CONFIG, RESULTS, Trainer


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("lstsd.harness.presets").iterdir()
                  if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset: ``config`` (the shared run settings), ``methods``, ``seeds``, per-method ``method_args``."""
    path = Path(name)
    if not path.is_file():
        if name not in preset_names():
            raise ValueError(f"unknown preset {name!r}; available: {', '.join(preset_names())} "
                             "(or pass the path of a preset YAML file)")
        path = Path(str(resources.files("lstsd.harness.presets") / f"{name}.yaml"))
    preset = read_yaml(path)
    unknown = set(preset) - {"description", "config", "methods", "seeds", "method_args"}
    if unknown:
        raise ValueError(f"{path}: unknown preset key(s) {sorted(unknown)}")
    preset.setdefault("name", path.stem)
    return preset


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``method_args.<method>.<key>=v`` applies to that method only; everything else to every run."""
    shared: list[str] = []
    per_method: dict[str, list[str]] = {}
    for text in overrides:
        parts = text.split("=", 1)[0].split(".")
        if len(parts) >= 3 and parts[0] == "method_args" and parts[1] in available_methods():
            per_method.setdefault(parts[1], []).append("method_args." + text.split(".", 2)[2])
        else:
            shared.append(text)
    return shared, per_method


def compare(preset_name: str, *, methods: list[str] | None = None, seeds: list[int] | None = None,
            overrides: list[str] | None = None, out_dir: str | None = None,
            log=print) -> tuple[list[Path], str]:
    """Run every method × seed of a preset (reusing finished runs); return run dirs and the report text."""
    preset = load_preset(preset_name)
    methods = methods or list(preset.get("methods", ["vanilla", "lstsd"]))
    if methods == ["all"]:
        methods = available_methods()
    unknown = [m for m in methods if m not in available_methods()]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; available: {', '.join(available_methods())}")
    seeds = seeds if seeds is not None else list(preset.get("seeds", [0]))
    root = Path(out_dir or Path("runs") / f"compare-{preset['name']}")
    base = dict(preset.get("config", {}))
    runs: list[Path] = []
    total = len(methods) * len(seeds)
    started = time.perf_counter()
    log(f"lstsd compare --preset {preset['name']}: {len(methods)} methods × {len(seeds)} seeds = {total} runs "
        f"into {root}")
    shared, per_method = _split_overrides(overrides or [])
    for k, (method, seed) in enumerate(((m, s) for m in methods for s in seeds), 1):
        values = dict(base, method=method, seed=seed, name=f"{method}-seed{seed}",
                      run_dir=str(root / f"{method}-seed{seed}"))
        values["method_args"] = {**base.get("method_args", {}), **preset.get("method_args", {}).get(method, {})}
        cfg = load_config(None, shared + per_method.get(method, []), base=values)
        run_dir = cfg.run_path()
        runs.append(run_dir)
        _check_same_run(run_dir, cfg)
        if (run_dir / RESULTS).is_file():
            log(f"[{k}/{total}] {cfg.name}: finished earlier, reused ({run_dir})")
            continue
        resume = (run_dir / CHECKPOINT).is_file()
        log(f"[{k}/{total}] {cfg.name}" + (" (resuming)" if resume else ""))
        results = Trainer(cfg, log=None).fit(resume=resume)
        headline = f"test_{results['metrics'][0]}"
        log(f"[{k}/{total}] {cfg.name}: {headline} {results['final'].get(headline, float('nan')):.2f} "
            f"in {results['cost']['train_seconds']:.0f}s of training "
            f"({time.perf_counter() - started:.0f}s elapsed)")
    return runs, _tables_and_plots(runs, root / "plots", methods=methods)


def _check_same_run(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to reuse or resume a run directory that holds a run with other settings."""
    saved_path = run_dir / CONFIG
    if not saved_path.is_file():
        return
    diff = config_differences(read_yaml(saved_path), cfg.to_dict())
    if diff:
        raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(diff)} differ); "
                         "pass --out with a fresh folder for this comparison")


def report(run_dirs: list[str], out_dir: str | None = None) -> str:
    """The tables of finished runs; the plots go to ``out_dir`` (default: ``plots`` beside the runs)."""
    return _tables_and_plots(run_dirs, Path(out_dir) if out_dir else Path(run_dirs[0]).parent / "plots")


def _tables_and_plots(run_dirs: list[str] | list[Path], plots_dir: Path, methods: list[str] | None = None) -> str:
    """The results and cost tables of finished runs, and the paths of their plots, written to ``plots_dir``."""
    records = collect(run_dirs)
    plots = write_plots(records, plots_dir)
    return "\n\n".join([results_table(records, methods=methods), cost_table(records),
                        "Plots:\n" + "\n".join(f"  {p}" for p in plots)])


def _train(args: argparse.Namespace) -> None:
    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data_dir={args.data_dir}")
    if args.download:
        overrides.append("download=true")
    values = apply_overrides(read_yaml(args.config), overrides)
    values.setdefault("name", Path(args.config).stem)
    cfg = load_config(None, [], base=values)
    results = Trainer(cfg).fit(resume=args.resume)
    print(f"finished: {results['final']} -> {cfg.run_path() / RESULTS}")


def _compare(args: argparse.Namespace) -> None:
    seeds = [int(s) for s in _csv(args.seeds)] if args.seeds else None
    _, text = compare(args.preset, methods=_csv(args.methods), seeds=seeds, overrides=args.overrides,
                      out_dir=args.out)
    print("\n" + text)


def _report(args: argparse.Namespace) -> None:
    print(report(args.run_dirs, args.out))


def _data_fetch(args: argparse.Namespace) -> None:
    from .text.vader import fetch_vader
    print(f"VADER sentiment sets in {fetch_vader(force=args.force)}")


def _list(args: argparse.Namespace) -> None:
    print("methods: " + ", ".join(available_methods()))
    print("models: " + ", ".join(available_models()))
    print("datasets: " + ", ".join(available_datasets()))
    print("presets: " + ", ".join(preset_names()))


def build_parser() -> argparse.ArgumentParser:
    """The ``lstsd`` parser; each subcommand sets ``func``, the function that runs it."""
    parser = argparse.ArgumentParser(prog="lstsd", description="Long Short-Term Sample Distillation: "
                                     "train, compare and report one-generation teacher-student methods.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="one run into a run directory")
    train.add_argument("--config", required=True, help="a YAML config (configs/paper/, configs/offline/)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value (repeatable), e.g. --set epochs=10 --set method_args.temperature=1")
    train.add_argument("--resume", action="store_true", help="continue the run from its checkpoint")
    train.add_argument("--data-dir", help="where the data set files are (overrides data_dir)")
    train.add_argument("--download", action="store_true", help="download a missing data set when online")
    train.set_defaults(func=_train)

    comp = sub.add_parser("compare", help="every method × seed of a preset, then a table and plots")
    comp.add_argument("--preset", required=True, help="a preset name (see `lstsd list`) or a preset YAML file")
    comp.add_argument("--methods", help="comma-separated method names, or 'all'")
    comp.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    comp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override the shared config (e.g. epochs=20), or one method's settings with "
                           "method_args.METHOD.KEY=VALUE (e.g. method_args.lstsd.generation_epochs=4)")
    comp.add_argument("--out", help="output folder (default runs/compare-PRESET)")
    comp.set_defaults(func=_compare)

    rep = sub.add_parser("report", help="the table and plots from finished runs")
    rep.add_argument("run_dirs", nargs="+")
    rep.add_argument("--out", help="where to write the plots (default: beside the runs)")
    rep.set_defaults(func=_report)

    data = sub.add_parser("data", help="obtain data sets that install offline")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download and cache a data set")
    fetch.add_argument("name", choices=["vader"])
    fetch.add_argument("--force", action="store_true")
    fetch.set_defaults(func=_data_fetch)

    sub.add_parser("list", help="the registered methods, models, data sets and presets").set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        print(f"lstsd {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
