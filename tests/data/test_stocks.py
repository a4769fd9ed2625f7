"""Stock data: the paper's .npy file, CSV loading and its error policy, split, scaling, windows."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from freqnn.data import stocks
from freqnn.data.paths import data_root
from freqnn.data.stocks import (
    DATA_SHAPE,
    Split,
    chronological_split,
    fit_scaler,
    load_csv,
    load_paper_data,
    read_npy,
    read_price_csv,
    split_steps,
    windows,
)

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
SHARED = data_root() / "stocks" / "data.npy"
needs_shared = pytest.mark.skipif(
    not SHARED.is_file(),
    reason=f"shared stock data not found at {SHARED} (set FREQNN_DATA to the data folder)",
)


def _row(day: str, open_: str, close: str = "1.0") -> str:
    return f"{day},{open_},{open_},{open_},{close},{close},1000\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# the shared data.npy


@needs_shared
def test_paper_data_shape_symbols_and_no_python2_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the Python-2 header notice must not escape
        data = load_paper_data(verify_checksum=True)
    assert data.prices.shape == DATA_SHAPE == (50, 2518)
    assert data.prices.dtype == np.float64
    assert data.symbols[0] == "AAPL" and data.symbols[-1] == "XOM" and len(data.symbols) == 50
    assert data.dates is None
    # spot checks against public quotes: opening prices on 2007-01-03
    assert data.prices[data.symbols.index("SPY"), 0] == pytest.approx(142.25, abs=1e-4)
    assert data.prices[data.symbols.index("AAPL"), 0] == pytest.approx(86.29 / 7, abs=1e-2)


@needs_shared
def test_raw_numpy_load_does_warn() -> None:
    # the warning read_npy silences is real (otherwise the test above proves nothing)
    with pytest.warns(UserWarning, match="Python 2"):
        np.load(SHARED)


def test_read_npy_keeps_other_warnings_and_rejects_garbage(tmp_path: Path) -> None:
    good = tmp_path / "a.npy"
    np.save(good, np.ones((2, 3), dtype=np.float32))
    assert read_npy(good).shape == (2, 3)
    bad = _write(tmp_path / "b.npy", "not numpy")
    with pytest.raises(ValueError, match=r"not a readable \.npy"):
        read_npy(bad)
    ints = tmp_path / "c.npy"
    np.save(ints, np.ones(3, dtype=np.int64))
    with pytest.raises(ValueError, match="floating-point"):
        read_npy(ints)
    with pytest.raises(FileNotFoundError):
        read_npy(tmp_path / "missing.npy")


def test_load_paper_data_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="FREQNN_DATA"):
        load_paper_data(tmp_path)
    (tmp_path / "stocks").mkdir()
    np.save(tmp_path / "stocks" / "data.npy", np.ones((50, 10), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(50, 2518\)"):
        load_paper_data(tmp_path)
    np.save(tmp_path / "stocks" / "data.npy", np.ones(DATA_SHAPE, dtype=np.float32))
    with pytest.raises(ValueError, match="sha256"):
        load_paper_data(tmp_path, verify_checksum=True)
    data = load_paper_data(tmp_path)  # no symbols.txt: the built-in list names the rows
    assert data.symbols == tuple(stocks.PAPER_SYMBOLS)
    nan = np.ones(DATA_SHAPE, dtype=np.float32)
    nan[3, 7] = np.nan
    np.save(tmp_path / "stocks" / "data.npy", nan)
    with pytest.raises(ValueError, match="finite positive"):
        load_paper_data(tmp_path)


def test_download_from_file_url_checks_sha256(tmp_path: Path) -> None:
    source = tmp_path / "source.npy"
    np.save(source, np.arange(1.0, 7.0).reshape(2, 3))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="nothing written"):
        stocks.download(root, url=source.as_uri(), sha256="0" * 64)
    assert not (root / "stocks" / "data.npy").exists()
    path = stocks.download(root, url=source.as_uri(), sha256=digest)
    assert path.read_bytes() == source.read_bytes()
    symbols = (root / "stocks" / "symbols.txt").read_text().split()
    assert symbols == stocks.PAPER_SYMBOLS
    assert hashlib.sha256((root / "stocks" / "symbols.txt").read_bytes()).hexdigest() == (
        stocks.SYMBOLS_SHA256
    )
    # an existing file is kept: a failing opener is never called
    def boom(url: str) -> None:
        raise AssertionError("fetched again")

    stocks.download(root, url=source.as_uri(), sha256=digest, opener=boom)  # type: ignore[arg-type]


@needs_shared
def test_download_default_checksum_matches_shared_copy(tmp_path: Path) -> None:
    path = stocks.download(tmp_path, url=SHARED.as_uri())
    assert path.read_bytes() == SHARED.read_bytes()
    assert (tmp_path / "stocks" / "symbols.txt").read_bytes() == (
        SHARED.parent / "symbols.txt"
    ).read_bytes()


# ---------------------------------------------------------------------------------------------
# CSV files


def test_read_good_csv_and_column_choice(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ABC.csv",
        HEADER + _row("2020-01-02", "10.5", "11") + _row("2020-01-03", "10.75", "12") + "\n",
    )
    dates, values = read_price_csv(path)
    assert dates.dtype == np.dtype("datetime64[D]")
    expected = np.array(["2020-01-02", "2020-01-03"], dtype="datetime64[D]")
    np.testing.assert_array_equal(dates, expected)
    np.testing.assert_array_equal(values, [10.5, 10.75])
    _, close = read_price_csv(path, "Adj Close")
    np.testing.assert_array_equal(close, [11.0, 12.0])


def test_newest_first_file_is_reversed(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "A.csv",
        HEADER + _row("2020-01-06", "3") + _row("2020-01-03", "2") + _row("2020-01-02", "1"),
    )
    dates, values = read_price_csv(path)
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])
    assert (np.diff(dates).astype(int) > 0).all()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        (HEADER, "no data rows"),
        ("Date,High,Low\n2020-01-02,1,1\n", "missing column 'Open'"),
        ("Day,Open\n2020-01-02,1\n", "missing column 'Date'"),
        ("Date,Open,Open\n2020-01-02,1,1\n", "duplicate column"),
        (HEADER + "2020-01-02,1,1\n", "line 2: expected 7 fields, got 3"),
        (HEADER + _row("02/01/2020", "1"), "line 2: unparsable date '02/01/2020'"),
        (HEADER + _row("2020-01-02", "1") + _row("2020-01-03", "abc"), "line 3: unparsable"),
        (HEADER + _row("2020-01-02", "null"), "line 2: missing 'Open' value 'null'"),
        (HEADER + _row("2020-01-02", "NaN"), "missing 'Open' value"),
        (HEADER + _row("2020-01-02", "inf"), "finite price > 0"),
        (HEADER + _row("2020-01-02", "-3"), "finite price > 0"),
        (HEADER + _row("2020-01-02", "0"), "finite price > 0"),
        # issue 27 item 12: prices near 1e308 overflowed in the scaling
        (HEADER + _row("2020-01-02", "1") + _row("2020-01-03", "1e308"),
         r"line 3: 'Open' must be a price <= 1e\+30 .*got '1e308'"),
        (HEADER + _row("2020-01-02", "1.7976931348623157e308"), r"line 2: .*price <= 1e\+30"),
        (HEADER + _row("2020-01-02", "2e30"), r"line 2: .*price <= 1e\+30"),
        (
            HEADER + _row("2020-01-02", "1") + _row("2020-01-02", "2"),
            "line 3: dates must be strictly increasing",
        ),
        (
            HEADER + _row("2020-01-02", "1") + _row("2020-01-06", "2") + _row("2020-01-03", "3"),
            "line 4: dates must be strictly increasing: 2020-01-03 follows 2020-01-06",
        ),
    ],
)
def test_malformed_csv_errors(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path / "BAD.csv", text)
    with pytest.raises(ValueError, match=match) as info:
        read_price_csv(path)
    assert "BAD.csv" in str(info.value)


@pytest.mark.parametrize(("data", "match"), [
    (HEADER.encode() + b"2020-01-02,1\xff,1,1,1,1,1\n", "expected UTF-8 text, got the byte 0xff"),
    (HEADER.encode() + b"\xc3(2020-01-02,1,1,1,1,1,1\n", "expected UTF-8 text, got the byte 0xc3"),
    (HEADER.encode() + b"2020-01-02," + b"1" * 200_000 + b",1,1,1,1,1\n",
     "line 2: expected a CSV row, got field larger than field limit"),
], ids=["byte 0xff", "byte 0xc3", "200 kB field"])
def test_undecodable_csv_names_the_file(tmp_path: Path, data: bytes, match: str) -> None:
    """A CSV with invalid UTF-8 or a 200 kB field gave an error without the file name."""
    path = tmp_path / "BAD.csv"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=match) as info:
        read_price_csv(path)
    assert str(info.value).startswith(f"{path}")


def test_missing_policy_drop(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "A.csv",
        HEADER + _row("2020-01-02", "1") + _row("2020-01-03", "null") + _row("2020-01-06", "3"),
    )
    dates, values = read_price_csv(path, missing="drop")
    np.testing.assert_array_equal(values, [1.0, 3.0])
    assert len(dates) == 2
    # null in another column does not matter
    other = _write(tmp_path / "B.csv", HEADER + "2020-01-02,5,null,null,null,null,null\n")
    np.testing.assert_array_equal(read_price_csv(other)[1], [5.0])
    all_null = _write(tmp_path / "C.csv", HEADER + _row("2020-01-02", "null"))
    with pytest.raises(ValueError, match="all missing"):
        read_price_csv(all_null, missing="drop")
    with pytest.raises(ValueError, match="missing: expected 'error' or 'drop'"):
        read_price_csv(path, missing="ffill")  # type: ignore[arg-type]


def test_load_csv_aligns_on_common_dates(tmp_path: Path) -> None:
    folder = tmp_path / "prices"
    folder.mkdir()
    _write(
        folder / "BBB.csv",
        HEADER + _row("2020-01-02", "1") + _row("2020-01-03", "2") + _row("2020-01-06", "3"),
    )
    _write(folder / "AAA.csv", HEADER + _row("2020-01-06", "30") + _row("2020-01-02", "10"))
    with pytest.warns(UserWarning, match="dropped 1 date"):
        data = load_csv(folder)
    assert data.symbols == ("AAA", "BBB")
    np.testing.assert_array_equal(data.prices, [[10.0, 30.0], [1.0, 3.0]])
    assert [str(d) for d in data.dates] == ["2020-01-02", "2020-01-06"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single = load_csv([folder / "BBB.csv"])
    assert single.prices.shape == (1, 3)


def test_load_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no \*\.csv files"):
        load_csv(tmp_path)
    a = _write(tmp_path / "A.csv", HEADER + _row("2020-01-02", "1"))
    sub = tmp_path / "sub"
    sub.mkdir()
    a2 = _write(sub / "A.csv", HEADER + _row("2020-01-02", "1"))
    with pytest.raises(ValueError, match="distinct file names"):
        load_csv([a, a2])
    b = _write(tmp_path / "B.csv", HEADER + _row("2021-01-04", "1"))
    with pytest.raises(ValueError, match="no date is present in every file"):
        load_csv([a, b])
    with pytest.raises(ValueError, match="at least one CSV"):
        load_csv([])


# ---------------------------------------------------------------------------------------------
# split, steps, scaling, windows


def test_split_matches_paper_boundaries() -> None:
    assert chronological_split(2518) == Split(2014, 2266, 2518)
    # Python 2 rounds halves up: 0.8 * 10 = 8, 0.9 * 15 = 13.5 -> 14
    assert chronological_split(15).valid_end == 14
    with pytest.raises(ValueError, match="length"):
        chronological_split(2)
    with pytest.raises(ValueError, match="train, valid"):
        chronological_split(100, 0.8, 0.3)


@pytest.mark.parametrize("horizon", [1, 3, 5])
def test_split_steps_stay_inside_their_period(horizon: int) -> None:
    split = chronological_split(2518)
    train = split_steps(split, horizon, "train")
    valid = split_steps(split, horizon, "valid")
    test = split_steps(split, horizon, "test")
    assert train.max() + horizon < split.train_end  # no training target in validation
    assert valid.min() >= split.train_end and valid.max() + horizon < split.valid_end
    assert test.min() == split.valid_end and test.max() + horizon == split.length - 1
    assert test.size == 252 - horizon  # the paper's test_len
    with pytest.raises(ValueError, match="horizon"):
        split_steps(split, 0, "test")
    with pytest.raises(ValueError, match="horizon"):
        split_steps(split, 300, "test")


def test_scaling_statistics_never_see_validation_or_test() -> None:
    rng = np.random.default_rng(0)
    prices = 50 + np.cumsum(rng.normal(size=(4, 200)), axis=1)
    split = chronological_split(200)
    clean = fit_scaler(prices, split)
    planted = prices.copy()
    planted[:, split.train_end :] = 1e6  # huge values in validation and test
    leaky_check = fit_scaler(planted, split)
    np.testing.assert_array_equal(leaky_check.low, clean.low)
    np.testing.assert_array_equal(leaky_check.high, clean.high)
    np.testing.assert_array_equal(clean.high[:, 0], prices[:, : split.train_end].max(axis=1))
    # the paper's protocol does see them (so the check above can fail)
    whole = fit_scaler(planted, split, "whole")
    assert whole.protocol == "whole" and (whole.high == 1e6).all()
    # the training inputs and targets are the same numbers with or without the plant
    scaled_clean, scaled_planted = clean.transform(prices), leaky_check.transform(planted)
    steps = split_steps(split, 5, "train")
    x_c, y_c = windows(scaled_clean, steps[steps >= 2], 3, 5)
    x_p, y_p = windows(scaled_planted, steps[steps >= 2], 3, 5)
    np.testing.assert_array_equal(x_c, x_p)
    np.testing.assert_array_equal(y_c, y_p)
    with pytest.raises(ValueError, match="protocol"):
        fit_scaler(prices, split, "test")  # type: ignore[arg-type]


def test_scaler_maps_training_range_to_unit_interval_and_back() -> None:
    prices = np.array([[1.0, 3.0, 2.0, 5.0, 9.0], [10.0, 20.0, 15.0, 12.0, 11.0]])
    split = Split(3, 4, 5)
    scaler = fit_scaler(prices, split)
    scaled = scaler.transform(prices)
    np.testing.assert_allclose(scaled[0, :3], [-1.0, 1.0, 0.0])
    np.testing.assert_allclose(scaled[1, :3], [-1.0, 1.0, 0.0])
    assert scaled[0, 4] == pytest.approx((2 * 9 - 4) / 2)  # outside [-1, 1]: range from training
    np.testing.assert_allclose(scaler.inverse(scaled), prices, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scaler.inverse(scaled[:, :, None])[..., 0], prices, atol=1e-12)
    with pytest.raises(ValueError, match="constant rows"):
        fit_scaler(np.ones((2, 5)), split)
    with pytest.raises(ValueError, match="rows"):
        scaler.transform(np.ones((3, 5)))


def test_windows_against_loops() -> None:
    series = np.arange(60.0).reshape(2, 30) ** 1.5
    steps = np.array([4, 7, 20])
    x, y = windows(series, steps, 5, 3)
    for s in range(2):
        for i, t in enumerate(steps):
            assert y[s, i] == series[s, t + 3]
            for lag in range(5):
                assert x[s, i, lag] == series[s, t - lag]
    with pytest.raises(ValueError, match="steps"):
        windows(series, np.array([3]), 5, 1)
    with pytest.raises(ValueError, match="steps"):
        windows(series, np.array([28]), 1, 2)
