"""`pcii audit report` writes all of its outputs or none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pcii_vault.report
from pcii_vault.cli.report import _Outputs
from pcii_vault.errors import InputError
from pcii_vault.report.data import csv_cell


def test_a_report_that_fails_part_way_leaves_none_of_its_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def page(_result: Any, path: Path, **_: Any) -> None:
        path.write_text("<html></html>")

    def tables(_result: Any, _directory: Path) -> list[Path]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pcii_vault.report, "write_html", page)
    monkeypatch.setattr(pcii_vault.report, "write_csv", tables)
    outputs = _Outputs(tmp_path / "r.html", None, tmp_path / "csv", None, tmp_path / "scratch")
    with pytest.raises(InputError, match="No space"):
        outputs._pages(None, None)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("typed", "cell"),
    [
        ("ctrl \x1b]0;pwned\x07 \u202egnp.exe", "ctrl \\u001b]0;pwned\\u0007 \\u202egnp.exe"),
        ('=HYPERLINK("http://evil.example")', '\'=HYPERLINK("http://evil.example")'),
        ("\r=1+1", "'\\u000d=1+1"),
        ("two\nlines,FAKE,ROW", "two\\u000alines,FAKE,ROW"),  # no row of its own for grep
        ("drought planning", "drought planning"),
    ],
)
def test_a_csv_cell_shows_what_users_typed_without_running_it(typed: str, cell: str) -> None:
    """A tester's finding: escapes and bidi overrides reached the CSV files raw."""
    assert csv_cell(typed) == cell
    assert csv_cell(3) == 3
