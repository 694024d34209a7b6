"""PET units: what the voxels are (Bq/ml, SUV...), how they were decay corrected, and the SUV (body weight) factor.

The facts come from the DICOM header (Units, DecayCorrection, PatientWeight, RadiopharmaceuticalInformationSequence:
RadionuclideTotalDose, RadionuclideHalfLife, RadiopharmaceuticalStartDateTime / StartTime; SeriesDate/Time,
AcquisitionDate/Time) or from a JSON sidecar: BIDS PET (Units, InjectedRadioactivity + InjectedRadioactivityUnits,
BodyWeight + BodyWeightUnits, TracerRadionuclide, ImageDecayCorrected, ImageDecayCorrectionTime, ScanStart,
InjectionStart) or dcm2niix's DICOM-like keys (Units, DecayCorrection, RadionuclideTotalDose, RadionuclideHalfLife,
RadiopharmaceuticalStartTime, AcquisitionTime / SeriesTime, PatientWeight).

SUV (body weight), as in the QIBA / Vendor-neutral definition::

    SUVbw = C [Bq/ml] * weight [g] / (injected dose [Bq] * 2 ** (-dt / half-life))

where ``dt`` runs from the injection to the time the image is decay corrected to: the scan start for
``DecayCorrection = START``, 0 for ``ADMIN``. For ``NONE`` (an image not decay corrected) one frame taken
(``frame=N``) is compared with the dose decayed over that frame (its mean activity: the decay averaged from the
frame's start over its duration); otherwise the dose is decayed to the scan start (noted: approximate).

The scan start of a DICOM series is the QIBA one: SeriesDate/SeriesTime when present and not later than the
earliest AcquisitionDate/Time over all the series' slices, else that earliest acquisition time (a whole-body
series' beds each carry their own AcquisitionTime; one slice's would be the wrong bed's).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asfe3d.errors import Asfe3dInputError, MetadataError
from asfe3d.io.checks import short_error
from asfe3d.io.suffixes import image_stem

__all__ = [
    "sidecar_frame_durations",
    "sidecar_candidate",
    "sidecar_metadata",
    "PET_UNITS",
    "HALF_LIFE_S",
    "PetHeader",
    "pet_header_from_dicom",
    "pet_header_from_sidecar",
    "find_sidecar",
    "read_pet_header",
    "suv_factor",
]

#: Values of ``read_volume(pet_units=...)``: ``None`` keeps the stored values.
PET_UNITS = ("suv",)

#: Half-lives (s) of the common PET radionuclides, by BIDS TracerRadionuclide name (upper case, no dash).
HALF_LIFE_S = {
    "F18": 6586.2, "C11": 1221.66, "O15": 122.24, "N13": 597.9, "GA68": 4057.74, "CU64": 45721.1,
    "ZR89": 282276.0, "RB82": 76.38, "I124": 360806.4, "BR76": 58320.0,
}

_ACTIVITY_TO_BQ = {"bq": 1.0, "kbq": 1e3, "mbq": 1e6, "gbq": 1e9, "ci": 3.7e10, "mci": 3.7e7, "uci": 3.7e4}
_CONC_TO_BQML = {"bq/ml": 1.0, "bqml": 1.0, "kbq/ml": 1e3, "mbq/ml": 1e6, "bq/cc": 1.0, "kbq/cc": 1e3,
                 "mbq/cc": 1e6, "nci/ml": 37.0, "nci/cc": 37.0, "uci/ml": 3.7e4, "uci/cc": 3.7e4}
_SUV_UNITS = {"gml", "g/ml", "suv", "suvbw"}
_WEIGHT_TO_KG = {"kg": 1.0, "g": 1e-3, "lb": 0.45359237, "lbs": 0.45359237}

#: an injected activity outside this range (Bq) is not a PET dose (370 in a Bq field: MBq written as Bq); from a
#: small-animal dose (about 1 MBq) to ten times the largest clinical one
DOSE_RANGE_BQ = (1e5, 2e10)
#: a body weight above this (kg) is not a patient's (beyond any PET table's limit; 75000 is grams written as kg)
MAX_WEIGHT_KG = 350.0
#: an injection time of day later than the scan's is read as the day before (a midnight crossing) only when that
#: puts the injection at most this long (s) before the scan; else the scan started before the injection
MAX_DAY_BEFORE_S = 12 * 3600.0
#: a scan (decay reference) that starts at most this long (s) before the recorded injection is taken as it is: a
#: dynamic scan started with the injection, the two times read from clocks out of step; the dose is decayed back
#: to the reference (a factor within 3 % for F-18). Earlier than this is refused
MAX_SCAN_BEFORE_INJECTION_S = 300.0
#: a decay reference more half-lives than this after the injection is refused: the image would hold under 0.1 % of
#: the dose (30 h after an F-18 injection, a date or time written wrong); Zr-89 scans days later stay far below it
MAX_HALF_LIVES = 10.0
#: a radionuclide living longer than this (s; 6 h) is scanned up to days after its injection: an injection time
#: without a date is then not taken as the scan's day (below it: F-18, Ga-68, C-11, O-15, Rb-82; above: Cu-64 12.7 h,
#: Zr-89 78 h, I-124 4.2 days)
MAX_DATELESS_HALF_LIFE_S = 6 * 3600.0
#: a stated half-life further than this (relative) from its radionuclide's known one (:data:`HALF_LIFE_S`) is
#: refused: 109.77 for F-18 is minutes written as seconds (an SUV 41 times too large 10 min after injection)
HALF_LIFE_TOL_REL = 0.03
#: radionuclide element names (DICOM RadionuclideCodeSequence's CodeMeaning, e.g. "^18^Fluorine") -> symbols
_ELEMENTS = {"FLUORINE": "F", "CARBON": "C", "OXYGEN": "O", "NITROGEN": "N", "GALLIUM": "GA", "COPPER": "CU",
             "ZIRCONIUM": "ZR", "RUBIDIUM": "RB", "IODINE": "I", "BROMINE": "BR"}
#: codes of RadionuclideCodeSequence known without a CodeMeaning (SNOMED-RT and SNOMED CT codes of F-18)
_NUCLIDE_CODES = {"C-111A1": "F18", "77004003": "F18"}
#: tolerances within which a sidecar's fact agrees with the DICOM's (relative; the times in seconds)
AGREE_REL = 0.005
AGREE_SECONDS = 60.0


@dataclass
class PetHeader:
    """What a PET header says about its units and timing (``None``: not stated).

    Attributes:
        source: ``"dicom"`` or ``"sidecar"``, and the file.
        units: the stored units as written (``"BQML"``, ``"Bq/mL"``...).
        decay_correction: ``"START"``, ``"ADMIN"`` or ``"NONE"``.
        weight_kg: body weight.
        weight_recorded: a body weight field that holds a number <= 0 (0: not entered at the scanner), as written;
            ``None`` otherwise.
        dose_bq: injected activity at the injection time.
        half_life_s: radionuclide half-life.
        seconds_injection_to_reference: seconds from the injection to the time the image is decay corrected to
            (the scan start for START / NONE), when known.
        reference: which times gave it (e.g. ``"SeriesDate/SeriesTime - RadiopharmaceuticalStartDateTime"``).
        notes: remarks (e.g. a midnight crossing assumed).
        radionuclide: the radionuclide as named (sidecar TracerRadionuclide, DICOM RadionuclideCodeSequence).
        suv_type: the DICOM SUVType (0054,1006) or a sidecar's ``SUVType`` (``"BW"``, ``"LBM"``...).
        scan_start: the scan start used (ISO date and time), for DICOM.
        frame_start_s: seconds from the injection to the start of the frame taken (``frame=N``), when known.
        frame_duration_s: that frame's duration (s), when known.
        injection_date_assumed: the injection's date was not recorded (DICOM RadiopharmaceuticalStartTime without
            RadiopharmaceuticalStartDateTime) and was taken as the scan's.
    """

    source: str
    units: str | None = None
    decay_correction: str | None = None
    weight_kg: float | None = None
    weight_recorded: float | None = None
    dose_bq: float | None = None
    half_life_s: float | None = None
    seconds_injection_to_reference: float | None = None
    reference: str | None = None
    notes: list[str] = field(default_factory=list)
    radionuclide: str | None = None
    suv_type: str | None = None
    scan_start: str | None = None
    frame_start_s: float | None = None
    frame_duration_s: float | None = None
    injection_date_assumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for ``Volume.info`` and JSON sidecars)."""
        return asdict(self)


