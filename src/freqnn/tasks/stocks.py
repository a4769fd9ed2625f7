"""Stock-price prediction (Zhang, Aggarwal & Qi, KDD 2017): baselines and the experiment.

Predict the price ``n`` days ahead (n in {1, 3, 5}) at every step of each stock's daily series,
split by time as in the paper's code (:mod:`freqnn.data.stocks`). The metric is the paper's:
mean squared error on de-normalised prices over the test steps of all stocks,

    MSE = sum_{s, t} (pred[s, t] - price[s, t + n])**2 / (S * L),

with L = 252 - n test steps per stock (input day t and target day t + n both in the last 252
days). Every stock has the same L, so this is also the mean over stocks of the per-stock MSE. It
is in squared dollars and dominated by the high-priced stocks (GOOGL, AMZN).

Baselines, the ones finance people check first:

* random walk: the prediction of ``price[t + n]`` is ``price[t]``;
* linear autoregressive models fitted per stock by least squares on the training steps, the order
  chosen on the validation steps (one order for all stocks, by the validation MSE):
  ``ar`` on price levels, ``x[t+n] = c + sum_i a_i x[t-i]`` (direct n-step), and ``ar-diff`` on
  price changes, ``x[t+n] - x[t] = c + sum_i a_i (x[t-i] - x[t-i-1])``, which nests the random
  walk (all coefficients zero).

Run ``python -m freqnn.tasks.stocks baselines`` to print the table in ``docs/results/stocks.md``.

Runner task ``stocks`` (``freqnn train stocks --model sfm --horizon 3``; model ``sfm-stock`` is the
paper's own cell, :class:`freqnn.sfm.stock.StockSFM`), as the paper's code:
every stock is one sequence of its min-max-scaled daily prices (input N = 1); the model reads
days ``0..t`` and predicts the price of day ``t + n`` at every step (``head="step"``). Items:

* train: days ``[0, train_end)`` only, the loss on the steps whose target is a training day;
* validation: days ``[0, valid_end)`` read from day 0, scored on the validation steps;
* test: all days read from day 0, scored on the paper's test steps (:func:`split_steps`).

No validation or test price is in a training item, and with ``scaling="train"`` (default) none
reaches the scaling statistics either; ``scaling="whole"`` is the paper's leaky protocol.
``target="price"`` (default, the paper's) regresses the scaled price of day ``t + n``;
``target="change"`` regresses the scaled change ``z[t + n] - z[t]`` (an output of 0 is then the
random walk). ``train_chunk`` (default 256) cuts training sequences into pieces of that many
days, each from a zero state, for 8 updates per epoch instead of one; ``0`` trains on whole
sequences as the paper's code. Validation and test always read whole sequences. Metrics
(``val_*`` / ``test_*``): ``loss`` (MSE of the scaled target), ``mse`` (the paper's metric,
prices), ``rw_mse`` (the random walk on the same steps). Own stocks: ``--csv FOLDER`` (one
Yahoo-style CSV per ticker, ``--column``).

Models train through the runner only (``freqnn train stocks ...``); the tables and plots of
trained runs are made from their run directories by ``python -m freqnn.tasks.stocks table
RUN_DIR...`` and ``... plot OUT.png LABEL=RUN_DIR...`` (checkpoints read by
:mod:`freqnn.checkpoint`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from ..checks import fail
from ..config import RunConfig
from ..data.stocks import (
    HORIZONS,
    PAPER_TEST_MSE,
    Split,
    StockPrices,
    chronological_split,
    fit_scaler,
    load_csv,
    load_paper_data,
    split_steps,
)
from ..models import arch_rank
from . import Batch, Task, TaskData, TensorDataset

__all__ = [
    "AR_ORDERS",
    "DEFAULTS",
    "TASK",
    "ARModel",
    "Options",
    "baseline_table",
    "build",
    "diebold_mariano",
    "fit_ar",
    "load_prices",
    "loss",
    "metrics",
    "paper_mse",
    "plot_predictions",
    "predict_ar",
    "predict_run",
    "prices_from_output",
    "random_walk",
    "run_rows",
    "run_table",
    "select_ar",
    "stock_items",
]

AR_ORDERS = (1, 2, 3, 5, 10, 20, 40)


def paper_mse(prediction: np.ndarray, truth: np.ndarray) -> float:
    """The paper's metric: squared error summed over stocks and steps, divided by their count.

    Parameters
    ----------
    prediction, truth : ndarray [shape=(S, L)], de-normalised prices
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if prediction.shape != truth.shape or prediction.ndim != 2:
        fail("prediction", f"a 2-D array of the truth's shape {truth.shape}", f"{prediction.shape}")
    return float(np.mean((prediction - truth) ** 2))


