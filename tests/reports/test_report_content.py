"""What a report says: each section once, About (command line, version), Methods with references, modality names
and units (CT, SUV), colour bars that span the data, smooth contour lines, the before/after view, bad input; and a
whole PET/CT DICOM run with ``--pet-units suv --report`` as a user types it."""

from __future__ import annotations

import html as html_lib
import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from asfe3d import __version__
from asfe3d.reports import render_pair_section, write_subject_report
from asfe3d.reports.figures import canonical, draw_fused, draw_overlay, draw_registration, smoothed
from asfe3d.reports.text import anatomical_name, command_line, methods_text, pet_units
from tests.reports.test_reports import RESULT, _pngs, _volumes

SUV_RECORD = {"converted_to": "SUVbw (g/ml)", "source": "dicom:im000.dcm", "units": "BQML",
              "decay_correction": "START", "factor": 2.96e-4}
CT_RESULT = {
    **RESULT,
    "inputs": {"mri": {"path": "/data/ct"}, "pet": {"path": "/data/pet"}},
    "input_info": {"mri": {"format": "dicom", "modality": "CT"},
                   "pet": {"format": "dicom", "modality": "PT", "pet_units": SUV_RECORD}},
    "settings": {**RESULT["settings"], "pet_units": "suv", "registration": "auto"},
    "registration": {"method": "none (same frame of reference)", "requested": "auto",
                     "qc": {"verdict": "pass", "reasons": [], "numbers": {"translation_mm": 0.0}}},
}


def _headings(text: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<h[1-4][^>]*>(.*?)</h[1-4]>", text, re.S)]


def _visible(text: str) -> str:
    """The page's words as a reader sees them (no tags, scripts, styles or attribute values)."""
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", text, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", text))


def _texts(fig) -> list[str]:
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts] + [ax.get_title(), ax.get_ylabel(), ax.get_xlabel()]
    return [t for t in out if t]


def _ct_volumes():
    """A CT-like head in HU (air -1000, tissue 40, bone 1200) and a PET in SUV on the same grid."""
    (mri, affine), (pet, _), _ = _volumes(shape=(24, 26, 16), zooms=(2.0, 2.0, 2.0))
    ct = np.where(mri > 0, 40.0, -1000.0).astype(np.float32)
    x = np.linspace(-1, 1, 24)[:, None, None] ** 2 + np.linspace(-1, 1, 26)[None, :, None] ** 2 \
        + np.linspace(-1, 1, 16)[None, None, :] ** 2
    ct[(x > 0.55) & (x < 0.75) & (mri > 0)] = 1200.0  # a bone shell
    suv = pet / 25.0
    fused = 0.5 * (ct + suv)
    return (ct, affine), (suv, affine), (fused, affine)


def test_each_section_once_about_and_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/bin/asfe3d", "fuse", "t1 w.nii.gz", "pet.nii.gz", "--report"])
    mri, pet, fused = _volumes()
    path = write_subject_report(tmp_path / "sub-01.html", mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                pet_as_read_image=pet, result=RESULT)
    text = path.read_text(encoding="utf-8")
    heads = _headings(text)
    assert len(heads) == len(set(heads)), heads
    for name in ("Registration check", "Registration quality", "PET over the MRI", "Fused image", "Inputs",
                 "Settings", "Timings", "Outputs", "About", "Methods", "References"):
        assert name in heads, name
    # each input's grid as read, in words; the file identity used for resuming (inode, ctime) is left to the record
    inputs = _visible(text[text.index(">Inputs<"):text.index(">Settings<")])
    assert inputs.count("grid (as read)") == 2 and "20 x 22 x 10 voxels of 1 x 1 x 2.5 mm, RAS" in inputs
    assert "inode" not in inputs and "ctime_ns" not in inputs
    about = text[text.index('id="about"'):text.index('id="methods"')]
    assert "asfe3d fuse &#x27;t1 w.nii.gz&#x27; pet.nii.gz --report" in about  # shell-quoted, as typed
    assert f"<td>{__version__}</td>" in about and "Platform" in about and "Python" in about
    methods = _visible(text[text.index('id="methods"'):])
    # a wavelet run: asfe3d named as the pipeline, ASFE-Fusion (not used) not cited
    assert "pipeline for MRI/PET registration and fusion" in methods and "96:106478" not in methods
    assert "Mattes" in methods and "SimpleITK" in methods and "MONAI" in methods
    assert "rigid transform (6 degrees of freedom)" in methods and "three resolution levels" in methods
    assert "wavelet" in methods and "QC mode" not in methods  # RESULT records no QC mode
    # every number once: no qc_plain rows, no settings table twice, the verdict reason once
    visible = re.sub(r'<script type="application/json" id="asfe3d-summary">.*?</script>', "", text, flags=re.S)
    assert "qc_plain" not in text and visible.count("PET sits 3.2 mm off the head centre") == 1  # (the summary
    # for the group table carries the first reason too)
    assert json.loads(re.search(r'id="asfe3d-summary">(.*?)</script>', text).group(1))["command"].startswith(
        "asfe3d fuse")


