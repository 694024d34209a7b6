"""A stop asked for by a signal, remembered where an exception cannot carry it.

The command's signal handlers raise ``KeyboardInterrupt`` (Ctrl-C) or ``Terminated`` (SIGTERM) in the main thread.
Raised while SimpleITK runs a Python callback (the registration's progress), the exception came back as a
``RuntimeError`` and the cohort took it for one subject's failure and went on with the others; raised inside a
weak-reference callback, Python discarded it ("Exception ignored in ..."), and the run ended with exit 0. The
handlers also note the stop here; a cohort checks it around each subject and stops as asked.
"""

from __future__ import annotations

__all__ = ["request_stop", "stop_requested", "clear_stop"]

_asked: str | None = None


def request_stop(kind: str) -> None:
    """Note a stop asked for by a signal.

    Args:
        kind: ``"interrupt"`` (SIGINT) or ``"terminate"`` (SIGTERM).

    Raises:
        ValueError: another kind (quoted).
    """
    global _asked
    if kind not in ("interrupt", "terminate"):
        raise ValueError(f"kind must be 'interrupt' or 'terminate', got {kind!r}")
    _asked = kind


def stop_requested() -> str | None:
    """The stop asked for since the last :func:`clear_stop` (``"interrupt"`` or ``"terminate"``), or ``None``."""
    return _asked


def clear_stop() -> None:
    """Forget a noted stop (a command that starts, or one that has reported it)."""
    global _asked
    _asked = None
