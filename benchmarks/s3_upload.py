"""Encrypted streaming upload to SeaweedFS versus a plain boto3 multipart upload.

Starts its own SeaweedFS (tests/seaweed.py), writes a random file, then uploads the same
bytes twice to the same server, one run each:
- ours: the file read in 1 MiB pieces, sealed with `seal_object` (Cobblestone256),
  streamed by `S3Store.put_stream` (8 MiB parts, each with its SHA-256, conditional
  completion);
- plain: `client.upload_file` with boto3's default TransferConfig (8 MiB parts,
  10 threads), no encryption.
Prints MB/s for each and the ratio (target: ours >= 0.85 of plain).

Usage: .venv/bin/python benchmarks/s3_upload.py [--size-mib 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from seaweed import running_seaweed

from pcii_vault.crypto.envelope import ObjectContext, new_data_key, seal_object
from pcii_vault.store.s3 import S3Store

MiB = 1 << 20


def _read_pieces(path: Path, size: int = MiB) -> Iterator[bytes]:
    with path.open("rb", buffering=0) as stream:
        while piece := stream.read(size):
            yield piece


def _write_random_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        for _ in range(size // (16 * MiB)):
            out.write(os.urandom(16 * MiB))
        out.write(os.urandom(size % (16 * MiB)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=4, help="parts in flight (ours)")
    args = parser.parse_args()
    size = args.size_mib * MiB

    with tempfile.TemporaryDirectory(prefix="pcii-bench-") as tmp, running_seaweed() as server:
        source = Path(tmp) / "payload.bin"
        _write_random_file(source, size)
        client = server.client()
        client.create_bucket(Bucket="bench-plain")
        client.create_bucket(Bucket="bench-ours")
        store = S3Store(
            "bench-ours",
            endpoint_url=server.endpoint_url,
            region_name=server.region,
            access_key_id=server.access_key,
            secret_access_key=server.secret_key,
            max_concurrency=args.concurrency,
        )
        # Warm both paths (connections, bucket volumes) with a small object.
        client.put_object(Bucket="bench-plain", Key="warmup", Body=b"w" * MiB)
        store.put_if_absent("warmup", b"w" * MiB)

        started = time.perf_counter()
        client.upload_file(str(source), "bench-plain", "records/r1/files/0")
        plain_s = time.perf_counter() - started

        ctx = ObjectContext("bench-vault", "r1", "files-0")
        sealed = seal_object(new_data_key(), ctx, _read_pieces(source), kek_version=1)
        started = time.perf_counter()
        info = store.put_stream("records/r1/files/0", sealed)
        ours_s = time.perf_counter() - started

        head = client.head_object(Bucket="bench-plain", Key="records/r1/files/0")
        # Both uploads must be complete: the plain object exactly, ours as ciphertext
        # (header and per-chunk tags make it longer).
        stored = store.head(info.key).size
        if head["ContentLength"] != size or stored != info.size or info.size <= size:
            raise SystemExit("an upload is incomplete; figures are meaningless")

    plain = size / MiB / plain_s
    ours = size / MiB / ours_s
    print(
        f"payload: {args.size_mib} MiB random bytes, SeaweedFS on 127.0.0.1, {os.cpu_count()} CPUs"
    )
    print(f"plain boto3 upload_file (default TransferConfig): {plain:8.1f} MiB/s ({plain_s:.2f} s)")
    print(f"ours: seal_object + S3Store.put_stream:          {ours:8.1f} MiB/s ({ours_s:.2f} s)")
    print(f"ratio ours/plain: {ours / plain:.2f} (target >= 0.85)")


if __name__ == "__main__":
    main()
