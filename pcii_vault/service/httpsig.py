"""RFC 9421 HTTP Message Signatures for `pcii serve`: one profile, signed and checked strictly.

The profile: exactly one signature, labelled `pcii`, Ed25519, covering exactly `@method`,
`@target-uri` and `content-digest` (RFC 9530, sha-256 only), with exactly the parameters
`created`, `keyid`, `alg="ed25519"` and `nonce` (128 random bits, base64url). For example
(Signature-Input is one line on the wire):

    Content-Digest: sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:
    Signature-Input: pcii=("@method" "@target-uri" "content-digest")
        ;created=1700000000;keyid="alice";alg="ed25519";nonce="q0Zy3r6BBm1Ju8xRwQJ0tw"
    Signature: pcii=:<64 bytes, base64>:

The client signs the exact URL it sends, after its HTTP library has normalised it: with
httpx, `str(request.url)` (host lowercased, default port dropped, path percent-encoded).
The server verifies against the URL as it reconstructs it: scheme, the Host header, then the
raw path and query as received. `@target-uri` is compared as a string, so
`https://vault:443/x` and `https://vault/x` are different requests.

The http-message-signatures package builds and checks the signature base. Ed25519 goes
through our own `Signer` and `Ed25519PublicKey` (a small `HTTPSignatureAlgorithm`), so a
key that never leaves an HSM signs as well as one in memory.

Invariants: verification either returns a `VerifiedSignature` or raises `SignatureRefused`
(never a partial result); a nonce is remembered only once its signature has verified. The
signature covers the body's digest, not the body: the server streams the body through a
`DigestCheck` and refuses it unless `matches(verified.content_digest)`.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import errno
import hashlib
import heapq
import hmac
import os
import re
import secrets
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import structlog
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureAlgorithm,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)

from pcii_vault.crypto.signing import Ed25519PublicKey, Signer
from pcii_vault.errors import InputError, IntegrityError, NotFoundError
from pcii_vault.service.wire import shown

__all__ = [
    "ALGORITHM",
    "COVERED_COMPONENTS",
    "LABEL",
    "DigestCheck",
    "NonceCache",
    "Nonces",
    "RequestSigner",
    "SharedNonceCache",
    "SignatureRefused",
    "VerifiedSignature",
    "content_digest",
    "verify_request",
]

LABEL = "pcii"
ALGORITHM = "ed25519"
COVERED_COMPONENTS = ("@method", "@target-uri", "content-digest")
_COVERED_IDS = tuple(f'"{name}"' for name in COVERED_COMPONENTS)  # as Signature-Input has them
_PARAMETERS = frozenset({"created", "keyid", "alg", "nonce"})
# base64url without padding; 16 characters (96 bits) at least, 128 at most, so that a
# remembered nonce stays small. Ours are 22 characters (128 bits).
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_NONCE_BYTES = 16
_SHA256_MEMBER = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")


class SignatureRefused(InputError):  # noqa: N818 -- a decision about a request, like PolicyDenied
    """A request's signature is missing, malformed, wrong, stale, replayed or by an unknown key.

    `status` is the HTTP status the server answers with. The exit code is the one embedded
    mode gives the same fault: 2 for a request that is not signed as the profile says (the
    client fixes it and signs again), 3 for a key nobody registered (`PolicyDenied`), 4 for
    a signature that does not verify, a replay, a stale request or a body that is not the
    signed one (`IntegrityError`, as a forged or replayed act).
    """

    def __init__(self, message: str, status: int = 401, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.status = status
        self.exit_code = exit_code


@dataclass(frozen=True)
class VerifiedSignature:
    """What a verified request signature vouches for."""

    key_id: str
    created: datetime
    nonce: str
    content_digest: str


def content_digest(body: bytes) -> str:
    """Return the RFC 9530 `Content-Digest` value of `body`: `sha-256=:<base64>:`."""
    check = DigestCheck()
    check.update(body)
    return check.value()


def _sha256_of(header_value: str) -> bytes | None:
    """The digest in a `Content-Digest` that is exactly one canonical sha-256 member."""
    match = _SHA256_MEMBER.fullmatch(header_value.strip(" \t"))
    if match is None:
        return None
    digest = base64.b64decode(match.group(1), validate=True)
    # Only the canonical encoding: the unused low bits of the last character are zero.
    return digest if base64.b64encode(digest).decode() == match.group(1) else None


class DigestCheck:
    """A body's sha-256 computed chunk by chunk, compared with its `Content-Digest`."""

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        """Add the next chunk of the body."""
        self._hash.update(chunk)

    def value(self) -> str:
        """The `Content-Digest` value of the chunks so far."""
        return f"sha-256=:{base64.b64encode(self._hash.digest()).decode()}:"

    def matches(self, header_value: str) -> bool:
        """Whether `header_value` is exactly one sha-256 digest equal to the chunks so far.

        Other algorithms, several members, parameters and anything unparsable never match.
        """
        expected = _sha256_of(header_value)
        return expected is not None and hmac.compare_digest(expected, self._hash.digest())