def random_walk(prices: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Random-walk forecast of every horizon: the last observed price, ``prices[:, steps]``."""
    return np.asarray(prices, dtype=np.float64)[:, np.asarray(steps, dtype=np.int64)]


def diebold_mariano(
    prediction: np.ndarray, reference: np.ndarray, truth: np.ndarray, horizon: int
) -> tuple[float, float]:
    """Diebold-Mariano comparison of two forecasts' squared errors, pooled over stocks.

    The loss differential of day ``l`` is ``d_l = mean_s (e_pred^2 - e_ref^2)``; its mean is
    divided by a Newey-West standard error with ``horizon - 1`` lags (Bartlett weights), as
    ``horizon``-step forecast errors overlap. Negative = ``prediction`` better; |t| > 2 is
    roughly significant at 5 % (normal approximation; days, not stocks, are the samples).

    Parameters
    ----------
    prediction, reference, truth : ndarray [shape=(S, L)]

    Returns
    -------
    mean_difference, t_statistic (NaN when the two forecasts are identical)
    """
    d = np.mean((prediction - truth) ** 2 - (reference - truth) ** 2, axis=0)
    centred = d - d.mean()
    variance = float(np.mean(centred**2))
    for lag in range(1, horizon):
        weight = 1.0 - lag / horizon
        variance += 2.0 * weight * float(np.sum(centred[lag:] * centred[:-lag])) / d.size
    if variance <= 0.0:
        return float(d.mean()), float("nan")
    return float(d.mean()), float(d.mean() / np.sqrt(variance / d.size))


@dataclass(frozen=True)
class ARModel:
    """Per-stock direct ``horizon``-step linear autoregression.

    Attributes
    ----------
    coef : ndarray [shape=(S, order)], ``coef[s, i]`` multiplies lag ``i`` (0 = the day t)
    intercept : ndarray [shape=(S,)]
    horizon, order : int
    differences : bool, whether the model works on price changes (``ar-diff``)
    """

    coef: np.ndarray
    intercept: np.ndarray
    horizon: int
    order: int
    differences: bool

    @property
    def first_step(self) -> int:
        """Smallest step with enough history (one more day for differences)."""
        return self.order - 1 + int(self.differences)


def _lags(prices: np.ndarray, steps: np.ndarray, order: int, differences: bool) -> np.ndarray:
    """Regressors at each step, [shape=(S, L, order)], lag 0 first."""
    if differences:
        # the change d[t] = x[t] - x[t-1] sits at index t - 1 of np.diff
        series, index = np.diff(prices, axis=1), steps - 1
    else:
        series, index = prices, steps
    return series[:, index[:, None] - np.arange(order)[None, :]]


def fit_ar(
    prices: np.ndarray,
    steps: np.ndarray,
    order: int,
    horizon: int,
    *,
    differences: bool = False,
) -> ARModel:
    """Least-squares fit, per stock, on the pairs (history up to ``t``, price at ``t + horizon``).

    Parameters
    ----------
    prices : ndarray [shape=(S, T)]
    steps : ndarray [shape=(L,)], the training steps t (their targets must be training days);
        steps without enough history are skipped
    """
    prices = np.asarray(prices, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    steps = steps[steps >= order - 1 + int(differences)]
    if steps.size <= order + 1:
        fail("steps", f"more than {order + 1} steps with {order} days of history", f"{steps.size}")
    lags = _lags(prices, steps, order, differences)
    target = prices[:, steps + horizon] - (prices[:, steps] if differences else 0.0)
    s = prices.shape[0]
    coef = np.empty((s, order))
    intercept = np.empty(s)
    for i in range(s):
        design = np.concatenate([lags[i], np.ones((steps.size, 1))], axis=1)
        solution, *_ = np.linalg.lstsq(design, target[i], rcond=None)
        coef[i], intercept[i] = solution[:order], solution[order]
    return ARModel(coef, intercept, horizon, order, differences)


def predict_ar(model: ARModel, prices: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Forecast of ``prices[:, steps + horizon]`` from the history up to each step.

    Returns
    -------
    ndarray [shape=(S, L)]
    """
    prices = np.asarray(prices, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    if steps.size and steps.min() < model.first_step:
        fail("steps", f"steps >= {model.first_step} (enough history)", f"min {steps.min()}")
    if steps.size and steps.max() >= prices.shape[1]:
        fail("steps", f"steps < {prices.shape[1]} (days in prices)", f"max {steps.max()}")
    lags = _lags(prices, steps, model.order, model.differences)
    base = prices[:, steps] if model.differences else 0.0
    return base + np.einsum("slo,so->sl", lags, model.coef) + model.intercept[:, None]


def select_ar(
    prices: np.ndarray,
    split: Split,
    horizon: int,
    *,
    orders: Sequence[int] = AR_ORDERS,
    differences: bool = False,
) -> tuple[ARModel, dict[int, float]]:
    """Fit on the training steps for each order; keep the lowest validation MSE.

    Returns
    -------
    model : the selected fit
    valid_mse : {order: validation MSE (paper's averaging, prices)}
    """
    train = split_steps(split, horizon, "train")
    valid = split_steps(split, horizon, "valid")
    scores: dict[int, float] = {}
    best: ARModel | None = None
    for order in orders:
        model = fit_ar(prices, train, order, horizon, differences=differences)
        scores[order] = paper_mse(predict_ar(model, prices, valid), prices[:, valid + horizon])
        if best is None or scores[order] < scores[best.order]:
            best = model
    assert best is not None
    return best, scores


def baseline_table(
    data: StockPrices, horizons: Sequence[int] = HORIZONS, orders: Sequence[int] = AR_ORDERS
) -> list[dict[str, object]]:
    """Validation and test MSE of the random walk, ``ar`` and ``ar-diff`` for each horizon."""
    prices = data.prices
    split = chronological_split(prices.shape[1])
    rows: list[dict[str, object]] = []
    for horizon in horizons:
        valid = split_steps(split, horizon, "valid")
        test = split_steps(split, horizon, "test")
        truth, walk = prices[:, test + horizon], random_walk(prices, test)
        walk_per_stock = np.mean((walk - truth) ** 2, axis=1)
        rows.append(
            {
                "model": "random walk",
                "horizon": horizon,
                "order": None,
                "valid_mse": paper_mse(random_walk(prices, valid), prices[:, valid + horizon]),
                "test_mse": paper_mse(walk, truth),
                "stocks_beating_rw": None,
                "dm_t_vs_rw": None,
            }
        )
        for name, differences in (("ar", False), ("ar-diff", True)):
            model, scores = select_ar(
                prices, split, horizon, orders=orders, differences=differences
            )
            pred = predict_ar(model, prices, test)
            rows.append(
                {
                    "model": name,
                    "horizon": horizon,
                    "order": model.order,
                    "valid_mse": scores[model.order],
                    "test_mse": paper_mse(pred, truth),
                    "stocks_beating_rw": int(
                        np.sum(np.mean((pred - truth) ** 2, axis=1) < walk_per_stock)
                    ),
                    "dm_t_vs_rw": diebold_mariano(pred, walk, truth, horizon)[1],
                }
            )
    return rows


# ----------------------------------------------------------------------------------------------
# runner task

DEFAULTS: dict[str, Any] = {
    # data
    "horizon": 1,
    "scaling": "train",  # "whole": the paper's leaky min-max over the whole series
    "target": "price",  # or "change" (z[t+n] - z[t]; 0 = random walk)
    "data_root": None,
    "csv": None,  # folder of Yahoo-style CSV files instead of the paper's data.npy
    "column": "Open",
    "missing": "error",
    "train_chunk": 256,  # 0: whole training sequences, one update per epoch (the paper's code)
    # model and training: the paper's 1-step model has M = D = 10, K = 10; batches of 50
    "hidden_size": 10,
    "state_size": 10,
    "num_freqs": 10,
    "batch_size": 50,
    "epochs": 100,
    "lr": 1e-2,
    "patience": 0,
}


def load_prices(cfg: dict[str, Any]) -> StockPrices:
    """The paper's data (default) or the CSV folder ``cfg["csv"]``."""
    if cfg.get("csv"):
        column = cfg.get("column") or "Open"
        return load_csv(cfg["csv"], column, missing=cfg.get("missing") or "error")
    return load_paper_data(cfg.get("data_root"))


def stock_items(
    prices: np.ndarray,
    scaled: np.ndarray,
    scale: np.ndarray,
    steps: np.ndarray,
    end: int,
    horizon: int,
    target: str,
    chunk: int = 0,
) -> TensorDataset:
    """Items of one split: days ``[0, end)`` of every stock, targets at ``steps`` only.

    Parameters
    ----------
    prices, scaled : ndarray [shape=(S, T)], raw and scaled prices
    scale : ndarray [shape=(S, 2)], ``(high - low) / 2`` and ``(high + low) / 2`` per stock
    steps : ndarray [shape=(L,)], scored steps; every ``steps + horizon < end``
    chunk : int, > 0 cuts the ``end`` days into consecutive pieces of ``chunk`` days

    Items: ``x`` (days, 1) float32; ``y`` (days, 1) float32 scaled target (0 off ``mask``);
    ``mask`` (days,) bool; ``price`` / ``last`` (days,) float64 price at ``t + n`` / ``t``
    (0 off ``mask``); ``base`` (days,) float64 and ``half`` () float64 with
    ``predicted price = base + output * half`` (``base`` is the mid-range, or the price at ``t``
    for ``target="change"``).
    """
    if target not in ("price", "change"):
        fail("target", "'price' or 'change'", repr(target))
    if steps.size and steps.max() + horizon >= end:
        fail("steps", f"targets before day {end}", f"max target day {steps.max() + horizon}")
    s = prices.shape[0]
    mask = np.zeros((s, end), dtype=bool)
    mask[:, steps] = True
    y = np.zeros((s, end))
    price = np.zeros((s, end))
    last = np.zeros((s, end))
    y[:, steps] = scaled[:, steps + horizon]
    if target == "change":
        y[:, steps] -= scaled[:, steps]
    price[:, steps] = prices[:, steps + horizon]
    last[:, steps] = prices[:, steps]
    x = scaled[:, :end]  # nothing from day `end` on
    base = prices[:, :end].copy() if target == "change" else np.repeat(scale[:, 1:], end, 1)
    keys = ("x", "y", "mask", "price", "last", "base", "half")
    columns: dict[str, list[Tensor]] = {k: [] for k in keys}
    pieces = range(0, end, chunk) if chunk else [0]
    for i in range(s):
        for start in pieces:
            stop = min(start + chunk, end) if chunk else end
            if chunk and not mask[i, start:stop].any():
                continue
            columns["x"].append(torch.tensor(x[i, start:stop, None], dtype=torch.float32))
            columns["y"].append(torch.tensor(y[i, start:stop, None], dtype=torch.float32))
            columns["mask"].append(torch.from_numpy(mask[i, start:stop].copy()))
            columns["price"].append(torch.from_numpy(price[i, start:stop].copy()))
            columns["last"].append(torch.from_numpy(last[i, start:stop].copy()))
            columns["base"].append(torch.from_numpy(base[i, start:stop].copy()))
            columns["half"].append(torch.tensor(scale[i, 0], dtype=torch.float64))
    return TensorDataset(**columns)


def build(cfg: dict[str, Any]) -> TaskData:
    """Train / validation / test items (see the module docstring); deterministic."""
    data = load_prices(cfg)
    horizon = int(cfg["horizon"])
    target = str(cfg.get("target") or "price")
    chunk = int(cfg.get("train_chunk") or 0)
    if chunk < 0 or chunk == 1:
        fail("train_chunk", "0 (whole sequences) or an int >= 2", repr(chunk))
    prices = data.prices
    split = chronological_split(prices.shape[1])
    scaler = fit_scaler(prices, split, cfg.get("scaling") or "train")
    scaled = scaler.transform(prices)
    scale = np.concatenate([(scaler.high - scaler.low) / 2, (scaler.high + scaler.low) / 2], 1)

    def items(part: str, end: int, piece: int = 0) -> TensorDataset:
        steps = split_steps(split, horizon, part)  # type: ignore[arg-type]
        return stock_items(prices, scaled, scale, steps, end, horizon, target, piece)

    info = {
        "symbols": list(data.symbols),
        "horizon": horizon,
        "scaling": scaler.protocol,
        "target": target,
        "split": [split.train_end, split.valid_end, split.length],
        "low": scaler.low[:, 0].tolist(),
        "high": scaler.high[:, 0].tolist(),
        "source": str(cfg.get("csv") or "KDD 2017 data.npy"),
        "paper_test_mse": PAPER_TEST_MSE.get(horizon),
    }
    return TaskData(
        train=items("train", split.train_end, chunk),
        val=items("valid", split.valid_end),
        test=items("test", split.length),
        input_size=1,
        output_size=1,
        has_times=False,
        info=info,
    )


def loss(output: Tensor, batch: Batch) -> Tensor:
    """Mean squared error of the scaled target over the batch's scored steps."""
    mask = batch["mask"].bool()
    return torch.mean((output[..., 0][mask] - batch["y"][..., 0][mask]) ** 2)


def prices_from_output(output: Tensor, batch: Batch) -> Tensor:
    """De-normalised predictions [shape=(B, T)], float64: ``base + output * half_range``."""
    return batch["base"].double() + output[..., 0].double() * batch["half"].double()[:, None]


def metrics(output: Tensor, batch: Batch) -> dict[str, tuple[Tensor, Tensor]]:
    """Sums and counts: scaled ``loss``, price ``mse`` (the paper's), random walk ``rw_mse``."""
    mask = batch["mask"].bool()
    out, y = output[..., 0].double(), batch["y"][..., 0].double()
    price, last = batch["price"].double(), batch["last"].double()
    count = mask.sum().double()

    def total(error: Tensor) -> Tensor:
        return (error**2)[mask].sum()

    return {
        "loss": (total(out - y), count),
        "mse": (total(prices_from_output(output, batch) - price), count),
        "rw_mse": (total(last - price), count),
    }


class Options(RunConfig):
    """The stocks task's keys."""

    horizon: int = Field(ge=1, description="days ahead to predict (the paper: 1, 3, 5)")
    scaling: Literal["train", "whole"] = Field(
        description="min-max statistics from the training days, or from the whole series "
        "(the paper's leaky protocol)")
    target: Literal["price", "change"] = Field(
        description="regress the scaled price (the paper's) or its change from day t")
    data_root: str | None = Field(description="folder holding stocks/data.npy; null: "
                                  "FREQNN_DATA, else ../shared/data")
    csv: str | None = Field(description="folder of Yahoo-style CSV files, one per ticker, "
                            "instead of the paper's data")
    column: str = Field(description="CSV price column")
    missing: Literal["error", "drop"] = Field(description="CSV rows with null prices")
    train_chunk: int = Field(ge=0, description="cut training sequences into pieces of N days "
                             "(0: whole sequences, one update per epoch as in the paper's code)")


TASK = Task(
    name="stocks",
    description="stock prices n days ahead at every step (KDD 2017 data or your CSV files)",
    head="step",
    defaults=DEFAULTS,
    build=build,
    loss=loss,
    metrics=metrics,
    monitor="mse",
    mode="min",
    options=Options,
)


# ----------------------------------------------------------------------------------------------
# predictions of trained runs, plots


def predict_run(run_dir: str | Path, part: str = "test") -> dict[str, Any]:
    """De-normalised predictions of a trained ``stocks`` run (its ``checkpoints/best.ckpt``).

    Returns
    -------
    dict with ``pred`` and ``truth`` [shape=(S, L)] prices at the scored days ``steps + horizon``
    (``steps`` [shape=(L,)]), ``last`` (the random walk), ``symbols``, ``cfg``, ``mse``.
    """
    from ..checkpoint import model_from_checkpoint
    from . import collate

    module = model_from_checkpoint(Path(run_dir) / "checkpoints" / "best.ckpt")
    cfg = module.cfg
    data = build(cfg)
    dataset = {"test": data.test, "valid": data.val}[part]
    batch = collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        output = module(batch)
    mask = batch["mask"]
    steps = torch.nonzero(mask[0]).flatten().numpy()
    if not bool((mask == mask[0]).all()):
        raise ValueError(f"{run_dir}: stocks scored on different days; cannot stack them")
    pred = prices_from_output(output, batch)[:, steps].numpy()
    truth = batch["price"][:, steps].numpy()
    return {
        "pred": pred,
        "truth": truth,
        "last": batch["last"][:, steps].numpy(),
        "steps": steps,
        "symbols": list(data.info["symbols"]),
        "cfg": cfg,
        "mse": paper_mse(pred, truth),
    }


def plot_predictions(
    runs: dict[str, str | Path],
    path: str | Path,
    symbols: Sequence[str] = ("AAPL", "AMZN", "GOOGL", "XOM"),
    title: str = "",
) -> Path:
    """PNG of test-period truth, the random walk and each run's predictions for a few stocks.

    ``runs`` maps a legend label to a run directory (all of one horizon).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predictions = {label: predict_run(run) for label, run in runs.items()}
    first = next(iter(predictions.values()))
    horizon = int(first["cfg"]["horizon"])
    fig, axes = plt.subplots(len(symbols), 1, figsize=(9, 2.4 * len(symbols)), sharex=True)
    axes = np.atleast_1d(axes)
    days = first["steps"] + horizon
    for ax, symbol in zip(axes, symbols, strict=True):
        i = first["symbols"].index(symbol)
        ax.plot(days, first["truth"][i], color="black", lw=1.4, label="truth")
        ax.plot(days, first["last"][i], color="grey", lw=0.9, ls="--", label="random walk")
        for label, result in predictions.items():
            ax.plot(days, result["pred"][i], lw=1.0, label=label)
        ax.set_ylabel(f"{symbol} open ($)")
        low, high = first["truth"][i].min(), first["truth"][i].max()
        pad = 0.35 * (high - low)
        ax.set_ylim(low - pad, high + pad)  # a diverging model must not flatten the truth
    axes[0].legend(fontsize=7, ncol=3, loc="upper left")
    axes[-1].set_xlabel(f"day index (test period; predicted {horizon} day(s) ahead)")
    fig.suptitle(title or f"test period, {horizon}-day-ahead predictions", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| model | n | AR order (valid) | valid MSE | test MSE | stocks better than RW "
        "| DM t vs RW | paper SFM test MSE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        order = "" if row["order"] is None else str(row["order"])
        paper = PAPER_TEST_MSE.get(int(row["horizon"]))  # type: ignore[call-overload]
        wins = "" if row["stocks_beating_rw"] is None else f"{row['stocks_beating_rw']}/50"
        dm = "" if row["dm_t_vs_rw"] is None else f"{row['dm_t_vs_rw']:+.2f}"
        lines.append(
            f"| {row['model']} | {row['horizon']} | {order} | {row['valid_mse']:.2f} | "
            f"{row['test_mse']:.2f} | {wins} | {dm} | {paper:.2f} |"
        )
    return "\n".join(lines)


def run_rows(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One summary per trained ``stocks`` run, sorted by horizon, protocol, target, model.

    Test MSE and the random walk's come from ``results.json``; the per-stock wins and the
    Diebold-Mariano t against the random walk are recomputed from ``checkpoints/best.ckpt``.
    """
    rows = []
    for run in run_dirs:
        path = Path(run) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a finished run (no results.json)")
        res = json.loads(path.read_text())
        cfg = _read_yaml(Path(run) / "config.yaml")
        n = int(res["info"]["horizon"])
        pred = predict_run(run)
        per_stock = np.mean((pred["pred"] - pred["truth"]) ** 2, axis=1)
        walk_per_stock = np.mean((pred["last"] - pred["truth"]) ** 2, axis=1)
        rows.append(
            {
                "run": Path(run).name,
                "horizon": n,
                "model": res["model"],
                "scaling": cfg["scaling"],
                "target": cfg["target"],
                "seed": res["seed"],
                "epochs": cfg["epochs"],
                "train_chunk": cfg["train_chunk"],
                "lr": cfg["lr"],
                "params": res["params"],
                "hidden_size": res["hidden_size"],
                "best_epoch": res["best_epoch"],
                "epochs_run": res["epochs_run"],
                "valid_mse": res["best_val"]["val_mse"],
                "valid_rw_mse": res["best_val"]["val_rw_mse"],
                "test_mse": res["test"]["mse"],
                "test_rw_mse": res["test"]["rw_mse"],
                "stocks": int(per_stock.size),
                "stocks_beating_rw": int(np.sum(per_stock < walk_per_stock)),
                "dm_t_vs_rw": diebold_mariano(pred["pred"], pred["last"], pred["truth"], n)[1],
                "train_wall_s": res["train_wall_s"],
            }
        )
    rows.sort(key=lambda r: (r["horizon"], r["scaling"] != "train", r["target"],
                             arch_rank(r["model"]), r["seed"]))
    return rows


def run_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`run_rows`."""
    lines = [
        "| n | model | scaling | target | seed | params | best epoch / run | valid MSE (RW) "
        "| test MSE | RW test MSE | stocks better than RW | DM t vs RW | paper SFM |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n = r["horizon"]
        scaling = "train" if r["scaling"] == "train" else "whole (leaky)"
        lines.append(
            f"| {n} | {r['model']} | {scaling} | {r['target']} | {r['seed']} | {r['params']} | "
            f"{r['best_epoch']} / {r['epochs_run']} | {r['valid_mse']:.2f} "
            f"({r['valid_rw_mse']:.2f}) | {r['test_mse']:.2f} | {r['test_rw_mse']:.2f} "
            f"| {r['stocks_beating_rw']}/{r['stocks']} | {r['dm_t_vs_rw']:+.2f} "
            f"| {PAPER_TEST_MSE.get(n, float('nan')):.2f} |"
        )
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


def main(argv: Sequence[str] | None = None) -> int:
    """Commands of ``python -m freqnn.tasks.stocks``.

    * ``baselines [--data-root DIR] [--json FILE]``: random walk and AR table;
    * ``table RUN_DIR... [--json FILE]``: markdown table of trained runs;
    * ``plot OUT.png LABEL=RUN_DIR... [--symbols AAPL,AMZN]``: predictions vs truth.

    Models are trained by the runner: ``freqnn train stocks --model sfm --horizon 3 ...``.
    Returns the exit status: 2 with one line on stderr for unreadable runs or data.
    """
    parser = argparse.ArgumentParser(prog="python -m freqnn.tasks.stocks")
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("baselines", help="random walk and AR baselines, paper's metric")
    base.add_argument("--data-root", default=None)
    base.add_argument("--json", default=None, help="also write the rows to this JSON file")
    table = sub.add_parser("table", help="markdown table of trained runs (results.json)")
    table.add_argument("runs", nargs="+", help="run directories")
    table.add_argument("--json", default=None, help="also write the rows to this JSON file")
    plot = sub.add_parser("plot", help="PNG of test predictions vs truth for a few stocks")
    plot.add_argument("out", help="PNG file to write")
    plot.add_argument("runs", nargs="+", help="LABEL=RUN_DIR pairs (one horizon)")
    plot.add_argument("--symbols", default="AAPL,AMZN,GOOGL,XOM")
    plot.add_argument("--title", default="")
    args = parser.parse_args(argv)
    try:
        return _run_command(args)
    except (ValueError, OSError) as error:
        print(f"python -m freqnn.tasks.stocks: error: {error}", file=sys.stderr)
        return 2


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "table":
        rows = run_rows(args.runs)
        print(run_table(rows))
        if args.json:
            from ..io import atomic_write

            with atomic_write(args.json, "w") as handle:
                json.dump(rows, handle, indent=1)
        return 0
    if args.command == "plot":
        pairs = dict(item.split("=", 1) for item in args.runs)
        print(plot_predictions(pairs, args.out, args.symbols.split(","), args.title))
        return 0
    data = load_paper_data(args.data_root)
    rows = baseline_table(data)
    print(_markdown(rows))
    if args.json:
        from ..io import atomic_write

        with atomic_write(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0

if __name__ == "__main__":
    sys.exit(main())
