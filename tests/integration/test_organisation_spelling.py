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
