"""The one set of defaults that every entry point uses (CLI, :func:`asfe3d.pipeline.fuse_pair`, cohorts, BIDS, the
bundle), so they never give different results for the same inputs. Nothing heavy is imported here.
"""

from __future__ import annotations

__all__ = ["DEFAULT_METHOD", "DEFAULT_MODE", "DEFAULT_REGISTRATION", "DEFAULT_QC", "DEFAULT_COLORMAP",
           "DEFAULT_DEVICE", "DEFAULT_SLICE_AXIS", "DEFAULT_SEED", "DEFAULT_REGISTRATION_THREADS",
           "DEFAULT_MIN_OVERLAP", "DEFAULT_OUTPUT_SCALE", "DEFAULT_FRAME_REALIGN", "DEFAULT_FRAME_REFERENCE",
           "DEFAULT_NIFTI_GEOMETRY", "REGISTRATION_CHOICES", "REGISTRATION_METHODS", "QC_MODES", "MODES",
           "OUTPUT_SCALES", "NIFTI_GEOMETRIES", "PET_UNITS_CHOICES", "SLICE_AXES", "DETAIL_FWHM_MM_BY_MODE",
           "DEFAULT_ROI_SIZE", "DEFAULT_STITCH", "STITCH_MODES", "MIN_VOXEL_MM_BY_MODE",
           "PET_CONSISTENCY_BY_MODE", "PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE", "PET_CONSISTENCY_COARSE_BY_MODE",
           "PET_CONSISTENCY_FINE_BY_MODE",
           "MAX_VOXEL_MM_BY_MODE",
           "DEFAULT_ROI_MM", "PET_DETAIL_SELECT_BY_MODE", "PET_DETAIL_RATIO",
           "PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE", "PET_DETAIL_FLOOR_BY_MODE",
           "PET_DETAIL_FLOOR_MAX_VOXEL_MM_BY_MODE", "DETAIL_STEER_BY_MODE", "DETAIL_STEER_MAX_GAIN_BY_MODE",
           "DETAIL_STEER_MAX_GAIN_COARSE_BY_MODE",
           "DETAIL_STEER_MAX_VOXEL_MM_BY_MODE", "WORKING_VOXEL_MM_BY_MODE",
           "DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE"]

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