def test_ct_and_suv_are_named_everywhere(tmp_path: Path) -> None:
    ct, suv, fused = _ct_volumes()
    assert anatomical_name(CT_RESULT) == "CT" and pet_units(CT_RESULT) == "SUV"
    section = render_pair_section(mri_image=ct, pet_on_mri_image=suv, fused_image=fused, result=CT_RESULT,
                                  pet_as_read_image=suv, title="sub-01")
    visible = _visible(section.html)
    assert "PET over the CT" in visible and "PET (SUV)" in visible and "(HU)" in visible
    assert not re.search(r"\bMRI\b", visible), re.findall(r".{40}\bMRI\b.{40}", visible)
    anat, pet = canonical(nib.Nifti1Image(ct[0], ct[1])), canonical(nib.Nifti1Image(suv[0], suv[1]))
    overlay = draw_overlay(anat, pet, units="SUV", anat_name="CT")
    assert overlay.colorbar_axes.get_ylabel() == "PET (SUV)"
    assert not any("MRI" in t for t in _texts(overlay))
    paragraphs, refs = methods_text([CT_RESULT])
    assert "body-weight SUV" in paragraphs[0] and "share one frame of reference" in paragraphs[0]
    assert "MRI" not in paragraphs[0] and not any("106478" in r for r in refs)  # wavelet: ASFE-Fusion not cited
    # units the PET input states when not converted, and a BIDS _ct file named CT
    stated = {**RESULT, "input_info": {"pet": {"units": "kBq/ml"}}, "inputs": {"mri": "/d/sub-01_ct.nii.gz"}}
    assert pet_units(stated) == "kBq/mL" and anatomical_name(stated) == "CT"
    assert pet_units({"inputs": {"pet": "/nonexistent/pet.nii.gz"}}) == "units not recorded"


def test_fused_colour_bar_spans_the_data() -> None:
    (mri, affine), _, (fused, _) = _volumes()
    fused = fused * 3.7 - 12.0  # any units
    img, anat = canonical(nib.Nifti1Image(fused, affine)), canonical(nib.Nifti1Image(mri, affine))
    fig = draw_fused(img, anat=anat, units="MRI units")
    assert fig.colorbar_axes.get_ylim() == pytest.approx((float(fused.min()), float(fused.max())))
    assert fig.colorbar_axes.get_ylabel() == "MRI units"
    assert any("fused image (MRI units)" in t for t in _texts(fig))


def test_contours_are_smooth_lines() -> None:
    from matplotlib.collections import LineCollection

    (mri, affine), (pet, _), _ = _volumes(shape=(40, 44, 20), zooms=(1.0, 1.0, 2.5))
    noisy = mri + np.random.default_rng(1).normal(0, 10, mri.shape)  # noisy, as a scan is
    anat, pet_img = canonical(nib.Nifti1Image(noisy, affine)), canonical(nib.Nifti1Image(pet, affine))
    smooth = smoothed(anat)
    fig = draw_registration(anat, pet_img, anat_smoothed=smooth, levels=[50.0, 140.0], window=(0, 250), label="x",
                            cuts=3)
    collections = [c for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection)]
    assert len(collections) >= 9  # every cut has its outline
    lines = [seg for c in collections for seg in c.get_segments()]
    lengths = [float(np.sum(np.linalg.norm(np.diff(seg, axis=0), axis=1))) for seg in lines]
    assert min(lengths) >= 12.0  # no fragments
    assert len(lines) <= 3 * len(collections)  # a few closed lines per cut, not confetti
    # each row names its plane, each cut its position in mm (it read "x=-61": no plane, no unit)
    texts = _texts(fig)
    for plane, letter in (("sagittal", "x"), ("coronal", "y"), ("axial", "z")):
        assert sum(t.startswith(f"{plane}, {letter} = ") and t.endswith(" mm") for t in texts) == 1, texts
    assert sum(re.fullmatch(r"[xyz] = -?\d+ mm", t) is not None for t in texts) == 6


