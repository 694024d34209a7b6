"""A process-wide setting changed while any thread needs it changed (library warnings silenced while reading)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SharedToggle"]


class SharedToggle:
    """Set a process-wide value while at least one caller is inside :meth:`held`, and restore the value found
    when the first caller entered once the last one leaves.

    A plain "save, set, restore" in two threads can interleave as save(A) set save(B) restore(A) restore(B): B
    saved the changed value and restores it, leaving the setting changed for good. The count under a lock
    makes the first entry save and the last exit restore.

    Args:
        get: reads the setting.
        set_: writes it.
        value: the value while held.
    """

    def __init__(self, get: Callable[[], Any], set_: Callable[[Any], None], value: Any) -> None:
        self._get, self._set, self._value = get, set_, value
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: Any = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """The block runs with the setting at ``value``."""
        with self._lock:
            if self._depth == 0:
                self._saved = self._get()
                self._set(self._value)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._set(self._saved)
