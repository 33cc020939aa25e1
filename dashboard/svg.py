"""Server-rendered SVG charts: no JavaScript, no CDN, readable without colour.

Every chart is one ``<svg role="img">`` with a ``<title>`` and ``<desc>`` (what a screen reader
announces), a ``<title>`` on each mark (what a mouse hover shows), axis labels, and a second
cue beside colour: fill patterns on bars, dash styles and marker shapes on lines, and a text
legend. The data tables under the charts are the templates' job; these return markup only.

Nothing here knows about models: callers pass labels and numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from django.utils.safestring import SafeString, mark_safe

# Dark enough for 3:1 against white (WCAG non-text contrast) and told apart by pattern anyway.
PALETTE = ("#1d4f91", "#b04a00", "#1e7a3c", "#7b2d8e", "#b3261e", "#4a5560")
# Bar fills, in series order: solid first, then patterns a grey-scale print still separates.
PATTERNS = ("solid", "diagonal", "dots", "cross", "horizontal", "vertical")
LINE_DASHES = ("", "7 4", "2 3", "10 3 2 3")
MARKERS = ("circle", "square", "triangle", "diamond")
TEXT_COLOUR = "#222"
# Severity tones of horizontal bars (pacing): colour plus a pattern, worst most marked.
TONES = {
    "ok": ("#1e7a3c", "solid"),
    "notice": ("#1d4f91", "dots"),
    "warning": ("#9a5b00", "diagonal"),
    "critical": ("#b3261e", "cross"),
}
GRID_COLOUR = "#d5d9de"

ValueFormat = Callable[[float], str]
# An axis tick label from its value and the axis step (see ``format_tick``).
TickFormat = Callable[[float, float], str]


def _plain_number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:,.2f}"


@dataclass(frozen=True)
class Series:
    """One named row of values, aligned with the chart's x labels (None: no data that day)."""

    label: str
    values: Sequence[float | None]
    # A series drawn as a reference (e.g. a budget): dashed and without markers on line charts.
    reference: bool = False


@dataclass(frozen=True)
class HBar:
    """One horizontal bar: a row label, its value, the text that says it, and an optional target mark."""

    label: str
    value: float
    value_label: str
    reference: float | None = None
    href: str = ""
    # How bad the value is (a key of TONES): the bar's colour and pattern; words in value_label
    # say the same for readers who do not see colour.
    tone: str = ""


@dataclass
class _Svg:
    chart_id: str
    title: str
    desc: str
    width: int
    height: int
    parts: list[str] = field(default_factory=list)
    # Fluid charts fill their column; a sparkline keeps its size inside a table cell.
    fluid: bool = True

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def render(self) -> SafeString:
        title_id, desc_id = f"{self.chart_id}-title", f"{self.chart_id}-desc"
        size = 'width="100%"' if self.fluid else f'width="{self.width}" height="{self.height}"'
        opening = (
            f'<svg class="ads-chart" id="{escape(self.chart_id)}" role="img" '
            f'aria-labelledby="{title_id} {desc_id}" viewBox="0 0 {self.width} {self.height}" {size} '
            'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" '
            'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="11">'
            f'<title id="{title_id}">{escape(self.title)}</title><desc id="{desc_id}">{escape(self.desc)}</desc>'
        )
        # Every piece of text in the parts went through escape() when it was added.
        return mark_safe(opening + "".join(self.parts) + "</svg>")  # noqa: S308


@dataclass(frozen=True)
class Scale:
    """An axis from 0 to ``maximum`` in ticks ``step`` apart, every tick a round number."""

    maximum: float
    step: float

    @property
    def ticks(self) -> list[float]:
        count = round(self.maximum / self.step)
        # Multiplying (not adding up) keeps 0.1 × 3 from drifting to 0.30000000000000004.
        return [round(self.step * n, 12) for n in range(count + 1)]


# Tick steps are 1, 2, 2.5 or 5 × 10ⁿ: every tick then reads as a short round number.
_STEP_MANTISSAS = (1, 2, 2.5, 5)


def nice_scale(peak: float, *, max_ticks: int = 5, integer: bool = False) -> Scale:
    """The tightest axis from 0 to at least ``peak`` with at most ``max_ticks`` steps of 1, 2, 2.5
    or 5 × 10ⁿ (``integer``: steps of at least 1, for counts)."""
    peak = max(float(peak), 0.0)
    if peak == 0:
        return Scale(1.0, 1.0 if integer else 0.25)
    exponent = math.floor(math.log10(peak / max_ticks)) - 1
    while True:
        for mantissa in _STEP_MANTISSAS:
            step = mantissa * 10.0**exponent
            if integer and (step < 1 or step != int(step)):
                continue
            count = math.ceil(peak / step - 1e-9)
            if count <= max_ticks:
                return Scale(round(step * count, 12), step)
        exponent += 1


