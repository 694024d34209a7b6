"""The settings of :class:`~asfe3d.inferers.FusionInferer`'s steps after the network, as one validated object.

:class:`FusionSteps` holds what the inferer does to the network's output before it returns it: the detail band's
width in mm, the consistency step (the fused image's coarse band moved towards the PET), the choose-the-larger-detail
step (the PET's sharpest edges) and the steered detail injection (more of the MRI's band where the PET's band is
noise), each with the grids it is taken on. What each step computes: :mod:`asfe3d.inferers.fusion`. The shipped
defaults of each mode are in :mod:`asfe3d.defaults`, and :func:`asfe3d.fusion.learned.mode_steps` turns them (and
the command's choices) into a :class:`FusionSteps`; ``docs/options.md`` says why each is what it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from asfe3d.utils import is_real

__all__ = ["FusionSteps"]


def _check_number(name: str, value: Any, what: str, holds: Callable[[float], bool]) -> float:
    """A setting that must be a finite number (not a bool) for which ``holds`` is true, as float; anything else
    refused with ``"<name> must be <what>, got <value>"``, the value quoted."""
    if not is_real(value) or not (np.isfinite(value) and holds(value)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def _check_strength(name: str, value: Any) -> float:
    """A step's strength: a number in ``[0, 1]`` (as float); anything else refused, quoted."""
    return _check_number(name, value, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)


def _check_mm(name: str, value: Any) -> float | None:
    """An optional size in mm: ``None`` or a finite number > 0 (as float); anything else refused, quoted."""
    return None if value is None else _check_number(name, value, "None or a number > 0 (mm)", lambda v: v > 0)


def _check_pair(name: str, value: Any, what: str, first: Callable[[float], bool],
                second: Callable[[float], bool]) -> tuple[float, float] | None:
    """``None`` or a pair of numbers for which ``first`` and ``second`` hold (a JSON list is taken); anything else
    refused with ``"<name> must be None or (<what>), got <value>"``, the whole value quoted."""
    if value is None:
        return None
    message = f"None or ({what})"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be {message}, got {value!r}")
    try:
        return _check_number(name, value[0], message, first), _check_number(name, value[1], message, second)
    except ValueError:  # quote the pair, not the one number
        raise ValueError(f"{name} must be {message}, got {value!r}") from None


def _check_coarse(name: str, value: Any, what: str = "strength in [0, 1]",
                  holds: Callable[[float], bool] = lambda v: 0 <= v <= 1) -> tuple[float, float] | None:
    """``None`` or ``(mm, v)``, a voxel size > 0 and a value for which ``holds`` is true; anything else refused
    with ``"<name> must be None or (mm > 0, <what>), got <value>"``, the value quoted."""
    return _check_pair(name, value, f"mm > 0, {what}", lambda v: v > 0, holds)


def _check_fine(name: str, value: Any) -> tuple[float, float] | None:
    """``None`` or ``(strength, fwhm_mm)``, a strength in ``[0, 1]`` and a width > 0 mm; anything else refused
    with ``"<name> must be None or (strength in [0, 1], fwhm_mm > 0), got <value>"``."""
    return _check_pair(name, value, "strength in [0, 1], fwhm_mm > 0", lambda v: 0 <= v <= 1, lambda v: v > 0)


