"""Helpers for the io tests: tiny NIfTI files with chosen qform/sform, affines, DICOM series."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

SHAPE = (12, 10, 8)


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from angles in degrees about x, then y, then z."""
    ax, ay, az = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(rot: np.ndarray, zooms: Sequence[float], offset: Sequence[float]) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = np.asarray(rot) @ np.diag(zooms)
    aff[:3, 3] = offset
    return aff


AFFINES = {
    "ras": make_affine(np.eye(3), (1.0, 1.0, 1.0), (-6.0, -5.0, -4.0)),
    "anisotropic": make_affine(np.eye(3), (0.8, 1.3, 3.2), (10.0, -20.0, 5.5)),
    "flipped_lps_like": make_affine(np.diag([-1.0, -1.0, 1.0]), (1.1, 0.9, 2.0), (60.0, 70.0, -30.0)),
    "oblique": make_affine(rotation(12.0, -25.0, 33.0), (1.0, 1.2, 2.5), (-35.25, 41.5, 12.0)),
}


def random_volume(shape: Sequence[int] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, size=tuple(shape)).astype(np.float32)


def save_nifti(
    path: Path,
    data: np.ndarray,
    qform: np.ndarray | None,
    qcode: int,
    sform: np.ndarray | None,
    scode: int,
) -> Path:
    """Save with explicit qform / sform matrices and codes (``None`` matrix: leave the header default)."""
    img = nib.Nifti1Image(data, None)
    if qform is not None:
        img.set_qform(qform, code=qcode)
    else:
        img.header["qform_code"] = qcode
    if sform is not None:
        img.set_sform(sform, code=scode)
    else:
        img.header["sform_code"] = scode
    nib.save(img, str(path))
    return path



