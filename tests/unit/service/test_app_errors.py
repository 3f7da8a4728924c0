"""The server's answer to a bug: the error shape, exit 1, never a bare text page."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from vault_support import VaultBench

from pcii_vault.errors import BackendError
from pcii_vault.models.submission import SubmissionInvalid
from pcii_vault.service import app as service
from pcii_vault.service import wire


def test_an_unexpected_error_is_answered_in_the_error_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = VaultBench(tmp_path, secret=b"app-errors-unseal-secret", attachment_bytes=b"x")
    try:

        def broken(*_args: object) -> None:
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


def test_a_store_failure_does_not_tell_clients_where_the_store_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: a 503 named the server's store directory to any user.

    The client learns that the server's store failed; the server's log keeps where.
    """
    bench = VaultBench(tmp_path, secret=b"app-errors-unseal-secret", attachment_bytes=b"x")
    vault = bench.vault
    objects = vault.paths.root / "objects"
    failure = f"filesystem store {objects}: write log/claims/0033 failed: Operation not permitted"
    try:

        def down(*_args: object) -> None:
            raise BackendError(failure)

        monkeypatch.setattr(service, "_ready", down)
        monkeypatch.setattr(vault, "current_kek_version", down)
        app = service.create_app(vault, spool=service.private_spool(tmp_path / "spool"))
        with TestClient(app.app, raise_server_exceptions=False) as http:
            ready = http.get("/readyz")
            info = http.get("/v1/info")
        assert ready.status_code == 503 and info.status_code == 503
        for said in (ready.json()["error"], info.json()["error"]):
            assert str(tmp_path) not in said
            assert said == (
                "the server's filesystem store: write log/claims/0033 failed: "
                "Operation not permitted"
            )
    finally:
        vault.close()


def test_a_submission_refused_by_the_server_reads_as_one_refused_locally() -> None:
    """A tester's finding: the server's problems arrived run together on one line.

    A client of another version than the server's may let a submission through that the
    server refuses: its user sees the same summary line and one line per problem.
    """
    problems = ["facility.city: required", "facility.state: required"]
    refused = SubmissionInvalid(problems)
    body = wire.ErrorBody(
        error=refused.diagnostics(),
        exit_code=refused.exit_code,
        kind=type(refused).__name__,
        problems=list(refused.problems),
    )
    raised = wire.error_from_body(body)
    assert isinstance(raised, SubmissionInvalid)
    assert raised.diagnostics() == refused.diagnostics()
    assert raised.diagnostics().splitlines() == [
        "submission has 2 problems",
        "  facility.city: required",
        "  facility.state: required",
    ]


@pytest.mark.parametrize("handed", [None, False])
def test_an_error_says_over_the_wire_whether_the_act_reached_the_log(handed: bool | None) -> None:
    """A submission the core refused before its event was handed to the log must not be
    reported as one the vault may record all the same (the client adds that note)."""
    refused = BackendError("this vault's keyring is behind the log")
    refused.handed_to_log = handed
    response = service._error(refused)
    body = wire.ErrorBody.model_validate_json(response.body)
    raised = wire.error_from_body(body)
    assert isinstance(raised, BackendError)
    assert raised.handed_to_log is handed


def test_uploads_hold_a_share_of_the_threads_not_all(tmp_path: Path) -> None:
    """A tester's finding: 45 uploads trickling at 20 KiB/s (above the minimum rate) held
    every one of the 40 threads, and every other user's request waited. Uploads run under
    a limiter of their own, smaller than the pool the signature checks share."""
    import anyio.to_thread

    bench = VaultBench(tmp_path, secret=b"app-errors-unseal-secret", attachment_bytes=b"x")
    try:
        app = service.create_app(bench.vault, spool=service.private_spool(tmp_path / "spool"))
        with TestClient(app.app) as http:
            assert http.get("/healthz").status_code == 200
            uploads = app.app.state.upload_threads
            shared = http.portal.call(anyio.to_thread.current_default_thread_limiter)
            assert uploads.total_tokens == service.UPLOAD_THREADS
            assert uploads.total_tokens <= shared.total_tokens // 2
    finally:
        bench.vault.close()


def test_the_catch_up_thread_outlives_a_failure_that_is_no_vault_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tester's finding: a connection flood ran the server out of file descriptors, and
    the thread that follows other replicas died for good of the OSError."""
    import threading

    monkeypatch.setattr(service, "_CATCH_UP_SECONDS", 0.01)
    stop = threading.Event()
    calls: list[int] = []

    class Flooded:
        def sync(self) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise OSError(24, "Too many open files")
            stop.set()

    service._follow(Flooded(), None, stop)  # type: ignore[arg-type]
    assert len(calls) == 2  # it went on after the failure
