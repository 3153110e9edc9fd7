"""The harness: configs, the trainer (exact resume), the CLI end to end, the paper configs, the registry."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
import yaml

from fakedata import cifar_members, interrupt_in_third_epoch, write_cifar_tarball
from lstsd.harness import cli, registry
from lstsd.harness.config import RESUMABLE_CHANGES, TrainConfig, config_differences, load_config
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


    def test_run_path(self):
        assert TrainConfig(name="a", out_dir="o").run_path() == Path("o") / "a"
        assert TrainConfig(name="a", out_dir="o", run_dir="r/x").run_path() == Path("r/x")

    def test_config_differences_ignore_resumable_settings(self):
        saved = TrainConfig().to_dict()
        resumable = {"device": "cpu", "progress": "none", "out_dir": "elsewhere", "run_dir": "r", "name": "other",
                     "eval_batch_size": 7, "eval_every": 3, "data_dir": "/d", "download": True}
        assert set(resumable) == RESUMABLE_CHANGES
        assert config_differences(saved, TrainConfig(**resumable).to_dict()) == []
        assert config_differences(saved, TrainConfig(lr=0.2, epochs=3, device="cpu").to_dict()) == ["epochs", "lr"]
        assert config_differences(saved, {**saved, "new_key": 1}) == ["new_key"]


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


def test_cost_counts_the_extra_forward_pass_of_recording_after_the_update(tmp_path):
    """The count is the method instance's: LSTSD's record_targets adds a forward pass per step."""
    cfg = tiny(tmp_path, epochs=1, method_args={"generation_epochs": 1, "record_targets": "after_update_eval"})
    assert Trainer(cfg, log=None).fit()["cost"]["extra_forward_passes"] == 1


def test_learning_rate_schedule_is_the_papers(tmp_path):
    cfg = tiny(tmp_path, method="vanilla", method_args={}, epochs=8, lr=0.1)
    Trainer(cfg, log=None).fit()
    lrs = [json.loads(line)["lr"] for line in (Path(cfg.run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4])


def _final_state(run_dir: str) -> dict:
    from lstsd.harness.checkpoint import load_checkpoint
    return load_checkpoint(Path(run_dir) / "checkpoint.pt")


@pytest.mark.parametrize("augment", [True, False])
def test_interrupted_run_resumes_bit_identical(tmp_path, monkeypatch, augment):
    straight = tiny(tmp_path, run="straight", augment=augment)
    Trainer(straight, log=None).fit()

    interrupted = tiny(tmp_path, run="interrupted", augment=augment)
    trainer = Trainer(interrupted, log=None)
    interrupt_in_third_epoch(trainer, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert _final_state(interrupted.run_dir)["epoch"] == 1

    Trainer(interrupted, log=None).fit(resume=True)
    a, b = _final_state(straight.run_dir), _final_state(interrupted.run_dir)
    assert a["epoch"] == b["epoch"] == 4
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for key in (f"{bank}.{part}" for bank in ("long_term_bank", "short_term_bank") for part in ("targets", "recorded")):
        assert torch.equal(a["method"][key], b["method"][key]), key
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
    """Each registered method learns in two epochs of the real trainer: its losses are finite, its teacher's
    term is on in the second epoch (after a first mini-generation or cycle of one epoch), and its test
    accuracy is far above chance (10 classes: 10%; every method reaches about 80% here)."""
    from lstsd.harness.cli import load_preset
    from lstsd.methods import available_methods
    settings = load_preset("quick")["method_args"]
    for name in available_methods():
        args = dict(settings.get(name, {}))
        for key in ("generation_epochs", "cycle_epochs"):
            if key in args:
                args[key] = 1
        cfg = tiny(tmp_path, run=name, method=name, method_args=args, epochs=2)
        results = Trainer(cfg, log=None).fit()
        rows = [json.loads(line) for line in (Path(cfg.run_dir) / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [0, 1], name
        losses = [v for r in rows for k, v in r.items() if k.startswith("loss_")]
        assert torch.isfinite(torch.tensor(losses)).all(), (name, rows)
        # a teacher's term (LSTSD's long/short, the baselines' kd, label smoothing's smooth): positive somewhere
        terms = [v for k, v in rows[1].items() if k.startswith("loss_") and k not in ("loss_ce", "loss_total")]
        assert not terms or max(terms) > 0, (name, rows[1])
        assert results["final"]["test_accuracy"] >= 50, (name, results["final"])


def test_lstsd_with_zero_weights_is_vanilla_in_the_harness(tmp_path):
    """The study's vanilla rows are the λ-scale sweep's 0 point (docs/results.md): the same run, bit for bit."""
    runs = {name: tiny(tmp_path, run=name, method=name, augment=True, epochs=3,
                       method_args=args) for name, args in
            (("vanilla", {}), ("lstsd", {"generation_epochs": 1, "lambda_long": 0.0, "lambda_short": 0.0}))}
    results = {name: Trainer(cfg, log=None).fit() for name, cfg in runs.items()}
    assert results["vanilla"]["final"] == results["lstsd"]["final"]
    a, b = (_final_state(cfg.run_dir)["model"] for cfg in runs.values())
    assert all(torch.equal(a[k], b[k]) for k in a)


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
    assert load_config(path).method_args == {"generation_epochs": 6, "lambda_long": 2.4, "lambda_short": 4.0,
                                             "temperature": 2.0}
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


def _listed(out: str, what: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(f"{what}: "))
    return line.removeprefix(f"{what}: ").split(", ")


def test_cli_list_names_everything_registered(capsys):
    from lstsd.methods import available_methods
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert _listed(out, "methods") == available_methods()
    assert _listed(out, "models") == registry.available_models()
    assert _listed(out, "datasets") == registry.available_datasets()
    assert _listed(out, "presets") == cli.preset_names()
    assert {"fashion_mnist", "digits", "cifar100", "vader_movies", "vader_nyt", "glue_cola"} <= set(
        _listed(out, "datasets"))
    assert {"resnet20", "densenet100", "text_cnn", "bert", "minilm"} <= set(_listed(out, "models"))
    assert "quick" in _listed(out, "presets") and "lstsd" in _listed(out, "methods")


# ----------------------------------------------------------------------------- registry
def test_registry_knows_every_loader_name_and_kind():
    from lstsd.harness.data import available_datasets as image_datasets
    from lstsd.harness.text import available_text_datasets
    assert registry.available_datasets("image") == image_datasets()
    assert registry.available_datasets("text") == available_text_datasets()
    assert registry.available_datasets() == image_datasets() + available_text_datasets() + ["wordnet_definitions"]
    assert registry.available_datasets("text_generation") == ["wordnet_definitions"]
    assert all(registry.is_text_dataset(n) for n in available_text_datasets())
    assert not any(registry.is_text_dataset(n) for n in image_datasets() + ["no_such_set"])
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; available: .*vader_nyt"):
        registry.dataset_entry("imagenet")
    with pytest.raises(ValueError, match="kind must be one of"):
        registry.register_dataset("x", lambda **kw: None, kind="audio")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_dataset("digits", lambda **kw: None, kind="image")


def test_model_kinds_resolve_aliases():
    from lstsd.harness.models import available_models as vision_models
    from lstsd.harness.text.models import _ALIASES
    assert all(registry.model_kind(n) == "vision" for n in vision_models())
    assert registry.model_kind("ResNet20") == "vision"
    for alias, name in _ALIASES.items():
        assert registry.model_kind(alias) == registry.model_kind(name)
    assert [registry.model_kind(n) for n in ("text_cnn", "cnn", "kim_cnn", "Text-CNN", "bert", "minilm")] == \
        ["text_cnn"] * 4 + ["transformer"] * 2
    assert registry.available_models("text_cnn") == ["text_cnn"]
    assert registry.available_models("vision") == vision_models()
    with pytest.raises(ValueError, match="unknown model 'gpt'; available: .*resnet20.*text_cnn"):
        registry.model_kind("gpt")


def test_a_registered_dataset_is_listed_and_built(monkeypatch, capsys, tmp_path):
    """The registry is the single source of names: a new entry reaches ``lstsd list`` and the trainer."""
    from lstsd.harness.data import load_dataset
    from lstsd.harness.tasks import build_task
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))   # undone after the test
    calls = []

    @registry.register_dataset("digits_copy", kind="image")
    def digits_copy(**settings):
        calls.append(settings)
        return load_dataset("digits", **settings)

    assert cli.main(["list"]) == 0
    assert _listed(capsys.readouterr().out, "datasets")[-1] == "digits_copy"
    cfg = tiny(tmp_path, dataset="digits_copy", train_subset=50, val_fraction=0.2, data_args={"test_fraction": 0.5})
    task = build_task(cfg)
    assert calls == [{"data_dir": None, "train_subset": 50, "val_fraction": 0.2, "seed": 0, "download": False,
                      "test_fraction": 0.5}]
    assert (len(task.data.train), len(task.data.val), len(task.data.test)) == (40, 10, 898)
    assert task.metrics == ("accuracy",) and task.model(task.data.test.features[:2]).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown dataset 'digits_kopy'; available: .*digits_copy"):
        build_task(tiny(tmp_path, dataset="digits_kopy"))


def _import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports, from the source (imports inside functions included).

    ``from pkg import name`` counts as importing the submodule ``pkg.name`` when there is one, else
    ``pkg``; an import of a module's own ancestor package is left out (it is imported first anyway).
    """
    root = package_dir.parent
    files = {}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, (path, is_package) in files.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that ends where it starts), or ``None``."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None
    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_in_the_package():
    import lstsd
    graph = _import_graph(Path(lstsd.__file__).parent)
    assert "lstsd.harness.task" in graph["lstsd.harness.tasks"] | graph["lstsd.harness.text.task"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # the check sees cycles, lazy ones included: the one this package once had
    graph["lstsd.harness.text.task"].add("lstsd.harness.tasks")
    assert _cycle(graph) == ["lstsd.harness.tasks", "lstsd.harness.text.task", "lstsd.harness.tasks"]


def _record(method, model, dataset, seed, acc, extra=None):
    from lstsd.harness.report import RunRecord
    final = {"test_accuracy": acc, **(extra or {})}
    return RunRecord(run_dir=Path("."), method=method, model=model, dataset=dataset, seed=seed, final=final,
                     rows=[], cost={"seconds_per_step": 0.1})


def test_table_layouts():
    from lstsd.harness.report import choose_layout, results_table
    # methods_by_network (paper Table 1): rows = methods, columns = networks; extra predictors get their own rows
    t1 = results_table([_record("vanilla", "resnet20", "cifar100", s, 66 + s) for s in (0, 1)]
                       + [_record("mean_teacher", "resnet20", "cifar100", s, 68, {"test_accuracy_teacher": 69})
                          for s in (0, 1)])
    assert "| Method | resnet20 |" in t1 and "| vanilla | 66.50 ± 0.71 |" in t1
    assert "| mean_teacher (teacher) | 69.00 ± 0.00 |" in t1
    # when seeds differ between cells, n is shown
    assert "(n=1)" in results_table([_record("vanilla", "r", "d", 0, 1.0), _record("vanilla", "r", "d", 1, 2.0),
                                     _record("lstsd", "r", "d", 0, 3.0)])
    # network_methods_by_dataset (paper Table 2): rows = network × method, columns = data sets
    text_runs = [_record(m, "text_cnn", d, 0, a) for m, d, a in
                 (("vanilla", "glue_rte", 53.0), ("lstsd", "glue_rte", 57.0), ("lstsd", "glue_sst2", 72.0))]
    assert choose_layout(text_runs) == "network_methods_by_dataset"
    t2 = results_table(text_runs)
    assert "| Network | Method | glue_rte | glue_sst2 |" in t2
    # one seed per cell: the caption says n = 1 and the cells show no "± 0.00"
    assert "| text_cnn | lstsd | 57.00 | 72.00 |" in t2 and "| text_cnn | vanilla | 53.00 | — |" in t2
    assert "n = 1" in t2 and "±" not in t2.split("\n\n", 1)[1]
    # one text data set is shown by data set too (registry kind); one image data set by network
    assert choose_layout(text_runs[:2]) == "network_methods_by_dataset"
    assert choose_layout([_record("vanilla", "resnet20", "vader_nyt", 0, 1.0)]) == "network_methods_by_dataset"
    assert choose_layout([_record("vanilla", "resnet20", "cifar100", 0, 1.0)]) == "methods_by_network"
    # the layout can be asked for by name
    forced = results_table([_record("vanilla", "resnet20", "cifar100", 0, 66.0)], layout="network_methods_by_dataset")
    assert "| Network | Method | cifar100 |" in forced and "| resnet20 | vanilla | 66.00 |" in forced
    with pytest.raises(ValueError, match="methods_by_network shows one data set"):
        results_table(text_runs, layout="methods_by_network")
    with pytest.raises(ValueError, match="unknown table layout 'table9'"):
        results_table(text_runs, layout="table9")
    # variants_vs_lstsd (paper Table 3): differences to LSTSD in parentheses
    t3 = results_table([_record("lstsd", "resnet20", "cifar100", 0, 69.42),
                        _record("lstsd_wo_long", "resnet20", "cifar100", 0, 69.09)])
    assert "| lstsd_wo_long | 69.09 (-0.33) |" in t3 and "difference to LSTSD" in t3


def test_teacher_table_puts_student_fit_and_teacher_diagnostics_side_by_side():
    from lstsd.harness.report import teacher_table

    def run(method, seed, rows):
        record = _record(method, "resnet20", "digits", seed, 80.0)
        record.rows = rows
        return record

    lstsd_rows = lambda q, kl: [{"train_accuracy": 50.0},   # noqa: E731 - the first mini-generation: no teacher
                                {"train_accuracy": q + 2, "teacher_short_quality": q, "teacher_short_kl": kl,
                                 "teacher_short_disagreement": 4.0, "teacher_long_quality": q - 1,
                                 "teacher_long_kl": 2 * kl, "teacher_long_disagreement": 6.0}]
    records = [run("lstsd", 0, lstsd_rows(80.0, 0.02)), run("lstsd", 1, lstsd_rows(90.0, 0.04)),
               run("vanilla", 0, [{"train_accuracy": 99.0}, {"train_accuracy": 100.0}])]
    table = teacher_table(records)
    assert "| Network | Method | train acc. (%) | short teacher: acc. (%) / KL / disagree (%) |" \
           " long teacher: acc. (%) / KL / disagree (%) |" in table
    # the last epoch, mean of the seeds
    assert "| resnet20 | lstsd | 87.0 | 85.0 / 0.030 / 4.0 | 84.0 / 0.060 / 6.0 |" in table
    assert "| resnet20 | vanilla | 100.0 | — | — |" in table
    assert teacher_table([_record("vanilla", "r", "d", 0, 1.0)]) == ""   # nothing logged: no table
    for r in records:
        for e, row in enumerate(r.rows):
            row["epoch"] = e
    first = teacher_table(records, epoch=1)                               # an epoch of one's choice, from 1
    assert "at epoch 1 " in first and "| resnet20 | lstsd | 50.0 | — | — |" in first
    assert "| resnet20 | vanilla | 99.0 | — | — |" in first


def test_paired_table_differences_by_seed_and_clear_errors():
    from lstsd.harness.errors import ReportError
    from lstsd.harness.report import paired_table
    records = [_record("vanilla", "r", "d", s, a) for s, a in ((0, 80.0), (1, 82.0), (2, 81.0))]
    records += [_record("lstsd", "r", "d", s, a) for s, a in ((0, 81.0), (1, 82.0), (2, 80.0))]
    records += [_record("ps_kd", "r", "d", 5, 90.0)]                 # no seed in common: no row
    table = paired_table(records, "vanilla")
    assert "| r | lstsd | +0.00 ± 1.00 | 1 / 1 / 1 | +0.00 |" in table and "ps_kd" not in table
    assert paired_table(records, "method=vanilla") == table             # a setting only that row has
    with pytest.raises(ReportError, match="matches no row"):
        paired_table(records, "mean_teacher")
    with pytest.raises(ReportError, match="matches no row"):            # a piece of a label names no setting
        paired_table(records, "anil")
    for r in records[3:6]:
        r.label = "lstsd (lr=0.1)" if r.seed < 2 else None
    assert paired_table(records, "lstsd").startswith("Paired by seed against 'lstsd'")  # a whole label
    with pytest.raises(ReportError, match=r"matches 2 rows \(lstsd \(lr=0.1\); lstsd\)"):
        paired_table(records, "method=lstsd")                           # the method of two rows


def test_paired_table_gives_a_teacher_or_ensemble_its_own_row():
    from lstsd.harness.report import paired_table
    records = [_record("vanilla", "r", "d", s, a) for s, a in ((0, 80.0), (1, 82.0))]
    records += [_record("mean_teacher", "r", "d", s, a, {"test_accuracy_teacher": teacher})
                for s, a, teacher in ((0, 80.5, 81.0), (1, 81.5, 84.0))]
    records += [_record("snapshot_ensembles", "r", "d", 0, 79.0, {"test_accuracy_ensemble": 81.0})]
    lines = paired_table(records, "vanilla").splitlines()
    assert "| r | mean_teacher | +0.00 ± 0.71 | 1 / 0 / 1 | +0.00 | 1 |" in lines
    assert "| r | mean_teacher (teacher) | +1.50 ± 0.71 | 2 / 0 / 0 | +3.00 | 0.2 |" in lines
    assert "| r | snapshot_ensembles | -1.00 | 0 / 0 / 1 | — | — |" in lines
    assert "| r | snapshot_ensembles (ensemble) | +1.00 | 1 / 0 / 0 | — | — |" in lines


def test_paired_table_takes_a_teacher_row_as_the_reference():
    from lstsd.harness.report import ReportError, paired_table
    records = [_record("vanilla", "r", "d", s, a) for s, a in ((0, 80.0), (1, 82.0))]
    records += [_record("mean_teacher", "r", "d", s, a, {"test_accuracy_teacher": teacher})
                for s, a, teacher in ((0, 80.5, 81.0), (1, 81.5, 84.0))]
    table = paired_table(records, "mean_teacher (teacher)")
    assert "against 'mean_teacher (teacher)'" in table
    lines = table.splitlines()
    assert "| r | vanilla | -1.50 ± 0.71 | 0 / 0 / 2 | -3.00 | 0.2 |" in lines
    assert "| r | mean_teacher | -1.50 ± 1.41 | 0 / 0 / 2 | -1.50 | 0.37 |" in lines
    assert not any(line.startswith("| r | mean_teacher (teacher) |") for line in lines)
    with pytest.raises(ReportError, match=r"rows: vanilla; mean_teacher; mean_teacher \(teacher\)"):
        paired_table(records, "ema")
