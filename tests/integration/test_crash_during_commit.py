"""Kill -9 during a batch commit: nothing claimed is lost, nothing illegal appears.

A child process opens the vault the way a server would (`Vault(root, unseal=...)`, one
object shared by many threads) and runs concurrent acts through the group commit:
registering principals and validating records prepared beforehand. It prints one line
per act once the act returned (its events are durable then). The parent kills it with
SIGKILL at a random moment, so the kill lands before, inside or after a claim, a tile
write, a checkpoint install, a history write, a claim cleanup or an index update.

After every kill the parent opens the vault, performs one more act (which commits any
claim the dead writer left above the checkpoint) and checks that:
- the full verification passes (signatures, tree, tiles and the strict legal history);
- the projection holds no illegal event (`Vault.illegal_events() == []`);
- every claim the dead writer left above the checkpoint is now in the log, entry for
  entry at the position it claimed;
- every act the child reported as completed is in the log (a registration event for
  each reported principal, a validation event for each reported record);
- no claim object remains under `log/claims/` below the checkpoint.

Rounds: `PCII_CRASH_ROUNDS` (default 20 to keep `make test` in budget; 50 is the full
run); the seed of the kill delays is printed so a failing round can be replayed
(`PCII_CRASH_SEED`).
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
from typing import Any

import pytest
from vault_support import VaultBench

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.ledger.log import decode_claim
from pcii_vault.models.principal import PrincipalAttributes
from pcii_vault.vault import Vault, principal_params

pytestmark = [pytest.mark.slow]

SECRET = b"crash-during-commit-secret"
ROUNDS = int(os.environ.get("PCII_CRASH_ROUNDS", "20"))
SEED = int(os.environ.get("PCII_CRASH_SEED", str(random.SystemRandom().randrange(2**32))))
ADDS_PER_ROUND = 400  # more than the child finishes before the latest kill
RECORDS = 120  # prepared records the children validate, a few per round
THREADS = 16
MAX_KILL_DELAY = 0.8  # seconds after the child reported "ready"
READY_TIMEOUT = 60.0
CLAIMS = "log/claims/"

# The child: one Vault object, THREADS requesters, one stdout line per completed act.
CHILD = r"""
import json, os, sys, threading
from pathlib import Path
from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.ledger.log import decode_claim
from pcii_vault.errors import VaultError
from pcii_vault.identity import Identity
from pcii_vault.models.principal import PrincipalAttributes
from pcii_vault.vault import Vault, principal_params

plan = json.loads(sys.argv[1])
secret = plan["secret"].encode()
vault = Vault(Path(plan["root"]), unseal=lambda: secret)
ids = {
    name: Identity(plan["vault_id"], name, Ed25519PrivateKey(bytes.fromhex(seed)))
    for name, seed in plan["ids"].items()
}
vault.sync()
work = [("validate", t) for t in plan["validate"]] + [("add", n) for n in plan["add"]]
work.reverse()
lock = threading.Lock()
attributes = PrincipalAttributes(role="auditor", organisation="IG", level="federal")
key = Ed25519PrivateKey(b"\x22" * 32)

def report(line):
    os.write(1, (line + "\n").encode())  # unbuffered: survives SIGKILL once written

def requester():
    while True:
        with lock:
            if not work:
                return
            what, arg = work.pop()
        try:
            if what == "add":
                request = vault.sign(
                    ids["admin"], "manage-principals",
                    params=principal_params(arg, attributes, key.public_key),
                )
                vault.add_principal(request, arg, attributes, key.public_key)
            else:
                request = vault.sign(ids["office"], "validate", record=arg)
                vault.transition(request, "submission.validated")
        except VaultError as exc:
            report(f"refused {what} {arg} {type(exc).__name__}")
            continue
        report(f"done {what} {arg}")

report("ready")
threads = [threading.Thread(target=requester) for _ in range(plan["threads"])]
for t in threads:
    t.start()
for t in threads:
    t.join()
vault.close()
report("finished")
"""


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PCII_", "AWS_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def _run_and_kill(plan: dict[str, Any], out: Path, delay: float) -> list[str]:
    """Start the child, SIGKILL it `delay` s after it is ready; return its stdout lines."""
    with out.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(plan)],
            stdout=sink,
            stderr=subprocess.PIPE,
            env=_child_env(),
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while b"ready" not in out.read_bytes():
                if child.poll() is not None:
                    stderr = child.stderr.read().decode() if child.stderr else ""
                    pytest.fail(f"child exited {child.returncode} before ready:\n{stderr}")
                if time.monotonic() > deadline:
                    pytest.fail("child not ready in time")
                time.sleep(0.01)
            time.sleep(delay)
        finally:
            # SIGKILL the child's whole session; nothing it started may outlive the round.
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            if child.stderr is not None:
                child.stderr.close()
    return out.read_text().splitlines()


def _register(vault: Vault, bench: VaultBench, name: str) -> None:
    """One more act by the parent: its commit takes along the dead writer's claims."""
    key = Ed25519PrivateKey.generate()
    attributes = PrincipalAttributes(role="auditor", organisation="IG", level="federal")
    request = vault.sign(
        bench.ids["admin"],
        "manage-principals",
        params=principal_params(name, attributes, key.public_key),
    )
    vault.add_principal(request, name, attributes, key.public_key)


