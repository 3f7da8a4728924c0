"""One conformance suite for every KEK provider: local, SoftHSM2, OpenBao, moto KMS.

Each test runs against all four (see conftest.py). What every provider must do:
wrap/unwrap round trips bound to the record context; a wrong context, a tampered blob,
another key's blob all fail with IntegrityError; rotation keeps old blobs readable and
rewrap moves them to the new version; a retired version refuses to unwrap; many threads
at once; and a key holder that stops mid-run gives BackendError, never a key.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from key_fixtures import ProviderKit
from key_servers import start_bao, start_kms_emulator

from pcii_vault.crypto.envelope import RecordContext
from pcii_vault.errors import BackendError, ConfigError, InputError, IntegrityError
from pcii_vault.keys.base import KekProvider
from pcii_vault.keys.providers import open_kek_provider

CTX = RecordContext("v-0011223344556677", "PCII-2026-000001").to_bytes()
OTHER_CTX = RecordContext("v-0011223344556677", "PCII-2026-000002").to_bytes()


def _fresh(kit: ProviderKit) -> KekProvider:
    return kit.open(kit.new_uri(), create=True)


def test_round_trip_binds_the_record_context(provider_kit: ProviderKit) -> None:
    kek = _fresh(provider_kit)
    dek = os.urandom(32)
    wrapped = kek.wrap(dek, CTX)
    assert dek not in wrapped
    assert kek.owns(wrapped)
    assert kek.wrapped_version(wrapped) == kek.current_version == 1
    assert kek.unwrap(wrapped, CTX) == dek
    with pytest.raises(IntegrityError):
        kek.unwrap(wrapped, OTHER_CTX)
    kek.close()


@pytest.mark.parametrize("where", ["version", "provider id", "payload start", "last byte"])
def test_a_tampered_blob_fails_authentication(provider_kit: ProviderKit, where: str) -> None:
    kek = _fresh(provider_kit)
    wrapped = bytearray(kek.wrap(os.urandom(32), CTX))
    offset = {"version": 4, "provider id": 6, "payload start": 14, "last byte": -1}[where]
    if provider_kit.name == "local" and where == "provider id":
        offset = 8  # the local blob has no provider id: its nonce sits there
    wrapped[offset] ^= 0x01
    with pytest.raises(IntegrityError):
        kek.unwrap(bytes(wrapped), CTX)
    kek.close()


def test_another_keys_blob_is_refused(provider_kit: ProviderKit) -> None:
    first, second = _fresh(provider_kit), _fresh(provider_kit)
    wrapped = first.wrap(os.urandom(32), CTX)
    assert not second.owns(wrapped) or provider_kit.name == "local"
    with pytest.raises(IntegrityError):
        second.unwrap(wrapped, CTX)
    first.close()
    second.close()


def test_init_creates_the_key_once_then_uses_it(provider_kit: ProviderKit) -> None:
    uri = provider_kit.new_uri()
    created = provider_kit.open(uri, create=True)
    wrapped = created.wrap(b"k" * 32, CTX)
    again = provider_kit.open(uri, create=True)  # present: used, not replaced
    assert again.unwrap(wrapped, CTX) == b"k" * 32
    created.close()
    again.close()


def test_rotation_rewrap_and_retirement(provider_kit: ProviderKit) -> None:
    uri = provider_kit.new_uri()
    kek = provider_kit.open(uri, create=True)
    dek = os.urandom(32)
    old = kek.wrap(dek, CTX)
    assert kek.rotate() == 2
    assert kek.current_version == 2
    assert kek.wrapped_version(old) == 1
    assert kek.unwrap(old, CTX) == dek  # old versions still unwrap
    new = kek.rewrap(old, CTX)
    assert kek.wrapped_version(new) == 2
    assert kek.unwrap(new, CTX) == dek
    with pytest.raises(IntegrityError):
        kek.rewrap(old, OTHER_CTX)
    with pytest.raises(InputError):
        kek.retire(2)  # the current version
    kek.retire(1)
    assert [(v.version, v.retired) for v in kek.versions] == [(1, True), (2, False)]
    assert kek.min_decryption_version == 2
    with pytest.raises(IntegrityError):
        kek.unwrap(old, CTX)
    # A fresh handle sees the same state: it lives in the key holder, not in this object.
    if provider_kit.name != "local":
        reopened = provider_kit.open(uri)
        assert reopened.current_version == 2
        with pytest.raises(IntegrityError):
            reopened.unwrap(old, CTX)
        assert reopened.unwrap(new, CTX) == dek
        reopened.close()
    kek.close()


def test_many_threads_at_once(provider_kit: ProviderKit) -> None:
    kek = _fresh(provider_kit)

    def work(i: int) -> bool:
        ctx = RecordContext("v-0011223344556677", f"PCII-2026-{i:06d}").to_bytes()
        dek = secrets.token_bytes(32)
        wrapped = kek.wrap(dek, ctx)
        return kek.unwrap(wrapped, ctx) == dek and kek.unwrap(kek.rewrap(wrapped, ctx), ctx) == dek

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(work, range(400)))
    kek.close()


def test_a_missing_key_is_not_created_without_create(external_kit: ProviderKit) -> None:
    """(The local keyring exists as long as the vault does: `LocalKeyring.open` of a
    missing file is tested in tests/unit/keys.)"""
    with pytest.raises(ConfigError):
        external_kit.open(external_kit.new_uri())


def test_a_key_holder_stopped_mid_run_gives_backend_error(
    external_kit: ProviderKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop the server (or remove the token) after a wrap: unwrap is exit 5, no key.

    (The local keyring is a file read into this process: there is nothing to stop.)
    """
    provider_kit = external_kit
    name = provider_kit.name
    if name == "openbao":
        server = start_bao()
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        kek = open_kek_provider(server.uri("kek"), provider_kit.local, create=True)
        stop = server.stop
    elif name == "awskms":
        emulator = start_kms_emulator()
        for key, value in emulator.env.items():
            monkeypatch.setenv(key, value)
        kek = open_kek_provider("awskms:alias/stopping", provider_kit.local, create=True)
        stop = emulator.stop
    else:
        _pkcs11_token_removed_in_a_child_process()
        return
    wrapped = kek.wrap(os.urandom(32), CTX)
    stop()
    with pytest.raises(BackendError):
        kek.unwrap(wrapped, CTX)
    with pytest.raises(BackendError):
        kek.wrap(os.urandom(32), CTX)
    kek.close()


_CHILD_SCRIPT = """
import os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from key_servers import start_softhsm
from pcii_vault.errors import VaultError
from pcii_vault.keys.pkcs11 import Pkcs11Kek
hsm = start_softhsm()
kek = Pkcs11Kek.open(hsm.uri("kek", token=hsm.spare_token), create=True)
wrapped = kek.wrap(os.urandom(32), b"ctx")
subprocess.run(["softhsm2-util", "--delete-token", "--token", hsm.spare_token], check=True,
               capture_output=True)
for attempt in (lambda: kek.unwrap(wrapped, b"ctx"), lambda: kek.wrap(os.urandom(32), b"ctx")):
    try:
        attempt()
        print("RESULT no error")
    except VaultError as exc:
        print("RESULT", type(exc).__name__, exc.exit_code)
hsm.cleanup()
"""


def _pkcs11_token_removed_in_a_child_process() -> None:
    """SoftHSM2 is a library: its token is removed under a child process that uses it.

    A child, because SoftHSM2 reads its slots once per process and a removed token
    disturbs the other tokens of that process.
    """
    tests = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD_SCRIPT, str(tests)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert results == ["RESULT BackendError 5", "RESULT BackendError 5"], done.stdout
