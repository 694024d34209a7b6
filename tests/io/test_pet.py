"""PET units: SUV (body weight) from the DICOM header or a JSON sidecar, against hand computations."""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.io import read_volume
from asfe3d.io.pet import pet_header_from_dicom, pet_header_from_sidecar, suv_factor
from tests.io.helpers import AFFINES, write_pydicom_series

SHAPE = (10, 12, 6)
UID = "1.2.826.0.1.3680043.2.1125.500"
# Hand computation (F-18, 370 MBq injected at 10:00:00, scan (SeriesTime) at 11:00:00, 75 kg, decay corrected
# to the scan start): dose at scan = 370e6 * 2 ** (-3600 / 6586.2) = 253.314 MBq;
# SUV factor = 75 kg * 1000 g/kg / 253.314e6 Bq = 2.960750e-4 (ml -> g at 1 g/ml).
HAND_FACTOR_START = 0.0002960750161260463
HAND_FACTOR_ADMIN = 75000 / 370e6  # no decay: 2.027027e-4


def _pet_series(folder, *, units="BQML", decay="START", weight="75", dose="370000000", half="6586.2",
                inj_time="100000", series_time="110000", series_date="20250101", slopes=None, extra=None):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    arr = np.random.default_rng(0).integers(0, 3000, size=SHAPE).astype(np.int16)
    slopes = slopes or [0.5 + 0.1 * k for k in range(SHAPE[2])]
    positions = [(-20.0, -30.0, 4.0 * k) for k in range(SHAPE[2])]

    def edit(ds, k):
        for key, value in (("Units", units), ("DecayCorrection", decay), ("PatientWeight", weight)):
            if value is not None:
                setattr(ds, key, value)
        ds.SeriesTime = ds.AcquisitionTime = series_time
        ds.SeriesDate = ds.AcquisitionDate = series_date
        item = Dataset()
        for key, value in (("RadionuclideTotalDose", dose), ("RadionuclideHalfLife", half),
                           ("RadiopharmaceuticalStartTime", inj_time)):
            if value is not None:
                setattr(item, key, value)
        ds.RadiopharmaceuticalInformationSequence = Sequence([item])
        if extra is not None:
            extra(ds, k)

    write_pydicom_series(folder, arr, positions, np.eye(3), (2.0, 2.0), UID, modality="PT",
                         sop_class="1.2.840.10008.5.1.4.1.1.128", slopes=slopes, edit=edit)
    return arr * np.asarray(slopes, dtype=np.float64)[None, None, :]  # Bq/ml as stored


def test_dicom_suv_matches_hand_computation(tmp_path, caplog):
    bqml = _pet_series(tmp_path / "pet")
    native = read_volume(tmp_path / "pet", role="PET")
    np.testing.assert_allclose(native.array_xyz(), bqml, rtol=1e-5)
    assert "pet_units" not in native.info
    with caplog.at_level(logging.INFO, logger="asfe3d"):
        vol = read_volume(tmp_path / "pet", role="PET", pet_units="suv")
    rec = vol.info["pet_units"]
    assert rec["factor"] == pytest.approx(HAND_FACTOR_START, rel=1e-9)
    assert rec["decay_factor"] == pytest.approx(2 ** (-3600 / 6586.2), rel=1e-12)
    assert rec["seconds_injection_to_reference"] == 3600 and rec["decay_correction"] == "START"
    assert rec["weight_kg"] == 75 and rec["dose_bq"] == 370e6 and rec["units"] == "BQML"
    np.testing.assert_allclose(vol.array_xyz(), bqml * HAND_FACTOR_START, rtol=1e-5)
    assert "converted BQML to SUV (body weight)" in caplog.text and "factor 0.000296075" in caplog.text


def test_dicom_admin_decay_not_applied(tmp_path):
    _pet_series(tmp_path / "pet", decay="ADMIN")
    vol = read_volume(tmp_path / "pet", pet_units="suv")
    assert vol.info["pet_units"]["factor"] == pytest.approx(HAND_FACTOR_ADMIN, rel=1e-12)
    assert vol.info["pet_units"]["decay_factor"] == 1.0


def test_dicom_injection_before_midnight(tmp_path):
    _pet_series(tmp_path / "pet", inj_time="233000", series_time="003000")
    head = pet_header_from_dicom(next((tmp_path / "pet").iterdir()))
    assert head.seconds_injection_to_reference == 3600 and "day before" in head.notes[0]


