"""KEKs and the log key in an OpenBao (or Vault) transit mount.

URI: `openbao:https://HOST:PORT/MOUNT/keys/NAME`; the token comes from `BAO_TOKEN` or
`VAULT_TOKEN`, a private CA from `BAO_CACERT` or `VAULT_CACERT`.

Keys in the mount:
- the KEK is the transit key NAME, type `aes256-gcm96`, created with `derived: true`;
  its versions are transit's versions, and retiring raises `min_decryption_version`, so
  OpenBao itself refuses retired versions (transit retires oldest first);
- the log key is the transit key `NAME-log`, type `ed25519`; only its public key is read.

Binding the record context (a decision): transit's `associated_data` is not accepted by
`rewrap` in OpenBao 2.7 (a rewrap of such a ciphertext fails authentication), and
re-wrapping through decrypt+encrypt would send every data key over the wire. So the
record context (with this provider's id) is transit's key-derivation `context`: each
record's DEK is wrapped under a key derived from the KEK and its context, a wrong
context fails authentication exactly as wrong associated data would, and `rewrap`
moves a blob to the newest version inside OpenBao with the plaintext never leaving it.

Blob: `0x02 | version (4) | provider id (8) | transit ciphertext ("vault:vN:...")`; the
header's version must match the ciphertext's own, which transit authenticates.

Errors: connection failures, timeouts and 5xx are `BackendError` (exit 5); a ciphertext
that fails authentication or is too old is `IntegrityError` (exit 4); a refused token or
a missing key is `ConfigError` (exit 2).
"""

from __future__ import annotations

import base64
import os
import ssl
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import structlog

from pcii_vault.crypto.signing import Ed25519PublicKey
from pcii_vault.errors import BackendError, ConfigError, InputError, IntegrityError
from pcii_vault.keys.base import (
    KekInfo,
    VersionedKek,
    external_header,
    parse_unverified_external,
    provider_id,
)

__all__ = ["TransitKek", "TransitSigner", "TransitUri", "log_key_uri"]

_log = structlog.get_logger(__name__)

_TOKEN_ENVS: Final = ("BAO_TOKEN", "VAULT_TOKEN")
_CA_ENVS: Final = ("BAO_CACERT", "VAULT_CACERT")
_TIMEOUT: Final = httpx.Timeout(10.0, connect=3.0)
_UNWRAP_FAILED: Final = "wrapped data key failed authentication"
_AUTH_FAILED_MARKERS: Final = ("message authentication failed", "too old", "invalid ciphertext")


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class TransitUri:
    """`openbao:https://HOST:PORT/MOUNT/keys/NAME`, parsed."""

    address: str
    mount: str
    name: str

    @classmethod
    def parse(cls, uri: str) -> TransitUri:
        """Parse a transit key URI.

        Raises:
            InputError: malformed.
        """
        rest = uri.removeprefix("openbao:")
        parts = urllib.parse.urlsplit(rest)
        mount, sep, name = parts.path.strip("/").rpartition("/keys/")
        if parts.scheme not in {"https", "http"} or not parts.netloc or not sep or not mount:
            raise InputError(
                f"malformed OpenBao key URI {uri!r}: use openbao:https://HOST:PORT/MOUNT/keys/NAME"
            )
        if not name or "/" in name:
            raise InputError(f"malformed OpenBao key name in {uri!r}")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            # Every wrap sends a data key, and every call the token, to this address.
            raise InputError(
                f"{uri!r} would send data keys and the OpenBao token in cleartext: use "
                "openbao:https://... (plain http only to 127.0.0.1, ::1 or localhost)"
            )
        return cls(address=f"{parts.scheme}://{parts.netloc}", mount=mount, name=name)

    @property
    def key_id(self) -> str:
        """The mount and key (not the address, which may change)."""
        return f"openbao:{self.mount}/keys/{self.name}"

    def uri(self) -> str:
        """The full URI."""
        return f"openbao:{self.address}/{self.mount}/keys/{self.name}"


