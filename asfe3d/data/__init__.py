"""Data sources: the simulated MNI-based MRI/PET pair (demo and 3D training data)."""

from __future__ import annotations

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