def test_dicom_missing_facts_named(tmp_path):
    _pet_series(tmp_path / "pet", weight=None, dose=None, decay=None)
    with pytest.raises(Asfe3dInputError, match=r"lacks: body weight \(PatientWeight / BodyWeight\); injected dose "
                       r"\(RadionuclideTotalDose / InjectedRadioactivity\); decay correction") as exc:
        read_volume(tmp_path / "pet", role="PET", pet_units="suv")
    assert "\n" not in str(exc.value) and exc.value.path == str(tmp_path / "pet")
    read_volume(tmp_path / "pet", role="PET")  # without conversion the series is fine


def test_dicom_counts_refused(tmp_path):
    _pet_series(tmp_path / "pet", units="CNTS")
    with pytest.raises(Asfe3dInputError, match="in 'CNTS', not an activity concentration.*vendor's own calibration"):
        read_volume(tmp_path / "pet", pet_units="suv")


def _nifti_pet(tmp_path, sidecar: dict | None, name="sub-01_pet"):
    data = np.random.default_rng(1).uniform(100, 5000, size=(8, 9, 7)).astype(np.float32)
    p = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINES["ras"]), str(p))
    if sidecar is not None:
        (tmp_path / f"{name}.json").write_text(json.dumps(sidecar))
    return p, data


BIDS = {"Units": "Bq/mL", "InjectedRadioactivity": 370, "InjectedRadioactivityUnits": "MBq", "BodyWeight": 75,
        "BodyWeightUnits": "kg", "TracerRadionuclide": "F18", "ImageDecayCorrected": True,
        "ImageDecayCorrectionTime": 3600, "InjectionStart": 0, "ScanStart": 3600, "TimeZero": "10:00:00"}


def test_bids_sidecar_suv(tmp_path):
    p, data = _nifti_pet(tmp_path, BIDS)
    vol = read_volume(p, role="PET", pet_units="suv")
    rec = vol.info["pet_units"]
    assert rec["source"] == "sidecar:sub-01_pet.json" and rec["factor"] == pytest.approx(HAND_FACTOR_START, rel=1e-9)
    assert any("half-life of F18" in n for n in rec["notes"])
    np.testing.assert_allclose(vol.array_xyz(), data * HAND_FACTOR_START, rtol=1e-5)
    kbq = dict(BIDS, Units="kBq/mL", InjectedRadioactivity=370000, InjectedRadioactivityUnits="kBq")
    q, _ = _nifti_pet(tmp_path, kbq, name="kbq")
    assert read_volume(q, pet_units="suv").info["pet_units"]["factor"] == pytest.approx(1000 * HAND_FACTOR_START)


def test_dcm2niix_style_sidecar_and_explicit_sidecar(tmp_path):
    side = {"Units": "BQML", "DecayCorrection": "START", "RadionuclideTotalDose": 370e6,
            "RadionuclideHalfLife": 6586.2, "RadiopharmaceuticalStartTime": "10:00:00.000000",
            "AcquisitionTime": "11:00:00.000000", "PatientWeight": 75}
    p, _ = _nifti_pet(tmp_path, None)
    explicit = tmp_path / "elsewhere.json"
    explicit.write_text(json.dumps(side))
    vol = read_volume(p, pet_units="suv", pet_sidecar=explicit)
    assert vol.info["pet_units"]["factor"] == pytest.approx(HAND_FACTOR_START, rel=1e-9)
    assert vol.info["pet_units"]["reference"] == "AcquisitionTime - RadiopharmaceuticalStartTime"


def test_nifti_without_sidecar_or_with_incomplete_one(tmp_path):
    p, _ = _nifti_pet(tmp_path, None)
    with pytest.raises(Asfe3dInputError, match="no DICOM header and no JSON sidecar"):
        read_volume(p, pet_units="suv")
    q, _ = _nifti_pet(tmp_path, {"Units": "Bq/mL", "ImageDecayCorrected": True}, name="partial")
    with pytest.raises(Asfe3dInputError, match=r"sidecar:partial.json lacks: body weight.*injected dose.*half-life.*"
                       r"injection and scan times"):
        read_volume(q, pet_units="suv")
    r, _ = _nifti_pet(tmp_path, dict(BIDS, InjectedRadioactivityUnits="furlongs"), name="units")
    with pytest.raises(Asfe3dInputError, match="InjectedRadioactivityUnits 'furlongs' unknown"):
        read_volume(r, pet_units="suv")
    with pytest.raises(ValueError, match="pet_units must be None or one of"):
        read_volume(p, pet_units="SUVlbm")


