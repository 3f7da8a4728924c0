"""A command asks for the unseal secret once, however often it reads the keyring.

A tester's finding: at a terminal, `keys status` made the custodians type their shares
twice and `keys rotate` three times (a passphrase vault asked three times): each key
operation reads the keyring again under its lock, and every read asked afresh.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.cli import session
from pcii_vault.cli.output import CliState

SECRET = b"asked-once-unseal-secret"


def test_a_key_rotation_asks_for_the_secret_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    root = bench.vault.paths.root
    bench.vault.close()
    asked: list[bool] = []

    def typed(*, confirm: bool = False, shares: bool = False) -> bytes:
        asked.append(shares)
        return SECRET

    monkeypatch.setattr(session, "unseal_secret", typed)
    vault = session.open_vault(CliState(vault=root))
    try:
        admin = bench.ids["admin"]
        vault.key_status(vault.sign(admin, "rotate-keys", params={"op": "status"}))
        assert vault.rotate_keys(vault.sign(admin, "rotate-keys", params={"op": "rotate"})) == 2
        vault.key_status(vault.sign(admin, "rotate-keys", params={"op": "status"}))
    finally:
        vault.close()
    assert asked == [False]
