"""Speech compression with the learnable cosine transform (issue 3, acceptance 5).

Blocks of ``n`` = 512 samples (32 ms at 16 kHz) of the offline flite corpus
(:mod:`freqnn.data.speech`) are coded with ``m`` coefficients, m in {n/16, n/8, n/4, n/2}, and
decoded; the score is the reconstruction SNR on held-out audio::

    SNR = 10 log10( sum x^2 / sum (x - x_hat)^2 )   over every sample of every held-out block

Codes compared (all linear, m-dimensional):

(a) ``dct``: the orthonormal DCT-II of the block, first m coefficients kept, inverse DCT-II;
(b) ``cosine-full-band`` / ``cosine-lowpass``: :class:`freqnn.CosineTransform` (n, m) from each
    init, frequencies and amplitudes trained with Adam to minimise the reconstruction MSE on the
    training blocks; the checkpoint with the best validation MSE is kept. Its SNR at
    initialisation is reported too;
(c) ``pca``: the KLT, projection on the m leading eigenvectors of the training blocks'
    second-moment matrix (uncentred: the best linear m-dimensional code in mean squared error).

Split: by text (:meth:`freqnn.data.speech.SpeechCorpus.split_by_text`, 70 / 15 / 15 % of the
texts, every voice in every part): held-out blocks come from sentences never seen in training.
``--holdout voice`` instead trains on three voices and tests on ``slt`` (all its utterances).

Run: ``freqnn compression`` (or ``python -m freqnn.tasks.compression``); writes
``results.json``, ``table.md``, ``snr.png`` and ``frequencies.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.speech import VOICES, SpeechCorpus, build_corpus
from ..functional import dct, idct
from ..io import atomic_write
from ..transform import CosineTransform

__all__ = ["HELP", "add_arguments", "blocks", "main", "run", "snr_db"]

HELP = "speech compression: truncated DCT vs learnable cosine transform vs PCA (SNR)"
INITS = ("full-band", "lowpass")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``freqnn compression``."""
    parser.add_argument("--n", type=int, default=512, help="block length (samples)")
    parser.add_argument("--ms", type=int, nargs="+", default=None,
                        help="coefficients kept (default n/16 n/8 n/4 n/2)")
    parser.add_argument("--n-texts", type=int, default=40, help="texts in the corpus (x4 voices)")
    parser.add_argument("--corpus-seed", type=int, default=0, help="seed of the corpus text")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and training")
    parser.add_argument("--voices", nargs="+", default=list(VOICES))
    parser.add_argument("--holdout", choices=("text", "voice"), default="text",
                        help="held-out texts (all voices) or the held-out voice 'slt'")
    parser.add_argument("--amplitudes", choices=("scalar", "per-coefficient"), default="scalar",
                        help="amplitudes of the cosine transforms (a1..a4 scalars or vectors)")
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps per transform")
    parser.add_argument("--batch", type=int, default=128, help="blocks per step")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (amplitudes)")
    parser.add_argument("--freq-lr", type=float, default=1e-4,
                        help="Adam learning rate of the frequencies (radians per sample)")
    parser.add_argument("--eval-every", type=int, default=100,
                        help="steps between validation checks")
    parser.add_argument("--cache", default=None, help="corpus cache directory")
    parser.add_argument("--out", default="runs/compression", help="output directory")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: fastest on a shared 2-core machine)")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")


