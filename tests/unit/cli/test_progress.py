"""Progress: shown on a terminal, within 80 columns, with the file name; never with --json."""

from __future__ import annotations

import io

from rich.console import Console

from pcii_vault.cli.output import Output
from pcii_vault.cli.progress import release_progress, short_name


def test_no_progress_with_json_or_off_a_terminal() -> None:
    with release_progress(Output(json_mode=True)) as progress:
        assert progress is None
    plain = Output()
    plain._errors = Console(file=io.StringIO(), force_terminal=False)
    with release_progress(plain) as progress:
        assert progress is None


def test_release_progress_names_the_file_and_fits_80_columns() -> None:
    output = Output()
    buffer = io.StringIO()
    output._errors = Console(file=buffer, force_terminal=True, width=80, color_system=None)
    with release_progress(output) as progress:
        assert progress is not None
        progress("riverbend-scada-assessment-full-report.pdf", 1 << 20, 4 << 20)
        output.errors.file.flush()
    text = buffer.getvalue()
    assert short_name("riverbend-scada-assessment-full-report.pdf") in text
    assert all(len(line) <= 80 for line in text.splitlines())
