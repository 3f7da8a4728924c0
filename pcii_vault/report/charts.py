"""The report's charts: drawn by pygal, made inert (no scripts) and inlined as SVG.

pygal always embeds a small configuration script and a hidden tooltip group; both are
removed from the element tree before serialising, so the SVG has no script, no event
handler, no `style` attribute and no external reference. Each chart's own `<style>`
element stays (its selectors are scoped to the chart's id); the page's Content-Security-
Policy allows exactly those styles by hash. Ids are derived from the chart's name, so the
same figures give the same bytes.

Marks: every non-zero value is one bar (`rect.reactive` with a height) or one dot
(`circle.dot` on the key-operation timeline); zero values are left out, so the number of
marks is the number of non-zero cells.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import pygal
from pygal.style import Style

from pcii_vault.text import printable

__all__ = ["TOP", "Chart", "bars", "stacked", "time_buckets", "timeline"]

_SVG = "http://www.w3.org/2000/svg"
_XLINK = "http://www.w3.org/1999/xlink"
ET.register_namespace("", _SVG)
ET.register_namespace("xlink", _XLINK)

# Categorical charts show the largest `TOP` categories and sum the rest into one bar.
TOP = 20
_OTHERS = "(all others)"

_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1b1b1b",
    foreground_strong="#1b1b1b",
    foreground_subtle="#5c5c5c",
    font_family="'DejaVu Sans', 'Liberation Sans', Arial, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    title_font_size=14,
    no_data_font_size=18,
    # Tableau 10 and six more: neighbours in a stacked column stay distinguishable.
    colors=(
        "#4e79a7",
        "#f28e2b",
        "#e15759",
        "#76b7b2",
        "#59a14f",
        "#edc948",
        "#b07aa1",
        "#ff9da7",
        "#9c755f",
        "#bab0ac",
        "#17becf",
        "#bcbd22",
        "#8c564b",
        "#1f3a5f",
        "#d62728",
        "#7f7f7f",
    ),
    transition="0ms",
)


@dataclass(frozen=True)
class Chart:
    """One rendered chart."""

    name: str
    title: str
    caption: str
    svg: str
    styles: tuple[str, ...]  # the text of each <style> element, as the DOM holds it


def _config(
    title: str, *, legend: bool, rotate: bool = False, height: int = 380
) -> dict[str, object]:
    return {
        "title": title,
        "style": _STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "width": 860,
        "height": height,
        "show_legend": legend,
        "legend_at_bottom": True,
        "legend_at_bottom_columns": 4,
        "x_label_rotation": 30 if rotate else 0,
        "truncate_label": 40,
        "truncate_legend": 40,
        "print_values": False,
        "tooltip_border_radius": 0,
        "no_data_text": "no events in the period",
        "show_y_guides": True,
        "margin": 12,
        "margin_bottom": 28 if legend else 12,
        "spacing": 8,
    }


def _inert(chart: pygal.graph.graph.Graph, name: str) -> tuple[str, tuple[str, ...]]:
    """Serialise without scripts, tooltips or style attributes; ids from `name`."""
    root = chart.render_tree()
    uuid = str(chart.uuid)
    # Collect first, then remove: removing while iterating skips elements (lxml, which
    # pygal uses when it is installed, walks the live tree).
    doomed = []
    for parent in root.iter():
        for child in parent:
            if not isinstance(child.tag, str):  # a comment (pygal's credits)
                doomed.append((parent, child))
                continue
            tag = child.tag.rsplit("}", 1)[-1]
            classes = (child.get("class") or "").split()
            if tag == "script" or "tooltip" in classes:
                doomed.append((parent, child))
    for parent, child in doomed:
        parent.remove(child)
    for element in root.iter():
        element.attrib.pop("style", None)
    ident = f"report-{name}"
    styles = tuple(
        (element.text or "").replace(uuid, ident)
        for element in root.iter()
        if isinstance(element.tag, str) and element.tag.rsplit("}", 1)[-1] == "style"
    )
    return ET.tostring(root, encoding="unicode").replace(uuid, ident), styles


def _top(counts: Counter[str]) -> tuple[list[str], list[int], str]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ranked[:TOP]
    labels = [label for label, _ in shown]
    values = [value for _, value in shown]
    rest = ranked[TOP:]
    note = ""
    if rest:
        labels.append(_OTHERS)
        values.append(sum(v for _, v in rest))
        note = f"the {TOP} largest of {len(ranked)}, the rest summed"
    return labels, values, note


def bars(name: str, title: str, counts: Counter[str], caption: str) -> Chart:
    """A horizontal bar per category (largest first), zero categories left out."""
    counts = Counter({k: v for k, v in counts.items() if v})
    labels, values, note = _top(counts)
    height = min(900, 110 + 30 * max(len(labels), 2))
    chart = pygal.HorizontalBar(**_config(title, legend=False, height=height))
    if values:  # pygal fails on y labels of a chart without data
        chart.y_labels = _ticks(max(values))
    chart.x_labels = [printable(label) for label in reversed(labels)]
    chart.add("count", list(reversed(values)))
    return Chart(name, title, f"{caption}{'; ' + note if note else ''}", *_inert(chart, name))


def stacked(
    name: str,
    title: str,
    buckets: Sequence[str],
    series: dict[str, dict[str, int]],
    caption: str,
    *,
    rotate: bool = True,
) -> Chart:
    """Stacked columns: one column per bucket, one colour per series; zeros left out."""
    rows = -(-len(series) // 4)  # legend rows, four per row
    rotate = rotate and len(buckets) > 6  # a few labels fit flat
    height = 360 + 22 * rows + (40 if rotate else 0)
    chart = pygal.StackedBar(**_config(title, legend=True, rotate=rotate, height=height))
    chart.x_labels = [printable(bucket) for bucket in buckets]
    totals = [sum(values.get(b) or 0 for values in series.values()) for b in buckets]
    if series and any(totals):  # pygal fails on y labels of a chart without data
        chart.y_labels = _ticks(max(totals))
    for label, values in series.items():
        chart.add(printable(label), [values.get(b) or None for b in buckets])
    return Chart(name, title, caption, *_inert(chart, name))


def timeline(name: str, title: str, points: Iterable[tuple[datetime, str]], caption: str) -> Chart:
    """One dot per event on a time axis, one row and colour per kind."""
    points = list(points)
    if not points:
        return bars(name, title, Counter(), caption)
    chart = pygal.DateTimeLine(
        **_config(title, legend=True, rotate=True),
        stroke=False,
        dots_size=5,
        show_y_labels=False,
        x_value_formatter=lambda when: when.strftime("%Y-%m-%d %H:%M"),
    )
    rows: dict[str, list[tuple[datetime, int]]] = {}
    for _, kind in points:
        rows.setdefault(kind, [])
    order = {kind: i + 1 for i, kind in enumerate(sorted(rows))}
    for when, kind in points:
        rows[kind].append((when, order[kind]))
    for kind in sorted(rows):
        chart.add(printable(kind), rows[kind])
    chart.range = (0, len(rows) + 1)
    return Chart(name, title, caption, *_inert(chart, name))


def _ticks(top: int) -> list[int]:
    """Whole-number axis ticks from 0 to at least `top` (counts are never fractional)."""
    step = max(1, -(-top // 8))
    return list(range(0, max(top, 1) + step, step))


def time_buckets(days: Iterable[str]) -> tuple[str, dict[str, str]]:
    """Choose day, month or year buckets for a set of ISO days (at most ~90 columns).

    Returns:
        The bucket unit and each day's bucket label.
    """
    ordered = sorted(set(days))
    if not ordered:
        return "day", {}
    first = datetime.fromisoformat(ordered[0])
    last = datetime.fromisoformat(ordered[-1])
    span = (last - first).days
    if span <= 92:
        return "day", {d: d for d in ordered}
    if span <= 92 * 31:
        return "month", {d: d[:7] for d in ordered}
    return "year", {d: d[:4] for d in ordered}
