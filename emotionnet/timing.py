"""Wall-clock medians for benchmarks, with the calls under comparison interleaved."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_median_seconds(calls: dict[str, Callable[[], object]], repeats: int,
                               synchronize: Callable[[], None] | None = None) -> dict[str, float]:
    """Median seconds of each named call over `repeats` turns after one warm-up turn.

    Each turn runs every call once, one after another, so that load from other processes on a shared machine falls
    on all of them alike; compare them only as ratios. `synchronize` (e.g. `torch.cuda.synchronize`) runs after each
    call, inside its timing.
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    for turn in range(repeats + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if synchronize is not None:
                synchronize()
            if turn:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
