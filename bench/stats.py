"""Percentiles and rates over the samples a benchmark collects."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p90 / p99 / max of durations given in seconds, in milliseconds."""

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 2)

    return {
        "count": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p90_ms": ms(percentile(seconds, 90)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds) if seconds else None),
    }


def time_at(series: Sequence[tuple[float, float]], level: float) -> float | None:
    """When a non-decreasing counter series [(t, value)] first reached `level` (interpolated)."""
    prev: tuple[float, float] | None = None
    for t, v in series:
        if v >= level:
            if prev is None or v == prev[1]:
                return t
            t0, v0 = prev
            return t0 + (t - t0) * (level - v0) / (v - v0)
        prev = (t, v)
    return None


def steady_rate(
    series: Sequence[tuple[float, float]], total: float, lo: float = 0.1, hi: float = 0.9
) -> float | None:
    """Events per second between `lo` and `hi` of `total`: leaves out the start and the tail."""
    t_lo = time_at(series, total * lo)
    t_hi = time_at(series, total * hi)
    if t_lo is None or t_hi is None or t_hi <= t_lo:
        return None
    return total * (hi - lo) / (t_hi - t_lo)
