"""Finding the T1w/PET pairs of a BIDS dataset (with pybids).

Every PET image (``pet/*_pet.nii[.gz]``) of a selected subject and session is one pair; its T1w
(``anat/*_T1w.nii[.gz]``) is chosen by these rules, in order:

1. the T1w images of the PET's own session (or, without sessions, of the subject);
2. when that session has none: the subject's T1w images of any session (longitudinal studies often acquire one
   MRI for several PET sessions), used only when they reduce to one image by rule 3 (so T1w images of two other
   sessions are ambiguous); the pair's note says which;
3. several candidates that differ only in their ``run`` entity: the lowest run is taken (logged). Candidates that
   differ in anything else (``session``, ``acq``, ``rec``, ``ce``, ``echo``...) are ambiguous: the pair fails with a
   one-line error listing them (fix the dataset, e.g. with a ``.bidsignore``, or select other sessions).

Files that the dataset's ``.bidsignore`` lists (gitignore-style globs relative to the dataset root, as the BIDS
validator reads them; see :class:`BidsIgnore`) are left out of the T1w and PET selection: pybids indexes them anyway.

Subjects (or selected sessions) without a PET are reported as skipped with a message, not as errors.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asfe3d.errors import Asfe3dInputError

__all__ = ["BidsIgnore", "BidsPair", "BidsIssue", "find_pairs", "normalise_labels", "PET_ENTITY_ORDER"]

logger = logging.getLogger("asfe3d")

_EXTENSIONS = [".nii", ".nii.gz"]
#: PET filename entities kept in derivative names, in BIDS order, as (pybids entity, filename key)
PET_ENTITY_ORDER = (("task", "task"), ("acquisition", "acq"), ("tracer", "trc"), ("reconstruction", "rec"),
                    ("run", "run"))
#: entities whose differences do not make T1w candidates ambiguous (``session`` does: rule 2 takes another
#: session's T1w only when one session has it)
_IGNORED = {"subject", "suffix", "extension", "datatype", "run"}


@dataclass(frozen=True)
class BidsPair:
    """One PET image of a BIDS dataset and the T1w it is fused with.

    Attributes:
        subject: the subject label (without ``sub-``).
        session: the PET's session label (without ``ses-``) or ``None``.
        t1w: the T1w image.
        pet: the PET image.
        entities: the PET's filename entities kept in derivative names (``task``, ``acq``, ``trc``, ``rec``,
            ``run``: filename key -> value).
        metadata: the PET's JSON sidecar (with BIDS inheritance), e.g. ``TracerName``, ``Units``.
        note: how the T1w was chosen when it was not the only T1w of the PET's session.
        metadata_sources: metadata key -> the JSON file that gave its value (the deepest that has it), so that a
            message about a value can name the file to fix, which may be a dataset-level one.
    """

    subject: str
    session: str | None
    t1w: Path
    pet: Path
    entities: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    metadata_sources: dict[str, Path] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """The derivative file-name prefix: ``sub-<s>[_ses-<t>][_task-..][_acq-..][_trc-..][_rec-..][_run-..]``."""
        parts = [f"sub-{self.subject}"]
        if self.session:
            parts.append(f"ses-{self.session}")
        parts.extend(f"{key}-{self.entities[key]}" for _, key in PET_ENTITY_ORDER if key in self.entities)
        return "_".join(parts)

    @property
    def folder(self) -> Path:
        """The derivative folder relative to the output root: ``sub-<s>[/ses-<t>]/pet``."""
        base = Path(f"sub-{self.subject}")
        return (base / f"ses-{self.session}" if self.session else base) / "pet"

    @property
    def label(self) -> str:
        """A short title for reports: ``ses-bl, trc-FDG`` (``pet`` when there is nothing to tell)."""
        parts = [f"ses-{self.session}"] if self.session else []
        parts.extend(f"{key}-{self.entities[key]}" for _, key in PET_ENTITY_ORDER if key in self.entities)
        return ", ".join(parts) or "pet"


@dataclass(frozen=True)
class BidsIssue:
    """A subject, session or PET that gives no pair.

    Attributes:
        subject: the subject label.
        session: the session label or ``None``.
        kind: ``no-pet`` (skipped: nothing to fuse) or ``error`` (a PET that cannot be paired: no or ambiguous
            T1w).
        message: one line saying why.
        pet: the PET concerned (for ``error``).
    """

    subject: str
    session: str | None
    kind: str
    message: str
    pet: Path | None = None


class BidsIgnore:
    """The rules of a dataset's ``.bidsignore``: gitignore-style globs relative to the dataset root.

    As the BIDS validator reads them: blank lines and ``#`` comments are skipped; a pattern with a ``/`` (other
    than a trailing one) is anchored at the root (a leading ``/`` only anchors), one without matches a file or
    folder name at any depth; ``*`` and ``?`` do not cross ``/``, ``**`` does (``**/x``, ``a/**``, ``a/**/b``);
    ``[...]`` is a character class; a trailing ``/`` matches folders only; ``!`` re-includes what an earlier
    pattern excluded (the last matching pattern wins); a path inside an ignored folder is ignored.

    Args:
        lines: the file's lines.

    Example:
        >>> BidsIgnore(["*acq-spgr*"]).ignored("sub-01/anat/sub-01_acq-spgr_T1w.nii.gz")
        True
    """

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.rules: list[tuple[re.Pattern[str], bool, bool]] = []  # (regex, negated, folders only)
        for raw in lines:
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            if line.endswith(" ") and not line.endswith("\\ "):
                line = line.rstrip(" ")
            negated = line.startswith("!")
            line = line[1:] if negated else line
            folders_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            line = line[1:] if line.startswith("/") else line
            if not line:
                continue
            body = _glob_regex(line)
            self.rules.append((re.compile(("" if anchored else "(?:.*/)?") + body + r"\Z", re.DOTALL), negated,
                               folders_only))

    @classmethod
    def from_dataset(cls, bids_dir: str | Path) -> BidsIgnore:
        """The rules of ``bids_dir/.bidsignore`` (none when there is no such file).

        Raises:
            Asfe3dInputError: a ``.bidsignore`` that cannot be read as UTF-8 text.
        """
        path = Path(bids_dir) / ".bidsignore"
        if not path.is_file():
            return cls()
        try:
            return cls(path.read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError) as exc:
            raise Asfe3dInputError(path, f"cannot read it ({getattr(exc, 'strerror', None) or exc})") from None

    def _matches(self, path: str, folder: bool) -> bool:
        hit = False
        for regex, negated, folders_only in self.rules:
            if (folder or not folders_only) and regex.match(path):
                hit = not negated
        return hit

    def ignored(self, relpath: str, *, folder: bool = False) -> bool:
        """Whether a path (relative to the dataset root, ``/``-separated) is ignored, itself or by a parent folder.

        Args:
            relpath: e.g. ``"sub-01/anat/sub-01_T1w.nii.gz"``.
            folder: the path is a folder.
        """
        if not self.rules:
            return False
        parts = [p for p in relpath.split("/") if p]
        return any(self._matches("/".join(parts[:k]), folder or k < len(parts)) for k in range(1, len(parts) + 1))


def _glob_regex(glob: str) -> str:
    """A gitignore glob (no leading ``/``, no trailing ``/``) as a regular expression (without anchors)."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**", i) and (i == 0 or glob[i - 1] == "/") and (i + 2 == n or glob[i + 2] == "/"):
            out.append(".*" if i + 2 == n else "(?:.*/)?")  # "a/**": all inside; "**/": any folders, or none
            i += 3
            continue
        if c == "*":
            while glob.startswith("*", i + 1):
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        elif c == "[":
            k = i + 1 + (glob[i + 1:i + 2] in ("!", "^"))
            end = glob.find("]", k + 1)  # a "]" right after "[" or "[!" is a member
            if end < 0:
                out.append(re.escape(c))
            else:
                members = glob[k:end].replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
                out.append(("[^/" if k > i + 1 else "[") + members + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def normalise_labels(labels: Iterable[str] | None, prefix: str) -> list[str] | None:
    """Labels as given on the command line, without their ``sub-``/``ses-`` prefix; ``None`` for no filter.

    Args:
        labels: e.g. ``["sub-01", "02"]``.
        prefix: ``"sub-"`` or ``"ses-"``.

    Returns:
        e.g. ``["01", "02"]`` (order kept, duplicates dropped), or ``None``.

    Raises:
        Asfe3dInputError: an empty label or one with characters BIDS labels cannot hold.
    """
    if labels is None:
        return None
    out: list[str] = []
    option = "--participant-label" if prefix == "sub-" else "--session-label" if prefix == "ses-" else None
    for raw in labels:
        label = str(raw).strip().rstrip("/")  # "sub-01/": a shell's completion of the subject's folder
        if label.startswith(prefix):
            label = label[len(prefix):]
        if not label or not label.isalnum():
            raise Asfe3dInputError(option, f"bad {prefix.rstrip('-')} label {raw!r} (BIDS labels are letters and "
                                           "digits only)")
        if label not in out:
            out.append(label)
    return out


def _layout(bids_dir: Path) -> Any:
    try:
        from bids import BIDSLayout, BIDSLayoutIndexer
    except ImportError as exc:  # pragma: no cover - pybids is a dependency
        raise ImportError("asfe3d bids needs pybids: pip install pybids") from exc
    if not bids_dir.exists():
        raise Asfe3dInputError(bids_dir, "BIDS folder does not exist")
    if not bids_dir.is_dir():
        raise Asfe3dInputError(bids_dir, "BIDS_DIR must be a folder (the root of a BIDS dataset)")
    if not (bids_dir / "dataset_description.json").is_file():
        raise Asfe3dInputError(bids_dir, "not a BIDS dataset: dataset_description.json is missing")
    _check_description(bids_dir / "dataset_description.json")
    try:
        # metadata is not indexed: pybids reads every sidecar of the dataset up front, so one broken JSON of any
        # subject stopped every run; each PET's metadata is read for its own pair (pet_metadata)
        return BIDSLayout(str(bids_dir), validate=False, derivatives=False,
                          indexer=BIDSLayoutIndexer(index_metadata=False))
    except Exception as exc:  # noqa: BLE001 - pybids raises several types for unreadable datasets
        raise Asfe3dInputError(bids_dir, f"cannot index the BIDS dataset ({type(exc).__name__}: {exc})") from None


def _check_description(path: Path) -> None:
    """Refuse a ``dataset_description.json`` that is not a readable JSON object (pybids would accept it); warn when it
    lacks what BIDS requires of it (``Name``, ``BIDSVersion``: the BIDS validator, which fMRIPrep runs first, fails
    such a dataset) or says the dataset is a derivative (other pipelines' outputs read as raw data)."""
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Asfe3dInputError(path, f"cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise Asfe3dInputError(path, "not UTF-8 text (BIDS JSON files are UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise Asfe3dInputError(path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(description, dict):
        raise Asfe3dInputError(path, f"must hold a JSON object, not a {type(description).__name__}")
    missing = [key for key in ("Name", "BIDSVersion") if not description.get(key)]
    if missing:
        logger.warning("%s: lacks %s, required by BIDS (the BIDS validator fails the dataset); read as BIDS anyway",
                       path, " and ".join(missing))
    if str(description.get("DatasetType", "")).strip().lower() == "derivative":
        logger.warning("%s: DatasetType is 'derivative': the T1w and PET images read are another pipeline's outputs, "
                       "not raw data", path)


def _run_number(entities: dict[str, Any]) -> int:
    run = entities.get("run")
    try:
        return int(run)
    except (TypeError, ValueError):
        return -1  # no run entity sorts first


def _pick_t1w(candidates: Sequence[Any], where: str) -> tuple[Any | None, str]:
    """One T1w from candidates (pybids files): rule 3 of the module docstring. ``(None, reason)`` if ambiguous."""
    if len(candidates) == 1:
        return candidates[0], ""
    keys = [tuple(sorted((k, str(v)) for k, v in c.get_entities().items() if k not in _IGNORED))
            for c in candidates]
    if len(set(keys)) > 1:
        names = ", ".join(sorted(Path(c.path).name for c in candidates))
        return None, (f"several T1w images {where} differ in more than their run ({names}); asfe3d cannot "
                      "choose: keep one (e.g. list the others in .bidsignore)")
    chosen = min(candidates, key=lambda c: (_run_number(c.get_entities()), Path(c.path).name))
    names = ", ".join(sorted(Path(c.path).name for c in candidates))
    twins = [c for c in candidates if _run_number(c.get_entities()) == _run_number(chosen.get_entities())]
    if len(twins) > 1:  # one name in two files (sub-01_T1w.nii and .nii.gz): no run to tell them apart
        return None, (f"several T1w images {where} share one name but their extension "
                      f"({', '.join(sorted(Path(c.path).name for c in twins))}); asfe3d cannot choose: keep one")
    return chosen, f"{len(candidates)} T1w runs {where} ({names}): took the lowest run, {Path(chosen.path).name}"


def find_pairs(
    bids_dir: str | Path,
    *,
    participant_labels: Sequence[str] | None = None,
    session_labels: Sequence[str] | None = None,
) -> tuple[list[BidsPair], list[BidsIssue]]:
    """Find the T1w/PET pairs of a BIDS dataset.

    Files (and subject folders) that the dataset's ``.bidsignore`` lists are left out (:class:`BidsIgnore`).

    Args:
        bids_dir: the dataset's root (with ``dataset_description.json``).
        participant_labels: subjects to process (with or without ``sub-``); ``None``: all.
        session_labels: sessions to process (with or without ``ses-``); ``None``: all. Subjects without
            sessions are processed only when no session filter is given.

    Returns:
        ``(pairs, issues)``: the pairs sorted by subject, session and PET name; the subjects/sessions without a
        PET (``no-pet``) and the PETs without a usable T1w (``error``).

    Raises:
        Asfe3dInputError: a missing or non-BIDS folder, a ``dataset_description.json`` that is not a JSON object,
            an unreadable ``.bidsignore``, an unknown participant or session label, or a dataset with no subject.
    """
    bids_dir = Path(bids_dir).expanduser()
    participants = normalise_labels(participant_labels, "sub-")
    sessions = normalise_labels(session_labels, "ses-")
    layout = _layout(bids_dir)
    ignore = BidsIgnore.from_dataset(bids_dir)
    subjects = sorted(s for s in layout.get_subjects() if not ignore.ignored(f"sub-{s}", folder=True))
    if not subjects:
        raise Asfe3dInputError(bids_dir, "the BIDS dataset holds no subject (no sub-* folder)")
    if participants is not None:
        unknown = [p for p in participants if p not in subjects]
        if unknown:
            raise Asfe3dInputError(bids_dir, f"participant label(s) {unknown} not found; the dataset has "
                                             f"{_listing(subjects)}")
        subjects = [s for s in subjects if s in participants]
    root = Path(layout.root)

    def kept(**filters: Any) -> list[Any]:  # pybids' files, without those .bidsignore lists
        return [f for f in layout.get(return_type="object", **filters)
                if not ignore.ignored(Path(f.path).relative_to(root).as_posix())]

    if sessions is not None:  # the sessions of files that are not ignored
        known = sorted({f.get_entities().get("session") for f in kept(subject=subjects)} - {None})
        unknown = [s for s in sessions if s not in known]
        if unknown:
            raise Asfe3dInputError(bids_dir, f"session label(s) {unknown} not found for the selected subjects; "
                                             f"they have {_listing(known) if known else 'no sessions'}")
    pairs: list[BidsPair] = []
    issues: list[BidsIssue] = []
    warned: set[str] = set()
    for subject in subjects:
        files = kept(subject=subject, suffix=["T1w", "pet"], extension=_EXTENSIONS)
        t1w = [f for f in files if f.get_entities().get("suffix") == "T1w"
               and f.get_entities().get("datatype") == "anat"]
        pets = [f for f in files if f.get_entities().get("suffix") == "pet"
                and f.get_entities().get("datatype") == "pet"]
        subject_sessions = sorted({f.get_entities().get("session") for f in files} - {None})
        elsewhere = pets
        if sessions is not None:
            pets = [p for p in pets if p.get_entities().get("session") in sessions]
        if not pets:
            where = (f"session(s) {', '.join('ses-' + s for s in sessions)}" if sessions is not None
                     else "any session" if subject_sessions else "the subject")
            # a subject whose PETs lie outside the sessions asked for was reported as having none
            held = sorted({str(p.get_entities().get("session") or "") for p in elsewhere})
            more = "" if not elsewhere else (" (its PET is in " + ", ".join(
                f"ses-{h}" if h else "no session" for h in held) + ", not selected by --session-label)")
            issues.append(BidsIssue(subject, None, "no-pet", f"sub-{subject}: no PET (pet/*_pet.nii[.gz]) in "
                                                             f"{where}{more}; skipped"))
            continue
        for ses in sessions if sessions is not None else subject_sessions:  # sessions with a T1w but no PET
            if ses in subject_sessions and not any(p.get_entities().get("session") == ses for p in pets):
                issues.append(BidsIssue(subject, ses, "no-pet", f"sub-{subject} ses-{ses}: no PET; skipped"))
        for pet in sorted(pets, key=lambda f: f.path):
            found = _pair_pet(pet, t1w, subject, root, warned)
            (pairs if isinstance(found, BidsPair) else issues).append(found)
    return _without_name_clashes(pairs, issues)


def _without_name_clashes(pairs: list[BidsPair], issues: list[BidsIssue]) -> tuple[list[BidsPair], list[BidsIssue]]:
    """Pairs whose derivatives would have the same names (two PETs that differ only in entities the names do not
    keep: ``desc``, ``space``, ``res``... of a derivatives dataset) become ``error`` issues, all of them: fusing both
    wrote one set of files, the second run's replacing the first's (with ``--overwrite``) or refused as "changed"."""
    groups: dict[tuple[Path, str], list[BidsPair]] = {}
    for pair in pairs:
        groups.setdefault((pair.folder, pair.prefix), []).append(pair)
    kept = []
    for pair in pairs:
        same = groups[(pair.folder, pair.prefix)]
        if len(same) == 1:
            kept.append(pair)
            continue
        others = ", ".join(p.pet.name for p in same if p is not pair)
        issues.append(BidsIssue(pair.subject, pair.session, "error", (
            f"{pair.pet.name}: its derivatives would have the same names ({pair.prefix}_desc-fused_pet...) as those "
            f"of {others}: the PETs differ only in entities the derivative names do not keep (desc, space, res...); "
            "list the ones not to fuse in .bidsignore, or fuse them one by one with asfe3d fuse"), pet=pair.pet))
    return kept, issues


def _pair_pet(pet: Any, t1w: Sequence[Any], subject: str, root: Path, warned: set[str]) -> BidsPair | BidsIssue:
    """One PET (pybids file) with its T1w chosen among the subject's ``t1w`` by the rules of the module docstring,
    or the ``error`` issue saying why none can be; a T1w-choice note is warned once per ``warned`` set (a run's)."""
    ents = pet.get_entities()
    session = ents.get("session")
    where = f"in sub-{subject}" + (f" ses-{session}" if session else "")
    same = [f for f in t1w if f.get_entities().get("session") == session]
    if same:
        chosen, note = _pick_t1w(same, where)
    elif t1w:
        chosen, note = _pick_t1w(t1w, f"in sub-{subject}'s other sessions")
        if chosen is None:
            note = f"no T1w {where}, and {note}"
        else:
            other = chosen.get_entities().get("session")
            note = (f"no T1w {where}: took {Path(chosen.path).name}"
                    + (f" from ses-{other}" if other else "") + (f" ({note})" if note else ""))
    else:
        chosen, note = None, f"no T1w image (anat/*_T1w.nii[.gz]) for sub-{subject}"
    if chosen is None:
        return BidsIssue(subject, session, "error", f"{Path(pet.path).name}: {note}", pet=Path(pet.path))
    if note and note not in warned:  # once per run, not once per PET of the subject
        warned.add(note)
        logger.warning("%s", note)
    entities = {key: str(ents[name]) for name, key in PET_ENTITY_ORDER if ents.get(name) is not None}
    if "run" in entities:
        entities["run"] = str(ents["run"])  # pybids gives a PaddedInt; keep the file's padding
    try:
        sources: dict[str, Path] = {}
        metadata = pet_metadata(Path(pet.path), Path(root), sources=sources)
    except Asfe3dInputError as exc:  # this pair fails, the others go on
        return BidsIssue(subject, session, "error", str(exc), pet=Path(pet.path))
    return BidsPair(subject, session, Path(chosen.path), Path(pet.path), entities, metadata, note, sources)


def _name_entities(name: str) -> tuple[dict[str, str], str] | None:
    """``(entities, suffix)`` of a BIDS file name without its extension (``sub-01_trc-FDG_pet`` ->
    ``({"sub": "01", "trc": "FDG"}, "pet")``); ``None`` for a name that is not ``key-value_..._suffix``."""
    parts = name.split("_")
    entities = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if not sep or not key or not value:
            return None
        entities[key] = value
    return entities, parts[-1]


def _same_entity(key: str, value: str | None, wanted: str) -> bool:
    """Whether an image's entity value is a sidecar's: ``run`` (and ``echo``, ``flip``, ``inv``) are numbers
    (``run-01`` is ``run-1``), the rest text."""
    if value is None:
        return False
    if key in ("run", "echo", "flip", "inv") and value.isdigit() and wanted.isdigit():
        return int(value) == int(wanted)
    return value == wanted


def pet_metadata(image: Path, root: Path, *, sources: dict[str, Path] | None = None) -> dict[str, Any]:
    """A data file's JSON metadata by the BIDS inheritance principle.

    Every ``*.json`` from the dataset's root down to the image's folder whose suffix is the image's and whose
    entities are all the image's (same values) applies; a deeper file's keys replace a higher one's. Two applicable
    files in one folder are ambiguous (the specification forbids them).

    Args:
        image: the data file (``.nii`` / ``.nii.gz``).
        root: the dataset's root.
        sources: filled, when given, with each key's file (the deepest applicable file that has the key).

    Returns:
        The merged metadata (empty when no file applies).

    Raises:
        Asfe3dInputError: an applicable file that is not valid JSON or not a JSON object, or two applicable files
            in one folder (the file named).
    """
    import json

    name = image.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name.rsplit(".", 1)[0]
    parsed = _name_entities(stem)
    if parsed is None:
        return {}
    entities, suffix = parsed
    root = root.resolve()
    folder = image.parent.resolve()
    levels = [folder, *folder.parents]
    levels = levels[: levels.index(root) + 1] if root in levels else [folder]
    merged: dict[str, Any] = {}
    for level in reversed(levels):  # the root first: deeper files override
        found = []
        for candidate in sorted(level.glob(f"*_{suffix}.json")) + sorted(level.glob(f"{suffix}.json")):
            if not candidate.is_file():  # a folder named like a sidecar
                continue
            own = _name_entities(candidate.name[: -len(".json")]) if candidate.name != f"{suffix}.json" else ({}, suffix)
            if own is not None and own[1] == suffix and all(_same_entity(k, entities.get(k), v)
                                                            for k, v in own[0].items()):
                found.append(candidate)
        if len(found) > 1:
            raise Asfe3dInputError(found[1], f"two JSON sidecars in one folder apply to {name} ({found[0].name} and "
                                             f"{found[1].name}): the BIDS inheritance principle allows one per level")
        for candidate in found:
            try:
                meta = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise Asfe3dInputError(candidate, f"JSON sidecar of {name} cannot be read ({type(exc).__name__}: "
                                                  f"{exc})") from None
            if not isinstance(meta, dict):
                raise Asfe3dInputError(candidate, f"JSON sidecar of {name} is not a JSON object (it is a "
                                                  f"{type(meta).__name__})")
            merged.update(meta)
            if sources is not None:
                sources.update(dict.fromkeys(meta, candidate))
    return merged


def _listing(labels: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")
