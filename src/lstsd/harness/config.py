"""Run configuration: a typed dataclass, loaded from YAML with ``key=value`` overrides.

Defaults are the paper's vision recipe (Experimental Setup): SGD with Nesterov momentum 0.9,
weight decay 1e-4, learning rate 0.1 divided by 10 at 25%, 50% and 75% of training, batch 128,
pad-4 random crop + horizontal flip.

Example:
    >>> cfg = load_config(None, ["dataset=digits", "epochs=4", "method_args.temperature=1"])
    >>> cfg.epochs, cfg.method_args, cfg.lr, str(cfg.run_path())
    (4, {'temperature': 1}, 0.1, 'runs/run')

    A YAML file (``configs/`` holds the paper's recipes and runnable-here versions) comes between
    the defaults and the overrides: ``load_config("configs/offline/digits_lstsd.yaml", ["epochs=4"])``.

``method_args`` may hold the settings of several methods, keyed by method name; the run takes
those of its ``method`` (none for a method without an entry), so one config serves every method
(``--set method=vanilla`` drops LSTSD's settings). Keys that are not method names apply to
whichever method runs, on top:

    >>> args = {"lstsd": {"generation_epochs": 6}, "mean_teacher": {"ema_decay": 0.99}}
    >>> [load_config(None, [f"method={m}"], base={"method_args": args}).method_args
    ...  for m in ("lstsd", "mean_teacher", "vanilla")]
    [{'generation_epochs': 6}, {'ema_decay': 0.99}, {}]
    >>> load_config(None, ["method_args.temperature=1"], base={"method_args": args}).method_args
    {'generation_epochs': 6, 'temperature': 1}

The CLI asks a config file to name its data set, model and method (:data:`REQUIRED_KEYS`,
:func:`check_required`): the defaults alone would start a 164-epoch ResNet-20 run on all of
Fashion-MNIST.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from .errors import ConfigError, ConfigNotFoundError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")
PROGRESS = ("auto", "bar", "none")

# Settings that may differ between a run and its resumption (they do not change the result).
RESUMABLE_CHANGES = frozenset({"device", "progress", "out_dir", "run_dir", "eval_batch_size", "eval_every", "name",
                               "data_dir", "download"})
# What a config file must name (the CLI checks it): the defaults alone are a long run nobody asked for.
REQUIRED_KEYS = ("dataset", "model", "method")


@dataclass
class TrainConfig:
    """Everything that defines a training run. See ``configs/`` for examples.

    ``model_args`` and ``method_args`` are passed to the model and method constructors
    (e.g. ``method_args: {generation_epochs: 6, lambda_long: 2.4}``).
    """

    name: str = "run"
    # data
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    download: bool = False
    train_subset: float | None = None        # a count (>= 1) or a fraction in (0, 1)
    val_fraction: float = 0.0
    data_args: dict[str, Any] = field(default_factory=dict)
    augment: bool = True                      # pad-4 random crop + horizontal flip (images only)
    augment_padding: int = 4
    # model and method
    model: str = "resnet20"
    model_args: dict[str, Any] = field(default_factory=dict)
    method: str = "lstsd"
    method_args: dict[str, Any] = field(default_factory=dict)
    # optimisation
    epochs: int = 164
    batch_size: int = 128
    # 128, not 1000: on a CPU the activations of small batches stay in cache, which is faster
    # (docs/performance.md, benchmarks/eval_batch.py). Each output is per sample.
    eval_batch_size: int = 128
    eval_every: int = 1                       # evaluate every k epochs, and always after the last
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    lr_milestones: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    lr_gamma: float = 0.1
    drop_last: bool = False
    sync_batchnorm: bool = False              # under torchrun: batch-norm statistics over all processes
    # execution
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"                   # auto: AMP on CUDA; on CPU bf16 where native, else fp32
    channels_last: bool = True
    progress: str = "auto"                    # auto: a bar only when stderr is a terminal
    out_dir: str = "runs"
    run_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.method_args, dict):
            self.method_args = select_method_args(self.method_args, self.method)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value and what is allowed."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(f"config: {message}", "change it in the config file or with --set KEY=VALUE")
        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}")
        need(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        need(0 < self.lr_gamma <= 1, f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        need(all(0 < m < 1 for m in self.lr_milestones),
             f"lr_milestones are fractions of training in (0, 1), got {self.lr_milestones}")
        need(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        need(self.train_subset is None or self.train_subset > 0,
             f"train_subset must be a count >= 1 or a fraction in (0, 1), got {self.train_subset}")
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        need(self.progress in PROGRESS, f"progress must be one of {PROGRESS}, got {self.progress!r}")
        need(self.augment_padding >= 0, f"augment_padding must be >= 0, got {self.augment_padding}")
        need(known_device(self.device), f"device {self.device!r} is not a device torch knows "
                                        "(use auto, cpu, cuda, cuda:N or mps)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_path(self) -> Path:
        """The run directory: ``run_dir`` if set, else ``out_dir/name``.

        Example:
            >>> str(TrainConfig(name="a", out_dir="runs").run_path()), str(TrainConfig(run_dir="x/y").run_path())
            ('runs/a', 'x/y')
        """
        return Path(self.run_dir or Path(self.out_dir) / self.name)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a plain dict, refusing unknown keys and values of the wrong type."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            hints = [_closest(k, known) for k in unknown]
            extra = "".join(f" (did you mean {h!r}?)" for h in hints if h)
            raise ConfigError(f"config: unknown key(s) {unknown}{extra}",
                              f"remove or rename it; valid keys: {', '.join(sorted(known))}")
        types = get_type_hints(cls)
        return cls(**{k: _coerce(k, v, types[k]) for k, v in values.items()})


def config_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The keys, sorted, whose values differ between two config dicts, except :data:`RESUMABLE_CHANGES`.

    A run may be resumed or reused only when this is empty.

    Example:
        >>> saved = TrainConfig(epochs=10).to_dict()
        >>> config_differences(saved, TrainConfig(epochs=20, device="cpu", lr=0.05).to_dict())
        ['epochs', 'lr']
    """
    return sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))


