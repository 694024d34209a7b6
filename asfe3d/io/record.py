"""The completion record of a run: a JSON sidecar beside the fused volume, written last.

``<fused stem>.json`` says which inputs were fused (path, size, times, content digest), with which settings, what
the registration and its quality check found, and which outputs were written (path and size). Its ``status`` is
``"pending"`` while the outputs are being renamed into place and ``"complete"`` once all are there, so:

- a cohort counts a subject as done only when its record is complete, lists every output asked for, each exists
  with the recorded size, and the inputs are unchanged (:func:`check_record`);
- a run interrupted while renaming leaves a pending record, whose listed outputs the next run may replace (they
  are asfe3d's own, incomplete set); an existing file without a record is never replaced without ``--overwrite``;
- a run refused after its registration (``--qc strict``) with ``--report`` leaves a *refused* record listing the
  report of the refusal: a run, not a result, so the next run redoes it and may replace that report;
- an optional output under its default name (``<stem>_rgb.nii.gz``, ``<stem>_preview.png``...: a name the user
  never typed) is replaced, with ``--overwrite``, only when the record lists it as asfe3d's
  (:func:`recorded_outputs`; a later run carries an earlier run's outputs forward as ``earlier_outputs``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from asfe3d.io.writer import _split_suffix, atomic_output

__all__ = ["RECORD_FORMAT", "record_path", "fingerprint", "content_digest", "output_changed", "run_fields", "read_record", "write_record",
           "check_record", "settings_difference", "pending_outputs", "replaceable_outputs", "recorded_outputs",
           "check_outputs_are_ours", "check_record_name", "redo_hint", "same_weights", "weights_path",
           "current_command", "software_environment", "LIBRARIES"]

#: the ``format`` key of every record (a JSON file without it is not an asfe3d record)
RECORD_FORMAT = "asfe3d-run-record/1"


def record_path(fused: str | os.PathLike) -> Path:
    """``<stem>.json`` beside the fused volume ``<stem>.nii[.gz]``."""
    fused = Path(fused)
    stem, _ = _split_suffix(fused.name)
    return fused.with_name(f"{stem}.json")


def fingerprint(path: str | os.PathLike, *, digest: bool = True) -> dict[str, Any]:
    """Identity of an input file or DICOM folder: resolved path, total size in bytes, newest modification and
    status-change times, the file's inode (for a folder, a digest of its files' names, link targets, inodes, sizes
    and times) and, with ``digest``, the SHA-256 of its content.

    Args:
        path: a file or a folder (every file under it counts).
        digest: also hash the content (:func:`content_digest`; about 1 GB/s).

    Returns:
        ``{"path": str, "size": int, "mtime_ns": int, "ctime_ns": int, "inode": int | str[, "sha256": str]}``.
    """
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        files = _folder_files(p)
        stats = [f.stat() for f in files]
        found = {"path": str(p), "size": int(sum(s.st_size for s in stats)),
                 "mtime_ns": int(max((s.st_mtime_ns for s in stats), default=0)),
                 "ctime_ns": int(max((s.st_ctime_ns for s in stats), default=0)),
                 "inode": _files_identity(p, files, stats)}
    else:
        st = p.stat()
        found = {"path": str(p), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
                 "ctime_ns": int(st.st_ctime_ns), "inode": int(st.st_ino)}
    if digest:
        found["sha256"] = content_digest(p)
    return found


def _folder_files(folder: Path) -> list[Path]:
    """A DICOM folder's files, sorted, hidden ones (``.DS_Store``, ``._*``, a sync tool's) and those in hidden
    folders left out: a file manager's or a sync tool's notes, not slices, so one appearing is no change of the
    input (it made a complete subject fail as "changed", and only ``--overwrite`` of the whole cohort got past it)."""
    return sorted(f for f in folder.rglob("*")
                  if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts))


def _files_identity(folder: Path, files: list[Path], stats: list[os.stat_result]) -> str:
    """A folder's files as the file system knows them, as one string: each one's name, where a link points, its
    inode, size and times. Sums over the files (size, newest times) miss one file exchanged for an older one of the
    same size, or a link pointed elsewhere; this does not."""
    import hashlib

    h = hashlib.sha256()
    for f, st in zip(files, stats):
        target = os.readlink(f) if f.is_symlink() else ""
        h.update(f"{f.relative_to(folder).as_posix()}\0{target}\0{f.lstat().st_ino}\0{st.st_ino}\0{st.st_size}\0"
                 f"{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def content_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (each one's path relative to the folder, then its bytes,
    in sorted order), as hex."""
    import hashlib

    p = Path(path)
    h = hashlib.sha256()
    files = _folder_files(p) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(f.relative_to(p).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _working_directory() -> str | None:
    """The process's working directory, ``None`` when it was removed meanwhile (``os.getcwd`` raises then)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def current_command(argv: Sequence[str] | None = None) -> str | None:
    """This process's command line as a user would type it (shell-quoted; ``asfe3d`` for the entry point and for
    ``python -m asfe3d.cli``), or ``None`` in an interactive session or ``python -c``."""
    import shlex
    import sys

    args = [str(a) for a in (sys.argv if argv is None else argv)]
    if not args or args[0] in ("", "-c"):
        return None
    first = Path(args[0])
    if first.name == "asfe3d" or (first.name == "__main__.py" and first.parent.name in ("cli", "asfe3d")):
        args[0] = "asfe3d"
    return shlex.join(args)


#: the libraries a record and a report name, as (name, distribution)
LIBRARIES = (("MONAI", "monai"), ("PyTorch", "torch"), ("SimpleITK", "SimpleITK"), ("NumPy", "numpy"),
             ("nibabel", "nibabel"), ("matplotlib", "matplotlib"))


def software_environment() -> dict[str, Any]:
    """``{"platform", "python", "libraries": {name: version}}`` of this process (installed libraries only)."""
    import platform
    from importlib import metadata

    libraries = {}
    for name, dist in LIBRARIES:
        try:
            libraries[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {"platform": platform.platform(), "python": platform.python_version(), "libraries": libraries}


def run_fields(data: Mapping[Any, Any]) -> dict[str, Any]:
    """The fields every completion record of a fused pair starts with, from the chain's data dictionary.

    Args:
        data: the data after registration: ``mri_path`` / ``pet_path`` (the inputs), ``mri`` / ``pet`` (images
            whose ``asfe3d_source`` metadata says what the readers found) and ``pet_registration`` (the report).

    Returns:
        ``{"asfe3d_version", "command" (:func:`current_command`), "working_directory", "environment"
        (:func:`software_environment`), "inputs" (fingerprints: ``mri``, ``pet`` and, when the PET was read with
        the facts of a JSON sidecar file, ``pet_sidecar``), "input_info", "registration"}``: a report drawn later,
        by another process or version, says what made the run (it said what drew the page).
    """
    from asfe3d import __version__
    from asfe3d.io.volume import SOURCE_KEY

    inputs = {role: fingerprint(data[f"{role}_path"]) for role in ("mri", "pet")}
    pet_info = data["pet"].meta.get(SOURCE_KEY) or {}
    sidecar = pet_info.get("sidecar")
    if sidecar and Path(sidecar).is_file():  # the JSON sidecar whose facts the PET was read with (SUV, frames)
        inputs["pet_sidecar"] = fingerprint(sidecar)
    elif pet_info.get("sidecar_absent"):  # none where one would have been read (a 4D PET's frame durations)
        inputs["pet_sidecar"] = {"path": pet_info["sidecar_absent"], "absent": True}
    return {
        "asfe3d_version": __version__,
        "command": current_command(),
        "working_directory": _working_directory(),
        "environment": software_environment(),
        "inputs": inputs,
        "input_info": {role: dict(data[role].meta.get(SOURCE_KEY) or {}) for role in ("mri", "pet")},
        "registration": data.get("pet_registration"),
    }


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record at ``path``, or ``None`` when there is none or the file is not an asfe3d record."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        return None
    return _relocated(_well_formed(data), path)


def _well_formed(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its file entries (``inputs``, ``outputs``, ``earlier_outputs``) kept only where they have the
    form asfe3d writes (a mapping with a string ``path``): a record edited or damaged by hand then reads as one that
    lacks those files (not complete, not this run), never as a crash."""
    def fine(entry: Any) -> bool:
        return isinstance(entry, Mapping) and isinstance(entry.get("path"), str)

    record = dict(record)
    for key in ("inputs", "outputs"):
        group = record.get(key)
        record[key] = {k: v for k, v in group.items() if fine(v)} if isinstance(group, Mapping) else {}
    earlier = record.get("earlier_outputs")
    record["earlier_outputs"] = [v for v in earlier if fine(v)] if isinstance(earlier, list) else []
    return record


