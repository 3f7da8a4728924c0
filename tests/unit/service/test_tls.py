"""The server's certificate: made once, never overwritten, and good for a pinned TLS 1.3 client."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pcii_vault.errors import ConfigError
from pcii_vault.service.tls import (
    CERT_FILE,
    KEY_FILE,
    ServerCertificate,
    client_context,
    ensure_self_signed,
    fingerprint,
    load_certificate,
)
from pcii_vault.service.transport import _network

FINGERPRINT = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){31}")


def read_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def pair(tmp_path: Path) -> ServerCertificate:
    return ensure_self_signed(tmp_path / "tls", ["vault.example", "10.1.2.3"])


# --- the self-signed pair --------------------------------------------------------------


def test_a_new_pair_is_p256_self_signed_ca_for_825_days(pair: ServerCertificate) -> None:
    assert pair.created
    assert pair.cert_path.name == CERT_FILE
    assert pair.key_path.name == KEY_FILE
    cert = read_cert(pair.cert_path)
    assert cert.issuer == cert.subject
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=825)
    assert cert.not_valid_before_utc <= datetime.now(UTC) < cert.not_valid_after_utc
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_cert_sign
    purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # Key identifiers: OpenSSL's strict checks (Python 3.13's default) want them on a CA.
    key_id = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    issuer_id = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert issuer_id.key_identifier == key_id.digest
    cert.verify_directly_issued_by(cert)  # raises unless its own key signed it


def test_the_names_are_the_hosts_plus_localhost(tmp_path: Path) -> None:
    every_address = "0.0.0.0"  # noqa: S104 -- a bind address, never a name in the certificate
    hosts = ["Vault.Example.", "10.1.2.3", "[::1]", every_address, "localhost", "vault.example"]
    made = ensure_self_signed(tmp_path, hosts)
    names = read_cert(made.cert_path).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == ["vault.example", "localhost"]
    assert names.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("127.0.0.1"),
    ]


@pytest.mark.parametrize("host", ["", "bad host", "vault_example", "vält.example", "a..b"])
def test_an_invalid_host_is_refused_before_anything_is_written(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="host"):
        ensure_self_signed(tmp_path / "tls", [host])
    assert not (tmp_path / "tls").exists()


def test_the_key_is_0600_and_nothing_else_is_left(pair: ServerCertificate) -> None:
    assert stat.S_IMODE(pair.key_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in pair.cert_path.parent.iterdir()) == [CERT_FILE, KEY_FILE]
    key = serialization.load_pem_private_key(pair.key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_the_fingerprint_is_sha256_of_the_der_in_uppercase_hex(pair: ServerCertificate) -> None:
    der = ssl.PEM_cert_to_DER_cert(pair.cert_path.read_text())
    expected = ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())
    assert pair.fingerprint_sha256 == expected
    assert FINGERPRINT.fullmatch(expected)
    assert fingerprint(pair.cert_path) == expected


def test_an_existing_pair_is_kept(pair: ServerCertificate) -> None:
    cert, key = pair.cert_path.read_bytes(), pair.key_path.read_bytes()
    again = ensure_self_signed(pair.cert_path.parent, ["10.1.2.3"])
    assert not again.created
    assert again.fingerprint_sha256 == pair.fingerprint_sha256
    assert (again.cert_path, again.key_path) == (pair.cert_path, pair.key_path)
    assert pair.cert_path.read_bytes() == cert
    assert pair.key_path.read_bytes() == key


def test_an_existing_pair_must_name_every_host(pair: ServerCertificate) -> None:
    with pytest.raises(ConfigError, match=r"does not name vault2\.example"):
        ensure_self_signed(pair.cert_path.parent, ["vault2.example"])


@pytest.mark.parametrize("left", [CERT_FILE, KEY_FILE])
def test_half_a_pair_is_refused_naming_both_files(pair: ServerCertificate, left: str) -> None:
    directory = pair.cert_path.parent
    gone = KEY_FILE if left == CERT_FILE else CERT_FILE
    (directory / gone).unlink()
    before = (directory / left).read_bytes()
    with pytest.raises(ConfigError) as caught:
        ensure_self_signed(directory, [])
    assert str(directory / left) in str(caught.value)
    assert str(directory / gone) in str(caught.value)
    assert not (directory / gone).exists()
    assert (directory / left).read_bytes() == before


def test_a_pair_that_does_not_match_is_refused(tmp_path: Path) -> None:
    one = ensure_self_signed(tmp_path / "one", [])
    two = ensure_self_signed(tmp_path / "two", [])
    two.key_path.replace(one.key_path)
    with pytest.raises(ConfigError, match="does not belong") as caught:
        ensure_self_signed(tmp_path / "one", [])
    assert str(one.key_path) in str(caught.value)
    assert str(one.cert_path) in str(caught.value)


def test_a_directory_that_cannot_be_written_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot write"):
        ensure_self_signed(tmp_path / "file" / "tls", [])


# --- the operator's own files ----------------------------------------------------------


def test_load_certificate_accepts_a_matching_pair(pair: ServerCertificate) -> None:
    loaded = load_certificate(pair.cert_path, pair.key_path)
    assert loaded == ServerCertificate(
        pair.cert_path, pair.key_path, pair.fingerprint_sha256, created=False
    )


def test_load_certificate_refuses_missing_or_unparsable_files(
    pair: ServerCertificate, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    missing = tmp_path / "missing.pem"
    for cert, key, match in [
        (missing, pair.key_path, "not found"),
        (pair.cert_path, missing, "not found"),
        (garbage, pair.key_path, "not a PEM certificate"),
        (pair.key_path, pair.key_path, "not a PEM certificate"),
        (pair.cert_path, garbage, "not a PEM private key"),
        (pair.cert_path, pair.cert_path, "not a PEM private key"),
        (tmp_path, pair.key_path, "is a directory"),
    ]:
        with pytest.raises(ConfigError, match=match) as caught:
            load_certificate(cert, key)
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        fingerprint(garbage)


def test_load_certificate_refuses_an_encrypted_key(pair: ServerCertificate, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(pair.key_path.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match="encrypted"):
        load_certificate(pair.cert_path, encrypted)


def test_load_certificate_refuses_another_key(pair: ServerCertificate, tmp_path: Path) -> None:
    other = tmp_path / "other-key.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="does not belong"):
        load_certificate(pair.cert_path, other)


def test_client_context_refuses_a_file_without_certificates(tmp_path: Path) -> None:
    # ssl.create_default_context(cadata="") would trust the system's CAs instead.
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    text = tmp_path / "text.pem"
    text.write_text("no certificate here\n")
    for path, match in [(empty, "no PEM"), (text, "no PEM"), (tmp_path / "gone", "not found")]:
        with pytest.raises(ConfigError, match=match):
            client_context(path)


def test_client_context_trusts_only_the_pin(pair: ServerCertificate) -> None:
    context = client_context(pair.cert_path)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    serials = [int(str(ca["serialNumber"]), 16) for ca in context.get_ca_certs()]
    assert serials == [read_cert(pair.cert_path).serial_number]


# --- a real handshake ------------------------------------------------------------------


@contextlib.contextmanager
def tls_server(pair: ServerCertificate) -> Iterator[tuple[int, list[str]]]:
    """A one-thread HTTPS server on 127.0.0.1 answering `ok`; yields its port and versions.

    The accept loop polls a stop flag (no timing is asserted) and the thread is joined.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert_path, pair.key_path)
    versions: list[str] = []
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            with (
                contextlib.suppress(ssl.SSLError, OSError),
                conn,
                context.wrap_socket(conn, server_side=True) as tls,
            ):
                versions.append(str(tls.version()))
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, name="tls-test-server")
    thread.start()
    try:
        yield listener.getsockname()[1], versions
    finally:
        stop.set()
        thread.join(timeout=30)
        listener.close()
        assert not thread.is_alive()


