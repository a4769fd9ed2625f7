"""Shared fixtures of the baseline tests: a tiny float64 instance of each model.

The sizes are small so that the per-step references stay fast; each model's configuration
makes its distinctive mechanism act within a few steps (three clock periods for the
clockwork RNN, periods of a few time units and a wide open phase for Phased LSTM, several
ponder steps for ACT).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from freqnn.baselines import ACTRNN, RHN, AssociativeLSTM, ClockworkRNN, PhasedLSTM

N = 3  # input size of the tiny models
H = 6  # hidden size (a multiple of the clockwork's 3 modules, even for the A-LSTM)

#: name -> (class, constructor options of the tiny instance)
TINY: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "cwrnn": (ClockworkRNN, {"periods": (1, 2, 5)}),
    "plstm": (PhasedLSTM, {"r_on": 0.5, "period_range": (1.5, 6.0)}),
    "rhn": (RHN, {"depth": 3}),
    "alstm": (AssociativeLSTM, {"copies": 3}),
    "act": (ACTRNN, {"max_ponder": 4}),
}
NAMES = list(TINY)


def build(name: str, num_layers: int = 1, dtype: torch.dtype = torch.float64,
          **kw: Any) -> nn.Module:
    """The tiny model ``name`` (seeded), float64 by default."""
    cls, options = TINY[name]
    torch.manual_seed(1)
    model = cls(N, H, num_layers, dtype=dtype, **{**options, **kw})
    if name == "act":
        # a halting bias of 0 lets the halting sums cross 1 - eps after 2 to 4 ponder steps
        for cell in model.all_cells():
            torch.nn.init.zeros_(cell.bias_halt)
    return model


def random_state(model: nn.Module, batch: int, generator: torch.Generator | None = None
                 ) -> tuple:
    """A state with random per-layer fields and a clock well past 0."""
    shape = (batch, 1) if model.batch_first else (1, batch)
    _, zero = model(torch.zeros(*shape, model.input_size, dtype=torch.float64))
    fields = []
    for value in zero:
        if value.is_floating_point() and value.dim() > 1:
            fields.append(0.5 * torch.randn(value.shape, dtype=value.dtype, generator=generator))
        elif value.is_floating_point():
            fields.append(torch.rand(value.shape, dtype=value.dtype, generator=generator) * 20)
        else:
            fields.append(torch.randint(0, 20, value.shape, generator=generator))
    return type(zero)(*fields)


def assert_states_equal(a: tuple, b: tuple, **tol: float) -> None:
    assert type(a) is type(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **tol)


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny(name: str) -> Callable[..., nn.Module]:
    """``tiny(**kw)`` builds the current model (see :func:`build`)."""
    return lambda **kw: build(name, **kw)

