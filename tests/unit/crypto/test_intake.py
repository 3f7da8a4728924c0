"""X25519 sealed boxes for owner-side intake of data keys."""

from __future__ import annotations

import pytest

from pcii_vault.crypto.intake import (
    generate_intake_keypair,
    intake_public_key,
    open_from_intake,
    seal_to_intake,
)
from pcii_vault.errors import IntegrityError


def test_sealed_data_opens_only_with_the_intake_private_key() -> None:
    private, public = generate_intake_keypair()
    assert intake_public_key(private) == public
    sealed = seal_to_intake(public, b"k" * 32)
    assert len(sealed) == 32 + 48
    assert open_from_intake(private, sealed) == b"k" * 32
    other_private, _ = generate_intake_keypair()
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_from_intake(other_private, sealed)


def test_every_flipped_byte_and_truncation_is_detected() -> None:
    private, public = generate_intake_keypair()
    sealed = seal_to_intake(public, b"k" * 32)
    for position in range(len(sealed)):
        bad = bytearray(sealed)
        bad[position] ^= 0x01
        with pytest.raises(IntegrityError):
            open_from_intake(private, bytes(bad))
    for length in (0, 10, 47, len(sealed) - 1):
        with pytest.raises(IntegrityError):
            open_from_intake(private, sealed[:length])


def test_wrong_key_lengths_are_programmer_errors() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal_to_intake(bytes(31), b"x")
    with pytest.raises(ValueError, match="32 bytes"):
        open_from_intake(bytes(33), b"x" * 64)
