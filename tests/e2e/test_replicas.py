"""Three `pcii serve` replicas of one vault on one SeaweedFS bucket, under concurrent load.

A vault is created on S3; its directory (configuration, sealed keyring, policies; the
log checkpoint for one replica, not for the other; never the index) is copied twice, and
three servers serve the three directories at once. Clients act through the CLI on all of
them at the same time: submissions spread over the replicas, conflicting pairs sent to
different replicas (the office validating a record on one while its owner withdraws it
on another; one principal registered twice through two). Afterwards there is one log
that verifies, every successful act is in it exactly once and no refused one is, each
conflicting pair has one winner, no replica's anchored checkpoint disagrees with the
store, and every replica's index has caught up by itself and is the projection of the
log. A replica whose directory holds no index rebuilds it from the verified log when it
starts; a principal registered through one replica acts through another at once.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from seaweed import SeaweedServer

from pcii_vault.index import TRANSITION_ACTIONS, Index
from pcii_vault.models.event import Event
from pcii_vault.vault import Vault
from tests.e2e.conftest import LOCAL_COMMANDS, SECRET, TRAINED, Cli, Result, VaultServer

pytestmark = [pytest.mark.s3, pytest.mark.slow]

VALIDATED, WITHDRAWN = "submission.validated", "submission.withdrawn"
ANALYST = ("--sector", "Water and Wastewater Systems", "--training-expires", TRAINED)


def copy_replica(source: Path, target: Path, *, anchor: bool) -> None:
    """What a new replica's directory needs from an existing one.

    The public configuration, the sealed keyring (the same unseal secret opens it) and
    the policies. The index (index.sqlite*) is a cache of the log: never copied, the
    replica rebuilds it from the verified log at start. The log checkpoint may be copied
    (the replica then refuses a store rolled back behind it) or not (it trusts the
    store's signed checkpoint on first use). Each replica makes its own TLS certificate.
    """
    target.mkdir(mode=0o700)
    for name in ("vault.json", "keyring.sealed"):
        shutil.copy2(source / name, target / name)
    shutil.copytree(source / "policies", target / "policies")
    if anchor:
        shutil.copy2(source / "log-checkpoint", target / "log-checkpoint")


class ReplicaCli(Cli):
    """The CLI of a vault on S3; users' commands go to one of its replicas."""

    def __init__(self, root: Path, seaweed: SeaweedServer, bucket: str) -> None:
        super().__init__(root)
        self.store = f"s3://{bucket}/vault"
        self.env.update(seaweed.aws_environment(root))
        self.servers: list[VaultServer] = []

    def init(self) -> None:
        admin_key = str(self.key("admin"))
        self.ok("init", "--insecure-fast-kdf", "--store", self.store, "--admin-key-out", admin_key)

    def environment(self, args: tuple[str, ...]) -> dict[str, str]:
        """A user's command holds no unseal secret and no store credentials."""
        command = next((a for a in args if not a.startswith("-")), None)
        if command is None or command in LOCAL_COMMANDS:
            return self.env
        return {k: v for k, v in self.env.items() if not k.startswith(("AWS_", "PCII_UNSEAL"))}

    def serve(self, *directories: Path) -> list[VaultServer]:
        """Start a server on each directory, at once."""
        with ThreadPoolExecutor(len(directories)) as pool:
            started = list(
                pool.map(
                    lambda d: VaultServer(d, self.env, self.root / f"{d.name}.log"), directories
                )
            )
        self.servers += started
        return started

    def on(self, server: VaultServer, *args: str, who: str) -> Result:
        """`pcii --vault https://... --ca CERT --as KEY --json ARGS`."""
        return self.run("--json", *args, who=who, env=_client_of(server))

    def add_on(
        self, server: VaultServer, name: str, role: str, *extra: str, key: Path | None = None
    ) -> Result:
        """`pcii principal add` through `server`, as the admin."""
        key_out = str(key or self.key(name))
        return self.on(
            server, "principal", "add", name, "--role", role, "--key-out", key_out, *extra,
            who="admin",
        )  # fmt: skip

    def stop(self) -> None:
        for server in self.servers:
            server.process.terminate()
        for server in self.servers:
            server.stop()
        self.servers.clear()


def _client_of(server: VaultServer) -> dict[str, str]:
    return {"PCII_VAULT": server.url, "PCII_CA": str(server.ca)}


def _parallel(calls: list[Callable[[], Result]]) -> list[Result]:
    """Run CLI processes at once (six at a time), in the order given."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(lambda call: call(), calls))


def _codes(results: list[Result]) -> list[int]:
    return [r.code for r in results]


def _index_size(directory: Path) -> int:
    """The index's size as its file says, read-only (while its server runs)."""
    uri = f"file:{directory / 'index.sqlite'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        row = db.execute("SELECT value FROM meta WHERE key='size'").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def replicas(
    tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ReplicaCli]:
    cli = ReplicaCli(tmp_path, seaweed, s3_bucket)
    for name, value in seaweed.aws_environment(tmp_path).items():  # for in-process reads
        monkeypatch.setenv(name, value)
    try:
        yield cli
    finally:
        cli.stop()


