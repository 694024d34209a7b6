"""Dictionary wrappers (``...d``) of :mod:`asfe3d.transforms.array`, MONAI style: the fusion pipeline as one chain.

The chain that :func:`asfe3d.pipeline.fuse_pair`, cohorts, BIDS runs, evaluation and the bundle all run
(:func:`asfe3d.pipeline.preprocessing_steps` builds its first steps from one :class:`asfe3d.settings.Settings`,
:func:`asfe3d.pipeline.fuse_pair` the rest)::

    {"mri": path, "pet": path}
      LoadVolumed(keys=["mri", "pet"])                     -> (1, X, Y, Z) MetaTensors ((T, X, Y, Z): kept frames)
      RealignFramesd(keys="pet")                           -> a dynamic PET's frames realigned and averaged
                                                              (asfe3d.transforms.frames)
      HeadMaskd(keys="mri")                                -> "mri_head" (computed once, used by every later step)
      RegisterToReferenced(keys="pet", ref_key="mri")      -> "pet" on the MRI grid, "pet_transform",
                                                              "pet_registration" (metric, overlap, QC verdict),
                                                              "pet_fov" (where the PET has data)
      SmoothMmd(keys="pet", fwhm_mm=..., mask_key="pet_fov")  -> optional (--pet-smooth-mm), within the field of view
      RobustNormalized(keys="mri", mask_key="mri_head")
      RobustNormalized(keys="pet", mask_key=("mri_head", "pet_fov"), above_postfix="above")
                                                           -> "pet_above": its hottest uptake, above its window
      FillOutsideMaskd(keys="pet", mask_key="pet_fov")     -> the edge values beyond the field of view (no step)
      ConcatItemsd(keys=["mri", "pet"], name="image")      -> (2, X, Y, Z), MONAI's own
      Fused(keys="image", output_key="fused_unit")         -> classic, or the network through MONAI's inferers
      MaskIntensityd(keys="fused_unit", mask_key="pet_fov") -> MONAI's own: blank beyond the PET's field of view
      ColourFused(keys="image", output_key="fused_rgb")    -> optional (and masked the same way)
      CopyItemsd(keys="fused_unit", names="fused")         -> MONAI's own
      RestoreIntensityd(keys="fused", ref_key="mri", above_key="pet_above")  -> the MRI's window (optional)
      SaveLikeReferenced(outputs={"fused": path, ...}, ref_key="mri")
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from asfe3d.transforms.array import (
    WINDOW_KEY,
    ColourFuse,
    FillOutsideMask,
    Fuse,
    HeadMask,
    LoadVolume,
    RegisterToReference,
    RestoreIntensity,
    RobustNormalize,
    SaveLikeReference,
    SmoothMm,
    field_of_view_mask,
    ras_affine,
)

__all__ = [
    "InputPath", "LoadVolumed", "HeadMaskd", "RegisterToReferenced", "RobustNormalized", "SmoothMmd", "FillOutsideMaskd",
    "Fused", "ColourFused",
    "RestoreIntensityd", "SaveLikeReferenced",
    "LoadVolumeD", "LoadVolumeDict", "HeadMaskD", "HeadMaskDict", "RegisterToReferenceD", "RegisterToReferenceDict",
    "RobustNormalizeD", "RobustNormalizeDict", "SmoothMmD", "SmoothMmDict", "FillOutsideMaskD", "FillOutsideMaskDict",
    "FuseD", "FuseDict", "ColourFuseD", "ColourFuseDict",
    "RestoreIntensityD", "RestoreIntensityDict", "SaveLikeReferenceD", "SaveLikeReferenceDict",
]


def _require(d: Mapping[Hashable, Any], key: Hashable, who: str) -> Any:
    if key not in d:
        raise KeyError(f"{who}: key {key!r} is not in the data (keys: {sorted(map(str, d))})")
    return d[key]


def _early(d: Mapping[Hashable, Any], key: str | None) -> Any:
    """The early registration under ``key`` (``None`` when no key is named or the data holds none)."""
    return None if key is None else d.get(key)


class InputPath(str):
    """An input's path as kept under ``<key>_path`` by :class:`LoadVolumed`: a ``str`` that MONAI's spatial
    dictionary transforms leave alone.

    MONAI's ``Spacingd`` (on a NIfTI image) treats every ``<key>_*`` entry of the data as a metadata dictionary and
    calls its ``update``; a plain ``str`` there stopped ``LoadVolumed`` -> ``Spacingd`` with an AttributeError. The
    path an image was read from does not change when it is resampled, so ``update`` keeps it as it is.
    """

    __slots__ = ()

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to update: the file an image was read from is the same after any transform."""


