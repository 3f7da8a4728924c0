"""`pcii serve --workers N`: several serving processes on one address, as users meet them.

Real `pcii serve` processes on 127.0.0.1, stopped by PID. The workers share what
replicas share (the vault directory and the store), so a conflicting pair sent to two
of them has exactly one winner; SIGTERM stops them all gracefully; a worker killed
while serving is replaced; the server refuses a worker count it cannot honour.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from vault_support import run_concurrently

from pcii_vault.client import Client
from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import VaultError
from pcii_vault.identity import Identity
from pcii_vault.models.principal import PrincipalAttributes
from pcii_vault.models.request import sign_request
from pcii_vault.service.httpsig import RequestSigner, content_digest
from pcii_vault.service.tls import client_context
from pcii_vault.service.transport import HttpTransport
from tests.e2e.conftest import (
    ServerCli,
    VaultServer,
    free_port,
    init_split,
    stop_during_submissions,
)

pytestmark = pytest.mark.slow

WORKERS = 2
ROUNDS = int(os.environ.get("PCII_CONFLICT_ROUNDS", "24"))
LOAD_THREADS, LOAD_ROUNDS = 8, 40


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[ServerCli]:
    """A vault with an owner, served by two worker processes; stopped afterwards."""
    cli = ServerCli(tmp_path)
    cli.init()
    cli.server = VaultServer(
        cli.vault, cli.env, tmp_path / "serve.log", extra=("--workers", str(WORKERS))
    )
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    try:
        yield cli
    finally:
        cli.close()


def _client(cli: ServerCli, who: str) -> Client:
    assert cli.server is not None
    identity = Identity.load(cli.key(who))
    return Client(HttpTransport(cli.server.url, ca=cli.server.ca, identity=identity), identity)


def _pids(log: Path) -> set[int]:
    """The processes that wrote access lines."""
    pids: set[int] = set()
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a worker killed (or still writing) part-way through its line
            if entry.get("event") == "access":
                pids.add(int(entry["pid"]))
    return pids


def _alive(pid: int) -> bool:
    """Running (a zombie that nobody reaped yet has stopped serving: not alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _register_twice(cli: ServerCli, principal_id: str) -> list[str]:
    """The same principal added by two admins' connections at once: each outcome."""
    attributes = PrincipalAttributes(
        role="auditor", organisation="Inspector General", level="federal"
    )
    key = Ed25519PrivateKey.generate().public_key.raw
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def register() -> None:
        client = _client(cli, "admin")
        try:
            start.wait()
            client.add_principal(principal_id, attributes, key)
            outcomes.append("ok")
        except VaultError as exc:
            outcomes.append(f"{exc.exit_code}: {exc}")
        finally:
            client.close()

    run_concurrently([register] * 2)
    return outcomes


def test_workers_share_the_address_and_one_of_two_conflicting_acts_wins(cli: ServerCli) -> None:
    assert cli.server is not None
    for round_ in range(ROUNDS):
        outcomes = _register_twice(cli, f"auditor-{round_}")
        # Exactly one registration wins; the other is refused in one line (exit 2 or 3).
        assert outcomes.count("ok") == 1, (round_, outcomes)
        [refused] = [o for o in outcomes if o != "ok"]
        assert refused.split(":")[0] in {"2", "3"} and "\n" not in refused, refused
    # Both workers answered (the kernel hands connections to either).
    assert len(_pids(cli.server.log)) == WORKERS, _pids(cli.server.log)
    verified = cli.ok("audit", "verify").json()
    assert verified["sound"] is True
    # Every principal once, from the verified projection.
    listed = [p["id"] for p in cli.ok("principal", "list", who="admin").lines()]
    assert sorted(p for p in listed if p.startswith("auditor-")) == sorted(
        f"auditor-{n}" for n in range(ROUNDS)
    )
    registered = cli.ok("audit", "log", "--type", "principal.registered").lines()
    assert len(registered) == len(listed)


def test_workers_under_load_never_report_a_race_as_tampering(cli: ServerCli) -> None:
    """Acts and reads at once through both workers: each one answered, none exit 4.

    Both processes apply the log to the one index; a batch built on a log tip that the
    other worker has already passed is built again, and a catch-up never mistakes the
    other's progress for a rollback.
    """
    assert cli.server is not None
    attributes = PrincipalAttributes(
        role="auditor", organisation="Inspector General", level="federal"
    )
    failures: list[str] = []

    def register(thread: int) -> None:
        client = _client(cli, "admin")
        try:
            for n in range(LOAD_ROUNDS):
                key = Ed25519PrivateKey.generate().public_key.raw
                client.add_principal(f"load-{thread}-{n}", attributes, key)
        except VaultError as exc:
            failures.append(f"{exc.exit_code}: {exc}")
        finally:
            client.close()

    def look(_thread: int) -> None:
        client = _client(cli, "owner")
        try:
            for _ in range(LOAD_ROUNDS):
                client.identify()
        except VaultError as exc:
            failures.append(f"{exc.exit_code}: {exc}")
        finally:
            client.close()

    run_concurrently(
        [functools.partial(register, n) for n in range(LOAD_THREADS)]
        + [functools.partial(look, n) for n in range(LOAD_THREADS)]
    )
    assert not failures, failures
    assert len(_pids(cli.server.log)) == WORKERS
    assert cli.ok("audit", "verify").json()["sound"] is True
    listed = {p["id"] for p in cli.ok("principal", "list", who="admin").lines()}
    assert {f"load-{t}-{n}" for t in range(LOAD_THREADS) for n in range(LOAD_ROUNDS)} <= listed


def test_a_message_replayed_to_another_worker_is_refused(cli: ServerCli) -> None:
    """The workers share the nonces they accepted: a replay fails on every worker."""
    assert cli.server is not None
    identity = Identity.load(cli.key("owner"))
    url = f"{cli.server.url}/v1/identify"
    for _ in range(ROUNDS):
        body = json.dumps(
            {
                "request": sign_request(
                    identity.key,
                    vault=identity.vault_id,
                    principal=identity.principal,
                    action="identify",
                    now=datetime.now(UTC),
                ).model_dump(mode="json")
            }
        ).encode()
        headers = RequestSigner(identity.principal, identity.key).headers(
            "POST", url, body_digest=content_digest(body)
        )
        statuses = []
        for _ in range(4):  # a new connection each time: either worker may answer
            with httpx.Client(verify=client_context(cli.server.ca), timeout=30) as http:
                response = http.post(
                    url, content=body, headers={**headers, "content-type": "application/json"}
                )
                statuses.append(response.status_code)
        assert statuses == [200, 401, 401, 401], statuses
    assert len(_pids(cli.server.log)) == WORKERS


def test_sigterm_stops_every_worker_gracefully(cli: ServerCli) -> None:
    server = cli.server
    assert server is not None
    workers: set[int] = set()
    code, _ = stop_during_submissions(cli, before_stop=lambda: workers.update(_pids(server.log)))
    assert code == 0, server.log.read_text()[-2000:]
    assert workers and not [pid for pid in workers if _alive(pid)], workers


def _every_worker_answered(cli: ServerCli, server: VaultServer) -> set[int]:
    """New connections until each worker has answered one; their pids."""
    deadline = time.monotonic() + 30
    while len(_pids(server.log)) < WORKERS and time.monotonic() < deadline:
        owner = _client(cli, "owner")
        try:
            owner.identify()
        finally:
            owner.close()
    workers = _pids(server.log)
    assert len(workers) == WORKERS, workers
    return workers


def _children(pid: int) -> set[int]:
    """Every process `pid` started (workers, multiprocessing's helpers)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def _assert_no_secret_in_environments(server: VaultServer) -> None:
    """Started with PCII_UNSEAL_SECRET set, the parent hands the secret over the spawn
    pipe: no process it starts (a replacement included) carries it in its environment
    (a tester's finding: every worker and multiprocessing's helper did)."""
    children = _children(server.process.pid)
    assert children
    for pid in children:
        assert b"PCII_UNSEAL_SECRET=" not in Path(f"/proc/{pid}/environ").read_bytes(), pid


def test_a_worker_killed_while_serving_is_replaced(cli: ServerCli) -> None:
    server = cli.server
    assert server is not None
    assert "PCII_UNSEAL_SECRET" in cli.env
    workers = _every_worker_answered(cli, server)
    assert workers <= _children(server.process.pid)
    _assert_no_secret_in_environments(server)
    victim = min(workers)
    owner = _client(cli, "owner")
    try:
        os.kill(victim, signal.SIGKILL)
        # The server keeps answering; a new worker takes the dead one's place.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            owner.close()
            owner = _client(cli, "owner")
            with contextlib.suppress(VaultError):  # a connection the dead worker held
                owner.identify()
            if len(_pids(server.log) - {victim}) == WORKERS:
                break
        assert len(_pids(server.log) - {victim}) == WORKERS, server.log.read_text()[-2000:]
        assert "worker_replaced" in server.log.read_text()
        _assert_no_secret_in_environments(server)
    finally:
        owner.close()
    assert server.stop() == 0
    cli.server = None
    assert cli.ok("audit", "verify").json()["sound"] is True


def test_a_worker_count_it_cannot_honour_is_refused(tmp_path: Path) -> None:
    cli = ServerCli(tmp_path)
    cli.init()
    for count in ("0", "65", "-1"):
        refused = cli.run("serve", "--listen", "127.0.0.1:1", "--workers", count)
        assert refused.code == 2, refused
        assert "--workers" in refused.err and len(refused.err.strip().splitlines()) == 1


def test_a_vault_sealed_by_shares_serves_one_worker(tmp_path: Path) -> None:
    cli = ServerCli(tmp_path)
    init_split(cli, tmp_path / "shares")
    refused = cli.run("serve", "--listen", "127.0.0.1:1", "--workers", "2")
    assert refused.code == 2, refused
    assert "sealed" in refused.err and len(refused.err.strip().splitlines()) == 1


def test_an_address_in_use_is_refused_in_one_line(cli: ServerCli) -> None:
    assert cli.server is not None
    taken = cli.run("serve", "--listen", f"127.0.0.1:{cli.server.port}")
    assert taken.code == 2, taken
    assert "cannot listen" in taken.err and len(taken.err.strip().splitlines()) == 1


def test_an_address_that_cannot_exist_is_named_and_the_pinned_pair_kept(cli: ServerCli) -> None:
    """A tester's finding: `--listen 999.1.1.1:PORT` said the pinned certificate does not
    name 999.1.1.1 (remove it); removed, the next start failed to bind but left a new
    pair naming that address."""
    pair = [cli.vault / "tls" / name for name in ("server-cert.pem", "server-key.pem")]
    pinned = [path.read_bytes() for path in pair]
    refused = cli.run("serve", "--listen", "999.1.1.1:8443")
    assert refused.code == 2, refused
    assert refused.err.startswith("pcii: error: cannot listen on 999.1.1.1:8443"), refused
    assert [path.read_bytes() for path in pair] == pinned
    for path in pair:  # as the message said before
        path.unlink()
    refused = cli.run("serve", "--listen", "999.1.1.1:8443")
    assert "cannot listen" in refused.err and not any(path.exists() for path in pair)
    for path, data in zip(pair, pinned, strict=True):
        path.write_bytes(data)
        path.chmod(0o600)


def test_workers_stop_when_their_parent_is_killed(cli: ServerCli) -> None:
    """A supervisor killed with SIGKILL leaves no worker serving the address alone."""
    server = cli.server
    assert server is not None
    workers = _every_worker_answered(cli, server)
    server.process.kill()
    server.process.wait()
    deadline = time.monotonic() + 45
    while [pid for pid in workers if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)], server.log.read_text()[-2000:]
    assert "worker_orphaned" in server.log.read_text()
    cli.server = None
    # The address is free again, and the log sound.
    assert cli.ok("audit", "verify").json()["sound"] is True


def _serve_in_own_group(
    cli: ServerCli, *extra: str
) -> tuple[subprocess.Popen[str], Path, dict[str, str]]:
    """`pcii serve` as a terminal starts it: its own process group; after its first line."""
    err = cli.root / "own-group.err"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pcii_vault",
            "--json",
            "serve",
            "--listen",
            f"127.0.0.1:{free_port()}",
            *extra,
        ],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=err.open("w"),
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, err.read_text()
    return process, err, json.loads(line)


def test_ctrl_c_stops_the_workers_and_exits_130_with_one_line(cli: ServerCli) -> None:
    """A tester's finding: Ctrl-C (SIGINT to the whole process group) gave a traceback
    per worker and exit 0. The parent decides: exit 130, one line, no worker left."""
    cli.close()
    process, err, started = _serve_in_own_group(cli, "--workers", str(WORKERS))
    try:
        with httpx.Client(verify=client_context(Path(started["certificate"]))) as http:
            deadline = time.monotonic() + 60
            answers = 0
            while answers < 8 and time.monotonic() < deadline:  # both workers up, likely
                assert process.poll() is None, err.read_text()[-2000:]
                with contextlib.suppress(httpx.HTTPError):
                    answers += http.get(f"{started['url']}/readyz").status_code == 200
                time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = err.read_text()
    assert "Traceback" not in text, text[-2000:]
    assert process.stdout is not None
    answer = [json.loads(line) for line in process.stdout.read().splitlines()]  # --json
    assert [a.get("error") for a in answer] == ["interrupted"], (answer, text[-2000:])


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.02, 0.04, 0.08])
def test_a_sigterm_just_after_start_stops_the_server(cli: ServerCli, delay: float) -> None:
    """A tester's finding: a SIGTERM soon after the `serving` line was swallowed while the
    HTTP server started, and the server ran on until a second one."""
    cli.close()
    process, err, _ = _serve_in_own_group(cli)
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code in {0, 143}, err.read_text()[-2000:]
