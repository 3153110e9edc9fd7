"""Trustworthy runs and reports (issue 11): no silent wrong results, no tracebacks for foreseeable faults.

* ``lstsd report`` averages only runs with the same settings, counts every run once, says n, and
  reads comparison folders, run folders and globs (the README's command included);
* configs name their data set, model and method; ``train`` prints what it will run;
* ``compare`` checks every run before the first trains, and warns when distillation never starts;
* a data folder named explicitly is the only place data is taken from, and the splits say where
  the data came from;
* every foreseeable fault ends with ``lstsd <command>: error: <what> — <what to do>`` (exit 2;
  130 after Ctrl-C), the traceback only with ``--debug``.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import shlex
import urllib.error
from pathlib import Path

import pytest
import yaml

from lstsd.harness import cli, report
from lstsd.harness.config import TrainConfig, load_config
from lstsd.harness.data import fashion_mnist, load_dataset, splits
from lstsd.harness.errors import DivergedError, HarnessError, RunError

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="digits", train_subset=200, model="resnet", model_args={"depth": 8, "width": 4},
            method="lstsd", method_args={"generation_epochs": 1}, epochs=2, batch_size=50,
            eval_batch_size=500, progress="none", augment=False)


def write_config(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump(dict(TINY, **changes)))
    return path


def one_error_line(err: str, command: str) -> str:
    """The error line of a CLI call: exactly one, of the form ``lstsd <command>: error: <what> — <what to do>``."""
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lstsd {command}: error: ") and " — " in lines[0], lines[0]
    assert "Traceback" not in err, err
    return lines[0]


def main_without_escape(argv: list[str]) -> int:
    """``cli.main``, failing the test (instead of stopping pytest) if a Ctrl-C escapes it."""
    try:
        return cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped the CLI (a traceback, no resume command)")


# ----------------------------------------------------------------------------- fake finished runs
def fake_run(folder: Path, method: str = "lstsd", seed: int = 0, acc: float = 90.0, finished: bool = True,
             data_sha256: str | None = None, weights: bool = True, metric: str = "accuracy", **config) -> Path:
    """A run folder as the trainer leaves it (no training): config.yaml, metrics.jsonl, checkpoint, results.

    ``weights=False`` leaves out the loss parts' weights (``weight_<part>``), as older versions did;
    ``metric`` is the data set's headline metric (``matthews`` for glue_cola).
    """
    values = dict(TINY, method=method, seed=seed, name=folder.name, run_dir=str(folder), **config)
    if method != "lstsd" and "method_args" not in config:
        values["method_args"] = {}
    cfg = TrainConfig.from_dict(values)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    rows = [{"epoch": e, "lr": cfg.lr, "train_seconds": 1.0, "train_accuracy": 50.0, "loss_ce": 1.0 - 0.1 * e,
             "loss_long": 0.1 * e, "loss_short": 0.05 * e, f"test_{metric}": acc - (cfg.epochs - 1 - e)}
            for e in range(cfg.epochs)]
    lam = {"lstsd": (2.4, 4.0)}.get(method)
    for row in rows:
        if lam:
            row["loss_total"] = row["loss_ce"] + lam[0] * row["loss_long"] + lam[1] * row["loss_short"]
            if weights:
                row.update(weight_ce=1.0, weight_long=lam[0], weight_short=lam[1])
        else:
            del row["loss_long"], row["loss_short"]
            row["loss_total"] = row["loss_ce"]
            if weights:
                row["weight_ce"] = 1.0
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:None if finished else 1]))
    (folder / "checkpoint.pt").write_bytes(b"not read by report")
    if finished:
        results = {"name": cfg.name, "method": method, "model": "resnet(depth=8,width=4)", "dataset": cfg.dataset,
                   "seed": seed, "epochs": cfg.epochs, "num_train": 200, "metrics": [metric],
                   "final": {f"test_{metric}": acc}, "cost": {"train_seconds": 2.0, "seconds_per_step": 0.01,
                                                             "extra_forward_passes": 0}}
        if data_sha256:
            results["data_source"] = {"dataset": cfg.dataset, "origin": "--data-dir", "path": "/d",
                                      "sha256": data_sha256}
        (folder / "results.json").write_text(json.dumps(results))
    return folder


def run_report(capsys, paths: list, out: Path) -> tuple[str, str]:
    """``lstsd report PATHS --out OUT``: its stdout and stderr (the call must succeed)."""
    code = cli.main(["report", *map(str, paths), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out, captured.err


def table_rows(text: str) -> dict[str, str]:
    """``{row label: first cell}`` of the results table (the first table in ``text``)."""
    table = text.split("\n\n")[1]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return {c[0]: c[1] for c in cells}


# ----------------------------------------------------------------------------- 1. report groups by settings
def test_report_never_averages_runs_with_other_settings(tmp_path, capsys):
    runs = [fake_run(tmp_path / "a0", seed=0, acc=90.0), fake_run(tmp_path / "a1", seed=1, acc=92.0),
            fake_run(tmp_path / "b0", seed=0, acc=50.0, lr=0.05),
            fake_run(tmp_path / "c0", seed=0, acc=70.0, method_args={"generation_epochs": 1, "lambda_long": 1.0}),
            fake_run(tmp_path / "v0", method="vanilla", seed=0, acc=88.0)]
    text, _ = run_report(capsys, runs, tmp_path / "plots")
    rows = table_rows(text)
    # lstsd's three settings are three rows, each labelled by what differs; nothing averaged across them
    assert rows["lstsd (lr=0.1, lambda_long=2.4)"] == "91.00 ± 1.41 (n=2)"
    assert rows["lstsd (lr=0.05, lambda_long=2.4)"] == "50.00 (n=1)"
    assert rows["lstsd (lr=0.1, lambda_long=1.0)"] == "70.00 (n=1)"
    assert rows["vanilla"] == "88.00 (n=1)"
    assert "rows differ in more than the method: lr" in text


def test_settings_that_do_not_change_results_are_ignored(tmp_path, capsys):
    """device, eval_batch_size, run_dir, name... differ between seeds of one setting: still one row."""
    runs = [fake_run(tmp_path / "a0", seed=0, acc=90.0, device="cpu"),
            fake_run(tmp_path / "a1", seed=1, acc=92.0, eval_batch_size=100, progress="bar"),
            # method_args written out at their defaults are the same setting as leaving them out
            fake_run(tmp_path / "a2", seed=2, acc=94.0, method_args={"generation_epochs": 1, "lambda_long": 2.4})]
    text, _ = run_report(capsys, runs, tmp_path / "plots")
    assert table_rows(text) == {"lstsd": "92.00 ± 2.00"} and "n = 3 seeds (0, 1, 2)" in text


def test_runs_on_other_data_are_not_averaged(tmp_path, capsys):
    """The data's checksum (results.json's data_source) is a setting; a run that recorded none is not told
    apart by it from runs on one data set, and is a row of its own beside runs on several."""
    runs = [fake_run(tmp_path / "a0", seed=0, acc=90.0, data_sha256="a" * 64),
            fake_run(tmp_path / "a1", seed=1, acc=92.0, data_sha256="a" * 64),
            fake_run(tmp_path / "old", seed=2, acc=94.0)]
    text, _ = run_report(capsys, runs, tmp_path / "plots")
    assert table_rows(text) == {"lstsd": "92.00 ± 2.00"}
    runs.append(fake_run(tmp_path / "b0", seed=0, acc=40.0, data_sha256="b" * 64))
    text, _ = run_report(capsys, runs, tmp_path / "plots")
    assert table_rows(text) == {f"lstsd (data.sha256={'a' * 12})": "91.00 ± 1.41 (n=2)",
                                "lstsd (data.sha256=unrecorded)": "94.00 (n=1)",
                                f"lstsd (data.sha256={'b' * 12})": "40.00 (n=1)"}


def test_report_counts_every_run_once(tmp_path, capsys):
    run = fake_run(tmp_path / "cmp" / "lstsd-seed0", acc=90.0)
    copy = fake_run(tmp_path / "elsewhere" / "copy-of-seed0", acc=91.0)   # same settings, same seed
    text, err = run_report(capsys, [run, run, tmp_path / "cmp", f"{tmp_path}/cmp/*", copy], tmp_path / "plots")
    notes = [line.removeprefix("lstsd report: note: ") for line in err.splitlines()]
    assert table_rows(text) == {"lstsd": "90.00"}
    assert "n = 1" in text and "± 0.00" not in text
    assert sum("given more than once" in n for n in notes) == 3
    assert any(n.startswith(str(copy)) and "same settings and seed (0)" in n for n in notes)


def test_one_seed_says_n_equals_1_not_plus_minus_zero():
    runs = [report.RunRecord(Path("."), m, "resnet20", "cifar100", 0, {"test_accuracy": a}, [], {})
            for m, a in (("vanilla", 66.0), ("lstsd", 68.0))]
    text = report.results_table(runs)
    assert "n = 1" in text and "| vanilla | 66.00 |" in text and "±" not in text.split("\n\n")[1]


# ----------------------------------------------------------------------------- 6. what report accepts
def test_report_takes_comparison_folders_run_lists_and_globs(tmp_path, capsys):
    cmp = tmp_path / "cmp"
    for method in ("vanilla", "lstsd"):
        for seed in (0, 1):
            fake_run(cmp / f"{method}-seed{seed}", method=method, seed=seed, acc=80.0 + seed)
    (cmp / "plots").mkdir()
    (cmp / "notes.txt").write_text("a stray file")
    tables = []
    shell_expansion = sorted(glob.glob(f"{cmp}/*"))
    for paths in ([str(cmp)], shell_expansion, [f"{cmp}/*"],
                  [str(cmp / n) for n in ("vanilla-seed0", "vanilla-seed1", "lstsd-seed0", "lstsd-seed1")]):
        assert cli.main(["report", *paths, "--out", str(tmp_path / "plots")]) == 0
        captured = capsys.readouterr()
        tables.append(table_rows(captured.out))
        if paths is shell_expansion:   # the non-runs are skipped, each with a note
            assert f"{cmp / 'plots'}: not a run" in captured.err and f"{cmp / 'notes.txt'}: a file" in captured.err
    assert all(t == tables[0] for t in tables) and tables[0] == {"vanilla": "80.50 ± 0.71", "lstsd": "80.50 ± 0.71"}
    # plots go into the comparison folder by default
    assert cli.main(["report", str(cmp)]) == 0
    assert f"{cmp / 'plots'}/accuracy_digits" in capsys.readouterr().out


def test_report_hints_are_right_and_absolute(tmp_path, capsys, monkeypatch):
    fake_run(tmp_path / "cmp" / "lstsd-seed0")
    fake_run(tmp_path / "cmp" / "lstsd-seed1", seed=1, finished=False)          # unfinished, resumable
    (tmp_path / "cmp" / "empty").mkdir()                                         # no config, no checkpoint
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", "cmp/lstsd-seed0", "cmp/lstsd-seed1", "cmp/empty", "--out", "p"]) == 0
    err = capsys.readouterr().err
    config = tmp_path / "cmp" / "lstsd-seed1" / "config.yaml"
    assert f"{tmp_path / 'cmp' / 'lstsd-seed1'}: an unfinished run (1/2 epochs done)" in err
    assert f"lstsd train --config {config} --resume" in err
    empty_note = next(line for line in err.splitlines() if str(tmp_path / "cmp" / "empty") in line)
    assert "resume" not in empty_note and "not a run" in empty_note
    # nothing finished at all: an error that says what a finished run is
    assert cli.main(["report", "cmp/empty"]) == 2
    assert "is not a finished run" in one_error_line(capsys.readouterr().err, "report")


def test_corrupt_results_json_names_the_file(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    (run / "results.json").write_text('{"method": "lstsd", ')
    assert cli.main(["report", str(run)]) == 2
    line = one_error_line(capsys.readouterr().err, "report")
    assert str(run / "results.json") in line and "not valid JSON" in line
    assert f"lstsd train --config {run / 'config.yaml'} --resume" in line
    (run / "results.json").write_text("[1, 2]")
    assert cli.main(["report", str(run)]) == 2
    assert "not an lstsd results file" in one_error_line(capsys.readouterr().err, "report")


@pytest.mark.slow
def test_the_readmes_report_command_on_a_tiny_comparison(tmp_path, capsys, monkeypatch):
    """README: ``lstsd compare ...`` then ``lstsd report runs/compare-quick/*`` (plots/ is in that glob)."""
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"methods": ["vanilla", "lstsd"], "seeds": [0],
                                      "config": {k: v for k, v in TINY.items() if k not in ("method", "method_args")},
                                      "method_args": {"lstsd": {"generation_epochs": 1}}}))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compare", "--preset", str(preset), "--out", "runs/compare-tiny"]) == 0
    compared = capsys.readouterr().out
    assert (tmp_path / "runs" / "compare-tiny" / "plots").is_dir()
    # the shell expands the README's glob, plots/ included
    assert cli.main(["report", *sorted(glob.glob("runs/compare-tiny/*"))]) == 0
    captured = capsys.readouterr()
    assert "plots: not a run" in captured.err and "Traceback" not in captured.err
    assert table_rows(captured.out) == table_rows(compared.split("\n\n", 1)[1])
    assert set(table_rows(captured.out)) == {"vanilla", "lstsd"} and "n = 1" in captured.out
    # the real run logged each loss part's weight, and the parts add up with them (the plot shows them weighted)
    record = report.read_run(tmp_path / "runs" / "compare-tiny" / "lstsd-seed0")
    assert report.logged_weights([record], ["ce", "long", "short"]) == {"ce": 1.0, "long": 2.4, "short": 4.0}
    assert record.rows[1]["loss_long"] > 0
    for row in record.rows:
        parts = sum(row[f"weight_{p}"] * row[f"loss_{p}"] for p in ("ce", "long", "short"))
        assert parts == pytest.approx(row["loss_total"], rel=1e-4)


# ----------------------------------------------------------------------------- plots
def test_plots_integer_epochs_visible_curves_and_weighted_losses(tmp_path, monkeypatch):
    seen = []
    real_save = report.plots._save

    def spy(fig, ax, path):
        out = real_save(fig, ax, path)
        seen.append((path.name, ax.get_title(), ax.get_xticks(),
                     [(line.get_label(), line.get_marker(), line.get_markersize(), line.get_linestyle())
                      for line in ax.get_lines()]))
        return out
    monkeypatch.setattr(report.plots, "_save", spy)
    runs = [fake_run(tmp_path / m, method=m, acc=80.0, epochs=3) for m in ("vanilla", "lstsd")]  # same curve
    records = report.collect(runs)
    report.write_plots(records, tmp_path / "plots")
    (acc_name, _, acc_ticks, acc_lines), (loss_name, loss_title, _, loss_lines) = seen
    assert acc_name.startswith("accuracy_") and loss_name.startswith("loss_components_lstsd")
    assert all(float(t).is_integer() for t in acc_ticks)                    # epochs 1, 2, 3: no 1.5
    assert len({(m, s, ls) for _, m, s, ls in acc_lines}) == len(acc_lines) == 2   # coinciding curves differ
    labels = [label for label, *_ in loss_lines]
    assert "2.4 × KL long" in labels and "4 × KL short" in labels and "KL long (unweighted)" in labels
    assert "total = ce + 2.4·KL long + 4·KL short" in loss_title


# ----------------------------------------------------------------------------- 2. configs name what they run
@pytest.mark.parametrize("text,missing", [("", "dataset, model and method"), ("dataset: digits\n", "model and method"),
                                          ("dataset: digits\nmodel: resnet\n", "the method to use")])
def test_an_empty_or_partial_config_is_refused(tmp_path, capsys, monkeypatch, text, missing):
    from lstsd.harness.trainer import Trainer

    def never(self, *args, **kwargs):
        raise AssertionError("a default run was started from an incomplete config")
    monkeypatch.setattr(Trainer, "__init__", never)
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert cli.main(["train", "--config", str(config), "--set", f"out_dir={tmp_path}"]) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert missing in line and "164-epoch" in line and not (tmp_path / "c").exists()


def test_train_prints_its_settings_and_steps_then_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from lstsd.harness.trainer import Trainer
    write_config(tmp_path / "tiny.yaml", epochs=3, method_args={"generation_epochs": 3})
    real_evaluate = Trainer.evaluate
    calls = {"n": 0}

    def interrupt_in_epoch_two(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(self)
    monkeypatch.setattr(Trainer, "evaluate", interrupt_in_epoch_two)
    monkeypatch.chdir(tmp_path)
    assert main_without_escape(["train", "--config", "tiny.yaml", "--set", "out_dir=runs"]) == 130
    captured = capsys.readouterr()
    run = tmp_path / "runs" / "tiny"
    assert "tiny: digits (train_subset=200), model resnet(depth=8,width=4), method lstsd (generation_epochs=3)" \
        in captured.out
    assert "3 epochs, batch 50" in captured.out and f"-> {run}" in captured.out
    assert "200 training samples, batch 50: 4 steps/epoch × 3 epochs = 12 steps" in captured.out
    assert "epochs=3 ≤ generation_epochs=3" in captured.err and "distillation never starts" in captured.err
    line = one_error_line(captured.err, "train")
    command = line.split("continue with: ", 1)[1]
    assert command == f"lstsd train --config {run / 'config.yaml'} --resume"
    # the hint works from any folder
    monkeypatch.setattr(Trainer, "evaluate", real_evaluate)
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    assert cli.main(shlex.split(command)[1:]) == 0
    assert (run / "results.json").is_file() and not (other / "runs").exists()


# ----------------------------------------------------------------------------- 3, 4. compare checks first
def _preset(tmp_path: Path, methods, method_args, **config) -> Path:
    path = tmp_path / "preset.yaml"
    shared = {k: v for k, v in TINY.items() if k not in ("method", "method_args")} | config
    path.write_text(yaml.safe_dump({"methods": methods, "seeds": [0, 1], "config": shared,
                                    "method_args": method_args}))
    return path


def test_compare_checks_every_run_before_the_first_trains(tmp_path, capsys):
    preset = _preset(tmp_path, ["vanilla", "lstsd"], {"lstsd": {"generation_epochs": 1, "lambda_lnog": 2.0}})
    out = tmp_path / "out"
    assert cli.main(["compare", "--preset", str(preset), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err, "compare")
    assert "lstsd-seed0" in line and "lambda_lnog" in line and "method_args" in line
    assert not (out / "vanilla-seed0").exists()          # nothing trained
    # a bad --set value for a later method is caught up front too
    good = _preset(tmp_path, ["vanilla", "lstsd"], {"lstsd": {"generation_epochs": 1}})
    assert cli.main(["compare", "--preset", str(good), "--out", str(out),
                     "--set", "method_args.lstsd.temperature=-1"]) == 2
    assert "temperature" in one_error_line(capsys.readouterr().err, "compare")
    assert not out.exists()


class _Stop(Exception):  # noqa: N818 - not an error: stops a run where the test has seen enough
    pass


def test_compare_warns_when_distillation_never_starts(tmp_path, monkeypatch):
    import lstsd.harness.trainer as trainer_module

    def no_training(*args, **kwargs):
        raise _Stop
    monkeypatch.setattr(trainer_module, "Trainer", no_training)
    preset = _preset(tmp_path, ["vanilla", "lstsd", "lstsd_wo_long", "snapshot_distillation", "mean_teacher"],
                     {"lstsd": {"generation_epochs": 2}, "lstsd_wo_long": {"generation_epochs": 1},
                      "snapshot_distillation": {"cycle_epochs": 3}})
    warnings: list[str] = []
    with pytest.raises(_Stop):
        cli.compare(str(preset), out_dir=str(tmp_path / "out"), log=lambda m: None, warn=warnings.append)
    assert len(warnings) == 2, warnings      # one per method, not per seed; vanilla, wo_long, mean_teacher fine
    assert warnings[0].startswith("lstsd: epochs=2 ≤ generation_epochs=2") and "never starts" in warnings[0]
    assert warnings[1].startswith("snapshot_distillation: epochs=2 ≤ cycle_epochs=3")


# ----------------------------------------------------------------------------- 5. data from where it was asked
def _fashion_files(folder: Path, gz: bool = True) -> None:
    import gzip

    import numpy as np
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(20) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(10) % 10}
    for stem, a in arrays.items():
        data = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + \
            a.astype(np.uint8).tobytes()
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    monkeypatch.delenv("LSTSD_DATA", raising=False)
    monkeypatch.setenv("LSTSD_CACHE", str(tmp_path / "cache"))
    system = tmp_path / "system"
    _fashion_files(system)                      # a system copy that must NOT be used behind the user's back
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DATA_DIR", system)
    return system


def test_an_explicit_data_folder_without_the_data_is_an_error(tmp_path, monkeypatch, no_system_data):
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("fashion_mnist", "cifar10", "cifar100"):
        with pytest.raises(FileNotFoundError, match=re.escape(f"is not in {empty} (named by --data-dir)")) as info:
            load_dataset(name, data_dir=empty, verify_checksums=False)
        assert isinstance(info.value, HarnessError) and "--download" in str(info.value)
    monkeypatch.setenv("LSTSD_DATA", str(empty))
    with pytest.raises(FileNotFoundError, match=r"named by \$LSTSD_DATA.*unset LSTSD_DATA"):
        load_dataset("fashion_mnist", verify_checksums=False)
    monkeypatch.delenv("LSTSD_DATA")
    assert load_dataset("fashion_mnist", verify_checksums=False).source["origin"] == "system"   # none named


def test_cli_data_dir_without_the_data_stops_before_training(tmp_path, capsys, no_system_data):
    config = write_config(tmp_path / "c.yaml", dataset="fashion_mnist", train_subset=20, epochs=1,
                          data_args={"verify_checksums": False})
    assert cli.main(["train", "--config", str(config), "--data-dir", str(tmp_path / "nothing-here"),
                     "--set", f"out_dir={tmp_path / 'runs'}"]) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert f"is not in {tmp_path / 'nothing-here'} (named by --data-dir)" in line
    assert not (tmp_path / "runs" / "c" / "results.json").exists()


def test_splits_say_where_the_data_came_from(tmp_path, no_system_data):
    _fashion_files(tmp_path / "gz")
    _fashion_files(tmp_path / "raw" / "fashion-mnist", gz=False)
    a = load_dataset("fashion_mnist", data_dir=tmp_path / "gz", verify_checksums=False, train_subset=10)
    b = load_dataset("fashion_mnist", data_dir=tmp_path / "raw", verify_checksums=False)
    assert a.source["origin"] == "--data-dir" and a.source["path"] == str(tmp_path / "gz")
    assert b.source["path"] == str(tmp_path / "raw" / "fashion-mnist")
    assert len(a.source["files"]) == 4 and all(os.path.isabs(f) for f in a.source["files"])
    assert a.source["sha256"] == b.source["sha256"]          # the same data, packed differently
    digits = load_dataset("digits")
    assert digits.source["origin"] == "scikit-learn" and len(digits.source["sha256"]) == 64
    from fakedata import cifar_members, write_cifar_tarball
    members = cifar_members("cifar10")[0]
    write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz", "cifar10", members)
    c = load_dataset("cifar10", data_dir=tmp_path, verify_checksums=False)
    assert c.source["path"] == str(tmp_path / "cifar-10-python.tar.gz") and c.source["origin"] == "--data-dir"


# ----------------------------------------------------------------------------- 7. one-line errors
def test_download_offline_is_one_line(tmp_path, capsys, monkeypatch, no_system_data):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(splits.urllib.request, "urlopen", offline)
    config = write_config(tmp_path / "c.yaml", dataset="fashion_mnist")
    args = ["train", "--config", str(config), "--download", "--data-dir", str(tmp_path / "d"),
            "--set", f"out_dir={tmp_path / 'runs'}"]
    assert cli.main(args) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert "could not download" in line and "online" in line
    # whatever the download function raises (here a bare OSError), the CLI stays on one line
    monkeypatch.setattr(fashion_mnist, "download_url", lambda *a, **k: (_ for _ in ()).throw(OSError("net down")))
    assert cli.main(args) == 2
    assert "net down" in one_error_line(capsys.readouterr().err, "train")


@pytest.mark.parametrize("overrides,words", [
    (["device=tpu"], "device 'tpu' is not a device"),
    (["epochs=zero"], "epochs must be an integer"),
    (["method_args.lstsd.generation_epoch=2"], "does not accept ['generation_epoch']"),
    (["model=resnet_19"], "unknown model 'resnet_19'"),
])
def test_bad_settings_are_one_line(tmp_path, capsys, overrides, words):
    config = write_config(tmp_path / "c.yaml", method_args={"lstsd": {"generation_epochs": 1}})
    assert cli.main(["train", "--config", str(config), "--set", f"out_dir={tmp_path}", *overrides]) == 2
    assert words in one_error_line(capsys.readouterr().err, "train")
    assert not (tmp_path / "c").exists()


def test_config_that_is_a_folder(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path)]) == 2
    assert "is a folder, not a config file" in one_error_line(capsys.readouterr().err, "train")
    write_config(tmp_path / "config.yaml")
    assert cli.main(["train", "--config", str(tmp_path)]) == 2
    assert f"--config {tmp_path / 'config.yaml'}" in one_error_line(capsys.readouterr().err, "train")


def test_output_folder_that_is_a_file_or_not_writable(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path / "c.yaml")
    (tmp_path / "taken").write_text("a file")
    assert cli.main(["train", "--config", str(config), "--set", f"out_dir={tmp_path / 'taken'}"]) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert f"{tmp_path / 'taken'} is a file" in line and "--set out_dir=DIR" in line
    # read-only (as root, permissions cannot be taken away: os.access stands in for the file system)
    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode: False if str(p).startswith(str(tmp_path)) else real_access(p, mode))
    assert cli.main(["train", "--config", str(config), "--set", f"out_dir={tmp_path / 'ro' / 'runs'}"]) == 2
    assert "is not writable" in one_error_line(capsys.readouterr().err, "train")
    assert cli.main(["compare", "--preset", str(_preset(tmp_path, ["vanilla"], {})), "--out", str(tmp_path / "o")]) == 2
    assert "--out DIR" in one_error_line(capsys.readouterr().err, "compare")
    fake_run(tmp_path / "done" / "run")
    assert cli.main(["report", str(tmp_path / "done")]) == 2
    assert "--out DIR" in one_error_line(capsys.readouterr().err, "report")


@pytest.mark.parametrize("fault,words", [
    (PermissionError(errno.EACCES, "Permission denied", "/srv/runs/c/config.yaml"),
     "cannot write /srv/runs/c/config.yaml: Permission denied — choose a writable folder"),
    (OSError(errno.EROFS, "Read-only file system", "/srv/runs/c/metrics.jsonl"), "Read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device", "/srv/runs/c/checkpoint.pt"), "the disk is full"),
    (RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file data/3: "
                  "file write failed"), "the disk is full"),
    (FloatingPointError("epoch 3: the training loss is not finite"), "lower lr or use precision=fp32"),
    (DivergedError("the loss is NaN at epoch 3/12, step 17 — lower lr or use precision=fp32"), "step 17"),
    (RunError("the checkpoint is gone — start again"), "the checkpoint is gone — start again"),
])
def test_faults_while_training_are_one_line(tmp_path, capsys, monkeypatch, fault, words):
    from lstsd.harness.trainer import Trainer
    config = write_config(tmp_path / "c.yaml")
    run = tmp_path / "runs" / "c"

    def fail(self, resume=False):
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text("{}")
        (run / "checkpoint.pt").write_bytes(b"x")
        raise fault
    monkeypatch.setattr(Trainer, "fit", fail)
    assert cli.main(["train", "--config", str(config), "--set", f"out_dir={tmp_path / 'runs'}"]) == 2
    line = one_error_line(capsys.readouterr().err, "train")
    assert words in line
    if "disk is full" in words:
        assert line.endswith(f"free space there, then continue with: lstsd train --config {run / 'config.yaml'} "
                             "--resume")
    # --debug adds the traceback, the same line still ends the output
    assert cli.main(["train", "--config", str(config), "--set", f"out_dir={tmp_path / 'runs'}", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("lstsd train: error: ")


def test_ctrl_c_in_compare_says_to_run_it_again(tmp_path, capsys, monkeypatch):
    from lstsd.harness.trainer import Trainer

    def interrupted(self, resume=False):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "fit", interrupted)
    args = ["compare", "--preset", str(_preset(tmp_path, ["vanilla"], {})), "--out", str(tmp_path / "o")]
    assert main_without_escape(args) == 130
    err = capsys.readouterr().err
    assert "interrupted during vanilla-seed0 (1/2)" in err and "run the same command again" in err
    assert shlex.join(["lstsd", *args]) in err and "Traceback" not in err


# ----------------------------------------------------------------------------- 8. smaller things
def test_set_takes_several_values_after_one_flag():
    parser = cli.build_parser()
    train = parser.parse_args(["train", "--config", "c.yaml", "--set", "epochs=2", "lr=0.05", "--set", "seed=1",
                               "--resume"])
    assert train.overrides == ["epochs=2", "lr=0.05", "seed=1"] and train.resume
    comp = parser.parse_args(["compare", "--preset", "quick", "--set", "epochs=2", "method_args.lstsd.temperature=1"])
    assert comp.overrides == ["epochs=2", "method_args.lstsd.temperature=1"]


CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_the_commands_in_config_comments_work(path, tmp_path, monkeypatch):
    """Each config names what it runs and the ``lstsd train`` command in its comment builds a valid run."""
    from lstsd.harness.config import check_required
    text = path.read_text()
    check_required(yaml.safe_load(text), str(path))
    commands = [line.lstrip("# ").split("# ")[0] for line in text.splitlines()
                if line.startswith("#") and "lstsd train" in line]
    assert commands, f"{path} shows no command for another method"
    for command in commands:
        argv = shlex.split(command[command.index("lstsd train"):])[1:]
        args = cli.build_parser().parse_args(argv)
        assert Path(ROOT / args.config) == path
        cfg = load_config(path, args.overrides)
        assert cfg.name != yaml.safe_load(text)["name"]          # its own run folder, not the LSTSD run's
        method = cli.check_run(cfg, "fix")                     # the method accepts its settings
        assert method.name == cfg.method


def test_method_switch_takes_that_methods_settings():
    path = ROOT / "configs" / "paper" / "cifar100_resnet20_lstsd.yaml"
    assert load_config(path, ["method=vanilla"]).method_args == {}
    assert load_config(path, ["method=mean_teacher"]).method_args == {"ema_decay": 0.999, "temperature": 2.0}
    assert load_config(path, ["method_args.lstsd.generation_epochs=4"]).method_args["generation_epochs"] == 4
    # the saved config of a run is flat and loads again as it is (resume)
    cfg = load_config(path, ["method=lstsd_wo_long"])
    assert load_config(None, [], base=cfg.to_dict()).method_args == cfg.method_args == {
        "generation_epochs": 6, "lambda_short": 4.0, "temperature": 2.0}


def test_preset_descriptions_show_commands_that_work():
    for name in cli.preset_names():
        preset = cli.load_preset(name)
        for command in re.findall(r"lstsd compare[^.`]*", preset.get("description", "")):
            args = cli.build_parser().parse_args(shlex.split(command)[1:])
            assert args.preset == name
            shared, _ = cli._split_overrides(args.overrides)
            arms = cli.preset_arms(preset)
            if arms is not None:        # named arms (lm-study): each arm's own settings
                for cfg in cli.build_plan(preset, arms, [0], Path("runs"), shared, {}):
                    cli.check_run(cfg, "fix")
                continue
            methods = preset["methods"] if not args.methods else (
                cli.available_methods() if args.methods == "all" else args.methods.split(","))
            for method in methods:      # --methods all: every method with the preset's settings for it
                base = dict(preset["config"], method=method, method_args=preset["method_args"].get(method, {}))
                cli.check_run(load_config(None, shared, base=base), "fix")


def test_report_against_a_row_adds_paired_differences_and_refuses_an_unknown_row(tmp_path, capsys):
    runs = [fake_run(tmp_path / f"{m}{s}", method=m, seed=s, acc=a)
            for m, accs in (("vanilla", (80.0, 81.0)), ("lstsd", (81.0, 81.5))) for s, a in enumerate(accs)]
    assert cli.main(["report", *map(str, runs), "--out", str(tmp_path / "plots"), "--against", "vanilla"]) == 0
    assert "| lstsd | +0.75 ± 0.35 | 2 / 0 / 0 | +3.00 | 0.2 |" in capsys.readouterr().out   # p: t with 1 d.o.f.
    # the cost table compares with the --against row too (a sweep's vanilla is lambda_long=0.0, not "vanilla")
    assert cli.main(["report", *map(str, runs), "--out", str(tmp_path / "plots"), "--against", "lstsd"]) == 0
    out = capsys.readouterr().out
    assert "| ms/step (median) | vs lstsd |" in out and "| vanilla | 0 | 10.0 | 1.00× |" in out
    assert cli.main(["report", *map(str, runs), "--out", str(tmp_path / "plots"), "--against", "mean_teacher"]) == 2
    err = capsys.readouterr().err
    assert "--against 'mean_teacher' matches no row" in err and len(err.strip().splitlines()) == 1


def test_against_names_a_row_by_its_settings_in_any_order_and_survives_new_runs(tmp_path, capsys):
    def sweep_point(lam: float, ramp: int, seed: int, acc: float) -> Path:
        return fake_run(tmp_path / f"l{lam}-r{ramp}-s{seed}", seed=seed, acc=acc,
                        method_args={"lambda_long": lam, "lambda_short": lam, "rampup_epochs": ramp})

    def against(spec: str, *runs: Path) -> tuple[int, str, str]:
        code = cli.main(["report", *map(str, runs), "--out", str(tmp_path / "plots"), "--against", spec])
        out, err = capsys.readouterr()
        return code, out, err

    sweep = [sweep_point(lam, 0, s, 80.0 + lam + s) for lam in (0.0, 2.4) for s in (0, 1)]
    code, out, _ = against("lambda_long=0", *sweep)           # 0 names 0.0; the label says lambda_long=0.0
    assert code == 0 and "Paired by seed against 'lstsd (lambda_long=0.0, lambda_short=0.0)'" in out
    assert "| lstsd (lambda_long=2.4, lambda_short=2.4) | +2.40 ± 0.00 | 2 / 0 / 0 |" in out
    # runs with a new setting join the folder: the labels gain rampup_epochs, the spec still names its row
    ramped = [sweep_point(2.4, 6, s, 81.0 + 2.4 + s) for s in (0, 1)]
    code, out, _ = against("lambda_short=2.4, method_args.rampup_epochs=0", *sweep, *ramped)
    assert code == 0 and "against 'lstsd (lambda_long=2.4, lambda_short=2.4, rampup_epochs=0)'" in out
    assert "| lstsd (lambda_long=2.4, lambda_short=2.4, rampup_epochs=6) | +1.00 ± 0.00 | 2 / 0 / 0 |" in out
    code, _, err = against("lambda_long=2.4", *sweep, *ramped)   # now two rows have it: refused, both named
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--against 'lambda_long=2.4' matches 2 rows (lstsd (lambda_long=2.4, lambda_short=2.4, " \
           "rampup_epochs=0); lstsd (lambda_long=2.4, lambda_short=2.4, rampup_epochs=6))" in err
    code, _, err = against("lambda_long=0.05", *sweep)          # a number is a whole value, not a prefix
    assert code == 2 and "matches no row" in err


def test_report_teachers_epoch_picks_an_epoch_and_refuses_one_no_run_has(tmp_path, capsys):
    runs = [fake_run(tmp_path / f"lstsd{s}", seed=s) for s in (0, 1)]
    assert cli.main(["report", *map(str, runs), "--out", str(tmp_path / "plots"), "--teachers-epoch", "1"]) == 0
    assert "at epoch 1 (mean over seeds)" in capsys.readouterr().out
    assert cli.main(["report", *map(str, runs), "--out", str(tmp_path / "plots"), "--teachers-epoch", "99"]) == 2
    assert "--teachers-epoch 99: no run logged that epoch" in capsys.readouterr().err


def test_report_against_a_teacher_row_compares_cost_with_the_runs_that_report_it(tmp_path, capsys):
    runs = [fake_run(tmp_path / f"{m}{s}", method=m, seed=s, acc=a)
            for m, accs in (("vanilla", (80.0, 81.0)), ("mean_teacher", (80.5, 81.5))) for s, a in enumerate(accs)]
    for run, teacher in zip(runs[2:], (81.0, 82.5)):      # Mean Teacher's runs also report their EMA teacher
        results = json.loads((run / "results.json").read_text())
        results["final"]["test_accuracy_teacher"] = teacher
        results["cost"]["seconds_per_step"] = 0.02
        (run / "results.json").write_text(json.dumps(results))
    code = cli.main(["report", *map(str, runs), "--out", str(tmp_path / "plots"),
                     "--against", "mean_teacher (teacher)"])
    out = capsys.readouterr().out
    assert code == 0 and "Paired by seed against 'mean_teacher (teacher)'" in out
    assert "| vanilla | -1.25 ± 0.35 | 0 / 0 / 2 | -5.00 | 0.13 |" in out
    # the teacher has no cost of its own: the cost table is relative to the runs that report it
    assert "| ms/step (median) | vs mean_teacher |" in out and "| vanilla | 0 | 10.0 | 0.50× |" in out
