"""Tables on an 80-column terminal keep identifiers whole; data is never markup."""

from __future__ import annotations

import io

from rich.console import Console

from pcii_vault.cli.output import Output, fit_columns, printable

TRACKING = "PCII-2026-000123-ABCDEFGH"
TIME = "2026-11-30T06:55:00.123456+00:00"


def _terminal_output(width: int = 80) -> tuple[Output, io.StringIO]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system=None)
    return Output(console=console), buffer


def test_identifiers_are_never_cut_on_an_80_column_terminal() -> None:
    output, buffer = _terminal_output()
    rows = [
        {
            "tracking_number": TRACKING,
            "principal": "analyst-jones",
            "time": TIME,
            "purpose": "a long purpose " * 8,
            "use": "infrastructure-protection",
            "authority": "none",
        }
    ]
    output.rows(rows, ["principal", "tracking_number", "time", "purpose", "use", "authority"])
    text = buffer.getvalue()
    for value in (TRACKING, "analyst-jones", TIME):
        assert value in text, text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_a_row_wider_than_the_terminal_prints_as_a_block_of_whole_values() -> None:
    output, buffer = _terminal_output(width=60)
    output.rows([{"tracking_number": TRACKING, "time": TIME, "id": "x" * 30}], ["id", "time"])
    text = buffer.getvalue()
    assert f"time: {TIME}" in text and "x" * 30 in text


def test_less_important_columns_are_left_out_when_identifiers_need_the_room() -> None:
    cells = [{"seq": "12", "time": TIME, "record": TRACKING, "actor": "x" * 20, "type": "t" * 30}]
    shown, hidden = fit_columns(cells, ["seq", "time", "type", "actor", "record"], 80)
    assert {"seq", "time", "actor", "record"} <= set(shown)
    assert hidden == ["type"]


def test_a_principal_listing_keeps_status_and_whole_dates_on_80_columns() -> None:
    """A tester's finding: on 80 columns `principal list` left `status` out (a revoked
    user looked active) and split `nda_signed` over two lines."""
    columns = ["id", "role", "organisation", "level", "sectors", "training_expires"]
    columns += ["nda_signed", "contractor", "status"]
    cells = [
        {
            "id": "bob",
            "role": "analyst",
            "organisation": "State Water Board",
            "level": "state",
            "sectors": "Water and Wastewater Systems",
            "training_expires": "2027-06-30",
            "nda_signed": "2026-01-01",
            "contractor": "False",
            "status": "revoked",
        }
    ]
    shown, _ = fit_columns(cells, columns, 80)
    assert {"id", "status", "training_expires", "nda_signed"} <= set(shown)
    output, buffer = _terminal_output(width=80)
    output.rows(cells, columns)
    assert "revoked" in buffer.getvalue() and "2026-01-01" in buffer.getvalue()


def test_markup_in_data_is_text() -> None:
    output, buffer = _terminal_output()
    output.rows([{"id": "a", "organisation": "ops [/ops] [bold]x"}], ["id", "organisation"])
    assert "[/ops] [bold]x" in buffer.getvalue()


def test_control_and_bidi_characters_are_escaped() -> None:
    assert printable("a\u202eb\x1b[31m\u200f") == "a\\u202eb\\u001b[31m\\u200f"
    assert printable("two\nlines", keep_newlines=True) == "two\nlines"
    assert printable("two\nlines") == "two\\u000alines"
