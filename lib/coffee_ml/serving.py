"""Predict from the registry: what the CLI and the trading sidebar show.

`predict(symbol, interval, model, version)` loads a registry version, reads from the store only
the candles that version needs (window + feature look-back + burn-in, not the whole history) and
returns a `Forecast` for the next H bars: prices, intervals per level, confidence.

`Predictor` is the hand-off to trading: the symbol's production model or ensemble
(`registry.production`), or a named registry model at a version, the predicted path with its
interval and confidence, the model's version and training date, the tested edge per step, and the
current regime. It refuses stale data (saying how stale) and stays warm: the model is loaded once
(again only when another version is promoted or saved) and each call reads only the candles newer
than those it holds, recomputing only when a new bar has closed. No store read happens at all
while the bar after the newest closed one is still open (no newer closed candle can exist), and
`poll_s` bounds how often a service asks the store otherwise. `sidebar()` keeps one warm
`Predictor` per symbol, interval and backend in the process.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml.data.schema import interval_timedelta
from coffee_ml.evaluation.verdict import beats_naive
from coffee_ml.forecast import Forecast, level_tag
from coffee_ml.models.persistence import LoadedModel, load_model

REGIME_METHOD = "rules"  # the sidebar's regime: deterministic and instant (HMM regimes need an EM fit)
REGIME_BARS = 500  # trend window (168) + ADX warm-up, with room: the rules read nothing older
STALE_BARS = 2  # default limit on the newest closed candle's age, in bars


class StaleDataError(ValueError):
    """The newest stored candle is older than the limit: a forecast from it would mislead."""

    def __init__(self, message: str, age: pd.Timedelta | None = None) -> None:
        super().__init__(message)
        self.age = age


class NoCandlesError(ValueError):
    """The store holds no (closed) candles of the symbol and interval to forecast from."""


class OptionError(ValueError):
    """A request option the model cannot answer (`option`: "horizon" or "level"), e.g. more steps
    than it forecasts; the message says what it can do."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def predict(
    symbol: str,
    interval: str,
    model: str,
    version: str = "production",
    *,
    backend: str = "auto",
    end: str | None = None,
    root: Path | None = None,
) -> Forecast:
    """Forecast the next H bars after the newest stored candle (or the last one before `end`)."""
    from coffee_ml.data import open_store

    loaded = load_model(symbol, interval, model, version, root=root)
    candles = open_store(backend).load_last(symbol, interval, loaded.history_bars, end=end)
    if candles.empty:
        raise ValueError(f"no {symbol} {interval} candles in the store to forecast from")
    return loaded.predict(candles)


