"""Figure lines: ``<name>: <measured> (min..max) (goal <goal>) met|missed``, one per figure.

Rounds are summarised by their median, with the range beside it; ``context`` follows the
verdict after `` -- `` (the baselines measured in the same run, the sink's capacity).
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable, Sequence


def sink_note() -> str:
    """The sink's own capacity (measured once per run), printed beside the figures using it."""
    rate = os.environ.get("BENCH_SINK_CAPACITY")
    return f"sink {float(rate):,.0f} req/s" if rate else "sink capacity not measured"


def fmt(value: float, unit: str = "") -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        text = f"{int(value):,}"
    elif abs(value) < 0.1:
        text = f"{value:.2g}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text}{unit}"


def spread(values: Sequence[float], unit: str = "") -> str:
    """``median (min..max)``, or the single value of a one-round run."""
    middle = fmt(statistics.median(values), unit)
    if len(values) < 2:
        return middle
    return f"{middle} ({fmt(min(values), unit)}..{fmt(max(values), unit)})"


def figure(
    name: str,
    values: Sequence[float],
    goal: str,
    met: Callable[[float], bool] | bool,
    *,
    unit: str = "",
    context: str = "",
    sink: bool = False,
) -> None:
    """Print one figure; ``met`` is judged on the median (or given)."""
    verdict = met(statistics.median(values)) if callable(met) else met
    notes = ", ".join(filter(None, [context, sink_note() if sink else ""]))
    line = f"{name}: {spread(values, unit)} (goal {goal}) {'met' if verdict else 'missed'}"
    emit(f"{line} -- {notes}" if notes else line)


def text_figure(name: str, measured: str, goal: str, met: bool, context: str = "") -> None:
    """A figure whose measurement is not a number (a plan's verdict, a lower bound)."""
    line = f"{name}: {measured} (goal {goal}) {'met' if met else 'missed'}"
    emit(f"{line} -- {context}" if context else line)


def skipped(name: str, why: str) -> None:
    emit(f"{name}: skipped ({why})")


def detail(text: str, width: int = 180) -> None:
    """Indented lines under a figure (query plans), each cut at ``width`` characters."""
    for line in text.splitlines():
        emit(f"    {line}" if len(line) <= width else f"    {line[:width]}...")


def emit(line: str) -> None:
    print(line, flush=True)
    sys.stdout.flush()