def test_already_suv_and_scan_before_injection(tmp_path):
    p, data = _nifti_pet(tmp_path, {"Units": "g/ml"})
    vol = read_volume(p, pet_units="suv")
    assert vol.info["pet_units"]["factor"] == 1.0
    np.testing.assert_array_equal(vol.array_xyz(), data)
    # a dynamic scan started with the injection, clocks a minute apart: the dose decayed back (not refused)
    q, _ = _nifti_pet(tmp_path, dict(BIDS, ImageDecayCorrectionTime=-60), name="early")
    factor, record = suv_factor(pet_header_from_sidecar(tmp_path / "early.json"), q)
    assert factor == pytest.approx(75000 / (370e6 * 2 ** (60 / 6586.2)), rel=1e-9)
    assert any("scan starts 60 s before the recorded injection" in n for n in record["notes"])
    q, _ = _nifti_pet(tmp_path, dict(BIDS, ImageDecayCorrectionTime=-1800), name="earlier")
    with pytest.raises(Asfe3dInputError, match="scan starts 1800 s before the injection"):
        suv_factor(pet_header_from_sidecar(tmp_path / "earlier.json"), q)
    # 30 h after an F-18 injection (16 half-lives: a wrong date) was converted with a factor 17.5 times too large
    q, _ = _nifti_pet(tmp_path, dict(BIDS, ImageDecayCorrectionTime=30 * 3600), name="late")
    with pytest.raises(Asfe3dInputError, match=r"scan starts 30.0 h after the injection .*more than 10 half-lives"):
        suv_factor(pet_header_from_sidecar(tmp_path / "late.json"), q)


DCM2NIIX = {"Units": "BQML", "DecayCorrection": "START", "RadionuclideTotalDose": 370e6,
            "RadionuclideHalfLife": 6586.2, "RadiopharmaceuticalStartTime": "10:00:00", "AcquisitionTime": "11:00:00",
            "PatientWeight": 75}


def _factor(tmp_path, meta: dict, name: str) -> float:
    (tmp_path / f"{name}.json").write_text(json.dumps(meta))
    return suv_factor(pet_header_from_sidecar(tmp_path / f"{name}.json"), "pet.nii.gz")[0]


@pytest.mark.parametrize("spelling", ["F18", "18F", "[18F]", "F-18", "^18F", "18f"])
def test_tracer_radionuclide_spellings(tmp_path, spelling):
    """'18F' (mass number first, as most BIDS PET datasets write it) used to be looked up as '8F1': refused."""
    assert _factor(tmp_path, dict(BIDS, TracerRadionuclide=spelling), "t") == pytest.approx(HAND_FACTOR_START, rel=1e-9)
    c11 = dict(BIDS, TracerRadionuclide=spelling.replace("18", "11").replace("F", "C").replace("f", "c"))
    assert _factor(tmp_path, c11, "c") == pytest.approx(75000 / (370e6 * 2 ** (-3600 / 1221.66)), rel=1e-9)


@pytest.mark.parametrize("meta, words", [
    # a dose of 370 "Bq" (MBq in a Bq field): the SUV came out a million times too large
    (dict(BIDS, InjectedRadioactivityUnits="Bq"), r"injected dose 370 Bq \(sidecar:x.json\) is not a PET dose"),
    (dict(DCM2NIIX, RadionuclideTotalDose=370), r"injected dose 370 Bq \(sidecar:x.json\) is not a PET dose"),
    # 75000 "kg" (grams): a thousand times too large; 500 kg is beyond any PET table
    (dict(BIDS, BodyWeight=75000), r"body weight 75000 kg \(sidecar:x.json\) is not a patient's weight"),
    (dict(DCM2NIIX, PatientWeight=500), r"body weight 500 kg \(sidecar:x.json\) is not a patient's weight"),
    # a weight of 0 is one nobody entered: said so, not only "lacks"
    (dict(DCM2NIIX, PatientWeight=0), r"lacks: body weight \(recorded as 0: not entered at the scanner"),
    # an injection 30 min after the scan start was read as the day before: SUV 6000 times too large (30 s is
    # taken as clocks out of step: test_dicom_implausible_dose_weight_and_injection_after_scan)
    (dict(DCM2NIIX, RadiopharmaceuticalStartTime="11:30:00"), r"scan starts 1800 s before the injection"),
    (dict(BIDS, ImageDecayCorrected="maybe"), r"ImageDecayCorrected 'maybe' is neither true nor false"),
])
def test_implausible_facts_are_refused(tmp_path, meta, words):
    with pytest.raises(Asfe3dInputError, match=words) as err:
        _factor(tmp_path, meta, "x")
    assert "\n" not in str(err.value)


