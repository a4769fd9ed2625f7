"""Benchmark: the runner's unidirectional LSTM on padded batches, packed against plain padding.

``freqnn.models.SequenceModel`` runs ``nn.LSTM`` / ``nn.GRU`` on zero-padded batches without
``pack_padded_sequence``: a forward recurrence's outputs at the valid steps never read the
padding (tests/test_models.py checks them against each sequence run alone). This measures
what packing cost, in one run, round-robin, on a phoneme-task batch: B = 16 utterances of 250
to 450 frames, 40 log-mel features, ``nn.LSTM`` of 117 units (the size matched to the phoneme
SFM's 79k parameters), forward + backward of the output sum.

Usage::

    python benchmarks/rnn_padding.py [--threads 1] [--repeats 15]

Prints the median wall time of each way, their ratio, the thread count and the load average at
start and end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(250, 451, (16,), generator=gen)
    lengths[0] = 450
    return torch.randn(16, 450, 40, generator=gen), lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lstm = nn.LSTM(40, 117, batch_first=True)
    x, lengths = _batch()
    steps = x.shape[1]

    def packed() -> None:
        seq = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                enforce_sorted=False)
        out, _ = nn.utils.rnn.pad_packed_sequence(lstm(seq)[0], batch_first=True,
                                                  total_length=steps)
        out.sum().backward()

    def padded() -> None:
        lstm(x)[0].sum().backward()

    ways: dict[str, Callable[[], None]] = {"packed": packed, "padded (the runner)": padded}
    load = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in ways}
    for way in ways.values():  # warm-up
        way()
    for _ in range(args.repeats):
        for name, way in ways.items():
            lstm.zero_grad()
            start = time.perf_counter()
            way()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"threads {args.threads}, load average at start {load:.2f}, at end "
          f"{os.getloadavg()[0]:.2f}, {args.repeats} repeats (medians)")
    print("| way | forward + backward (s) | vs packed |")
    print("|---|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:.3f} | {median['packed'] / value:.1f}x faster |")


if __name__ == "__main__":
    main()
