"""The report's plots (issue 24): each data set's own headline metric, and the loss parts weighted
with the weights the trainer logged (``weight_<part>`` in metrics.jsonl)."""

from __future__ import annotations

import json

import pytest
import yaml

from lstsd.harness import report
from lstsd.harness.config import load_config
from lstsd.harness.trainer import Trainer
from test_faults_report import TINY, fake_run


@pytest.fixture
def drawn(monkeypatch):
    """What each saved plot drew: ``{file name: (title, ylabel, {line label: y values})}``."""
    seen: dict[str, tuple[str, str, dict[str, list[float]]]] = {}
    real_save = report.plots._save

    def spy(fig, ax, path):
        seen[path.name] = (ax.get_title(), ax.get_ylabel(),
                           {line.get_label(): [float(y) for y in line.get_ydata()] for line in ax.get_lines()})
        return real_save(fig, ax, path)
    monkeypatch.setattr(report.plots, "_save", spy)
    return seen


def _only(seen: dict, prefix: str) -> tuple[str, str, dict[str, list[float]]]:
    names = [name for name in seen if name.startswith(prefix)]
    assert len(names) == 1, (prefix, sorted(seen))
    return seen[names[0]]


@pytest.mark.parametrize("first", ["digits", "glue_cola"])
def test_each_data_set_is_plotted_with_its_own_headline_metric(tmp_path, drawn, first):
    """glue_cola reports Matthews correlation, digits accuracy: both plots have their runs drawn,
    whichever comes first (the plot used to take the first run's metric for every data set)."""
    runs = {"digits": fake_run(tmp_path / "digits", acc=80.0),
            "glue_cola": fake_run(tmp_path / "cola", acc=30.0, dataset="glue_cola", metric="matthews")}
    order = [runs[first]] + [run for name, run in runs.items() if name != first]
    report.write_plots(report.collect(order), tmp_path / "plots")
    for dataset, metric, last in (("digits", "accuracy", 80.0), ("glue_cola", "matthews", 30.0)):
        title, ylabel, lines = _only(drawn, f"accuracy_{dataset}_")
        assert title.endswith(f"test {metric}") and ylabel.startswith(f"test {metric}")
        assert list(lines) == ["lstsd (n=1)"] and lines["lstsd (n=1)"][-1] == last


def test_loss_parts_are_weighted_with_the_logged_weights(tmp_path, drawn):
    """Weights read from the rows; a weight that changes over the epochs is λ(e), and each epoch's
    part is drawn times that epoch's own weight, so the parts add up to the total."""
    run = fake_run(tmp_path / "lstsd", epochs=4)
    record = report.read_run(run)
    ramp = [0.0, 0.5, 1.0, 1.0]                # like rampup_epochs: the KL weights grow over the epochs
    for row, scale in zip(record.rows, ramp):
        row.update(weight_long=2.4 * scale, weight_short=4.0 * scale)
        row["loss_total"] = row["loss_ce"] + row["weight_long"] * row["loss_long"] + \
            row["weight_short"] * row["loss_short"]
    assert report.logged_weights([record], ["ce", "long", "short"]) == {"ce": 1.0, "long": None, "short": None}
    record.label = "lstsd"
    report.write_plots([record], tmp_path / "plots")
    title, _, lines = _only(drawn, "loss_components_lstsd")
    assert "total = ce + λ(e)·KL long + λ(e)·KL short" in title
    assert lines["λ(e) × KL long"] == pytest.approx([2.4 * s * r["loss_long"] for s, r in zip(ramp, record.rows)])
    weighted = [sum(values) for values in zip(lines["ce"], lines["λ(e) × KL long"], lines["λ(e) × KL short"])]
    assert weighted == pytest.approx(lines["total"])
    assert lines["KL long (unweighted)"] == pytest.approx([r["loss_long"] for r in record.rows])


def test_runs_without_logged_weights_draw_the_parts_unweighted(tmp_path, drawn):
    """A run folder written before the weights were logged: the parts as logged, and the title says so."""
    runs = [fake_run(tmp_path / "old", weights=False)]
    report.write_plots(report.collect(runs), tmp_path / "plots")
    title, _, lines = _only(drawn, "loss_components_lstsd")
    assert "their weights are not known here" in title
    assert {"ce", "KL long", "KL short", "total"} == set(lines)


