"""Benchmark of the SFM recurrence against nn.LSTM, timed in pairs (issue 25).

1. pairs: each SFM variant against the one-layer ``nn.LSTM`` whose parameter count is closest
   (``nn.LSTMCell`` when streaming), each pair alone in a fresh process that builds and runs
   only those two models, interleaved (a b, b a, ...) after one warm-up call each. A case in the
   same process (the PyTorch fallback allocating gigabytes, say) would slow whichever model
   follows it, and the reported ratio would depend on what else was measured (issue 25: 0.96x
   in a process of 8 cases against 1.46x in a process of the pair alone). Reported: min / median
   / max of both, the ratio of the medians and the range of the per-round ratios.
   * forward + backward of a whole sequence (``model(x)[0].sum().backward()``, x requiring
     grad) for (T=100, B=32, N=88, D=50, K=4, M=50) and (T=1000, B=64, N=64, D=128, K=16,
     M=128): ``freqnn.SFM``, ``freqnn.AdaptiveSFM`` and the A-SFM with the authors' phase rule on
     the fast path (compiled kernel); with ``--all`` also the PyTorch fallback, the reference
     path (small only) and ``nn.GRU``;
   * the SFM's forward alone under ``no_grad``;
   * streaming inference, one step per call under ``no_grad``, batch 1 and 32 (100 steps);
2. ``--check``: every pair twice, in two fresh processes; exit status 1 if the two ratios of a
   pair differ by more than 10% of the smaller (a machine too busy to measure on);
3. ``--profile``: where one SFM forward + backward goes (input projections, the op's forward
   and backward, the rest), with the GEMM rate of each part;
   ``--torch-compile``: a model (layer + linear read-out) under ``torch.compile(fullgraph=True)``
   against the same model in eager mode, forward + backward, small configuration;
4. scaling of forward + backward time and peak memory with T (10 .. 10^4) and with K (1 .. 64).
   Peak memory is the rise of the process's resident set (``VmHWM`` after resetting it through
   ``/proc/self/clear_refs``; ``ru_maxrss`` where that is unavailable) during one forward +
   backward, each point in a fresh subprocess, next to the theoretical size of the activations the
   fast path saves.

Every part runs once per thread count of ``--threads`` (default ``1,2``). The CPU model, its
PyTorch capability (``torch.backends.cpu.get_cpu_capability()``) and the load average (at the
start and end of the run and of every pair) are printed: ratios measured on a loaded machine
flatter the slower model, so report them with the load.

Usage::

    python benchmarks/sfm.py [--threads 1,2] [--quick] [--json out.json] [--skip-scaling]
        [--only small|large] [--repeats R] [--all] [--check] [--torch-compile] [--profile]

Prints markdown tables and, with ``--json``, writes every number.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

import freqnn
from freqnn.sfm import kernels

CONFIGS = {
    "small": {"T": 100, "B": 32, "N": 88, "D": 50, "K": 4, "M": 50},
    "large": {"T": 1000, "B": 64, "N": 64, "D": 128, "K": 16, "M": 128},
}
SCALING_BASE = {"B": 16, "N": 88, "D": 50, "K": 4, "M": 50}


# --------------------------------------------------------------------------- models
def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def matched_hidden(params: int, n: int, gates: int) -> int:
    """Hidden size H of a one-layer LSTM (gates=4) / GRU (3) whose gates * H * (N + H + 2)
    parameters are closest to ``params``."""
    h = (-(n + 2) + math.sqrt((n + 2) ** 2 + 4 * params / gates)) / 2
    candidates = [max(1, math.floor(h)), math.ceil(h)]
    return min(candidates, key=lambda c: abs(gates * c * (n + c + 2) - params))


def build(cfg: dict[str, int]) -> dict[str, nn.Module]:
    N, D, K, M = cfg["N"], cfg["D"], cfg["K"], cfg["M"]
    torch.manual_seed(0)
    sfm = freqnn.SFM(N, M, D, K)
    asfm = freqnn.AdaptiveSFM(N, M, D, K)
    p = count(sfm)
    return {
        "sfm": sfm,
        "asfm": asfm,
        "lstm": nn.LSTM(N, matched_hidden(p, N, 4)),
        "gru": nn.GRU(N, matched_hidden(p, N, 3)),
    }


# --------------------------------------------------------------------------- timing
def fwd_bwd(model: nn.Module, x: torch.Tensor, path: str | None) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        x.grad = None
        with kernels.use_path(path or "fast"):  # (no effect on torch's own modules)
            out = model(x)[0]
        out.sum().backward()

    return run


def forward_only(model: nn.Module, x: torch.Tensor, path: str | None) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad(), kernels.use_path(path or "fast"):
            model(x)

    return run


def round_robin(
    cases: dict[str, Callable[[], None]], repeats: dict[str, int], warmup: bool = True
) -> dict:
    """Median wall time of each case, in rounds over all cases; with ``warmup`` after one
    untimed call of each case that runs more than once."""
    for name, fn in cases.items():
        if warmup and repeats[name] > 1:
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(max(repeats.values())):
        for name, fn in cases.items():
            if r < repeats[name]:
                gc.collect()
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": statistics.median(v), "runs": len(v), "min_s": min(v), "max_s": max(v)}
        for name, v in times.items()
    }


# --------------------------------------------------------------------------- pairs
#: the SFM variants timed against nn.LSTM (nn.LSTMCell when streaming): (class, options, path);
#: the last three only with --all
VARIANTS = {
    "SFM (fast)": ("SFM", {}, "fast"),
    "A-SFM (fast)": ("AdaptiveSFM", {}, "fast"),
    "A-SFM, authors' phase (fast)": ("AdaptiveSFM", {"phase": "authors"}, "fast"),
    "SFM (PyTorch fallback)": ("SFM", {}, "pytorch"),
    "SFM (reference)": ("SFM", {}, "reference"),
    "nn.GRU": ("GRU", {}, None),
}
CORE_VARIANTS = 3


def timed_pair(
    a: Callable[[], None], b: Callable[[], None], rounds: int, warmup: bool = True
) -> dict[str, list[float]]:
    """Wall times of ``a`` and ``b``, ``rounds`` each, interleaved: a b, then b a, ... (so
    that neither always runs first after the other), after one untimed call of each."""
    if warmup:
        a()
        b()
    times: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(rounds):
        for key, fn in (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a)):
            gc.collect()
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"min_s": min(times), "median_s": statistics.median(times), "max_s": max(times),
            "runs": len(times)}  # fmt: skip


def pair_summary(times: dict[str, list[float]]) -> dict:
    """min / median / max of both models, the ratio of the medians (a / b) and the range of the
    per-round ratios."""
    rounds = [x / y for x, y in zip(times["a"], times["b"], strict=True)]
    a, b = summary(times["a"]), summary(times["b"])
    return {"model": a, "baseline": b, "ratio": a["median_s"] / b["median_s"],
            "round_ratios": [min(rounds), max(rounds)]}  # fmt: skip


def in_fresh_process(script: str, flag: str, spec: dict) -> dict:
    """Run ``script`` with ``flag`` and ``spec`` (JSON) in a new interpreter: its last line of
    output is the result. A fresh process holds nothing from earlier cases (allocator
    caches, the pages of a case that allocated gigabytes) that could slow one of the pair."""
    cmd = [sys.executable, script, flag, json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def make_variant(variant: str, cfg: dict[str, int], cell: bool = False) -> nn.Module:
    """The model of ``variant`` (a key of :data:`VARIANTS`) for ``cfg``, seeded; its cell with
    ``cell``."""
    name, options, _ = VARIANTS[variant]
    N, D, K, M = cfg["N"], cfg["D"], cfg["K"], cfg["M"]
    torch.manual_seed(0)
    if name == "GRU":
        return nn.GRU(N, matched_hidden(count(freqnn.SFM(N, M, D, K)), N, 3))
    return getattr(freqnn, name + ("Cell" if cell else ""))(N, M, D, K, **options)


def pair_point(spec: dict) -> dict:
    """One pair in this process: ``spec["variant"]`` against the nn.LSTM (or nn.LSTMCell) of
    its parameter count, forward + backward (``"fwd_bwd"``), forward under ``no_grad``
    (``"forward"``) or streaming steps (``"stream"``)."""
    torch.set_num_threads(spec["threads"])
    cfg, kind, variant = spec["config"], spec["kind"], spec["variant"]
    path = VARIANTS[variant][2]
    start_load = load_average()
    if kind == "stream":
        model = make_variant(variant, cfg, cell=True)
        lstm = nn.LSTMCell(cfg["N"], matched_hidden(count(model), cfg["N"], 4))
        xs = torch.randn(spec["steps"], spec["batch"], cfg["N"])
        a, b = stream_loop(model, path, xs), stream_loop(lstm, None, xs)
    else:
        model = make_variant(variant, cfg)
        lstm = nn.LSTM(cfg["N"], matched_hidden(count(model), cfg["N"], 4))
        x = torch.randn(cfg["T"], cfg["B"], cfg["N"], requires_grad=kind == "fwd_bwd")
        if kind == "fwd_bwd":
            a, b = fwd_bwd(model, x, path), fwd_bwd(lstm, x, None)
        else:
            a, b = forward_only(model, x, path), forward_only(lstm, x, None)
    result = pair_summary(timed_pair(a, b, spec["rounds"], spec["warmup"]))
    result.update(params={"model": count(model), "baseline": count(lstm)},
                  hidden=lstm.hidden_size, load_average=[start_load, load_average()])  # fmt: skip
    return result


def stream_loop(module: nn.Module, path: str | None, xs: torch.Tensor) -> Callable[[], None]:
    """One call of ``module`` per step of ``xs`` (steps, B, N) under ``no_grad``."""

    def run() -> None:
        with torch.no_grad(), kernels.use_path(path or "fast"):
            state = None
            for x in xs:
                out = module(x, state)
                state = out if isinstance(module, nn.LSTMCell) else out[1]

    return run


def pairs_benchmark(kind: str, cfg: dict[str, int], variants: list[str], threads: int,
                    rounds: int, warmup: bool, check: bool, **extra: int) -> dict:  # fmt: skip
    """Each variant against nn.LSTM, each pair in a fresh process (twice with ``check``)."""
    result = {}
    for variant in variants:
        spec = {"kind": kind, "config": cfg, "variant": variant, "threads": threads,
                "rounds": rounds, "warmup": warmup, **extra}  # fmt: skip
        runs = [in_fresh_process(__file__, "--pair-point", spec) for _ in range(2 if check else 1)]
        result[variant] = {"runs": runs}
        print(f"  {kind} {variant}: " + ", ".join(f"{r['ratio']:.3f}x" for r in runs),
              file=sys.stderr)
    return result


def check_failures(report: dict, tolerance: float = 0.10) -> list[str]:
    """The pairs whose two ratios (``--check``) differ by more than ``tolerance`` of the
    smaller."""
    failures = []
    for run in report["runs"]:
        for section, pairs in run["pairs"].items():
            for variant, res in pairs.items():
                ratios = [r["ratio"] for r in res["runs"]]
                if len(ratios) == 2 and abs(ratios[0] - ratios[1]) > tolerance * min(ratios):
                    failures.append(f"{run['threads']} thread(s), {section}, {variant}: "
                                    f"{ratios[0]:.3f}x then {ratios[1]:.3f}x")  # fmt: skip
    return failures


def profile_benchmark(cfg: dict[str, int], repeats: int) -> dict:
    """Where one SFM forward + backward goes: the input projections (one GEMM over all steps,
    forward and backward, outside the op), the op's forward and backward (the recurrence), and
    the rest (phases, autograd, Python); each part's multiply-adds and their rate."""
    import torch.nn.functional as F

    models = build(cfg)
    sfm, lstm = models["sfm"], models["lstm"]
    cell = sfm.cells[0]
    T, B, N, D, K, M = (cfg[k] for k in "TBNDKM")
    G = cell.weight_ih.shape[0]
    x = torch.randn(T, B, N, requires_grad=True)
    times = torch.arange(1, T + 1, dtype=torch.float64).unsqueeze(1).expand(T, B)
    with torch.no_grad():
        gx = cell.input_projection(x)
        ph = freqnn.frequencies.phase(cell.frequencies(), times)
        cos, sin = torch.cos(ph), torch.sin(ph)
        zero = x.new_zeros
        # the paper's SFM: authors, normalised, mean_readout off; keep the histories
        args = (gx, zero(B, M), zero(B, D, K), zero(B, D, K), None, cos, sin, None, times,
                torch.zeros(B, dtype=torch.float64), None, cell.weight_hh, cell.weight_a,
                cell.b_z, False, False, False, True)  # fmt: skip
        saved = torch.ops.freqnn.sfm_scan(*args)[5]
    grads = (x.new_ones(T, B, M), zero(B, M), zero(B, D, K), zero(B, D, K), None)
    rest = (cos, sin, times, args[9], None, cell.weight_hh, cell.weight_a, cell.b_z, False,
            False, False, saved)  # fmt: skip

    def projection() -> None:
        w = cell.weight_ih.detach().requires_grad_()
        F.linear(x, w, cell.bias_ih.detach()).sum().backward()

    def op_forward() -> None:
        with torch.no_grad():
            torch.ops.freqnn.sfm_scan(*args)

    def op_backward() -> None:
        torch.ops.freqnn.sfm_scan_backward(*grads, *rest)

    cases = {
        "SFM forward + backward": fwd_bwd(sfm, x, "fast"),
        "input projections, forward + backward": projection,
        "op forward (recurrence, histories kept)": op_forward,
        "op backward (recurrence)": op_backward,
        "nn.LSTM forward + backward": fwd_bwd(lstm, x, None),
    }
    result = round_robin(cases, dict.fromkeys(cases, repeats))
    step = B * M * G + K * B * D * 2 * M  # recurrent GEMM + read-out per step
    macs = {
        "input projections, forward + backward": 3 * T * B * N * G,
        "op forward (recurrence, histories kept)": T * step,
        "op backward (recurrence)": 2 * T * step + T * B * (G * M + K * 2 * M * D),
    }
    total = result["SFM forward + backward"]["median_s"]
    parts = sum(result[k]["median_s"] for k in macs)
    result["rest (phases, autograd, Python)"] = {"median_s": total - parts, "runs": 0}
    for name, case in result.items():
        case["share"] = case["median_s"] / total
        if name in macs:
            case["gflops"] = 2 * macs[name] / case["median_s"] / 1e9
    return {"config": cfg, "times": result}


