"""A report straight from a finished run: the images a report needs, taken from memory or from the run's outputs.

:func:`write_run_report` is what ``fuse --report`` and cohort runs call after :func:`asfe3d.pipeline.fuse_pair`:
images the caller still holds are used as they are; the others are read from the run's outputs (the fused volume,
the registered PET) and the MRI from its input path (any format :func:`asfe3d.io.read_volume`
reads, DICOM folders included).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_run_report", "run_output_paths"]

#: names an output may have in a ``FuseResult`` or in a completion record, per image
_KINDS = {"fused": ("fused",), "registered_pet": ("registered_pet", "pet_on_mri")}


def run_output_paths(result: Any, record: Mapping[str, Any]) -> dict[str, Path]:
    """The run's image outputs that exist on disk: ``fused`` and ``registered_pet`` (when written).

    Args:
        result: a ``FuseResult`` (its ``outputs``) or a mapping.
        record: the run's description (its ``outputs``: kind -> path or ``{"path": ...}``).

    Returns:
        Image kind -> existing path.
    """
    found: dict[str, Path] = {}
    sources = [getattr(result, "outputs", None) or {}, record.get("outputs") or {}]
    for kind, names in _KINDS.items():
        for source in sources:
            for name in names:
                value = source.get(name) if isinstance(source, Mapping) else None
                value = value.get("path") if isinstance(value, Mapping) else value
                if value and Path(value).is_file() and kind not in found:
                    found[kind] = Path(value)
    return found


def write_run_report(
    path: str | Path,
    result: Any,
    *,
    mri_image: Any = None,
    pet_on_mri_image: Any = None,
    fused_image: Any = None,
    pet_as_read_image: Any = None,
    title: str | None = None,
    overwrite: bool = False,
    viewer: bool = False,
) -> Path:
    """Write the report of a finished :func:`~asfe3d.pipeline.fuse_pair` run.

    Args:
        path: the ``.html`` file.
        result: the run's ``FuseResult`` (or its completion record as a mapping).
        mri_image: the MRI, when the caller has it (nibabel image or ``(array, RAS affine)``); else read from the
            recorded input path.
        pet_on_mri_image: the registered PET; else the run's registered-PET output.
        fused_image: the fused volume; else the run's fused output.
        pet_as_read_image: the PET as read (its own grid) for the "before" view; else read from its input path.
        title: the page title (default: the report's file stem).
        overwrite: replace an existing report.
        viewer: add the interactive NiiVue viewer (:mod:`asfe3d.reports.viewer`).

    Returns:
        The written path.

    Raises:
        ValueError: an image that is neither given nor among the run's outputs (e.g. the registered PET when the
            run did not save it: pass ``pet_on_mri_image`` or run with ``save_registered_pet``).
        Asfe3dInputError: the report exists and ``overwrite`` is False; the MRI cannot be read.
    """
    from asfe3d.reports.html import result_mapping
    from asfe3d.reports.pair import write_subject_report

    record = result_mapping(result)
    files = run_output_paths(result, record)
    if fused_image is None:
        if "fused" not in files:
            raise ValueError("no fused volume: pass fused_image or give a result whose fused output exists")
        fused_image = files["fused"]
    if pet_on_mri_image is None:
        if "registered_pet" not in files:
            raise ValueError("the run saved no registered PET: pass pet_on_mri_image (the PET on the MRI grid) or "
                             "run fuse_pair with save_registered_pet")
        pet_on_mri_image = files["registered_pet"]
    if mri_image is None:
        inputs = record.get("inputs") if isinstance(record.get("inputs"), Mapping) else {}
        mri = inputs.get("mri")
        mri_path = mri.get("path") if isinstance(mri, Mapping) else mri
        if not mri_path:
            raise ValueError("no MRI: pass mri_image or give a result that records the MRI's path")
        from asfe3d.io import read_volume

        settings = record.get("settings") if isinstance(record.get("settings"), Mapping) else {}
        from asfe3d.settings import recorded_setting

        vol = read_volume(mri_path, role="MRI", series_uid=recorded_setting(settings, "inputs", "mri_series"),
                          allow_nonfinite=True)
        mri_image = (vol.array_xyz(), vol.affine_ras)
    return write_subject_report(path, mri_image=mri_image, pet_on_mri_image=pet_on_mri_image,
                                fused_image=fused_image, pet_as_read_image=pet_as_read_image, result=record,
                                title=title, overwrite=overwrite, viewer=viewer)
