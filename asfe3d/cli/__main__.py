"""``python -m asfe3d.cli``: the ``asfe3d`` command."""

from __future__ import annotations

from asfe3d.cli import entry

entry()
