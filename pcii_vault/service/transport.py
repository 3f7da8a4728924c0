"""The client's way to a `pcii serve` process: signed HTTPS requests, the same errors.

Every request is signed with the user's identity key (RFC 9421 over method, target URI
and `Content-Digest`); the server's certificate is pinned with `--ca` (the file `pcii
serve` printed, or the CA that issued the server's certificate). Errors come back as the
core raised them: the same class, the same one-line message, so the CLI exits with the
same code as in embedded mode; an unreachable server is exit 5.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import ssl
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ValidationError

from pcii_vault.client import Progress, VaultInfo
from pcii_vault.durable import staging_prefix
from pcii_vault.errors import (
    BackendError,
    ConfigError,
    InputError,
    IntegrityError,
    NotFoundError,
    VaultError,
)
from pcii_vault.index import Deadline, RecordRow
from pcii_vault.models.principal import Principal, PrincipalAttributes
from pcii_vault.receipt import Receipt
from pcii_vault.service import wire
from pcii_vault.service.httpsig import RequestSigner, content_digest
from pcii_vault.service.tls import client_context
from pcii_vault.store.base import ObjectInfo
from pcii_vault.vault import KeyStatus, Migration, Rewrap, StagedRelease

if TYPE_CHECKING:
    from pcii_vault.identity import Identity
    from pcii_vault.models.event import EventType
    from pcii_vault.models.request import SignedRequest
    from pcii_vault.submitter import SealedUpload

__all__ = ["HttpTransport", "RemoteLog"]

_CHUNK = 1 << 20
_TIMEOUT = httpx.Timeout(30.0, read=600.0)


class HttpTransport:
    """The core behind `pcii serve`, reached over HTTPS."""

    def __init__(self, url: str, *, ca: Path | None, identity: Identity | None) -> None:
        """A transport to the server at `url` (`https://HOST:PORT`).

        Raises:
            ConfigError: the URL is not an https URL with a host and a valid port.
        """
        self.url = _checked_url(url.rstrip("/"))
        self._signer = (
            RequestSigner(identity.principal, identity.key) if identity is not None else None
        )
        self._http = httpx.Client(verify=_tls_context(ca), timeout=_TIMEOUT)
        self._tickets: dict[str, str] = {}  # tracking number -> its upload ticket

    # ----- plumbing ----------------------------------------------------------------------

    def _headers(self, method: str, url: str, digest: str) -> dict[str, str]:
        if self._signer is None:
            raise ConfigError("no identity given: pass --as KEYFILE or set PCII_IDENTITY")
        return self._signer.headers(method, url, body_digest=digest)

    def _send(
        self, method: str, path: str, body: bytes = b"", params: dict[str, str] | None = None
    ) -> httpx.Response:
        # The signature covers the URI exactly as httpx will send it (encoded query).
        request = self._http.build_request(
            method,
            f"{self.url}{path}",
            params=params,
            content=body or None,
            headers={"content-type": "application/json"} if body else None,
        )
        request.headers.update(self._headers(method, str(request.url), content_digest(body)))
        with _network(self.url):
            response = self._http.send(request)
        _raise_for(response)
        return response

    def _post(self, path: str, model: BaseModel) -> Any:  # noqa: ANN401 -- JSON
        response = self._send("POST", f"{wire.API_PREFIX}{path}", model.model_dump_json().encode())
        return _json(response)

    # ----- the Transport protocol ----------------------------------------------------------

    def info(self) -> VaultInfo:
        with _network(self.url):
            response = self._http.get(f"{self.url}{wire.API_PREFIX}/info")
        _raise_for(response)
        body = _parse(wire.VaultInfoBody, _json(response))
        return VaultInfo(
            vault_id=body.vault_id,
            intake_public_key=base64.b64decode(body.intake_public_key),
            kek_version=body.kek_version,
            log_key=body.log_key,
            log_origin=body.log_origin,
        )

    def identify(self, request: SignedRequest) -> Principal:
        return _parse(Principal, self._post("/identify", wire.Act(request=request)))

    def new_tracking_number(self, request: SignedRequest) -> str:
        data = self._post("/tracking-numbers", wire.Act(request=request))
        issued = _parse(wire.TrackingNumberBody, data)
        # Uploads, discards and the submit of this tracking number carry its ticket.
        self._tickets[issued.tracking_number] = issued.upload_ticket
        return issued.tracking_number

    def uploads(self, request: SignedRequest) -> _Uploads:
        self.identify(request)
        return _Uploads(self)

    def receive(self, request: SignedRequest, sealed: SealedUpload) -> Receipt:
        body = wire.SubmissionBody(
            request=request,
            tracking_number=sealed.tracking_number,
            sealed_dek=base64.b64encode(sealed.sealed_dek).decode(),
            files=list(sealed.files),
            upload_ticket=self._tickets.get(sealed.tracking_number),
        )
        return _parse(Receipt, self._post("/submissions", body))

    def status(self, request: SignedRequest) -> RecordRow:
        return _record(self._post("/status", wire.Act(request=request)))

    def search(
        self, request: SignedRequest, *, sector: str | None, state: str | None
    ) -> list[RecordRow]:
        body = wire.SearchBody(request=request, sector=sector, state=state)
        return _load(list[RecordRow], self._post("/search", body))  # type: ignore[no-any-return]

    def transition(self, request: SignedRequest, event_type: EventType) -> RecordRow:
        body = wire.TransitionBody(request=request, event_type=event_type)
        return _record(self._post("/transitions", body))

    def destroy(self, request: SignedRequest) -> RecordRow:
        return _record(self._post("/destroy", wire.Act(request=request)))

    @contextlib.contextmanager
    def release(
        self, request: SignedRequest, spool: Path, progress: Progress | None
    ) -> Iterator[StagedRelease]:
        url = f"{self.url}{wire.API_PREFIX}/releases"
        body = wire.Act(request=request).model_dump_json().encode()
        headers = self._headers("POST", url, content_digest(body))
        headers["content-type"] = "application/json"
        with (
            _network(self.url),
            self._http.stream("POST", url, content=body, headers=headers) as response,
        ):
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            meta = _release_meta(response)
            tracking = str(meta["tracking_number"])
            access = int(meta["access_index"])
            try:
                staging = Path(
                    tempfile.mkdtemp(prefix=staging_prefix(tracking), suffix=".partial", dir=spool)
                )
            except OSError as exc:
                raise self.release_failed(tracking, access, exc) from exc
            try:
                files = tuple(str(name) for name in meta["files"])
                try:
                    _unpack(response.iter_bytes(_CHUNK), staging, files, progress)
                except OSError as exc:
                    raise self.release_failed(tracking, access, exc) from exc
                yield StagedRelease(
                    tracking,
                    staging,
                    files,
                    access,
                    tuple(meta["obligations"]),
                    tuple(meta["policies"]),
                )
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def release_failed(self, tracking: str, access: int, exc: OSError) -> VaultError:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename else ""
        message = (
            f"the release of {tracking} (access event {access}) could not be written here: "
            f"{reason}{where}; nothing was released (the server logged the access)"
        )
        return InputError(message)

    def add_principal(
        self,
        request: SignedRequest,
        principal_id: str,
        attributes: PrincipalAttributes,
        public_key: bytes,
    ) -> Principal:
        body = wire.PrincipalBody(
            request=request,
            principal_id=principal_id,
            attributes=attributes.model_dump(mode="json"),
            public_key=base64.b64encode(public_key).decode(),
        )
        return _parse(Principal, self._post("/principals", body))

    def update_principal(
        self, request: SignedRequest, principal_id: str, changes: dict[str, Any]
    ) -> Principal:
        body = wire.PrincipalUpdateBody(request=request, principal_id=principal_id, changes=changes)
        return _parse(Principal, self._post("/principals/update", body))

    def revoke_principal(self, request: SignedRequest, principal_id: str) -> Principal:
        body = wire.PrincipalIdBody(request=request, principal_id=principal_id)
        return _parse(Principal, self._post("/principals/revoke", body))

    def principals(self, request: SignedRequest | None) -> list[Principal]:
        if request is None:
            raise ConfigError("no identity given: pass --as KEYFILE or set PCII_IDENTITY")
        data = self._post("/principals/list", wire.Act(request=request))
        return _load(list[Principal], data)  # type: ignore[no-any-return]

    def deadlines(self, request: SignedRequest | None, until: datetime) -> list[Deadline]:
        if request is None:
            raise ConfigError("no identity given: pass --as KEYFILE or set PCII_IDENTITY")
        data = self._post("/deadlines", wire.DeadlinesBody(request=request, until=until))
        return _load(list[Deadline], data)  # type: ignore[no-any-return]

    def key_status(self, request: SignedRequest) -> KeyStatus:
        return cast(
            KeyStatus, _load(KeyStatus, self._post("/keys/status", wire.Act(request=request)))
        )

    def rotate_keys(self, request: SignedRequest) -> int:
        return int(self._post("/keys/rotate", wire.Act(request=request))["version"])

    def rewrap_keys(self, request: SignedRequest) -> Rewrap:
        return cast(Rewrap, _load(Rewrap, self._post("/keys/rewrap", wire.Act(request=request))))

    def retire_key(self, request: SignedRequest, version: int) -> None:
        self._post("/keys/retire", wire.RetireBody(request=request, version=version))

    def migrate_keys(self, request: SignedRequest, target: str) -> Migration:
        body = wire.MigrateBody(request=request, target=target)
        return cast(Migration, _load(Migration, self._post("/keys/migrate", body)))

    def unseal(self, request: SignedRequest, share: str) -> dict[str, Any]:
        data = self._post("/unseal", wire.UnsealBody(request=request, share=share))
        if not isinstance(data, dict):
            raise IntegrityError("the vault server's answer is malformed")
        return data

    def close(self) -> None:
        self._http.close()


class RemoteLog:
    """The server's `log/` and `policysets/`, read-only: what the audit commands verify.

    Nothing read here is trusted because the server sent it: every checkpoint, tile and
    entry is verified against the log key by the audit commands, as from a bucket.
    """

    def __init__(self, transport: HttpTransport) -> None:
        self._transport = transport

    @property
    def url(self) -> str:
        """Where the objects come from."""
        return f"{self._transport.url}{wire.API_PREFIX}/objects"

    def get(self, key: str) -> bytes:
        """One object's bytes."""
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """One object's bytes and its etag."""
        response = self._transport._send("GET", f"{wire.API_PREFIX}/objects/{key}")
        return response.content, response.headers.get("etag", "").strip('"')

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Part of one object."""
        return self.get(key)[start : start + length]

    def open_stream(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """One object in chunks."""
        data = self.get(key)
        for offset in range(0, len(data), chunk_size):
            yield data[offset : offset + chunk_size]

    def head(self, key: str) -> ObjectInfo:
        """What the server's store knows of one object."""
        path = f"{wire.API_PREFIX}/objects-info/{key}"
        return _object_info(_json(self._transport._send("GET", path)))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The objects under `prefix` (within `log/` or `policysets/`)."""
        path = f"{wire.API_PREFIX}/objects"
        data = _json(self._transport._send("GET", path, params={"prefix": prefix}))
        if not isinstance(data, list):
            raise IntegrityError("the vault server's listing is malformed")
        for item in data:
            yield _object_info(item)

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        """Refused: a read-only view."""
        raise _read_only(key)

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> ObjectInfo:
        """Refused: a read-only view."""
        raise _read_only(key)

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Refused: a read-only view."""
        raise _read_only(key)

    def delete(self, key: str) -> None:
        """Refused: a read-only view."""
        raise _read_only(key)