def tick_decimals(step: float) -> int:
    """How many decimals every multiple of ``step`` needs to be written exactly (0.25 → 2, 2.5 → 1)."""
    for places in range(10):
        if abs(round(step, places) - step) <= abs(step) * 1e-9:
            return places
    return 10


def format_tick(value: float, step: float, *, suffix: str = "", compact: bool = False) -> str:
    """A tick label with exactly the precision of the axis step: 0.25 is "0.25", not "0.3" or "0".

    Trailing zeros go (0.5, not 0.50); ``compact`` writes thousands as "k" once the step is at
    least 1,000 (12.5k, not a rounded 12k)."""
    if value == 0:
        return f"0{suffix}"
    unit = ""
    if compact and abs(step) >= 1000:
        value, step, unit = value / 1000, step / 1000, "k"
    text = f"{value:,.{tick_decimals(step)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}{unit}{suffix}"


def _pattern_defs(chart_id: str, count: int) -> str:
    defs = []
    for index in range(count):
        colour, kind = PALETTE[index % len(PALETTE)], PATTERNS[index % len(PATTERNS)]
        pid = f"{chart_id}-p{index}"
        shapes = {
            "solid": "",
            "diagonal": '<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="#fff" stroke-width="1.6"/>',
            "dots": '<circle cx="3" cy="3" r="1.3" fill="#fff"/>',
            "cross": '<path d="M0,3 h6 M3,0 v6" stroke="#fff" stroke-width="1.2"/>',
            "horizontal": '<path d="M0,1.5 h6 M0,4.5 h6" stroke="#fff" stroke-width="1"/>',
            "vertical": '<path d="M1.5,0 v6 M4.5,0 v6" stroke="#fff" stroke-width="1"/>',
        }[kind]
        defs.append(
            f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
            f'<rect width="6" height="6" fill="{colour}"/>{shapes}</pattern>'
        )
    return "<defs>" + "".join(defs) + "</defs>"


def _tone_id(tone: str) -> str:
    return f"t-{tone}" if tone in TONES else "p0"


def _tone_defs(chart_id: str, tones: Sequence[str]) -> str:
    defs = []
    for tone in tones:
        if tone not in TONES:
            continue
        colour, kind = TONES[tone]
        shapes = {
            "solid": "",
            "dots": '<circle cx="3" cy="3" r="1.3" fill="#fff"/>',
            "diagonal": '<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="#fff" stroke-width="1.6"/>',
            "cross": '<path d="M0,3 h6 M3,0 v6" stroke="#fff" stroke-width="1.2"/>',
        }[kind]
        defs.append(
            f'<pattern id="{chart_id}-{_tone_id(tone)}" width="6" height="6" patternUnits="userSpaceOnUse">'
            f'<rect width="6" height="6" fill="{colour}"/>{shapes}</pattern>'
        )
    return "<defs>" + "".join(defs) + "</defs>" if defs else ""


def _marker(kind: str, x: float, y: float, colour: str) -> str:
    if kind == "square":
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="{colour}"/>'
    if kind == "triangle":
        return f'<path d="M{x:.1f},{y - 4:.1f} l4,7 h-8 z" fill="{colour}"/>'
    if kind == "diamond":
        return f'<path d="M{x:.1f},{y - 4:.1f} l4,4 l-4,4 l-4,-4 z" fill="{colour}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>'


def _label_stride(count: int, room: float, label_width: float = 44) -> int:
    return max(1, math.ceil(count * label_width / max(room, 1)))


def _frame(
    svg: _Svg,
    *,
    left: float,
    top: float,
    plot_w: float,
    plot_h: float,
    scale: Scale,
    y_label: str,
    x_label: str,
    x_labels: Sequence[str],
    slot: float,
    tick_format: TickFormat,
) -> None:
    """Gridlines, y ticks, x labels (thinned so they never overlap) and the axis titles."""
    for value in scale.ticks:
        y = top + plot_h - plot_h * value / scale.maximum
        svg.add(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID_COLOUR}"/>')
        svg.add(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{TEXT_COLOUR}">'
            f"{escape(tick_format(value, scale.step))}</text>"
        )
    stride = _label_stride(len(x_labels), plot_w)
    for index, label in enumerate(x_labels):
        if index % stride and index != len(x_labels) - 1:
            continue
        if index != len(x_labels) - 1 and len(x_labels) - 1 - index < stride:
            continue  # would collide with the last label, which always shows
        x = left + slot * (index + 0.5)
        svg.add(
            f'<text x="{x:.1f}" y="{top + plot_h + 15}" text-anchor="middle" fill="{TEXT_COLOUR}">'
            f"{escape(label)}</text>"
        )
    svg.add(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#555"/>')
    svg.add(
        f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 32}" text-anchor="middle" '
        f'fill="{TEXT_COLOUR}" font-weight="600">{escape(x_label)}</text>'
    )
    svg.add(
        f'<text transform="translate(12 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'fill="{TEXT_COLOUR}" font-weight="600">{escape(y_label)}</text>'
    )


