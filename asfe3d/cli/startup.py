"""Start-up of the ``asfe3d`` command: import MONAI without the optional integrations the command never uses.

``import monai`` imports every MONAI sub-package, and each of them binds its optional dependencies at import time
when they are installed: pytorch-ignite (which pulls in ``torch.distributed``'s optimisers and sympy), matplotlib
(its ``pyplot``, and so the whole package), ``scipy.signal``, scikit-learn, scikit-image (0.12 s), ``scipy.sparse``
(0.1 s, for an ultrasound transform), pandas, ITK and IPython. On a 2-core
machine that costs about 5 of the 7 seconds MONAI takes to import, on every run of the command, for code that
``asfe3d fuse``, ``demo`` and ``bids`` never call (their images are read by nibabel, SimpleITK and pydicom; colour
maps come from matplotlib's ``colormaps``, imported only when a colour output is asked for).

:func:`import_monai_lean` imports MONAI while those names are hidden, exactly as MONAI sees a minimal install
(torch and numpy only), which is a configuration MONAI supports: each binding becomes MONAI's own placeholder
that raises only if called. The names are hidden only while MONAI is imported; afterwards anything (pybids,
matplotlib colour maps) imports them normally. Only the command's own process does this (``asfe3d.cli.entry``),
never the library nor a program calling ``asfe3d.cli.main``: a workflow that imports ``asfe3d.transforms`` gets
MONAI exactly as installed.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
import time
from collections.abc import Sequence

__all__ = ["SKIPPED_AT_STARTUP", "import_monai_lean", "reuse_freed_memory"]

#: optional MONAI integrations hidden while MONAI is imported by the command
SKIPPED_AT_STARTUP: tuple[str, ...] = (
    "ignite", "matplotlib", "scipy.signal", "sklearn", "pandas", "itk", "IPython", "requests", "jsonschema",
    "scipy.optimize", "scipy.spatial", "skimage", "scipy.sparse",
)


class _Hide(importlib.abc.MetaPathFinder):
    """A meta-path finder that reports the given modules (and their sub-modules) as not installed."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if any(fullname == n or fullname.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(f"{fullname} is not imported by the asfe3d command", name=fullname)
        return None


def import_monai_lean(skip: Sequence[str] = SKIPPED_AT_STARTUP) -> float:
    """Import MONAI with the modules ``skip`` hidden (no-op when MONAI is already imported).

    Args:
        skip: top-level or dotted module names to hide while MONAI is imported; modules already imported are not
            affected.

    Returns:
        Seconds spent importing (0.0 when MONAI was already imported).
    """
    if "monai" in sys.modules:
        return 0.0
    start = time.perf_counter()
    hidden = [n for n in skip if n not in sys.modules]
    finder = _Hide(hidden)
    sys.meta_path.insert(0, finder)
    try:
        import monai.data  # noqa: F401  (imports all of MONAI)
        import monai.inferers  # noqa: F401
        import monai.transforms  # noqa: F401
    except ImportError as exc:  # a MONAI version that needs one of them: import it as installed, all of it
        logging.getLogger(__name__).debug("lean MONAI import failed (%s); importing MONAI as installed", exc)
        sys.meta_path.remove(finder)
        for name in [m for m in sys.modules if m == "monai" or m.startswith("monai.")]:
            del sys.modules[name]
        import monai.data  # noqa: F401,F811
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
    return time.perf_counter() - start


def reuse_freed_memory() -> bool:
    """Let glibc's ``malloc`` keep freed memory for reuse instead of handing every large block back to the system.

    glibc serves each block above 32 MiB (every volume-sized tensor or array) with a fresh ``mmap`` and unmaps it
    when freed, so the kernel zero-fills every page again at the next one: for a 0.9 mm head the network's pass
    alone took ~600,000 page faults (1.3-1.7 s of system time on 2 cores, more than the convolutions' share on a
    warm heap). Served from the heap (``M_MMAP_MAX`` 0) and kept there (``M_TRIM_THRESHOLD`` 2 GiB), freed blocks
    are reused: the same pass took 1.1 s instead of 3.6-5 s. Nothing computed changes. Memory the process no longer
    needs is then returned only when more than 2 GiB of it is free at the top of the heap, which for a command that
    ends after its subjects costs nothing. Only the command does this, never the library.

    Returns:
        ``True`` when glibc took both settings (``False`` on other C libraries, which are left as they are).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # glibc's malloc.h
    # one arena: the threads the command starts (the save step's writers, the registration's check) take their large
    # blocks from the same reused heap; a thread's own arena would serve each of them by a fresh mmap again
    return (bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
            and bool(mallopt(m_arena_max, 1)))
