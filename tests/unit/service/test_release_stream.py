"""A release streamed by the server: what the log says when the client does not take it.

Driven through the ASGI application itself (no socket), as uvicorn drives it (ASGI spec
2.3: a client that goes away is an `http.disconnect` from `receive`, and a body sent after
it is dropped without an error), so the client can go away at the exact moment the body is
sent: the access was logged before any byte left, and the log must also say that the
release failed; a client that takes the body leaves no such event.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from vault_support import VaultBench

from pcii_vault.models.event import Event
from pcii_vault.service import app as service
from pcii_vault.service import wire
from pcii_vault.service.httpsig import RequestSigner, content_digest

HOST = "vault.test"


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[VaultBench]:
    made = VaultBench(tmp_path, secret=b"release-stream-secret", attachment_bytes=b"x" * 2048)
    yield made
    made.vault.close()


def _release(
    bench: VaultBench,
    spool: Path,
    tracking: str,
    *,
    client_leaves: bool,
    slow_client: float = 0.0,
    limits: service.ServiceLimits | None = None,
) -> bytes:
    """POST /v1/releases as the office; the body bytes the client received."""
    office = bench.ids["office"]
    request = bench.vault.sign(office, "review", record=tracking, purpose="review")
    body = wire.Act(request=request).model_dump_json().encode()
    path = f"{wire.API_PREFIX}/releases"
    signed = RequestSigner("office", office.key).headers(
        "POST", f"https://{HOST}{path}", body_digest=content_digest(body)
    )
    headers = {**signed, "host": HOST, "content-type": "application/json"}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": (HOST, 443),
        "client": ("127.0.0.1", 40000),
    }
    received = bytearray()
    status: list[int] = []
    app = service.create_app(bench.vault, spool=spool, limits=limits)

    async def run() -> None:
        requested = False
        started = asyncio.Event()

        async def receive() -> MutableMapping[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": body, "more_body": False}
            if client_leaves:
                await started.wait()  # gone once the answer has begun
                return {"type": "http.disconnect"}
            await asyncio.Event().wait()  # the client says nothing more
            return {"type": "http.disconnect"}  # pragma: no cover - never reached

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                started.set()
            elif message["type"] == "http.response.body" and not client_leaves:
                await asyncio.sleep(slow_client)  # the network drains slowly
                received.extend(message.get("body", b""))

        await app(scope, receive, send)  # the release is finished when the answer is

    asyncio.run(run())
    assert status == [200]
    return bytes(received)


def _events(bench: VaultBench) -> list[Event]:
    reader = bench.vault.reader()
    return list(reader.events(0, reader.size()))


def test_a_release_the_client_did_not_take_is_logged_as_failed(
    bench: VaultBench, tmp_path: Path
) -> None:
    spool = service.private_spool(tmp_path / "spool")
    tracking = bench.submit_receipt().tracking_number
    assert _release(bench, spool, tracking, client_leaves=True) == b""
    events = _events(bench)
    access = next(e for e in events if e.type == "access.decided" and e.record == tracking)
    [failed] = [e for e in events if e.type == "release.failed"]
    assert failed.record == tracking
    assert failed.details["access"] == access.seq
    assert not list(spool.iterdir())
    bench.audit()


def test_a_release_the_client_took_is_not_logged_as_failed(
    bench: VaultBench, tmp_path: Path
) -> None:
    spool = service.private_spool(tmp_path / "spool")
    tracking = bench.submit_receipt().tracking_number
    tar = _release(bench, spool, tracking, client_leaves=False)
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r|") as archive:
        names = {member.name for member in archive}
    assert "document.json" in names
    assert any(name.startswith("attachments/") for name in names)
    assert not [e for e in _events(bench) if e.type == "release.failed"]


def test_a_release_slower_than_the_read_timeout_is_not_cut_off(
    bench: VaultBench, tmp_path: Path
) -> None:
    # The read timeout bounds how long a request's body may take to arrive; once it has,
    # the server waits for nothing from the client while the release streams out.
    spool = service.private_spool(tmp_path / "spool")
    tracking = bench.submit_receipt().tracking_number
    limits = service.ServiceLimits(read_timeout=0.2)
    tar = _release(bench, spool, tracking, client_leaves=False, slow_client=0.6, limits=limits)
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r|") as archive:
        assert "document.json" in {member.name for member in archive}
    assert not [e for e in _events(bench) if e.type == "release.failed"]