def _legend(
    svg: _Svg, entries: list[str], *, top: float, left: float, swatch: Callable[[int, float, float], str]
) -> None:
    x = left
    for index, label in enumerate(entries):
        svg.add(swatch(index, x, top))
        svg.add(f'<text x="{x + 20}" y="{top + 9}" fill="{TEXT_COLOUR}">{escape(label)}</text>')
        x += 30 + 6.5 * len(label)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    desc: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    y_label: str,
    x_label: str,
    value_format: ValueFormat = _plain_number,
    tick_format: TickFormat = format_tick,
    integer: bool = False,
    width: int = 640,
    height: int = 240,
) -> SafeString:
    """Stacked bars, one per x label, one patterned segment per series (``integer``: counts, so
    the axis never ticks at fractions)."""
    svg = _Svg(chart_id, title, desc, width, height)
    left, top, right, bottom = 62, 26, 12, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum((s.values[i] or 0) for s in series) for i in range(len(x_labels))]
    scale = nice_scale(max(totals, default=0), integer=integer)
    y_max = scale.maximum
    slot = plot_w / max(len(x_labels), 1)
    svg.add(_pattern_defs(chart_id, len(series)))
    _legend(
        svg,
        [s.label for s in series],
        top=4,
        left=left,
        swatch=lambda i, x, y: (
            f'<rect x="{x}" y="{y}" width="14" height="11" fill="url(#{chart_id}-p{i})" stroke="{TEXT_COLOUR}" '
            'stroke-width="0.5"/>'
        ),
    )
    _frame(
        svg,
        left=left,
        top=top,
        plot_w=plot_w,
        plot_h=plot_h,
        scale=scale,
        y_label=y_label,
        x_label=x_label,
        x_labels=x_labels,
        slot=slot,
        tick_format=tick_format,
    )
    bar_w = max(slot * 0.72, 1)
    for index, label in enumerate(x_labels):
        base: float = top + plot_h
        x = left + slot * index + (slot - bar_w) / 2
        for series_index, one in enumerate(series):
            value = one.values[index] or 0
            if value <= 0:
                continue
            bar_h = plot_h * value / y_max
            base -= bar_h
            svg.add(
                f'<rect class="mark" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{bar_h:.1f}" '
                f'fill="url(#{chart_id}-p{series_index})" stroke="#fff" stroke-width="0.5">'
                f"<title>{escape(label)} · {escape(one.label)}: {escape(value_format(value))}</title></rect>"
            )
    return svg.render()


def line_chart(
    *,
    chart_id: str,
    title: str,
    desc: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    y_label: str,
    x_label: str,
    value_format: ValueFormat = _plain_number,
    tick_format: TickFormat = format_tick,
    width: int = 640,
    height: int = 240,
) -> SafeString:
    """Lines with a distinct dash and marker per series; reference series are dashed, unmarked."""
    svg = _Svg(chart_id, title, desc, width, height)
    left, top, right, bottom = 62, 26, 12, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for s in series for v in s.values if v is not None), default=0)
    scale = nice_scale(peak)
    y_max = scale.maximum
    slot = plot_w / max(len(x_labels), 1)

    def style(index: int, one: Series) -> tuple[str, str, str | None]:
        colour = PALETTE[index % len(PALETTE)]
        dash = "6 4" if one.reference else LINE_DASHES[index % len(LINE_DASHES)]
        marker = None if one.reference else MARKERS[index % len(MARKERS)]
        return colour, dash, marker

    def swatch(index: int, x: float, y: float) -> str:
        colour, dash, marker = style(index, series[index])
        line = (
            f'<line x1="{x}" x2="{x + 16}" y1="{y + 5}" y2="{y + 5}" stroke="{colour}" stroke-width="2"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/>"
        )
        return line + (_marker(marker, x + 8, y + 5, colour) if marker else "")

    _legend(svg, [s.label for s in series], top=4, left=left, swatch=swatch)
    _frame(
        svg,
        left=left,
        top=top,
        plot_w=plot_w,
        plot_h=plot_h,
        scale=scale,
        y_label=y_label,
        x_label=x_label,
        x_labels=x_labels,
        slot=slot,
        tick_format=tick_format,
    )
    for series_index, one in enumerate(series):
        colour, dash, marker = style(series_index, one)
        points = [
            (left + slot * (i + 0.5), top + plot_h - plot_h * value / y_max, x_labels[i], value)
            for i, value in enumerate(one.values)
            if value is not None
        ]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        svg.add(
            f'<polyline class="mark" points="{path}" fill="none" stroke="{colour}" stroke-width="2"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + f"><title>{escape(one.label)}</title></polyline>"
        )
        if marker:
            for x, y, label, value in points:
                svg.add(
                    f"<g>{_marker(marker, x, y, colour)}"
                    f"<title>{escape(label)} · {escape(one.label)}: {escape(value_format(value))}</title></g>"
                )
    return svg.render()


