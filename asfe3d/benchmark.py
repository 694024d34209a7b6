"""Speed, size and memory benchmark of :class:`~asfe3d.networks.nets.ASFEFusion` presets.

For every preset x spatial dims x case x device: the parameter count, the median inference time of a few
``torch.no_grad()`` forward passes after a warm-up, and the peak memory. On the CPU every case runs in a fresh
subprocess and the peak is that process's ``VmHWM`` (peak resident set, so it includes the Python/torch/MONAI
baseline, which is reported separately as ``VmRSS`` just before the first forward); on CUDA it is
``torch.cuda.max_memory_allocated``. Results are printed as a markdown table and written to
``docs/benchmarks.md``. Run it through ``scripts/benchmark.py`` (``python scripts/benchmark.py --help``).

End to end (``--pipeline-only``): the whole ``asfe3d fuse`` command on a brain pair, a PET/CT DICOM study and a
cohort of brain subjects, given as arguments (``--make-brain-pair`` and ``--make-petct`` write them), in **units**
of the shared yardstick (:func:`unit_seconds`: the fixed workload of the project's ``refunit.py``, 8 conv3d
16->16 3^3 on a 96^3 volume on 2 threads, timed in the same run), with each command's own peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asfe3d.utils import is_int

__all__ = ["CASES", "Case", "run_case", "run_all", "format_table", "PIPELINE_CASES", "PIPELINE_BARS", "UNIT_SHAPE",
           "unit_seconds", "run_command", "make_brain_pair", "make_petct_study", "run_pipeline_case",
           "format_pipeline_table", "pipeline_bars", "main"]

BRAIN_1MM = (197, 233, 189)
#: the repository's benchmark table (relative to the repository root, where the benchmark is run from)
DEFAULT_OUTPUT = "docs/benchmarks.md"
HEADER = (
    "| preset | dims | input | how | device | threads | parameters | median wall time (runs) | CPU time "
    "| peak memory MiB |"
)


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    Attributes:
        preset: ``ASFEFusion`` preset.
        spatial_dims: 2 or 3.
        name: label of the input.
        shape: spatial shape of the input (2D nets on 3D shapes run slice-wise through ``SliceInferer``).
        mode: ``"whole"`` (one forward), ``"sliding"`` (3D ``SlidingWindowInferer``, 128^3 ROI, gaussian) or
            ``"slices"`` (2D net over the last axis with ``SliceInferer``).
        skip: reason the case is not run (``""`` to run it).
    """

    preset: str
    spatial_dims: int
    name: str
    shape: tuple[int, ...]
    mode: str = "whole"
    skip: str = ""


CASES: tuple[Case, ...] = (
    Case("efficient", 2, "slice 256^2", (256, 256)),
    Case("efficient", 2, "brain 1 mm, 189 slices", BRAIN_1MM, "slices"),
    Case("efficient", 3, "volume 128^3", (128, 128, 128)),
    Case("efficient", 3, "brain 1 mm 197x233x189", BRAIN_1MM),
    Case("efficient", 3, "brain 1 mm 197x233x189", BRAIN_1MM, "sliding"),
    Case("paper", 2, "slice 256^2", (256, 256)),
    Case("paper", 2, "brain 1 mm, 189 slices", BRAIN_1MM, "slices", skip="189 x the slice time (minutes on CPU)"),
    Case("paper", 3, "volume 128^3", (128, 128, 128), skip="3D lift of the paper widths has ~2.35 G parameters"),
    Case("paper", 3, "brain 1 mm 197x233x189", BRAIN_1MM, skip="3D lift of the paper widths has ~2.35 G parameters"),
)


