"""Benchmark of ParallelSFM (issue 17) against nn.LSTM and freqnn.SFM, measured in one run.

1. the scan for S: forward + backward time and error of the candidate algorithms on the memory
   of the speed configuration (T = 10^4, B x D x K = 16 x 50 x 4 channels, Re and Im), for
   forget gates near 1, mixed and near 0, against a float64 step-by-step loop:
   ``freqnn.sfm.parallel.chunked_scan`` at several chunk lengths (one chunk = the plain
   sequential loop), the log-space cumulative sum (``logcumsumexp`` of the complex log, whole
   sequence and per chunk) and ``torch._higher_order_ops.associative_scan``;
2. forward + backward of a whole sequence (``model(x)[0].sum().backward()``) at T = 10^4, B = 16,
   N = 88, D = 50, K = 4, M = 50: ``freqnn.ParallelSFM`` (with and without its activation
   checkpointing), ``nn.LSTM`` with the ParallelSFM's parameter count, ``nn.LSTM`` with the
   SFM's, and ``freqnn.SFM`` (its default path, the compiled kernel); round-robin, medians of
   wall and CPU time (the CPU time of this process does not count time spent waiting for a core
   on a shared machine);
3. scaling with T = 10^2 .. 10^5: time and peak memory (rise of the resident set during one
   forward + backward, each point in a fresh process). nn.LSTM, SFM and ParallelSFM without
   checkpointing stop at T = 10^4: at 10^5 they would need about 8, 15 and 27 GB (ten times
   their 10^4 peak) on a machine shared with other jobs.

Usage::

    python benchmarks/parallel.py [--threads 1] [--quick] [--json out.json] [--skip-scan]
        [--skip-scaling]

Prints markdown tables, the machine, the thread count and the load average at start and end.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

import freqnn
from freqnn.sfm.kernels.parallel import ProjectionFunction
from freqnn.sfm.kernels.parallel_compiled import ROWS
from freqnn.sfm.parallel import ParallelSFMCell, chunked_scan

# benchmarks/sfm.py: parameter matching, peak-memory probes, the machine description, pairs
from sfm import (
    _reset_peak,
    _rss_kib,
    count,
    in_fresh_process,
    load_average,
    machine,
    matched_hidden,
    pair_summary,
    print_pairs,
    thread_counts,
    timed_pair,
)

SPEED = {"T": 10_000, "B": 16, "N": 88, "D": 50, "K": 4, "M": 50}
REGIMES = {"near 1": (-1e-3, 0.0), "mixed": (-5.0, 0.0), "near 0": (-40.0, -20.0)}


# --------------------------------------------------------------------------- timing
def measure(cases: dict[str, Callable[[], None]], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU time of each case, in rounds over all cases after one warm-up call
    each, so that load changes on a shared machine hit every case alike."""
    for fn in cases.values():
        fn()
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            gc.collect()
            w, c = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    return {
        name: {"wall_s": statistics.median(wall[name]), "cpu_s": statistics.median(cpu[name]),
               "runs": repeats}
        for name in cases
    }