def test_sidecar_times_and_flags_read_as_dicom_would(tmp_path):
    # a midnight crossing is still read as one (injected 23:30, scanned 00:30)
    night = dict(DCM2NIIX, RadiopharmaceuticalStartTime="23:30:00", AcquisitionTime="00:30:00")
    assert _factor(tmp_path, night, "n") == pytest.approx(HAND_FACTOR_START, rel=1e-9)
    # QIBA, as for DICOM: a series time later than the acquisition (a re-processed series) is not the scan start
    later = dict(DCM2NIIX, SeriesTime="11:20:00")
    assert _factor(tmp_path, later, "s") == pytest.approx(HAND_FACTOR_START, rel=1e-9)
    # "false" written as a string is false (bool("false") is True: it was read as ADMIN, no decay)
    not_corrected = dict(BIDS, ImageDecayCorrected="false", ImageDecayCorrectionTime=0)
    assert _factor(tmp_path, not_corrected, "f") == pytest.approx(HAND_FACTOR_START, rel=1e-9)
    # activity concentrations in nCi/ml are converted, not called "not an activity concentration"
    assert _factor(tmp_path, dict(BIDS, Units="nCi/mL"), "u") == pytest.approx(37 * HAND_FACTOR_START, rel=1e-9)


def test_dicom_implausible_dose_weight_and_injection_after_scan(tmp_path):
    _pet_series(tmp_path / "dose", dose="370")
    with pytest.raises(Asfe3dInputError, match=r"injected dose 370 Bq \(dicom:im000.dcm\) is not a PET dose"):
        read_volume(tmp_path / "dose", pet_units="suv")
    _pet_series(tmp_path / "weight", weight="75000")
    with pytest.raises(Asfe3dInputError, match=r"body weight 75000 kg \(dicom:im000.dcm\)"):
        read_volume(tmp_path / "weight", pet_units="suv")
    _pet_series(tmp_path / "skew", inj_time="110030")
    head = pet_header_from_dicom(next((tmp_path / "skew").iterdir()))
    assert head.seconds_injection_to_reference == -30 and not head.notes  # not "the day before" (23.99 h)
    units = read_volume(tmp_path / "skew", pet_units="suv").info["pet_units"]
    assert units["factor"] == pytest.approx(75000 / (370e6 * 2 ** (30 / 6586.2)), rel=1e-6)


# ------------------------------------------------------------------------------------------- probe 13 findings


@pytest.mark.parametrize(("series_time", "note"), [(None, False), ("111000", True)])
def test_dicom_scan_start_is_the_earliest_acquisition_of_the_series(tmp_path, series_time, note):
    """Two beds: slices 0-2 scanned at 11:20, slices 3-5 at 11:00. The first file's AcquisitionTime (11:20) was
    taken as the scan start: SUV 13.5 % too high (6.5 % with a SeriesTime of 11:10)."""

    def beds(ds, k):
        ds.AcquisitionTime = "112000" if k < 3 else "110000"
        if series_time is None:
            del ds.SeriesTime
        else:
            ds.SeriesTime = series_time

    _pet_series(tmp_path / "pet", extra=beds)
    rec = read_volume(tmp_path / "pet", pet_units="suv").info["pet_units"]
    assert rec["factor"] == pytest.approx(HAND_FACTOR_START, rel=1e-9)
    assert rec["reference"] == "AcquisitionDate/AcquisitionTime (earliest of 6 slices) - RadiopharmaceuticalStartTime"
    assert rec["scan_start"] == "2025-01-01T11:00:00"
    assert any("SeriesTime later than the earliest AcquisitionTime" in n for n in rec["notes"]) == note


