"""HTML reports: self-contained pages, the embedded summary, refusals, and the index page."""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path

import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.reports import (
    IndexEntry,
    failed_section,
    read_report_summary,
    render_pair_section,
    write_index,
    write_report,
    write_subject_report,
)
from asfe3d.reports.figures import canonical, contour_levels, draw_registration, head_bounds_mm, smoothed

RESULT = {
    "inputs": {"mri": {"path": "/data/sub-01_T1w.nii.gz", "size": 10}, "pet": {"path": "/data/sub-01_pet.nii.gz"}},
    "input_info": {"pet": {"format": "nifti", "units": "Bq/mL"}},
    "settings": {"method": "wavelet", "registration": "rigid", "colormap": "hot", "output_scale": "mri"},
    "fusion": {"method": "wavelet", "levels": 3},
    "registration": {"method": "rigid", "metric": -0.51, "iterations": 40,
                     "qc": {"verdict": "warn", "reasons": ["PET sits 3.2 mm off the head centre"],
                            "numbers": {"mi_margin": 0.12}}},
    "overlap": 0.97, "timings": {"load": 0.25, "register": 1.5}, "peak_memory_mb": 700.0,
    "outputs": {"fused": {"path": "/out/sub-01_fused.nii.gz"}},
}


def _volumes(shape: tuple[int, int, int] = (20, 22, 10), zooms: tuple[float, ...] = (1.0, 1.0, 2.5)):
    axes = [(np.arange(n) - (n - 1) / 2) * z for n, z in zip(shape, zooms)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    head = ((x / 8) ** 2 + (y / 9) ** 2 + (z / 9) ** 2 < 1).astype(np.float32)
    core = ((x - 2) ** 2 + y ** 2 + z ** 2 < 16).astype(np.float32)
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * np.array(zooms)
    mri = 100 * head + 80 * core
    pet = 50 * head + 200 * core
    return (mri, affine), (pet, affine), ((mri + pet) / 2, affine)


def _pngs(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_subject_report_is_self_contained_and_says_what_happened(tmp_path: Path) -> None:
    mri, pet, fused = _volumes()
    path = write_subject_report(tmp_path / "sub-01.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                pet_as_read_image=pet, result=RESULT)
    text = path.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:|file:|/)', text)  # nothing loaded from elsewhere
    pngs = _pngs(text)  # after, before, PET over the MRI, fused
    assert len(pngs) == 4 and all(p.startswith(b"\x89PNG") for p in pngs)
    for needle in ("PET sits 3.2 mm off the head centre", "MI margin over 12 deliberate misalignments", "register (s)",
                   "peak memory (MB)", "/data/sub-01_T1w.nii.gz", "wavelet", "PET (Bq/mL)",
                   "20x22x10 voxels of 1 x 1 x 2.5 mm"):
        assert needle in text, needle
    # the QC's relative MI margin in percent, named apart from the optimiser's negative metric (probe 41 #10: a bare
    # 0.12 beside a reason that said "%")
    assert re.search(r"MI margin over 12 deliberate misalignments \(relative[^<]*</t[hd]><td>12 %</td>", text), \
        re.findall(r"MI margin.{0,200}", text)
    summary = read_report_summary(path)
    assert summary["verdict"] == "warn" and summary["status"] == "ok" and summary["title"] == "sub-01"
    assert summary["thumbnail"].startswith("data:image/png;base64,")


def test_report_says_why_the_headers_alignment_was_kept(tmp_path: Path) -> None:
    mri, pet, fused = _volumes()
    kept = {**RESULT, "registration": {"method": "rigid", "metric": float("nan"), "iterations": 0,
                                       "stop_condition": "the headers' alignment scored a higher MI",
                                       "qc": {"verdict": "ok", "reasons": [], "numbers": {}}}}
    text = write_subject_report(tmp_path / "sub-01.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                pet_as_read_image=pet, result=kept).read_text(encoding="utf-8")
    assert "rigid: kept the headers&#x27; alignment (the headers&#x27; alignment scored a higher MI)" in text
    words = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)  # the page without its pictures
    assert not re.search(r"iterations|\bnan\b", words, re.IGNORECASE)
    assert "The optimiser&#x27;s result was not used: the headers&#x27; alignment was kept (the headers" in words
    optimised = write_subject_report(tmp_path / "sub-02.html", mri_image=mri, pet_on_mri_image=pet,
                                     fused_image=fused, pet_as_read_image=pet, result=RESULT).read_text("utf-8")
    assert "Iterations" in optimised and "Alignment kept" not in optimised

def test_report_refusals(tmp_path: Path) -> None:
    mri, pet, fused = _volumes()
    kwargs = dict(mri_image=mri, pet_on_mri_image=pet, fused_image=fused, result=RESULT)
    (tmp_path / "r.html").write_text("mine")
    with pytest.raises(Asfe3dInputError, match="already exists"):
        write_subject_report(tmp_path / "r.html", **kwargs)
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == "mine"
    with pytest.raises(ValueError, match="must be an .html file"):
        write_subject_report(tmp_path / "r.png", **kwargs)
    with pytest.raises(ValueError, match="must share one grid"):
        render_pair_section(mri_image=mri, pet_on_mri_image=(np.zeros((5, 5, 5)), np.eye(4)), fused_image=fused,
                            result=RESULT)
    with pytest.raises(ValueError, match="expected an \\(X, Y, Z\\)"):
        render_pair_section(mri_image=(np.zeros((5, 5)), np.eye(4)), pet_on_mri_image=pet, fused_image=fused,
                            result=RESULT)
    with pytest.raises(ValueError, match="at least one section"):
        write_report(tmp_path / "e.html", [], title="x")
    assert read_report_summary(tmp_path / "r.html") is None  # not one of ours


def test_registration_figure_rows_follow_physical_aspect() -> None:
    import nibabel as nib
    from matplotlib.figure import Figure

    mri, pet, _ = _volumes(shape=(20, 22, 10), zooms=(1.0, 1.0, 2.5))
    anat, pet_img = canonical(nib.Nifti1Image(mri[0], mri[1])), canonical(nib.Nifti1Image(pet[0], pet[1]))
    smooth = smoothed(anat)
    fig = draw_registration(anat, pet_img, anat_smoothed=smooth, levels=contour_levels(np.asarray(smooth.dataobj)),
                            window=(0.0, 250.0), label="after", cuts=4, width=8.0)
    assert isinstance(fig, Figure)
    w, h = fig.get_size_inches()
    # row heights: sagittal z/y, coronal z/x, axial y/x of one 2-inch cut over the head box (+ one voxel), title strip
    bounds = head_bounds_mm(anat)
    ext = bounds[1] - bounds[0] + np.array([1.0, 1.0, 2.5])
    expected = 2.0 * (ext[2] / ext[1] + ext[2] / ext[0] + ext[1] / ext[0]) + 0.3
    assert w == 8.0 and abs(h - expected) < 1e-6
    assert len(fig.axes) == 12


def test_head_bounds_are_computed_once_per_image_and_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A report's figures all ask for the cropped MRI's head box: one box filter per image and threshold; a caller
    changing the returned array does not change the next answer."""
    import nibabel as nib

    from asfe3d.reports import figures

    calls = []
    real = figures.head_box
    monkeypatch.setattr(figures, "head_box", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    mri, _, _ = _volumes(shape=(20, 22, 10), zooms=(1.0, 1.0, 2.5))
    anat = canonical(nib.Nifti1Image(mri[0], mri[1]))
    first = head_bounds_mm(anat)
    first[:] = 0.0
    again = head_bounds_mm(anat)
    assert len(calls) == 1 and np.all(again[1] > again[0])
    np.testing.assert_array_equal(again, figures._bounds_mm(anat, real(anat)))
    head_bounds_mm(anat, threshold=50.0)
    other = canonical(nib.Nifti1Image(mri[0].copy(), mri[1]))
    head_bounds_mm(other)
    assert len(calls) == 3  # another threshold, another image: computed


def test_contour_levels_separate_tissues() -> None:
    data = np.concatenate([np.zeros(1000), np.full(1000, 100.0), np.full(1000, 200.0)])
    levels = contour_levels(data)
    assert len(levels) == 2 and levels[0] < 100 and 100 <= levels[1] < 200


def test_failed_section_marks_the_report_failed(tmp_path: Path) -> None:
    path = write_report(tmp_path / "sub-09.html", [failed_section("ses-1", "pet.nii.gz: volume is constant")],
                        title="sub-09")
    assert "pet.nii.gz: volume is constant" in path.read_text(encoding="utf-8")
    assert read_report_summary(path)["status"] == "failed"


def test_index_links_reports_with_thumbnails_failed_first(tmp_path: Path) -> None:
    mri, pet, fused = _volumes()
    (tmp_path / "reports").mkdir()
    report = write_subject_report(tmp_path / "reports" / "sub-01.html", mri_image=mri, pet_on_mri_image=pet,
                                  fused_image=fused, result=RESULT)
    index = write_index(tmp_path / "index.html", [
        IndexEntry("sub-01", report=report),
        {"name": "sub-02", "status": "failed", "message": "sub-02_pet.nii.gz: <bad> header"},
        IndexEntry("sub-03", status="no-pet", message="no PET"),
    ])
    text = index.read_text(encoding="utf-8")
    assert 'href="reports/sub-01.html"' in text
    assert text.index("sub-02") < text.index("sub-01")  # failed first
    assert "&lt;bad&gt;" in text and "<bad>" not in text
    assert len(_pngs(text)) == 1 and 'data-verdict="warn"' in text
    # the header counts the registrations' verdicts; a subject an earlier run completed is "done earlier"
    assert "3 subjects: 1 failed, 1 no-pet, 1 ok; registration 1 warn" in text
    again = write_index(tmp_path / "index.html", [IndexEntry("sub-01", status="skipped", report=report, verdict="fail")])
    text = again.read_text(encoding="utf-8")
    assert "1 subjects: 1 done earlier; registration 1 fail" in text and ">done earlier</span>" in text
    with pytest.raises(ValueError, match="needs a name"):
        write_index(tmp_path / "i2.html", [IndexEntry("")])
    # registrations judged fail, then warn, before the passes (a QC-failed subject sat among the passes, by name)
    ranked = write_index(tmp_path / "i3.html", [IndexEntry("a", verdict="pass"), IndexEntry("b", verdict="warn"),
                                                IndexEntry("c", verdict="fail"), IndexEntry("d", verdict="pass")])
    cards = [line for line in ranked.read_text(encoding="utf-8").split('<div class="card"')[1:]]
    assert [c.split('data-verdict="')[1].split('"')[0] for c in cards] == ["fail", "warn", "pass", "pass"]


def test_index_links_survive_names_with_url_characters(tmp_path: Path) -> None:
    """A report named ``s#2 ?50%:a.html`` was linked as ``href="s#2 ?50%:a.html"``: a browser opened ``s`` (the rest
    a fragment), a query, or took ``s:`` for a URL scheme."""
    import html
    from urllib.parse import unquote, urlsplit

    mri, pet, fused = _volumes()
    names = ["s#2 ?50%.html", "sub:01.html", "ü & <x>.html"]
    reports = [write_subject_report(tmp_path / "r" / n, mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                    result=RESULT) for n in names]
    text = write_index(tmp_path / "index.html", [IndexEntry(n, report=r) for n, r in zip(names, reports)]).read_text(
        encoding="utf-8")
    hrefs = {html.unescape(h) for h in re.findall(r'href="([^"]*)"', text)}
    assert len({urlsplit(h).path for h in hrefs}) == 3  # the cards' links, and the group table's to each section
    for href in hrefs:
        parts = urlsplit(href)
        assert not parts.scheme and not parts.query, href
        target = tmp_path / unquote(parts.path)
        assert target.is_file(), href
        # a fragment only where the group table names a section, and that section exists
        assert not parts.fragment or f'id="{parts.fragment}"' in target.read_text(encoding="utf-8"), href


def test_overlap_row_is_named_apart_from_the_qc_head_covered(tmp_path: Path) -> None:
    """The table said "Head covered by the PET 95.5 %" while "All quality numbers" gave head_covered 0.9088: two
    measures under one name on a poorly aligned pair."""
    mri, pet, fused = _volumes()
    result = {**RESULT, "overlap": 0.955,
              "registration": {**RESULT["registration"],
                               "qc": {**RESULT["registration"]["qc"],
                                      "numbers": {"head_covered": 0.9088, "head_in_pet_fov": 1.0}}}}
    text = write_subject_report(tmp_path / "r.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                pet_as_read_image=pet, result=result).read_text(encoding="utf-8")
    assert "Head spanned by the PET signal (overlap check" in text and "95.5 %" in text and "0.9088" in text
    # "covered by the PET" read as a truncated PET (59 % for a whole-head FDG scan): the field of view is its own row
    assert "covered by the PET" not in text and "Head inside the PET&#x27;s field of view" in text
    assert "the PET&#x27;s field of view holding 100.0 % of it" in text  # the methods paragraph


def test_timings_say_when_reading_and_registration_ran_early(tmp_path: Path) -> None:
    """``fuse --report`` listed register 0.0148 s for a registration that ran (seconds) in the early thread, with
    nothing saying so."""
    mri, pet, fused = _volumes()
    result = {**RESULT, "registration": {**RESULT["registration"], "early": True}}
    text = write_subject_report(tmp_path / "r.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                pet_as_read_image=pet, result=result).read_text(encoding="utf-8")
    assert "read and registered early" in text
    text = write_subject_report(tmp_path / "s.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                pet_as_read_image=pet, result=RESULT).read_text(encoding="utf-8")
    assert "registered early" not in text


def test_timings_say_the_page_is_not_in_its_save(tmp_path: Path) -> None:
    """A ``fuse --report`` page showed save 0.026 s beside the record's 2.03 s (the page written before the record's
    timing ends), with nothing saying why."""
    mri, pet, fused = _volumes()
    result = {**RESULT, "timings": {"load": 0.5, "register": 1.0, "fuse": 2.0, "save": 0.03}}
    text = write_subject_report(tmp_path / "r.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                pet_as_read_image=pet, result=result).read_text(encoding="utf-8")
    assert "leaves this page out" in text and "all steps (s)" in text
    done = {**RESULT, "timings": {**result["timings"], "total": 4.0}}  # a page drawn later from the record
    text = write_subject_report(tmp_path / "s.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                pet_as_read_image=pet, result=done).read_text(encoding="utf-8")
    assert "leaves this page out" not in text


def test_an_index_is_known_as_asfe3ds_on_a_rerun(tmp_path: Path) -> None:
    """A resumed cohort with --report was refused at its own index.html ("exists and is not an asfe3d report index"):
    the index carried no summary for read_report_summary to find."""
    index = write_index(tmp_path / "index.html", [IndexEntry("sub-02", status="failed", message="bad")])
    summary = read_report_summary(index)
    assert summary is not None and summary["kind"] == "index" and summary["counts"] == {"failed": 1}
    # an index written before indexes had a summary is still known as one
    old = re.sub(r"<script type=\"application/json\" id=\"asfe3d-summary\">.*?</script>", "",
                 index.read_text(encoding="utf-8"), flags=re.S)
    (tmp_path / "old.html").write_text(old, encoding="utf-8")
    assert read_report_summary(tmp_path / "old.html") == {"generator": "asfe3d-report/1", "kind": "index"}


def test_methods_say_what_reading_did_to_the_inputs() -> None:
    """The Methods paragraph said nothing of a dynamic PET's frames (realigned and averaged, or one taken) nor of
    a DICOM stack resampled for its slice gaps, which change the data a paper describes."""
    from asfe3d.reports.text import methods_text

    realigned = {**RESULT, "input_info": {"pet": {"frames": 3, "frames_averaged": 3, "frame_motion_mm": [0, 0.4, 1.2],
                                                  "frames_realigned": {"reference": "mean"}}}}
    text = methods_text([realigned])[0][0]
    assert "The 3 frames of the dynamic PET were realigned rigidly to their mean with SimpleITK [" in text
    assert "largest mean frame displacement 1.2 mm) and averaged" in text
    one = {**RESULT, "input_info": {"pet": {"frames": 3, "frame_taken": 2}}}
    assert "Of the 3 frames of the dynamic PET, frame 2 (0-based) was used" in methods_text([one])[0][0]
    gaps = {**RESULT, "input_info": {"mri": {"dicom_resampled": {"reasons": ["non-uniform slice gaps (2.5 to 7.5 mm)"],
                                                                 "spacing_mm": [1.5, 1.2, 2.5]}}}}
    assert ("The MRI DICOM series (non-uniform slice gaps (2.5 to 7.5 mm)) was resampled onto a regular orthogonal "
            "grid of 1.5 x 1.2 x 2.5 mm") in methods_text([gaps])[0][0]
    assert "frames" not in methods_text([RESULT])[0][0]


def test_a_refused_pair_section_has_no_fused_image_and_no_methods(tmp_path: Path) -> None:
    """A pair refused for its registration: the error on top, the registration and the PET drawn, no fused image,
    status ``failed``; the page's methods paragraph describes no fusion."""
    mri, pet, fused = _volumes()
    section = render_pair_section(mri_image=mri, pet_on_mri_image=pet, fused_image=None,
                                  result=RESULT, title="sub-01", refused="pet.nii.gz: registration judged failed")
    assert section.status == "failed" and section.verdict == "warn" and section.thumbnail
    assert "registration judged failed" in section.html and "Not written: the pair was not fused" in section.html
    assert 'alt="fused image"' not in section.html and 'alt="registration: after"' in section.html
    page = write_report(tmp_path / "r.html", [section], title="sub-01").read_text(encoding="utf-8")
    assert "No pair was fused: nothing to describe." in page
    for fused_image, refused in ((None, None), (fused, "why")):
        with pytest.raises(ValueError, match="give either fused_image or refused"):
            render_pair_section(mri_image=mri, pet_on_mri_image=pet, fused_image=fused_image,
                                result=RESULT, title="x", refused=refused)


