"""The HTTPS face of one unsealed vault: every route checks a signed message, then the core.

Each request is authenticated twice over: the HTTP message is signed (RFC 9421, Ed25519,
covering method, target URI and the body's `Content-Digest`, with `created` and `nonce`
checked against a short window), and the act inside the body is the same canonical
signed request embedded mode logs. The HTTP signer must be the act's principal.

Routes run the core in worker threads (the core is synchronous and thread-safe; its
group commit batches the acts of concurrent requests). Errors travel as
`{"error", "exit_code", "kind", "problems"}` with the HTTP status of their family, so a
client exits with the same code and line as in embedded mode. Access lines are JSON
(structlog): request id, principal, route, status, latency; never PCII content.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import structlog
from anyio import from_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pcii_vault.crypto.canonical import DuplicateKeyError, no_duplicate_keys
from pcii_vault.errors import (
    ActConflictError,
    BackendError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    ObjectExistsError,
    PolicyDenied,
    VaultError,
)
from pcii_vault.models.principal import (
    DEADLINE_READERS,
    PRINCIPAL_READERS,
    UPLOADERS,
    Principal,
    PrincipalAttributes,
    Role,
    require_role,
)
from pcii_vault.models.request import SignedRequest
from pcii_vault.receipt import Receipt
from pcii_vault.service import wire
from pcii_vault.service.httpsig import (
    DigestCheck,
    NonceCache,
    Nonces,
    SignatureRefused,
    VerifiedSignature,
    content_digest,
    verify_request,
)
from pcii_vault.service.seal import SEALED_MESSAGE, Seal
from pcii_vault.submitter import SealedUpload
from pcii_vault.vault import HeldRelease, StagedRelease, Vault

__all__ = ["Service", "ServiceLimits", "create_app", "private_spool"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_UPLOADS = f"{wire.API_PREFIX}/uploads/"
# Only owners submit; nobody else has a reason to store objects.
_TAR_BLOCK = 512
_CHUNK = 1 << 20
# Attachments up to this many bytes are released from memory (twice: the files and their
# tar), larger ones from the spool: at most about 40 threads x 4 MiB held at once.
_HELD_RELEASE = 2 << 20
_NOT_SIGNED_BODY = "the body does not match its signed Content-Digest"
_OTHER_SIGNER = "the act is signed by another principal than the HTTP message"
_CATCH_UP_SECONDS = 1.0
_ED25519_KEY_BYTES = 32


@dataclass(frozen=True)
class ServiceLimits:
    """What the server accepts from one request."""

    max_body: int = 1 << 20
    max_upload: int = 8 << 30
    read_timeout: float = 30.0
    # Past `read_timeout`, a body must keep arriving at this average rate: a trickle of a
    # byte every few seconds (never silent for `read_timeout`) would hold a worker
    # thread for ever, and enough of them every thread.
    min_body_rate: int = 16 << 10
    skew: timedelta = timedelta(seconds=60)


@dataclass(frozen=True)
class Caller:
    """An authenticated HTTP message: its signer and the body it carried."""

    principal: Principal
    signature: VerifiedSignature
    body: bytes


_KEY_PROBE_SECONDS = 5.0
# Threads uploads may hold at once (anyio's default pool has 40, shared by everything).
UPLOAD_THREADS = 16


class _KeyProbe:
    """Whether the key holder wraps and unwraps: asked at most every few seconds.

    `/readyz` needs no signature, and a KMS, OpenBao or an HSM answers each probe with a
    call of its own: a success is trusted for `_KEY_PROBE_SECONDS`, a failure never.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ok_at = -_KEY_PROBE_SECONDS

    def check(self, vault: Vault) -> None:
        """Raise as the key holder does (BackendError: unavailable)."""
        with self._lock:
            if time.monotonic() - self._ok_at < _KEY_PROBE_SECONDS:
                return
            context = b"pcii-vault readiness probe\0" + vault.config.vault_id.encode()
            probe = os.urandom(32)
            keyring = vault.keyring
            if keyring.unwrap(keyring.wrap(probe, context), context) != probe:
                raise IntegrityError("the key holder unwrapped another key than it wrapped")
            self._ok_at = time.monotonic()


@dataclass(frozen=True)
class _Context:
    vault: Vault
    spool: Path
    limits: ServiceLimits
    nonces: Nonces
    seal: Seal | None = None
    key_probe: _KeyProbe = field(default_factory=_KeyProbe)
    # Releases whose end (sent whole or not) is not recorded yet: the server's shutdown
    # records each one it cut off (`_Finisher`).
    unfinished: set[_Finisher] = field(default_factory=set)

    def require_unsealed(self) -> None:
        if self.seal is not None and self.seal.sealed:
            raise BackendError(SEALED_MESSAGE)


def _context(request: Request) -> _Context:
    context: _Context = request.app.state.context
    return context


# ----- authentication --------------------------------------------------------------------


def _verify(
    request: Request,
    context: _Context,
    resolve_key: Callable[[str], bytes] | None = None,
) -> tuple[VerifiedSignature, Principal | None]:
    """Check the HTTP message's signature; keys from the index, or from `resolve_key`.

    Returns the signature and, for keys from the index, the principal it resolved (one
    lookup per request).
    """
    vault = context.vault
    found: list[Principal] = []

    def from_index(key_id: str) -> bytes:
        try:
            principal = vault.lookup_principal(key_id)
        except NotFoundError:
            try:  # registered meanwhile, perhaps through another replica
                principal = vault.lookup_principal(key_id, refresh=True)
            except NotFoundError:
                raise KeyError(key_id) from None
        found.append(principal)
        return base64.b64decode(principal.public_key)

    verified = verify_request(
        request.method,
        _signed_url(request),
        request.headers,
        resolve_key=resolve_key or from_index,
        now=datetime.now(UTC),
        window=context.limits.skew,
        seen=context.nonces,
    )
    return verified, (found[-1] if found else None)


