"""``asfe3d.io.suffixes``: the image suffixes in one place."""

from __future__ import annotations

import pytest

from asfe3d.io.suffixes import PAIR_SUFFIXES, VOLUME_SUFFIXES, image_stem


@pytest.mark.parametrize("name, stem", [
    ("sub-01_pet.nii.gz", "sub-01_pet"), ("sub-01_pet.NII.GZ", "sub-01_pet"), ("t1.mgh.gz", "t1"), ("t1.mgz", "t1"),
    ("brain.mhd", "brain"), ("brain.nhdr", "brain"), ("a.hdr.gz", "a"), ("a.img", "a"), ("a.b.nii", "a.b"),
])
def test_image_stem(name: str, stem: str) -> None:
    assert image_stem(name) == stem


@pytest.mark.parametrize("name", ["notes.txt", ".nii.gz", "dicom_folder", "scan.nii.gz.bak", ""])
def test_no_stem_without_an_image_suffix(name: str) -> None:
    assert image_stem(name) is None


def test_longest_suffix_first_where_one_ends_another() -> None:
    """No suffix is shadowed by a shorter one before it that it ends with (``.hdr.gz`` is not read as ``.gz``-less
    ``.hdr``): every suffix is matched whole; the pair suffixes only where asked for."""
    for suffixes in (VOLUME_SUFFIXES, PAIR_SUFFIXES):
        for i, s in enumerate(suffixes):
            assert not any(s.endswith(t) and len(t) < len(s) for t in suffixes[:i]), s
    assert image_stem("x.img", suffixes=VOLUME_SUFFIXES) is None and image_stem("x.img", suffixes=PAIR_SUFFIXES) == "x"
