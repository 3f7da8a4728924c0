"""A release cut off by the server's shutdown is recorded as failed, exactly once.

A tester's finding: SIGTERM while a client read a large release slowly; uvicorn's
graceful shutdown timed out, cancelled the request and did not wait for it, so the
stream's own clean-up never ran and `audit recipients` said the record was delivered.
(End to end it takes uvicorn's 30 s grace: `f4` of the finding, run by hand.)
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from vault_support import VaultBench

from pcii_vault.service import app as service


def test_the_shutdown_records_every_release_still_unfinished_once(tmp_path: Path) -> None:
    bench = VaultBench(tmp_path, secret=b"release-cut-off-secret", attachment_bytes=b"x")
    try:
        app = service.create_app(bench.vault, spool=service.private_spool(tmp_path / "spool"))
        context = app.app.state.context
        ended: list[bool] = []
        with TestClient(app.app):
            cut = service._Finisher(ended.append, context.unfinished)
            done = service._Finisher(ended.append, context.unfinished)
            done(True)  # sent whole: recorded by its stream, and no longer unfinished
            assert context.unfinished == {cut}
        # The lifespan's shutdown ran: the one still unfinished is recorded as not sent.
        assert ended == [True, False]
        assert context.unfinished == set()
        cut(True)  # the cancelled stream's own clean-up, late: nothing recorded twice
        assert ended == [True, False]
    finally:
        bench.vault.close()
