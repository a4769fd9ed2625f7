"""Phone sets: the 61 -> 48 -> 39 folding against the published table, flite's mapping."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from freqnn.data import phones as P

# Kaldi egs/timit/s5/conf/phones.60-48-39.map (Lee & Hon 1989), typed in independently:
# "61-label 48-label 39-label"; q has no entry (it is deleted).
KALDI_MAP = """
aa aa aa|ae ae ae|ah ah ah|ao ao aa|aw aw aw|ax ax ah|ax-h ax ah|axr er er|ay ay ay|b b b
bcl vcl sil|ch ch ch|d d d|dcl vcl sil|dh dh dh|dx dx dx|eh eh eh|el el l|em m m|en en n
eng ng ng|epi epi sil|er er er|ey ey ey|f f f|g g g|gcl vcl sil|h# sil sil|hh hh hh|hv hh hh
ih ih ih|ix ix ih|iy iy iy|jh jh jh|k k k|kcl cl sil|l l l|m m m|n n n|ng ng ng|nx n n
ow ow ow|oy oy oy|p p p|pau sil sil|pcl cl sil|r r r|s s s|sh sh sh|t t t|tcl cl sil
th th th|uh uh uh|uw uw uw|ux uw uw|v v v|w w w|y y y|z z z|zh zh sh
"""
TABLE = {}
for chunk in KALDI_MAP.replace("\n", "|").split("|"):
    if chunk.strip():
        a, b, c = chunk.split()
        TABLE[a] = (b, c)


def test_table_sizes():
    assert len(TABLE) == 60
    assert len(P.PHONES61) == 61 and len(set(P.PHONES61)) == 61
    assert set(P.PHONES61) == set(TABLE) | {"q"}
    assert len(P.PHONES48) == 48
    assert len(P.PHONES39) == 39
    assert "sil" in P.PHONES39 and P.SILENCE == "sil"
    assert list(P.PHONES39) == sorted(P.PHONES39)


def test_folding_matches_published_table():
    for phone, (p48, p39) in TABLE.items():
        assert P.fold(phone, 48) == p48, phone
        assert P.fold(phone) == p39, phone
        assert P.FOLD_61_39[phone] == p39
    assert set(P.FOLD_61_39.values()) == {c for _, c in TABLE.values()}
    assert set(P.PHONES48) == {b for b, _ in TABLE.values()}


@pytest.mark.parametrize(
    ("phone", "folded"),
    [("ao", "aa"), ("ax", "ah"), ("ax-h", "ah"), ("axr", "er"), ("hv", "hh"), ("ix", "ih"),
     ("el", "l"), ("em", "m"), ("en", "n"), ("nx", "n"), ("eng", "ng"), ("zh", "sh"),
     ("ux", "uw"), ("pcl", "sil"), ("tcl", "sil"), ("kcl", "sil"), ("bcl", "sil"),
     ("dcl", "sil"), ("gcl", "sil"), ("h#", "sil"), ("pau", "sil"), ("epi", "sil"),
     ("dx", "dx"), ("aa", "aa"), ("AX", "ah")],
)
def test_known_pairs(phone, folded):
    assert P.fold(phone) == folded


def test_q_removed_and_errors():
    assert P.fold("q") is None and P.fold("q", 48) is None
    assert "q" not in P.FOLD_61_39
    with pytest.raises(ValueError, match="phone: expected one of the 61 TIMIT"):
        P.fold("xx")
    with pytest.raises(ValueError, match="target: expected 39 or 48"):
        P.fold("aa", 40)
    with pytest.raises(TypeError, match="phone"):
        P.fold(3)
    with pytest.raises(ValueError, match="phone: expected one of flite"):
        P.fold_flite("ix")
    with pytest.raises(ValueError, match="phone: expected one of the 39"):
        P.phone_index("ao")
    with pytest.raises(ValueError, match="source"):
        P.phones_to_indices(["aa"], source="timit")


def test_flite_mapping():
    assert set(P.FLITE_TO_39) == set(P.FLITE_PHONES)
    assert set(P.FLITE_TO_39.values()) <= set(P.PHONES39)
    for silence in ("pau", "h#", "brth", "ssil"):
        assert P.fold_flite(silence) == "sil"
    assert P.fold_flite("ax") == "ah" and P.fold_flite("axr") == "er"
    assert P.fold_flite("hv") == "hh" and P.fold_flite("zh") == "sh"
    assert P.fold_flite("ao") == "aa" and P.fold_flite("PAU") == "sil"
    # every flite label that is also a TIMIT label folds as TIMIT's
    for phone in P.FLITE_PHONES:
        if phone in P.FOLD_61_39:
            assert P.fold_flite(phone) == P.FOLD_61_39[phone]


def test_indices():
    idx = P.phones_to_indices(["aa", "sil", "z"])
    assert idx.dtype == torch.long and idx.tolist() == [0, P.PHONES39.index("sil"), 38]
    idx = P.phones_to_indices(["ao", "q", "h#"], source="61")
    assert idx.tolist() == [0, -1, P.PHONES39.index("sil")]
    idx = P.phones_to_indices(["pau", "ax"], source="flite")
    assert idx.tolist() == [P.PHONES39.index("sil"), P.PHONES39.index("ah")]


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
def test_real_flite_output_is_covered():
    text = "The quick brown fox jumps over the lazy dog; measure, pleasure, azure, button."
    out = subprocess.run(
        ["flite", "-voice", "kal16", "-psdur", "-t", text, "-o", "none"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    labels = [tok.split(":")[0] for tok in out.split() if ":" in tok]
    assert len(labels) > 20
    for label in labels:
        assert label in P.FLITE_TO_39, label
