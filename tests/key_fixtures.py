"""Fixtures for the real key holders (a pytest plugin, see tests/conftest.py).

- `softhsm`: a SoftHSM2 token (and a spare a test may remove), for the session;
- `bao`: a `bao server -dev` with TLS on 127.0.0.1, stopped by PID;
- `kms_emulator`: moto's KMS emulator on 127.0.0.1, stopped by PID;
- `provider_kit`: the same test against every KEK provider (local, SoftHSM2, OpenBao,
  the KMS emulator); `external_kit`: against the three outside the vault directory.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from key_servers import (
    BaoServer,
    KmsEmulator,
    SoftHsm,
    start_bao,
    start_kms_emulator,
    start_softhsm,
)

from pcii_vault.crypto.seal import ScryptParams
from pcii_vault.keys.base import KekProvider
from pcii_vault.keys.local import LocalKeyring
from pcii_vault.keys.providers import open_kek_provider


@pytest.fixture(scope="session")
def softhsm() -> Iterator[SoftHsm]:
    """A SoftHSM2 token for the session."""
    token = start_softhsm()
    yield token
    token.cleanup()


@pytest.fixture(scope="session")
def bao() -> Iterator[BaoServer]:
    """A `bao server -dev` for the session."""
    server = start_bao()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kms_emulator() -> Iterator[KmsEmulator]:
    """moto's KMS emulator for the session."""
    emulator = start_kms_emulator()
    yield emulator
    emulator.stop()


SECRET = b"correct horse battery staple"
CHEAP = ScryptParams(n=2**10, r=8, p=1)


@dataclass
class ProviderKit:
    """How a conformance test makes and reopens keys of one provider."""

    name: str
    uri: Callable[[str], str]
    local: LocalKeyring

    def new_uri(self) -> str:
        """A URI naming a key that does not exist yet."""
        return self.uri(f"kek-{secrets.token_hex(4)}")

    def open(self, uri: str, *, create: bool = False) -> KekProvider:
        """Open (or create) the key at `uri`."""
        return open_kek_provider(uri, self.local, create=create)


PROVIDERS = ("local", "pkcs11", "openbao", "awskms")


@pytest.fixture(params=PROVIDERS)
def provider_kit(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderKit:
    """The same test against every provider."""
    return _kit(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=PROVIDERS[1:])
def external_kit(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderKit:
    """The same test against every provider outside the vault directory."""
    return _kit(request.param, request, tmp_path, monkeypatch)


def _kit(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProviderKit:
    if name == "local":
        counter = iter(range(1_000_000))

        def local_uri(_: str) -> str:
            return f"local#{next(counter)}"

        keyrings: dict[str, LocalKeyring] = {}

        class _LocalKit(ProviderKit):
            def open(self, uri: str, *, create: bool = False) -> KekProvider:
                if uri not in keyrings:
                    path = tmp_path / f"keyring-{len(keyrings)}"
                    keyrings[uri] = LocalKeyring.create(path, SECRET, kdf_params=CHEAP)
                return LocalKeyring.open(keyrings[uri].path, SECRET)

        first = LocalKeyring.create(tmp_path / "intake", SECRET, kdf_params=CHEAP)
        return _LocalKit(name, local_uri, first)
    local = LocalKeyring.create(tmp_path / "keyring", SECRET, kdf_params=CHEAP)
    if name == "pkcs11":
        token: SoftHsm = request.getfixturevalue("softhsm")
        return ProviderKit(name, token.uri, local)
    if name == "openbao":
        server: BaoServer = request.getfixturevalue("bao")
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        return ProviderKit(name, server.uri, local)
    emulator: KmsEmulator = request.getfixturevalue("kms_emulator")
    for key, value in emulator.env.items():
        monkeypatch.setenv(key, value)
    return ProviderKit(name, lambda key: f"awskms:alias/{key}", local)
