"""Data sources: the HMIF 2D pairs, the simulated MNI-based MRI/PET pair (demo and 3D training data), and the
whole-head 3D subject simulator (:mod:`asfe3d.data.wholehead`, imported on demand: it needs the SPM12 data folder)."""

from __future__ import annotations

from asfe3d.data.hmif import HMIF_TASKS, HmifDataset, HmifPair, list_pairs, load_pair, split_pairs
from asfe3d.data.simulate import (
    DemoPair,
    apply_rigid_motion,
    brain_mask,
    load_mni,
    make_demo_pair,
    random_rigid,
    simulate_pet,
    simulate_pet_array,
    simulate_uptake,
)

__all__ = [
    "HMIF_TASKS",
    "HmifDataset",
    "HmifPair",
    "list_pairs",
    "load_pair",
    "split_pairs",
    "DemoPair",
    "apply_rigid_motion",
    "brain_mask",
    "load_mni",
    "make_demo_pair",
    "random_rigid",
    "simulate_pet",
    "simulate_pet_array",
    "simulate_uptake",
]
