"""Speed, size and memory benchmark of :class:`~asfe3d.networks.nets.ASFEFusion` presets.

For every preset x spatial dims x case x device: the parameter count, the median inference time of a few
``torch.no_grad()`` forward passes after a warm-up, and the peak memory. On the CPU every case runs in a fresh
subprocess and the peak is that process's ``VmHWM`` (peak resident set, so it includes the Python/torch/MONAI
baseline, which is reported separately as ``VmRSS`` just before the first forward); on CUDA it is
``torch.cuda.max_memory_allocated``. Results are printed as a markdown table and written to
``docs/benchmarks.md``. Run it through ``scripts/benchmark.py`` (``python scripts/benchmark.py --help``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CASES", "Case", "run_case", "run_all", "format_table", "PIPELINE_CASES", "reference_workload",
           "run_pipeline_case", "format_pipeline_table", "pipeline_bars", "PIPELINE_BARS", "main"]

BRAIN_1MM = (197, 233, 189)
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
    add("efficient 3D, 197x233x189 brain <= 10 s", pick("efficient", 3, "brain 1 mm 197x233x189"), "median_s", 10.0,
        "{:.2f} s")
    add("efficient 3D brain, peak memory <= 4096 MiB", pick("efficient", 3, "brain 1 mm 197x233x189"), "peak_mib",
        4096.0, "{:.0f} MiB")
    add("efficient 2D, one 256^2 slice <= 0.030 s", pick("efficient", 2, "slice 256^2"), "median_s", 0.030,
        "{:.3f} s")
    paper = pick("paper", 2, "slice 256^2")
    if paper:
        ratio = abs(paper[0]["params"] / 175.7e6 - 1.0)
        lines.append(f"| paper 2D parameters within 2 % of 175.7 M | {paper[0]['params'] / 1e6:.2f} M "
                     f"({100 * ratio:.2f} %) | {'yes' if ratio <= 0.02 else 'NO'} |")
    return "\n".join(lines)


#: end-to-end cases: name -> (how the inputs are made, extra ``asfe3d fuse`` arguments)
PIPELINE_CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "brain 1 mm (MNI 197x233x189 T1 + 2 mm FDG PET), --rgb --preview --save-registered-pet": (
        "brain", ("--rgb", "--preview", "--save-registered-pet")),
    "PET/CT study (CT 512x512x135, PET 128x128x135), --registration none": (
        "petct", ("--registration", "none")),
}
#: the wall-time and memory bars of the end-to-end cases (issue 12): seconds on an idle 2-core machine where the
#: reference workload takes about 6 / 9 s, hence the bar as a multiple of the reference workload, and peak MiB
PIPELINE_BARS: dict[str, tuple[float, float, float]] = {
    "brain": (6.0, 9.0, 2048.0),
    "petct": (30.0, 30.0 * 9.0 / 6.0, 3072.0),
}
_STEPS = ("load", "register", "resample", "normalise", "fuse", "save")


def reference_workload(threads: int = 2, repeats: int = 3) -> float:
    """Seconds of a fixed workload that ties pipeline times to the machine: 8 layers of 3x3x3 convolutions with 16
    channels (ReLU between) on a ``(1, 16, 96, 96, 96)`` tensor, median of ``repeats`` runs after a warm-up."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = []
    for _ in range(8):
        layers += [torch.nn.Conv3d(16, 16, 3, padding=1), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers).eval()
    x = torch.rand(1, 16, 96, 96, 96)
    times = []
    with torch.no_grad():
        net(x)
        for _ in range(repeats):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _make_petct(folder: Path) -> tuple[Path, Path]:
    """A CT-like 512x512x135 volume (0.98 x 0.98 x 3.27 mm) and a PET 128x128x135 (3.9 x 3.9 x 3.27 mm) over the
    same field of view, synthetic (a water cylinder with bone and organs; PET uptake in the organs)."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (512, 512, 135)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x / 0.8) ** 2 + (y / 0.6) ** 2 < 1
    bone = ((x / 0.12) ** 2 + ((y + 0.45) / 0.08) ** 2) < 1
    organ = ((x - 0.3) / 0.2) ** 2 + (y / 0.25) ** 2 < 1
    z = np.linspace(0, 1, shape[2])[None, None]
    ct = np.where(body[..., None], 40.0, -1000.0) + np.where(bone[..., None], 900.0, 0.0) \
        + np.where(organ[..., None], 20.0 * np.cos(6 * z), 0.0) + rng.normal(0, 10, shape)
    affine_ct = np.diag([0.98, 0.98, 3.27, 1.0])
    affine_ct[:3, 3] = [-250.0, -250.0, -220.0]
    pet = np.where(body, 1.0, 0.0)[..., None] + np.where(organ, 6.0, 0.0)[..., None] * (1 + 0.5 * z)
    pet = pet[::4, ::4] + rng.normal(0, 0.05, (128, 128, 135))
    affine_pet = np.diag([3.92, 3.92, 3.27, 1.0])
    affine_pet[:3, 3] = affine_ct[:3, 3] + np.array([1.47, 1.47, 0.0])  # centres of the 4x4 blocks
    mri, pet_path = folder / "ct.nii.gz", folder / "pet.nii.gz"
    nib.save(nib.Nifti1Image(ct.astype(np.float32), affine_ct), str(mri))
    nib.save(nib.Nifti1Image(np.clip(pet, 0, None).astype(np.float32), affine_pet), str(pet_path))
    return mri, pet_path


def run_pipeline_case(name: str, threads: int = 2, method: str = "asfe", mode: str | None = None) -> dict[str, Any]:
    """Time the whole ``asfe3d fuse`` command on one :data:`PIPELINE_CASES` case, in a fresh process.

    Returns:
        ``{"case", "wall_s" (the whole command, imports included), "steps" (from the run's record), "peak_mib"
        (the command's peak resident set), "reference_s" (:func:`reference_workload` in this process),
        "ratio"}``.
    """
    import resource
    import tempfile

    kind, extra = PIPELINE_CASES[name]
    with tempfile.TemporaryDirectory(prefix="asfe3d-bench-") as tmp:
        folder = Path(tmp)
        if kind == "brain":
            from asfe3d.data import make_demo_pair

            pair = make_demo_pair(folder / "in")
            mri, pet = pair.mri_path, pair.pet_path
        else:
            mri, pet = _make_petct(folder)
        reference = reference_workload(threads)
        out = folder / "out" / "fused.nii.gz"
        cmd = [sys.executable, "-m", "asfe3d.cli", "fuse", str(mri), str(pet), "-o", str(out), "--method", method,
               "--threads", str(threads), "--no-progress", *extra, *(["--mode", mode] if mode else [])]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: asfe3d fuse failed: {proc.stderr.strip()}")
        record = json.loads(out.with_name("fused.json").read_text())
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    steps = {k: float(v) for k, v in record.get("timings", {}).items() if k in _STEPS}
    total = sum(steps.values())
    return {"case": name, "kind": kind, "method": method, "mode": mode or "default", "threads": threads,
            "wall_s": wall, "steps": steps, "startup_s": wall - total, "peak_mib": peak, "reference_s": reference,
            "ratio": wall / reference}


def pipeline_bars(rows: Sequence[dict[str, Any]]) -> str:
    """Each end-to-end row against :data:`PIPELINE_BARS`: the absolute wall-time bar, the same bar scaled to this
    machine by the reference workload, and the memory bar (``yes`` / ``NO``)."""
    lines = ["| case | wall bar (idle 2-core machine) | as a multiple of the reference | measured | "
             "wall bar met here (scaled) | peak MiB bar | peak MiB | met |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        seconds, multiple, mib = PIPELINE_BARS[r["kind"]]
        lines.append(
            f"| {r['case'].split(' (')[0]} | <= {seconds:.0f} s | <= {multiple:.0f} x | {r['ratio']:.1f} x "
            f"({r['wall_s']:.1f} s) | {'yes' if r['ratio'] <= multiple else 'NO'} | <= {mib:.0f} | "
            f"{r['peak_mib']:.0f} | {'yes' if r['peak_mib'] <= mib else 'NO'} |")
    return "\n".join(lines)


def format_pipeline_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`run_pipeline_case` rows."""
    head = ("| case | threads | " + " | ".join(_STEPS) + " | start-up and imports | whole command (wall) "
            "| peak MiB | reference workload | command / reference |")
    lines = [head, "|" + "---|" * (len(_STEPS) + 7)]
    for r in rows:
        steps = " | ".join(f"{r['steps'].get(k, float('nan')):.2f}" for k in _STEPS)
        lines.append(f"| {r['case']} | {r['threads']} | {steps} | {r.get('startup_s', float('nan')):.2f} "
                     f"| {r['wall_s']:.1f} s | {r['peak_mib']:.0f} | {r['reference_s']:.2f} s | {r['ratio']:.1f} |")
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


def _pipeline_section(table: str, argv: Sequence[str] | None, args: argparse.Namespace, bars: str = "") -> str:
    cmd = "python scripts/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    return (
        f"Regenerate with `{cmd.strip()}`. Machine: {_machine(args.threads)}.\n\n"
        "Seconds per step (from the run's completion record), the whole command's wall time as a user sees it\n"
        "(Python start-up and imports included), its peak resident memory, and the ratio to a fixed reference\n"
        "workload (8 layers of 16-channel 3x3x3 convolutions on 96^3, run in the benchmark process just before):\n"
        "the ratio is what to compare between machines and loads. \"Start-up and imports\" is the wall time outside\n"
        "the recorded steps (Python start-up, imports, reading the weights, printing).\n\n"
        f"{table}\n\n"
        "### Against the bars\n\n"
        "The bars are wall seconds on an idle 2-core machine on which the reference workload takes about 6 / 9 s;\n"
        "scaled by the reference workload measured here they become the multiples below.\n\n"
        f"{bars}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry (see ``--help``); returns the exit code."""
    p = argparse.ArgumentParser(prog="asfe3d benchmark",
                                description="Benchmark ASFEFusion presets (parameters, time, peak memory).")
    p.add_argument("--device", action="append", choices=["cpu", "cuda"], help="default: cpu, plus cuda if available")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case after one warm-up (median reported)")
    p.add_argument("--repeats-large", type=int, default=1, help="timed runs for the whole-brain cases")
    p.add_argument("--threads", type=int, nargs="+", default=[2],
                   help="torch CPU threads; several counts run every CPU case once per count (default: 2)")
    p.add_argument("--preset", choices=["efficient", "paper"], help="run only this preset")
    p.add_argument("--output", default="docs/benchmarks.md", help="markdown file to write ('' to skip)")
    p.add_argument("--pipeline", action="store_true",
                   help="also time the whole 'asfe3d fuse' command on the end-to-end cases (step profile, peak "
                        "memory, ratio to a fixed reference workload)")
    p.add_argument("--pipeline-only", action="store_true", help="only the end-to-end cases")
    p.add_argument("--_case", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._case is not None:
        res = run_case(CASES[args._case], (args.device or ["cpu"])[0], args.repeats, args.threads[0])
        print(json.dumps(res))
        return 0
    import torch

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    pipeline_rows = []
    if args.pipeline or args.pipeline_only:
        for name in PIPELINE_CASES:
            row = run_pipeline_case(name, threads=args.threads[0])
            pipeline_rows.append(row)
            print(format_pipeline_table([row]).splitlines()[-1], flush=True)
    pipeline_table = format_pipeline_table(pipeline_rows) if pipeline_rows else "(not run: add --pipeline)"
    if args.pipeline_only:
        print(pipeline_table)
        if args.output:
            path = Path(args.output)
            old = path.read_text() if path.is_file() else ""
            marker = "## End to end"
            keep = old.split(marker)[0].rstrip() if marker in old else old.rstrip()
            section = _pipeline_section(pipeline_table, argv, args, pipeline_bars(pipeline_rows))
            path.write_text(f"{keep}\n\n{marker}\n\n{section}\n")
        return 0
    print(HEADER)
    rows = run_all(devices, args.repeats, args.threads, args.preset, args.repeats_large)
    table = format_table(rows)
    cmd = "python scripts/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.output:
        text = (
            "# ASFEFusion benchmarks\n\n"
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
            f"{acceptance(rows)}\n\n"
            "## End to end\n\n"
            f"{_pipeline_section(pipeline_table, argv, args, pipeline_bars(pipeline_rows))}\n"
        )
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
