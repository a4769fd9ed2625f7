"""Phone classification task: masked loss / metrics, the cosine front end through the runner,
end-to-end runs of `freqnn train phoneme` and the table command on their run directories."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as Fn

from freqnn import features as F
from freqnn.checkpoint import evaluate, load_checkpoint, model_from_checkpoint
from freqnn.cli import main as freqnn_main
from freqnn.models import build_model, count_parameters
from freqnn.tasks import collate
from freqnn.tasks import phoneme as T

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
# every voice in training and global normalisation (the defaults hold slt out and normalise per
# utterance; the end-to-end runs below use them)
TINY = {"n_texts": 10, "epochs": 1, "max_train_utterances": 4, "hidden_size": 8,
        "state_size": 4, "num_freqs": 4, "batch_size": 2, "valid_voice": None,
        "normalisation": "global"}


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


def _wrapped(model="lstm", **cfg_overrides):
    """The runner's phoneme model of ``model`` with the cosine front end (default sizes)."""
    cfg = dict(T.DEFAULTS, model=model, features="cosine", **cfg_overrides)
    body, counts = build_model(model, 40, 39, "step", hidden_size=cfg["hidden_size"],
                               state_size=cfg["state_size"], num_freqs=cfg["num_freqs"])
    facts = {"input_size": 40, "output_size": 39, "has_times": False,
             "info": {"frontend_mean": [0.5] * 40, "frontend_std": [2.0] * 40}}
    return T.wrap_model(body, cfg, facts), counts, cfg


def test_wrap_model_puts_the_front_end_before_the_body():
    torch.manual_seed(0)
    model, counts, _ = _wrapped(hidden_size=8, normalisation="global")
    assert isinstance(model, T.FrontEndModel) and not model.utterance_norm
    assert model.frontend.mean.tolist() == [0.5] * 40 and model.frontend.std.tolist() == [2.0] * 40
    # the front end's 400 frequencies come on top of the matched body
    assert count_parameters(model) == counts["params"] + 400
    wave = torch.randn(2, 2000) * 0.1
    wave[1, 1200:] = 0
    lengths = torch.tensor([F.num_frames(2000), F.num_frames(1200)])
    frames = F.frame_signal(wave)
    out = model(frames, lengths=lengths)
    assert out.shape == (2, 11, 39)
    ref = model.body(model.frontend(frames), lengths=lengths)
    torch.testing.assert_close(out[0], ref[0])
    torch.testing.assert_close(out[1, : lengths[1]], ref[1, : lengths[1]])
    # log-mel features: the body itself
    body, _ = build_model("sfm", 40, 39, "step", hidden_size=8, state_size=4, num_freqs=4)
    assert T.wrap_model(body, dict(T.DEFAULTS), {"info": {}}) is body


def test_front_end_utterance_norm_removes_gain():
    torch.manual_seed(0)
    model, _, _ = _wrapped("sfm", hidden_size=8, normalisation="utterance")
    assert model.utterance_norm
    wave = torch.randn(2, 3000) * 0.1
    wave[1, 2000:] = 0
    lengths = torch.tensor([F.num_frames(3000), F.num_frames(2000)])
    out = model(F.frame_signal(wave), lengths=lengths)
    # a gain multiplies every band energy: log energies shift, per-utterance norm cancels it
    torch.testing.assert_close(model(F.frame_signal(3.0 * wave), lengths=lengths), out,
                               atol=2e-4, rtol=1e-4)
    alone = model(F.frame_signal(wave[1:, :2000]), lengths=lengths[1:])
    torch.testing.assert_close(out[1, : lengths[1]], alone[0], atol=1e-5, rtol=1e-4)


def test_param_groups_give_the_front_end_its_own_learning_rate():
    model, _, cfg = _wrapped(hidden_size=8, frontend_lr=1e-4)
    groups = T.param_groups(model, cfg)
    assert [g.get("lr") for g in groups] == [None, 1e-4]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in model.frontend.parameters()]
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    body = model.body
    assert [len(g["params"]) for g in T.param_groups(body, cfg)] == [len(list(body.parameters()))]


def test_framed_waves():
    waves = [torch.randn(2000), torch.randn(400)]
    labels = [torch.zeros(F.num_frames(2000), dtype=torch.long), torch.ones(1, dtype=torch.long)]
    data = T.FramedWaves(waves, labels)
    assert len(data) == 2
    item = data[0]
    assert item["x"].shape == (11, 400) and torch.equal(item["x"][1], waves[0][160:560])
    batch = collate([data[0], data[1]])
    assert batch["x"].shape == (2, 11, 400) and batch["lengths"].tolist() == [11, 1]
    with pytest.raises(ValueError, match=r"labels\[1\]: expected 1 frame labels \(a waveform of "
                       r"400 samples\), got 2"):
        T.FramedWaves(waves, [labels[0], torch.zeros(2, dtype=torch.long)])
    with pytest.raises(ValueError, match="labels: expected one per waveform"):
        T.FramedWaves(waves, labels[:1])


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


    with pytest.raises(ValueError, match="features: expected one of logmel, logmel_deltas, "
                       "cosine, got 'mfcc'"):
        T.build(dict(cfg, features="mfcc"))


