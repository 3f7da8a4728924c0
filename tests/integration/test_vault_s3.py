"""The PCII lifecycle through the real CLI on an S3 store (a real SeaweedFS server).

`pcii init --store s3://BUCKET/PREFIX` with only the standard AWS environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3, AWS_REGION) in the
subprocess: then register users, submit with an attachment, validate, retrieve, verify
the log and probe the store. The vault directory keeps only configuration, the sealed
keyring, the index and the policies; every record object and the log live in the bucket.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pypdf
import pytest
from cli_process import run_pcii
from seaweed import SeaweedServer

from pcii_vault.models.submission import example_attachment_bytes, example_submission

pytestmark = [pytest.mark.s3, pytest.mark.slow]
# PCII training is renewed yearly: the vault refuses an expiry more than a year away.
TRAINED = (date.today() + timedelta(days=300)).isoformat()

SECRET = "s3-lifecycle-unseal-secret"  # noqa: S105 -- a throw-away test vault
PREFIX = "vaults/riverbend"


class S3Cli:
    """Runs `python -m pcii_vault` with the vault directory and the AWS environment."""

    def __init__(self, root: Path, seaweed: SeaweedServer) -> None:
        self.root = root
        self.vault = root / "vault"
        self.keys = root / "keys"
        self.keys.mkdir(mode=0o700)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PCII_", "AWS_"))}
        self.env.update(PCII_VAULT=str(self.vault), PCII_UNSEAL_SECRET=SECRET)
        # No stray profile or config file may decide where the vault writes.
        self.env.update(seaweed.aws_environment(root))

    def key(self, who: str) -> Path:
        return self.keys / f"{who}.key"

    def ok(self, *args: str, who: str | None = None) -> Any:
        identity = ["--as", str(self.key(who))] if who else []
        done = run_pcii(["--json", *identity, *args], env=self.env)
        assert done.returncode == 0, f"pcii {' '.join(args)} -> {done.returncode}: {done.stderr}"
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        return lines[0] if len(lines) == 1 else lines


def test_lifecycle_on_an_s3_store(tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str) -> None:
    cli = S3Cli(tmp_path, seaweed)
    store_url = f"s3://{s3_bucket}/{PREFIX}"
    init = cli.ok(
        "init",
        "--insecure-fast-kdf",
        "--store",
        store_url,
        "--admin-key-out",
        str(cli.key("admin")),
    )
    assert init["store"] == store_url

    cli.ok(
        "principal", "add", "owner", "--role", "owner", "--level", "private",
        "--org", "Riverbend Municipal Water Authority", "--key-out", str(cli.key("owner")),
        who="admin",
    )  # fmt: skip
    cli.ok(
        "principal", "add", "office", "--role", "office", "--org", "PCII Program Office",
        "--training-expires", TRAINED, "--key-out", str(cli.key("office")),
        who="admin",
    )  # fmt: skip
    cli.ok(
        "principal", "add", "analyst", "--role", "analyst", "--org", "EPA Water Security",
        "--sector", "Water and Wastewater Systems", "--training-expires", TRAINED,
        "--key-out", str(cli.key("analyst")),
        who="admin",
    )  # fmt: skip

    assessment = tmp_path / "assessment.json"
    assessment.write_text(json.dumps(example_submission()))
    attachment = tmp_path / "riverbend-scada-assessment.pdf"
    attachment.write_bytes(example_attachment_bytes())
    receipt = tmp_path / "receipt.json"
    submitted = cli.ok(
        "submit", str(assessment), "--attach", str(attachment), "--receipt-out", str(receipt),
        who="owner",
    )  # fmt: skip
    tracking = submitted["tracking_number"]
    assert cli.ok("receipt", "verify", str(receipt))["verified"] is True

    assert cli.ok("validate", tracking, who="office")["state"] == "validated"
    out = tmp_path / "release"
    got = cli.ok("get", tracking, "--purpose", "drought planning", "--out", str(out), who="analyst")
    released = Path(got["directory"]) / "attachments" / attachment.name
    # The PDF comes back stamped: the original's pages plus the marking first page.
    assert len(pypdf.PdfReader(released).pages) == len(pypdf.PdfReader(attachment).pages) + 1
    assert "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION" in (
        pypdf.PdfReader(released).pages[1].extract_text()
    )

    assert cli.ok("audit", "verify")["legal_history"] is True
    checks = cli.ok("store", "check")
    assert all(row["result"] in {"ok", "n/a"} for row in checks), checks

    # Every record object and the log are in the bucket, under the prefix.
    client = seaweed.client()
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix=f"{PREFIX}/")
    keys = {item["Key"] for item in listed.get("Contents", [])}
    assert f"{PREFIX}/records/{tracking}/document" in keys
    assert f"{PREFIX}/records/{tracking}/files/0" in keys
    assert f"{PREFIX}/wrapped/{tracking}" in keys
    assert f"{PREFIX}/log/checkpoint" in keys
    # ... and the stored attachment is ciphertext.
    stored = client.get_object(Bucket=s3_bucket, Key=f"{PREFIX}/records/{tracking}/files/0")
    assert attachment.read_bytes()[:64] not in stored["Body"].read()

    # The vault directory keeps configuration, the sealed keyring, the index, policies.
    local = {p.relative_to(cli.vault).parts[0] for p in cli.vault.rglob("*")}
    assert not local & {"objects", "records", "wrapped", "log"}, local
    assert {"vault.json", "keyring.sealed", "index.sqlite", "policies"} <= local
    assert not any(attachment.read_bytes()[:64] in p.read_bytes() for p in _files(cli.vault))


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_maintenance_aborts_multipart_uploads_a_killed_writer_left(
    tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str
) -> None:
    """A tester's finding: a replica killed with `kill -9` during a large submit left an
    unfinished multipart upload (88 MiB of parts) that maintenance never found."""
    cli = S3Cli(tmp_path, seaweed)
    cli.ok("init", "--insecure-fast-kdf", "--store", f"s3://{s3_bucket}/{PREFIX}",
           "--admin-key-out", str(cli.key("admin")))  # fmt: skip
    client = seaweed.client()
    ours = f"{PREFIX}/records/PCII-2026-00000042/files/0"
    theirs = "vaults/another/records/PCII-2026-00000042/files/0"  # another vault's prefix
    for key in (ours, theirs):
        started = client.create_multipart_upload(Bucket=s3_bucket, Key=key)
        client.upload_part(Bucket=s3_bucket, Key=key, UploadId=started["UploadId"],
                           PartNumber=1, Body=b"\0" * (5 << 20))  # fmt: skip

    def unfinished() -> list[str]:
        listed = client.list_multipart_uploads(Bucket=s3_bucket)
        return sorted(upload["Key"] for upload in listed.get("Uploads", []))

    young = cli.ok("maintenance", "--dry-run")  # within the grace period: an upload in flight
    assert not any("unfinished" in item for item in young["leftovers"])
    listed = cli.ok("maintenance", "--dry-run", "--grace-hours", "0")
    assert listed["leftovers"] == [
        "records/PCII-2026-00000042/files/0 (unfinished multipart upload)"
    ]
    assert unfinished() == sorted([ours, theirs])
    done = cli.ok("maintenance", "--grace-hours", "0")
    assert done["leftovers"] == listed["leftovers"] and done["kept"] == []
    assert unfinished() == [theirs]
    client.abort_multipart_upload(
        Bucket=s3_bucket,
        Key=theirs,
        UploadId=client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"][0]["UploadId"],
    )
