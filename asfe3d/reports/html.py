"""Self-contained HTML reports (one per subject) and an index page for cohorts and BIDS runs.

A report holds one section per fused pair (a subject with two sessions or tracers has two): the registration
check (MRI contours over the registered PET in three planes), the fused and colour images with colour bars and
orientation letters, the registration verdict and numbers, timings, inputs and settings. Figures are embedded as
base64 PNG, so the file can be mailed or archived alone.

Each report also carries a machine-readable summary (``<script type="application/json" id="asfe3d-summary">``:
title, verdict, status, thumbnail) that :func:`write_index` reads, so an index can be rebuilt from the reports on
disk (e.g. after a resumed run that skipped finished subjects).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ReportSection",
    "IndexEntry",
    "render_pair_section",
    "failed_section",
    "write_report",
    "write_subject_report",
    "read_report_summary",
    "write_index",
    "verdict_of",
    "result_mapping",
]

#: the generator tag of asfe3d's reports (a file without it is not one of ours)
GENERATOR = "asfe3d-report/1"
_SUMMARY_RE = re.compile(r'<script type="application/json" id="asfe3d-summary">(.*?)</script>', re.S)
_VERDICT_CLASS = {"pass": "ok", "ok": "ok", "good": "ok", "warn": "warn", "warning": "warn", "fail": "bad",
                  "failed": "bad", "error": "bad"}

_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#f4f5f7}
header{background:#1f2a36;color:#fff;padding:14px 24px;position:sticky;top:0;z-index:10}
header h1{margin:0;font-size:20px;font-weight:600}
header nav a{color:#9cc3ff;margin-right:14px;font-size:13px;text-decoration:none}
main{max-width:1320px;margin:0 auto;padding:16px 24px 40px}
section.pair{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.12);margin:18px 0;padding:4px 18px 16px}
h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:6px}
h3{font-size:15px;margin:18px 0 6px}
p.caption{font-size:13px;color:#555;margin:4px 0 8px}
img.figure{max-width:100%;height:auto;display:block;background:#000;border-radius:3px}
table{border-collapse:collapse;font-size:13px;margin:4px 0 8px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12px;word-break:break-all}
.badge{display:inline-block;padding:2px 9px;border-radius:10px;font-size:13px;font-weight:600;color:#fff}
.badge.ok{background:#2e8b57}.badge.warn{background:#d9822b}.badge.bad{background:#c0392b}.badge.none{background:#888}
.cols{display:flex;flex-wrap:wrap;gap:24px}
ul.reasons{margin:4px 0 8px;font-size:13px}
.error{background:#fdecea;border:1px solid #f5c2c0;padding:8px 12px;border-radius:4px;font-size:13px}
footer{color:#777;font-size:12px;text-align:center;padding:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:14px;align-items:start}
.card{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:8px;font-size:13px}
.card img{width:100%;height:auto;background:#000;border-radius:3px;display:block}
.card a{text-decoration:none;color:#1f5fa8;font-weight:600}
.card .msg{color:#555;font-size:12px;word-break:break-word}
.card[data-status="failed"] .msg{color:#a33}
"""


@dataclass
class ReportSection:
    """One pair's part of a report.

    Attributes:
        title: the heading (e.g. ``ses-bl, trc-FDG``).
        anchor: the HTML id (letters, digits, ``-`` and ``_``).
        html: the section's body.
        verdict: the registration verdict (``pass``, ``warn``, ``fail``...) or ``None`` when not assessed.
        status: ``ok`` or ``failed``.
        thumbnail: a small PNG for index pages, or ``None``.
        seconds: how long drawing the section took.
    """

    title: str
    anchor: str
    html: str
    verdict: str | None = None
    status: str = "ok"
    thumbnail: bytes | None = None
    seconds: float = 0.0


