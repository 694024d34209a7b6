"""Checks on an input's header before its voxels are read: voxel sizes and the memory the data would take.

A header is cheap to read and can claim anything: a 3.7 KB NIfTI header may announce 1500^3 float32 voxels
(13.5 GB). :func:`check_data_size` refuses such a file in milliseconds, before any allocation, by comparing the
bytes the header implies with what the file can hold (exactly for uncompressed data, through the largest ratio
deflate can reach for compressed data), with :data:`MAX_VOXELS` and with the memory available.
:func:`check_voxel_sizes` refuses zero, negative, non-finite and absurd voxel sizes (a brain volume has voxels
between :data:`MIN_VOXEL_MM` and :data:`MAX_VOXEL_MM`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import SimpleITK as sitk

from asfe3d.errors import Asfe3dInputError
from asfe3d.utils import is_int

__all__ = [
    "check_cells_locale",
    "locale_problem",
    "MIN_VOXEL_MM",
    "MAX_VOXEL_MM",
    "MAX_VOXELS",
    "MAX_FRAME_VOXELS",
    "MAX_DEFLATE_RATIO",
    "available_memory_bytes",
    "working_memory",
    "check_bytes_per_voxel",
    "RUN_BYTES_PER_MRI_VOXEL",
    "check_voxel_sizes",
    "check_data_size",
    "sitk_stored_bytes",
    "sitk_pixel_bytes",
    "short_error",
]

#: Smallest voxel edge (mm) accepted for a head volume (the finest MRI is about 0.1 mm).
MIN_VOXEL_MM = 0.01
#: Largest voxel edge (mm) accepted for a head volume (the coarsest PET / SPECT slices are about 10 mm).
MAX_VOXEL_MM = 50.0
#: Most voxels (all frames together) one input may hold: 2^31, i.e. 8 GiB as float32.
MAX_VOXELS = 2**31
#: Most voxels in one 3D frame: 2^28 (268 M, e.g. a 640^3 whole head at 0.35 mm). Beyond it a "head volume" is
#: a corrupt header or a decompression bomb: a 1 MB ``.nii.gz`` can claim 1000^3 voxels and inflate to 1 GB of
#: uint8 (4 GB as float32, far more through registration and fusion), taking minutes before anything could fail.
MAX_FRAME_VOXELS = 2**28
#: Largest expansion of deflate (gzip / zlib) data: 1032:1 (RFC 1951's longest match per 258 bytes, 2 bits each).
MAX_DEFLATE_RATIO = 1032
#: Bytes of working memory per voxel besides the stored type: the float32 array, its SimpleITK copies (frames and
#: realigned frames), the mean.
WORK_BYTES_PER_VOXEL = 16


#: where the process's control group (cgroup v2, or v1's memory controller) says how much memory it may use
CGROUP_ROOT = Path("/sys/fs/cgroup")


def locale_problem(text: str) -> str | None:
    """Why ``text`` (a path, a name that becomes one) cannot be handed to the file system and to SimpleITK in this
    process's locale, or ``None``: under ``LC_ALL=C`` with ``PYTHONUTF8=0`` the file-system encoding is ASCII, so a
    non-ASCII command-line argument arrives as surrogate escapes (SimpleITK aborted the process, exit 134) and a
    non-ASCII subject name read from a CSV cannot be written (a ``UnicodeEncodeError`` traceback)."""
    import sys

    encoding = sys.getfilesystemencoding()
    try:
        text.encode("utf-8")
        text.encode(encoding, "surrogateescape")
    except UnicodeEncodeError:
        if encoding.lower().replace("-", "") == "utf8":  # already UTF-8: the name's bytes are not (another encoding)
            return "holds bytes that are not UTF-8 (a name written in another encoding): rename it in UTF-8"
        return (f"holds characters this locale's file-system encoding ({encoding}) cannot pass on: run in a UTF-8 "
                "locale (export LC_ALL=C.UTF-8) or with PYTHONUTF8=1")
    return None


def check_cells_locale(path: str | Path, line: int, cells: Mapping[str, str]) -> None:
    """Refuse a table row (a datalist's or a pairs CSV's) with a cell that :func:`locale_problem` finds, naming the
    line, the column and the cell.

    Args:
        path: the table.
        line: the row's line in it.
        cells: column -> cell text.

    Raises:
        Asfe3dInputError: the first such cell.
    """
    from asfe3d.errors import Asfe3dInputError

    for column, value in cells.items():
        problem = locale_problem(value)
        if problem is not None:
            raise Asfe3dInputError(path, f"line {line}: {column} {value!a} {problem}")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


#: the process's own control groups, one line per hierarchy: ``0::/path`` (v2), ``N:memory:/path`` (v1)
PROC_CGROUP = Path("/proc/self/cgroup")


def _own_memory_cgroups() -> list[tuple[Path, str, str]]:
    """The folders (the process's own control group, then each one above it up to the mount's root) whose memory
    limit applies to this process, with their limit and usage file names, v2 first. A Slurm job's or systemd
    unit's limit sits on a sub-group (``/proc/self/cgroup`` names it); a container's is the mount's root."""
    try:
        lines = PROC_CGROUP.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    own = {"2": "/", "1": "/"}
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) == 3 and fields[0] == "0" and fields[1] == "":
            own["2"] = fields[2]
        elif len(fields) == 3 and "memory" in fields[1].split(","):
            own["1"] = fields[2]
    found = []
    for version, base, limit_name, usage_name in (("2", CGROUP_ROOT, "memory.max", "memory.current"),
                                                  ("1", CGROUP_ROOT / "memory", "memory.limit_in_bytes",
                                                   "memory.usage_in_bytes")):
        parts = [p for p in own[version].split("/") if p and p != ".."]
        found += [(base.joinpath(*parts[:k]), limit_name, usage_name) for k in range(len(parts), -1, -1)]
    return found


