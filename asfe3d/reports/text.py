"""What a report says in words: modality names and units, the command line, the About rows and the Methods text.

Everything here is read from the run's description (the completion record, see
:func:`asfe3d.reports.html.result_mapping`):

- the anatomical image is called ``CT`` when its DICOM Modality is CT or its file carries the BIDS suffix ``_ct``,
  else ``MRI``; its values are HU on a CT and "MRI units" (arbitrary) otherwise;
- the PET's units are SUV (body weight) when the run converted them (``input_info.pet.pet_units``), else the units
  its DICOM header or JSON sidecar states (Bq/mL...), else "units not recorded";
- the command line is the one recorded (``command``) or, by default, that of the process writing the report (a
  report is written by the run itself);
- the Methods paragraph is built from the recorded settings (registration, QC, PET units, fusion and its weights'
  SHA-256) with numbered references, in sentences a user can paste into a paper.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "methods_groups",
    "REFERENCES",
    "anatomical_name",
    "anatomical_units",
    "pet_units",
    "fused_units",
    "command_line",
    "about_rows",
    "methods_text",
    "weights_sha256",
    "registration_outcome",
    "optimiser_metric",
]

#: the references a Methods paragraph may cite (key -> one line)
REFERENCES = {
    "asfe": "Gu X, Wang L, Deng Z, Cao Y, Huang X, Zhu Y. Adaptive spatial and frequency experts fusion network for "
            "medical image fusion. Biomedical Signal Processing and Control 96:106478, 2024. "
            "https://doi.org/10.1016/j.bspc.2024.106478",
    "lift3d": "Liu L, Fan X, Zhang C, Dai J, Xie Y, Liang X. Three-Dimensional Medical Image Fusion with Deformable "
              "Cross-Attention. arXiv:2310.06291, 2023.",
    "monai": "Cardoso MJ, et al. MONAI: An open-source framework for deep learning in healthcare. arXiv:2211.02701, "
             "2022.",
    "sitk": "Lowekamp BC, Chen DT, Ibáñez L, Blezek D. The design of SimpleITK. Frontiers in Neuroinformatics 7:45, "
            "2013. https://doi.org/10.3389/fninf.2013.00045",
    "sitk_nb": "Yaniv Z, Lowekamp BC, Johnson HJ, Beare R. SimpleITK image-analysis notebooks: a collaborative "
               "environment for education and reproducible research. Journal of Digital Imaging 31(3):290-303, 2018. "
               "https://doi.org/10.1007/s10278-017-0037-8",
    "mattes": "Mattes D, Haynor DR, Vesselle H, Lewellen TK, Eubank W. PET-CT image registration in the chest using "
              "free-form deformations. IEEE Transactions on Medical Imaging 22(1):120-128, 2003. "
              "https://doi.org/10.1109/TMI.2003.809072",
}

_BIDS_CT = re.compile(r"_ct(\.nii(\.gz)?|\.json)?$", re.IGNORECASE)
#: stored PET units (lower case, spaces removed) -> how a report writes them
_UNIT_NAMES = {"bqml": "Bq/mL", "bq/ml": "Bq/mL", "bq/cc": "Bq/mL", "kbq/ml": "kBq/mL", "kbq/cc": "kBq/mL",
               "mbq/ml": "MBq/mL", "gml": "SUV", "g/ml": "SUV", "suv": "SUV", "suvbw": "SUV", "cnts": "counts",
               "counts": "counts"}


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        mapping = mapping.get(key) if isinstance(mapping, Mapping) else None
    return mapping


def _input_path(result: Mapping[str, Any], role: str) -> str | None:
    value = _get(result, "inputs", role)
    value = value.get("path") if isinstance(value, Mapping) else value
    return str(value) if value else None


def _setting(result: Mapping[str, Any], name: str) -> Any:
    """A recorded setting under the command's flat name, whether the record groups its settings or not."""
    from asfe3d.settings import flat_settings

    return flat_settings(result.get("settings")).get(name)