def test_hover_view_holds_after_and_before(tmp_path: Path) -> None:
    (mri, affine), (pet, _), fused = _volumes()
    moved = affine.copy()
    moved[0, 3] += 6.0  # the PET as read sits 6 mm off
    section = render_pair_section(mri_image=(mri, affine), pet_on_mri_image=(pet, affine), fused_image=fused,
                                  result=RESULT, pet_as_read_image=(pet, moved))
    block = section.html[section.html.index('<div class="compare"'):]
    after, before = _pngs(block)[:2]
    assert 'class="figure after"' in block and 'class="figure before"' in block and after != before
    assert 'class="flick"' in section.html


def test_bad_inputs(tmp_path: Path) -> None:
    mri, pet, fused = _volumes()
    # a recorded PET path that cannot be read: the section says so instead of failing
    section = render_pair_section(mri_image=mri, pet_on_mri_image=pet, fused_image=fused,
                                  result={**RESULT, "inputs": {"pet": {"path": str(tmp_path / "gone.nii.gz")}}})
    assert 'No "before" view' in section.html and "gone.nii.gz" in section.html
    assert 'class="compare"' not in section.html
    with pytest.raises(ValueError, match=r"must share one grid"):
        render_pair_section(mri_image=mri, pet_on_mri_image=(np.zeros((4, 4, 4)), np.eye(4)), fused_image=fused,
                            result=RESULT)
    with pytest.raises(ValueError, match="result must be a mapping or a FuseResult"):
        render_pair_section(mri_image=mri, pet_on_mri_image=pet, fused_image=fused, result=42)


def test_command_line_names_the_entry_point() -> None:
    assert command_line({}, ["/x/asfe3d/cli/__main__.py", "fuse", "a b"]) == "asfe3d fuse 'a b'"
    assert command_line({"command": "asfe3d bids in out participant"}, ["python"]) == "asfe3d bids in out participant"
    assert "Python session" in command_line({}, ["-c"]) and "Python session" in command_line({}, [])


def test_petct_dicom_run_with_suv_report(tmp_path: Path) -> None:
    """The must-show case: a PET/CT DICOM pair, ``--pet-units suv --report``, as a user runs it."""
    from tests.reports.petct import SUV_FACTOR, write_petct

    ct_dir, pet_dir = write_petct(tmp_path / "study", ct_shape=(48, 56, 24), ct_spacing=(3.0, 3.2, 6.0),
                                  pet_shape=(36, 44, 36), pet_spacing=(4.0, 4.0, 4.0))
    out = tmp_path / "out" / "sub-01_fused.nii.gz"
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "asfe3d.cli", "fuse", str(ct_dir), str(pet_dir), "-o", str(out), "--pet-units",
           "suv", "--report", "--device", "cpu"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert run.returncode == 0, run.stderr[-2000:]
    report = out.with_name("sub-01_fused_report.html")
    text = report.read_text(encoding="utf-8")
    visible = _visible(text)
    heads = _headings(text)
    assert len(heads) == len(set(heads)), heads
    assert "--pet-units suv --report --device cpu" in visible and "asfe3d fuse " in visible
    assert f"asfe3d version {__version__}" in re.sub(r"\s+", " ", visible)
    assert "Biomedical Signal Processing and Control 96:106478" in visible and "ASFE-Fusion" in visible
    assert "PET (SUV)" in visible and "PET over the CT" in visible and "body-weight SUV" in visible
    assert not re.search(r"\bMRI\b", visible), re.findall(r".{40}\bMRI\b.{40}", visible)
    # the fused panel's colour bar spans the fused volume as written (in HU, the CT's scale)
    written = np.asarray(nib.load(str(out)).dataobj)
    match = re.search(r"its whole range,\s*(\S+) to (\S+)\.", visible)
    assert match and float(match.group(1)) == pytest.approx(float(written.min()), rel=1e-3, abs=1e-3)
    assert float(match.group(2)) == pytest.approx(float(written.max()), rel=1e-3)
    assert "fused volume as written (HU)" in visible
    record = json.loads(out.with_name("sub-01_fused.json").read_text())
    assert record["input_info"]["pet"]["pet_units"]["factor"] == pytest.approx(SUV_FACTOR, rel=1e-6)


