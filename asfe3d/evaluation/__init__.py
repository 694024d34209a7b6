"""Evaluation of asfe against the classic baselines (2D HMIF pairs, 3D MRI/PET volumes): ``asfe3d evaluate``.

See ``docs/evaluation.md``.
"""

from __future__ import annotations

from asfe3d.evaluation.evaluate import (
    BASELINES,
    DEFAULT_METHODS,
    LOWER_IS_BETTER,
    CaseResult,
    EvalCase,
    NetworkOptions,
    build_fusers,
    count_wins,
    evaluate_case,
    expand_methods,
    figure_panels,
    fused_output_path,
    hmif_case_pairs,
    load_hmif_case,
    load_volume_case,
    markdown_summary,
    mean_table,
    read_pairs_csv,
    save_figure,
    save_fused_case,
    win_table,
    write_rows_csv,
)

__all__ = [
    "BASELINES", "DEFAULT_METHODS", "LOWER_IS_BETTER", "CaseResult", "EvalCase", "NetworkOptions", "build_fusers", "count_wins",
    "evaluate_case", "expand_methods", "figure_panels", "fused_output_path", "hmif_case_pairs", "load_hmif_case",
    "load_volume_case", "markdown_summary", "mean_table", "read_pairs_csv", "save_figure", "save_fused_case",
    "win_table", "write_rows_csv",
]
