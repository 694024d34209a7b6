"""Training losses (2D and 3D)."""

from __future__ import annotations

from asfe3d.losses.fusion_loss import CONTENT_TARGETS, ASFEFusionLoss, gaussian_filter, ssim, structure_tensor

__all__ = ["ASFEFusionLoss", "CONTENT_TARGETS", "gaussian_filter", "ssim", "structure_tensor"]
