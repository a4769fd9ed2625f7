"""freqnn: neural networks that learn in the frequency domain.

Core layers (torch + numpy only):

* :class:`SFM`, :class:`AdaptiveSFM`: State-Frequency Memory networks (Hu & Qi, ICML 2017)
  with an ``nn.LSTM``-like interface; :class:`SFMCell`, :class:`AdaptiveSFMCell` step by step;
  :class:`SFMState` the recurrent state.
"""

from .sfm import SFM, AdaptiveSFM, AdaptiveSFMCell, SFMCell, SFMState

__version__ = "0.1.0"

__all__ = ["SFM", "AdaptiveSFM", "AdaptiveSFMCell", "SFMCell", "SFMState", "__version__"]
