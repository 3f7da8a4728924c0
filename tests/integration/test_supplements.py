"""A supplement names an earlier submission of its own organisation.

A tester's finding: `related_tracking_number` was never checked: an owner of another
organisation could cite any record (or one that never existed), and the release of the
supplement said "Supplements: PCII-..." of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import InputError
from pcii_vault.models.submission import example_submission
from pcii_vault.receipt import Receipt

SECRET = b"supplements-secret"


@pytest.fixture
def bench(tmp_path: Path) -> VaultBench:
    made = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    made.add("grid", "owner", "Northgrid Power", "private")
    return made


def _supplement(bench: VaultBench, who: str, related: str) -> Receipt:
    document = example_submission()
    document["attachments"] = []
    document["related_tracking_number"] = related
    organisation = bench.vault.index.principal(who).organisation
    for part in ("submitter", "certification"):
        document[part]["organisation"] = organisation
    return bench.receive(bench.upload_document(document, []), who)


def test_a_supplement_of_ones_own_submission_is_received(bench: VaultBench) -> None:
    earlier = bench.submit_receipt().tracking_number
    assert _supplement(bench, "owner", earlier).tracking_number != earlier
    bench.audit()


@pytest.mark.parametrize("whose", ["another organisation's", "no record's"])
def test_a_supplement_of_anything_else_is_refused_alike(bench: VaultBench, whose: str) -> None:
    related = (
        bench.submit_receipt().tracking_number
        if whose.startswith("another")
        else ("PCII-2026-99999999")
    )
    size = bench.vault.reader().size()
    with pytest.raises(InputError) as refused:
        _supplement(bench, "grid", related)
    assert str(refused.value) == (
        f"related_tracking_number: {related} is no submission of your organisation "
        "(a supplement names an earlier submission of its own submitter)"
    )
    assert bench.vault.reader().size() == size
    bench.audit()
