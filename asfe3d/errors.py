"""Errors shared by every tier.

``Asfe3dInputError`` is the one exception for bad user input (a file that is missing, unreadable, the wrong
dimensionality, empty, non-finite...). It names the offending file and the problem in one line; the CLI prints
exactly that line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["Asfe3dInputError", "ConfigError", "InputErrorParser", "MetadataError", "OutputExists",
           "RegistrationRefused", "Terminated"]


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


class MetadataError(Asfe3dInputError):
    """A value of the PET's metadata (its JSON sidecar, or metadata given as a mapping) that is malformed or that the
    image refutes: ``key`` names it, so that a caller who knows where the value came from (a BIDS run: an inherited
    JSON file) can say so.

    Args:
        key: the metadata key (``"FrameDuration"``).
        path: as :class:`Asfe3dInputError`.
        problem: as :class:`Asfe3dInputError`.
    """

    def __init__(self, key: str, path: str | Path | None, problem: str) -> None:
        super().__init__(path, problem)
        self.key = key


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (the command's handler), so that clean-up code
    runs as for Ctrl-C (``asfe3d.cli.Terminated`` is this class)."""


class ConfigError(ValueError):
    """A bad value in a training configuration, or one that the data it names cannot meet (``asfe3d train``: one line
    naming the configuration file, exit 2). Any other ``ValueError`` of a run is a bug and keeps its traceback."""


class OutputExists(Asfe3dInputError):
    """An output path where a file already is, and replacing it was not asked for (``--overwrite``): a caller that
    knows whose file it is (a run's completion record) can say so instead of suggesting ``--overwrite``."""


class RegistrationRefused(Asfe3dInputError):
    """A registration judged failed under ``qc="strict"``: refused, with what a report of it needs.

    Args:
        path: the PET (the moving image).
        problem: the verdict's line.
        reference: the MRI (the fixed image) as registered, ``(1, X, Y, Z)``, in its units.
        resampled: the PET resampled onto the MRI grid by the refused transform, ``(1, X, Y, Z)``, in its units.
        registration: the registration's description (method, metric, ``qc``...), as a completion record holds it.
    """

    def __init__(self, path: str | Path | None, problem: str, *, reference: Any = None, resampled: Any = None,
                 registration: dict[str, Any] | None = None) -> None:
        super().__init__(path, problem)
        self.reference = reference
        self.resampled = resampled
        self.registration = registration or {}

    def with_problem(self, problem: str) -> RegistrationRefused:
        """The same refusal (file, images, registration) told with another line."""
        return RegistrationRefused(self.path, problem, reference=self.reference, resampled=self.resampled,
                                   registration=self.registration)


class InputErrorParser(argparse.ArgumentParser):
    """argparse whose usage mistakes (a missing or unknown option, a value of the wrong type or outside its
    choices) raise :class:`Asfe3dInputError` ``<problem> (see <prog> --help)`` instead of printing the usage, so
    that a command ends them as every other refusal: one line ``asfe3d: error: ...`` and exit code 2.

    Used by the commands that live beside their library code (``asfe3d evaluate``, ``asfe3d train``).
    """

    def error(self, message: str) -> NoReturn:
        raise Asfe3dInputError(None, f"{message} (see {self.prog} --help)")