def _relocated(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """A record read from another folder than it was written in (``folder``: the folder moved or was copied with its
    inputs or outputs, as a BIDS dataset with its ``derivatives/``): each recorded file (inputs, outputs, earlier
    outputs) whose twin exists at the same place relative to the record, or that is gone, is taken to be that twin.
    Files that did not move with the record (inputs elsewhere) keep their recorded paths; inputs are still compared
    by content and outputs by size, so a moved file counts as unchanged only when it is."""
    old = record.get("folder")
    if not isinstance(old, str):
        return record
    try:
        new = path.parent.resolve()
    except OSError:
        return record
    if Path(old) == new:
        return record

    def moved(entry: Any) -> Any:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
            return entry
        twin = Path(os.path.normpath(new / os.path.relpath(entry["path"], old)))
        # the twin, when it is there or the recorded file is gone too (a deleted output: "missing" at its new place)
        return {**entry, "path": str(twin)} if twin.exists() or not Path(entry["path"]).exists() else entry

    record = dict(record)
    for key in ("inputs", "outputs"):
        if isinstance(record.get(key), Mapping):
            record[key] = {k: moved(v) for k, v in record[key].items()}
    if isinstance(record.get("earlier_outputs"), list):
        record["earlier_outputs"] = [moved(v) for v in record["earlier_outputs"]]
    return record


def write_record(path: str | os.PathLike, content: Mapping[str, Any], *, status: str,
                 outputs: Mapping[str, str | os.PathLike]) -> Path:
    """Write (atomically, replacing the previous one) a record.

    Args:
        path: the record's path (:func:`record_path` of the fused volume).
        content: what the run wants recorded (inputs, settings, registration...), JSON-able.
        status: ``"pending"``, ``"complete"`` or ``"refused"`` (a run refused after its registration; ``outputs``
            holds what it wrote instead: the report of the refusal).
        outputs: output kind -> path; sizes are recorded for the files that exist.

    Returns:
        The path.

    Raises:
        ValueError: an unknown ``status``.
    """
    if status not in ("pending", "complete", "refused"):
        raise ValueError(f"status must be 'pending', 'complete' or 'refused', got {status!r}")
    content = _with_weights_input(content) if status != "pending" else content
    files = {}
    for kind, p in outputs.items():
        p = Path(p).resolve()
        if status == "complete" and p.is_file():  # known by content too: an output exchanged for another is seen
            files[kind] = fingerprint(p)
        else:
            files[kind] = {"path": str(p), "size": p.stat().st_size if p.is_file() else None}
    listed = {entry["path"] for entry in files.values()}
    earlier = {p: size for p, size in _still_there(read_record(path)).items() if p not in listed}
    data = {"format": RECORD_FORMAT, **dict(content), "status": status, "outputs": files,
            "folder": str(Path(path).parent.resolve()), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if earlier:
        data["earlier_outputs"] = [{"path": p, "size": size} for p, size in sorted(earlier.items())]
    text = json.dumps(_strict_json(data), indent=2, default=str, allow_nan=False)
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return Path(path)


def weights_path(settings: Any) -> str | None:
    """The weight file that settings (``Settings.as_dict()``, a record's ``settings``) name, or ``None`` (the
    shipped weights, a classic method)."""
    fusion = settings.get("fusion") if isinstance(settings, Mapping) else None
    path = fusion.get("weights") if isinstance(fusion, Mapping) else None
    return str(path) if isinstance(path, (str, os.PathLike)) and str(path) else None


def _with_weights_input(content: Mapping[str, Any]) -> Mapping[str, Any]:
    """``content`` with the weight file its settings name fingerprinted among its inputs (``inputs.weights``): a
    file replaced at the same path (retrained weights) changes the outputs, and the same file named by another
    spelling of its path (``--bundle_root`` absolute) does not."""
    path = weights_path(content.get("settings"))
    inputs = content.get("inputs")
    if path is None or not isinstance(inputs, Mapping) or "weights" in inputs or not Path(path).is_file():
        return content
    return {**content, "inputs": {**inputs, "weights": fingerprint(path)}}


def _strict_json(value: Any) -> Any:
    """Non-finite numbers (NaN, Inf: e.g. the metric of ``--registration none``) become ``null``: strict JSON, as
    BIDS validators and other JSON readers require."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def _still_there(record: Mapping[str, Any] | None) -> dict[str, int]:
    """The files a record lists (its ``outputs`` and ``earlier_outputs``) that still exist with the recorded size:
    resolved path -> size."""
    if record is None:
        return {}
    outputs = record.get("outputs")
    entries = [*(outputs.values() if isinstance(outputs, Mapping) else []), *(record.get("earlier_outputs") or [])]
    found = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
            continue
        p = Path(entry["path"])
        with contextlib.suppress(OSError):
            if p.is_file() and p.stat().st_size == entry.get("size"):
                found[str(p.resolve())] = int(entry["size"])
    return found


def recorded_outputs(path: str | os.PathLike) -> set[Path]:
    """The files that asfe3d wrote, as the record at ``path`` knows them: the outputs of the recorded run and those
    of earlier runs that it carried forward (``earlier_outputs``: an earlier run's ``--rgb`` volume when the next
    run asked for none), each only while it still exists with the recorded size (a file put there since is not
    one of ours).

    Args:
        path: the record (:func:`record_path` of the fused volume).

    Returns:
        Resolved paths; empty when there is no record.
    """
    return {Path(p) for p in _still_there(read_record(path))}


def check_record_name(record: str | os.PathLike) -> None:
    """Refuse a file at a completion record's name that is not an asfe3d record (a BIDS sidecar, notes of the
    user's): the record would replace it, ``--overwrite`` or not.

    Raises:
        Asfe3dInputError: ``record`` exists and is not a completion record.
    """
    from asfe3d.errors import Asfe3dInputError

    record = Path(record)
    if record.is_file() and read_record(record) is None:
        raise Asfe3dInputError(
            record, "exists and is not an asfe3d completion record (a sidecar or file of your own?); the record "
            "beside the fused volume would replace it, --overwrite or not: move it or choose another output name"
        )


def redo_hint(fused: str | os.PathLike, existing: Iterable[str | os.PathLike]) -> str:
    """What a user can do about ``existing`` files in the way of the outputs named by ``fused``: ``--overwrite``
    when an asfe3d record is there (an earlier run of asfe3d: the files it lists are its own; a file it does not
    list is still refused then, by :func:`check_outputs_are_ours`), else move them (without any record, none of them
    is asfe3d's, and ``--overwrite`` never replaces a file asfe3d did not write)."""
    record = record_path(fused)
    theirs = [Path(p) for p in existing if Path(p).resolve() != record.resolve()]
    if read_record(record) is not None or not theirs:
        return "pass --overwrite to redo it"
    return (f"{theirs[0].name} was not written by asfe3d (no record lists it): move it or choose another output "
            "folder; --overwrite replaces asfe3d's own outputs only")


def check_outputs_are_ours(fused: str | os.PathLike, paths: Iterable[str | os.PathLike],
                           replaceable: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse to replace, even with ``--overwrite``, an existing file that no record lists as asfe3d's: a file of
    the user's at the fused volume's path (``-o`` typed over another image by mistake), at an optional output's
    path, or under an optional output's default name (``<stem>_rgb.nii.gz``, ``<stem>_preview.png``...:
    :func:`asfe3d.io.volume.derived_output_paths`), a name the user never typed. ``--overwrite`` replaces this
    command's earlier outputs only.

    Only called with ``overwrite``: without it every existing file is refused anyway.

    Args:
        fused: the run's fused output (its record is :func:`record_path` of it).
        paths: the run's output paths.
        replaceable: files this run may replace anyway (:func:`replaceable_outputs`).

    Raises:
        Asfe3dInputError: an existing file that the record does not list as asfe3d's (:func:`recorded_outputs`).
    """
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io.volume import derived_output_paths

    defaults = {p.resolve() for p in derived_output_paths(fused).values()}
    ours = recorded_outputs(record_path(fused)) | {Path(p).resolve() for p in replaceable}
    for path in (Path(p).resolve() for p in paths):
        if not path.is_file() or path in ours:
            continue
        what = "an optional output's default name" if path in defaults else "an output's name"
        raise Asfe3dInputError(
            path, f"exists and {record_path(fused).name} does not list it as an earlier asfe3d output (a file of "
            f"your own?); a file that asfe3d did not write is never replaced under {what}, --overwrite or not "
            "(--overwrite replaces this command's earlier outputs only): move it or choose another output name"
        )


def pending_outputs(path: str | os.PathLike) -> list[Path]:
    """The outputs listed by a *pending* record (a run interrupted while renaming) or a *refused* one (the report of
    a registration refused under ``--qc strict``); empty otherwise."""
    record = read_record(path)
    if record is None or record.get("status") not in ("pending", "refused"):
        return []
    entries = record.get("outputs", {})
    if record.get("status") == "refused":  # its report alone, and only as written (not a file changed since)
        entries = {k: e for k, e in entries.items() if k == "report" and not _changed_since(e)}
    return [Path(entry["path"]) for entry in entries.values() if entry.get("path")]


def _changed_since(entry: Mapping[str, Any]) -> bool:
    """Whether a listed file exists with another size than the record's (edited or replaced since)."""
    p = Path(str(entry.get("path", "")))
    try:
        return p.is_file() and p.stat().st_size != entry.get("size")
    except OSError:
        return True


def replaceable_outputs(fused: str | os.PathLike) -> list[Path]:
    """Existing files that a new run of the outputs named by ``fused`` may replace without ``--overwrite``.

    These are asfe3d's own: the outputs listed by a pending record (a run interrupted while renaming) or a refused
    one (its report) and that record, or a record whose fused output is gone. Anything else existing needs ``--overwrite``.

    Args:
        fused: the run's first output (its record is :func:`record_path` of it).

    Returns:
        The replaceable paths.
    """
    record = record_path(fused)
    replaceable = pending_outputs(record)
    if replaceable or (read_record(record) is not None and not Path(fused).exists()):
        replaceable.append(record)
    return replaceable


#: settings that do not change what a run writes (a run recorded with other values is still this run)
_RESULT_NEUTRAL = {("fusion", "device"), ("registration", "threads"), ("outputs", "overwrite"),
                   ("outputs", "registered_pet"), ("outputs", "rgb"), ("outputs", "transform"), ("outputs", "preview"),
                   ("outputs", "report"), ("bundle", "device")}


#: the settings that name the weight file by its path (the bundle records its ``ckpt_path`` as well)
_WEIGHT_PATHS = {("fusion", "weights"), ("bundle", "weights")}


def same_weights(record: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether the weight file that ``wanted`` settings name is, by content, the one a record fingerprinted
    (``inputs.weights``; records before 2026-12-07 have none: ``False``, so their paths are compared)."""
    path = weights_path(wanted)
    inputs = record.get("inputs") if isinstance(record, Mapping) else None
    want = inputs.get("weights") if isinstance(inputs, Mapping) else None
    if path is None or not isinstance(want, Mapping) or not isinstance(want.get("sha256"), str):
        return False
    try:
        return _input_difference("weights", want, path) is None
    except OSError:
        return False


def settings_difference(recorded: Any, wanted: Mapping[str, Mapping[str, Any]], *,
                        same_weights: bool = False) -> str | None:
    """The first setting that would make this run's outputs differ from a recorded run's, as
    ``"fusion.method 'mean' -> 'max'"``, or ``None`` when none does.

    Args:
        recorded: the record's ``settings`` (``Settings.as_dict()`` of the recorded run).
        wanted: this run's ``Settings.as_dict()``.
        same_weights: the weight file was found to be the recorded one by its content (:func:`same_weights`): the
            spelling of its path is then left out (``models/model.pt`` against the same file named absolutely).

    Which optional outputs are asked for is left out (the outputs themselves are compared by :func:`check_record`),
    and so are the device, the registration's thread count and ``overwrite``.
    """
    if not isinstance(recorded, Mapping):
        return "the record holds no settings"
    wanted = json.loads(json.dumps(_strict_json(wanted), default=str))  # as a record holds it (tuples as lists...)
    for group, values in wanted.items():
        if not isinstance(values, Mapping):
            continue
        had = recorded.get(group) if isinstance(recorded.get(group), Mapping) else {}
        for key, value in values.items():
            if (group, key) in _RESULT_NEUTRAL or (same_weights and (group, key) in _WEIGHT_PATHS):
                continue
            if key not in had:  # damaged, or a record of a version before the option: what it did is not known
                return f"{group}.{key} not recorded -> {_short(value)}"
            before = had[key]
            if before != value:
                if isinstance(before, Mapping) and isinstance(value, Mapping):  # metadata: the first key that differs
                    first = next(k for k in sorted(set(before) | set(value), key=str) if before.get(k) != value.get(k))
                    return f"{group}.{key}[{first!r}] {before.get(first)!r} -> {value.get(first)!r}"
                return f"{group}.{key} {_short(before)} -> {_short(value)}"
    return None


def _short(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_record(path: str | os.PathLike, outputs: Mapping[str, str | os.PathLike],
                 inputs: Mapping[str, str | os.PathLike],
                 settings: Mapping[str, Mapping[str, Any]] | None = None) -> str | None:
    """Whether a run is complete: ``None`` when it is, else the reason it is not.

    Args:
        path: the record's path.
        outputs: output kind -> path that this run asks for (every one must be recorded, exist, same size).
        inputs: input role -> path (each must match its recorded fingerprint).
        settings: this run's ``Settings.as_dict()``; when given, a record made with settings that change the
            outputs (:func:`settings_difference`) is not this run.

    Returns:
        ``None`` for a complete run, else a short reason (``"no completion record"``...).
    """
    record = read_record(path)
    if record is None:
        return "no completion record"
    if record.get("status") == "refused":
        return "the recorded run was refused (registration judged failed under --qc strict)"
    if record.get("status") != "complete":
        return f"completion record says {record.get('status')!r} (an interrupted run)"
    changed = None if settings is None else settings_difference(record.get("settings"), settings,
                                                                 same_weights=same_weights(record, settings))
    if changed is not None:
        return f"the recorded run had other settings ({changed})"
    if settings is not None and weights_path(settings) is not None:  # the file this run would load, by content
        inputs = {**inputs, "weights": weights_path(settings)}
    recorded = record.get("outputs", {})
    for kind, p in outputs.items():
        entry = recorded.get(kind)
        p = Path(p).resolve()
        if entry is None or Path(entry.get("path", "")) != p:
            return f"the {kind} output {p} was not part of the recorded run"
        if not p.is_file():
            return f"the {kind} output {p} is missing"
        if output_changed(entry, p):
            return f"the {kind} output {p} changed since it was written"
    recorded_inputs = record.get("inputs") if isinstance(record.get("inputs"), Mapping) else {}
    # the roles asked for, and every other recorded input (the sidecar the PET was read with) at its recorded path
    checks = dict(inputs)
    for role, want in recorded_inputs.items():
        if role not in checks and isinstance(want, Mapping) and want.get("path"):
            checks[role] = want["path"]
    if "weights" not in recorded_inputs:  # a record before weights were fingerprinted (2026-12-07), or of weights
        checks.pop("weights", None)  # that were no file: their path was compared with the settings above
    for role, p in checks.items():
        want = recorded_inputs.get(role)
        if isinstance(want, Mapping) and want.get("absent"):
            if Path(want.get("path", "")).exists():
                return f"the {role} input {want['path']} appeared since the recorded run (which had none)"
            continue
        if want is None:
            return f"the {role} input {p} is not in the recorded run"
        try:
            differs = _input_difference(role, want, p)
        except OSError:
            return f"the {role} input {p} cannot be read"
        if differs is not None:
            return differs
    return None


def output_changed(entry: Mapping[str, Any], path: str | os.PathLike) -> bool:
    """Whether an existing output is not the file a record lists (``entry``: its size and, in records of this
    version, its times, inode and SHA-256): another size, or, once it is not the same file untouched, another
    content (two subjects' fused volumes of one size exchanged passed by size alone)."""
    now = fingerprint(path, digest=False)
    if entry.get("size") is not None and entry.get("size") != now["size"]:
        return True
    if not isinstance(entry.get("sha256"), str) or _untouched(entry, now, ("mtime_ns", "ctime_ns", "inode")):
        return False
    return content_digest(path) != entry["sha256"]


def _untouched(want: Mapping[str, Any], now: Mapping[str, Any],
               keys: tuple[str, ...] = ("path", "size", "mtime_ns", "ctime_ns", "inode")) -> bool:
    """Whether a file (``now``: :func:`fingerprint` without digest) is the recorded one untouched: the same
    ``keys`` (a key an older record lacks is not compared)."""
    return all(want.get(k, now[k]) == now[k] for k in keys)


def _input_difference(role: str, want: Mapping[str, Any], path: str | os.PathLike) -> str | None:
    """Whether the input at ``path`` is the recorded one (``want``: its :func:`fingerprint`).

    The same file, untouched since (path, size, modification and status-change times, inode), is; anything else is
    judged by content: the recorded SHA-256 against the file's. So an input moved or renamed, reached through a link,
    copied with ``cp -r`` (new times) is the recorded one, and one exchanged for another file of the same size and
    time (two PETs swapped, from one archive) is not. Records written before digests were recorded compare size and
    modification time, and take a file whose recorded path is gone for the recorded one.
    """
    now = fingerprint(path, digest=False)
    if all(k in want for k in ("path", "size", "mtime_ns")) and _untouched(want, now):
        return None
    if isinstance(want.get("sha256"), str):
        if content_digest(now["path"]) == want["sha256"]:
            return None
        return f"the {role} input {now['path']} changed since the recorded run (its content is not the recorded one)"
    if "ctime_ns" in want or "inode" in want:  # a record of this version without its digest: damaged, cannot tell
        return f"the {role} input {now['path']} was touched since the recorded run, whose content digest is missing"
    if want.get("size") != now["size"] or want.get("mtime_ns") != now["mtime_ns"]:
        return f"the {role} input {now['path']} changed since the recorded run"
    recorded = Path(str(want.get("path", "")))
    try:
        if not recorded.exists() or recorded.resolve() == Path(now["path"]):
            return None
    except OSError:
        return None
    return (f"the {role} input {now['path']} is not the recorded one ({recorded}, which is still there); a copy "
            "of the inputs is another input")
