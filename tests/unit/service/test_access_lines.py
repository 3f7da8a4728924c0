"""The server's access lines: one per request, however the request ends."""

from __future__ import annotations

import asyncio
from typing import Any

from pcii_vault.service.app import Service, ServiceLimits


class _Lines:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


def test_a_request_cut_off_by_the_shutdown_gets_its_access_line_and_no_error() -> None:
    """A tester's finding: a release cut off when the server's 30 s shutdown grace ran
    out made uvicorn log "Exception in ASGI application" (the cancellation), at error
    level. The guard ends such a request quietly, its access line marked cut off."""

    async def streaming(_scope: Any, _receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(3600)  # a release to a slow client

    async def run() -> None:
        lines = _Lines()
        guard = Service(streaming, ServiceLimits(), lines)  # type: ignore[arg-type]
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "path": "/v1/releases",
            "headers": [(b"host", b"127.0.0.1")],
        }
        task = asyncio.create_task(guard(scope, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()  # as uvicorn does when the grace runs out
        await task  # ended, not raised
        [line] = lines.lines
        assert (line["event"], line["status"], line["cut_off"]) == ("access", 200, True)
        assert line["route"] == "/v1/releases"

    asyncio.run(run())
