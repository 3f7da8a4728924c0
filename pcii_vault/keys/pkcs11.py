"""KEKs and the log key inside a PKCS#11 token (an HSM; SoftHSM2 in the tests).

URI (RFC 7512): `pkcs11:token=LABEL;object=NAME?module-path=/path/lib.so&pin-source=file:/p`
(or `pin-value=...`; or the PIN in `PCII_PKCS11_PIN`; the module path may come from
`PCII_PKCS11_MODULE`). A `pin-value` is never written into vault.json or the log.

Keys in the token:
- KEK version N is the AES-256 secret key labelled `NAME.vN`, generated inside the token
  (`CKA_SENSITIVE`, not `CKA_EXTRACTABLE`): it never leaves it;
- wrapping is `CKM_AES_GCM` inside the token with a random 96-bit nonce, the associated
  data being the blob header (format, version, provider id) and the record context;
- retiring version N clears its `CKA_DECRYPT`, so the token itself refuses to unwrap;
- the log key is the Ed25519 key pair labelled `NAME-log` (`CKM_EC_EDWARDS_KEY_PAIR_GEN`,
  signing with `CKM_EDDSA`); only its public half is ever read.

Blob: `0x02 | version (4) | provider id (8) | nonce (12) | ciphertext + tag (48)`.

python-pkcs11 sessions are not thread-safe: each operation borrows a session from a
pool, with the key handles it found. Moreover python-pkcs11 initialises the module with
`C_Initialize(NULL)`, which tells it the application will not call it from several
threads at once, and SoftHSM2 2.6.1 then takes no locks (16 threads crash it, seen here):
so every call into one module is serialised by a lock per module, and the pool rarely
holds more than one session. Throughput across threads is therefore that of one thread.
Re-wrapping inside the token would need the DEK as a token object; rewrap therefore
unwraps and wraps in this process, as a release does.

Errors: a token that is missing or stops answering is a `BackendError` (exit 5); a blob
that fails authentication, names an unknown or retired version, or comes from another
key is an `IntegrityError` (exit 4).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import pkcs11
import pkcs11.exceptions as p11err
import structlog
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_named_curve_parameters

from pcii_vault.crypto.signing import Ed25519PublicKey
from pcii_vault.errors import BackendError, ConfigError, InputError, IntegrityError
from pcii_vault.keys.base import (
    KekInfo,
    VersionedKek,
    external_header,
    parse_unverified_external,
)

__all__ = ["PIN_ENV", "Pkcs11Kek", "Pkcs11Signer", "Pkcs11Uri"]

_log = structlog.get_logger(__name__)

PIN_ENV: Final = "PCII_PKCS11_PIN"
MODULE_ENV: Final = "PCII_PKCS11_MODULE"
_NONCE_BYTES: Final = 12
_ED25519_OID: Final = "1.3.101.112"
_UNWRAP_FAILED: Final = "wrapped data key failed authentication"
# Errors that mean the token or its session is gone, not that the data is wrong.
_UNAVAILABLE: Final = (
    p11err.DeviceError,
    p11err.DeviceRemoved,
    p11err.DeviceMemory,
    p11err.TokenNotPresent,
    p11err.TokenNotRecognised,
    p11err.SessionClosed,
    p11err.SessionHandleInvalid,
    p11err.SessionCount,
    p11err.UserNotLoggedIn,
    p11err.HostMemory,
    p11err.SlotIDInvalid,
    # A handle found earlier vanished: the token changed underneath (removed, or
    # re-initialised). The session is dropped with its cached handles; a retry looks again.
    p11err.ObjectHandleInvalid,
    p11err.KeyHandleInvalid,
)
_LIBS: dict[str, Any] = {}
_LIBS_LOCK = threading.Lock()
_MODULE_LOCKS: dict[str, threading.Lock] = {}
# PKCS#11 login state belongs to the application, not to a session, and closing the
# session that logged in logs every session out. So one anchor session per token logs in
# and stays open for the life of the process; pooled sessions open without a PIN.
_ANCHORS: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    """A parsed RFC 7512 URI: the token, the object, the module and the PIN's source."""

    token: str
    object: str
    module_path: str | None
    pin_source: str | None
    pin_value: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        """Parse `pkcs11:token=...;object=...?module-path=...&pin-source=...`.

        Raises:
            InputError: not a PKCS#11 URI, or without `token` or `object`.
        """
        if not uri.startswith("pkcs11:"):
            raise InputError(f"not a PKCS#11 URI: {uri!r}")
        path, _, query = uri[len("pkcs11:") :].partition("?")
        attrs = _attributes(path, ";") | _attributes(query, "&")
        token, name = attrs.get("token"), attrs.get("object")
        if not token or not name:
            raise InputError("a pkcs11: URI needs token=LABEL and object=NAME")
        return cls(
            token=token,
            object=name,
            module_path=attrs.get("module-path"),
            pin_source=attrs.get("pin-source"),
            pin_value=attrs.get("pin-value"),
        )

    @property
    def key_id(self) -> str:
        """The token and object: stable, and no secret."""
        return f"pkcs11:token={_q(self.token)};object={_q(self.object)}"

    def public(self) -> str:
        """The URI without `pin-value`, fit for vault.json and the log."""
        return self._render(with_pin=False)

    def log_key_uri(self) -> str:
        """Where `init` puts the log key: the same token, object `NAME-log` (PIN kept)."""
        return Pkcs11Uri(
            self.token, f"{self.object}-log", self.module_path, self.pin_source, self.pin_value
        )._render(with_pin=True)

    def _render(self, *, with_pin: bool) -> str:
        query = []
        if self.module_path:
            query.append(f"module-path={_q(self.module_path)}")
        if self.pin_source:
            query.append(f"pin-source={_q(self.pin_source)}")
        if with_pin and self.pin_value:
            query.append(f"pin-value={_q(self.pin_value)}")
        return self.key_id + ("?" + "&".join(query) if query else "")

    def pin(self) -> str:
        """The user PIN: `pin-value`, the file `pin-source` names, or `PCII_PKCS11_PIN`.

        Raises:
            ConfigError: no PIN anywhere, or its file cannot be read.
        """
        if self.pin_value:
            return self.pin_value
        if self.pin_source:
            path = self.pin_source.removeprefix("file:")
            try:
                return Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the PKCS#11 PIN from {path}: {exc}") from exc
        env = os.environ.get(PIN_ENV)
        if env:
            return env
        raise ConfigError(f"no PKCS#11 PIN: add pin-source=file:PATH to the URI or set {PIN_ENV}")

    def module(self) -> str:
        """The PKCS#11 module to load.

        Raises:
            ConfigError: none named.
        """
        module = self.module_path or os.environ.get(MODULE_ENV)
        if not module:
            raise ConfigError(f"no PKCS#11 module: add module-path= to the URI or set {MODULE_ENV}")
        return module


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="/:._-")


