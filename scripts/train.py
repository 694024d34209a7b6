"""Train an ASFE-Fusion network: ``python scripts/train.py --config configs/train_2d_pet_mri.yaml --data ...``."""

from __future__ import annotations

import sys

from asfe3d.training.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