@needs_flite
def test_build_cosine_items_are_framed_waveforms(cache, monkeypatch):
    monkeypatch.setenv("FREQNN_CACHE", str(cache))
    cfg = dict(T.DEFAULTS, **TINY, features="cosine")
    data = T.build(cfg)
    assert isinstance(data.train, T.FramedWaves) and data.input_size == 40
    utt = T.load_corpus(cfg).split("test")[0]
    item = data.test[0]
    wave = F.preemphasis(torch.from_numpy(utt.audio).float())
    assert torch.equal(item["x"], F.frame_signal(wave)) and torch.equal(item["y"],
                                                                       utt.frame_labels())
    # the front end starts standardised on the training frames it was fitted to
    frontend = F.CosineFrontEnd(400, 40)
    frontend.mean.copy_(torch.tensor(data.info["frontend_mean"]))
    frontend.std.copy_(torch.tensor(data.info["frontend_std"]))
    with torch.no_grad():
        out = frontend(torch.cat([data.train[i]["x"] for i in range(len(data.train))]))
    assert out.mean(0).abs().max() < 1e-3 and (out.std(0) - 1).abs().max() < 1e-3


SMOKE = ["--n-texts", "10", "--epochs", "1", "--max-train-utterances", "4", "--hidden-size",
         "8", "--state-size", "4", "--num-freqs", "4", "--batch-size", "2", "--no-progress",
         "--threads", "1"]