def _log(directory: Path) -> list[Event]:
    """The whole log as the directory's vault reads and verifies it."""
    vault = Vault(directory, unseal=SECRET.encode)
    try:
        reader = vault.reader()
        return list(reader.events(0, reader.size()))
    finally:
        vault.close()


# ----- the rounds of load --------------------------------------------------------------------


def _register_users(cli: ReplicaCli, a: VaultServer, b: VaultServer) -> None:
    results = _parallel(
        [
            lambda: cli.add_on(
                a,
                "owner",
                "owner",
                "--org",
                "Riverbend Municipal Water Authority",
                "--level",
                "private",
            ),
            lambda: cli.add_on(b, "office", "office", "--training-expires", TRAINED),
        ]
    )
    assert _codes(results) == [0, 0], [r.err for r in results]


def _submit_and_register_twice(
    cli: ReplicaCli, a: VaultServer, b: VaultServer, documents: list[str]
) -> list[dict[str, Any]]:
    """Three submissions over two replicas, and one analyst registered through both."""
    keys = {server.port: cli.keys / f"analyst-via-{server.port}.key" for server in (a, b)}
    calls = [
        (lambda s=s, doc=doc: cli.on(s, "submit", doc, who="owner"))
        for s, doc in zip((a, b, a), documents, strict=True)
    ]
    calls += [
        (lambda s=s: cli.add_on(s, "analyst", "analyst", *ANALYST, key=keys[s.port]))
        for s in (a, b)
    ]
    results = _parallel(calls)
    assert _codes(results[:3]) == [0] * 3, [r.err for r in results[:3]]
    # One registration wins; the other is refused and leaves no key file behind.
    registrations = dict(zip((a.port, b.port), results[3:], strict=True))
    assert sorted(_codes(results[3:])) == [0, 2], [r.err for r in results[3:]]
    for port, result in registrations.items():
        assert keys[port].exists() == (result.code == 0), result.err
        if result.code == 0:
            keys[port].rename(cli.key("analyst"))
    return [r.json() for r in results[:3]]


def _conflicting_pairs(
    cli: ReplicaCli, servers: list[VaultServer], trackings: list[str], document: str
) -> tuple[dict[tuple[str, str], Result], dict[str, Any]]:
    """The office validates each record through one replica while its owner withdraws
    it through the next; one more submission; the analyst searches through the third."""
    calls: list[Callable[[], Result]] = []
    for n, tracking in enumerate(trackings):
        validator, withdrawer = servers[n % 3], servers[(n + 1) % 3]
        calls.append(lambda s=validator, t=tracking: cli.on(s, "validate", t, who="office"))
        calls.append(lambda s=withdrawer, t=tracking: cli.on(s, "withdraw", t, who="owner"))
    calls.append(lambda: cli.on(servers[2], "submit", document, who="owner"))
    calls.append(lambda: cli.on(servers[2], "search", who="analyst"))
    results = _parallel(calls)
    outcomes = {
        (tracking, kind): results[2 * n + i]
        for n, tracking in enumerate(trackings)
        for i, kind in enumerate((VALIDATED, WITHDRAWN))
    }
    for tracking in trackings:
        codes = sorted(outcomes[tracking, kind].code for kind in (VALIDATED, WITHDRAWN))
        # The loser is refused: illegal in the winner's state (2), its denial logged (3).
        assert codes[0] == 0 and codes[1] in {2, 3}, (tracking, codes)
    submitted, searched = results[-2:]
    assert _codes([submitted, searched]) == [0, 0], (submitted.err, searched.err)
    return outcomes, submitted.json()


