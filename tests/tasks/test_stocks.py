"""Stock baselines: random walk, AR fits against known processes, the paper's metric."""

from __future__ import annotations

import numpy as np
import pytest

from freqnn.data.stocks import StockPrices, chronological_split, split_steps
from freqnn.tasks.stocks import (
    baseline_table,
    fit_ar,
    paper_mse,
    predict_ar,
    random_walk,
    select_ar,
)


def _ar_process(coef: list[float], steps: int, seed: int, stocks: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((stocks, steps + 200))
    noise = rng.normal(size=x.shape)
    for t in range(len(coef), x.shape[1]):
        x[:, t] = sum(c * x[:, t - 1 - i] for i, c in enumerate(coef)) + noise[:, t]
    return x[:, 200:]  # drop the burn-in


def test_paper_mse_is_sum_over_stocks_and_steps_divided_by_count() -> None:
    rng = np.random.default_rng(1)
    pred, truth = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    total = 0.0
    for s in range(3):
        for t in range(7):
            total += (pred[s, t] - truth[s, t]) ** 2
    assert paper_mse(pred, truth) == pytest.approx(total / 21, rel=1e-12)
    # equal counts per stock: also the mean of the per-stock MSEs
    per_stock = [np.mean((pred[s] - truth[s]) ** 2) for s in range(3)]
    assert paper_mse(pred, truth) == pytest.approx(np.mean(per_stock), rel=1e-12)
    with pytest.raises(ValueError, match="prediction"):
        paper_mse(pred[:, :3], truth)


@pytest.mark.parametrize("horizon", [1, 3, 5])
def test_random_walk_is_last_price(horizon: int) -> None:
    rng = np.random.default_rng(2)
    prices = 100 + np.cumsum(rng.normal(size=(2, 120)), axis=1)
    split = chronological_split(120)
    steps = split_steps(split, horizon, "test")
    pred = random_walk(prices, steps)
    expected = 0.0
    for s in range(2):
        for t in steps:
            assert pred[s, list(steps).index(t)] == prices[s, t]
            expected += (prices[s, t + horizon] - prices[s, t]) ** 2
    mse = paper_mse(pred, prices[:, steps + horizon])
    assert mse == pytest.approx(expected / (2 * steps.size), rel=1e-12)
    # a pure random walk with unit steps has n-step MSE close to n
    long_walk = np.cumsum(rng.normal(size=(4, 20000)), axis=1)
    long_steps = np.arange(0, 20000 - horizon)
    walk_mse = paper_mse(random_walk(long_walk, long_steps), long_walk[:, long_steps + horizon])
    assert walk_mse == pytest.approx(horizon, rel=0.05)


def test_ar_recovers_known_coefficients() -> None:
    coef = [0.6, -0.3, 0.1]
    x = _ar_process(coef, 20000, seed=3, stocks=2) + 5.0  # a mean of 5 -> intercept 5 * (1 - 0.4)
    steps = np.arange(0, 20000 - 1)
    model = fit_ar(x, steps, order=3, horizon=1)
    np.testing.assert_allclose(model.coef, [coef, coef], atol=0.03)
    np.testing.assert_allclose(model.intercept, 5.0 * (1 - sum(coef)), atol=0.1)
    # extra lags get coefficients near zero
    wide = fit_ar(x, steps, order=6, horizon=1)
    np.testing.assert_allclose(wide.coef[:, 3:], 0.0, atol=0.03)


def test_direct_multistep_ar_recovers_power_of_ar1_coefficient() -> None:
    phi = 0.8
    x = _ar_process([phi], 30000, seed=4)
    model = fit_ar(x, np.arange(30000 - 3), order=1, horizon=3)
    assert model.coef[0, 0] == pytest.approx(phi**3, abs=0.02)


def test_ar_on_differences_recovers_ar_of_changes_and_predicts_consistently() -> None:
    changes = _ar_process([0.5], 20000, seed=5)
    prices = 100 + np.cumsum(changes, axis=1)
    steps = np.arange(1, 20000 - 1)
    model = fit_ar(prices, steps, order=2, horizon=1, differences=True)
    np.testing.assert_allclose(model.coef[0], [0.5, 0.0], atol=0.03)
    # prediction = last price + c + sum_i a_i (x[t-i] - x[t-i-1]), checked by hand
    t = np.array([10, 500])
    pred = predict_ar(model, prices, t)
    for j, step in enumerate(t):
        hand = prices[0, step] + model.intercept[0]
        for i in range(2):
            hand += model.coef[0, i] * (prices[0, step - i] - prices[0, step - i - 1])
        assert pred[0, j] == pytest.approx(hand, rel=1e-12)
    with pytest.raises(ValueError, match="enough history"):
        predict_ar(model, prices, np.array([1]))


def test_ar_prediction_matches_hand_computation_on_levels() -> None:
    x = _ar_process([0.9], 500, seed=6, stocks=3) + 20
    model = fit_ar(x, np.arange(400), order=2, horizon=3)
    steps = np.array([401, 450])
    pred = predict_ar(model, x, steps)
    for s in range(3):
        for j, t in enumerate(steps):
            hand = model.intercept[s] + model.coef[s, 0] * x[s, t] + model.coef[s, 1] * x[s, t - 1]
            assert pred[s, j] == pytest.approx(hand, rel=1e-12)


def test_order_selection_uses_validation_and_finds_true_order() -> None:
    x = _ar_process([0.5, 0.3], 3000, seed=7, stocks=3) + 10
    split = chronological_split(3000)
    model, scores = select_ar(x, split, 1, orders=(1, 2, 3, 8))
    assert set(scores) == {1, 2, 3, 8}
    assert model.order == min(scores, key=scores.get)
    assert scores[2] < scores[1]  # the second lag matters


def test_ar_fit_never_reads_beyond_training_steps() -> None:
    x = _ar_process([0.7], 1000, seed=8, stocks=2) + 10
    split = chronological_split(1000)
    train = split_steps(split, 3, "train")
    planted = x.copy()
    planted[:, split.train_end :] = 1e6
    a = fit_ar(x, train, 4, 3)
    b = fit_ar(planted, train, 4, 3)
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.intercept, b.intercept)


def test_baseline_table_rows() -> None:
    x = np.exp(0.01 * np.cumsum(np.random.default_rng(9).normal(size=(3, 400)), axis=1)) * 50
    rows = baseline_table(StockPrices(x, ("A", "B", "C")), horizons=(1, 3), orders=(1, 2))
    assert [(r["model"], r["horizon"]) for r in rows] == [
        ("random walk", 1), ("ar", 1), ("ar-diff", 1),
        ("random walk", 3), ("ar", 3), ("ar-diff", 3),
    ]
    split = chronological_split(400)
    test = split_steps(split, 3, "test")
    assert rows[3]["test_mse"] == pytest.approx(np.mean((x[:, test + 3] - x[:, test]) ** 2))
