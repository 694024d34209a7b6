"""The one set of defaults that every entry point uses (CLI, :func:`asfe3d.pipeline.fuse_pair`, cohorts, BIDS, the
bundle), so they never give different results for the same inputs. Nothing heavy is imported here.
"""

from __future__ import annotations

__all__ = ["DEFAULT_METHOD", "DEFAULT_MODE", "DEFAULT_REGISTRATION", "DEFAULT_QC", "DEFAULT_COLORMAP",
           "REGISTRATION_CHOICES", "REGISTRATION_METHODS", "QC_MODES"]

#: fusion method (see ``docs/evaluation.md`` for why)
DEFAULT_METHOD = "asfe"
#: asfe mode: ``slice`` (2D network through MONAI's SliceInferer) or ``volume`` (3D network through
#: SlidingWindowInferer). ``volume``: on held-out whole-head subjects it beats slice-wise fusion on 8 of 11 metrics
#: and on through-plane consistency, and wins more often against the classic methods (docs/evaluation.md)
DEFAULT_MODE = "volume"
#: PET-to-MRI registration: ``auto`` = ``rigid``, except for two DICOM series that share one FrameOfReferenceUID
#: (a PET/CT or PET/MR scanner already aligned them): ``none`` (resampled only). Asking for ``rigid`` forces it.
DEFAULT_REGISTRATION = "auto"
#: what a registration judged failed does: ``warn`` (write, one-line warning) or ``strict`` (refuse)
DEFAULT_QC = "warn"
#: PET colour map of the colour volume and the preview
DEFAULT_COLORMAP = "hot"

#: registration methods (the same as :data:`asfe3d.registration.METHODS`; a test keeps them in step)
REGISTRATION_METHODS = ("rigid", "affine", "deformable", "none")
#: what the ``registration`` setting accepts: the methods and ``auto`` (the default; see DEFAULT_REGISTRATION)
REGISTRATION_CHOICES = ("auto", *REGISTRATION_METHODS)
#: what to do with a registration that the quality check judges failed
QC_MODES = ("warn", "strict")