def _read_only(key: str) -> VaultError:
    return BackendError(f"the vault server's log is read-only here ({key})")


def _object_info(data: Any) -> ObjectInfo:  # noqa: ANN401 -- JSON
    return cast(ObjectInfo, _load(ObjectInfo, data))


class _Uploads:
    """Ciphertext objects sent to the server, each with its signed digest."""

    def __init__(self, transport: HttpTransport) -> None:
        self._transport = transport

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        """Spool the object (its digest is signed before it is sent), then PUT it."""
        path = self._path(key)
        with tempfile.TemporaryFile() as spool:
            digest = hashlib.sha256()
            size = 0
            for chunk in chunks:
                digest.update(chunk)
                spool.write(chunk)
                size += len(chunk)
            spool.seek(0)
            value = f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
            transport = self._transport
            url = f"{transport.url}{path}"
            headers = transport._headers("PUT", url, value)
            headers["content-length"] = str(size)
            headers["content-type"] = "application/octet-stream"
            with _network(transport.url):
                response = transport._http.put(url, content=_read_chunks(spool), headers=headers)
            _raise_for(response)

    def delete(self, key: str) -> None:
        """Remove an object of a submission that failed before it was submitted.

        One that never arrived is not there to remove (the server says 404): as removed.
        """
        with contextlib.suppress(NotFoundError):
            self._transport._send("DELETE", self._path(key))

    def _path(self, key: str) -> str:
        """The route of an upload key, with the ticket of its tracking number."""
        prefix, _, rest = key.partition("/")
        tracking = rest.partition("/")[0]
        if prefix != "records" or "/" not in rest:
            raise ValueError(f"not an upload key: {key}")
        path = f"{wire.API_PREFIX}/uploads/{rest}"
        ticket = self._transport._tickets.get(tracking)
        return f"{path}?{urlencode({'ticket': ticket})}" if ticket else path


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK):
        yield chunk