class _Head(nn.Module):
    """A layer and a linear read-out: what a user compiles."""

    def __init__(self, body: nn.Module, width: int) -> None:
        super().__init__()
        self.body, self.head = body, nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.head(self.body(x)[0]),)


def torch_compile_benchmark(cfg: dict[str, int], repeats: int) -> dict:
    """``torch.compile(model, fullgraph=True)`` against the eager model, forward + backward,
    for SFM and A-SFM (the op ``freqnn::sfm_scan`` inside the compiled graph)."""
    models = build(cfg)
    x = torch.randn(cfg["T"], cfg["B"], cfg["N"], requires_grad=True)
    cases, first = {}, {}
    for name in ("sfm", "asfm"):
        model = _Head(models[name], cfg["M"])
        compiled = torch.compile(model, fullgraph=True)
        start = time.perf_counter()
        fwd_bwd(compiled, x, None)()
        first[name] = time.perf_counter() - start
        label = "SFM" if name == "sfm" else "A-SFM"
        cases[f"{label} eager"] = fwd_bwd(model, x, None)
        cases[f"{label} torch.compile"] = fwd_bwd(compiled, x, None)
    result = round_robin(cases, dict.fromkeys(cases, repeats))
    for label in ("SFM", "A-SFM"):
        eager = result[f"{label} eager"]["median_s"]
        for mode in ("eager", "torch.compile"):
            result[f"{label} {mode}"]["vs_eager"] = result[f"{label} {mode}"]["median_s"] / eager
    return {"config": cfg, "first_call_s": first, "times": result}


