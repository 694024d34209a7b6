"""HTML reports: one self-contained page per subject (fMRIPrep-style) and an index page for cohorts and BIDS runs.

Public API (figures are drawn with matplotlib; heavy imports happen when a report is drawn):
    - :func:`write_subject_report`: one fused pair -> one ``.html`` (images embedded as base64 PNG).
    - :func:`write_run_report`: the same after ``fuse_pair``, taking the images it is not given from the run's
      outputs and the MRI's input path.
    - :func:`render_pair_section`, :func:`failed_section`, :func:`write_report`: several pairs (sessions,
      tracers) in one subject's report.
    - :func:`write_index`, :class:`IndexEntry`: the cohort / BIDS index (thumbnails and flags).
    - :func:`read_report_summary`: the machine-readable summary embedded in a report.
    - :mod:`asfe3d.reports.text`: modality names and units, the command line, About and Methods text.
    - :func:`result_mapping`: a run's description from a ``FuseResult`` (its completion record).
"""

from __future__ import annotations

from asfe3d.reports.html import (
    IndexEntry,
    ReportSection,
    read_report_summary,
    result_mapping,
    verdict_of,
    write_index,
    write_report,
)
from asfe3d.reports.pair import failed_section, refusal_section, render_pair_section, write_subject_report
from asfe3d.reports.run import write_run_report

__all__ = [
    "IndexEntry",
    "ReportSection",
    "failed_section",
    "refusal_section",
    "read_report_summary",
    "render_pair_section",
    "result_mapping",
    "verdict_of",
    "write_index",
    "write_report",
    "write_run_report",
    "write_subject_report",
]
