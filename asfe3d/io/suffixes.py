"""The file-name suffixes of the images asfe3d reads, in one place (the reader, the sidecar lookup and the cohort
folder scanner all name files by them)."""

from __future__ import annotations

__all__ = ["VOLUME_SUFFIXES", "PAIR_SUFFIXES", "image_stem"]

#: single-file images: NIfTI, MHA / MHD, NRRD, FreeSurfer MGH / MGZ (longest first where one ends another)
VOLUME_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".mgh.gz", ".mgz", ".mgh")
#: the two files of a NIfTI pair (either may be named), optionally gzipped
PAIR_SUFFIXES: tuple[str, ...] = (".hdr.gz", ".img.gz", ".hdr", ".img")


def image_stem(name: str, suffixes: tuple[str, ...] = VOLUME_SUFFIXES + PAIR_SUFFIXES) -> str | None:
    """``name`` without its image suffix (any case: ``sub-01_pet`` for ``sub-01_pet.MGZ``), or ``None`` when it has
    none of ``suffixes`` (or is nothing but one)."""
    lower = name.lower()
    for suffix in suffixes:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None
