"""One organisation, one spelling: the policies compare organisations exactly.

A tester's finding: an owner registered as "riverbend  MUNICIPAL water authority" could
submit a document naming "Riverbend Municipal Water Authority" (intake compares without
regard to case and spacing), yet the owners of that spelling could then neither follow
nor withdraw it, and the other way round.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import InputError
from pcii_vault.models.submission import example_submission

SECRET = b"organisation-spelling"
OTHER_SPELLING = "riverbend  MUNICIPAL water authority"


@pytest.fixture
def bench(tmp_path: Path) -> VaultBench:
    return VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")


def test_a_second_spelling_of_an_organisation_is_refused_at_registration(
    bench: VaultBench,
) -> None:
    registered = bench.vault.index.principal("owner").organisation
    assert registered != OTHER_SPELLING
    with pytest.raises(InputError, match=r"spelled otherwise: give it as registered"):
        bench.add("owner2", "owner", OTHER_SPELLING, "private")
    bench.add("owner3", "owner", registered, "private")  # the same spelling: one organisation
    bench.add("grid", "owner", "Northgrid Power", "private")


def test_nor_may_an_update_give_one(bench: VaultBench) -> None:
    bench.add("grid", "owner", "Northgrid Power", "private")
    request = bench.vault.sign(
        bench.ids["admin"],
        "manage-principals",
        params={"op": "update", "principal": "grid", "changes": {"organisation": OTHER_SPELLING}},
    )
    with pytest.raises(InputError, match="spelled otherwise"):
        bench.vault.update_principal(request, "grid", {"organisation": OTHER_SPELLING})
    assert bench.vault.index.principal("grid").organisation == "Northgrid Power"


@pytest.mark.parametrize(
    "spelling",
    [
        "Socie\u0301te\u0301 E\u0301nergie",  # decomposed accents (NFD), as some editors type
        "\uff33oci\u00e9t\u00e9 \u00c9nergie",  # a fullwidth S
    ],
)
def test_the_same_letters_in_another_unicode_form_are_one_spelling(
    bench: VaultBench, spelling: str
) -> None:
    """A tester's finding: "Société Énergie" in NFD beside its NFC spelling was
    registered as a second organisation, and an owner whose document named its own
    organisation in the other form was told it was not theirs, both names printed alike."""
    bench.add("cafe", "owner", "Soci\u00e9t\u00e9 \u00c9nergie", "private")
    with pytest.raises(InputError, match="spelled otherwise"):
        bench.add("cafe2", "owner", spelling, "private")
    document = example_submission()
    document["submitter"]["organisation"] = spelling
    document["certification"]["organisation"] = spelling
    document["attachments"] = []
    receipt = bench.receive(bench.upload_document(document, []), "cafe")
    row = bench.vault.index.record(receipt.tracking_number)
    assert row.submitter_org == "Soci\u00e9t\u00e9 \u00c9nergie"  # the registered spelling


def test_an_owner_alone_in_its_organisation_may_not_respell_it_away_from_its_records(
    bench: VaultBench,
) -> None:
    """A tester's finding: the only owner of "Société des Eaux" updated to the NFD form;
    no other principal held the NFC one, so it was accepted, and its own records (of the
    NFC spelling) became another organisation's to the policies."""
    nfc, nfd = "Soci\u00e9t\u00e9 des Eaux", "Socie\u0301te\u0301 des Eaux"
    bench.add("eaux", "owner", nfc, "private")
    document = example_submission()
    document["submitter"]["organisation"] = nfc
    document["certification"]["organisation"] = nfc
    document["attachments"] = []
    bench.receive(bench.upload_document(document, []), "eaux")
    with pytest.raises(InputError, match="of submitted records"):
        bench.update("eaux", organisation=nfd)
    assert bench.vault.index.principal("eaux").organisation == nfc
