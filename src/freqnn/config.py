"""The typed configuration of the ``freqnn`` runner: one schema checks the keys, builds the
command-line options and writes the configuration tables of ``docs/runner.md``.

A run's configuration is one flat mapping. Its keys are declared by :class:`RunConfig` (the
runner's keys) and, for each task, by a subclass that adds the task's own keys
(:attr:`freqnn.tasks.Task.options`). Every field carries its type, its range and a one-line
description; the default values live in :data:`DEFAULTS` (the runner's) and in the task's
``defaults``, the lowest layers of the precedence that :func:`make_config` applies::

    DEFAULTS < task.defaults < YAML file (--config) < command-line options < --set KEY=VALUE

Validation is strict: an ``int`` key takes no ``true`` and no ``1.5``, a ``bool`` key no
``"no"``, a number key no string. YAML is read with :func:`read_yaml` (safe loading; as in
YAML 1.2, ``1e-3`` is a number, where PyYAML's YAML 1.1 reads a string, and only ``true`` /
``false`` are booleans, so ``yes`` / ``no`` / ``on`` / ``off`` are strings that a bool key
refuses; a repeated key is refused). Every error names
the key, what it expects and what it got::

    clip: expected a finite number >= 0, got int -1

The same fields give the options of ``freqnn train TASK --help`` (:func:`add_options`) and the
tables of ``docs/runner.md`` (:func:`markdown_tables`; ``python -m freqnn.config docs/runner.md``
rewrites them, and a test checks that the file is up to date).
"""

from __future__ import annotations

import argparse
import os
import re
import reprlib
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

from .frequencies import GRIDS
from .models import ARCHS, TIME_MODES

if TYPE_CHECKING:
    from .tasks import Task

__all__ = [
    "DEFAULTS",
    "RunConfig",
    "add_options",
    "describe_key",
    "make_config",
    "markdown_tables",
    "read_yaml",
    "schema_of",
    "task_defaults",
]

PositiveInt = Annotated[int, Field(ge=1)]

#: The runner's default for every key of :class:`RunConfig`; a task's ``defaults`` override them.
DEFAULTS: dict[str, Any] = {
    "task": None,
    "model": "sfm",
    "seed": 0,
    "epochs": 10,
    "batch_size": 32,
    "eval_batch_size": None,
    "lr": 1e-3,
    "lr_schedule": "constant",
    "warmup_epochs": 0.0,
    "recurrent_lr_scale": 1.0,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "clip": 1.0,
    "patience": 5,
    "max_minutes": None,
    "hidden_size": 32,
    "state_size": 16,
    "num_freqs": 8,
    "num_layers": 1,
    "dropout": 0.0,
    "frequencies": "paper",
    "learn_frequencies": False,
    "min_period": None,
    "max_period": None,
    "phase": "accumulate",
    "time": "data",
    # the paper's memory: also what a run written before the key existed used
    "memory": "paper",
    "forget_init": "uniform",
    "readout": "sum",
    "rnn_hidden_size": None,
    "match_params": True,
    "precision": "32",
    "compile": False,
    "deterministic": True,
    "accelerator": "auto",
    "num_threads": None,
    "progress": True,
    "limit_train_batches": None,
    "diagnostics": False,
    "diagnostics_every": 10,
    "run_dir": None,
}


