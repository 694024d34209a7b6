"""BIDS in and out: find the T1w/PET pairs of a BIDS dataset (pybids) and write the fusion as BIDS derivatives.

Public API:
    - :func:`find_pairs`, :class:`BidsPair`, :class:`BidsIssue`, :class:`BidsIgnore` (``asfe3d.bids.layout``):
      discovery, the rules that choose each PET's T1w, and the dataset's ``.bidsignore``.
    - :func:`run_bids`, :class:`PairResult`, :func:`derivative_paths`, :func:`write_dataset_description`,
      :func:`pair_done`, :func:`write_reports`, :func:`written_units` (``asfe3d.bids.derivatives``): the resumable
      BIDS App run.

``pybids`` is imported only when a dataset is indexed.
"""

from __future__ import annotations

from asfe3d.bids.derivatives import (
    BIDS_VERSION,
    PairResult,
    derivative_paths,
    pair_done,
    run_bids,
    write_dataset_description,
    write_reports,
    written_units,
)
from asfe3d.bids.layout import BidsIgnore, BidsIssue, BidsPair, find_pairs, normalise_labels

__all__ = [
    "BIDS_VERSION",
    "BidsIgnore",
    "BidsIssue",
    "BidsPair",
    "PairResult",
    "derivative_paths",
    "find_pairs",
    "normalise_labels",
    "pair_done",
    "run_bids",
    "write_dataset_description",
    "write_reports",
    "written_units",
]
