"""Daily stock prices: the KDD 2017 SFM data set, CSV price files, the chronological split, scaling.

The data set of Zhang, Aggarwal & Qi, "Stock Price Prediction via Discovering Multi-Frequency
Trading Patterns" (KDD 2017) is a float32 array of shape (50, 2518): daily opening prices
(split-adjusted) of 50 stocks, 2007-01-03 .. 2016-12-30, oldest first, one row per ticker in the
alphabetical order of :data:`PAPER_SYMBOLS`. It is published in the public repository
``z331565360/State-Frequency-Memory-stock-prediction`` as ``dataset/data.npy`` (built there from
Yahoo Finance CSV files); freqnn reads it from ``data_root()/stocks/data.npy`` and never copies it
into the package. :func:`download` is the code path for machines with internet access (URL pinned
to a commit + SHA-256 of the copy freqnn was developed against).

Protocol (that paper's code, kept here):

* split by time: the first ``round(0.8 T)`` days train, the next ``round(0.9 T) - round(0.8 T)``
  validation, the rest test (2014 / 252 / 252 days for T = 2518);
* predict the price ``n`` days ahead at every step, n in {1, 3, 5};
* metric: MSE on de-normalised prices over the test days (:func:`split_steps` gives exactly the
  paper's test steps: input day t and target day t + n both in the test period).

Scaling differs on purpose. The paper's code min-max scales every stock over its *whole* series,
test period included, so the scale of the test prices leaks into training. freqnn's default
takes the statistics from the training period only (``protocol="train"``); the paper's version is
``protocol="whole"`` and is labelled leaky wherever it is used. Both map to [-1, 1] as the paper
does: ``z = (2 x - (hi + lo)) / (hi - lo)``.

CSV files (:func:`read_price_csv`, :func:`load_csv`) follow Yahoo Finance's layout
``Date,Open,High,Low,Close,Adj Close,Volume``, one file per ticker. Policy for bad files, each a
``ValueError`` naming the file and line:

* empty file, no header, header without ``Date`` or the chosen column, rows of the wrong length,
  unparsable dates (ISO ``YYYY-MM-DD`` only) or numbers, infinite or non-positive prices, and
  prices above :data:`MAX_PRICE` (1e30; near 1e308 the scaling overflowed);
* dates must be strictly increasing; a file strictly *decreasing* throughout (the older Yahoo
  export, newest first, which the paper's build script reversed) is reversed, any other order
  (duplicates, a row out of place) is an error;
* missing values (``null`` as Yahoo writes them, ``NaN``, an empty field) in the chosen column are
  an error by default; ``missing="drop"`` drops those rows instead. Only the chosen column is
  read, so ``null`` in another column does not matter.

Tickers are aligned on the dates present in every file; dropping dates that some file lacks
raises a ``UserWarning`` saying how many were dropped.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from ..checks import fail
from ..io import atomic_write, fetch_verified, sha256sum
from .paths import data_root

__all__ = [
    "DATA_SHA256",
    "DATA_SHAPE",
    "DATA_URL",
    "HORIZONS",
    "PAPER_SYMBOLS",
    "PAPER_TEST_MSE",
    "SOURCE_REPOSITORY",
    "SYMBOLS_SHA256",
    "MinMaxScaler",
    "Split",
    "StockPrices",
    "chronological_split",
    "download",
    "fit_scaler",
    "load_csv",
    "load_paper_data",
    "read_npy",
    "read_price_csv",
    "split_steps",
    "windows",
]

SOURCE_REPOSITORY = "z331565360/State-Frequency-Memory-stock-prediction"
_SOURCE_COMMIT = "338664c6758a5b9b1f5f78c624958a330091e2d1"
DATA_URL = (
    f"https://raw.githubusercontent.com/{SOURCE_REPOSITORY}/{_SOURCE_COMMIT}/dataset/data.npy"
)
#: SHA-256 of the shared copy of ``data.npy`` freqnn was developed against.
DATA_SHA256 = "38e4839e5c53840589650bf68f8adb897587ef61444b1fe88a075bc0b0063e7f"
#: SHA-256 of ``symbols.txt`` as :func:`download` writes it (one ticker a line, final newline).
SYMBOLS_SHA256 = "79db00f4f8a659a9d81fb86ecb610068f1689e26884521728887c25ffb27a9e8"
DATA_SHAPE = (50, 2518)
#: Row order of ``data.npy`` (alphabetical); the source repository ships no symbol list.
PAPER_SYMBOLS = (
    "AAPL AMZN BA BAC BHP BRK-B CHL CMCSA CVX D DCM DIS DOW DUK EXC GE GOOGL HD INTC JNJ JPM KO MA "
    "MMM MO MRK MSFT NGG NTT NVS ORCL PEP PFE PG PTR RDS-B RIO SO SPY SYT T TM TOT UNH UPS VALE "
    "VZ WFC WMT XOM"
).split()
HORIZONS = (1, 3, 5)
#: Test MSE (de-normalised prices) of the paper's released SFM models, by horizon in days.
PAPER_TEST_MSE = {1: 5.57, 3: 17.00, 5: 28.90}

PRICE_COLUMNS = ("Open", "High", "Low", "Close", "Adj Close")
_MISSING_TOKENS = frozenset({"", "null", "nan", "na", "n/a", "none"})

Protocol = Literal["train", "whole"]
Part = Literal["train", "valid", "test"]


# ----------------------------------------------------------------------------------------------
# containers


@dataclass(frozen=True)
class StockPrices:
    """Aligned daily prices of several tickers.

    Attributes
    ----------
    prices : ndarray [shape=(S, T), float64]
        Row i is ``symbols[i]``, oldest day first.
    symbols : tuple of str [length S]
    dates : ndarray [shape=(T,), datetime64[D]] or None
        Trading dates when known (CSV files); ``None`` for ``data.npy``, which stores none.
    """

    prices: np.ndarray
    symbols: tuple[str, ...]
    dates: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.prices.ndim != 2 or self.prices.shape[0] != len(self.symbols):
            fail(
                "prices",
                f"a 2-D array (stocks, days) with {len(self.symbols)} rows (one per symbol)",
                f"shape {self.prices.shape}",
            )
        if self.dates is not None and self.dates.shape != (self.prices.shape[1],):
            fail("dates", f"shape ({self.prices.shape[1]},)", f"shape {self.dates.shape}")


@dataclass(frozen=True)
class Split:
    """Chronological split of ``length`` days: ``[0, train_end)``, ``[train_end, valid_end)``,
    ``[valid_end, length)``."""

    train_end: int
    valid_end: int
    length: int

    def bounds(self, part: Part) -> tuple[int, int]:
        """``(start, stop)`` of the days of ``part``."""
        if part == "train":
            return 0, self.train_end
        if part == "valid":
            return self.train_end, self.valid_end
        if part == "test":
            return self.valid_end, self.length
        fail("part", "'train', 'valid' or 'test'", repr(part))
        raise AssertionError  # unreachable, for type checkers


def _round_half_up(x: float) -> int:
    # Python 2's round() (the paper's code) rounds halves away from zero, Python 3's to even.
    return math.floor(x + 0.5)


def chronological_split(length: int, train: float = 0.8, valid: float = 0.1) -> Split:
    """Split ``length`` days by time: the first ``train`` fraction, the next ``valid``, the rest.

    Boundaries are ``round(train * length)`` and ``round((train + valid) * length)`` with halves
    rounded up, as the paper's Python 2 code does (2014 and 2266 for 2518 days).
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 3:
        fail("length", "an int >= 3", repr(length))
    if not (0.0 < train < 1.0) or not (0.0 < valid < 1.0) or train + valid >= 1.0:
        fail("train, valid", "fractions in (0, 1) with train + valid < 1", f"{train}, {valid}")
    train_end = _round_half_up(train * length)
    valid_end = _round_half_up((train + valid) * length)
    if not 0 < train_end < valid_end < length:
        fail("length", "enough days for three non-empty periods", f"{length}")
    return Split(train_end, valid_end, length)


