"""Small numerical helpers shared by the tiers (no dependency on the rest of the package)."""

from __future__ import annotations

from asfe3d.utils.checks import is_int
from asfe3d.utils.stats import outlier_limit, padding_mask, percentile

__all__ = ["is_int", "outlier_limit", "padding_mask", "percentile"]
