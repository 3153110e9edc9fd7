"""Doctest collection (pytest --doctest-modules over src/lstsd): skip an integration whose framework is
not installed, instead of failing to import it (install the extras: pip install 'lstsd[lightning,transformers]')."""

import importlib.util


def _installed(*names: str) -> bool:
    return any(importlib.util.find_spec(name) is not None for name in names)


collect_ignore = []
if not _installed("lightning", "pytorch_lightning"):
    collect_ignore.append("lightning.py")
if not _installed("transformers") or not _installed("accelerate"):
    collect_ignore.append("transformers.py")
