"""WordNet 3.0 definitions as an instruction-tuning set: "Define the word 'X' (noun)." → its gloss.

Source: Princeton WordNet 3.0 (Miller, "WordNet: A Lexical Database for English", CACM 1995;
Fellbaum (ed.), "WordNet: An Electronic Lexical Database", MIT Press 1998), as Debian's package
``wordnet-base`` installs it: ``/usr/share/wordnet/data.{noun,verb,adj,adv}``. Licence: the WordNet
3.0 licence (a BSD-style licence; the header of every data file and
``/usr/share/doc/wordnet-base/copyright``), which permits use, copying and distribution with the
copyright notice. The glosses were written by the WordNet lexicographers, not by us.

Format (``wndb(5WN)``): after a licence header (lines starting with two spaces), one synset per
line: ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [pointers] ... | gloss``,
``w_cnt`` in hexadecimal, words with ``_`` for spaces (adjectives may carry a marker such as
``(a)``). The gloss is a definition followed by quoted examples separated by ``; ``; we keep the
definition (the text before the first quoted example).

Examples: one per (lemma, part of speech), the definition of its first synset in the file order
(WordNet lists a lemma's synsets by file offset, not by frequency: this is a fixed, documented
choice, not "the main sense"). The split is by lemma: a word is in the training or in the held-out
set, never both (:func:`definition_examples`).

Example:
    >>> rows = read_definitions("adv", limit=2)                # doctest: +SKIP
    >>> rows[0]                                                 # doctest: +SKIP
    ('a cappella', 'adv', 'without musical accompaniment')
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.splits import data_source
from ..errors import DataNotFoundError

__all__ = ["PARTS_OF_SPEECH", "Definition", "DefinitionSet", "chat_definitions", "definition_examples",
           "definitions_source",
           "load_wordnet_definitions", "prompt_of", "read_definitions", "wordnet_dir"]

PARTS_OF_SPEECH = {"noun": "noun", "verb": "verb", "adj": "adjective", "adv": "adverb"}
DEFAULT_DIR = Path("/usr/share/wordnet")
_MARKER = re.compile(r"\((a|p|ip)\)$")        # adjective position markers: attributive, predicative, ...

Definition = tuple[str, str, str]             # (lemma, part of speech, definition)


def wordnet_dir() -> Path:
    """The folder of WordNet's data files: ``$LSTSD_WORDNET`` or ``/usr/share/wordnet``.

    Raises:
        DataNotFoundError: (a ``FileNotFoundError``) naming the Debian package ``wordnet-base``.
    """
    folder = Path(os.environ.get("LSTSD_WORDNET", DEFAULT_DIR))
    if not (folder / "data.noun").is_file():
        raise DataNotFoundError(f"WordNet 3.0 is not installed at {folder} (no data.noun)",
                                "apt-get install wordnet-base (make data does), or set LSTSD_WORDNET to a folder with "
                                "data.noun, data.verb, data.adj, data.adv")
    return folder


def _definition(gloss: str) -> str:
    """The definition part of a gloss: the text before its first quoted example."""
    text = gloss.strip()
    quote = text.find('"')
    if quote >= 0:
        text = text[:quote]
    return text.strip().rstrip(";").strip()


def read_definitions(pos: str, folder: Path | None = None, limit: int | None = None) -> list[Definition]:
    """``(lemma, pos, definition)`` of the first synset of every lemma of one part of speech
    (``noun``, ``verb``, ``adj``, ``adv``), in file order; ``limit`` stops after that many."""
    if pos not in PARTS_OF_SPEECH:
        raise ValueError(f"pos must be one of {sorted(PARTS_OF_SPEECH)}, got {pos!r}")
    path = (folder or wordnet_dir()) / f"data.{pos}"
    seen: set[str] = set()
    out: list[Definition] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  ") or "|" not in line:
                continue                                   # the licence header
            fields, _, gloss = line.partition("|")
            parts = fields.split()
            count = int(parts[3], 16)
            definition = _definition(gloss)
            if not definition:
                continue
            for k in range(count):
                lemma = _MARKER.sub("", parts[4 + 2 * k]).replace("_", " ").lower()
                if lemma not in seen:
                    seen.add(lemma)
                    out.append((lemma, pos, definition))
            if limit is not None and len(out) >= limit:
                return out[:limit]
    return out


@dataclass
class DefinitionSet:
    """Training and held-out definitions, disjoint by lemma, and where they came from
    (:func:`definitions_source`: folder, files and a sha256 of every definition read)."""

    train: list[Definition]
    heldout: list[Definition]
    source: dict[str, Any] = field(default_factory=dict)


def definitions_source(rows: list[Definition], folder: Path, parts: tuple[str, ...]) -> dict[str, Any]:
    """The run's record of the data (:func:`lstsd.harness.data.splits.data_source`): origin
    (``$LSTSD_WORDNET`` or ``system``), the folder, the ``data.*`` files read and a sha256 of every
    ``(lemma, pos, definition)`` parsed from them, in file order (the same for every copy of WordNet 3.0)."""
    text = "".join(f"{lemma}\t{pos}\t{definition}\n" for lemma, pos, definition in rows).encode("utf-8")
    origin = "$LSTSD_WORDNET" if os.environ.get("LSTSD_WORDNET") else "system"
    return data_source("wordnet_definitions", origin, folder, [np.frombuffer(text, dtype=np.uint8)],
                       files=[folder / f"data.{pos}" for pos in parts])


def definition_examples(*, train_size: int, heldout_size: int, seed: int = 0,
                        parts: tuple[str, ...] = ("noun", "verb", "adj", "adv"), max_words: int = 24,
                        folder: Path | None = None) -> DefinitionSet:
    """A seeded draw of ``train_size`` training and ``heldout_size`` held-out definitions of at most
    ``max_words`` words, with no lemma in both (a lemma's parts of speech go to the same side)."""
    folder = folder or wordnet_dir()
    every = [r for pos in parts for r in read_definitions(pos, folder)]
    rows = [r for r in every if len(r[2].split()) <= max_words]
    lemmas = sorted({lemma for lemma, _, _ in rows})
    random.Random(seed).shuffle(lemmas)
    heldout_lemmas = set(lemmas[:len(lemmas) // 5])               # a fifth of the words are held out
    train = [r for r in rows if r[0] not in heldout_lemmas]
    heldout = [r for r in rows if r[0] in heldout_lemmas]
    if train_size > len(train) or heldout_size > len(heldout):
        raise ValueError(f"asked for {train_size} training and {heldout_size} held-out definitions; WordNet has "
                         f"{len(train)} and {len(heldout)} of at most {max_words} words on each side")
    rng = random.Random(seed + 1)
    return DefinitionSet(rng.sample(train, train_size), rng.sample(heldout, heldout_size),
                         definitions_source(every, folder, parts))


def load_wordnet_definitions(*, train_size: int = 2000, heldout_size: int = 1000, max_words: int = 24,
                             seed: int = 0, **options: Any) -> DefinitionSet:
    """The harness's loader of the data set ``wordnet_definitions`` (its ``data_args``, defaults
    2,000 training and 1,000 held-out definitions of at most 24 words, seed 0):
    :func:`definition_examples` with the values as integers."""
    return definition_examples(train_size=int(train_size), heldout_size=int(heldout_size), seed=int(seed),
                               max_words=int(max_words), **options)


def prompt_of(lemma: str, pos: str) -> str:
    """The instruction of one example: ``Define the word 'X' (noun).``"""
    return f"Define the word '{lemma}' ({PARTS_OF_SPEECH[pos]})."


def chat_definitions(tokenizer: Any, rows: list[Definition]) -> list[dict[str, list[int]]]:
    """``rows`` as instruction examples in ``tokenizer``'s chat template, the loss on the definition's
    tokens only (:func:`lstsd.integrations.llm.chat_example`)."""
    from ...integrations.llm import chat_example  # the LM integration: imported only when encoding
    return [chat_example(tokenizer, prompt_of(lemma, pos), definition) for lemma, pos, definition in rows]