@pytest.mark.slow
def test_a_rampup_run_logs_its_weights_and_its_plot_decomposes(tmp_path, drawn):
    """A real LSTSD run with rampup_epochs: the trainer logs each epoch's weights (0 in the first
    mini-generation, then ramping up), Σ weight × part is the logged total, and so is the plot's."""
    cfg = load_config(None, [], base=dict(TINY, epochs=4, method_args={"generation_epochs": 1, "rampup_epochs": 2},
                                          run_dir=str(tmp_path / "run")))
    Trainer(cfg, log=None).fit()
    record = report.read_run(tmp_path / "run")
    scales = [row["weight_long"] / 2.4 for row in record.rows]
    assert scales[0] == 0.0 and 0 < scales[1] < scales[2] < scales[3] == pytest.approx(1.0)
    assert all(row["weight_ce"] == 1.0 and row["weight_short"] == pytest.approx(4.0 * s)
               for row, s in zip(record.rows, scales))
    for row in record.rows:
        parts = sum(row[f"weight_{p}"] * row[f"loss_{p}"] for p in ("ce", "long", "short"))
        assert parts == pytest.approx(row["loss_total"], rel=1e-4)
    report.write_plots(report.collect([tmp_path / "run"]), tmp_path / "plots")
    _, _, lines = _only(drawn, "loss_components_lstsd")
    weighted = [sum(values) for values in zip(lines["ce"], lines["λ(e) × KL long"], lines["λ(e) × KL short"])]
    assert weighted == pytest.approx(lines["total"], rel=1e-4)


def test_runs_of_an_unknown_method_compare_what_was_written(tmp_path):
    """A run of a method this version does not know (an old run): its settings are compared as written."""
    runs = [fake_run(tmp_path / "a", seed=0, acc=90.0), fake_run(tmp_path / "b", seed=1, acc=92.0)]
    for run in runs:
        config = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump(dict(config, method="retired_method")))
        results = json.loads((run / "results.json").read_text())
        (run / "results.json").write_text(json.dumps(dict(results, method="retired_method")))
    records = report.collect(runs)
    assert [r.row for r in records] == ["retired_method", "retired_method"]
    assert report.run_settings(records[0])["method_args.generation_epochs"] == 1


def test_rows_of_a_preset_s_named_arms_are_labelled_by_the_arm(tmp_path):
    # lm-study's runs are <arm>-seed<N>: a row reads lstsd-quarter, not lstsd's seven differing settings.
    from lstsd.harness import cli
    quarter = {"generation_epochs": 1, "lambda_long": 0.6, "lambda_short": 1.0}
    for seed in (0, 1):
        fake_run(tmp_path / f"vanilla-seed{seed}", "vanilla", seed, acc=80.0 + seed)
        fake_run(tmp_path / f"lstsd-seed{seed}", "lstsd", seed, acc=82.0 + seed)
        fake_run(tmp_path / f"lstsd-quarter-seed{seed}", "lstsd", seed, acc=84.0 + seed, method_args=quarter)
    out = cli.report([str(tmp_path)], out_dir=str(tmp_path / "plots"), note=lambda _: None, against="vanilla")
    assert "| lstsd-quarter | 84.50 ± 0.71 |" in out and "| lstsd | 82.50 ± 0.71 |" in out
    assert "  lstsd-quarter = lstsd (lambda_long=0.6, lambda_short=1.0)" in out   # the legend
    assert "  lstsd = lstsd (lambda_long=2.4, lambda_short=4.0)" in out
    records = report.collect([tmp_path / "lstsd-seed0", tmp_path / "lstsd-quarter-seed0"])
    for spec in ("lstsd-quarter", "lambda_long=0.6", "lambda_short=1.0"):   # the arm, or its settings
        assert report.matching_row(records, spec) == "lstsd-quarter"
    # One arm of a method alone (with vanilla) is named too: it says which LSTSD it is.
    alone = cli.report([str(tmp_path / f"{arm}-seed{seed}") for arm in ("vanilla", "lstsd-quarter") for seed in (0, 1)],
                       out_dir=str(tmp_path / "plots"), note=lambda _: None)
    assert "| lstsd-quarter | 84.50 ± 0.71 |" in alone and "  lstsd-quarter = lstsd\n" in alone
    # A name that is already another row's stays with that row: label smoothing run as "vanilla-seed3"
    # keeps its method's name.
    fake_run(tmp_path / "other" / "vanilla-seed3", "label_smoothing", 3, acc=81.0)
    mixed = report.collect([tmp_path / "vanilla-seed0", tmp_path / "other" / "vanilla-seed3"])
    assert [r.row for r in mixed] == ["vanilla", "label_smoothing"]
    # A row whose runs were made for two arms has no one name: the method's rows keep their settings.
    fake_run(tmp_path / "quarter-again-seed2", "lstsd", 2, acc=85.0, method_args=quarter)
    rows = {r.row for r in report.collect(sorted(tmp_path.glob("*-seed*")))}
    assert rows == {"vanilla", "lstsd (lambda_long=2.4, lambda_short=4.0)", "lstsd (lambda_long=0.6, lambda_short=1.0)"}


