"""`pcii index rebuild` while other processes of the vault act: nobody fails, nothing lost.

The rebuild replays the log into a new file beside the index and installs it atomically
under the index's write lock; the others open the new file before their next write. Two
`Vault` objects on one directory stand for two processes (each its own SQLite connection
and its own lock descriptors).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vault_support import VaultBench, run_concurrently

from pcii_vault.vault import Vault

pytestmark = [pytest.mark.slow]

SECRET = b"rebuild-while-acting"
ROUNDS = 12


def test_an_index_rebuilt_while_others_act_fails_none_of_them(tmp_path: Path) -> None:
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"not a pdf " * 20)
    errors: list[BaseException] = []
    received: list[str] = []

    def rebuild() -> None:
        for _ in range(ROUNDS):
            other = Vault(bench.root / "vault", unseal=lambda: SECRET)
            try:
                other.rebuild_index()
            except Exception as exc:  # noqa: BLE001 -- collected for the assertion
                errors.append(exc)
            finally:
                other.close()

    def act() -> None:
        for _ in range(ROUNDS * 2):
            try:
                received.append(bench.submit_receipt(attach=False).tracking_number)
                bench.vault.status(
                    bench.vault.sign(bench.ids["owner"], "status", record=received[-1])
                )
            except Exception as exc:  # noqa: BLE001 -- collected for the assertion
                errors.append(exc)

    run_concurrently([rebuild, act])
    assert errors == []
    bench.vault.sync()
    for tracking in received:
        assert bench.vault.index.record(tracking).state == "received"
    projected = bench.vault.index.dump()
    bench.vault.rebuild_index()
    assert bench.vault.index.dump() == projected
    assert sorted(p.name for p in (bench.root / "vault").iterdir() if p.name.startswith(".")) == []
    bench.audit()
    bench.vault.close()
