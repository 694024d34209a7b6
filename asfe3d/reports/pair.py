"""One fused pair's part of a report: the registration view (before/after), the quality table, the PET and fused
panels in their units, and the inputs, settings, timings and outputs, each shown once.

The registration view is fMRIPrep's "reportlet" idea: two images of identical layout, the PET *after*
registration (resampled onto the anatomical grid) and *before* it (the PET as read, placed by its header geometry
alone), both under the same contours of the anatomical image; hovering (or focusing) the view shows "before", and
a "flicker" switch alternates the two (CSS only, no script).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asfe3d.reports.html import (
    ReportSection,
    _anchor,
    _badge,
    _data_uri,
    _e,
    _flatten,
    _table,
    result_mapping,
    verdict_of,
    write_report,
)
from asfe3d.reports.text import optimiser_metric, registration_outcome
from asfe3d.settings import flat_settings

__all__ = ["failed_section", "pet_as_read", "refusal_section", "render_pair_section", "write_subject_report"]

#: the quality numbers shown up front: (``qc.numbers`` key, label, scale, unit)
KEY_NUMBERS = (
    ("translation_mm", "Translation found", 1.0, "mm"),
    ("rotation_deg", "Rotation found", 1.0, "degrees"),
    ("mi", "MI of the result (the QC's: histogram, 32 bins, in the head; higher is better)", 1.0, ""),
    ("mi_margin", "MI margin over 12 deliberate misalignments (relative: the QC fails it below 5 %)", 100.0, "%"),
    ("pet_in_head", "PET signal inside the head", 100.0, "%"),
    ("head_in_pet_fov", "Head inside the PET's field of view", 100.0, "%"),
)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def pet_as_read(result: Mapping[str, Any]) -> tuple[Any, str]:
    """The PET as read from its recorded input (header geometry, its own grid), for the "before" view.

    Read again with the run's series, frame, geometry and DICOM settings; a dynamic PET is the plain mean of its
    frames (no realignment), or the chosen frame.

    Args:
        result: the run's description (``inputs.pet`` and ``settings``).

    Returns:
        ``(image, "")`` (a ``Nifti1Image``; its ``extra["unmeasured"]``: where the file held NaN/Inf, read as 0), or
        ``(None, why)`` when it cannot be read.
    """
    import nibabel as nib

    from asfe3d.errors import Asfe3dInputError

    pet = _mapping(result.get("inputs")).get("pet")
    path = pet.get("path") if isinstance(pet, Mapping) else pet
    if not path:
        return None, "the PET input's path is not recorded"
    settings = flat_settings(result.get("settings"))
    from asfe3d.io import read_volume

    try:
        vol = read_volume(path, role="PET", series_uid=settings.get("pet_series"), frame=settings.get("pet_frame"),
                          allow_nonfinite=True, nifti_geometry=settings.get("nifti_geometry") or "auto",
                          dicom_strict=bool(settings.get("dicom_strict")))
    except Asfe3dInputError as exc:
        return None, str(exc)
    # where the file held NaN (SPM's mark outside a resliced PET's field of view) goes with it, for the edge drawn
    extra = {} if vol.unmeasured is None else {"unmeasured": vol.unmeasured}
    return nib.Nifti1Image(vol.array_xyz().astype("float32", copy=False), vol.affine_ras, extra=extra), ""


def _quality_html(result: Mapping[str, Any]) -> str:
    reg = _mapping(result.get("registration"))
    qc = _mapping(reg.get("qc"))
    numbers = _mapping(qc.get("numbers"))
    parts = [f"<p>Verdict: {_badge(verdict_of(result))}</p>"]
    reasons = [str(r) for r in qc.get("reasons") or []]
    if reasons:
        parts.append('<ul class="reasons">' + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>")
    used, requested = reg.get("method"), reg.get("requested")
    rows: list[tuple[str, Any]] = []
    if used is not None:
        rows.append(("Registration", f"{used}" + (f" (asked: {requested})" if requested and requested != used else "")))
    metric = optimiser_metric(reg)
    if metric is not None:
        rows.append(("Final metric (the optimiser's Mattes MI, negative: lower is better; not the QC's MI below)",
                     metric))
        if reg.get("iterations") is not None:
            rows.append(("Iterations (all resolution levels; the stop condition names the last level's)",
                         reg["iterations"]))
    elif used is not None:  # no optimiser result was kept: say what was, and why (never "Iterations 0" alone)
        rows.append(("Alignment kept", registration_outcome(reg)))
    overlap = result.get("overlap", reg.get("overlap"))
    if isinstance(overlap, (int, float)):
        # the overlap check's own measure (PET above 10 % of its 99th percentile in the MRI's head), not the QC's
        # ``head_covered`` (listed under "All quality numbers"): named apart, as the two differ on a poor alignment
        rows.append(("Head spanned by the PET signal (overlap check: PET above 10 % of its 99th percentile; a "
                     "brain PET's uptake spans about half a head with its scalp)", f"{100 * overlap:.1f} %"))
    shown = set()
    for key, label, scale, unit in KEY_NUMBERS:
        value = numbers.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append((label, f"{scale * value:.3g} {unit}".strip()))
            shown.add(key)
    parts.append(_table(rows))
    rest = [(k, v) for k, v in _flatten(numbers) if k not in shown]
    for key in ("anatomy", "flags"):
        if qc.get(key):
            rest.append((key, qc[key]))
    for key in ("stop_condition", "start", "starts_tried", "continued", "pet_region"):
        if reg.get(key) not in (None, ""):
            rest.append((key, reg[key]))
    plain = _mapping(reg.get("qc_plain"))
    if plain.get("verdict"):
        rest.append(("verdict of the plain registration (before the multi-start search)", plain["verdict"]))
    if rest:
        parts.append(f"<details><summary>All quality numbers ({len(rest)} more)</summary>{_table(rest)}</details>")
    return "".join(parts)


def grid_text(img: Any) -> str:
    """A NIfTI-like image's grid in words: ``88 x 119 x 85 voxels of 2 x 2 x 2 mm, RAS`` (the voxel axes'
    directions, nibabel's orientation codes)."""
    import nibabel as nib

    zooms = np.linalg.norm(np.asarray(img.affine, float)[:3, :3], axis=0)
    codes = "".join(nib.aff2axcodes(img.affine))
    # how far the voxel axes lie from the nearest scanner axes: the codes name the nearest, an oblique grid says so
    cosines = np.abs(np.asarray(img.affine, float)[:3, :3] / zooms).max(axis=0).clip(0.0, 1.0)
    tilt = float(np.degrees(np.arccos(cosines.min())))
    oblique = f" (oblique: voxel axes up to {tilt:.0f} degrees from the scanner's; views resampled)" if tilt >= 0.5 else ""
    return (f"{' x '.join(str(int(s)) for s in img.shape[:3])} voxels of {' x '.join(f'{z:.3g}' for z in zooms)} mm, "
            f"{codes}{oblique}")


