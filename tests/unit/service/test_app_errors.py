"""The server's answer to a bug: the error shape, exit 1, never a bare text page."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from vault_support import VaultBench

from pcii_vault.service import app as service


def test_an_unexpected_error_is_answered_in_the_error_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = VaultBench(tmp_path, secret=b"app-errors-unseal-secret", attachment_bytes=b"x")
    try:

        def broken(_vault: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(service, "_ready", broken)
        app = service.create_app(bench.vault, spool=service.private_spool(tmp_path / "spool"))
        with TestClient(app.app, raise_server_exceptions=False) as http:
            response = http.get("/readyz")
            assert response.status_code == 500
            assert response.json() == {
                "error": "unexpected server error: RuntimeError",
                "exit_code": 1,
                "kind": "VaultError",
                "problems": [],
            }
            assert http.get("/healthz").json() == {"status": "alive"}
    finally:
        bench.vault.close()
