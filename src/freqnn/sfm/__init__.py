"""State-Frequency Memory layers: cells, multi-layer modules, state and the step equations.

The recurrence runs on a registered operator (``freqnn.sfm.kernels``) by default;
``use_reference()``, ``use_path(...)`` / ``set_path(...)`` choose the path and ``empty_cache()``
frees its buffers.
"""

from .cell import AdaptiveSFMCell, SFMCell
from .kernels import empty_cache, get_path, set_path, use_path, use_reference
from .layer import SFM, AdaptiveSFM
from .parallel import ParallelSFM, ParallelSFMCell
from .state import SFMState
from .stock import StockSFM, StockSFMCell

__all__ = [
    "SFM",
    "AdaptiveSFM",
    "AdaptiveSFMCell",
    "ParallelSFM",
    "ParallelSFMCell",
    "SFMCell",
    "SFMState",
    "StockSFM",
    "StockSFMCell",
    "empty_cache",
    "get_path",
    "set_path",
    "use_path",
    "use_reference",
]