def _inputs_html(result: Mapping[str, Any], names: Mapping[str, str], grids: Mapping[str, Any] | None = None) -> str:
    blocks = []
    inputs = _mapping(result.get("inputs"))
    info = _mapping(result.get("input_info"))
    sidecar = inputs.get("pet_sidecar")
    absent = isinstance(sidecar, Mapping) and sidecar.get("absent") is True
    for role in sorted((set(inputs) | set(info)) - ({"pet_sidecar"} if absent else set()),
                       key=lambda r: (r != "mri", r)):
        rows: list[tuple[str, Any]] = []
        src = inputs.get(role)
        if isinstance(src, Mapping):  # the file's identity for resuming (inode, times) is the record's business
            rows.extend((k, v) for k, v in src.items() if k not in ("mtime_ns", "ctime_ns", "inode"))
        elif src is not None:
            rows.append(("path", src))
        if (grids or {}).get(role) is not None:
            rows.append(("grid (as read)", grid_text(grids[role])))
        rows.extend((k, v) for k, v in _flatten(_mapping(info.get(role))) if k not in ("role", "sidecar_absent"))
        if role == "pet" and absent:  # no block for a file that is not there: one row says where it was looked for
            rows.append(("JSON sidecar", f"none (looked for {sidecar.get('path')})"))
        title = names.get(role, "PET JSON sidecar" if role == "pet_sidecar" else role.upper())
        blocks.append(f"<div><h4>{_e(title)}</h4>{_table(rows)}</div>")
    return '<div class="cols">' + "".join(blocks) + "</div>" if blocks else "<p>—</p>"