def anatomical_name(result: Mapping[str, Any]) -> str:
    """``CT`` when the anatomical input is a CT (DICOM Modality CT, or a BIDS ``_ct`` file), else ``MRI``."""
    modality = str(_get(result, "input_info", "mri", "modality") or "").strip().upper()
    if modality == "CT":
        return "CT"
    if modality == "MR":
        return "MRI"
    path = _input_path(result, "mri")
    if path and _BIDS_CT.search(Path(path).name):
        return "CT"
    return "MRI"


def blank_words(outside: Any, anat: str = "MRI") -> str:
    """``"blank (0)"``, or ``"blank (164.5, the MRI window's low end)"``: what the fused image holds beyond the PET's
    field of view, from the record's ``fusion.outside_pet_fov`` (its ``value``, the value written there: the
    anatomical window's low end, 0 for most T1s and in ``[0, 1]``; records without it say 0)."""
    value = outside.get("value", 0.0) if isinstance(outside, Mapping) else 0.0
    value = 0.0 if isinstance(value, bool) or not isinstance(value, (int, float)) else float(value)
    return "blank (0)" if value == 0 else f"blank ({value:.6g}, the {anat} window's low end)"


def anatomical_units(name: str) -> str:
    """The anatomical image's units: ``HU`` for a CT, else ``MRI units`` (arbitrary)."""
    return "HU" if name == "CT" else "MRI units"


def _stored_units(path: str | None) -> str | None:
    """The units a PET input's DICOM header or JSON sidecar states, or ``None`` (not stated, or unreadable)."""
    if not path:
        return None
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io.pet import pet_header_from_dicom, read_pet_header

    p = Path(path)
    try:
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                try:
                    units = pet_header_from_dicom(f).units
                except Exception:  # noqa: BLE001 - not a DICOM file: try the next one
                    continue
                return units or None
            return None
        return read_pet_header(p).units or None
    except (Asfe3dInputError, OSError, ValueError):
        return None


def pet_units(result: Mapping[str, Any]) -> str:
    """The registered PET's units as a report writes them: ``SUV``, ``Bq/mL``... or ``units not recorded``.

    Args:
        result: the run's description; ``input_info.pet.pet_units`` (a conversion record) means SUV; otherwise
            ``input_info.pet.units``, ``bids.pet_units``, or the units stated by the PET input's DICOM header or
            JSON sidecar (read from ``inputs.pet``).

    Returns:
        A short label.
    """
    if isinstance(_get(result, "input_info", "pet", "pet_units"), Mapping):
        return "SUV"
    stated = _get(result, "input_info", "pet", "units") or _get(result, "bids", "pet_units")
    if not stated:
        stated = _stored_units(_input_path(result, "pet"))
    if not stated:
        return "units not recorded"
    text = str(stated).strip()
    return _UNIT_NAMES.get(text.lower().replace(" ", ""), text)


def fused_units(result: Mapping[str, Any], anat_name: str) -> str:
    """The fused volume's units as written: ``[0, 1]`` (``output_scale="unit"``), else the anatomical image's."""
    if _setting(result, "output_scale") == "unit":
        return "[0, 1]"
    return anatomical_units(anat_name)


def command_line(result: Mapping[str, Any] | None = None, argv: Sequence[str] | None = None) -> str:
    """The command that made the run: the recorded ``command``, else this process's (as a user would type it).

    Args:
        result: the run's description (its ``command`` when recorded).
        argv: the process's arguments (default ``sys.argv``).

    Returns:
        One shell-quoted line; ``asfe3d`` for the entry point and for ``python -m asfe3d.cli``.
    """
    from asfe3d.io.record import current_command

    recorded = (result or {}).get("command")
    if isinstance(recorded, str) and recorded.strip():
        return recorded
    if isinstance(recorded, (list, tuple)) and recorded:
        return shlex.join(str(a) for a in recorded)
    if "command" in (result or {}) and recorded is None:  # recorded as none: the run was made from Python
        return _FROM_PYTHON
    return current_command(argv) or _FROM_PYTHON


_FROM_PYTHON = "(written from a Python session, not from a command line)"