# ------------------------------------------------------------------------------------------------- DICOM


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _dicom_datetime(date: Any, time: Any, full: Any = None) -> dt.datetime | None:
    """A datetime from a DICOM DT string, or a DA and a TM string (fractions of seconds kept). A DT's UTC offset
    (``+0100``) is dropped, as the TM has none. A DT cut short (only a date, or only the hour, as some exporters
    write it) gives its date, and its time unless the TM says more of the same time (a date-only DT hid the TM)."""
    text = str(full).strip() if full not in (None, "") else None
    if text:
        found = re.fullmatch(r"(\d{8})(\d*(?:\.\d*)?)(?:[+-]\d{4})?", text)
        if found is None:
            return None
        date, dt_time = found.group(1), found.group(2)
        tm = "" if time in (None, "") else str(time).strip().replace(":", "")
        if not dt_time or (len(tm) > len(dt_time) and tm.startswith(dt_time)):
            dt_time = tm
        time = dt_time
    if not date or not time:
        return None
    date, time = str(date).strip(), str(time).strip().replace(":", "")
    try:
        day = dt.datetime.strptime(date[:8], "%Y%m%d")
        hh, mm = int(time[0:2]), int(time[2:4]) if len(time) >= 4 else 0
        ss = float(time[4:]) if len(time) > 4 else 0.0
    except ValueError:
        return None
    return day + dt.timedelta(hours=hh, minutes=mm, seconds=ss)


#: the tags of each slice the PET facts are read from (nothing else of the file is parsed)
PET_DICOM_TAGS = ["Units", "DecayCorrection", "PatientWeight", "RadiopharmaceuticalInformationSequence", "SeriesDate",
                  "SeriesTime", "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "StudyDate", "SUVType",
                  "ActualFrameDuration"]
#: facts every slice of one series must state alike (SUV uses them): tag keyword -> where (None: the slice, else
#: its first RadiopharmaceuticalInformationSequence item)
SERIES_FACTS = {"PatientWeight": None, "Units": None, "DecayCorrection": None, "SUVType": None, "SeriesDate": None,
                "SeriesTime": None, "RadionuclideTotalDose": "item", "RadionuclideHalfLife": "item",
                "RadiopharmaceuticalStartTime": "item", "RadiopharmaceuticalStartDateTime": "item"}


def _read_pet_tags(path: Path) -> Any:
    """The :data:`PET_DICOM_TAGS` of one DICOM file (pydicom, header only)."""
    import pydicom

    try:
        with warnings.catch_warnings():  # pydicom warns (stderr) about odd values; asfe3d checks what it uses
            warnings.simplefilter("ignore")
            return pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=PET_DICOM_TAGS)
    except Exception as err:  # noqa: BLE001
        raise Asfe3dInputError(path, f"PET DICOM header cannot be read ({short_error(err)})") from None