def _age(delta: pd.Timedelta) -> str:
    """A duration as people say it: '3 h 20 min', '361 days 14 h'."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [
        f"{days} day{'s' if days > 1 else ''}" if days else "",
        f"{hours} h" if hours else "",
        f"{mins} min" if mins and not days else "",
    ]
    return " ".join(p for p in parts if p) or "0 min"


@dataclass(frozen=True, eq=False)
class Prediction:
    """One answer for the sidebar: the forecast path and where it came from."""

    symbol: str
    interval: str
    model: str
    version: str
    trained_at: str
    as_of: pd.Timestamp  # open time of the newest candle the forecast reads
    last_close: float
    level: float
    path: pd.DataFrame  # step, timestamp, price, lower, upper, confidence (%), up
    regime: dict[str, Any]
    data_age: pd.Timedelta
    snapshot: bool  # the bundled sample: a frozen history, judged as of its own end
    edge: list[dict[str, Any]]  # per step: did the version beat naive on its test split (`step_edges`)

    def to_json(self) -> dict[str, Any]:
        """The platform's response shape (timestamps ISO 8601 UTC, the open time of the forecast
        bar; confidences in %, null where unknown), plus what a consumer needs to trust it: the
        symbol, the interval level of `lower`/`upper`, the newest candle read (`as_of`) and
        whether that is the frozen bundled sample, and per step whether the version has a tested
        edge over naive there (`edge`)."""
        frame = self.path[["timestamp", "price", "lower", "upper", "confidence"]].astype(object)
        frame["timestamp"] = [t.isoformat() for t in self.path["timestamp"]]
        rows = frame.where(self.path[frame.columns].notna(), None).to_dict(orient="records")
        return {
            "predictions": rows,
            "model": self.model,
            "version": self.version,
            "trained_at": self.trained_at,
            "regime": {"name": self.regime["regime"], "confidence": self.regime["confidence"]},
            "symbol": self.symbol,
            "interval": self.interval,
            "level": self.level,
            "as_of": self.as_of.isoformat(),
            "snapshot": self.snapshot,
            "edge": self.edge,
        }

    def text(self) -> str:
        """What the sidebar shows, as lines: the horizon's price, interval, confidence, model, regime."""
        last = self.path.iloc[-1]
        move = last["price"] / self.last_close - 1
        side = "up" if last["up"] else "down"
        data = (
            "the bundled sample, a frozen history: as of its last candle"
            if self.snapshot
            else f"newest candle closed {_age(self.data_age)} ago"
        )
        return "\n".join(
            [
                f"{self.symbol} {self.interval} · {int(last['step'])} bars ahead (the bar opening "
                f"{last['timestamp']:%Y-%m-%d %H:%M} UTC)",
                f"  predicted price  {last['price']:,.2f}  ({move:+.2%} from {self.last_close:,.2f})",
                f"  {self.level:.0%} interval    {last['lower']:,.2f} .. {last['upper']:,.2f}",
                f"  confidence       {last['confidence']:.1f}% that the price goes {side}",
                f"  model            {self.model} {self.version}, trained {self.trained_at[:16].replace('T', ' ')} UTC",
                f"  market regime    {self.regime['regime']} ({self.regime['confidence']:.1f}% confidence, "
                f"{self.regime['method']}, since {'at least ' if self.regime['since_bound'] else ''}"
                f"{self.regime['since']:%Y-%m-%d %H:%M})",
                f"  tested edge      {self.edge_text()}",
                f"  data             {self.symbol} {self.interval} up to {self.as_of:%Y-%m-%d %H:%M} UTC ({data})",
            ]
        )

    def edge_text(self) -> str:
        """Where the version beat naive on its test split: 'steps 1, 2 of 24', or none."""
        steps = [e["step"] for e in self.edge if e["edge"]]
        if all(e["edge"] is None for e in self.edge):
            return "untested (the version recorded no test scores per step)"
        if not steps:
            return f"none: no step of {len(self.edge)} beats naive on its test split (DM p < 0.05)"
        return (
            f"beats naive at step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))} of "
            f"{len(self.edge)} on its test split (DM p < 0.05)"
        )


