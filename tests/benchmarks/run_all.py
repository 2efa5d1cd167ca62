"""`make bench`: run every tests/benchmarks/bench_*.py and print one table of measured numbers.

Targets are checked here, by measurement on the machine at hand, never inside timed unit tests.
Each row is printed as soon as its script hands it over (a script's `run()` may return a list or
yield rows one by one), so a long benchmark session shows progress; the aligned table follows.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _meets(measured: float, target: str) -> str:
    m = re.fullmatch(r"\s*([<>]=?)\s*([\d.]+)\s*\S*\s*", target)
    if not m:
        return ""
    op, bound = m.group(1), float(m.group(2))
    ok = {"<": measured < bound, "<=": measured <= bound, ">": measured > bound, ">=": measured >= bound}[op]
    return "yes" if ok else "NO"


def _cells(row: dict) -> tuple[str, str, str]:
    return f"{row['measured']:.3f} {row['unit']}", row["target"], _meets(row["measured"], row["target"])


def main(names: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    rows = []
    print(f"{'measured':>14}  {'target':>10}  met  benchmark", flush=True)
    for script in scripts:
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        for row in importlib.import_module(script.stem).run():
            value, target, met = _cells(row)
            print(f"{value:>14}  {target:>10}  {met:>3}  {row['benchmark']}", flush=True)
            rows.append(row)
    width = max(len(r["benchmark"]) for r in rows)
    print(f"\n{'benchmark':<{width}}  {'measured':>14}  {'target':>10}  met")
    for r in rows:
        value, target, met = _cells(r)
        print(f"{r['benchmark']:<{width}}  {value:>14}  {target:>10}  {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