def _signed_url(request: Request) -> str:
    """The target URI as the client sent it: https, its Host header, the raw path and query."""
    scope = request.scope
    host = request.headers.get("host", "")
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return f"https://{host}{raw.decode('latin-1')}" + (
        f"?{query.decode('latin-1')}" if query else ""
    )


def _authenticate(request: Request, context: _Context, *, active: bool = True) -> Caller:
    """The signed message's signer: registered, its signature good, and (`active`) active."""
    verified, principal = _verify(request, context)
    if principal is None or principal.id != verified.key_id:  # pragma: no cover - resolved
        principal = context.vault.lookup_principal(verified.key_id)
    request.state.principal = principal.id
    if active and principal.status != "active":
        raise PolicyDenied(f"principal {principal.id} is {principal.status}")
    return Caller(principal, verified, b"")


async def signed_message(request: Request) -> Caller:
    """A signed message whose body the route streams itself (uploads)."""
    context = _context(request)
    context.require_unsealed()
    return await run_in_threadpool(_authenticate, request, context)


async def signed_message_of_anyone(request: Request) -> Caller:
    """A signed message by a registered principal, active or not (discarding an upload).

    An owner suspended while submitting could not remove what that submit had uploaded:
    only the owner the tracking number was issued to (its ticket) removes its objects,
    and removing ciphertext that never became a record is no act on the vault.
    """
    context = _context(request)
    context.require_unsealed()
    return await run_in_threadpool(partial(_authenticate, active=False), request, context)


async def signed_body(request: Request) -> Caller:
    """A signed message with its whole (small) body, checked against its digest.

    The signer may be suspended or revoked: every such route hands the act to the core,
    which refuses an inactive principal as embedded mode does (its policies deciding,
    the denial logged, the same words), where a refusal here left the log without it.
    """
    context = _context(request)
    context.require_unsealed()
    caller = await run_in_threadpool(partial(_authenticate, active=False), request, context)
    body = await request.body()
    if content_digest(body) != caller.signature.content_digest:
        raise SignatureRefused(_NOT_SIGNED_BODY, exit_code=4)
    return Caller(caller.principal, caller.signature, body)


SignedMessage = Annotated[Caller, Depends(signed_message)]
SignedMessageOfAnyone = Annotated[Caller, Depends(signed_message_of_anyone)]
SignedBody = Annotated[Caller, Depends(signed_body)]
# The upload ticket issued with a tracking number (POST /v1/tracking-numbers); missing, it
# is refused by the core with its own message rather than as a malformed query.
_Ticket = Annotated[
    str | None,
    Query(
        max_length=wire.UPLOAD_TICKET_MAX,
        description="the ticket issued with the tracking number",
    ),
]


def _act_of(caller: Caller, act: wire.Act) -> SignedRequest:
    if act.request.body.principal != caller.principal.id:
        raise SignatureRefused(_OTHER_SIGNER, exit_code=4)
    return act.request


async def _core(function: Callable[..., Any], *args: Any) -> Any:  # noqa: ANN401
    return await run_in_threadpool(function, *args)


class _StrictJsonRequest(Request):
    """A request whose JSON body may not name a key twice (which value counts, a guess)."""

    async def json(self) -> Any:  # noqa: ANN401 -- JSON
        if not hasattr(self, "_json"):
            # UTF-8 only (json.loads would take UTF-16 and a byte-order mark), and no
            # NaN or Infinity, which are no JSON.
            self._json = json.loads(
                (await self.body()).decode("utf-8"),
                object_pairs_hook=no_duplicate_keys,
                parse_constant=_no_constant,
            )
        return self._json


def _no_constant(name: str) -> Any:  # noqa: ANN401 -- json.loads hook
    raise ValueError(f"{name} is not JSON")


class _StrictJsonRoute(APIRoute):
    """Routes that read their JSON bodies with `_StrictJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handle(_StrictJsonRequest(request.scope, request.receive))

        return strict


router = APIRouter(route_class=_StrictJsonRoute)
P = wire.API_PREFIX

# ----- health ------------------------------------------------------------------------------


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "alive"}


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    """Unsealed, the store reachable, the log verified to its edge and appendable."""
    context = _context(request)
    if context.seal is not None and context.seal.sealed:
        return JSONResponse({"ready": False, **context.seal.status()}, status_code=503)
    try:
        await run_in_threadpool(_ready, context.vault, context.key_probe, context.nonces)
    except VaultError as exc:
        structlog.get_logger("pcii.serve").warning("not_ready", error=exc.diagnostics())
        error = _for_clients(exc.diagnostics(), context.vault)
        return JSONResponse({"ready": False, "error": error}, status_code=503)
    return JSONResponse({"ready": True})


# Load balancers probe with HEAD: the GET answer without its body (uvicorn drops it).
# Kept out of the OpenAPI document, where it would repeat the GET operation's id.
router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)


# ----- vault facts ---------------------------------------------------------------------------


@router.get(f"{P}/info", tags=["vault"])
async def info(request: Request) -> wire.VaultInfoBody:
    """The vault's public facts: id, intake key, KEK version (null while sealed), log key."""
    context = _context(request)
    vault = context.vault
    sealed = context.seal is not None and context.seal.sealed

    def facts() -> wire.VaultInfoBody:
        config = vault.config
        return wire.VaultInfoBody(
            vault_id=config.vault_id,
            intake_public_key=config.intake_public_key,
            kek_version=None if sealed else vault.current_kek_version(),
            log_key=config.log_key,
            log_origin=config.log_origin,
        )

    return await run_in_threadpool(facts)


@router.post(f"{P}/identify", tags=["vault"])
async def identify(request: Request, act: wire.Act, caller: SignedBody) -> dict[str, Any]:
    """Who the vault takes the caller for."""
    return wire.dump(await _core(_context(request).vault.identify, _act_of(caller, act)))


