"""A pair's reading, head mask and registration started early, in a thread, from the files.

On a 2-core machine a fresh ``asfe3d fuse`` spends its first 1.5-2 s importing torch and MONAI (Python, one core),
then reads the volumes, masks the MRI's head and registers the PET (SimpleITK, which releases the GIL; the rigid
registration runs single-threaded for bitwise reproducibility). :class:`EarlyRegistration` runs those three steps
in a thread on the same library functions (:func:`asfe3d.io.read_volume`, :func:`head_mask`,
:func:`register_pet_to_mri`) while the process starts, using no torch. The chain's transforms
(:class:`asfe3d.transforms.LoadVolume`, :class:`~asfe3d.transforms.HeadMask`,
:class:`~asfe3d.transforms.RegisterToReference`) take a result from it only when it was computed from exactly their
own inputs and settings (the same path and reader settings; the same voxels, pixel type and geometry; the same
registration settings); otherwise they compute it as always. So an early result is the result the chain would have
computed, never an approximation of it, and a run that cannot use it only loses the time it would have saved.

Errors in the thread are kept, not raised: the chain then reads or registers itself and raises the error from the
step where it belongs, with the step's own message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from asfe3d.io import read_volume, sitk_image_from_ras_affine
from asfe3d.registration.qc import with_unmeasured
from asfe3d.registration.register import RegistrationResult, head_mask, register_pet_to_mri, resolve_method

__all__ = ["EarlyRegistration", "RegisterAhead", "claim_early_registration", "same_image", "withdraw_unclaimed"]

logger = logging.getLogger(__name__)

#: started early registrations not yet claimed, by their (MRI, PET) paths
_STARTED: dict[tuple[Path, Path], EarlyRegistration] = {}
_STARTED_LOCK = threading.Lock()

#: registration settings that do not change the result (the thread never draws a progress bar)
_NOT_COMPARED = ("progress",)


def same_image(a: sitk.Image, b: sitk.Image) -> bool:
    """Whether two SimpleITK images hold the same voxels on the same grid (pixel type, size, origin, spacing,
    direction and every voxel exactly equal)."""
    if (a.GetPixelID() != b.GetPixelID() or a.GetSize() != b.GetSize() or a.GetOrigin() != b.GetOrigin()
            or a.GetSpacing() != b.GetSpacing() or a.GetDirection() != b.GetDirection()):
        return False
    # NaN equal to NaN: a PET's unmeasured voxels are NaN for the registration (qc.with_unmeasured)
    return bool(np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b), equal_nan=True))


def _float32_image(vol: Any) -> sitk.Image:
    """The SimpleITK image the chain registers for a volume (its float32 voxels on its RAS grid, as
    :func:`asfe3d.transforms.array.sitk_from_metatensor` makes it from the loaded MetaTensor)."""
    return sitk_image_from_ras_affine(np.asarray(vol.array_xyz(), dtype=np.float32), np.asarray(vol.affine_ras))


class EarlyRegistration:
    """The reading, head mask and registration of one MRI/PET pair, run in a daemon thread.

    Args:
        mri: the MRI path (the reference).
        pet: the PET path (registered onto the MRI).
        read_kwargs: per role (``"mri"``, ``"pet"``), the :func:`asfe3d.io.read_volume` settings the chain reads
            with (``role`` included).
        method: the registration method as the chain is given it (``"auto"`` resolved as the chain does).
        register_kwargs: the further :func:`register_pet_to_mri` settings (``seed``, ``threads``...).

    Attributes:
        error: what stopped the thread (``None``: nothing did).
        used: whether the chain took the registration.
        seconds: the thread's time per step (``read``, ``head_mask``, ``register``).

    Raises:
        ValueError: ``read_kwargs`` does not name both roles.
    """

    def __init__(self, mri: str | Path, pet: str | Path, read_kwargs: Mapping[str, Mapping[str, Any]],
                 method: str, register_kwargs: Mapping[str, Any] | None = None) -> None:
        if set(read_kwargs) != {"mri", "pet"}:
            raise ValueError(f"read_kwargs must name 'mri' and 'pet', got {sorted(read_kwargs)}")
        self.paths = {"mri": Path(mri), "pet": Path(pet)}
        self.read_kwargs = {role: dict(kw) for role, kw in read_kwargs.items()}
        self.method = method
        self.register_kwargs = _compared(register_kwargs or {})
        self.error: BaseException | None = None
        self.used = False
        self.seconds: dict[str, float] = {}
        self._volumes: dict[str, Any] = {}
        self._images: dict[str, sitk.Image] = {}
        self._head: sitk.Image | None = None
        self._result: RegistrationResult | None = None
        self._read_done = threading.Event()
        self._head_done = threading.Event()
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asfe3d-early-registration", daemon=True)

    @classmethod
    def from_settings(cls, mri: str | Path, pet: str | Path, settings: Any = None) -> EarlyRegistration:
        """The early registration of a pair as :func:`asfe3d.pipeline.fuse_pair` would read and register it
        (not started).

        Args:
            mri: the MRI path.
            pet: the PET path.
            settings: the run's :class:`asfe3d.settings.Settings` (``None``: the defaults).
        """
        from asfe3d.settings import Settings

        settings = Settings() if settings is None else settings
        reads = {k: {"role": k.upper(), **settings.inputs.reader_kwargs(k)} for k in ("mri", "pet")}
        reg = settings.registration
        return cls(mri, pet, reads, reg.method, reg.register_kwargs())

    def start(self) -> EarlyRegistration:
        """Start the thread, and offer the result to :func:`claim_early_registration`; returns ``self``."""
        self._thread.start()
        with _STARTED_LOCK:
            _STARTED[(self.paths["mri"], self.paths["pet"])] = self
        return self

    def cancel(self, wait: bool = True) -> None:
        """Stop the thread at its next step (reading, masking, registering), wait for it (unless ``wait`` is False:
        a process that ends at once, without the interpreter's teardown, need not wait for an ITK call to
        finish), and withdraw the offer."""
        self._cancelled.set()
        if wait:
            self.wait()
        with _STARTED_LOCK:
            if _STARTED.get((self.paths["mri"], self.paths["pet"])) is self:
                del _STARTED[(self.paths["mri"], self.paths["pet"])]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; ``True`` when it has."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            t = time.perf_counter()
            volumes = {}
            for role in ("mri", "pet"):
                if self._cancelled.is_set():
                    return
                volumes[role] = read_volume(self.paths[role], **self.read_kwargs[role])
            self.seconds["read"] = time.perf_counter() - t
            self._volumes = dict(volumes)  # handed over from here on; the thread keeps its own references
            if any(v.frames is not None for v in volumes.values()):
                return  # kept frames are realigned by the chain before it registers
            self._images = {role: _float32_image(v) for role, v in volumes.items()}
            self._read_done.set()
            if self._cancelled.is_set() or self._refused(volumes):
                return
            t = time.perf_counter()
            mask = head_mask(self._images["mri"])
            head = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(mask) != 0).astype(np.uint8))
            head.CopyInformation(self._images["mri"])
            self._head = head
            self._head_done.set()
            self.seconds["head_mask"] = time.perf_counter() - t
            if self._cancelled.is_set():
                return
            t = time.perf_counter()
            # registered as the chain registers it: what the file did not measure is NaN again
            self._images["pet"] = with_unmeasured(self._images["pet"], volumes["pet"].unmeasured)
            method, _ = resolve_method(self.method, volumes["mri"].info, volumes["pet"].info)
            self._result = register_pet_to_mri(self._images["mri"], self._images["pet"], method, head=head,
                                               **self.register_kwargs)
            self.seconds["register"] = time.perf_counter() - t
        except BaseException as exc:  # kept: the chain redoes the step and raises it where it belongs
            self.error = exc
            logger.debug("early registration stopped: %s", exc)
        finally:
            self._read_done.set()
            self._head_done.set()

    def _refused(self, volumes: Mapping[str, Any]) -> bool:
        """Whether the chain will refuse these inputs' roles (:func:`asfe3d.registration.roles.role_evidence`):
        then nothing is masked or registered, so a refusal is not kept waiting for a registration to end."""
        from asfe3d.registration.register import size_problem
        from asfe3d.registration.roles import role_evidence

        mri, pet = self._images["mri"], self._images["pet"]
        if size_problem(mri.GetSize(), mri.GetSpacing(), pet.GetSize(), pet.GetSpacing()) is not None:
            return True  # refused by the chain too (check_roles, or the registration's own check)
        certain, _ = role_evidence(sitk.GetArrayViewFromImage(mri), sitk.GetArrayViewFromImage(pet), mri.GetSpacing(),
                                   pet.GetSpacing(), volumes["mri"].info, volumes["pet"].info, self.paths["mri"],
                                   self.paths["pet"])
        return bool(certain)

    def volume(self, path: str | Path, read_kwargs: Mapping[str, Any]) -> Any | None:
        """The :class:`asfe3d.io.Volume` read early from ``path`` with ``read_kwargs``, handed over once (``None``:
        not read early with these settings, or already taken)."""
        self._read_done.wait()
        for role, p in self.paths.items():
            if Path(path) == p and dict(read_kwargs) == self.read_kwargs[role] and role in self._volumes:
                return self._volumes.pop(role)
        return None

    def head_mask(self, image: sitk.Image) -> sitk.Image | None:
        """The early head mask (uint8, 1 in the head) when ``image`` is the MRI it was computed from."""
        self._head_done.wait()
        if self._head is None or "mri" not in self._images or not same_image(image, self._images["mri"]):
            return None
        return self._head

    def result(self, fixed: sitk.Image, moving: sitk.Image, head: sitk.Image, method: str,
               register_kwargs: Mapping[str, Any]) -> RegistrationResult | None:
        """The early registration, handed over once, when it was computed from these images, mask, method (as
        given to the chain, before ``"auto"`` is resolved) and settings; ``None`` otherwise."""
        self.wait()
        result, self._result = self._result, None
        if result is None:
            return None
        if method != self.method or _compared(register_kwargs) != self.register_kwargs:
            logger.debug("early registration not used: other settings")
            return None
        images = self._images
        if not (same_image(fixed, images["mri"]) and same_image(moving, images["pet"]) and self._head is not None
                and same_image(head, self._head)):
            logger.debug("early registration not used: other images")
            return None
        self._images, self._head = {}, None  # the last consumer: the copies need not be kept
        self.used = True
        return result


def _compared(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in _NOT_COMPARED}


def claim_early_registration(mri: str | Path, pet: str | Path) -> EarlyRegistration | None:
    """The early registration started for these paths in this process, handed over once (``None``: none was)."""
    with _STARTED_LOCK:
        return _STARTED.pop((Path(mri), Path(pet)), None)


def withdraw_unclaimed(started: Iterable[EarlyRegistration | None]) -> None:
    """Stop those of ``started`` no run claimed (a skipped or failed subject, an interrupted cohort) and withdraw
    their offers (``None`` entries are ignored)."""
    for early in started:
        if early is not None and claim_early_registration(early.paths["mri"], early.paths["pet"]) is early:
            early.cancel()


class RegisterAhead:
    """For a loop over subjects: when subject ``k`` begins, start subject ``k + 1``'s early registration, so that
    its reading and registration run beside subject ``k``'s work; on leaving, withdraw the ones no run claimed.

    Args:
        items: the subjects, in the loop's order.
        start: starts one subject's :class:`EarlyRegistration` (``None``: none for it, e.g. a complete subject).
    """

    def __init__(self, items: Sequence[Any], start: Callable[[Any], EarlyRegistration | None]) -> None:
        self.items = items
        self.start = start
        self.started: list[EarlyRegistration | None] = []

    def begin(self, k: int) -> None:
        """Subject ``k`` begins: start the next one's."""
        if k + 1 < len(self.items):
            self.started.append(self.start(self.items[k + 1]))

    def __enter__(self) -> RegisterAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        withdraw_unclaimed(self.started)
