"""What the one-shot CLI's deferred imports save: run `python bench/bench_cli_imports.py [RUNS]`.

Every command builds the whole parser, so it imports ``portmon.cli.kill`` and ``portmon.cli.why``. Those
modules import the kill and why engines (psutil under them) inside ``run()`` only. This script times, in
fresh interpreters, the CPU time of building the parser as shipped ("deferred") and with the engines imported up front
("eager", the plain version), and prints the median and p10-p90 of each and of the difference.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUILD = "from portmon.cli.main import build_parser; build_parser()"
ENGINES = {
    "kill": "import portmon.actions.kill.execute, portmon.actions.kill.plan",
    "why": "import portmon.actions.why",
}

TIMER = (
    "import time; t0 = time.process_time(); {code}; "
    "print((time.process_time() - t0) * 1000)"
)
"""CPU time, not wall time: on a shared machine other jobs' load would swamp a wall-clock figure."""


def sample(code: str, runs: int) -> list[float]:
    """CPU milliseconds ``code`` takes in ``runs`` fresh interpreters (interpreter start-up itself excluded)."""
    out = []
    for _ in range(runs):
        res = subprocess.run(
            [sys.executable, "-c", TIMER.format(code=code)], cwd=ROOT, capture_output=True, text=True, check=True
        )
        out.append(float(res.stdout))
    return out


def spread(values: list[float]) -> str:
    """``median (p10-p90)`` in ms."""
    deciles = statistics.quantiles(values, n=10)
    return f"{statistics.median(values):6.1f} ms ({deciles[0]:.1f}-{deciles[-1]:.1f})"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    deferred = sample(BUILD, runs)
    print(f"build the parser, engines deferred (as shipped): {spread(deferred)}")
    for name, engine in ENGINES.items():
        eager = sample(f"{engine}; {BUILD}", runs)
        # Quantile against quantile: the runs are independent, so pair them in sorted order.
        saved = [e - d for e, d in zip(sorted(eager), sorted(deferred), strict=True)]
        print(f"build the parser, {name} engine imported eagerly:   {spread(eager)}")
        print(f"  saved by deferring the {name} engine: {spread(saved)}")


if __name__ == "__main__":
    main()