def _fact(ds: Any, keyword: str, where: str | None) -> Any:
    """One of :data:`SERIES_FACTS` of a slice, normalised for comparison (numbers as floats, text stripped)."""
    if where == "item":
        seq = ds.get("RadiopharmaceuticalInformationSequence")
        ds = seq[0] if seq else None
    value = None if ds is None else ds.get(keyword)
    if value is None or str(value).strip() == "":
        return None
    number = _float(value)
    return number if number is not None else str(value).strip().upper()


def _check_slices_agree(files: list[Path], datasets: list[Any]) -> None:
    """Refuse a series whose slices state different SUV facts (weight, dose, injection time...)."""
    first = {k: _fact(datasets[0], k, w) for k, w in SERIES_FACTS.items()}
    for f, ds in zip(files[1:], datasets[1:]):
        for keyword, where in SERIES_FACTS.items():
            value = _fact(ds, keyword, where)
            if value != first[keyword]:
                shown = ["none" if v is None else f"{v:g}" if isinstance(v, float) else repr(v)
                         for v in (first[keyword], value)]
                raise Asfe3dInputError(
                    f.parent, f"PET DICOM slices disagree on {keyword} ({shown[0]} in {files[0].name}, {shown[1]} in "
                    f"{f.name}): not one set of SUV facts")


def _acquisition(ds: Any) -> dt.datetime | None:
    return _dicom_datetime(ds.get("AcquisitionDate") or ds.get("SeriesDate"), ds.get("AcquisitionTime"),
                           ds.get("AcquisitionDateTime"))


def _dicom_nuclide(item: Any) -> str | None:
    """The radionuclide of a RadiopharmaceuticalInformationSequence item (its RadionuclideCodeSequence), as a
    :data:`HALF_LIFE_S` key when it can be told, else its CodeMeaning."""
    codes = item.get("RadionuclideCodeSequence") if item is not None else None
    if not codes:
        return None
    code = codes[0]
    meaning = str(code.get("CodeMeaning", "") or "").strip()
    value = str(code.get("CodeValue", "") or "").strip()
    key = _nuclide_key(meaning) if meaning else None
    if key in HALF_LIFE_S:
        return key
    return _NUCLIDE_CODES.get(value) or meaning or None


def _table_half_life(head: PetHeader, nuclide: Any, source: str = "", stated: str = "") -> None:
    """Set ``head.half_life_s`` from asfe3d's table (:data:`HALF_LIFE_S`) when ``nuclide`` is one it knows, with a
    note saying so (``source``: where the nuclide was named; ``stated``: what the header said instead)."""
    known = HALF_LIFE_S.get(_nuclide_key(nuclide)) if nuclide else None
    if known is not None:
        head.half_life_s = known
        head.notes.append(f"half-life of {nuclide}{source} from asfe3d's table: {known:g} s{stated}")


def pet_header_from_dicom(path: str | Path | Sequence[str | Path],
                          frame_files: Sequence[str | Path] | None = None) -> PetHeader:
    """Read the PET units and timing facts of a DICOM series (headers only, :data:`PET_DICOM_TAGS`).

    Args:
        path: a DICOM file of the PET series, or all its files (then the slices must agree on the SUV facts, and
            the scan start is the earliest acquisition time over all of them, QIBA).
        frame_files: the files of the one frame taken from a dynamic series (its start and duration are recorded,
            for an image not decay corrected).

    Returns:
        The facts found (missing ones are ``None``).

    Raises:
        Asfe3dInputError: a file that is not readable DICOM; slices that disagree on a fact of
            :data:`SERIES_FACTS`.
    """
    files = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(f) for f in path]
    datasets = [_read_pet_tags(f) for f in files]
    _check_slices_agree(files, datasets)
    ds = datasets[0]
    head = PetHeader(source=f"dicom:{files[0].name}")
    head.units = str(ds.get("Units", "") or "").strip() or None
    head.decay_correction = str(ds.get("DecayCorrection", "") or "").strip().upper() or None
    head.suv_type = str(ds.get("SUVType", "") or "").strip().upper() or None
    weight = _float(ds.get("PatientWeight"))
    head.weight_kg = weight if weight and weight > 0 else None
    head.weight_recorded = weight if weight is not None and weight <= 0 else None
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    item = seq[0] if seq else None
    date = ds.get("SeriesDate") or ds.get("AcquisitionDate") or ds.get("StudyDate")
    injection = None
    if item is not None:
        dose = _float(item.get("RadionuclideTotalDose"))
        head.dose_bq = dose if dose and dose > 0 else None
        half = _float(item.get("RadionuclideHalfLife"))
        head.half_life_s = half if half and half > 0 else None
        head.radionuclide = _dicom_nuclide(item)
        if head.half_life_s is None:  # no usable RadionuclideHalfLife: the RadionuclideCodeSequence's nuclide, as a
            # sidecar's TracerRadionuclide is read
            stated = "" if item.get("RadionuclideHalfLife") in (None, "") else \
                f"; the header's RadionuclideHalfLife {item.get('RadionuclideHalfLife')!r} is not one"
            _table_half_life(head, head.radionuclide, " (RadionuclideCodeSequence)", stated)
        injection = _dicom_datetime(date, item.get("RadiopharmaceuticalStartTime"),
                                    item.get("RadiopharmaceuticalStartDateTime"))
    scan = _scan_start(head, ds, [a for a in map(_acquisition, datasets) if a is not None], len(files))
    if injection is not None and scan is not None:
        seconds = (scan - injection).total_seconds()
        if seconds < 0 and item is not None and not item.get("RadiopharmaceuticalStartDateTime") \
                and seconds + 86400.0 <= MAX_DAY_BEFORE_S:
            seconds += 86400.0  # a midnight crossing: injected late in the evening, scanned after midnight
            head.notes.append("injection time later than the scan on the same date: injected the day before")
        head.seconds_injection_to_reference = seconds
        start = ("RadiopharmaceuticalStartDateTime" if item is not None and item.get("RadiopharmaceuticalStartDateTime")
                 else "RadiopharmaceuticalStartTime")
        head.injection_date_assumed = start == "RadiopharmaceuticalStartTime"
        head.reference = f"{head.reference} - {start}"
        if frame_files is not None:
            _dicom_frame_time(head, files, datasets, frame_files, scan, seconds)
    else:
        head.reference = None
    return head