def _attributes(text: str, separator: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for part in filter(None, text.split(separator)):
        name, eq, value = part.partition("=")
        if not eq:
            raise InputError(f"malformed PKCS#11 URI attribute {name!r}")
        attrs[name] = urllib.parse.unquote(value)
    return attrs


def _system_libcrypto() -> Any:  # noqa: ANN401 -- a ctypes library, or None
    """The system's libcrypto, which Python's `ssl` and SoftHSM2 both load (or None)."""
    import ctypes  # noqa: PLC0415
    import ctypes.util  # noqa: PLC0415

    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
        library.ERR_clear_error.restype = None
    except (OSError, AttributeError):
        return None
    return library


_LIBCRYPTO: Final = _system_libcrypto()


def _clear_openssl_errors() -> None:
    """Empty this thread's OpenSSL error queue after a call into the PKCS#11 module.

    A module built on the system's OpenSSL (SoftHSM2) leaves errors there (an engine it
    looked for and did not find). Python's `ssl` uses the same library and reads the
    queue when it checks a TLS read: a healthy read from OpenBao or S3 in the same thread
    then failed with "[ENGINE: NO_SUCH_ENGINE] no such engine".
    """
    if _LIBCRYPTO is not None:
        _LIBCRYPTO.ERR_clear_error()


def _open_token(uri: Pkcs11Uri) -> Any:  # noqa: ANN401 -- pkcs11.Token
    try:
        return _open_token_of(uri)
    finally:
        _clear_openssl_errors()


def _open_token_of(uri: Pkcs11Uri) -> Any:  # noqa: ANN401 -- pkcs11.Token
    module = uri.module()
    with _LIBS_LOCK:
        lib = _LIBS.get(module)
        if lib is None:
            if not Path(module).exists():
                raise ConfigError(f"PKCS#11 module {module} does not exist")
            try:
                lib = _LIBS[module] = pkcs11.lib(module)
            except (p11err.PKCS11Error, OSError) as exc:
                # Not a library, or not a PKCS#11 one (no C_GetFunctionList): the dlerror
                # names the path, nothing secret; kept out of the line all the same.
                _log.debug("pkcs11_module_refused", module=module, error=str(exc))
                raise ConfigError(
                    f"PKCS#11 module {module} cannot be loaded (not a PKCS#11 library)"
                ) from None
            _MODULE_LOCKS[module] = threading.Lock()
    try:
        return lib.get_token(token_label=uri.token)
    except p11err.NoSuchToken:
        raise BackendError(f"PKCS#11 token {uri.token!r} is not present") from None
    except p11err.MultipleTokensReturned:
        # `softhsm2-util --init-token` run twice with one label makes two tokens.
        raise ConfigError(
            f"more than one PKCS#11 token is labelled {uri.token!r}: the vault cannot tell "
            "which holds its keys; give the other token another label (or remove it)"
        ) from None
    except p11err.PKCS11Error as exc:
        raise BackendError(
            f"PKCS#11 token {uri.token!r} unavailable ({type(exc).__name__})"
        ) from exc


class _SessionPool:
    """Logged-in sessions, one borrowed per operation (sessions are not thread-safe)."""

    def __init__(self, uri: Pkcs11Uri) -> None:
        self._uri = uri
        self._token = _open_token(uri)
        self._module_lock = _MODULE_LOCKS[uri.module()]
        self._pin = uri.pin()
        self._idle: queue.LifoQueue[_Session] = queue.LifoQueue()
        self._all: list[_Session] = []
        self._lock = threading.Lock()
        self._closed = False
        with self._module_lock:
            self._idle.put(self._new())  # fail at open, not at first use

    def _new(self) -> _Session:
        try:
            self._login()
            session = self._token.open(rw=True)
        except p11err.PinIncorrect:
            raise ConfigError(f"wrong PIN for PKCS#11 token {self._uri.token!r}") from None
        except p11err.PKCS11Error as exc:
            raise BackendError(
                f"PKCS#11 token {self._uri.token!r} unavailable ({type(exc).__name__})"
            ) from exc
        wrapped = _Session(session)
        with self._lock:
            self._all.append(wrapped)
        return wrapped

    def _login(self) -> None:
        anchor_key = (self._uri.module(), self._uri.token)
        with _LIBS_LOCK:
            if anchor_key not in _ANCHORS:
                _ANCHORS[anchor_key] = self._token.open(user_pin=self._pin, rw=True)

    @contextlib.contextmanager
    def session(self) -> Iterator[_Session]:
        """Borrow a session under the module's lock; one that failed as unavailable is dropped."""
        if self._closed:
            raise BackendError("PKCS#11 provider is closed")
        with self._module_lock:
            try:
                borrowed = self._idle.get_nowait()
            except queue.Empty:
                borrowed = self._new()
            healthy = True
            try:
                yield borrowed
            except (BackendError, *_UNAVAILABLE):
                healthy = False
                raise
            finally:
                _clear_openssl_errors()
                if healthy:
                    self._idle.put(borrowed)
                else:
                    with self._lock, contextlib.suppress(ValueError):
                        self._all.remove(borrowed)

    def invalidate(self) -> None:
        """Forget cached key handles (after a rotation or retirement)."""
        with self._lock:
            for session in self._all:
                session.keys.clear()

    def close(self) -> None:
        """Close every session."""
        self._closed = True
        with self._lock:
            sessions, self._all = self._all, []
        with self._module_lock:
            for session in sessions:
                with contextlib.suppress(p11err.PKCS11Error):
                    session.raw.close()
            _clear_openssl_errors()


@dataclass
class _Session:
    raw: Any
    keys: dict[str, Any] = field(default_factory=dict)

    def secret_key(self, label: str) -> Any:  # noqa: ANN401 -- pkcs11.SecretKey
        key = self.keys.get(label)
        if key is None:
            try:
                key = self.keys[label] = self.raw.get_key(
                    label=label, object_class=ObjectClass.SECRET_KEY
                )
            except p11err.NoSuchKey:
                # Callers ask only for versions the token listed: a key that vanished
                # since means the token was removed or re-initialised underneath.
                raise BackendError(f"PKCS#11 key {label} vanished from the token") from None
        return key


class _Guard(contextlib.AbstractContextManager[None]):
    """Map token failures to the vault's error families."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> Literal[False]:  # noqa: ANN401
        if exc is None or not isinstance(exc, p11err.PKCS11Error):
            return False
        if isinstance(exc, _UNAVAILABLE):
            raise BackendError(f"PKCS#11 token unavailable during {self._what}") from exc
        _log.debug("pkcs11_refused", operation=self._what, error=type(exc).__name__)
        raise IntegrityError(_UNWRAP_FAILED) from None


class Pkcs11Kek(VersionedKek):
    """KEK versions as AES keys inside a PKCS#11 token."""

    def __init__(self, uri: Pkcs11Uri, pool: _SessionPool) -> None:
        """Not for direct use: call `Pkcs11Kek.open`."""
        self._uri = uri
        self._pool = pool
        self._key_id = uri.key_id
        self._versions: tuple[KekInfo, ...] = ()
        self._refresh()

    def __repr__(self) -> str:
        return f"Pkcs11Kek({self._key_id!r}, current_version={self.current_version})"

    @classmethod
    def open(cls, uri: str, *, create: bool = False) -> Pkcs11Kek:
        """Open the KEK `uri` names; with `create`, generate version 1 when missing.

        Raises:
            ConfigError: no such key (without `create`), wrong PIN, no module.
            BackendError: the token is not present.
        """
        parsed = Pkcs11Uri.parse(uri)
        pool = _SessionPool(parsed)
        try:
            with pool.session() as session, _Guard("open"):
                _find_or_create_kek(session, parsed, create=create)
            return cls(parsed, pool)
        except BaseException:
            pool.close()
            raise

    # -- KekProvider ----------------------------------------------------------------

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        """AES-GCM inside the token under the current version.

        Raises:
            BackendError: the token is unavailable, or the current version's decrypt was
                cleared outside the vault (it would wrap keys it can never unwrap).
        """
        version = self._check_current_usable()
        header = external_header(version, self._key_id)
        nonce = os.urandom(_NONCE_BYTES)
        with self._pool.session() as session, _Guard("wrap"):
            sealed = session.secret_key(self._label(version)).encrypt(
                dek, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, header + context)
            )
        return header + nonce + bytes(sealed)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """AES-GCM open inside the token; the token refuses retired versions too.

        Raises:
            IntegrityError: tampered, wrong context, other key, unknown or retired version.
            BackendError: the token is unavailable.
        """
        version, header, payload = parse_unverified_external(wrapped, self._key_id)
        self._check_usable(version)
        nonce, sealed = payload[:_NONCE_BYTES], payload[_NONCE_BYTES:]
        if len(nonce) != _NONCE_BYTES or len(sealed) < 16 + 16:
            raise IntegrityError(_UNWRAP_FAILED)
        with self._pool.session() as session, _Guard("unwrap"):
            key = session.secret_key(self._label(version))
            return bytes(
                key.decrypt(
                    sealed,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, header + context),
                )
            )

    def rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Unwrap and wrap under the current version (the DEK passes through memory)."""
        return self.wrap(self.unwrap(wrapped, context), context)

    def rotate(self) -> int:
        """Generate version N+1 inside the token and make it current."""
        self._refresh()
        version = self.current_version + 1
        with self._pool.session() as session, _Guard("rotate"):
            _generate_aes(session, self._label(version))
        self._pool.invalidate()
        self._refresh()
        _log.info("pkcs11_kek_rotated", key=self._key_id, version=version)
        return version

    def retire(self, version: int) -> None:
        """Clear `CKA_DECRYPT` on a version: the token refuses to unwrap with it.

        Raises:
            InputError: current or unknown version.
        """
        self._refresh()
        self._check_retirable(version)
        with self._pool.session() as session, _Guard("retire"):
            session.secret_key(self._label(version))[Attribute.DECRYPT] = False
        self._pool.invalidate()
        self._refresh()

    def close(self) -> None:
        """Close the sessions."""
        self._pool.close()

    # -- internals ----------------------------------------------------------------------

    def _label(self, version: int) -> str:
        return f"{self._uri.object}.v{version}"

    def _check_usable(self, version: int) -> None:
        for info in self._versions:
            if info.version == version:
                if info.retired:
                    raise IntegrityError(f"KEK version {version} is retired")
                return
        # Perhaps rotated by another process since we looked: look again once.
        self._refresh()
        if all(v.version != version or v.retired for v in self._versions):
            raise IntegrityError(f"KEK version {version} is not usable in the token")

    def _refresh(self) -> None:
        with self._pool.session() as session, _Guard("list"):
            found = _labels(session, self._uri.object)
        if not found:
            raise ConfigError(f"no KEK {self._key_id} in the token")
        self._versions = tuple(
            KekInfo(version=v, created=None, retired=not decrypt)
            for v, decrypt in sorted(found.items())
        )


def _labels(session: _Session, name: str) -> dict[int, bool]:
    """Version -> whether it may decrypt, for every `NAME.vN` secret key in the token."""
    found: dict[int, bool] = {}
    prefix = f"{name}.v"
    for obj in session.raw.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
        label = obj[Attribute.LABEL]
        if isinstance(label, str) and label.startswith(prefix) and label[len(prefix) :].isdigit():
            found[int(label[len(prefix) :])] = bool(obj[Attribute.DECRYPT])
    return found


def _find_or_create_kek(session: _Session, uri: Pkcs11Uri, *, create: bool) -> None:
    if _labels(session, uri.object):
        return
    if not create:
        raise ConfigError(f"no KEK {uri.key_id} in the token")
    _generate_aes(session, f"{uri.object}.v1")
    _log.info("pkcs11_kek_created", key=uri.key_id, version=1)


def _find_or_create_log_key(session: _Session, uri: Pkcs11Uri, *, create: bool) -> bytes:
    """Return the EC_POINT of the Ed25519 key pair `uri.object`, generating it if asked."""
    template = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: uri.object}
    publics = list(session.raw.get_objects(template))
    if publics:
        return bytes(publics[0][Attribute.EC_POINT])
    if not create:
        raise ConfigError(f"no log key {uri.key_id} in the token")
    params = session.raw.create_domain_parameters(
        KeyType.EC_EDWARDS,
        {Attribute.EC_PARAMS: encode_named_curve_parameters(_ED25519_OID)},
        local=True,
    )
    public, _ = params.generate_keypair(
        store=True,
        label=uri.object,
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
    )
    _log.info("pkcs11_log_key_created", key=uri.key_id)
    return bytes(public[Attribute.EC_POINT])


def _generate_aes(session: _Session, label: str) -> None:
    session.raw.generate_key(
        KeyType.AES,
        256,
        label=label,
        store=True,
        template={
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
        },
    )


class Pkcs11Signer:
    """The log's Ed25519 key inside the token (`CKM_EDDSA`); only the public half is read."""

    def __init__(self, uri: Pkcs11Uri, pool: _SessionPool, public_key: Ed25519PublicKey) -> None:
        """Not for direct use: call `Pkcs11Signer.open`."""
        self._uri = uri
        self._pool = pool
        self._public = public_key

    def __repr__(self) -> str:
        return f"Pkcs11Signer({self._uri.key_id!r})"

    @classmethod
    def open(cls, uri: str, *, create: bool = False) -> Pkcs11Signer:
        """Open the Ed25519 key pair `uri` names; with `create`, generate it when missing.

        Raises:
            ConfigError: no such key (without `create`).
            BackendError: the token is not present.
        """
        parsed = Pkcs11Uri.parse(uri)
        pool = _SessionPool(parsed)
        try:
            with pool.session() as session, _Guard("open log key"):
                point = _find_or_create_log_key(session, parsed, create=create)
            # EC_POINT is a DER OCTET STRING (04 20 || key) or, in some tokens, the raw key.
            raw = point[2:] if len(point) == 34 and point[:2] == b"\x04\x20" else point
            return cls(parsed, pool, Ed25519PublicKey(raw))
        except BaseException:
            pool.close()
            raise

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The log's verifying key."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """`CKM_EDDSA` inside the token.

        Raises:
            BackendError: the token is unavailable or refuses.
        """
        with self._pool.session() as session:
            try:
                key = session.keys.get("log")
                if key is None:
                    key = session.keys["log"] = session.raw.get_key(
                        label=self._uri.object, object_class=ObjectClass.PRIVATE_KEY
                    )
                return bytes(key.sign(message, mechanism=Mechanism.EDDSA))
            except p11err.PKCS11Error as exc:
                raise BackendError(f"PKCS#11 token refused to sign ({type(exc).__name__})") from exc

    def close(self) -> None:
        """Close the sessions."""
        self._pool.close()
