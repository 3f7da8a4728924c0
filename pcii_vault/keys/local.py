"""The local sealed keyring: the embedded default KeyProvider.

One JSON file holds, sealed under a key derived from the unseal secret:
the KEK versions (each with its creation time and a retired flag), the access log's
Ed25519 signing seed, and the X25519 intake private key.

File format (format version 1)::

    {"format": "pcii-vault/keyring", "version": 1,
     "kdf": {"name": "scrypt", "n": ..., "r": ..., "p": ..., "salt": b64},
     "cipher": "AES-256-GCM", "nonce": b64, "ciphertext": b64}

The associated data of the AES-GCM seal is the canonical JSON of everything except
`nonce` and `ciphertext`, so the recorded KDF parameters and format cannot be altered.

Invariants:
- Empty means deny: a keyring without a KEK, or without a current (unretired) KEK,
  refuses to open.
- The current KEK version can never be retired; retired versions refuse to unwrap.
- Writes are atomic (temporary file 0600, fsync, rename or link, directory fsync);
  `create` never overwrites; a failed open, rotate or retire changes nothing.
- Concurrent rotations by two processes serialise on a lock file and re-read the
  keyring under the lock, so no KEK version is ever lost.

Errors (a decision, documented here): when the sealed contents fail authentication we
cannot tell a wrong unseal secret from a damaged ciphertext, and by far the likeliest
cause is a mistyped secret, so that raises `UnsealError` (an `InputError`, exit 2, "wrong
unseal secret or damaged keyring file"). A file that is structurally broken (not JSON,
missing or mistyped fields, bad base64) can only be damage or tampering: `IntegrityError`
(exit 4). An unknown format version means newer software wrote it: `ConfigError`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import getpass
import itertools
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import structlog

from pcii_vault.crypto.canonical import canonical_json
from pcii_vault.crypto.intake import generate_intake_keypair, intake_public_key, open_from_intake
from pcii_vault.crypto.keywrap import (
    KEK_BYTES,
    WRAPPED_KEY_FORMAT,
    parse_unverified_wrapped_kek_version,
    unwrap_key,
    wrap_key,
)
from pcii_vault.crypto.mac import Authenticator
from pcii_vault.crypto.seal import (
    DEFAULT_SCRYPT,
    SALT_BYTES,
    SEAL_NONCE_BYTES,
    ScryptParams,
    derive_sealing_key,
    open_sealed,
    random_bytes,
    seal,
)
from pcii_vault.crypto.signing import SEED_BYTES, Ed25519PrivateKey, Ed25519PublicKey, Signer
from pcii_vault.durable import read_regular, replace_file, write_new_file
from pcii_vault.errors import (
    ConfigError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
)
from pcii_vault.keys.base import KekInfo
from pcii_vault.text import printable

__all__ = [
    "KEYRING_FORMAT_VERSION",
    "MIN_SECRET_BYTES",
    "UNSEAL_SECRET_ENV",
    "KekInfo",
    "KekVersion",
    "LocalKeyring",
    "UnsealError",
    "unseal_secret_from_env_or_prompt",
]

_GCM_TAG_BYTES = 16  # every sealed body ends with its AES-GCM tag
_log = structlog.get_logger(__name__)

KEYRING_FORMAT: Final = "pcii-vault/keyring"
KEYRING_FORMAT_VERSION: Final = 1
UNSEAL_SECRET_ENV: Final = "PCII_UNSEAL_SECRET"  # noqa: S105 -- a variable name, not a secret
MIN_SECRET_BYTES: Final = 8
_CIPHER: Final = "AES-256-GCM"
_KDF: Final = "scrypt"
_FILE_MODE: Final = 0o600
# What a keyring file may ask of scrypt. `init` writes N=2^17, r=8, p=1 (128 MiB, about
# 0.5 s); twice that memory and four passes is the most a file may ask, so a keyring
# rewritten with huge costs cannot make every unseal take minutes and gigabytes.
MAX_SCRYPT_MEMORY: Final = 256 << 20  # 128 * r * n bytes
MAX_SCRYPT_P: Final = 4
# A keyring holds a few hundred bytes per KEK version: 16 MiB is tens of thousands of
# rotations. A larger file was not written by the vault and is refused unread.
MAX_KEYRING_BYTES: Final = 16 << 20
_T = TypeVar("_T")


class UnsealError(InputError):
    """The keyring did not unseal: wrong secret, or a damaged sealed section (exit 2)."""


@dataclass(frozen=True, slots=True)
class KekVersion:
    """One key-encryption key version (the key itself stays inside the keyring)."""

    version: int
    created: datetime
    retired: bool
    key: bytes

    def __repr__(self) -> str:
        return f"KekVersion(version={self.version}, retired={self.retired}, key=<redacted>)"


@dataclass(frozen=True, slots=True)
class _Contents:
    """The secret contents of a keyring, as unsealed."""

    keks: tuple[KekVersion, ...]
    log_signing_seed: bytes
    intake_private_key: bytes

    def __repr__(self) -> str:
        return f"_Contents(versions={[k.version for k in self.keks]}, <redacted>)"


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The cleartext KDF settings of a keyring file (fixed for the life of the file)."""

    params: ScryptParams
    salt: bytes