def _scan_start(head: PetHeader, ds: Any, acquisitions: list[dt.datetime], nfiles: int) -> dt.datetime | None:
    """The scan start (QIBA): SeriesDate/Time unless later than the earliest acquisition; ``head.reference`` and
    ``head.scan_start`` say which, ``head.notes`` why the series time was not used."""
    series = _dicom_datetime(ds.get("SeriesDate"), ds.get("SeriesTime"))
    earliest = min(acquisitions) if acquisitions else None
    of = f" (earliest of {nfiles} slices)" if nfiles > 1 else ""
    among = f" of the {nfiles} slices" if nfiles > 1 else ""
    if series is not None and (earliest is None or series <= earliest):
        scan, head.reference = series, "SeriesDate/SeriesTime"
    elif earliest is not None:
        scan, head.reference = earliest, f"AcquisitionDate/AcquisitionTime{of}"
        if series is not None:
            head.notes.append(f"SeriesTime later than the earliest AcquisitionTime{among} (a re-processed series?): "
                              "the acquisition time taken as the scan start (QIBA)")
    else:
        return None
    head.scan_start = scan.isoformat()
    return scan


def _dicom_frame_time(head: PetHeader, files: list[Path], datasets: list[Any], frame_files: Sequence[str | Path],
                      scan: dt.datetime, seconds: float) -> None:
    """Seconds from the injection to the start of the frame taken (its earliest AcquisitionTime), and its
    ActualFrameDuration, into ``head``."""
    by_file = {f.resolve(): d for f, d in zip(files, datasets)}
    frame = [by_file[Path(f).resolve()] for f in frame_files if Path(f).resolve() in by_file]
    starts = [a for a in map(_acquisition, frame) if a is not None]
    if starts:
        head.frame_start_s = seconds + (min(starts) - scan).total_seconds()
    durations = {_float(d.get("ActualFrameDuration")) for d in frame}
    if len(durations) == 1 and (ms := durations.pop()) is not None and ms > 0:
        head.frame_duration_s = ms / 1000.0


# ---------------------------------------------------------------------------------------------- sidecars


def sidecar_candidate(image: str | Path) -> Path | None:
    """Where an image file's JSON sidecar would be (``x.nii.gz`` -> ``x.json``), whether or not it exists;
    ``None`` for a name without a known image suffix."""
    p = Path(image)
    stem = image_stem(p.name)
    return None if stem is None else p.with_name(stem + ".json")


def find_sidecar(image: str | Path) -> Path | None:
    """The JSON sidecar of an image file (``x.nii.gz`` -> ``x.json``), if it exists."""
    candidate = sidecar_candidate(image)
    return candidate if candidate is not None and candidate.is_file() else None


#: the longest PET frame (s) a sidecar may state: a day (a longer one is a unit mistake or a corrupt field)
MAX_FRAME_S = 86400.0


def sidecar_frame_durations(path: str | Path | Mapping[str, Any], nframes: int,
                            image: str | Path | None = None) -> list[float] | None:
    """The frame durations (seconds) of a dynamic PET from its JSON sidecar's ``FrameDuration`` (BIDS PET).

    Args:
        path: the ``.json`` file, or its content as a mapping.
        nframes: frames of the image it describes.
        image: that image (named in errors about a mapping).

    Returns:
        The durations, or ``None`` when the sidecar has no ``FrameDuration``.

    Raises:
        Asfe3dInputError: unreadable JSON, or a ``FrameDuration`` that is not a list of ``nframes`` numbers > 0
            (a sidecar that does not describe this image cannot weigh its frames).
    """
    return sidecar_frame_times(path, nframes, image)[1]


def _number_list(value: Any) -> list[float | None]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    return [_float(v) if not isinstance(v, bool) else None for v in value] if isinstance(value, list) else [None]


