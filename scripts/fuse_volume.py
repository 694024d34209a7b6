#!/usr/bin/env python
"""Fuse an MRI and a PET volume: ``python scripts/fuse_volume.py sub01_mri.nii.gz sub01_pet.nii.gz``.

A thin wrapper around ``asfe3d fuse`` (same options; ``--help`` lists them).
"""

from __future__ import annotations

import sys

from asfe3d.cli import entry

if __name__ == "__main__":
    entry(["fuse", *sys.argv[1:]])