class Nonces(Protocol):
    """Where a server remembers the nonces it accepted within the signature window."""

    @property
    def window(self) -> timedelta:
        """How long after its `created` a nonce is remembered."""
        ...

    @property
    def since(self) -> datetime:
        """From when on every accepted nonce is here: the server's start.

        An earlier request may have been accepted by the server before it restarted, and
        cannot be told from its replay.
        """
        ...

    def check_and_add(
        self, key_id: str, nonce: str, created: datetime, *, now: datetime | None = None
    ) -> bool:
        """Remember `nonce` for `key_id`; False when it was seen already (or is stale)."""
        ...

    def check(self) -> None:
        """Raise unless nonces can be remembered (a server's readiness probe)."""
        ...


class _Windowed(abc.ABC):
    """What both nonce caches share: the window, and when a nonce may be forgotten."""

    def __init__(self, window: timedelta, *, since: datetime | None = None) -> None:
        if window <= timedelta(0):
            raise ValueError("the nonce window must be positive")
        self._window = window
        self._lock = threading.Lock()
        # `created` counts whole seconds: a request signed in the second the cache began
        # is taken (the server was not listening before it began).
        self._since = (datetime.now(UTC) if since is None else since).replace(microsecond=0)

    @property
    def window(self) -> timedelta:
        """How long after its `created` a nonce is remembered."""
        return self._window

    @property
    def since(self) -> datetime:
        """From when on every accepted nonce is here (see `Nonces.since`)."""
        return self._since

    def check_and_add(
        self, key_id: str, nonce: str, created: datetime, *, now: datetime | None = None
    ) -> bool:
        """Remember `nonce` for `key_id`; False when it was seen already.

        Also False when `created` is already out of the window at `now` (default: the
        clock): such a nonce cannot be remembered long enough, and its request is stale.
        """
        now = datetime.now(UTC) if now is None else now
        if created.tzinfo is None or now.tzinfo is None:
            raise ValueError("created and now must carry a time zone")
        with self._lock:
            return self._remember(key_id, nonce, created + self._window, now)

    @abc.abstractmethod
    def _remember(self, key_id: str, nonce: str, expires: datetime, now: datetime) -> bool:
        """Under the lock: add the nonce unless it is known or `expires` is past."""


