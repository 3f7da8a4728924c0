"""The HTTPS server's certificate: a self-signed pair made once, or the operator's own.

The self-signed certificate is ECDSA P-256 (every TLS client and OpenSSL build accepts it
for TLS 1.3, unlike Ed25519 certificates), valid 825 days, names each served host plus
`localhost` and `127.0.0.1`, and is its own CA (basicConstraints CA:true, keyCertSign, key
identifiers: what OpenSSL's strict X.509 checks, Python 3.13's default, ask of a trust
anchor), so a client pins it by trusting exactly that file (`--ca server-cert.pem`).

Invariants: an existing pair is never overwritten; the key file is written with mode 0600
and appears whole or not at all (temporary file, then its name); a key that does not
belong to its certificate, or half a pair, is refused with both files named.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pcii_vault.durable import read_named_file, write_new_file
from pcii_vault.errors import ConfigError

__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "VALIDITY",
    "ServerCertificate",
    "client_context",
    "ensure_self_signed",
    "fingerprint",
    "load_certificate",
    "valid_host_name",
]

CERT_FILE = "server-cert.pem"
KEY_FILE = "server-key.pem"
VALIDITY = timedelta(days=825)
_BACKDATE = timedelta(minutes=5)  # a client whose clock is a little behind still accepts it
_ALWAYS = ("localhost", "127.0.0.1")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")

_Name = x509.DNSName | x509.IPAddress


@dataclass(frozen=True)
class ServerCertificate:
    """A certificate and key file pair the server presents."""

    cert_path: Path
    key_path: Path
    fingerprint_sha256: str  # uppercase, colon-separated hex: "AB:CD:..."
    created: bool  # True when this call made the pair


# A certificate chain, a CA bundle or a key in PEM: far below this.
_MAX_PEM_BYTES = 4 << 20


def _read(path: Path, what: str) -> bytes:
    """A PEM file's bytes, never more than `_MAX_PEM_BYTES` (`--ca /dev/zero` is refused)."""
    return read_named_file(
        path,
        _MAX_PEM_BYTES,
        what,
        error=ConfigError,
        too_large=f"{_MAX_PEM_BYTES >> 20} MiB: not a PEM file",
    )


