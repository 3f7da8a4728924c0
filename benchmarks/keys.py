"""Data-key wrap, unwrap and rewrap per second for each key provider; release latency;
migration rate.

Providers, all real and on this machine: the local sealed keyring (AES-256-GCM in
process), SoftHSM2 through python-pkcs11 (AES-GCM inside the token), OpenBao transit
(`bao server -dev` with TLS on 127.0.0.1; derived aes256-gcm96 keys) and moto's KMS
emulator (an emulator, not AWS: its figures say nothing about AWS KMS latency).

For each: operations per second single-threaded and with 16 threads (wrap, unwrap,
rewrap; 32-byte DEKs, a distinct record context each). Then, on whole vaults: the time
of one release (`Vault.release` of a one-attachment record to the office) with the local
keyring and with SoftHSM2, and the migration rate in records/s from the local keyring
to SoftHSM2 and to OpenBao.

Run: .venv/bin/python benchmarks/keys.py [--ops N] [--records N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))
sys.path.insert(0, str(_ROOT / "tests"))

import structlog  # noqa: E402
from key_servers import start_bao, start_kms_emulator, start_softhsm  # noqa: E402
from vault_support import VaultBench  # noqa: E402

from pcii_vault.crypto.envelope import RecordContext  # noqa: E402
from pcii_vault.crypto.seal import ScryptParams  # noqa: E402
from pcii_vault.keys.base import KekProvider  # noqa: E402
from pcii_vault.keys.local import LocalKeyring  # noqa: E402
from pcii_vault.keys.providers import open_kek_provider  # noqa: E402

SECRET = b"benchmark-unseal-secret"
THREADS = 16


def _contexts(n: int) -> list[bytes]:
    return [RecordContext("v-0011223344556677", f"PCII-2026-{i:06d}").to_bytes() for i in range(n)]


def _rate(op: Callable[[int], object], n: int, threads: int) -> float:
    start = time.perf_counter()
    if threads == 1:
        for i in range(n):
            op(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(op, range(n)))
    return n / (time.perf_counter() - start)


def bench_provider(name: str, kek: KekProvider, ops: int) -> None:
    contexts = _contexts(ops)
    deks = [secrets.token_bytes(32) for _ in range(ops)]
    blobs = [kek.wrap(deks[i], contexts[i]) for i in range(ops)]  # also a warm-up
    kek.rotate()  # rewrap moves blobs to the newer version
    for threads in (1, THREADS):
        wrap = _rate(lambda i: kek.wrap(deks[i], contexts[i]), ops, threads)
        unwrap = _rate(lambda i: kek.unwrap(blobs[i], contexts[i]), ops, threads)
        rewrap = _rate(lambda i: kek.rewrap(blobs[i], contexts[i]), ops, threads)
        print(
            f"{name:8} {threads:2} thr  wrap {wrap:9,.0f}/s  unwrap {unwrap:9,.0f}/s  "
            f"rewrap {rewrap:9,.0f}/s"
        )
    kek.close()


def bench_release(root: Path, kek_uri: str, label: str, rounds: int) -> float:
    bench = VaultBench(
        root, secret=SECRET, attachment_bytes=b"%PDF-1.4 bench " * 70, kek_uri=kek_uri
    )
    try:
        tracking = [bench.submit_receipt().tracking_number for _ in range(rounds)]
        times = []
        for i, record in enumerate(tracking):
            request = bench.vault.sign(bench.ids["office"], "review", record=record, purpose="b")
            start = time.perf_counter()
            bench.vault.release(request, root / f"out-{i}")
            times.append(time.perf_counter() - start)
        median = statistics.median(times) * 1000
        print(f"release  {label:8} median {median:6.2f} ms over {rounds} (1 KiB attachment)")
        return median
    finally:
        bench.vault.close()


def bench_migration(root: Path, target: str, label: str, records: int) -> None:
    bench = VaultBench(root, secret=SECRET, attachment_bytes=b"x", kek_uri="local")
    try:
        for _ in range(records):
            bench.submit_receipt(attach=False)
        request = bench.vault.sign(
            bench.ids["admin"], "rotate-keys", params={"op": "migrate", "to": target}
        )
        start = time.perf_counter()
        done = bench.vault.migrate_keys(request, target)
        elapsed = time.perf_counter() - start
        print(f"migrate  local -> {label:8} {done.count / elapsed:8,.0f} records/s ({done.count})")
    finally:
        bench.vault.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="operations per measurement")
    parser.add_argument("--records", type=int, default=1000, help="records to migrate")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)")

    hsm = start_softhsm()
    bao = start_bao()
    kms = start_kms_emulator()
    os.environ.update(bao.env)
    os.environ.update(kms.env)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            local = LocalKeyring.create(root / "k", SECRET, kdf_params=ScryptParams(2**10, 8, 1))
            bench_provider("local", local, args.ops)
            bench_provider("pkcs11", open_kek_provider(hsm.uri("b"), local, create=True), args.ops)
            small = max(args.ops // 10, 100)  # network providers: fewer operations
            bench_provider("openbao", open_kek_provider(bao.uri("b"), local, create=True), small)
            kms_kek = open_kek_provider("awskms:alias/bench", local, create=True)
            bench_provider("kms-emu", kms_kek, small)

            local_ms = bench_release(root / "rl", "local", "local", 30)
            hsm_ms = bench_release(root / "rh", hsm.uri("release"), "softhsm2", 30)
            print(f"release  softhsm2 / local = {hsm_ms / local_ms:.2f}x")
            bench_migration(root / "ml", hsm.uri("migrate"), "softhsm2", args.records)
            bench_migration(root / "mb", bao.uri("migrate"), "openbao", args.records)
    finally:
        bao.stop()
        kms.stop()
        hsm.cleanup()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