def _reclaimable_cache(folder: Path) -> int:
    """Bytes of the group's usage that are inactive file cache (``memory.stat``: v2 ``inactive_file``, v1
    ``total_inactive_file``): counted in the usage, but the kernel drops them before it kills anything (the input
    just read sat there: a 4 GB group seemed full)."""
    try:
        text = (folder / "memory.stat").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return 0
    stats = dict(line.split(None, 1) for line in text.splitlines() if len(line.split()) == 2)
    value = stats.get("total_inactive_file", stats.get("inactive_file", "0")).strip()
    return int(value) if value.isdigit() else 0


def _cgroup_available_bytes() -> int | None:
    """Memory left under the tightest control group limit over this process (a container's, a Slurm job's), or
    ``None`` without one: ``/proc/meminfo`` shows the host's memory there, and a run it allowed was killed without
    a word (exit 137)."""
    left = None
    for folder, limit_name, usage_name in _own_memory_cgroups():
        limit = _read_int(folder / limit_name)
        if limit is not None and limit < 1 << 60:  # cgroup v1 writes a huge number for "no limit"
            used = (_read_int(folder / usage_name) or 0) - _reclaimable_cache(folder)
            here = max(0, limit - max(0, used))
            left = here if left is None else min(left, here)
    return left


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation: ``MemAvailable`` of ``/proc/meminfo``, or less when the process's
    control group (a container, a batch job) allows less; ``None`` if unknown."""
    host = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if host is None:
        try:
            host = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            host = None
    known = [v for v in (host, _cgroup_available_bytes()) if v is not None]
    return min(known) if known else None


#: Working memory per voxel of the MRI grid that a whole fusion run needs beside the stored data, at least: a 512^3
#: 0.5 mm int16 MRI (``--method mean``) held 4.1 GB once read (head mask and registration beside the reading) and 6.5
#: GB at the peak, i.e. 48 bytes per voxel with the libraries; the floor is below it so that a run that fits is not
#: refused. The fusion chain reads its MRI with it (``read_volume(work_bytes_per_voxel=...)``).
RUN_BYTES_PER_MRI_VOXEL = 40

#: the working memory per voxel the reads of this thread / task count (:func:`working_memory`)
_WORK_BYTES = contextvars.ContextVar("asfe3d_work_bytes_per_voxel", default=WORK_BYTES_PER_VOXEL)


def check_bytes_per_voxel(bytes_per_voxel: object) -> None:
    """Refuse a working memory per voxel that is not ``None`` or an int >= 0 (ValueError quoting it)."""
    if bytes_per_voxel is not None and (not is_int(bytes_per_voxel)
                                        or bytes_per_voxel < 0):
        raise ValueError(f"bytes_per_voxel must be None or an int >= 0, got {bytes_per_voxel!r}")


@contextlib.contextmanager
def working_memory(bytes_per_voxel: int | None) -> Iterator[None]:
    """Within the block, :func:`check_data_size` counts ``bytes_per_voxel`` of working memory per voxel (``None``:
    :data:`WORK_BYTES_PER_VOXEL`, what reading alone takes): the whole run a volume is read for, bounded before
    any voxel is read.

    Raises:
        ValueError: ``bytes_per_voxel`` is not ``None`` or an int >= 0.
    """
    check_bytes_per_voxel(bytes_per_voxel)
    token = _WORK_BYTES.set(WORK_BYTES_PER_VOXEL if bytes_per_voxel is None else bytes_per_voxel)
    try:
        yield
    finally:
        _WORK_BYTES.reset(token)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024.0
    return f"{n:.3g} TB"  # pragma: no cover - loop always returns


def check_voxel_sizes(path: str | Path, role: str, sizes: Sequence[float], source: str) -> None:
    """Refuse voxel sizes that cannot be a head volume's.

    Args:
        path: the input (named in the error).
        role: what the volume is (``"MRI"``, ``"PET"``...).
        sizes: the three voxel edges in mm.
        source: where the sizes come from, e.g. ``"NIfTI pixdim[1:4]"`` or ``"spacing"`` (named in the error).

    Raises:
        Asfe3dInputError: a size is not finite, is <= 0, or lies outside
            [:data:`MIN_VOXEL_MM`, :data:`MAX_VOXEL_MM`].
    """
    vals = [float(s) for s in sizes]
    shown = ", ".join(f"{v:.6g}" for v in vals)
    if not all(math.isfinite(v) for v in vals):
        raise Asfe3dInputError(path, f"{role} header has non-finite voxel sizes ({source} = {shown})")
    if any(v <= 0 for v in vals):
        raise Asfe3dInputError(
            path, f"{role} header has zero or negative voxel sizes ({source} = {shown}); the geometry is unknown"
        )
    if any(v < MIN_VOXEL_MM or v > MAX_VOXEL_MM for v in vals):
        raise Asfe3dInputError(
            path, f"{role} header has implausible voxel sizes ({source} = {shown} mm; a head volume has voxels of "
            f"{MIN_VOXEL_MM:g} to {MAX_VOXEL_MM:g} mm); fix the header"
        )


def check_data_size(
    path: str | Path,
    role: str,
    shape: Sequence[int],
    itemsize: int,
    *,
    stored_bytes: int | None,
    compressed: bool,
    max_voxels: int = MAX_VOXELS,
) -> int:
    """Refuse, before any allocation, data that the file cannot hold or memory cannot take.

    Args:
        path: the input (named in the error).
        role: what the volume is.
        shape: the data shape the header claims (all axes, frames included).
        itemsize: bytes per stored voxel value.
        stored_bytes: bytes of voxel data the file(s) hold (after the header), ``None`` when unknown.
        compressed: whether those bytes are deflate-compressed (gzip / zlib): they may then expand up to
            :data:`MAX_DEFLATE_RATIO` times.
        max_voxels: the largest voxel count accepted.

    Returns:
        The number of bytes the stored data takes once decompressed.

    Raises:
        Asfe3dInputError: more than :data:`MAX_FRAME_VOXELS` in the first three axes; more than ``max_voxels``
            voxels; more data than the file can hold; more memory than is
            available.
    """
    nvox = 1
    for s in shape:
        nvox *= int(s)
    need = nvox * int(itemsize)
    dims = "x".join(str(int(s)) for s in shape)
    if stored_bytes is not None:
        bound = stored_bytes * (MAX_DEFLATE_RATIO if compressed else 1)
        if need > bound:
            claimed, have = _fmt_bytes(need), _fmt_bytes(bound)
            if claimed == have:  # a few bytes short: rounded sizes would read the same
                claimed, have = f"{need:,} B", f"{bound:,} B"
            held = (f"{_fmt_bytes(stored_bytes)} of compressed data, which expands to at most {have}"
                    if compressed else f"only {have} of voxel data")
            raise Asfe3dInputError(
                path, f"{role} header claims {dims} voxels ({claimed}) but the file holds {held} "
                "(corrupt or truncated file?)"
            )
    frame = 1
    for s in list(shape)[:3]:
        frame *= int(s)
    if frame > MAX_FRAME_VOXELS:
        raise Asfe3dInputError(
            path, f"{role} header claims {dims} voxels: {frame:,} in one 3D frame, more than the "
            f"{MAX_FRAME_VOXELS:,} of any head volume asfe3d fuses (corrupt header or decompression bomb?)"
        )
    if nvox > max_voxels:
        raise Asfe3dInputError(
            path, f"{role} header claims {dims} = {nvox:,} voxels, more than the {max_voxels:,} asfe3d reads "
            "(corrupt header?)"
        )
    avail = available_memory_bytes()
    work = _WORK_BYTES.get()
    peak = nvox * (int(itemsize) + work)
    if avail is not None and peak > avail:
        task = "to read" if work == WORK_BYTES_PER_VOXEL else f"to read and fuse ({int(itemsize) + work} B per voxel)"
        raise Asfe3dInputError(
            path, f"{role} image of {dims} voxels needs about {_fmt_bytes(peak)} of memory {task}, more than the "
            f"{_fmt_bytes(avail)} available (to this job, when it has a memory limit)"
        )
    return need


_MHA_DATA = re.compile(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", re.MULTILINE)
_MHA_COMPRESSED = re.compile(r"^\s*CompressedData\s*=\s*true\s*$", re.MULTILINE | re.IGNORECASE)
_NRRD_DATA = re.compile(r"^\s*data ?file\s*:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)
_NRRD_ENCODING = re.compile(r"^\s*encoding\s*:\s*(\S+)\s*$", re.MULTILINE | re.IGNORECASE)


def sitk_stored_bytes(path: str | Path) -> tuple[int | None, bool]:
    """Bytes of stored data of an MHA / MHD / NRRD / NHDR file (with its detached data file) and whether compressed.

    Parses the text header only. Unknown formats give the file's size and ``compressed=True`` (a weak but safe
    bound); ``(None, True)`` when a detached data file is missing or listed (left to the reader).

    Args:
        path: the image file.

    Returns:
        ``(stored_bytes, compressed)``.
    """
    p = Path(path)
    size = p.stat().st_size
    name = p.name.lower()
    if not name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
        return size, True
    with open(p, "rb") as fh:
        head = fh.read(65536).decode("latin-1")
    if name.endswith((".mha", ".mhd")):
        compressed = bool(_MHA_COMPRESSED.search(head))
        match = _MHA_DATA.search(head)
        target = match.group(1) if match else "LOCAL"
        if target.upper() == "LOCAL":
            return size - (match.end() + 1 if match else 0), compressed
    else:
        enc = _NRRD_ENCODING.search(head)
        compressed = enc is None or enc.group(1).lower() not in ("raw",)
        match = _NRRD_DATA.search(head)
        if match is None:
            end = head.find("\n\n")
            return (size - (end + 2) if end >= 0 else size), compressed
        target = match.group(1)
    data = p.parent / target
    if any(c in target for c in "%*") or " " in target.strip() or not data.is_file():
        return None, True  # file lists / patterns: left to the reader
    return data.stat().st_size, compressed


def sitk_pixel_bytes(pixel_id: int, components: int = 1) -> int:
    """Bytes per voxel of a SimpleITK pixel type (all components)."""
    try:
        per = sitk.Image([1, 1], pixel_id).GetSizeOfPixelComponent()
    except RuntimeError:  # pragma: no cover - exotic pixel types
        per = 8
    return int(per) * max(1, int(components))


def short_error(err: BaseException) -> str:
    """One line (at most 200 characters) describing an exception from a library: SimpleITK's source-file prefix
    (``Exception thrown in SimpleITK ...: .../sitkImageReaderBase.cxx:99: sitk::ERROR:``) dropped, for the user
    it says nothing."""
    text = " ".join(str(err).split()) or type(err).__name__
    text = re.sub(r"^Exception thrown in SimpleITK \S+: \S+:\d+: (?:\w+::)?ERROR: ", "", text)
    return text if len(text) <= 200 else text[:197] + "..."
