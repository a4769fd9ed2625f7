"""Stock baselines: random walk, AR fits against known processes, the paper's metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

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


# ---------------------------------------------------------------------------------------------
# the runner task

def _paper_like_root(tmp_path: Path, plant: float | None = None) -> Path:
    """A data root with a synthetic stocks/data.npy of the paper's shape (50, 2518)."""
    rng = np.random.default_rng(10)
    prices = 50 * np.exp(0.01 * np.cumsum(rng.normal(size=(50, 2518)), axis=1))
    if plant is not None:
        prices[:, 2266:] = plant  # the test period only
    (tmp_path / "stocks").mkdir(parents=True)
    np.save(tmp_path / "stocks" / "data.npy", prices.astype(np.float32))
    return tmp_path


@pytest.mark.parametrize("target", ["price", "change"])
def test_task_items_hold_no_test_period_data(tmp_path: Path, target: str) -> None:
    from freqnn.tasks.stocks import DEFAULTS, build

    common = dict(DEFAULTS, horizon=3, target=target, train_chunk=0)
    clean = build(dict(common, data_root=str(_paper_like_root(tmp_path / "a"))))
    planted = build(dict(common, data_root=str(_paper_like_root(tmp_path / "b", 1e6))))
    assert clean.info["high"] == planted.info["high"]
    for part in ("train", "val"):
        a, b = getattr(clean, part), getattr(planted, part)
        for i in (0, 49):
            for key in a[i]:
                torch.testing.assert_close(a[i][key], b[i][key], rtol=0, atol=0)
    assert len(clean.train[0]["x"]) == 2014 and len(clean.val[0]["x"]) == 2266
    assert int(clean.test[0]["mask"].sum()) == 252 - 3
    # the paper's leaky scaling does move the training inputs (so the check above can fail)
    leaky = build(dict(common, data_root=str(tmp_path / "b"), scaling="whole"))
    assert not torch.equal(leaky.train[0]["x"], planted.train[0]["x"])
    assert leaky.info["scaling"] == "whole"


def test_task_metrics_match_baselines(tmp_path: Path) -> None:
    from freqnn.data.stocks import load_paper_data
    from freqnn.tasks import collate
    from freqnn.tasks.stocks import DEFAULTS, build, loss, metrics

    root = _paper_like_root(tmp_path)
    prices = load_paper_data(root).prices
    split = chronological_split(2518)
    test = split_steps(split, 5, "test")
    rw = paper_mse(random_walk(prices, test), prices[:, test + 5])
    for target in ("price", "change"):
        data = build(dict(DEFAULTS, data_root=str(root), horizon=5, target=target))
        batch = collate([data.test[i] for i in range(50)])
        sums = metrics(batch["y"].double(), batch)  # a perfect model
        assert float(sums["mse"][0] / sums["mse"][1]) < 1e-6
        assert float(sums["loss"][0]) < 1e-9
        assert float(sums["rw_mse"][0] / sums["rw_mse"][1]) == pytest.approx(rw, rel=1e-9)
        assert int(sums["mse"][1]) == 50 * (252 - 5)
        zero = metrics(torch.zeros_like(batch["y"]), batch)
        if target == "change":  # output 0 is the random walk
            assert float(zero["mse"][0] / zero["mse"][1]) == pytest.approx(rw, rel=1e-6)
        # the loss ignores unscored steps: garbage there changes nothing
        out = batch["y"].clone()
        out[~batch["mask"]] = 1e3
        assert float(loss(out, batch)) == 0.0


def test_task_train_chunks_cover_every_training_step(tmp_path: Path) -> None:
    from freqnn.tasks.stocks import DEFAULTS, build

    root = _paper_like_root(tmp_path)
    whole = build(dict(DEFAULTS, data_root=str(root), horizon=1, train_chunk=0))
    chunked = build(dict(DEFAULTS, data_root=str(root), horizon=1, train_chunk=500))
    assert len(chunked.train) == 50 * 5  # 2014 days -> 4 x 500 + 14
    first = torch.cat([chunked.train[i]["x"] for i in range(5)])
    torch.testing.assert_close(first, whole.train[0]["x"], rtol=0, atol=0)
    assert sum(int(chunked.train[i]["mask"].sum()) for i in range(5)) == 2013
    with pytest.raises(ValueError, match="train_chunk"):
        build(dict(DEFAULTS, data_root=str(root), train_chunk=-1))
    with pytest.raises(ValueError, match="target"):
        build(dict(DEFAULTS, data_root=str(root), target="returns"))


