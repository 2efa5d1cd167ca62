"""Candles in ClickHouse: the store (embedded chdb or a server), schema, validation and importers."""

from coffee_ml.data.backends import StoreBusyError
from coffee_ml.data.importers import read_files
from coffee_ml.data.sample import load_sample
from coffee_ml.data.schema import CANDLE_COLUMNS, INTERVALS, CandleValidationError, interval_seconds
from coffee_ml.data.store import CandleStore, ImportReport, open_store

__all__ = [
    "CANDLE_COLUMNS",
    "INTERVALS",
    "CandleStore",
    "CandleValidationError",
    "ImportReport",
    "StoreBusyError",
    "interval_seconds",
    "load_sample",
    "open_store",
    "read_files",
]