def _local_time(stamp: str) -> str:
    """A record's ``written`` (``2026-12-07T21:01:39+0000``) as the page's own time is written (``2026-12-07 21:01
    UTC``, in this machine's zone); a stamp of another form as it is."""
    import datetime as _dt

    try:
        return _dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").astimezone().strftime("%Y-%m-%d %H:%M %Z")
    except ValueError:
        return stamp


def about_rows(result: Mapping[str, Any], written: str) -> list[tuple[str, str]]:
    """The rows of a report's About table: command line, version, date, platform and the main libraries.

    The run's own, where its record holds them (``command``, ``working_directory``, ``environment``); a record
    without them (written before 2026-12-07) gets this process's, said so: a page redrawn by another process or
    after an upgrade showed the drawing process's command and versions as the run's.

    Args:
        result: the run's description (``asfe3d_version`` of the run when recorded).
        written: when the report was written (already formatted).

    Returns:
        ``[(name, value)]``.
    """
    from asfe3d import __version__
    from asfe3d.io.record import current_command, software_environment

    version = __version__
    run_version = result.get("asfe3d_version")
    if run_version and str(run_version) != __version__:
        version = f"{__version__} (the run: {run_version})"
    command = command_line(result)
    if "command" not in result and current_command() is not None:  # a record before the command was recorded
        command += " (this report's process; the run recorded none)"
    env = result.get("environment")
    own = not isinstance(env, Mapping)
    env = software_environment() if own else env
    libs = env.get("libraries") if isinstance(env.get("libraries"), Mapping) else {}
    libraries = ", ".join(f"{name} {v}" for name, v in libs.items())
    rows = [("Command line", command)]
    if result.get("working_directory"):
        rows.append(("Working directory", str(result["working_directory"])))
    rows += [("asfe3d version", version), ("Report written", written)]
    if result.get("written"):
        rows.append(("Run finished", _local_time(str(result["written"]))))
    note = " (this report's process; the run recorded none)" if own else ""
    rows += [("Platform", f"{env.get('platform')}; Python {env.get('python')}{note}"), ("Libraries", libraries + note)]
    return rows


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _number(value: Any) -> float | None:
    """``value`` as a float when the record holds a real number there (not a bool, a string or a missing value)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def optimiser_metric(reg: Mapping[str, Any]) -> float | None:
    """The registration record's final metric when the optimiser's result was kept (a finite number), else ``None``
    (``registration: none``, or the headers' alignment kept: the record then holds ``nan``)."""
    metric = _number(reg.get("metric"))
    return metric if metric is not None and math.isfinite(metric) else None


def registration_outcome(reg: Mapping[str, Any]) -> str:
    """What registration kept, in words: the metric and iterations when the optimiser's result was kept; otherwise
    what was kept instead (``none``: the PET resampled as its header places it; the headers' alignment when it scored
    a higher MI than the optimiser's result, with the recorded reason), never a ``nan`` metric.

    Args:
        reg: the completion record's ``registration`` entry (``method``, ``metric``, ``iterations``,
            ``stop_condition``).

    Returns:
        e.g. ``"rigid, Mattes MI -0.5123, 38 iterations"`` or ``"rigid: kept the headers' alignment (...)"``.
    """
    metric = optimiser_metric(reg)
    if metric is not None:
        return f"{reg.get('method')}, Mattes MI {metric:.4f}, {reg.get('iterations', 0)} iterations"
    if reg.get("method") == "none":
        return "none (the PET resampled as its header places it)"
    why = reg.get("stop_condition") or "not optimised"
    return f"{reg.get('method')}: kept the headers' alignment ({why})"


def weights_sha256(path: str | Path) -> str | None:
    """SHA-256 of a weight file (hex), or ``None`` when it cannot be read."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        try:
            with p.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            return None
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


class _Citations:
    """Numbered citations in order of first use."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, *keys: str) -> str:
        numbers = []
        for key in keys:
            if key not in self.keys:
                self.keys.append(key)
            numbers.append(str(self.keys.index(key) + 1))
        return "[" + ", ".join(numbers) + "]"

    def references(self) -> list[str]:
        return [f"[{i + 1}] {REFERENCES[k]}" for i, k in enumerate(self.keys)]


_TRANSFORMS = {
    "rigid": "a rigid transform (6 degrees of freedom)",
    "affine": "a rigid transform followed by an affine one (12 degrees of freedom) initialised from it",
    "deformable": ("a rigid transform followed by a coarse cubic B-spline ({mesh} mesh cells per axis, control-point "
                   "displacements bounded to {bound:g} mm, L-BFGS-B)"),
}
_CLASSIC = {
    "mean": "the voxel-wise mean of the two normalised images",
    "max": "the voxel-wise maximum of the two normalised images",
    "wavelet": "3D discrete wavelet fusion ({wavelet} wavelet, {levels} levels)",
    "laplacian": "3D Laplacian-pyramid fusion ({levels} levels)",
    "highpass": ("detail injection: the PET plus {gain:g} times the MRI's detail above a Gaussian of "
                 "{pet_fwhm_mm:g} mm FWHM"),
}


def _registration_settings(reg: Mapping[str, Any]) -> dict[str, Any]:
    """The registration's settings as the run's record keeps them (``registration.options``); a record written before
    it kept them (or a setting left to the registration) takes
    :func:`asfe3d.registration.register.register_pet_to_mri`'s defaults, which such runs used."""
    import inspect

    from asfe3d.registration import register

    params = inspect.signature(register.register_pet_to_mri).parameters
    options = reg.get("options") if isinstance(reg.get("options"), Mapping) else {}

    def used(name: str, default: Any) -> Any:
        value = options.get(name)
        return default if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) else value

    return {"mesh": used("bspline_mesh", params["bspline_mesh"].default),
            "bound": used("bspline_bound_mm", params["bspline_bound_mm"].default),
            "finest_mm": used("finest_mm", register.FINEST_MM),
            "iterations": used("iterations", params["iterations"].default)}


