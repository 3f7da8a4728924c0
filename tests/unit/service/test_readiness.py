"""`/readyz`: ready only when the next act could be done."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from vault_support import VaultBench

from pcii_vault.service import app as service
from pcii_vault.vault import Vault

SECRET = b"readiness-unseal-secret"


def test_a_replica_whose_keyring_is_behind_the_log_is_not_ready(tmp_path: Path) -> None:
    """A tester's finding: after a rotation through another replica (its own copy of the
    keyring), this one said ready and refused every submission (exit 5)."""
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    root = bench.vault.paths.root
    stale = (root / "keyring.sealed").read_bytes()
    bench.vault.rotate_keys(
        bench.vault.sign(bench.ids["admin"], "rotate-keys", params={"op": "rotate"})
    )
    bench.vault.close()
    (root / "keyring.sealed").write_bytes(stale)  # this replica's copy, never rotated
    bench.vault = Vault(root, unseal=lambda: SECRET)
    app = service.create_app(bench.vault, spool=service.private_spool(tmp_path / "spool"))
    try:
        with TestClient(app.app) as http:
            ready = http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert "rotated by another replica" in ready.json()["error"]
    finally:
        bench.vault.close()