def test_header_aligned_and_oblique_grids() -> None:
    from asfe3d.reports.figures import header_aligned

    (mri, affine), (pet, _), (fused, _) = _volumes(shape=(20, 22, 12), zooms=(2.0, 2.0, 3.0))
    img = nib.Nifti1Image(pet, affine)
    same = header_aligned(img, img)  # the PET already on the grid: unchanged
    np.testing.assert_allclose(np.asarray(same.dataobj), pet, atol=1e-3)
    shifted = affine.copy()
    shifted[0, 3] += 2.0  # one voxel to the right (RAS): the header says the PET sits 2 mm further right
    moved = np.asarray(header_aligned(nib.Nifti1Image(pet, shifted), img).dataobj)
    np.testing.assert_allclose(moved[1:], pet[:-1], atol=1e-3)
    # an oblique grid (20 degrees about z) is drawn too
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    oblique = affine.copy()
    oblique[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    section = render_pair_section(mri_image=(mri, oblique), pet_on_mri_image=(pet, oblique),
                                  fused_image=(fused, oblique), result=RESULT, pet_as_read_image=(pet, oblique))
    assert len(_pngs(section.html)) == 4


def test_methods_text_says_how_much_mri_detail_was_injected() -> None:
    asfe = {"fusion": {"method": "asfe", "mode": "volume", "weights": "in-memory", "detail_injection": 0.5},
            "settings": {"method": "asfe", "registration": "none"}}
    paragraph = methods_text([asfe])[0][0]
    assert "0.5 times the MRI's detail band" in paragraph
    assert "Gaussian blur of 5.5 voxels FWHM" in paragraph  # a record from before the width was set in mm
    off = {**asfe, "fusion": {**asfe["fusion"], "detail_injection": 0.0}}
    assert "detail band" not in methods_text([off])[0][0]
    mm = {**asfe, "fusion": {**asfe["fusion"], "detail_fwhm_mm": 6.0}}
    assert ("Gaussian blur of 6 mm FWHM, the PET's resolution, along each axis of the MRI's grid) added"
            in methods_text([mm])[0][0])
    # the width this image got: a grid the band's gate left out says voxels, whatever width was set
    gated = {**asfe, "fusion": {**asfe["fusion"], "detail_fwhm_mm": 6.0, "detail_fwhm_mm_applied": None}}
    assert "Gaussian blur of 5.5 voxels FWHM" in methods_text([gated])[0][0]
    taken = {**asfe, "fusion": {**asfe["fusion"], "detail_fwhm_mm": 6.0, "detail_fwhm_mm_applied": 6.0}}
    assert "Gaussian blur of 6 mm FWHM" in methods_text([taken])[0][0]


def test_methods_text_cites_asfe_fusion_only_when_used_and_says_how_frames_were_weighted() -> None:
    """``--method mean`` was described as "a 3D implementation of ASFE-Fusion [2]" with Gu et al. in the references;
    a 4D PET averaged with equal weights (no durations known) read as if weighted."""
    mean = {"fusion": {"method": "mean"}, "settings": {"method": "mean", "registration": "none"}}
    paragraphs, refs = methods_text([mean])
    assert "ASFE-Fusion" not in paragraphs[0] and not any("Gu" in r for r in refs)
    assert "pipeline for MRI/PET registration and fusion" in paragraphs[0]
    asfe = {"fusion": {"method": "asfe", "mode": "volume"}, "settings": {"method": "asfe", "registration": "none"}}
    paragraphs, refs = methods_text([asfe])
    assert "implementation of ASFE-Fusion [2]" in paragraphs[0] and any("Gu" in r for r in refs)
    frames = {"frames": 3, "frames_averaged": True}
    equal = {**mean, "input_info": {"pet": frames}}
    assert ("The 3 frames of the dynamic PET were averaged without realignment with equal weights (the frame "
            "durations were not known)") in methods_text([equal])[0][0]
    weighted = {**mean, "input_info": {"pet": {**frames, "frame_weighting": "duration",
                                               "frame_durations_s": [60, 120, 300]}}}
    assert "averaged without realignment, weighted by their durations (60, 120, 300 s)" in methods_text([weighted])[0][0]


def test_methods_text_says_the_pet_was_smoothed_only_when_it_was() -> None:
    run = {"fusion": {"method": "mean"}, "settings": {"method": "mean", "registration": "none"}}
    assert "smoothed" not in methods_text([run])[0][0]
    smoothed = {**run, "settings": {**run["settings"], "pet_smooth_mm": 3.0}}
    assert "The registered PET was smoothed by a Gaussian of 3 mm FWHM on the MRI's grid." in methods_text([smoothed])[0][0]


def test_methods_text_says_where_the_network_ran_on_a_coarser_grid_and_how_windows_were_stitched() -> None:
    base = {"fusion": {"method": "asfe", "mode": "slice", "slice_axis": 2, "weights": "in-memory"},
            "settings": {"method": "asfe", "registration": "none"}}
    grid = {**base, "fusion": {**base["fusion"], "min_voxel_mm": 1.0}}
    assert ("finer than 1 mm, the pair was resampled to a 1 mm grid over the same field of view"
            in methods_text([grid])[0][0])
    assert "resampled to a" not in methods_text([base])[0][0]
    worked = {**base, "fusion": {**base["fusion"], "min_voxel_mm": 0.8, "working_voxel_mm": 0.88}}
    assert ("finer than 0.8 mm, the pair was resampled to a 0.88 mm grid" in methods_text([worked])[0][0])
    volume = {**base, "fusion": {"method": "asfe", "mode": "volume", "weights": "in-memory", "stitch": "logits"}}
    assert "coarse blend logits were stitched" in methods_text([volume])[0][0]
    plain = {**volume, "fusion": {**volume["fusion"], "stitch": "output"}}
    assert "logits" not in methods_text([plain])[0][0]
    # "auto" says what this volume got: logits stitched, or one window (nothing stitched)
    auto = {**volume, "fusion": {**volume["fusion"], "stitch": "auto", "stitched": "logits"}}
    assert "coarse blend logits were stitched" in methods_text([auto])[0][0]
    one = {**volume, "fusion": {**volume["fusion"], "stitch": "auto", "stitched": "one pass"}}
    assert "logits" not in methods_text([one])[0][0]
    # the consistency step is said only where this image got it
    stepped = {**volume, "fusion": {**volume["fusion"], "pet_consistency": 0.25, "pet_consistency_applied": 0.25}}
    assert "then 0.25 of the difference between the PET and the fused image" in methods_text([stepped])[0][0]
    assert "blurred to the PET's resolution (6 mm FWHM)" in methods_text([stepped])[0][0]
    wide = {**stepped, "fusion": {**stepped["fusion"], "pet_consistency_applied": 0.4,
                                  "pet_consistency_fwhm_mm_applied": 12.0}}
    assert ("then 0.4 of the difference between the PET and the fused image, blurred by a Gaussian of 12 mm FWHM "
            "(wider than the PET's resolution, so that the MRI's detail below it is left to the network)"
            in methods_text([wide])[0][0])
    narrow = {**wide, "fusion": {**wide["fusion"], "pet_consistency_fwhm_mm_applied": 4.0}}
    assert "blurred by a Gaussian of 4 mm FWHM, was added" in methods_text([narrow])[0][0]
    gated = {**volume, "fusion": {**volume["fusion"], "pet_consistency": 0.25, "pet_consistency_applied": 0.0}}
    assert "difference between the PET" not in methods_text([gated])[0][0]
    # the choose-the-larger-detail step likewise, with its ratio
    chosen = {**volume, "fusion": {**volume["fusion"], "pet_detail_ratio": 2.0, "pet_detail_select_applied": 1.0}}
    assert "where the PET's own band below its resolution was 2 times the" in methods_text([chosen])[0][0]
    assert "1 of the fused image's band there was replaced by the PET's" in methods_text([chosen])[0][0]
    floored = {**volume, "fusion": {**chosen["fusion"], "pet_detail_select_applied": 0.5, "pet_detail_floor_applied": 0.5}}
    assert ("where the PET's own band below its resolution exceeded 2 times the MRI's by more than 0.5 times its own "
            "robust spread in the brain") in methods_text([floored])[0][0]
    assert "robust spread" not in methods_text([chosen])[0][0]
    off = {**volume, "fusion": {**volume["fusion"], "pet_detail_ratio": 2.0, "pet_detail_select_applied": 0.0}}
    assert "larger detail" not in methods_text([off])[0][0]
    # the steered injection is said only where this image got more than the network's gain
    steered = {**volume, "fusion": {**volume["fusion"], "detail_steer_applied": 1.25}}
    assert "detail band was added at 1.25 times the network's gain" in methods_text([steered])[0][0]
    unsteered = {**volume, "fusion": {**volume["fusion"], "detail_steer_applied": 1.0}}
    assert "followed the" not in methods_text([unsteered])[0][0]


def test_methods_text_says_slice_mode_injects_the_whole_volumes_band() -> None:
    sl = {"fusion": {"method": "asfe", "mode": "slice", "slice_axis": 2, "weights": "in-memory",
                     "detail_injection": 0.75}, "settings": {"method": "asfe", "registration": "none"}}
    paragraph = methods_text([sl])[0][0]
    assert "0.75 times the MRI's detail band of the whole volume, after the slices were stacked," in paragraph
    vol = {**sl, "fusion": {**sl["fusion"], "mode": "volume"}}
    assert "whole volume" not in methods_text([vol])[0][0]


def test_inputs_say_in_one_row_that_no_pet_sidecar_was_found() -> None:
    """A dynamic PET read without a JSON sidecar had a block of its own, titled PET_SIDECAR, holding "absent: true"
    (probe 19 #6): the PET's block now says where the sidecar was looked for; a sidecar that was read keeps a
    block, titled for people."""
    from asfe3d.reports.pair import _inputs_html

    absent = {"inputs": {"mri": {"path": "/d/mri.nii.gz"}, "pet": {"path": "/d/pet.nii.gz"},
                         "pet_sidecar": {"path": "/d/pet.json", "absent": True}},
              "input_info": {"pet": {"format": "nifti", "frames": 3, "sidecar_absent": "/d/pet.json"}}}
    page = _inputs_html(absent, {"mri": "T1w MRI", "pet": "PET"})
    assert "PET_SIDECAR" not in page and "absent" not in page
    assert page.count("<h4>") == 2 and page.count("/d/pet.json") == 1 and "none (looked for /d/pet.json)" in page
    found = {"inputs": {**absent["inputs"], "pet_sidecar": {"path": "/d/pet.json", "sha256": "ab12"}}}
    page = _inputs_html(found, {"mri": "T1w MRI", "pet": "PET"})
    assert "<h4>PET JSON sidecar</h4>" in page and "looked for" not in page


def test_the_pet_field_of_view_edge_is_drawn_where_it_crosses_the_head() -> None:
    """A PET of the top part of the head only (probe 21 #3): beyond its field of view the fused image holds only the
    MRI's detail, and the report's images did not show where the PET ended. The edge is now drawn (dashed) on the
    overlay and the fused image, and the caption says what lies beyond it; a PET holding the whole head draws none."""
    import nibabel as nib

    from asfe3d.reports.figures import field_of_view

    (mri, affine), (pet, _), (fused, _) = _volumes(shape=(20, 22, 16), zooms=(2.0, 2.0, 2.0))
    top = pet[:, :, 9:]  # the PET as read: slices 9.. of the MRI's grid (its field of view ends at z = 1 mm)
    pet_affine = affine.copy()
    pet_affine[2, 3] += 9 * 2.0
    short = np.zeros_like(pet)
    short[:, :, 9:] = top
    registration = {**RESULT["registration"], "mri_to_pet_ras": np.eye(4).tolist(), "mri_to_pet_ras_exact": True}
    result = {**RESULT, "registration": registration}
    section = render_pair_section(mri_image=(mri, affine), pet_on_mri_image=(short, affine),
                                  fused_image=(fused, affine), pet_as_read_image=(top, pet_affine), result=result)
    text = _visible(section.html)
    assert "Dashed yellow: the edge of the PET's field of view" in text
    assert "no PET" in text and "B-spline" not in text and "holds only what the MRI gave it" in text

    # the mask: inside from the PET's first slice up, the edge half a voxel below it
    mask = field_of_view(nib.Nifti1Image(np.zeros(mri.shape, np.float32), affine),
                         nib.Nifti1Image(top, pet_affine), np.eye(4))
    assert mask is not None and np.asarray(mask.dataobj)[:, :, :9].max() == 0
    assert np.asarray(mask.dataobj)[:, :, 9:].min() == 1
    # a shift of the transform moves both edges: MRI z maps to PET z + 4 mm, so the PET's slab sits 2 slices lower
    moved = np.eye(4)
    moved[2, 3] = 4.0
    shifted = field_of_view(nib.Nifti1Image(np.zeros(mri.shape, np.float32), affine),
                            nib.Nifti1Image(top, pet_affine), moved)
    shifted = np.asarray(shifted.dataobj)
    assert shifted[:, :, :7].max() == 0 and shifted[:, :, 7:14].min() == 1 and shifted[:, :, 14:].max() == 0

    # a run that blanked the fused image beyond the edge, with the deformable method's matrix (its B-spline part
    # left out): the captions say both, the PET as SPM reslices it (the whole grid, NaN where it did not reach, read
    # as 0: its NaN are outside too)
    unmeasured = np.zeros(pet.shape, bool)
    unmeasured[:, :, :9] = True
    resliced = nib.Nifti1Image(short, affine, extra={"unmeasured": unmeasured})
    blanked = {**RESULT, "registration": {**registration, "mri_to_pet_ras_exact": False},
               "fusion": {**RESULT["fusion"], "outside_pet_fov": {"voxels": 3080, "head_fraction": 0.4}}}
    text = _visible(render_pair_section(mri_image=(mri, affine), pet_on_mri_image=(short, affine),
                                        fused_image=(fused, affine), pet_as_read_image=resliced, result=blanked).html)
    assert "Dashed yellow: the edge of the PET's field of view" in text
    assert "the fused image is blank (0) there" in text and "B-spline part moves it a little" in text
    offset = {**blanked, "fusion": {**RESULT["fusion"], "outside_pet_fov": {"voxels": 3080, "head_fraction": 0.4,
                                                                            "value": -12.5}}}
    text = _visible(render_pair_section(mri_image=(mri, affine), pet_on_mri_image=(short, affine),
                                        fused_image=(fused, affine), pet_as_read_image=resliced, result=offset).html)
    assert "the fused image is blank (-12.5, the MRI window's low end) there" in text
    mask = field_of_view(nib.Nifti1Image(np.zeros(mri.shape, np.float32), affine), resliced, np.eye(4))
    assert mask is not None and np.array_equal(np.asarray(mask.dataobj) > 0, ~unmeasured)

    # a PET holding the whole grid, or a record of an older run without the matrix: no edge, no caption
    assert field_of_view(nib.Nifti1Image(np.zeros(mri.shape, np.float32), affine),
                         nib.Nifti1Image(pet, affine), np.eye(4)) is None
    old = render_pair_section(mri_image=(mri, affine), pet_on_mri_image=(short, affine), fused_image=(fused, affine),
                              pet_as_read_image=(top, pet_affine), result=RESULT)
    assert "Dashed yellow" not in _visible(old.html)

    with pytest.raises(ValueError, match=r"extra\['unmeasured'\] must have its shape \(20, 22, 16\), got \(20, 22\)"):
        field_of_view(nib.Nifti1Image(np.zeros(mri.shape, np.float32), affine),
                      nib.Nifti1Image(short, affine, extra={"unmeasured": unmeasured[:, :, 0]}), np.eye(4))
    with pytest.raises(ValueError, match=r"finite 4x4 matrix, got \[\[1\.0, 0\.0"):
        field_of_view(nib.Nifti1Image(np.zeros(mri.shape, np.float32), affine), nib.Nifti1Image(top, pet_affine),
                      np.eye(4)[:3])


def test_the_field_of_view_mask_is_the_same_computed_in_slabs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's field-of-view mask is computed in slabs along the first axis so that its float64 index arithmetic
    stays bounded on fine grids (it took ~17 bytes per voxel at once: ~1.2 GB on a 0.5 mm head); slabs of one or a few
    rows give the voxel-for-voxel same mask as one slab, also under an oblique transform whose edge crosses them."""
    import nibabel as nib

    from asfe3d.reports import figures

    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    reference = nib.Nifti1Image(np.zeros((17, 19, 13), np.float32), affine)
    pet_affine = np.diag([3.0, 3.0, 3.0, 1.0])
    pet_affine[:3, 3] = [2.0, -1.0, 5.0]
    pet = nib.Nifti1Image(np.ones((7, 8, 6), np.float32), pet_affine)
    angle = np.deg2rad(17.0)
    oblique = np.eye(4)
    oblique[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    oblique[:3, 3] = [1.3, -0.7, 2.2]
    whole = figures.field_of_view(reference, pet, oblique)
    assert whole is not None and 0 < np.asarray(whole.dataobj).sum() < np.prod(reference.shape)
    for voxels in (1, 19 * 13 * 3, 19 * 13 * 5 + 7):
        monkeypatch.setattr(figures, "_SLAB_VOXELS", voxels)
        assert np.array_equal(np.asarray(figures.field_of_view(reference, pet, oblique).dataobj),
                              np.asarray(whole.dataobj)), voxels


def test_methods_text_states_the_registration_settings_the_run_used() -> None:
    """Review 32 #4: the methods text stated register_pet_to_mri's defaults (a B-spline of 4 mesh cells, 1 mm, 2 mm
    binning) whatever the run used: a chain built with RegisterToReferenced(bspline_mesh=6) got a report saying 4. The
    transform now records its settings (``registration.options``) and the text states those; older records, the
    defaults they used."""
    from asfe3d.transforms.array import RegisterToReference

    options = RegisterToReference(method="deformable", bspline_mesh=np.int64(6), bspline_bound_mm=2.5,
                                  finest_mm=3.0).options
    assert options == {"iterations": 200, "sampling": None, "bspline_mesh": 6, "bspline_iterations": 30,
                       "bspline_bound_mm": 2.5, "finest_mm": 3.0, "multistart": "auto"}
    assert type(options["bspline_mesh"]) is int  # a JSON record takes it
    result = {"settings": {"method": "mean", "registration": "deformable"}, "fusion": {"method": "mean"},
              "registration": {"method": "deformable", "metric": -0.4, "iterations": 90, "options": options}}
    text = methods_text([result])[0][0]
    assert "(6 mesh cells per axis, control-point displacements bounded to 2.5 mm" in text
    assert "binned to at most 3 mm at the finest level" in text
    older = {**result, "registration": {k: v for k, v in result["registration"].items() if k != "options"}}
    text = methods_text([older])[0][0]
    assert "(4 mesh cells per axis, control-point displacements bounded to 1 mm" in text
    assert "binned to at most 2 mm at the finest level" in text


def test_about_says_what_made_the_run_not_what_drew_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe 41 #4: a page redrawn by another process (the API, a BIDS rerun of other pairs, after an upgrade)
    showed that process's command and versions as the run's. The record holds the run's own now."""
    from asfe3d.io.record import run_fields
    from asfe3d.reports.text import about_rows

    monkeypatch.setattr(sys, "argv", ["/usr/bin/asfe3d", "fuse", "a.nii.gz", "b.nii.gz"])
    monkeypatch.chdir(tmp_path)
    mri, pet, _ = _volumes()
    for name, (arr, aff) in (("a.nii.gz", mri), ("b.nii.gz", pet)):
        nib.save(nib.Nifti1Image(arr, aff), tmp_path / name)
    import torch
    from monai.data import MetaTensor

    data = {"mri_path": tmp_path / "a.nii.gz", "pet_path": tmp_path / "b.nii.gz",
            "mri": MetaTensor(torch.zeros(1)), "pet": MetaTensor(torch.zeros(1)), "pet_registration": None}
    fields = run_fields(data)
    assert fields["command"] == "asfe3d fuse a.nii.gz b.nii.gz" and fields["working_directory"] == str(tmp_path)
    assert "PyTorch" in fields["environment"]["libraries"]
    monkeypatch.setattr(sys, "argv", ["viewer.py"])  # the page drawn later by another program
    recorded = {**fields, "environment": {"platform": "Linux-x", "python": "3.11.0", "libraries": {"MONAI": "1.0"}}}
    rows = dict(about_rows(recorded, "now"))
    assert rows["Command line"] == "asfe3d fuse a.nii.gz b.nii.gz" and rows["Working directory"] == str(tmp_path)
    assert rows["Platform"] == "Linux-x; Python 3.11.0" and rows["Libraries"] == "MONAI 1.0"
    old = dict(about_rows({"asfe3d_version": "0.1.0"}, "now"))  # a record of an earlier version
    assert old["Command line"] == "viewer.py (this report's process; the run recorded none)"
    assert old["Libraries"].endswith("(this report's process; the run recorded none)")


