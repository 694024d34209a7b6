#!/usr/bin/env python
"""False-alarm and miss rates of the registration QC: thin wrapper of :mod:`asfe3d.evaluation.registration_rates`."""

from __future__ import annotations

import sys

from asfe3d.evaluation.registration_rates import main

if __name__ == "__main__":
    sys.exit(main())