@pytest.mark.parametrize(("where", "keyword", "value"), [
    ("slice", "PatientWeight", "80"), ("item", "RadionuclideTotalDose", "185000000"),
    ("item", "RadiopharmaceuticalStartTime", "101500"),
])
def test_dicom_slices_disagreeing_on_suv_facts_refused(tmp_path, where, keyword, value):
    from pydicom.dataset import Dataset

    def differ(ds, k):
        if k == 4:
            target = ds if where == "slice" else ds.RadiopharmaceuticalInformationSequence[0]
            setattr(target, keyword, value)
        assert isinstance(ds, Dataset)

    _pet_series(tmp_path / "pet", extra=differ)
    with pytest.raises(Asfe3dInputError, match=rf"pet: PET DICOM slices disagree on {keyword} \(.* in im000.dcm, .* "
                                               rf"in im004.dcm\): not one set of SUV facts"):
        read_volume(tmp_path / "pet", pet_units="suv")


def test_half_life_contradicting_the_radionuclide_refused(tmp_path):
    """109.77 (F-18's half-life in minutes) was used as seconds: an SUV 41 times too large."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    with pytest.raises(Asfe3dInputError, match=r"half-life 109.77 s \(sidecar:x.json\) contradicts its radionuclide "
                                               r"F18 \(6586.2 s; minutes written as seconds\?\)"):
        _factor(tmp_path, dict(BIDS, RadionuclideHalfLife=109.77), "x")
    assert _factor(tmp_path, dict(BIDS, RadionuclideHalfLife=6588.0), "y") > 0  # rounded: within 3 %

    def fluorine(ds, k):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-111A1", "SRT", "^18^Fluorine"
        ds.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence = Sequence([code])

    _pet_series(tmp_path / "pet", half="109.77", extra=fluorine)
    with pytest.raises(Asfe3dInputError, match=r"half-life 109.77 s \(dicom:im000.dcm\) contradicts its radionuclide "
                                               r"F18"):
        read_volume(tmp_path / "pet", pet_units="suv")


def test_sidecar_contradicting_the_dicom_refused_and_filling_what_it_lacks(tmp_path):
    """The sidecar won over the DICOM's own Units, DecayCorrection and dose without a word."""
    side = tmp_path / "side.json"
    side.write_text(json.dumps(dict(BIDS, BodyWeight=75)))
    _pet_series(tmp_path / "cnts", units="CNTS", weight="0")
    with pytest.raises(Asfe3dInputError, match=r"side.json: PET sidecar's Units 'Bq/mL' \(sidecar:side.json\) "
                                               r"contradicts the DICOM's 'CNTS' \(dicom:im000.dcm\)"):
        read_volume(tmp_path / "cnts", pet_units="suv", pet_sidecar=side)
    _pet_series(tmp_path / "dose", dose="185000000", weight="0")
    with pytest.raises(Asfe3dInputError, match=r"injected dose \(Bq\) 3.7e\+08 \(sidecar:side.json\) contradicts "
                                               r"the DICOM's 1.85e\+08"):
        read_volume(tmp_path / "dose", pet_units="suv", pet_sidecar=side)
    _pet_series(tmp_path / "ok", weight="0")  # only the weight missing: taken from the sidecar, said so
    rec = read_volume(tmp_path / "ok", pet_units="suv", pet_sidecar=side).info["pet_units"]
    assert rec["factor"] == pytest.approx(HAND_FACTOR_START, rel=1e-9)
    assert rec["source"] == "dicom:im000.dcm + sidecar:side.json"
    assert "from sidecar:side.json, which the DICOM lacks: body weight (kg), radionuclide" in rec["notes"]


def test_suv_of_another_type_not_taken_as_suvbw(tmp_path):
    """Units GML with SUVType LBM was recorded as SUVbw (g/ml)."""
    _pet_series(tmp_path / "lbm", units="GML", extra=lambda ds, k: setattr(ds, "SUVType", "LBM"))
    with pytest.raises(Asfe3dInputError, match=r"PET values are SUV of type 'LBM' \(SUVType, dicom:im000.dcm\), not "
                                               r"body-weight SUV"):
        read_volume(tmp_path / "lbm", pet_units="suv")
    _pet_series(tmp_path / "bw", units="GML", extra=lambda ds, k: setattr(ds, "SUVType", "BW"))
    assert read_volume(tmp_path / "bw", pet_units="suv").info["pet_units"]["factor"] == 1.0


