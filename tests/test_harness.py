"""The harness: configs, the trainer (exact resume), the CLI end to end, the paper configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from fakedata import cifar_members, write_cifar_tarball
from lstsd.harness import cli
from lstsd.harness.config import TrainConfig, load_config
from lstsd.harness.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="digits", train_subset=240, model="resnet", model_args={"depth": 8, "width": 8},
            method="lstsd", method_args={"generation_epochs": 2}, epochs=5, batch_size=32, lr=0.1,
            eval_batch_size=500, progress="none", augment=False)


def tiny(tmp_path: Path, **changes) -> TrainConfig:
    values = dict(TINY, run_dir=str(tmp_path / changes.pop("run", "run")))
    values.update(changes)
    return TrainConfig.from_dict(values)


# ----------------------------------------------------------------------------- config
class TestConfig:
    def test_yaml_and_overrides(self, tmp_path):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"epochs": 3, "method_args": {"temperature": 2.0}}))
        cfg = load_config(path, ["epochs=7", "method_args.generation_epochs=2", "lr=1e-2", "train_subset=0.5"])
        assert cfg.epochs == 7 and cfg.lr == 0.01 and cfg.train_subset == 0.5
        assert cfg.method_args == {"temperature": 2.0, "generation_epochs": 2}

    @pytest.mark.parametrize("overrides,word", [
        (["epoch=3"], "unknown key.*did you mean 'epochs'"),
        (["epochs=three"], "epochs must be an integer"),
        (["epochs=0"], "epochs must be >= 1"),
        (["lr=-1"], "lr must be > 0"),
        (["precision=fp8"], "precision must be one of"),
        (["nesterov=maybe"], "nesterov must be true or false"),
        (["lr_milestones=[0.5, 2]"], "lr_milestones"),
        (["method_args=3"], "method_args must be a mapping"),
        (["epochs"], "key=value"),
        (["epochs=[1"], "cannot parse"),
    ])
    def test_errors_name_the_problem(self, overrides, word):
        with pytest.raises(ValueError, match=word):
            load_config(None, overrides)

    def test_missing_and_malformed_files(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="configs/paper"):
            load_config(tmp_path / "nope.yaml")
        bad = tmp_path / "bad.yaml"
        bad.write_text("- just\n- a list\n")
        with pytest.raises(ValueError, match="must be a mapping"):
            load_config(bad)


# ----------------------------------------------------------------------------- trainer
def test_run_directory_contents(tmp_path):
    cfg = tiny(tmp_path, epochs=4)
    results = Trainer(cfg, log=None).fit()
    run = Path(cfg.run_dir)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert {"loss_ce", "loss_long", "loss_short", "loss_total", "lr", "train_seconds", "test_accuracy"} <= set(r)
    # first mini-generation (E=2): cross-entropy only; afterwards the distillation terms are active
    assert rows[0]["loss_long"] == rows[1]["loss_short"] == 0 and rows[0]["loss_total"] == rows[0]["loss_ce"]
    assert rows[2]["loss_long"] > 0 and rows[2]["loss_short"] > 0
    assert rows[2]["loss_total"] > rows[2]["loss_ce"]
    assert yaml.safe_load((run / "config.yaml").read_text())["method"] == "lstsd"
    assert json.loads((run / "results.json").read_text()) == results
    assert results["final"]["test_accuracy"] == rows[-1]["test_accuracy"] > 20   # learned something (10 classes)
    assert results["cost"]["extra_forward_passes"] == 0


def test_learning_rate_schedule_is_the_papers(tmp_path):
    cfg = tiny(tmp_path, method="vanilla", method_args={}, epochs=8, lr=0.1)
    Trainer(cfg, log=None).fit()
    lrs = [json.loads(line)["lr"] for line in (Path(cfg.run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4])


def _final_state(run_dir: str) -> dict:
    return torch.load(Path(run_dir) / "checkpoint.pt", weights_only=False)


@pytest.mark.parametrize("augment", [True, False])
def test_interrupted_run_resumes_bit_identical(tmp_path, monkeypatch, augment):
    straight = tiny(tmp_path, run="straight", augment=augment)
    Trainer(straight, log=None).fit()

    interrupted = tiny(tmp_path, run="interrupted", augment=augment)
    trainer = Trainer(interrupted, log=None)
    real_evaluate = trainer.evaluate
    calls = {"n": 0}

    def crash_in_epoch_three():
        calls["n"] += 1
        if calls["n"] == 3:       # epoch index 2 trained, not yet checkpointed: lost work
            raise KeyboardInterrupt
        return real_evaluate()
    monkeypatch.setattr(trainer, "evaluate", crash_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert _final_state(interrupted.run_dir)["epoch"] == 1

    Trainer(interrupted, log=None).fit(resume=True)
    a, b = _final_state(straight.run_dir), _final_state(interrupted.run_dir)
    assert a["epoch"] == b["epoch"] == 4
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for bank in ("long_term_bank", "short_term_bank"):
        assert torch.equal(a["method"][bank]["targets"], b["method"][bank]["targets"])
        assert torch.equal(a["method"][bank]["recorded"], b["method"][bank]["recorded"])
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])


def test_resume_refuses_another_runs_checkpoint_and_existing_dirs(tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    Trainer(cfg, log=None).fit()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(cfg, log=None).fit()
    other = tiny(tmp_path, epochs=1, lr=0.2)
    with pytest.raises(ValueError, match="another run.*lr: checkpoint 0.1, now 0.2"):
        Trainer(other, log=None).fit(resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny(tmp_path, run="fresh"), log=None).fit(resume=True)


def test_every_method_trains_in_the_harness(tmp_path):
    """Each registered method survives two epochs of the real trainer (losses finite, metrics written)."""
    from lstsd.methods import available_methods
    from lstsd.harness.cli import load_preset
    settings = load_preset("quick")["method_args"]
    for name in available_methods():
        args = dict(settings.get(name, {}))
        for key in ("generation_epochs", "cycle_epochs"):
            if key in args:
                args[key] = 1
        cfg = tiny(tmp_path, run=name, method=name, method_args=args, epochs=2, train_subset=100)
        results = Trainer(cfg, log=None).fit()
        assert 0 <= results["final"]["test_accuracy"] <= 100, name


# ----------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_train_compare_report(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(TINY, epochs=2)))
    assert cli.main(["train", "--config", str(config), "--set", f"out_dir={tmp_path / 'runs'}",
                     "--set", "method=vanilla", "--set", "method_args={}"]) == 0
    assert (tmp_path / "runs" / "tiny" / "results.json").is_file()

    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump({"methods": ["vanilla", "lstsd"], "seeds": [0, 1],
                                      "config": {k: v for k, v in TINY.items() if k not in ("method", "method_args")}
                                      | {"epochs": 3},
                                      "method_args": {"lstsd": {"generation_epochs": 1}}}))
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--preset", str(preset), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| vanilla |" in text and "| lstsd |" in text and "± " in text
    for name in ("vanilla-seed0", "vanilla-seed1", "lstsd-seed0", "lstsd-seed1"):
        assert (out / name / "results.json").is_file()
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert any(p.startswith("accuracy_") for p in pngs) and any(p.startswith("loss_components_lstsd") for p in pngs)
    # a second compare reuses the finished runs
    assert cli.main(["compare", "--preset", str(preset), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("finished earlier, reused") == 4

    # a per-method override reaches only that method
    out2 = tmp_path / "cmp2"
    assert cli.main(["compare", "--preset", str(preset), "--out", str(out2), "--seeds", "0",
                     "--set", "method_args.lstsd.generation_epochs=2", "--set", "epochs=2"]) == 0
    saved = yaml.safe_load((out2 / "lstsd-seed0" / "config.yaml").read_text())
    assert saved["method_args"] == {"generation_epochs": 2} and saved["epochs"] == 2
    assert yaml.safe_load((out2 / "vanilla-seed0" / "config.yaml").read_text())["method_args"] == {}
    capsys.readouterr()
    # the same folder with other settings is refused, not silently reused
    assert cli.main(["compare", "--preset", str(preset), "--out", str(out), "--set", "epochs=4"]) == 2
    assert "holds a run with other settings (epochs" in capsys.readouterr().err

    assert cli.main(["report", *(str(out / n) for n in ("vanilla-seed0", "lstsd-seed0")),
                     "--out", str(tmp_path / "plots2")]) == 0
    assert "| lstsd |" in capsys.readouterr().out


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["compare", "--preset", "no-such-preset"]) == 2
    assert "unknown preset 'no-such-preset'" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "not a finished run" in capsys.readouterr().err


def test_quick_preset_is_a_meaningful_comparison():
    preset = cli.load_preset("quick")
    cfg = load_config(None, [], base=dict(preset["config"], method="lstsd",
                                          method_args=preset["method_args"]["lstsd"]))
    assert cfg.dataset == "fashion_mnist" and set(preset["methods"]) == {"vanilla", "lstsd"}
    assert cfg.epochs // cfg.method_args["generation_epochs"] >= 2     # at least two mini-generations
    assert len(preset["seeds"]) >= 2


# ----------------------------------------------------------------------------- paper configs
PAPER = sorted((ROOT / "configs" / "paper").glob("cifar100_*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_paper_configs_load_and_take_a_step(path, tmp_path):
    raw = yaml.safe_load(path.read_text())
    assert raw["dataset"] == "cifar100" and raw["epochs"] in (164, 300)
    assert raw["method_args"] == {"generation_epochs": 6, "lambda_long": 2.4, "lambda_short": 4.0, "temperature": 2.0}
    # a CIFAR-100 archive in the real format holding exactly one batch: one training step
    members = cifar_members("cifar100", n_train=raw["batch_size"], n_test=20)[0]
    write_cifar_tarball(tmp_path / "cifar-100-python.tar.gz", "cifar100", members)
    cfg = load_config(path, [f"data_dir={tmp_path}", "data_args={verify_checksums: false}",
                             f"run_dir={tmp_path / 'run'}", "epochs=1", "progress=none"])
    results = Trainer(cfg, log=None).fit()
    assert results["num_train"] == cfg.batch_size and "test_accuracy" in results["final"]


def test_progress_bar_only_on_a_terminal(monkeypatch):
    from lstsd.harness.trainer import Progress

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

        def write(self, text):
            pass

        def flush(self):
            pass

    monkeypatch.setattr("sys.stderr", Stream(False))
    assert not Progress("auto").enabled and Progress("bar").enabled and not Progress("none").enabled
    monkeypatch.setattr("sys.stderr", Stream(True))
    assert Progress("auto").enabled and not Progress("none").enabled
    with Progress("none").wrap([1, 2], 2, "x") as items:
        assert list(items) == [1, 2]


def test_cli_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "lstsd" in out and "resnet20" in out and "fashion_mnist" in out and "quick" in out


def _record(method, model, dataset, seed, acc, extra=None):
    from lstsd.harness.report import RunRecord
    final = {"test_accuracy": acc, **(extra or {})}
    return RunRecord(run_dir=Path("."), method=method, model=model, dataset=dataset, seed=seed, final=final,
                     rows=[], cost={"seconds_per_step": 0.1})


def test_table_layouts():
    from lstsd.harness.report import results_table
    # Table 1: rows = methods, columns = networks; extra predictors get their own rows
    t1 = results_table([_record("vanilla", "resnet20", "cifar100", s, 66 + s) for s in (0, 1)]
                       + [_record("mean_teacher", "resnet20", "cifar100", s, 68, {"test_accuracy_teacher": 69})
                          for s in (0, 1)])
    assert "| Method | resnet20 |" in t1 and "| vanilla | 66.50 ± 0.71 |" in t1
    assert "| mean_teacher (teacher) | 69.00 ± 0.00 |" in t1
    # when seeds differ between cells, n is shown
    assert "(n=1)" in results_table([_record("vanilla", "r", "d", 0, 1.0), _record("vanilla", "r", "d", 1, 2.0),
                                     _record("lstsd", "r", "d", 0, 3.0)])
    # Table 2: rows = network × method, columns = data sets
    t2 = results_table([_record(m, "text_cnn", d, 0, a) for m, d, a in
                        (("vanilla", "glue_rte", 53.0), ("lstsd", "glue_rte", 57.0), ("lstsd", "glue_sst2", 72.0))])
    assert "| Network | Method | glue_rte | glue_sst2 |" in t2
    assert "| text_cnn | lstsd | 57.00 ± 0.00 | 72.00 ± 0.00 |" in t2 and "| text_cnn | vanilla | 53.00 ± 0.00 | — |" in t2
    # Table 3: differences to LSTSD in parentheses
    t3 = results_table([_record("lstsd", "resnet20", "cifar100", 0, 69.42),
                        _record("lstsd_wo_long", "resnet20", "cifar100", 0, 69.09)])
    assert "| lstsd_wo_long | 69.09 ± 0.00 (-0.33) |" in t3 and "difference to LSTSD" in t3