# --------------------------------------------------------------------------- memory
def saved_floats(T: int, B: int, D: int, K: int, M: int, adaptive: bool = False) -> int:
    """Floats the fast path keeps for the backward: per step and sequence Re S, Im S (2DK),
    o and tanh(W_z A + b_z) (2KM), the gate activations (3D + K), z (M), (A-SFM: phase K);
    plus the initial state."""
    per_step = 2 * D * K + 2 * K * M + 3 * D + K + M + (K if adaptive else 0)
    return (T + 1) * B * per_step


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def memory_point(spec: dict) -> dict:
    """One scaling point (run in a fresh process): time and peak RSS rise of forward + backward."""
    import resource

    torch.set_num_threads(spec["threads"])
    T, B, N, D, K, M = (spec[k] for k in "TBNDKM")
    torch.manual_seed(0)
    if spec["model"] == "lstm":
        model = nn.LSTM(N, matched_hidden(count(freqnn.SFM(N, M, D, K)), N, 4))
        path = None
    else:
        model = freqnn.SFM(N, M, D, K)
        path = spec["model"].split("-", 1)[1]
    warm = fwd_bwd(model, torch.randn(2, B, N, requires_grad=True), path)
    warm()
    x = torch.randn(T, B, N, requires_grad=True)
    run = fwd_bwd(model, x, path)
    gc.collect()
    exact = _reset_peak()
    before = _rss_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    after = _rss_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = [first]
    for _ in range(spec["repeats"] - 1):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "runs": len(times),
        "peak_rise_mib": (after - before) / 1024 if before is not None else None,
        "peak_method": "VmHWM after clear_refs" if exact else "ru_maxrss",
    }


