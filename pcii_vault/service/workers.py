"""Serving processes: one, or several on one listening socket (`pcii serve --workers N`).

A Python process runs Python code on one core at a time; a server with more cores runs
several worker processes. The parent checks the vault once (unseal, catch up, the
certificate), binds the socket, then spawns the workers: fresh interpreters, not forks,
so no thread, lock, index connection or key-provider session is shared. Each worker
opens the vault with the secret the parent was given (handed over the spawn pipe, never
through the environment or the command line) and serves the one socket; the kernel
gives each new connection to one of them. Workers share what replicas share, the vault
directory and the store: the log's claims sequence their acts, every act is decided at
its log position, and each stages releases in its own spool. They also share the HTTP
nonces they accepted (a SQLite file in the parent's spool), so a signed message
replayed to another worker is refused as it is to the same one.

The parent only supervises: SIGTERM (or Ctrl-C) is passed on to every worker, which
finishes its in-flight requests and commits its pending batch; the parent exits 0 when
all have. A worker that dies while serving is replaced; one that fails while starting
stops the server with its exit code (its one-line error is on stderr): a worker is
started once it has opened the vault and is about to serve.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from pcii_vault.errors import InputError, VaultError
from pcii_vault.keys.local import UNSEAL_SECRET_ENV

if TYPE_CHECKING:
    import asyncio
    from multiprocessing.process import BaseProcess
    from multiprocessing.synchronize import Event

    import uvicorn

    from pcii_vault.config import Batching
    from pcii_vault.service.app import Service, ServiceLimits

__all__ = ["MAX_WORKERS", "Listener", "WorkerSpec", "bind", "run_server", "supervise"]

MAX_WORKERS = 64
_GRACEFUL_S = 30  # what uvicorn gives in-flight requests on SIGTERM
_PARENT_POLL_S = 0.5
_log = structlog.get_logger("pcii.serve")


@dataclass(frozen=True)
class Listener:
    """Where the server listens and the certificate it presents."""

    host: str
    port: int
    cert_path: Path
    key_path: Path


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is announced or spawned.

    Raises:
        InputError: the address is in use or cannot be bound here.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening here, not first in the workers: two servers that both bound the port
        # (SO_REUSEADDR lets a second bind pass until the first listens) meet the conflict
        # now, in the parent, instead of serving nothing with workers that never listen.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --listen"
        ) from None
    sock.set_inheritable(True)
    return sock


# A request's line and headers: ours are under 2 KiB (a signature, a digest, a key id).
# uvicorn's httptools protocol keeps whatever arrives before the blank line, so a client
# could make the server hold a 100 MB "header"; past this, 431 and the connection closed.
MAX_REQUEST_HEAD_BYTES = 64 << 10
_HEAD_TOO_LARGE = "request line and headers over 64 KiB"
_MALFORMED = "invalid HTTP request: it could not be parsed"


class _HeadTooLargeError(Exception):
    """Raised in a parser callback: httptools stops at once and reports a callback error."""


def _error_json(message: str) -> bytes:
    """An answer's body in the API's error shape (a malformed request: exit 2)."""
    from pcii_vault.service.wire import ErrorBody  # noqa: PLC0415 -- a server's cost

    return (
        ErrorBody(error=message, exit_code=2, kind="InputError")
        .model_dump_json(exclude_none=True)
        .encode()
    )


def _bounded_http_protocol(read_timeout: float) -> type[asyncio.Protocol]:
    """The httptools protocol of uvicorn, with limits on a request's head.

    Over 64 KiB: 431. Not complete within `read_timeout` seconds (of the connection, or
    of its first byte on a kept-alive connection): 408. Unparsable: 400. Each answer is
    the API's JSON error and closes the connection; uvicorn alone would hold a head that
    never ends forever, and answer in plain text.
    """
    import http  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    from uvicorn.protocols.http.httptools_impl import (  # noqa: PLC0415 -- a server's cost
        HttpToolsProtocol,
    )

    too_large, malformed = _error_json(_HEAD_TOO_LARGE), _error_json(_MALFORMED)
    too_slow = _error_json(f"request line and headers did not arrive within {read_timeout:g} s")

    class BoundedHead(HttpToolsProtocol):
        _head_bytes = 0  # the target and header lines httptools reported (exact)
        _head_raw = 0  # every byte read while a head is incomplete (a field still growing)
        _in_head = True  # until a request's headers are complete, and between requests
        _began = False  # a byte of the current request arrived
        _over = False  # a callback stopped the parser: the head is too large
        _refused = False
        _deadline: asyncio.TimerHandle | None = None

        def _unsupported_upgrade_warning(self) -> None:
            # The API has no WebSocket route: an upgrade asked for is answered as the
            # ordinary request it also is, with no advice to install a WebSocket library.
            self.logger.debug("upgrade request ignored")

        _head_started = 0.0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()  # the first request's head, from the connection on

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # answered and closing: the parser stopped at an error
            if self._in_head:
                self._head_raw += len(data)
            super().data_received(data)
            # A head counted exactly by the callbacks once complete; until then, by the
            # bytes read (httptools holds a field until its end, however long).
            if self._in_head and self._head_raw > MAX_REQUEST_HEAD_BYTES:
                self._refuse(431, too_large)

        def send_400_response(self, msg: str) -> None:
            """The answer to a parser error (ours among them): the API's error, not text."""
            del msg
            if self._over:
                self._refuse(431, too_large)
            else:
                self._refuse(400, malformed)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._began, self._head_bytes = True, True, 0
            if self._deadline is None:
                self._arm()  # a kept-alive connection's next request: from its first byte

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)  # name, ": ", value, CRLF
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._began, self._head_bytes, self._head_raw = True, False, 0, 0

        def shutdown(self) -> None:
            """SIGTERM: drop a connection that owes nobody an answer at once.

            uvicorn closes it, and over TLS a closed connection is lost only when the
            client answers the close_notify: one that never does (a half-sent head, an
            idle keep-alive) would hold the graceful shutdown for its whole period.
            """
            idle = self.cycle is None or self.cycle.response_complete
            if idle and not self.transport.get_write_buffer_size():
                self._disarm()
                self.transport.abort()
            else:
                super().shutdown()

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
                self._over = True
                raise _HeadTooLargeError

        def _arm(self) -> None:
            self._head_started = self.loop.time()
            self._deadline = self.loop.call_later(read_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self._in_head or self.transport.is_closing():
                return
            if self._began:
                self._refuse(408, too_slow)
            else:  # not a byte of a request: nothing to answer
                self._refused = True
                self.transport.abort()

        def _refuse(self, status: int, body: bytes) -> None:
            """Answer `status` with the JSON `body` and close; never inside another answer."""
            self._refused = True
            self._disarm()
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                # A pipelined request behind an answer still being sent: read no more,
                # and close once that answer is complete.
                self.cycle.keep_alive = False
                self.flow.pause_reading()
                return
            head = [b"HTTP/1.1 %d %s\r\n" % (status, http.HTTPStatus(status).phrase.encode())]
            head += [b"%s: %s\r\n" % pair for pair in self.server_state.default_headers]
            head.append(
                b"content-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n" % len(body)
            )
            self.transport.write(b"".join(head) + body)
            self.transport.close()
            _log.info(
                "access",
                request_id=uuid.uuid4().hex,
                pid=os.getpid(),
                principal=None,
                method=None,
                route=None,
                status=status,
                latency_ms=round((self.loop.time() - self._head_started) * 1000, 2),
            )

    return BoundedHead


def run_server(app: Service, sock: socket.socket, listener: Listener) -> None:
    """Serve `app` over HTTPS on `sock` until SIGTERM or Ctrl-C (graceful)."""
    import uvicorn  # noqa: PLC0415 -- only a server pays for it

    config = uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        ssl_certfile=str(listener.cert_path),
        ssl_keyfile=str(listener.key_path),
        # httptools' C parser and uvloop: the app, not HTTP, takes the time.
        http=_bounded_http_protocol(app.limits.read_timeout),
        loop="uvloop",
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=_GRACEFUL_S,
        server_header=False,
        ws="none",  # no WebSocket route (see `BoundedHead._unsupported_upgrade_warning`)
    )
    _uvicorn_logs_through_structlog()
    server = _handshake_bounded(config, app.limits.read_timeout)

    def stop(_signum: int, _frame: object) -> None:
        # Before uvicorn listens for SIGTERM (its start-up), this stops the server as
        # soon as it runs (a handler that only noted it lost it: the server ran on).
        # uvicorn shuts down gracefully (in-flight requests finish), then raises the
        # signal again for this handler: the caller commits the pending batch, exits 0.
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    server.run(sockets=[sock])