@router.post(f"{P}/tracking-numbers", tags=["owner"])
async def tracking_number(
    request: Request, act: wire.Act, caller: SignedBody
) -> wire.TrackingNumberBody:
    """A tracking number no record has yet."""
    vault = _context(request).vault
    owner = await _core(vault.identify, _act_of(caller, act))
    # Only an owner may upload with it: nobody else is handed a number and a ticket.
    require_role(owner, UPLOADERS, "ask for a tracking number")
    tracking = await _core(vault.new_tracking_number)
    return wire.TrackingNumberBody(
        tracking_number=tracking, upload_ticket=vault.upload_ticket(owner.id, tracking)
    )


# ----- uploads -------------------------------------------------------------------------------


@router.put(f"{P}/uploads/{{tracking}}/{{name:path}}", status_code=201, tags=["owner"])
async def upload(
    tracking: str, name: str, request: Request, caller: SignedMessage, ticket: _Ticket = None
) -> dict[str, Any]:
    """Store one ciphertext object of a submission not yet submitted (streamed)."""
    require_role(caller.principal, UPLOADERS, "upload a submission's objects")
    vault = _context(request).vault
    key = _upload_key(tracking, name)
    vault.check_upload_ticket(caller.principal.id, tracking, ticket)
    check = DigestCheck()
    stream = request.stream().__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    def chunks() -> Iterator[bytes]:
        while (chunk := from_thread.run(next_chunk)) is not None:
            check.update(chunk)
            yield chunk

    def put() -> None:
        if _is_record(vault, tracking):
            raise InputError(f"{tracking} is already a record")
        try:
            vault.store.put_stream(key, chunks())
        except ObjectExistsError:
            # Another upload of the same object came first (a record's: see above).
            if _is_record(vault, tracking):
                raise InputError(f"{tracking} is already a record") from None
            raise ActConflictError(
                f"{name} of {tracking} was already uploaded: another upload came first"
            ) from None
        if not check.matches(caller.signature.content_digest):
            with contextlib.suppress(VaultError):
                vault.store.delete(key)
                vault.remove_empty_record_folder(tracking)
            raise SignatureRefused(_NOT_SIGNED_BODY, exit_code=4)

    await anyio.to_thread.run_sync(put, limiter=request.app.state.upload_threads)
    return {"key": key}


@router.delete(f"{P}/uploads/{{tracking}}/{{name:path}}", tags=["owner"])
async def discard(
    tracking: str,
    name: str,
    request: Request,
    caller: SignedMessageOfAnyone,
    ticket: _Ticket = None,
) -> dict[str, Any]:
    """Remove an uploaded object of a submission that never became a record."""
    require_role(caller.principal, UPLOADERS, "discard a submission's objects")
    vault = _context(request).vault
    key = _upload_key(tracking, name)
    # Only the owner the tracking number was issued to (its ticket) removes its objects.
    vault.check_upload_ticket(caller.principal.id, tracking, ticket)

    await run_in_threadpool(vault.discard_upload, tracking, key)
    return {"deleted": key}


@router.post(f"{P}/submissions", tags=["owner"])
async def submit(request: Request, body: wire.SubmissionBody, caller: SignedBody) -> dict[str, Any]:
    """Submit uploaded objects: the vault opens the sealed key, checks, logs."""
    sealed = SealedUpload(
        body.tracking_number,
        wire.decode_b64(body.sealed_dek, "sealed_dek"),
        tuple(body.files),
    )
    vault = _context(request).vault
    signed = _act_of(caller, body)

    def receive() -> Receipt:
        try:
            return vault.receive(signed, sealed, check_ticket=True, ticket=body.upload_ticket)
        except ConflictError as exc:
            # The core's "already a record" is a bare ConflictError; its subclasses are
            # the store's conditional-write conflicts (retry: exit 5, as elsewhere).
            if type(exc) is ConflictError and _is_record(vault, body.tracking_number):
                raise InputError(exc.diagnostics()) from None
            raise

    receipt = await run_in_threadpool(receive)
    return receipt.to_json()


# ----- records -------------------------------------------------------------------------------


@router.post(f"{P}/status", tags=["records"])
async def status(request: Request, act: wire.Act, caller: SignedBody) -> dict[str, Any]:
    """A record's state (its submitter, the office)."""
    return wire.dump(await _core(_context(request).vault.status, _act_of(caller, act)))


@router.post(f"{P}/search", tags=["records"])
async def search(
    request: Request, body: wire.SearchBody, caller: SignedBody
) -> list[dict[str, Any]]:
    """The records the caller may act on (metadata only)."""
    vault = _context(request).vault

    def run() -> list[Any]:
        return vault.search(_act_of(caller, body), sector=body.sector, state=body.state)

    return [wire.dump(r) for r in await run_in_threadpool(run)]


@router.post(f"{P}/transitions", tags=["records"])
async def transition(
    request: Request, body: wire.TransitionBody, caller: SignedBody
) -> dict[str, Any]:
    """Validate, reject, mark deficient, withdraw or decontrol a record."""
    from pcii_vault.index import TRANSITION_ACTIONS  # noqa: PLC0415

    if body.event_type not in TRANSITION_ACTIONS or body.event_type == "record.destroyed":
        raise InputError(f"{body.event_type} is not a lifecycle transition")
    event_type: Any = body.event_type
    vault = _context(request).vault
    return wire.dump(await _core(vault.transition, _act_of(caller, body), event_type))


@router.post(f"{P}/destroy", tags=["records"])
async def destroy(request: Request, act: wire.Act, caller: SignedBody) -> dict[str, Any]:
    """Destroy a record by crypto-shredding (logged first)."""
    return wire.dump(await _core(_context(request).vault.destroy, _act_of(caller, act)))