def step_edges(metadata: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """Per step 1..`steps`: does the version beat naive there (MAE, Diebold-Mariano, the one
    verdict rule `evaluation.verdict.beats_naive`) on its own test split, which it was neither
    fitted, early-stopped nor calibrated on? `edge` is None where the version recorded no test
    scores for the step (saved without a test split)."""
    table = (metadata.get("metrics_by_horizon") or {}).get("test") or {}
    out = []
    for step in range(1, steps + 1):
        scores = table.get(str(step))
        known = isinstance(scores, dict) and all(
            isinstance(scores.get(k), (int, float)) for k in ("skill", "dm_pvalue", "dm_stat")
        )
        finite = known and all(math.isfinite(scores[k]) for k in ("skill", "dm_pvalue", "dm_stat"))
        out.append(
            {
                "step": step,
                "edge": beats_naive(scores) if known else None,
                "skill": round(float(scores["skill"]), 6) if finite else None,
                "dm_pvalue": round(float(scores["dm_pvalue"]), 6) if finite else None,
            }
        )
    return out


class Predictor:
    """The production forecast of one symbol and interval, kept warm between calls.

    `model` (a registry name) forecasts with that model's `version` ("latest", "vNNNN" or
    "production") instead of whatever serves the symbol. `poll_s`: the fewest seconds between two
    reads of the store for newer candles (0: every call; a service answering many requests a
    second sets it to about a second). `max_age`: the oldest the newest closed candle may be (default `STALE_BARS` bars) before
    `predict` refuses with how stale the data are. Candles of the bundled sample, and nothing
    newer, are a frozen history: they are forecast as of their own end, and the answer says so.
    `end`: forecast as of the last closed bar before `end` (a research run's as-of date; no
    staleness check). A candle still open at `now` is never read.
    """

    def __init__(
        self,
        symbol: str,
        interval: str,
        *,
        backend: str = "auto",
        level: float = 0.8,
        max_age: str | pd.Timedelta | None = None,
        end: str | pd.Timestamp | None = None,
        root: Path | None = None,
        model: str | None = None,
        version: str = "latest",
        poll_s: float = 0.0,
    ) -> None:
        if not 0 < level < 1:
            raise ValueError(f"level {level}: expected an interval level between 0 and 1, e.g. 0.8")
        self.symbol = symbol
        self.interval = interval
        self.backend = backend
        self.level = level
        self.max_age = max_age
        self.end = end
        self.root = root
        self.model = model
        self.version = version
        self.poll_s = poll_s
        self._step = interval_timedelta(interval)
        self._limit = pd.Timedelta(max_age) if max_age is not None else STALE_BARS * self._step
        if self._limit <= pd.Timedelta(0):
            raise ValueError(f"max_age {max_age!r}: expected a positive duration such as 3h")
        self._lock = threading.Lock()  # one warm predictor serves every thread of a process
        self.loaded_: LoadedModel | None = None
        self.store_: Any = None
        self.sample_end_: pd.Timestamp | None | bool = False  # False: not asked yet
        self.candles_: pd.DataFrame | None = None
        self.bars_ = 0  # how many bars the model and the regime asked for when candles_ was loaded
        # (model path, newest bar) -> forecast, regime, {horizon: (path, edges)}
        self.answer_: tuple[Any, ...] | None = None
        self.polled_ = -math.inf  # time.monotonic() of the last read of the store
        self.refreshing_ = False  # a background read of newer candles is under way (poll_s > 0)

    def _model(self) -> LoadedModel:
        from coffee_ml import registry

        ref = (
            registry.production(self.symbol, self.interval, self.root)
            if self.model is None
            else registry.resolve(self.symbol, self.interval, self.model, self.version, self.root)
        )
        if self.loaded_ is None or self.loaded_.ref.path != ref.path:
            self.loaded_ = load_model(ref.symbol, ref.interval, ref.model, ref.version, root=self.root)
        return self.loaded_

    def _candles(self, bars: int, now: pd.Timestamp) -> tuple[pd.DataFrame, pd.Timestamp | None]:
        """The newest `bars` closed candles: a warm predictor reads only those after the ones it
        holds, and all of them again only when a newly promoted model needs a longer history."""
        from coffee_ml.data import open_store

        if self.candles_ is not None and bars <= self.bars_:
            if self.end is None and now < self.candles_.index[-1] + 2 * self._step:  # the next bar is open
                return self._closed(now), self.sample_end_
            if self.poll_s > 0:  # a service: answer from memory, ask the store at most every poll_s, aside
                if time.monotonic() - self.polled_ >= self.poll_s and self.end is None and not self.refreshing_:
                    self.refreshing_, self.polled_ = True, time.monotonic()
                    threading.Thread(target=self._refresh, args=(bars,), daemon=True).start()
                return self._closed(now), self.sample_end_
        if self.store_ is None:
            self.store_ = open_store(self.backend)
        store = self.store_
        self.polled_ = time.monotonic()
        with store.backend.session():
            if self.candles_ is None or bars > self.bars_:
                self.candles_, self.bars_ = store.load_last(self.symbol, self.interval, bars, end=self.end), bars
            elif self.end is None:
                newer = store.load_candles(self.symbol, self.interval, start=self.candles_.index[-1] + self._step)
                if len(newer):
                    self.candles_ = pd.concat([self.candles_, newer]).iloc[-bars:]
            if self.sample_end_ is False:  # loaded with the store, never changes: asked once
                self.sample_end_ = store.sample_end(self.symbol, self.interval)
        return self._closed(now), self.sample_end_

    @property
    def warm(self) -> bool:
        """Holds a loaded model and its last answer: a call now reads at most a small JSON file, unless
        the next bar has closed and must be read (a service then answers it off its event loop)."""
        return (
            self.answer_ is not None
            and self.candles_ is not None
            and self.loaded_ is not None
            and (
                self.poll_s > 0
                or (self.end is None and pd.Timestamp.now(tz="UTC") < self.candles_.index[-1] + 2 * self._step)
            )
        )

    def _refresh(self, bars: int) -> None:
        """Read the candles newer than those held, outside the lock (requests go on being answered
        from memory meanwhile), then append them under it."""
        try:
            last = self.candles_.index[-1]
            newer = self.store_.load_candles(self.symbol, self.interval, start=last + self._step)
            if len(newer):
                with self._lock:
                    if self.candles_.index[-1] == last:  # nothing replaced them meanwhile
                        self.candles_ = pd.concat([self.candles_, newer]).iloc[-bars:]
        except Exception:  # the next request's poll tries again; a store that stays down shows in /health
            pass
        finally:
            self.refreshing_ = False

    def _closed(self, now: pd.Timestamp) -> pd.DataFrame:
        # a bar still open at `now` is left out, and read again once closed (the feed rewrites it)
        self.candles_ = closed = self.candles_[self.candles_.index + self._step <= now]
        if closed.empty:
            raise NoCandlesError(
                f"no closed {self.symbol} {self.interval} candles in the store to forecast from"
                + (f" before {self.end}" if self.end else "")
                + " (see `coffee-ml data list`)"
            )
        return closed

    def predict(self, horizon: int | None = None, now: pd.Timestamp | None = None) -> Prediction:
        """The forecast for the next `horizon` bars (default: the model's horizon)."""
        with self._lock:
            return self._predict(horizon, pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now))

    def _predict(self, horizon: int | None, now: pd.Timestamp) -> Prediction:
        loaded = self._model()
        bars = max(loaded.history_bars, REGIME_BARS)
        candles, sample_end = self._candles(bars, now)
        newest = candles.index[-1]
        age = max(now - (newest + self._step), pd.Timedelta(0))
        snapshot = sample_end is not None and newest == sample_end
        if self.end is None and not snapshot and age > self._limit:
            raise StaleDataError(
                f"{self.symbol} {self.interval} data are stale: the newest candle "
                f"({newest:%Y-%m-%d %H:%M} UTC) closed {_age(age)} ago, over the limit of "
                f"{_age(self._limit)}; import newer candles (coffee-ml import) or raise --max-age",
                age,
            )
        key = (loaded.ref.path, newest)
        if self.answer_ is None or self.answer_[0] != key:
            self.answer_ = (key, loaded.predict(candles), self._regime(candles), {})
        _, forecast, regime, paths = self.answer_
        full = forecast.horizon
        horizon = full if horizon is None else horizon
        if not 1 <= horizon <= full:
            raise OptionError(
                "horizon",
                f"--horizon {horizon}: {loaded.ref.model} {loaded.ref.version} forecasts "
                f"1..{full} bars of {self.interval}",
            )
        if horizon not in paths:  # the same path and edges object for every answer until the next bar
            paths[horizon] = (self._path(forecast, horizon), step_edges(loaded.metadata, horizon))
        path, edges = paths[horizon]
        return Prediction(
            self.symbol,
            self.interval,
            loaded.ref.model,
            loaded.ref.version,
            str(loaded.metadata["trained_at"]),
            newest,
            float(forecast.last_close[0]),
            self.level,
            path,
            regime,
            age,
            snapshot,
            edges,
        )

    def _path(self, forecast: Forecast, horizon: int) -> pd.DataFrame:
        if self.level not in forecast.levels:
            raise OptionError(
                "level",
                f"--level {self.level}: {forecast.model} has intervals at {', '.join(map(str, forecast.levels))} only",
            )
        frame = forecast.to_frame().iloc[:horizon]
        tag = level_tag(self.level)
        confidence = forecast.confidence[0, :horizon]
        return pd.DataFrame(
            {
                "step": frame["step"].to_numpy(),
                "timestamp": pd.DatetimeIndex(frame["time"]),
                "price": frame["price"].to_numpy().round(2),
                "lower": frame[f"lower_{tag}"].to_numpy().round(2),
                "upper": frame[f"upper_{tag}"].to_numpy().round(2),
                "confidence": np.where(np.isfinite(confidence), np.round(100 * confidence, 1), math.nan),
                "up": forecast.returns[0, :horizon] > 0,
            }
        )

    def _regime(self, candles: pd.DataFrame) -> dict[str, Any]:
        return market_regime(candles, self.interval)


def market_regime(candles: pd.DataFrame, interval: str) -> dict[str, Any]:
    """The regime the sidebar shows for the newest of `candles` (pass the last `REGIME_BARS`
    closed ones): one definition for the sidebar, `predict` and the service's regime endpoint."""
    from coffee_ml.regimes.detectors import make_detector
    from coffee_ml.regimes.history import regime_now

    labels = make_detector(REGIME_METHOD, interval=interval).fit(candles).predict(candles)
    return regime_now(labels, REGIME_METHOD)


@lru_cache(maxsize=32)
def _predictor(
    symbol: str, interval: str, backend: str, level: float, max_age: pd.Timedelta | None, root: Path | None
) -> Predictor:
    return Predictor(symbol, interval, backend=backend, level=level, max_age=max_age, root=root)


def sidebar(
    symbol: str,
    interval: str,
    horizon: int | None = None,
    *,
    backend: str = "auto",
    level: float = 0.8,
    max_age: pd.Timedelta | None = None,
    root: Path | None = None,
) -> Prediction:
    """The production forecast for the trading sidebar, from a warm `Predictor` kept per process."""
    return _predictor(symbol, interval, backend, level, max_age, root).predict(horizon)