def split_steps(split: Split, horizon: int, part: Part, *, start: int = 0) -> np.ndarray:
    """Steps ``t`` whose input day ``t`` and target day ``t + horizon`` both lie in ``part``.

    For ``part="test"`` these are exactly the paper's test steps (``252 - n`` per stock for the
    2518-day set). Training steps stop ``horizon`` days before the validation period, so no
    training target lies outside the training period (the paper's code lets the last ``n``
    training targets run into validation, and the last ``n`` validation targets into test).

    Parameters
    ----------
    start : int
        First admissible step (e.g. ``order - 1`` for a model that needs ``order`` past days).

    Returns
    -------
    ndarray [shape=(num_steps,), int64]
    """
    _check_horizon(horizon)
    lo, hi = split.bounds(part)
    steps = np.arange(max(lo, start), hi - horizon, dtype=np.int64)
    if steps.size == 0:
        fail("horizon", f"fewer days ahead than the {part} period holds", f"{horizon}")
    return steps


def _check_horizon(horizon: object) -> None:
    if not isinstance(horizon, int | np.integer) or isinstance(horizon, bool) or horizon < 1:
        fail("horizon", "an int >= 1 (days ahead)", repr(horizon))


def windows(
    series: np.ndarray, steps: np.ndarray, order: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lagged inputs and ``horizon``-ahead targets at the given steps.

    Parameters
    ----------
    series : ndarray [shape=(S, T)]
    steps : ndarray [shape=(L,)], int, each in ``[order - 1, T - horizon)``
    order : int, number of past days (the day ``t`` included)
    horizon : int, days ahead

    Returns
    -------
    inputs : ndarray [shape=(S, L, order)], ``inputs[s, l, i] = series[s, steps[l] - i]``
        (most recent day first)
    targets : ndarray [shape=(S, L)], ``series[s, steps[l] + horizon]``
    """
    _check_horizon(horizon)
    if not isinstance(order, int | np.integer) or order < 1:
        fail("order", "an int >= 1", repr(order))
    series = np.asarray(series)
    if series.ndim != 2:
        fail("series", "a 2-D array (stocks, days)", f"shape {series.shape}")
    steps = np.asarray(steps, dtype=np.int64)
    if steps.size and (steps.min() < order - 1 or steps.max() + horizon >= series.shape[1]):
        fail(
            "steps",
            f"values in [{order - 1}, {series.shape[1] - horizon - 1}]",
            f"values in [{steps.min()}, {steps.max()}]",
        )
    lag_index = steps[:, None] - np.arange(order)[None, :]
    return series[:, lag_index], series[:, steps + horizon]


# ----------------------------------------------------------------------------------------------
# scaling


@dataclass(frozen=True)
class MinMaxScaler:
    """Per-stock min-max map of prices to [-1, 1] (the paper's form).

    ``z = (2 x - (high + low)) / (high - low)`` and back ``x = (z (high - low) + high + low) / 2``.

    Attributes
    ----------
    low, high : ndarray [shape=(S, 1)]
    protocol : "train" (statistics from the training period) or "whole" (the paper's leaky one)
    """

    low: np.ndarray
    high: np.ndarray
    protocol: str

    def transform(self, prices: np.ndarray) -> np.ndarray:
        """Scale ``prices`` [shape=(S, ...)]."""
        low, high = self._broadcast(prices)
        return (2.0 * prices - (high + low)) / (high - low)

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        """De-normalise ``scaled`` [shape=(S, ...)] back to prices."""
        low, high = self._broadcast(scaled)
        return (scaled * (high - low) + (high + low)) / 2.0

    def _broadcast(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[0] != self.low.shape[0]:
            fail("prices", f"an array with {self.low.shape[0]} rows (stocks)", f"shape {x.shape}")
        extra = (1,) * (x.ndim - 1)
        s = self.low.shape[0]
        return self.low.reshape((s, *extra)), self.high.reshape((s, *extra))


def fit_scaler(prices: np.ndarray, split: Split, protocol: Protocol = "train") -> MinMaxScaler:
    """Min-max statistics per stock from the training days (default) or the whole series.

    ``protocol="whole"`` reproduces the paper's code and leaks the range of the validation and
    test prices into training; use it only to compare with the paper.
    """
    prices = np.asarray(prices, dtype=np.float64)
    if prices.ndim != 2 or prices.shape[1] != split.length:
        fail("prices", f"a 2-D array (stocks, {split.length} days)", f"shape {prices.shape}")
    if protocol == "train":
        window = prices[:, : split.train_end]
    elif protocol == "whole":
        window = prices
    else:
        fail("protocol", "'train' (no leak) or 'whole' (the paper's leaky scaling)", repr(protocol))
    low = window.min(axis=1, keepdims=True)
    high = window.max(axis=1, keepdims=True)
    flat = np.flatnonzero(high[:, 0] <= low[:, 0])
    if flat.size:
        fail("prices", "a price range > 0 for every stock", f"constant rows {flat.tolist()}")
    return MinMaxScaler(low, high, protocol)


# ----------------------------------------------------------------------------------------------
# the paper's data.npy


def read_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a ``.npy`` price array, silencing only numpy's Python-2-header notice.

    ``data.npy`` was saved under Python 2 (its header says ``(50L, 2518L)``); numpy parses it
    with a fallback and warns that it did. The warning is harmless, so exactly that one is
    filtered; any other warning still shows. ``allow_pickle`` stays off.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*created on Python 2", category=UserWarning)
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"{path}: not a readable .npy array ({err})") from err
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        fail(str(path), "a floating-point .npy array", f"dtype {getattr(array, 'dtype', None)}")
    return array


def load_paper_data(
    root: str | os.PathLike[str] | None = None, *, verify_checksum: bool = False
) -> StockPrices:
    """The KDD 2017 data set from ``data_root(root)/stocks/``: prices (50, 2518), symbols.

    ``symbols.txt`` (one ticker a line) is optional; without it :data:`PAPER_SYMBOLS` names the
    rows. ``verify_checksum=True`` also compares ``data.npy`` with :data:`DATA_SHA256`.
    """
    folder = data_root(root) / "stocks"
    path = folder / "data.npy"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: stock data not found; set FREQNN_DATA (or --data-root) to the folder "
            f"holding stocks/data.npy, or fetch it with freqnn.data.stocks.download() "
            f"({DATA_URL})"
        )
    if verify_checksum:
        digest = sha256sum(path)
        if digest != DATA_SHA256:
            raise ValueError(f"{path}: sha256 expected {DATA_SHA256}, got {digest}")
    array = read_npy(path)
    if array.shape != DATA_SHAPE:
        fail(str(path), f"shape {DATA_SHAPE} (stocks, days)", f"shape {array.shape}")
    prices = array.astype(np.float64)
    bad = ~np.isfinite(prices) | (prices <= 0)
    if bad.any():
        fail(str(path), "finite positive prices", f"{int(bad.sum())} bad value(s)")
    symbols_path = folder / "symbols.txt"
    if symbols_path.is_file():
        symbols = tuple(symbols_path.read_text().split())
        if len(symbols) != DATA_SHAPE[0]:
            fail(str(symbols_path), f"{DATA_SHAPE[0]} tickers", f"{len(symbols)}")
    else:
        symbols = tuple(PAPER_SYMBOLS)
    return StockPrices(prices, symbols, None)


def download(
    root: str | os.PathLike[str] | None = None,
    *,
    url: str = DATA_URL,
    sha256: str = DATA_SHA256,
    force: bool = False,
    opener: Callable[[str], IO[bytes]] | None = None,
) -> Path:
    """Fetch ``data.npy`` into ``data_root(root)/stocks/`` and write ``symbols.txt``.

    The bytes are checked against ``sha256`` before anything is written (atomically), so a
    failed or corrupt download leaves no file behind. An existing file is kept unless ``force``.
    ``opener`` (default ``urllib.request.urlopen``) is there for tests and proxies; ``url`` may
    be a ``file://`` URL.

    Returns
    -------
    Path of ``data.npy``.
    """
    folder = data_root(root) / "stocks"
    target = folder / "data.npy"
    if not (target.is_file() and not force):
        payload = fetch_verified(url, sha256, opener)
        with atomic_write(target, "wb") as handle:
            handle.write(payload)
    symbols_path = folder / "symbols.txt"
    if not symbols_path.is_file():
        with atomic_write(symbols_path, "w") as handle:
            handle.write("\n".join(PAPER_SYMBOLS) + "\n")
    return target


# ----------------------------------------------------------------------------------------------
# CSV price files (Yahoo Finance layout)


#: The largest price a CSV file may hold: far beyond any share price, and small enough that the
#: min-max scaling (2 x - (hi + lo)) / (hi - lo) and the float32 model inputs stay finite.
MAX_PRICE = 1e30


def _bad(path: Path, line: int | None, message: str) -> ValueError:
    where = f"{path}" if line is None else f"{path}, line {line}"
    return ValueError(f"{where}: {message}")


def read_price_csv(
    path: str | os.PathLike[str],
    column: str = "Open",
    *,
    missing: Literal["error", "drop"] = "error",
) -> tuple[np.ndarray, np.ndarray]:
    """Dates and one price column of a Yahoo-Finance-style CSV file, oldest first.

    Parameters
    ----------
    path : CSV file with a header holding ``Date`` and ``column``
    column : which column to read, e.g. ``"Open"`` (the paper's), ``"Close"``, ``"Adj Close"``
    missing : ``"error"`` (default) or ``"drop"`` rows whose ``column`` is ``null``/NaN/empty

    Returns
    -------
    dates : ndarray [shape=(T,), datetime64[D]], strictly increasing
    prices : ndarray [shape=(T,), float64], finite and > 0

    Raises
    ------
    ValueError
        for any malformed file (see the module docstring), naming the file and line.
    """
    if missing not in ("error", "drop"):
        fail("missing", "'error' or 'drop'", repr(missing))
    if not isinstance(column, str) or not column:
        fail("column", "a column name such as 'Open' or 'Adj Close'", repr(column), TypeError)
    path = Path(path)
    rows: list[list[str]] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            rows.extend(reader)
        except UnicodeDecodeError as error:  # named no file
            raise _bad(path, None, f"expected UTF-8 text, got the byte "
                       f"0x{error.object[error.start]:02x} that is not UTF-8 (near line "
                       f"{reader.line_num + 1})") from None
        except csv.Error as error:  # e.g. a field over csv.field_size_limit(): named no file
            raise _bad(path, reader.line_num, f"expected a CSV row, got {error}") from None
    # blank lines (e.g. a trailing newline pair) carry nothing
    numbered = [(i + 1, row) for i, row in enumerate(rows) if any(cell.strip() for cell in row)]
    if not numbered:
        raise _bad(path, None, "empty file (expected a header line 'Date,Open,High,...')")
    header_line, header = numbered[0]
    names = [cell.strip() for cell in header]
    for required in ("Date", column):
        if required not in names:
            raise _bad(
                path, header_line, f"missing column {required!r} (header has {names})"
            )
    if len(set(names)) != len(names):
        raise _bad(path, header_line, f"duplicate column names in header {names}")
    date_col, price_col = names.index("Date"), names.index(column)
    body = numbered[1:]
    if not body:
        raise _bad(path, None, "no data rows after the header")

    dates: list[_dt.date] = []
    prices: list[float] = []
    lines: list[int] = []
    for line, row in body:
        if len(row) != len(names):
            raise _bad(path, line, f"expected {len(names)} fields, got {len(row)}")
        text = row[date_col].strip()
        try:
            day = _dt.date.fromisoformat(text)
        except ValueError:
            raise _bad(path, line, f"unparsable date {text!r} (expected YYYY-MM-DD)") from None
        cell = row[price_col].strip()
        if cell.lower() in _MISSING_TOKENS:
            if missing == "drop":
                continue
            raise _bad(
                path,
                line,
                f"missing {column!r} value {cell!r} on {text} "
                "(pass missing='drop' to skip such rows)",
            )
        try:
            value = float(cell)
        except ValueError:
            raise _bad(path, line, f"unparsable {column!r} value {cell!r}") from None
        if not math.isfinite(value) or value <= 0.0:
            raise _bad(path, line, f"{column!r} must be a finite price > 0, got {cell!r}")
        if value > MAX_PRICE:  # prices near 1e308 overflowed in the scaling (issue 27 item 12)
            raise _bad(path, line, f"{column!r} must be a price <= {MAX_PRICE:g} (larger ones "
                       f"overflow the scaling and float32 inputs), got {cell!r}")
        dates.append(day)
        prices.append(value)
        lines.append(line)
    if not dates:
        raise _bad(path, None, f"no rows with a {column!r} value (all missing)")

    ordinals = np.array([d.toordinal() for d in dates], dtype=np.int64)
    steps = np.diff(ordinals)
    if len(ordinals) > 1 and (steps < 0).all():
        # the older Yahoo export lists the newest day first: reverse it as a whole
        ordinals, prices, lines, dates = ordinals[::-1], prices[::-1], lines[::-1], dates[::-1]
        steps = np.diff(ordinals)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise _bad(
            path,
            lines[i],
            f"dates must be strictly increasing: {dates[i]} follows {dates[i - 1]}",
        )
    day_array = np.array([d.isoformat() for d in dates], dtype="datetime64[D]")
    return day_array, np.asarray(prices, dtype=np.float64)


def load_csv(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    column: str = "Open",
    *,
    missing: Literal["error", "drop"] = "error",
) -> StockPrices:
    """Load one CSV file per ticker and align them on the dates present in every file.

    Parameters
    ----------
    paths : a folder (every ``*.csv`` in it, sorted by name) or a list of files; the ticker is
        the file name without ``.csv``
    column, missing : as in :func:`read_price_csv`

    Returns
    -------
    StockPrices with ``dates`` set.
    """
    if isinstance(paths, str | os.PathLike):
        folder = Path(paths)
        if folder.is_dir():
            files: Sequence[Path] = sorted(folder.glob("*.csv"))
            if not files:
                raise ValueError(f"{folder}: no *.csv files in this folder")
        else:
            files = [folder]
    else:
        files = [Path(p) for p in paths]
        if not files:
            fail("paths", "at least one CSV file", "an empty list")
    symbols = tuple(f.stem for f in files)
    if len(set(symbols)) != len(symbols):
        fail("paths", "one file per ticker (distinct file names)", f"{list(symbols)}")
    series = [read_price_csv(f, column, missing=missing) for f in files]
    common = series[0][0]
    for days, _ in series[1:]:
        common = np.intersect1d(common, days, assume_unique=True)
    if common.size == 0:
        raise ValueError(f"{[str(f) for f in files]}: no date is present in every file")
    union = series[0][0]
    for days, _ in series[1:]:
        union = np.union1d(union, days)
    if union.size > common.size:
        warnings.warn(
            f"aligned {len(files)} tickers on {common.size} common dates; dropped "
            f"{union.size - common.size} date(s) missing from some file",
            UserWarning,
            stacklevel=2,
        )
    rows = [values[np.isin(days, common)] for days, values in series]
    return StockPrices(np.stack(rows), symbols, common)