@router.post(f"{P}/releases", tags=["records"], response_class=StreamingResponse)
async def release(request: Request, act: wire.Act, caller: SignedBody) -> StreamingResponse:
    """Retrieve or review a record: logged first, then its marked files as a tar stream."""
    context = _context(request)
    vault = context.vault
    signed = _act_of(caller, act)
    if signed.body.action not in {"retrieve", "review"}:
        raise InputError(f"a release is retrieve or review, not {signed.body.action}")
    opened = vault.serve_release(signed, context.spool, in_memory=_HELD_RELEASE)

    def enter() -> tuple[HeldRelease | StagedRelease, bytes | Path]:
        # One hop to a worker thread: a release held in memory is also made a tar here.
        staged = opened.__enter__()
        if isinstance(staged, HeldRelease):
            return staged, _tar_bytes(staged.contents, staged.files)
        return staged, staged.directory

    staged, body = await run_in_threadpool(enter)
    meta = {
        "tracking_number": staged.tracking_number,
        "files": list(staged.files),
        "access_index": staged.access_index,
        "obligations": list(staged.obligations),
        "policies": list(staged.policies),
    }

    def end(sent: bool) -> None:
        if not sent:
            # The client went away before the last byte (or the server stopped before
            # it could send it): nothing was released to it.
            cause = OSError(errno.ECONNRESET, "the client did not receive it")
            with contextlib.suppress(VaultError, OSError):
                vault.release_failed(staged.tracking_number, staged.access_index, cause)
        opened.__exit__(None, None, None)

    finish = _Finisher(end, context.unfinished)
    if isinstance(body, bytes):
        return _ReleaseResponse(_one_chunk(body), finish, meta, cheap_exit=True)
    return _ReleaseResponse(_staged_chunks(body, staged.files), finish, meta, cheap_exit=False)


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _staged_chunks(directory: Path, names: tuple[str, ...]) -> AsyncIterator[bytes]:
    chunks = _tar_stream(directory, names)
    while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
        yield chunk


class _Finisher:
    """A release's end, recorded once: by its stream, or by the server's shutdown.

    uvicorn cancels the requests still running when its graceful shutdown times out (a
    client reading slowly) and does not wait for them: the stream's own `finally` may
    never record the release as failed. The shutdown then records every release that is
    still unfinished, before the vault commits its last batch and closes.
    """

    def __init__(self, end: Callable[[bool], None], registry: set[_Finisher]) -> None:
        self._end = end
        self._registry = registry
        self._lock = threading.Lock()
        self._started = False
        self._done = threading.Event()
        registry.add(self)

    def __call__(self, sent: bool) -> None:
        with self._lock:
            started, self._started = self._started, True
        if started:
            self._done.wait(timeout=_FINISH_WAIT_S)  # the other caller records it
            return
        try:
            self._end(sent)
        finally:
            self._done.set()
            self._registry.discard(self)

    def cut_off(self) -> None:
        """Record the release as not sent (the server stopped first), unless it ended."""
        self(sent=False)


_FINISH_WAIT_S = 10.0


class _ReleaseResponse(StreamingResponse):
    """A release's tar stream; once it ends, sent whole or not, `finish(sent)` runs.

    Sent means the last chunk was handed to the server and the client had not gone away
    by the next turn of the event loop (uvicorn drops a body sent to a client that left;
    a disconnect cancels the stream). `cheap_exit`: `finish(True)` does no I/O (a
    release held in memory), so it runs on the event loop.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        finish: Callable[[bool], None],
        meta: Mapping[str, Any],
        *,
        cheap_exit: bool,
    ) -> None:
        self._finish = finish
        self._cheap_exit = cheap_exit
        self._sent = False
        super().__init__(
            self._tracked(chunks),
            media_type="application/x-tar",
            headers={wire.RELEASE_HEADER: json.dumps(meta, separators=(",", ":"))},
        )

    async def _tracked(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk
        await anyio.lowlevel.checkpoint()  # a client gone by now did not take it
        self._sent = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._sent and self._cheap_exit:
                self._finish(self._sent)
            else:
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(self._finish, self._sent)


# ----- the log, read-only, for auditors -----------------------------------------------------

_READABLE_PREFIXES = ("log/", "policysets/")
_LOG_READERS: frozenset[Role] = frozenset({"auditor", "admin", "office"})
_T = TypeVar("_T")


def _readable(key: str) -> str:
    from pcii_vault.store.base import validate_key  # noqa: PLC0415

    if not key.startswith(_READABLE_PREFIXES):
        raise NotFoundError("only log/ and policysets/ objects are served")
    try:
        return validate_key(key)
    except InputError:
        raise InputError(f"object key {wire.shown(key)} is not a valid key") from None


def _log_object(read: Callable[[str], _T], key: str) -> _T:
    """`read` one served object; a missing one named by its key, not where the store is.

    The store's own message says where it keeps its objects (a directory of the
    server's, a bucket): nothing a client needs to know.
    """
    readable = _readable(key)
    try:
        return read(readable)
    except NotFoundError:
        raise NotFoundError(f"object {wire.shown(key)} not found") from None


@router.get(f"{P}/objects", tags=["audit"])
async def list_objects(request: Request, prefix: str, caller: SignedMessage) -> list[Any]:
    """The log's objects under `prefix` (auditors verify them with the log key)."""
    require_role(caller.principal, _LOG_READERS, "read the log")
    if prefix and not prefix.startswith(_READABLE_PREFIXES):
        raise NotFoundError("only log/ and policysets/ objects are served")
    vault = _context(request).vault

    def listing() -> list[Any]:
        if not prefix:
            return [wire.dump(i) for p in _READABLE_PREFIXES for i in vault.store.list(p)]
        return [wire.dump(i) for i in vault.store.list(prefix)]

    return await run_in_threadpool(listing)


@router.get(f"{P}/objects/{{key:path}}", tags=["audit"], response_class=Response)
async def get_object(key: str, request: Request, caller: SignedMessage) -> Response:
    """One object of the log or of the policy-set archive, as stored."""
    require_role(caller.principal, _LOG_READERS, "read the log")
    vault = _context(request).vault
    data, etag = await run_in_threadpool(_log_object, vault.store.get_with_etag, key)
    return Response(data, media_type="application/octet-stream", headers={"etag": f'"{etag}"'})


