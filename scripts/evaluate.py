"""Score asfe and the classic baselines: ``python scripts/evaluate.py --hmif DIR --out OUT`` (same as
``asfe3d evaluate``; see ``docs/evaluation.md``)."""

from __future__ import annotations

import sys

from asfe3d.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
