"""Writing outputs on a reference volume's grid, atomically.

Every output goes to a temporary file in the destination folder (name starting with ``.`` and containing
``tmp``) and is renamed over the destination with ``os.replace`` only once complete; on any failure the temporary
file is removed, so a crashed run never leaves a half-written output.

Volumes are written with nibabel (not MONAI's writers, which force qform_code = sform_code = 1): when the
reference is NIfTI its qform and sform (matrices and codes) are carried over exactly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from asfe3d.errors import Asfe3dInputError, OutputExists
from asfe3d.io.convert import ras_affine_from_sitk, sitk_to_numpy_xyz
from asfe3d.io.volume import Volume

__all__ = [
    "OUTPUT_SUFFIXES", "OutputSet", "atomic_output", "check_output_path", "check_writable_folder",
    "DISK_ERRNOS", "deferred_signals", "disk_errors", "output_lock",
    "stale_temporaries", "write_image_like", "write_like",
]

PathLike = str | os.PathLike


def _resolve(p: PathLike) -> Path:
    return Path(p).expanduser().resolve()


def _split_suffix(name: str) -> tuple[str, str]:
    """``("fused", ".nii.gz")`` for ``"fused.nii.gz"``; double suffixes kept together for ``.gz``/``.bz2``."""
    lower = name.lower()
    for double in (".nii.gz", ".tar.gz", ".nii.bz2"):
        if lower.endswith(double) and len(name) > len(double):
            return name[: -len(double)], name[-len(double):]
    stem, dot, ext = name.rpartition(".")
    return (stem, "." + ext) if dot and stem else (name, "")


#: accepted suffixes per kind of output (lower case); a wrong one is refused before any work
OUTPUT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "nifti": (".nii", ".nii.gz"),
    "transform": (".tfm",),
    "png": (".png",),
    "html": (".html", ".htm"),
    "csv": (".csv",),
    "json": (".json",),
}


def _first_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable_folder(path: PathLike) -> None:
    """Refuse an output whose folder cannot be made or written (before any work).

    The nearest existing ancestor of the output's folder must be a folder in which a file can really be created
    (a probe file is made and removed at once), which catches read-only file systems, ``/proc``, permissions, and
    a file standing where a folder is expected.

    Args:
        path: the output file.

    Raises:
        Asfe3dInputError: naming the output path and the folder at fault.
    """
    out = _resolve(path)
    folder = _first_existing(out.parent)
    if not folder.is_dir():
        raise Asfe3dInputError(path, f"{folder} is a file where a folder is expected")
    try:
        fd, probe = tempfile.mkstemp(prefix=".asfe3d-probe-", dir=folder)
    except OSError as exc:
        raise Asfe3dInputError(path, f"cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output_path(
    path: PathLike, *, overwrite: bool = False, inputs: Sequence[PathLike] = (), kind: str | None = None,
    replaceable: Sequence[PathLike] = (),
) -> Path:
    """Refuse an output path up front (before any expensive work).

    Args:
        path: the output file to be written.
        overwrite: allow replacing an existing file.
        inputs: the run's input files / folders; the output may not be any of them (compared after resolving
            symbolic links and ``~``, and by inode when both exist), ``--overwrite`` or not.
        kind: a key of :data:`OUTPUT_SUFFIXES`; when given, the suffix must be one of that kind's and the folder
            must be writable (:func:`check_writable_folder`).
        replaceable: existing files that this run may replace without ``overwrite`` (the outputs that an
            interrupted asfe3d run left incomplete, as its completion record lists them).

    Returns:
        The output path, resolved to an absolute path.

    Raises:
        Asfe3dInputError: naming the output path, when it is one of ``inputs`` or lies inside an input folder, is
            an existing folder, has the wrong
            suffix, cannot be written, or exists and ``overwrite`` is False.
        ValueError: an unknown ``kind``.
    """
    out = _resolve(path)
    for inp in inputs:
        ip = _resolve(inp)
        same = ip == out
        if not same and ip.exists() and out.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(ip, out)
        if same:
            raise Asfe3dInputError(path, f"output path is the same as input {inp}; refusing to overwrite an input")
        if ip.is_dir() and out.is_relative_to(ip):
            raise Asfe3dInputError(path, f"output lies inside the input folder {inp}; an input folder is never "
                                   "written to (choose another folder)")
    if kind is not None and kind not in OUTPUT_SUFFIXES:
        raise ValueError(f"kind must be one of {sorted(OUTPUT_SUFFIXES)}, got {kind!r}")
    if out.is_dir():  # before the suffix: a folder given for a file is the mistake to name
        raise Asfe3dInputError(path, "output path is an existing folder (give a file name)")
    if kind is not None and not out.name.lower().endswith(OUTPUT_SUFFIXES[kind]):
        raise Asfe3dInputError(path, f"output must end in {' or '.join(OUTPUT_SUFFIXES[kind])}")
    if out.exists() and not overwrite and out not in {_resolve(r) for r in replaceable}:
        raise OutputExists(path, "output file already exists (pass --overwrite to replace it; overwrite=True in Python)")
    if kind is not None:
        check_writable_folder(out)
    return out


#: names of the temporary files made here: ``.<stem>.tmp<pid>x<8 hex><suffix>``
_TEMP_NAME = re.compile(r"^\..+\.tmp\d+x[0-9a-f]{8}(\.[A-Za-z0-9.]+)?$")


def _temp_name(out: Path) -> Path:
    stem, suffix = _split_suffix(out.name)
    return out.with_name(f".{stem}.tmp{os.getpid()}x{secrets.token_hex(4)}{suffix}")


@contextlib.contextmanager
def atomic_output(path: PathLike, *, overwrite: bool = False, inputs: Sequence[PathLike] = ()) -> Iterator[Path]:
    """Context manager yielding a temporary path to write, renamed to ``path`` on success.

    The temporary file sits in the destination folder (created if needed) and keeps the destination's suffix
    (so writers that pick a format from the suffix work), e.g. ``.fused.tmp3f9a1c.nii.gz``.

    Args:
        path: the final output path.
        overwrite: allow replacing an existing file.
        inputs: input paths the output must not equal (see :func:`check_output_path`).

    Yields:
        The temporary path to write to.

    Raises:
        Asfe3dInputError: from :func:`check_output_path`.
        RuntimeError: when the body finished without creating the temporary file.
        Exception: whatever the body raised; the temporary file is removed first.

    Example:
        >>> with atomic_output("out/preview.png") as tmp:  # doctest: +SKIP
        ...     fig.savefig(tmp)
    """
    out = check_output_path(path, overwrite=overwrite, inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    if _TEMP_NAME.match(out.name):  # already an OutputSet's temporary file: write it in place
        try:
            yield out
            if not out.is_file():
                raise RuntimeError(f"{out}: nothing was written")
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            raise
        return
    tmp = _temp_name(out)
    try:
        yield tmp
        if not tmp.is_file():
            raise RuntimeError(f"{out}: nothing was written to the temporary file {tmp.name}")
        if out.exists() and not overwrite:  # appeared while we were writing
            raise OutputExists(path, "output file already exists (pass --overwrite to replace it; overwrite=True in Python)")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def output_lock(path: PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on one run's outputs (named by its main output) while the run writes them, so that a
    second run on the same outputs is refused instead of mixing its files with the first's.

    The lock is ``fcntl.flock`` on the hidden ``.<name>.asfe3d-lock`` beside the output (opened with
    ``O_NOFOLLOW``: a symlink there is refused, never followed), released by the operating system however the
    process ends, and removed when the run is done.

    Raises:
        Asfe3dInputError: another run holds the lock, or the lock name is a symlink or cannot be created.
    """
    import fcntl

    out = _resolve(path)
    lock = out.parent / f".{out.name}.asfe3d-lock"
    made = []  # the folders this lock makes: removed again if the run leaves them empty (a refusal, a failure)
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Asfe3dInputError(out.parent, f"cannot create the output folder ({exc.strerror or exc})") from None
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            why = "is a symbolic link" if lock.is_symlink() else f"cannot be created ({exc.strerror})"
            raise Asfe3dInputError(lock, f"the output lock {why}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise Asfe3dInputError(path, "another asfe3d run is writing these outputs now; wait for it to finish") \
                from None
        try:  # the file may have been removed by the run that just finished: lock the one on disk
            same = os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    else:  # pragma: no cover - five lost races in a row
        raise Asfe3dInputError(path, "could not take the output lock; try again")
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
        for folder in made:  # innermost first; rmdir removes only an empty folder
            try:
                folder.rmdir()
            except OSError:
                break


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours to signal
        return True
    return True


def stale_temporaries(path: PathLike) -> list[Path]:
    """Temporary files that an asfe3d run made for ``path`` and never renamed, because it was killed.

    A temporary file's name carries the writing process's id (``.<stem>.tmp<pid>x<8 hex><suffix>``); one whose
    process no longer exists on this machine is stale, one whose process is alive (a concurrent run) is not.
    Names of the older form ``.<stem>.tmp<8 hex><suffix>`` are always stale.

    Args:
        path: an output path.

    Returns:
        The stale temporary files beside ``path`` (empty when its folder does not exist).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stem, suffix = _split_suffix(path.name)
    pattern = re.compile(re.escape(f".{stem}.tmp") + r"(?:(\d+)x)?[0-9a-f]{8}" + re.escape(suffix) + "$")
    stale = []
    for p in path.parent.iterdir():
        match = pattern.match(p.name)
        if match and p.is_file() and (match.group(1) is None or not _pid_alive(int(match.group(1)))):
            stale.append(p)
    return sorted(stale)


#: signals held back while an output set is renamed into place (delivered as soon as the set is whole)
_DEFERRED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM, SIGHUP and SIGQUIT for the body (a few renames): a signal that arrives meanwhile
    is raised again when the body ends, so an interruption finds either the old set of outputs or the new one,
    never a mix.

    The signals are caught by a handler that notes them (masking would not do: a process-directed signal goes to
    any thread that does not mask it, and numerical libraries start threads). Signals that were ignored stay
    ignored. Handlers can be set only in the main thread; elsewhere the body runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, Any] = {}
    for signum in _DEFERRED_SIGNALS:
        handler = signal.getsignal(signum)
        if handler is signal.SIG_IGN or handler is None:  # ignored, or set outside Python: left as it is
            continue
        previous[signum] = signal.signal(signum, lambda num, _frame: caught.append(num))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


#: errors of the place written to (not of asfe3d): a full disk or quota, a file too large, a read-only or
#: forbidden folder. They are the user's to fix, so they end a run in one line, like bad input.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


@contextlib.contextmanager
def disk_errors(path: PathLike) -> Iterator[None]:
    """Turn a write failure of the disk (:data:`DISK_ERRNOS`: full, quota, read-only, permission) inside the body
    into :class:`Asfe3dInputError` naming ``path`` (the file or folder being written) and the reason."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        where = exc.filename if exc.filename and not _TEMP_NAME.match(Path(str(exc.filename)).name) else path
        raise Asfe3dInputError(where, f"cannot write: {exc.strerror or exc} (no earlier output was replaced)") from None


def _replace_as_unit(moves: Sequence[tuple[Path, Path]], finish: Callable[[], None] | None = None) -> None:
    """Rename every ``(temporary, destination)`` pair, all or none.

    Existing destinations are first moved aside to hidden backups beside them; if any rename fails (a full or
    read-only disk, a folder removed meanwhile), or ``finish`` (called once all are in place) raises, every
    destination already replaced gets its old file back and the error is raised. The backups are removed once all
    the new files are in place and ``finish`` returned.
    """
    backups: list[tuple[Path, Path]] = []  # (backup, destination)
    placed: list[Path] = []
    try:
        for tmp, dest in moves:
            if dest.exists() or dest.is_symlink():
                backup = dest.with_name(f".{dest.name}.asfe3d-old{os.getpid()}x{secrets.token_hex(4)}")
                os.replace(dest, backup)
                backups.append((backup, dest))
            os.replace(tmp, dest)
            placed.append(dest)
        if finish is not None:
            finish()
    except BaseException:
        for dest in placed:
            with contextlib.suppress(OSError):
                dest.unlink()
        for backup, dest in backups:
            with contextlib.suppress(OSError):
                os.replace(backup, dest)
        raise
    for backup, _ in backups:
        with contextlib.suppress(OSError):
            backup.unlink()


class OutputSet:
    """The outputs of one run, written as a set: none replaces anything until all of them are complete.

    Every output is written to a hidden temporary file beside its destination (:meth:`temp`); :meth:`commit`
    renames them over their destinations only once all are written, so an interrupted or failed run (an exception,
    Ctrl-C, SIGTERM) leaves the previous outputs untouched and no partial file under a final name. Paths are
    checked when the set is made (before any heavy work).

    Args:
        paths: output kind (free-form, e.g. ``"fused"``) -> ``(path, suffix kind)`` where the suffix kind is a key
            of :data:`OUTPUT_SUFFIXES`.
        overwrite: allow replacing existing files.
        inputs: the run's inputs; never an output.
        replaceable: existing files that may be replaced without ``overwrite`` (see :func:`check_output_path`).

    Raises:
        Asfe3dInputError: a refused path (see :func:`check_output_path`), or two outputs on one path.

    Example:
        >>> with OutputSet({"fused": ("out.nii.gz", "nifti")}) as outs:  # doctest: +SKIP
        ...     nib.save(img, outs.temp("fused"))
        ...     outs.commit()
    """

    def __init__(
        self,
        paths: dict[str, tuple[PathLike, str]],
        *,
        overwrite: bool = False,
        inputs: Sequence[PathLike] = (),
        replaceable: Sequence[PathLike] = (),
    ) -> None:
        self.overwrite = bool(overwrite)
        self.paths: dict[str, Path] = {}
        self._temps: dict[str, Path] = {}
        owners: dict[Path, str] = {}
        for kind, (path, suffix_kind) in paths.items():
            try:
                out = check_output_path(path, overwrite=overwrite, inputs=inputs, kind=suffix_kind,
                                        replaceable=replaceable)
            except Asfe3dInputError as exc:  # which of the outputs asked for: "the preview output must end in .png"
                if exc.problem.startswith("output must end in"):
                    raise Asfe3dInputError(path, f"the {kind.replace('_', ' ')} {exc.problem}") from None
                raise
            if out in owners:
                raise Asfe3dInputError(path, f"the {kind} output would overwrite the {owners[out]} output")
            owners[out] = kind
            self.paths[kind] = out

    def temp(self, kind: str) -> Path:
        """The temporary path to write output ``kind`` to (its folder is created)."""
        if kind not in self.paths:
            raise KeyError(f"no output {kind!r} in this set; have {sorted(self.paths)}")
        if kind not in self._temps:
            self.paths[kind].parent.mkdir(parents=True, exist_ok=True)
            self._temps[kind] = _temp_name(self.paths[kind])
        return self._temps[kind]

    def commit(self, finish: Callable[[dict[str, Path]], None] | None = None) -> dict[str, Path]:
        """Rename every written temporary file over its destination.

        Args:
            finish: called with the final paths once every file is in place, before the files they replaced are
                removed (e.g. to complete a record of the set); if it raises, every destination gets its old file
                back (a new one is removed) and the error is raised: the set is replaced together with it or not.

        Returns:
            kind -> final path of every output.

        Raises:
            RuntimeError: an output was never written.
        """
        missing = [k for k in self.paths if k not in self._temps or not self._temps[k].is_file()]
        if missing:
            raise RuntimeError(f"outputs {missing} were not written; nothing was replaced")
        final = dict(self.paths)
        with deferred_signals():
            _replace_as_unit([(tmp, self.paths[kind]) for kind, tmp in self._temps.items()],
                             None if finish is None else lambda: finish(dict(final)))
        self._temps.clear()
        return final

    def discard(self) -> None:
        """Remove every temporary file (the destinations are untouched)."""
        for tmp in self._temps.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._temps.clear()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _is_nifti_name(path: PathLike) -> bool:
    return str(path).lower().endswith((".nii", ".nii.gz"))


#: the ``descrip`` of every NIfTI written here (the reference's own describes the reference's data, not the output's)
_DESCRIPTION = b"asfe3d output on the reference grid"


def _output_header(reference: Volume, data_shape: tuple[int, ...], rgb: bool) -> tuple[type, nib.Nifti1Header]:
    """Header for an output on ``reference``'s grid: the reference's qform/sform (codes included) or, for a
    non-NIfTI reference, its RAS affine with both codes 1."""
    if reference.nifti_header is not None:
        src = reference.nifti_header
        klass = nib.Nifti2Image if isinstance(src, nib.Nifti2Header) else nib.Nifti1Image
        hdr = src.copy()
        # data-describing fields of the source do not apply to the output
        hdr["scl_slope"] = np.nan
        hdr["scl_inter"] = np.nan
        hdr["cal_min"] = 0.0
        hdr["cal_max"] = 0.0
        hdr["intent_code"] = 0
        hdr["intent_name"] = b""
        hdr["descrip"] = _DESCRIPTION  # the MRI's own ("T1 MPRAGE") would describe the PET and colour outputs too
        hdr["aux_file"] = b""  # a display lookup table's name in FSL: one for the MRI's values, not the output's
        hdr["intent_p1"] = hdr["intent_p2"] = hdr["intent_p3"] = 0.0
        for key in ("glmin", "glmax"):  # Analyze fields of NIfTI-1, not in a NIfTI-2 header
            if key in hdr:
                hdr[key] = 0
        hdr.set_data_dtype("RGB" if rgb else np.float32)
        zooms = hdr.get_zooms()[:3]
        hdr.set_data_shape(data_shape)
        hdr.set_zooms(zooms)
        return klass, hdr
    affine = reference.affine_ras
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype("RGB" if rgb else np.float32)
    hdr.set_data_shape(data_shape)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm")
    hdr["descrip"] = _DESCRIPTION
    return nib.Nifti1Image, hdr


def write_like(
    data: np.ndarray,
    reference: Volume,
    path: PathLike,
    *,
    overwrite: bool = False,
    inputs: Sequence[PathLike] = (),
) -> Path:
    """Write an array on the reference volume's voxel grid as NIfTI, atomically.

    The output has exactly the reference's shape and RAS affine; when the reference is NIfTI it also has the
    same qform and sform (matrices and codes), otherwise both codes are 1 (scanner) with the RAS affine of the
    reference's SimpleITK geometry.

    Args:
        data: float array of shape ``(X, Y, Z)`` == ``reference.shape_xyz`` (written as float32), or a uint8
            array of shape ``(X, Y, Z, 3)`` written as NIfTI RGB24 (a colour volume for 3D Slicer / ITK-SNAP).
        reference: the volume whose grid ``data`` is on (normally the MRI).
        path: output file, ending in ``.nii`` or ``.nii.gz``; parent folders are created.
        overwrite: allow replacing an existing output.
        inputs: input paths the output must not equal.

    Returns:
        The output path (absolute).

    Raises:
        ValueError: when ``reference`` is not a Volume, ``path`` is not ``.nii`` / ``.nii.gz``, ``data`` has
            the wrong shape (quoting both shapes) or dtype, or float data holds NaN / Inf.
        Asfe3dInputError: when the output path is refused (see :func:`check_output_path`).
    """
    if not isinstance(reference, Volume):
        raise ValueError(f"reference must be an asfe3d.io.Volume, got {type(reference).__name__}.")
    if not _is_nifti_name(path):
        raise ValueError(f"output path must end in .nii or .nii.gz, got {str(path)!r}.")
    arr = np.asarray(data)
    ref_shape = reference.shape_xyz
    rgb = arr.ndim == 4
    if rgb:
        if tuple(arr.shape) != (*ref_shape, 3) or arr.dtype != np.uint8:
            raise ValueError(
                f"RGB data must be uint8 of shape {(*ref_shape, 3)} (reference shape_xyz + 3), "
                f"got {arr.dtype} of shape {tuple(arr.shape)}."
            )
        rgb_dtype = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
        out_arr = np.ascontiguousarray(arr).view(rgb_dtype).reshape(ref_shape)
    else:
        if tuple(arr.shape) != ref_shape:
            raise ValueError(
                f"data shape {tuple(arr.shape)} does not match the reference shape_xyz {ref_shape} "
                f"({reference.path})."
            )
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
                or arr.dtype == np.bool_):
            raise ValueError(f"data must be a real numeric array, got dtype {arr.dtype}.")
        out_arr = arr.astype(np.float32)
        nbad = int((~np.isfinite(out_arr)).sum())
        if nbad:
            raise ValueError(f"data has {nbad} non-finite (NaN/Inf) voxels; refusing to write {str(path)!r}.")
    check_output_path(path, overwrite=overwrite, inputs=inputs)
    klass, hdr = _output_header(reference, ref_shape, rgb)
    img = klass(out_arr, None, header=hdr)
    if rgb:
        img.header.set_data_dtype("RGB")
    else:
        img.header.set_slope_inter(1.0, 0.0)
    with atomic_output(path, overwrite=overwrite, inputs=inputs) as tmp:
        save_nifti(img, tmp)
    return _resolve(path)


