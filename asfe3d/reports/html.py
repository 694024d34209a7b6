"""Self-contained HTML reports (one per subject) and an index page for cohorts and BIDS runs.

A report holds one section per fused pair (a subject with two sessions or tracers has two; see
:mod:`asfe3d.reports.pair`): the registration check (before/after on hover, the anatomical image's contours over the
PET in three planes), the registration quality, the PET over the MRI or CT and the fused image with colour bars in
their units, then inputs, settings, timings and outputs; then, once per page, About (command line, version, date,
platform) and Methods (a paragraph with references to paste into a paper). Figures are embedded as base64 PNG, so
the file can be mailed or archived alone.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ReportSection",
    "IndexEntry",
    "write_report",
    "read_report_summary",
    "write_index",
    "verdict_of",
    "result_mapping",
]

#: the generator tag of asfe3d's reports (a file without it is not one of ours)
GENERATOR = "asfe3d-report/1"
#: the footer of every index page (how an index written before indexes had a summary is known)
_OLD_INDEX_FOOTER = "thumbnails: axial slice of the registered PET with the contours of the MRI (or CT)"
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
table{border-collapse:collapse;font-size:13px;margin:4px 0 8px;display:block;max-width:100%;overflow-x:auto}
@media (max-width:700px){main{padding:8px}section.pair{padding:4px 8px 12px}header{position:static}}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12px;word-break:break-all}.error code{white-space:nowrap;word-break:normal}table.group td:first-child{white-space:nowrap}
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
h4{font-size:13px;margin:10px 0 4px;color:#444}
details{font-size:13px;margin:4px 0 10px}summary{cursor:pointer;color:#1f5fa8}
p.note{font-size:13px;color:#8a4b00;background:#fff6e5;padding:6px 10px;border-radius:4px}
p.methods{font-size:14px;line-height:1.5;max-width:1000px}
ol.refs{font-size:13px;line-height:1.45;max-width:1000px}
.compare{position:relative;display:block;max-width:100%;cursor:crosshair;outline:none}
.compare img.before{position:absolute;left:0;top:0;opacity:0}
.compare:hover img.before,.compare:focus img.before{opacity:1}
input.flick{margin:0 4px 6px 0}label.flick{font-size:13px;color:#333;cursor:pointer}
input.flick:checked~.compare img.before{animation:flick 1.6s steps(1,end) infinite}
@keyframes flick{0%{opacity:0}50%{opacity:1}}
.viewer-controls{font-size:13px;margin:4px 0}.viewer-controls label{margin-right:12px;cursor:pointer}
.viewer-status{color:#555;margin-left:8px}
.viewer-canvas{width:100%;height:460px;background:#000;border-radius:3px}
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
        result: the run's description (for the page's About and Methods), or ``None``.
        viewer: the section holds an interactive viewer (the page then inlines NiiVue once).
    """

    title: str
    anchor: str
    html: str
    verdict: str | None = None
    status: str = "ok"
    thumbnail: bytes | None = None
    seconds: float = 0.0
    result: dict[str, Any] | None = None
    viewer: bool = False


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
        value += 0.0  # -0.0 reads as 0
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, Mapping):  # e.g. one frame's motion: "frame 1; translation_mm 0, 6, 0" (a dict's repr was shown)
        return "; ".join(f"{k} {_fmt(v)}" for k, v in value.items()) if value else "—"
    if isinstance(value, (list, tuple)):
        # rows of a matrix, or mappings, each apart: "1, 0, 0, 0 | 0, 1, 0, 0 | ..."
        joint = " | " if any(isinstance(v, (Mapping, list, tuple)) for v in value) else ", "
        return joint.join(_fmt(v) for v in value) if value else "—"
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