class NonceCache(_Windowed):
    """Nonces seen within the signature window, per key id; thread-safe, bounded by the window.

    A nonce is remembered until its `created` falls out of the window (`created + window`
    is past), when verification refuses the request as stale anyway. Expired entries go on
    each insert, so memory holds only nonces created within one window of now. One cache
    serves one process: the workers of one server share a `SharedNonceCache` instead.
    """

    def __init__(self, window: timedelta, *, since: datetime | None = None) -> None:
        super().__init__(window, since=since)
        self._expires: dict[tuple[str, str], datetime] = {}
        self._queue: list[tuple[datetime, str, str]] = []  # a heap of (expires, key id, nonce)

    def _remember(self, key_id: str, nonce: str, expires: datetime, now: datetime) -> bool:
        while self._queue and self._queue[0][0] < now:
            _, old_key, old_nonce = heapq.heappop(self._queue)
            del self._expires[(old_key, old_nonce)]
        if expires < now or (key_id, nonce) in self._expires:
            return False
        self._expires[(key_id, nonce)] = expires
        heapq.heappush(self._queue, (expires, key_id, nonce))
        return True

    def check(self) -> None:
        """Nothing to check: memory holds the nonces."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._expires)


class SharedNonceCache(_Windowed):
    """A `NonceCache` that processes share and that outlives them: a SQLite file.

    Each process opens the same file (0600 in the vault's spool); the primary key makes
    the first insert of a (key id, nonce) win across processes, so a message replayed to
    another worker is refused as it is to the same one. The file is kept across restarts:
    a request whose window reaches past a restart (one signed by a clock ahead of the
    server's) is refused as a replay after it too, and `since` is when the file was made.
    Nothing is fsynced (a process killed loses nothing; a machine that crashes may lose the
    last nonces). Expired rows are deleted now and then by whichever process inserts.
    """

    _PURGE_EVERY = 512  # inserts between deletions of expired rows

    def __init__(self, path: Path, window: timedelta, *, since: datetime | None = None) -> None:
        super().__init__(window, since=since)
        try:
            self._db, self._since = _nonce_file(path, self._since)
        except (sqlite3.DatabaseError, ValueError, OverflowError):
            # Damaged or edited: made anew. Its start is now, so nothing signed before it
            # passes (a replay of what the old file held is refused as signed too early).
            structlog.get_logger("pcii.serve").warning("nonce_file_replaced", path=str(path))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self._db, self._since = _nonce_file(path, self._since)
        self._inserts = 0
        self._name = f"{path.parent.name}/{path.name}"
        self._path = path
        self._file = _file_key(path)

    def _remember(self, key_id: str, nonce: str, expires: datetime, now: datetime) -> bool:
        if expires < now:
            return False
        self._inserts += 1
        with self._damage_named():
            self._same_file()
            if self._inserts % self._PURGE_EVERY == 0:
                self._db.execute("DELETE FROM nonces WHERE expires < ?", (now.timestamp(),))
            added = self._db.execute(
                "INSERT OR IGNORE INTO nonces (key_id, nonce, expires) VALUES (?, ?, ?)",
                (key_id, nonce, expires.timestamp()),
            )
        return added.rowcount == 1

    def check(self) -> None:
        """Raise unless the file answers (IntegrityError: damaged while serving)."""
        with self._lock, self._damage_named():
            self._same_file()
            self._db.execute("SELECT count(*) FROM began").fetchone()

    def _same_file(self) -> None:
        """The file this process opened, still a database: SQLite trusts its page cache.

        Raises:
            sqlite3.DatabaseError: replaced, or its header overwritten (named by the caller).
        """
        try:
            if _file_key(self._path) != self._file:
                raise sqlite3.DatabaseError("replaced by another file")
            # The same inode: a regular file (never a link followed, a FIFO waited on).
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                header = os.read(fd, len(_SQLITE_HEADER))
            finally:
                os.close(fd)
        except OSError as exc:
            raise sqlite3.DatabaseError(f"unreadable: {exc.strerror}") from None
        if header != _SQLITE_HEADER:
            raise sqlite3.DatabaseError("file is not a database")

    @contextlib.contextmanager
    def _damage_named(self) -> Iterator[None]:
        """A file damaged under a running server: every request refused (fail closed).

        Raises:
            IntegrityError: naming the file and the way out (a restart makes it anew).
        """
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise IntegrityError(
                f"{self._name}, the server's record of the HTTP nonces it accepted, was "
                f"damaged while it ran ({exc}): no request can be told from a replay; "
                "remove it and restart the server, which makes the file anew"
            ) from None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM nonces").fetchone()[0])

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            self._db.close()


_SQLITE_HEADER = b"SQLite format 3\x00"


def _file_key(path: Path) -> tuple[int, int]:
    """Which file `path` is (device, inode), its link not followed."""
    st = path.lstat()
    return st.st_dev, st.st_ino


def _nonce_file(path: Path, since: datetime) -> tuple[sqlite3.Connection, datetime]:
    """Open (or make, starting at `since`) the nonce file; return it and its start.

    Raises:
        IntegrityError: something else than a file stands there (a symlink, a directory,
            a FIFO): planted, never followed or waited on.
        sqlite3.DatabaseError, ValueError: the file is no nonce file (the caller makes
            it anew).
    """
    try:
        # Never readable by others, never a link followed out of the spool.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        what = "a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise IntegrityError(f"{path} is not the server's nonce file ({what}); remove it") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IntegrityError(f"{path} is not the server's nonce file (not a file); remove it")
    finally:
        os.close(fd)
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    try:
        # Changing the journal mode needs the file alone, and does not wait for it: the
        # server's parent makes the file (in WAL mode, which persists) before its workers
        # open it, and they only check.
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(
            "CREATE TABLE IF NOT EXISTS nonces (key_id TEXT NOT NULL, nonce TEXT NOT NULL, "
            "expires REAL NOT NULL, PRIMARY KEY (key_id, nonce)) WITHOUT ROWID"
        )
        # The file's start, not this process's: a worker started later (a replacement)
        # finds every nonce the server accepted since the file was made.
        db.execute("CREATE TABLE IF NOT EXISTS began (since REAL NOT NULL)")
        db.execute(
            "INSERT INTO began (since) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM began)",
            (since.timestamp(),),
        )
        start = _began(db)
    except BaseException:
        db.close()
        raise
    return db, start


def _began(db: sqlite3.Connection) -> datetime:
    """When the nonce file was made (ValueError: an edited start, not a time of the past)."""
    (began,) = db.execute("SELECT min(since) FROM began").fetchone()
    start = datetime.fromtimestamp(float(began), UTC)
    if start > datetime.now(UTC) + timedelta(minutes=1):
        raise ValueError("a nonce file that begins in the future")
    return start


@dataclass
class _Message:
    """The request as the package reads it: method, absolute URL and header fields."""

    method: str
    url: str
    headers: Mapping[str, str]


class _Ed25519(HTTPSignatureAlgorithm):
    """Ed25519 through our keys: a `Signer` signs, an `Ed25519PublicKey` verifies.

    The package's own ED25519 wants `cryptography` key objects; ours are PyNaCl seeds or
    keys held by a provider that only signs.
    """

    algorithm_id = ALGORITHM

    def __init__(self, public_key: object = None, private_key: object = None) -> None:
        if public_key is not None and not isinstance(public_key, Ed25519PublicKey):
            raise HTTPMessageSignaturesException("unexpected public key type")
        if private_key is not None and not isinstance(private_key, Signer):
            raise HTTPMessageSignaturesException("unexpected private key type")
        self._public = public_key
        self._private = private_key

    def sign(self, message: bytes) -> bytes:
        if self._private is None:
            raise HTTPMessageSignaturesException("no signing key")
        return self._private.sign(message)

    def verify(self, signature: bytes, message: bytes) -> None:
        if self._public is None:
            raise HTTPMessageSignaturesException("no verifying key")
        self._public.verify(message, signature)


class _OneSigningKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, signer: Signer) -> None:
        self._key_id = key_id
        self._signer = signer

    def resolve_private_key(self, key_id: str) -> Signer:
        if key_id != self._key_id:
            raise KeyError(key_id)
        return self._signer


class _KeyLookup(HTTPSignatureKeyResolver):
    """Calls the server's `resolve_key`, noting an unknown key or a failure.

    The package turns any resolver exception into `InvalidSignature`; the notes let
    `verify_request` tell an unknown key from a bad signature and let a store that is
    down surface as its own error, not as a 401.
    """

    def __init__(self, resolve_key: Callable[[str], Ed25519PublicKey | bytes]) -> None:
        self._resolve_key = resolve_key
        self.unknown: str | None = None  # the key id nobody registered
        self.resolved: str | None = None  # the key id whose key was found
        self.failure: Exception | None = None

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        try:
            key = self._resolve_key(key_id)
            self.resolved = key_id
            return key if isinstance(key, Ed25519PublicKey) else Ed25519PublicKey(bytes(key))
        except (KeyError, NotFoundError):
            self.unknown = key_id
            return None
        except Exception as exc:
            self.failure = exc
            raise


def _check_profile(
    components: Sequence[str], parameters: Mapping[str, object], now: datetime, window: timedelta
) -> tuple[str, datetime, str]:
    """Check a signature's covered components and parameters; return keyid, created, nonce.

    Raises:
        SignatureRefused: anything but exactly our profile, or created outside the window.
    """
    for name, component in zip(COVERED_COMPONENTS, _COVERED_IDS, strict=True):
        if component not in components:
            raise SignatureRefused(f"signature does not cover {name}")
    if len(components) != len(_COVERED_IDS):
        raise SignatureRefused(
            "signature covers components other than @method, @target-uri and content-digest"
        )
    for name in ("created", "keyid", "nonce"):
        if name not in parameters:
            raise SignatureRefused(f"signature has no {name} parameter")
    if parameters.get("alg") != ALGORITHM:
        raise SignatureRefused(f'signature algorithm must be alg="{ALGORITHM}"')
    if set(parameters) != _PARAMETERS:
        raise SignatureRefused("signature has parameters other than created, keyid, alg and nonce")
    key_id, created, nonce = parameters["keyid"], parameters["created"], parameters["nonce"]
    if not isinstance(key_id, str) or not key_id:
        raise SignatureRefused("signature keyid is malformed")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise SignatureRefused("signature nonce is malformed")
    return key_id, _created_at(created, now, window), nonce


def _created_at(created: object, now: datetime, window: timedelta) -> datetime:
    """The signature's `created` as a time within +/- `window` of `now`.

    Raises:
        SignatureRefused: not an integer time, or outside the window.
    """
    if type(created) is not int:
        raise SignatureRefused("signature created is malformed")
    try:
        created_at = datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise SignatureRefused("signature created is malformed") from exc
    if created_at > now + window:
        raise SignatureRefused(
            "signature created in the future: check the client's clock", exit_code=4
        )
    if created_at < now - window:
        raise SignatureRefused(
            f"signature is stale (created more than {window.total_seconds():g} s ago)",
            exit_code=4,
        )
    return created_at


class _SignatureInput(Protocol):
    """One parsed Signature-Input member: its components, and its parameters."""

    params: Mapping[str, object]

    def __iter__(self) -> Iterator[object]: ...


class _Verifier(HTTPMessageVerifier):
    def __init__(self, resolver: _KeyLookup, now: datetime, window: timedelta) -> None:
        super().__init__(signature_algorithm=_Ed25519, key_resolver=resolver)
        self._now = now
        self._window = window

    def validate_created_and_expires(
        self, sig_input: _SignatureInput, max_age: timedelta | None = None
    ) -> None:
        # The package's hook, called for each signature before its key is looked up: it
        # would check `created` against its own clock and a 5 s skew. Ours is the caller's
        # `now` and window, and the whole profile is checked here, before any key lookup.
        del max_age
        _check_profile(
            [str(item) for item in sig_input], dict(sig_input.params), self._now, self._window
        )


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    resolve_key: Callable[[str], Ed25519PublicKey | bytes],
    now: datetime,
    window: timedelta = timedelta(seconds=60),
    seen: Nonces | None = None,
) -> VerifiedSignature:
    """Verify a request's `pcii` signature and, with `seen`, that its nonce is new.

    `url` is the request's absolute URL as the server reconstructs it; `headers` every
    header field (a mapping whose `items()` yields repeated fields keeps them apart).
    `resolve_key` maps a key id to its public key (ours, or 32 raw bytes) and raises
    `KeyError` or `NotFoundError` for an unknown one. The body is not read: check it
    against the returned `content_digest` with a `DigestCheck`.

    Raises:
        SignatureRefused: no signature, not our profile, created outside +/- `window` of
            `now`, an unknown key, a signature that does not verify, or a replayed nonce.
        Exception: whatever else `resolve_key` raises (a store that is down) propagates.
    """
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    if seen is not None and seen.window < window:
        raise ValueError("the nonce cache must remember nonces for the whole window")
    present = {name.lower() for name in headers}
    for name in ("Signature-Input", "Signature"):
        if name.lower() not in present:
            raise SignatureRefused(f"request is not signed: no {name} header")
    lookup = _KeyLookup(resolve_key)
    try:
        results = _Verifier(lookup, now, window).verify(
            _Message(method, url, headers), max_age=None
        )
    except InvalidSignature as exc:
        if lookup.failure is not None:
            raise lookup.failure from None
        if lookup.unknown is not None:
            # Embedded mode's words for the same fault.
            raise SignatureRefused(
                f"{shown(lookup.unknown)} is not a registered principal", exit_code=3
            ) from None
        # Well formed, and the key known: the signature itself does not verify (a forged
        # or altered message, or another principal's key: exit 4, in embedded mode's
        # words); anything else is a request not signed as the profile says (exit 2).
        if isinstance(exc.__cause__, IntegrityError) and lookup.resolved is not None:
            raise SignatureRefused(
                f"request signature of {shown(lookup.resolved)} does not verify", exit_code=4
            ) from exc
        raise SignatureRefused(f"signature refused: {_one_line(exc)}") from exc
    except HTTPMessageSignaturesException as exc:
        raise SignatureRefused(f"signature refused: {_one_line(exc)}") from exc
    if len(results) != 1 or results[0].label != LABEL:
        raise SignatureRefused(f"request must carry exactly one signature, labelled {LABEL}")
    result = results[0]
    components = [name for name in result.covered_components if name != '"@signature-params"']
    key_id, created, nonce = _check_profile(components, result.parameters, now, window)
    digest = result.covered_components['"content-digest"']
    if _sha256_of(digest) is None:
        raise SignatureRefused("Content-Digest must be exactly one sha-256 digest")
    if seen is not None:
        _refuse_replay(seen, key_id, nonce, created, now)
    return VerifiedSignature(key_id=key_id, created=created, nonce=nonce, content_digest=digest)


def _refuse_replay(seen: Nonces, key_id: str, nonce: str, created: datetime, now: datetime) -> None:
    """Remember the nonce; refuse one seen already, or signed before `seen` began.

    Raises:
        SignatureRefused: a replay, or what cannot be told from one (exit 4).
    """
    if created < seen.since:
        raise SignatureRefused(
            "request signed before this server started: it cannot be told from a replay; "
            "sign it again (and check the client's clock)",
            exit_code=4,
        )
    if not seen.check_and_add(key_id, nonce, created, now=now):
        raise SignatureRefused("nonce already used: the request was replayed", exit_code=4)


class RequestSigner:
    """Signs requests as one key id: the `Content-Digest`, `Signature-Input` and `Signature`."""

    def __init__(self, key_id: str, private_key: Signer) -> None:
        if not key_id:
            raise ValueError("key id must not be empty")
        self.key_id = key_id
        self._signer = HTTPMessageSigner(
            signature_algorithm=_Ed25519, key_resolver=_OneSigningKey(key_id, private_key)
        )

    def headers(
        self,
        method: str,
        url: str,
        *,
        body_digest: str,
        now: datetime | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """Return the three headers that sign `method url` with the body of `body_digest`.

        `url` is the exact absolute URL the request is sent to (with httpx,
        `str(request.url)`); `body_digest` is `content_digest(body)` or a `DigestCheck`'s
        value. `now` defaults to the clock, `nonce` to 128 fresh random bits.

        Raises:
            BackendError: a key provider that signs for us is unavailable.
        """
        if _sha256_of(body_digest) is None:
            raise ValueError("body_digest must be a sha-256 Content-Digest (see content_digest)")
        created = datetime.now(UTC) if now is None else now
        if created.tzinfo is None:
            raise ValueError("now must carry a time zone")
        if nonce is None:
            nonce = secrets.token_urlsafe(_NONCE_BYTES)
        if not _NONCE.fullmatch(nonce):
            raise ValueError("nonce must be 16 to 128 base64url characters")
        headers = {"Content-Digest": body_digest}
        try:
            self._signer.sign(
                _Message(method, url, headers),
                key_id=self.key_id,
                created=created,
                nonce=nonce,
                label=LABEL,
                covered_component_ids=COVERED_COMPONENTS,
                use_existing_digest=True,
            )
        except HTTPMessageSignaturesException as exc:
            raise ValueError(f"cannot sign this request: {_one_line(exc)}") from exc
        return headers
