"""Envelope encryption throughput, side by side with the AWS Encryption SDK and raw AES-GCM.

Run:  .venv/bin/python benchmarks/envelope.py [--mib 256] [--repeat 3]

All contenders encrypt and decrypt the same random buffer in one process:

- ours: `seal_object` / `open_object` (Cobblestone-256, 16 KiB chunks, authenticated
  header, plaintext SHA-256 computed while streaming; when sealing, on a helper
  thread). The output is streamed into a preallocated sink, as into a file or upload.
- ours, hash inline: sealing with the hash on the calling thread (to show what the
  pipelining buys; opening always hashes inline, so its two figures should agree).
- AWS Encryption SDK for Python (default committing suite
  AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384, default 4096-byte frames, commitment
  policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT) with a raw AES-256 master key provider
  (`RawMasterKeyProvider`, WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING), since
  the Material Providers Library's raw keyring is not installed. One run (it is slow).
- raw AES-256-GCM from `cryptography`, the whole buffer in one call (no hash).
- Cobblestone alone, three ways of feeding it (one huge update, 1 MiB `update`,
  1 MiB `update_into` a reused buffer), to show where the time goes.

Figures are best of `--repeat` runs (other processes share the machine) in MB/s
(10**6 bytes per second).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Callable, Iterable

import aws_encryption_sdk
from aws_encryption_sdk.identifiers import (
    CommitmentPolicy,
    EncryptionKeyType,
    WrappingAlgorithm,
)
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider
from cryptography.cobblestone import Cobblestone256Encryptor
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pcii_vault.crypto import envelope
from pcii_vault.crypto.envelope import ObjectContext, new_data_key, open_object, seal_object

PIECE = 1 << 20


class _BenchKeyProvider(RawMasterKeyProvider):  # type: ignore[misc]
    """A raw AES-256 wrapping key held in memory."""

    provider_id = "pcii-bench"

    def __init__(self, **kwargs: object) -> None:
        self._key = os.urandom(32)

    def _get_raw_key(self, key_id: bytes) -> WrappingKey:
        return WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=self._key,
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        )


def check(condition: bool, what: str) -> None:
    """Stop the benchmark if a contender produced a wrong result."""
    if not condition:
        raise SystemExit(f"wrong result: {what}")


def best_of(repeat: int, size: int, run: Callable[[], object]) -> float:
    """Return the best throughput in MB/s over `repeat` runs of `run`."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return size / best / 1e6


def stream_into(sink: bytearray, chunks: Iterable[bytes]) -> int:
    """Copy chunks into a preallocated buffer (stands in for a file or an upload)."""
    view = memoryview(sink)
    offset = 0
    for chunk in chunks:
        view[offset : offset + len(chunk)] = chunk
        offset += len(chunk)
    return offset


