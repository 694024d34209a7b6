#!/usr/bin/env python
"""Benchmark the ASFEFusion presets; see ``asfe3d.benchmark`` (``python scripts/benchmark.py --help``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from asfe3d.benchmark import main as _main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    return _main(argv, prog="python scripts/benchmark.py")


if __name__ == "__main__":
    sys.exit(main())
