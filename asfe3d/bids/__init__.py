"""BIDS in and out: find the T1w/PET pairs of a BIDS dataset (pybids) and write the fusion as BIDS derivatives.

Public API:
    - :func:`find_pairs`, :class:`BidsPair`, :class:`BidsIssue` (``asfe3d.bids.layout``): discovery and the rules
      that choose each PET's T1w.
    - :func:`run_bids`, :class:`PairResult`, :func:`derivative_paths`, :func:`write_dataset_description`,
      :func:`pair_done`, :func:`write_reports` (``asfe3d.bids.derivatives``): the resumable BIDS App run.

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
)
from asfe3d.bids.layout import BidsIssue, BidsPair, find_pairs, normalise_labels

__all__ = [
    "BIDS_VERSION",
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
]
