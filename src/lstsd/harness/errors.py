"""The harness's own exception types: foreseeable faults whose message already says what happened
and what to do (``<what> — <what to do>``), so that the CLI prints them as one line, without a
traceback (``lstsd <command>: error: <message>``; ``--debug`` shows the traceback too).

Every type is a :class:`HarnessError`. Most also derive from the built-in exception that code
written before them caught (a missing data set is still a ``FileNotFoundError``, a bad setting a
``ValueError``, a diverged run a ``FloatingPointError``), so ``except ValueError`` keeps working.

Raise one with the message in one piece, or with its two halves:

    >>> str(RunError("the loss is NaN at epoch 3/12 — lower lr or use precision=fp32"))
    'the loss is NaN at epoch 3/12 — lower lr or use precision=fp32'
    >>> err = DataNotFoundError("Fashion-MNIST is not in /data", "put the four IDX files there")
    >>> str(err), isinstance(err, FileNotFoundError), err.fix
    ('Fashion-MNIST is not in /data — put the four IDX files there', True, 'put the four IDX files there')
    >>> is_disk_full(OSError(28, "No space left on device")), is_disk_full(ValueError("no"))
    (True, False)
"""

from __future__ import annotations

import errno

__all__ = ["ConfigError", "ConfigNotFoundError", "DataNotFoundError", "DiskFullError", "DivergedError",
           "DownloadError", "HarnessError", "OutputError", "ReportError", "RunError", "is_disk_full", "one_line"]

SEPARATOR = " — "


class HarnessError(Exception):
    """A foreseeable fault. ``str(err)`` is one line: ``<what> — <what to do>``.

    Args:
        what: what is wrong (naming the file, key or value).
        fix: what to do about it; may be left out when ``what`` already holds both halves.
    """

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what, self.fix = what, fix
        self.message = one_line(what if not fix else f"{what}{SEPARATOR}{fix}")
        super().__init__(self.message)

    def __str__(self) -> str:   # OSError subclasses would otherwise print "[Errno ...]"
        return self.message


class ConfigError(HarnessError, ValueError):
    """A config, preset or ``--set`` value that cannot make a run (unknown key, bad value, missing key)."""


class ConfigNotFoundError(HarnessError, FileNotFoundError):
    """A config or preset file that does not exist."""


class DataNotFoundError(HarnessError, FileNotFoundError):
    """A data set is not where it was asked for (``--data-dir``, ``$LSTSD_DATA``) or anywhere."""


class DownloadError(HarnessError, OSError):
    """A download failed (offline, server error, corrupt transfer)."""


class OutputError(HarnessError, OSError):
    """An output folder cannot be created or written (read-only, a file in the way, permissions)."""


class ReportError(HarnessError, ValueError):
    """A run folder that ``lstsd report`` cannot read (corrupt ``results.json``, no finished runs...)."""


class RunError(HarnessError):
    """A run cannot go on; the message says why and what to do (the CLI prints it, no traceback)."""


class DivergedError(RunError, FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and the step."""


class DiskFullError(RunError, OSError):
    """The disk filled up while a run wrote its files; free space, then ``--resume``."""


def one_line(text: str) -> str:
    """``text`` with its line breaks (and the indentation after them) folded into ``"; "``.

    Example:
        >>> one_line("not found. Looked in:\\n  - /a\\n  - /b")
        'not found. Looked in:; - /a; - /b'
    """
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines)


def is_disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` (or an exception it wraps) says the disk is full.

    ``torch.save`` reports a full disk as a ``RuntimeError`` ("file write failed"), so the text
    is looked at as well as ``errno``.
    """
    seen = 0
    while err is not None and seen < 20:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(err, DiskFullError) or "No space left on device" in str(err) \
                or "file write failed" in str(err):
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False