def nifti_bytes(img: nib.Nifti1Image) -> bytes:
    """The single-file NIfTI bytes of ``img``, the same bytes as ``img.to_bytes()``.

    nibabel writes the voxels in chunks through a scaling writer; for the images the pipeline writes (float32 with
    ``scl_slope`` 1 and ``scl_inter`` 0, or RGB24, neither rescaled) that is the header, zeros up to
    ``vox_offset`` and the array in Fortran order, built here in one copy (a 0.9 mm head: 0.12 -> 0.03 s). Any
    other image (scaling to be computed, another data type than the array's) goes through ``to_bytes``.

    Args:
        img: a single-file NIfTI-1 or NIfTI-2 image.

    Returns:
        The file's bytes.
    """
    import io

    hdr = img.header
    data = img.dataobj
    out_dtype = hdr.get_data_dtype()
    plain = (isinstance(data, np.ndarray) and data.dtype == out_dtype and hdr.has_data_slope
             and hdr.has_data_intercept and float(hdr["scl_slope"]) == 1.0 and float(hdr["scl_inter"]) == 0.0)
    if not plain or not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        return img.to_bytes()
    img.update_header()
    buf = io.BytesIO()
    hdr.write_to(buf)
    pad = int(hdr.get_data_offset()) - buf.tell()
    if pad < 0:
        return img.to_bytes()
    return b"".join((buf.getvalue(), b"\0" * pad, data.tobytes(order="F")))


