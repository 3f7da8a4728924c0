"""`pcii audit` on a copied log directory: verify (exit 0 / 4), prove, verify-proof, log, key."""

from __future__ import annotations

import json
import subprocess
import sys

from ledger_support import draft, ledger, replace, verifier

from pcii_vault.ledger.tiles import bundle_key, decode_bundle, encode_bundle
from pcii_vault.store.filesystem import FilesystemStore


def _pcii(*args):
    return subprocess.run(
        [sys.executable, "-m", "pcii_vault", *args], capture_output=True, text=True, check=False
    )


def test_audit_commands_on_a_log_directory(tmp_path):
    store = FilesystemStore(tmp_path)
    log = ledger(store)
    log.append([draft("c", i) for i in range(20)])
    key = verifier().key_string()
    common = ["--log", str(tmp_path), "--key", key]

    # These synthetic events are no vault's lifecycle: check the log's structure only.
    ok = _pcii("--json", "audit", "verify", "--structure-only", *common)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["size"] == 20

    out = tmp_path.parent / "proof.json"
    proved = _pcii("audit", "prove", "--index", "7", "--out", str(out), *common)
    assert proved.returncode == 0, proved.stderr
    checked = _pcii("--json", "audit", "verify-proof", str(out), "--key", key)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["index"] == 7

    listed = _pcii("--json", "audit", "log", "--record", "R-c-3", *common)
    assert [json.loads(line)["seq"] for line in listed.stdout.splitlines()] == [3]

    printed = _pcii("audit", "key", "--key", key)
    assert printed.stdout.strip() == key

    bundle = json.loads(out.read_text())
    bundle["index"] = 8
    out.write_text(json.dumps(bundle))
    assert _pcii("audit", "verify-proof", str(out), "--key", key).returncode == 4

    entries = decode_bundle(store.get(bundle_key(0, 20)), 20)
    entries[5] = entries[5].replace(b"R-c-5", b"R-c-9")
    replace(store, bundle_key(0, 20), encode_bundle(entries))
    bad = _pcii("audit", "verify", "--structure-only", *common)
    assert bad.returncode == 4
    assert "entry 5" in bad.stderr
