"""The SFM paper's other recurrent baselines, each written from its own paper.

Every class has the ``nn.LSTM`` interface ([`RecurrentLayer`][freqnn.baselines.RecurrentLayer]):
``(input_size,
hidden_size, num_layers=1, *, batch_first=False, dropout=0.0, ...)`` and
``forward(x, state=None, *, lengths=None) -> (output, state)``, state passing that continues a
sequence exactly, padded batches, unbatched input.

* [`ClockworkRNN`][freqnn.baselines.ClockworkRNN]: Koutník et al., ICML 2014;
* [`PhasedLSTM`][freqnn.baselines.PhasedLSTM]: Neil, Pfeiffer, Liu, NeurIPS 2016 (takes ``times=``
  as SFM does);
* [`RHN`][freqnn.baselines.RHN]: recurrent highway network, Zilly et al., ICML 2017;
* [`AssociativeLSTM`][freqnn.baselines.AssociativeLSTM]: Danihelka et al., ICML 2016;
* [`ACTRNN`][freqnn.baselines.ACTRNN]: adaptive computation time over a GRU, Graves 2016
  (``.ponder_cost``).

Core: torch and the standard library only.
"""

from ._base import RecurrentLayer
from .act import ACTRNN, ACTRNNState
from .associative import AssociativeLSTM, AssociativeLSTMState
from .clockwork import ClockworkRNN, CWRNNState
from .highway import RHN, RHNState
from .phased import PhasedLSTM, PhasedLSTMState

__all__ = [
    "ACTRNN",
    "RHN",
    "ACTRNNState",
    "AssociativeLSTM",
    "AssociativeLSTMState",
    "CWRNNState",
    "ClockworkRNN",
    "PhasedLSTM",
    "PhasedLSTMState",
    "RHNState",
    "RecurrentLayer",
]