# --------------------------------------------------------------------------- scan candidates
def logspace_scan(log_f: torch.Tensor, u: tuple[torch.Tensor, torch.Tensor],
                  h0: tuple[torch.Tensor, torch.Tensor], chunk: int | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = P_t (h_0 + sum_{s <= t} u_s / P_s), P_t = exp(L_t), L = cumsum(log f), with the sum
    as ``logcumsumexp`` of log u_s - L_s (complex log: u is signed); ``chunk`` restarts L at
    every chunk start and carries h across chunks in order."""
    T = log_f.shape[0]
    c = chunk or T
    n = T // c
    L = torch.cumsum(log_f.unflatten(0, (n, c)), dim=1)
    w = torch.complex(*u).unflatten(0, (n, c))
    local = torch.exp(L + torch.logcumsumexp(torch.log(w) - L, dim=1))
    decay = torch.exp(L)
    carry, starts = torch.complex(*h0), []
    for p_end, h_end in zip(decay[:, -1].unbind(0), local[:, -1].unbind(0), strict=True):
        starts.append(carry)
        carry = h_end + p_end * carry
    h = (local + decay * torch.stack(starts).unsqueeze(1)).flatten(0, 1)
    return h.real, h.imag


def associative(log_f: torch.Tensor, u: tuple[torch.Tensor, torch.Tensor],
                h0: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's associative scan (generic mode) of (a, b) pairs: (a1, b1) . (a2, b2) =
    (a1 a2, a2 b1 + b2); the initial state folded into the first input."""
    from torch._higher_order_ops.associative_scan import associative_scan

    def combine(left: tuple, right: tuple) -> tuple:
        return left[0] * right[0], right[0] * left[1] + right[1], right[0] * left[2] + right[2]

    a = torch.exp(log_f)
    re = torch.cat([(u[0][0] + a[0] * h0[0]).unsqueeze(0), u[0][1:]])
    im = torch.cat([(u[1][0] + a[0] * h0[1]).unsqueeze(0), u[1][1:]])
    _, h_re, h_im = associative_scan(combine, (a, re, im), dim=0, combine_mode="generic")
    return h_re, h_im


def sequential_reference(log_f: torch.Tensor, u: tuple[torch.Tensor, torch.Tensor],
                         h0: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """float64, one step at a time: the recurrence as written. Returns (T, 2, ...)."""
    f = torch.exp(log_f.double())
    h = torch.stack([h0[0], h0[1]]).double()
    u64 = torch.stack([u[0], u[1]], 1).double()
    out = torch.empty_like(u64)
    for t in range(f.shape[0]):
        h = f[t] * h + u64[t]
        out[t] = h
    return out


def scan_benchmark(T: int, repeats: int) -> dict:
    B, D, K = SPEED["B"], SPEED["D"], SPEED["K"]
    chunks = [c for c in (16, 100, 400) if T % c == 0 and c < T]

    def chunked(c: int) -> Callable:
        return lambda lf, u, h: chunked_scan(lf, u, h, c)

    candidates = {f"chunked_scan, c = {c}": chunked(c) for c in chunks}
    candidates[f"sequential loop (chunked_scan, c = T = {T})"] = chunked(T)
    candidates["log-space cumsum, whole sequence"] = lambda lf, u, h: logspace_scan(lf, u, h, None)
    candidates["log-space cumsum, c = 100"] = lambda lf, u, h: logspace_scan(lf, u, h, 100)
    candidates["torch associative_scan"] = associative

    torch.manual_seed(0)
    results: dict[str, dict] = {name: {"error": {}} for name in candidates}
    for regime, (low, high) in REGIMES.items():
        log_f = torch.empty(T, B, D, K, dtype=torch.float64).uniform_(low, high)
        u = (torch.randn(T, B, D, K, dtype=torch.float64), torch.randn(T, B, D, K,
                                                                      dtype=torch.float64))
        h0 = (torch.randn(B, D, K, dtype=torch.float64), torch.randn(B, D, K,
                                                                  dtype=torch.float64))
        want = sequential_reference(log_f, u, h0)
        scale = want.abs().max().item()
        for name, fn in candidates.items():
            row = {"max_abs_h": scale}
            for dtype in (torch.float64, torch.float32):
                with torch.no_grad():
                    got = fn(log_f.to(dtype), tuple(v.to(dtype) for v in u),
                             tuple(v.to(dtype) for v in h0))
                got = torch.stack(got, 1).double()
                row[str(dtype).split(".")[1]] = (got - want).abs().max().item()
                row[f"{str(dtype).split('.')[1]}_finite"] = bool(torch.isfinite(got).all())
            results[name]["error"][regime] = row
        print(f"  scan errors, forget {regime}: done", file=sys.stderr)

    log_f = torch.empty(T, B, D, K).uniform_(-5.0, 0.0).requires_grad_()
    u = (torch.randn(T, B, D, K, requires_grad=True), torch.randn(T, B, D, K, requires_grad=True))
    h0 = (torch.zeros(B, D, K), torch.zeros(B, D, K))

    def fwd_bwd(fn: Callable) -> Callable[[], None]:
        def run() -> None:
            h_re, h_im = fn(log_f, u, h0)
            torch.autograd.grad((h_re.sum() + h_im.sum()), [log_f, *u])

        return run

    timings = measure({name: fwd_bwd(fn) for name, fn in candidates.items()}, repeats)
    for name, t in timings.items():
        results[name]["time"] = t
    return {"T": T, "channels": B * D * K, "results": results}


# --------------------------------------------------------------------------- layers
def build(cfg: dict[str, int]) -> dict[str, nn.Module]:
    N, D, K, M = cfg["N"], cfg["D"], cfg["K"], cfg["M"]
    torch.manual_seed(0)
    psfm = freqnn.ParallelSFM(N, M, D, K)
    sfm = freqnn.SFM(N, M, D, K)
    return {
        "psfm": psfm,
        "sfm": sfm,
        "lstm": nn.LSTM(N, matched_hidden(count(psfm), N, 4)),
        "lstm_sfm": nn.LSTM(N, matched_hidden(count(sfm), N, 4)),
    }


def fwd_bwd(model: nn.Module, x: torch.Tensor, checkpoint: bool | None = None,
            path: str = "fast") -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        x.grad = None
        if hasattr(model, "cells"):
            for cell in model.cells:
                cell.checkpoint = checkpoint
        with freqnn.sfm.use_path(path):
            model(x)[0].sum().backward()

    return run


def layer_benchmark(cfg: dict[str, int], repeats: int) -> dict:
    models = build(cfg)
    x = torch.randn(cfg["T"], cfg["B"], cfg["N"], requires_grad=True)
    cases = {
        "ParallelSFM (fused CPU operator, default)": fwd_bwd(models["psfm"], x),
        "ParallelSFM, fused operator with checkpointing": fwd_bwd(models["psfm"], x, True),
        "ParallelSFM, PyTorch algorithm (checkpointing)": fwd_bwd(models["psfm"], x, None,
                                                                  "pytorch"),
        "ParallelSFM, PyTorch algorithm, no checkpointing": fwd_bwd(models["psfm"], x, False,
                                                                    "pytorch"),
        "nn.LSTM (ParallelSFM's parameters)": fwd_bwd(models["lstm"], x),
        "nn.LSTM (SFM's parameters)": fwd_bwd(models["lstm_sfm"], x),
        "SFM (compiled kernel)": fwd_bwd(models["sfm"], x),
    }
    result = measure(cases, repeats)
    lstm = result["nn.LSTM (ParallelSFM's parameters)"]
    for case in result.values():
        case["lstm_over_this_wall"] = lstm["wall_s"] / case["wall_s"]
        case["lstm_over_this_cpu"] = lstm["cpu_s"] / case["cpu_s"]
    params = {k: count(m) for k, m in models.items()}
    hidden = {"lstm": models["lstm"].hidden_size, "lstm_sfm": models["lstm_sfm"].hidden_size}
    return {"config": cfg, "params": params, "hidden": hidden, "times": result}


# --------------------------------------------------------------------------- pair, GEMM rates
def pair_point(spec: dict) -> dict:
    """ParallelSFM (default path) against the nn.LSTM of its parameter count, alone in this
    process, interleaved (``benchmarks/sfm.py``'s pairs)."""
    torch.set_num_threads(spec["threads"])
    models = build(spec)
    x = torch.randn(spec["T"], spec["B"], spec["N"], requires_grad=True)
    start_load = load_average()
    times = timed_pair(fwd_bwd(models["psfm"], x), fwd_bwd(models["lstm"], x), spec["rounds"])
    result = pair_summary(times)
    result.update(params={"model": count(models["psfm"]), "baseline": count(models["lstm"])},
                  hidden=models["lstm"].hidden_size, load_average=[start_load, load_average()])
    return result


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_rates(cfg: dict[str, int], repeats: int) -> dict:
    """The core's SGEMM rate (square 2048 matrices) and the rate of each of ParallelSFM's GEMMs
    at the layer's shapes, forward + backward: the gate projection over all T * B rows (N to
    G = 3D + K + KM; forward as the layer runs it, ``ProjectionFunction``), and the read-out
    inside the kernel, K GEMMs of D to 2M per chunk of ``ROWS`` rows (forward; the backward's
    weight and input gradients)."""
    T, B, N, D, K, M = (cfg[k] for k in "TBNDKM")
    G, rows = 3 * D + K + K * M, T * B
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    peak = 2 * n**3 / _median_time(lambda: a @ b, repeats) / 1e9
    x, w, bias, g = torch.randn(rows, N), torch.randn(G, N), torch.randn(G), torch.randn(rows, G)
    amp, wa, dp = torch.randn(ROWS, D), torch.randn(2 * M, D), torch.randn(ROWS, 2 * M)
    chunks = rows // ROWS * K  # read-out GEMMs per pass

    def readout(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(chunks):
                fn()

        return run

    parts = {
        "projection forward (blocks of PROJECTION_ROWS)": (
            lambda: ProjectionFunction.apply(x, w, bias), rows * N * G),
        "projection weight gradient": (lambda: g.t() @ x, rows * N * G),
        "projection input gradient": (lambda: g @ w, rows * N * G),
        "read-out forward (K per chunk)": (readout(lambda: amp @ wa.t()), rows * K * D * 2 * M),
        "read-out weight gradient": (readout(lambda: dp.t() @ amp), rows * K * D * 2 * M),
        "read-out input gradient": (readout(lambda: dp @ wa), rows * K * D * 2 * M),
    }
    result: dict = {"sgemm_gflops": peak, "parts": {}}
    for name, (fn, macs) in parts.items():
        seconds = _median_time(fn, repeats)
        result["parts"][name] = {"s": seconds, "gflop": 2 * macs / 1e9,
                                 "gflops": 2 * macs / seconds / 1e9}
    total = sum(p["s"] for p in result["parts"].values())
    result["gemm_s"] = total
    result["gemm_gflop"] = sum(p["gflop"] for p in result["parts"].values())
    result["gemm_gflops"] = result["gemm_gflop"] / total
    return result


def print_gemm(res: dict, layer_s: float) -> None:
    peak = res["sgemm_gflops"]
    print("\n### GEMMs of ParallelSFM (each timed alone at the layer's shapes)\n")
    print(f"Core's SGEMM rate (2048 x 2048 x 2048): {peak:.0f} GFLOP/s.\n")
    print("| GEMM | GFLOP | time (s) | GFLOP/s | of the SGEMM rate |")
    print("|---|---:|---:|---:|---:|")
    for name, p in res["parts"].items():
        print(f"| {name} | {p['gflop']:.2f} | {p['s']:.3f} | {p['gflops']:.0f} | "
              f"{p['gflops'] / peak:.0%} |")
    print(f"| all | {res['gemm_gflop']:.1f} | {res['gemm_s']:.3f} | {res['gemm_gflops']:.0f} | "
          f"{res['gemm_gflops'] / peak:.0%} |")
    print(f"\nThe layer's forward + backward (median of the pair) took {layer_s:.3f} s: its "
          f"GEMMs alone are {res['gemm_s'] / layer_s:.0%} of it; GEMM FLOP / layer time = "
          f"{res['gemm_gflop'] / layer_s:.0f} GFLOP/s ({res['gemm_gflop'] / layer_s / peak:.0%} "
          "of the SGEMM rate).")


# --------------------------------------------------------------------------- scaling
def memory_point(spec: dict) -> dict:
    """One scaling point (run in a fresh process): times and peak RSS rise of forward +
    backward."""
    torch.set_num_threads(spec["threads"])
    T, B, N = spec["T"], spec["B"], spec["N"]
    models = build(spec)
    model = models["lstm" if spec["model"] == "lstm" else spec["model"].split("-")[0]]
    checkpoint = {"psfm": None, "psfm-nockpt": False}.get(spec["model"])
    fwd_bwd(model, torch.randn(2, B, N, requires_grad=True), checkpoint)()  # warm-up
    run = fwd_bwd(model, torch.randn(T, B, N, requires_grad=True), checkpoint)
    gc.collect()
    if not _reset_peak():
        return {"error": "no /proc/self/clear_refs: peak memory not measurable here"}
    before = _rss_kib("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    times = [(time.perf_counter() - wall, time.process_time() - cpu)]
    peak = _rss_kib("VmHWM")
    for _ in range(spec["repeats"] - 1):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        "wall_s": statistics.median(t[0] for t in times),
        "cpu_s": statistics.median(t[1] for t in times),
        "runs": len(times),
        "peak_rise_mib": (peak - before) / 1024,
    }


def scaling_benchmark(threads: int, Ts: list[int], repeats: int) -> list[dict]:
    rows = []
    for T in Ts:
        # beyond 10^4 only the checkpointed ParallelSFM: the others would need 8 to 27 GB
        models = ["psfm"] + (["lstm", "sfm"] if T <= 10_000 else [])
        for model in models:
            spec = {**SPEED, "T": T, "model": model, "threads": threads,
                    "repeats": repeats if T < 10_000 else 1}
            rows.append({**spec, **in_fresh_process(__file__, "--memory-point", spec)})
            print(f"  scaling T={T} {model}: {rows[-1].get('cpu_s', 0):.3f} s CPU",
                  file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- report
def print_scan(res: dict) -> None:
    print(f"\n### Scan for S: T = {res['T']}, {res['channels']} channels (Re and Im), "
          "forward + backward, float32\n")
    print("| algorithm | wall (ms) | CPU (ms) | " + " | ".join(
        f"max error, f {r} (float64 / float32)" for r in REGIMES) + " |")
    print("|---|---:|---:|" + "---|" * len(REGIMES))
    for name, row in res["results"].items():
        cells = []
        for regime in REGIMES:
            e = row["error"][regime]
            f32 = f"{e['float32']:.1e}" if e["float32_finite"] else "not finite"
            f64 = f"{e['float64']:.1e}" if e["float64_finite"] else "not finite"
            cells.append(f"{f64} / {f32} (of {e['max_abs_h']:.3g})")
        t = row["time"]
        print(f"| {name} | {t['wall_s'] * 1e3:.0f} | {t['cpu_s'] * 1e3:.0f} | "
              + " | ".join(cells) + " |")


def print_layers(res: dict) -> None:
    cfg = res["config"]
    p, h = res["params"], res["hidden"]
    print(f"\n### Forward + backward: {', '.join(f'{k}={v}' for k, v in cfg.items())}\n")
    print(f"Parameters: ParallelSFM {p['psfm']:,}; nn.LSTM H={h['lstm']} {p['lstm']:,}; "
          f"SFM {p['sfm']:,}; nn.LSTM H={h['lstm_sfm']} {p['lstm_sfm']:,}.\n")
    print("| model | wall (s) | CPU (s) | LSTM / model (wall) | LSTM / model (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for name, t in res["times"].items():
        print(f"| {name} | {t['wall_s']:.3f} | {t['cpu_s']:.3f} | "
              f"{t['lstm_over_this_wall']:.2f}x | {t['lstm_over_this_cpu']:.2f}x |")


def print_scaling(rows: list[dict]) -> None:
    labels = {"psfm": "ParallelSFM (fused CPU operator)",
              "psfm-nockpt": "ParallelSFM, no checkpointing",
              "lstm": "nn.LSTM (ParallelSFM's parameters)", "sfm": "SFM (compiled kernel)"}
    print("\n### Scaling with T (B=16, N=88, D=50, K=4, M=50), forward + backward\n")
    print("| T | model | wall (s) | CPU (s) | peak RSS rise (MiB) |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['T']} | {labels[r['model']]} | {r['error']} | | |")
            continue
        print(f"| {r['T']} | {labels[r['model']]} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | "
              f"{r['peak_rise_mib']:.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=thread_counts, default=[1],
                        help="torch thread counts of the pair and GEMM parts, e.g. 1,2 (the "
                        "other parts run with the first)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of the pair")
    parser.add_argument("--quick", action="store_true", help="small T everywhere (smoke test)")
    parser.add_argument("--skip-scan", action="store_true")
    parser.add_argument("--skip-layers", action="store_true",
                        help="no round-robin table of every variant (the pair still runs)")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--json", help="write every number to this file")
    parser.add_argument("--memory-point", help=argparse.SUPPRESS)
    parser.add_argument("--pair-point", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_point or args.pair_point:
        point = memory_point if args.memory_point else pair_point
        print(json.dumps(point(json.loads(args.memory_point or args.pair_point))))
        return
    m = machine()
    report: dict = {"machine": m, "threads": args.threads,
                    "chunk_size": ParallelSFMCell.chunk_size,
                    "block_size": ParallelSFMCell.block_size,
                    "command": " ".join(["python", *sys.argv]), "pairs": {}, "gemm": {}}
    print(f"CPU: {m['cpu']} ({m['cores']} cores), torch CPU capability {m['cpu_capability']}, "
          f"torch {m['torch']}\nMachine: {m}\nLoad average at start: {m['load_average']}")
    T = 400 if args.quick else SPEED["T"]
    cfg = {**SPEED, "T": T}
    for threads in args.threads:
        spec = {**cfg, "threads": threads, "rounds": args.rounds}
        pair = in_fresh_process(__file__, "--pair-point", spec)
        report["pairs"][threads] = pair
        dims = ", ".join(f"{k}={v}" for k, v in cfg.items())
        print_pairs(f"ParallelSFM / nn.LSTM, {threads} thread(s), {dims}, forward + backward",
                    {"ParallelSFM": {"runs": [pair]}}, 1, "s")  # fmt: skip
        torch.set_num_threads(threads)
        report["gemm"][threads] = gemm_rates(cfg, args.repeats)
        print_gemm(report["gemm"][threads], pair["model"]["median_s"])
    torch.set_num_threads(args.threads[0])
    if not args.skip_scan:
        report["scan"] = scan_benchmark(T, args.repeats)
        print_scan(report["scan"])
    if not args.skip_layers:
        report["layers"] = layer_benchmark(cfg, args.repeats)
        print_layers(report["layers"])
    if not args.skip_scaling:
        Ts = [100, 300] if args.quick else [100, 1000, 10_000, 100_000]
        report["scaling"] = scaling_benchmark(args.threads[0], Ts, args.repeats)
        print_scaling(report["scaling"])
    report["load_average_end"] = load_average()
    print(f"\nLoad average at end: {report['load_average_end']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