class RunConfig(BaseModel):
    """The runner's keys (every task has them); a task's schema subclasses this one.

    Fields have no defaults here: the values come from :data:`DEFAULTS` and the task's
    ``defaults`` (see the module docstring). ``json_schema_extra={"flags": [...]}`` adds
    command-line spellings to the one derived from the key (``--num-threads``).
    """

    # allow_inf_nan=False: lr=.inf or clip=.nan trained to NaN metrics (issue 27 item 12)
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    task: str = Field(description="the task (set by the runner from TASK)")
    model: Literal[ARCHS] = Field(description="the recurrent body")  # type: ignore[valid-type]
    seed: int = Field(ge=0, description="model initialisation, data order and dropout (the data "
                      "itself has its own data_seed where the task generates data)")
    epochs: PositiveInt = Field(description="maximum epochs")
    batch_size: PositiveInt = Field(description="global training batch (split over DDP "
                                    "processes; must be divisible by their number)")
    eval_batch_size: PositiveInt | None = Field(description="validation / test batch; null: "
                                                "batch_size")
    lr: float = Field(ge=0, description="learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field(
        description="learning rate after the warm-up: constant, or cosine (from lr to 0 at the "
        "last optimiser step of `epochs`, per step; early stopping may end the run before)")
    warmup_epochs: float = Field(ge=0, description="linear warm-up of the learning rate from "
                                 "lr / 100 to lr over that many epochs (fractions allowed; "
                                 "0: none), per optimiser step")
    recurrent_lr_scale: float = Field(
        gt=0, description="SFM / A-SFM: the learning rate of the recurrent weights W_hh "
        "(z_{t-1} to the gates) relative to lr; below 1 it keeps the loop through z_{t-1} "
        "from drifting into exploding gradients (docs/sfm.md, Training SFM); the other models "
        "ignore it")
    optimizer: Literal["adam", "adadelta"] = Field(
        description="Adam, or Adadelta with rho 0.95, eps 1e-6 (the SFM authors' optimiser; "
        "use it with lr 1)")
    weight_decay: float = Field(ge=0, description="weight decay (L2, in the optimiser)")
    clip: float = Field(ge=0, description="gradient-norm clipping (0: off)")
    patience: int = Field(ge=0, description="early stopping after this many epochs without a "
                          "better validation metric (0: off)")
    max_minutes: float | None = Field(
        gt=0, description="wall-time cap in minutes: the run stops at the end of the first epoch "
        "(after its validation and checkpoints) at which the training time since the start of "
        "the run, summed over resumes, exceeds it (--resume with a larger cap continues the "
        "run); null: no cap")
    hidden_size: PositiveInt = Field(description="SFM hidden size M")
    state_size: PositiveInt = Field(description="SFM states D")
    num_freqs: PositiveInt = Field(description="SFM frequencies K")
    num_layers: PositiveInt = Field(description="stacked recurrent layers")
    dropout: float = Field(ge=0, lt=1, description="between stacked layers and before the "
                           "read-out")
    frequencies: Literal[GRIDS] = Field(  # type: ignore[valid-type]
        description="SFM frequency grid (docs/sfm.md)")
    learn_frequencies: bool = Field(description="train the SFM frequencies")
    min_period: float | None = Field(gt=0, description="shortest period of the 'log' grid, "
                                     "in units of the task's time (used only by frequencies=log)")
    max_period: float | None = Field(gt=0, description="longest period of the 'log' grid "
                                     "(used only by frequencies=log)")
    phase: Literal["accumulate", "authors"] = Field(
        description="A-SFM phase rule: accumulated phase, or the authors' released code "
        "(omega_{t-1} * t; docs/sfm.md)")
    memory: Literal["paper", "normalised"] = Field(
        description="SFM / A-SFM memory update: the paper's, or normalised (the write weighted "
        "by 1 - f_t, so |S| <= 1; docs/sfm.md, Training SFM); the other models ignore it")
    forget_init: Literal["uniform", "chrono"] = Field(
        description="SFM / A-SFM forget-gate biases at initialisation: uniform (nn.LSTM's rule) "
        "or chrono (windows from the periods of the frequency grid; docs/sfm.md, Training SFM); "
        "the other models ignore it")
    readout: Literal["sum", "mean"] = Field(
        description="SFM / A-SFM output z_t: the paper's sum of the K frequency read-outs, or "
        "their mean (bounded by 1; docs/sfm.md, Training SFM); the other models ignore it")
    time: Literal[TIME_MODES] = Field(  # type: ignore[valid-type]
        description="times the models see: data (the task's timestamps, else the step index), "
        "normalised ((n+1)/L), authors ((n+1)//L, the released code's integer division: t = 0 "
        "but at the last step; reproduction only, warns)")
    rnn_hidden_size: PositiveInt | None = Field(description="LSTM / GRU hidden size; null: "
                                                "matched to the SFM's parameter count")
    match_params: bool = Field(description="LSTM / GRU at the SFM's parameter count (false: "
                               "they use hidden_size)")
    precision: Literal["32", "64", "bf16-mixed"] = Field(
        description='"64" trains in float64 (exactness checks); "bf16-mixed" under '
        "torch.autocast to bfloat16 (the SFM recurrence stays float32 inside its op; "
        "docs/sfm.md)")
    compile: bool = Field(description="torch.compile the model (nn.Module.compile: same "
                          "parameters and checkpoints; the first steps are slower while it "
                          "compiles)")
    deterministic: bool = Field(description="torch.use_deterministic_algorithms")
    accelerator: Literal["auto", "cpu", "gpu"] = Field(description="auto: a GPU when present")
    num_threads: PositiveInt | None = Field(
        description="torch CPU threads per process; null: torch's default (small recurrent "
        "models gain nothing from more, and on a busy machine two threads made an LSTM step 100 "
        "times slower)",
        json_schema_extra={"flags": ["--threads"]})
    progress: bool = Field(description="progress bars")
    limit_train_batches: PositiveInt | None = Field(description="stop each epoch after that "
                                                    "many batches (smoke tests); null: all")
    diagnostics: bool = Field(description="log training diagnostics (gradient norms per "
                              "parameter, update ratios, SFM gate and amplitude statistics; "
                              "freqnn.diagnostics) to the run's metrics.csv and TensorBoard")
    diagnostics_every: PositiveInt = Field(description="with diagnostics: trace the SFM's "
                                           "activations every that many optimiser steps")
    run_dir: str | None = Field(description="the run directory (--run-dir)")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        # YAML reads `precision: 64` as an int; the key is the text "32" or "64"
        if type(value) is int and value in (32, 64):
            return str(value)
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _comma_separated_lists(cls, value: Any, info: Any) -> Any:
        # a list key also takes "a,b" (command line, --set)
        field = cls.model_fields[info.field_name]
        if isinstance(value, str) and get_origin(_without_none(field.annotation)) is list:
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


