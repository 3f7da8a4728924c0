"""The report's charts: inert SVG (no script, no style attribute, nothing loaded)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from pcii_vault.report import charts

HOSTILE = "<script>alert(1)</script>"


def _bars(svg: str) -> int:
    return sum(
        1
        for height in re.findall(r'<rect [^>]*height="([^"]+)"[^>]*class="rect reactive', svg)
        if float(height) > 0
    )


def test_charts_carry_no_script_no_style_attribute_and_load_nothing() -> None:
    made = [
        charts.bars("b", "Bars", Counter({HOSTILE: 2, "x": 1}), "caption"),
        charts.stacked("s", "Stacked", ["d1", "d2"], {HOSTILE: {"d1": 1}}, "caption"),
        charts.timeline("t", "Timeline", [(datetime(2026, 1, 1, tzinfo=UTC), HOSTILE)], "c"),
    ]
    for chart in made:
        assert "<script" not in chart.svg
        assert "style=" not in chart.svg
        assert "<!--" not in chart.svg
        assert not re.search(r"(?:href|src)=", chart.svg)
        assert "&lt;script&gt;" in chart.svg  # the label is text
        # The page's CSP hashes each style as the DOM holds it: the SVG's text, unescaped.
        assert chart.styles and all(escape(s) in chart.svg for s in chart.styles)


def test_same_figures_same_bytes() -> None:
    def make() -> str:
        return charts.bars("b", "Bars", Counter({"a": 2, "b": 1}), "c").svg

    assert make() == make()
    assert 'id="chart-report-b"' in make()


def test_one_mark_per_non_zero_cell() -> None:
    chart = charts.stacked(
        "s", "S", ["d1", "d2", "d3"], {"x": {"d1": 2, "d3": 1}, "y": {"d2": 4, "d3": 0}}, "c"
    )
    assert _bars(chart.svg) == 3
    assert _bars(charts.bars("b", "B", Counter({"a": 1, "b": 0, "c": 5}), "c").svg) == 2


def test_many_categories_show_the_largest_and_sum_the_rest() -> None:
    counts = Counter({f"r{i:02d}": i + 1 for i in range(charts.TOP + 5)})
    chart = charts.bars("b", "B", counts, "records")
    assert _bars(chart.svg) == charts.TOP + 1
    assert "(all others)" in chart.svg
    assert f"the {charts.TOP} largest of {charts.TOP + 5}" in chart.caption


def test_time_buckets_follow_the_span() -> None:
    assert charts.time_buckets(["2026-01-01", "2026-02-01"])[0] == "day"
    unit, bucket = charts.time_buckets(["2026-01-01", "2026-12-31"])
    assert unit == "month" and bucket["2026-12-31"] == "2026-12"
    assert charts.time_buckets(["2020-01-01", "2030-01-01"])[0] == "year"


def test_control_and_bidi_characters_in_labels_are_shown_escaped() -> None:
    # A vertical tab is not allowed in XML (the chart library refused the whole report);
    # a right-to-left override would reorder what the auditor reads.
    label = "Org\x0bVT \u202eCorp"
    made = [
        charts.bars("b", "Bars", Counter({label: 2}), "caption"),
        charts.stacked("s", "Stacked", ["d1"], {label: {"d1": 1}}, "caption"),
        charts.timeline("t", "Timeline", [(datetime(2026, 1, 1, tzinfo=UTC), label)], "c"),
    ]
    for chart in made:
        assert "\\u000b" in chart.svg and "\\u202e" in chart.svg
        assert "\x0b" not in chart.svg and "\u202e" not in chart.svg
