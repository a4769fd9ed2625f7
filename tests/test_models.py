"""Task heads and parameter-count matching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from freqnn.models import (
    ARCH_LABELS,
    BidirectionalRNN,
    SequenceModel,
    build_model,
    count_parameters,
    matched_hidden_size,
    reverse_padded,
    rnn_parameter_count,
    step_times,
    time_deltas,
)

ARCHS = ["sfm", "asfm", "sfm-stock", "psfm", "lstm", "gru", "bilstm", "bigru"]


@pytest.mark.parametrize("arch", ["lstm", "gru", "bilstm", "bigru"])
@pytest.mark.parametrize(("inp", "hidden", "layers", "out"), [(1, 7, 1, 0), (3, 12, 2, 5)])
def test_rnn_parameter_count_matches_torch(arch: str, inp: int, hidden: int, layers: int,
                                           out: int) -> None:
    bidirectional = arch.startswith("bi")
    rnn = (nn.LSTM if arch.endswith("lstm") else nn.GRU)(inp, hidden, layers,
                                                         bidirectional=bidirectional)
    width = 2 * hidden if bidirectional else hidden
    expected = count_parameters(rnn) + (width * out + out if out else 0)
    assert rnn_parameter_count(arch, inp, hidden, layers, out) == expected
    if bidirectional:
        ours = BidirectionalRNN(arch[2:], inp, hidden, layers)
        assert count_parameters(ours) == count_parameters(rnn)


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
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, 4\], got .* \[5"):
        model(torch.zeros(1, 4, 2), times=torch.zeros(1, 4), lengths=torch.tensor([5]))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(1,\) \(one length per"):
        model(torch.zeros(1, 4, 2), times=torch.zeros(1, 4), lengths=torch.tensor([4, 4]))
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


def test_reverse_padded() -> None:
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_padded(x, torch.tensor([5, 3]))
    assert out[..., 0].tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]
    assert torch.equal(reverse_padded(out, torch.tensor([5, 3])), x)
    assert torch.equal(reverse_padded(x, None), x.flip(1))


def _packed_reference(model: BidirectionalRNN) -> nn.Module:
    """``nn.LSTM`` / ``nn.GRU(bidirectional=True)`` with the weights of ``model``."""
    ref = (nn.LSTM if model.mode == "lstm" else nn.GRU)(
        model.input_size, model.hidden_size, model.num_layers, batch_first=True,
        bidirectional=True).double()
    with torch.no_grad():
        for k in range(model.num_layers):
            for suffix, layers in (("", model.forward_layers), ("_reverse", model.backward_layers)):
                for name, value in layers[k].named_parameters():
                    getattr(ref, name.replace("_l0", f"_l{k}") + suffix).copy_(value)
    return ref


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_bidirectional_equals_torch_bidirectional_on_packed_sequences(mode: str,
                                                                     layers: int) -> None:
    torch.manual_seed(0)
    model = BidirectionalRNN(mode, 3, 6, layers).double()
    ref = _packed_reference(model)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 4, 1, 6])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                               enforce_sorted=False)
    expected, _ = nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True,
                                                   total_length=7)
    # padded steps are zero, as in the packed reference
    torch.testing.assert_close(model(x, lengths), expected, rtol=1e-10, atol=1e-10)
    full, _ = ref(x)
    torch.testing.assert_close(model(x), full, rtol=1e-10, atol=1e-10)
    # the padding never reaches the valid steps
    x2 = x.clone()
    x2[2, 1:] = 100.0
    torch.testing.assert_close(model(x2, lengths)[2, :1], expected[2, :1], rtol=1e-10,
                               atol=1e-10)


def test_bidirectional_dropout_between_layers_only_in_training() -> None:
    torch.manual_seed(0)
    model = BidirectionalRNN("gru", 2, 4, 2, dropout=0.5).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    model.eval()
    torch.testing.assert_close(model(x), _packed_reference(model)(x)[0])
    model.train()
    assert not torch.allclose(model(x), model(x))
    one = BidirectionalRNN("gru", 2, 4, 1, dropout=0.5).train()
    torch.testing.assert_close(one(x.float()), one(x.float()))  # nothing to drop


@pytest.mark.parametrize("arch", ["bilstm", "bigru"])
def test_bidirectional_sequence_head_reads_both_ends(arch: str) -> None:
    torch.manual_seed(0)
    model = SequenceModel(arch, 2, 3, "sequence", hidden_size=5).double()
    x = torch.randn(2, 6, 2, dtype=torch.float64)
    lengths = torch.tensor([6, 3])
    out = model.body(x, lengths)
    summary = torch.cat([out[[0, 1], [5, 2], :5], out[:, 0, 5:]], dim=-1)
    torch.testing.assert_close(model(x, lengths=lengths), model.readout(summary))
    assert model.readout.in_features == 10
    assert ARCH_LABELS[arch] == {"bilstm": "BiLSTM", "bigru": "BiGRU"}[arch]


@pytest.mark.parametrize("arch", ["bilstm", "bigru"])
@pytest.mark.parametrize(("inp", "out", "timed", "M", "D", "K", "layers"), [
    (40, 39, False, 64, 16, 8, 1), (1, 2, True, 16, 8, 8, 1), (88, 88, False, 64, 32, 4, 2)])
def test_bidirectional_matched_within_ten_percent(arch: str, inp: int, out: int, timed: bool,
                                                  M: int, D: int, K: int, layers: int) -> None:
    model, counts = build_model(arch, inp, out, "step", hidden_size=M, state_size=D,
                                num_freqs=K, num_layers=layers, use_times=timed)
    assert isinstance(model.body, BidirectionalRNN) and model.body.num_layers == layers
    assert model.body.input_size == inp + int(timed)  # LSTM-style time feature
    assert counts["params"] == count_parameters(model)
    assert abs(counts["params"] - counts["sfm_params"]) <= 0.1 * counts["sfm_params"]
    h = counts["hidden_size"]
    gaps = [abs(rnn_parameter_count(arch, inp + int(timed), k, layers, out) -
                counts["sfm_params"]) for k in (h - 1, h, h + 1)]
    assert gaps[1] == min(gaps)


def test_bidirectional_phoneme_budget_is_the_driver_s() -> None:
    """The counts of docs/results/phoneme.md (made by the removed experiment driver)."""
    sizes = {"hidden_size": 64, "state_size": 16, "num_freqs": 8}
    assert build_model("bilstm", 40, 39, "step", **sizes)[1] == {
        "params": 79349, "sfm_params": 79071, "hidden_size": 77}
    assert build_model("bigru", 40, 39, "step", **sizes)[1]["params"] == 79755


def test_bidirectional_errors() -> None:
    with pytest.raises(ValueError, match="mode: expected 'lstm' or 'gru', got 'rnn'"):
        BidirectionalRNN("rnn", 2, 3)
    with pytest.raises(ValueError, match="num_layers: expected a positive int, got 0"):
        BidirectionalRNN("lstm", 2, 3, 0)
    with pytest.raises(ValueError, match=r"dropout: expected a number in \[0, 1\), got 1.0"):
        BidirectionalRNN("lstm", 2, 3, 2, dropout=1.0)
    model = BidirectionalRNN("lstm", 2, 3)
    with pytest.raises(ValueError, match="x: expected last dimension input_size=2"):
        model(torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, 4\], got .* \[0"):
        model(torch.zeros(1, 4, 2), torch.tensor([0]))


def test_step_times_normalised_and_the_authors_collapse() -> None:
    lengths = torch.tensor([4, 2])
    normalised = step_times("normalised", 2, 4, lengths)
    torch.testing.assert_close(normalised[0], torch.tensor([0.25, 0.5, 0.75, 1.0],
                                                           dtype=torch.float64))
    torch.testing.assert_close(normalised[1, :2], torch.tensor([0.5, 1.0], dtype=torch.float64))
    authors = step_times("authors", 2, 4, lengths)
    # (n + 1) // L: 0 until the last valid step, where it is 1
    torch.testing.assert_close(authors[0], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(authors[1, :2], torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(step_times("normalised", 1, 3), torch.tensor(
        [[1 / 3, 2 / 3, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"time: expected one of \('normalised', 'authors'\)"):
        step_times("data", 1, 3)


@pytest.mark.parametrize("arch", ["sfm", "asfm", "lstm", "plstm"])
def test_time_mode_feeds_those_times_to_every_body(arch: str) -> None:
    torch.manual_seed(0)
    kw = {"hidden_size": 4, "state_size": 2, "num_freqs": 3}
    moded = SequenceModel(arch, 1, 2, head="step", time="normalised", **kw).double()
    plain = SequenceModel(arch, 1, 2, head="step", use_times=True, **kw).double()
    plain.load_state_dict(moded.state_dict())
    x = torch.randn(2, 5, 1, dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    given = step_times("normalised", 2, 5, lengths)
    # the task's own times (here: nonsense) are replaced
    torch.testing.assert_close(moded(x, times=torch.zeros(2, 5), lengths=lengths),
                               plain(x, times=given, lengths=lengths))
    torch.testing.assert_close(moded(x, lengths=lengths), plain(x, times=given, lengths=lengths))


def test_time_authors_warns_and_leaves_sfm_phases_at_zero_until_the_last_step() -> None:
    with pytest.warns(UserWarning, match=r"t = \(n \+ 1\) // L.*t = 0 at every step but"):
        model = SequenceModel("sfm", 1, 2, head="step", hidden_size=4, state_size=2,
                              num_freqs=3, time="authors").double()
    x = torch.randn(1, 4, 1, dtype=torch.float64)
    zero = model(x, times=None)
    with torch.no_grad():
        model.body.cells[0].omega.zero_()  # all frequencies 0: phases 0 at every step
    torch.testing.assert_close(model(x)[:, :3], zero[:, :3])
    assert not torch.allclose(model(x)[:, 3], zero[:, 3])


def test_build_model_log_grid_phase_and_time_options() -> None:
    from freqnn import frequency_grid

    model, _ = build_model("sfm", 1, 2, hidden_size=4, state_size=2, num_freqs=3,
                           frequencies="log", min_period=10.0, max_period=100.0)
    torch.testing.assert_close(model.body.cells[0].frequencies().double(),
                               frequency_grid("log", 3, min_period=10.0, max_period=100.0))
    asfm, _ = build_model("asfm", 1, 2, hidden_size=4, state_size=2, num_freqs=3,
                          phase="authors")
    assert asfm.body.phase == "authors"
    lstm, _ = build_model("lstm", 1, 2, hidden_size=4, state_size=2, num_freqs=3,
                          time="normalised")
    # the time mode adds the time feature to the baselines, as real timestamps do
    assert lstm.body.input_size == 2 and lstm.time == "normalised"
    # the periods belong to the log grid; another grid ignores them
    paper, _ = build_model("sfm", 1, 2, num_freqs=3, frequencies="paper", min_period=10.0)
    torch.testing.assert_close(paper.body.cells[0].frequencies().double(),
                               frequency_grid("paper", 3))
    with pytest.raises(ValueError, match=r"max_period: expected a finite period > 0"):
        build_model("sfm", 1, 2, frequencies="log", min_period=10.0)
    with pytest.raises(ValueError, match=r"phase: expected 'accumulate' for model 'sfm'"):
        build_model("sfm", 1, 2, phase="authors")
    with pytest.raises(ValueError, match=r"time: expected one of \('data', 'normalised'"):
        SequenceModel("lstm", 1, 2, time="seconds")


def test_memory_reaches_the_sfm_bodies_only():
    model, _ = build_model("asfm", 2, 3, hidden_size=4, state_size=3, num_freqs=2,
                           memory="normalised")
    assert all(cell.memory == "normalised" for cell in model.body.cells)
    lstm, _ = build_model("lstm", 2, 3, hidden_size=4, state_size=3, num_freqs=2,
                          memory="normalised")  # a task default for SFM leaves LSTM alone
    assert isinstance(lstm.body, torch.nn.LSTM)
    with pytest.raises(ValueError, match="memory: expected 'paper' for model 'gru' "):
        SequenceModel("gru", 2, 3, memory="normalised")
    with pytest.raises(ValueError, match="forget_init: expected 'uniform' for model 'psfm' "):
        SequenceModel("psfm", 2, 3, forget_init="chrono")
    chrono, _ = build_model("sfm", 2, 3, hidden_size=4, state_size=3, num_freqs=2,
                            forget_init="chrono")
    assert chrono.body.cells[0].forget_init == "chrono"


def test_bidirectional_rnn_on_the_meta_device_equals_eager_construction() -> None:
    torch.manual_seed(3)
    eager = BidirectionalRNN("gru", 2, 3, 2)
    with torch.device("meta"):
        lazy = BidirectionalRNN("gru", 2, 3, 2)
    lazy.to_empty(device="cpu")
    torch.manual_seed(3)
    lazy.reset_parameters()
    for (name, a), b in zip(eager.state_dict().items(), lazy.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