# --------------------------------------------------------------------------- YAML
#: The most values a YAML document may expand to through its aliases.
MAX_YAML_LEAVES = 100_000


class _Loader(yaml.SafeLoader):
    """Safe YAML loading with YAML 1.2 numbers and booleans, refusing duplicate keys.

    ``1e-3`` is a float (YAML 1.1 needs ``1.0e-3``); only ``true`` / ``false`` are booleans
    (YAML 1.1's ``yes`` / ``no`` / ``on`` / ``off`` are strings, which a bool key refuses); a
    mapping that repeats a key is refused (PyYAML kept the last value silently).
    """

    def construct_document(self, node: yaml.Node) -> Any:
        # aliases share their nodes, so a few lines can stand for a billion leaves, whose repr
        # in an error message (or any walk over them) never ends: count the leaves first
        sizes: dict[int, int] = {}

        def leaves(item: yaml.Node) -> int:
            if id(item) not in sizes:
                sizes[id(item)] = 0  # a recursive alias counts once
                children = (item.value if isinstance(item, yaml.SequenceNode) else
                            [n for pair in item.value for n in pair]
                            if isinstance(item, yaml.MappingNode) else None)
                sizes[id(item)] = 1 if children is None else sum(leaves(c) for c in children)
            return sizes[id(item)]

        if leaves(node) > MAX_YAML_LEAVES:
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases that expand to more than {MAX_YAML_LEAVES:,} values",
                node.start_mark)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<' merges: its keys may be overridden
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: the base class refuses it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)
_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {  # YAML 1.2 core schema booleans only
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def read_yaml(text_or_path: str | os.PathLike[str], *, source: str | None = None) -> Any:
    """Parse YAML safely: from a file (a path) or from text (with ``source`` naming it).

    Raises
    ------
    ValueError
        Malformed YAML, or a tag that would build a Python object (``!!python/...``); the
        message names the file or ``source``.
    OSError
        The file cannot be read (missing, a directory, ...); the message names it.
    """
    if source is None:
        path = Path(text_or_path)
        if path.is_dir():
            raise IsADirectoryError(f"{path}: expected a YAML file, got a directory")
        text, source = path.read_text(), str(path)
    else:
        text = str(text_or_path)
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        what = " ".join(str(error).split())
        mark = getattr(error, "problem_mark", None)
        if getattr(error, "problem", None) and mark is not None:
            what = f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"
        raise ValueError(f"{source}: expected YAML of plain values, got {what}") from None


# --------------------------------------------------------------------------- validation
def _without_none(annotation: Any) -> Any:
    """``X`` for ``X | None``; the annotation itself otherwise."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _range(metadata: Sequence[Any]) -> str:
    low = next((f">= {m.ge}" for m in metadata if isinstance(m, Ge)), None)
    low = low or next((f"> {m.gt}" for m in metadata if isinstance(m, Gt)), None)
    high = next((f"<= {m.le}" for m in metadata if isinstance(m, Le)), None)
    high = high or next((f"< {m.lt}" for m in metadata if isinstance(m, Lt)), None)
    parts = [p for p in (low, high) if p]
    return " and ".join(parts)


def _describe_type(annotation: Any, metadata: Sequence[Any]) -> str:
    base = _without_none(annotation)
    optional = base is not annotation
    origin = get_origin(base)
    if origin is Annotated:
        inner, *extra = get_args(base)
        extra_meta = [m for e in extra for m in getattr(e, "metadata", [e])]
        text = _describe_type(inner, [*metadata, *extra_meta])
    elif base is bool:
        text = "true or false"
    elif base in (int, float):
        text = "an int" if base is int else "a finite number"
        bounds = _range(metadata)
        text = f"{text} {bounds}" if bounds else text
    elif origin is Literal:
        text = "one of " + ", ".join(repr(v) for v in get_args(base))
    elif origin is list:
        (item,) = get_args(base)
        size = next((m.min_length for m in metadata if isinstance(m, MinLen)), None)
        items = "strings" if item is str else _describe_type(item, []).removeprefix("one of ")
        text = f"a list of {size} or more {items}" if size else f"a list of {items}"
    elif base is str:
        text = "a string"
    else:
        text = getattr(base, "__name__", str(base))
    return f"{text}, or null" if optional else text


def describe_key(schema: type[RunConfig], key: str) -> str:
    """What a key accepts, in words: ``"an int >= 1, or null"``."""
    field = schema.model_fields[key]
    return _describe_type(field.annotation, field.metadata)


_MISSING = object()


def _got(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    text = reprlib.repr(value)  # bounded: a large list or mapping is elided
    return f"{type(value).__name__} {text}"


def schema_of(task: Task) -> type[RunConfig]:
    """The configuration schema of ``task`` (a :class:`freqnn.tasks.Task`)."""
    return task.options or RunConfig


def task_defaults(task: Task) -> dict[str, Any]:
    """The runner's defaults overridden by the task's: the lowest layers of a configuration."""
    return {**DEFAULTS, **task.defaults, "task": task.name}


def make_config(task: Task, *layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge the defaults of ``task`` and ``layers`` (later wins) and validate the result.

    Parameters
    ----------
    task : freqnn.tasks.Task
    *layers : mapping or None
        Keys to set. A ``None`` value sets the key to null (``--set valid_voice=null``, a
        ``null`` in YAML or in a resumed run's ``config.yaml``); a key left out keeps the value
        of the layers below.

    Returns
    -------
    dict
        The validated configuration, plain Python values (saved as ``config.yaml``).

    Raises
    ------
    ValueError
        An unknown key, or a value of the wrong type or out of range; the message names the
        key, what it expects and what it got.
    """
    schema = schema_of(task)
    cfg = task_defaults(task)
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in schema.model_fields:
                raise ValueError(f"config: expected keys among {', '.join(sorted(cfg))}, "
                                 f"got unknown key {key!r}")
            if key == "task":
                # the task being configured sets it; a layer may only repeat it (or leave it null)
                if value not in (None, task.name):
                    raise ValueError(f"task: expected {task.name!r} (the task being "
                                     f"configured), got {value!r}")
                continue
            cfg[key] = value
    try:
        return schema.model_validate(cfg).model_dump()
    except ValidationError as error:
        keys = list(dict.fromkeys(str(e["loc"][0]) for e in error.errors()))
        raise ValueError("; ".join(
            f"{key}: expected {describe_key(schema, key)}, got {_got(cfg.get(key, _MISSING))}"
            for key in keys)) from None


# --------------------------------------------------------------------------- command line
_NO_OPTION = ("task", "run_dir")  # the positional TASK and --run-dir


def _parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _option_kwargs(field: FieldInfo) -> dict[str, Any]:
    base = _without_none(field.annotation)
    if get_origin(base) is Annotated:
        base = get_args(base)[0]
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if get_origin(base) is Literal:
        choices = get_args(base)
        return {"choices": choices, "type": type(choices[0])}
    if get_origin(base) is list:
        return {"type": _parse_list, "metavar": "A,B,..."}
    return {"type": base}


def _flags(field: FieldInfo, key: str) -> list[str]:
    """The option of ``key`` (``--batch-size``) and the spellings its field adds."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return [f"--{key.replace('_', '-')}", *extra.get("flags", [])]  # type: ignore[misc]


def _default_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                schema: type[RunConfig], defaults: Mapping[str, Any],
                keys: Sequence[str]) -> None:
    """One command-line option per key (``--batch-size`` for ``batch_size``): the type,
    choices, help and shown default come from ``schema`` and ``defaults``. Options default to
    ``None`` so that only the options given override the configuration."""
    for key in keys:
        if key in _NO_OPTION:
            continue
        field = schema.model_fields[key]
        parser.add_argument(*_flags(field, key), dest=key, default=None, **_option_kwargs(field),
                            help=f"{field.description} ({describe_key(schema, key)}; default "
                                 f"{_default_text(defaults.get(key))})")


# --------------------------------------------------------------------------- docs
_BEGIN = "<!-- generated by python -m freqnn.config: begin -->"
_END = "<!-- generated by python -m freqnn.config: end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(schema: type[RunConfig], defaults: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    rows = ["| key | option | type and range | default | meaning |", "|---|---|---|---|---|"]
    for key in keys:
        field = schema.model_fields[key]
        option = "" if key in _NO_OPTION else ", ".join(f"`{f}`" for f in _flags(field, key))
        rows.append(f"| `{key}` | {option} | {_cell(describe_key(schema, key))} | "
                    f"`{_default_text(defaults.get(key))}` | {_cell(field.description or '')} |")
    return rows


def markdown_tables() -> str:
    """The generated part of ``docs/runner.md``: the runner's keys, then each task's keys."""
    from .tasks import available_tasks, get_task

    lines = [_BEGIN, "", "#### The runner's keys (every task)", "",
             *_rows(RunConfig, DEFAULTS, list(RunConfig.model_fields)), ""]
    for name in available_tasks():
        task = get_task(name)
        schema = schema_of(task)
        own = [k for k in schema.model_fields if k not in RunConfig.model_fields]
        overrides = {k: v for k, v in task.defaults.items() if k in RunConfig.model_fields}
        lines += [f"#### `{name}`", "", f"{task.description[:1].upper()}{task.description[1:]}.",
                  ""]
        if overrides:
            lines += ["Defaults of the runner's keys: " + ", ".join(
                f"`{k}` {_default_text(v)}" for k, v in overrides.items()) + ".", ""]
        if own:
            lines += [*_rows(schema, task.defaults, own), ""]
    lines.append(_END)
    return "\n".join(lines)


def _update_docs(path: Path) -> bool:
    """Rewrite the generated block of ``path``; whether the file changed."""
    text = path.read_text()
    start, end = text.index(_BEGIN), text.index(_END) + len(_END)
    new = text[:start] + markdown_tables() + text[end:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    for target in sys.argv[1:] or ["docs/runner.md"]:
        print(f"{target}: {'updated' if _update_docs(Path(target)) else 'up to date'}")
