"""Tables and plots from finished runs, in the paper's layouts.

Which runs (:func:`find_runs`, :mod:`.runs`): run folders, comparison folders (a folder of run
folders, such as ``runs/compare-quick``) and glob patterns, in any mix. What is not a finished run
is skipped with a note (a ``plots/`` folder, a stray file, an unfinished run: the note says how to
finish it, with absolute paths so the command works from any folder). A folder given twice counts
once. A run folder's layout and its reader are :mod:`lstsd.harness.rundir`.

Which runs are averaged (:func:`group_runs`, :mod:`.grouping`): only runs whose settings are the
same except the seed. Settings are read from each run's ``config.yaml``; the keys that never change
a result (:data:`IGNORED_KEYS`: :data:`~lstsd.harness.config.RESUMABLE_CHANGES`, ``seed``,
``name``) are left out, and ``method_args`` are compared with the method's defaults filled in. Runs
of one method whose settings differ get rows of their own, labelled by what differs, e.g.
``lstsd (lr=0.05)``. Two runs with the same settings *and* seed count once.

Table layouts (:data:`LAYOUTS`, :mod:`.tables`), named by what they show:

* ``methods_by_network`` (paper Table 1, one data set): rows = methods, columns = networks.
* ``network_methods_by_dataset`` (paper Table 2; text data sets, or several data sets): rows =
  network × method, columns = data sets.

When the methods are LSTSD and its variants only (:func:`variants_vs_lstsd`, paper Table 3),
each cell adds its difference to full LSTSD in parentheses.

Every cell is ``mean ± std`` over seeds (sample std, n − 1) and the table says n: in the caption
when every cell has the same n, in each cell otherwise. A cell of one seed (n = 1) shows the value
alone: there is no spread to show.

Plots (:func:`write_plots`, :mod:`.plots`). Epochs: plots and messages count from 1 (``epoch 1/12``
is the first); the ``epoch`` key of ``metrics.jsonl`` counts from 0, so its row ``"epoch": 0`` is
plotted at epoch 1.
"""

from __future__ import annotations

from ..errors import ReportError
from ..rundir import CHECKPOINT, CONFIG, METRICS, RESULTS, RUN_FILES, RunRecord, read_run, resume_hint
from .grouping import IGNORED_KEYS, differing_settings, group_runs, matching_row, run_settings
from .plots import logged_weights, write_plots, write_teacher_plot
from .runs import collect, find_runs
from .tables import (
    LAYOUTS,
    choose_layout,
    cost_table,
    epoch_tables,
    paired_table,
    results_table,
    teacher_names,
    teacher_table,
    variants_vs_lstsd,
)

__all__ = ["CHECKPOINT", "CONFIG", "IGNORED_KEYS", "LAYOUTS", "METRICS", "RESULTS", "RUN_FILES", "ReportError",
           "RunRecord", "choose_layout", "collect", "cost_table", "differing_settings", "epoch_tables", "find_runs",
           "group_runs",
           "logged_weights", "matching_row", "paired_table", "read_run", "results_table", "resume_hint",
           "run_settings", "teacher_names", "teacher_table", "variants_vs_lstsd", "write_plots",
           "write_teacher_plot"]
