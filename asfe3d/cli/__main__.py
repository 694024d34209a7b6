"""``python -m asfe3d.cli``: the ``asfe3d`` command."""

from __future__ import annotations

import sys

from asfe3d.cli import main

sys.exit(main())