# ----- the test ---------------------------------------------------------------------------


def test_three_replicas_on_one_bucket_keep_one_log(replicas: ReplicaCli, tmp_path: Path) -> None:
    cli = replicas
    cli.init()
    first, second, third = cli.vault, tmp_path / "replica-b", tmp_path / "replica-c"
    copy_replica(first, second, anchor=True)
    copy_replica(first, third, anchor=False)
    a, b = cli.serve(first, second)
    documents = [str(cli.write_submission(f"s{n}.json", attachments=[])) for n in range(5)]

    # Users registered through one replica act through the other at once.
    _register_users(cli, a, b)
    receipts = _submit_and_register_twice(cli, a, b, documents[:3])

    # A third replica starts on a directory without an index: it rebuilds the index from
    # the verified log before it serves.
    assert not (third / "index.sqlite").exists()
    logged = len(_log(first))
    [c] = cli.serve(third)
    assert _index_size(third) >= logged

    trackings = [r["tracking_number"] for r in receipts]
    outcomes, receipt = _conflicting_pairs(cli, [a, b, c], trackings, documents[3])
    receipts.append(receipt)

    # A principal suspended through one replica is refused through another at once.
    suspended = cli.on(c, "principal", "update", "owner", "--status", "suspended", who="admin")
    assert suspended.code == 0, suspended.err
    refused = cli.on(a, "submit", documents[4], who="owner")
    assert refused.code == 3, refused.err

    # One log, sound: signatures, tree, history, a legal lifecycle, decisions replayed.
    verified = cli.ok("audit", "verify").json()
    assert verified["sound"] is True, verified
    events = _log(first)
    # Every successful act is in it exactly once, and no refused one is.
    received = Counter(e.record for e in events if e.type == "submission.received")
    assert received == Counter(r["tracking_number"] for r in receipts)
    for receipt in receipts:
        assert events[receipt["log_index"]].record == receipt["tracking_number"]
    for (tracking, kind), result in outcomes.items():
        count = sum(1 for e in events if e.type == kind and e.record == tracking)
        assert count == (1 if result.code == 0 else 0), (tracking, kind, result.err)
        action = TRANSITION_ACTIONS[kind]
        denials = [e for e in events if e.type == "access.decided" and e.record == tracking]
        assert len([e for e in denials if e.action == action]) == (result.code == 3)
    registered = [e.details["principal"]["id"] for e in events if e.type == "principal.registered"]
    assert sorted(registered) == ["admin", "analyst", "office", "owner"]
    _assert_replicas_caught_up(cli, [first, second, third], events)


def _assert_replicas_caught_up(
    cli: ReplicaCli, directories: list[Path], events: list[Event]
) -> None:
    """Every replica's index follows the log by itself and is its projection; no
    replica's anchored checkpoint disagrees with the store (no fork)."""
    deadline = time.monotonic() + 5
    while any(_index_size(d) < len(events) for d in directories):
        assert time.monotonic() < deadline, [_index_size(d) for d in directories]
        time.sleep(0.05)
    cli.stop()
    projection = Index.in_memory()
    projection.apply_all(events, strict=False)
    try:
        for directory in directories:
            vault = Vault(directory, unseal=SECRET.encode)
            try:
                checkpoint = vault.reader().check_edge()  # against the directory's anchor
                assert checkpoint is not None and checkpoint.size == len(events)
                assert vault.index.size == len(events)
                vault.index.verify()
                assert vault.index.dump() == projection.dump(), directory
            finally:
                vault.close()
    finally:
        projection.close()
