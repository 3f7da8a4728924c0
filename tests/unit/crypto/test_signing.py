"""Verify once: a remembered signature never lets another key, message or signature pass.

`Ed25519PublicKey.verify` remembers the (key, signature, message) triples that verified,
so the vault's repeated checks of one request cost one Ed25519 verification. These tests
verify a good triple first, then change one part of it at a time: each variant must be
verified in full and refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nacl.signing
import pytest

from pcii_vault.crypto import signing
from pcii_vault.crypto.signing import Ed25519PrivateKey, Ed25519PublicKey
from pcii_vault.errors import IntegrityError

MESSAGE = b'{"action":"validate","record":"PCII-2026-000001"}'


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The messages nacl verified, in order (the memo starts empty)."""
    monkeypatch.setattr(signing, "_VERIFIED", set())
    seen: list[bytes] = []
    real = nacl.signing.VerifyKey.verify

    def counting(self: nacl.signing.VerifyKey, message: bytes, signature: Any) -> bytes:
        seen.append(message)
        return real(self, message, signature)

    monkeypatch.setattr(nacl.signing.VerifyKey, "verify", counting)
    yield seen


def test_a_good_signature_is_verified_once(verifications: list[bytes]) -> None:
    key = Ed25519PrivateKey.generate()
    signature = key.sign(MESSAGE)
    for _ in range(3):
        key.public_key.verify(MESSAGE, signature)
    assert verifications == [MESSAGE]


def test_a_bad_signature_is_never_remembered(verifications: list[bytes]) -> None:
    key = Ed25519PrivateKey.generate()
    forged = bytes(64)
    for _ in range(2):
        with pytest.raises(IntegrityError):
            key.public_key.verify(MESSAGE, forged)
    assert verifications == [MESSAGE, MESSAGE]


@pytest.mark.parametrize("part", ["message", "signature", "key", "truncated signature"])
def test_after_a_good_triple_every_variant_is_verified_and_refused(
    verifications: list[bytes], part: str
) -> None:
    key = Ed25519PrivateKey.generate()
    signature = key.sign(MESSAGE)
    key.public_key.verify(MESSAGE, signature)
    message, public = MESSAGE, key.public_key
    if part == "message":
        message = MESSAGE.replace(b"validate", b"destroy!")
    elif part == "signature":
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    elif part == "key":
        public = Ed25519PrivateKey.generate().public_key
    else:
        # A shorter signature whose bytes, run together with the message, spell the
        # same input: the lengths in the memo's digest keep the two apart.
        message, signature = signature[-1:] + MESSAGE, signature[:-1]
    with pytest.raises(IntegrityError):
        public.verify(message, signature)
    assert len(verifications) == 2


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing, "_VERIFIED", set())
    monkeypatch.setattr(signing, "_VERIFIED_MAX", 4)
    key = Ed25519PrivateKey.generate()
    for n in range(10):
        message = b"message %d" % n
        key.public_key.verify(message, key.sign(message))
        assert len(signing._VERIFIED) <= 4


def test_not_bytes_is_refused_as_before() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(IntegrityError):
        Ed25519PublicKey(key.public_key.raw).verify("text", key.sign(MESSAGE))  # type: ignore[arg-type]
