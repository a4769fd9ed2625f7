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
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..checks import fail
from ..data.stocks import (
    HORIZONS,
    PAPER_TEST_MSE,
    Split,
    StockPrices,
    chronological_split,
    load_paper_data,
    split_steps,
)

__all__ = [
    "AR_ORDERS",
    "ARModel",
    "baseline_table",
    "fit_ar",
    "paper_mse",
    "predict_ar",
    "random_walk",
    "select_ar",
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
        rows.append(
            {
                "model": "random walk",
                "horizon": horizon,
                "order": None,
                "valid_mse": paper_mse(random_walk(prices, valid), prices[:, valid + horizon]),
                "test_mse": paper_mse(random_walk(prices, test), prices[:, test + horizon]),
            }
        )
        for name, differences in (("ar", False), ("ar-diff", True)):
            model, scores = select_ar(
                prices, split, horizon, orders=orders, differences=differences
            )
            rows.append(
                {
                    "model": name,
                    "horizon": horizon,
                    "order": model.order,
                    "valid_mse": scores[model.order],
                    "test_mse": paper_mse(
                        predict_ar(model, prices, test), prices[:, test + horizon]
                    ),
                }
            )
    return rows


def _markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| model | n | AR order (valid) | valid MSE | test MSE | paper SFM test MSE |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        order = "" if row["order"] is None else str(row["order"])
        paper = PAPER_TEST_MSE.get(int(row["horizon"]))  # type: ignore[call-overload]
        lines.append(
            f"| {row['model']} | {row['horizon']} | {order} | {row['valid_mse']:.2f} | "
            f"{row['test_mse']:.2f} | {paper:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m freqnn.tasks.stocks baselines [--data-root DIR] [--json FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m freqnn.tasks.stocks")
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("baselines", help="random walk and AR baselines, paper's metric")
    base.add_argument("--data-root", default=None)
    base.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
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