def unseal_secret_from_env_or_prompt(
    *,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
    confirm: bool = False,
) -> bytes:
    """Return the unseal secret from `PCII_UNSEAL_SECRET`, or ask for it without echo.

    Args:
        environ: the environment to read (default: `os.environ`).
        prompt: how to ask interactively (default: `getpass.getpass`).
        confirm: ask twice and require both answers to match (for creating a keyring).

    Returns:
        The secret as UTF-8 bytes.

    Raises:
        InputError: the secret is empty, or the two answers differ.
    """
    env = os.environ if environ is None else environ
    from_env = env.get(UNSEAL_SECRET_ENV)
    if from_env:
        return from_env.encode("utf-8")
    secret = prompt("Unseal secret: ")
    if not secret:
        raise InputError(f"empty unseal secret (set {UNSEAL_SECRET_ENV} or type it)")
    if confirm and prompt("Repeat unseal secret: ") != secret:
        raise InputError("the two unseal secrets differ")
    return secret.encode("utf-8")


def _now_utc() -> datetime:
    return datetime.now(UTC)


class LocalKeyring:
    """KEK versions, the log signing key and the intake key, sealed in one local file.

    Implements the `KekProvider` protocol, and hands out the log's signer and the intake
    opener (never their private keys). Obtain one with `create` or `open`.
    """

    __slots__ = ("_clock", "_contents", "_envelope", "_path", "_sealing_key", "_stamp")

    def __init__(
        self,
        path: Path,
        envelope: _Envelope,
        sealing_key: bytes,
        contents: _Contents,
        clock: Callable[[], datetime],
    ) -> None:
        """Not for direct use: call `LocalKeyring.create` or `LocalKeyring.open`."""
        _check_contents(contents)
        self._path = path
        self._envelope = envelope
        self._sealing_key = sealing_key
        self._contents = contents
        self._clock = clock
        self._stamp = _file_stamp(path)

    def __repr__(self) -> str:
        return f"LocalKeyring({str(self._path)!r}, current_version={self.current_version})"

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        secret: bytes,
        *,
        kdf_params: ScryptParams = DEFAULT_SCRYPT,
        clock: Callable[[], datetime] = _now_utc,
    ) -> LocalKeyring:
        """Create a new keyring file with KEK version 1, a log key and an intake key.

        Args:
            path: where the sealed file goes; must not exist.
            secret: the unseal secret (at least `MIN_SECRET_BYTES` bytes).
            kdf_params: scrypt costs, recorded in the file (tests pass cheap ones).
            clock: returns the current UTC time (recorded as KEK creation time).

        Returns:
            The open keyring.

        Raises:
            InputError: the secret is too short, or `path` already exists.
        """
        if len(secret) < MIN_SECRET_BYTES:
            raise InputError(f"unseal secret must be at least {MIN_SECRET_BYTES} bytes")
        if path.exists():
            raise InputError(f"keyring {path} already exists; refusing to overwrite it")
        envelope = _Envelope(params=kdf_params, salt=random_bytes(SALT_BYTES))
        sealing_key = derive_sealing_key(secret, envelope.salt, envelope.params)
        intake_private, _ = generate_intake_keypair()
        contents = _Contents(
            keks=(
                KekVersion(version=1, created=clock(), retired=False, key=random_bytes(KEK_BYTES)),
            ),
            log_signing_seed=Ed25519PrivateKey.generate().seed,
            intake_private_key=intake_private,
        )
        data = _serialise(envelope, sealing_key, contents)
        _write_new(path, data)
        _log.info("keyring_created", path=str(path), kek_version=1)
        return cls(path, envelope, sealing_key, contents, clock)

    @classmethod
    def open(
        cls, path: Path, secret: bytes, *, clock: Callable[[], datetime] = _now_utc
    ) -> LocalKeyring:
        """Unseal an existing keyring file.

        Args:
            path: the sealed keyring file.
            secret: the unseal secret.
            clock: returns the current UTC time (for KEK versions created by `rotate`).

        Returns:
            The open keyring.

        Raises:
            NotFoundError: there is no file at `path`.
            UnsealError: wrong secret, or the sealed section is damaged.
            IntegrityError: the file is structurally damaged or holds no usable KEK.
            ConfigError: the file has a format version this software does not know.
        """
        raw = _read(path)
        envelope = _parse_unverified_envelope(raw, path)
        sealing_key = derive_sealing_key(secret, envelope.salt, envelope.params)
        contents = _unseal(raw, envelope, sealing_key, path)
        return cls(path, envelope, sealing_key, contents, clock)

    # -- KekProvider ---------------------------------------------------------------

    @property
    def key_id(self) -> str:
        """The local keyring's name in wrapped blobs (format 1 is always local)."""
        return "local"

    @property
    def path(self) -> Path:
        """The sealed file."""
        return self._path

    @property
    def current_version(self) -> int:
        """The KEK version new wraps use (the newest one)."""
        return self._contents.keks[-1].version

    @property
    def min_decryption_version(self) -> int:
        """The oldest KEK version that is not retired."""
        return min(k.version for k in self._contents.keks if not k.retired)

    @property
    def versions(self) -> tuple[KekInfo, ...]:
        """Every KEK version, oldest first, without key material (for listings)."""
        return tuple(KekInfo(k.version, k.created, k.retired) for k in self._contents.keks)

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        """Wrap `dek` under the current KEK, binding `context`.

        Returns:
            A versioned wrapped-key blob (see `pcii_vault.crypto.keywrap`).
        """
        current = self._contents.keks[-1]
        return wrap_key(current.key, current.version, dek, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Return the DEK inside `wrapped`.

        Raises:
            IntegrityError: tampered blob, wrong context, unknown or retired KEK version.
        """
        return unwrap_key(self._kek_for_unwrap, wrapped, context)

    def rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Re-wrap `wrapped` under the current KEK (the DEK stays in this process).

        Raises:
            IntegrityError: as `unwrap`.
        """
        return self.wrap(self.unwrap(wrapped, context), context)

    def owns(self, wrapped: bytes) -> bool:
        """Whether `wrapped` is a local-keyring blob (format 1; unauthenticated)."""
        return len(wrapped) > 0 and wrapped[0] == WRAPPED_KEY_FORMAT

    def wrapped_version(self, wrapped: bytes) -> int:
        """The KEK version a local blob names (unauthenticated).

        Raises:
            IntegrityError: not a local-keyring blob.
        """
        return parse_unverified_wrapped_kek_version(wrapped)

    def close(self) -> None:
        """Nothing to release: the keyring holds no session."""

    def rotate(self) -> int:
        """Add a new KEK version, make it current, persist atomically, return its number.

        Raises:
            ConflictError: the keyring file was replaced by a different keyring meanwhile.
        """
        with self._locked_reload():
            contents = self._contents
            new = KekVersion(
                version=contents.keks[-1].version + 1,
                created=self._clock(),
                retired=False,
                key=random_bytes(KEK_BYTES),
            )
            self._persist(replace(contents, keks=(*contents.keks, new)))
        _log.info("keyring_rotated", kek_version=new.version)
        return new.version

    def check_retire(self, version: int) -> None:
        """Refuse, changing nothing, what `retire` would refuse.

        Raises:
            InputError: `version` is the current version, or does not exist.
        """
        keks = self._contents.keks
        if version == keks[-1].version:
            raise InputError(f"KEK version {version} is current; rotate before retiring it")
        if all(k.version != version for k in keks):
            raise InputError(f"no KEK version {version} in this keyring")

    def retire(self, version: int) -> None:
        """Mark a KEK version retired: it no longer unwraps. Idempotent.

        Raises:
            InputError: `version` is the current version, or does not exist.
            ConflictError: the keyring file was replaced by a different keyring meanwhile.
        """
        with self._locked_reload():
            contents = self._contents
            self.check_retire(version)
            keks = tuple(
                replace(k, retired=True) if k.version == version else k for k in contents.keks
            )
            self._persist(replace(contents, keks=keks))
        _log.info("keyring_kek_retired", kek_version=version)

    # -- other keys ----------------------------------------------------------------

    def log_signer(self) -> Signer:
        """The access log's signer; its private key stays inside the returned object."""
        return _SealedSigner(Ed25519PrivateKey(self._contents.log_signing_seed))

    def index_authenticator(self) -> Authenticator:
        """An authenticator for the vault's index, keyed from this keyring's secrets.

        The key is derived for this one purpose (HKDF) and stays inside the object.
        """
        return Authenticator(self._contents.intake_private_key, b"pcii-vault/index-mac/v1")

    def upload_authenticator(self) -> Authenticator:
        """An authenticator for upload tickets (`Vault.upload_ticket`).

        Keyed from this keyring's secrets: the same in every replica that unseals a copy.
        """
        return Authenticator(self._contents.intake_private_key, b"pcii-vault/upload-ticket/v1")

    def config_authenticator(self) -> Authenticator:
        """An authenticator for the vault's `vault.json`, keyed from this keyring's secrets."""
        return Authenticator(self._contents.intake_private_key, b"pcii-vault/config-mac/v1")

    @property
    def intake_public_key(self) -> bytes:
        """The raw X25519 public key owners seal their data keys to."""
        return intake_public_key(self._contents.intake_private_key)

    def open_intake(self, sealed: bytes) -> bytes:
        """Open a sealed box made with `seal_to_intake(self.intake_public_key, ...)`.

        Raises:
            IntegrityError: tampered, truncated, or sealed to another key.
        """
        return open_from_intake(self._contents.intake_private_key, sealed)

    # -- internals -----------------------------------------------------------------

    def _kek_for_unwrap(self, version: int) -> bytes:
        for kek in self._contents.keks:
            if kek.version == version:
                if kek.retired:
                    _log.debug("unwrap_refused", reason="retired", kek_version=version)
                    raise IntegrityError(f"KEK version {version} is retired")
                return kek.key
        _log.debug("unwrap_refused", reason="unknown", kek_version=version)
        raise IntegrityError(f"KEK version {version} is not in this keyring")

    def reload_if_changed(self) -> None:
        """Read the sealed file again if it changed since this handle read or wrote it.

        Another process rotated it, or an older copy was put back: what the file holds is
        what outlives this process, so a long-lived holder (a server) wraps only under
        versions the file still has. No key derivation: the sealing key is in memory.

        Raises:
            ConflictError: the file is another keyring now (sealed afresh).
            IntegrityError: the file is damaged.
        """
        if _file_stamp(self._path) != self._stamp:
            with self._locked_reload():
                pass

    @contextlib.contextmanager
    def _locked_reload(self) -> Iterator[None]:
        """Hold the keyring's lock file and refresh the contents from disk."""
        lock_path = self._path.with_name(self._path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        except IsADirectoryError:
            raise IntegrityError(
                f"{lock_path} is a directory, not the keyring's lock file"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = _read(self._path)
            envelope = _parse_unverified_envelope(raw, self._path)
            if envelope != self._envelope:
                raise ConflictError(f"keyring {self._path} was replaced; open it again")
            self._contents = _unseal(raw, envelope, self._sealing_key, self._path)
            self._stamp = _file_stamp(self._path)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _persist(self, contents: _Contents) -> None:
        _check_contents(contents)
        data = _serialise(self._envelope, self._sealing_key, contents)
        _write_replace(self._path, data)
        self._contents = contents
        self._stamp = _file_stamp(self._path)


def _file_stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when the file is replaced or rewritten (None: it is gone)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class _SealedSigner:
    """Signs with the keyring's log key without exposing it (no seed, no key attribute)."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "LogSigner(local sealed keyring)"

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The log's verifying key."""
        return self._key.public_key

    def sign(self, message: bytes) -> bytes:
        """Sign `message` with the log key."""
        return self._key.sign(message)


# -- the file format -------------------------------------------------------------------


def _header(envelope: _Envelope) -> dict[str, Any]:
    return {
        "format": KEYRING_FORMAT,
        "version": KEYRING_FORMAT_VERSION,
        "kdf": {
            "name": _KDF,
            "n": envelope.params.n,
            "r": envelope.params.r,
            "p": envelope.params.p,
            "salt": _b64(envelope.salt),
        },
        "cipher": _CIPHER,
    }


def _serialise(envelope: _Envelope, sealing_key: bytes, contents: _Contents) -> bytes:
    header = _header(envelope)
    secret_doc = {
        "keks": [
            {
                "version": k.version,
                "created": k.created.astimezone(UTC).isoformat(),
                "retired": k.retired,
                "key": _b64(k.key),
            }
            for k in contents.keks
        ],
        "log_signing_seed": _b64(contents.log_signing_seed),
        "intake_private_key": _b64(contents.intake_private_key),
    }
    nonce, ciphertext = seal(sealing_key, canonical_json(secret_doc), canonical_json(header))
    document = {**header, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
    return json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def _parse_unverified_envelope(raw: bytes, path: Path) -> _Envelope:
    """Read the cleartext part of the file; nothing here is trusted until unsealing."""
    doc = _load_json(raw, path)
    if doc.get("format") != KEYRING_FORMAT:
        raise IntegrityError(f"{path} is not a pcii-vault keyring file")
    version = doc.get("version")
    if version != KEYRING_FORMAT_VERSION:
        raise ConfigError(f"keyring {path} has unknown format version {version!r}")
    try:
        kdf = _typed(doc, "kdf", dict)
        _refuse_unknown_fields(doc, kdf, path)
        if _typed(kdf, "name", str) != _KDF or _typed(doc, "cipher", str) != _CIPHER:
            raise IntegrityError(f"keyring {path} names an unsupported KDF or cipher")
        params = ScryptParams(
            n=_typed(kdf, "n", int), r=_typed(kdf, "r", int), p=_typed(kdf, "p", int)
        )
        params.check_untrusted()
        salt = _unb64(_typed(kdf, "salt", str))
    except (KeyError, TypeError, ValueError) as exc:
        _log.debug("keyring_rejected", reason="envelope", error=str(exc))
        raise IntegrityError(f"keyring {path} is damaged (bad header)") from None
    if len(salt) < SALT_BYTES:
        raise IntegrityError(f"keyring {path} is damaged (bad header)")
    _check_kdf_cost(params, path)
    return _Envelope(params=params, salt=salt)


_FILE_FIELDS = frozenset({"format", "version", "kdf", "cipher", "nonce", "ciphertext"})
_KDF_FIELDS = frozenset({"name", "n", "r", "p", "salt"})


def _refuse_unknown_fields(doc: dict[str, Any], kdf: dict[str, Any], path: Path) -> None:
    """Refuse a field the vault never writes: the seal covers only the fields it knows.

    Raises:
        IntegrityError: the file or its `kdf` carries another field.
    """
    extra = sorted(set(doc) - _FILE_FIELDS) + [f"kdf.{k}" for k in sorted(set(kdf) - _KDF_FIELDS)]
    if extra:
        raise IntegrityError(
            f"keyring {path} is damaged: it carries fields the vault never writes "
            f"({', '.join(printable(str(name))[:40] for name in extra[:3])})"
        )


def _check_kdf_cost(params: ScryptParams, path: Path) -> None:
    """Refuse scrypt costs no keyring of ours asks for (before deriving anything).

    Raises:
        IntegrityError: more than `MAX_SCRYPT_MEMORY` bytes or `MAX_SCRYPT_P` passes.
    """
    if 128 * params.r * params.n > MAX_SCRYPT_MEMORY or params.p > MAX_SCRYPT_P:
        raise IntegrityError(
            f"keyring {path} asks for scrypt n={params.n} r={params.r} p={params.p}, beyond "
            f"the accepted {MAX_SCRYPT_MEMORY >> 20} MiB and p <= {MAX_SCRYPT_P}: refused "
            "without deriving a key"
        )


def _unseal(raw: bytes, envelope: _Envelope, sealing_key: bytes, path: Path) -> _Contents:
    doc = _load_json(raw, path)
    try:
        nonce = _unb64(_typed(doc, "nonce", str))
        ciphertext = _unb64(_typed(doc, "ciphertext", str))
    except (KeyError, TypeError, ValueError) as exc:
        _log.debug("keyring_rejected", reason="body", error=str(exc))
        raise IntegrityError(f"keyring {path} is damaged (bad body)") from None
    if len(nonce) != SEAL_NONCE_BYTES or len(ciphertext) < _GCM_TAG_BYTES:
        # Checkable without the secret: damage, not a wrong secret.
        raise IntegrityError(f"keyring {path} is damaged (bad body)")
    try:
        plaintext = open_sealed(sealing_key, nonce, ciphertext, canonical_json(_header(envelope)))
    except IntegrityError:
        raise UnsealError(f"wrong unseal secret or damaged keyring file {path}") from None
    try:
        secret_doc = json.loads(plaintext)
        keks = tuple(
            KekVersion(
                version=_typed(k, "version", int),
                created=datetime.fromisoformat(_typed(k, "created", str)),
                retired=_typed(k, "retired", bool),
                key=_unb64(_typed(k, "key", str)),
            )
            for k in _typed(secret_doc, "keks", list)
        )
        contents = _Contents(
            keks=keks,
            log_signing_seed=_unb64(_typed(secret_doc, "log_signing_seed", str)),
            intake_private_key=_unb64(_typed(secret_doc, "intake_private_key", str)),
        )
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        # Authenticated yet malformed: written by a buggy or hostile holder of the key.
        _log.debug("keyring_rejected", reason="contents", error=str(exc))
        raise IntegrityError(f"keyring {path} has malformed sealed contents") from None
    _check_contents(contents)
    return contents


def _check_contents(contents: _Contents) -> None:
    """Empty means deny: refuse a keyring without a usable current KEK."""
    if not contents.keks:
        raise IntegrityError("keyring holds no key-encryption key")
    versions = [k.version for k in contents.keks]
    if versions[0] < 1 or any(b <= a for a, b in itertools.pairwise(versions)):
        raise IntegrityError("keyring KEK versions are not strictly increasing from 1")
    if contents.keks[-1].retired:
        raise IntegrityError("keyring's current KEK version is retired")
    if any(len(k.key) != KEK_BYTES for k in contents.keks):
        raise IntegrityError("keyring holds a KEK of the wrong length")
    if len(contents.log_signing_seed) != SEED_BYTES or len(contents.intake_private_key) != 32:
        raise IntegrityError("keyring holds a signing or intake key of the wrong length")


def _load_json(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # RecursionError: arrays or objects nested deeper than the parser goes.
        raise IntegrityError(f"keyring {path} is damaged (not JSON)") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"keyring {path} is damaged (not a JSON object)")
    return doc


def _typed(doc: Any, key: str, kind: type[_T]) -> _T:  # noqa: ANN401 -- untrusted JSON
    if not isinstance(doc, dict):
        raise TypeError("expected a JSON object")
    value = doc[key]
    # bool is an int in Python: never accept true/false where a number is expected.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{key} must be {kind.__name__}")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("bad base64") from exc


# -- atomic file I/O -------------------------------------------------------------------


def _read(path: Path) -> bytes:
    """The keyring file's bytes: a regular file of at most `MAX_KEYRING_BYTES`.

    Raises:
        NotFoundError: no file there.
        IntegrityError: a directory, not a regular file (a FIFO or device), or too large.
    """
    try:
        raw = read_regular(path, MAX_KEYRING_BYTES)
    except FileNotFoundError:
        raise NotFoundError(f"no keyring at {path}") from None
    except IsADirectoryError:
        raise IntegrityError(
            f"keyring {path} is a directory, not the sealed keyring the vault wrote"
        ) from None
    if len(raw) > MAX_KEYRING_BYTES:
        raise IntegrityError(f"keyring {path} is damaged (larger than any keyring)")
    return raw


def _write_new(path: Path, data: bytes) -> None:
    """Write `path` atomically; fail if it exists."""
    try:
        write_new_file(path, data, mode=_FILE_MODE)
    except FileExistsError:
        raise InputError(f"keyring {path} already exists; refusing to overwrite it") from None


def _write_replace(path: Path, data: bytes) -> None:
    replace_file(path, data, mode=_FILE_MODE)