def _tls_context(ca: Path | None) -> ssl.SSLContext:
    """Trust exactly `--ca` when given (the pin), else the system's CAs."""
    return ssl.create_default_context() if ca is None else client_context(ca)


def _checked_url(url: str) -> str:
    """`url` if httpx can send to it: https, a host, a port in 1..65535."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"vault URL {url}: {exc}") from None
    if parsed.scheme != "https":
        raise ConfigError(f"vault URL {url}: a vault server is reached over https:// only")
    if not parsed.host:
        raise ConfigError(f"vault URL {url}: the URL names no host (https://HOST:PORT)")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ConfigError(f"vault URL {url}: the port must be 1 to 65535")
    return url


# OpenSSL's verify codes for a certificate before its notBefore or past its notAfter date.
_X509_V_ERR_CERT_NOT_YET_VALID = 9
_X509_V_ERR_CERT_HAS_EXPIRED = 10
_X509_V_ERR_HOSTNAME_MISMATCH = 62
_X509_V_ERR_IP_ADDRESS_MISMATCH = 64


@contextlib.contextmanager
def _network(url: str) -> Iterator[None]:
    """Transport failures as the CLI's errors: untrusted certificate 2, unreachable 5."""
    try:
        yield
    except httpx.ConnectError as exc:
        cause = _verification_error(exc)
        if "certificate has expired" in str(exc) or (
            isinstance(cause, ssl.SSLCertVerificationError)
            and cause.verify_code == _X509_V_ERR_CERT_HAS_EXPIRED
        ):
            raise ConfigError(
                f"the certificate of {url} has expired by this machine's clock ({_today()}): "
                "if the clock is right, the server's administrator must give `pcii serve` a "
                "current one (--tls-cert, --tls-key) and hand it out again"
            ) from exc
        if (
            isinstance(cause, ssl.SSLCertVerificationError)
            and cause.verify_code == _X509_V_ERR_CERT_NOT_YET_VALID
        ):
            raise ConfigError(
                f"the certificate of {url} is not valid yet by this machine's clock "
                f"({_today()}): check this machine's clock"
            ) from exc
        if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_code in (
            _X509_V_ERR_HOSTNAME_MISMATCH,
            _X509_V_ERR_IP_ADDRESS_MISMATCH,
        ):
            host = httpx.URL(url).host
            raise ConfigError(
                f"the certificate of {url} is not made out for {host}: use the address "
                "`pcii serve` printed for clients (or serve with a certificate for it)"
            ) from exc
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(exc):
            raise ConfigError(
                f"the certificate of {url} is not trusted: pass --ca FILE with the "
                "certificate `pcii serve` printed (compare its SHA-256 fingerprint)"
            ) from exc
        unreached = BackendError(f"cannot reach the vault server at {url}: {exc}")
        unreached.handed_to_log = False  # no connection: the request was never sent
        raise unreached from exc
    except httpx.TimeoutException as exc:
        late = BackendError(f"the vault server at {url} did not answer in time")
        late.in_flight = True  # type: ignore[attr-defined]  # sent: it may have acted
        raise late from exc
    except httpx.HTTPError as exc:
        broken = BackendError(f"the connection to {url} failed: {exc}")
        broken.in_flight = True  # type: ignore[attr-defined]  # sent: it may have acted
        raise broken from exc


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _verification_error(exc: BaseException) -> BaseException | None:
    """The TLS verification error under `exc` (httpx wraps httpcore's, which wraps it)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None or isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = wire.ErrorBody.model_validate_json(response.content)
    except ValidationError:
        if response.status_code >= 500:
            raise BackendError(f"the vault server failed (HTTP {response.status_code})") from None
        raise InputError(
            f"the vault server refused the request (HTTP {response.status_code})"
        ) from None
    raise wire.error_from_body(body)


def _json(response: httpx.Response) -> Any:  # noqa: ANN401 -- JSON
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError("the vault server answered something that is not JSON") from exc


M = TypeVar("M", bound=BaseModel)


def _parse(kind: type[M], data: Any) -> M:  # noqa: ANN401
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise IntegrityError(
            f"the vault server's answer is malformed: {exc.errors()[0]['msg']}"
        ) from exc


def _record(data: Any) -> RecordRow:  # noqa: ANN401 -- JSON
    return cast(RecordRow, _load(RecordRow, data))


def _load(kind: Any, data: Any) -> Any:  # noqa: ANN401
    try:
        return wire.load(kind, data)
    except ValidationError as exc:
        raise IntegrityError(
            f"the vault server's answer is malformed: {exc.errors()[0]['msg']}"
        ) from exc


def _release_meta(response: httpx.Response) -> dict[str, Any]:
    fields = ("tracking_number", "files", "access_index", "obligations", "policies")
    try:
        meta = json.loads(response.headers[wire.RELEASE_HEADER])
    except (KeyError, json.JSONDecodeError) as exc:
        raise IntegrityError("the vault server's release has no valid description") from exc
    if not isinstance(meta, dict) or any(field not in meta for field in fields):
        raise IntegrityError("the vault server's release has no valid description")
    return meta


class _ChunkReader(io.RawIOBase):
    """A file-like view of a byte-chunk iterator, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:  # noqa: ANN401 -- a writable buffer
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _safe_name(name: str) -> bool:
    """A release file name: `NAME` or `attachments/NAME`, nothing that climbs or hides."""
    parts = name.split("/")
    if len(parts) == 2 and parts[0] != "attachments":
        return False
    return 1 <= len(parts) <= 2 and all(p and p not in {".", ".."} for p in parts)