@pytest.fixture(scope="module")
def runs(cache, tmp_path_factory):
    """Run directories of `freqnn train phoneme`: a unidirectional LSTM (two seeds), a BiGRU and
    an SFM on the cosine front end (per-utterance normalisation for all)."""
    root = tmp_path_factory.mktemp("phoneme_runs")
    dirs = {"lstm-s0": ["--model", "lstm"], "lstm-s1": ["--model", "lstm", "--seed", "1"],
            "bigru-s0": ["--model", "bigru"],
            "sfm-cosine-s0": ["--model", "sfm", "--features", "cosine",
                              "--set", "frontend_lr=1e-3"]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FREQNN_CACHE", str(cache))
        for name, args in dirs.items():
            code = freqnn_main(["train", "phoneme", *args, *SMOKE, "--normalisation",
                                "utterance", "--run-dir", str(root / name)])
            assert code == 0, name
        yield root


@needs_flite
def test_runner_trains_uni_bi_and_cosine_models(runs, cache, monkeypatch):
    monkeypatch.setenv("FREQNN_CACHE", str(cache))
    results = {p.name: json.loads((p / "results.json").read_text()) for p in runs.iterdir()}
    for name, res in results.items():
        assert 0 <= res["test"]["accuracy"] <= 1 and res["epochs_run"] == 1, name
    assert results["bigru-s0"]["model"] == "bigru"
    # matched budgets: the BiGRU to the SFM, the front end's 400 frequencies on top of the SFM
    assert abs(results["bigru-s0"]["params"] - results["bigru-s0"]["sfm_params"]) <= \
        0.1 * results["bigru-s0"]["sfm_params"]
    cosine = results["sfm-cosine-s0"]
    assert cosine["params"] == cosine["sfm_params"] + 400
    assert len(cosine["info"]["frontend_mean"]) == 40
    # the front end trained at frontend_lr, the body at lr
    ckpt = load_checkpoint(runs / "sfm-cosine-s0" / "checkpoints" / "best.ckpt")
    lrs = [g["lr"] for g in ckpt["optimizer_states"][0]["param_groups"]]
    assert lrs == [T.DEFAULTS["lr"], 1e-3]
    # the checkpoints load without the trainer and give the runner's test metrics
    for name in ("bigru-s0", "sfm-cosine-s0"):
        module = model_from_checkpoint(runs / name / "checkpoints" / "best.ckpt")
        test = T.build(module.cfg).test
        assert evaluate(module, test, 2)["accuracy"] == pytest.approx(
            results[name]["test"]["accuracy"], abs=1e-6)
    assert isinstance(module.model, T.FrontEndModel)


@needs_flite
def test_table_command(runs, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FREQNN_CACHE", str(cache))
    out = tmp_path / "table"
    assert T.main(["table", str(runs), "--confusion-model", "lstm", "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert table in capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0].startswith("| model | direction | input | parameters | seeds | test frame")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| lstm", "| bigru", "| sfm-cosine"]
    results = {p.name: json.loads((p / "results.json").read_text()) for p in runs.iterdir()}
    acc = [100 * results[f"lstm-s{s}"]["test"]["accuracy"] for s in (0, 1)]
    mean, std = (acc[0] + acc[1]) / 2, abs(acc[0] - acc[1]) / 2 ** 0.5
    assert lines[2].startswith(f"| lstm | unidirectional | logmel, utterance norm. | "
                               f"{results['lstm-s0']['params']:,} | 0, 1 | {mean:.2f} ± "
                               f"{std:.2f} % | ")
    assert lines[2].endswith(" | 1 (1), 1 (1) |")
    assert lines[3].startswith("| bigru | bidirectional | logmel, utterance norm. |")
    assert lines[4].startswith("| sfm-cosine | unidirectional | cosine front end, utterance "
                               "norm. |")
    # frontend_lr is set on the cosine run only, where it matters: no settings column
    assert "settings" not in lines[0]
    # the confusion matrix is the best checkpoints' test predictions: its trace is the accuracy
    (run,) = T.load_runs([runs / "lstm-s0"])
    matrix = T.confusion_of_runs([run])
    test = T.build(run[1]).test
    assert int(matrix.sum()) == sum(int((test[i]["y"] >= 0).sum()) for i in range(len(test)))
    assert float(matrix.trace() / matrix.sum()) == pytest.approx(
        results["lstm-s0"]["test"]["accuracy"], abs=1e-6)
    assert (out / "confusion_lstm.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "frontend_frequencies.png").read_bytes()[:4] == b"\x89PNG"


@needs_flite
def test_table_command_errors(runs, tmp_path, capsys):
    assert T.main(["table", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "none: expected a run directory, got nothing there" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert T.main(["table", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no finished runs (results.json)" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # run / report of the removed driver
        T.main(["run", "--models", "sfm"])
    assert "invalid choice: 'run'" in capsys.readouterr().err


def test_the_defaults_hold_slt_out_and_an_explicit_null_puts_it_back():
    from freqnn.cli import _parse_sets
    from freqnn.config import make_config

    cfg = make_config(T.TASK)
    assert (cfg["valid_voice"], cfg["normalisation"]) == ("slt", "utterance")
    # --set valid_voice=null (or null in YAML / a resumed config.yaml) is a value, not "unset"
    assert make_config(T.TASK, _parse_sets(["valid_voice=null"]))["valid_voice"] is None
    assert make_config(T.TASK, {"valid_voice": None}, {})["valid_voice"] is None


def test_table_settings_tell_rows_of_one_model_apart_and_ignore_the_cap(tmp_path):
    from freqnn.config import make_config

    def run(seed, **keys):
        cfg = make_config(T.TASK, {"seed": seed, **keys})
        results = {"params": 100, "test": {"accuracy": 0.5 + seed / 100},
                   "best_val": {"val_accuracy": 0.3}, "epochs_run": 3, "best_epoch": 1,
                   "stopped_by": "max_minutes" if keys.get("max_minutes") else "epochs",
                   "max_minutes": keys.get("max_minutes")}
        return tmp_path / f"{keys['model']}-{seed}", cfg, results

    runs = [run(0, model="psfm", hidden_size=122), run(0, model="psfm", hidden_size=55,
                                                          num_layers=2),
            run(0, model="lstm"), run(0, model="act", max_minutes=15.0),
            run(1, model="act", max_minutes=20.0)]
    lines = T.run_table(runs).splitlines()
    assert lines[0].endswith("| epochs (best) | settings |")
    rows = {line.split(" | ")[-1]: line for line in lines[2:]}
    assert "hidden_size=122, num_layers=1 |" in rows and "hidden_size=55, num_layers=2 |" in rows
    # the LSTM is sized by the SFM's hidden_size: nothing to tell apart, an empty cell
    lstm = next(line for line in lines if line.startswith("| lstm |"))
    assert lstm.endswith("| 3 (2) |  |")
    # runs under different caps are one configuration; each epochs cell names its cap
    act = next(line for line in lines if line.startswith("| act |"))
    assert "| 0, 1 |" in act and "3 (2) cap 15 min, 3 (2) cap 20 min" in act
    # the task key is the configured task's: a null there (a YAML "task: null") leaves it
    assert make_config(T.TASK, {"task": None})["task"] == "phoneme"