@router.get(f"{P}/objects-info/{{key:path}}", tags=["audit"])
async def object_info(key: str, request: Request, caller: SignedMessage) -> dict[str, Any]:
    """What the store knows of one log object (size, etag)."""
    require_role(caller.principal, _LOG_READERS, "read the log")
    vault = _context(request).vault
    return wire.dump(await run_in_threadpool(_log_object, vault.store.head, key))


# ----- unseal ------------------------------------------------------------------------------


@router.post(f"{P}/unseal", tags=["vault"])
async def unseal(request: Request, body: wire.UnsealBody) -> dict[str, Any]:
    """One custodian's share (a registered administrator's signed act) for a sealed server."""
    context = _context(request)
    seal = context.seal
    if seal is None:
        raise InputError("this server was not started sealed: it has nothing to unseal")
    raw = await request.body()

    def resolve_key(key_id: str) -> bytes:
        return base64.b64decode(seal.custodian(key_id).public_key)

    def check() -> Principal:
        verified, _ = _verify(request, context, resolve_key)
        if content_digest(raw) != verified.content_digest:
            raise SignatureRefused(_NOT_SIGNED_BODY, exit_code=4)
        principal = seal.custodian(verified.key_id)
        request.state.principal = principal.id
        if body.request.body.principal != principal.id:
            raise SignatureRefused(_OTHER_SIGNER, exit_code=4)
        try:
            seal.check_act(body.request, principal)
        except PolicyDenied as exc:
            # Attributable (its message is signed by a registered key): logged with the
            # other attempts when the vault opens.
            seal.refused(principal.id, exc.diagnostics())
            raise
        return principal

    principal = await run_in_threadpool(check)
    return await run_in_threadpool(seal.offer, principal.id, body.share)


# ----- principals ------------------------------------------------------------------------------


@router.post(f"{P}/principals", tags=["principals"])
async def add_principal(
    request: Request, body: wire.PrincipalBody, caller: SignedBody
) -> dict[str, Any]:
    """Register a user (an admin's act; every registered fact signed)."""
    from pcii_vault.crypto.signing import Ed25519PublicKey  # noqa: PLC0415

    attributes = _attributes(body.attributes)
    raw = wire.decode_b64(body.public_key, "public_key")
    if len(raw) != _ED25519_KEY_BYTES:
        raise InputError("public_key is not an Ed25519 public key (32 bytes)")
    vault = _context(request).vault
    principal = await _core(
        vault.add_principal,
        _act_of(caller, body),
        body.principal_id,
        attributes,
        Ed25519PublicKey(raw),
    )
    return wire.dump(principal)


@router.post(f"{P}/principals/update", tags=["principals"])
async def update_principal(
    request: Request, body: wire.PrincipalUpdateBody, caller: SignedBody
) -> dict[str, Any]:
    """Change a user's attributes or status (an admin's act)."""
    vault = _context(request).vault
    signed = _act_of(caller, body)
    return wire.dump(
        await _core(vault.update_principal, signed, body.principal_id, dict(body.changes))
    )


@router.post(f"{P}/principals/revoke", tags=["principals"])
async def revoke_principal(
    request: Request, body: wire.PrincipalIdBody, caller: SignedBody
) -> dict[str, Any]:
    """Revoke a user for good (an admin's act)."""
    vault = _context(request).vault
    return wire.dump(await _core(vault.revoke_principal, _act_of(caller, body), body.principal_id))


@router.post(f"{P}/principals/list", tags=["principals"])
async def list_principals(
    request: Request, act: wire.Act, caller: SignedBody
) -> list[dict[str, Any]]:
    """Every registered user (admins and auditors)."""
    vault = _context(request).vault
    await _core(vault.identify, _act_of(caller, act))
    require_role(caller.principal, PRINCIPAL_READERS, "list principals")
    return [wire.dump(p) for p in await _core(vault.principals)]


@router.post(f"{P}/deadlines", tags=["records"])
async def deadlines(
    request: Request, body: wire.DeadlinesBody, caller: SignedBody
) -> list[dict[str, Any]]:
    """30-day deadlines falling due (the program office, admins and auditors)."""
    vault = _context(request).vault
    await _core(vault.identify, _act_of(caller, body))
    require_role(caller.principal, DEADLINE_READERS, "list deadlines")
    return [wire.dump(d) for d in await _core(vault.deadlines, body.until)]


# ----- keys ----------------------------------------------------------------------------------


@router.post(f"{P}/keys/status", tags=["keys"])
async def key_status(request: Request, act: wire.Act, caller: SignedBody) -> dict[str, Any]:
    """KEK versions, where each key lives, an unfinished migration (no key material)."""
    return wire.dump(await _core(_context(request).vault.key_status, _act_of(caller, act)))


@router.post(f"{P}/keys/rotate", tags=["keys"])
async def rotate(request: Request, act: wire.Act, caller: SignedBody) -> dict[str, int]:
    """A new KEK version, current from now on."""
    return {"version": await _core(_context(request).vault.rotate_keys, _act_of(caller, act))}


@router.post(f"{P}/keys/rewrap", tags=["keys"])
async def rewrap(request: Request, act: wire.Act, caller: SignedBody) -> dict[str, Any]:
    """Re-wrap every live data key under the current KEK."""
    return wire.dump(await _core(_context(request).vault.rewrap_keys, _act_of(caller, act)))


@router.post(f"{P}/keys/retire", tags=["keys"])
async def retire(request: Request, body: wire.RetireBody, caller: SignedBody) -> dict[str, int]:
    """Retire a KEK version no live record uses."""
    await _core(_context(request).vault.retire_key, _act_of(caller, body), body.version)
    return {"retired": body.version}


@router.post(f"{P}/keys/migrate", tags=["keys"])
async def migrate(request: Request, body: wire.MigrateBody, caller: SignedBody) -> dict[str, Any]:
    """Move the KEKs to another provider (resumable)."""
    vault = _context(request).vault
    return wire.dump(await _core(vault.migrate_keys, _act_of(caller, body), body.target))