def _about_methods(sections: Sequence[ReportSection], stamp: str) -> str:
    """The page's About (command line, version, date, platform) and Methods (paragraph and references) sections."""
    from asfe3d.reports.text import about_rows, methods_groups

    results = [s.result for s in sections if s.result]
    first = results[0] if results else {}
    about = _table(about_rows(first, stamp))
    # a pair that was not fused (a refused registration's section keeps its result for About) has no methods
    fused = [s for s in sections if s.result and s.status == "ok"]
    groups, references = methods_groups([s.result for s in fused])

    def label(covered: list[int]) -> str:  # which pairs a paragraph describes, where there are several
        return "" if len(groups) < 2 else f"<strong>{_e(', '.join(fused[i].title for i in covered))}:</strong> "

    if groups:
        methods = ("".join(f'<p class="methods">{label(c)}{_e(p)}</p>' for p, c in groups)
                   + '<h4>References</h4><ol class="refs">'
                   + "".join(f"<li>{_e(r.split('] ', 1)[1])}</li>" for r in references) + "</ol>")
    else:
        methods = "<p>No pair was fused: nothing to describe.</p>"
    return (f'<section class="pair" id="about"><h2>About</h2>{about}</section>'
            f'<section class="pair" id="methods"><h2>Methods</h2><p class="caption">Written from this run\'s '
            f"settings for you to paste into a paper (check it first).</p>{methods}</section>")


