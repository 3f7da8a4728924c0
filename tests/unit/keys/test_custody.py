"""The core's key seam: routing blobs to their provider, where keys live, no key handed out,
and provider URIs that never carry a PIN into vault.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcii_vault.crypto.envelope import RecordContext
from pcii_vault.crypto.seal import ScryptParams
from pcii_vault.errors import InputError, IntegrityError
from pcii_vault.keys.base import KeyProvider, external_header
from pcii_vault.keys.custody import KeyCustody, open_custody
from pcii_vault.keys.local import LocalKeyring
from pcii_vault.keys.pkcs11 import Pkcs11Uri
from pcii_vault.keys.providers import log_signer_uri_for, public_uri
from pcii_vault.keys.transit import TransitUri, log_key_uri

SECRET = b"custody-tests-secret"
CHEAP = ScryptParams(n=2**10, r=8, p=1)
CTX = RecordContext("v-0011223344556677", "PCII-2026-000001").to_bytes()


@pytest.fixture
def custody(tmp_path: Path) -> KeyCustody:
    local = LocalKeyring.create(tmp_path / "keyring", SECRET, kdf_params=CHEAP)
    return open_custody(local, "local", "local")


def test_the_local_custody_is_a_key_provider(custody: KeyCustody) -> None:
    assert isinstance(custody, KeyProvider)
    blob = custody.wrap(b"d" * 32, CTX)
    assert custody.is_current(blob)
    assert custody.unwrap(blob, CTX) == b"d" * 32
    assert custody.rewrap(blob, CTX) != blob
    where = {loc.name: loc.where for loc in custody.locations()}
    assert set(where) == {"key-encryption keys", "log signing key", "intake key"}
    assert all(w.startswith("local sealed keyring") for w in where.values())


def test_a_blob_of_a_provider_the_vault_does_not_use_is_refused(custody: KeyCustody) -> None:
    foreign = external_header(1, "pkcs11:token=elsewhere;object=kek") + b"\x00" * 60
    assert not custody.owns(foreign)
    with pytest.raises(IntegrityError, match="names no key provider"):
        custody.unwrap(foreign, CTX)
    with pytest.raises(IntegrityError):
        custody.rewrap(foreign, CTX)


def test_the_log_signer_hands_out_no_private_key(custody: KeyCustody) -> None:
    signer = custody.log_signer
    signer.public_key.verify(b"note", signer.sign(b"note"))
    public = [name for name in dir(signer) if not name.startswith("_")]
    assert sorted(public) == ["public_key", "sign"]


def test_a_pkcs11_pin_value_never_reaches_the_public_uri() -> None:
    uri = "pkcs11:token=HSM%20A;object=kek?module-path=/lib/p11.so&pin-value=1234"
    parsed = Pkcs11Uri.parse(uri)
    assert (parsed.token, parsed.object, parsed.pin()) == ("HSM A", "kek", "1234")
    assert "1234" not in public_uri(uri)
    assert "1234" not in repr(parsed)
    assert Pkcs11Uri.parse(log_signer_uri_for(uri)).object == "kek-log"
    assert parsed.key_id == "pkcs11:token=HSM%20A;object=kek"


@pytest.mark.parametrize(
    "uri",
    [
        "pkcs11:object=kek",
        "pkcs11:token=t",
        "pkcs11:token=t;object",
        "openbao:https://h:1/transit/kek",
        "openbao:ftp://h:1/transit/keys/k",
        "openbao:https://h:1/transit/keys/",
        "vault:https://h:1/transit/keys/k",
        "awskms:",
    ],
)
def test_malformed_provider_uris_are_bad_input(uri: str, custody: KeyCustody) -> None:
    with pytest.raises(InputError):
        if uri.startswith("openbao:"):
            TransitUri.parse(uri)
        else:
            open_custody(custody.local, uri, "local")


def test_transit_uris_name_the_mount_and_key_not_the_address() -> None:
    parsed = TransitUri.parse("openbao:https://10.0.0.5:8200/pcii/transit/keys/kek")
    assert (parsed.mount, parsed.name) == ("pcii/transit", "kek")
    assert parsed.key_id == "openbao:pcii/transit/keys/kek"
    assert log_key_uri(parsed.uri()).endswith("/pcii/transit/keys/kek-log")
