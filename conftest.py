"""Doctest collection (``pytest --doctest-modules`` over src/lstsd): skip an integration module whose framework
is not installed, instead of failing to import it (install the extras: pip install -e '.[lightning,transformers]').

This file sits at the root of the repository, outside the package, so that no test-only file ships in the
wheel (tests/test_install.py checks); pytest reads it for every path under the root, src/lstsd included.
"""

import importlib.util


def _installed(*names: str) -> bool:
    return any(importlib.util.find_spec(name) is not None for name in names)


_INTEGRATIONS = "src/lstsd/integrations/"
collect_ignore = []   # paths relative to this file's folder
if not _installed("lightning", "pytorch_lightning"):
    collect_ignore.append(_INTEGRATIONS + "lightning.py")
if not _installed("transformers") or not _installed("accelerate"):
    collect_ignore.append(_INTEGRATIONS + "transformers.py")
