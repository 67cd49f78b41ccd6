"""Charts as inline SVG, drawn with matplotlib, for a page that must work offline.

Each chart comes back as an ``<svg>`` element ready to paste into HTML: text is drawn
as glyph paths (no font needed), the XML prolog, DOCTYPE, metadata, comments and
namespace URLs are dropped (the HTML parser puts inline SVG in the SVG namespace
itself), the global stylesheet moves to the page (``CHART_CSS``), and every id is
prefixed with the chart's name so several charts can share a page. The hash salt
is fixed and the date left out, so the same data gives the same bytes. The functions
know nothing of the report: they take labelled series.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date

PALETTE = ("#1b5e9e", "#d9822b", "#2e8b57", "#7a7a7a", "#b03a2e")
CHART_CSS = "svg.chart *{stroke-linejoin:round;stroke-linecap:butt}"
_RC = {"svg.hashsalt": "emr-report", "svg.fonttype": "path", "font.family": "DejaVu Sans", "font.size": 10,
       "axes.spines.top": False, "axes.spines.right": False}


@dataclass(frozen=True)
class Series:
    """One line: its label, its points, and how it is drawn."""

    label: str
    days: tuple[date, ...]
    values: tuple[float, ...]
    color: str
    dashed: bool = False
    markers: bool = False
    width: float = 2.0


@dataclass(frozen=True)
class Marker:
    """A dated vertical line with a label (a deadline, a projection)."""

    day: date
    label: str
    color: str
    style: str = "--"


@dataclass(frozen=True)
class Tile:
    """One cell of a tile chart: where it sits (row 0 on top), its words and its colours."""

    row: int
    column: int
    label: str
    note: str
    fill: str
    ink: str = "#1d2733"


def tile_chart(*, name: str, tiles: list[Tile], title: str, tile_width: float = 1.0,
               tile_height: float = 0.46) -> str:
    """Equal rectangles on a grid, each with a label and a note below it (a schematic,
    not a map: positions are whatever the caller chose)."""
    from matplotlib.patches import Rectangle

    rows = max((t.row for t in tiles), default=0) + 1
    columns = max((t.column for t in tiles), default=0) + 1
    with _style():
        figure = _figure(width=tile_width * columns + 0.1, height=tile_height * rows + 0.1)
        axes = figure.add_subplot()
        for t in tiles:
            axes.add_patch(Rectangle((t.column + 0.03, -t.row - 0.94), 0.94, 0.88, facecolor=t.fill,
                                     edgecolor="white", linewidth=1.0))
            axes.text(t.column + 0.5, -t.row - (0.32 if t.note else 0.5), t.label, ha="center", va="center",
                      fontsize=8.5, color=t.ink)
            if t.note:
                axes.text(t.column + 0.5, -t.row - 0.69, t.note, ha="center", va="center", fontsize=8.5,
                          color=t.ink, fontweight="bold")
        axes.set_xlim(0, columns)
        axes.set_ylim(-rows, 0)
        axes.set_axis_off()
        return _svg(figure, name=name, title=title)


def bar_chart(*, name: str, labels: list[str], values: list[int], title: str, width: float = 9.0) -> str:
    """Horizontal bars, first label on top, each bar labelled with its value (``title``
    is the chart's accessible name; the page shows its own heading)."""
    with _style():
        figure = _figure(width=width, height=0.3 * max(len(labels), 1) + 0.4)
        axes = figure.add_subplot()
        positions = list(range(len(labels)))[::-1]
        axes.barh(positions, values, color=PALETTE[0], height=0.65)
        axes.set_yticks(positions, labels)
        for position, value in zip(positions, values, strict=True):
            axes.annotate(f"{value:,}", (value, position), xytext=(4, 0), textcoords="offset points", va="center")
        axes.set_xlim(0, max(values, default=1) * 1.1 or 1)
        axes.xaxis.set_visible(False)
        axes.spines["bottom"].set_visible(False)
        axes.tick_params(axis="y", length=0)
        return _svg(figure, name=name, title=title)


def line_chart(*, name: str, series: list[Series], markers: list[Marker], title: str, y_label: str,
               span: tuple[date, date], height: float = 4.6) -> str:
    """Shares (0–1) over time as percentages, with dated markers, between ``span``."""
    from matplotlib.dates import DateFormatter, MonthLocator
    from matplotlib.ticker import PercentFormatter

    with _style():
        figure = _figure(width=9.5, height=height)
        axes = figure.add_subplot()
        for line in series:
            axes.plot(line.days, line.values, label=line.label, color=line.color, linewidth=line.width,
                      linestyle="--" if line.dashed else "-", marker="o" if line.markers else None, markersize=4)
        for marker in markers:
            axes.axvline(marker.day, color=marker.color, linestyle=marker.style, linewidth=1.2)
            axes.annotate(marker.label, (marker.day, 0.02), xytext=(-4, 0), textcoords="offset points",
                          rotation=90, ha="right", va="bottom", fontsize=8.5, color=marker.color,
                          bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.85})
        axes.set_xlim(*span)
        axes.set_ylim(0, 1.04)
        axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        axes.xaxis.set_major_locator(MonthLocator(bymonth=(1, 4, 7, 10)))
        axes.xaxis.set_major_formatter(DateFormatter("%m/%Y"))
        axes.grid(axis="y", color="#dddddd", linewidth=0.8)
        axes.set_ylabel(y_label)
        axes.legend(loc="upper left", fontsize=8.5, frameon=False, bbox_to_anchor=(0, -0.08), ncols=3)
        return _svg(figure, name=name, title=title)


def _style():
    import matplotlib

    return matplotlib.rc_context(_RC)


def _figure(*, width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(figure, *, name: str, title: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return _inline(buffer.getvalue(), name=name, title=title)


def _inline(svg: str, *, name: str, title: str) -> str:
    """The ``<svg>`` element alone, without URLs, with ids unique to ``name``."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r"<style[^>]*>.*?</style>\s*", "", svg, flags=re.DOTALL)  # the page styles charts
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'\sid="([^"]+)"', rf' id="{name}-\1"', svg)
    svg = svg.replace('href="#', f'href="#{name}-').replace("url(#", f"url(#{name}-")
    svg = re.sub(r'<svg\s+width="[^"]*"\s+height="[^"]*"', '<svg class="chart"', svg, count=1)
    escaped = title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{escaped}" ', 1).strip()
