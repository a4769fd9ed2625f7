"""TIMIT loader on a tiny fake tree (SPHERE and RIFF audio, .PHN alignments)."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from freqnn import features as F
from freqnn.data import timit
from freqnn.data.phones import PHONES39


def write_sphere(path: Path, samples: np.ndarray, rate: int = 16000, order: str = "01",
                 coding: str | None = None, count: int | None = None) -> None:
    lines = ["NIST_1A", "   1024", "database_id -s5 TIMIT", "utterance_id -s8 test_utt",
             "channel_count -i 1", f"sample_count -i {len(samples) if count is None else count}",
             f"sample_rate -i {rate}", "sample_max -i 32767", "sample_min -i -32768",
             "sample_n_bytes -i 2", f"sample_byte_format -s2 {order}", "sample_sig_bits -i 16"]
    if coding:
        lines.append(f"sample_coding -s{len(coding)} {coding}")
    lines.append("end_head")
    header = ("\n".join(lines) + "\n").encode("ascii").ljust(1024, b" ")
    dtype = "<i2" if order == "01" else ">i2"
    path.write_bytes(header + samples.astype(dtype).tobytes())


def write_riff(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.astype("<i2").tobytes())


PHN = [(0, 2000, "h#"), (2000, 3000, "sh"), (3000, 3500, "q"), (3500, 5000, "ix"),
       (5000, 6000, "dcl"), (6000, 7200, "ao"), (7200, 8000, "h#")]


def make_utt(directory: Path, stem: str, seed: int, *, riff: bool = False,
             phn=PHN) -> np.ndarray:
    directory.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).integers(-20000, 20000, 8000).astype(np.int16)
    if riff:
        write_riff(directory / f"{stem}.WAV.wav", samples)
    else:
        write_sphere(directory / f"{stem}.WAV", samples)
    (directory / f"{stem}.PHN").write_text("".join(f"{s} {e} {p}\n" for s, e, p in phn))
    (directory / f"{stem}.TXT").write_text("0 8000 She had your dark suit.\n")
    return samples


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "TIMIT"
    speakers = [("TRAIN", "DR1", "FCJF0"), ("TRAIN", "DR2", "MKLW0"), ("TEST", "DR1", "MDAB0"),
                ("TEST", "DR1", "FAKS0"), ("TEST", "DR3", "MZZZ0")]
    audio = {}
    for i, (part, dr, spk) in enumerate(speakers):
        for j, stem in enumerate(("SA1", "SI648", "SX38")):
            audio[(spk, stem)] = make_utt(root / part / dr / spk, stem, 10 * i + j,
                                          riff=(spk == "MKLW0"))
    return root, audio


def test_constants():
    assert len(timit.CORE_TEST_SPEAKERS) == 24 == len(set(timit.CORE_TEST_SPEAKERS))
    assert len(timit.DEV_SPEAKERS) == 50 == len(set(timit.DEV_SPEAKERS))
    assert not set(timit.CORE_TEST_SPEAKERS) & set(timit.DEV_SPEAKERS)
    # 8 dialect regions, 2 male + 1 female each
    assert sum(s.startswith("F") for s in timit.CORE_TEST_SPEAKERS) == 8


def test_listing_subsets(tree):
    root, _ = tree
    train = timit.list_utterances(root, "train")
    assert [u.id for u in train] == ["FCJF0_SI648", "FCJF0_SX38", "MKLW0_SI648", "MKLW0_SX38"]
    assert all(u.kind != "SA" for u in train)
    assert len(timit.list_utterances(root, "train", include_sa=True)) == 6
    test = timit.list_utterances(root, "test")
    assert {u.speaker for u in test} == {"MDAB0", "FAKS0", "MZZZ0"}
    assert {u.speaker for u in timit.list_utterances(root, "core")} == {"MDAB0"}
    assert {u.speaker for u in timit.list_utterances(root, "dev")} == {"FAKS0"}
    u = train[0]
    assert (u.part, u.dialect, u.speaker, u.sentence) == ("train", "DR1", "FCJF0", "SI648")
    # the tree may sit under data/ and in lower case
    nested = root.parent / "copy" / "data"
    nested.parent.mkdir()
    root.rename(nested)
    (nested / "TRAIN").rename(nested / "train")
    assert len(timit.list_utterances(nested.parent, "train")) == 4
    assert timit.find_root(nested.parent) == nested


def test_audio_and_labels(tree):
    root, audio = tree
    utts = {u.id: u for u in timit.list_utterances(root, "train")}
    for uid, riff in (("FCJF0_SI648", False), ("MKLW0_SX38", True)):
        item = timit.load_utterance(utts[uid])
        ref = audio[tuple(uid.split("_"))].astype(np.float32) / 32768
        assert utts[uid].audio.name.endswith(".wav") == riff
        np.testing.assert_array_equal(item["wave"].numpy(), ref)
        assert item["wave"].dtype == torch.float32 and item["sample_rate"] == 16000
    assert item["phones"] == [p for _, _, p in PHN]
    names = [None if i < 0 else PHONES39[i] for i in item["labels"].tolist()]
    assert names == ["sil", "sh", None, "ih", "sil", "aa", "sil"]
    np.testing.assert_array_equal(item["starts"].numpy(), [s / 16000 for s, _, _ in PHN])
    np.testing.assert_array_equal(item["ends"].numpy(), [e / 16000 for _, e, _ in PHN])
    merged = timit.load_utterance(utts["FCJF0_SI648"], q="merge")
    assert merged["phones"] == ["h#", "sh", "ix", "dcl", "ao", "h#"]
    assert merged["ends"][1].item() == 3500 / 16000 and -1 not in merged["labels"].tolist()
    assert len(timit.load_timit(root, "core")) == 2


def test_frame_labels_align_with_audio(tree):
    root, _ = tree
    item = timit.load_timit(root, "dev")[0]
    count = F.num_frames(item["wave"].numel())
    feats = F.log_mel_spectrogram(item["wave"])
    labels = F.frame_labels(item["starts"], item["ends"], item["labels"], count)
    assert feats.shape[0] == labels.shape[0] == count == 48
    # frame i's centre sample is 160 i + 200: compare with a per-sample label track
    track = np.full(8000, -2)
    for (s, e, _), lab in zip(PHN, item["labels"].tolist(), strict=True):
        track[s:e] = lab
    np.testing.assert_array_equal(labels.numpy(), track[160 * np.arange(count) + 200])


def test_big_endian_sphere(tmp_path):
    samples = np.array([1, -2, 300, -32768, 32767], dtype=np.int16)
    write_sphere(tmp_path / "a.wav", samples, order="10")
    got, rate = timit.read_audio(tmp_path / "a.wav")
    assert rate == 16000
    np.testing.assert_array_equal(got.numpy(), samples / 32768.0)


@pytest.mark.parametrize(("line", "expected"), [
    ("sample_count -i -1", "sample_count -1 (expected an integer >= 0)"),
    ("channel_count -i -1", "channel_count -1 (expected an integer >= 1)"),
    ("channel_count -i 0", "channel_count 0 (expected an integer >= 1)"),
    ("sample_rate -i 0", "sample_rate 0 (expected an integer >= 1)"),
    ("sample_rate -i -16000", "sample_rate -16000 (expected an integer >= 1)"),
    ("sample_rate -r 0.5", "sample_rate 0.5 (expected an integer >= 1)"),
    ("sample_count -s3 abc", "sample_count 'abc' (expected an integer >= 0)"),
])
def test_sphere_header_counts_out_of_range(tmp_path: Path, line: str, expected: str) -> None:
    """SPHERE headers with sample_count -1, channel_count -1 or sample_rate <= 0 were
    accepted and channel_count 0 gave an IndexError: each is refused naming the file."""
    samples = np.arange(8, dtype=np.int16)
    path = tmp_path / "a.wav"
    write_sphere(path, samples)
    key = line.split()[0]
    data = path.read_bytes()
    old = next(x for x in data[:1024].split(b"\n") if x.startswith(key.encode()))
    path.write_bytes(data.replace(old, line.encode(), 1))
    with pytest.raises(ValueError, match=re.escape(f"{path}: corrupt or unsupported audio "
                                                   f"file: {expected}")):
        timit.read_audio(path)


def test_corrupt_files(tmp_path):
    samples = np.zeros(100, dtype=np.int16)
    write_sphere(tmp_path / "trunc.wav", samples, count=200)
    with pytest.raises(ValueError, match=r"trunc.wav: corrupt .* \(truncated"):
        timit.read_audio(tmp_path / "trunc.wav")
    write_sphere(tmp_path / "shn.wav", samples, coding="pcm,embedded-shorten-v2.00")
    with pytest.raises(ValueError, match=r"shn.wav: .*sph2pipe"):
        timit.read_audio(tmp_path / "shn.wav")
    (tmp_path / "junk.wav").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="neither a NIST SPHERE nor a RIFF"):
        timit.read_audio(tmp_path / "junk.wav")
    (tmp_path / "nohead.wav").write_bytes(b"NIST_1A\n   1024\nsample_rate -i 16000\n")
    with pytest.raises(ValueError, match=r"nohead.wav: corrupt"):
        timit.read_audio(tmp_path / "nohead.wav")
    (tmp_path / "riff.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError, match=r"riff.wav: corrupt .* bad RIFF"):
        timit.read_audio(tmp_path / "riff.wav")
    with pytest.raises(FileNotFoundError, match=r"missing.wav: audio file not found"):
        timit.read_audio(tmp_path / "missing.wav")
    for name, text, message in [
        ("bad1.phn", "0 100 h#\n100 x200 sh\n", "bad1.phn, line 2: expected integer"),
        ("bad2.phn", "0 100 h#\n100 200 zz\n", "bad2.phn, line 2: expected one of the 61"),
        ("bad3.phn", "0 100 h#\n50 200 sh\n", "bad3.phn, line 2: expected phones in time"),
        ("bad4.phn", "0 100\n", "bad4.phn, line 1: expected 'start end phone'"),
        ("bad5.phn", "300 100 h#\n", "bad5.phn, line 1: expected 0 <= start <= end"),
        ("bad6.phn", "\n", "bad6.phn: empty phone alignment"),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            timit.read_phn(tmp_path / name)


def test_missing_files_and_errors(tree, tmp_path, monkeypatch):
    root, _ = tree
    with pytest.raises(FileNotFoundError, match="LDC93S1"):
        timit.list_utterances(tmp_path / "nowhere")
    monkeypatch.setenv("FREQNN_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"no TIMIT tree .*empty[/\\]timit"):
        timit.find_root()
    with pytest.raises(ValueError, match="split: expected one of train, test, core, dev"):
        timit.list_utterances(root, "valid")
    (root / "TRAIN" / "DR1" / "FCJF0" / "SX38.PHN").unlink()
    with pytest.raises(FileNotFoundError, match=r"SX38.WAV: no phone alignment SX38.PHN"):
        timit.list_utterances(root, "train")
    (root / "TEST" / "DR1" / "MDAB0" / "SI648.WAV").unlink()
    with pytest.raises(FileNotFoundError, match=r"SI648.PHN: no audio"):
        timit.list_utterances(root, "core")
    write_sphere(root / "TEST" / "DR1" / "MDAB0" / "SI648.WAV", np.zeros(8000, dtype=np.int16))
    # phones past the end of the audio; another sample rate
    spk = root / "TEST" / "DR3" / "MZZZ0"
    (spk / "SX38.PHN").write_text("0 9000 h#\n")
    write_sphere(spk / "SI648.WAV", np.zeros(8000, dtype=np.int16), rate=8000)
    utts = {u.sentence: u for u in timit.list_utterances(root, "test")
            if u.speaker == "MZZZ0"}
    with pytest.raises(ValueError, match=r"SX38.PHN: expected phones within the audio"):
        timit.load_utterance(utts["SX38"])
    with pytest.raises(ValueError, match=r"SI648.WAV: expected a 16000 Hz recording"):
        timit.load_utterance(utts["SI648"])
    with pytest.raises(ValueError, match="q: expected 'ignore' or 'merge'"):
        timit.load_utterance(utts["SX38"], q="drop")
