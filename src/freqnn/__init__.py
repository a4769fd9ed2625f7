"""freqnn: neural networks that learn in the frequency domain.

Core layers (torch + numpy only):

* :class:`SFM`, :class:`AdaptiveSFM`: State-Frequency Memory networks (Hu & Qi, ICML 2017)
  with an ``nn.LSTM``-like interface; :class:`SFMCell`, :class:`AdaptiveSFMCell` step by step;
  :class:`SFMState` the recurrent state; :class:`StockSFM` the KDD 2017 stock variant;
  :class:`ParallelSFM` SFM with input-driven gates, computed by a scan over time;
  :func:`frequency_grid` the frequency grids their ``frequencies=`` accepts (by name, or from
  the data's time scale: ``frequency_grid("log", K, min_period=..., max_period=...)``).
* :mod:`freqnn.baselines`: the SFM paper's other baselines with the same interface,
  :class:`ClockworkRNN`, :class:`PhasedLSTM`, :class:`RHN`, :class:`AssociativeLSTM`,
  :class:`ACTRNN`.
* :class:`CosineTransform`: a learnable analysis/synthesis cosine pair, the orthonormal DCT at
  initialisation; :class:`FramedTransform` frames long signals (block or half-overlap).
* :mod:`freqnn.functional`: ``dct`` / ``idct`` and the cosine-basis builders;
  :mod:`freqnn.metrics`: piano-roll likelihoods and accuracies; :mod:`freqnn.features`:
  log-mel filterbanks and a learnable cosine front end.

The experiment stack (runner, tasks, plots) lives in :mod:`freqnn.train`, :mod:`freqnn.tasks` and
the ``freqnn`` command and needs the ``experiments`` extra.
"""

from . import baselines, functional, metrics
from .baselines import ACTRNN, RHN, AssociativeLSTM, ClockworkRNN, PhasedLSTM
from .frequencies import frequency_grid
from .sfm import (
    SFM,
    AdaptiveSFM,
    AdaptiveSFMCell,
    ParallelSFM,
    ParallelSFMCell,
    SFMCell,
    SFMState,
    StockSFM,
    StockSFMCell,
)
from .transform import CosineTransform, FramedTransform

__version__ = "0.1.0"

__all__ = [
    "ACTRNN",
    "RHN",
    "SFM",
    "AdaptiveSFM",
    "AdaptiveSFMCell",
    "AssociativeLSTM",
    "ClockworkRNN",
    "CosineTransform",
    "FramedTransform",
    "ParallelSFM",
    "ParallelSFMCell",
    "PhasedLSTM",
    "SFMCell",
    "SFMState",
    "StockSFM",
    "StockSFMCell",
    "__version__",
    "baselines",
    "frequency_grid",
    "functional",
    "metrics",
]