def save_nifti(img: nib.Nifti1Image, path: PathLike) -> None:
    """Write a NIfTI image to ``path``: ``.nii`` uncompressed; ``.nii.gz`` gzip-compressed with ISA-L's igzip at
    level 1 (a standard gzip stream, about 5x faster than zlib at the same size; header time stamp 0, so the same
    image always gives the same bytes).

    Args:
        img: a nibabel NIfTI-1 or NIfTI-2 image.
        path: the file (its name's suffix chooses the compression).
    """
    if not str(path).lower().endswith(".gz"):
        nib.save(img, str(path))
        return
    from isal import igzip

    raw = nifti_bytes(img)
    with open(path, "wb") as fh:
        fh.write(igzip.compress(raw, compresslevel=1, mtime=0))


def write_image_like(
    image: sitk.Image,
    reference: Volume,
    path: PathLike,
    *,
    overwrite: bool = False,
    inputs: Sequence[PathLike] = (),
) -> Path:
    """Write a SimpleITK image that lies on the reference's grid (e.g. the registered PET) as NIfTI.

    Args:
        image: 3D scalar SimpleITK image with the reference's size, origin, spacing and direction (to 1e-4 mm /
            1e-5 in the direction cosines); a 3-component uint8 image is written as RGB24.
        reference: the volume whose grid ``image`` is on.
        path: output ``.nii`` / ``.nii.gz`` file.
        overwrite: allow replacing an existing output.
        inputs: input paths the output must not equal.

    Returns:
        The output path (absolute).

    Raises:
        ValueError: when ``image`` is not a 3D SimpleITK image on the reference's grid (quoting both
            geometries), or for the reasons of :func:`write_like`.
        Asfe3dInputError: when the output path is refused.
    """
    if not isinstance(image, sitk.Image) or image.GetDimension() != 3:
        raise ValueError(f"image must be a 3D SimpleITK image, got {image!r}.")
    if not isinstance(reference, Volume):
        raise ValueError(f"reference must be an asfe3d.io.Volume, got {type(reference).__name__}.")
    ref = reference.image
    if tuple(image.GetSize()) != tuple(ref.GetSize()):
        raise ValueError(f"image size {tuple(image.GetSize())} differs from the reference's {tuple(ref.GetSize())}.")
    got, want = ras_affine_from_sitk(image), ras_affine_from_sitk(ref)
    if not np.allclose(got, want, atol=1e-4):
        raise ValueError(
            f"image is not on the reference grid: RAS affine {np.round(got, 5).tolist()} vs "
            f"{np.round(want, 5).tolist()}; resample it onto the reference first."
        )
    arr = sitk_to_numpy_xyz(image)
    ncomp = image.GetNumberOfComponentsPerPixel()
    if ncomp != 1 and not (ncomp == 3 and arr.dtype == np.uint8):
        raise ValueError(f"image must be scalar or 3-component uint8 (RGB), got {ncomp} components of {arr.dtype}.")
    return write_like(arr, reference, path, overwrite=overwrite, inputs=inputs)