def _nifti_4d(tmp_path, sidecar: dict, name="dyn"):
    base = np.random.default_rng(2).uniform(100, 5000, size=(8, 9, 7)).astype(np.float32)
    data = np.stack([base, 2 * base, 4 * base], axis=-1)
    p = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINES["ras"]), str(p))
    (tmp_path / f"{name}.json").write_text(json.dumps(sidecar))
    return p, base


@pytest.mark.parametrize(("starts", "words"), [
    ([0, 60, 180, 480], r"FrameTimesStart \[0, 60, 180, 480\] is not a list of 3 start times"),
    ([0, 0, 0], r"FrameTimesStart \[0, 0, 0\] does not increase frame by frame past the end of the frame before"),
])
def test_frame_times_start_that_does_not_describe_the_image_refused(tmp_path, starts, words):
    """FrameTimesStart of 4 entries for 3 frames (or overlapping frames) was ignored; FrameDuration still used."""
    p, _ = _nifti_4d(tmp_path, {"FrameTimesStart": starts, "FrameDuration": [60, 120, 300]})
    with pytest.raises(Asfe3dInputError, match=words):
        read_volume(p, role="PET")


def test_uncorrected_frame_is_converted_with_the_dose_decayed_over_that_frame(tmp_path):
    """ImageDecayCorrected false, frame 2 (63 min after injection, 5 min long): the scan-start factor was used,
    an SUV 27 % too low."""
    meta = dict(BIDS, ImageDecayCorrected=False, InjectionStart=-3600, ScanStart=0, FrameTimesStart=[0, 60, 180],
                FrameDuration=[60, 120, 300])
    p, base = _nifti_4d(tmp_path, meta)
    vol = read_volume(p, role="PET", pet_units="suv", frame=2)
    half, start, dur = 6586.2, 3600 + 180, 300
    lam = np.log(2) / half
    decay = 2 ** (-start / half) * (1 - np.exp(-lam * dur)) / (lam * dur)  # mean of the decay over the frame
    assert vol.info["pet_units"]["decay_factor"] == pytest.approx(decay, rel=1e-12)
    assert vol.info["pet_units"]["factor"] == pytest.approx(75000 / (370e6 * decay), rel=1e-9)
    np.testing.assert_allclose(vol.array_xyz(), 4 * base * 75000 / (370e6 * decay), rtol=1e-5)
    assert "dose decayed over the frame taken (3780 s after the injection, for 300 s" in \
        vol.info["pet_units"]["notes"][-1]