def _registration_sentence(result: Mapping[str, Any], anat: str, cite: _Citations) -> str:
    reg = result.get("registration") if isinstance(result.get("registration"), Mapping) else {}
    used = str(reg.get("method") or _setting(result, "registration") or "")
    if used.startswith("none (same frame"):
        return (f"The PET was not registered: the PET and {anat} DICOM series share one frame of reference "
                f"(FrameOfReferenceUID), so the scanner's alignment was kept, and the PET was resampled onto the "
                f"{anat} grid by trilinear interpolation with SimpleITK {cite('sitk', 'sitk_nb')}.")
    if used == "none" or not used:
        return (f"The PET was not registered (header geometry only) and was resampled onto the {anat} grid by "
                f"trilinear interpolation with SimpleITK {cite('sitk', 'sitk_nb')}.")
    fixed = _registration_settings(reg)
    seed = _setting(result, "seed")
    kind = _TRANSFORMS.get(used, f"a {used} transform").format(**fixed)
    text = (f"The PET was registered to the {anat} with SimpleITK {cite('sitk', 'sitk_nb')} using {kind}, "
            f"maximising Mattes mutual information {cite('mattes')} (50 histogram bins, random sampling inside the "
            f"{anat}'s dilated head mask{'' if seed is None else f', seed {seed}'}) "
            f"with regular-step gradient descent after a moments-based initialisation, over three resolution levels "
            f"(shrink factors 4, 2, 1; smoothing 2, 1, 0 voxels; the {anat} binned to at most "
            f"{fixed['finest_mm']:g} mm at the finest level)")
    details = []
    metric = optimiser_metric(reg)
    if metric is not None:
        if isinstance(reg.get("iterations"), int):
            details.append(f"{reg['iterations']} iterations over all resolution levels")
        details.append(f"final metric {metric:.4f}")
    if reg.get("start") and reg.get("start") != "moments":
        details.append(f"start: {reg['start']}")
    text += f" ({'; '.join(details)})." if details else "."
    if metric is None:
        why = reg.get("stop_condition")
        text += " The optimiser's result was not used: the headers' alignment was kept" + (f" ({why})." if why else ".")
    return text + f" The PET was then resampled onto the {anat} grid by trilinear interpolation."


