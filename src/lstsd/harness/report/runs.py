"""Which runs a report reads: run folders, comparison folders and glob patterns, in any mix.

What is not a finished run is skipped with a note (a ``plots/`` folder, a stray file, an
unfinished run: the note says how to finish it, with absolute paths so the command works from any
folder), and so is a finished run whose files cannot be read (a corrupt ``results.json``: the note
names the file and how to write it again). A folder given twice counts once. Reading one run is
:func:`lstsd.harness.rundir.read_run`.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import ReportError
from ..rundir import CHECKPOINT, CONFIG, RESULTS, RunRecord, absolute, epochs_done, is_run_dir, read_run, resume_hint
from .grouping import group_runs

__all__ = ["collect", "find_runs"]

_GLOB_CHARS = re.compile(r"[*?\[]")


def find_runs(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[str]]:
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
        (['lstsd-seed0'], ['given more than once: counted once', 'not a run (...) nor a folder of runs: skipped'])
    """
    runs: list[Path] = []
    notes: list[str] = []
    seen: set[str] = set()

    def add(run: Path) -> None:
        key = os.path.realpath(run)   # the same folder under two names counts once
        if key in seen:
            notes.append(f"{absolute(run)}: given more than once: counted once")
            return
        seen.add(key)
        if (run / RESULTS).is_file():
            runs.append(run)
        else:
            notes.append(f"{absolute(run)}: an unfinished run ({epochs_done(run)}): skipped — {resume_hint(run)}")

    def visit(path: Path) -> None:
        if path.is_file():
            if path.name in (RESULTS, CONFIG):
                visit(path.parent)
            else:
                notes.append(f"{absolute(path)}: a file, not a run folder: skipped")
        elif is_run_dir(path):
            add(path)
        elif path.is_dir():
            children = [c for c in sorted(path.iterdir()) if is_run_dir(c)]
            if children:
                for child in children:
                    add(child)
            else:
                notes.append(f"{absolute(path)}: not a run (no {RESULTS}, {CONFIG} or {CHECKPOINT}) nor a folder "
                             "of runs: skipped")
        else:
            notes.append(f"{absolute(path)}: does not exist: skipped")

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


def collect(run_dirs: Sequence[str | os.PathLike], notes: list[str] | None = None,
            unreadable: list[ReportError] | None = None) -> list[RunRecord]:
    """Read finished runs and group them (:func:`~lstsd.harness.report.group_runs`); what was set aside
    is appended to ``notes``: runs whose files cannot be read (each error also to ``unreadable``)
    and runs counted once.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     run = Path(tmp, "run"); run.mkdir(); _ = (run / "results.json").write_text('{"method": ')
        ...     notes = []
        ...     records = collect([run], notes)
        >>> records, notes[0].endswith("not valid JSON (Expecting value at line 1 column 12): skipped — run it again")
        ([], True)
    """
    records: list[RunRecord] = []
    for run_dir in run_dirs:
        try:
            records.append(read_run(run_dir))
        except ReportError as err:   # one broken run does not stop the report of the others
            if unreadable is not None:
                unreadable.append(err)
            if notes is not None:
                notes.append(f"{err.what}: skipped" + (f" — {err.fix}" if err.fix else ""))
    kept, grouping_notes = group_runs(records)
    if notes is not None:
        notes.extend(grouping_notes)
    return kept