#: per asfe mode, the detail injection's band width in mm (turned into voxels from each grid), or ``None``: the
#: network's own width in voxels (``detail_fwhm``, 5.5). The seventh addendum to the selection rule
#: (``docs/training.md``, "Band-in-mm round") kept the width in voxels on every grid (6 mm raised the lowest FDG
#: detail by less than the 0.01 it asked); the thirty-seventh ("Thirty-seventh round") takes volume mode's band at
#: 6 mm on grids finer than the weights were trained on (below): on a 0.7 mm T1 with a registered FDG PET, MRI detail
#: 0.830 -> 0.869 (bar 0.85) with the same defect transfer
DETAIL_FWHM_MM_BY_MODE: dict[str, float | None] = {"slice": None, "volume": 6.0}
#: per asfe mode, the band in mm only on grids whose finest voxel size (mm) is under this
#: (``FusionInferer``'s ``detail_fwhm_max_voxel_mm``), or ``None``: on every grid. Volume mode: 0.8 mm, the finest
#: grid the 3D weights were trained on; every grid of 0.8 mm and coarser keeps the width in voxels, the same voxels
DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE: dict[str, float | None] = {"slice": None, "volume": 0.8}
#: volume mode's sliding window: the size the shipped 3D weights were scored and chosen with (``evaluate``) and the
#: one ``asfe3d fuse`` and the bundle use (one pass over a whole head gives a different image; docs/evaluation.md)
DEFAULT_ROI_SIZE: tuple[int, int, int] = (128, 128, 128)
#: what volume mode's overlapping windows are blended as (``asfe3d.inferers.FusionInferer``'s ``stitch``): the fused
#: windows (``output``), or the network's stem-stride logits with the full-resolution tail run once (``logits``;
#: ``auto``: logits where the network and the windows allow it, else output). ``auto`` since the eighteenth addendum
#: to the selection rule (``docs/training.md``, "Eighteenth round"): with the shipped 3D weights every bar holds and
#: the brain command takes about 0.5 s less; the eleventh addendum had kept ``output`` for the weights before
DEFAULT_STITCH = "auto"
#: volume mode's window in mm where the grid is known (``asfe3d.inferers.FusionInferer``'s ``roi_mm``: at most
#: :data:`DEFAULT_ROI_SIZE` voxels, at most this many mm), or ``None``: the window in voxels only. The twenty-first
#: addendum (``docs/training.md``) decides it
DEFAULT_ROI_MM: float | None = None
#: what ``stitch`` accepts
STITCH_MODES = ("auto", "output", "logits")
#: per asfe mode, the finest voxel size (mm) the network runs on (``asfe3d.inferers.FusionInferer``'s
#: ``min_voxel_mm``), or ``None``: the MRI's own grid. Chosen by the twelfth addendum (``docs/training.md``,
#: "Working-grid round"): slice mode on a 1 mm grid keeps more of a fine MRI's detail (0.7 mm pairs: lowest FDG
#: detail 0.806 -> 0.856) and every bar; volume mode lost defect transfer on a coarser grid, so it keeps the MRI's own
MIN_VOXEL_MM_BY_MODE: dict[str, float | None] = {"slice": 1.0, "volume": None}
#: per asfe mode, the voxel size (mm) that the axes finer than ``MIN_VOXEL_MM_BY_MODE`` are brought to
#: (``FusionInferer``'s ``working_voxel_mm``), or ``None``: ``MIN_VOXEL_MM_BY_MODE``'s value itself
WORKING_VOXEL_MM_BY_MODE: dict[str, float | None] = {"slice": None, "volume": None}
#: per asfe mode, the coarsest voxel size (mm) the network runs on (``asfe3d.inferers.FusionInferer``'s
#: ``max_voxel_mm``), or ``None``: the MRI's own grid. The twentieth addendum (``docs/training.md``) decides it
MAX_VOXEL_MM_BY_MODE: dict[str, float | None] = {"slice": None, "volume": None}
#: per asfe mode, the strength of the consistency step after the network (``asfe3d.inferers.FusionInferer``'s
#: ``pet_consistency``: the fused image's band coarser than the PET's resolution moved towards the PET), 0 = none.
#: The sixteenth addendum kept 0; the nineteenth (``docs/training.md``, "Nineteenth round") chose 0.5 for slice
#: mode on every grid and 0.25 for volume mode on coarse grids only (below): on a 2 mm T1 with a registered FDG PET
#: slice mode kept PET consistency 0.777 and volume mode 0.854 (bar 0.85), now 0.895 and 0.889. The thirty-second
#: ("Thirty-second round") raised volume mode's to 0.5 with the steered injection let onto those grids: on that T1
#: with the PET 10 % noisier, MRI detail 0.776 -> 0.810 (bar 0.80) and PET consistency 0.854 -> 0.863. The fortieth
#: ("Fortieth round") took volume mode's step onto grids of 0.95-1.5 mm at 0.25 (0.5 from 1.5 mm, below), for the
#: tissue defects the network passes only in part: on new draws of the held-out person defect transfer 0.840 -> 0.861 and
#: 0.832 -> 0.850 (bar 0.85), for 0.003-0.004 of MRI detail (0.012-0.014 on the benchmark T1 at 1-1.2 mm)
PET_CONSISTENCY_BY_MODE: dict[str, float] = {"slice": 0.5, "volume": 0.25}
#: per asfe mode, the smallest mean voxel size (mm) of the MRI's grid on which the consistency step is taken
#: (``FusionInferer``'s ``pet_consistency_min_voxel_mm``), or ``None``: every grid. Volume mode takes it only on
#: coarse grids, where the MRI has little detail below the PET's resolution to lose: on the 0.88 mm benchmark pair
#: even 0.25 cost its MRI detail 0.851 -> 0.836 (bar 0.85); since the fortieth addendum grids of 0.95 mm or coarser
PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE: dict[str, float | None] = {"slice": None, "volume": 0.95}
#: per asfe mode, ``(mm, strength)``: on grids whose mean voxel size is at least ``mm`` the consistency step's
#: strength is ``strength`` instead (``FusionInferer``'s ``pet_consistency_coarse``), or ``None``: one strength.
#: Slice mode: 0.6875 on grids of 1.5 mm or coarser, with the steered injection let onto them, chosen by the
#: thirty-third addendum (``docs/training.md``, "Thirty-third round"): on a 2 mm T1 whose registered FDG PET is 10 %
#: noisier, MRI detail 0.771 -> 0.808 (bar 0.80) and PET consistency 0.849 -> 0.854 (bar 0.85). Volume mode: 0.5 on
#: grids of 1.5 mm or coarser, as before the fortieth addendum (0.25 from 0.95 mm)
PET_CONSISTENCY_COARSE_BY_MODE: dict[str, tuple[float, float] | None] = {"slice": (1.5, 0.6875), "volume": (1.5, 0.5)}
#: per asfe mode, ``(strength, fwhm_mm)``: on grids finer than :data:`PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE` the
#: consistency step at ``strength`` with a Gaussian ``fwhm_mm`` wide (``FusionInferer``'s ``pet_consistency_fine``),
#: or ``None``: no step there. Volume mode: 0.4 with a 12 mm Gaussian, chosen by the forty-second addendum
#: (``docs/training.md``, "Forty-second round"): a Gaussian twice the PET's resolution leaves the band below it, where
#: a fine MRI grid holds its detail, to the network, and pulls a tissue change's coarse pattern towards the PET
PET_CONSISTENCY_FINE_BY_MODE: dict[str, tuple[float, float] | None] = {"slice": None, "volume": (0.4, 12.0)}
#: per asfe mode, the strength of the choose-the-larger-detail step after the consistency step
#: (``asfe3d.inferers.FusionInferer``'s ``pet_detail_select``: where the PET's band below its resolution is
#: :data:`PET_DETAIL_RATIO` times the MRI's, the fused band becomes the PET's), 0 = none; on the grids of
#: :data:`PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE` (1.5 mm or coarser). Chosen by the twenty-seventh addendum
#: (``docs/training.md``, "Twenty-seventh round"): on a 2 mm T1 with a registered FDG PET the sharp hot-spot defect
#: transfer went from 0.863 to 0.922 (wavelet 0.910), on eight fresh 2 mm draws from 0.858 to 0.904 (wavelet 0.878),
#: for 0.003-0.005 of MRI detail. Slice mode by the twenty-eighth addendum ("Twenty-eighth round"): at full strength
#: (at 0.5 it stayed under wavelet), 0.810 -> 0.928 on that pair, 0.832 -> 0.920 on the fresh draws (wavelet 0.878)
PET_DETAIL_SELECT_BY_MODE: dict[str, float] = {"slice": 1.0, "volume": 0.5}
#: that step's ``k`` (``FusionInferer``'s ``pet_detail_ratio``)
PET_DETAIL_RATIO = 2.0
#: per asfe mode, the smallest mean voxel size (mm) of the MRI's grid on which that step is taken
#: (``FusionInferer``'s ``pet_detail_select_min_voxel_mm``), or ``None``: every grid. Both modes: 1.5 mm (volume
#: mode's consistency step's gate); on the 0.88 mm benchmark pair the step would cost MRI detail 0.850 -> 0.845 (bar 0.85), and a 12 mm
#: change is 13 voxels across there, which the network keeps whole (hot-spot DT 0.991). Volume mode from 0.95 mm since
#: the forty-first addendum ("Forty-first round"), with a floor on grids finer than 1.5 mm (below): on a 1 / 1.2 /
#: 1.2 x 1 x 1 mm T1 a sharp hot spot kept 0.953 / 0.923 / 0.939 -> 0.979 / 0.957 / 0.970 (laplacian 0.959 / 0.929 /
#: 0.959)
PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE: dict[str, float | None] = {"slice": 1.5, "volume": 0.95}
#: per asfe mode, that step's floor ``t`` (``FusionInferer``'s ``pet_detail_floor``: the PET's band is taken only
#: where it is over ``k`` times the MRI's by more than ``t`` times its own robust spread in the brain, so that the
#: PET's noise and texture are not taken), 0 = none. Volume mode 0.5 (the forty-first addendum; without it the step on
#: 1-1.2 mm grids cost up to 0.011 of MRI detail with the PET 10 % noisier, with it at most 0.006 there and 0.003 on
#: new draws)
PET_DETAIL_FLOOR_BY_MODE: dict[str, float] = {"slice": 0.0, "volume": 0.5}
#: per asfe mode, the floor only on grids whose mean voxel size (mm) is under this
#: (``FusionInferer``'s ``pet_detail_floor_max_voxel_mm``), or ``None``: every grid the step is taken on
#: (volume mode: 1.5 mm; on a 2 mm T1 the floor would cost the hot spot 0.916 -> 0.907, under wavelet's 0.910)
PET_DETAIL_FLOOR_MAX_VOXEL_MM_BY_MODE: dict[str, float | None] = {"slice": None, "volume": 1.5}
#: per asfe mode, ``q0`` of the steered detail injection, the last step after the network
#: (``asfe3d.inferers.FusionInferer``'s ``detail_steer``: where the PET's band below its resolution follows the MRI's
#: little, ``q > q0``, the injection gets ``min(cap, q / q0)`` times its gain, the cap
#: :data:`DETAIL_STEER_MAX_GAIN_BY_MODE`), ``None`` = no step; on the grids of :data:`DETAIL_STEER_MAX_VOXEL_MM_BY_MODE`.
#: Chosen by the thirty-first addendum
#: (``docs/training.md``, "Thirty-first round"): on a 0.88 mm T1 whose registered FDG PET is 5 % / 10 % noisier the
#: MRI detail rises from 0.842 / 0.794 to 0.866 / 0.845 (volume) and from 0.857 / 0.824 to 0.878 / 0.866 (slice); PET
#: consistency falls by at most 0.013, the defect transfer is unchanged
DETAIL_STEER_BY_MODE: dict[str, float | None] = {"slice": 0.5, "volume": 0.5}
#: per asfe mode, the largest factor the steered detail injection gives the injection's gain (``FusionInferer``'s
#: ``detail_steer_max_gain``). 1.5 since the thirty-first addendum; volume mode 1.75 on grids finer than 1.5 mm since
#: the thirty-fourth (``docs/training.md``, "Thirty-fourth round"): on a 0.88 mm T1 whose registered FDG PET is 10 %
#: noisier, MRI detail 0.845 -> 0.852 (bar 0.85); PETs whose ``q / q0`` is at most 1.5 are fused as before
DETAIL_STEER_MAX_GAIN_BY_MODE: dict[str, float] = {"slice": 1.5, "volume": 1.75}
#: per asfe mode, ``(mm, cap)``: on grids whose mean voxel size is at least ``mm`` the steered detail injection's
#: largest factor is ``cap`` instead (``FusionInferer``'s ``detail_steer_max_gain_coarse``), or ``None``: one cap on
#: every grid. Volume mode keeps 1.5 on coarse grids: on a 2 mm T1 a cap of 2 took PET consistency with a 10 % noisier
#: PET to 0.845 (bar 0.85)
DETAIL_STEER_MAX_GAIN_COARSE_BY_MODE: dict[str, tuple[float, float] | None] = {"slice": None, "volume": (1.5, 1.5)}
#: per asfe mode, the steered detail injection is taken only on grids whose mean voxel size (mm) is under this, or
#: ``None``: every grid. Both modes: every grid, each with more of its consistency step on coarse grids (volume mode
#: since the thirty-second addendum, slice mode since the thirty-third; ``docs/training.md``; on a 2 mm grid without
#: more of the consistency step the steered injection would take PET consistency under 0.85)
DETAIL_STEER_MAX_VOXEL_MM_BY_MODE: dict[str, float | None] = {"slice": None, "volume": None}
#: where the network runs: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``
DEFAULT_DEVICE = "auto"
#: slice mode's axis: ``auto`` (the MRI's axial voxel axis) or 0, 1, 2
DEFAULT_SLICE_AXIS = "auto"
#: registration sampling seed (same inputs and seed: same output)
DEFAULT_SEED = 0
#: ITK threads of the registration: 1 is bitwise reproducible (``None``: every core)
DEFAULT_REGISTRATION_THREADS = 1
#: smallest fraction of the MRI head the registered PET must cover
DEFAULT_MIN_OVERLAP = 0.3
#: fused intensities: ``mri`` (back through the MRI's normalisation window) or ``unit`` ([0, 1])
DEFAULT_OUTPUT_SCALE = "mri"
#: realign a dynamic PET's frames (rigid) before averaging them
DEFAULT_FRAME_REALIGN = True
#: what the frames are realigned to: ``mean`` or a frame index
DEFAULT_FRAME_REFERENCE = "mean"
#: which NIfTI geometry to trust when qform and sform disagree: ``auto``, ``sform`` or ``qform``
DEFAULT_NIFTI_GEOMETRY = "auto"

#: the network's modes
MODES = ("slice", "volume")
#: slice mode's axis choices
SLICE_AXES = ("auto", 0, 1, 2)
#: what ``output_scale`` accepts
OUTPUT_SCALES = ("mri", "unit")
#: what ``nifti_geometry`` accepts
NIFTI_GEOMETRIES = ("auto", "sform", "qform")
#: what ``pet_units`` accepts besides ``None`` (as stored)
PET_UNITS_CHOICES = ("suv",)

#: registration methods (:data:`asfe3d.registration.METHODS` is this tuple)
REGISTRATION_METHODS = ("rigid", "affine", "deformable", "none")
#: what the ``registration`` setting accepts: the methods and ``auto`` (the default; see DEFAULT_REGISTRATION)
REGISTRATION_CHOICES = ("auto", *REGISTRATION_METHODS)
#: what to do with a registration that the quality check judges failed
QC_MODES = ("warn", "strict")