def test_an_oblique_grid_is_said_to_be_one() -> None:
    """A grid tilted 20 degrees read "RAS" alone (the nearest axes), with nothing saying it was oblique."""
    import nibabel as nib

    from asfe3d.reports.pair import grid_text

    plain = nib.Nifti1Image(np.zeros((8, 9, 10), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert grid_text(plain) == "8 x 9 x 10 voxels of 2 x 2 x 2 mm, RAS"
    c, s = np.cos(np.radians(20.0)), np.sin(np.radians(20.0))
    tilted = np.diag([2.0, 2.0, 2.0, 1.0])
    tilted[1:3, 1:3] = 2.0 * np.array([[c, -s], [s, c]])
    assert grid_text(nib.Nifti1Image(np.zeros((8, 9, 10), np.float32), tilted)) == (
        "8 x 9 x 10 voxels of 2 x 2 x 2 mm, RAS (oblique: voxel axes up to 20 degrees from the scanner's; views "
        "resampled)")


def test_settings_tell_a_steps_rule_from_what_it_did_here() -> None:
    """The Settings table read ``fusion detail_fwhm_mm 6`` where no such blur was applied on this grid, and
    ``pet_consistency 0.25`` beside the applied 0.5: a reader would quote the rule as what was done."""
    from asfe3d.reports.pair import settings_rows

    result = {"settings": {"fusion": {"method": "asfe"}},
              "fusion": {"detail_fwhm_mm": 6.0, "detail_fwhm_mm_applied": None, "pet_consistency": 0.25,
                         "pet_consistency_applied": 0.5, "detail_injection": 0.8}}
    rows = dict(settings_rows(result))
    assert rows["fusion detail_fwhm_mm: the rule, by grid"] == 6.0
    assert rows["fusion detail_fwhm_mm: applied on this grid"] == "not applied"
    assert rows["fusion pet_consistency: applied on this grid"] == 0.5 and rows["fusion detail_injection"] == 0.8


def test_a_list_of_records_is_not_shown_as_python() -> None:
    """A dynamic PET's per-frame motion showed as a dict's repr (quotes, braces, -0.0)."""
    from asfe3d.reports.html import _fmt

    motion = [{"frame": 0, "translation_mm": [-0.0, 0.0, 0.0]}, {"frame": 1, "translation_mm": [0.0, 6.001, -0.0]}]
    assert _fmt(motion) == "frame 0; translation_mm 0, 0, 0 | frame 1; translation_mm 0, 6.001, 0"


def test_registration_cuts_go_through_the_pets_signal() -> None:
    """The check's cuts were spread over the head box: on a whole-head T1 a coronal panel went through the nose alone.
    They now span the registered PET's signal within the head box (the head box when the signal is too small)."""
    import nibabel as nib

    from asfe3d.reports.figures import head_bounds_mm, signal_bounds

    head = np.zeros((40, 60, 40), np.float32)
    head[2:38, 2:58, 2:38] = 100.0  # head with face: y from 2 to 57 mm
    pet = np.zeros_like(head)
    pet[8:32, 5:35, 8:32] = 50.0  # the brain's uptake: y from 5 to 34 mm
    affine = np.eye(4)
    anat_img, pet_img = nib.Nifti1Image(head, affine), nib.Nifti1Image(pet, affine)
    box = signal_bounds(pet_img, head_bounds_mm(anat_img))
    assert 3.0 <= box[0, 1] <= 6.0 and 33.0 <= box[1, 1] <= 36.0, box
    tiny = np.zeros_like(head)
    tiny[20:22, 30:32, 20:22] = 50.0  # a few bright voxels: no box to place cuts in
    np.testing.assert_array_equal(signal_bounds(nib.Nifti1Image(tiny, affine), head_bounds_mm(anat_img)),
                                  head_bounds_mm(anat_img))


def test_the_field_of_view_edge_is_announced_only_where_it_is_seen():
    """Probe 41 #6: the flag behind the captions' "Dashed yellow: the edge of the PET's field of view" was set by an
    edge anywhere in the plane, also where the view, cut to the head, does not reach: a line no one could find."""
    import nibabel as nib

    from asfe3d.reports.figures import canonical, draw_overlay

    n, affine = 48, np.diag([2.0, 2.0, 2.0, 1.0])
    g = np.mgrid[:n, :n, :n] - (n - 1) / 2
    head = (np.sqrt((g**2).sum(0)) < 12).astype(np.float32) * 100.0
    anat = canonical(nib.Nifti1Image(head, affine))
    far, through = np.ones((n, n, n), np.float32), np.ones((n, n, n), np.float32)
    far[:3] = 0  # the PET's view ends 20 voxels from the head: beyond the cut view
    through[: n // 2] = 0  # ends in the middle of the head
    flags = []
    for fov in (far, through):
        fig = draw_overlay(anat, canonical(nib.Nifti1Image(head, affine)), units="Bq/mL",
                           fov=canonical(nib.Nifti1Image(fov, affine)))
        flags.append(fig.fov_drawn)
    assert flags == [False, True]


def test_a_registration_judged_failed_but_written_gets_a_box():
    """Probe 41 #7: with --qc warn a failed registration's section had only the badge; --qc strict's had a box."""
    from asfe3d.reports.pair import _failed_box

    assert "judged failed" in _failed_box(None, "fail") and "--qc warn" in _failed_box(None, "fail")
    assert _failed_box(None, "warn") == _failed_box(None, "pass") == _failed_box(None, None) == ""
    assert _failed_box("refused <x>", "fail") == '<div class="error">refused &lt;x&gt;</div>'


def test_the_index_has_a_group_qc_table_and_links_the_summary(tmp_path: Path) -> None:
    """Probe 41 #13: the cohort and BIDS index pages showed a thumbnail and a badge per subject, with no table of
    the QC numbers across subjects and no link to the cohort's summary.csv."""
    mri, pet, fused = _volumes()
    report = write_subject_report(tmp_path / "sub-01.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                  result=RESULT)
    (tmp_path / "summary.csv").write_text("subject,status\nsub-01,ok\n")
    text = write_index(tmp_path / "index.html", [IndexEntry("sub-01", report=report),
                                                  IndexEntry("sub-02", status="failed", message="no PET signal")],
                       downloads=[tmp_path / "summary.csv", tmp_path / "missing.csv"]).read_text(encoding="utf-8")
    assert '<a href="summary.csv">summary.csv</a>' in text and "missing.csv" not in text
    table = text[text.index('<table class="group">'):]
    assert "<th>MI margin</th>" in table and "<td>12 %</td>" in table  # RESULT's mi_margin 0.12
    assert "PET sits 3.2 mm off the head centre" in table and "no PET signal" in table
    assert table.count("<tr>") == 3  # the header, sub-01's pair, the failed sub-02


def test_the_group_table_shows_no_minus_zero(tmp_path: Path) -> None:
    """A margin of -0.2 % read "-0 %" in the index's group table (the report's own table showed 0)."""
    mri, pet, fused = _volumes()
    result = copy.deepcopy(RESULT)
    result["registration"]["qc"]["numbers"].update(mi_margin=-0.002, translation_mm=-0.04, rotation_deg=-0.06)
    report = write_subject_report(tmp_path / "sub-01.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                  result=result)
    text = write_index(tmp_path / "index.html", [IndexEntry("sub-01", report=report)]).read_text(encoding="utf-8")
    table = text[text.index('<table class="group">'):]
    assert "<td>0 %</td>" in table and "<td>0.0</td>" in table and "<td>-0.1</td>" in table
    assert "<td>-0" not in table.replace("<td>-0.1", "")