def test_uncorrected_dicom_frame_decayed_from_that_frame_start(tmp_path):
    """The same for a dynamic DICOM series: frame 2 starts at its slices' AcquisitionTime (11:03), lasts 300 s."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from tests.io.helpers import write_dynamic_pet_series

    base = np.random.default_rng(1).integers(10, 100, size=(6, 5, 4)).astype(np.float64)
    files = write_dynamic_pet_series(tmp_path / "pt", [base, 2 * base, 4 * base], [60000, 120000, 300000])
    for f in files:
        ds = pydicom.dcmread(f)
        frame = [30000.0, 120000.0, 330000.0].index(float(ds.FrameReferenceTime))
        ds.Units, ds.DecayCorrection, ds.PatientWeight, ds.SeriesDate = "BQML", "NONE", "75", "20250101"
        ds.SeriesTime, ds.AcquisitionDate, ds.AcquisitionTime = "110000", "20250101", ["110000", "110100", "110300"][frame]
        item = Dataset()
        item.RadionuclideTotalDose, item.RadionuclideHalfLife, item.RadiopharmaceuticalStartTime = "370000000", \
            "6586.2", "100000"
        ds.RadiopharmaceuticalInformationSequence = Sequence([item])
        ds.save_as(f)
    rec = read_volume(tmp_path / "pt", role="PET", pet_units="suv", frame=2).info["pet_units"]
    lam = np.log(2) / 6586.2
    decay = 2 ** (-3780 / 6586.2) * (1 - np.exp(-lam * 300)) / (lam * 300)
    assert rec["decay_factor"] == pytest.approx(decay, rel=1e-12) and rec["frame_start_s"] == 3780


def test_long_lived_tracer_without_an_injection_date_is_refused(tmp_path):
    """A Zr-89 PET three days after injection whose DICOM holds only RadiopharmaceuticalStartTime (no date) was
    converted as if injected on the scan day: an SUV 47 % low, without a word (probe 15)."""
    _pet_series(tmp_path / "zr", half="282276", inj_time="100000")  # Zr-89: 78.41 h
    with pytest.raises(Asfe3dInputError, match=r"injection time has no date .* half-life is 78.4 h"):
        read_volume(tmp_path / "zr", role="PET", pet_units="suv")

    def dated(ds, k):  # with the date: 3 days
        ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20241229100000"

    _pet_series(tmp_path / "zr_dated", half="282276", inj_time="100000", extra=dated)
    rec = read_volume(tmp_path / "zr_dated", role="PET", pet_units="suv").info["pet_units"]
    assert rec["seconds_injection_to_reference"] == 3 * 86400 + 3600 and not rec["injection_date_assumed"]
    _pet_series(tmp_path / "f18")
    rec = read_volume(tmp_path / "f18", role="PET", pet_units="suv").info["pet_units"]
    assert rec["injection_date_assumed"] and rec["factor"] == pytest.approx(HAND_FACTOR_START, rel=1e-9)  # F-18: kept


def test_an_injection_datetime_holding_only_a_date_takes_the_time(tmp_path):
    """Probe 46 #5: a RadiopharmaceuticalStartDateTime cut to its date hid the RadiopharmaceuticalStartTime beside
    it: SUV was refused as lacking the injection time."""
    def date_only(ds, k):
        ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20250101"

    _pet_series(tmp_path / "pt", extra=date_only)
    rec = read_volume(tmp_path / "pt", role="PET", pet_units="suv").info["pet_units"]
    assert rec["factor"] == pytest.approx(HAND_FACTOR_START, rel=1e-9)


def test_a_missing_half_life_comes_from_the_radionuclide_code(tmp_path):
    """Probe 46 #6: no RadionuclideHalfLife, but the RadionuclideCodeSequence says ^18^Fluorine: SUV was refused as
    lacking the half-life (a sidecar's TracerRadionuclide was already read this way)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def fluorine(ds, k):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-111A1", "SRT", "^18^Fluorine"
        ds.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence = Sequence([code])

    _pet_series(tmp_path / "bare", half=None)
    with pytest.raises(Asfe3dInputError, match=r"lacks: half-life"):
        read_volume(tmp_path / "bare", role="PET", pet_units="suv")
    _pet_series(tmp_path / "coded", half=None, extra=fluorine)
    rec = read_volume(tmp_path / "coded", role="PET", pet_units="suv").info["pet_units"]
    assert rec["factor"] == pytest.approx(HAND_FACTOR_START, rel=1e-4)
    assert any("from asfe3d's table: 6586.2 s" in note for note in rec["notes"])
    _pet_series(tmp_path / "zero", half="0", extra=fluorine)  # a stated 0 is no half-life: the note says so
    rec = read_volume(tmp_path / "zero", role="PET", pet_units="suv").info["pet_units"]
    assert any("the header's RadionuclideHalfLife" in note and "is not one" in note for note in rec["notes"])


@pytest.mark.parametrize("dt_text, tm, expected", [
    ("20250101+0100", "101530", "2025-01-01 10:15:30"),  # a date with an offset: the TM's time (it read 00:10)
    ("2025010110", "101530", "2025-01-01 10:15:30"),  # cut to the hour: the TM says more of the same time
    ("2025010110", "091530", "2025-01-01 10:00:00"),  # the TM says another time: the DT's
    ("20250101101500.25-0500", None, "2025-01-01 10:15:00.250000"),
])
def test_dicom_datetimes_cut_short_or_with_an_offset(dt_text, tm, expected):
    """Review 49 #4: a date-only DT with a UTC offset was read as 00:10 (the offset taken for the time), the TM
    beside it ignored: a silent 9-hour decay error."""
    from asfe3d.io.pet import _dicom_datetime

    assert str(_dicom_datetime("19990101", tm, dt_text)) == expected
