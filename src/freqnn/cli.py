"""The ``freqnn`` command.

Subcommands::

    freqnn train TASK --model MODEL [options | --config FILE] [--resume]
    freqnn eval CHECKPOINT_OR_RUN_DIR [--data FILE.npz] [--split test]
    freqnn report RUN_DIR... [--out DIR]
    freqnn demo [--out reports/demo]

Other modules add subcommands through :data:`COMMANDS` (name -> module path, imported only when
the subcommand is used). Such a module exposes ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status), and optionally a one-line ``HELP`` string.
Tasks are registered in :data:`freqnn.tasks.TASKS`; the options of ``freqnn train TASK`` are
generated from the task's configuration schema (:mod:`freqnn.config`). Input errors (bad files,
options, configuration values, unsafe checkpoints), files that cannot be read or written and a
missing ``experiments`` extra print one line ``freqnn: error: ...`` and exit with status 2; set
``FREQNN_TRACEBACK=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "build_parser", "main", "write_report"]

#: Lazily imported subcommands: name -> module with ``add_arguments(parser)``, ``run(args)``.
COMMANDS: dict[str, str] = {
    "compression": "freqnn.tasks.compression",
    "sample": "freqnn.tasks.polyphonic",
}

_BUILTIN_HELP = {
    "train": "train a model on a task (checkpoints, resume, DDP under torchrun)",
    "eval": "evaluate a checkpoint on its task's test split or an external .npz file",
    "report": "summarise run directories into report.md with plots",
    "demo": "the signal-type task end to end (SFM vs LSTM), report in reports/demo",
}


# --------------------------------------------------------------------------- train
def _add_train_arguments(parser: argparse.ArgumentParser, task_name: str | None) -> None:
    from .config import DEFAULTS, RunConfig, add_options, schema_of, task_defaults
    from .tasks import available_tasks, get_task

    parser.add_argument("task", nargs="?", help=f"one of {', '.join(available_tasks())} "
                        "(optional with --resume: read from the run's config.yaml)")
    parser.add_argument("--config", help="YAML file of configuration keys")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set any configuration key (VALUE parsed as YAML); repeatable")
    parser.add_argument("--run-dir", help="run directory (default runs/TASK/MODEL-sSEED)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last good checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in a --run-dir that holds a run (its files are "
                        "replaced) or other files (they are kept)")
    runner_keys = list(RunConfig.model_fields)
    if task_name is None:
        add_options(parser.add_argument_group("runner keys (docs/runner.md)"), RunConfig,
                    DEFAULTS, runner_keys)
        return
    task = get_task(task_name)
    schema, defaults = schema_of(task), task_defaults(task)
    parser.description = f"{parser.description}. {task.name}: {task.description}"
    add_options(parser.add_argument_group("runner keys (docs/runner.md)"), schema, defaults,
                runner_keys)
    own = [key for key in schema.model_fields if key not in RunConfig.model_fields]
    if own:
        add_options(parser.add_argument_group(f"{task.name} task keys"), schema, defaults, own)


_NOT_CONFIG = {"command", "run", "task", "config", "set", "resume", "overwrite", "run_dir"}


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    from .config import read_yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        key = key.strip().replace("-", "_")
        out[key] = read_yaml(value, source=f"--set {key}")
    return out


def _run_train(args: argparse.Namespace) -> int:
    from .checkpoint import CONFIG_FILE, load_run_config
    from .config import make_config, read_yaml
    from .tasks import get_task
    from .train import train

    if args.run_dir is not None and not args.run_dir.strip():  # was taken as the default
        raise ValueError(f"--run-dir: expected a directory, got {args.run_dir!r}")
    base: dict[str, Any] = {}
    if args.resume:
        if not args.run_dir:
            raise ValueError("--resume: expected --run-dir (the run to continue), got none")
        if (Path(args.run_dir) / CONFIG_FILE).is_file():
            base = load_run_config(args.run_dir)
        elif args.task is None:
            found = "a directory without it" if Path(args.run_dir).is_dir() else "nothing there"
            raise ValueError(f"--run-dir: expected a run directory holding {CONFIG_FILE} to "
                             f"resume, got {args.run_dir} ({found}); give the TASK to start a "
                             "new run there")
    task_name = args.task or base.get("task")
    if task_name is None:
        raise ValueError("train: expected a TASK, got none (or --resume with the --run-dir of "
                         "an existing run)")
    if base and base["task"] != task_name:
        raise ValueError(f"task: expected {base['task']!r} (the run being resumed), got "
                         f"{task_name!r}")
    task = get_task(task_name)
    from_yaml: dict[str, Any] = {}
    if args.config:
        from_yaml = read_yaml(args.config) or {}
        if not isinstance(from_yaml, dict):
            raise ValueError(f"{args.config}: expected a YAML mapping of configuration keys, "
                             f"got {type(from_yaml).__name__}")
    cli = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None}
    cli.update(_parse_sets(args.set))
    base.pop("task", None)
    cfg = make_config(task, base, from_yaml, cli)
    if cfg["run_dir"] is not None and not cfg["run_dir"].strip():
        raise ValueError(f"run_dir: expected a directory, got {cfg['run_dir']!r}")
    cfg["run_dir"] = str(args.run_dir or base.get("run_dir") or cfg.get("run_dir") or
                         Path("runs") / task.name / f"{cfg['model']}-s{cfg['seed']}")
    results = train(cfg, resume=args.resume, overwrite=args.overwrite)
    _print_results(results, cfg["run_dir"])
    return 0


def _print_results(results: dict[str, Any], run_dir: str) -> None:
    if os.environ.get("RANK", "0") != "0":  # DDP: rank 0 speaks
        return
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in results["test"].items())
    print(f"{results['task']} / {results['model']} (seed {results['seed']}, "
          f"{results['params']} parameters; SFM reference {results['sfm_params']}): "
          f"test {metrics}; best epoch {results['best_epoch']} of {results['epochs_run']}; "
          f"{results['train_wall_s']:.1f} s training")
    print(f"run directory: {run_dir}")


# --------------------------------------------------------------------------- eval
def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .ckpt file or a run directory (its best.ckpt)")
    parser.add_argument("--data", help="external data set (.npz, see docs/runner.md)")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test",
                        help="split of the task's own data when --data is not given")
    parser.add_argument("--batch-size", type=_positive_int, default=64)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def _run_eval(args: argparse.Namespace) -> int:
    from .checkpoint import evaluate, model_from_checkpoint

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    module = model_from_checkpoint(path)
    collate_fn = None
    if args.data:
        if module.task.load_external is None:
            raise SystemExit(f"freqnn: error: --data: task {module.task.name} reads no "
                             "external files")
        dataset = module.task.load_external(args.data, module.cfg, module.facts["info"])
        source = args.data
    else:
        data = module.task.build(module.cfg)
        dataset, collate_fn = getattr(data, args.split), data.collate
        source = f"{module.task.name} {args.split} split"
    metrics = evaluate(module, dataset, batch_size=args.batch_size, collate_fn=collate_fn)
    print(json.dumps({"checkpoint": str(path), "data": source, "sequences": len(dataset),
                      **metrics}, indent=2))
    return 0


# --------------------------------------------------------------------------- report
def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories, or folders holding them")
    parser.add_argument("--out", default="reports/report", help="output folder")
    parser.add_argument("--title", default="freqnn report")
    parser.add_argument("--no-amplitude", dest="amplitude", action="store_false",
                        help="skip the SFM amplitude figure")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


#: configuration keys that do not define a model's configuration in a report
_RUN_ONLY_KEYS = ("seed", "run_dir", "num_threads", "progress")


def _variants(configs: dict[Path, dict[str, Any]]) -> dict[Path, str]:
    """For each run, ``"key=value, ..."`` over the keys in which the configurations of the runs
    of its task and model differ (seeds and run-only keys aside); ``""`` if they agree.
    (:func:`~freqnn.checkpoint.load_run_config` gives runs written before a key existed its
    default.)"""
    by_model: dict[tuple[str, str], list[Path]] = {}
    for run, cfg in configs.items():
        by_model.setdefault((cfg["task"], cfg["model"]), []).append(run)
    out = {}
    for group in by_model.values():
        keys = sorted({k for run in group for k in configs[run]} - set(_RUN_ONLY_KEYS))
        differ = [k for k in keys if len({repr(configs[run].get(k)) for run in group}) > 1]
        for run in group:
            out[run] = ", ".join(f"{k}={configs[run].get(k)}" for k in differ)
    return out


def _label(model: str, variant: str) -> str:
    from .models import ARCH_LABELS

    name = ARCH_LABELS.get(model, model)
    return f"{name} ({variant})" if variant else name


#: What ``freqnn report`` reads of a run's results.json, with the types it needs.
_RESULTS_KEYS: dict[str, type | tuple[type, ...]] = {
    "task": str, "model": str, "seed": int, "params": int, "sfm_params": int,
    "hidden_size": int, "epochs_run": int, "best_epoch": int, "best_val": dict, "test": dict,
    "train_wall_s": (int, float), "hardware": dict}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"a {type(value).__name__}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: expected a JSON file written by freqnn train, got an "
                         f"unreadable one ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None


def _read_results(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A finished run's results.json and history.json, checked for what the report reads: a
    corrupt or incomplete file is one ValueError naming it (was a KeyError naming no file)."""
    path = run / "results.json"
    results = _read_json(path)
    if not isinstance(results, dict):
        raise ValueError(f"{path}: expected a JSON object of results, got a "
                         f"{type(results).__name__}")
    for key, kind in _RESULTS_KEYS.items():
        value = results.get(key)
        if key not in results or isinstance(value, bool) or not isinstance(value, kind):
            got = "nothing" if key not in results else _short(value)
            raise ValueError(f"{path}: {key}: expected a value of the results freqnn train "
                             f"writes, got {got}")
    for key in ("cpu_count", "torch_threads", "torch", "platform"):
        if key not in results["hardware"]:
            raise ValueError(f"{path}: hardware.{key}: expected a value of the results freqnn "
                             "train writes, got nothing")
    for key in ("test", "best_val"):
        for name, value in results[key].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{path}: {key}.{name}: expected a number, got "
                                 f"{_short(value)}")
    history_path = run / "history.json"
    history = _read_json(history_path)
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise ValueError(f"{history_path}: expected a JSON list of per-epoch records, got "
                         f"a {type(history).__name__} of other values")
    return results, history


