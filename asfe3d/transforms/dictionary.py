"""Dictionary wrappers (``...d``) of :mod:`asfe3d.transforms.array`, MONAI style.

A typical chain over ``{"mri": path, "pet": path}``::

    Compose([
        LoadVolumed(keys=["mri", "pet"]),
        RegisterToReferenced(keys="pet", ref_key="mri"),
        ConcatItemsd(keys=["mri", "pet"], name="image"),         # MONAI's own: (2, X, Y, Z)
        RobustNormalized(keys="image"),
        Fused(keys="image", output_key="fused", method="wavelet"),
        SaveLikeReferenced(keys="fused", ref_key="mri", output_dir="out"),
    ])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform

from asfe3d.transforms.array import (
    ColourFuse,
    Fuse,
    LoadVolume,
    RegisterToReference,
    RobustNormalize,
    SaveLikeReference,
)

__all__ = [
    "LoadVolumed", "RegisterToReferenced", "RobustNormalized", "Fused", "ColourFused", "SaveLikeReferenced",
    "LoadVolumeD", "LoadVolumeDict", "RegisterToReferenceD", "RegisterToReferenceDict", "RobustNormalizeD",
    "RobustNormalizeDict", "FuseD", "FuseDict", "ColourFuseD", "ColourFuseDict", "SaveLikeReferenceD",
    "SaveLikeReferenceDict",
]


class LoadVolumed(MapTransform):
    """Dictionary wrapper of :class:`asfe3d.transforms.array.LoadVolume`.

    The original path is kept under ``<key>_path`` (the reference for :class:`SaveLikeReferenced`).

    Args:
        keys: keys holding file paths.
        allow_missing_keys: skip absent keys.
        kwargs: :class:`LoadVolume` settings (``role``, ``series_uid``, ``frame``, ``allow_nonfinite``).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.kwargs = kwargs

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            loader = LoadVolume(**{"role": str(key).upper(), **self.kwargs})
            d[f"{key}_path"] = d[key]
            d[key] = loader(d[key])
        return d


class RegisterToReferenced(MapTransform):
    """Dictionary wrapper of :class:`asfe3d.transforms.array.RegisterToReference`.

    Args:
        keys: moving images (e.g. ``"pet"``), each registered to ``ref_key`` and replaced by its resampled version.
        ref_key: the reference image (e.g. ``"mri"``).
        transform_key_postfix: the registration result goes under ``<key>_<postfix>``.
        allow_missing_keys: skip absent keys.
        kwargs: :class:`RegisterToReference` settings.
    """

    def __init__(self, keys: KeysCollection, ref_key: str = "mri", transform_key_postfix: str = "registration",
                 allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.postfix = transform_key_postfix
        self.register = RegisterToReference(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.ref_key not in d:
            raise KeyError(f"reference key {self.ref_key!r} not in the data (keys: {sorted(map(str, d))})")
        for key in self.key_iterator(d):
            d[key] = self.register(d[key], d[self.ref_key])
            d[f"{key}_{self.postfix}"] = self.register.last_result
        return d


class RobustNormalized(MapTransform):
    """Dictionary wrapper of :class:`asfe3d.transforms.array.RobustNormalize`.

    Args:
        keys: images to normalise (each channel separately).
        allow_missing_keys: skip absent keys.
        kwargs: :class:`RobustNormalize` settings.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalize = RobustNormalize(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalize(d[key])
        return d


class Fused(MapTransform):
    """Dictionary wrapper of :class:`asfe3d.transforms.array.Fuse`.

    Args:
        keys: 2-channel ``[MRI, PET]`` images.
        output_key: where the fused image goes (default: replace the input). Only with a single key.
        allow_missing_keys: skip absent keys.
        kwargs: :class:`Fuse` settings (``method`` and the method's own).

    Raises:
        ValueError: ``output_key`` with several keys.
    """

    def __init__(self, keys: KeysCollection, output_key: str | None = None, allow_missing_keys: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_key is not None and len(self.keys) != 1:
            raise ValueError(f"output_key needs exactly one input key, got keys={self.keys}")
        self.output_key = output_key
        self.fuse = Fuse(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key or key] = self.fuse(d[key])
        return d


class ColourFused(Fused):
    """Dictionary wrapper of :class:`asfe3d.transforms.array.ColourFuse` (same arguments as :class:`Fused`,
    plus ``colormap``)."""

    def __init__(self, keys: KeysCollection, output_key: str | None = None, allow_missing_keys: bool = False,
                 **kwargs: Any) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if output_key is not None and len(self.keys) != 1:
            raise ValueError(f"output_key needs exactly one input key, got keys={self.keys}")
        self.output_key = output_key
        self.fuse = ColourFuse(**kwargs)


class SaveLikeReferenced(MapTransform):
    """Dictionary wrapper of :class:`asfe3d.transforms.array.SaveLikeReference`.

    Args:
        keys: images to write.
        ref_key: the reference: its ``<ref_key>_path`` entry (set by :class:`LoadVolumed`) or a path/Volume under
            ``ref_key`` itself.
        output_dir: folder for ``<reference stem>_<postfix>.nii.gz``.
        output_postfix: name postfix; with several keys, ``<postfix>_<key>``.
        overwrite: replace existing files.
        path_key_postfix: the written path goes under ``<key>_<postfix>``.
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, ref_key: str = "mri", output_dir: str | Path = ".",
                 output_postfix: str = "fused", overwrite: bool = False, path_key_postfix: str = "path",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.output_dir = Path(output_dir)
        self.output_postfix = output_postfix
        self.overwrite = overwrite
        self.path_key_postfix = path_key_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        reference = d.get(f"{self.ref_key}_path", d.get(self.ref_key))
        if reference is None:
            raise KeyError(f"no reference under {self.ref_key!r} or {self.ref_key + '_path'!r}")
        inputs = [v for k, v in d.items() if str(k).endswith("_path") and isinstance(v, (str, Path))]
        for key in self.key_iterator(d):
            postfix = self.output_postfix if len(self.keys) == 1 else f"{self.output_postfix}_{key}"
            saver = SaveLikeReference(output_dir=self.output_dir, output_postfix=postfix, overwrite=self.overwrite)
            d[f"{key}_{self.path_key_postfix}"] = saver(d[key], reference, inputs=inputs)
        return d


LoadVolumeD = LoadVolumeDict = LoadVolumed
RegisterToReferenceD = RegisterToReferenceDict = RegisterToReferenced
RobustNormalizeD = RobustNormalizeDict = RobustNormalized
FuseD = FuseDict = Fused
ColourFuseD = ColourFuseDict = ColourFused
SaveLikeReferenceD = SaveLikeReferenceDict = SaveLikeReferenced