@dataclass
class IndexEntry:
    """One line of an index page.

    Attributes:
        name: the subject (or pair) name shown.
        report: the subject's report (linked; its thumbnail and verdict are read from it when it exists).
        status: ``ok``, ``skipped``, ``failed`` or ``no-pet``...
        message: a note (why it failed or was skipped).
        verdict: the registration verdict when known without the report.
        flags: more short labels to show (e.g. ``2 sessions``).
    """

    name: str
    report: Path | None = None
    status: str = "ok"
    message: str = ""
    verdict: str | None = None
    flags: Sequence[str] = field(default_factory=tuple)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _anchor(text: str) -> str:
    anchor = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")
    return anchor or "pair"


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) if value else "—"
    return str(value)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def _table(rows: Iterable[tuple[str, Any]], header: tuple[str, str] | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append(f"<tr><th>{_e(header[0])}</th><th>{_e(header[1])}</th></tr>")
    for key, value in rows:
        cls = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        text = _fmt(value)
        cell = f"<code>{_e(text)}</code>" if ("/" in text and " " not in text) else _e(text)
        out.append(f"<tr><th>{_e(key)}</th><td{cls}>{cell}</td></tr>")
    out.append("</table>")
    return "".join(out)


def verdict_of(result: Mapping[str, Any]) -> str | None:
    """The registration verdict recorded in a run's result (``registration.qc.verdict``), or ``None``."""
    qc = (result.get("registration") or {}).get("qc") if isinstance(result.get("registration"), Mapping) else None
    if isinstance(qc, Mapping) and qc.get("verdict"):
        return str(qc["verdict"])
    return None


def _badge(verdict: str | None, text: str | None = None) -> str:
    cls = _VERDICT_CLASS.get(str(verdict).lower(), "none") if verdict else "none"
    return f'<span class="badge {cls}">{_e(text or verdict or "not assessed")}</span>'


def result_mapping(result: Any) -> dict[str, Any]:
    """A JSON-able run description for a report, from a ``FuseResult`` or a mapping.

    A ``FuseResult`` whose outputs include its completion record (``outputs["record"]``) gives that record (it
    holds inputs, settings, registration with its quality verdict, timings, outputs and peak memory); otherwise
    its fields are used.

    Args:
        result: an :class:`asfe3d.pipeline.FuseResult` or a mapping (returned as a dict).

    Returns:
        A dict with (some of) ``inputs``, ``input_info``, ``settings``, ``fusion``, ``registration``, ``overlap``,
        ``timings``, ``outputs``, ``peak_memory_mb``.

    Raises:
        ValueError: neither a mapping nor a ``FuseResult``-like object.
    """
    if isinstance(result, Mapping):
        return dict(result)
    if not hasattr(result, "timings") or not hasattr(result, "registration"):
        raise ValueError(f"result must be a mapping or a FuseResult, got {type(result).__name__}")
    record = (getattr(result, "outputs", None) or {}).get("record")
    if record is not None and Path(record).is_file():
        try:
            data = json.loads(Path(record).read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
        except (OSError, ValueError):
            pass
    return {
        "input_info": getattr(result, "inputs", {}), "fusion": getattr(result, "fusion", {}),
        "registration": dict(result.registration), "overlap": getattr(result, "overlap", None),
        "timings": dict(result.timings), "peak_memory_mb": getattr(result, "peak_memory_mb", None),
        "outputs": {k: str(v) for k, v in (getattr(result, "outputs", None) or {}).items()},
    }


def _registration_html(result: Mapping[str, Any]) -> str:
    reg = result.get("registration") if isinstance(result.get("registration"), Mapping) else {}
    qc = reg.get("qc") if isinstance(reg.get("qc"), Mapping) else {}
    verdict = verdict_of(result)
    parts = [f"<p>Verdict: {_badge(verdict)}</p>"]
    reasons = qc.get("reasons") or []
    if reasons:
        parts.append('<ul class="reasons">' + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>")
    rows: list[tuple[str, Any]] = _flatten({k: v for k, v in reg.items() if k != "qc"})
    if result.get("overlap") is not None:
        rows.append(("overlap (fraction of the MRI head covered by the PET)", result.get("overlap")))
    numbers = qc.get("numbers")
    if isinstance(numbers, Mapping):
        rows.extend((f"qc.{k}", v) for k, v in _flatten(numbers))
    rows.extend((f"qc.{k}", v) for k, v in qc.items() if k not in ("verdict", "reasons", "numbers"))
    parts.append(_table(rows))
    return "".join(parts)


def _inputs_html(result: Mapping[str, Any]) -> str:
    blocks = []
    inputs = result.get("inputs") if isinstance(result.get("inputs"), Mapping) else {}
    info = result.get("input_info") if isinstance(result.get("input_info"), Mapping) else {}
    for role in sorted(set(inputs) | set(info), key=lambda r: (r != "mri", r)):
        rows: list[tuple[str, Any]] = []
        src = inputs.get(role)
        if isinstance(src, Mapping):
            rows.extend((k, v) for k, v in src.items() if k != "mtime_ns")
        elif src is not None:
            rows.append(("path", src))
        if isinstance(info.get(role), Mapping):
            rows.extend(_flatten(info[role]))
        blocks.append(f"<div><h3>{_e(role.upper())}</h3>{_table(rows)}</div>")
    return '<div class="cols">' + "".join(blocks) + "</div>" if blocks else "<p>—</p>"


def _settings_html(result: Mapping[str, Any]) -> str:
    blocks = []
    for key, title in (("settings", "Settings"), ("fusion", "Fusion method")):
        value = result.get(key)
        if isinstance(value, Mapping) and value:
            blocks.append(f"<div><h3>{title}</h3>{_table(_flatten(value))}</div>")
    extra = result.get("bids") if isinstance(result.get("bids"), Mapping) else None
    if extra:
        blocks.append(f"<div><h3>BIDS</h3>{_table(_flatten(extra))}</div>")
    return '<div class="cols">' + "".join(blocks) + "</div>" if blocks else "<p>—</p>"


def _timings_html(result: Mapping[str, Any]) -> str:
    timings = result.get("timings") if isinstance(result.get("timings"), Mapping) else {}
    rows = [(k, float(v)) for k, v in timings.items() if isinstance(v, (int, float))]
    if result.get("peak_memory_mb") is not None:
        rows.append(("peak memory (MB)", result.get("peak_memory_mb")))
    return _table([(f"{k} (s)" if k != "peak memory (MB)" else k, v) for k, v in rows]) if rows else "<p>—</p>"


def _outputs_html(result: Mapping[str, Any]) -> str:
    outputs = result.get("outputs") if isinstance(result.get("outputs"), Mapping) else {}
    rows = []
    for kind, value in outputs.items():
        path = value.get("path") if isinstance(value, Mapping) else value
        rows.append((kind, str(path)))
    return _table(rows) if rows else "<p>—</p>"


def _units(info: Mapping[str, Any] | None) -> str:
    if not isinstance(info, Mapping):
        return ""
    for key in ("units", "Units", "unit"):
        if info.get(key):
            return str(info[key])
    return ""


def render_pair_section(
    *,
    mri_image: Any,
    pet_on_mri_image: Any,
    fused_image: Any,
    rgb_image: Any = None,
    result: Mapping[str, Any] | Any,
    title: str = "fusion",
    anchor: str | None = None,
    colormap: str | None = None,
) -> ReportSection:
    """Draw one pair's section of a report.

    Args:
        mri_image: the MRI (nibabel image, ``(array, RAS affine)`` tuple or NIfTI path).
        pet_on_mri_image: the PET resampled onto the MRI grid.
        fused_image: the fused volume.
        rgb_image: the fused colour volume ``(X, Y, Z, 3)``, or ``None`` to draw the PET colour map over the MRI.
        result: the run's description (see :func:`result_mapping`; a ``FuseResult`` is accepted).
        title: the section's heading.
        anchor: the section's HTML id (default: from the title).
        colormap: the PET colour map (default: ``settings.colormap`` of the result, else ``hot``).

    Returns:
        A :class:`ReportSection`.

    Raises:
        ValueError: an image that is not 3D (4D with 3 channels for ``rgb_image``), or a result of the wrong type.
    """
    from asfe3d.reports import figures
    from asfe3d.settings import recorded_setting

    t0 = time.perf_counter()
    result = result_mapping(result)
    settings = result.get("settings") if isinstance(result.get("settings"), Mapping) else {}
    colormap = colormap or recorded_setting(settings, "outputs", "colormap") or "hot"
    info = result.get("input_info") if isinstance(result.get("input_info"), Mapping) else {}
    mri = figures.as_nifti(mri_image, "MRI")
    pet = figures.as_nifti(pet_on_mri_image, "PET on MRI")
    fused = figures.as_nifti(fused_image, "fused")
    if mri.shape[:3] != pet.shape[:3] or mri.shape[:3] != fused.shape[:3]:
        raise ValueError(f"the MRI {mri.shape}, the registered PET {pet.shape} and the fused volume "
                         f"{fused.shape} must share one grid")
    zooms = [float(z) for z in mri.header.get_zooms()[:3]]
    grid = f"{'x'.join(str(s) for s in mri.shape[:3])} voxels of {' x '.join(f'{z:.3g}' for z in zooms)} mm"
    # oblique grids: resample once for display (nilearn would resample at every cut)
    if rgb_image is not None:  # drawn by visualize.physical_slices (closest axes): crop on its own grid
        rgb_image = figures.as_nifti(rgb_image, "colour image")
        if rgb_image.shape[:3] != mri.shape[:3]:
            raise ValueError(f"the colour image {rgb_image.shape} must be on the MRI's grid {mri.shape}")
        rgb_image = rgb_image.slicer[figures.head_box(mri, margin_mm=6.0)]
    mri, pet, fused = (figures.axis_aligned(img) for img in (mri, pet, fused))
    mri, pet, fused = figures.crop_to_head(mri, pet, fused)
    bids = result.get("bids") if isinstance(result.get("bids"), Mapping) else {}
    pet_units = _units(info.get("pet")) or str(bids.get("pet_units") or "") or "PET"
    fused_units = "[0, 1]" if recorded_setting(settings, "outputs", "scale") == "unit" else "MRI units"
    smooth = figures.smoothed(mri)
    reg_png = figures.registration_figure(mri, pet, mri_smoothed=smooth)
    fused_png = figures.fused_figure(fused, title=f"fused ({fused_units})")
    colour_png = figures.colour_figure(mri, pet, rgb=rgb_image, colormap=colormap,
                                       colorbar_label="PET (normalised)" if rgb_image is not None else pet_units)
    thumb = figures.thumbnail(mri, pet, mri_smoothed=smooth)
    verdict = verdict_of(result)
    body = f"""
<p>Registration verdict: {_badge(verdict)} &nbsp; Grid (the MRI's): {_e(grid)}</p>
<h3>Registration: MRI contours over the registered PET</h3>
<p class="caption">The PET resampled onto the MRI grid (grey) with the MRI's outline (cyan) and its inner tissue
boundary (red), contours of the MRI smoothed by 2 mm, in sagittal, coronal and axial slices at true physical
aspect. The contours should follow the PET's edges and its grey/white pattern.</p>
<img class="figure" alt="registration check" src="{_data_uri(reg_png)}">
<h3>Registration numbers</h3>
{_registration_html(result)}
<h3>Fused image</h3>
<img class="figure" alt="fused image" src="{_data_uri(fused_png)}">
<h3>Colour image</h3>
<p class="caption">{"The fused colour volume (the PET colour map fused over the MRI)." if rgb_image is not None else
    "The PET colour map over the MRI (PET values above 20 % of its display range)."}</p>
<img class="figure" alt="colour image" src="{_data_uri(colour_png)}">
<h3>Inputs</h3>
{_inputs_html(result)}
<h3>Settings</h3>
{_settings_html(result)}
<div class="cols"><div><h3>Timings</h3>{_timings_html(result)}</div>
<div><h3>Outputs</h3>{_outputs_html(result)}</div></div>
"""
    return ReportSection(title=title, anchor=_anchor(anchor or title), html=body, verdict=verdict, status="ok",
                         thumbnail=thumb, seconds=time.perf_counter() - t0)


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
    body = f'<p>{_badge("fail", "failed")}</p><div class="error">{_e(message)}</div>'
    if result:
        body += f"<h3>Inputs</h3>{_inputs_html(result)}<h3>Settings</h3>{_settings_html(result)}"
    return ReportSection(title=title, anchor=_anchor(anchor or title), html=body, verdict=None, status="failed")


def _worst(verdicts: Iterable[str | None]) -> str | None:
    order = {"bad": 3, "warn": 2, "ok": 1, "none": 0}
    best: tuple[int, str | None] = (-1, None)
    for v in verdicts:
        rank = order[_VERDICT_CLASS.get(str(v).lower(), "none")] if v else 0
        if rank > best[0]:
            best = (rank, v)
    return best[1]


def _summary_json(data: Mapping[str, Any]) -> str:
    return json.dumps(dict(data), default=str).replace("</", "<\\/")


def write_report(
    path: str | Path,
    sections: Sequence[ReportSection],
    *,
    title: str,
    overwrite: bool = False,
    intro: str = "",
) -> Path:
    """Write a self-contained HTML report of one or more sections, atomically.

    Args:
        path: the ``.html`` file.
        sections: the pairs' sections (at least one).
        title: the page title (e.g. ``sub-01``).
        overwrite: replace an existing file.
        intro: optional HTML shown above the sections (trusted; escape user text with ``html.escape``).

    Returns:
        The written path.

    Raises:
        ValueError: no sections, or a path that does not end in ``.html``.
        Asfe3dInputError: the file exists and ``overwrite`` is False (from :func:`asfe3d.io.atomic_output`).
    """
    from asfe3d import __version__
    from asfe3d.io import atomic_output

    path = Path(path)
    if not sections:
        raise ValueError("a report needs at least one section")
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the report must be an .html file, got {str(path)!r}")
    anchors: dict[str, int] = {}
    for s in sections:  # unique ids
        n = anchors.get(s.anchor, 0)
        anchors[s.anchor] = n + 1
        if n:
            s.anchor = f"{s.anchor}-{n + 1}"
    verdict = _worst(s.verdict for s in sections)
    status = "failed" if any(s.status == "failed" for s in sections) else "ok"
    thumb = next((s.thumbnail for s in sections if s.thumbnail), None)
    summary = {
        "generator": GENERATOR, "title": title, "verdict": verdict, "status": status,
        "sections": [{"title": s.title, "anchor": s.anchor, "verdict": s.verdict, "status": s.status}
                     for s in sections],
        "thumbnail": _data_uri(thumb) if thumb else None, "asfe3d_version": __version__,
    }
    nav = "".join(f'<a href="#{_e(s.anchor)}">{_e(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section class="pair" id="{_e(s.anchor)}"><h2>{_e(s.title)} &nbsp;'
        f'{_badge(s.verdict) if s.status == "ok" else _badge("fail", "failed")}</h2>{s.html}</section>'
        for s in sections
    )
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">
<title>{_e(title)}: asfe3d report</title><style>{_CSS}</style>
<script type="application/json" id="asfe3d-summary">{_summary_json(summary)}</script></head>
<body><header><h1>{_e(title)} &nbsp;{_badge(verdict) if status == "ok" else _badge("fail", "failed")}</h1>
<nav>{nav}</nav></header>
<main>{intro}{body}</main>
<footer>asfe3d {_e(__version__)} &middot; report written {_e(stamp)}</footer></body></html>
"""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def write_subject_report(
    path: str | Path,
    *,
    mri_image: Any,
    pet_on_mri_image: Any,
    fused_image: Any,
    rgb_image: Any = None,
    result: Mapping[str, Any] | Any,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the report of one fused pair (a single-section :func:`write_report`).

    Args:
        path: the ``.html`` file.
        mri_image: the MRI (nibabel image, ``(array, RAS affine)`` tuple or NIfTI path).
        pet_on_mri_image: the PET on the MRI grid.
        fused_image: the fused volume.
        rgb_image: the colour fused volume ``(X, Y, Z, 3)`` or ``None``.
        result: the run's description: a mapping (the completion record, or any dict with ``inputs``,
            ``settings``, ``registration`` incl. ``qc``, ``timings``, ``outputs``, ``peak_memory_mb``) or a
            ``FuseResult``.
        title: the page title (default: the report's file stem).
        overwrite: replace an existing file.

    Returns:
        The written path.

    Raises:
        ValueError: bad images or path (see :func:`render_pair_section`, :func:`write_report`).
        Asfe3dInputError: the file exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the report must be an .html file, got {str(path)!r}")
    if path.exists() and not overwrite:  # fail before drawing
        from asfe3d.errors import Asfe3dInputError

        raise Asfe3dInputError(path, "output file already exists (pass overwrite=True to replace it)")
    title = title or path.stem
    section = render_pair_section(mri_image=mri_image, pet_on_mri_image=pet_on_mri_image, fused_image=fused_image,
                                  rgb_image=rgb_image, result=result, title=title)
    return write_report(path, [section], title=title, overwrite=overwrite)


def read_report_summary(path: str | Path) -> dict[str, Any] | None:
    """The machine-readable summary of an asfe3d report, or ``None`` (no file, or not an asfe3d report).

    Args:
        path: the ``.html`` report.

    Returns:
        ``{"generator", "title", "verdict", "status", "sections", "thumbnail", ...}`` or ``None``.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = _SUMMARY_RE.search(text)
    if not match:
        return None
    try:
        data = json.loads(match.group(1).replace("<\\/", "</"))
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("generator") == GENERATOR else None


def _relative_link(target: Path, index: Path) -> str:
    import os

    return Path(os.path.relpath(target.resolve(), index.resolve().parent)).as_posix()


def write_index(
    path: str | Path,
    entries: Iterable[IndexEntry | Mapping[str, Any]],
    *,
    title: str = "asfe3d reports",
    overwrite: bool = True,
) -> Path:
    """Write an index page linking every subject's report, with its thumbnail and flags, atomically.

    Thumbnails and verdicts come from each report's embedded summary (:func:`read_report_summary`), so subjects
    whose reports were written by an earlier run show like the others. Failed subjects come first.

    Args:
        path: the ``.html`` file.
        entries: :class:`IndexEntry` objects or mappings with the same keys.
        title: the page title.
        overwrite: replace an existing file (default True: an index is rebuilt after every run).

    Returns:
        The written path.

    Raises:
        ValueError: a path that does not end in ``.html``, or an entry without a name.
    """
    from asfe3d import __version__
    from asfe3d.io import atomic_output

    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the index must be an .html file, got {str(path)!r}")
    items: list[IndexEntry] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            entry = IndexEntry(**dict(entry))
        if not entry.name:
            raise ValueError(f"an index entry needs a name, got {entry!r}")
        if entry.report is not None and not isinstance(entry.report, Path):
            entry.report = Path(entry.report)
        items.append(entry)
    counts: dict[str, int] = {}
    cards = []
    order = {"failed": 0, "ok": 1}
    rows = []
    for entry in items:
        summary = read_report_summary(entry.report) if entry.report is not None else None
        verdict = entry.verdict or (summary or {}).get("verdict")
        status = entry.status
        if summary and summary.get("status") == "failed" and status != "failed":
            status = "failed"
        rows.append((entry, summary, verdict, status))
    rows.sort(key=lambda r: (order.get(r[3], 2), r[0].name))
    for entry, summary, verdict, status in rows:
        counts[status] = counts.get(status, 0) + 1
        thumb = (summary or {}).get("thumbnail")
        thumb = thumb if isinstance(thumb, str) and thumb.startswith("data:image/png;base64,") else None
        link = _relative_link(entry.report, path) if summary is not None and entry.report is not None else None
        img = f'<img alt="{_e(entry.name)}" src="{_e(thumb)}">' if thumb else ""
        name = f'<a href="{_e(link)}">{_e(entry.name)}</a>' if link else f"<b>{_e(entry.name)}</b>"
        if link and img:
            img = f'<a href="{_e(link)}">{img}</a>'
        status_badge = _badge("fail", "failed") if status == "failed" else (
            f'<span class="badge none">{_e(status)}</span>' if status not in ("ok",) else "")
        flags = " ".join(f'<span class="badge none">{_e(f)}</span>' for f in entry.flags)
        verdict_badge = _badge(verdict) if status != "failed" and status != "no-pet" else ""
        msg = f'<div class="msg">{_e(entry.message)}</div>' if entry.message else ""
        cards.append(f'<div class="card" data-status="{_e(status)}" data-verdict="{_e(verdict or "")}">{img}'
                     f'<div>{name} {status_badge} {verdict_badge} {flags}</div>{msg}</div>')
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{_e(title)}</h1><nav><span style="color:#ccc;font-size:13px">{len(items)} subjects: {_e(tally)}
</span></nav></header><main><div class="grid">{"".join(cards)}</div></main>
<footer>asfe3d {_e(__version__)} &middot; thumbnails: axial slice of the registered PET with the MRI's contours
</footer></body></html>
"""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