def test_methods_with_their_own_settings_make_no_note_that_rows_differ():
    # vanilla has no settings of its own (resolved to {}), LSTSD has many: that is the methods
    # differing, not the runs; only a setting outside method_args is worth the caption's note.
    from pathlib import Path

    from lstsd.harness.report.grouping import differences_between_rows
    from lstsd.harness.rundir import RunRecord
    base = {"dataset": "digits", "model": "mlp", "lr": 0.1}
    runs = [RunRecord(Path("a"), "vanilla", "mlp", "digits", 0, {}, [], {}, config={**base, "method": "vanilla"}),
            RunRecord(Path("b"), "lstsd", "mlp", "digits", 0, {}, [], {},
                      config={**base, "method": "lstsd", "method_args": {"generation_epochs": 2}})]
    assert differences_between_rows(runs) == []
    runs[1].config["lr"] = 0.05
    assert differences_between_rows(runs) == ["lr"]


def test_runs_evaluated_before_training_get_per_epoch_best_epoch_and_probe_tables():
    from pathlib import Path

    from lstsd.harness.report.tables import epoch_tables
    from lstsd.harness.rundir import RunRecord

    def run(method: str, seed: int, losses: list[float], probes: list[float]) -> RunRecord:
        rows = [{"epoch": e, "test_loss": loss, "probe_loss": probe}
                for e, (loss, probe) in enumerate(zip(losses, probes))]
        return RunRecord(Path("."), method, "lm", "words", seed, {"test_loss": losses[-1], "probe_loss": probes[-1]},
                         rows, {}, metrics=["loss"], before={"test_loss": 4.5, "probe_loss": 4.8})
    runs = [run("vanilla", 0, [2.8, 2.9, 3.1], [4.6, 4.7, 4.9]), run("vanilla", 1, [2.7, 3.0, 3.2], [4.6, 4.8, 5.0]),
            run("lstsd", 0, [2.8, 2.7, 2.9], [4.6, 4.6, 4.7]), run("lstsd", 1, [2.7, 2.75, 3.0], [4.6, 4.7, 4.8])]
    curve, probe, at_best, probe_paired = epoch_tables(runs, against="vanilla")
    assert "| lm | vanilla | 4.500 | **2.750** | 2.950 | 3.150 | 2.750 (1, 1) |" in curve
    assert "| lm | lstsd | 4.500 | 2.750 | **2.725** | 2.950 | 2.700 (2, 1) |" in curve
    assert "| lm | lstsd | 4.800 | 4.600 | 4.650 | 4.750 |" in probe and "best" not in probe.splitlines()[2]
    assert at_best.startswith("At each run's best epoch") and "| lm | lstsd | -0.050 ± 0.071 | 1 / 1 / 0 |" in at_best
    assert probe_paired.startswith("The forgetting probe at the final epoch")
    assert "| lm | lstsd | -0.200 ± 0.000 | 2 / 0 / 0 |" in probe_paired
    assert epoch_tables([RunRecord(Path("."), "vanilla", "resnet", "digits", 0, {"test_accuracy": 90.0},
                                   [{"epoch": 0, "test_accuracy": 90.0}], {})]) == []


def test_a_language_model_run_s_settings_are_resolved_per_token():
    # The harness builds a causal LM's method with per_token=True: its settings (bank_format=sampled,
    # per-token only) resolve as such, and two arms differ only in what sets them apart.
    from pathlib import Path

    from lstsd.harness.report.grouping import differing_settings, run_settings
    from lstsd.harness.rundir import RunRecord

    def record(method_args: dict) -> RunRecord:
        return RunRecord(Path("."), "lstsd", "smollm2-135m", "wordnet_definitions", 0, {}, [], {},
                         config={"dataset": "wordnet_definitions", "model": "smollm2-135m", "method": "lstsd",
                                 "method_args": method_args})
    sampled = run_settings(record({"generation_epochs": 1, "bank_format": "sampled"}))
    topk = run_settings(record({"generation_epochs": 1, "bank_format": "topk", "bank_topk": 8}))
    assert sampled["method_args.per_token"] is True and sampled["method_args.bank_samples"] == 16
    assert differing_settings([sampled, topk]) == ["method_args.bank_format", "method_args.bank_samples",
                                                   "method_args.bank_topk"]