def test_a_pinned_httpx_client_completes_a_tls13_handshake(pair: ServerCertificate) -> None:
    with (
        tls_server(pair) as (port, versions),
        httpx.Client(verify=client_context(pair.cert_path), trust_env=False) as client,
    ):
        for host in ("127.0.0.1", "localhost"):
            response = client.get(f"https://{host}:{port}/")
            assert response.status_code == 200
            assert response.text == "ok"
    assert versions == ["TLSv1.3", "TLSv1.3"]


def test_the_pair_passes_openssl_strict_checks(pair: ServerCertificate) -> None:
    # Python 3.13 turns on VERIFY_X509_STRICT by default: the pin must survive it.
    context = client_context(pair.cert_path)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    with tls_server(pair) as (port, _), httpx.Client(verify=context, trust_env=False) as client:
        assert client.get(f"https://127.0.0.1:{port}/").status_code == 200


def test_the_certificate_names_decide_the_host(pair: ServerCertificate) -> None:
    context = client_context(pair.cert_path)
    with tls_server(pair) as (port, _):
        for name, accepted in (("vault.example", True), ("other.example", False)):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                if accepted:
                    with context.wrap_socket(raw, server_hostname=name) as tls:
                        assert tls.version() == "TLSv1.3"
                        tls.sendall(b"GET / HTTP/1.1\r\nHost: vault.example\r\n\r\n")
                        assert tls.recv(4096).startswith(b"HTTP/1.1 200")
                else:
                    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
                        context.wrap_socket(raw, server_hostname=name)


def test_a_client_pinned_to_another_certificate_refuses_the_server(
    pair: ServerCertificate, tmp_path: Path
) -> None:
    other = ensure_self_signed(tmp_path / "other", ["10.1.2.3"])
    with (
        tls_server(pair) as (port, _),
        httpx.Client(verify=client_context(other.cert_path), trust_env=False) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"https://127.0.0.1:{port}/")


