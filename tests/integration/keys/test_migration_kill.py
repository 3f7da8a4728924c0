"""Migration interrupted by kill -9 at random points, then finished by running it again.

A child process opens the vault, says READY, and migrates its KEKs one step along
local -> SoftHSM2 -> OpenBao -> local (resuming an unfinished step first); the test
kills it with SIGKILL at a random moment. After every round the log is sound; at the
end every live record unwraps under the last provider and releases its attachment.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from key_servers import BaoServer, SoftHsm
from vault_support import VaultBench

from pcii_vault.crypto.envelope import RecordContext
from pcii_vault.keys.providers import open_kek_provider
from pcii_vault.vault import Vault

pytestmark = pytest.mark.slow

SECRET = b"kill-tests-unseal-secret"
ROUNDS = 20
RECORDS = 40

_CHILD = """
import json, sys
from pathlib import Path
from pcii_vault.identity import Identity
from pcii_vault.crypto.envelope import RecordContext
from pcii_vault.keys.providers import open_kek_provider
from pcii_vault.vault import Vault

root, admin_key, chain = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
vault = Vault(root, unseal=lambda: sys.argv[4].encode())
vault.sync()
migrated = vault.index.meta("key.migrated")
last = json.loads(migrated) if migrated else None
if last is not None and last["phase"] == "started":
    target = last["to"]
else:
    current = vault.current_kek_uri()
    target = chain[(chain.index(current) + 1) % len(chain)]
vault.keyring  # unseal and open the providers before saying READY
admin = Identity.load(admin_key)
request = vault.sign(admin, "rotate-keys", params={"op": "migrate", "to": target})
print("READY", flush=True)
done = vault.migrate_keys(request, target)
print("DONE", done.count, done.target, flush=True)
vault.close()
"""


def _run_child(
    bench: VaultBench, chain: list[str], env: dict[str, str], kill_after: float | None
) -> str:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(bench.vault.paths.root),
            str(bench.root / "admin.key"),
            json.dumps(chain),
            SECRET.decode(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("READY"):
            break
    if kill_after is not None:
        time.sleep(kill_after)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return "killed"
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


def _phase(bench: VaultBench) -> str | None:
    vault = Vault(bench.vault.paths.root, unseal=lambda: SECRET)
    try:
        vault.sync()
        migrated = vault.index.meta("key.migrated")
        return str(json.loads(migrated)["phase"]) if migrated else None
    finally:
        vault.close()


def test_migration_killed_at_random_points_finishes_with_every_record_readable(
    tmp_path: Path, softhsm: SoftHsm, bao: BaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in bao.env.items():
        monkeypatch.setenv(key, value)
    chain = ["local", softhsm.uri("killed"), bao.uri("killed")]
    env = {**os.environ, **bao.env}
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional kill " * 100)
    try:
        # The keys exist before the kills start: SoftHSM2's file store rewrites its token
        # file in place when it creates a key, and a SIGKILL in that moment can leave the
        # token unreadable ("not present"), seen here; that is SoftHSM2's limit, not ours.
        for uri in chain[1:]:
            open_kek_provider(uri, bench.vault.keyring.local, create=True).close()
        records = [bench.submit_receipt(attach=False).tracking_number for _ in range(RECORDS)]
    finally:
        bench.vault.close()
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    # One step run whole first: how long one takes on this machine now (a loaded one is
    # several times slower), so that the kills land inside the steps, not before them.
    began = time.monotonic()
    _run_child(bench, chain, env, kill_after=None)
    step = time.monotonic() - began
    killed_mid_migration = 0
    for round_number in range(2 * ROUNDS):
        if round_number >= ROUNDS and killed_mid_migration:
            break  # more rounds only while no kill has landed inside a step yet
        outcome = _run_child(bench, chain, env, kill_after=rng.uniform(0.0, step))
        killed_mid_migration += outcome == "killed" and _phase(bench) == "started"
    # Then run it to the end: the unfinished step completes, nothing is wrapped twice.
    _run_child(bench, chain, env, kill_after=None)
    # The test exercised interruption inside a migration, not only clean runs.
    assert killed_mid_migration > 0

    vault = Vault(bench.vault.paths.root, unseal=lambda: SECRET)
    try:
        vault.sync()
        last = json.loads(vault.index.meta("key.migrated") or "{}")
        assert last["phase"] == "finished"
        custody = vault.keyring
        for tracking in records:
            blob = vault.store.get(f"wrapped/{tracking}")
            assert custody.owns(blob), tracking
            context = RecordContext(vault.config.vault_id, tracking).to_bytes()
            assert len(custody.unwrap(blob, context)) == 32
        bench.vault = vault
        assert bench.audit().size > RECORDS
    finally:
        vault.close()
