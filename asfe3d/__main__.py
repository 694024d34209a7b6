"""``python -m asfe3d``: the ``asfe3d`` command (an entry point, like ``asfe3d/cli/__main__.py``; library code never
imports it)."""

from __future__ import annotations

from asfe3d.cli import entry

entry()
