"""The settings of a fusion run: one frozen object, validated once, recorded whole in the completion record.

:class:`Settings` groups what a run may be asked (``inputs``: how the volumes are read; ``registration``;
``fusion``: the method and where it runs; ``outputs``: which files besides the fused volume, their intensities and
colours). The command line (:func:`asfe3d.cli.options.settings_from_args`), cohorts, BIDS runs and the bundle build
one; :func:`asfe3d.pipeline.fuse_pair` takes it. The defaults are :mod:`asfe3d.defaults`'s, and every value is
checked when the object is made (one line naming the option and quoting the value:
:class:`~asfe3d.errors.Asfe3dInputError`), so a run never starts on a bad setting. Nothing heavy is imported here;
the checks that need a library (colour maps, CUDA) import it when they run.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asfe3d.defaults import (
    DEFAULT_COLORMAP,
    DEFAULT_DEVICE,
    DEFAULT_FRAME_REALIGN,
    DEFAULT_FRAME_REFERENCE,
    DEFAULT_METHOD,
    DEFAULT_MIN_OVERLAP,
    DEFAULT_MODE,
    DEFAULT_NIFTI_GEOMETRY,
    DEFAULT_OUTPUT_SCALE,
    DEFAULT_QC,
    DEFAULT_REGISTRATION,
    DEFAULT_REGISTRATION_THREADS,
    DEFAULT_SEED,
    DEFAULT_SLICE_AXIS,
    DEFAULT_STITCH,
    MODES,
    NIFTI_GEOMETRIES,
    OUTPUT_SCALES,
    PET_UNITS_CHOICES,
    QC_MODES,
    REGISTRATION_CHOICES,
    STITCH_MODES,
)
from asfe3d.errors import Asfe3dInputError
from asfe3d.utils import is_int

__all__ = ["Settings", "InputSettings", "RegistrationSettings", "FusionSettings", "OutputSettings",
           "OPTIONAL_OUTPUTS", "FLAT_NAMES", "flat_settings", "recorded_setting", "as_bool"]

#: the optional outputs (:class:`OutputSettings` fields) -> their kind in :class:`asfe3d.pipeline.FuseResult`
OPTIONAL_OUTPUTS = {"registered_pet": "registered_pet", "rgb": "rgb", "transform": "transform",
                    "preview": "preview", "report": "report"}


#: flat name (the command line's option, ``--save-registered-pet`` -> ``save_registered_pet``) -> the settings group
#: and field: the one table that joins the two (:meth:`Settings.from_flat`, the command line, earlier records)
FLAT_NAMES = {
    "mri_series": ("inputs", "mri_series"), "pet_series": ("inputs", "pet_series"),
    "mri_frame": ("inputs", "mri_frame"), "pet_frame": ("inputs", "pet_frame"),
    "frame_realign": ("inputs", "frame_realign"), "frame_reference": ("inputs", "frame_reference"),
    "pet_units": ("inputs", "pet_units"), "pet_sidecar": ("inputs", "pet_sidecar"),
    "dicom_strict": ("inputs", "dicom_strict"), "nifti_geometry": ("inputs", "nifti_geometry"),
    "allow_nonfinite": ("inputs", "allow_nonfinite"),
    "registration": ("registration", "method"), "qc": ("registration", "qc"), "seed": ("registration", "seed"),
    "registration_threads": ("registration", "threads"), "min_overlap": ("registration", "min_overlap"),
    "method": ("fusion", "method"), "mode": ("fusion", "mode"), "weights": ("fusion", "weights"),
    "device": ("fusion", "device"), "slice_axis": ("fusion", "slice_axis"), "roi_size": ("fusion", "roi_size"),
    "detail_injection": ("fusion", "detail_injection"), "stitch": ("fusion", "stitch"),
    "min_voxel_mm": ("fusion", "min_voxel_mm"), "pet_consistency": ("fusion", "pet_consistency"),
    "pet_detail_select": ("fusion", "pet_detail_select"), "detail_steer": ("fusion", "detail_steer"),
    "detail_fwhm_mm": ("fusion", "detail_fwhm_mm"), "pet_smooth_mm": ("fusion", "pet_smooth_mm"),
    "save_registered_pet": ("outputs", "registered_pet"), "rgb": ("outputs", "rgb"),
    "save_transform": ("outputs", "transform"), "preview": ("outputs", "preview"), "report": ("outputs", "report"),
    "output_scale": ("outputs", "scale"), "colormap": ("outputs", "colormap"), "overwrite": ("outputs", "overwrite"),
}


def _bad(option: str, problem: str) -> Asfe3dInputError:
    return Asfe3dInputError(None, f"{option}: {problem}")


def _is_real(value: Any) -> bool:
    """A finite real number (an ``int`` or ``float``, not a bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass's field in __post_init__


def _plain_values(group: Any) -> None:
    """Numpy values of a settings group as Python ones, before the group's checks: a scalar (``np.int64(3)``,
    ``np.float32(0.5)``) as its ``int`` / ``float``, an array as a list. Kept as given, a numpy integer seed was
    written into the completion record as the string ``"3"``, which the record's own settings then refused, and a
    float32 was refused as not a number."""
    import numpy as np

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, Mapping):  # a sidecar given as a mapping may hold numpy values too
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    for f in dataclasses.fields(group):
        value = getattr(group, f.name)
        if isinstance(value, (np.generic, np.ndarray, Mapping, list)):
            _set(group, f.name, plain(value))


