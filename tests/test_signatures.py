"""Constructor signatures (issue 28, item 9): every public module spells out its arguments, with
type hints, so that a type checker catches a missing argument or a misspelt keyword."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import freqnn

from .test_meta_init import public_modules

MODULES = sorted(public_modules(), key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", MODULES, ids=lambda cls: cls.__name__)
def test_constructor_is_spelt_out(cls: type[nn.Module]) -> None:
    parameters = list(inspect.signature(cls).parameters.values())
    assert parameters, cls
    variadic = [p.name for p in parameters
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert not variadic, f"{cls.__name__}({', '.join(variadic)}): spell the arguments out"
    untyped = [p.name for p in parameters if p.annotation is p.empty]
    assert not untyped, f"{cls.__name__}: no type hint for {untyped}"


@pytest.mark.parametrize("cls", [freqnn.AdaptiveSFM, freqnn.AdaptiveSFMCell])
def test_adaptive_sfm_rejects_a_misspelt_keyword_and_a_missing_argument(cls) -> None:
    """The A-SFM constructors take SFM's arguments and ``phase``, in SFM's order."""
    base = freqnn.SFM if cls is freqnn.AdaptiveSFM else freqnn.SFMCell
    names = list(inspect.signature(cls).parameters)
    assert [n for n in names if n != "phase"] == list(inspect.signature(base).parameters)
    with pytest.raises(TypeError, match="phse"):
        cls(3, 4, 2, 3, phse="authors")
    with pytest.raises(TypeError, match="num_freqs"):
        cls(5, 8, 4)
    assert cls(3, 4, 2, 3, phase="authors", dtype=torch.float64).phase == "authors"