def known_device(name: str) -> bool:
    """Whether ``name`` is ``"auto"`` or a device string torch can parse (available or not).

    Example:
        >>> known_device("auto"), known_device("cuda:1"), known_device("tpu")
        (True, True, False)
    """
    if name == "auto":
        return True
    import torch
    try:
        torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


def select_method_args(method_args: dict[str, Any], method: str) -> dict[str, Any]:
    """The settings of ``method`` when ``method_args`` is keyed by method name; else ``method_args``.

    Entries whose key is a registered method name and whose value is a mapping are per-method
    settings: ``method``'s entry is kept, the others dropped. Other keys apply to ``method`` on
    top of its entry.

    Example:
        >>> select_method_args({"lstsd": {"generation_epochs": 3}, "temperature": 1.0}, "lstsd")
        {'generation_epochs': 3, 'temperature': 1.0}
        >>> select_method_args({"lstsd": {"generation_epochs": 3}}, "vanilla")
        {}
        >>> select_method_args({"generation_epochs": 3}, "lstsd")
        {'generation_epochs': 3}
    """
    from ..methods import available_methods
    names = set(available_methods())
    per_method = {k for k, v in method_args.items() if k in names and isinstance(v, dict)}
    if not per_method:
        return dict(method_args)
    chosen = dict(method_args.get(method, {})) if method in per_method else {}
    chosen.update({k: v for k, v in method_args.items() if k not in per_method})
    return chosen


def check_required(values: dict[str, Any], where: str, keys: tuple[str, ...] = REQUIRED_KEYS) -> None:
    """Raise :class:`~lstsd.harness.errors.ConfigError` unless ``values`` name every one of ``keys``.

    Example:
        >>> check_required({"dataset": "digits", "model": "resnet", "method": "lstsd"}, "x.yaml")
        >>> check_required({"dataset": "digits"}, "x.yaml")
        Traceback (most recent call last):
        ...
        lstsd.harness.errors.ConfigError: x.yaml does not name the model and method to use ...
    """
    missing = [k for k in keys if values.get(k) in (None, "")]
    if not missing:
        return
    names = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
    examples = {"dataset": "dataset: digits", "model": "model: resnet20", "method": "method: lstsd"}
    add = "; ".join(examples.get(k, f"{k}: ...") for k in missing)
    flags = " ".join(f"--set {k}=NAME" for k in missing)
    raise ConfigError(f"{where} does not name the {names} to use (the defaults would start a 164-epoch "
                      "ResNet-20 run on all of Fashion-MNIST)",
                      f"add {add} to it (configs/offline/ has complete examples; `lstsd list` names them all), "
                      f"or pass {flags}")


def _closest(key: str, known: set[str]) -> str | None:
    import difflib
    match = difflib.get_close_matches(key, sorted(known), n=1)
    return match[0] if match else None


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the field type; ints are accepted for floats."""
    text = str(hint)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config: {key} may not be null", f"give {key} a value or leave the key out")
    def bad(kind: str) -> ValueError:
        return ConfigError(f"config: {key} must be {kind}, got {value!r} ({type(value).__name__})",
                           "change it in the config file or with --set KEY=VALUE")
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if hint is float or text.startswith("float"):
        if isinstance(value, str):   # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return value if isinstance(value, int) and key == "train_subset" else float(value)
    if hint is str or text.startswith("str"):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if text.startswith("dict"):
        if not isinstance(value, dict):
            raise bad("a mapping")
        return dict(value)
    if text.startswith("list"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) for v in value):
            raise bad("a list of numbers")
        return [float(v) for v in value]
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into ``(["a", "b"], parsed value)``; values are parsed as YAML."""
    import yaml
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value",
                          "write it as key=value, e.g. --set epochs=10 method_args.temperature=1")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"override {text!r} has an empty key", "write it as key=value, e.g. --set epochs=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: cannot parse the value: {err}",
                          "quote the value as YAML, e.g. --set 'model_args={depth: 8}'") from None
    return path, value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (dotted keys reach into ``model_args``/``method_args``)."""
    values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for text in overrides:
        path, value = parse_override(text)
        target = values
        for part in path[:-1]:
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {part} is not a mapping",
                                  f"set {part} itself, e.g. --set {part}=VALUE")
            target = nxt
        target[path[-1]] = value
    return values


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    import yaml
    p = Path(path)
    if p.is_dir():
        inside = p / "config.yaml"
        fix = (f"pass the run's config file: --config {inside}" if inside.is_file() else
               "pass a YAML file (the paper's recipes are in configs/paper/, runnable-here versions in "
               "configs/offline/)")
        raise ConfigError(f"{str(p)!r} is a folder, not a config file", fix)
    if not p.is_file():
        raise ConfigNotFoundError(f"config file {str(p)!r} not found",
                                  "check the path (the paper's recipes are in configs/paper/, runnable-here "
                                  "versions in configs/offline/)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}", "fix the YAML syntax at the line named") from None
    except (UnicodeDecodeError, OSError) as err:
        raise ConfigError(f"{p}: cannot be read as text ({err})", "pass a YAML config file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a mapping of keys to values, got {type(data).__name__}",
                          "write it as `key: value` lines (see configs/offline/digits_lstsd.yaml)")
    return data


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults ← ``base`` ← YAML file ← ``overrides``, validated."""
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        values.update(read_yaml(path))
    return TrainConfig.from_dict(apply_overrides(values, overrides or []))
