"""The dashboard's chart, drawn on the server: bars per hour as SVG geometry, no script.

Delivered rows are solid bars, failed ones hatched bars stacked on top, so the chart reads
without colour; every bar carries its figures as a tooltip, and the page repeats them in
a table.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from ..report import HourOutcomes

WIDTH, HEIGHT = 720, 170
LEFT, RIGHT, TOP, BOTTOM = 44, 6, 10, 24
TICK_EVERY_HOURS = 6


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    delivered_y: float
    delivered_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Chart:
    kind: str
    title: str
    delivered: int
    failed: int
    top: int
    bars: list[Bar]
    hours: list[Tick]
    levels: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM
    plot_height: int = HEIGHT - TOP - BOTTOM


def nice_ceiling(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least ``value`` (and at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def hourly_chart(outcomes: list[HourOutcomes], kind: str, title: str) -> Chart:
    """The bars of one kind (``OutboxKind``) over the hours of ``outcomes``."""
    top = nice_ceiling(max((o.delivered[kind] + o.failed[kind] for o in outcomes), default=0))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(outcomes), 1)
    bars, hours = [], []
    for index, outcome in enumerate(outcomes):
        delivered, failed = outcome.delivered[kind], outcome.failed[kind]
        delivered_height = plot_height * delivered / top
        failed_height = plot_height * failed / top
        base = HEIGHT - BOTTOM
        start = timezone.localtime(outcome.hour)
        bars.append(
            Bar(
                x=round(LEFT + index * slot + slot * 0.15, 2),
                width=round(slot * 0.7, 2),
                delivered_y=round(base - delivered_height, 2),
                delivered_height=round(delivered_height, 2),
                failed_y=round(base - delivered_height - failed_height, 2),
                failed_height=round(failed_height, 2),
                title=f"{start:%a %H}:00: {delivered} delivered, {failed} failed",
            )
        )
        if start.hour % TICK_EVERY_HOURS == 0:
            hours.append(Tick(round(LEFT + (index + 0.5) * slot, 2), f"{start:%a %H}:00"))
    marks = (0, top // 2, top) if top % 2 == 0 else (0, top)
    levels = [Tick(round(HEIGHT - BOTTOM - plot_height * n / top, 2), str(n)) for n in marks]
    return Chart(
        kind=kind,
        title=title,
        delivered=sum(o.delivered[kind] for o in outcomes),
        failed=sum(o.failed[kind] for o in outcomes),
        top=top,
        bars=bars,
        hours=hours,
        levels=levels,
    )
