"""A run folder's layout and its one reader (lstsd.harness.rundir, issue 24)."""

from __future__ import annotations

import pytest

from lstsd.harness import cli, report, rundir, trainer
from lstsd.harness.errors import ReportError
from test_faults_report import fake_run


def test_every_module_takes_the_layout_from_rundir():
    for module in (trainer, cli, report):
        assert (module.CONFIG, module.METRICS, module.CHECKPOINT, module.RESULTS) == \
            ("config.yaml", "metrics.jsonl", "checkpoint.pt", "results.json")
        assert module.RESULTS is rundir.RESULTS
    assert report.read_run is rundir.read_run and report.RunRecord is rundir.RunRecord
    assert not hasattr(trainer, "iterate_runs")


def test_read_run_reads_what_the_trainer_leaves(tmp_path):
    run = fake_run(tmp_path / "run", seed=3, acc=77.0)
    assert rundir.is_run_dir(run) and rundir.is_finished(run)
    record = rundir.read_run(run)
    assert (record.method, record.seed, record.final, record.metrics) == ("lstsd", 3, {"test_accuracy": 77.0},
                                                                          ["accuracy"])
    assert len(record.rows) == 2 and record.rows[-1]["weight_long"] == 2.4 and record.config["seed"] == 3


def test_an_unfinished_run_says_how_to_finish_it(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run", finished=False)
    monkeypatch.chdir(tmp_path)
    assert rundir.is_run_dir("run") and not rundir.is_finished("run")
    assert rundir.epochs_done(run) == "1/2 epochs done"
    assert rundir.resume_hint("run") == f"finish it with: lstsd train --config {run / 'config.yaml'} --resume"
    with pytest.raises(ReportError, match=r"has no results.json: it is not a finished run .* --resume"):
        rundir.read_run("run")


@pytest.mark.parametrize("name,text,problem", [("metrics.jsonl", '{"epoch": 0}\n{"epo', "line 2 is not valid JSON"),
                                               ("config.yaml", "seed: [1,", "is not valid YAML"),
                                               ("results.json", "{}", "lacks method, model")])
def test_a_corrupt_file_is_named(tmp_path, name, text, problem):
    run = fake_run(tmp_path / "run")
    (run / name).write_text(text)
    with pytest.raises(ReportError, match=problem) as err:
        rundir.read_run(run)
    assert str(run / name) in str(err.value)
