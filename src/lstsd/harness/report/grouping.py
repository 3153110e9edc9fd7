"""Which runs are averaged, and how a row is named.

Only runs whose settings are the same except the seed are averaged (:func:`group_runs`). Settings
are read from each run's ``config.yaml``; the keys that never change a result
(:data:`IGNORED_KEYS`: :data:`~lstsd.harness.config.RESUMABLE_CHANGES`, ``seed``, ``name``) are
left out, and ``method_args`` are compared with the method's defaults filled in. Runs of one method
whose settings differ get rows of their own, labelled by what differs, e.g. ``lstsd (lr=0.05)``.
Two runs with the same settings *and* seed count once. Where a preset named its arms (``lm-study``'s
``lstsd-quarter``: run folders ``<arm>-seed<N>``), those rows are labelled by the arm's name instead
and :attr:`~lstsd.harness.rundir.RunRecord.arm_settings` keeps what sets it apart (:func:`name_arms`).
:func:`matching_row` finds the row that a ``--against`` spec names.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path  # noqa: F401 - the examples build RunRecords
from typing import Any

from ...methods import method_class, resolved_settings
from ..config import RESUMABLE_CHANGES, TrainConfig
from ..errors import ReportError
from ..registry import dataset_entry
from ..rundir import RunRecord, absolute, point_label

__all__ = ["IGNORED_KEYS", "differing_settings", "group_runs", "matching_row", "name_arms", "run_settings"]

# Config keys that never change a run's result, so runs that differ only there are averaged together.
IGNORED_KEYS = frozenset(RESUMABLE_CHANGES | {"seed", "name"})
# What places a run in the table (its column and its row's method), so never part of a row's label.
_PLACE_KEYS = ("dataset", "model", "method")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; an empty dict adds no key (it sets nothing: a method
    without settings, vanilla, is not told apart from the others by an empty ``method_args``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {}


def _full_method_args(method: str, args: dict[str, Any], *, sequences: bool = False) -> dict[str, Any]:
    """``args`` with the method's defaults filled in (so ``{}`` and the defaults written out compare equal);
    ``sequences``: a causal LM's run, whose method the harness built per token (``per_token=True``)."""
    key = method + json.dumps(args, sort_keys=True, default=str) + str(sequences)
    if key not in _METHOD_DEFAULTS:
        try:
            per_token = {"per_token": True} if sequences and method_class(method).takes_per_token else {}
            _METHOD_DEFAULTS[key] = dict(resolved_settings(method, {**per_token, **args}))
        except ValueError:   # an old run's method that is gone or changed: compare what was written
            _METHOD_DEFAULTS[key] = dict(args)
    return _METHOD_DEFAULTS[key]


def _is_generation(dataset: str) -> bool:
    """Whether ``dataset`` is a text-generation data set (a causal LM's: methods built per token)."""
    try:
        return dataset_entry(dataset).kind == "text_generation"
    except ValueError:   # a data set no longer registered
        return False


def run_settings(record: RunRecord) -> dict[str, Any]:
    """The settings that define a run's result, flattened (``method_args.lambda_long``), seed left out.

    Keys a config lacks (written by an older version) take today's defaults; the data's checksum
    (``results.json``'s ``data_source``) counts as a setting, ``data.sha256`` (``None`` when the run
    did not record one: such runs are not told apart from the others by it).
    """
    config = {**TrainConfig().to_dict(), **record.config} if record.config else {}
    if config:
        config["method_args"] = _full_method_args(config.get("method", record.method),
                                                  dict(config.get("method_args") or {}),
                                                  sequences=_is_generation(str(config.get("dataset"))))
    flat = {k: v for k, v in _flatten(config).items() if k.split(".")[0] not in IGNORED_KEYS}
    flat["data.sha256"] = record.data_source.get("sha256")
    return flat


def differing_settings(members: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    """The keys whose values differ among ``members`` (each :func:`run_settings` of a run), sorted.

    What places a run in a table (data set, model, method) and the model's settings (part of the
    column's name) never count, nor keys starting with a prefix in ``skip``. A run that did not
    record its data's checksum is not told apart by it.

    Example:
        >>> differing_settings([{"lr": 0.1, "data.sha256": None, "method_args.t": 2},
        ...                     {"lr": 0.05, "data.sha256": "ab", "method_args.t": 1}])
        ['lr', 'method_args.t']
        >>> differing_settings([{"lr": 0.1, "method_args.t": 2}, {"lr": 0.1, "method_args.t": 1}],
        ...                    skip=("method_args.",))
        []
    """
    keys: list[str] = []
    for k in sorted(set().union(*members)) if members else ():
        if k.split(".")[0] in _PLACE_KEYS or k.startswith(("model_args.", *skip)):
            continue
        values = {json.dumps(m.get(k), sort_keys=True, default=str) for m in members}
        if k == "data.sha256":
            values.discard("null")
        if len(values) > 1:
            keys.append(k)
    return keys


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

    Runs of one method whose settings differ are labelled by the settings that differ
    (:func:`differing_settings`), so they are never averaged together: within one column, and across
    columns too (a row spans the columns: ``lstsd`` on one network at 3 epochs and on another at 4
    are ``lstsd (epochs=3)`` and ``lstsd (epochs=4)``, not one row). Across data sets their data's
    checksum is not a difference (each data set has its own).

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
    by_method: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)          # method -> its distinct settings
    by_method_dataset: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for (dataset, _, method), by_settings in arms.items():
        label_keys[method].update(differing_settings([settings[ids[0]] for ids in by_settings.values()]))
        for key, ids in by_settings.items():
            by_method[method][key] = by_method_dataset[(method, dataset)][key] = settings[ids[0]]
    for method, members in by_method.items():        # across the columns a row spans
        label_keys[method].update(differing_settings(list(members.values()), skip=("data.sha256",)))
    for (method, _), members in by_method_dataset.items():
        label_keys[method].update(differing_settings(list(members.values())))
    kept: list[RunRecord] = []
    notes: list[str] = []
    first_of: dict[tuple[Any, ...], RunRecord] = {}
    for r, s in zip(records, settings):
        keys = sorted(label_keys.get(r.method, ()))
        r.label = (f"{r.method} (" + ", ".join(f"{_short(k)}={_show(s.get(k), k)}" for k in keys) + ")") if keys \
            else r.method
        identity = (r.dataset, r.model, r.method, json.dumps(s, sort_keys=True, default=str), r.seed)
        if identity in first_of:
            notes.append(f"{absolute(r.run_dir)}: same settings and seed ({r.seed}) as "
                         f"{absolute(first_of[identity].run_dir)}: counted once")
            continue
        first_of[identity] = r
        kept.append(r)
    name_arms(kept, dict(zip(map(id, records), settings)), label_keys)
    return kept, notes