def measure_ours(data: bytes, repeat: int) -> dict[str, float]:
    """Our seal/open, streamed into a preallocated sink; with and without the hash thread."""
    size = len(data)
    expected_sha = hashlib.sha256(data).hexdigest()
    sink = bytearray(size + size // 512 + 4096)  # ciphertext overhead is 16 B per 16 KiB
    sink[:] = bytes(len(sink))  # touch every page now, not during the first measurement
    dek = new_data_key()
    ctx = ObjectContext("v-bench", "PCII-BENCH", "document")
    sealed = seal_object(dek, ctx, [data], kek_version=1)
    stored = b"".join(sealed)

    def encrypt() -> None:
        sealed = seal_object(dek, ctx, [data], kek_version=1)
        stream_into(sink, sealed)
        check(sealed.plaintext_sha256 == expected_sha, "ours: plaintext hash")

    def decrypt() -> None:
        opened = open_object(dek, ctx, [stored])
        stream_into(sink, opened)
        check(opened.plaintext_sha256 == expected_sha, "ours: decrypted hash")

    figures = {
        "ours encrypt": best_of(repeat, size, encrypt),
        "ours decrypt": best_of(repeat, size, decrypt),
    }
    threaded_min = envelope._THREADED_HASH_MIN
    envelope._THREADED_HASH_MIN = 1 << 62
    try:
        figures["ours encrypt, hash inline"] = best_of(repeat, size, encrypt)
        figures["ours decrypt, hash inline"] = best_of(repeat, size, decrypt)
    finally:
        envelope._THREADED_HASH_MIN = threaded_min
    check(bytes(sink[:size]) == data, "ours: round trip")
    return figures


def measure_sdk(data: bytes) -> dict[str, float]:
    """The AWS Encryption SDK, default committing suite and frame size, one run each."""
    provider = _BenchKeyProvider()
    provider.add_master_key(b"kek-1")
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    client.encrypt(source=b"warm-up", key_provider=provider)  # one-off set-up, not measured
    box: dict[str, bytes] = {}

    def encrypt() -> None:
        box["ct"], header = client.encrypt(source=data, key_provider=provider)
        check(header.frame_length == 4096, "SDK: default frame length")

    def decrypt() -> None:
        plaintext, _ = client.decrypt(source=box["ct"], key_provider=provider)
        check(plaintext == data, "SDK: round trip")

    return {
        "AWS Encryption SDK encrypt": best_of(1, len(data), encrypt),
        "AWS Encryption SDK decrypt": best_of(1, len(data), decrypt),
    }


def measure_gcm(data: bytes, repeat: int) -> dict[str, float]:
    """Raw AES-256-GCM from cryptography, the whole buffer in one call."""
    gcm = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    box: dict[str, bytes] = {}

    def encrypt() -> None:
        box["ct"] = gcm.encrypt(nonce, data, None)

    def decrypt() -> None:
        gcm.decrypt(nonce, box["ct"], None)

    return {
        "raw AES-256-GCM encrypt (one call)": best_of(repeat, len(data), encrypt),
        "raw AES-256-GCM decrypt (one call)": best_of(repeat, len(data), decrypt),
    }


def measure_parts(data: bytes, repeat: int) -> dict[str, float]:
    """Cobblestone alone fed three ways, and SHA-256 alone: where our time goes."""
    size = len(data)
    view = memoryview(data)
    out = bytearray(PIECE + 4096)
    key = os.urandom(32)

    def one_update() -> None:
        encryptor = Cobblestone256Encryptor(key, b"bench")
        encryptor.update(data)
        encryptor.finalize()

    def update_pieces() -> None:
        encryptor = Cobblestone256Encryptor(key, b"bench")
        for start in range(0, size, PIECE):
            encryptor.update(view[start : start + PIECE])
        encryptor.finalize()

    def update_into() -> None:
        encryptor = Cobblestone256Encryptor(key, b"bench")
        for start in range(0, size, PIECE):
            encryptor.update_into(view[start : start + PIECE], out)
        encryptor.finalize()

    return {
        "cobblestone alone, one update()": best_of(repeat, size, one_update),
        "cobblestone alone, 1 MiB update()": best_of(repeat, size, update_pieces),
        "cobblestone alone, 1 MiB update_into()": best_of(repeat, size, update_into),
        "sha256 alone": best_of(repeat, size, lambda: hashlib.sha256(data).digest()),
    }


def main() -> None:
    """Run every contender on one buffer and print MB/s and the ratios."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="buffer size in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    args = parser.parse_args()
    data = os.urandom(args.mib << 20)
    figures = {
        **measure_ours(data, args.repeat),
        **measure_sdk(data),
        **measure_gcm(data, args.repeat),
        **measure_parts(data, args.repeat),
    }
    print(f"buffer: {args.mib} MiB, best of {args.repeat} (AWS SDK: 1 run), CPUs: {os.cpu_count()}")
    for name, value in figures.items():
        print(f"  {name:<42} {value:9.0f} MB/s")
    ratios = {
        "ours encrypt / SDK encrypt": ("ours encrypt", "AWS Encryption SDK encrypt", ">= 20x"),
        "ours decrypt / SDK decrypt": ("ours decrypt", "AWS Encryption SDK decrypt", ""),
        "raw GCM encrypt / ours": ("raw AES-256-GCM encrypt (one call)", "ours encrypt", "<= 2x"),
        "raw GCM decrypt / ours": ("raw AES-256-GCM decrypt (one call)", "ours decrypt", ""),
        "sha256 alone / SDK encrypt": ("sha256 alone", "AWS Encryption SDK encrypt", "ceiling"),
    }
    for label, (top, bottom, target) in ratios.items():
        note = f"  (target {target})" if target.startswith(("<", ">")) else ""
        if target == "ceiling":
            note = "  (our ceiling: the plaintext SHA-256 bounds our encrypt)"
        print(f"{label:<28} {figures[top] / figures[bottom]:6.2f}x{note}")


if __name__ == "__main__":
    main()