def log_key_uri(kek_uri: str) -> str:
    """Where `init` puts the log key: transit key `NAME-log` in the same mount."""
    parsed = TransitUri.parse(kek_uri)
    return TransitUri(parsed.address, parsed.mount, f"{parsed.name}-log").uri()


class _Client:
    """The transit HTTP API (httpx pools connections and is safe across threads)."""

    def __init__(self, uri: TransitUri) -> None:
        token = next((os.environ[e] for e in _TOKEN_ENVS if os.environ.get(e)), None)
        if token is None:
            raise ConfigError("no OpenBao token: set BAO_TOKEN (or VAULT_TOKEN)")
        ca = next((os.environ[e] for e in _CA_ENVS if os.environ.get(e)), None)
        try:
            verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"OpenBao CA file {ca} (BAO_CACERT) cannot be used: {exc.strerror or exc}"
            ) from None
        self._uri = uri
        self._http = httpx.Client(
            base_url=f"{uri.address}/v1/",
            headers={"X-Vault-Token": token},
            verify=verify,
            timeout=_TIMEOUT,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request; returns the response's JSON (`{}` for 204).

        Raises:
            BackendError: unreachable, timed out, or a server error.
            ConfigError: permission denied, or not found.
            IntegrityError: a ciphertext failed authentication or is too old.
        """
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            if _untrusted_certificate(exc):
                # Retrying will not help: the CA is not the one OpenBao's certificate needs.
                raise ConfigError(
                    f"OpenBao at {self._uri.address}: its TLS certificate is not trusted "
                    "(set BAO_CACERT to the CA that signed it)"
                ) from None
            raise BackendError(
                f"OpenBao at {self._uri.address} unavailable ({type(exc).__name__})"
            ) from exc
        if response.status_code == 204:
            return {}
        try:
            doc: dict[str, Any] = response.json()
        except ValueError:
            doc = {}
        if response.is_success:
            return doc
        errors = " ".join(str(e) for e in doc.get("errors", []))
        if response.status_code >= 500 or response.status_code == 429:
            raise BackendError(f"OpenBao at {self._uri.address} failed ({response.status_code})")
        if response.status_code == 403:
            raise ConfigError(f"OpenBao refused the token for {path} (permission denied)")
        if response.status_code == 404:
            raise _NotFoundError(path)
        if any(marker in errors for marker in _AUTH_FAILED_MARKERS):
            _log.debug("transit_refused", path=path, error=errors)
            raise IntegrityError(_UNWRAP_FAILED)
        if "errors" not in doc:
            # Not OpenBao speaking (plain http to its TLS port, a proxy): the address.
            raise ConfigError(
                f"{self._uri.address} did not answer as OpenBao ({response.status_code}) "
                f"for {path}: check the address (https://, host and port)"
            )
        raise IntegrityError(f"OpenBao rejected {path}: {errors[:200]}")

    def close(self) -> None:
        """Close the connections."""
        self._http.close()


def _untrusted_certificate(exc: BaseException) -> bool:
    """Whether a connection failed because the server's certificate did not verify.

    httpx raises from httpcore, which holds the `ssl` error as its argument.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return any(
        isinstance(item, ssl.SSLCertVerificationError)
        or any(isinstance(arg, ssl.SSLCertVerificationError) for arg in item.args)
        for item in chain
    )


class _NotFoundError(ConfigError):
    """A transit path does not exist."""


def _ensure_key(client: _Client, uri: TransitUri, key_type: str, *, create: bool) -> None:
    try:
        client.call("GET", f"{uri.mount}/keys/{uri.name}")
    except _NotFoundError:
        if not create:
            raise ConfigError(f"no transit key {uri.key_id}") from None
    else:
        return
    mounts = client.call("GET", "sys/mounts")
    if f"{uri.mount}/" not in mounts.get("data", mounts):
        client.call("POST", f"sys/mounts/{uri.mount}", {"type": "transit"})
    body: dict[str, Any] = {"type": key_type}
    if key_type == "aes256-gcm96":
        body["derived"] = True
    client.call("POST", f"{uri.mount}/keys/{uri.name}", body)
    _log.info("transit_key_created", key=uri.key_id, type=key_type)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class TransitKek(VersionedKek):
    """A derived `aes256-gcm96` transit key: wrap, unwrap and rewrap inside OpenBao."""

    def __init__(self, uri: TransitUri, client: _Client) -> None:
        """Not for direct use: call `TransitKek.open`."""
        self._uri = uri
        self._client = client
        self._key_id = uri.key_id
        self._pid = provider_id(uri.key_id)
        self._versions: tuple[KekInfo, ...] = ()
        self._refresh()

    def __repr__(self) -> str:
        return f"TransitKek({self._key_id!r}, current_version={self.current_version})"

    @classmethod
    def open(cls, uri: str, *, create: bool = False) -> TransitKek:
        """Open the transit key; with `create`, make it (and the mount) when missing.

        Raises:
            ConfigError: no such key (without `create`), not a derived AES key, no token.
            BackendError: OpenBao unreachable.
        """
        parsed = TransitUri.parse(uri)
        client = _Client(parsed)
        try:
            _ensure_key(client, parsed, "aes256-gcm96", create=create)
            return cls(parsed, client)
        except BaseException:
            client.close()
            raise

    def _context(self, context: bytes) -> str:
        return _b64(self._pid + context)

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        """Transit encrypt under the newest version, derived from `context`."""
        data = self._client.call(
            "POST",
            f"{self._uri.mount}/encrypt/{self._uri.name}",
            {"plaintext": _b64(dek), "context": self._context(context)},
        )["data"]
        return self._blob(str(data["ciphertext"]))

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Transit decrypt.

        Raises:
            IntegrityError: tampered, wrong context, other key, or retired version.
            BackendError: OpenBao unavailable.
        """
        ciphertext = self._ciphertext(wrapped)
        self._check_not_retired(wrapped)
        data = self._client.call(
            "POST",
            f"{self._uri.mount}/decrypt/{self._uri.name}",
            {"ciphertext": ciphertext, "context": self._context(context)},
        )["data"]
        try:
            return base64.b64decode(data["plaintext"], validate=True)
        except (KeyError, ValueError):
            raise IntegrityError(_UNWRAP_FAILED) from None

    def rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Transit `rewrap`: the newest version, the plaintext never leaves OpenBao."""
        ciphertext = self._ciphertext(wrapped)
        self._check_not_retired(wrapped)
        data = self._client.call(
            "POST",
            f"{self._uri.mount}/rewrap/{self._uri.name}",
            {"ciphertext": ciphertext, "context": self._context(context)},
        )["data"]
        return self._blob(str(data["ciphertext"]))

    def rotate(self) -> int:
        """Transit rotate: a new version, made current."""
        self._client.call("POST", f"{self._uri.mount}/keys/{self._uri.name}/rotate")
        self._refresh()
        return self.current_version

    def retire(self, version: int) -> None:
        """Raise `min_decryption_version` past `version` (transit retires oldest first).

        Raises:
            InputError: current, unknown, or not the oldest unretired version.
        """
        self._refresh()
        self.check_retire(version)
        if version < self.min_decryption_version:
            return
        self._client.call(
            "POST",
            f"{self._uri.mount}/keys/{self._uri.name}/config",
            {"min_decryption_version": version + 1},
        )
        self._refresh()

    def check_retire(self, version: int) -> None:
        """Refuse what `retire` would: also any version but the oldest unretired one.

        Raises:
            InputError: current, unknown, or not the oldest unretired version.
        """
        self._check_retirable(version)
        if version > self.min_decryption_version:
            raise InputError(
                f"transit retires versions oldest first: retire {self.min_decryption_version}"
            )

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    # -- internals ----------------------------------------------------------------------

    def _blob(self, ciphertext: str) -> bytes:
        version = _transit_version(ciphertext)
        return external_header(version, self._key_id) + ciphertext.encode("ascii")

    def _ciphertext(self, wrapped: bytes) -> str:
        version, _, payload = parse_unverified_external(wrapped, self._key_id)
        try:
            ciphertext = payload.decode("ascii")
        except UnicodeDecodeError:
            raise IntegrityError(_UNWRAP_FAILED) from None
        if _transit_version(ciphertext) != version:
            raise IntegrityError(_UNWRAP_FAILED)
        return ciphertext

    def _check_not_retired(self, wrapped: bytes) -> None:
        """Name a retired version as such (transit's own refusal reads as tampering).

        Raises:
            IntegrityError: the blob's version is below `min_decryption_version`.
        """
        version = self.wrapped_version(wrapped)
        if version < self.min_decryption_version:
            self._refresh()  # perhaps un-retired outside the vault since we looked
            if version < self.min_decryption_version:
                raise IntegrityError(f"KEK version {version} is retired")

    def _refresh(self) -> None:
        data = self._client.call("GET", f"{self._uri.mount}/keys/{self._uri.name}")["data"]
        if data.get("type") != "aes256-gcm96" or not data.get("derived"):
            raise ConfigError(f"transit key {self._key_id} is not a derived aes256-gcm96 key")
        min_version = int(data.get("min_decryption_version") or 1)
        latest = int(data["latest_version"])
        # Transit lists only versions at or above min_decryption_version; older ones are
        # archived (retired): they are still versions of this key.
        times: dict[str, Any] = data.get("keys", {})
        self._versions = tuple(
            KekInfo(
                version=v,
                created=_created(times.get(str(v))),
                retired=v < min_version,
            )
            for v in range(1, latest + 1)
        )


def _created(value: Any) -> datetime | None:  # noqa: ANN401 -- transit JSON
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


def _transit_version(ciphertext: str) -> int:
    prefix, _, rest = ciphertext.partition(":")
    version, _, _ = rest.partition(":")
    if prefix != "vault" or not version.startswith("v") or not version[1:].isdigit():
        raise IntegrityError(_UNWRAP_FAILED)
    return int(version[1:])


def _single_version_public_key(client: _Client, uri: TransitUri) -> Ed25519PublicKey:
    data = client.call("GET", f"{uri.mount}/keys/{uri.name}")["data"]
    keys = data.get("keys", {})
    # The log's verifier key is fixed in vault.json: a rotated log key would sign
    # checkpoints nobody can verify, so only a single-version key is accepted.
    if data.get("type") != "ed25519" or list(keys) != ["1"]:
        raise ConfigError(f"transit key {uri.key_id} is not a one-version ed25519 key")
    return Ed25519PublicKey(base64.b64decode(keys["1"]["public_key"]))


class TransitSigner:
    """The log's Ed25519 key as a transit `ed25519` key: sign inside OpenBao."""

    def __init__(self, uri: TransitUri, client: _Client, public_key: Ed25519PublicKey) -> None:
        """Not for direct use: call `TransitSigner.open`."""
        self._uri = uri
        self._client = client
        self._public = public_key

    def __repr__(self) -> str:
        return f"TransitSigner({self._uri.key_id!r})"

    @classmethod
    def open(cls, uri: str, *, create: bool = False) -> TransitSigner:
        """Open the ed25519 transit key; with `create`, make it when missing.

        Raises:
            ConfigError: no such key (without `create`), or it is not ed25519 or rotated.
            BackendError: OpenBao unreachable.
        """
        parsed = TransitUri.parse(uri)
        client = _Client(parsed)
        try:
            _ensure_key(client, parsed, "ed25519", create=create)
            public = _single_version_public_key(client, parsed)
            return cls(parsed, client, public)
        except BaseException:
            client.close()
            raise

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The log's verifying key."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """Transit sign (version 1).

        Raises:
            BackendError: OpenBao unavailable.
        """
        data = self._client.call(
            "POST",
            f"{self._uri.mount}/sign/{self._uri.name}",
            {"input": _b64(message), "key_version": 1},
        )["data"]
        signature = str(data["signature"])
        if not signature.startswith("vault:v1:"):
            raise BackendError("OpenBao returned a signature of an unexpected key version")
        return base64.b64decode(signature.removeprefix("vault:v1:"))

    def close(self) -> None:
        """Close the connections."""
        self._client.close()