def _random_walk_csvs(folder: Path, end: str, seed: int, yahoo_columns: bool) -> Path:
    """Daily prices of two tickers from 2020-01-01 to ``end`` as Yahoo-Finance CSV files (all
    columns) or Date,Open only."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    days = np.arange(np.datetime64("2020-01-01"), np.datetime64(end))
    for name in ("AAA", "BBB"):
        price = 20 * np.exp(0.02 * np.cumsum(rng.normal(size=days.size)))
        if yahoo_columns:
            lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
            lines += [f"{d},{p:.4f},{p:.4f},{p:.4f},{p:.4f},{p:.4f},100" for d, p in
                      zip(days, price, strict=True)]
        else:
            lines = ["Date,Open"] + [f"{d},{p:.4f}" for d, p in zip(days, price, strict=True)]
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_runner_trains_on_csv_files(tmp_path: Path) -> None:
    from freqnn.cli import main

    folder = _random_walk_csvs(tmp_path / "csv", "2020-04-10", seed=11, yahoo_columns=True)
    run = tmp_path / "run"
    code = main(["train", "stocks", "--model", "lstm", "--csv", str(folder), "--horizon", "3",
                 "--epochs", "2", "--batch-size", "2", "--run-dir", str(run), "--no-progress",
                 "--threads", "1"])
    assert code == 0
    results = json.loads((run / "results.json").read_text())
    assert results["info"]["symbols"] == ["AAA", "BBB"] and results["info"]["horizon"] == 3
    assert np.isfinite(results["test"]["mse"]) and results["test"]["rw_mse"] > 0
    # predictions rebuilt from the checkpoint give the runner's test metric; the plot is written
    from freqnn.tasks.stocks import plot_predictions, predict_run

    again = predict_run(run)
    assert again["mse"] == pytest.approx(results["test"]["mse"], rel=1e-5)
    assert again["pred"].shape == again["truth"].shape == (2, again["steps"].size)
    from freqnn.tasks.stocks import run_rows, run_table

    (row,) = run_rows([run])
    assert row["test_mse"] == results["test"]["mse"] and row["horizon"] == 3
    assert 0 <= row["stocks_beating_rw"] <= row["stocks"] == 2
    assert "| 3 | lstm | train | price | 0 |" in run_table([row])
    png = plot_predictions({"lstm": run}, tmp_path / "plot.png", symbols=("BBB",))
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_diebold_mariano_sign_and_formula() -> None:
    from freqnn.tasks.stocks import diebold_mariano

    rng = np.random.default_rng(12)
    truth = rng.normal(size=(5, 300))
    good = truth + 0.1 * rng.normal(size=truth.shape)
    bad = truth + 1.0 * rng.normal(size=truth.shape)
    diff, t = diebold_mariano(good, bad, truth, 1)
    assert diff < 0 and t < -10
    assert diebold_mariano(bad, good, truth, 1)[1] == pytest.approx(-t)
    assert np.isnan(diebold_mariano(good, good, truth, 3)[1])
    # horizon 3: Newey-West with 2 lags, Bartlett weights 2/3 and 1/3, by hand
    d = np.mean((good - truth) ** 2 - (bad - truth) ** 2, axis=0)
    c = d - d.mean()
    var = np.mean(c * c)
    var += 2 * (2 / 3) * np.sum(c[1:] * c[:-1]) / c.size
    var += 2 * (1 / 3) * np.sum(c[2:] * c[:-2]) / c.size
    expected = d.mean() / np.sqrt(var / d.size)
    assert diebold_mariano(good, bad, truth, 3)[1] == pytest.approx(expected)


def test_runner_trains_the_stock_sfm_variant(tmp_path: Path) -> None:
    import shutil

    from freqnn.cli import main
    from freqnn.models import build_model
    from freqnn.tasks.stocks import predict_run, run_rows

    folder = _random_walk_csvs(tmp_path / "csv", "2020-03-20", seed=12, yahoo_columns=False)
    run = tmp_path / "sfm-stock"
    code = main(["train", "stocks", "--set", "model=sfm-stock", "--csv", str(folder),
                 "--horizon", "1", "--epochs", "1", "--batch-size", "2", "--run-dir", str(run),
                 "--no-progress", "--threads", "1"])
    assert code == 0
    results = json.loads((run / "results.json").read_text())
    _, counts = build_model("sfm-stock", 1, 1, "step", hidden_size=10, state_size=10,
                            num_freqs=10)
    # D = M = 10, K = 10, N = 1: (4D + K) (N + D + 1) + K + D, plus the read-out D + 1
    assert results["model"] == "sfm-stock" and results["params"] == counts["params"] == 631
    assert results["sfm_params"] == counts["sfm_params"] == 3791  # the standard SFM's budget
    assert predict_run(run)["mse"] == pytest.approx(results["test"]["mse"], rel=1e-5)
    # table order: sfm, asfm, sfm-stock, lstm, gru (labels only: the same checkpoint)
    for other in ("gru", "sfm"):
        shutil.copytree(run, tmp_path / other)
        path = tmp_path / other / "results.json"
        path.write_text(json.dumps({**results, "model": other}))
    rows = run_rows([tmp_path / "gru", run, tmp_path / "sfm"])
    assert [r["model"] for r in rows] == ["sfm", "sfm-stock", "gru"]


def test_stocks_command_has_no_train(capsys: pytest.CaptureFixture[str]) -> None:
    """Models train through the runner (`freqnn train stocks`); the task's own command only
    reads run directories."""
    from freqnn.tasks import TASKS
    from freqnn.tasks.stocks import main

    assert TASKS["stocks"] == "freqnn.tasks.stocks"
    with pytest.raises(SystemExit) as error:
        main(["train", "--model", "lstm"])
    assert error.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err
    assert main(["table", "/nonexistent/run"]) == 2
    assert capsys.readouterr().err == ("python -m freqnn.tasks.stocks: error: "
                                       "/nonexistent/run/results.json: not a finished run (no "
                                       "results.json)\n")
