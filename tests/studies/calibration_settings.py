"""Choose the calibration settings on earlier years, never on the period they are judged on.

Walk-forward with test blocks over 2023-12..2024-11 hourly BTCUSDT (training from 2021-01, retrain
every 720 bars), once per model; a recording hook keeps every fold's validation and test predictions. Calibration does not
change point forecasts, so each candidate setting (volatility halflife, least confidence prior
strength, how many realised out-of-fold origins to pool, ACI rate) is then scored offline on
the same predictions. Prints one row per setting; the defaults in `features.volatility`,
`models.calibration` and `backtest.BacktestRequest` were set from it.

    .venv/bin/python tests/studies/calibration_settings.py [--neural]
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pandas as pd

from coffee_ml.backtest import FoldHook, engine, run_backtest
from coffee_ml.backtest.hooks import aci_target
from coffee_ml.data import load_sample
from coffee_ml.features.volatility import causal_volatility
from coffee_ml.forecast import Forecast
from coffee_ml.models.calibration import Calibration

RECORDS: list[dict] = []


class Record(FoldHook):
    def fit(self, context):
        val = context.model.predict(context.dataset, "val")
        self.entry_ = {
            "model": context.name,
            "fold": context.fold.index,
            "val": val,
            "up": context.model.up_share_,
            "cutoff": context.dataset.features.index[context.fold.val_rows[1] - 1],
        }
        return self

    def transform(self, forecast: Forecast) -> Forecast:
        RECORDS.append(self.entry_ | {"test": forecast})
        return forecast


def score_setting(records, vol: pd.Series, prior: float, past_origins: int, aci_rate: float) -> dict[str, float]:
    """Coverage pooled and by volatility tercile of the whole test span (as `evaluation` reports
    it) and Brier skill, per model, for one setting (the replay of `PooledCalibration`)."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in records):
        tests, inside, scales, bs, ref = [], {}, [], 0.0, 0.0
        for r in (r for r in records if r["model"] == model):
            val, test = r["val"], r["test"]
            y, p, s = val.actual, val.returns, vol.reindex(val.origins).to_numpy()
            targets = None
            if tests:
                prev = Forecast.concat(tests)
                prev_in = {lv: np.concatenate(v) for lv, v in inside.items()}
                keep = np.flatnonzero((prev.origins + pd.Timedelta(hours=prev.horizon)) <= r["cutoff"])
                if aci_rate:
                    targets = np.stack([aci_target(~prev_in[lv][keep], lv, aci_rate) for lv in sorted(prev_in)])
                keep = keep[prev.origins[keep] < val.origins[0]]  # outcomes val does not already hold
                if past_origins and len(keep):
                    prev = prev.select(keep[-past_origins:])
                    y, p = np.concatenate([y, prev.actual]), np.concatenate([p, prev.returns])
                    s = np.concatenate([s, vol.reindex(prev.origins).to_numpy()])
            tests.append(test)
            cal = Calibration.fit(y, p, s, r["up"], prior_strength=prior, targets=targets)
            ts = vol.reindex(test.origins).to_numpy()
            scales.append(ts)
            for level in cal.levels:
                lo, hi = cal.bounds(test.returns, ts, level)
                inside.setdefault(level, []).append((test.actual >= lo) & (test.actual <= hi))
            called = test.returns != 0
            hit = (np.sign(test.returns) == np.sign(test.actual))[called]
            bs += float(((cal.confidence(test.returns, ts)[called] - hit) ** 2).sum())
            ref += float(((np.broadcast_to(cal.base_rate, test.returns.shape)[called] - hit) ** 2).sum())
        v = np.concatenate(scales)
        terc = np.searchsorted(np.quantile(v, [1 / 3, 2 / 3]), v, side="right")
        for level, parts in inside.items():
            x = np.concatenate(parts)
            out[f"{model}_{level:g}_pooled"] = x.mean() - level
            out[f"{model}_{level:g}_worst_tercile"] = max((x[terc == k].mean() - level for k in range(3)), key=abs)
        out[f"{model}_bss"] = 1 - bs / ref if ref > 0 else np.nan
    return out


def main(neural: bool) -> None:
    candles = load_sample().loc["2021-01-01":"2024-12-01"]
    models = ["hybrid", "drift", "naive"] + (["lstm_fast", "gru"] if neural else [])
    request = {
        "symbol": "BTCUSDT",
        "modelType": models,
        "method": "walk_forward",
        "retrainEvery": 720,
        "horizon": 24,
        "window": 60,
        "from": "2021-01-01",
        "test_fraction": 8760 / len(candles),
        "n_jobs": 1,
        "max_epochs": 3,
        "calibration": "validation",
        "model_params": {"gru": {"hidden": 32, "layers": 1}} if neural else {},
    }
    original = engine.BacktestRequest.hooks
    engine.BacktestRequest.hooks = lambda self: [Record()]
    try:
        run_backtest(request, candles=candles)
    finally:
        engine.BacktestRequest.hooks = original
    print(f"recorded {len(RECORDS)} folds; test from {RECORDS[0]['test'].origins[0]}", flush=True)
    results = {}
    for hl, prior, past, aci in itertools.product((6, 24, 96), (50,), (0, 2000, 5000), (0, 0.0025, 0.005, 0.01, 0.02)):
        vol = causal_volatility(candles["close"], "1h", hl)
        results[(hl, prior, past, aci)] = score_setting(RECORDS, vol, prior, past, aci)
    table = pd.DataFrame.from_dict(results, orient="index")
    table.index.names = ["halflife", "min_prior", "past_origins", "aci_rate"]
    pooled = table.filter(like="_pooled").abs().max(axis=1)
    worst = table.filter(like="_worst_tercile").abs().max(axis=1)
    bss = table.filter(like="_bss").drop(columns=[c for c in table if c.startswith("naive_bss")]).min(axis=1)
    summary = pd.DataFrame({"max_pooled_dev": pooled, "max_tercile_dev": worst, "min_bss": bss})
    pd.set_option("display.width", 200)
    summary["worst"] = summary[["max_pooled_dev", "max_tercile_dev"]].max(axis=1)
    print(summary.sort_values("worst").to_string(float_format="{:.4f}".format))
    best = summary["worst"].idxmin()
    print("best setting", best)
    print(table.loc[best].to_string(float_format="{:+.4f}".format))


if __name__ == "__main__":
    main("--neural" in sys.argv)
