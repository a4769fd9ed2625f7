"""State-Frequency Memory layers: cells, multi-layer modules, state and the step equations."""

from .cell import AdaptiveSFMCell, SFMCell
from .layer import SFM, AdaptiveSFM
from .state import SFMState

__all__ = ["SFM", "AdaptiveSFM", "AdaptiveSFMCell", "SFMCell", "SFMState"]