def _handshake_bounded(config: uvicorn.Config, handshake_timeout: float) -> uvicorn.Server:
    """A uvicorn server whose listening sockets bound the TLS handshake too.

    The protocol's own deadline starts once the handshake is done: a connection that
    never sends a ClientHello, or half of one, was held for the event loop's default
    60 s, whatever `PCII_SERVER_READ_TIMEOUT_S` said.
    """
    import asyncio  # noqa: PLC0415 -- only a server pays for it

    import uvicorn  # noqa: PLC0415

    class Bounded(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            loop = asyncio.get_running_loop()
            # Always TLS here (the listener's certificate), the one case the bound applies.
            bounded = functools.partial(loop.create_server, ssl_handshake_timeout=handshake_timeout)
            setattr(loop, "create_server", bounded)  # noqa: B010 -- this loop only
            try:
                await super().startup(sockets=sockets)
            finally:
                delattr(loop, "create_server")

    return Bounded(config)


class _ToStructlog(logging.Handler):
    """A standard-library log record as one structlog line (JSON with `--json`)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed format string in a library's record
            message = str(record.msg)
        structlog.get_logger().log(record.levelno, message, logger=record.name)


def _uvicorn_logs_through_structlog() -> None:
    """Log uvicorn's own lines ("Invalid HTTP request received.") as the server's others.

    Without a handler they reached stderr as plain text through logging's last resort,
    breaking the one-JSON-object-per-line access log.
    """
    logger = logging.getLogger("uvicorn")
    logger.handlers[:] = [_ToStructlog()]
    logger.propagate = False


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs: pickled over the spawn pipe, never the environment."""

    root: Path
    secret: bytes | None
    listener: Listener
    limits: ServiceLimits
    batching: Batching
    json_logs: bool
    nonces: Path  # the SQLite file of the HTTP nonces all workers accepted


def supervise(spec: WorkerSpec, sock: socket.socket, workers: int) -> int:
    """Run `workers` worker processes on `sock` until SIGTERM; the exit code.

    0 after a graceful stop; a worker's own exit code when it failed to start.

    Stopped by Ctrl-C (SIGINT), it raises the signal again for the handler it found,
    once the workers have stopped.
    """
    # The secret travels in `spec`: no process started from here (workers, their
    # replacements, multiprocessing's helpers) inherits it from the environment.
    os.environ.pop(UNSEAL_SECRET_ENV, None)
    context = multiprocessing.get_context("spawn")
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    running: dict[int, tuple[BaseProcess, Event]] = {}

    def start(number: int) -> None:
        started = context.Event()
        process = context.Process(
            target=_work, args=(spec, sock, number, started), name=f"pcii-serve-worker-{number}"
        )
        process.start()
        running[number] = (process, started)

    failed = 0
    try:
        for number in range(1, workers + 1):
            start(number)
        while not stopping and not failed:
            sentinels = [process.sentinel for process, _ in running.values()]
            multiprocessing.connection.wait(sentinels, timeout=0.5)
            for number, (process, started) in list(running.items()):
                code = process.exitcode
                if code is None or stopping:
                    continue
                if not started.is_set():
                    failed = code if code > 0 else 1
                    _log.error("worker_failed_to_start", worker=number, exit_code=code)
                    break
                _log.warning("worker_replaced", worker=number, pid=process.pid, exit_code=code)
                start(number)
    finally:
        for process, _ in running.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        for process, _ in running.values():
            process.join(timeout=_GRACEFUL_S + 15)
            if process.is_alive():
                process.kill()
                process.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stopping and stopping[0] == signal.SIGINT and not failed:
        # For the handler found (the CLI's): exit 130, "interrupted", as with one worker.
        signal.raise_signal(signal.SIGINT)
    return failed


def _work(spec: WorkerSpec, sock: socket.socket, number: int, started: Event) -> None:
    """One worker process: open the vault with the parent's secret, serve `sock`.

    Ctrl-C reaches the whole process group: the parent decides (it stops the workers
    with SIGTERM), so a worker ignores SIGINT rather than dying with a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from pcii_vault.cli.app import configure_logging  # noqa: PLC0415
    from pcii_vault.service.app import create_app, private_spool  # noqa: PLC0415
    from pcii_vault.service.httpsig import SharedNonceCache  # noqa: PLC0415
    from pcii_vault.vault import Vault  # noqa: PLC0415

    configure_logging(level=logging.INFO, json_logs=spec.json_logs)
    threading.Thread(
        target=_stop_with_parent, args=(os.getppid(),), name="pcii-parent-watch", daemon=True
    ).start()
    vault = Vault(spec.root, unseal=_unseal(spec), batching=spec.batching)
    nonces = SharedNonceCache(spec.nonces, spec.limits.skew)
    spool: Path | None = None
    try:
        vault.keyring  # noqa: B018 -- opens the keys before the first request
        vault.sync()
        spool = private_spool(spec.root / "spool")
        app = create_app(vault, spool=spool, limits=spec.limits, nonces=nonces)
        started.set()
        run_server(app, sock, spec.listener)
    except VaultError as exc:
        sys.stderr.write(f"pcii serve (worker {number}): {exc.diagnostics()}\n")
        sys.stderr.flush()
        sys.exit(exc.exit_code)
    finally:
        vault.close()  # commits the pending batch, then releases the keys
        nonces.close()
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)


def _stop_with_parent(parent: int) -> None:
    """Stop this worker gracefully once its parent is gone (killed, not by SIGTERM).

    An orphaned worker would go on serving the address, unsupervised, and a new
    `pcii serve` could not bind it.
    """
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    _log.warning("worker_orphaned", pid=os.getpid(), parent=parent)
    os.kill(os.getpid(), signal.SIGTERM)


def _unseal(spec: WorkerSpec) -> Callable[[], bytes]:
    secret = spec.secret
    if secret is not None:
        return lambda: secret
    # The parent's keys never asked for a secret (a key service): neither should these.
    from pcii_vault.cli.session import unseal_secret  # noqa: PLC0415

    return unseal_secret