def _qc_sentence(result: Mapping[str, Any], anat: str) -> str:
    qc = _get(result, "registration", "qc") or {}
    verdict = qc.get("verdict") if isinstance(qc, Mapping) else None
    mode = _setting(result, "qc")
    parts = [f"The alignment was checked automatically by asfe3d's registration QC (mutual information against "
             f"perturbed and left-right mirrored alignments, PET signal inside the {anat}'s head, coverage of the "
             f"head)"]
    if verdict:
        parts.append(f"; the verdict was \u201c{verdict}\u201d")
    overlap = result.get("overlap", _get(result, "registration", "overlap"))
    if isinstance(overlap, (int, float)) and overlap == overlap:
        parts.append(f", the PET signal (above 10 % of its 99th percentile) spanning {100 * overlap:.1f} % of the head")
        fov = _get(result, "registration", "qc", "numbers", "head_in_pet_fov")
        if isinstance(fov, (int, float)) and not isinstance(fov, bool):
            parts.append(f" and the PET's field of view holding {100 * fov:.1f} % of it")
    if mode == "strict":
        parts.append(" (QC mode strict: a failed registration is refused)")
    elif mode == "warn":
        parts.append(" (QC mode warn: a failed registration is written with a warning)")
    return "".join(parts) + "."


def _inputs_sentence(result: Mapping[str, Any], anat: str, cite: Any) -> str:
    """What reading did to the inputs' values before registration (``input_info``): a DICOM stack resampled onto a
    regular grid (slice gaps, gantry tilt), a dynamic PET's frames realigned and averaged, or one frame taken."""
    parts = []
    for role, name in (("mri", anat), ("pet", "PET")):
        info = _get(result, "input_info", role)
        if not isinstance(info, Mapping):
            continue
        stack = info.get("dicom_resampled")
        if isinstance(stack, Mapping):
            reasons = "; ".join(str(r) for r in stack.get("reasons") or []) or "an irregular stack"
            spacing = stack.get("spacing_mm")
            grid = (f" of {' x '.join(f'{float(v):.3g}' for v in spacing)} mm"
                    if isinstance(spacing, (list, tuple)) and len(spacing) == 3 else "")
            parts.append(f"The {name} DICOM series ({reasons}) was resampled onto a regular orthogonal grid{grid} "
                         f"when read (each slice shifted in its plane, then linear interpolation along the slice "
                         f"normal)")
        frames = _number(info.get("frames"))
        if frames is None or frames < 2:
            continue
        n = int(frames)
        taken = info.get("frame_taken")
        realigned = info.get("frames_realigned")
        if taken is not None:
            parts.append(f"Of the {n} frames of the dynamic {name}, frame {taken} (0-based) was used")
        elif isinstance(realigned, Mapping):
            reference = realigned.get("reference")
            to = "their mean" if reference == "mean" else f"frame {reference}"
            motion = [m for m in (_number(v) for v in info.get("frame_motion_mm") or []) if m is not None]
            worst = f" (largest mean frame displacement {max(motion):.2g} mm)" if motion else ""
            parts.append(f"The {n} frames of the dynamic {name} were realigned rigidly to {to} with SimpleITK "
                         f"{cite('sitk', 'sitk_nb')}{worst} and averaged{_frame_weighting(info)}")
        elif info.get("frames_averaged"):
            parts.append(f"The {n} frames of the dynamic {name} were averaged without realignment"
                         f"{_frame_weighting(info)}")
    return ". ".join(parts) + "." if parts else ""


def _frame_weighting(info: Mapping[str, Any]) -> str:
    """How a dynamic PET's frames were weighted in their mean: by their durations, or equally (none known)."""
    durations = info.get("frame_durations_s")
    if info.get("frame_weighting") == "duration" and isinstance(durations, (list, tuple)) and durations:
        return f", weighted by their durations ({', '.join(f'{float(d):g}' for d in durations)} s)"
    return " with equal weights (the frame durations were not known)"