# ----- the application -------------------------------------------------------------------------


def create_app(
    vault: Vault,
    *,
    spool: Path,
    limits: ServiceLimits | None = None,
    seal: Seal | None = None,
    nonces: Nonces | None = None,
) -> Service:
    """The ASGI application serving `vault`: unsealed by the caller, or `seal`ed.

    `nonces`: where accepted HTTP nonces are remembered (default: in this process; the
    workers of one server share a `SharedNonceCache`).
    """
    limits = limits or ServiceLimits()
    stop = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Uploads wait on their clients' bytes in a thread each: a share of the threads,
        # so that slow uploads (within the minimum body rate) never take every thread
        # from the signature checks and acts of everyone else.
        app.state.upload_threads = anyio.CapacityLimiter(UPLOAD_THREADS)
        # A replica catches up with what other replicas log (acts catch up anyway).
        follower = threading.Thread(target=_follow, args=(vault, seal, stop), daemon=True)
        follower.start()
        try:
            yield
        finally:
            # Releases cut off by the shutdown (uvicorn cancelled them): recorded as failed.
            for finisher in list(app.state.context.unfinished):
                await run_in_threadpool(finisher.cut_off)
            stop.set()
            follower.join(timeout=5)

    app = FastAPI(
        title="pcii-vault",
        summary="Protected Critical Infrastructure Information vault: signed acts over HTTPS.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # `/v1/status/` is no route: a 404, not a redirect to whatever Host was sent.
        redirect_slashes=False,
        # No OpenTelemetry spans, metrics or logs: request paths name records, and the
        # vault's only account of its requests is its own access lines. (It also spared
        # a provider lookup per request.)
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    nonces = NonceCache(limits.skew) if nonces is None else nonces
    app.state.context = _Context(vault, _held_open(spool), limits, nonces, seal)
    app.include_router(router)
    app.add_exception_handler(VaultError, _vault_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_body)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(_BodyRefusedError, _body_refused)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    return Service(app, limits, structlog.get_logger("pcii.serve"))


def _error(
    exc: VaultError, status: int | None = None, *, vault: Vault | None = None
) -> JSONResponse:
    body = wire.ErrorBody(
        error=_for_clients(exc.diagnostics(), vault),
        exit_code=exc.exit_code,
        kind=type(exc).__name__,
        problems=[_for_clients(str(p), vault) for p in getattr(exc, "problems", ())],
        handed_to_log=exc.handed_to_log,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status or wire.status_for(exc)
    )


def _for_clients(message: str, vault: Vault | None) -> str:
    """`message` without where the server keeps the vault: its directory, its store's.

    A store's error names its directory (or endpoint) for the server's operator; a client,
    whoever it is, learns only that the server's store failed. The server's log keeps it.
    """
    if vault is None:
        return message
    places = [(str(vault.paths.root), "the server's vault directory")]
    with contextlib.suppress(OSError):
        places.append((str(vault.paths.root.resolve()), "the server's vault directory"))
    with contextlib.suppress(VaultError, OSError):
        url = vault.store.url
        if url.startswith("file://"):
            root = unquote(urlsplit(url).path)
            places.append((f"filesystem store {root}", "the server's filesystem store"))
            places.append((root, "the server's store"))
        if endpoint := getattr(vault.store, "endpoint", None):
            places.append((str(endpoint), "the server's store endpoint"))
    for place, name in sorted(places, key=lambda p: -len(p[0])):
        if len(place) > 1:
            message = message.replace(place, name)
    return message


async def _vault_error(request: Request, exc: VaultError) -> JSONResponse:
    vault = _context(request).vault
    if isinstance(exc, BackendError):
        structlog.get_logger("pcii.serve").warning("backend_error", error=exc.diagnostics())
    if isinstance(exc, SignatureRefused):
        return _error(exc, exc.status, vault=vault)
    return _error(exc, vault=vault)


async def _invalid_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if errors and errors[0].get("type") == "json_invalid":
        # Not JSON at all: no field to name (the location is a character offset).
        error = errors[0].get("ctx", {}).get("error", "not JSON")
        return _error(InputError(f"invalid request body: not JSON ({error})"), 400)
    if errors and errors[0].get("type") == "missing" and tuple(errors[0]["loc"]) == ("body",):
        return _error(InputError("invalid request body: it is empty (a JSON object)"), 400)
    problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors]
    # A query parameter (the upload ticket) is not the body: say which it was.
    where = "query parameter" if errors and errors[0]["loc"][:1] == ("query",) else "body"
    error = InputError(f"invalid request {where}: {problems[0] if problems else 'malformed'}")
    error.problems = tuple(problems)  # type: ignore[attr-defined]
    return _error(error, 400)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    cause = exc.__cause__
    if isinstance(cause, _BodyRefusedError):  # raised while FastAPI read a JSON body
        return _error(InputError(cause.message), cause.status)
    if exc.status_code == 404:
        return _error(NotFoundError("no such route"), 404)
    if exc.status_code == 400 and exc.detail == _FASTAPI_UNPARSABLE:
        return _error(InputError(_unparsable_body(cause)), 400)
    answer = _error(InputError(str(exc.detail)), exc.status_code)
    if exc.status_code == 405:  # Allow (RFC 9110: required): every method of the path
        answer.headers["allow"] = ", ".join(_allowed(_request))
    return answer


def _allowed(request: Request) -> list[str]:
    """The methods the routes of `request`'s path answer (one route per method here)."""
    from starlette.routing import Match  # noqa: PLC0415

    methods: set[str] = set()
    for route in router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


_FASTAPI_UNPARSABLE = "There was an error parsing the body"


