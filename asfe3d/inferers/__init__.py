"""The one network-inference step (:class:`FusionInferer`), used by ``asfe3d fuse`` and named by the bundle's
``inferer``: slice-wise (2D network) or sliding-window (3D network), stateless."""

from __future__ import annotations

from asfe3d.inferers.fusion import (
    DEFAULT_ROI,
    INFERER_MODES,
    FusionInferer,
    FusionSteps,
    auto_slice_axis,
    pet_band_residual,
)

__all__ = ["DEFAULT_ROI", "INFERER_MODES", "FusionInferer", "FusionSteps", "auto_slice_axis", "pet_band_residual"]