def _claims_above_checkpoint(vault: Vault) -> dict[int, list[bytes]]:
    """The entries of every claim the dead writer left above the checkpoint, by position."""
    committed = vault.reader().size()
    verifier = vault.log_public_key
    return {
        pos: decode_claim(vault.store.get(info.key), pos, verifier)
        for info in vault.store.list(CLAIMS)
        if (pos := _claim_position(info.key)) >= committed
    }


def _claim_position(key: str) -> int:
    """The first log position a claim object (`log/claims/<20 digits>`) claims."""
    return int(key.removeprefix(CLAIMS))


def _logged(vault: Vault) -> tuple[int, set[str], set[str]]:
    """The log's size, registered principals and validated records (from the log)."""
    reader = vault.reader()
    size = reader.size()
    principals: set[str] = set()
    validated: set[str] = set()
    for event in reader.events(0, size):
        if event.type == "principal.registered":
            principals.add(event.details["principal"]["id"])
        elif event.type == "submission.validated" and event.record is not None:
            validated.add(event.record)
    return size, principals, validated


def test_kill_9_during_batch_commits_loses_nothing_claimed(tmp_path: Path) -> None:
    """50 SIGKILLs of a batching writer: the log stays complete, verified and legal."""
    print(f"PCII_CRASH_SEED={SEED}")  # noqa: T201 -- replays the kill delays
    rng = random.Random(SEED)
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional crash test\n")
    records = [bench.submit_receipt(attach=False).tracking_number for _ in range(RECORDS)]
    ids = {name: ident.key.seed.hex() for name, ident in bench.ids.items()}
    vault_id = bench.vault.config.vault_id
    root = bench.root / "vault"
    bench.vault.close()

    to_validate = list(records)
    per_round = max(1, RECORDS // max(ROUNDS, 1))
    killed_mid_work = 0
    left_claims = 0  # rounds whose dead writer left an uncommitted claim for the parent
    for round_no in range(ROUNDS):
        plan = {
            "root": str(root),
            "secret": SECRET.decode(),
            "vault_id": vault_id,
            "ids": ids,
            "threads": THREADS,
            "validate": to_validate[:per_round],
            "add": [f"r{round_no}-p{i}" for i in range(ADDS_PER_ROUND)],
        }
        lines = _run_and_kill(
            plan, tmp_path / f"child-{round_no}.out", rng.uniform(0, MAX_KILL_DELAY)
        )
        reported = [line.split() for line in lines if line.startswith("done ")]
        killed_mid_work += "finished" not in lines

        vault = Vault(root, unseal=lambda: SECRET)
        try:
            claimed = _claims_above_checkpoint(vault)
            left_claims += bool(claimed)
            _register(vault, bench, f"parent-{round_no}")
            context = f"round {round_no} (PCII_CRASH_SEED={SEED})"
            assert vault.illegal_events() == [], context
            size, principals, validated = _logged(vault)
            reader = vault.reader()
            for pos, entries in claimed.items():
                logged_entries = list(reader.entries(pos, pos + len(entries)))
                assert logged_entries == entries, f"{context}: the claim at {pos} was lost"
            for _, what, arg in reported:
                logged = principals if what == "add" else validated
                assert arg in logged, f"{context}: completed {what} {arg} is not in the log"
            stale = [
                info.key for info in vault.store.list(CLAIMS) if _claim_position(info.key) < size
            ]
            assert stale == [], f"{context}: claims below the checkpoint {size}: {stale}"
        finally:
            vault.close()
        report = bench.audit()
        assert report.size >= size, context
        to_validate = [t for t in to_validate if t not in validated]

    print(f"{killed_mid_work} kills hit a busy writer; {left_claims} left a claim")  # noqa: T201
    # The kills must hit a working writer, not one that had already finished, and some
    # must land between a claim and its commit (about a third of them do).
    assert killed_mid_work >= ROUNDS // 2, f"only {killed_mid_work} kills hit a busy writer"
    if ROUNDS >= 20:
        assert left_claims > 0, "no kill landed between a claim and its commit"
