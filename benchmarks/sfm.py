"""Benchmark of the SFM recurrence (issue 6) against nn.LSTM / nn.GRU, measured in one run.

1. forward + backward of a whole sequence (``model(x)[0].sum().backward()``) for two
   configurations, (T=100, B=32, N=88, D=50, K=4, M=50) and (T=1000, B=64, N=64, D=128, K=16,
   M=128): ``freqnn.SFM`` on the fast path (compiled kernel), on the PyTorch fallback and on the
   reference path, ``freqnn.AdaptiveSFM`` (fast, and reference for the small configuration),
   ``nn.LSTM`` and ``nn.GRU`` with hidden sizes giving the SFM's parameter count; plus the forward
   alone under ``no_grad``. Medians of repeated runs, the models measured round-robin so that load
   changes on a shared machine hit them alike;
2. streaming inference, one step per call under ``no_grad``: ``SFMCell`` vs ``nn.LSTMCell``;
3. ``--profile``: where one SFM forward + backward goes (input projections, the op's forward
   and backward, the rest), with the GEMM rate of each part;
   ``--torch-compile``: a model (layer + linear read-out) under ``torch.compile(fullgraph=True)``
   against the same model in eager mode, forward + backward, small configuration;
4. scaling of forward + backward time and peak memory with T (10 .. 10^4) and with K (1 .. 64).
   Peak memory is the rise of the process's resident set (``VmHWM`` after resetting it through
   ``/proc/self/clear_refs``; ``ru_maxrss`` where that is unavailable) during one forward +
   backward, each point in a fresh subprocess, next to the theoretical size of the activations the
   fast path saves.

Every part runs once per thread count of ``--threads`` (default ``1,2``). The load average is
printed at the start and at the end: ratios measured on a loaded machine flatter the slower
model, so report them with the load.

Usage::

    python benchmarks/sfm.py [--threads 1,2] [--quick] [--json out.json] [--skip-scaling]
        [--only small|large] [--torch-compile] [--profile]

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
        if path is None:
            out = model(x)[0]
        else:
            with kernels.use_path(path):
                out = model(x)[0]
        out.sum().backward()

    return run


def forward_only(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
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


def config_benchmark(
    name: str,
    cfg: dict[str, int],
    repeats: int,
    reference_repeats: int,
    asfm_reference: bool,
    warmup: bool,
    reference: bool = True,
) -> dict:
    models = build(cfg)
    x = torch.randn(cfg["T"], cfg["B"], cfg["N"], requires_grad=True)
    sfm, asfm = models["sfm"], models["asfm"]
    cases = {
        "SFM (fast)": fwd_bwd(sfm, x, "fast"),
        "SFM (PyTorch fallback)": fwd_bwd(sfm, x, "pytorch"),
        "SFM (reference)": fwd_bwd(sfm, x, "reference"),
        "A-SFM (fast)": fwd_bwd(asfm, x, "fast"),
        "nn.LSTM": fwd_bwd(models["lstm"], x, None),
        "nn.GRU": fwd_bwd(models["gru"], x, None),
        "SFM forward, no_grad (fast)": forward_only(sfm, x),
        "nn.LSTM forward, no_grad": forward_only(models["lstm"], x),
    }
    if not reference:
        del cases["SFM (reference)"]
    reps = {k: repeats for k in cases}
    for slow in ("SFM (reference)", "SFM (PyTorch fallback)"):
        if slow in reps:
            reps[slow] = reference_repeats
    if asfm_reference:
        cases["A-SFM (reference)"] = fwd_bwd(asfm, x, "reference")
        reps["A-SFM (reference)"] = reference_repeats
    result = round_robin(cases, reps, warmup)
    lstm = result["nn.LSTM"]["median_s"]
    for case in result.values():
        case["vs_lstm"] = case["median_s"] / lstm
    result["nn.LSTM forward, no_grad"]["vs_lstm"] = 1.0
    fwd = result["SFM forward, no_grad (fast)"]
    fwd["vs_lstm"] = fwd["median_s"] / result["nn.LSTM forward, no_grad"]["median_s"]
    params = {k: count(m) for k, m in models.items()}
    return {
        "config": cfg,
        "params": params,
        "hidden": {"lstm": models["lstm"].hidden_size, "gru": models["gru"].hidden_size},
        "times": result,
    }


def streaming_benchmark(cfg: dict[str, int], batch: int, steps: int, repeats: int) -> dict:
    N, D, K, M = cfg["N"], cfg["D"], cfg["K"], cfg["M"]
    torch.manual_seed(0)
    cell = freqnn.SFMCell(N, M, D, K)
    acell = freqnn.AdaptiveSFMCell(N, M, D, K)
    lstm = nn.LSTMCell(N, matched_hidden(count(cell), N, 4))
    xs = torch.randn(steps, batch, N)

    def sfm_loop(module: nn.Module, path: str) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad(), kernels.use_path(path):
                state = None
                for t in range(steps):
                    _, state = module(xs[t], state)

        return run

    def lstm_loop() -> None:
        with torch.no_grad():
            state = None
            for t in range(steps):
                state = lstm(xs[t], state)

    cases = {
        "SFMCell (fast)": sfm_loop(cell, "fast"),
        "AdaptiveSFMCell (fast)": sfm_loop(acell, "fast"),
        "SFMCell (reference)": sfm_loop(cell, "reference"),
        "nn.LSTMCell": lstm_loop,
    }
    result = round_robin(cases, dict.fromkeys(cases, repeats))
    lstm_step = result["nn.LSTMCell"]["median_s"] / steps
    for case in result.values():
        case["per_step_us"] = case["median_s"] / steps * 1e6
        case["vs_lstmcell"] = case["median_s"] / steps / lstm_step
    return {
        "batch": batch,
        "steps": steps,
        "params": {"sfm": count(cell), "lstm": count(lstm)},
        "times": result,
    }


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
        args = (gx, zero(B, M), zero(B, D, K), zero(B, D, K), None, cos, sin, None, times,
                torch.zeros(B, dtype=torch.float64), None, cell.weight_hh, cell.weight_a,
                cell.b_z, True)  # fmt: skip
        saved = torch.ops.freqnn.sfm_scan(*args)[5]
    grads = (x.new_ones(T, B, M), zero(B, M), zero(B, D, K), zero(B, D, K), None)
    rest = (cos, sin, times, args[9], None, cell.weight_hh, cell.weight_a, cell.b_z, saved)

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
        cmd = [sys.executable, __file__, "--memory-point", json.dumps(spec)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
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


def print_config(name: str, res: dict) -> None:
    cfg = res["config"]
    dims = ", ".join(f"{k}={v}" for k, v in cfg.items())
    p, h = res["params"], res["hidden"]
    print(f"\n### {name}: {dims}\n")
    print(
        f"Parameters: SFM {p['sfm']:,}, A-SFM {p['asfm']:,}, LSTM (H={h['lstm']}) "
        f"{p['lstm']:,}, GRU (H={h['gru']}) {p['gru']:,}.\n"
    )
    print("| model | median (ms) | runs | / nn.LSTM |")
    print("|---|---:|---:|---:|")
    for case, t in res["times"].items():
        print(f"| {case} | {t['median_s'] * 1e3:.1f} | {t['runs']} | {t['vs_lstm']:.2f}x |")


def print_profile(res: dict) -> None:
    dims = ", ".join(f"{k}={v}" for k, v in res["config"].items())
    print(f"\n### Where the time goes ({dims}), forward + backward\n")
    print("| part | median (ms) | of the SFM total | GFLOP/s |")
    print("|---|---:|---:|---:|")
    for case, t in res["times"].items():
        rate = f"{t['gflops']:.0f}" if "gflops" in t else "-"
        print(f"| {case} | {t['median_s'] * 1e3:.1f} | {t['share']:.0%} | {rate} |")


def print_streaming(res: dict) -> None:
    print(f"\n### Streaming, one step per call, batch {res['batch']} ({res['steps']} steps)\n")
    print("| cell | per step (us) | / nn.LSTMCell |")
    print("|---|---:|---:|")
    for case, t in res["times"].items():
        print(f"| {case} | {t['per_step_us']:.1f} | {t['vs_lstmcell']:.2f}x |")


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
    part: dict = {"threads": threads, "load_average_start": load_average(), "configs": {}}
    for name, cfg in CONFIGS.items():
        if args.only and name != args.only:
            continue
        cfg = dict(cfg)
        small = name == "small"
        if args.quick and not small:
            cfg["T"] = 100
        repeats = (5 if small else 3) if args.quick else (11 if small else 5)
        if args.repeats and not small:
            repeats = args.repeats
        # the large configuration runs for many seconds per call: no warm-up call
        res = config_benchmark(
            name,
            cfg,
            repeats,
            reference_repeats=3 if small else 1,
            asfm_reference=small,
            warmup=small or args.quick,
            reference=small or not args.skip_large_reference,
        )
        part["configs"][name] = res
        print_config(name, res)
    part["streaming"] = [
        streaming_benchmark(CONFIGS["small"], batch, steps=100, repeats=5 if args.quick else 11)
        for batch in (1, 32)
    ]
    for res in part["streaming"]:
        print_streaming(res)
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
        help="smoke run: large config at T=100, fewer repeats, small scaling",
    )
    parser.add_argument("--json", metavar="PATH", help="write all numbers to PATH")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--only", choices=sorted(CONFIGS), help="run one configuration only")
    parser.add_argument(
        "--repeats",
        type=int,
        help="timed runs per model, large configuration "
        "(default 5, --quick 3; the small one runs 11, --quick 5)",
    )
    parser.add_argument(
        "--skip-large-reference",
        action="store_true",
        help="no reference path in the large configuration (about 15 min and 9 GiB at T=1000)",
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
    args = parser.parse_args(argv)
    if args.memory_point:
        print(json.dumps(memory_point(json.loads(args.memory_point))))
        return
    report: dict = {"machine": machine(), "command": " ".join(["python", *sys.argv]), "runs": []}
    print(f"Machine: {report['machine']}")
    print(f"Load average at the start: {report['machine']['load_average']}")
    for threads in args.threads:
        report["runs"].append(run_threads(args, threads))
    report["machine"]["load_average_end"] = load_average()
    print(f"\nLoad average at the end: {report['machine']['load_average_end']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