def settings_rows(result: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The run's settings, each once: the recorded settings, then the fusion method's parameters that they do not
    already say, then BIDS facts."""
    settings = flat_settings(result.get("settings"))
    rows = list(_flatten(settings))
    fusion = _flatten(_mapping(result.get("fusion")))
    by_grid = {key[: -len("_applied")] for key, _ in fusion if key.endswith("_applied")}
    for key, value in fusion:  # a step's rule (by grid) is told from what it did here (a rule's 6 mm read as used)
        if key.endswith("_applied"):
            rows.append((f"fusion {key[: -len('_applied')]}: applied on this grid",
                         "not applied" if value is None else value))
        elif settings.get(key) != value:
            rows.append((f"fusion {key}: the rule, by grid" if key in by_grid else f"fusion {key}", value))
    rows.extend((f"BIDS {k}", v) for k, v in _flatten(_mapping(result.get("bids"))))
    return rows


def _timings_html(result: Mapping[str, Any]) -> str:
    timings = _mapping(result.get("timings"))
    rows: list[tuple[str, Any]] = [(f"{k} (s)", float(v)) for k, v in timings.items() if isinstance(v, (int, float))]
    if rows and "total" not in timings:  # a page written with the outputs cannot know the run's end: the steps' sum
        rows.append(("all steps (s)", sum(float(v) for _, v in rows)))
    if result.get("peak_memory_mb") is not None:
        rows.append(("peak memory (MB)", result.get("peak_memory_mb")))
    note = ""
    if rows and "total" not in timings and "save" in timings:  # the record's save and total come after this page
        note = ("<p>This page is written with the outputs, so its <em>save</em> is the outputs' writing before it "
                "and leaves this page out; the completion record (JSON) and the command's summary give the whole "
                "save and the total.</p>")
    if rows and _mapping(result.get("registration")).get("early") is True:  # the step times would read as the whole
        early = _mapping(_mapping(result.get("registration")).get("early_seconds"))
        spent = ", ".join(f"{k.replace('_', ' ')} {float(v):.1f} s" for k, v in early.items()
                          if isinstance(v, (int, float)))
        note += ("<p>The inputs were read and registered early, in a thread beside the command's start-up"
                + (f" ({_e(spent)})" if spent else "") + "; that time is not in the step times above (load and "
                "register show only what was left to do).</p>")
    return (_table(rows) if rows else "<p>—</p>") + note


def _outputs_html(result: Mapping[str, Any]) -> str:
    rows = []
    for kind, value in _mapping(result.get("outputs")).items():
        rows.append((kind, str(value.get("path") if isinstance(value, Mapping) else value)))
    return _table(rows) if rows else "<p>—</p>"


def _compare_html(anchor: str, after: bytes, before: bytes | None, why: str) -> str:
    if before is None:
        return (f'<img class="figure" alt="registration: after" src="{_data_uri(after)}">'
                f'<p class="note">No "before" view: {_e(why)}</p>')
    flick = f"flicker-{anchor}"
    return (f'<input type="checkbox" class="flick" id="{_e(flick)}"><label class="flick" for="{_e(flick)}">'
            f'flicker before/after</label>'
            f'<div class="compare" tabindex="0" title="hover: before registration">'
            f'<img class="figure after" alt="registration: after" src="{_data_uri(after)}">'
            f'<img class="figure before" alt="registration: before" src="{_data_uri(before)}"></div>')


def _grid_checked(mri_image: Any, pet_on_mri_image: Any, fused_image: Any, anat_name: str) -> tuple[Any, Any, Any]:
    """The anatomical, registered PET and fused images as ``Nifti1Image``, checked to be 3D on one grid (no fused
    image: ``None`` for it).

    Raises:
        ValueError: an image that is not 3D, or images on different grids (their shapes quoted).
    """
    from asfe3d.reports.figures import as_nifti

    anat = as_nifti(mri_image, anat_name)
    pet = as_nifti(pet_on_mri_image, f"PET on the {anat_name} grid")
    fused = None if fused_image is None else as_nifti(fused_image, "fused")
    for img in (pet, pet if fused is None else fused):
        if img.ndim != 3 or anat.ndim != 3:
            raise ValueError(f"the {anat_name}, PET and fused images must be 3D, got shapes {anat.shape}, "
                             f"{pet.shape} and {img.shape}")
        if img.shape != anat.shape:
            raise ValueError(f"the {anat_name} {anat.shape}, the registered PET {pet.shape} and the fused volume "
                             f"{img.shape} must share one grid")
    return anat, pet, fused


@dataclass(frozen=True)
class _Figures:
    """The section's pictures, and what their captions and the viewer need.

    Attributes:
        anat, pet, fused: the images as drawn (axis-aligned, cropped to the head, canonical ``(X, Y, Z)``).
        levels: the anatomical contour levels, in its units.
        after, before: the registration view after registration and before it (PNG; ``before`` None when the PET
            as read is not available).
        overlay: the registered PET over the anatomical image (PNG).
        fused_png: the fused image (PNG; ``fused`` and it are None when the pair was not fused).
        thumbnail: the index page's small view (PNG).
        fov_edge: ``"exact"`` or ``"approximate"`` when the PET's field-of-view edge crosses the overlay or the fused
            views and is drawn there (approximate: a deformable registration's B-spline part is left out), else
            ``None``.
    """

    anat: Any
    pet: Any
    fused: Any
    levels: list[float]
    after: bytes
    before: bytes | None
    overlay: bytes
    fused_png: bytes | None
    thumbnail: bytes
    fov_edge: str | None = None


def _draw_figures(anat: Any, pet: Any, fused: Any, before_src: Any, *, anat_name: str, pet_units: str,
                  fused_units: str, fused_range: tuple[float, float], colormap: str,
                  registration: Mapping[str, Any] | None = None) -> _Figures:
    """Crop the three images to the head and draw every figure of the section.

    Args:
        anat, pet, fused: from :func:`_grid_checked` (one 3D grid; ``fused`` None: not drawn).
        before_src: the PET as read, on its own grid, or None.
        registration: the record's ``registration`` (its ``mri_to_pet_ras`` places the PET's field of view; absent
            in records of older runs: no edge drawn).
        anat_name: ``MRI`` or ``CT`` (CT crops at -400 HU).
        pet_units, fused_units: the colour bars' units.
        fused_range: the fused colour bar's range (its finite values).
        colormap: the PET colour map.

    Returns:
        The :class:`_Figures`.
    """
    from asfe3d.reports import figures

    threshold = -400.0 if anat_name == "CT" else None
    images = [figures.axis_aligned(img) for img in (anat, pet, fused) if img is not None]
    anat, pet, *rest = (figures.canonical(img) for img in figures.crop_to_head(*images, threshold=threshold))
    fused = rest[0] if rest else None
    smooth = figures.smoothed(anat)
    levels = figures.contour_levels(np.asanyarray(smooth.dataobj), anat_name)
    # the cuts go through the registered PET's signal (the brain: a cut through the nose alone showed nothing to
    # judge), in both views
    cut_bounds = figures.signal_bounds(pet, figures.head_bounds_mm(anat, threshold=threshold))
    common = dict(anat_smoothed=smooth, levels=levels, anat_name=anat_name)
    after_png = figures.png_bytes(figures.draw_registration(
        anat, pet, window=figures.robust_range(np.asanyarray(pet.dataobj)),
        label="AFTER registration (hover or flicker: before)", cut_bounds=cut_bounds, **common))
    before_png = None
    if before_src is not None:
        before = figures.header_aligned(before_src, anat)
        before_png = figures.png_bytes(figures.draw_registration(
            anat, before, window=figures.robust_range(np.asanyarray(before.dataobj)),
            label="BEFORE registration: the PET as read (header geometry)",
            cut_bounds=cut_bounds, **common))
    registration = registration if isinstance(registration, Mapping) else {}
    matrix = registration.get("mri_to_pet_ras")
    fov = None if matrix is None or before_src is None else figures.field_of_view(anat, before_src, matrix)
    overlay_fig = figures.draw_overlay(anat, pet, units=pet_units, colormap=colormap, anat_name=anat_name, fov=fov)
    drawn = overlay_fig.fov_drawn
    overlay_png = figures.png_bytes(overlay_fig)
    fused_png = None
    if fused is not None:
        fused_fig = figures.draw_fused(fused, anat=anat, units=fused_units, value_range=fused_range,
                                       anat_name=anat_name, fov=fov)
        drawn = drawn or fused_fig.fov_drawn
        fused_png = figures.png_bytes(fused_fig)
    thumb = figures.thumbnail(pet, anat=anat, **common)
    edge = None if not drawn else ("exact" if registration.get("mri_to_pet_ras_exact", True) else "approximate")
    return _Figures(anat, pet, fused, levels, after_png, before_png, overlay_png, fused_png, thumb, edge)


def _viewer_block(anchor: str, figs: _Figures, *, anat_name: str, pet_units: str, fused_units: str,
                  colormap: str) -> str:
    """The interactive NiiVue viewer of the drawn images, with its heading and caption (HTML)."""
    from asfe3d.reports.figures import robust_range
    from asfe3d.reports.viewer import viewer_html

    return ("<h3>Interactive viewer</h3><p class=\"caption\">NiiVue (WebGL, offline): the "
            f"{_e(anat_name)}, the registered PET and the fused image as layers, resampled to 2 mm "
            "voxels for the page; the values under the crosshair are in the images' units.</p>"
            + viewer_html(anchor, anat=figs.anat, pet=figs.pet, fused=figs.fused, anat_name=anat_name,
                          pet_units=pet_units, fused_units=fused_units,
                          pet_window=robust_range(np.asanyarray(figs.pet.dataobj)), colormap=colormap))


def _failed_box(refused: str | None, verdict: str | None) -> str:
    """The box at the top of a section: the refusal (``--qc strict``), or, for a registration judged failed whose
    outputs were written anyway (``--qc warn``), a warning that says so (only the badge and the reasons said it)."""
    if refused is not None:
        return f'<div class="error">{_e(refused)}</div>'
    if verdict == "fail":
        return ('<div class="error">The registration was judged failed (the reasons are under "Registration '
                'quality"); the outputs were written anyway (<code>--qc warn</code>): check the PET\'s placement '
                'below before using them, or rerun with <code>--qc strict</code> to refuse such pairs.</div>')
    return ""


def _registration_html(anchor: str, figs: _Figures, why: str, *, anat_name: str, anat_units: str, grid: str) -> str:
    """The registration check: its caption (contour levels, grid) and the after/before view (HTML)."""
    level_text = ", ".join(f"{v:.4g}" for v in figs.levels)
    return f"""<h3>Registration check</h3>
<p class="caption">The PET in grey under iso-lines of the {_e(anat_name)} (smoothed by 3 mm FWHM; levels {level_text}
{_e(anat_units)}): its head outline (cyan) and {"bone" if anat_name == "CT" else
"its inner tissue boundary"} (red). Shown: <b>after</b> registration (the PET resampled onto the {_e(anat_name)} grid,
{_e(grid)}); <b>hover</b> (or tap) the view for <b>before</b> (the PET as read, placed by its header geometry alone),
or tick "flicker". Each image is windowed at its 0.5th-99.5th percentiles. A good registration puts the PET's
edges on the contours. Rows: sagittal, coronal, axial cuts, each at the scanner (RAS) coordinate in mm it shows.
Every view in this report is in the neurological convention: the subject's left on the left of the image
(L/R, A/P, S/I letters at the edges).</p>
{_compare_html(anchor, figs.after, figs.before, why)}"""


def _images_html(figs: _Figures, *, anat_name: str, pet_units: str, fused_units: str,
                 fused_range: tuple[float, float], colormap: str, blanked: Mapping[str, Any] | None = None) -> str:
    """The PET over the anatomical image and the fused image, with their captions (HTML); ``blanked``: the record's
    ``fusion.outside_pet_fov`` when the run blanked the fused image beyond the PET's field of view, else ``None``."""
    from asfe3d.reports.text import blank_words

    beyond = (f"the fused image is {_e(blank_words(blanked, anat_name))} there" if blanked is not None else
              f"the fused image there holds only what the {_e(anat_name)} gave it")
    edge = "" if figs.fov_edge is None else (
        '<p class="caption fov"><b>Dashed yellow: the edge of the PET\'s field of view</b>'
        + (" (from the registration's rigid/affine part; its B-spline part moves it a little)"
           if figs.fov_edge == "approximate" else "")
        + f". Beyond it there is no PET: the registered PET is 0 there, and {beyond}.</p>")
    return f"""<h3>PET over the {_e(anat_name)}</h3>
<p class="caption">The registered PET ({_e(pet_units)}) in the {_e(colormap)} colour map over the {_e(anat_name)},
above 20 % of its display window (the 0.5th-99.5th percentiles of its non-zero voxels, the colour bar's range).</p>
{edge}
<img class="figure" alt="PET over the {_e(anat_name)}" src="{_data_uri(figs.overlay)}">
<h3>Fused image</h3>
""" + (f"""<p class="caption">The fused volume as written ({_e(fused_units)}); the colour bar spans its whole range,
{fused_range[0]:.4g} to {fused_range[1]:.4g}.{"" if figs.fov_edge is None else
" Dashed yellow: the edge of the PET's field of view."}</p>
<img class="figure" alt="fused image" src="{_data_uri(figs.fused_png)}">""" if figs.fused_png is not None else
           "<p>Not written: the pair was not fused (see the error at the top of this section).</p>")


def _details_html(result: Mapping[str, Any], anat_name: str, grids: Mapping[str, Any] | None = None) -> str:
    """The run's inputs (with their grids), settings, timings and outputs, each once (HTML)."""
    return f"""<h3>Inputs</h3>
{_inputs_html(result, {"mri": anat_name, "pet": "PET"}, grids)}
<h3>Settings</h3>
{_table(settings_rows(result)) if settings_rows(result) else "<p>—</p>"}
<div class="cols"><div><h3>Timings</h3>{_timings_html(result)}</div>
<div><h3>Outputs</h3>{_outputs_html(result)}</div></div>"""


def render_pair_section(
    *,
    mri_image: Any,
    pet_on_mri_image: Any,
    fused_image: Any,
    result: Mapping[str, Any] | Any,
    title: str = "fusion",
    anchor: str | None = None,
    colormap: str | None = None,
    pet_as_read_image: Any = None,
    viewer: bool = False,
    refused: str | None = None,
) -> ReportSection:
    """Draw one pair's section of a report.

    Args:
        mri_image: the anatomical image (MRI or CT) in its units: nibabel image, ``(array, RAS affine)`` or a path.
        pet_on_mri_image: the PET registered and resampled onto its grid, in the PET's units.
        fused_image: the fused volume as written (same grid); ``None`` with ``refused``.
        result: the run's description (see :func:`~asfe3d.reports.html.result_mapping`; a ``FuseResult`` is
            accepted): it names the modalities and units, and holds the numbers shown.
        title: the section's heading.
        anchor: the section's HTML id (default: from the title).
        colormap: the PET colour map (default: ``settings.colormap`` of the result, else ``hot``).
        pet_as_read_image: the PET as read, on its own grid (for the "before" view); default: read again from
            ``inputs.pet`` (:func:`pet_as_read`); when that fails the section says why and shows "after" only.
        viewer: add the interactive NiiVue viewer (:mod:`asfe3d.reports.viewer`; about 2.3 MB more per page; not
            with ``refused``).
        refused: why the pair was not fused (one line, e.g. a registration refused under ``--qc strict``): the
            section shows it at its top, the registration and the PET, no fused image, and has status ``failed``.

    Returns:
        A :class:`~asfe3d.reports.html.ReportSection` (its ``result`` kept for the page's About and Methods).

    Raises:
        ValueError: an image that is not 3D, images on different grids, a result of the wrong type, or a fused
            image missing without ``refused`` (or given with it).
    """
    from asfe3d.reports import figures, text

    if (fused_image is None) != (refused is not None):
        raise ValueError("give either fused_image or refused (why there is no fused image), not "
                         f"{'both' if refused is not None else 'neither'}")
    t0 = time.perf_counter()
    result = result_mapping(result)
    settings = flat_settings(result.get("settings"))
    colormap = colormap or settings.get("colormap") or "hot"
    anat_name = text.anatomical_name(result)
    labels = dict(anat_name=anat_name, pet_units=text.pet_units(result),
                 fused_units=text.fused_units(result, anat_name))
    anat, pet, fused = _grid_checked(mri_image, pet_on_mri_image, fused_image, anat_name)
    fused_data = np.zeros(0) if fused is None else np.asanyarray(fused.dataobj)
    finite = fused_data[np.isfinite(fused_data)]
    fused_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    zooms = [float(z) for z in anat.header.get_zooms()[:3]]
    grid = f"{'x'.join(str(s) for s in anat.shape)} voxels of {' x '.join(f'{z:.3g}' for z in zooms)} mm"
    if pet_as_read_image is not None:
        before_src, why = figures.as_nifti(pet_as_read_image, "PET as read"), ""
    else:
        before_src, why = pet_as_read(result)
    figs = _draw_figures(anat, pet, fused, before_src, fused_range=fused_range, colormap=colormap,
                         registration=_mapping(result.get("registration")), **labels)
    anchor = _anchor(anchor or title)
    viewer_block = _viewer_block(anchor, figs, colormap=colormap, **labels) if viewer and fused is not None else ""
    body = "\n".join([
        _failed_box(refused, verdict_of(result)), _registration_html(anchor, figs, why, anat_name=anat_name,
                               anat_units=text.anatomical_units(anat_name), grid=grid),
        "<h3>Registration quality</h3>", _quality_html(result),
        _images_html(figs, fused_range=fused_range, colormap=colormap,
                     blanked=_mapping(result.get("fusion")).get("outside_pet_fov"), **labels),
        viewer_block, _details_html(result, anat_name, {"mri": anat, "pet": before_src}), "",
    ])
    return ReportSection(title=title, anchor=anchor, html=body, verdict=verdict_of(result),
                         status="ok" if refused is None else "failed",
                         thumbnail=figs.thumbnail, seconds=time.perf_counter() - t0, result=result, viewer=viewer)


def refusal_section(refusal: Any, result: Mapping[str, Any], *, title: str, anchor: str | None = None) -> ReportSection:
    """The section of a pair whose registration was refused (``--qc strict``): the error, the MRI with the PET where
    the refused transform put it, the QC's verdict and numbers; no fused image.

    Args:
        refusal: the :class:`~asfe3d.errors.RegistrationRefused` (its ``reference`` and ``resampled`` images,
            ``(1, X, Y, Z)`` MetaTensors on the MRI grid).
        result: the run's description (:func:`asfe3d.pipeline.refusal_record`: inputs, settings, registration).
        title: the heading.
        anchor: the HTML id (default: from the title).

    Returns:
        A :class:`ReportSection` with status ``failed`` and the registration's verdict.
    """
    from asfe3d.io.volume import ras_affine

    affine = ras_affine(refusal.reference)
    return render_pair_section(mri_image=(refusal.reference[0].detach().cpu().numpy(), affine),
                               pet_on_mri_image=(refusal.resampled[0].detach().cpu().numpy(), affine),
                               fused_image=None, result=result, title=title, anchor=anchor, refused=str(refusal))


def failed_section(title: str, message: str, *, anchor: str | None = None,
                   result: Mapping[str, Any] | None = None) -> ReportSection:
    """A section for a pair that could not be fused.

    Args:
        title: the heading.
        message: the error (one line).
        anchor: the HTML id (default: from the title).
        result: what is known of the run (inputs, settings), shown below the error.

    Returns:
        A :class:`ReportSection` with status ``failed``.
    """
    from asfe3d.reports.text import anatomical_name

    body = f'<div class="error">{_e(message)}</div>'
    if result:
        rows = settings_rows(result)
        body += (f"<h3>Inputs</h3>{_inputs_html(result, {'mri': anatomical_name(result), 'pet': 'PET'})}"
                 + (f"<h3>Settings</h3>{_table(rows)}" if rows else ""))
    return ReportSection(title=title, anchor=_anchor(anchor or title), html=body, verdict=None, status="failed")


def write_subject_report(
    path: str | Path,
    *,
    mri_image: Any,
    pet_on_mri_image: Any,
    fused_image: Any,
    result: Mapping[str, Any] | Any,
    pet_as_read_image: Any = None,
    title: str | None = None,
    overwrite: bool = False,
    viewer: bool = False,
    refused: str | None = None,
) -> Path:
    """Write the report of one fused pair (a single-section :func:`write_report`).

    Args:
        path: the ``.html`` file.
        mri_image: the anatomical image (MRI or CT) in its units (nibabel image, ``(array, affine)`` or a path).
        pet_on_mri_image: the PET on its grid, in the PET's units.
        fused_image: the fused volume as written (``None`` with ``refused``).
        result: the run's description: a mapping (the completion record, or any dict with ``inputs``,
            ``input_info``, ``settings``, ``registration`` incl. ``qc``, ``timings``, ``outputs``,
            ``peak_memory_mb``) or a ``FuseResult``.
        pet_as_read_image: the PET as read on its own grid, for the "before" view (default: read from
            ``inputs.pet``; see :func:`asfe3d.reports.pair.render_pair_section`).
        title: the page title (default: the report's file stem).
        overwrite: replace an existing file.
        viewer: add the interactive NiiVue viewer (:mod:`asfe3d.reports.viewer`).
        refused: why the pair was not fused (a report of the refusal: registration and PET, no fused image).

    Returns:
        The written path.

    Raises:
        ValueError: bad images or path (see :func:`~asfe3d.reports.pair.render_pair_section`, :func:`write_report`).
        Asfe3dInputError: the file exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the report must be an .html file, got {str(path)!r}")
    if path.exists() and not overwrite:  # fail before drawing
        from asfe3d.errors import Asfe3dInputError

        raise Asfe3dInputError(path, "output file already exists (pass --overwrite to replace it; overwrite=True in Python)")
    title = title or path.stem
    section = render_pair_section(mri_image=mri_image, pet_on_mri_image=pet_on_mri_image, fused_image=fused_image,
                                  result=result, title=title, pet_as_read_image=pet_as_read_image, viewer=viewer,
                                  refused=refused)
    return write_report(path, [section], title=title, overwrite=overwrite)