def sidecar_frame_times(path: str | Path | Mapping[str, Any], nframes: int, image: str | Path | None = None
                        ) -> tuple[list[float] | None, list[float] | None]:
    """The frame start times and durations (seconds) of a dynamic PET from its JSON sidecar (BIDS PET
    ``FrameTimesStart`` and ``FrameDuration``), each checked against the image.

    Args:
        path: the ``.json`` file, or its content as a mapping.
        nframes: frames of the image it describes.
        image: that image (named in errors about a mapping).

    Returns:
        ``(starts, durations)``, each ``None`` when the sidecar does not have it.

    Raises:
        Asfe3dInputError: unreadable JSON; a ``FrameDuration`` that is not a list of ``nframes`` numbers > 0 (at
            most a day); a ``FrameTimesStart`` that is not a list of ``nframes`` finite, increasing numbers, or
            whose frames overlap by their durations (a sidecar that does not describe this image).
    """
    meta, p, _ = sidecar_metadata(path, image)
    durations = starts = None
    if "FrameDuration" in meta:
        value = meta["FrameDuration"]
        durations = _number_list(value)
        if any(d is None or not 0 < d <= MAX_FRAME_S for d in durations):
            raise MetadataError("FrameDuration", p, (
                f"PET sidecar FrameDuration must list durations > 0 and at most {MAX_FRAME_S:g} "
                f"s (seconds; a day), got {value!r}"))
        if len(durations) != nframes:
            raise MetadataError("FrameDuration", p, (
                f"PET sidecar FrameDuration lists {len(durations)} frame(s) but the image has "
                f"{nframes}: the sidecar does not describe this image"))
    if "FrameTimesStart" in meta:
        value = meta["FrameTimesStart"]
        starts = _number_list(value)
        if any(t is None for t in starts) or len(starts) != nframes:
            raise MetadataError("FrameTimesStart", p, (
                f"PET sidecar FrameTimesStart {value!r} is not a list of {nframes} start times "
                f"(s), one per frame of the image: the sidecar does not describe this image"))
        ends = [t + d for t, d in zip(starts, durations)] if durations is not None else starts
        bad = [k for k in range(1, nframes) if not (starts[k] > starts[k - 1]  # type: ignore[operator]
                                                     and starts[k] >= ends[k - 1] - 0.5)]  # type: ignore[operator]
        if bad:
            raise MetadataError("FrameTimesStart", p, (
                f"PET sidecar FrameTimesStart {value!r} does not increase frame by frame"
                f"{' past the end of the frame before' if durations is not None else ''} "
                f"(frame {bad[0]}): the sidecar does not describe this image"))
    return (None if starts is None else [float(t) for t in starts],  # type: ignore[arg-type]
            None if durations is None else [float(d) for d in durations])  # type: ignore[arg-type]


def _seconds_of_day(text: Any) -> float | None:
    if not isinstance(text, str) or not text.strip():
        return None
    t = text.strip().replace(":", "")
    try:
        return int(t[0:2]) * 3600 + int(t[2:4]) * 60 + float(t[4:] or 0)
    except ValueError:
        return None


def _nuclide_key(name: Any) -> str:
    """The :data:`HALF_LIFE_S` key of a radionuclide name: ``"18F"``, ``"F18"``, ``"F-18"``, ``"[18F]"``,
    ``"^18F"`` -> ``"F18"`` (element, then mass number)."""
    text = re.sub(r"[^0-9A-Z]", "", str(name).upper())
    match = re.fullmatch(r"(\d+)([A-Z]+)", text)
    if match:
        element, mass = match.group(2), match.group(1)
    else:
        match = re.fullmatch(r"([A-Z]+)(\d+)", text)
        if not match:
            return text
        element, mass = match.group(1), match.group(2)
    return _ELEMENTS.get(element, element) + mass