def _rss_kib(field: str) -> int:
    """Read ``field`` (``VmHWM`` / ``VmRSS``) of this process from ``/proc/self/status`` in KiB (-1 if absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def run_case(case: Case, device: str = "cpu", repeats: int = 3, threads: int = 2) -> dict[str, Any]:
    """Run one case in this process.

    Args:
        case: the case.
        device: ``"cpu"`` or ``"cuda"``.
        repeats: timed runs after one warm-up (the median is reported).
        threads: ``torch.set_num_threads`` on the CPU.

    Returns:
        ``params``, ``median_s``, ``times_s``, ``cpu_s`` (median process CPU seconds, all threads),
        ``peak_mib`` (process VmHWM on CPU, max allocated on CUDA) and ``baseline_mib`` (CPU: VmRSS after
        building the net, before the first forward).
    """
    import torch
    from monai.inferers import SliceInferer, SlidingWindowInferer

    from asfe3d.networks.nets import ASFEFusion

    torch.set_num_threads(threads)
    dev = torch.device(device)
    net = ASFEFusion(case.spatial_dims, case.preset).to(dev).eval()
    params = sum(p.numel() for p in net.parameters())
    x = torch.rand(1, 2, *case.shape, device=dev)
    # the warm-up is one forward of the piece the inferer feeds the net (a whole pass for mode "whole")
    if case.mode == "sliding":
        inferer = SlidingWindowInferer(roi_size=(128, 128, 128), sw_batch_size=1, overlap=0.25, mode="gaussian")
        fn = lambda: inferer(x, net)  # noqa: E731
        warm = lambda: net(x[..., :128, :128, :128])  # noqa: E731
    elif case.mode == "slices":
        inferer = SliceInferer(roi_size=case.shape[:2], sw_batch_size=8, spatial_dim=2, progress=False)
        fn = lambda: inferer(x, net)  # noqa: E731
        warm = lambda: net(x[..., 0].expand(8, -1, -1, -1))  # noqa: E731
    else:
        fn = warm = lambda: net(x)  # noqa: E731
    baseline = _rss_kib("VmRSS") / 1024
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, cpu_times = [], []
    with torch.no_grad():
        warm()
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else _rss_kib("VmHWM") / 1024
    return {
        "params": params,
        "median_s": statistics.median(times),
        "times_s": times,
        "cpu_s": statistics.median(cpu_times),
        "peak_mib": peak,
        "baseline_mib": baseline if dev.type == "cpu" else None,
    }


def _run_in_subprocess(index: int, device: str, repeats: int, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "asfe3d.benchmark", "--_case", str(index), "--device", device,
           "--repeats", str(repeats), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_all(
    devices: Sequence[str], repeats: int = 3, threads: int | Sequence[int] = 2, only: str | None = None,
    repeats_large: int = 1,
) -> list[dict[str, Any]]:
    """Run every case on every device (each CPU case in a fresh subprocess).

    Args:
        devices: e.g. ``["cpu"]`` or ``["cpu", "cuda"]``.
        repeats: timed runs per case.
        repeats_large: timed runs for the whole-brain cases (a pass takes seconds).
        threads: CPU threads, or several thread counts (each CPU case runs once per count).
        only: run only cases whose preset equals this (``None`` for all).

    Returns:
        One row dict per case and device.
    """
    counts = [threads] if isinstance(threads, int) else list(threads)
    rows = []
    for device in devices:
        for n_threads in counts if device == "cpu" else counts[:1]:
            for i, case in enumerate(CASES):
                if only is not None and case.preset != only:
                    continue
                row: dict[str, Any] = {"case": case, "device": device, "threads": n_threads}
                if case.skip and device == "cpu":
                    row["skip"] = case.skip
                else:
                    n = repeats_large if case.shape == BRAIN_1MM else repeats
                    row.update(_run_in_subprocess(i, device, n, n_threads))
                rows.append(row)
                print(_row_md(row), flush=True)
    return rows


def _row_md(row: dict[str, Any]) -> str:
    c: Case = row["case"]
    how = {"whole": "whole input", "sliding": "SlidingWindowInferer 128^3, overlap 0.25, gaussian", "slices": "SliceInferer, batch 8"}[c.mode]
    lead = f"| {c.preset} | {c.spatial_dims}D | {c.name} | {how} | {row['device']} | {row.get('threads', '-')} |"
    if "skip" in row:
        return f"{lead} - | skipped: {row['skip']} | - | - |"
    if "error" in row:
        return f"{lead} - | error: {row['error']} | - | - |"
    base = f" (baseline {row['baseline_mib']:.0f})" if row.get("baseline_mib") else ""
    times = ", ".join(f"{t:.3f}" for t in row["times_s"])
    return f"{lead} {row['params'] / 1e6:.3f} M | {row['median_s']:.3f} s ({times}) | {row['cpu_s']:.3f} s | {row['peak_mib']:.0f}{base} |"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`run_all` rows."""
    head = (
        f"{HEADER}\n|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head] + [_row_md(r) for r in rows])


def acceptance(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table checking the rows against the efficient preset's targets (issue: ASFE fusion networks).

    Each target takes the best (lowest) measured value over the thread counts and devices run for CPU, i.e. what a
    user gets with the better ``--threads`` setting on this machine.
    """
    def pick(preset: str, dims: int, name: str, mode: str = "whole") -> list[dict[str, Any]]:
        return [r for r in rows if r["case"].preset == preset and r["case"].spatial_dims == dims
                and r["case"].name == name and r["case"].mode == mode and r["device"] == "cpu" and "median_s" in r]

    lines = ["| target | measured | met |", "|---|---|---|"]

    def add(target: str, found: list[dict[str, Any]], key: str, limit: float, fmt: str) -> None:
        if not found:
            lines.append(f"| {target} | not run | - |")
            return
        best = min(found, key=lambda r: r[key])
        value = best[key] / (1e6 if key == "params" else 1.0)
        where = "" if key == "params" else f" ({best['threads']} threads)"
        lines.append(f"| {target} | {fmt.format(value)}{where} | {'yes' if value <= limit else 'NO'} |")

    add("efficient 3D parameters <= 2 M", pick("efficient", 3, "volume 128^3"), "params", 2.0, "{:.3f} M")
    add("efficient 3D, one 128^3 volume <= 1.8 s", pick("efficient", 3, "volume 128^3"), "median_s", 1.8, "{:.2f} s")
    # the brain as the shipped inference runs it: 128^3 windows (a whole-volume pass is faster but not what ships)
    shipped = pick("efficient", 3, "brain 1 mm 197x233x189", "sliding")
    add("efficient 3D, 197x233x189 brain in 128^3 windows (as shipped) <= 10 s", shipped, "median_s", 10.0, "{:.2f} s")
    add("efficient 3D brain in 128^3 windows, peak memory <= 4096 MiB", shipped, "peak_mib", 4096.0, "{:.0f} MiB")
    add("efficient 2D, one 256^2 slice <= 0.030 s", pick("efficient", 2, "slice 256^2"), "median_s", 0.030,
        "{:.3f} s")
    paper = pick("paper", 2, "slice 256^2")
    if paper:
        ratio = abs(paper[0]["params"] / 175.7e6 - 1.0)
        lines.append(f"| paper 2D parameters within 2 % of 175.7 M | {paper[0]['params'] / 1e6:.2f} M "
                     f"({100 * ratio:.2f} %) | {'yes' if ratio <= 0.02 else 'NO'} |")
    return "\n".join(lines)


#: the yardstick: the shared fixed CPU workload (8 conv3d 16->16 3^3 on a 96^3 volume, 2 threads, median of 3 runs
#: after a warm-up); every end-to-end time is reported in these units, taken in the same run
UNIT_SHAPE = {"size": 96, "channels": 16, "layers": 8, "threads": 2, "repeats": 3}
#: end-to-end cases: kind -> (label, extra ``asfe3d fuse`` arguments)
PIPELINE_CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "brain": ("brain subject (whole-head T1 + FDG PET), default, --rgb --preview --save-registered-pet",
              ("--rgb", "--preview", "--save-registered-pet")),
    "petct": ("PET/CT DICOM study (CT 512x512x135, PET 128x128x135, one frame of reference), default, "
              "--rgb --preview --save-registered-pet", ("--rgb", "--preview", "--save-registered-pet")),
    "cohort": ("cohort of {n} brain subjects (--datalist), default, --rgb --preview --save-registered-pet; "
               "per subject", ("--rgb", "--preview", "--save-registered-pet")),
}
#: the bars in units (the command's wall seconds / the unit's seconds; the cohort per subject)
PIPELINE_BARS: dict[str, float] = {"brain": 9.0, "petct": 30.0, "cohort": 5.0}
_STEPS = ("load", "register", "resample", "normalise", "fuse", "save")


def unit_seconds(threads: int = 2, size: int = 96, channels: int = 16, layers: int = 8, repeats: int = 3) -> float:
    """Seconds of the shared yardstick workload, exactly as ``refunit.py`` runs it (with its defaults).

    ``torch.set_num_threads(threads)``, seed 0, ``x = randn(1, channels, size, size, size)``,
    ``w = randn(channels, channels, 3, 3, 3) * 0.05``, ``layers`` plain ``conv3d(y, w, padding=1)`` in a row under
    ``torch.no_grad()``; one warm-up, then the median of ``repeats`` timed runs. The thread count is restored
    afterwards.

    Args:
        threads: torch CPU threads (the unit: 2).
        size: edge of the cubic volume (the unit: 96).
        channels: input and output channels (the unit: 16).
        layers: convolutions in a row (the unit: 8).
        repeats: timed runs (the unit: 3; the median is returned).

    Returns:
        Seconds of one run (median).

    Raises:
        ValueError: a value out of range (quoted).
    """
    import torch

    for name, value, low in (("threads", threads, 1), ("size", size, 3), ("channels", channels, 1),
                             ("layers", layers, 1), ("repeats", repeats, 1)):
        if not is_int(value) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        x = torch.randn(1, channels, size, size, size)
        w = torch.randn(channels, channels, 3, 3, 3) * 0.05

        def run() -> torch.Tensor:
            y = x
            for _ in range(layers):
                y = torch.nn.functional.conv3d(y, w, padding=1)
            return y

        times = []
        with torch.no_grad():
            run()
            for _ in range(repeats):
                t = time.perf_counter()
                run()
                times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(before)
    return statistics.median(times)


#: runs a command from a fresh, small process and reports the command's own wall time and peak resident set: a
#: process forked from this one (torch loaded) would count this process's resident set in its ``ru_maxrss``
_LAUNCHER = (
    "import json, os, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "wall = time.perf_counter() - t\n"
    "with open(sys.argv[1], 'w') as fh:\n"
    "    json.dump({'wall_s': wall, 'peak_mib': usage.ru_maxrss / 1024.0,\n"
    "               'returncode': os.waitstatus_to_exitcode(status)}, fh)\n"
)


def run_command(cmd: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one command in a child process and measure it.

    The command is started by a small launcher process (a fresh Python without torch), which times it and reads
    its peak resident set from ``wait4``: the figures are the command's alone.

    Returns:
        ``{"wall_s", "peak_mib" (the command's own peak resident set), "returncode", "stderr" (its last 4000
        characters)}``.

    Raises:
        RuntimeError: the launcher itself failed (its error).
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="asfe3d-run-") as tmp:
        report = Path(tmp) / "run.json"
        err_path = Path(tmp) / "stderr.txt"
        with open(err_path, "wb") as err:
            launcher = subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), *cmd], stdout=subprocess.DEVNULL,
                                      stderr=err, env=env, check=False)
        text = err_path.read_bytes().decode(errors="replace")[-4000:]
        if not report.is_file():
            raise RuntimeError(f"the launcher failed ({launcher.returncode}): {text.strip()}")
        res = json.loads(report.read_text())
    return {**res, "stderr": text}


def _move_affine(affine: np.ndarray, rotation_deg: Sequence[float], shift_mm: Sequence[float],
                 centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A rigid world motion ``M`` (RAS, about ``centre``) and ``M @ affine``: the image's content moved by ``M``."""
    ax, ay, az = np.deg2rad(np.asarray(rotation_deg, float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rot = rz @ ry @ rx
    motion = np.eye(4)
    motion[:3, :3] = rot
    motion[:3, 3] = centre - rot @ centre + np.asarray(shift_mm, float)
    return motion, motion @ affine


def _motion_tfm(motion_ras: np.ndarray) -> Any:
    """The SimpleITK transform (LPS) of a RAS world motion: it maps MRI points to PET points."""
    from asfe3d.registration.register import transform_from_ras

    return transform_from_ras(motion_ras)


def make_brain_pair(individual_dir: str | Path, spm_dir: str | Path, out_dir: str | Path, *, spacing: float = 0.88,
                    rotation_deg: Sequence[float] = (2.0, -1.5, 3.0), shift_mm: Sequence[float] = (2.0, -3.0, 1.5),
                    seed: int = 0) -> dict[str, Path]:
    """Write a brain test pair: one real whole-head T1 (``otsu`` of :mod:`asfe3d.data.individual`, resampled to
    ``spacing`` mm, nothing else changed) and an FDG PET simulated from the same person's tissues at 2 mm
    (:func:`asfe3d.data.wholehead.simulate_subject`: 6 mm PSF, 5 % noise), moved by a known rigid motion (written
    into the PET's affine, so the motion adds no interpolation).

    Args:
        individual_dir: the folder of the individual anatomies (``otsu_t1w.nii.gz``).
        spm_dir: the SPM12 folder (the whole head's brain is found with SPM's average).
        out_dir: written: ``t1.nii.gz``, ``pet.nii.gz``, ``true_transform.tfm`` (MRI points -> PET points).
        spacing: the T1's voxel size, mm (0.5-1.5).
        rotation_deg: the motion's rotation about x, y, z (degrees, about the head's centre).
        shift_mm: the motion's translation (RAS mm).
        seed: the PET simulation's seed.

    Returns:
        ``{"mri", "pet", "transform"}`` paths.

    Raises:
        ValueError: a spacing out of range (quoted).
    """
    import nibabel as nib

    from asfe3d.data.individual import load_individual
    from asfe3d.data.wholehead import SubjectParams, simulate_subject
    from asfe3d.io.transform import write_transform

    if not 0.5 <= float(spacing) <= 1.5:
        raise ValueError(f"spacing must be in [0.5, 1.5] mm, got {spacing!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    anatomy = load_individual("otsu", individual_dir, spm_dir)
    params = SubjectParams(anatomy="otsu", pattern="fdg", mri_spacing=(float(spacing),) * 3, rotation_deg=(0.0,) * 3,
                           scale=(1.0,) * 3, translation_mm=(0.0,) * 3, deform_mm=0.0, bias=0.0, mri_gamma=1.0,
                           mri_noise=0.0, pet_fwhm_mm=6.0, pet_spacing=(2.0,) * 3, pet_axial_fov_mm=260.0,
                           pet_fov_shift_mm=0.0, pet_noise=0.05, misreg_mm=0.0)
    sim = simulate_subject(anatomy, params, np.random.default_rng(seed), normalise=False)
    pet_aff = np.asarray(sim["pet_affine"], float)
    centre = pet_aff[:3, :3] @ ((np.asarray(sim["pet_native"].shape) - 1) / 2.0) + pet_aff[:3, 3]
    motion, moved = _move_affine(pet_aff, rotation_deg, shift_mm, centre)
    paths = {"mri": out / "t1.nii.gz", "pet": out / "pet.nii.gz", "transform": out / "true_transform.tfm"}
    nib.save(nib.Nifti1Image(np.asarray(sim["mri"], np.float32), sim["affine"]), str(paths["mri"]))
    nib.save(nib.Nifti1Image(np.asarray(sim["pet_native"], np.float32), moved), str(paths["pet"]))
    write_transform(_motion_tfm(motion), paths["transform"])
    return paths


def _write_dicom_series(folder: Path, volume: np.ndarray, spacing: Sequence[float], origin: Sequence[float],
                        modality: str, series_uid: str, frame_uid: str, slope: float) -> None:
    """One single-frame DICOM file per axial slice (LPS identity orientation), int16 with a rescale slope."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    sop_class = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.128"
    stored = np.clip(np.rint(volume / slope), -32768, 32767).astype("<i2")
    nx, ny, nz = volume.shape
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, f"{series_uid}.{k + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.7", series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality, ds.PatientID, ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = modality, "bench", \
            "20250101", 1 if modality == "CT" else 2, k + 1
        ds.ImagePositionPatient = [f"{origin[0]:.4f}", f"{origin[1]:.4f}", f"{origin[2] + k * spacing[2]:.4f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.4f}"
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.8g}", "0"
        if modality == "PT":
            ds.Units = "BQML"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        pydicom.dcmwrite(str(folder / f"{modality.lower()}{k:03d}.dcm"), ds, enforce_file_format=True)


def make_petct_study(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write a synthetic PET/CT DICOM study: CT 512x512x135 (0.98 x 0.98 x 3.27 mm) and PET 128x128x135
    (3.92 x 3.92 x 3.27 mm) over the same field of view, one FrameOfReferenceUID (so the default registration
    ``auto`` trusts the scanner's alignment). A water body with a spine and organs; PET uptake in the organs.

    Args:
        out_dir: written: ``ct/`` and ``pet/`` (one file per slice).
        seed: noise seed.

    Returns:
        ``{"ct", "pet"}`` folders.
    """
    rng = np.random.default_rng(seed)
    shape = (512, 512, 135)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x / 0.8) ** 2 + (y / 0.6) ** 2 < 1
    bone = ((x / 0.12) ** 2 + ((y + 0.45) / 0.08) ** 2) < 1
    organ = ((x - 0.3) / 0.2) ** 2 + (y / 0.25) ** 2 < 1
    z = np.linspace(0, 1, shape[2])[None, None]
    ct = (np.where(body[..., None], 40.0, -1000.0) + np.where(bone[..., None], 900.0, 0.0)
          + np.where(organ[..., None], 20.0 * np.cos(6 * z), 0.0) + rng.normal(0, 10, shape)).astype(np.float32)
    pet = np.where(body, 1.0, 0.0)[..., None] + np.where(organ, 6.0, 0.0)[..., None] * (1 + 0.5 * z)
    pet = np.clip(pet[2::4, 2::4] + rng.normal(0, 0.05, (128, 128, 135)), 0, None) * 5000.0
    out = Path(out_dir)
    origin = (-250.0, -250.0, -220.0)
    frame = "1.2.826.0.1.3680043.2.1125.7.1"
    _write_dicom_series(out / "ct", ct, (0.98, 0.98, 3.27), origin, "CT", "1.2.826.0.1.3680043.2.1125.7.2", frame,
                        1.0)
    _write_dicom_series(out / "pet", pet, (3.92, 3.92, 3.27), (origin[0] + 1.47, origin[1] + 1.47, origin[2]), "PT",
                        "1.2.826.0.1.3680043.2.1125.7.3", frame, float(pet.max()) / 30000.0)
    return {"ct": out / "ct", "pet": out / "pet"}


def _cohort_datalist(mri: Path, pet: Path, folder: Path, n: int) -> Path:
    """``n`` brain subjects: the same T1, each PET moved by a different small rigid motion (in its header)."""
    import nibabel as nib

    img = nib.load(str(pet))
    data = np.asarray(img.dataobj, np.float32)
    aff = np.asarray(img.affine, float)
    centre = aff[:3, :3] @ ((np.asarray(data.shape) - 1) / 2.0) + aff[:3, 3]
    rng = np.random.default_rng(1)
    rows = ["subject,mri,pet"]
    for i in range(n):
        _, moved = _move_affine(aff, rng.uniform(-2, 2, 3), rng.uniform(-2, 2, 3), centre)
        path = folder / f"pet{i}.nii.gz"
        nib.save(nib.Nifti1Image(data, moved), str(path))
        rows.append(f"s{i},{mri},{path}")
    datalist = folder / "datalist.csv"
    datalist.write_text("\n".join(rows) + "\n")
    return datalist


def run_pipeline_case(kind: str, inputs: Sequence[str | Path], runs: int = 3, subjects: int = 4,
                      command: Sequence[str] = ("-m", "asfe3d.cli"), unit: dict[str, int] | None = None
                      ) -> dict[str, Any]:
    """Time the whole ``asfe3d fuse`` command on one case, ``runs`` times, each right after the unit.

    Each run: :func:`unit_seconds` in this process, the command in a fresh process (Python start-up and imports
    included; default settings plus the case's extras), the unit again; the run's unit is the smaller reading (a
    burst of another job's load inflates the short unit more than the long command: the smaller is the
    conservative choice). The row is the run with the median units.

    Args:
        kind: a key of :data:`PIPELINE_CASES`.
        inputs: ``(mri, pet)`` files or DICOM folders (for ``cohort``: the brain pair, moved per subject).
        runs: repetitions (the median is reported).
        subjects: for ``cohort``, how many subjects.
        command: how to start the command after the Python executable.
        unit: the unit's settings (:data:`UNIT_SHAPE`, the shared yardstick; smaller only in tests).

    Returns:
        ``{"kind", "case", "runs": [per-run dicts], "units", "wall_s", "per_subject_s", "unit_s", "peak_mib",
        "steps", "load_avg"}``.

    Raises:
        ValueError: an unknown kind, a wrong number of inputs or runs < 1 (quoted).
        FileNotFoundError: a missing input.
        RuntimeError: the command failed (its last lines).
    """
    import tempfile

    if kind not in PIPELINE_CASES:
        raise ValueError(f"kind must be one of {tuple(PIPELINE_CASES)}, got {kind!r}")
    if len(inputs) != 2:
        raise ValueError(f"{kind}: give two inputs (MRI and PET), got {list(map(str, inputs))!r}")
    if runs < 1 or subjects < 1:
        raise ValueError(f"runs and subjects must be >= 1, got runs={runs!r}, subjects={subjects!r}")
    mri, pet = (Path(p).resolve() for p in inputs)
    for p in (mri, pet):
        if not p.exists():
            raise FileNotFoundError(f"{kind}: input {str(p)!r} does not exist")
    label, extra = PIPELINE_CASES[kind]
    per = subjects if kind == "cohort" else 1
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="asfe3d-bench-") as tmp:
            folder = Path(tmp)
            if kind == "cohort":
                datalist = _cohort_datalist(mri, pet, folder, subjects)
                args = ["fuse", "--datalist", str(datalist), "--output-dir", str(folder / "out")]
            else:
                args = ["fuse", str(mri), str(pet), "-o", str(folder / "out" / "fused.nii.gz")]
            before = unit_seconds(**(UNIT_SHAPE if unit is None else unit))
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            res = run_command([sys.executable, *command, *args, "--no-progress", *extra])
            after = unit_seconds(**(UNIT_SHAPE if unit is None else unit))
            # the unit is short and another job's burst inflates it: the smaller of the two readings is the
            # conservative one (the command's units can only come out higher)
            unit_s = min(before, after)
            if res["returncode"] != 0:
                raise RuntimeError(f"{kind}: asfe3d fuse failed ({res['returncode']}): {res['stderr'].strip()}")
            steps: dict[str, float] = {}
            if kind != "cohort":
                record = json.loads((folder / "out" / "fused.json").read_text())
                steps = {k: float(v) for k, v in record.get("timings", {}).items() if k in _STEPS}
        results.append({**res, "unit_s": unit_s, "unit_before_s": before, "unit_after_s": after,
                        "units": res["wall_s"] / per / unit_s, "steps": steps, "load_avg": load})
    row = sorted(results, key=lambda r: r["units"])[len(results) // 2]
    return {"kind": kind, "case": label.format(n=subjects), "runs": results, "units": row["units"],
            "wall_s": row["wall_s"], "per_subject_s": row["wall_s"] / per, "unit_s": row["unit_s"],
            "peak_mib": row["peak_mib"], "steps": row["steps"], "load_avg": row["load_avg"], "subjects": per}


def pipeline_bars(rows: Sequence[dict[str, Any]]) -> str:
    """Each end-to-end row against :data:`PIPELINE_BARS` (units; ``yes`` / ``NO``)."""
    lines = ["| case | bar (units) | measured (units) | met |", "|---|---|---|---|"]
    for r in rows:
        bar = PIPELINE_BARS[r["kind"]]
        lines.append(f"| {r['kind']} | <= {bar:g} | {r['units']:.1f} | {'yes' if r['units'] <= bar else 'NO'} |")
    return "\n".join(lines)


def format_pipeline_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`run_pipeline_case` rows: units, seconds, the unit's seconds, peak memory, steps."""
    head = ("| case | units (median of runs) | seconds | unit seconds | peak MiB | all runs (units) | load average | "
            + " | ".join(f"{k} s" for k in _STEPS) + " |")
    lines = [head, "|" + "---|" * (len(_STEPS) + 7)]
    for r in rows:
        steps = " | ".join(f"{r['steps'][k]:.2f}" if k in r["steps"] else "-" for k in _STEPS)
        seconds = f"{r['per_subject_s']:.2f}" + (f" ({r['wall_s']:.1f} for {r['subjects']})" if r["subjects"] > 1 else "")
        every = ", ".join(f"{x['units']:.1f}" for x in r["runs"])
        lines.append(f"| {r['case']} | {r['units']:.1f} | {seconds} | {r['unit_s']:.3f} | {r['peak_mib']:.0f} | "
                     f"{every} | {r['load_avg']:.2f} | {steps} |")
    return "\n".join(lines)


def _machine(threads: int | Sequence[int]) -> str:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, torch {torch.__version__} "
        f"with {threads} thread(s), CUDA: {cuda}; load average when finished: "
        + ", ".join(f"{v:.2f}" if isinstance(v, float) else v for v in load)
    )


def _pipeline_section(rows: Sequence[dict[str, Any]], cmd: str) -> str:
    import torch

    loads = [r["load_avg"] for row in rows for r in row["runs"]]
    units = sorted(r["unit_s"] for row in rows for r in row["runs"])
    return (
        f"Regenerate with `{cmd}`. Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
        f"cores, torch {torch.__version__}, no GPU. Load average (1 min) at the start of each run: "
        f"{min(loads):.2f}-{max(loads):.2f}; the unit took {units[0]:.3f}-{units[-1]:.3f} s.\n\n"
        "**Units**: the command's wall seconds (Python start-up and imports included) divided by the seconds of the\n"
        "shared yardstick (`refunit.py`'s workload, re-implemented identically as `asfe3d.benchmark.unit_seconds`:\n"
        "8 conv3d 16->16 3^3 on a 96^3 volume, 2 threads, median of 3), timed in the benchmark process just before\n"
        "and just after each command, the smaller reading taken (conservative: a burst of another job's load\n"
        "inflates the short unit more than the long command); each case is run several times and the run with the\n"
        "median units is shown. Peak memory is the command's own peak resident set (`ru_maxrss` from `wait4` in a\n"
        "small launcher process). Step seconds come from the run's completion record (the cohort has none per\n"
        "run). The cohort row is per subject.\n\n"
        f"{format_pipeline_table(rows)}\n\n"
        "### Against the bars\n\n"
        f"{pipeline_bars(rows)}\n"
    )


def _unwritable(path: Path) -> str:
    """Why the markdown file ``path`` could not be written at the end of a run (empty when it can)."""
    if path.is_dir():
        return "is a folder, not a markdown file"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the first folder that exists: the rest are made
    if not folder.is_dir():
        return f"{folder} is a file where a folder is expected"
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"cannot write in {folder}"
    return ""


#: how a file this benchmark wrote starts (the whole table, or the end-to-end section alone): only such a file is
#: rewritten by --output
_TABLE_HEADINGS = ("# ASFEFusion benchmarks", "## End to end")


def _check_output(p: argparse.ArgumentParser, output: str) -> None:
    """Refuse an ``--output`` that cannot be written or is not a benchmark table, before the minutes of timing."""
    if output == DEFAULT_OUTPUT and not Path(DEFAULT_OUTPUT).parent.is_dir():
        p.error(f"--output: the default {DEFAULT_OUTPUT} is the repository's table, and {Path.cwd()} has no docs/ "
                "folder: run from the repository root, or give --output PATH (or --output '' to only print)")
    if not output:
        return
    problem = _unwritable(Path(output))
    if problem:
        p.error(f"--output: {output}: {problem}")
    out = Path(output)
    if out.is_file() and not out.read_text(encoding="utf-8", errors="replace").lstrip().startswith(_TABLE_HEADINGS):
        p.error(f"--output: {output}: exists and is not a benchmark table (it does not start with "
                f"{_TABLE_HEADINGS[0]!r}); its sections would be replaced: give another file")


def main(argv: Sequence[str] | None = None, prog: str = "asfe3d benchmark") -> int:
    """Command line entry (see ``--help``); returns the exit code. ``prog``: how the command was typed (named in
    its usage and in the tables' "Regenerate with" line). A usage mistake or bad value is one line
    ``asfe3d: error: <problem> (see <prog> --help)`` and exit code 2, before anything is timed or written."""
    from asfe3d.errors import Asfe3dInputError

    try:
        return _main(argv, prog)
    except Asfe3dInputError as exc:
        print(f"asfe3d: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None, prog: str) -> int:
    from asfe3d.errors import InputErrorParser

    p = InputErrorParser(prog=prog, description="Benchmark ASFEFusion presets (parameters, time, peak memory) and the "
                                                "whole 'asfe3d fuse' command in units of the shared yardstick.")
    p.add_argument("--device", action="append", choices=["cpu", "cuda"], help="default: cpu, plus cuda if available")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case after one warm-up (median reported)")
    p.add_argument("--repeats-large", type=int, default=1, help="timed runs for the whole-brain cases")
    p.add_argument("--threads", type=int, nargs="+", default=[2],
                   help="torch CPU threads; several counts run every CPU case once per count (default: 2)")
    p.add_argument("--preset", choices=["efficient", "paper"], help="run only this preset")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help=f"markdown file to write ('' to skip; default: "
                                                             f"{DEFAULT_OUTPUT}, from the repository root)")
    p.add_argument("--pipeline-only", action="store_true",
                   help="only the end-to-end cases (needs --brain and/or --petct); replaces the 'End to end' section "
                        "of --output")
    p.add_argument("--brain", nargs=2, metavar=("T1", "PET"), help="the brain pair (see --make-brain-pair)")
    p.add_argument("--petct", nargs=2, metavar=("CT", "PET"), help="the PET/CT study (see --make-petct)")
    p.add_argument("--cohort", type=int, default=4, metavar="N",
                   help="subjects of the cohort case, made from --brain (0: no cohort case; default 4)")
    p.add_argument("--runs", type=int, default=3, help="runs per end-to-end case (the median is reported)")
    p.add_argument("--unit", action="store_true", help="print the unit's seconds (the shared yardstick) and exit")
    p.add_argument("--make-brain-pair", metavar="DIR", help="write the brain pair into DIR and exit (needs "
                   "--individual-dir and --spm-dir)")
    p.add_argument("--individual-dir", help="folder of the individual anatomies (otsu_t1w.nii.gz)")
    p.add_argument("--spm-dir", help="SPM12 folder")
    p.add_argument("--make-petct", metavar="DIR", help="write the PET/CT DICOM study into DIR and exit")
    p.add_argument("--_case", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._case is not None:
        res = run_case(CASES[args._case], (args.device or ["cpu"])[0], args.repeats, args.threads[0])
        print(json.dumps(res))
        return 0
    if args.unit:
        print(f"{unit_seconds(**UNIT_SHAPE):.3f}")
        return 0
    if args.make_brain_pair:
        if not args.individual_dir or not args.spm_dir:
            p.error("--make-brain-pair needs --individual-dir and --spm-dir")
        taken = [n for n in ("t1.nii.gz", "pet.nii.gz", "true_transform.tfm") if (Path(args.make_brain_pair) / n).exists()]
        if taken:  # a pair (or a user's files) already there is never replaced
            p.error(f"--make-brain-pair: {args.make_brain_pair} already holds {', '.join(taken)}; choose an empty folder")
        print(json.dumps({k: str(v) for k, v in make_brain_pair(args.individual_dir, args.spm_dir,
                                                                  args.make_brain_pair).items()}))
        return 0
    if args.make_petct:
        taken = [str(Path(args.make_petct) / n) for n in ("ct", "pet") if (Path(args.make_petct) / n).exists()]
        if taken:  # files there (a study, a user's) are never replaced, nor mixed into the new series
            p.error(f"--make-petct: {taken[0]} already exists; choose an empty folder")
        print(json.dumps({k: str(v) for k, v in make_petct_study(args.make_petct).items()}))
        return 0
    if args.runs < 1 or args.cohort < 0:
        p.error(f"--runs must be >= 1 and --cohort >= 0, got {args.runs} and {args.cohort}")
    for flag, values in (("--repeats", [args.repeats]), ("--repeats-large", [args.repeats_large]),
                         ("--threads", args.threads)):
        bad = [v for v in values if not 1 <= v <= 1024]
        if bad:  # a run of error rows (no median of no runs) would overwrite the tables
            p.error(f"{flag}: must be an integer in [1, 1024], got {bad[0]}")
    _check_output(p, args.output)
    for name in ("brain", "petct"):
        for path in getattr(args, name) or ():
            if not Path(path).exists():
                p.error(f"--{name}: {path!r} does not exist")
    cmd = " ".join([prog, shlex.join(list(argv if argv is not None else sys.argv[1:]))])
    if args.pipeline_only:
        if not args.brain and not args.petct:
            p.error("--pipeline-only needs --brain and/or --petct")
        cases = [("brain", args.brain), ("petct", args.petct)] + ([("cohort", args.brain)] if args.cohort else [])
        rows = []
        for kind, inputs in cases:
            if inputs:
                rows.append(run_pipeline_case(kind, inputs, runs=args.runs, subjects=max(args.cohort, 1)))
                print(format_pipeline_table(rows[-1:]).splitlines()[-1], flush=True)
        section = _pipeline_section(rows, cmd.strip())
        print(section)
        if args.output:
            path = Path(args.output)
            old = path.read_text() if path.is_file() else ""
            marker = "## End to end"
            keep = old.split(marker)[0].rstrip() if marker in old else old.rstrip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{keep}\n\n{marker}\n\n{section}")
        return 0
    import torch

    if "cuda" in (args.device or []) and not torch.cuda.is_available():  # rows of errors would replace the table
        p.error("--device cuda: CUDA is not available on this machine")
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(HEADER)
    rows = run_all(devices, args.repeats, args.threads, args.preset, args.repeats_large)
    table = format_table(rows)
    if args.output:
        path = Path(args.output)
        old = path.read_text() if path.is_file() else ""
        marker = "## End to end"
        tail = f"\n\n{marker}{old.split(marker, 1)[1]}" if marker in old else "\n"
        text = (
            f"{_TABLE_HEADINGS[0]}\n\n"
            f"Regenerate with `{cmd.strip()}`.\n\n"
            f"Machine: {_machine(args.threads)}.\n\n"
            "Inference only (`torch.no_grad()`, batch 1), median of the timed runs after one warm-up. CPU peak memory\n"
            "is the benchmark process's peak resident set (`VmHWM`, each case in a fresh process), which includes the\n"
            "Python/torch/MONAI baseline shown in brackets (`VmRSS` after building the net); CUDA peak memory is\n"
            "`torch.cuda.max_memory_allocated`. Wall times on a shared machine grow with its load; the CPU time\n"
            "column (process CPU seconds of one run, all threads together) is less sensitive to it: on an idle\n"
            "machine with 2 threads the wall time is roughly CPU time / 2 to CPU time.\n\n"
            f"Load average (1 min) when the run started: {load_start:.2f}. Threads compete badly on a busy machine\n"
            "(OpenMP threads wait for each other), so compare runs taken at a similar load.\n\n"
            f"{table}\n\n"
            "## Against the targets\n\n"
            f"{acceptance(rows)}{tail}"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
