"""Checkpoints that are never lost and never silently wrong.

* **Atomic**: written to a temporary file in the run directory, then renamed over ``checkpoint.pt``;
  a write that fails (disk full, killed) leaves the previous checkpoint untouched and removes its
  temporary file. Temporary files left by a killed process are removed by :func:`remove_stale_temporaries`.
* **Two generations**: the checkpoint being replaced is kept as ``checkpoint.prev.pt``, so one bad
  write never costs the run.
* **Verified**: the file holds a digest (BLAKE2b) of its whole content; :func:`load_checkpoint`
  recomputes it and refuses a torn, truncated or bit-flipped file with a
  :class:`CorruptCheckpointError` that names the file, and :func:`load_latest` falls back to
  the previous checkpoint.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "checkpoint.pt"
    ...     _ = save_checkpoint({"epoch": 0, "w": torch.ones(2)}, path)
    ...     _ = save_checkpoint({"epoch": 1, "w": torch.zeros(2)}, path)  # the first becomes .prev
    ...     data = bytearray(path.read_bytes()); data[-100] ^= 0xFF; _ = path.write_bytes(bytes(data))
    ...     state, used, problem = load_latest(path)
    >>> state["epoch"], used.name, problem is not None                    # a flipped byte: the previous one
    (0, 'checkpoint.prev.pt', True)
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT_FORMAT", "CorruptCheckpointError", "atomic_write_text", "content_digest", "load_checkpoint",
           "load_latest", "previous_path", "remove_stale_temporaries", "save_checkpoint"]

CHECKPOINT_FORMAT = 2


class CorruptCheckpointError(ValueError):
    """A checkpoint file that cannot be read back as written (torn, truncated, altered)."""


def previous_path(path: Path) -> Path:
    """``checkpoint.pt`` → ``checkpoint.prev.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def content_digest(obj: Any) -> str:
    """A digest of a nested checkpoint state: dicts (keys sorted), lists, tuples, tensors (dtype,
    shape, bytes), numpy arrays and plain values. Equal content gives an equal digest.

    Example:
        >>> content_digest({"a": torch.ones(2)}) == content_digest({"a": torch.ones(2)})
        True
        >>> content_digest({"a": torch.ones(2)}) == content_digest({"a": torch.tensor([1.0, 1.5])})
        False
    """
    h = hashlib.blake2b(digest_size=32)

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, np.ndarray):
            h.update(f"N{x.dtype}{x.shape}".encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, dict):
            h.update(f"D{len(x)}".encode())
            for k in sorted(x, key=repr):
                feed(k)
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"L{type(x).__name__}{len(x)}".encode())
            for item in x:
                feed(item)
        else:
            h.update(f"V{type(x).__name__}:{x!r}".encode())

    feed(obj)
    return h.hexdigest()


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` with its digest atomically to ``path``; keep the replaced file as ``.prev``.

    Raises:
        OSError: the write failed (e.g. ``errno.ENOSPC``, disk full); the previous checkpoint and
            ``.prev`` are untouched and the temporary file is removed.
    """
    tmp = _temporary(path)
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "digest": content_digest(state), "state": state}, tmp)
        with open(tmp, "rb") as f:   # on disk before the rename, or a crash could leave an empty file
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if path.exists():   # the current file becomes .prev through a second name: `path` never goes missing
        staged = _temporary(previous_path(path))
        staged.unlink(missing_ok=True)
        try:
            os.link(path, staged)
        except OSError:     # a file system without hard links
            shutil.copy2(path, staged)
        os.replace(staged, previous_path(path))
    os.replace(tmp, path)
    return path


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it: never a torn file (the
    run's ``config.yaml``, ``metrics.jsonl`` and ``results.json`` are written so)."""
    tmp = _temporary(path)
    try:
        tmp.write_text(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` and verify its digest.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptCheckpointError: the file is torn, truncated, altered, or not an lstsd checkpoint.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        wrapper = torch.load(path, map_location=map_location, weights_only=False)
    except PermissionError:
        raise
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
            AttributeError, ImportError, IndexError, TypeError, UnicodeDecodeError, io.UnsupportedOperation) as err:
        raise CorruptCheckpointError(f"{path} is torn or corrupt and cannot be read ({type(err).__name__}: "
                                     f"{str(err).splitlines()[0][:120] if str(err) else 'no detail'})") from None
    if not isinstance(wrapper, dict) or wrapper.get("format") != CHECKPOINT_FORMAT or "state" not in wrapper:
        raise CorruptCheckpointError(f"{path} is not an lstsd checkpoint of format {CHECKPOINT_FORMAT} "
                                     "(written by another program or an older lstsd)")
    if content_digest(wrapper["state"]) != wrapper.get("digest"):
        raise CorruptCheckpointError(f"{path} does not match its digest: its content was altered after it was "
                                     "written (a bad disk, a partial copy)")
    return wrapper["state"]


def load_latest(path: Path, map_location: Any = "cpu") -> tuple[dict[str, Any], Path, str | None]:
    """The newest readable checkpoint: ``path``, else ``checkpoint.prev.pt``.

    Returns ``(state, the file used, why path itself was not used or None)``.

    Raises:
        FileNotFoundError: neither file exists.
        CorruptCheckpointError: no readable checkpoint (the message names both files).
    """
    problems: list[str] = []
    for candidate in (path, previous_path(path)):
        try:
            return load_checkpoint(candidate, map_location), candidate, ("; ".join(problems) or None)
        except FileNotFoundError:
            problems.append(f"{candidate.name} is missing")
        except CorruptCheckpointError as err:
            problems.append(str(err))
    if not path.exists() and not previous_path(path).exists():
        raise FileNotFoundError(f"no checkpoint at {path} (nor {previous_path(path).name})")
    raise CorruptCheckpointError("; ".join(problems) + " — the run's state is lost: start it again "
                                 "(without --resume, in a fresh run directory) or restore a copy of the checkpoint")


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Remove temporary files (``.NAME.tmp-PID``) that a killed write left in ``run_dir``."""
    stale = [p for p in run_dir.glob(".*.tmp-*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