def as_bool(option: str, value: Any) -> bool:
    """A switch: ``True`` or ``False``, also spelt as the words ``"true"`` / ``"false"`` (any case: what a
    command line such as ``python -m monai.bundle run ... --overwrite true`` passes); anything else is refused (a
    string ``"false"`` is truthy: never read by its truth value, never guessed).

    Args:
        option: the option's name, for the message (``"--overwrite"``).
        value: what was given.

    Returns:
        The bool.

    Raises:
        Asfe3dInputError: anything but a bool (numpy's too) or those two words (quoted).
    """
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(option, f"must be True or False, got {value!r}")


def _optional_text(option: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise _bad(option, f"must be None or a non-empty string, got {value!r}")


def _optional_path(obj: Any, name: str, option: str) -> None:
    """A path field: ``None`` or a non-empty ``str`` / ``PathLike`` (stored as a :class:`Path`)."""
    import os

    value = getattr(obj, name)
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _bad(option, f"must be None or a file path, got {value!r}")
    _set(obj, name, Path(value).expanduser())  # "~/x.json" as nibabel and the shell read it


def _json_mapping(option: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping field: a dict copy of JSON values with string keys (what a completion record can hold)."""
    import json

    try:
        copy = json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as err:
        raise _bad(option, f"must be a file path or a mapping of JSON values, got {value!r} ({err})") from None
    if not all(isinstance(k, str) for k in value):
        raise _bad(option, f"mapping keys must be strings, got {list(value)!r}")
    return copy


#: the most threads a setting may ask for (ITK and torch take an unsigned int; more than this is a typo)
MAX_THREADS = 1024


def _optional_frame(option: str, value: Any) -> None:
    if value is not None and (not is_int(value) or value < 0):
        raise _bad(option, f"must be an integer >= 0, got {value!r}")


@dataclass(frozen=True)
class InputSettings:
    """How the two volumes are read.

    Attributes:
        mri_series: DICOM SeriesInstanceUID of the MRI (a folder holding several series).
        pet_series: the same for the PET.
        mri_frame: a 4D MRI's 0-based frame (``None``: a 4D MRI is refused).
        pet_frame: a 4D PET's 0-based frame (``None``: the mean of its frames).
        frame_realign: realign a dynamic PET's frames (rigid) before averaging them.
        frame_reference: ``"mean"`` or the frame index the frames are realigned to.
        pet_units: ``None`` (as stored) or ``"suv"`` (body-weight SUV from the header or sidecar).
        pet_sidecar: the PET's JSON sidecar (BIDS or dcm2niix) for its units, dose, times and frame durations, or
            its content as a mapping of JSON values (a BIDS App's metadata with inheritance; kept as a dict, and
            recorded in full, so that a rerun after the metadata changed is not taken for the same run).
        dicom_strict: refuse DICOM series with gaps or gantry tilt instead of resampling them.
        nifti_geometry: ``auto``, ``sform`` or ``qform``: which NIfTI geometry to use when they disagree.
        allow_nonfinite: replace NaN/Inf voxels by 0 with a warning instead of refusing the input.
    """

    mri_series: str | None = None
    pet_series: str | None = None
    mri_frame: int | None = None
    pet_frame: int | None = None
    frame_realign: bool = DEFAULT_FRAME_REALIGN
    frame_reference: str | int = DEFAULT_FRAME_REFERENCE
    pet_units: str | None = None
    pet_sidecar: Path | dict[str, Any] | None = None
    dicom_strict: bool = False
    nifti_geometry: str = DEFAULT_NIFTI_GEOMETRY
    allow_nonfinite: bool = False

    def __post_init__(self) -> None:
        _plain_values(self)
        _optional_text("mri_series", self.mri_series)
        _optional_text("pet_series", self.pet_series)
        _optional_frame("mri_frame", self.mri_frame)
        _optional_frame("pet_frame", self.pet_frame)
        for name in ("frame_realign", "dicom_strict", "allow_nonfinite"):
            _set(self, name, as_bool(name, getattr(self, name)))
        if not (self.frame_reference == "mean" or (is_int(self.frame_reference) and self.frame_reference >= 0)):
            raise _bad("frame_reference", f"must be 'mean' or a frame index >= 0, got {self.frame_reference!r}")
        if self.pet_units is not None and self.pet_units not in PET_UNITS_CHOICES:
            raise _bad("pet_units", f"must be None or 'suv', got {self.pet_units!r}")
        if self.nifti_geometry not in NIFTI_GEOMETRIES:
            raise _bad("nifti_geometry", f"must be 'auto', 'sform' or 'qform', got {self.nifti_geometry!r}")
        if isinstance(self.pet_sidecar, Mapping):
            _set(self, "pet_sidecar", _json_mapping("pet_sidecar", self.pet_sidecar))
        else:
            _optional_path(self, "pet_sidecar", "pet_sidecar")

    def reader_kwargs(self, key: str) -> dict[str, Any]:
        """The :func:`asfe3d.io.read_volume` settings (``role`` aside) of the ``"mri"`` or the ``"pet"`` input.

        Raises:
            ValueError: ``key`` is neither.
        """
        if key not in ("mri", "pet"):
            raise ValueError(f"key must be 'mri' or 'pet', got {key!r}")
        kwargs: dict[str, Any] = {"series_uid": getattr(self, f"{key}_series"), "frame": getattr(self, f"{key}_frame"),
                                  "allow_nonfinite": self.allow_nonfinite, "dicom_strict": self.dicom_strict,
                                  "nifti_geometry": self.nifti_geometry}
        if key == "pet":
            kwargs.update(pet_units=self.pet_units, pet_sidecar=self.pet_sidecar, keep_frames=self.frame_realign)
        else:  # the outputs are on the MRI's grid: the whole run's memory is bounded when it is read
            from asfe3d.io.checks import RUN_BYTES_PER_MRI_VOXEL

            kwargs["work_bytes_per_voxel"] = RUN_BYTES_PER_MRI_VOXEL
        return kwargs


@dataclass(frozen=True)
class RegistrationSettings:
    """PET-to-MRI registration and its quality check.

    Attributes:
        method: ``auto``, ``rigid``, ``affine``, ``deformable`` or ``none``.
        qc: ``warn`` (a registration judged failed is written with a warning) or ``strict`` (refused).
        seed: sampling seed, in ``[0, 2^31 - 2]``.
        threads: ITK threads: 1 is bitwise reproducible; ``None`` uses every core.
        min_overlap: smallest fraction of the MRI head the registered PET must cover, in ``[0, 1]``.
    """

    method: str = DEFAULT_REGISTRATION
    qc: str = DEFAULT_QC
    seed: int = DEFAULT_SEED
    threads: int | None = DEFAULT_REGISTRATION_THREADS
    min_overlap: float = DEFAULT_MIN_OVERLAP

    def __post_init__(self) -> None:
        _plain_values(self)
        if self.method not in REGISTRATION_CHOICES:
            raise _bad("registration", f"must be one of {REGISTRATION_CHOICES}, got {self.method!r}")
        if self.qc not in QC_MODES:
            raise _bad("qc", f"must be one of {QC_MODES}, got {self.qc!r}")
        if not is_int(self.seed) or not 0 <= int(self.seed) < 2**31 - 1:
            raise _bad("seed", f"must be an integer in [0, 2147483646], got {self.seed!r}")
        if self.threads is not None and (not is_int(self.threads) or not 1 <= self.threads <= MAX_THREADS):
            raise _bad("registration_threads", f"must be None or an integer in [1, {MAX_THREADS}], got "
                                               f"{self.threads!r}")
        if not (_is_real(self.min_overlap) and 0.0 <= self.min_overlap <= 1.0):
            raise _bad("min_overlap", f"must be a fraction in [0, 1], got {self.min_overlap!r}")

    def register_kwargs(self) -> dict[str, Any]:
        """The :func:`asfe3d.registration.register_pet_to_mri` settings these give (``method`` aside)."""
        return {"seed": self.seed, "threads": self.threads}


@dataclass(frozen=True)
class FusionSettings:
    """The fusion method and where it runs.

    Attributes:
        method: ``mean``, ``max``, ``wavelet``, ``laplacian``, ``highpass`` or ``asfe`` (and registered methods).
        mode: for ``asfe``: ``slice`` (2D network) or ``volume`` (3D network).
        weights: for ``asfe``: a weight file instead of the shipped one.
        device: ``auto``, ``cpu`` or ``cuda[:N]`` (checked against this machine for ``asfe``).
        slice_axis: for ``asfe`` slice mode: ``auto`` (the MRI's axial voxel axis) or 0, 1, 2.
        roi_size: for ``asfe`` volume mode: the sliding window, three integers >= 1 (``None``: 128^3 windows, the
            size the shipped weights were scored and chosen with).
        detail_injection: for ``asfe``: the share of the MRI's detail band added to the output, in [0, 4]
            (``None``: the weights' own, 0.8 for the shipped 3D weights and 0.95 for the slice-mode 2D ones; 0 turns it
            off).
        stitch: for ``asfe`` volume mode: what the overlapping windows are blended as, ``output`` (the fused
            windows), ``logits`` (the network's stem-stride logits, the full-resolution tail once: about 0.5 s and
            0.3-0.5 GB less on a 0.88 mm head) or ``auto`` (the default: ``logits`` where the network and the
            windows allow it, else ``output``; :class:`asfe3d.inferers.FusionInferer`).
        min_voxel_mm: for ``asfe``: the finest voxel size (mm) the network runs on; along each axis where the MRI
            is finer, the pair is fused on a grid of about this size and the MRI's finer detail added back
            (:class:`asfe3d.inferers.FusionInferer`). ``auto``: the mode's default
            (:data:`asfe3d.defaults.MIN_VOXEL_MM_BY_MODE`: 1 mm in slice mode, the MRI's own grid in volume mode);
            ``None``: always the MRI's own grid; or a number > 0.
        pet_consistency: for ``asfe``: the strength in [0, 1] of the consistency step after the network (the fused
            image's band coarser than the PET's resolution moved towards the PET;
            :class:`asfe3d.inferers.FusionInferer`). ``auto``: the mode's default
            (:data:`asfe3d.defaults.PET_CONSISTENCY_BY_MODE`: 0.5 in slice mode; in volume mode 0.25 on MRI grids of
            0.95-1.5 mm, 0.5 on coarser ones and 0.4 with a 12 mm Gaussian on finer ones,
            :data:`asfe3d.defaults.PET_CONSISTENCY_FINE_BY_MODE`); a number is taken on every grid (with the 6 mm
            Gaussian); 0 turns it off.
        pet_detail_select: for ``asfe``: the strength in [0, 1] of the choose-the-larger-detail step after the
            consistency step (where the PET's band below its resolution is twice the MRI's, the fused band there
            becomes the PET's; :class:`asfe3d.inferers.FusionInferer`). ``auto``: the mode's default
            (:data:`asfe3d.defaults.PET_DETAIL_SELECT_BY_MODE`: 0.5 in volume mode on MRI grids of 1.5 mm or
            coarser, 1 in slice mode on the same grids); a number is taken on every grid; 0 turns it off.
        detail_steer: for ``asfe``: ``q0`` of the steered detail injection, the last step (where the PET's band
            below its resolution follows the MRI's little, a noisy PET, the MRI's detail band is added at up to 1.5
            times the network's gain, 1.75 in volume mode on MRI grids finer than 1.5 mm; on every MRI grid in both
            modes;
            :class:`asfe3d.inferers.FusionInferer`).
            ``auto``: the mode's default (:data:`asfe3d.defaults.DETAIL_STEER_BY_MODE`); ``None`` or 0: no step; or
            a number > 0.
        detail_fwhm_mm: for ``asfe``: the width (FWHM, mm) of the MRI detail band the network injects and the
            steps after it split at, along every axis (:class:`asfe3d.inferers.FusionInferer`). ``auto``: the mode's
            default (:data:`asfe3d.defaults.DETAIL_FWHM_MM_BY_MODE`: 6 mm in volume mode on MRI grids with an axis
            finer than 0.8 mm, elsewhere the network's own width in voxels); ``None`` or 0: the network's own width
            in voxels on every grid; or a number > 0 (e.g. a PET reconstructed at 8 mm), on every grid.
        pet_smooth_mm: the registered PET smoothed by a Gaussian of this FWHM (mm) on the MRI's grid before it is
            normalised and fused, for every method (a noisy PET: low-dose or short-frame scans); in ``[0, 20]``,
            ``0`` (default): not smoothed. The registered PET written by ``--save-registered-pet`` is not smoothed.
    """

    method: str = DEFAULT_METHOD
    mode: str = DEFAULT_MODE
    weights: Path | None = None
    device: str = DEFAULT_DEVICE
    slice_axis: int | str = DEFAULT_SLICE_AXIS
    roi_size: tuple[int, int, int] | None = None
    detail_injection: float | None = None
    stitch: str = DEFAULT_STITCH
    min_voxel_mm: float | str | None = "auto"
    pet_consistency: float | str = "auto"
    pet_detail_select: float | str = "auto"
    detail_steer: float | str | None = "auto"
    detail_fwhm_mm: float | str | None = "auto"
    pet_smooth_mm: float = 0.0

    def __post_init__(self) -> None:
        _plain_values(self)
        from asfe3d.fusion.base import available_methods

        if self.method not in available_methods():
            raise _bad("method", f"unknown fusion method {self.method!r}; choose one of {available_methods()}")
        if self.mode not in MODES:
            raise _bad("mode", f"must be 'slice' or 'volume', got {self.mode!r}")
        if self.stitch not in STITCH_MODES:
            raise _bad("stitch", f"must be one of {', '.join(STITCH_MODES)}, got {self.stitch!r}")
        if self.roi_size is not None:
            roi = tuple(self.roi_size) if isinstance(self.roi_size, (list, tuple)) else ()
            if len(roi) != 3 or not all(is_int(r) and r >= 1 for r in roi):
                raise _bad("roi_size", f"must be three integers >= 1, got {self.roi_size!r}")
            _set(self, "roi_size", tuple(int(r) for r in roi))
        if self.detail_injection is not None:
            g = self.detail_injection
            if not (_is_real(g) and 0 <= g <= 4):
                raise _bad("detail_injection", f"must be a number in [0, 4], got {g!r}")
            _set(self, "detail_injection", float(g))
        v = self.min_voxel_mm
        if v not in ("auto", None):
            if not (_is_real(v) and v > 0):
                raise _bad("min_voxel_mm", f"must be 'auto', None or a voxel size > 0 (mm), got {v!r}")
            _set(self, "min_voxel_mm", float(v))
        for name in ("pet_consistency", "pet_detail_select"):  # a step's strength
            c = getattr(self, name)
            if c != "auto":
                if not (_is_real(c) and 0 <= c <= 1):
                    raise _bad(name, f"must be 'auto' or a number in [0, 1], got {c!r}")
                _set(self, name, float(c))
        q = self.detail_steer
        if q not in ("auto", None):
            if not (_is_real(q) and q >= 0):
                raise _bad("detail_steer", f"must be 'auto', None or a number >= 0 (0: no step), got {q!r}")
            _set(self, "detail_steer", float(q) if q > 0 else None)
        w = self.detail_fwhm_mm
        if w not in ("auto", None):
            if not (_is_real(w) and 0 <= w <= 20):
                raise _bad("detail_fwhm_mm", f"must be 'auto', None or a width in [0, 20] mm (0: the network's own "
                                             f"width in voxels), got {w!r}")
            _set(self, "detail_fwhm_mm", float(w) if w > 0 else None)
        m = self.pet_smooth_mm
        if not (_is_real(m) and 0 <= m <= 20):
            raise _bad("pet_smooth_mm", f"must be a width in [0, 20] mm (0: the PET as registered), got {m!r}")
        _set(self, "pet_smooth_mm", float(m))
        if self.slice_axis != "auto" and (not is_int(self.slice_axis) or self.slice_axis not in (0, 1, 2)):
            raise _bad("slice_axis", f"must be 'auto', 0, 1 or 2, got {self.slice_axis!r}")
        _optional_path(self, "weights", "weights")
        self._check_device()

    def network_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`asfe3d.fusion.learned.AsfeFusionMethod` these settings choose (the
        network, its weights and device, and the steps after it, :func:`asfe3d.fusion.learned.mode_steps`; the
        slicing axis is given per call)."""
        from asfe3d.fusion.learned import mode_steps

        steps = mode_steps(self.mode, pet_consistency=self.pet_consistency, pet_detail_select=self.pet_detail_select,
                           detail_steer=self.detail_steer, detail_fwhm_mm=self.detail_fwhm_mm)
        return {"mode": self.mode, "weights": self.weights, "device": self.device, "roi_size": self.roi_size,
                "detail_injection": self.detail_injection, "stitch": self.stitch, "min_voxel_mm": self.min_voxel_mm,
                "steps": steps}

    def _check_device(self) -> None:
        device = self.device
        if not isinstance(device, str) or not (device in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", device)):
            raise _bad("device", f"must be auto, cpu or cuda[:N], got {device!r}")
        if self.method == "asfe" and device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise _bad("device", f"{device!r} asked for, but CUDA is not available on this machine")
            index = int(device.split(":")[1]) if ":" in device else 0
            if index >= torch.cuda.device_count():
                raise _bad("device", f"{device!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")


@dataclass(frozen=True)
class OutputSettings:
    """What is written besides the fused volume, and how.

    Attributes:
        registered_pet: ``True`` (default name) or a path: the PET resampled onto the MRI grid.
        rgb: ``True`` or a path: a colour (RGB24) volume, the PET colour map fused over the MRI in Y.
        transform: ``True`` or a path: the ``.tfm`` (maps MRI points to PET points).
        preview: ``True`` or a path: a tri-planar PNG (MRI / registered PET / fused).
        report: ``True`` or a path: a self-contained HTML report.
        scale: fused intensities: ``mri`` (back through the MRI's window) or ``unit`` (``[0, 1]``).
        colormap: matplotlib colour map of the RGB volume and the preview.
        overwrite: replace this run's earlier outputs (never an input).
    """

    registered_pet: bool | Path = False
    rgb: bool | Path = False
    transform: bool | Path = False
    preview: bool | Path = False
    report: bool | Path = False
    scale: str = DEFAULT_OUTPUT_SCALE
    colormap: str = DEFAULT_COLORMAP
    overwrite: bool = False

    def __post_init__(self) -> None:
        _plain_values(self)
        for name in OPTIONAL_OUTPUTS:
            value = getattr(self, name)
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # a command line's word, as
                value = as_bool(name, value)  # overwrite reads it (a file named "false" was asked for)
                _set(self, name, value)
            if value is None:
                _set(self, name, False)
            elif not isinstance(value, bool):
                if not isinstance(value, (str, Path)) or not str(value):
                    raise _bad(name, f"must be True, False or a path, got {value!r}")
                _set(self, name, Path(value))
        if self.scale not in OUTPUT_SCALES:
            raise _bad("output_scale", f"must be one of {OUTPUT_SCALES}, got {self.scale!r}")
        _set(self, "overwrite", as_bool("overwrite", self.overwrite))
        import matplotlib

        if self.colormap not in matplotlib.colormaps:
            raise _bad("colormap", f"unknown colour map {self.colormap!r} (matplotlib names such as hot, inferno, "
                                   "viridis)")

    def paths(self, defaults: dict[str, Path]) -> dict[str, Path | None]:
        """Each optional output's path: ``None`` when not asked, ``defaults[name]`` for ``True``, else the path.

        Args:
            defaults: the default path of each optional output (:func:`asfe3d.pipeline.derived_output_paths`).

        Returns:
            Output name (:data:`OPTIONAL_OUTPUTS`) -> path or ``None``.
        """
        out: dict[str, Path | None] = {}
        for name, kind in OPTIONAL_OUTPUTS.items():
            value = getattr(self, name)
            out[name] = None if value is False else defaults[kind] if value is True else Path(value)
        return out


@dataclass(frozen=True)
class Settings:
    """Everything a fusion run may be asked, in four groups, each checked when made.

    Attributes:
        inputs: how the volumes are read.
        registration: PET-to-MRI registration and its quality check.
        fusion: the method and where it runs.
        outputs: what is written besides the fused volume, and how.
    """

    inputs: InputSettings = field(default_factory=InputSettings)
    registration: RegistrationSettings = field(default_factory=RegistrationSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    outputs: OutputSettings = field(default_factory=OutputSettings)

    def __post_init__(self) -> None:
        for name, kind in _GROUPS.items():
            value = getattr(self, name)
            if isinstance(value, dict):  # a group given as its fields (configs, records)
                _check_fields(name, value)
                _set(self, name, kind(**value))
            elif not isinstance(value, kind):
                raise TypeError(f"Settings.{name} must be a {kind.__name__} or a dict, got {type(value).__name__}")

    def replace(self, **groups: dict[str, Any]) -> Settings:
        """A copy with some fields of some groups changed (checked again), e.g.
        ``settings.replace(outputs={"overwrite": True}, fusion={"device": "cuda:1"})``.

        Raises:
            TypeError: an unknown group or field.
            Asfe3dInputError: a bad value.
        """
        unknown = sorted(set(groups) - set(_GROUPS))
        if unknown:
            raise TypeError(f"unknown settings group(s) {unknown}; the groups are {sorted(_GROUPS)}")
        for name, fields in groups.items():
            _check_fields(name, fields)
        changed = {name: dataclasses.replace(getattr(self, name), **fields) for name, fields in groups.items()}
        return dataclasses.replace(self, **changed)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Every setting as JSON values (paths as strings, tuples as lists), by group: the completion record's
        ``settings``; :meth:`from_dict` gives the object back."""
        def plain(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, tuple):
                return list(value)
            return value

        return {name: {f.name: plain(getattr(getattr(self, name), f.name))
                       for f in dataclasses.fields(getattr(self, name))} for name in _GROUPS}

    @classmethod
    def from_flat(cls, **values: Any) -> Settings:
        """The settings from flat names (:data:`FLAT_NAMES`, as the command line names them), e.g.
        ``Settings.from_flat(method="mean", registration="none", rgb=True)``; the rest default.

        Raises:
            TypeError: an unknown name (with the closest known ones).
            Asfe3dInputError: a bad value.
        """
        import difflib

        groups: dict[str, dict[str, Any]] = {}
        for flat, value in values.items():
            if flat not in FLAT_NAMES:
                close = difflib.get_close_matches(flat, FLAT_NAMES, n=2)
                raise TypeError(f"unknown setting {flat!r}" + (f" (did you mean {' or '.join(close)}?)" if close
                                                                else f"; the settings are {sorted(FLAT_NAMES)}"))
            group, name = FLAT_NAMES[flat]
            groups.setdefault(group, {})[name] = value
        return cls.from_dict(groups)

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]] | None = None) -> Settings:
        """The settings of :meth:`as_dict` (or of a config: any subset of groups and fields; the rest default).

        Raises:
            TypeError: an unknown group or field.
            Asfe3dInputError: a bad value.
        """
        from collections.abc import Mapping

        data = dict(data or {})
        unknown = sorted(set(data) - set(_GROUPS))
        if unknown:
            raise TypeError(f"unknown settings group(s) {unknown}; the groups are {sorted(_GROUPS)}")
        groups = {}
        for name, fields in data.items():
            if not isinstance(fields, Mapping):
                raise TypeError(f"settings group {name!r} must be a mapping of its fields, got {fields!r}")
            _check_fields(name, fields)
            groups[name] = _GROUPS[name](**dict(fields))
        return cls(**groups)


def _check_fields(group: str, fields: Any) -> None:
    """Refuse a field that group ``group`` does not have, with the closest known ones (:class:`TypeError`)."""
    import difflib

    known = [f.name for f in dataclasses.fields(_GROUPS[group])]
    for key in fields:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=2)
            raise TypeError(f"unknown setting {group}.{key}" + (f" (did you mean {' or '.join(close)}?)" if close
                                                                else f"; the {group} settings are {known}"))


_GROUPS: dict[str, type] = {"inputs": InputSettings, "registration": RegistrationSettings, "fusion": FusionSettings,
                            "outputs": OutputSettings}

def recorded_setting(recorded: Any, group: str, name: str, default: Any = None) -> Any:
    """One setting from a completion record's ``settings``: grouped as :meth:`Settings.as_dict` writes them, or
    flat as earlier records and the bundle's do (``output_scale``, ``registration``...).

    Args:
        recorded: the record's ``settings`` (anything else counts as empty).
        group: ``inputs``, ``registration``, ``fusion`` or ``outputs``.
        name: the field (:class:`Settings`'s names).
        default: when the record does not say.

    Returns:
        The recorded value, else ``default``.
    """
    from collections.abc import Mapping

    if not isinstance(recorded, Mapping):
        return default
    grouped = recorded.get(group)
    if isinstance(grouped, Mapping) and name in grouped:
        return grouped[name]
    flat = next((f for f, where in FLAT_NAMES.items() if where == (group, name)), name)
    return recorded.get(flat, default)


def flat_settings(recorded: Any) -> dict[str, Any]:
    """A completion record's ``settings`` under the command's flat names (``output_scale``, ``registration``,
    ``qc``...), whether they were recorded grouped (:meth:`Settings.as_dict`) or flat; other recorded entries
    (e.g. the bundle's block) are kept as they are.

    Args:
        recorded: the record's ``settings`` (anything else counts as empty).

    Returns:
        Flat name -> value, for the names the record says.
    """
    from collections.abc import Mapping

    if not isinstance(recorded, Mapping):
        return {}
    groups = {group for group, _ in FLAT_NAMES.values()}
    out = {k: v for k, v in recorded.items() if k not in groups or not isinstance(v, Mapping)}
    missing = object()
    for flat, (group, name) in FLAT_NAMES.items():
        value = recorded_setting(recorded, group, name, missing)
        if value is not missing:
            out[flat] = value
    return out
