"""Phone sets for frame-level phone classification: TIMIT's 61 phones, the standard 39-class
folding, and the mapping from flite's US English phone set to the same 39 classes.

The folding
-----------
TIMIT transcribes speech with 61 phone labels (plus the glottal stop ``q``, which is one of the
61). Phone recognition results are conventionally reported on 39 classes, after K.-F. Lee and
H.-W. Hon, "Speaker-independent phone recognition using hidden Markov models", IEEE Trans.
ASSP 37(11), 1989: models are trained on 48 classes and scored after folding into 39. The table
below is that folding as used by Kaldi's TIMIT recipe (``egs/timit/s5/conf/phones.60-48-39.map``)
and by Graves et al.'s TIMIT experiments:

====================================  ===========  =========
61-phone label(s)                     48 classes   39 classes
====================================  ===========  =========
aa, ao                                aa, ao       aa
ah; ax, ax-h                          ah; ax       ah
axr, er                               er           er
hh, hv                                hh           hh
ih; ix                                ih; ix       ih
l; el                                 l; el        l
m, em                                 m            m
n, nx; en                             n; en        n
ng, eng                               ng           ng
sh; zh                                sh; zh       sh
uw, ux                                uw           uw
pcl, tcl, kcl                         cl           sil
bcl, dcl, gcl                         vcl          sil
epi                                   epi          sil
h#, pau                               sil          sil
q                                     (removed)    (removed)
every other phone                     itself       itself
====================================  ===========  =========

The 39 classes (:data:`PHONES39`): aa ae ah aw ay b ch d dh dx eh er ey f g hh ih iy jh k l m n ng
ow oy p r s sh sil t th uh uw v w y z. The glottal stop ``q`` has no class: Kaldi deletes it from
the transcription; for frame labelling :func:`fold` returns ``None`` and loaders merge its frames
into the neighbouring phone or ignore them (see :mod:`freqnn.data.timit`).

flite's phone set
-----------------
flite's US English voices (kal16, awb, rms, slt) use the CMU lexicon's phones plus ``ax``
(reduced vowel) and ``pau`` (silence); ``flite -psdur`` prints them with their end times. The
``usenglish`` phone set also declares TIMIT-style allophones (``dx``, ``el``, ``em``, ``en``,
``hv``, ``nx``, ``axr``) and the silences ``h#``, ``brth`` and ``ssil`` (flite's post-lexical
rules rarely emit them); all are mapped here so that no label can be lost. flite's labels are
TIMIT labels spelled the same way, so :data:`FLITE_TO_39` applies the TIMIT folding to them
and maps every silence to ``sil``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ..checks import fail

__all__ = [
    "FLITE_PHONES",
    "FLITE_TO_39",
    "FOLD_61_39",
    "FOLD_61_48",
    "PHONES39",
    "PHONES48",
    "PHONES61",
    "SILENCE",
    "fold",
    "fold_flite",
    "phone_index",
    "phones_to_indices",
]

#: The 61 TIMIT phone labels (TIMIT documentation, ``PHONCODE.DOC``), grouped as there:
#: stops, closures, affricates, fricatives, nasals, semivowels and glides, vowels, others.
PHONES61: tuple[str, ...] = (
    "b", "d", "g", "p", "t", "k", "dx", "q",
    "bcl", "dcl", "gcl", "pcl", "tcl", "kcl",
    "jh", "ch",
    "s", "sh", "z", "zh", "f", "th", "v", "dh",
    "m", "n", "ng", "em", "en", "eng", "nx",
    "l", "r", "w", "y", "hh", "hv", "el",
    "iy", "ih", "eh", "ey", "ae", "aa", "aw", "ay", "ah", "ao", "oy", "ow", "uh", "uw", "ux",
    "er", "ax", "ix", "axr", "ax-h",
    "pau", "epi", "h#",
)  # fmt: skip

#: The silence class of the folded sets.
SILENCE = "sil"

# Lee & Hon (1989) first stage: 61 -> 48 (q removed). Identity for labels not listed.
_TO_48 = {
    "ax-h": "ax", "axr": "er", "hv": "hh", "em": "m", "nx": "n", "eng": "ng", "ux": "uw",
    "pcl": "cl", "tcl": "cl", "kcl": "cl", "bcl": "vcl", "dcl": "vcl", "gcl": "vcl",
    "h#": "sil", "pau": "sil",
}  # fmt: skip
# Second stage: 48 -> 39. Identity for labels not listed.
_48_TO_39 = {
    "ao": "aa", "ax": "ah", "ix": "ih", "el": "l", "en": "n", "zh": "sh",
    "cl": "sil", "vcl": "sil", "epi": "sil",
}  # fmt: skip

#: 61 -> 48 folding (``q`` absent: it has no class).
FOLD_61_48: dict[str, str] = {p: _TO_48.get(p, p) for p in PHONES61 if p != "q"}
#: 61 -> 39 folding (``q`` absent: it has no class).
FOLD_61_39: dict[str, str] = {p: _48_TO_39.get(q, q) for p, q in FOLD_61_48.items()}

#: The 48 training classes of Lee & Hon, sorted.
PHONES48: tuple[str, ...] = tuple(sorted(set(FOLD_61_48.values())))
#: The 39 scoring classes, sorted (class index = position in this tuple).
PHONES39: tuple[str, ...] = tuple(sorted(set(FOLD_61_39.values())))

#: flite's US English phone labels (``usenglish`` phone set): the CMU lexicon's 39 phones,
#: ``ax``, ``pau``, and the allophones / silences the phone set declares.
FLITE_PHONES: tuple[str, ...] = (
    "aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "b", "brth", "ch", "d", "dh", "dx", "eh",
    "el", "em", "en", "er", "ey", "f", "g", "h#", "hh", "hv", "ih", "iy", "jh", "k", "l", "m",
    "n", "ng", "nx", "ow", "oy", "p", "pau", "r", "s", "sh", "ssil", "t", "th", "uh", "uw", "v",
    "w", "y", "z", "zh",
)  # fmt: skip
#: flite label -> 39-class label (flite spells phones as TIMIT does; silences -> ``sil``).
FLITE_TO_39: dict[str, str] = {
    p: SILENCE if p in ("pau", "h#", "brth", "ssil") else FOLD_61_39[p] for p in FLITE_PHONES
}

_INDEX39 = {p: i for i, p in enumerate(PHONES39)}


def fold(phone: str, target: int = 39) -> str | None:
    """Fold one TIMIT 61-set label to the 39 (or 48) set; ``None`` for the glottal stop ``q``.

    Parameters
    ----------
    phone : str
        A TIMIT label (case-insensitive), one of :data:`PHONES61`.
    target : {39, 48}

    Raises
    ------
    ValueError
        For a label outside the 61-phone set or another ``target``.
    """
    if target not in (39, 48):
        fail("target", "39 or 48", repr(target))
    if not isinstance(phone, str):
        fail("phone", "a TIMIT phone label (str)", repr(phone), TypeError)
    key = phone.lower()
    if key == "q":
        return None
    table = FOLD_61_39 if target == 39 else FOLD_61_48
    if key not in table:
        fail("phone", "one of the 61 TIMIT phone labels", repr(phone))
    return table[key]


def fold_flite(phone: str) -> str:
    """Map one flite phone label to its 39-class label.

    Raises
    ------
    ValueError
        For a label outside :data:`FLITE_PHONES`.
    """
    if not isinstance(phone, str):
        fail("phone", "a flite phone label (str)", repr(phone), TypeError)
    key = phone.lower()
    if key not in FLITE_TO_39:
        fail("phone", f"one of flite's phone labels ({', '.join(FLITE_PHONES)})", repr(phone))
    return FLITE_TO_39[key]


def phone_index(phone: str) -> int:
    """Class index of a 39-set label (its position in :data:`PHONES39`)."""
    if phone not in _INDEX39:
        fail("phone", "one of the 39 folded phone classes", repr(phone))
    return _INDEX39[phone]


def phones_to_indices(phones: Iterable[str], source: str = "39") -> Tensor:
    """(S,) int64 class indices of a sequence of labels.

    Parameters
    ----------
    phones : iterable of str
    source : {"39", "61", "flite"}
        The labels' phone set; "61" and "flite" labels are folded first. A ``q`` in a "61"
        sequence gets index -1 (no class).
    """
    if source not in ("39", "61", "flite"):
        fail("source", "'39', '61' or 'flite'", repr(source))
    out: list[int] = []
    for p in phones:
        if source == "61":
            folded = fold(p)
            out.append(-1 if folded is None else _INDEX39[folded])
        elif source == "flite":
            out.append(_INDEX39[fold_flite(p)])
        else:
            out.append(phone_index(p))
    return torch.tensor(out, dtype=torch.long)

