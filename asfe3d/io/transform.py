"""Transform files: the registration's ``.tfm`` (MRI points -> PET points), written atomically and read back.

Reading and writing files is the io package's work; :mod:`asfe3d.registration` computes transforms and never
touches the disk, so the two packages do not import each other.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from asfe3d.errors import Asfe3dInputError
from asfe3d.io.writer import atomic_output

__all__ = ["write_transform", "read_transform"]


def write_transform(transform: sitk.Transform, path: str | Path) -> None:
    """Write a transform as a SimpleITK ``.tfm`` file, atomically (temporary file in the same folder).

    Args:
        transform: the transform (MRI points -> PET points).
        path: destination, ending in ``.tfm``.

    Raises:
        ValueError: when ``path`` does not end in ``.tfm``.
    """
    path = Path(path)
    if path.suffix != ".tfm":
        raise ValueError(f"transform path must end in '.tfm', got {str(path)!r}")
    with atomic_output(path, overwrite=True) as tmp:
        sitk.WriteTransform(transform, str(tmp))


def read_transform(path: str | Path) -> sitk.Transform:
    """Read a transform written by :func:`write_transform` (or any SimpleITK-readable transform file).

    Args:
        path: the ``.tfm`` file.

    Returns:
        the transform (MRI points -> PET points); a single-transform composite is flattened.

    Raises:
        Asfe3dInputError: when the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise Asfe3dInputError(path, "transform file does not exist")
    try:
        tfm = sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise Asfe3dInputError(path, f"cannot read transform ({str(exc).strip().splitlines()[-1]})") from exc
    if isinstance(tfm, sitk.CompositeTransform) and tfm.GetNumberOfTransforms() == 1:
        tfm = tfm.GetNthTransform(0)
    return tfm.Downcast() if hasattr(tfm, "Downcast") else tfm
