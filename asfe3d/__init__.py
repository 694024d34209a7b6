"""asfe3d: MONAI-native 3D MRI/PET fusion (ASFE-Fusion in 2D and 3D) with a geometry-safe volume pipeline.

The top-level package imports nothing heavy, so ``asfe3d --help`` stays instant; import the tiers directly
(``asfe3d.networks``, ``asfe3d.transforms``, ``asfe3d.io``...).
"""

from __future__ import annotations

__version__ = "0.1.0"

from asfe3d.errors import Asfe3dInputError

__all__ = ["Asfe3dInputError", "__version__"]
