"""Phone classification task: masked loss / metrics, baselines, front end, end-to-end runs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as Fn

from freqnn import features as F
from freqnn.tasks import collate
from freqnn.tasks import phoneme as T

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
TINY = {"n_texts": 10, "epochs": 1, "max_train_utterances": 4, "hidden_size": 8,
        "state_size": 4, "num_freqs": 4, "batch_size": 2}


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    items = []
    for n in (5, 3, 4):
        y = torch.randint(0, 39, (n,), generator=g)
        y[0] = -1 if n == 3 else y[0]
        items.append({"x": torch.randn(n, 2, generator=g), "y": y})
    batch = collate(items)
    return batch, torch.randn(3, 5, 39, generator=g, dtype=torch.float64), items


def test_loss_and_metrics_ignore_padding_and_unlabelled_frames():
    batch, out, items = _batch()
    losses, correct = [], 0
    for i, item in enumerate(items):
        for t, label in enumerate(item["y"].tolist()):
            if label < 0:
                continue
            losses.append(float(Fn.cross_entropy(out[i, t][None], torch.tensor([label]))))
            correct += int(out[i, t].argmax()) == label
    assert float(T.frame_loss(out, batch)) == pytest.approx(sum(losses) / len(losses))
    metrics = T.frame_metrics(out, batch)
    assert float(metrics["loss"][0]) == pytest.approx(sum(losses))
    assert float(metrics["loss"][1]) == len(losses) == 11
    assert float(metrics["accuracy"][0]) == correct


def test_confusion_matrix():
    pred = torch.tensor([0, 1, 1, 2, 38])
    true = torch.tensor([0, 1, 2, 2, 0])
    m = T.confusion_matrix(pred, true)
    ref = torch.zeros(39, 39, dtype=torch.long)
    for p, t in zip(pred.tolist(), true.tolist(), strict=True):
        ref[t, p] += 1
    assert torch.equal(m, ref)


def test_reverse_padded():
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = T.reverse_padded(x, torch.tensor([5, 3]))
    assert out[..., 0].tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]
    assert torch.equal(T.reverse_padded(out, torch.tensor([5, 3])), x)
    assert torch.equal(T.reverse_padded(x, None), x.flip(1))


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_birnn_equals_packed_bidirectional_rnn(arch):
    torch.manual_seed(0)
    model = T.BiRNN(arch, 3, 39, 6).double()
    ref = (torch.nn.LSTM if arch == "lstm" else torch.nn.GRU)(
        3, 6, batch_first=True, bidirectional=True).double()
    with torch.no_grad():
        for name, value in model.forward_rnn.named_parameters():
            getattr(ref, name).copy_(value)
        for name, value in model.backward_rnn.named_parameters():
            getattr(ref, name + "_reverse").copy_(value)
    x = torch.randn(3, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 4, 2])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                     enforce_sorted=False)
    hidden, _ = torch.nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True)
    expected = model.readout(hidden)
    out = model(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[b, :n], expected[b, :n])
    assert T.BiRNN.parameter_count(arch, 3, 6, 39) == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="arch: expected 'lstm' or 'gru'"):
        T.BiRNN("rnn", 3, 39, 6)


@pytest.mark.parametrize("name", T.MODELS)
def test_experiment_models_are_matched(name):
    cfg = dict(T.DEFAULTS)
    model, counts = T.build_experiment_model(name, 40, cfg)
    assert counts["params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    extra = 400 if name.endswith("-cosine") else 0  # the front end's learnable frequencies
    assert abs(counts["params"] - extra - counts["sfm_params"]) / counts["sfm_params"] < 0.02


def test_front_end_model_forward():
    torch.manual_seed(0)
    model, _ = T.build_experiment_model("lstm-cosine", 40, dict(T.DEFAULTS, hidden_size=8))
    wave = torch.randn(2, 2000) * 0.1
    wave[1, 1200:] = 0
    lengths = torch.tensor([F.num_frames(2000), F.num_frames(1200)])
    out = model(wave, lengths)
    assert out.shape == (2, 11, 39)
    ref = model.body(model.frontend(F.frame_signal(wave)), lengths=lengths)
    torch.testing.assert_close(out[0], ref[0])
    torch.testing.assert_close(out[1, : lengths[1]], ref[1, : lengths[1]])
    with pytest.raises(ValueError, match="model: expected one of"):
        T.build_experiment_model("transformer", 40, dict(T.DEFAULTS))


def test_front_end_utterance_norm_removes_gain():
    torch.manual_seed(0)
    cfg = dict(T.DEFAULTS, hidden_size=8, normalisation="utterance")
    model, _ = T.build_experiment_model("sfm-cosine", 40, cfg)
    assert model.utterance_norm
    wave = torch.randn(2, 3000) * 0.1
    wave[1, 2000:] = 0
    lengths = torch.tensor([F.num_frames(3000), F.num_frames(2000)])
    out = model(wave, lengths)
    # a gain multiplies every band energy: log energies shift, per-utterance norm cancels it
    torch.testing.assert_close(model(3.0 * wave, lengths), out, atol=2e-4, rtol=1e-4)
    alone = model(wave[1:, :2000], lengths[1:])
    torch.testing.assert_close(out[1, : lengths[1]], alone[0], atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    if shutil.which("flite") is None:
        pytest.skip("flite not installed")
    path = tmp_path_factory.mktemp("phoneme_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FREQNN_CACHE", str(path))
        T.load_corpus(dict(T.DEFAULTS, **TINY))
        yield path


@needs_flite
def test_build_task_data(cache, monkeypatch):
    monkeypatch.setenv("FREQNN_CACHE", str(cache))
    cfg = dict(T.DEFAULTS, **TINY)
    data = T.build(cfg)
    assert len(data.train) == 4 and len(data.val) == 3 and len(data.test) == 2
    assert data.input_size == 40 and data.output_size == 39 and data.info["test_voice"] == "rms"
    frames = torch.cat([data.train[i]["x"] for i in range(4)])
    assert frames.mean(0).abs().max() < 1e-4 and (frames.std(0) - 1).abs().max() < 1e-3
    item = data.test[0]
    assert item["x"].shape[0] == item["y"].shape[0] and item["y"].dtype == torch.long
    corpus = T.load_corpus(cfg)
    assert torch.equal(item["y"], corpus.split("test")[0].frame_labels())
    # every voice among the first training utterances; per-utterance normalisation
    voices = {u.voice for u in corpus.split("train")}
    assert len(voices) == 3
    cmvn = T.build(dict(cfg, normalisation="utterance"))
    for i in range(len(cmvn.test)):
        x = cmvn.test[i]["x"]
        assert x.mean(0).abs().max() < 1e-4 and (x.std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert "feature_mean" not in cmvn.info and cmvn.info["normalisation"] == "utterance"
    # speaker-independent validation: slt leaves training and is the only validation voice
    held = T.build(dict(cfg, valid_voice="slt", max_train_utterances=None))
    assert len(held.train) == 2 * 7 and len(held.val) == 1
    with pytest.raises(ValueError, match="valid_voice: expected one of the training voices"):
        T.build(dict(cfg, valid_voice="rms"))
    with pytest.raises(ValueError, match="normalisation: expected 'global' or 'utterance'"):
        T.build(dict(cfg, normalisation="speaker"))
    deltas = T.build(dict(cfg, features="logmel_deltas"))
    assert deltas.input_size == 120
    with pytest.raises(ValueError, match="features: expected one of"):
        T.build(dict(cfg, features="mfcc"))
    with pytest.raises(ValueError, match="max_train_utterances"):
        T.build(dict(cfg, max_train_utterances=0))


@needs_flite
def test_driver_runs_and_reports(cache, tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["run", "--models", "sfm", "bigru", "sfm-cosine", "--n-texts", "10", "--epochs", "1",
            "--max-train-utterances", "3", "--hidden-size", "8", "--state-size", "4",
            "--num-freqs", "4", "--batch-size", "2", "--cache", str(cache), "--out", str(out)]
    assert T.main(args) == 0
    result = json.loads((out / "sfm-cosine-s0.json").read_text())
    assert result["test_frames"] == sum(map(sum, result["confusion"])) > 0
    assert 0 <= result["test_accuracy"] <= 1 and result["epochs_run"] == 1
    assert len(result["frequencies_hz"]) == 400
    assert result["corpus"]["summary"]["test"]["voices"] == ["rms"]
    assert T.main(args) == 0  # existing results are skipped
    assert "exists: skipped" in capsys.readouterr().out
    assert T.main(["report", "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "| sfm | unidirectional | logmel, global norm. |" in table
    assert "| bigru | bidirectional |" in table
    assert (out / "confusion_sfm.png").stat().st_size > 0
    assert (out / "frontend_frequencies.png").stat().st_size > 0
    assert T.main(["report", "--out", str(tmp_path / "none")]) == 2


@needs_flite
def test_runner_trains_the_task(cache, tmp_path, monkeypatch):
    from freqnn import tasks
    from freqnn.train import make_config, train

    monkeypatch.setenv("FREQNN_CACHE", str(cache))
    assert tasks.TASKS["phoneme"] == "freqnn.tasks.phoneme"
    cfg = make_config(T.TASK, dict(TINY, model="lstm", progress=False,
                                   run_dir=str(tmp_path / "run")))
    results = train(cfg)
    assert 0 <= results["test"]["accuracy"] <= 1
    assert (tmp_path / "run" / "results.json").is_file()