def write_report(
    path: str | Path,
    sections: Sequence[ReportSection],
    *,
    title: str,
    overwrite: bool = False,
    intro: str = "",
) -> Path:
    """Write a self-contained HTML report of one or more sections, then About and Methods, atomically.

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
    from asfe3d.reports.text import command_line

    path = Path(path)
    if not sections:
        raise ValueError("a report needs at least one section")
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the report must be an .html file, got {str(path)!r}")
    anchors: dict[str, int] = {"about": 1, "methods": 1}
    for s in sections:  # unique ids
        n = anchors.get(s.anchor, 0)
        anchors[s.anchor] = n + 1
        if n:
            s.anchor = f"{s.anchor}-{n + 1}"
    verdict = _worst(s.verdict for s in sections)
    status = "failed" if any(s.status == "failed" for s in sections) else "ok"
    thumb = next((s.thumbnail for s in sections if s.thumbnail), None)
    first = next((s.result for s in sections if s.result), {})
    summary = {
        "generator": GENERATOR, "title": title, "verdict": verdict, "status": status,
        "sections": [{"title": s.title, "anchor": s.anchor, "verdict": s.verdict, "status": s.status,
                      "qc": _qc_summary(s.result)} for s in sections],
        "thumbnail": _data_uri(thumb) if thumb else None, "asfe3d_version": __version__,
        "command": command_line(first),
    }
    nav = "".join(f'<a href="#{_e(s.anchor)}">{_e(s.title)}</a>' for s in sections)
    nav += '<a href="#about">About</a><a href="#methods">Methods</a>'
    several = len(sections) > 1
    body = "".join(
        f'<section class="pair" id="{_e(s.anchor)}"><h2>{_e(s.title)}'
        f'{" &nbsp;" + _badge(s.verdict) if several and s.status == "ok" else ""}'
        f'{" &nbsp;" + _badge("fail", "failed") if s.status != "ok" else ""}</h2>{s.html}</section>'
        for s in sections
    )
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    script = ""
    if any(s.viewer for s in sections):
        from asfe3d.reports.viewer import NIIVUE_VERSION, niivue_script

        script = f"<!-- NiiVue {NIIVUE_VERSION} (BSD-2-Clause) --><script>{niivue_script()}</script>"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="generator" content="{GENERATOR}">
<title>{_e(title)}: asfe3d report</title><style>{_CSS}</style>{script}
<script type="application/json" id="asfe3d-summary">{_summary_json(summary)}</script></head>
<body><header><h1>{_e(title)} &nbsp;{_badge(verdict) if status == "ok" else _badge("fail", "failed")}</h1>
<nav>{nav}</nav></header>
<main>{intro}{body}{_about_methods(sections, stamp)}</main>
<footer>asfe3d {_e(__version__)} &middot; report written {_e(stamp)}</footer></body></html>
"""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def read_report_summary(path: str | Path) -> dict[str, Any] | None:
    """The machine-readable summary of an asfe3d report, or ``None`` (no file, or not an asfe3d report).

    Args:
        path: the ``.html`` report.

    Returns:
        ``{"generator", "title", "verdict", "status", "sections", "thumbnail", ...}`` for a report, ``{"generator",
        "kind": "index", "title", "subjects", "counts", ...}`` for an index page (:func:`write_index`), or ``None``.
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
        if f'<meta name="generator" content="{GENERATOR}">' in text and _OLD_INDEX_FOOTER in text:
            return {"generator": GENERATOR, "kind": "index"}  # an index written before indexes had a summary
        return None
    try:
        data = json.loads(match.group(1).replace("<\\/", "</"))
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("generator") == GENERATOR else None


def _relative_link(target: Path, index: Path) -> str:
    """The URL of ``target`` relative to the page ``index``: a relative path, percent-encoded, so that a file name
    with ``#``, ``?``, ``%``, ``:`` or a space (``sub#2_fused_report.html``) links to that file, not to a fragment,
    a query or a URL scheme."""
    import os
    from urllib.parse import quote

    return quote(Path(os.path.relpath(target.resolve(), index.resolve().parent)).as_posix(), safe="/")


#: how an index names a subject's status: ``skipped`` is a subject an earlier run completed (not "not processed")
_STATUS_LABEL = {"skipped": "done earlier"}


#: the QC numbers an index's group table shows: (``qc.numbers`` key, column, scale, format)
GROUP_QC = (("translation_mm", "translation (mm)", 1.0, "{:.1f}"), ("rotation_deg", "rotation (deg)", 1.0, "{:.1f}"),
            ("mi_margin", "MI margin", 100.0, "{:.0f} %"), ("pet_in_head", "PET in head", 100.0, "{:.0f} %"),
            ("head_in_pet_fov", "head in PET view", 100.0, "{:.0f} %"))


def _qc_summary(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """A section's QC for its report's summary (an index's group table reads it): the numbers of
    :data:`GROUP_QC` and the first reason."""
    reg = (result or {}).get("registration")
    qc = reg.get("qc") if isinstance(reg, Mapping) and isinstance(reg.get("qc"), Mapping) else {}
    numbers = qc.get("numbers") if isinstance(qc.get("numbers"), Mapping) else {}
    out: dict[str, Any] = {k: float(numbers[k]) for k, *_ in GROUP_QC
                           if isinstance(numbers.get(k), (int, float)) and not isinstance(numbers.get(k), bool)}
    reasons = [str(r) for r in qc.get("reasons") or []]
    if reasons:
        out["reason"] = reasons[0]
    return out


def _report_link(entry: IndexEntry, summary: Mapping[str, Any] | None, index: Path) -> str | None:
    """The link from the index page to an entry's report, ``None`` where there is no asfe3d report to link."""
    return _relative_link(entry.report, index) if summary is not None and entry.report is not None else None


def _rounded(fmt: str, value: float) -> str:
    """``fmt.format(value)`` without the minus of a value that rounds to zero (``-0 %`` read as a loss)."""
    return re.sub(r"^-(?=0(?:\.0+)?(?![\d.]))", "", fmt.format(value))


def _group_table(rows: Sequence[tuple[IndexEntry, Mapping[str, Any] | None, str | None, str]], path: Path) -> str:
    """The index's group QC table: one row per pair of every report (a subject's sessions and tracers each), its
    verdict and the QC numbers of :data:`GROUP_QC`, sortable by eye (the order of the cards)."""
    head = "".join(f"<th>{_e(label)}</th>" for _, label, _, _ in GROUP_QC)
    body = []
    for entry, summary, verdict, status in rows:
        sections = (summary or {}).get("sections") or [{"title": entry.name, "verdict": verdict, "status": status}]
        link = _report_link(entry, summary, path)
        for sec in sections:
            if not isinstance(sec, Mapping):
                continue
            qc = sec.get("qc") if isinstance(sec.get("qc"), Mapping) else {}
            name = _e(sec.get("title") or entry.name)
            if link:
                name = f'<a href="{_e(link)}#{_e(sec.get("anchor", ""))}">{name}</a>' if sec.get("anchor") \
                    else f'<a href="{_e(link)}">{name}</a>'
            cells = "".join(f"<td>{_e(_rounded(fmt, scale * qc[k]))}</td>" if isinstance(qc.get(k), (int, float))
                            else "<td></td>" for k, _, scale, fmt in GROUP_QC)
            state = "failed" if sec.get("status") == "failed" or status == "failed" else sec.get("verdict") or ""
            body.append(f"<tr><td>{name}</td><td>{_badge(state) if state != 'failed' else _badge('fail', 'failed')}"
                        f"</td>{cells}<td>{_e(qc.get('reason', entry.message or ''))}</td></tr>")
    return ('<h2>Registration quality, every pair</h2><table class="group"><tr><th>pair</th><th>verdict</th>'
            f"{head}<th>first reason</th></tr>{''.join(body)}</table>")


def write_index(
    path: str | Path,
    entries: Iterable[IndexEntry | Mapping[str, Any]],
    *,
    title: str = "asfe3d reports",
    overwrite: bool = True,
    downloads: Sequence[str | Path] = (),
) -> Path:
    """Write an index page linking every subject's report, with its thumbnail and flags, atomically.

    Thumbnails and verdicts come from each report's embedded summary (:func:`read_report_summary`), so subjects
    whose reports were written by an earlier run show like the others. Failed subjects come first, then (within
    each status) registrations judged fail, warn and pass, each by name.

    Args:
        path: the ``.html`` file.
        entries: :class:`IndexEntry` objects or mappings with the same keys.
        title: the page title.
        overwrite: replace an existing file (default True: an index is rebuilt after every run).
        downloads: files to link at the top (a cohort's ``summary.csv``); those that do not exist are left out.

    Returns:
        The written path. Below the cards, a table of every pair's registration verdict and QC numbers (read from
        each report's summary: translation, rotation, MI margin, PET in head, head in the PET's view, first reason).

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
    severity = {"fail": 0, "warn": 1, "pass": 2}  # within a status, the registrations to look at first
    rows.sort(key=lambda r: (order.get(r[3], 2), severity.get(str(r[2]), 3), r[0].name))
    verdicts: dict[str, int] = {}
    for entry, summary, verdict, status in rows:
        counts[status] = counts.get(status, 0) + 1
        # a failed subject's registration counts when it failed it (refused under --qc strict); another failure's
        # verdict may be an earlier run's, read from its report
        if verdict and (status not in ("failed", "no-pet") or verdict == "fail"):
            verdicts[str(verdict)] = verdicts.get(str(verdict), 0) + 1
        thumb = (summary or {}).get("thumbnail")
        thumb = thumb if isinstance(thumb, str) and thumb.startswith("data:image/png;base64,") else None
        link = _report_link(entry, summary, path)
        img = f'<img alt="{_e(entry.name)}" src="{_e(thumb)}">' if thumb else ""
        name = f'<a href="{_e(link)}">{_e(entry.name)}</a>' if link else f"<b>{_e(entry.name)}</b>"
        if link and img:
            img = f'<a href="{_e(link)}">{img}</a>'
        status_badge = _badge("fail", "failed") if status == "failed" else (
            f'<span class="badge none">{_e(_STATUS_LABEL.get(status, status))}</span>' if status != "ok" else "")
        flags = " ".join(f'<span class="badge none">{_e(f)}</span>' for f in entry.flags)
        verdict_badge = _badge(verdict) if status != "failed" and status != "no-pet" else ""
        msg = f'<div class="msg">{_e(entry.message)}</div>' if entry.message else ""
        cards.append(f'<div class="card" data-status="{_e(status)}" data-verdict="{_e(verdict or "")}">{img}'
                     f'<div>{name} {status_badge} {verdict_badge} {flags}</div>{msg}</div>')
    tally = ", ".join(f"{n} {_STATUS_LABEL.get(s, s)}" for s, n in sorted(counts.items()))
    if verdicts:  # what the registrations were judged, done in this run or an earlier one
        tally += "; registration " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    # the index's own summary: a rerun (a resumed cohort, a BIDS run) knows the page as asfe3d's and replaces it
    summary = {"generator": GENERATOR, "kind": "index", "title": title, "subjects": len(items), "counts": counts,
               "asfe3d_version": __version__}
    links = "".join(f'<a href="{_e(_relative_link(Path(d), path))}">{_e(Path(d).name)}</a>' for d in downloads
                    if Path(d).is_file())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="generator" content="{GENERATOR}">
<title>{_e(title)}</title><style>{_CSS}</style>
<script type="application/json" id="asfe3d-summary">{_summary_json(summary)}</script></head>
<body><header><h1>{_e(title)}</h1><nav><span style="color:#ccc;font-size:13px">{len(items)} subjects: {_e(tally)}
</span>{links}</nav></header><main><div class="grid">{"".join(cards)}</div>{_group_table(rows, path)}</main>
<footer>asfe3d {_e(__version__)} &middot; {_OLD_INDEX_FOOTER}
</footer></body></html>
"""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
