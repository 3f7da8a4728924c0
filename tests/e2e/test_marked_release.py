"""Released PDFs through the CLI: stamped for whom the policy releases them, withheld
by the policy's `withhold:attachments` or when they cannot be parsed (said on the cover
sheet), and `get` says what it withheld or redacted and where the files are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pypdf
import pytest

from tests.e2e.conftest import IN_BOTH_MODES, Cli

pytestmark = pytest.mark.slow

HEAD = "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION"
PDF = "riverbend-scada-assessment.pdf"


def _validated(cli: Cli, attachment: Path) -> str:
    path = cli.write_submission()
    tracking = str(
        cli.ok("submit", str(path), "--attach", str(attachment), who="owner").json()[
            "tracking_number"
        ]
    )
    cli.ok("validate", tracking, who="office")
    return tracking


def _get(cli: Cli, tracking: str, out: str, *, who: str) -> dict[str, Any]:
    result = cli.ok(
        "get", tracking, "--purpose", "drought planning", "--out", str(cli.root / out), who=who
    )
    return dict(result.json())


@IN_BOTH_MODES
def test_a_contractor_gets_the_assessment_but_not_its_attachments(populated: Cli) -> None:
    cli = populated
    cli.add_water_analyst("contractor", "--contractor")
    tracking = _validated(cli, cli.attachment())
    out = cli.root / "contractor-release"
    result = cli.run(
        "get", tracking, "--purpose", "pump station review", "--out", str(out), who="contractor"
    )
    assert result.code == 0, result.err
    # People are told where the files are and what was withheld or redacted.
    assert f"{out}/{tracking}" in result.out or str(out) in result.out
    assert "redacted: contacts" in result.out
    assert f"withheld: {PDF} (withheld by policy (withhold:attachments))" in result.out
    release = next(out.iterdir())
    assert not (release / "attachments").exists()
    cover = (release / "COVER-SHEET.txt").read_text()
    assert "withhold:attachments" in cover


@IN_BOTH_MODES
def test_an_unparseable_pdf_is_withheld_with_a_note_on_the_cover_sheet(populated: Cli) -> None:
    cli = populated
    broken = cli.root / PDF
    broken.write_bytes(b"%PDF-1.7\n" + b"\x00 not really a pdf " * 50)
    tracking = _validated(cli, broken)
    got = _get(cli, tracking, "r", who="fedwater")
    assert got["withheld"] and "cannot be parsed" in got["withheld"][0]
    release = Path(got["directory"])
    assert not (release / "attachments").exists()
    cover = (release / "COVER-SHEET.txt").read_text()
    assert f"Attachments withheld: {PDF} (withheld: the PDF cannot be parsed" in cover


@IN_BOTH_MODES
def test_a_state_analyst_gets_the_report_stamped_on_every_page(populated: Cli) -> None:
    cli = populated
    tracking = _validated(cli, cli.attachment())
    got = _get(cli, tracking, "s", who="water")
    assert got["redacted"] == ["contacts"] and got["withheld"] == []
    release = Path(got["directory"])
    # Only its recipient reads a release, in both modes alike.
    for folder in (release, release / "attachments"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    reader = pypdf.PdfReader(release / "attachments" / PDF)
    original = pypdf.PdfReader(cli.attachment())
    assert len(reader.pages) == len(original.pages) + 1
    for page in reader.pages:
        text = page.extract_text()
        assert text.count(HEAD) >= 2
        assert f"Released to water - {tracking} - access event {got['access_index']}" in text
