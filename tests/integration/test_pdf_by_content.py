"""A PDF attachment is stamped on every page whatever its name: a reader opens it by its
first bytes, not by its extension."""

from __future__ import annotations

from pathlib import Path

import pypdf
import pytest
from vault_support import ATTACHMENT, VaultBench

from pcii_vault.models.submission import example_attachment_bytes
from pcii_vault.vault import StagedRelease

SECRET = b"pdf-by-content-unseal-secret"
WATER = "Water and Wastewater Systems"
MARKING = "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION"


@pytest.fixture(
    params=[0, 1100, (1 << 20) - 2], ids=["at-the-start", "after-1k", "across-a-mebibyte"]
)
def bench(tmp_path: Path, request: pytest.FixtureRequest) -> VaultBench:
    """The example PDF, submitted under a name that does not end in .pdf, after `param`
    bytes of junk (a tester's finding: poppler opens a PDF whose header is past the first
    kilobyte, and it went out unstamped with a sidecar)."""
    assert not ATTACHMENT.lower().endswith(".pdf")
    junk = b" " * request.param
    made = VaultBench(tmp_path, secret=SECRET, attachment_bytes=junk + example_attachment_bytes())
    made.add("analyst", "analyst", "EPA Water", "federal", sectors=[WATER])
    return made


def _validated(bench: VaultBench) -> str:
    tracking = bench.submit_receipt().tracking_number
    vault = bench.vault
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    return tracking


def _assert_stamped(released: Path, original: Path) -> None:
    pages = pypdf.PdfReader(released).pages
    assert len(pages) == len(pypdf.PdfReader(original).pages) + 1
    assert all(MARKING in page.extract_text() for page in pages)


def test_a_pdf_named_otherwise_is_stamped_not_sidecarred(bench: VaultBench, tmp_path: Path) -> None:
    """A tester's finding: a PDF named `report.bin` went out unstamped, with a sidecar."""
    tracking = _validated(bench)
    release = bench.vault.release(bench.retrieve(tracking), tmp_path / "out")
    _assert_stamped(release.directory / "attachments" / ATTACHMENT, bench.attachment)
    assert f"attachments/{ATTACHMENT}.PCII.txt" not in release.files
    assert not (release.directory / "attachments" / f"{ATTACHMENT}.PCII.txt").exists()
    document = (release.directory / "document.md").read_text()
    assert f"released as attachments/{ATTACHMENT}, stamped on every page" in document
    assert ".PCII.txt" not in (release.directory / "COVER-SHEET.txt").read_text()
    bench.audit()


def test_a_server_stages_such_a_pdf_to_stamp_it_rather_than_hold_it(
    bench: VaultBench, tmp_path: Path
) -> None:
    """A small release is held in memory by a server, but stamping needs files."""
    tracking = _validated(bench)
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    request = bench.retrieve(tracking)
    with bench.vault.serve_release(request, spool, in_memory=64 << 20) as staged:
        assert isinstance(staged, StagedRelease)
        _assert_stamped(staged.directory / "attachments" / ATTACHMENT, bench.attachment)
        assert f"attachments/{ATTACHMENT}.PCII.txt" not in staged.files
