"""Text tasks through the shared trainer: an LSTSD run end to end, the paper's GLUE configs, presets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from fakedata import write_glue, write_vader
from lstsd.harness import cli
from lstsd.harness.config import TrainConfig, load_config
from lstsd.harness.task import Task
from lstsd.harness.tasks import build_task
from lstsd.harness.text import TextCNN, encode_for_cnn, load_text_splits
from lstsd.harness.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                        reason="transformers not installed")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTSD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LSTSD_DATA", raising=False)


def test_text_cnn_lstsd_end_to_end(tmp_path):
    write_vader(tmp_path / "vader")
    cfg = TrainConfig(dataset="vader_movies", data_dir=str(tmp_path / "vader"), data_args={"max_length": 8},
                      model="text_cnn", model_args={"embed_dim": 8, "num_filters": 4}, method="lstsd",
                      method_args={"generation_epochs": 1, "temperature": 1.0}, epochs=3, batch_size=4,
                      lr=0.05, augment=False, precision="fp32", progress="none", run_dir=str(tmp_path / "run"))
    results = Trainer(cfg, log=None).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[0]["loss_short"] == 0 and rows[1]["loss_short"] > 0
    assert results["metrics"] == ["accuracy"] and 0 <= results["final"]["test_accuracy"] <= 100
    assert results["num_train"] == 18   # 22 rows with non-zero scores, 4 (20%, stratified) held out


def test_same_test_split_for_every_run_seed(tmp_path):
    write_vader(tmp_path / "vader")
    tests = []
    for seed in (0, 1):
        cfg = TrainConfig(dataset="vader_movies", data_dir=str(tmp_path / "vader"), model="text_cnn",
                          model_args={"embed_dim": 8, "num_filters": 4}, seed=seed, augment=False)
        tests.append(build_task(cfg).data.test.labels)
    assert torch.equal(tests[0], tests[1])


@pytest.mark.parametrize("name", ["text_cnn", "cnn", "kim_cnn", "TextCNN", "Text-CNN"])
def test_text_cnn_aliases_take_the_text_cnn_path(tmp_path, name):
    """Every name of the text CNN gets the word-id vocabulary, never a transformer tokeniser."""
    write_vader(tmp_path / "vader")
    cfg = TrainConfig(dataset="vader_movies", data_dir=str(tmp_path / "vader"), data_args={"max_length": 8},
                      model=name, model_args={"embed_dim": 8, "num_filters": 4}, augment=False)
    task = build_task(cfg)
    data, vocab = encode_for_cnn(load_text_splits("vader_movies", data_dir=tmp_path / "vader"), max_length=8)
    assert isinstance(task.model, TextCNN) and task.model.embedding.num_embeddings == len(vocab)
    assert set(task.data.test.features) == {"input_ids", "attention_mask"}
    assert torch.equal(task.data.test.features["input_ids"], data.test.features["input_ids"])


def test_text_data_set_refuses_a_vision_model_and_vice_versa(tmp_path):
    write_vader(tmp_path / "vader")
    with pytest.raises(ValueError, match="'resnet20' is a vision model.*needs a text model: text_cnn, bert, minilm"):
        build_task(TrainConfig(dataset="vader_movies", data_dir=str(tmp_path / "vader"), model="resnet20"))
    with pytest.raises(ValueError, match="unknown model 'text_cnn'"):
        build_task(TrainConfig(dataset="digits", model="text_cnn"))
    from lstsd.harness.text.task import build_text_task
    with pytest.raises(ValueError, match="'digits' is not a text data set; text data sets: vader_movies"):
        build_text_task(TrainConfig(dataset="digits", model="text_cnn"))


@needs_transformers
def test_transformer_through_the_trainer_with_pairs(tmp_path):
    """A tiny random BERT on RTE-style sentence pairs: dict features (with token_type_ids) end to end."""
    from transformers import BertConfig, BertTokenizerFast

    from lstsd.harness.text import encode_for_transformer, load_glue
    from lstsd.harness.text.models import HFSequenceClassifier

    write_glue(tmp_path / "glue")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "sleeps", "person", "rests", "it", "is"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    text = load_glue("rte", data_dir=tmp_path / "glue")
    data = encode_for_transformer(text, tokenizer, max_length=16)
    assert set(data.train.features) >= {"input_ids", "attention_mask", "token_type_ids"}
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32)
    model = HFSequenceClassifier.from_config(config, num_labels=2)
    cfg = TrainConfig(dataset="glue_rte", model="bert", method="lstsd",
                      method_args={"generation_epochs": 1, "temperature": 1.0}, epochs=2, batch_size=2,
                      optimizer="adamw", lr=1e-3, augment=False, progress="none", run_dir=str(tmp_path / "run"))
    results = Trainer(cfg, task=Task(data=data, model=model, metrics=tuple(text.metrics)), log=None).fit()
    assert "test_accuracy" in results["final"]


GLUE_CNN = sorted((ROOT / "configs" / "paper").glob("glue_*_cnn_lstsd.yaml"))


@pytest.mark.parametrize("path", GLUE_CNN, ids=[p.stem for p in GLUE_CNN])
def test_paper_glue_cnn_configs_take_a_step(path, tmp_path):
    write_glue(tmp_path / "glue")
    raw = yaml.safe_load(path.read_text())
    assert raw["epochs"] == 50 and raw["batch_size"] == 32 and raw["lr"] == 8e-3
    assert raw["method_args"]["temperature"] == 1.0 and raw["method_args"]["generation_epochs"] == 6
    cfg = load_config(path, [f"data_dir={tmp_path / 'glue'}", "epochs=1", "progress=none",
                             f"run_dir={tmp_path / 'run'}"])
    results = Trainer(cfg, log=None).fit()
    task = raw["dataset"].removeprefix("glue_")
    want = {"cola": {"test_matthews"}, "mrpc": {"test_accuracy", "test_f1"}}.get(task, {"test_accuracy"})
    assert set(results["final"]) == want


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "paper").glob("glue_*_bert_lstsd.yaml")),
                         ids=lambda p: p.stem)
def test_paper_glue_bert_configs_load(path):
    cfg = load_config(path)
    assert cfg.model == "bert" and cfg.optimizer == "adam" and cfg.lr == 5e-5
    assert cfg.batch_size == 64 and cfg.epochs == 50 and cfg.method_args["temperature"] == 1.0


def test_text_presets_are_meaningful():
    for name in ("text-quick", "text-minilm"):
        preset = cli.load_preset(name)
        lstsd_args = preset["method_args"]["lstsd"]
        cfg = load_config(None, [], base=dict(preset["config"], method="lstsd", method_args=lstsd_args))
        assert cfg.dataset == "vader_movies" and lstsd_args["temperature"] == 1.0
        assert cfg.epochs // lstsd_args["generation_epochs"] >= 2
        assert set(preset["methods"]) == {"vanilla", "lstsd"}


def test_cli_data_fetch(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_fetch(cache_dir=None, *, force=False):
        calls.append(force)
        return tmp_path / "vader"
    monkeypatch.setattr("lstsd.harness.text.vader.fetch_vader", fake_fetch)
    assert cli.main(["data", "fetch", "vader", "--force"]) == 0
    assert calls == [True] and str(tmp_path / "vader") in capsys.readouterr().out


def test_missing_vader_names_the_fetch_command(tmp_path, capsys):
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"methods": ["vanilla"], "seeds": [0],
                                      "config": {"dataset": "vader_tweets", "model": "text_cnn", "epochs": 1,
                                                 "data_dir": str(tmp_path / "nothing")}}))
    assert cli.main(["compare", "--preset", str(preset), "--out", str(tmp_path / "out")]) == 2
    assert "lstsd data fetch vader" in capsys.readouterr().err