def write_dicom_series(
    folder: Path,
    array_xyz: np.ndarray,
    origin: Sequence[float],
    spacing: Sequence[float],
    direction: np.ndarray,
    series_uid: str,
    description: str = "T1 test",
    positions: Sequence[Sequence[float]] | None = None,
    prefix: str = "sl",
) -> list[Path]:
    """Write a 3D int16 array (X, Y, Z) as single-frame DICOM slices with an LPS geometry.

    ``positions`` overrides the ImagePositionPatient of each slice (to build non-uniform / tilted series).
    """
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array_xyz.transpose(2, 1, 0)).astype(np.int16))
    img.SetOrigin(tuple(origin))
    img.SetSpacing(tuple(spacing))
    direction = np.asarray(direction, dtype=float)
    img.SetDirection(tuple(direction.ravel()))
    orientation = "\\".join(f"{v:.10f}" for v in (*direction[:, 0], *direction[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(array_xyz.shape[2]):
        sl = img[:, :, k]
        pos = img.TransformIndexToPhysicalPoint((0, 0, k)) if positions is None else positions[k]
        tags = {
            "0008|0060": "MR",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0008|103e": description,
            "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.10f}" for v in pos),
            "0020|0013": str(k + 1),
            "0018|0050": f"{spacing[2]:.6f}",
        }
        files.append(_write_slice(writer, sl, tags, folder / f"{prefix}{k:03d}.dcm"))
    return files


def _write_slice(writer: sitk.ImageFileWriter, sl: sitk.Image, tags: dict[str, str], f: Path) -> Path:
    """Write one 2D slice with its DICOM ``tags`` to ``f``."""
    for key, value in tags.items():
        sl.SetMetaData(key, value)
    writer.SetFileName(str(f))
    writer.Execute(sl)
    return f


def write_enhanced_dicom(
    path: Path,
    array_xyz: np.ndarray,
    positions: Sequence[Sequence[float]],
    direction: np.ndarray,
    spacing_xy: Sequence[float],
    series_uid: str,
    slopes: Sequence[tuple[float, float]] | None = None,
    modality: str = "MR",
) -> Path:
    """Write a 3D int16 array (X, Y, Z) as one enhanced (multi-frame) DICOM file, one frame per z, with per-frame
    ImagePositionPatient (``positions``, LPS) and optional per-frame (RescaleSlope, RescaleIntercept)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DSeq
    from pydicom.uid import ExplicitVRLittleEndian

    nx, ny, nz = array_xyz.shape
    direction = np.asarray(direction, dtype=float)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
    meta.MediaStorageSOPInstanceUID = series_uid + ".1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.1"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.SeriesDescription = "enhanced test"
    ds.Rows, ds.Columns, ds.NumberOfFrames = ny, nx, nz
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    meas = Dataset()
    meas.PixelSpacing = [f"{spacing_xy[1]:.6f}", f"{spacing_xy[0]:.6f}"]  # (between rows, between columns)
    meas.SliceThickness = "1.0"
    shared.PixelMeasuresSequence = DSeq([meas])
    orient = Dataset()
    orient.ImageOrientationPatient = [f"{v:.10f}" for v in (*direction[:, 0], *direction[:, 1])]
    shared.PlaneOrientationSequence = DSeq([orient])
    ds.SharedFunctionalGroupsSequence = DSeq([shared])
    frames = []
    for k in range(nz):
        fg = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [f"{v:.10f}" for v in positions[k]]
        fg.PlanePositionSequence = DSeq([plane])
        if slopes is not None:
            pvt = Dataset()
            pvt.RescaleSlope, pvt.RescaleIntercept = f"{slopes[k][0]:.8g}", f"{slopes[k][1]:.8g}"
            fg.PixelValueTransformationSequence = DSeq([pvt])
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = DSeq(frames)
    ds.PixelData = np.ascontiguousarray(array_xyz.transpose(2, 1, 0)).astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path


def write_pydicom_series(
    folder: Path,
    array_xyz: np.ndarray,
    positions: Sequence[Sequence[float]],
    direction: np.ndarray,
    spacing_xy: Sequence[float],
    series_uid: str,
    *,
    modality: str = "CT",
    sop_class: str = "1.2.840.10008.5.1.4.1.1.2",
    slopes: Sequence[float] | None = None,
    header: dict | None = None,
    edit=None,
) -> list[Path]:
    """Write a 3D int16 array (X, Y, Z) as a single-frame DICOM series with pydicom (one file per slice).

    ``slopes``: per-slice RescaleSlope (intercept 0); ``header``: extra top-level attributes (keyword -> value);
    ``edit(ds, k)``: a last change to slice ``k``'s dataset (e.g. to add sequences).
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    direction = np.asarray(direction, dtype=float)
    nx, ny, nz = array_xyz.shape
    files = []
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = f"{series_uid}.{k + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.1", series_uid
        ds.Modality, ds.Manufacturer, ds.ImageType = modality, "GE MEDICAL SYSTEMS", ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.SeriesDate = "Test^Patient", "p01", "20250101", "20250101"
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = "120000"
        ds.SeriesNumber, ds.AcquisitionNumber, ds.InstanceNumber = 3, 1, k + 1
        ds.SeriesDescription = f"{modality} test"
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing_xy[1]:.6f}", f"{spacing_xy[0]:.6f}"]
        ds.SliceThickness = "1.25"
        ds.RescaleSlope = f"{slopes[k]:.10g}" if slopes is not None else "1"
        ds.RescaleIntercept = "0"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        for key, value in (header or {}).items():
            setattr(ds, key, value)
        if edit is not None:
            edit(ds, k)
        ds.PixelData = np.ascontiguousarray(array_xyz[:, :, k].T).astype("<i2").tobytes()
        f = folder / f"im{k:03d}.dcm"
        pydicom.dcmwrite(str(f), ds, enforce_file_format=True)
        files.append(f)
    return files


def write_ct_series(
    folder: Path,
    array_xyz: np.ndarray,
    positions: Sequence[Sequence[float]],
    direction: np.ndarray,
    spacing_xy: Sequence[float],
    series_uid: str,
    gantry_tilt: float = 0.0,
) -> list[Path]:
    """A CT series (pydicom) with the fields converters such as dcm2niix use to group slices and to correct a
    gantry tilt (GantryDetectorTilt, in degrees)."""
    return write_pydicom_series(folder, array_xyz, positions, direction, spacing_xy, series_uid,
                                header={"GantryDetectorTilt": f"{gantry_tilt:.4f}", "KVP": "120"})


def write_dynamic_pet_series(
    folder: Path,
    frames_xyz: Sequence[np.ndarray],
    durations_ms: Sequence[int] | None,
    *,
    spacing: Sequence[float] = (2.0, 2.0, 3.0),
    origin: Sequence[float] = (-10.0, -8.0, -6.0),
    by: str = "reference_time",
    series_uid: str = "1.2.826.0.1.3680043.2.1125.77",
) -> list[Path]:
    """Write a dynamic PET as ONE single-frame DICOM series (every slice position once per frame), as scanners
    export it: per slice FrameReferenceTime (``by="reference_time"``) or ImageIndex and NumberOfSlices
    (``by="image_index"``), ActualFrameDuration when ``durations_ms`` is given; files named in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    nz = frames_xyz[0].shape[2]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    order = np.random.default_rng(3).permutation(len(frames_xyz) * nz)
    files = []
    start_ms = 0
    for t, arr in enumerate(frames_xyz):
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)).astype(np.int16))
        img.SetOrigin(tuple(origin))
        img.SetSpacing(tuple(spacing))
        for k in range(nz):
            sl = img[:, :, k]
            pos = img.TransformIndexToPhysicalPoint((0, 0, k))
            n = t * nz + k
            tags = {
                "0008|0060": "PT",
                "0008|0016": "1.2.840.10008.5.1.4.1.1.128",
                "0008|0018": f"{series_uid}.{n + 1}",
                "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
                "0020|000e": series_uid,
                "0008|103e": "dynamic FDG",
                "0020|0037": "1\\0\\0\\0\\1\\0",
                "0020|0032": "\\".join(f"{v:.6f}" for v in pos),
                "0020|0013": str(n + 1),
                "0054|0101": str(len(frames_xyz)),
                "0054|0081": str(nz),
            }
            if by == "reference_time":
                tags["0054|1300"] = str(start_ms + (durations_ms[t] / 2 if durations_ms else t * 1000))
            elif by == "image_index":
                tags["0054|1330"] = str(n + 1)
            if durations_ms is not None:
                tags["0018|1242"] = str(int(durations_ms[t]))
            files.append(_write_slice(writer, sl, tags, folder / f"im{order[n]:04d}.dcm"))
        start_ms += durations_ms[t] if durations_ms else 1000
    return files
