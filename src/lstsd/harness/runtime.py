"""What a run needs from the process it runs in: its device and precision, autocast, the random
number generators (seeding, and their states for an exact resume), the progress display, and the
signals that stop it (SIGTERM is handled as Ctrl-C is: :func:`stop_on_signals`).

Example:
    >>> resolve_device("cpu"), resolve_precision("fp32", torch.device("cpu"))
    (device(type='cpu'), 'fp32')
    >>> seed_everything(0); state = rng_state(); first = torch.rand(1)
    >>> set_rng_state(state); bool(torch.rand(1) == first)     # the same draw again
    True
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["Interrupted", "Progress", "autocast", "hold_signals", "resolve_device", "resolve_precision", "rng_state",
           "same_precision", "seed_everything", "set_rng_state", "stop_on_signals"]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device=auto or cpu")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast on CUDA GPUs that support it, fp16 AMP on other GPUs; on the CPU, bf16
    autocast only where the CPU computes bf16 natively (AVX512-BF16 or AMX), else fp32.

    Without native bf16 the CPU emulates it: a ResNet-8 epoch took 85 s in bf16 against 9.4 s in
    fp32 on an AVX2 AMD EPYC. ``precision=bf16`` asks for it anyway.
    """
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("precision fp16 (AMP with loss scaling) needs CUDA; use bf16 or fp32 on CPU")
        return precision
    if device.type == "cuda":
        return "bf16" if _native_bf16() else "fp16"
    if device.type == "cpu" and torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX"):
        return "bf16"
    return "fp32"


def same_precision(a: str, b: str, device: torch.device) -> bool:
    """Whether the precision settings ``a`` and ``b`` resolve to the same precision on ``device``
    (``auto`` is ``fp32`` on a CPU without native bf16): what a resume compares.

    Example:
        >>> same_precision("bf16", "bf16", torch.device("cpu")), same_precision("fp32", "bf16", torch.device("cpu"))
        (True, False)
    """
    if a == b:
        return True
    try:
        return resolve_precision(a, device) == resolve_precision(b, device)
    except ValueError:   # a setting this device cannot run (fp16 on a CPU): not the same
        return False


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for ``precision`` (``bf16`` or ``fp16``) on ``device``; nothing for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's generator states (Python, NumPy, PyTorch, and CUDA's when present), for a checkpoint."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states :func:`rng_state` returned, so a resumed run draws what it would have drawn."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Progress:
    """A tqdm bar over the steps of an epoch when stderr is a terminal; otherwise (``auto``) one
    line per epoch on stderr when nothing else reports the epochs, so a run writing to a log file
    shows that it is alive."""

    def __init__(self, mode: str, *, epochs_reported: bool = True) -> None:
        self.enabled = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.lines = mode == "auto" and not self.enabled and not epochs_reported

    def wrap(self, iterable: Any, total: int, description: str) -> Any:
        """``iterable`` inside a context: a tqdm bar when enabled, else the iterable itself."""
        if not self.enabled:
            return contextlib.nullcontext(iterable)
        from tqdm.auto import tqdm
        return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)

    def epoch_done(self, line: str) -> None:
        """Print the epoch's line on stderr when nothing else reports the epochs."""
        if self.lines:
            print(line, file=sys.stderr, flush=True)


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal other than Ctrl-C's SIGINT (SIGTERM: ``kill``, a scheduler, a
    container stop): a :class:`KeyboardInterrupt`, so every place that handles Ctrl-C handles it.

    Example:
        >>> err = Interrupted(signal.SIGTERM)
        >>> isinstance(err, KeyboardInterrupt), err.name, err.exit_status
        (True, 'SIGTERM', 143)
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.name = signal.Signals(self.signum).name
        super().__init__(self.name)

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports a process stopped by it (143 for SIGTERM)."""
        return 128 + self.signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGTERM,)) -> Iterator[None]:
    """Within: each of ``signals`` raises :class:`Interrupted` in the main thread, as Ctrl-C raises
    ``KeyboardInterrupt`` (the step in progress is abandoned, the last checkpoint kept), and SIGINT
    raises ``KeyboardInterrupt`` even where the process started with it ignored (a job started in
    the background by a script): a SIGINT sent to lstsd stops it. The previous handlers come back on
    leaving. Does nothing outside the main thread (Python delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_interrupted) for s in signals}
    previous.setdefault(signal.SIGINT, signal.signal(signal.SIGINT, signal.default_int_handler))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def hold_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on (the caller restores them): while a stop is being reported
    or a pool of runs is being stopped, a second signal must not break off that work with a traceback."""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)


def _native_bf16() -> bool:
    """Whether the GPU computes bf16 natively (recent torch also answers True where it is emulated,
    slowly, e.g. on a V100 or T4, where fp16 is the faster choice)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:   # a torch without the argument: it reported native support only
        return bool(torch.cuda.is_bf16_supported())
