"""Errors shared by every tier.

``Asfe3dInputError`` is the one exception for bad user input (a file that is missing, unreadable, the wrong
dimensionality, empty, non-finite...). It names the offending file and the problem in one line; the CLI prints
exactly that line on stderr and exits with code 2.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["Asfe3dInputError"]


class Asfe3dInputError(ValueError):
    """Bad input that the user must fix (never a bug in asfe3d).

    Args:
        path: the file or folder at fault (``None`` when the problem is not about one file).
        problem: what is wrong, as a short clause (no trailing period needed).

    Example:
        >>> str(Asfe3dInputError("sub01_pet.nii.gz", "volume is constant (all voxels = 0)"))
        'sub01_pet.nii.gz: volume is constant (all voxels = 0)'
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")