def write_report(run_dirs: Sequence[str | Path], out: str | Path, title: str = "freqnn report",
                 amplitude: bool = True, notes: str = "") -> Path:
    """Summarise finished runs: ``report.md`` (table of test metrics, mean and sample std over
    seeds, parameter counts, wall time), ``learning_curves.png`` and, for the signal-type task
    with an SFM / A-SFM run, ``amplitude.png``. Returns the path of ``report.md``.

    A row pools the seeds of one configuration: runs of the same task and model whose
    configurations differ in more than the seed (and where the run was written, its threads and
    progress bars) get a row each, labelled with the keys that differ (:func:`_variants`)."""
    from .checkpoint import epochs_text, find_runs, load_run_config
    from .diagnostics import ACCURACY_FLOOR, ACCURACY_PEAK, LOSS_RISE, divergence_text
    from .io import atomic_write
    from .models import arch_rank
    from .plots import learning_curves
    from .tasks import task_for

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = find_runs(run_dirs)
    configs = {run: load_run_config(run) for run in runs}
    variants = _variants(configs)
    groups: dict[tuple[str, str, str], list[tuple[Path, dict[str, Any], list]]] = {}
    for run in runs:
        results, history = _read_results(run)
        groups.setdefault((results["task"], results["model"], variants[run]), []).append(
            (run, results, history))
    keys = sorted(groups, key=lambda k: (k[0], arch_rank(k[1]), k[1], k[2]))
    metric_names = sorted({m for k in keys for _, r, _ in groups[k] for m in r["test"]})
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes, ""]
    header = ["task", "model", "seeds"] + [f"test {m} (mean ± std)" for m in metric_names] + [
        "selection: best validation metric (mean ± std)"] + [
        "diverged", "parameters", "SFM parameters", "hidden size", "epochs (best)",
        "train wall time (s)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        entries = groups[key]
        cells = [key[0], _label(key[1], key[2]),
                 ", ".join(str(r["seed"]) for _, r, _ in entries)]
        for m in metric_names:
            vals = [r["test"][m] for _, r, _ in entries if m in r["test"]]
            mean, std = _mean_std(vals)
            cells.append(f"{mean:.4f} ± {std:.4f}")
        # the row's selection metric (a task key may set it: task_for); its runs differ only
        # by seed, so they share it
        monitor = f"val_{task_for(configs[entries[0][0]]).monitor}"
        mean, std = _mean_std([r["best_val"][monitor] for _, r, _ in entries])
        cells.append(f"{monitor} {mean:.4f} ± {std:.4f}")
        cells.append(divergence_text([(r["seed"], h) for _, r, h in entries]))
        first = entries[0][1]
        walls = [r["train_wall_s"] for _, r, _ in entries]
        cells += [str(first["params"]), str(first["sfm_params"]), str(first["hidden_size"]),
                  ", ".join(epochs_text(r) for _, r, _ in entries),
                  f"{_mean_std(walls)[0]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    hardware = groups[keys[0]][0][1]["hardware"]
    lines += ["", "Std is the sample standard deviation over seeds (0 for one seed). "
              "Test metrics are those of the best-on-validation checkpoint, selected by the "
              "task's validation metric (its value in the selection column). Diverged: runs "
              f"whose epoch training loss rose more than {LOSS_RISE} nats above its running "
              f"minimum, or whose validation accuracy fell to {ACCURACY_FLOOR} or below after "
              f"reaching {ACCURACY_PEAK} (freqnn.diagnostics.divergence). Epochs: run "
              "(best, 1-based; \"cap N min\": stopped by the wall-time cap max_minutes). "
              "Hardware: "
              f"{hardware.get('gpu') or hardware.get('processor') or 'cpu'}, "
              f"{hardware['cpu_count']} CPU cores, {hardware['torch_threads']} torch threads, "
              f"torch {hardware['torch']}, {hardware['platform']}.", ""]

    tasks = sorted({k[0] for k in keys})
    for task in tasks:
        histories = {_label(m, v): [h for _, _, h in groups[(t, m, v)]]
                     for (t, m, v) in keys if t == task}
        val_metrics = sorted({k for hs in histories.values() for h in hs for r in h for k in r
                              if k.startswith("val_")})
        png = learning_curves(histories, out / f"learning_curves_{task}.png",
                              metrics=["train_loss", *val_metrics], title=task)
        lines += [f"## Learning curves ({task})", "", f"![learning curves]({png.name})", "",
                  "Mean over seeds, band from the minimum to the maximum; the curves stop at "
                  "the shortest run (early stopping).", ""]
        if amplitude and task == "signal_type":
            sfm_runs = {m: (v, e[0][0], e[0][1]["seed"]) for (t, m, v), e in groups.items()
                        if t == task and m in ("sfm", "asfm")}
            for arch in sorted(sfm_runs, key=arch_rank):
                variant, run, seed = sfm_runs[arch]
                png = _amplitude_png(run, out / f"amplitude_{arch}.png")
                lines += [f"## {_label(arch, variant)} amplitude |S| per frequency over time",
                          "", f"![amplitude]({png.name})", "",
                          f"Run `{run}` (seed {seed}), first "
                          "layer, one test wave of each type; mean of |S_t| over the D states "
                          "(like figure 5 of Hu & Qi 2017).", ""]
    lines += ["## Runs", ""] + [f"- `{r}`" for r in runs] + [""]
    report = out / "report.md"
    with atomic_write(report, "w") as handle:
        handle.write("\n".join(lines))
    return report


def _amplitude_png(run: Path, path: Path) -> Path:
    import torch

    from .checkpoint import model_from_checkpoint
    from .models import ARCH_LABELS
    from .plots import amplitude_figure, sfm_amplitudes

    module = model_from_checkpoint(run / "checkpoints" / "best.ckpt")
    test = module.task.build(module.cfg).test
    names = module.facts["info"]["class_names"]
    examples = []
    for label, name in enumerate(names):
        index = next(i for i in range(len(test)) if int(test[i]["y"]) == label)
        item = test[index]
        cell = module.model.body.cells[0]
        amps = sfm_amplitudes(cell, item["x"], item["times"])
        examples.append((name, item["times"].numpy(), item["x"][:, 0].numpy(),
                         amps.double().numpy()))
    cell = module.model.body.cells[0]
    freqs = None if cell.adaptive else cell.frequencies().detach().to(torch.float64).numpy()
    return amplitude_figure(examples, freqs, path, title=f"{ARCH_LABELS[module.cfg['model']]}: |S|")


def _run_report(args: argparse.Namespace) -> int:
    report = write_report(args.run_dirs, args.out, args.title, args.amplitude)
    print(f"report: {report}")
    return 0


# --------------------------------------------------------------------------- demo
#: The demo's configuration: sized to finish in well under 10 minutes on 2 CPU cores; the rest
#: (learning rate 1e-2, SFM's chrono windows, normalised memory and mean read-out) is the
#: signal-type task's default (docs/results/signal_type.md).
DEMO = {"n_train": 1000, "n_val": 200, "n_test": 500, "epochs": 15, "batch_size": 32,
        "seed": 0, "patience": 0}


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="reports/demo", help="output folder")
    parser.add_argument("--models", default="sfm,lstm",
                        help="comma-separated models to train (default sfm,lstm)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")


def _check_demo_run_dir(run_dir: Path) -> None:
    """The demo writes ``OUT/runs/MODEL``: refuse such a directory unless it is empty or a
    signal_type run (a previous demo's), whose run files the demo then replaces."""
    from .checkpoint import CONFIG_FILE, load_run_config
    from .train import LOCK_FILE

    if not run_dir.is_dir() or not {p.name for p in run_dir.iterdir()} - {LOCK_FILE}:
        return
    if not (run_dir / CONFIG_FILE).is_file() or load_run_config(run_dir)["task"] != \
            "signal_type":
        raise FileExistsError(f"--out: expected a directory the demo wrote, got {run_dir}, "
                              "which holds something else; choose another --out")


def _run_demo(args: argparse.Namespace) -> int:
    from .models import ARCH_LABELS
    from .tasks import get_task
    from .train import make_config, train

    start = time.perf_counter()
    out = Path(args.out)
    runs_dir = out / "runs"
    task = get_task("signal_type")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for model in models:  # before any training: a refused directory costs nothing
        _check_demo_run_dir(runs_dir / model)
    results = {}
    for model in models:
        print(f"[demo] training {model} on signal_type ...", flush=True)
        cfg = make_config(task, DEMO, {"model": model, "progress": args.progress,
                                       "run_dir": str(runs_dir / model)})
        # a previous demo's run of this model is replaced: its run files only
        results[model] = train(cfg, overwrite=True)
        _print_results(results[model], cfg["run_dir"])
    command = "freqnn demo" if not sys.argv[1:2] == ["demo"] else " ".join(
        ["freqnn", *sys.argv[1:]])
    notes = (f"Produced by `{command}` (`make demo`): signal-type task (square vs sawtooth, "
             f"irregular sampling, 500 samples per wave), {DEMO['n_train']} training / "
             f"{DEMO['n_val']} validation / {DEMO['n_test']} test waves, {DEMO['epochs']} "
             f"epochs, seed {DEMO['seed']}, the task's learning rate {cfg['lr']}; SFM with "
             "chrono windows, the normalised memory and the mean read-out (docs/sfm.md, "
             "Training SFM). One seed: see docs/results/signal_type.md for the full "
             "comparison (3 seeds, every model).")
    report = write_report([runs_dir / m for m in models], out, "freqnn demo: signal type",
                          notes=notes)
    elapsed = time.perf_counter() - start
    for model, res in results.items():
        print(f"{ARCH_LABELS.get(model, model)} test accuracy: {res['test']['accuracy']:.4f}")
    print(f"demo finished in {elapsed:.0f} s; report: {report.resolve()}")
    return 0


# --------------------------------------------------------------------------- main
def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser; ``argv`` selects which lazy subcommand / task options to load."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="freqnn", description="Frequency-domain neural "
                                     "networks: train, evaluate and compare SFM models.")
    parser.add_argument("--version", action="version", version=f"freqnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = argv[0] if argv else None
    p = sub.add_parser("train", help=_BUILTIN_HELP["train"], description=_BUILTIN_HELP["train"])
    if chosen == "train":
        from .tasks import TASKS

        task_name = next((a for a in argv[1:] if a in TASKS), None)
        _add_train_arguments(p, task_name)
    p.set_defaults(run=_run_train)
    for name, add, run in (("eval", _add_eval_arguments, _run_eval),
                           ("report", _add_report_arguments, _run_report),
                           ("demo", _add_demo_arguments, _run_demo)):
        p = sub.add_parser(name, help=_BUILTIN_HELP[name], description=_BUILTIN_HELP[name])
        add(p)
        p.set_defaults(run=run)
    for name, module_path in COMMANDS.items():
        if name == chosen:
            module = importlib.import_module(module_path)
            helptext = getattr(module, "HELP", f"see {module_path}")
            p = sub.add_parser(name, help=helptext, description=helptext)
            module.add_arguments(p)
            p.set_defaults(run=module.run)
        else:
            sub.add_parser(name, help=f"(from {module_path})")
    return parser


#: Modules of the ``experiments`` extra: a command that misses one says what to install.
EXTRA_MODULES = frozenset({"lightning", "matplotlib", "music21", "pretty_midi", "pydantic",
                           "scipy", "sklearn", "tensorboard", "yaml"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``freqnn`` console script; returns the exit status.

    Bad input (a value, a file, a checkpoint) and failures to read or write files print one
    line ``freqnn: error: ...`` and return 2; ``FREQNN_TRACEBACK=1`` raises instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        return int(args.run(args) or 0)
    except ModuleNotFoundError as error:
        if os.environ.get("FREQNN_TRACEBACK") or (error.name or "").split(".")[0] not in \
                EXTRA_MODULES:
            raise
        from .checks import EXPERIMENTS_HINT

        command = " ".join(["freqnn", *argv[:1]])
        message = (f"{command} needs the experiments extra, got no module {error.name!r}: "
                   f"{EXPERIMENTS_HINT}")
    except (ValueError, OSError) as error:
        if os.environ.get("FREQNN_TRACEBACK"):
            raise
        message = str(error)
    except (MemoryError, RuntimeError) as error:
        size = _allocation_failure(error)
        if os.environ.get("FREQNN_TRACEBACK") or size is None:
            raise
        message = (f"out of memory: expected settings that fit this machine's memory, got one "
                   f"allocation of {size}; reduce hidden_size, state_size, length, batch_size "
                   "or the number of sequences")
    print(f"freqnn: error: {message}", file=sys.stderr)
    return 2


def _allocation_failure(error: BaseException) -> str | None:
    """The size an allocator failed to allocate (PyTorch's multi-line RuntimeError, NumPy's
    MemoryError, CUDA's OutOfMemoryError), or ``None`` for another error."""
    text = str(error)
    found = re.search(r"allocate (\d+) bytes", text)
    if found:
        return f"{int(found.group(1)):,} bytes"
    found = re.search(r"Unable to allocate ([\d.]+ \w+)", text)
    if found:
        return found.group(1)
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError" or \
            "out of memory" in text:
        return "more than is free"
    return None


if __name__ == "__main__":
    sys.exit(main())