# ---------------------------------------------------------------------------------------------
def blocks(corpus: SpeechCorpus, n: int) -> torch.Tensor:
    """Non-overlapping blocks of n samples from every utterance (the tail shorter than n is
    dropped), float64, shape (B, n)."""
    parts = [u.audio[: len(u.audio) // n * n].reshape(-1, n) for u in corpus.utterances]
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError(f"corpus: expected utterances of at least n = {n} samples, got none")
    return torch.from_numpy(np.concatenate(parts).astype(np.float64))


def snr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """10 log10(sum x^2 / sum (x - y)^2), accumulated in float64."""
    signal = float((x.double() ** 2).sum())
    noise = float(((x.double() - y.double()) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def _split(corpus: SpeechCorpus, holdout: str, seed: int):
    if holdout == "text":
        return corpus.split_by_text(0.15, 0.15, seed)
    if "slt" not in corpus.voices or len(corpus.voices) < 2:
        raise ValueError(f"voices: expected 'slt' and at least one other voice for --holdout "
                         f"voice, got {corpus.voices}")
    rest = corpus.subset(lambda u: u.voice != "slt")
    train, valid, _ = rest.split_by_text(0.15, 0.0, seed)
    return train, valid, corpus.subset(lambda u: u.voice == "slt")


def _dct_code(x: torch.Tensor, m: int) -> torch.Tensor:
    coeffs = dct(x)
    coeffs[..., m:] = 0
    return idct(coeffs)


def _pca_code(train: torch.Tensor, m: int):
    moment = train.T @ train / len(train)
    _, vectors = torch.linalg.eigh(moment)  # ascending eigenvalues
    basis = vectors[:, -m:]  # (n, m)
    return lambda x: (x @ basis) @ basis.T


def _train(ct: CosineTransform, train: torch.Tensor, valid: torch.Tensor, steps: int,
           batch: int, lr: float, eval_every: int, seed: int,
           freq_lr: float | None = None) -> dict[str, Any]:
    """Adam on the reconstruction MSE; frequencies (the ``*_offset`` parameters) use
    ``freq_lr`` (default ``lr``): a change dw moves the phase at the block's end by (n-1) dw,
    so frequencies need a step about n times smaller than amplitudes."""
    generator = torch.Generator().manual_seed(seed)
    freq = [p for name, p in ct.named_parameters() if name.endswith("offset")]
    amps = [p for name, p in ct.named_parameters() if not name.endswith("offset")]
    opt = torch.optim.Adam([{"params": amps, "lr": lr},
                            {"params": freq, "lr": lr if freq_lr is None else freq_lr}])
    train32, valid32 = train.float(), valid.float()

    def valid_mse() -> float:
        with torch.no_grad():
            return float(((ct.inverse(ct(valid32)) - valid32) ** 2).mean())

    best = (valid_mse(), 0, {k: v.clone() for k, v in ct.state_dict().items()})
    curve = [(0, best[0])]
    for step in range(1, steps + 1):
        index = torch.randint(len(train32), (batch,), generator=generator)
        x = train32[index]
        loss = ((ct.inverse(ct(x)) - x) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            mse = valid_mse()
            curve.append((step, mse))
            if mse < best[0]:
                best = (mse, step, {k: v.clone() for k, v in ct.state_dict().items()})
    ct.load_state_dict(best[2])
    return {"best_step": best[1], "valid_mse": best[0], "curve": curve}


def run(args: argparse.Namespace) -> int:
    """Run the experiment and write results under ``args.out``; returns 0."""
    start = time.time()
    torch.set_num_threads(args.threads)
    n = args.n
    ms = args.ms or [n // 16, n // 8, n // 4, n // 2]
    if any(m < 1 or m > n for m in ms):
        raise ValueError(f"ms: expected coefficient counts in 1..n = {n}, got {ms}")
    corpus = build_corpus(args.n_texts, seed=args.corpus_seed, voices=args.voices,
                          cache=args.cache)
    train_c, valid_c, test_c = _split(corpus, args.holdout, args.seed)
    train, valid, test = blocks(train_c, n), blocks(valid_c, n), blocks(test_c, n)
    print(f"corpus {corpus.meta['key']}: {len(corpus)} utterances; blocks of {n}: "
          f"train {len(train)}, valid {len(valid)}, test {len(test)} ({args.holdout} held out)")

    results: dict[str, Any] = {"snr_db": {}, "init_snr_db": {}, "training": {},
                               "frequencies": {}}
    for m in ms:
        row = results["snr_db"].setdefault(str(m), {})
        row["dct"] = snr_db(test, _dct_code(test, m))
        row["pca"] = snr_db(test, _pca_code(train, m)(test))
        for init in INITS:
            torch.manual_seed(args.seed)
            ct = CosineTransform(n, m, init=init, amplitudes=args.amplitudes)
            with torch.no_grad():
                init_snr = snr_db(test, ct.inverse(ct(test.float())))
            info = _train(ct, train, valid, args.steps, args.batch, args.lr, args.eval_every,
                          args.seed, freq_lr=args.freq_lr)
            with torch.no_grad():
                row[f"cosine-{init}"] = snr_db(test, ct.inverse(ct(test.float())))
            results["init_snr_db"].setdefault(str(m), {})[f"cosine-{init}"] = init_snr
            results["training"][f"{m}/{init}"] = info
            results["frequencies"][f"{m}/{init}"] = {
                "initial": ct.initial_frequencies().tolist(),
                "analysis": ct.analysis_frequencies.detach().tolist(),
                "synthesis": ct.synthesis_frequencies.detach().tolist(),
                "amplitudes": {a: getattr(ct, a).detach().tolist()
                               for a in ("a1", "a2", "a3", "a4")},
            }
            print(f"m={m:4d} {init:9s}: SNR init {init_snr:6.2f} dB -> trained "
                  f"{row[f'cosine-{init}']:6.2f} dB (best step {info['best_step']})", flush=True)
        print(f"m={m:4d} dct {row['dct']:6.2f} dB, pca {row['pca']:6.2f} dB", flush=True)

    results["config"] = {k: v for k, v in vars(args).items() if k != "run"}
    results["config"]["ms"] = ms
    results["corpus"] = corpus.meta
    results["sizes"] = {"train": len(train), "valid": len(valid), "test": len(test)}
    results["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                          "threads": args.threads, "torch": torch.__version__}
    results["seconds"] = time.time() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "results.json", "w") as handle:
        json.dump(results, handle, indent=1)
    table = _table(results, ms)
    with atomic_write(out / "table.md", "w") as handle:
        handle.write(table)
    print(table)
    if not args.no_plots:
        _plots(results, ms, out)
    print(f"wrote {out} in {results['seconds']:.0f} s")
    return 0


def _table(results: dict[str, Any], ms: Sequence[int]) -> str:
    lines = ["| m | DCT-II truncated | cosine full-band: init -> trained | "
             "cosine lowpass: init -> trained | PCA / KLT |",
             "|---:|---:|---:|---:|---:|"]
    for m in ms:
        row, init = results["snr_db"][str(m)], results["init_snr_db"][str(m)]
        lines.append(
            f"| {m} | {row['dct']:.2f} | {init['cosine-full-band']:.2f} -> "
            f"{row['cosine-full-band']:.2f} | {init['cosine-lowpass']:.2f} -> "
            f"{row['cosine-lowpass']:.2f} | {row['pca']:.2f} |")
    return "\n".join(lines) + "\n"


def _plots(results: dict[str, Any], ms: Sequence[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"dct": "DCT-II truncated", "cosine-full-band": "cosine, full-band init",
              "cosine-lowpass": "cosine, lowpass init", "pca": "PCA / KLT"}
    styles = {"dct": ("s", "--"), "cosine-full-band": ("v", "-"), "cosine-lowpass": ("o", "-"),
              "pca": ("^", ":")}
    for key, label in labels.items():
        marker, line = styles[key]
        ax.plot(ms, [results["snr_db"][str(m)][key] for m in ms], marker=marker, ls=line,
                label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ms), [str(m) for m in ms])
    ax.set_xlabel(f"coefficients kept m (block n = {results['config']['n']})")
    ax.set_ylabel("held-out SNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "snr.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(len(INITS), len(ms), figsize=(3.2 * len(ms), 3.0 * len(INITS)),
                             squeeze=False)
    for i, init in enumerate(INITS):
        for j, m in enumerate(ms):
            f = results["frequencies"][f"{m}/{init}"]
            ax = axes[i][j]
            initial = np.asarray(f["initial"])
            # departure from the initial grid in grid spacings (pi / P; P = m or n)
            spacing = math.pi / (m if init == "full-band" else results["config"]["n"])
            for key, marker, label in (("analysis", ".", "w (analysis)"),
                                       ("synthesis", "x", "v (synthesis)")):
                ax.plot(initial, (np.asarray(f[key]) - initial) / spacing, marker, ms=3,
                        label=label)
            ax.axhline(0, color="0.6", lw=1)
            ax.set_title(f"{init}, m = {m}", fontsize=9)
            if j == 0:
                ax.set_ylabel("learned - initial\n(grid spacings)")
            if i == len(INITS) - 1:
                ax.set_xlabel("initial frequency (rad/sample)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "frequencies.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m freqnn.tasks.compression [options]``."""
    parser = argparse.ArgumentParser(prog="python -m freqnn.tasks.compression", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