def _json_bool(value: Any, key: str, path: Path) -> bool:
    """A JSON true/false, also written as a string ("true", "False"); anything else is refused."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise MetadataError(key, path, f"PET sidecar {key} {value!r} is neither true nor false")


def sidecar_metadata(sidecar: str | Path | Mapping[str, Any], image: str | Path | None = None
                     ) -> tuple[dict[str, Any], str | Path, str]:
    """The content of a JSON sidecar, or metadata given as a mapping (a BIDS App's merged, inherited metadata).

    Args:
        sidecar: the ``.json`` file, or the metadata itself.
        image: the image the metadata belongs to (named in errors about a mapping).

    Returns:
        ``(metadata, where, source)``: ``where`` names the file in errors (for a mapping: ``image``), ``source``
        is ``"sidecar:<name>"`` or ``"metadata"``.

    Raises:
        Asfe3dInputError: unreadable JSON, or not a JSON object.
    """
    if isinstance(sidecar, Mapping):
        return dict(sidecar), (image if image is not None else "PET metadata"), "metadata"
    p = Path(sidecar)
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise Asfe3dInputError(p, f"PET JSON sidecar cannot be read ({short_error(err)})") from None
    if not isinstance(meta, dict):
        raise Asfe3dInputError(p, "PET JSON sidecar is not a JSON object")
    return meta, p, f"sidecar:{p.name}"


def pet_header_from_sidecar(path: str | Path | Mapping[str, Any], image: str | Path | None = None,
                            frame: int | None = None, nframes: int | None = None) -> PetHeader:
    """Read the PET units and timing facts of a JSON sidecar (BIDS PET or dcm2niix keys).

    Args:
        path: the ``.json`` file, or its content as a mapping (e.g. BIDS metadata with inheritance).
        image: the image it describes (named in errors about a mapping).
        frame: the frame taken from a 4D image (its start, from ``FrameTimesStart``, and duration are recorded).
        nframes: frames of the image (the sidecar's frame lists are checked against it when given).

    Returns:
        The facts found.

    Raises:
        Asfe3dInputError: unreadable JSON, not an object, units of activity / weight that are not known, or frame
            lists that do not describe the image (:func:`sidecar_frame_times`).
    """
    meta, p, source = sidecar_metadata(path, image)
    head = PetHeader(source=source)
    head.units = str(meta["Units"]).strip() if meta.get("Units") else None
    head.suv_type = str(meta["SUVType"]).strip().upper() if meta.get("SUVType") else None
    head.radionuclide = str(meta["TracerRadionuclide"]).strip() if meta.get("TracerRadionuclide") else None
    starts, durations = sidecar_frame_times(meta, nframes, p) if nframes is not None else (None, None)
    # weight
    weight = _float(meta.get("BodyWeight", meta.get("PatientWeight")))
    head.weight_recorded = weight if weight is not None and weight <= 0 else None
    if weight is not None and weight > 0:
        unit = str(meta.get("BodyWeightUnits", "kg")).strip().lower()
        if unit not in _WEIGHT_TO_KG:
            raise MetadataError("BodyWeightUnits", p, (
                f"PET sidecar BodyWeightUnits {unit!r} unknown (known: {sorted(_WEIGHT_TO_KG)})"))
        head.weight_kg = weight * _WEIGHT_TO_KG[unit]
    # dose
    if meta.get("InjectedRadioactivity") is not None:
        dose = _float(meta["InjectedRadioactivity"])
        unit = str(meta.get("InjectedRadioactivityUnits", "")).strip().lower()
        if unit not in _ACTIVITY_TO_BQ:
            raise MetadataError(
                "InjectedRadioactivityUnits", p,
                f"PET sidecar InjectedRadioactivityUnits {meta.get('InjectedRadioactivityUnits')!r} unknown "
                f"(known: {sorted(_ACTIVITY_TO_BQ)})"
            )
        head.dose_bq = dose * _ACTIVITY_TO_BQ[unit] if dose and dose > 0 else None
    elif _float(meta.get("RadionuclideTotalDose")):
        head.dose_bq = _float(meta["RadionuclideTotalDose"])  # dcm2niix: Bq, as in DICOM
    # half-life
    half = _float(meta.get("RadionuclideHalfLife"))
    if half and half > 0:
        head.half_life_s = half
    elif meta.get("TracerRadionuclide"):
        _table_half_life(head, meta["TracerRadionuclide"])
    # decay correction and times
    if "ImageDecayCorrected" in meta:  # BIDS: times in seconds relative to TimeZero
        corrected = _json_bool(meta["ImageDecayCorrected"], "ImageDecayCorrected", p)
        injection = _float(meta.get("InjectionStart"))
        if corrected:
            head.decay_correction = "START"
            ref = _float(meta.get("ImageDecayCorrectionTime"))
            ref_name = "ImageDecayCorrectionTime"
            if ref is not None and injection is not None and abs(ref - injection) < 1e-6:
                head.decay_correction = "ADMIN"
        else:
            head.decay_correction = "NONE"
            ref, ref_name = _float(meta.get("ScanStart")), "ScanStart"
        if ref is not None and injection is not None:
            head.seconds_injection_to_reference = ref - injection
            head.reference = f"{ref_name} - InjectionStart"
        if frame is not None and starts is not None and injection is not None:
            head.frame_start_s = starts[frame] - injection  # both relative to TimeZero
            head.frame_duration_s = None if durations is None else durations[frame]
    else:  # dcm2niix-style
        head.decay_correction = str(meta.get("DecayCorrection", "") or "").strip().upper() or None
        inj = _seconds_of_day(meta.get("RadiopharmaceuticalStartTime"))
        series, acquisition = _seconds_of_day(meta.get("SeriesTime")), _seconds_of_day(meta.get("AcquisitionTime"))
        # as for DICOM (QIBA): the series time is the scan start unless it is later than the acquisition time
        key, scan = ("SeriesTime", series) if series is not None and (acquisition is None or series <= acquisition) \
            else ("AcquisitionTime", acquisition)
        if scan is not None and inj is not None:
            seconds = scan - inj
            if seconds < 0 and seconds + 86400.0 <= MAX_DAY_BEFORE_S:
                seconds += 86400.0  # a midnight crossing
                head.notes.append("injection time later than the scan: injected the day before")
            head.seconds_injection_to_reference = seconds
            head.reference = f"{key} - RadiopharmaceuticalStartTime"
    return head


def read_pet_header(path: str | Path, dicom_file: str | Path | Sequence[str | Path] | None = None,
                    sidecar: str | Path | Mapping[str, Any] | None = None, *, frame: int | None = None,
                    nframes: int | None = None, frame_files: Sequence[str | Path] | None = None) -> PetHeader:
    """The PET facts of an input: its DICOM header, its (given or found) JSON sidecar, or both.

    A sidecar given with a DICOM input fills in the facts the DICOM lacks (a weight of 0 not entered at the
    scanner); one that contradicts a fact the DICOM states is refused.

    Args:
        path: the PET input (file or DICOM folder), named in errors.
        dicom_file: one DICOM file of the series, or all its files, when the input is DICOM.
        sidecar: an explicit JSON sidecar, or its content as a mapping.
        frame: the frame taken from a 4D image (``None``: frames averaged).
        nframes: frames of the image (a sidecar's frame lists are checked against it).
        frame_files: the DICOM files of the frame taken.

    Returns:
        The facts.

    Raises:
        Asfe3dInputError: no DICOM header and no sidecar; a sidecar contradicting the DICOM.
    """
    side = None
    if sidecar is not None:
        if not isinstance(sidecar, Mapping) and not Path(sidecar).is_file():
            raise Asfe3dInputError(sidecar, "PET JSON sidecar does not exist")
        side = pet_header_from_sidecar(sidecar, path, frame=frame, nframes=nframes)
    if dicom_file is not None:
        dicom = pet_header_from_dicom(dicom_file, frame_files=frame_files)
        return dicom if side is None else _merge(dicom, side, sidecar if not isinstance(sidecar, Mapping) else path)
    if side is not None:
        return side
    found = find_sidecar(path)
    if found is None:
        raise Asfe3dInputError(
            path, "PET units cannot be converted: no DICOM header and no JSON sidecar (e.g. a BIDS _pet.json next to "
            "the image with Units, InjectedRadioactivity, BodyWeight, ...)"
        )
    return pet_header_from_sidecar(found, frame=frame, nframes=nframes)


def _units_scale(units: str | None) -> float | str | None:
    """Units in a comparable form: the Bq/ml scale of a concentration, ``"suv"``, else the lower-case text."""
    if units is None:
        return None
    key = units.lower().replace(" ", "")
    return _CONC_TO_BQML.get(key, "suv" if key in _SUV_UNITS else key)


def _agree(a: Any, b: Any, name: str) -> bool:
    if name in ("seconds_injection_to_reference", "frame_start_s", "frame_duration_s"):
        return abs(a - b) <= AGREE_SECONDS
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= AGREE_REL * max(abs(a), abs(b))
    if name == "radionuclide":
        return _nuclide_key(a) == _nuclide_key(b)
    return a == b


def _merge(dicom: PetHeader, side: PetHeader, where: str | Path) -> PetHeader:
    """The DICOM's facts, with the sidecar's for those the DICOM lacks; a fact stated by both differently is
    refused (naming both values)."""
    names = {"units": "Units", "decay_correction": "DecayCorrection", "weight_kg": "body weight (kg)",
             "dose_bq": "injected dose (Bq)", "half_life_s": "half-life (s)", "radionuclide": "radionuclide",
             "suv_type": "SUVType", "seconds_injection_to_reference": "seconds from injection to the scan start",
             "frame_start_s": "frame start (s after injection)", "frame_duration_s": "frame duration (s)"}
    merged = PetHeader(**{**dicom.as_dict(), "notes": list(dicom.notes)})
    taken = []
    for attr, name in names.items():
        mine, theirs = getattr(dicom, attr), getattr(side, attr)
        if theirs is None:
            continue
        if mine is None:
            setattr(merged, attr, theirs)
            taken.append(name)
            if attr == "seconds_injection_to_reference":
                merged.reference = side.reference
            continue
        a, b = (_units_scale(mine), _units_scale(theirs)) if attr == "units" else (mine, theirs)
        if not _agree(a, b, attr):
            shown = [f"{v:g}" if isinstance(v, float) else repr(v) for v in (theirs, mine)]
            raise MetadataError(name, where, f"PET sidecar's {name} {shown[0]} ({side.source}) contradicts the DICOM's "
                                          f"{shown[1]} ({dicom.source}): which is right is unknown; fix one of them")
    if merged.weight_kg is not None:
        merged.weight_recorded = None
    if taken:
        merged.source = f"{dicom.source} + {side.source}"
        merged.notes.append(f"from {side.source}, which the DICOM lacks: {', '.join(taken)}")
    return merged


# ------------------------------------------------------------------------------------------------------ SUV


def suv_factor(head: PetHeader, where: str | Path) -> tuple[float, dict[str, Any]]:
    """Factor turning the stored PET values into SUV (body weight), and what it was made of.

    Args:
        head: the PET facts (:func:`read_pet_header`).
        where: the input (named in errors).

    Returns:
        ``(factor, record)``: multiply the stored values by ``factor``; ``record`` lists the inputs, the decay
        applied and the result (for ``Volume.info["pet_units"]`` and the log).

    Raises:
        Asfe3dInputError: naming every fact that is missing (units, decay correction, weight, dose, half-life,
            times), or units that are not activity concentration.
    """
    record: dict[str, Any] = {"converted_to": "SUVbw (g/ml)", **head.as_dict()}
    units = (head.units or "").strip()
    key = units.lower().replace(" ", "")
    if key in _SUV_UNITS:
        if head.suv_type not in (None, "BW"):
            raise Asfe3dInputError(
                where, f"PET values are SUV of type {head.suv_type!r} (SUVType, {head.source}), not body-weight SUV: "
                "asfe3d gives SUVbw only and cannot convert between SUV types")
        said = "" if head.suv_type else " (SUVType not stated: taken as body weight)"
        record.update(factor=1.0, decay_factor=1.0, notes=head.notes + [f"values already in SUV (body weight){said}"])
        return 1.0, record
    missing = []
    if not units:
        missing.append("units (DICOM Units / sidecar Units)")
    elif key not in _CONC_TO_BQML:
        extra = "; counts need the vendor's own calibration" if key in ("cnts", "counts") else ""
        raise Asfe3dInputError(
            where, f"PET values are in {units!r}, not an activity concentration (Bq/ml, kBq/ml...); cannot convert to "
            f"SUV{extra}"
        )
    if head.weight_kg is None:
        missing.append("body weight (PatientWeight / BodyWeight)" if head.weight_recorded is None else
                       f"body weight (recorded as {head.weight_recorded:g}: not entered at the scanner; a JSON sidecar "
                       "given with --pet-sidecar can hold every fact, BodyWeight included)")
    if head.dose_bq is None:
        missing.append("injected dose (RadionuclideTotalDose / InjectedRadioactivity)")
    if head.decay_correction is None:
        missing.append("decay correction (DecayCorrection / ImageDecayCorrected)")
    elif head.decay_correction not in ("START", "ADMIN", "NONE"):
        raise Asfe3dInputError(where, f"PET DecayCorrection {head.decay_correction!r} unknown (START, ADMIN or NONE)")
    needs_decay = head.decay_correction in ("START", "NONE")
    if needs_decay and head.half_life_s is None:
        missing.append("half-life (RadionuclideHalfLife / TracerRadionuclide)")
    if needs_decay and head.seconds_injection_to_reference is None:
        missing.append("injection and scan times (RadiopharmaceuticalStartTime and SeriesTime / InjectionStart and "
                       "ImageDecayCorrectionTime or ScanStart)")
    if missing:
        raise Asfe3dInputError(where, f"PET cannot be converted to SUV, {head.source} lacks: " + "; ".join(missing))
    if head.weight_kg > MAX_WEIGHT_KG:  # type: ignore[operator]
        raise Asfe3dInputError(
            where, f"PET body weight {head.weight_kg:g} kg ({head.source}) is not a patient's weight (more than "
            f"{MAX_WEIGHT_KG:g} kg; grams written as kg?): cannot convert to SUV")
    lo_dose, hi_dose = DOSE_RANGE_BQ
    if not lo_dose <= head.dose_bq <= hi_dose:  # type: ignore[operator]
        raise Asfe3dInputError(
            where, f"PET injected dose {head.dose_bq:g} Bq ({head.source}) is not a PET dose (outside "
            f"[{lo_dose:g}, {hi_dose:g}] Bq; MBq written as Bq?): cannot convert to SUV")
    notes = list(head.notes)
    if needs_decay:
        _check_half_life(head, where)
        if head.injection_date_assumed and float(head.half_life_s) > MAX_DATELESS_HALF_LIFE_S:  # type: ignore[arg-type]
            raise Asfe3dInputError(
                where, f"PET injection time has no date (RadiopharmaceuticalStartTime without "
                f"RadiopharmaceuticalStartDateTime, {head.source}) and the radionuclide's half-life is "
                f"{float(head.half_life_s) / 3600:.3g} h: such a scan may be days after the injection, which the "
                "times alone cannot tell (taken as the same day, a Zr-89 SUV 3 days after injection would be 47 % "
                "low); give the injection's date and time in a sidecar (--pet-sidecar, InjectionStart) or the "
                "DICOM's RadiopharmaceuticalStartDateTime: cannot convert to SUV")
        seconds = float(head.seconds_injection_to_reference)  # type: ignore[arg-type]
        if seconds < -MAX_SCAN_BEFORE_INJECTION_S:
            raise Asfe3dInputError(
                where, f"PET scan starts {-seconds:.0f} s before the injection ({head.reference}; at most "
                f"{MAX_SCAN_BEFORE_INJECTION_S:.0f} s is read as clocks out of step): cannot convert to SUV")
        if seconds > MAX_HALF_LIVES * float(head.half_life_s):  # type: ignore[arg-type]
            raise Asfe3dInputError(
                where, f"PET scan starts {seconds / 3600:.1f} h after the injection ({head.reference}): more than "
                f"{MAX_HALF_LIVES:g} half-lives ({float(head.half_life_s):g} s), less than 0.1 % of the dose left "
                "(a wrong date or time?): cannot convert to SUV")
        decay = 2.0 ** (-seconds / float(head.half_life_s))  # type: ignore[arg-type]
        if seconds < 0:
            notes.append(f"scan starts {-seconds:.0f} s before the recorded injection (a dynamic scan started with "
                         f"it, clocks out of step?): the dose is decayed back to the scan start (x {1 / decay:.4f})")
        if head.decay_correction == "NONE":
            decay = _uncorrected_decay(head, where, decay, notes)
    else:
        decay = 1.0
        notes.append("image decay corrected to the injection (ADMIN): dose not decayed")
    factor = _CONC_TO_BQML[key] * head.weight_kg * 1000.0 / (head.dose_bq * decay)  # type: ignore[operator]
    record.update(decay_factor=decay, dose_at_reference_bq=head.dose_bq * decay, factor=factor, notes=notes)  # type: ignore[operator]
    return factor, record


def _check_half_life(head: PetHeader, where: str | Path) -> None:
    """Refuse a half-life that contradicts the radionuclide named beside it (by more than
    :data:`HALF_LIFE_TOL_REL`): 109.77 for F-18 is its half-life in minutes, not seconds."""
    if head.radionuclide is None or head.half_life_s is None:
        return
    known = HALF_LIFE_S.get(_nuclide_key(head.radionuclide))
    if known is not None and abs(head.half_life_s - known) > HALF_LIFE_TOL_REL * known:
        raise Asfe3dInputError(
            where, f"PET half-life {head.half_life_s:g} s ({head.source}) contradicts its radionuclide "
            f"{head.radionuclide} ({known:g} s; minutes written as seconds?): cannot convert to SUV")


def _uncorrected_decay(head: PetHeader, where: str | Path, at_scan_start: float, notes: list[str]) -> float:
    """The decay of the dose for an image not decay corrected (``NONE``): over the frame taken when its start is
    known (the mean of ``2^(-t / T)`` over the frame, from its start for its duration; at its start when the
    duration is unknown), else at the scan start (noted)."""
    half = float(head.half_life_s)  # type: ignore[arg-type]
    if head.frame_start_s is None:
        notes.append("image not decay corrected: dose decayed to the scan start (frame times not known or frames "
                     "averaged: approximate)")
        return at_scan_start
    start = float(head.frame_start_s)
    if not -MAX_SCAN_BEFORE_INJECTION_S <= start <= MAX_HALF_LIVES * half:
        raise Asfe3dInputError(where, f"PET frame taken starts {start:.0f} s after the injection ({head.source}): not "
                                      "a plausible time: cannot convert to SUV")
    decay = 2.0 ** (-start / half)
    if head.frame_duration_s:
        lam_d = math.log(2.0) * float(head.frame_duration_s) / half
        decay *= -math.expm1(-lam_d) / lam_d
        notes.append(f"image not decay corrected: dose decayed over the frame taken ({start:.0f} s after the "
                     f"injection, for {float(head.frame_duration_s):g} s; mean decay x {decay:.4f})")
    else:
        notes.append(f"image not decay corrected: dose decayed to the start of the frame taken ({start:.0f} s after "
                     "the injection; its duration unknown)")
    return decay
