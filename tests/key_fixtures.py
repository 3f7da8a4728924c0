"""Session fixtures for the real key holders (a pytest plugin, see tests/conftest.py).

- `softhsm`: a SoftHSM2 token (and a spare a test may remove);
- `bao`: a `bao server -dev` with TLS on 127.0.0.1, stopped by PID;
- `kms_emulator`: moto's KMS emulator on 127.0.0.1, stopped by PID.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from key_servers import (
    BaoServer,
    KmsEmulator,
    SoftHsm,
    start_bao,
    start_kms_emulator,
    start_softhsm,
)


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