def _load_cert(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file (the server's own; a chain may follow)."""
    data = _read(path, "certificate file")
    try:
        return x509.load_pem_x509_certificates(data)[0]
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM certificate") from exc


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_key_spki(path: Path) -> bytes:
    """The public half of a PEM private key file, as SubjectPublicKeyInfo."""
    data = _read(path, "key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise ConfigError(f"key file {path} is encrypted: give an unencrypted key") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path} is not a PEM private key") from exc
    return _spki(key.public_key())


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def fingerprint(cert_path: Path) -> str:
    """Return the SHA-256 fingerprint of the certificate's DER, as `AB:CD:...` (32 bytes).

    Raises:
        ConfigError: the file is missing, unreadable or not a PEM certificate.
    """
    return _fingerprint(_load_cert(cert_path))


def load_certificate(cert: Path, key: Path) -> ServerCertificate:
    """Check an operator's certificate and key files: both there, both PEM, one pair.

    Raises:
        ConfigError: a file is missing or unreadable, not PEM, the key is encrypted, or
            the key does not belong to the certificate.
    """
    certificate = _load_pair(cert, key)
    _refuse_what_tls_refuses(cert, key)
    return ServerCertificate(cert, key, _fingerprint(certificate), created=False)


def _refuse_what_tls_refuses(cert: Path, key: Path) -> None:
    """Load the pair as the server will, before anything is announced.

    OpenSSL refuses some pairs that parse (an RSA key under 2048 bits, a certificate
    signed with SHA-1): the server would print its address and then fail to start.

    Raises:
        ConfigError: the TLS library refuses the pair.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise ConfigError(
            f"certificate {cert} and key {key} are refused by TLS ({reason}): give a pair "
            "the TLS library accepts (an RSA key of at least 2048 bits, or an EC key)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"certificate {cert} and key {key} cannot be loaded: {exc}") from None


def _load_pair(cert: Path, key: Path, *, renew: str = "") -> x509.Certificate:
    """The certificate of a matching pair, valid now (`renew`: how to get a new one).

    Raises:
        ConfigError: no pair, or the certificate has expired or is not valid yet (every
            client would refuse it).
    """
    certificate = _load_cert(cert)
    try:
        # Parsed lazily: a damaged certificate fails only here (a flipped byte).
        public = _spki(certificate.public_key())
        certificate.not_valid_after_utc  # noqa: B018 -- parsed here, or refused
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{cert} is not a valid certificate ({exc})") from None
    if _load_key_spki(key) != public:
        raise ConfigError(f"key file {key} does not belong to certificate {cert}")
    now = datetime.now(UTC)
    renew = renew or "give `pcii serve` a current one (--tls-cert, --tls-key)"
    if certificate.not_valid_after_utc < now:
        raise ConfigError(
            f"certificate {cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}, and "
            f"every client would refuse it: {renew}"
        )
    if certificate.not_valid_before_utc > now:
        start = f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        raise ConfigError(
            f"certificate {cert} is valid only from {start} (check this machine's clock): {renew}"
        )
    return certificate


def valid_host_name(name: str) -> bool:
    """Whether `name` can be a certificate's DNS name as it is (lower case, xn-- form)."""
    return _HOST_NAME.fullmatch(name) is not None


def _name(host: str) -> _Name:
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        raise ConfigError("a host name must not be empty")
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.lower().rstrip(".")
    if not _HOST_NAME.fullmatch(name):
        raise ConfigError(f"{host!r} is not a host name (xn-- form) or IP address")
    return x509.DNSName(name)


def _names(hosts: Sequence[str]) -> list[_Name]:
    """Each host as a SAN entry, then localhost and 127.0.0.1; no duplicates.

    A wildcard bind address (0.0.0.0, ::) is skipped: no client connects to it.
    """
    names: list[_Name] = []
    for host in (*hosts, *_ALWAYS):
        name = _name(host)
        if isinstance(name, x509.IPAddress) and name.value.is_unspecified:
            continue
        if name not in names:
            names.append(name)
    return names


def _new_pair(names: list[_Name]) -> tuple[bytes, bytes]:
    """A fresh P-256 key and its self-signed certificate for `names`, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pcii-vault server")])
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    start = datetime.now(UTC) - _BACKDATE
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _check_names(certificate: x509.Certificate, cert: Path, key: Path, names: list[_Name]) -> None:
    try:
        present = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        present = None
    for name in names:
        if present is None or name not in present.value:
            raise ConfigError(
                f"{cert} does not name {name.value}: remove it and {key}"
                " to make a new pair (clients pin the new one), or give your own"
            )


_MEANWHILE_WAIT_S = 10.0  # for another process's certificate after its key appeared


def _made_meanwhile(cert_path: Path, key_path: Path, names: list[_Name]) -> ServerCertificate:
    """The pair another process made while this one was making its own (its key first).

    Raises:
        ConfigError: its certificate never appeared (that process failed), or the pair
            does not match or does not name every host.
    """
    deadline = time.monotonic() + _MEANWHILE_WAIT_S
    while not cert_path.exists():
        if time.monotonic() > deadline or not key_path.exists():
            raise ConfigError(
                f"{key_path} appeared while it was being made, and no certificate came "
                "with it: try again"
            )
        time.sleep(0.05)
    certificate = _load_pair(cert_path, key_path)
    _check_names(certificate, cert_path, key_path, names)
    return ServerCertificate(cert_path, key_path, _fingerprint(certificate), created=False)


def ensure_self_signed(directory: Path, hosts: Sequence[str]) -> ServerCertificate:
    """Return the pair in `directory`, making a self-signed one the first time.

    The pair is `server-cert.pem` and `server-key.pem` (mode 0600). An existing pair is
    kept, and must name every host in `hosts`.

    Raises:
        ConfigError: only one of the two files exists, they do not match, the existing
            certificate does not name a host, a host is invalid, or the files cannot be
            written.
    """
    names = _names(hosts)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    cert_there, key_there = cert_path.exists(), key_path.exists()
    if cert_there and key_there:
        renew = f"remove {cert_path} and {key_path} to make a new pair, and hand it out again"
        certificate = _load_pair(cert_path, key_path, renew=renew)
        _check_names(certificate, cert_path, key_path, names)
        return ServerCertificate(cert_path, key_path, _fingerprint(certificate), created=False)
    if cert_there or key_there:
        present, missing = (cert_path, key_path) if cert_there else (key_path, cert_path)
        raise ConfigError(
            f"{present} exists but {missing} does not: restore it, or remove {present}"
            " to make a new pair"
        )
    cert_pem, key_pem = _new_pair(names)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_new_file(key_path, key_pem, mode=0o600)
    except FileExistsError:
        # Another server of this vault making its pair at the same moment: use that one.
        return _made_meanwhile(cert_path, key_path, names)
    except OSError as exc:
        raise ConfigError(f"cannot write {key_path}: {exc.strerror}") from exc
    try:
        write_new_file(cert_path, cert_pem, mode=0o644)
    except OSError as exc:
        key_path.unlink(missing_ok=True)  # ours, made just now: no half pair is left
        if isinstance(exc, FileExistsError):
            raise ConfigError(f"{cert_path} appeared while it was being made: try again") from exc
        raise ConfigError(f"cannot write {cert_path}: {exc.strerror}") from exc
    return ServerCertificate(
        cert_path, key_path, _fingerprint(x509.load_pem_x509_certificate(cert_pem)), created=True
    )


def client_context(ca: Path) -> ssl.SSLContext:
    """A TLS client context that trusts exactly the certificates in `ca` (the pin).

    Give it to httpx as `verify=`: httpx 0.28 deprecates `verify=<path>`. Unlike
    `ssl.create_default_context(cadata=...)`, an empty file never falls back to the
    system's CAs.

    Raises:
        ConfigError: `ca` is missing or holds no certificate.
    """
    data = _read(ca, "CA file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and host name
    try:
        context.load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{ca} holds no PEM certificate") from exc
    if not context.cert_store_stats()["x509"]:
        raise ConfigError(f"{ca} holds no PEM certificate")
    return context
