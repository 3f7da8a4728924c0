"""End to end: `pcii submit` of a large attachment beside the AWS Encryption SDK.

A vault on the embedded filesystem store (default scrypt keyring, as `pcii init` makes
it) receives `--runs` submissions of one attachment of `--mib` MiB of random bytes, each
`pcii --json submit` a new process; between them, a new process streams the same file
through the AWS Encryption SDK for Python (default committing suite, raw AES key) into a
file in the same directory. Prints wall-clock MB/s (median) and peak RSS of each, and the
ratio. The issue's target: `pcii submit` >= 3x the SDK, peak RSS < 256 MiB.

Run: .venv/bin/python benchmarks/submit_e2e.py [--mib N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pcii_vault.models.submission import example_submission

PCII = str(Path(sys.executable).with_name("pcii"))
SDK = r"""
import os, sys
import aws_encryption_sdk
from aws_encryption_sdk.identifiers import CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

class Provider(RawMasterKeyProvider):
    provider_id = "pcii-bench"
    def __init__(self, **kwargs):
        self._key = os.urandom(32)
    def _get_raw_key(self, key_id):
        return WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=self._key, wrapping_key_type=EncryptionKeyType.SYMMETRIC)

provider = Provider()
provider.add_master_key(b"kek-1")
client = aws_encryption_sdk.EncryptionSDKClient(
    commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
with open(sys.argv[1], "rb") as source, open(sys.argv[2], "wb") as sink:
    with client.stream(mode="e", source=source, key_provider=provider) as encryptor:
        for chunk in encryptor:
            sink.write(chunk)
    sink.flush()
    os.fsync(sink.fileno())
"""


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall-clock seconds and peak RSS (KiB) of one process."""
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr.strip()}")
    return elapsed, int(done.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.mib << 20
    with tempfile.TemporaryDirectory(dir=os.environ.get("PCII_BENCH_DIR")) as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "PCII_VAULT": str(root / "vault"),
            "PCII_UNSEAL_SECRET": "benchmark-unseal-secret",
        }
        admin, owner = root / "admin.key", root / "owner.key"
        subprocess.run([PCII, "init", "--admin-key-out", str(admin)], env=env, check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run(
            [PCII, "--as", str(admin), "principal", "add", "owner", "--role", "owner",
             "--org", "Riverbend Municipal Water Authority", "--level", "private",
             "--key-out", str(owner)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        attachment = root / "capture.bin"
        with attachment.open("wb") as handle:
            for _ in range(args.mib):
                handle.write(os.urandom(1 << 20))
        document = example_submission()
        document["attachments"][0]["name"] = attachment.name
        assessment = root / "assessment.json"
        assessment.write_text(json.dumps(document))
        results: dict[str, list[tuple[float, int]]] = {"pcii submit": [], "AWS ESDK stream": []}
        for run in range(args.runs):
            submit = [PCII, "--as", str(owner), "--json", "submit", str(assessment)]
            results["pcii submit"].append(timed([*submit, "--attach", str(attachment)], env))
            sink = root / f"sdk-{run}.out"
            results["AWS ESDK stream"].append(
                timed([sys.executable, "-c", SDK, str(attachment), str(sink)], env)
            )
            sink.unlink()
        print(
            f"end to end, {args.mib} MiB attachment, {args.runs} runs alternating, "
            f"python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}"
        )
        rates = {}
        for name, values in results.items():
            seconds = statistics.median(v[0] for v in values)
            rates[name] = size / seconds / 1e6
            peak = max(v[1] for v in values) / 1024
            print(
                f"  {name:16} median {seconds:6.2f} s  {rates[name]:7.1f} MB/s  "
                f"peak RSS {peak:6.1f} MiB"
            )
        print(f"  ratio: {rates['pcii submit'] / rates['AWS ESDK stream']:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