def test_client_context_reads_a_bounded_amount_of_a_ca_file() -> None:
    # `--ca /dev/zero` grew the client to 24 GB before the out-of-memory killer came.
    with pytest.raises(ConfigError, match="larger than 4 MiB: not a PEM file"):
        client_context(Path("/dev/zero"))


def test_two_servers_making_the_pair_at_once_both_use_the_one_made_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second finds the first's key where its own would go: it waits for that
    pair's certificate and uses it (was: exit 2, "appeared while it was being made")."""
    from pcii_vault.service import tls

    real_write = tls.write_new_file
    first: list[ServerCertificate] = []

    def first_server_wins(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        monkeypatch.setattr(tls, "write_new_file", real_write)
        first.append(ensure_self_signed(tmp_path, ["127.0.0.1"]))  # the other server
        real_write(path, data, mode=mode)

    monkeypatch.setattr(tls, "write_new_file", first_server_wins)
    second = ensure_self_signed(tmp_path, ["127.0.0.1"])
    assert first[0].created and not second.created
    assert second.fingerprint_sha256 == first[0].fingerprint_sha256


def test_a_key_whose_certificate_never_comes_is_refused_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcii_vault.service import tls

    monkeypatch.setattr(tls, "_MEANWHILE_WAIT_S", 0.2)
    real_write = tls.write_new_file

    def racing_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        if path.name == KEY_FILE:
            real_write(path, data, mode=mode)  # another process's key, and no certificate
        real_write(path, data, mode=mode)

    monkeypatch.setattr(tls, "write_new_file", racing_write)
    with pytest.raises(ConfigError, match="no certificate came with it"):
        ensure_self_signed(tmp_path, ["127.0.0.1"])


def _self_signed_pair(
    directory: Path,
    *,
    days: tuple[int, int] = (-30, -1),
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> ServerCertificate:
    """A self-signed pair for 127.0.0.1 valid from and until `days` from now (by default,
    its validity ended yesterday), of `key` (by default a new P-256 key)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "expired")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ServerCertificate(cert_path, key_path, "", created=False)


def test_an_expired_certificate_is_refused_before_serving(tmp_path: Path) -> None:
    """Every client would refuse it: `pcii serve` says so at start, with the way out."""
    expired = _self_signed_pair(tmp_path / "tls")
    with pytest.raises(ConfigError, match=r"expired on .*--tls-cert"):
        load_certificate(expired.cert_path, expired.key_path)
    with pytest.raises(ConfigError, match=r"expired on .*remove .* to make a new pair"):
        ensure_self_signed(tmp_path / "tls", ["127.0.0.1"])


@pytest.mark.parametrize(
    ("days", "said", "not_said"),
    [
        ((-30, -1), "has expired by this machine's clock", "not trusted"),
        # A tester's finding: a client clock a day behind the certificate's start was
        # told "not trusted: pass --ca FILE" with the right --ca given.
        ((1, 30), "not valid yet by this machine's clock .*: check this machine's clock", "--ca"),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_a_client_names_a_certificate_outside_its_validity(
    tmp_path: Path, days: tuple[int, int], said: str, not_said: str
) -> None:
    pair = _self_signed_pair(tmp_path / "tls", days=days)
    url = "https://127.0.0.1"
    with (
        tls_server(pair) as (port, _),
        httpx.Client(verify=client_context(pair.cert_path), trust_env=False) as client,
        pytest.raises(ConfigError, match=said) as refused,
        _network(f"{url}:{port}"),
    ):
        client.get(f"{url}:{port}/")
    assert not_said not in str(refused.value)


def test_a_damaged_certificate_is_a_config_error_at_every_byte(
    pair: ServerCertificate, tmp_path: Path
) -> None:
    """A flipped byte anywhere: refused in one line, or (a byte that changes nothing the
    checks read) accepted; never an unexpected error (exit 1)."""
    original = pair.cert_path.read_bytes()
    damaged = tmp_path / "damaged.pem"
    for offset in range(len(original)):
        flipped = bytearray(original)
        flipped[offset] ^= 0x01
        damaged.write_bytes(bytes(flipped))
        with contextlib.suppress(ConfigError):
            load_certificate(damaged, pair.key_path)


def test_load_certificate_refuses_a_pair_tls_refuses(tmp_path: Path) -> None:
    """A tester's finding: an RSA-1024 pair parsed, `pcii serve` announced its address,
    then died with exit 1 (SSLError: ee key too small) when the server loaded it."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 -- refused
    pair = _self_signed_pair(tmp_path / "weak", days=(-1, 1), key=weak)
    with pytest.raises(ConfigError, match=r"refused by TLS.*KEY_TOO_SMALL"):
        load_certificate(pair.cert_path, pair.key_path)