def hbar_chart(
    *,
    chart_id: str,
    title: str,
    desc: str,
    rows: Sequence[HBar],
    x_label: str,
    tick_format: TickFormat = format_tick,
    reference_label: str = "",
    x_max: float | None = None,
    width: int = 640,
) -> SafeString:
    """One labelled horizontal bar per row, the value written beside it, an optional target tick.

    ``x_max``: the axis reaches at least this far (bars beyond it are cut at its end)."""
    row_h, top, bottom = 26, 22, 38
    label_w = 170
    value_w = 210
    height = top + bottom + row_h * max(len(rows), 1)
    svg = _Svg(chart_id, title, desc, width, height)
    plot_w = width - label_w - value_w - 10
    peak = max([r.value for r in rows] + [r.reference or 0 for r in rows], default=0)
    scale = nice_scale(max(peak, x_max or 0))
    scale_max = scale.maximum
    tones = sorted({row.tone for row in rows if row.tone})
    svg.add(_pattern_defs(chart_id, 1) + _tone_defs(chart_id, tones))
    if reference_label:
        svg.add(
            f'<line x1="{label_w}" x2="{label_w}" y1="6" y2="18" stroke="{TEXT_COLOUR}" stroke-width="2"/>'
            f'<text x="{label_w + 6}" y="16" fill="{TEXT_COLOUR}">= {escape(reference_label)}</text>'
        )
    for value in scale.ticks:
        x = label_w + plot_w * value / scale_max
        svg.add(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + row_h * len(rows)}" stroke="{GRID_COLOUR}"/>'
            f'<text x="{x:.1f}" y="{top + row_h * len(rows) + 14}" text-anchor="middle" fill="{TEXT_COLOUR}">'
            f"{escape(tick_format(value, scale.step))}</text>"
        )
    svg.add(
        f'<text x="{label_w + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="{TEXT_COLOUR}" '
        f'font-weight="600">{escape(x_label)}</text>'
    )
    for index, row in enumerate(rows):
        y = top + row_h * index
        bar_w = plot_w * min(max(row.value, 0), scale_max) / scale_max
        label = escape(row.label if len(row.label) <= 24 else row.label[:23] + "…")
        svg.add(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" fill="{TEXT_COLOUR}">{label}</text>')
        svg.add(
            f'<rect class="mark" x="{label_w}" y="{y + 5}" width="{max(bar_w, 1.5):.1f}" height="{row_h - 10}" '
            f'fill="url(#{chart_id}-{_tone_id(row.tone)})"'
            + (f' data-tone="{escape(row.tone)}"' if row.tone else "")
            + f"><title>{escape(row.label)}: {escape(row.value_label)}</title></rect>"
        )
        if row.reference is not None:
            ref_x = label_w + plot_w * min(row.reference, scale_max) / scale_max
            svg.add(
                f'<line x1="{ref_x:.1f}" x2="{ref_x:.1f}" y1="{y + 2}" y2="{y + row_h - 2}" stroke="{TEXT_COLOUR}" '
                f'stroke-width="2"><title>{escape(reference_label)}</title></line>'
            )
        svg.add(f'<text x="{label_w + plot_w + 8}" y="{y + 16}" fill="{TEXT_COLOUR}">{escape(row.value_label)}</text>')
    return svg.render()


def sparkline(
    values: Sequence[float], *, label: str, chart_id: str = "", width: int = 120, height: int = 26
) -> SafeString:
    """A tiny trend line with its last point marked; ``label`` is what it says in words."""
    svg = _Svg(chart_id or "spark", label, label, width, height, fluid=False)
    if not values:
        return svg.render()
    peak = max(max(values), 0) or 1
    step = (width - 6) / max(len(values) - 1, 1)
    points = [(3 + step * i, height - 3 - (height - 6) * max(v, 0) / peak) for i, v in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    svg.add(f'<polyline class="mark" points="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.5"/>')
    last_x, last_y = points[-1]
    svg.add(f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.2" fill="{PALETTE[1]}"/>')
    return svg.render()
