"""LSTSDTrainer on causal language models: a tiny randomly initialised Llama (no download) with the
usual collators, gradient accumulation normalised as the model's own loss, banks per supervised
token, evaluation that writes nothing, resume from checkpoint-N, PEFT (LoRA), and refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from lstsd.integrations.transformers import LSTSDTrainer, add_index_column  # noqa: E402
from lstsd.tokens import TokenBank  # noqa: E402

WORDS = [f"w{i}" for i in range(40)]
N = 12


def tokenizer() -> Any:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]",
                                                unk_token="[UNK]")


def tiny_llama(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(WORDS) + 3, hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                      max_position_embeddings=64, pad_token_id=0, eos_token_id=2)
    return transformers.LlamaForCausalLM(config)


def rows(answers_only: bool = True) -> list[dict[str, Any]]:
    """Prompt-answer pairs of different lengths; the loss on the answer tokens only."""
    g = torch.Generator().manual_seed(3)
    out = []
    for i in range(N):
        prompt = torch.randint(3, len(WORDS) + 3, (3,), generator=g).tolist()
        answer = torch.randint(3, len(WORDS) + 3, (2 + i % 4,), generator=g).tolist() + [2]
        ids = prompt + answer
        labels = [-100] * len(prompt) + answer if answers_only else list(ids)
        out.append({"input_ids": ids, "labels": labels} if answers_only else {"input_ids": ids})
    return out


def arguments(tmp_path: Path, **changes: Any) -> Any:
    settings: dict[str, Any] = dict(num_train_epochs=2, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                                    learning_rate=0.05, save_strategy="no", report_to=[], disable_tqdm=True,
                                    logging_steps=1, use_cpu=True, seed=0, data_seed=0, lr_scheduler_type="constant")
    settings.update(changes)
    return transformers.TrainingArguments(str(tmp_path / "out"), **settings)


def seq2seq(model: Any) -> Any:
    return transformers.DataCollatorForSeq2Seq(tokenizer(), model=model, padding=True)


def weights(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_vanilla_trains_exactly_as_the_plain_trainer_under_gradient_accumulation(tmp_path: Path):
    # The loss is normalised over the tokens of the whole accumulated batch, as the model's own is.
    plain_model = tiny_llama()
    # SGD: Adam's normalisation would magnify float rounding (a sum divided vs a mean scaled) in the weights.
    plain = transformers.Trainer(model=plain_model, args=arguments(tmp_path / "plain", optim="sgd"),
                                 train_dataset=rows(),
                                 data_collator=seq2seq(plain_model))
    plain_losses = [log["loss"] for log in plain.train() and plain.state.log_history if "loss" in log]
    model = tiny_llama()
    ours = LSTSDTrainer(model=model, args=arguments(tmp_path / "ours", optim="sgd"),
                        train_dataset=add_index_column(rows()),
                        data_collator=seq2seq(model), method="vanilla")
    ours.train()
    losses = [log["loss"] for log in ours.state.log_history if "loss" in log]
    assert losses == pytest.approx(plain_losses, rel=1e-5)
    for key, value in weights(plain_model).items():
        assert torch.allclose(weights(model)[key], value, atol=1e-6), key
    assert any("lstsd/ce" in log for log in ours.state.log_history)      # the loss's parts are logged


@pytest.mark.parametrize("collator", ["seq2seq", "language_modeling"])
def test_lstsd_keeps_one_target_per_supervised_token_and_evaluation_writes_nothing(tmp_path: Path, collator: str):
    model = tiny_llama()
    answers_only = collator == "seq2seq"
    data = rows(answers_only)
    make = seq2seq(model) if answers_only else transformers.DataCollatorForLanguageModeling(tokenizer(), mlm=False)
    trainer = LSTSDTrainer(model=model, args=arguments(tmp_path), train_dataset=add_index_column(data),
                           eval_dataset=data, data_collator=make, method="lstsd",
                           method_settings={"generation_epochs": 1})
    assert trainer.method.num_classes == len(WORDS) + 3 and trainer.method.per_token
    trainer.train()
    bank = trainer.method.short_term_bank
    assert isinstance(bank, TokenBank)
    supervised = [sum(1 for t in row["labels"][1:] if t != -100) if answers_only else len(row["input_ids"]) - 1
                  for row in data]
    assert bank.counts.tolist() == supervised and bool(bank.recorded[:bank.filled].all())
    logs = [log for log in trainer.state.log_history if "lstsd/short" in log]
    assert logs and logs[-1]["lstsd/short"] > 0                       # distilled in the second epoch
    before = {k: v.clone() for k, v in trainer.method.state_dict().items() if isinstance(v, torch.Tensor)}
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] > 0
    for key, value in trainer.method.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, before[key]), key


def test_resume_from_a_checkpoint_restores_the_per_token_banks(tmp_path: Path):
    def trainer_of(model: Any, out: Path, epochs: int = 3) -> Any:
        return LSTSDTrainer(model=model, args=arguments(out, num_train_epochs=epochs, save_strategy="epoch"),
                            train_dataset=add_index_column(rows()), data_collator=seq2seq(model), method="lstsd",
                            method_settings={"generation_epochs": 1, "bank_format": "sampled", "bank_samples": 4})
    full = trainer_of(tiny_llama(), tmp_path / "full")
    full.train()
    resumed = trainer_of(tiny_llama(seed=5), tmp_path / "full")
    checkpoint = sorted((tmp_path / "full" / "out").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[0]
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for key, value in full.method.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(resumed.method.state_dict()[key], value), key


def test_a_lora_model_trains_with_lstsd(tmp_path: Path):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                              task_type="CAUSAL_LM"))
    frozen = {k: v.clone() for k, v in model.named_parameters() if not v.requires_grad}
    trainer = LSTSDTrainer(model=model, args=arguments(tmp_path), train_dataset=add_index_column(rows()),
                           data_collator=seq2seq(model), method="lstsd", method_settings={"generation_epochs": 1})
    trainer.train()
    assert trainer.method.short_term_bank.filled == sum(sum(1 for t in r["labels"][1:] if t != -100) for r in rows())
    changed = [k for k, v in model.named_parameters() if v.requires_grad and "lora_B" in k and v.abs().sum() > 0]
    assert changed                                                     # the adapters learned
    assert all(torch.equal(v, frozen[k]) for k, v in model.named_parameters() if not v.requires_grad)


def test_methods_that_cannot_take_per_token_logits_are_refused_when_the_trainer_is_built(tmp_path: Path):
    model = tiny_llama()
    with pytest.raises(ValueError, match="'mean_teacher' cannot take a causal LM's per-token logits"):
        LSTSDTrainer(model=model, args=arguments(tmp_path), train_dataset=add_index_column(rows()),
                     data_collator=seq2seq(model), method="mean_teacher")
    config = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16, num_labels=2)
    classifier = transformers.BertForSequenceClassification(config)
    with pytest.raises(ValueError, match="per_token=True.*is not a causal LM"):
        LSTSDTrainer(model=classifier, args=arguments(tmp_path), train_dataset=add_index_column(
            [{"input_ids": torch.tensor([1, 2]), "labels": 0}]), method="lstsd",
            method_settings={"per_token": True, "bank_topk": 1})


def test_the_pretrained_long_term_teacher_needs_its_pass_before_train_and_then_anchors_every_epoch(tmp_path: Path):
    def build(out: Path) -> Any:
        model = tiny_llama()
        return LSTSDTrainer(model=model, args=arguments(out), train_dataset=add_index_column(rows()),
                            data_collator=seq2seq(model), method="lstsd",
                            method_settings={"generation_epochs": 1, "long_term_teacher": "pretrained"})
    with pytest.raises(RuntimeError, match="call method.record_initial"):
        build(tmp_path / "no-pass").train()
    trainer = build(tmp_path / "pass")
    trainer.model.eval()
    with torch.no_grad():   # the pass before training, as the README says: the trainer's own batches
        for batch in trainer.get_train_dataloader():
            logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            trainer.method.record_initial(logits, batch["labels"], batch["idx"])
    before = trainer.method.long_term_bank.values.clone()
    trainer.train()
    logs = [log for log in trainer.state.log_history if "lstsd/long" in log]
    assert logs and all(log["lstsd/long"] >= 0 for log in logs) and logs[0]["lstsd/long"] > 0
    assert torch.equal(trainer.method.long_term_bank.values, before)     # never rewritten
