"""Open a key provider from its URI: `local`, `pkcs11:`, `openbao:` or `awskms:`.

Each external provider lives in its own module and imports its client library only
when used, so the local keyring works without python-pkcs11 or httpx installed.

Where the log's Ed25519 key can live inside the provider (PKCS#11 `CKM_EDDSA`, OpenBao
transit `ed25519`), `init` puts it there; AWS KMS has no Ed25519 signing keys, so there
it stays in the sealed local keyring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pcii_vault.crypto.signing import Signer
from pcii_vault.errors import ConfigError, InputError
from pcii_vault.keys.base import KekProvider
from pcii_vault.keys.local import LocalKeyring

__all__ = [
    "LOCAL",
    "log_signer_uri_for",
    "open_kek_provider",
    "open_log_signer",
    "public_uri",
]

LOCAL = "local"
_SCHEMES = ("pkcs11:", "openbao:", "awskms:")
# The extra that brings each provider's client library (`pip install 'pcii-vault[EXTRA]'`).
_EXTRAS = {"pkcs11": "pkcs11", "openbao": "openbao", "awskms": "kms"}


@contextlib.contextmanager
def _client_library(scheme: str) -> Iterator[None]:
    """Turn a missing client library into a `ConfigError` with the install line.

    The providers are optional extras, so their module is imported only when a URI names
    it; without this, a vault set up without the extra failed with "unexpected error:
    ModuleNotFoundError" (exit 1) instead of saying what to install (exit 2), as
    `audit report --pdf` does. A missing module of pcii_vault itself is a broken install,
    not a missing extra, and is left alone.

    Raises:
        ConfigError: the provider's client library is not installed.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "pcii_vault":
            raise
        extra = _EXTRAS[scheme]
        raise ConfigError(
            f"{scheme}: keys need the Python module {exc.name!r}, which is not installed: "
            f".venv/bin/pip install -e '.[{extra}]' in the checkout "
            f"(or pip install 'pcii-vault[{extra}]')"
        ) from exc


def _check(uri: str) -> None:
    if uri != LOCAL and not uri.startswith(_SCHEMES):
        raise InputError(
            f"unknown key provider {uri!r}: use local, pkcs11:..., openbao:https://... "
            "or awskms:KEY"
        )


def public_uri(uri: str) -> str:
    """The URI with any secret (a PKCS#11 `pin-value`) removed, fit for vault.json.

    Raises:
        InputError: not a provider URI this version knows.
        ConfigError: the provider's client library is not installed.
    """
    _check(uri)
    if uri.startswith("pkcs11:"):
        with _client_library("pkcs11"):
            from pcii_vault.keys.pkcs11 import Pkcs11Uri  # noqa: PLC0415 -- optional extra
        return Pkcs11Uri.parse(uri).public()
    return uri


def open_kek_provider(uri: str, local: LocalKeyring, *, create: bool = False) -> KekProvider:
    """Open the KEK provider `uri` names, creating its key when `create` and missing.

    Raises:
        InputError: an unknown or malformed URI.
        ConfigError: the key does not exist (and `create` is false), or the client
            library for this provider is not installed.
        BackendError: the provider cannot be reached.
    """
    _check(uri)
    if uri == LOCAL:
        return local
    if uri.startswith("pkcs11:"):
        with _client_library("pkcs11"):
            from pcii_vault.keys.pkcs11 import Pkcs11Kek  # noqa: PLC0415 -- optional extra
        return Pkcs11Kek.open(uri, create=create)
    if uri.startswith("openbao:"):
        with _client_library("openbao"):
            from pcii_vault.keys.transit import TransitKek  # noqa: PLC0415 -- optional extra
        return TransitKek.open(uri, create=create)
    with _client_library("awskms"):
        from pcii_vault.keys.awskms import KmsKek  # noqa: PLC0415 -- optional extra
    return KmsKek.open(uri, create=create)


def log_signer_uri_for(kek_uri: str) -> str:
    """Where `init` puts the log key for a vault whose KEKs are at `kek_uri`.

    Raises:
        ConfigError: the provider's client library is not installed.
    """
    if kek_uri.startswith("pkcs11:"):
        with _client_library("pkcs11"):
            from pcii_vault.keys.pkcs11 import Pkcs11Uri  # noqa: PLC0415 -- optional extra
        return Pkcs11Uri.parse(kek_uri).log_key_uri()
    if kek_uri.startswith("openbao:"):
        with _client_library("openbao"):
            from pcii_vault.keys.transit import log_key_uri  # noqa: PLC0415 -- optional extra
        return log_key_uri(kek_uri)
    return LOCAL


def open_log_signer(uri: str, local: LocalKeyring, *, create: bool = False) -> Signer:
    """Open the log's signer at `uri` (`local` or a provider's Ed25519 key).

    Raises:
        ConfigError: the key does not exist (and `create` is false), or the client
            library for this provider is not installed.
        BackendError: the provider cannot be reached.
    """
    if uri == LOCAL:
        return local.log_signer()
    if uri.startswith("pkcs11:"):
        with _client_library("pkcs11"):
            from pcii_vault.keys.pkcs11 import Pkcs11Signer  # noqa: PLC0415 -- optional extra
        return Pkcs11Signer.open(uri, create=create)
    if uri.startswith("openbao:"):
        with _client_library("openbao"):
            from pcii_vault.keys.transit import TransitSigner  # noqa: PLC0415 -- optional extra
        return TransitSigner.open(uri, create=create)
    raise ConfigError(f"no Ed25519 log key can live at {uri!r}")