def _unpack(
    chunks: Iterator[bytes], staging: Path, files: tuple[str, ...], progress: Progress | None
) -> None:
    """Write the release's tar stream into `staging`: only the announced regular files."""
    unsafe = [name for name in files if not _safe_name(name)]
    if unsafe:
        raise IntegrityError(f"the vault server's release names an unsafe path: {unsafe[0]!r}")
    expected = set(files)
    seen: set[str] = set()
    try:
        stream = io.BufferedReader(_ChunkReader(chunks), buffer_size=_CHUNK)
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                name = member.name
                if not member.isfile() or name not in expected or name in seen:
                    raise IntegrityError(f"the release holds an unexpected entry: {name!r}")
                seen.add(name)
                dest = staging / name
                if dest.parent != staging:
                    dest.parent.mkdir(mode=0o700, exist_ok=True)
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover - regular files always have data
                    raise IntegrityError(f"the release's {name!r} has no data")
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    done = 0
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None and name.startswith("attachments/"):
                            progress(name.removeprefix("attachments/"), done, member.size)
    except (tarfile.TarError, EOFError) as exc:
        raise BackendError(f"the release stream broke off: {exc}; nothing was written") from exc
    except httpx.HTTPError as exc:
        raise BackendError(f"the release stream broke off: {exc}; nothing was written") from exc
    if seen != expected:
        raise BackendError("the release stream ended early; nothing was written")
