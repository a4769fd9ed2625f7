"""freqnn: neural networks that learn in the frequency domain.

Core layers (torch + numpy only):

* [`SFM`][freqnn.SFM], [`AdaptiveSFM`][freqnn.AdaptiveSFM]: State-Frequency Memory networks (Hu &
  Qi, ICML 2017)
  with an ``nn.LSTM``-like interface; [`SFMCell`][freqnn.SFMCell],
  [`AdaptiveSFMCell`][freqnn.AdaptiveSFMCell] step by step;
  [`SFMState`][freqnn.SFMState] the recurrent state; [`StockSFM`][freqnn.StockSFM] the KDD 2017
  stock variant;
  [`ParallelSFM`][freqnn.ParallelSFM] SFM with input-driven gates, computed by a scan over time;
  [`frequency_grid`][freqnn.frequency_grid] the frequency grids their ``frequencies=`` accepts (by
  name, or from
  the data's time scale: ``frequency_grid("log", K, min_period=..., max_period=...)``).
* ``freqnn.baselines``: the SFM paper's other baselines with the same interface,
  [`ClockworkRNN`][freqnn.ClockworkRNN], [`PhasedLSTM`][freqnn.PhasedLSTM], [`RHN`][freqnn.RHN],
  [`AssociativeLSTM`][freqnn.AssociativeLSTM],
  [`ACTRNN`][freqnn.ACTRNN].
* [`CosineTransform`][freqnn.CosineTransform]: a learnable analysis/synthesis cosine pair, the
  orthonormal DCT at
  initialisation; [`FramedTransform`][freqnn.FramedTransform] frames long signals (block or
  half-overlap).
* [`freqnn.functional`][freqnn.functional]: ``dct`` / ``idct`` and the cosine-basis builders;
  [`freqnn.metrics`][freqnn.metrics]: piano-roll likelihoods and accuracies;
  [`freqnn.features`][freqnn.features]:
  log-mel filterbanks and a learnable cosine front end.

The experiment stack (runner, tasks, plots) lives in ``freqnn.train``, ``freqnn.tasks`` and
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
