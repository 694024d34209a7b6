"""A small synthetic PET/CT study as two DICOM series (CT and PT) sharing one FrameOfReferenceUID, with the SUV facts.

The head phantom: an ellipsoid of soft tissue (40 HU) in air (-1000 HU) with a 6 mm skull (1200 HU), a brain
(35 HU) with two ventricles (5 HU). The PET (F-18, 370 MBq injected at 10:00:00, scan at 11:00:00, 75 kg, decay
corrected to the scan start, stored in Bq/mL) has a cortical ribbon at SUV 9, white matter at SUV 3, ventricles at
SUV 0.5 and scalp at SUV 1, blurred to 6 mm FWHM. The SUV factor of these facts is 2.960750e-4 (see
``tests/io/test_pet.py``), so SUV = stored Bq/mL * 2.960750e-4.

Run as a script to write the study for a manual look: ``python -m tests.reports.petct OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tests.io.helpers import write_pydicom_series

FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.2.1125.77.1"
SUV_FACTOR = 0.0002960750161260463


def _phantom(shape: tuple[int, int, int], spacing: tuple[float, float, float], origin: np.ndarray):
    """Labels on a grid given in LPS (DICOM) millimetres: 0 air, 1 scalp, 2 skull, 3 grey, 4 white, 5 ventricle."""
    axes = [origin[i] + np.arange(n) * s for i, (n, s) in enumerate(zip(shape, spacing))]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = np.sqrt((x / 72) ** 2 + (y / 90) ** 2 + (z / 80) ** 2)
    lab = np.zeros(shape, np.uint8)
    lab[r < 1.0] = 1
    lab[r < 0.93] = 2
    lab[r < 0.86] = 3
    lab[r < 0.74 + 0.03 * np.sin(6 * np.arctan2(y, x)) * np.cos(3 * z / 80)] = 4  # a wavy grey/white boundary
    vent = (((x - 12) / 8) ** 2 + (y / 30) ** 2 + ((z - 8) / 14) ** 2 < 1) | (((x + 12) / 8) ** 2 + (y / 30) ** 2
                                                                              + ((z - 8) / 14) ** 2 < 1)
    lab[vent & (lab == 4)] = 5
    return lab


def write_petct(folder: Path, *, ct_shape=(72, 88, 34), ct_spacing=(2.2, 2.2, 5.0), pet_shape=(44, 52, 42),
                pet_spacing=(4.0, 4.0, 4.0)) -> tuple[Path, Path]:
    """Write ``folder/ct`` (Modality CT) and ``folder/pet`` (Modality PT, Units BQML, SUV facts).

    Returns:
        ``(ct_dir, pet_dir)``.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(7)
    ct_origin = -(np.array(ct_shape) - 1) / 2 * np.array(ct_spacing)
    lab = _phantom(ct_shape, ct_spacing, ct_origin)
    hu = np.array([-1000, 40, 1200, 38, 30, 5], np.float32)[lab] + rng.normal(0, 8, ct_shape).astype(np.float32)
    ct = np.clip(np.round(hu + 1024), 0, 4000).astype(np.int16)  # stored with RescaleIntercept -1024
    positions = [tuple(ct_origin[:2]) + (float(ct_origin[2] + k * ct_spacing[2]),) for k in range(ct_shape[2])]

    def ct_edit(ds, k):
        ds.RescaleIntercept = "-1024"
        ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
        ds.SliceThickness = f"{ct_spacing[2]:g}"

    write_pydicom_series(folder / "ct", ct, positions, np.eye(3), ct_spacing[:2], "1.2.826.0.1.3680043.2.1125.77.2",
                         modality="CT", edit=ct_edit)

    pet_origin = -(np.array(pet_shape) - 1) / 2 * np.array(pet_spacing)
    plab = _phantom(pet_shape, pet_spacing, pet_origin)
    suv = np.array([0.0, 1.0, 0.5, 9.0, 3.0, 0.5], np.float32)[plab]
    sigma = 6.0 / 2.3548 / np.array(pet_spacing)
    suv = gaussian_filter(suv, sigma) * (1 + rng.normal(0, 0.03, pet_shape)).astype(np.float32)
    bqml = np.clip(np.round(suv / SUV_FACTOR), 0, 32000).astype(np.int16)
    ppos = [tuple(pet_origin[:2]) + (float(pet_origin[2] + k * pet_spacing[2]),) for k in range(pet_shape[2])]

    def pet_edit(ds, k):
        ds.Units, ds.DecayCorrection, ds.PatientWeight = "BQML", "START", "75"
        ds.SeriesTime = ds.AcquisitionTime = "110000"
        ds.SeriesDate = ds.AcquisitionDate = "20250101"
        ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
        item = Dataset()
        item.RadionuclideTotalDose, item.RadionuclideHalfLife, item.RadiopharmaceuticalStartTime = (
            "370000000", "6586.2", "100000")
        ds.RadiopharmaceuticalInformationSequence = Sequence([item])

    write_pydicom_series(folder / "pet", bqml, ppos, np.eye(3), pet_spacing[:2], "1.2.826.0.1.3680043.2.1125.77.3",
                         modality="PT", sop_class="1.2.840.10008.5.1.4.1.1.128", edit=pet_edit)
    return folder / "ct", folder / "pet"


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "petct")
    print(*write_petct(out))
