"""`make torture`: every campaign at full size, its figures printed; exit 1 on any failure.

.venv/bin/python -m bench.torture.run_all
"""

import sys
import time

from bench.torture import day_of_calls, faults, files, line, power_loss
from bench.torture.common import Result, timed

CAMPAIGNS = (
    ("power loss: 200 cuts", lambda: power_loss.run(200, 1)),
    ("a day of calls: 200 calls", lambda: day_of_calls.run(200, 1)),
    ("faults mid-call: 10 rounds", lambda: faults.run(10, 1)),
    ("the line: 10 000 glitch patterns", lambda: line.run(10_000, 1)),
    ("files: atheris, 60 s a target", lambda: files.run(60, 1)),
)


def main() -> int:
    started = time.perf_counter()
    results: list[Result] = []
    for title, campaign in CAMPAIGNS:
        print(f"-- {title}", flush=True)
        result = timed(campaign)
        print(result.report(), flush=True)
        results.append(result)
    failed = [r.campaign for r in results if r.failures]
    print(f"== torture: {time.perf_counter() - started:.0f} s, failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