def scaling_benchmark(threads: int, Ts: list[int], Ks: list[int], repeats: int) -> dict:
    def point(**spec) -> dict:
        spec = {**SCALING_BASE, "threads": threads, "repeats": repeats, **spec}
        if spec["T"] >= 5000 or (spec["T"] >= 1000 and spec["model"] == "sfm-reference"):
            spec["repeats"] = 1
        result = in_fresh_process(__file__, "--memory-point", spec)
        result.update(spec)
        if spec["model"] != "lstm":
            saved = saved_floats(spec["T"], spec["B"], spec["D"], spec["K"], spec["M"])
            result["saved_mib"] = saved * 4 / 2**20
        return result

    rows = []
    for T in Ts:
        for model in ("sfm-fast", "lstm") + (("sfm-reference",) if T <= 1000 else ()):
            rows.append(point(T=T, model=model))
            print(f"  scaling T={T} {model}: {rows[-1]['median_s']:.3f} s", file=sys.stderr)
    for K in Ks:
        rows.append(point(T=100, K=K, model="sfm-fast"))
        print(f"  scaling K={K}: {rows[-1]['median_s']:.3f} s", file=sys.stderr)
    return {"base": SCALING_BASE, "rows": rows}


# --------------------------------------------------------------------------- report
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": load_average(),
        "kernel": kernels.compiled_status(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def print_pairs(title: str, pairs: dict, unit: float, unit_name: str) -> None:
    """One row per run of a pair: both models' min / median / max and the ratio."""
    print(f"\n### {title}\n")
    print(f"| model | min / median / max ({unit_name}) | baseline min / median / max | ratio "
          "| per-round ratios | load (start, end) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|")

    def span(s: dict) -> str:
        return " / ".join(f"{s[k] * unit:.3g}" for k in ("min_s", "median_s", "max_s"))

    for variant, res in pairs.items():
        for run in res["runs"]:
            lo, hi = run["round_ratios"]
            loads = ", ".join(f"{la[0]:.2f}" if la else "-" for la in run["load_average"])
            print(f"| {variant} ({run['params']['model']:,} p.; baseline H={run['hidden']}, "
                  f"{run['params']['baseline']:,} p.) | {span(run['model'])} | "
                  f"{span(run['baseline'])} | **{run['ratio']:.2f}x** | {lo:.2f} to {hi:.2f} "
                  f"| {loads} |")  # fmt: skip


def print_profile(res: dict) -> None:
    dims = ", ".join(f"{k}={v}" for k, v in res["config"].items())
    print(f"\n### Where the time goes ({dims}), forward + backward\n")
    print("| part | median (ms) | of the SFM total | GFLOP/s |")
    print("|---|---:|---:|---:|")
    for case, t in res["times"].items():
        rate = f"{t['gflops']:.0f}" if "gflops" in t else "-"
        print(f"| {case} | {t['median_s'] * 1e3:.1f} | {t['share']:.0%} | {rate} |")


def print_scaling(res: dict) -> None:
    base = ", ".join(f"{k}={v}" for k, v in res["base"].items())
    print(f"\n### Scaling ({base}), forward + backward\n")
    print("| T | K | model | median (s) | peak RSS rise (MiB) | saved activations (MiB) |")
    print("|---:|---:|---|---:|---:|---:|")
    for r in res["rows"]:
        saved = f"{r['saved_mib']:.1f}" if "saved_mib" in r else "-"
        peak = f"{r['peak_rise_mib']:.1f}" if r["peak_rise_mib"] is not None else "-"
        print(f"| {r['T']} | {r['K']} | {r['model']} | {r['median_s']:.4f} | {peak} | {saved} |")


def print_torch_compile(res: dict) -> None:
    print("\n### torch.compile(model, fullgraph=True), small configuration, forward + backward\n")
    first = ", ".join(f"{k} {v:.1f} s" for k, v in res["first_call_s"].items())
    print(f"First call (compilation included): {first}\n")
    print("| variant | median (ms) | / eager |")
    print("|---|---:|---:|")
    for case, t in res["times"].items():
        print(f"| {case} | {t['median_s'] * 1e3:.1f} | {t['vs_eager']:.2f}x |")


def thread_counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive ints like 1,2; got {text!r}")
    return counts


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def run_threads(args: argparse.Namespace, threads: int) -> dict:
    """Every selected part with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    print(f"\n## {threads} thread{'s' if threads > 1 else ''} (load average {load_average()})")
    part: dict = {"threads": threads, "load_average_start": load_average(), "pairs": {}}
    variants = list(VARIANTS)[: None if args.all else CORE_VARIANTS]
    rounds = args.repeats or (3 if args.quick else 0)
    for name, cfg in CONFIGS.items():
        if (args.only and name != args.only) or args.skip_pairs:
            continue
        cfg = dict(cfg)
        small = name == "small"
        if args.quick and not small:
            cfg["T"] = 100
        chosen = [v for v in variants if small or v != "SFM (reference)"]  # 15 min, 9 GiB
        dims = ", ".join(f"{k}={v}" for k, v in cfg.items())
        for kind, label in (("fwd_bwd", "forward + backward"), ("forward", "forward, no_grad")):
            pairs = pairs_benchmark(kind, cfg, chosen if kind == "fwd_bwd" else chosen[:1],
                                    threads, rounds or (11 if small else 5), small or args.quick,
                                    args.check)  # fmt: skip
            part["pairs"][f"{name} {kind}"] = pairs
            print_pairs(f"{name} ({dims}), {label}, / nn.LSTM", pairs,
                        *((1e3, "ms") if small else (1, "s")))  # fmt: skip
    for batch in () if args.skip_pairs else (1, 32):
        pairs = pairs_benchmark("stream", CONFIGS["small"], variants[:CORE_VARIANTS], threads,
                                rounds or 11, True, args.check, batch=batch,
                                steps=100)  # fmt: skip
        part["pairs"][f"streaming batch {batch}"] = pairs
        print_pairs(f"streaming, batch {batch}, 100 steps of one call, / nn.LSTMCell", pairs,
                    1e4, "us per step")  # fmt: skip
    if args.profile:
        part["profile"] = [
            profile_benchmark(CONFIGS[name], repeats=3 if name == "large" else 11)
            for name in CONFIGS
            if not args.only or name == args.only
        ]
        for res in part["profile"]:
            print_profile(res)
    if args.torch_compile:
        part["torch_compile"] = torch_compile_benchmark(CONFIGS["small"], repeats=5)
        print_torch_compile(part["torch_compile"])
    if not args.skip_scaling:
        Ts = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]
        Ks = [1, 4, 16] if args.quick else [1, 4, 16, 64]
        part["scaling"] = scaling_benchmark(threads, Ts, Ks, repeats=3)
        print_scaling(part["scaling"])
    part["load_average_end"] = load_average()
    return part


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", type=thread_counts, default=[1, 2], help="torch thread counts, e.g. 1,2"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: large config at T=100, 3 rounds, small scaling",
    )
    parser.add_argument("--json", metavar="PATH", help="write all numbers to PATH")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-pairs", action="store_true",
                        help="no pairs (with --profile or --torch-compile: those parts only)")
    parser.add_argument("--only", choices=sorted(CONFIGS), help="run one configuration only")
    parser.add_argument(
        "--repeats",
        type=int,
        help="timed rounds per pair (default: 11 small and streaming, 5 large; --quick 3)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="also pair the PyTorch fallback, the reference path (small only) and nn.GRU "
        "with nn.LSTM",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run every pair twice (two fresh processes) and exit 1 if the two ratios of a "
        "pair differ by more than 10%%",
    )
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="also time the model under torch.compile(fullgraph=True) against eager",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also time the parts of one SFM forward + backward (projections, op forward, op "
        "backward, the rest)",
    )
    parser.add_argument("--memory-point", help=argparse.SUPPRESS)
    parser.add_argument("--pair-point", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_point or args.pair_point:
        point = memory_point if args.memory_point else pair_point
        print(json.dumps(point(json.loads(args.memory_point or args.pair_point))))
        return
    report: dict = {"machine": machine(), "command": " ".join(["python", *sys.argv]), "runs": []}
    m = report["machine"]
    print(f"CPU: {m['cpu']} ({m['cores']} cores), torch CPU capability {m['cpu_capability']}, "
          f"torch {m['torch']}")  # fmt: skip
    print(f"Machine: {m}")
    print(f"Load average at the start: {m['load_average']}")
    for threads in args.threads:
        report["runs"].append(run_threads(args, threads))
    report["machine"]["load_average_end"] = load_average()
    print(f"\nLoad average at the end: {report['machine']['load_average_end']}")
    failures = check_failures(report) if args.check else []
    report["check_failures"] = failures
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    if failures:
        print("\n--check: ratios that moved by more than 10% between two runs:\n  "
              + "\n  ".join(failures), file=sys.stderr)  # fmt: skip
        sys.exit(1)
    if args.check:
        print("\n--check: every pair's two ratios agree within 10%")


if __name__ == "__main__":
    main()
