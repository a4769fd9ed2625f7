"""Task heads and parameter-count matching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from freqnn.models import (
    SequenceModel,
    build_model,
    count_parameters,
    matched_hidden_size,
    rnn_parameter_count,
    time_deltas,
)

ARCHS = ["sfm", "asfm", "sfm-stock", "psfm", "lstm", "gru"]


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize(("inp", "hidden", "layers", "out"), [(1, 7, 1, 0), (3, 12, 2, 5)])
def test_rnn_parameter_count_matches_torch(arch: str, inp: int, hidden: int, layers: int,
                                           out: int) -> None:
    rnn = (nn.LSTM if arch == "lstm" else nn.GRU)(inp, hidden, layers)
    expected = count_parameters(rnn) + (hidden * out + out if out else 0)
    assert rnn_parameter_count(arch, inp, hidden, layers, out) == expected


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("target", [50, 999, 5090, 123457])
def test_matched_hidden_size_is_the_closest(arch: str, target: int) -> None:
    h = matched_hidden_size(target, arch, input_size=2, output_size=3, num_layers=1)
    gap = abs(rnn_parameter_count(arch, 2, h, 1, 3) - target)
    for other in range(1, 2 * h + 3):
        assert gap <= abs(rnn_parameter_count(arch, 2, other, 1, 3) - target)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_build_model_matches_the_sfm_budget(arch: str) -> None:
    model, counts = build_model(arch, 1, 2, "sequence", hidden_size=16, state_size=8,
                                num_freqs=8, use_times=True)
    sfm, sfm_counts = build_model("sfm", 1, 2, "sequence", hidden_size=16, state_size=8,
                                  num_freqs=8, use_times=True)
    assert counts["sfm_params"] == sfm_counts["params"] == count_parameters(sfm)
    assert counts["params"] == count_parameters(model)
    assert model.body.input_size == 2  # value + time since the previous sample
    h = counts["hidden_size"]
    assert h == model.body.hidden_size
    gaps = [abs(rnn_parameter_count(arch, 2, k, 1, 2) - counts["sfm_params"])
            for k in (h - 1, h, h + 1)]
    assert gaps[1] == min(gaps)
    _, c = build_model(arch, 1, 2, hidden_size=16, match_params=False)
    assert c["hidden_size"] == 16
    explicit, c = build_model(arch, 1, 2, hidden_size=16, rnn_hidden_size=5)
    assert c["hidden_size"] == 5 and explicit.body.hidden_size == 5


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("head", ["sequence", "step"])
def test_output_shapes_and_padding(arch: str, head: str) -> None:
    torch.manual_seed(0)
    model = SequenceModel(arch, 2, 3, head, hidden_size=6, state_size=3, num_freqs=4,
                          use_times=True).double()
    x = torch.randn(3, 9, 2, dtype=torch.float64)
    times = torch.cumsum(torch.rand(3, 9, dtype=torch.float64) + 0.1, dim=1)
    lengths = torch.tensor([9, 5, 1])
    out = model(x, times=times, lengths=lengths)
    assert out.shape == ((3, 3) if head == "sequence" else (3, 9, 3))
    # a padded sequence gives the outputs of the sequence alone
    for b, n in enumerate(lengths.tolist()):
        alone = model(x[b : b + 1, :n], times=times[b : b + 1, :n])
        got = out[b] if head == "sequence" else out[b, :n]
        torch.testing.assert_close(got, alone[0], rtol=1e-10, atol=1e-12)


def test_rnn_reads_time_deltas_and_sfm_reads_times() -> None:
    times = torch.tensor([[0.5, 1.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(time_deltas(times), torch.tensor([[0.0, 0.5, 2.0]],
                                                                 dtype=torch.float64))
    torch.manual_seed(0)
    sfm = SequenceModel("sfm", 1, 2, hidden_size=4, state_size=2, num_freqs=3,
                        use_times=True).double()
    x = torch.randn(1, 3, 1, dtype=torch.float64)
    # SFM amplitudes are invariant to a global time shift but not to a change of the gaps
    torch.testing.assert_close(sfm(x, times=times), sfm(x, times=times + 10.0))
    assert not torch.allclose(sfm(x, times=times), sfm(x, times=times * 2.0))
    lstm = SequenceModel("lstm", 1, 2, hidden_size=4, use_times=True).double()
    torch.testing.assert_close(lstm(x, times=times), lstm(x, times=times + 10.0))
    assert not torch.allclose(lstm(x, times=times), lstm(x, times=times * 2.0))


def test_errors() -> None:
    with pytest.raises(ValueError, match="arch: expected one of"):
        SequenceModel("rnn", 1, 2)
    with pytest.raises(ValueError, match="head: expected"):
        SequenceModel("lstm", 1, 2, head="token")
    with pytest.raises(ValueError, match="hidden_size: expected a positive int"):
        SequenceModel("lstm", 1, 2, hidden_size=0)
    model = SequenceModel("gru", 2, 2, use_times=True)
    with pytest.raises(ValueError, match="x: expected last dimension input_size=2"):
        model(torch.zeros(1, 4, 3), times=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="times: expected timestamps"):
        model(torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match=r"times: expected shape \(1, 4\)"):
        model(torch.zeros(1, 4, 2), times=torch.zeros(4))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(1,\) with values in"):
        model(torch.zeros(1, 4, 2), times=torch.zeros(1, 4), lengths=torch.tensor([5]))
    with pytest.raises(TypeError, match="x: expected a floating-point"):
        model(torch.zeros(1, 4, 2, dtype=torch.long), times=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="target: expected a positive int"):
        matched_hidden_size(0, "lstm", 1, 1)
    with pytest.raises(ValueError, match="arch: expected a baseline"):
        rnn_parameter_count("sfm", 1, 1)


def test_stock_sfm_arch() -> None:
    from freqnn.sfm.stock import StockSFM

    model, counts = build_model("sfm-stock", 2, 3, "step", hidden_size=6, state_size=4,
                                num_freqs=5)
    assert isinstance(model.body, StockSFM) and model.is_sfm
    # D = M = hidden_size (state_size is ignored); the LSTM / GRU budget stays the SFM's
    assert model.body.state_size == 6 and model.body.num_freqs == 5
    assert counts["params"] == count_parameters(model) == (4 * 6 + 5) * (2 + 6 + 1) + 5 + 6 + 21
    _, sfm_counts = build_model("sfm", 2, 3, "step", hidden_size=6, state_size=4, num_freqs=5)
    assert counts["sfm_params"] == sfm_counts["params"]
    _, lstm_counts = build_model("lstm", 2, 3, "step", hidden_size=6, state_size=4, num_freqs=5)
    assert lstm_counts["sfm_params"] == sfm_counts["params"]


def test_parallel_sfm_arch_and_one_batch_of_training(tmp_path) -> None:
    """``--model psfm``: a ParallelSFM body with the SFM sizes (no z_{t-1} weights, so fewer
    parameters than the SFM, whose count the LSTM / GRU budget keeps); one training batch."""
    from freqnn import ParallelSFM
    from freqnn.tasks import get_task
    from freqnn.train import make_config, train

    model, counts = build_model("psfm", 2, 3, "step", hidden_size=6, state_size=4, num_freqs=5)
    sfm, sfm_counts = build_model("sfm", 2, 3, "step", hidden_size=6, state_size=4, num_freqs=5)
    assert isinstance(model.body, ParallelSFM) and model.is_sfm
    recurrent = count_parameters(sfm) - count_parameters(model)
    assert recurrent == sfm.body.cells[0].weight_hh.numel() > 0
    assert counts["params"] == count_parameters(model)
    assert counts["sfm_params"] == sfm_counts["params"]
    cfg = make_config(get_task("signal_type"), {
        "model": "psfm", "n_train": 16, "n_val": 8, "n_test": 8, "length": 10, "batch_size": 8,
        "hidden_size": 4, "state_size": 2, "num_freqs": 2, "epochs": 1, "patience": 0,
        "limit_train_batches": 1, "progress": False, "num_threads": 1,
        "run_dir": str(tmp_path / "psfm")})
    results = train(cfg)
    assert results["model"] == "psfm" and 0 <= results["test"]["accuracy"] <= 1
