"""freqnn.sfm.trace: the traced activations are those the layer computes."""

from __future__ import annotations

import pytest
import torch

from freqnn import SFM, AdaptiveSFM
from freqnn.sfm.trace import trace


@pytest.mark.parametrize("make", [
    lambda: SFM(3, 5, 4, 3, 2, batch_first=True, dtype=torch.float64),
    lambda: AdaptiveSFM(3, 5, 4, 3, 2, batch_first=True, dtype=torch.float64),
    lambda: AdaptiveSFM(3, 5, 4, 3, batch_first=True, phase="authors", dtype=torch.float64),
    lambda: SFM(3, 5, 4, 3, batch_first=True, readout="mean", memory="normalised",
                dtype=torch.float64),
])
@pytest.mark.parametrize("padded", [False, True])
def test_the_traced_read_out_gives_the_layer_output(make, padded: bool) -> None:
    torch.manual_seed(0)
    sfm = make()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    times = torch.rand(2, 9, dtype=torch.float64).cumsum(1)
    lengths = torch.tensor([9, 6]) if padded else None
    out, _ = sfm(x, times=times, lengths=lengths)
    layers = trace(sfm, x, times=times, lengths=lengths)
    assert len(layers) == sfm.num_layers
    top = layers[-1]
    # z_t = sum_k o_t^k tanh(W_z^k A_t^k + b_z^k), from the traced o and read-out
    z = (top.o * torch.tanh(top.readout)).sum(-2).transpose(0, 1)
    if sfm.cells[-1].readout == "mean":
        z = z / sfm.num_freqs
    valid = torch.ones(2, 9, dtype=torch.bool) if lengths is None else (
        torch.arange(9) < lengths[:, None])
    torch.testing.assert_close(z[valid], out[valid], rtol=1e-12, atol=1e-12)
    assert top.f_ste.shape == (9, 2, 4) and top.f_fre.shape == (9, 2, 3)
    assert top.amplitude.shape == (9, 2, 4, 3) and top.o.shape == (9, 2, 3, 5)
    assert (top.omega is None) == (not sfm.adaptive)
    for gate in (top.f_ste, top.f_fre, top.g, top.o):
        assert bool(((gate > 0) & (gate < 1)).all())


def test_trace_checks_its_input() -> None:
    sfm = SFM(3, 5, 4, 3)
    with pytest.raises(ValueError, match="x"):
        trace(sfm, torch.randn(9, 2, 4))
