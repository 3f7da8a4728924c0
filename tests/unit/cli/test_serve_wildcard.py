"""`serve --listen 0.0.0.0:PORT`: clients are told a name they can reach, and the
self-signed certificate names it (a wildcard address is never a client's URL)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cryptography import x509

from pcii_vault.cli import serve
from pcii_vault.service.tls import ensure_self_signed


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda: "Vault-1.Example.ORG.")
    monkeypatch.setattr(socket, "gethostname", lambda: "vault-1")


@pytest.mark.usefixtures("machine")
@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])  # noqa: S104 -- names, not bound
def test_a_wildcard_address_announces_this_machines_name(wildcard: str) -> None:
    assert serve._public_names(wildcard) == ["vault-1.example.org", "vault-1"]
    assert serve._client_host(wildcard) == "vault-1.example.org"


@pytest.mark.usefixtures("machine")
@pytest.mark.parametrize(
    ("listen", "shown"), [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]"), ("vault.lan", "vault.lan")]
)
def test_a_specific_address_is_announced_as_given(listen: str, shown: str) -> None:
    assert serve._public_names(listen) == []
    assert serve._client_host(listen) == shown


def test_a_machine_without_a_usable_name_announces_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda: "localhost")
    monkeypatch.setattr(socket, "gethostname", lambda: "bad_name_with_underscores")
    assert serve._public_names("0.0.0.0") == []  # noqa: S104
    assert serve._client_host("0.0.0.0") == "127.0.0.1"  # noqa: S104


@pytest.mark.usefixtures("machine")
def test_the_certificate_for_a_wildcard_names_the_machine(tmp_path: Path) -> None:
    wildcard = "0.0.0.0"  # noqa: S104
    made = ensure_self_signed(tmp_path, [wildcard, *serve._public_names(wildcard)])
    certificate = x509.load_pem_x509_certificate(made.cert_path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"vault-1.example.org", "vault-1", "localhost"} <= set(
        names.get_values_for_type(x509.DNSName)
    )


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:0"])
def test_a_port_out_of_range_is_named_as_such(listen: str) -> None:
    from pcii_vault.errors import InputError

    with pytest.raises(InputError, match="the port must be 1 to 65535"):
        serve._listen_address(listen)