def test_methods_paragraphs_of_a_page_of_several_pairs_name_their_pairs(tmp_path: Path) -> None:
    """Probe 41 #8: a subject's page with an FDG and a PiB pair had two near-identical Methods paragraphs (differing
    in the iteration count) and nothing saying which belonged to which pair."""
    from asfe3d.reports import write_report

    mri, pet, fused = _volumes()
    other = {**RESULT, "registration": {**RESULT["registration"], "iterations": 278}}
    sections = [render_pair_section(mri_image=mri, pet_on_mri_image=pet, fused_image=fused, result=r,
                                    pet_as_read_image=pet, title=t)
                for r, t in ((RESULT, "sub-01 trc-FDG"), (other, "sub-01 trc-PiB"), (RESULT, "sub-01 trc-FDG run-2"))]
    text = write_report(tmp_path / "r.html", sections, title="sub-01").read_text(encoding="utf-8")
    methods = text[text.index('id="methods"'):]
    assert methods.count('<p class="methods">') == 2  # the two pairs fused alike share one
    assert '<p class="methods"><strong>sub-01 trc-FDG, sub-01 trc-FDG run-2:</strong> ' in methods
    assert '<p class="methods"><strong>sub-01 trc-PiB:</strong> ' in methods
    alone = write_report(tmp_path / "one.html", sections[:1], title="sub-01").read_text(encoding="utf-8")
    assert "<strong>" not in alone[alone.index('id="methods"'):]  # one paragraph: nothing to tell apart


def test_about_writes_both_times_alike() -> None:
    """Probe 41 #18: "Report written 2026-12-07 21:01 UTC" beside "Run finished 2026-12-07T21:01:39+0000"."""
    import datetime as dt

    from asfe3d.reports.text import about_rows

    rows = dict(about_rows({"written": "2026-12-07T21:01:39+0000"}, "now"))
    expected = dt.datetime(2026, 12, 7, 21, 1, 39, tzinfo=dt.timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    assert rows["Run finished"] == expected
    assert dict(about_rows({"written": "yesterday"}, "now"))["Run finished"] == "yesterday"


def test_a_run_recorded_from_python_is_not_given_the_drawing_processs_command(monkeypatch) -> None:
    """Review 43 #5: a run from a Python session records ``command: null``; a page drawn later from a command line
    showed that command as the run's."""
    from asfe3d.reports.text import about_rows

    monkeypatch.setattr(sys, "argv", ["/usr/bin/asfe3d", "report", "x"])
    rows = dict(about_rows({"command": None, "environment": {"platform": "p", "python": "3", "libraries": {}}}, "now"))
    assert rows["Command line"] == "(written from a Python session, not from a command line)"