def _unparsable_body(cause: BaseException | None) -> str:
    """Why the JSON parser gave up on a body, in words (FastAPI keeps it as the cause)."""
    if isinstance(cause, DuplicateKeyError):
        why = f"{cause}: which value counts would be a guess"
    elif isinstance(cause, UnicodeDecodeError):
        why = "its bytes are not UTF-8"
    elif isinstance(cause, RecursionError):
        why = "it is nested too deeply"
    elif isinstance(cause, ValueError) and str(cause).endswith("is not JSON"):
        why = f"it holds {cause}"
    elif isinstance(cause, ValueError) and "digits" in str(cause):
        why = "it holds a number of more digits than the server converts"
    else:
        why = "it cannot be parsed"
    return f"invalid request body: not JSON the server can read ({why})"


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    """A bug: one line in the error shape (exit 1), the traceback in the server's log."""
    structlog.get_logger("pcii.serve").error(
        "unexpected_error", error=f"{type(exc).__name__}: {exc}", exc_info=exc
    )
    return _error(VaultError(f"unexpected server error: {type(exc).__name__}"), 500)


async def _client_gone(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
    """The client left before its body was complete: nothing was stored, and no bug.

    Nobody reads the answer; the access line records 400 (not a 500 with a traceback).
    """
    return _error(InputError("the client went away before the body was complete"), 400)


async def _body_refused(_request: Request, exc: _BodyRefusedError) -> JSONResponse:
    return _error(InputError(exc.message), exc.status)


def _attributes(data: dict[str, Any]) -> PrincipalAttributes:
    from pydantic import ValidationError  # noqa: PLC0415

    from pcii_vault.models.problems import describe  # noqa: PLC0415

    try:
        return PrincipalAttributes.model_validate(data)
    except ValidationError as exc:
        raise InputError(describe(exc, "invalid principal attributes")) from exc


def _upload_key(tracking: str, name: str) -> str:
    import re  # noqa: PLC0415

    from pcii_vault.models.submission import TRACKING_NUMBER_PATTERN  # noqa: PLC0415

    if not re.fullmatch(TRACKING_NUMBER_PATTERN, tracking):
        raise InputError(f"{wire.shown(tracking)} is not a tracking number")
    if name != "document" and not re.fullmatch(r"files/[0-9]{1,4}", name):
        raise InputError(f"{wire.shown(name)} is not an object of a submission")
    return f"records/{tracking}/{name}"


def _is_record(vault: Vault, tracking: str) -> bool:
    try:
        vault.sync()
        with vault._lock:
            vault.index.record(tracking)
    except NotFoundError:
        return False
    return True


def _ready(vault: Vault, key_probe: _KeyProbe, nonces: Nonces) -> None:
    """Raise unless the vault can act: keys answer, log verified, policies whole, store writable."""
    signer = vault.keyring.log_signer  # unsealed, the providers open
    del signer
    key_probe.check(vault)  # the KEK's holder (KMS, OpenBao, an HSM) wraps and unwraps
    vault.sync()  # the store answers and the log verifies to its signed edge
    vault.check_keys_current()  # not rotated by another replica past this keyring
    vault.check_policy_ready()  # the policies load and their stored text is whole
    nonces.check()  # the record of accepted nonces answers (no replay goes unseen)
    probe = f"health/{uuid.uuid4().hex}"  # outside the retained prefixes: deletable
    vault.store.put_if_absent(probe, b"ready?")
    vault.store.delete(probe)


def _follow(vault: Vault, seal: Seal | None, stop: threading.Event) -> None:
    log = structlog.get_logger("pcii.serve")
    while not stop.wait(_CATCH_UP_SECONDS):
        if seal is not None and seal.sealed:
            continue
        try:
            vault.sync()
        except VaultError as exc:
            log.warning("catch_up_failed", error=exc.diagnostics())
        except Exception as exc:  # noqa: BLE001 -- out of file descriptors, say: try again later
            log.warning("catch_up_failed", error=f"{type(exc).__name__}: {exc}")


def _tar_bytes(contents: Mapping[str, bytes], names: tuple[str, ...]) -> bytes:
    """A release held in memory as one POSIX tar stream."""
    out = bytearray()
    now = int(time.time())
    for name in names:
        data = contents[name]
        out += _tar_header(name, len(data), now)
        out += data
        if len(data) % _TAR_BLOCK:
            out += b"\0" * (_TAR_BLOCK - len(data) % _TAR_BLOCK)
    out += b"\0" * (2 * _TAR_BLOCK)
    return bytes(out)


def _tar_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = mtime
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _tar_stream(directory: Path, names: tuple[str, ...]) -> Iterator[bytes]:
    """The staged files as a POSIX tar stream, never a large file whole in memory.

    Small files are gathered into one chunk (each chunk is one hop of the event loop to
    a worker thread); a large one is sent a megabyte at a time.
    """
    pending = bytearray()
    for name in names:
        path = directory / name
        size = path.stat().st_size
        pending += _tar_header(name, size, int(time.time()))
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                pending += chunk
                if len(pending) >= _CHUNK:
                    yield bytes(pending)
                    pending.clear()
        if size % _TAR_BLOCK:
            pending += b"\0" * (_TAR_BLOCK - size % _TAR_BLOCK)
    pending += b"\0" * (2 * _TAR_BLOCK)
    yield bytes(pending)


class _BodyRefusedError(Exception):
    """A body over its limit (413) or too slow to arrive (408)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Service:
    """The application behind its guard: ids, body limits, read timeouts, access lines."""

    def __init__(self, app: FastAPI, limits: ServiceLimits, log: Any) -> None:  # noqa: ANN401
        self.app = app
        self.limits = limits
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        limit, too_large = self._body_limit(scope.get("path", ""))
        status = [500]
        scope.setdefault("state", {})
        raw_headers = list(scope.get("headers") or [])
        headers = dict(raw_headers)
        # Answered, then closed: what follows such a head is no request to read.
        ambiguous = _ambiguous_head(raw_headers, scope.get("http_version", "1.1"))
        length = headers.get(b"content-length")
        received = 0
        # A request that announces a body, until the app has read all of it: answered
        # before then (refused, unknown route, bad signature), the connection is closed
        # after the answer, or uvicorn would go on reading (and discarding) whatever the
        # client keeps sending, without limit for a chunked body.
        body_done = b"transfer-encoding" not in headers and length in {None, b"0"}

        async def guarded_receive() -> Message:
            nonlocal received, body_done
            if body_done:
                # The body is in: what is left is waiting for the client to go away
                # (a streamed answer listens for it), as long as the answer takes.
                return await receive()
            try:
                with anyio.fail_after(self.limits.read_timeout):
                    message = await receive()
            except TimeoutError:
                raise _BodyRefusedError(408, "the body did not arrive in time") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large
                body_done = not message.get("more_body", False)
                late = time.perf_counter() - started - self.limits.read_timeout
                if not body_done and late > 0 and received < late * self.limits.min_body_rate:
                    raise _BodyRefusedError(
                        408,
                        f"the body arrives too slowly (under {self.limits.min_body_rate} "
                        f"bytes/s after {self.limits.read_timeout:g} s)",
                    )
            return message

        async def tagged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *([] if body_done and ambiguous is None else [(b"connection", b"close")]),
                ]
            await send(message)

        cut_off = False
        try:
            if ambiguous is not None:
                await _refuse(tagged_send, ambiguous)
            elif length is not None and (not length.isdigit() or int(length) > limit):
                await _refuse(tagged_send, too_large)
            else:
                await self.app(scope, guarded_receive, tagged_send)
        except anyio.get_cancelled_exc_class():
            # The server's shutdown grace ran out with this request unfinished (a release
            # so cut off is recorded as failed by the shutdown): its access line says so.
            # Not raised on: uvicorn would log it as an exception in the application (it
            # says instead that the response was not completed, which is the case).
            cut_off = True
        finally:
            self._access_line(scope, request_id, status[0], started, cut_off=cut_off)

    def _body_limit(self, path: str) -> tuple[int, _BodyRefusedError]:
        """The most bytes a request's body may have on `path`, and the refusal past it."""
        upload = path.startswith(_UPLOADS)
        limit = self.limits.max_upload if upload else self.limits.max_body
        setting = "PCII_SERVER_MAX_UPLOAD" if upload else "PCII_SERVER_MAX_BODY"
        what = "an uploaded object" if upload else "a request"
        return limit, _BodyRefusedError(
            413,
            f"{what} is larger than this vault server accepts ({limit} bytes, its {setting})",
        )

    def _access_line(
        self, scope: Scope, request_id: str, status: int, started: float, *, cut_off: bool
    ) -> None:
        """The server's record of one request: who called what, how it ended; no content."""
        route = scope.get("route")
        self.log.info(
            "access",
            request_id=request_id,
            pid=os.getpid(),
            principal=scope["state"].get("principal"),
            method=scope.get("method"),
            route=getattr(route, "path", scope.get("path", "")),
            status=status,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            **({"cut_off": True} if cut_off else {}),
        )


def _ambiguous_head(
    headers: Sequence[tuple[bytes, bytes]], http_version: str
) -> _BodyRefusedError | None:
    """A head two parsers could read apart, refused before the application sees it.

    A field that must be single given twice, no Host in HTTP/1.1 (RFC 9112, section 3.2),
    or a transfer coding the server does not decode (the body's end is then unknown: RFC
    9112, section 6.1).
    """
    names = [name.lower() for name, _ in headers]
    if http_version == "1.1" and b"host" not in names:
        return _BodyRefusedError(400, "an HTTP/1.1 request without a Host header")
    for single in (b"host", b"content-length", b"transfer-encoding"):
        if names.count(single) > 1:
            return _BodyRefusedError(
                400, f"a request with more than one {single.decode().title()} header"
            )
    for name, value in headers:
        if name.lower() == b"transfer-encoding" and value.strip().lower() != b"chunked":
            coding = value.decode("latin-1")[:40]
            return _BodyRefusedError(
                501, f"transfer coding {coding!r} is not supported (only chunked)"
            )
    return None


async def _refuse(send: Send, refused: _BodyRefusedError) -> None:
    error = wire.ErrorBody(error=refused.message, exit_code=2, kind="InputError")
    body = error.model_dump_json(exclude_none=True).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def private_spool(root: Path) -> Path:
    """This process's own spool under `root` (0700); spools of dead servers are removed.

    Several servers may share a vault directory (replicas on one host): each stages
    releases in `root/<pid>` and never touches another live server's files. Nothing is
    followed out of the vault directory: a symlink or a file planted at `root` is
    refused, and planted entries under it are never removed through.

    Raises:
        IntegrityError: `root` is not a directory (a symlink or a file put there).
    """
    with contextlib.suppress(FileExistsError):  # a file there: refused below
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root.is_symlink() or not root.is_dir():
        raise IntegrityError(
            f"{root} is not the spool directory the server made (a symlink or a file "
            "put there); remove it"
        )
    root.chmod(0o700)
    for entry in root.iterdir():
        if entry.name.isdigit() and not _alive(int(entry.name)):
            _remove_entry(entry)
    mine = root / str(os.getpid())
    _remove_entry(mine)
    mine.mkdir(mode=0o700)
    return mine


def _held_open(spool: Path) -> Path:
    """`spool` as the directory it is now, whatever is put at its path later.

    Releases are staged through `/proc/self/fd/N` of the spool opened once (not
    followed if a symlink): a spool replaced meanwhile by a symlink (to collect the
    plaintext of releases) is never written through; a removed one fails the release
    (exit 5). Without /proc, the path as it is.

    Raises:
        IntegrityError: `spool` is no longer the directory the server made.
    """
    proc = Path("/proc/self/fd")
    if not proc.is_dir():
        return spool
    try:
        fd = os.open(spool, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise IntegrityError(
            f"{spool} is not the spool directory the server made ({exc.strerror}); remove it"
        ) from None
    # Kept open for the process's life: the path below names this directory.
    return proc / str(fd)


def _remove_entry(path: Path) -> None:
    """Remove a spool entry: a directory with its files, anything else itself (unfollowed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
