"""Benchmark of the SFM recurrences on a CUDA GPU against cuDNN's nn.LSTM (issue 26).

Models, each against the one-layer ``nn.LSTM`` (cuDNN) whose parameter count is closest to the
SFM's: ``freqnn.SFM`` and ``freqnn.AdaptiveSFM`` on the Triton kernels
(``freqnn.sfm.kernels.triton_scan``) and, as "before", on the op's PyTorch kernel (a Python loop
of some 25 operations per step forward, 50 backward), and ``freqnn.ParallelSFM`` on its CUDA path.
Measured in one process, interleaved round-robin after a warm-up call of each, with
``torch.cuda.synchronize()`` around every call; reported: the median time of each model and its
ratio to the LSTM's.

* forward + backward of a whole sequence (``model(x)[0].sum().backward()``), T = 100 and 1000 at
  B = 64, T = 10^4 at B = 16 (ParallelSFM's target configuration);
* the streaming step: one step per call under ``no_grad``, the state carried, batch 1 and 64.

The configuration is the widest the Triton kernel takes (``triton_scan.plan``: its
shared-memory estimate within ``SHARED_LIMIT``): N = 32, D = 32, K = 4, M = 32; the issue's large
configuration (D = 128, K = 16, M = 128) is refused by the kernel, and the script says so.

Until the op registers the Triton kernel for CUDA (``use_path("triton")``), the script routes
the op's PyTorch algorithm to it for the timed calls (:func:`on_triton`), as the tests do.

Usage::

    python benchmarks/gpu.py [--repeats 5] [--skip-before-at 10000]

Without a CUDA device it prints that it needs one and exits with status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

import freqnn
from freqnn.sfm.kernels import op

# benchmarks/sfm.py: parameter matching
from sfm import count, matched_hidden

CONFIG = {"N": 32, "D": 32, "K": 4, "M": 32}
LARGE = {"N": 64, "D": 128, "K": 16, "M": 128}
SEQUENCES = [(100, 64), (1000, 64), (10_000, 16)]
STREAM_BATCHES = [1, 64]
STREAM_STEPS = 100


@contextlib.contextmanager
def on_triton() -> Iterator[None]:
    """The op's PyTorch algorithm replaced by the Triton kernels, on the path "pytorch" as the
    process default (the backward runs outside any ``use_path`` block)."""
    from freqnn.sfm.kernels import triton_scan

    saved = op.forward_torch, op.backward_torch, freqnn.sfm.kernels.get_path()
    op.forward_torch, op.backward_torch = triton_scan.forward_triton, triton_scan.backward_triton
    freqnn.sfm.kernels.set_path("pytorch")
    try:
        yield
    finally:
        op.forward_torch, op.backward_torch = saved[:2]
        freqnn.sfm.kernels.set_path(saved[2])


def on_pytorch() -> contextlib.AbstractContextManager[None]:
    return freqnn.sfm.kernels.use_path("pytorch")


def build(cfg: dict[str, int], device: torch.device) -> dict[str, tuple[nn.Module, Callable]]:
    """name -> (module, context it runs in)."""
    N, D, K, M = cfg["N"], cfg["D"], cfg["K"], cfg["M"]
    torch.manual_seed(0)
    sfm, asfm = freqnn.SFM(N, M, D, K), freqnn.AdaptiveSFM(N, M, D, K)
    psfm = freqnn.ParallelSFM(N, M, D, K)
    lstm = nn.LSTM(N, matched_hidden(count(sfm), N, 4))
    models = {
        "SFM (Triton)": (sfm, on_triton),
        "SFM (before: PyTorch kernel)": (sfm, on_pytorch),
        "A-SFM (Triton)": (asfm, on_triton),
        "A-SFM (before: PyTorch kernel)": (asfm, on_pytorch),
        "ParallelSFM (its CUDA path)": (psfm, contextlib.nullcontext),
        f"nn.LSTM H={lstm.hidden_size} (cuDNN)": (lstm, contextlib.nullcontext),
    }
    return {name: (m.to(device), ctx) for name, (m, ctx) in models.items()}


def timed(fn: Callable[[], None]) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def round_robin(cases: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each case, interleaved, after one warm-up call each."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def fwd_bwd(model: nn.Module, ctx: Callable, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        x.grad = None
        with ctx():
            model(x)[0].sum().backward()

    return run


def stream(model: nn.Module, ctx: Callable, xs: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        state = None
        with torch.no_grad(), ctx():
            for x in xs:
                _, state = model(x.unsqueeze(0), state)

    return run


def report(title: str, medians: dict[str, float], unit: float, unit_name: str) -> None:
    lstm = next(v for k, v in medians.items() if k.startswith("nn.LSTM"))
    print(f"\n{title}\n\n| model | median ({unit_name}) | time / LSTM's |\n|---|---|---|")
    for name, t in medians.items():
        print(f"| {name} | {t / unit:.3f} | {t / lstm:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-before-at", type=int, default=10_000,
                        help="leave the PyTorch kernel out at this T and above (slow)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device; none is available, nothing was measured.")
        return 0
    try:
        from freqnn.sfm.kernels import triton_scan
    except ImportError:
        print("benchmarks/gpu.py needs triton (pip install -e '.[gpu]'); nothing was measured.")
        return 0
    device = torch.device("cuda")
    print(f"card: {torch.cuda.get_device_name(device)}; torch {torch.__version__}, "
          f"triton {triton_scan.triton.__version__}")
    print(f"configuration: {CONFIG}")
    try:
        triton_scan.plan(64, LARGE["D"], LARGE["K"], LARGE["M"])
    except ValueError as error:
        print(f"the large configuration {LARGE} is not run: {error}")
    models = build(CONFIG, device)
    print("parameters: " + ", ".join(f"{name} {count(m)}" for name, (m, _) in models.items()))
    for T, B in SEQUENCES:
        x = torch.randn(T, B, CONFIG["N"], device=device, requires_grad=True)
        cases = {
            name: fwd_bwd(m, ctx, x)
            for name, (m, ctx) in models.items()
            if not (name.endswith("PyTorch kernel)") and T >= args.skip_before_at)
        }
        report(f"forward + backward, T = {T}, B = {B}", round_robin(cases, args.repeats),
               1e-3, "ms")
    for B in STREAM_BATCHES:
        xs = torch.randn(STREAM_STEPS, B, CONFIG["N"], device=device)
        cases = {name: stream(m, ctx, xs) for name, (m, ctx) in models.items()}
        medians = round_robin(cases, args.repeats)
        report(f"streaming, one step per call, batch {B}",
               {k: v / STREAM_STEPS for k, v in medians.items()}, 1e-6, "us per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