def _units_sentence(result: Mapping[str, Any]) -> str:
    record = _get(result, "input_info", "pet", "pet_units")
    if not isinstance(record, Mapping):
        return ""
    decay = record.get("decay_correction")
    source = str(record.get("source") or "")
    text = "PET values were converted to body-weight SUV (g/mL)"
    if decay:
        text += f" with the injected dose decay-corrected to the reference time (DecayCorrection {decay})"
    if source:
        where = ("the DICOM header" if source.lower().startswith("dicom")
                 else "the JSON sidecar" if source.lower().startswith("sidecar") else source)
        text += f", from the weight, dose and times in {where}"
    return text + "."


def _fusion_sentence(result: Mapping[str, Any], anat: str, cite: _Citations) -> str:
    fusion = result.get("fusion") if isinstance(result.get("fusion"), Mapping) else {}
    method = str(fusion.get("method") or _setting(result, "method") or "")
    smooth = _number(_setting(result, "pet_smooth_mm")) or 0.0
    norm = (f"The registered PET was smoothed by a Gaussian of {smooth:g} mm FWHM on the {anat}'s grid. "
            if smooth > 0 else "")
    norm += (f"Both images were mapped to [0, 1] between the 0.5th percentile of the volume and the 99.5th "
             f"percentile inside the {anat}'s head mask, then fused with ")
    if method == "asfe":
        mode = fusion.get("mode") or _setting(result, "mode")
        if mode == "slice":
            how = (f"the 2D network applied slice by slice (axis {fusion.get('slice_axis', 'auto')}) through MONAI's "
                   f"SliceInferer {cite('monai')}")
        else:
            how = (f"the network lifted to 3D {cite('lift3d')} and applied to the volume through MONAI's "
                   f"SlidingWindowInferer {cite('monai')}")
        text = norm + f"ASFE-Fusion {cite('asfe')}, {how}"
        weights = fusion.get("weights")
        if weights and weights != "in-memory":
            digest = weights_sha256(weights)
            text += (f"; weights {Path(str(weights)).name} (SHA-256 {digest[:16]}\u2026)" if digest
                     else f"; weights {Path(str(weights)).name} (file not readable when the report was written)")
        g = _number(fusion.get("detail_injection"))
        if g is not None and g > 0:
            where = " of the whole volume, after the slices were stacked," if mode == "slice" else ""
            # the width this image got (a record from before the grid gate: the width set)
            mm = _number(fusion["detail_fwhm_mm_applied"] if "detail_fwhm_mm_applied" in fusion
                         else fusion.get("detail_fwhm_mm"))
            width = (f"{mm:g} mm FWHM, the PET's resolution, along each axis of the {anat}'s grid"
                     if mm is not None else "5.5 voxels FWHM")
            text += (f"; the network's output had {g:g} times the {anat}'s detail band{where} (the image minus its "
                     f"Gaussian blur of {width}) added")
        if mode != "slice" and fusion.get("stitched", fusion.get("stitch")) == "logits":
            text += ("; the overlapping windows' coarse blend logits were stitched and the full-resolution step run "
                     "once over the volume")
        v = _number(fusion.get("min_voxel_mm"))
        if v is not None and v > 0:
            w = _number(fusion.get("working_voxel_mm"))
            w = w if w is not None and w > 0 else v
            text += (f"; along any axis where the {anat}'s voxels were finer than {v:g} mm, the pair was resampled to "
                     f"a {w:g} mm grid over the same field of view for the network, and the {anat}'s finer detail, "
                     f"which that grid cannot hold, was added back to the result")
        c = _number(fusion.get("pet_consistency_applied"))
        if c is not None and c > 0:
            w = _number(fusion.get("pet_consistency_fwhm_mm_applied"))
            if w is None or abs(w - 6.0) < 1e-9:
                blurred = "blurred to the PET's resolution (6 mm FWHM)"
            elif w > 6.0:
                blurred = (f"blurred by a Gaussian of {w:g} mm FWHM (wider than the PET's resolution, so that the "
                           f"{anat}'s detail below it is left to the network)")
            else:
                blurred = f"blurred by a Gaussian of {w:g} mm FWHM"
            text += (f"; then {c:g} of the difference between the PET and the fused image, {blurred}, was added, "
                     f"moving the fused image's coarse band towards the PET (Wald's consistency property)")
        d = _number(fusion.get("pet_detail_select_applied"))
        if d is not None and d > 0:
            k = _number(fusion.get("pet_detail_ratio"))
            times = f"{k:g} times" if k is not None else "larger than"
            t = _number(fusion.get("pet_detail_floor_applied"))
            where = f"was {times} the {anat}'s"
            if t is not None and t > 0:
                where = (f"exceeded {times} the {anat}'s by more than {t:g} times its own robust spread in the brain "
                         f"(so that the PET's noise and texture were left out)")
            text += (f"; then, where the PET's own band below its resolution {where}, "
                     f"{d:g} of the fused image's band there was replaced by the PET's (the larger detail chosen, "
                     f"as wavelet fusion does)")
        f = _number(fusion.get("detail_steer_applied"))
        if f is not None and f > 1:
            text += (f"; then, because the PET's band below its resolution followed the {anat}'s little (as in a "
                     f"noisy PET; measured by asfe3d on this pair), the {anat}'s detail band was added at {f:.3g} "
                     "times the network's gain")
        text += "."
    elif method in _CLASSIC:
        params = {"wavelet": "db2", "levels": "?", "gain": 1.0, "pet_fwhm_mm": 6.0, **fusion}
        text = norm + _CLASSIC[method].format(**params) + "."
    else:
        text = norm + f"the {method or 'recorded'} method."
    if _setting(result, "output_scale") == "unit":
        text += " The fused image was kept in [0, 1]."
    else:
        text += f" The fused image was mapped back through the {anat}'s window, so it reads in {anatomical_units(anat)}."
    return text


