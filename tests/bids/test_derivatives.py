"""asfe3d.bids.derivatives on its own: the BIDS URIs a derivative's sidecar names its sources by."""

from __future__ import annotations

from pathlib import Path

from asfe3d.bids.derivatives import _bids_uri


def test_a_linked_raw_file_is_named_by_its_place_in_the_dataset(tmp_path: Path) -> None:
    """Probe 45 #1/#2: ``resolve()`` followed the link: a git-annex dataset's Sources pointed into ``.git/annex``,
    and a file linked to outside the dataset stopped the whole BIDS run with a ValueError traceback."""
    bids = tmp_path / "bids"
    anat = bids / "sub-01" / "anat"
    anat.mkdir(parents=True)
    annexed = bids / ".git" / "annex" / "objects" / "ab" / "SHA256E-s1--x.nii.gz"
    annexed.parent.mkdir(parents=True)
    annexed.write_bytes(b"x")
    (anat / "sub-01_T1w.nii.gz").symlink_to(annexed)
    outside = tmp_path / "elsewhere.nii.gz"
    outside.write_bytes(b"y")
    (anat / "sub-01_acq-x_T1w.nii.gz").symlink_to(outside)
    assert _bids_uri(anat / "sub-01_T1w.nii.gz", bids) == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    assert _bids_uri(anat / "sub-01_acq-x_T1w.nii.gz", bids) == "bids:raw:sub-01/anat/sub-01_acq-x_T1w.nii.gz"
    linked_root = tmp_path / "link_to_bids"
    linked_root.symlink_to(bids)  # the dataset reached through a linked folder, its files named by their real paths
    assert _bids_uri(anat / "sub-01_T1w.nii.gz", linked_root) == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    assert _bids_uri(outside, bids) == str(outside)  # not in the dataset at all: its path