def _arm_name(record: RunRecord) -> str | None:
    """The arm a run was made for: its ``name`` less ``-seed<N>`` (``lstsd-quarter-seed1`` → ``lstsd-quarter``)."""
    name = record.config.get("name") if record.config else None
    suffix = f"-seed{record.seed}"
    return name[:-len(suffix)] if isinstance(name, str) and name.endswith(suffix) and name != suffix else None


def name_arms(records: list[RunRecord], settings: dict[int, dict[str, Any]], label_keys: dict[str, set[str]]) -> None:
    """Label a method's rows by their arms' names where a preset named them, in place.

    A method's rows take their arm's name (``lstsd-quarter`` instead of ``lstsd (bank_format=sampled,
    …, lambda_long=0.6, …)``; ``lstsd-topk`` for the one LSTSD row of a report of it and vanilla)
    when every run of a row was made for one arm, the rows' arms are all different, no arm's name
    spells its settings (a sweep names its runs by their grid point, ``lstsd-lambda_long0.0``: those
    keep the settings, which say the same more plainly), and no other row has that name. The
    settings go to each run's ``arm_settings``, for the tables' legend. ``settings`` maps
    ``id(record)`` to its :func:`run_settings`; ``label_keys`` are the settings each method's labels show.

    Example:
        >>> def run(arm, lam, seed):
        ...     config = {"dataset": "d", "model": "m", "method": "lstsd", "name": f"{arm}-seed{seed}",
        ...               "method_args": {"lambda_long": lam}}
        ...     return RunRecord(Path("."), "lstsd", "m", "d", seed, {}, [], {}, config=config)
        >>> rows, _ = group_runs([run("lstsd", 2.4, 0), run("lstsd-quarter", 0.6, 0), run("lstsd-quarter", 0.6, 1)])
        >>> [(r.row, r.arm_settings) for r in rows][1:]
        [('lstsd-quarter', 'lambda_long=0.6'), ('lstsd-quarter', 'lambda_long=0.6')]
        >>> [r.row for r in group_runs([run("lstsd-quarter", 0.6, 0), run("lstsd-quarter", 0.6, 1)])[0]]
        ['lstsd-quarter', 'lstsd-quarter']
        >>> [r.row for r in group_runs([run("lstsd-lambda_long2.4", 2.4, 0), run("lstsd-lambda_long0.6", 0.6, 0)])[0]]
        ['lstsd (lambda_long=2.4)', 'lstsd (lambda_long=0.6)']
    """
    by_method: dict[str, dict[str, set[str | None]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        by_method[r.method][r.row].add(_arm_name(r))
    named: dict[str, dict[str, str]] = {}        # method -> its rows' new names
    for method, arms_of_row in by_method.items():
        arms = [next(iter(names)) for names in arms_of_row.values() if len(names) == 1]
        if len(arms) != len(arms_of_row) or None in arms or len(set(arms)) != len(arms) or arms == [method]:
            continue
        keys = sorted(label_keys.get(method, ()))
        if any(point_label(((k, settings[id(r)].get(k)),)) in str(_arm_name(r))
               for r in records if r.method == method for k in keys):
            continue
        named[method] = {row: str(next(iter(names))) for row, names in arms_of_row.items()}
    kept_rows = {r.row for r in records if r.method not in named}
    proposed = [name for rows in named.values() for name in rows.values()]
    for r in records:
        rows = named.get(r.method)
        if rows and len(set(proposed)) == len(proposed) and not kept_rows & set(proposed):
            r.arm_settings = r.row.removeprefix(f"{r.method} (").removesuffix(")") if r.row != r.method else ""
            r.label = r.arm = rows[r.row]


def differences_between_rows(records: list[RunRecord]) -> list[str]:
    """Settings other than the method's own that differ between rows of one column (worth a caption note)."""
    by_column: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.config:
            by_column[(r.dataset, r.model)].append(run_settings(r))
    keys: set[str] = set()
    for members in by_column.values():
        keys.update(differing_settings(members, skip=("method_args.",)))
    return sorted(keys)


# ----------------------------------------------------------------------------- naming a row
def _same_value(shown: str, wanted: str) -> bool:
    """``wanted`` (as typed after ``key=``) names the value ``shown``: equal text, or equal numbers
    (``0`` = ``0.0``)."""
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
    shown = record.arm_settings if record.arm else record.row.removeprefix(record.method).strip(" ()")
    label_parts = shown.split(", ")
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
