"""Wrapping data keys: known answers, binding of context and version, tamper detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcii_vault.crypto.keywrap import (
    _wrap_key_with_nonce,
    parse_unverified_wrapped_kek_version,
    unwrap_key,
    wrap_key,
)
from pcii_vault.errors import IntegrityError

VECTORS = Path(__file__).parents[2] / "vectors" / "envelope" / "envelope.json"
KEK1 = bytes(range(32))
KEK2 = bytes(range(32, 64))
DEK = bytes(range(100, 132))
CONTEXT = b'{"record":"PCII-1","vault":"v"}'


def lookup(version: int) -> bytes:
    if version == 1:
        return KEK1
    if version == 2:
        return KEK2
    raise IntegrityError(f"KEK version {version} is not in this keyring")


def test_round_trip_and_layout() -> None:
    blob = wrap_key(KEK2, 2, DEK, CONTEXT)
    assert len(blob) == 1 + 4 + 12 + 32 + 16
    assert blob[:5] == b"\x01\x00\x00\x00\x02"
    assert parse_unverified_wrapped_kek_version(blob) == 2
    assert unwrap_key(lookup, blob, CONTEXT) == DEK


def test_wraps_of_the_same_key_differ() -> None:
    assert wrap_key(KEK1, 1, DEK, CONTEXT) != wrap_key(KEK1, 1, DEK, CONTEXT)


def test_recorded_wrapped_keys_match_exactly() -> None:
    vectors = json.loads(VECTORS.read_text())
    kek, dek = bytes.fromhex(vectors["kek_hex"]), bytes.fromhex(vectors["dek_hex"])
    assert vectors["wrapped_keys"]
    for case in vectors["wrapped_keys"]:
        context, nonce = bytes.fromhex(case["context_hex"]), bytes.fromhex(case["nonce_hex"])
        blob = _wrap_key_with_nonce(kek, case["kek_version"], dek, context, nonce)
        assert blob.hex() == case["wrapped_hex"]
        assert unwrap_key(lambda _v, k=kek: k, bytes.fromhex(case["wrapped_hex"]), context) == dek


def test_every_flipped_bit_of_a_wrapped_key_is_detected() -> None:
    blob = wrap_key(KEK1, 1, DEK, CONTEXT)
    undetected = []
    for position in range(len(blob)):
        for bit in range(8):
            bad = bytearray(blob)
            bad[position] ^= 1 << bit
            try:
                unwrap_key(lookup, bytes(bad), CONTEXT)
            except IntegrityError:
                continue
            undetected.append((position, bit))
    assert undetected == []


def test_wrapped_key_moved_to_another_record_fails() -> None:
    blob = wrap_key(KEK1, 1, DEK, CONTEXT)
    with pytest.raises(IntegrityError, match="failed authentication"):
        unwrap_key(lookup, blob, CONTEXT.replace(b"PCII-1", b"PCII-2"))


def test_version_rewritten_to_route_to_another_kek_fails() -> None:
    """The version is associated data: pointing it at another KEK version is caught."""
    blob = wrap_key(KEK1, 1, DEK, CONTEXT)
    forged = blob[:1] + (2).to_bytes(4, "big") + blob[5:]
    with pytest.raises(IntegrityError):
        unwrap_key(lambda _v: KEK1, forged, CONTEXT)  # even if the same KEK answers


def test_unknown_kek_version_is_refused_by_the_lookup() -> None:
    blob = wrap_key(bytes(32), 9, DEK, CONTEXT)
    with pytest.raises(IntegrityError, match="version 9"):
        unwrap_key(lookup, blob, CONTEXT)


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x01\x00\x00\x00\x01", b"\x02" + bytes(64), b"\x01\x00\x00\x00\x00" + bytes(60)],
    ids=["empty", "header only", "unknown format", "version zero"],
)
def test_malformed_blobs_are_refused(blob: bytes) -> None:
    with pytest.raises(IntegrityError, match=r"^wrapped data key failed authentication$"):
        unwrap_key(lookup, blob, CONTEXT)


@pytest.mark.parametrize(
    ("kek", "version", "dek"),
    [(bytes(31), 1, DEK), (KEK1, 0, DEK), (KEK1, 2**32, DEK), (KEK1, 1, bytes(8))],
    ids=["short kek", "version 0", "version too big", "short dek"],
)
def test_wrong_arguments_are_programmer_errors(kek: bytes, version: int, dek: bytes) -> None:
    with pytest.raises(ValueError):
        wrap_key(kek, version, dek, CONTEXT)
