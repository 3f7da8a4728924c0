"""Upload tickets: a tracking number bound to the principal a server issued it to.

The same for every replica of the vault (keyed from the keyring it copies), different for
another principal, tracking number or vault, and checked in constant time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import PolicyDenied
from pcii_vault.vault import Vault

SECRET = b"upload-ticket-unseal-secret"
TRACKING = "PCII-2026-00001234"


@pytest.fixture
def bench(tmp_path: Path) -> VaultBench:
    return VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"x")


def test_a_ticket_is_bound_to_its_principal_and_tracking_number(bench: VaultBench) -> None:
    vault = bench.vault
    ticket = vault.upload_ticket("owner", TRACKING)
    vault.check_upload_ticket("owner", TRACKING, ticket)
    assert len(ticket) == 32
    assert ticket != vault.upload_ticket("office", TRACKING)
    assert ticket != vault.upload_ticket("owner", "PCII-2026-00001235")
    with pytest.raises(PolicyDenied, match="does not match PCII-2026-00001234 for office"):
        vault.check_upload_ticket("office", TRACKING, ticket)
    with pytest.raises(PolicyDenied, match="for owner: only the owner"):
        vault.check_upload_ticket("owner", "PCII-2026-00001235", ticket)
    with pytest.raises(PolicyDenied, match="for owner: only the owner"):
        vault.check_upload_ticket(
            "owner", TRACKING, ticket[:-1] + ("A" if ticket[-1] != "A" else "B")
        )
    for missing in (None, ""):
        with pytest.raises(PolicyDenied, match="no upload ticket"):
            vault.check_upload_ticket("owner", TRACKING, missing)
    with pytest.raises(PolicyDenied, match="does not match"):
        vault.check_upload_ticket("owner", TRACKING, "\udcff" * 32)  # not even UTF-8


def test_every_replica_issues_the_same_ticket(bench: VaultBench) -> None:
    replica = Vault(bench.root / "vault", unseal=lambda: SECRET)
    try:
        assert replica.upload_ticket("owner", TRACKING) == bench.vault.upload_ticket(
            "owner", TRACKING
        )
    finally:
        replica.close()


def test_another_vaults_ticket_is_refused(bench: VaultBench, tmp_path: Path) -> None:
    other = VaultBench(tmp_path / "other", secret=SECRET, attachment_bytes=b"x")
    ticket = other.vault.upload_ticket("owner", TRACKING)
    with pytest.raises(PolicyDenied, match="does not match"):
        bench.vault.check_upload_ticket("owner", TRACKING, ticket)


def test_a_tracking_number_with_uploads_in_progress_is_never_issued_again(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two owners issued one number would both hold valid tickets for it."""
    vault = bench.vault
    serials = iter([1234, 1234, 1235])
    monkeypatch.setattr("secrets.randbelow", lambda _n: next(serials))
    first = vault.new_tracking_number()
    vault.store.put_if_absent(f"records/{first}/document", b"sealed")
    second = vault.new_tracking_number()
    assert (first[-4:], second[-4:]) == ("1234", "1235")