def methods_text(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """A Methods paragraph per distinct run description (pairs fused alike share one), with shared references.

    Args:
        results: the runs' descriptions (settings, registration with its QC, input_info, fusion).

    Returns:
        ``(paragraphs, references)``: plain-text paragraphs citing ``[n]``, and the reference lines (``[n] ...``)
        numbered in order of first citation.
    """
    groups, references = methods_groups(results)
    return [text for text, _ in groups], references


def methods_groups(results: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, list[int]]], list[str]]:
    """:func:`methods_text` with, for each paragraph, the indices of the ``results`` it describes (a page of several
    pairs labels each paragraph with its pairs: two near-identical paragraphs said nothing of which was which).

    Returns:
        ``([(paragraph, [result index, ...])], references)``.
    """
    from asfe3d import __version__

    cite = _Citations()
    paragraphs: list[str] = []
    covers: list[list[int]] = []
    for index, result in enumerate(results):
        anat = anatomical_name(result)
        version = result.get("asfe3d_version") or __version__
        monai = cite("monai")  # cited first: the references are numbered in order of first citation
        method = _get(result, "fusion", "method") or _setting(result, "method")
        if method in (None, "asfe"):
            what = f"3D implementation of ASFE-Fusion {cite('asfe')} for {anat}/PET fusion"
        else:  # a classic method: ASFE-Fusion was not used, so it is not cited
            what = f"pipeline for {anat}/PET registration and fusion"
        sentences = [f"The {anat} and PET images were processed with asfe3d {version}, a MONAI-based {monai} {what}."]
        read = _inputs_sentence(result, anat, cite)
        if read:
            sentences.append(read)
        units = _units_sentence(result)
        if units:
            sentences.append(units)
        sentences += [_registration_sentence(result, anat, cite), _qc_sentence(result, anat),
                      _fusion_sentence(result, anat, cite)]
        text = " ".join(sentences)
        if text not in paragraphs:
            paragraphs.append(text)
            covers.append([])
        covers[paragraphs.index(text)].append(index)
    return list(zip(paragraphs, covers)), cite.references()
