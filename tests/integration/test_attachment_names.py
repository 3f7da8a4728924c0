"""An attachment's name: described in the document, given as a file, released as described."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from vault_support import ATTACHMENT, VaultBench

import pcii_vault.models.submission as submission_module
from pcii_vault.models.submission import SubmissionInvalid, example_submission

SECRET = b"attachment-names-secret"
WATER = "Water and Wastewater Systems"
OTHER_CASE = ATTACHMENT.upper()


@pytest.fixture
def bench(tmp_path: Path) -> VaultBench:
    made = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional capture\n")
    made.add("analyst", "analyst", "EPA Water", "federal", sectors=[WATER])
    (tmp_path / OTHER_CASE).write_bytes(b"fictional capture\n")
    return made


def _upload(bench: VaultBench, given: Path) -> str:
    document = example_submission()
    document["attachments"][0]["name"] = ATTACHMENT
    return bench.receive(bench.upload_document(document, [given])).tracking_number


def test_a_file_given_in_another_case_than_described_is_refused_at_intake(
    bench: VaultBench, tmp_path: Path
) -> None:
    """A tester's finding: it was accepted, and the record could then be neither reviewed
    nor retrieved (exit 1, 'attachment list does not match', release.failed logged)."""
    with pytest.raises(SubmissionInvalid, match="names must match exactly, case included"):
        _upload(bench, tmp_path / OTHER_CASE)


def test_a_record_stored_with_names_differing_in_case_is_released_as_described(
    bench: VaultBench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record an older version accepted that way is released, under the described name."""
    older = submission_module._attachment_problems

    def as_before(document: dict[str, Any], names: Sequence[str], **_: object) -> list[str]:
        return older(document, names, exact=False)

    monkeypatch.setattr(submission_module, "_attachment_problems", as_before)
    tracking = _upload(bench, tmp_path / OTHER_CASE)
    monkeypatch.undo()
    vault = bench.vault
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    vault.release(bench.retrieve(tracking), tmp_path / "out")
    released = tmp_path / "out" / tracking
    assert [p.name for p in (released / "attachments").iterdir()] == [ATTACHMENT]
    assert (released / "attachments" / ATTACHMENT).read_bytes() == b"fictional capture\n"
    assert (released / f"{ATTACHMENT}.PCII.txt").is_file()
    bench.audit()
