"""`make bench`: run every tests/benchmarks/bench_*.py and print one table of measured numbers.

Targets are checked here, by measurement on the machine at hand, never inside timed unit tests.
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


def main(names: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    rows = []
    for script in scripts:
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        rows += importlib.import_module(script.stem).run()
    width = max(len(r["benchmark"]) for r in rows)
    print(f"\n{'benchmark':<{width}}  {'measured':>12}  {'target':>10}  met")
    for r in rows:
        value = f"{r['measured']:.3f} {r['unit']}"
        print(f"{r['benchmark']:<{width}}  {value:>12}  {r['target']:>10}  {_meets(r['measured'], r['target'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