@dataclasses.dataclass(frozen=True)
class FusionSteps:
    """The steps after the network, checked when made (frozen; :func:`dataclasses.replace` makes a changed copy).

    Every field's default is "no step" (or the step's own constant), so ``FusionSteps()`` returns the network's
    output as it is. Pairs given as JSON lists (a bundle config) are kept as tuples.

    Args:
        detail_fwhm_mm: for a network with a detail injection, the band's width in mm (e.g.
            :data:`~asfe3d.inferers.fusion.DETAIL_FWHM_MM`, the PET's resolution), turned into voxels per axis from
            the grid (see :func:`~asfe3d.inferers.fusion.grid_spacing`); ``None`` (default): always the network's
            own width in voxels.
        detail_fwhm_max_voxel_mm: take ``detail_fwhm_mm`` only on grids whose finest voxel size (mm) is under this;
            ``None`` (default): on every grid.
        pet_consistency: the strength ``s`` in ``[0, 1]`` of the consistency step after the network; ``0``
            (default): none.
        pet_consistency_min_voxel_mm: take the consistency step only on grids whose mean voxel size (mm) is at least
            this; ``None`` (default): on every grid.
        pet_consistency_optional: ``False`` (default): a call whose grid is unknown (a plain tensor without
            ``spacing``) is refused when the step is on; ``True``: it takes no step (for a mode's default strength,
            which cannot know every caller's grid; the completion record says what each image got).
        pet_consistency_coarse: ``(mm, strength)``: on grids whose mean voxel size is at least ``mm`` (> 0) the
            consistency step's strength is ``strength`` in ``[0, 1]`` instead of ``pet_consistency`` (and
            ``pet_consistency_min_voxel_mm`` does not apply there); ``None`` (default): one strength on every grid.
        pet_consistency_fine: ``(strength, fwhm_mm)``: on grids finer than ``pet_consistency_min_voxel_mm`` (which
            it needs) the consistency step is taken at ``strength`` in ``[0, 1]`` with a Gaussian of ``fwhm_mm``
            (> 0) instead of none; ``None`` (default): no step there.
        pet_detail_select: the strength ``s`` in ``[0, 1]`` of the choose-the-larger-detail step after the
            consistency step (the consistency step's grid rules apply); ``0`` (default): none.
        pet_detail_ratio: ``k`` > 0 of that step: the PET's band is taken where it is ``k`` times the MRI's.
        pet_detail_select_min_voxel_mm: take that step only on grids whose mean voxel size (mm) is at least this;
            ``None`` (default): on every grid.
        pet_detail_floor: ``t`` >= 0 of that step: the PET's band is taken only where it is over ``k`` times the
            MRI's by more than ``t`` times the PET band's spread in the brain
            (:func:`~asfe3d.inferers.fusion.pet_band_spread`); ``0`` (default): no floor.
        pet_detail_floor_max_voxel_mm: take that floor only on grids whose mean voxel size (mm) is under this;
            ``None`` (default): on every grid.
        detail_steer: ``q0`` > 0 of the steered detail injection, the last step; ``None`` (default): no step. Like
            the consistency step it needs the grid (``pet_consistency_optional`` skips a call without one).
        detail_steer_max_gain: the largest factor ``f`` >= 1 that step gives the injection.
        detail_steer_max_voxel_mm: take that step only on grids whose mean voxel size (mm) is under this; ``None``
            (default): on every grid.
        detail_steer_max_gain_coarse: ``(mm, cap)``: on grids whose mean voxel size is at least ``mm`` (> 0) the
            steered injection's largest factor is ``cap`` >= 1 instead of ``detail_steer_max_gain``; ``None``
            (default): one cap on every grid.

    Raises:
        ValueError: a bad setting (quoted).
    """

    detail_fwhm_mm: float | None = None
    detail_fwhm_max_voxel_mm: float | None = None
    pet_consistency: float = 0.0
    pet_consistency_min_voxel_mm: float | None = None
    pet_consistency_optional: bool = False
    pet_consistency_coarse: tuple[float, float] | None = None
    pet_consistency_fine: tuple[float, float] | None = None
    pet_detail_select: float = 0.0
    pet_detail_ratio: float = 2.0
    pet_detail_select_min_voxel_mm: float | None = None
    pet_detail_floor: float = 0.0
    pet_detail_floor_max_voxel_mm: float | None = None
    detail_steer: float | None = None
    detail_steer_max_gain: float = 1.5
    detail_steer_max_voxel_mm: float | None = None
    detail_steer_max_gain_coarse: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        checked = {
            "detail_fwhm_mm": _check_mm("detail_fwhm_mm", self.detail_fwhm_mm),
            "detail_fwhm_max_voxel_mm": _check_mm("detail_fwhm_max_voxel_mm", self.detail_fwhm_max_voxel_mm),
            "pet_consistency": _check_strength("pet_consistency", self.pet_consistency),
            "pet_consistency_min_voxel_mm": _check_mm("pet_consistency_min_voxel_mm",
                                                      self.pet_consistency_min_voxel_mm),
            "pet_consistency_coarse": _check_coarse("pet_consistency_coarse", self.pet_consistency_coarse),
            "pet_consistency_fine": _check_fine("pet_consistency_fine", self.pet_consistency_fine),
            "pet_detail_select": _check_strength("pet_detail_select", self.pet_detail_select),
            "pet_detail_ratio": _check_number("pet_detail_ratio", self.pet_detail_ratio, "a number > 0",
                                              lambda v: v > 0),
            "pet_detail_select_min_voxel_mm": _check_mm("pet_detail_select_min_voxel_mm",
                                                        self.pet_detail_select_min_voxel_mm),
            "pet_detail_floor": _check_number("pet_detail_floor", self.pet_detail_floor, "a number >= 0",
                                              lambda v: v >= 0),
            "pet_detail_floor_max_voxel_mm": _check_mm("pet_detail_floor_max_voxel_mm",
                                                       self.pet_detail_floor_max_voxel_mm),
            "detail_steer": None if self.detail_steer is None else _check_number(
                "detail_steer", self.detail_steer, "None or a number > 0", lambda v: v > 0),
            "detail_steer_max_gain": _check_number("detail_steer_max_gain", self.detail_steer_max_gain,
                                                   "a number >= 1", lambda v: v >= 1),
            "detail_steer_max_voxel_mm": _check_mm("detail_steer_max_voxel_mm", self.detail_steer_max_voxel_mm),
            "detail_steer_max_gain_coarse": _check_coarse("detail_steer_max_gain_coarse",
                                                          self.detail_steer_max_gain_coarse, "cap >= 1",
                                                          lambda v: v >= 1),
        }
        if checked["pet_consistency_fine"] is not None and checked["pet_consistency_min_voxel_mm"] is None:
            raise ValueError(f"pet_consistency_fine {self.pet_consistency_fine!r} needs pet_consistency_min_voxel_mm "
                             "(the grids it is taken on are those finer than that), got None")
        if not isinstance(self.pet_consistency_optional, bool):
            raise ValueError(f"pet_consistency_optional must be True or False, got {self.pet_consistency_optional!r}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def as_record(self) -> dict[str, Any]:
        """Every field as JSON-able values (pairs as lists), in field order: what a completion record says."""
        return {field.name: (list(value) if isinstance(value, tuple) else value)
                for field in dataclasses.fields(self) for value in (getattr(self, field.name),)}
