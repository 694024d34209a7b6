"""MONAI ``CumulativeIterationMetric`` computing the fusion metrics per batch item."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

from asfe3d.metrics.functional import METRIC_NAMES, fusion_metrics, to_8bit

__all__ = ["FusionMetric"]


class FusionMetric(CumulativeIterationMetric):
    """Fusion quality metrics (all 11 of :data:`METRIC_NAMES` or a selection) for each item of a batch.

    Each call appends a ``(B, n_metrics)`` float64 tensor (columns in :attr:`names` order) to the buffer;
    :meth:`aggregate` returns the mean of every column as ``{name: value}``. The values are those of
    :func:`asfe3d.metrics.functional.fusion_metrics` (8-bit conventions, see ``docs/metrics.md``).

    Args:
        names: metric names to compute, from :data:`METRIC_NAMES`; ``None`` for all 11 (kept in that order).
        reduction: what :meth:`aggregate` gives per metric, by default: ``"mean"`` over the items (NaN items left
            out, as MONAI's reductions do), ``"sum"``, or ``"none"`` (every item's value, a ``(N,)`` tensor).

    Raises:
        ValueError: unknown, duplicated or no names, or an unknown reduction (quoted).

    Example::

        metric = FusionMetric(names=["SSIM", "PSNR"])
        metric(y_pred=fused, y=torch.cat([mri, pet], dim=1))  # fused (B, 1, H, W[, D]), sources (B, 2, ...)
        metric.aggregate()  # {"SSIM": ..., "PSNR": ...}
    """

    def __init__(self, names: Sequence[str] | None = None, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
        if names is None:
            self.names: list[str] = list(METRIC_NAMES)
        else:
            if isinstance(names, str):
                raise ValueError(f"names must be a sequence of metric names, got the string {names!r}.")
            names = list(names)
            unknown = [n for n in names if n not in METRIC_NAMES]
            if unknown:
                raise ValueError(f"unknown metric names {unknown}; choose from {METRIC_NAMES}.")
            if not names or len(set(names)) != len(names):
                raise ValueError(f"names must be non-empty and without duplicates, got {names}.")
            self.names = [n for n in METRIC_NAMES if n in names]

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Metrics of every batch item.

        Args:
            y_pred: fused images ``(B, 1, H, W[, D])`` in ``[0, 1]``.
            y: sources ``(B, 2, H, W[, D])`` in ``[0, 1]``, channels ``[A (MRI), B (PET)]``.
            mask: optional boolean head masks ``(B, 1, H, W[, D])`` or ``(B, H, W[, D])``.
            kwargs: unused (accepted for MONAI's interface).

        Returns:
            float64 tensor ``(B, len(names))``; NaN for an item whose two sources hold nothing (both 0 at 8 bits
            everywhere, or in its mask: an empty end slice of a volume scored slice by slice), which
            :meth:`aggregate`'s mean leaves out (its PSNR was inf, the mean of every item's with it).

        Raises:
            ValueError: missing ``y``, wrong ranks, channel counts or mismatched shapes, or an empty batch (the message
                quotes them).
        """
        if y is None:
            raise ValueError("FusionMetric needs the two sources as y (B, 2, H, W[, D]).")
        if y_pred.ndim not in (4, 5) or y_pred.shape[1] != 1:
            raise ValueError(f"y_pred must have shape (B, 1, H, W[, D]), got {tuple(y_pred.shape)}.")
        if y.ndim != y_pred.ndim or y.shape[1] != 2 or y.shape[0] != y_pred.shape[0] or y.shape[2:] != y_pred.shape[2:]:
            raise ValueError(
                f"y must have shape (B, 2, *spatial) matching y_pred {tuple(y_pred.shape)}, got {tuple(y.shape)}."
            )
        if y_pred.shape[0] == 0:  # MONAI's buffer failed on it with an unrelated TypeError
            raise ValueError(f"FusionMetric got an empty batch (y_pred {tuple(y_pred.shape)}): nothing to score.")
        if mask is not None:
            if not isinstance(mask, (torch.Tensor, np.ndarray)):
                raise ValueError(f"mask must be a tensor or array, got {type(mask).__name__}.")
            expected = [(y_pred.shape[0], 1, *y_pred.shape[2:]), (y_pred.shape[0], *y_pred.shape[2:])]
            if tuple(mask.shape) not in [tuple(int(v) for v in e) for e in expected]:
                raise ValueError(
                    f"mask must have shape (B, [1,] *spatial) matching y_pred {tuple(y_pred.shape)}, "
                    f"got {tuple(mask.shape)}."
                )
        rows = []
        for i in range(y_pred.shape[0]):
            if _nothing_to_fuse(y[i], None if mask is None else mask[i]):  # an empty end slice of a volume
                rows.append([float("nan")] * len(self.names))
                continue
            try:
                vals = fusion_metrics(
                    y_pred[i, 0], y[i, 0], y[i, 1], mask=None if mask is None else mask[i], names=self.names
                )
            except ValueError as exc:  # which item of the batch (an empty mask, a NaN voxel)
                if y_pred.shape[0] == 1:
                    raise
                raise ValueError(f"batch item {i}: {exc}") from None
            rows.append([vals[n] for n in self.names])
        return torch.tensor(rows, dtype=torch.float64)

    def _compute_list(  # type: ignore[override]
        self, y_pred: Any, y: Any = None, mask: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        """List of channel-first items: like MONAI's, with ``mask`` split per item (a list or a batch-first tensor)."""
        if y is None:
            raise ValueError("FusionMetric needs the two sources as y (a list of (2, H, W[, D]) tensors).")
        if len(y_pred) != len(y):
            raise ValueError(f"y_pred and y must list as many items, got {len(y_pred)} and {len(y)}.")
        if mask is not None and len(mask) != len(y_pred):
            raise ValueError(f"mask must list one mask per item ({len(y_pred)}), got {len(mask)}.")
        rows = []
        for i, (p, s) in enumerate(zip(y_pred, y)):
            try:
                rows.append(self._compute_tensor(
                    torch.as_tensor(p).detach().unsqueeze(0),
                    torch.as_tensor(s).detach().unsqueeze(0),
                    mask=None if mask is None else torch.as_tensor(mask[i]).unsqueeze(0),
                ))
            except ValueError as exc:
                if len(y_pred) == 1:
                    raise
                raise ValueError(f"item {i}: {exc}") from None
        return torch.cat(rows, dim=0)

    def aggregate(self, reduction: str | None = None) -> dict[str, Any]:  # type: ignore[override]
        """Every metric over all accumulated items.

        Args:
            reduction: ``"mean"`` (NaN items left out), ``"sum"`` or ``"none"``; ``None``: the metric's own.

        Returns:
            ``{name: value}`` in :attr:`names` order: a float for ``"mean"`` / ``"sum"`` (NaN when every item is
            NaN), the ``(N,)`` float64 tensor of the items' values for ``"none"``.

        Raises:
            ValueError: nothing accumulated yet, or an unknown reduction (quoted).
        """
        how = self.reduction if reduction is None else _check_reduction(reduction)
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor) or data.numel() == 0:
            raise ValueError("FusionMetric.aggregate: nothing accumulated; call the metric on a batch first.")
        data = data.reshape(-1, len(self.names))
        if how == "none":
            return {n: data[:, i].clone() for i, n in enumerate(self.names)}
        values = data.nanmean(dim=0) if how == "mean" else data.nansum(dim=0)
        seen = (~torch.isnan(data)).any(dim=0)  # nansum over NaN alone is 0: a run with nothing scored read as 0
        return {n: float(v) if ok else float("nan") for n, v, ok in zip(self.names, values, seen)}


def _check_reduction(reduction: Any) -> str:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return str(reduction)


def _nothing_to_fuse(sources: torch.Tensor, mask: Any) -> bool:
    """Whether both sources (``(2, *spatial)`` in ``[0, 1]``) are 0 at 8 bits (:func:`to_8bit`, the metrics' own
    grey levels) everywhere, or everywhere in ``mask``."""
    values = torch.as_tensor(sources).detach()
    if mask is not None:
        inside = torch.as_tensor(mask).detach().to(values.device).bool().reshape(values.shape[1:])
        values = values[:, inside]
    if values.numel() == 0 or not bool(torch.isfinite(values).all()):
        return False  # an empty mask, a NaN: the metrics refuse them, naming the item
    return not to_8bit(values.float().cpu().numpy()).any()
