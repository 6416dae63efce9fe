"""The charging page's data: a month of the lot's sessions, its kWh per day and per port, the report
per resident, and the two charts, drawn here as SVG (no script, no chart library, nothing fetched).

Pure but for ``month_sessions`` (which reads a Store it is given). A month is the lot's
(``site.timezone``): a session counts in the month and on the day, in the lot's time, it *started*
(its energy is not split at midnight: the database keeps a session's total, not its hours). The
report per resident is ``lotcontrol charging report``'s own (``charging.report``, pure), over the
month's sessions.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from ..charging.report import report
from ..phrases import Phrase
from ..store import Store, isotime

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")  # a port's colour, in the order the ports are first seen; then again


class MonthError(ValueError):
    """A month the page was asked for that is not YYYY-MM."""


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str | None, timezone: str, today: dt.date | None = None) -> "Month":
        """``2026-12``; empty: this month at the lot. MonthError naming the value otherwise."""
        if not text:
            today = today or dt.datetime.now(ZoneInfo(timezone)).date()
            return cls(today.year, today.month)
        found = MONTH.match(text.strip())
        if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1970:
            raise MonthError(Phrase("web.bad_month", value=text[:40]))
        return cls(int(found.group(1)), int(found.group(2)))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def days(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    def next(self) -> "Month":
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> "Month":
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def bounds(self, timezone: str) -> tuple[str, str]:
        """Its first instant and the next month's, in the lot's time zone, as the database's UTC times."""
        zone = ZoneInfo(timezone)
        start = dt.datetime(self.year, self.month, 1, tzinfo=zone)
        after = self.next()
        return isotime(start), isotime(dt.datetime(after.year, after.month, 1, tzinfo=zone))


def month_sessions(store: Store, month: Month, timezone: str) -> list[dict[str, Any]]:
    """The sessions that started in ``month`` (the lot's), oldest first."""
    start, end = month.bounds(timezone)
    return [s for s in store.charging_sessions(start) if s["start"] < end]


def local_day(moment: str, timezone: str) -> dt.date:
    return dt.datetime.fromisoformat(moment.replace("Z", "+00:00")).astimezone(ZoneInfo(timezone)).date()


@dataclass
class Energy:
    """A month's kWh: per day and port (``daily[day][port]``, day 1..), and per port."""

    month: Month
    ports: list[str]
    daily: dict[int, dict[str, float]]
    per_port: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.per_port.values())


def energy(sessions: list[dict[str, Any]], month: Month, timezone: str, ports: list[str] = ()) -> Energy:
    """kWh per day and per port of the month's sessions (``ports``: the configured ones, shown even at 0)."""
    names = list(dict.fromkeys([*ports, *(s["port"] for s in sessions)]))
    daily: dict[int, dict[str, float]] = {day: {} for day in range(1, month.days + 1)}
    per_port = {name: 0.0 for name in names}
    for s in sessions:
        day = local_day(s["start"], timezone)
        if (day.year, day.month) != (month.year, month.month):
            continue
        kwh = s["kwh"] or 0.0
        daily[day.day][s["port"]] = daily[day.day].get(s["port"], 0.0) + kwh
        per_port[s["port"]] += kwh
    return Energy(month, names, daily, per_port)


def resident_report(sessions: list[dict[str, Any]]) -> list[dict]:
    """``charging report``'s rows per resident for these sessions (the ports' rows are in the chart)."""
    return [row for row in report(sessions) if row["by"] == "resident"]


def colours(ports: list[str]) -> dict[str, str]:
    return {port: PALETTE[i % len(PALETTE)] for i, port in enumerate(ports)}


def nice_top(value: float) -> tuple[float, float]:
    """An axis's top at or above ``value`` and its step (1, 2 or 5 times a power of ten, 4–5 steps)."""
    if value <= 0:
        return 1.0, 0.25
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step - 1e-9), step


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"


def daily_chart(data: Energy, label: str, empty: str) -> Markup:
    """A stacked bar per day of the month, a segment per port (its colour in the legend)."""
    width, height, left, right, top, bottom = 720, 270, 44, 8, 22, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max((sum(ports.values()) for ports in data.daily.values()), default=0.0)
    axis_top, step = nice_top(most)
    slot = plot_w / data.month.days
    bar = max(slot * 0.7, 1.0)
    colour = colours(data.ports)
    out = [f'<svg id="kwh-per-day" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">']
    lines = int(round(axis_top / step))
    for i in range(lines + 1):
        value = step * i
        y = top + plot_h - plot_h * value / axis_top
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text class="axis" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_number(value)}</text>')
    out.append(f'<text class="axis" x="{left - 4}" y="{top - 10}" text-anchor="end">kWh</text>')
    for day, ports in data.daily.items():
        x = left + slot * (day - 1) + (slot - bar) / 2
        y = top + plot_h
        for port in data.ports:
            kwh = ports.get(port, 0.0)
            if kwh <= 0:
                continue
            h = plot_h * kwh / axis_top
            y -= h
            out.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                       f'fill="{colour[port]}" data-day="{day}" data-port="{escape(port)}" data-kwh="{kwh:.3f}">'
                       f'<title>{data.month}-{day:02d} {escape(port)}: {kwh:.3f} kWh</title></rect>')
        if day == 1 or day % 5 == 0:
            out.append(f'<text class="axis" x="{left + slot * (day - 0.5):.1f}" y="{height - bottom + 16}" '
                       f'text-anchor="middle">{day}</text>')
    if most <= 0:
        out.append(f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
                   f'text-anchor="middle">{escape(empty)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def port_chart(data: Energy, label: str) -> Markup:
    """A horizontal bar per port: its kWh in the month."""
    row, left, right, top = 22, 90, 70, 4
    width = 720
    height = top * 2 + row * max(len(data.ports), 1)
    most = max(data.per_port.values(), default=0.0)
    axis_top, _ = nice_top(most)
    colour = colours(data.ports)
    out = [f'<svg id="kwh-per-port" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">']
    for i, port in enumerate(data.ports):
        kwh = data.per_port[port]
        y = top + row * i
        w = (width - left - right) * kwh / axis_top
        out.append(f'<text class="axis" x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(port)}</text>')
        out.append(f'<rect class="bar" x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{colour[port]}" '
                   f'data-port="{escape(port)}" data-kwh="{kwh:.3f}"><title>{escape(port)}: {kwh:.3f} kWh</title></rect>')
        out.append(f'<text class="axis" x="{left + w + 4:.1f}" y="{y + 15}">{kwh:.3f} kWh</text>')
    out.append("</svg>")
    return Markup("".join(out))
