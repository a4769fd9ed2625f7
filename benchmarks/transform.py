"""Benchmark of the learnable cosine transform (issue 3, acceptance 4).

Measures, in one run (so every ratio compares numbers taken on the same machine, same load):

1. forward + inverse time for a batch of frames, n from 64 to 16384, float32:
   ``scipy.fft.dct`` (type 3 then type 2, orthonormal) vs freqnn's FFT path
   (``CosineTransform(n, learn_frequencies=False)``) vs freqnn's matrix path (the same module
   with frequencies a hair off the DCT grid, basis cached: what evaluation after training runs);
2. construction of the analysis and synthesis matrices: freqnn's vectorised float64 build
   vs a per-element Python double loop over torch scalars (how the prototype notebook built
   them), the loop measured once at a small n and once at n = 512.

Usage::

    python benchmarks/transform.py [--batch 64] [--threads 1] [--json out.json] [--quick]

Prints a markdown table and a JSON document (the table's numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import scipy.fft
import torch

from freqnn.functional import cosine_basis
from freqnn.transform import CosineTransform


def best_time(fn: Callable[[], object], repeats: int, min_seconds: float = 0.2) -> float:
    """Best wall time of one call over ``repeats`` rounds (each round loops for >= a few ms)."""
    fn()  # warm-up (and cache fill)
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    loops = max(1, int(min_seconds / max(once, 1e-9) / repeats))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


def prototype_matrices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The notebook's way: one torch scalar expression per element, in Python loops."""
    a1, a2 = torch.tensor(1.0), torch.tensor(math.sqrt(2.0))
    a3, a4 = torch.tensor(1.0), torch.tensor(math.sqrt(2.0))
    w = torch.tensor([(2 * k + 1) * math.pi / (2 * n) for k in range(n)])
    v = w.clone()
    analysis = torch.zeros(n, n)
    synthesis = torch.zeros(n, n)
    scale = 1 / math.sqrt(n)
    for k in range(n):
        for t in range(n):
            analysis[k, t] = scale * (a1 if t == 0 else a2) * torch.cos(w[k] * t)
    for t in range(n):
        for k in range(n):
            synthesis[t, k] = scale * (a3 if t == 0 else a4) * torch.cos(v[k] * t)
    return analysis, synthesis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[64, 256, 1024, 4096, 16384])
    parser.add_argument("--batch", type=int, default=64, help="frames per call")
    parser.add_argument("--matrix-max", type=int, default=8192,
                        help="largest n for the matrix path (two n x n float32 bases)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (scipy.fft runs single-threaded by default)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-sizes", type=int, nargs="+", default=[64, 512],
                        help="n at which the per-element loop is measured (once each)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.loop_sizes, args.repeats = [64, 256], [16], 2
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        x_np = rng.uniform(-1, 1, size=(args.batch, n)).astype(np.float32)
        x = torch.from_numpy(x_np)

        def scipy_pair(x_np: np.ndarray = x_np) -> object:
            coeffs = scipy.fft.dct(x_np, type=3, norm="ortho")
            return scipy.fft.dct(coeffs, type=2, norm="ortho")

        fast = CosineTransform(n, learn_frequencies=False, learn_amplitudes=False)

        def fft_pair(fast: CosineTransform = fast, x: torch.Tensor = x) -> object:
            with torch.no_grad():
                return fast.inverse(fast(x))

        row = {"n": n, "batch": args.batch,
               "scipy_s": best_time(scipy_pair, args.repeats),
               "fft_s": best_time(fft_pair, args.repeats)}
        assert fast.uses_fft("analysis") and fast.uses_fft("synthesis")
        if n <= args.matrix_max:
            slow = CosineTransform(n, learn_frequencies=False, learn_amplitudes=False)
            with torch.no_grad():  # off the grid by 1e-9 rad: forces the matrix path
                slow.w_offset.fill_(1e-9)
                slow.v_offset.fill_(1e-9)

            def matrix_pair(slow: CosineTransform = slow, x: torch.Tensor = x) -> object:
                with torch.no_grad():
                    return slow.inverse(slow(x))

            row["matrix_s"] = best_time(matrix_pair, args.repeats)
            assert not slow.uses_fft("analysis")
            # what the matrix path builds when the frequencies change: both cosine bases
            row["build_s"] = best_time(
                lambda slow=slow, n=n: (
                    cosine_basis(slow.w_offset, n, grid=n, dtype=torch.float32),
                    cosine_basis(slow.v_offset, n, grid=n, dtype=torch.float32)),
                min(args.repeats, 3), min_seconds=0.0)
            del slow
        row["fft_vs_scipy"] = row["fft_s"] / row["scipy_s"]
        if "matrix_s" in row:
            row["matrix_vs_fft"] = row["matrix_s"] / row["fft_s"]
        rows.append(row)
        print(f"n={n}: done", flush=True)

    loops = []
    for n in args.loop_sizes:
        start = time.perf_counter()
        ref_a, ref_s = prototype_matrices(n)
        loop_s = time.perf_counter() - start
        ct = CosineTransform(n, learn_frequencies=False, learn_amplitudes=False)
        vec_s = best_time(lambda ct=ct: (ct.clear_cache(), ct.analysis_matrix(torch.float32),
                                         ct.synthesis_matrix(torch.float32)), args.repeats)
        error = max(float((ct.analysis_matrix(torch.float32) - ref_a).abs().max()),
                    float((ct.synthesis_matrix(torch.float32) - ref_s).abs().max()))
        loops.append({"n": n, "loop_s": loop_s, "vectorised_s": vec_s,
                      "speedup": loop_s / vec_s, "max_abs_difference": error})
        print(f"loop n={n}: done", flush=True)

    machine = {"platform": platform.platform(), "processor": platform.processor() or "unknown",
               "cpus": os.cpu_count(), "torch_threads": args.threads,
               "torch": torch.__version__, "scipy": scipy.__version__, "numpy": np.__version__,
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    report = {"machine": machine, "transform": rows, "construction": loops}

    print("\n| n | batch | scipy.fft.dct (ms) | freqnn FFT (ms) | FFT / scipy | "
          "matrix path (ms) | matrix / FFT | both bases built (ms) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        matrix = (f"{1e3 * r['matrix_s']:.3f} | {r['matrix_vs_fft']:.1f}x | "
                  f"{1e3 * r['build_s']:.1f}") if "matrix_s" in r else "- | - | -"
        print(f"| {r['n']} | {r['batch']} | {1e3 * r['scipy_s']:.3f} | {1e3 * r['fft_s']:.3f} | "
              f"{r['fft_vs_scipy']:.2f}x | {matrix} |")
    print("\n| n | per-element loop (s) | vectorised float64 build (s) | speed-up | max abs diff |")
    print("|---:|---:|---:|---:|---:|")
    for r in loops:
        print(f"| {r['n']} | {r['loop_s']:.3f} | {r['vectorised_s']:.5f} | "
              f"{r['speedup']:.0f}x | {r['max_abs_difference']:.1e} |")
    text = json.dumps(report, indent=1)
    print("\n" + text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