class LoadVolumed(MapTransform):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.LoadVolume`.

    The original path is kept under ``<key>_path`` (an :class:`InputPath`, a ``str``; inputs are protected from
    being overwritten by the save step).

    Args:
        keys: keys holding file paths.
        series_uid: per-key DICOM SeriesInstanceUID (``{"mri": "1.2...", "pet": None}``) or one for every key.
        frame: per-key 0-based frame of a 4D volume, or one for every key (``None``: the frame mean).
        allow_nonfinite: replace NaN/Inf by 0 with a warning instead of refusing.
        allow_missing_keys: skip absent keys.
        key_kwargs: per-key :func:`asfe3d.io.read_volume` settings, e.g. ``{"pet": {"pet_units": "suv"}}`` (they
            override the settings above for that key).
        early_key: the key of an :class:`asfe3d.registration.early.EarlyRegistration` whose volumes are taken when
            read with the same settings (``None``: always read here).
        reader_kwargs: further :func:`asfe3d.io.read_volume` settings for every key (``dicom_strict``,
            ``nifti_geometry``...).
    """

    def __init__(self, keys: KeysCollection, series_uid: Any = None, frame: Any = None,
                 allow_nonfinite: bool = False, allow_missing_keys: bool = False,
                 key_kwargs: Mapping[Hashable, Mapping[str, Any]] | None = None, early_key: str | None = None,
                 **reader_kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.early_key = early_key
        self.series_uid = series_uid
        self.frame = frame
        self.allow_nonfinite = allow_nonfinite
        self.key_kwargs = {k: dict(v) for k, v in (key_kwargs or {}).items()}
        unknown = set(self.key_kwargs) - set(self.keys)
        if unknown:
            raise ValueError(f"key_kwargs names keys {sorted(map(str, unknown))} that are not in keys {self.keys}")
        self.reader_kwargs = reader_kwargs

    @staticmethod
    def _per_key(value: Any, key: Hashable) -> Any:
        return value.get(key) if isinstance(value, Mapping) else value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            kwargs = {"series_uid": self._per_key(self.series_uid, key), "frame": self._per_key(self.frame, key),
                      "allow_nonfinite": self.allow_nonfinite, **self.reader_kwargs, **self.key_kwargs.get(key, {})}
            loader = LoadVolume(role=str(key).upper(), **kwargs)
            d[f"{key}_path"] = InputPath(d[key]) if isinstance(d[key], (str, Path)) else d[key]
            d[key] = loader(d[key], _early(d, self.early_key))
        return d


class HeadMaskd(MapTransform):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.HeadMask`: the mask goes under ``<key>_head``.

    Args:
        keys: the MRI key(s).
        mask_key_postfix: the mask goes under ``<key>_<postfix>``.
        allow_missing_keys: skip absent keys.
        early_key: the key of an :class:`asfe3d.registration.early.EarlyRegistration` whose mask is taken when
            computed from the same image (``None``: always computed here).
    """

    def __init__(self, keys: KeysCollection, mask_key_postfix: str = "head", allow_missing_keys: bool = False,
                 early_key: str | None = None) -> None:
        super().__init__(keys, allow_missing_keys)
        self.postfix = mask_key_postfix
        self.early_key = early_key
        self.mask = HeadMask()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.postfix}"] = self.mask(d[key], _early(d, self.early_key))
        return d


class RegisterToReferenced(MapTransform):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.RegisterToReference`.

    Each moving image is replaced by its version on the reference grid; the transform goes under
    ``<key>_transform``, the report (metric, overlap, QC verdict) under ``<key>_registration`` and, with
    ``fov_postfix``, the moving image's field of view on the reference grid under ``<key>_<fov_postfix>``
    (:func:`~asfe3d.transforms.array.field_of_view_mask`: ``(1, X, Y, Z)`` bool, False where the resampled image
    holds padding, not a measurement; MONAI's ``MaskIntensityd(..., mask_key="pet_fov")`` blanks a fused image there).

    Args:
        keys: moving images (e.g. ``"pet"``).
        ref_key: the reference image (e.g. ``"mri"``).
        mask_key: the reference's head mask (from :class:`HeadMaskd`); ``None`` computes one.
        allow_missing_keys: skip absent keys.
        early_key: the key of an :class:`asfe3d.registration.early.EarlyRegistration` whose result is taken when
            computed from the same images and settings; the key is removed afterwards (``None``: always registered
            here).
        fov_postfix: the field of view's key postfix (``None``: not kept).
        kwargs: :class:`~asfe3d.transforms.array.RegisterToReference` settings (``method``, ``seed``, ``threads``,
            ``min_overlap``, ``qc``...).
    """

    def __init__(self, keys: KeysCollection, ref_key: str = "mri", mask_key: str | None = "mri_head",
                 allow_missing_keys: bool = False, early_key: str | None = None, fov_postfix: str | None = "fov",
                 **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        if fov_postfix is not None and (not isinstance(fov_postfix, str) or not fov_postfix):
            raise ValueError(f"fov_postfix must be a non-empty string or None, got {fov_postfix!r}")
        self.ref_key = ref_key
        self.mask_key = mask_key
        self.early_key = early_key
        self.fov_postfix = fov_postfix
        self.register = RegisterToReference(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        reference = _require(d, self.ref_key, type(self).__name__)
        head = None if self.mask_key is None else _require(d, self.mask_key, type(self).__name__)
        early = _early(d, self.early_key)
        for key in self.key_iterator(d):
            moving = d[key]
            d[key], d[f"{key}_transform"], d[f"{key}_registration"] = self.register(moving, reference, head, early)
            if self.fov_postfix is not None:
                d[f"{key}_{self.fov_postfix}"] = field_of_view_mask(moving, reference, d[f"{key}_transform"])
            early = None  # one early result, for one moving image
        if self.early_key is not None:
            d.pop(self.early_key, None)
        return d


class RobustNormalized(MapTransform):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.RobustNormalize`.

    Args:
        keys: images to normalise (each channel separately).
        mask_key: the head mask every key is normalised in, or several masks whose overlap is used (e.g.
            ``("mri_head", "pet_fov")``: the PET's window from the head inside its field of view, not from the
            padding beyond it); ``None``: each image's own Otsu mask.
        lower: low-end percentile.
        upper: high-end percentile (inside the mask).
        above_postfix: also keep each image's part above its window, ``max(x - 1, 0)``, as ``<key>_<postfix>``
            (``(C, *spatial)``, float32, 0 almost everywhere), for :class:`RestoreIntensityd`'s ``above_key``: the
            image itself is clipped to ``[0, 1]`` as without it (``None``: not kept).
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, mask_key: str | Sequence[str] | None = "mri_head", lower: float = 0.5,
                 upper: float = 99.5, above_postfix: str | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if above_postfix is not None and (not isinstance(above_postfix, str) or not above_postfix):
            raise ValueError(f"above_postfix must be a non-empty string or None, got {above_postfix!r}")
        self.mask_key = mask_key
        self.above_postfix = above_postfix
        self.normalize = RobustNormalize(lower, upper, clip_upper=above_postfix is None)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = None
        for mask_key in ([] if self.mask_key is None else [self.mask_key] if isinstance(self.mask_key, str)
                         else self.mask_key):
            this = torch.as_tensor(_require(d, mask_key, type(self).__name__)).bool()
            try:
                mask = this if mask is None else mask & this
            except RuntimeError:  # shapes that do not broadcast
                raise ValueError(f"{type(self).__name__}: the masks {self.mask_key!r} must have one shape, got "
                                 f"{tuple(mask.shape)} and {tuple(this.shape)} ({mask_key!r})") from None
        for key in self.key_iterator(d):
            d[key] = self.normalize(d[key], mask)
            if self.above_postfix is not None:  # split the part above the window off; the image as if clipped
                d[key], d[f"{key}_{self.above_postfix}"] = self.normalize.split_above(d[key])
        return d


class SmoothMmd(MapTransform):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.SmoothMm`.

    Args:
        keys: images to smooth (each channel).
        fwhm_mm: the Gaussian's FWHM in mm, in ``[0, 20]`` (``0``: none).
        mask_key: smooth within this mask only (e.g. ``"pet_fov"``: the padding beyond the PET's field of view is
            not blurred into it; ``None``: everywhere).
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, fwhm_mm: float, allow_missing_keys: bool = False, *,
                 mask_key: str | None = None) -> None:
        super().__init__(keys, allow_missing_keys)
        self.smooth = SmoothMm(fwhm_mm)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = None if self.mask_key is None else _require(d, self.mask_key, type(self).__name__)
        for key in self.key_iterator(d):
            d[key] = self.smooth(d[key], mask)
        return d


class FillOutsideMaskd(MapTransform):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.FillOutsideMask`.

    Args:
        keys: images to fill beyond the mask (e.g. ``"pet"`` after normalisation, before the fusion).
        mask_key: the mask (e.g. ``"pet_fov"``).
        band_mm: how far beyond the mask to fill (mm).
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, mask_key: str, band_mm: float = 24.0,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.fill = FillOutsideMask(band_mm)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = _require(d, self.mask_key, type(self).__name__)
        for key in self.key_iterator(d):
            d[key] = self.fill(d[key], mask)
        return d


class Fused(MapTransform):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.Fuse`.

    Args:
        keys: 2-channel ``[MRI, PET]`` images.
        output_key: where the fused image goes (default: replace the input). Only with a single key.
        method: a method name or an already built fusion method.
        allow_missing_keys: skip absent keys.
        kwargs: the method's settings.

    Raises:
        ValueError: ``output_key`` with several keys.
    """

    def __init__(self, keys: KeysCollection, output_key: str | None = None, method: Any = "asfe",
                 allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_key is not None and len(self.keys) != 1:
            raise ValueError(f"output_key needs exactly one input key, got keys={self.keys}")
        self.output_key = output_key
        self.fuse = self._make(method, **kwargs)

    def _make(self, method: Any, **kwargs: Any) -> Any:
        return Fuse(method, **kwargs)

    @property
    def fuser(self) -> Any:
        """The fusion method (to share it with :class:`ColourFused`: one set of weights, loaded once)."""
        return self.fuse.fuser

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key or key] = self.fuse(d[key])
        return d


class ColourFused(Fused):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.ColourFuse` (arguments of :class:`Fused`, plus
    ``colormap`` and ``luma_key``: the grey fused image to use as the colour image's luma, so that the network runs
    once for both outputs; ``None`` fuses the MRI with the colour PET's luma in a second pass)."""

    def __init__(self, keys: KeysCollection, output_key: str | None = None, method: Any = "asfe",
                 colormap: str = "hot", luma_key: str | None = None, allow_missing_keys: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(keys, output_key, method, allow_missing_keys, colormap=colormap, **kwargs)
        self.luma_key = luma_key

    def _make(self, method: Any, **kwargs: Any) -> Any:
        return ColourFuse(method, **kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        luma = None if self.luma_key is None else _require(d, self.luma_key, type(self).__name__)
        for key in self.key_iterator(d):
            d[self.output_key or key] = self.fuse(d[key], luma)
        return d


class RestoreIntensityd(MapTransform):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.RestoreIntensity`: map ``[0, 1]`` images back through
    the reference's normalisation window (set by :class:`RobustNormalized`).

    Args:
        keys: images to map back (e.g. ``"fused"``).
        ref_key: the normalised reference (e.g. ``"mri"``).
        scale: ``"mri"`` or ``"unit"`` (leave as is).
        above_key: the PET's part above its window (``"pet_above"``, kept by :class:`RobustNormalized` with
            ``above_postfix="above"``), added on top of each image (:class:`RestoreIntensity`'s ``above``): the
            hottest uptake above the MRI's window instead of one flat plateau; ``None``: not added.
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, ref_key: str = "mri", scale: str = "mri",
                 above_key: str | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.above_key = above_key
        self.restore = RestoreIntensity(scale)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:  # every key absent (allow_missing_keys): nothing to restore, no reference needed
            return d
        window = None
        if self.restore.scale != "unit":
            who = type(self).__name__
            reference = _require(d, self.ref_key, who)
            meta = getattr(reference, "meta", None)
            window = None if meta is None else meta.get(WINDOW_KEY)
            if window is None:
                raise ValueError(f"{who}: {self.ref_key!r} holds no normalisation window ({WINDOW_KEY!r} in a "
                                 f"MetaTensor's metadata, set by RobustNormalized), got a {type(reference).__name__}"
                                 f"{'' if meta is None else ' without it'}; normalise it first or use scale='unit'")
        above = None if self.above_key is None else _require(d, self.above_key, type(self).__name__)
        for key in keys:
            d[key] = self.restore(d[key], window, above)
        return d


class SaveLikeReferenced(MapTransform):
    """Dictionary wrapper of :class:`~asfe3d.transforms.array.SaveLikeReference`: write the chosen keys on the
    reference's grid as one set, then the completion record; the written paths go under ``"outputs"``.

    Args:
        outputs: data key -> output path (e.g. ``{"fused": "out.nii.gz", "pet": "pet_on_mri.nii.gz",
            "pet_transform": "pet_to_mri.tfm"}``); the first one names the record ``<stem>.json``.
        ref_key: the reference image (its grid and header).
        preview: path of a tri-planar PNG (``None``: none); drawn from ``mri``, ``pet``, ``fused`` (``[0, 1]``,
            under ``preview_keys``) and ``fused_rgb`` when present.
        preview_keys: the ``[0, 1]`` images of the preview (``mri``, ``pet``, ``fused``) and the colour one; by
            default the chain's own: ``mri`` and ``pet`` (normalised in place by ``RobustNormalized``),
            ``fused_unit`` (the fused image before ``RestoreIntensityd``: ``CopyItemsd("fused", names="fused_unit")``
            first, as the command does) and ``fused_rgb``.
        colormap: the PET colour map of the preview.
        overwrite: replace existing outputs (never an input).
        record: write the completion record.
        record_key: data key whose dict is added to the record (e.g. settings and timings from the caller).
        output_key: where the written paths go.
        report: path of an HTML report of the subject (:func:`asfe3d.reports.write_subject_report`; ``None``: none),
            drawn from the same ``[0, 1]`` images as the preview.
    """

    def __init__(self, outputs: Mapping[str, str | Path], ref_key: str = "mri", preview: str | Path | None = None,
                 preview_keys: Mapping[str, str] | None = None, colormap: str = "hot", overwrite: bool = False,
                 record: bool = True, record_key: str = "record", output_key: str = "outputs",
                 report: str | Path | None = None) -> None:
        if not outputs:
            raise ValueError("outputs must name at least one key to write")
        super().__init__(list(outputs), allow_missing_keys=False)
        self.outputs = {k: Path(v) for k, v in outputs.items()}
        self.ref_key = ref_key
        self.preview = None if preview is None else Path(preview)
        self.preview_keys = dict(preview_keys or {"mri": "mri", "pet": "pet", "fused": "fused_unit",
                                                  "rgb": "fused_rgb"})
        self.colormap = colormap
        self.record_key = record_key
        self.output_key = output_key
        self.report = None if report is None else Path(report)
        self.save = SaveLikeReference(overwrite=overwrite, record=record)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        who = type(self).__name__
        reference = _require(d, self.ref_key, who)
        items = {key: (_require(d, key, who), path) for key, path in self.outputs.items()}
        inputs = [v for k, v in d.items() if str(k).endswith("_path") and isinstance(v, (str, Path))]
        images = None if self.preview is None and self.report is None else self._unit_images(d)
        affine = ras_affine(reference) if isinstance(reference, MetaTensor) else None
        content = d.get(self.record_key) if isinstance(d.get(self.record_key), dict) else {}
        preview = None
        if self.preview is not None:
            preview = (self.preview, {**images, "affine_ras": affine, "colormap": self.colormap,
                                      **self._preview_units(d, content)})
        extras = None
        if self.report is not None:
            extras = {"report": (self.report, "html", self._report_writer(self._report_images(d, images), affine))}
        d[self.output_key] = self.save(items, reference, inputs=inputs, record_content=content, preview=preview,
                                       extras=extras)
        return d

    def _preview_units(self, d: Mapping[Hashable, Any], content: Mapping[str, Any]) -> dict[str, Any]:
        """The preview's names and units (CT or MRI, SUV or Bq/mL...) and the windows that put its colour bars in
        those units: the MRI's and PET's normalisation windows; the fused volume's is the MRI's, unless kept in
        ``[0, 1]``."""
        from asfe3d.reports.text import anatomical_name, anatomical_units, fused_units, pet_units

        anat = anatomical_name(content)
        labels = {"anatomical": anat, "anatomical_units": anatomical_units(anat), "pet_units": pet_units(content),
                  "fused_units": fused_units(content, anat)}
        windows = {}
        for name in ("mri", "pet"):
            window = _require(d, self.preview_keys[name], type(self).__name__).meta.get(WINDOW_KEY)
            if window is not None:
                windows[name] = (float(window[0]), float(window[1]))
        if "mri" in windows:
            windows["fused"] = (0.0, 1.0) if labels["fused_units"] == "[0, 1]" else windows["mri"]
        return {"labels": labels, "windows": windows}

    def _unit_images(self, d: Mapping[Hashable, Any]) -> dict[str, Any]:
        """The ``[0, 1]`` images of the preview and the report, as ``(X, Y, Z)`` arrays (``rgb``: ``(X, Y, Z, 3)``
        or ``None``), under ``mri``, ``pet``, ``fused`` and ``rgb``."""
        k, who = self.preview_keys, type(self).__name__
        images = {name: _require(d, k[name], who)[0].detach().cpu().numpy() for name in ("mri", "pet", "fused")}
        rgb = d.get(k["rgb"])
        images["rgb"] = None if rgb is None else rgb.detach().cpu().numpy().transpose(1, 2, 3, 0)
        return images

    def _report_images(self, d: Mapping[Hashable, Any], images: Mapping[str, Any]) -> dict[str, Any]:
        """The report's images in their units: the ``[0, 1]`` MRI and PET mapped back through their normalisation
        windows (``asfe3d_window``), and the fused volume as written (the first output)."""
        k, who = self.preview_keys, type(self).__name__
        out = {}
        for name in ("mri", "pet"):
            window = _require(d, k[name], who).meta.get(WINDOW_KEY)
            out[name] = images[name] if window is None else images[name] * (window[1] - window[0]) + window[0]
        out["fused"] = _require(d, next(iter(self.outputs)), who)[0].detach().cpu().numpy()
        return out

    def _report_writer(self, images: Mapping[str, Any], affine: Any) -> Any:
        def write(tmp: Path, content: Mapping[str, Any]) -> None:
            from asfe3d.reports import write_subject_report

            write_subject_report(tmp, mri_image=(images["mri"], affine), pet_on_mri_image=(images["pet"], affine),
                                 fused_image=(images["fused"], affine), result=content,
                                 title=self.outputs[next(iter(self.outputs))].name.split(".")[0], overwrite=True)

        return write


LoadVolumeD = LoadVolumeDict = LoadVolumed
HeadMaskD = HeadMaskDict = HeadMaskd
RegisterToReferenceD = RegisterToReferenceDict = RegisterToReferenced
RobustNormalizeD = RobustNormalizeDict = RobustNormalized
SmoothMmD = SmoothMmDict = SmoothMmd
FillOutsideMaskD = FillOutsideMaskDict = FillOutsideMaskd
FuseD = FuseDict = Fused
ColourFuseD = ColourFuseDict = ColourFused
RestoreIntensityD = RestoreIntensityDict = RestoreIntensityd
SaveLikeReferenceD = SaveLikeReferenceDict = SaveLikeReferenced
