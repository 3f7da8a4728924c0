"""The CLI as a user runs it: `python -m pcii_vault ...` in a subprocess, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cli_process import run_pcii

from pcii_vault.models.submission import example_attachment_bytes, example_submission

if TYPE_CHECKING:
    from pcii_vault.identity import Identity
    from pcii_vault.models.request import SignedRequest

SECRET = "e2e-unseal-secret"  # noqa: S105 -- a throw-away test vault


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


class Cli:
    """Runs `pcii` against one vault directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.vault = root / "vault"
        self.keys = root / "keys"
        self.keys.mkdir(mode=0o700, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PCII_", "AWS_"))}
        self.env["PCII_VAULT"] = str(self.vault)
        self.env["PCII_UNSEAL_SECRET"] = SECRET

    def key(self, who: str) -> Path:
        return self.keys / f"{who}.key"

    def run(
        self,
        *args: str,
        who: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> Result:
        identity = ["--as", str(self.key(who))] if who else []
        done = run_pcii(
            [*identity, *args], env={**self.environment(args), **(env or {})}, stdin=stdin
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def environment(self, _args: tuple[str, ...]) -> dict[str, str]:
        """What a command runs with: the vault directory and its unseal secret."""
        return self.env

    def ok(self, *args: str, who: str | None = None) -> Result:
        result = self.run("--json", *args, who=who)
        assert result.code == 0, f"pcii {' '.join(args)} -> {result.code}: {result.err}{result.out}"
        return result

    def init(self) -> None:
        self.ok("init", "--insecure-fast-kdf", "--admin-key-out", str(self.key("admin")))

    def add(self, name: str, role: str, *extra: str) -> None:
        self.ok(
            "principal",
            "add",
            name,
            "--role",
            role,
            "--key-out",
            str(self.key(name)),
            *extra,
            who="admin",
        )

    def add_water_analyst(self, name: str, *extra: str) -> None:
        """An analyst of the water sector, trained and under NDA, with `extra` options."""
        self.add(
            name,
            "analyst",
            *extra,
            "--sector",
            WATER,
            "--training-expires",
            TRAINED,
            "--nda-signed",
            "2026-01-01",
        )

    def add_owner_office_and_water(self) -> None:
        """The owner, the program office and `water`, a state water analyst."""
        self.add(
            "owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private"
        )
        self.add("office", "office", "--org", "PCII Program Office", "--training-expires", TRAINED)
        self.add_water_analyst("water", "--level", "state", "--org", "State Water Board")

    def write_submission(self, name: str = "assessment.json", **changes: Any) -> Path:
        document = example_submission()
        document.update(changes)
        path = self.root / name
        path.write_text(json.dumps(document, indent=2))
        return path

    def attachment(self, name: str = "riverbend-scada-assessment.pdf") -> Path:
        path = self.root / name
        path.write_bytes(example_attachment_bytes())
        return path


def signed_act(who: Identity, action: str, **fields: Any) -> SignedRequest:
    """An act signed now by `who`, as `pcii --as KEY` signs it."""
    from datetime import UTC, datetime

    from pcii_vault.models.request import sign_request

    return sign_request(
        who.key,
        vault=who.vault_id,
        principal=who.principal,
        action=action,
        now=datetime.now(UTC),
        **fields,
    )


def one_line_error(result: Result, code: int) -> str:
    """The refusal: exit `code`, one `pcii: error:` line, no traceback; its text."""
    assert result.code == code, (result.code, result.err, result.out)
    lines = [line for line in result.err.strip().splitlines() if line.startswith("pcii:")]
    assert len(lines) == 1, result.err
    assert "unexpected error" not in lines[0], result.err
    assert "Traceback" not in result.err
    return lines[0]


def validated_record(cli: Cli, *, purpose: str | None = None, receipt: Path | None = None) -> str:
    """On a new vault: owner, office and a water analyst; one validated record, its tracking.

    With `purpose`, the water analyst has retrieved it once (stating that purpose); with
    `receipt`, the owner kept the submission's receipt there.
    """
    cli.init()
    cli.add_owner_office_and_water()
    document, attachment = str(cli.write_submission()), str(cli.attachment())
    kept = ("--receipt-out", str(receipt)) if receipt is not None else ()
    submitted = cli.ok("submit", document, "--attach", attachment, *kept, who="owner")
    tracking = str(submitted.json()["tracking_number"])
    cli.ok("validate", tracking, who="office")
    if purpose is not None:
        out = str(cli.root / "out")
        cli.ok("get", tracking, "--purpose", purpose, "--out", out, who="water")
    return tracking


def copied_vault(template: tuple[Path, str], tmp_path: Path) -> tuple[Cli, str]:
    """A copy of a template vault (made once per module) for one test to damage."""
    root, tracking = template
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    return Cli(copy), tracking


@pytest.fixture
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """The CLI on a vault directory; `@IN_BOTH_MODES` runs a test through a server too."""
    if getattr(request, "param", "embedded") == "embedded":
        yield Cli(tmp_path)
        return
    server_cli = ServerCli(tmp_path)
    try:
        yield server_cli
    finally:
        server_cli.close()


WATER = "Water and Wastewater Systems"
# PCII training is renewed yearly: the vault refuses an expiry more than a year away.
TRAINED = (date.today() + timedelta(days=300)).isoformat()


@pytest.fixture(scope="session")
def populated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`populated`'s vault and keys, made once per test process through the embedded CLI
    (eight commands: most of a test's set-up time when made for each)."""
    cli = Cli(tmp_path_factory.mktemp("populated"))
    _populate(cli)
    return cli.root


@pytest.fixture
def populated(cli: Cli, populated_template: Path) -> Iterator[Cli]:
    """A vault with an owner, an office user, three analysts and an auditor.

    A copy of one made once: a test in server mode serves its copy (the registrations
    were made embedded, as an administrator on the server's machine may).
    """
    shutil.copytree(populated_template, cli.root, symlinks=True, dirs_exist_ok=True)
    yield cli


def _populate(cli: Cli) -> None:
    cli.init()
    cli.add_owner_office_and_water()
    cli.add(
        "fedwater",
        "analyst",
        "--level",
        "federal",
        "--org",
        "EPA Water Security Division",
        "--sector",
        WATER,
        "--training-expires",
        TRAINED,
    )
    cli.add(
        "energy",
        "analyst",
        "--level",
        "federal",
        "--org",
        "DHS I&A",
        "--sector",
        "Energy",
        "--training-expires",
        TRAINED,
    )
    cli.add("auditor", "auditor", "--org", "PCII Officer", "--training-expires", TRAINED)


# Commands that run where the vault directory is, in either mode: creating the vault,
# auditing its log and store, and what needs no vault at all.
LOCAL_COMMANDS = {
    "init",
    "audit",
    "index",
    "store",
    "maintenance",
    "receipt",
    "policy",
    "submission",
    "schema",
    "serve",
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Every server a test started, stopped at the end of the session whatever happened.
RUNNING: set[VaultServer] = set()


@pytest.fixture(scope="session", autouse=True)
def _no_server_outlives_the_tests() -> Iterator[None]:
    yield
    for server in list(RUNNING):
        server.stop()


class VaultServer:
    """A real `pcii serve` process on 127.0.0.1, stopped by its PID."""

    def __init__(
        self,
        vault: Path,
        env: dict[str, str],
        log: Path,
        *,
        ready: bool = True,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.log = log
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pcii_vault",
                    "--json",
                    "--vault",
                    str(vault),
                    "serve",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    *extra,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        RUNNING.add(self)
        try:
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            assert line, f"pcii serve did not start: {log.read_text()[-2000:]}"
            started = json.loads(line)
            self.url: str = started["url"]
            self.ca = Path(started["certificate"])
            self.fingerprint: str = started["fingerprint_sha256"]
            self.wait_ready(route="/readyz" if ready else "/healthz")
        except BaseException:
            self.stop()  # a server that never became ready is not left running
            raise

    def wait_ready(self, timeout: float = 30.0, route: str = "/readyz") -> None:
        import time

        import httpx

        from pcii_vault.service.tls import client_context

        deadline = time.monotonic() + timeout
        with httpx.Client(verify=client_context(self.ca)) as http:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, self.log.read_text()[-2000:]
                try:
                    if http.get(f"{self.url}{route}").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"pcii serve never became ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> int:
        """SIGTERM (graceful: in-flight requests finish, the batch commits), then wait."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        RUNNING.discard(self)
        return self.process.returncode


class ServerCli(Cli):
    """The same CLI, its users' commands sent to a `pcii serve` of the vault.

    The server starts after `init` (on first use) and holds the unseal secret; the users'
    commands carry only `--vault https://...`, `--ca` and their identity.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.server: VaultServer | None = None

    def start(self) -> VaultServer:
        if self.server is None:
            self.server = VaultServer(self.vault, self.env, self.root / "serve.log")
        return self.server

    def environment(self, args: tuple[str, ...]) -> dict[str, str]:
        """A user's command goes to the server, without the unseal secret."""
        command = next((a for a in args if not a.startswith("-")), None)
        if command is None or command in LOCAL_COMMANDS:
            return self.env
        server = self.start()
        remote = {k: v for k, v in self.env.items() if k != "PCII_UNSEAL_SECRET"}
        remote.update(PCII_VAULT=server.url, PCII_CA=str(server.ca))
        return remote

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


# A story run embedded and then through a real `pcii serve` of the same vault.
IN_BOTH_MODES = pytest.mark.parametrize("cli", ["embedded", "server"], indirect=True)


def stop_during_submissions(
    cli: ServerCli, *, before_stop: Callable[[], None] = lambda: None
) -> tuple[int, list[int]]:
    """SIGTERM a served vault while six owners submit; its exit code and theirs.

    Afterwards every submission completed or was refused as unreachable (exit 5), none is
    half-done, and the log verifies (checked here).
    """
    import threading
    import time

    server = cli.start()
    results: list[int] = []

    def submit(n: int) -> None:
        path = str(cli.write_submission(f"s{n}.json", attachments=[]))
        results.append(cli.run("submit", path, who="owner").code)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    before_stop()
    code = server.stop()
    for thread in threads:
        thread.join()
    cli.server = None
    assert set(results) <= {0, 5}, results
    assert cli.ok("audit", "verify").json()["sound"] is True
    received = cli.ok("audit", "log", "--type", "submission.received").lines()
    assert len(received) == results.count(0)
    return code, results


def init_split(cli: Cli, shares_dir: Path) -> list[Path]:
    """`init` a vault whose unseal secret is split 2 of 3 (no secret in the environment)."""
    cli.env.pop("PCII_UNSEAL_SECRET", None)
    made = cli.ok(
        "init",
        "--insecure-fast-kdf",
        "--unseal-shares",
        "3",
        "--unseal-threshold",
        "2",
        "--shares-out",
        str(shares_dir),
        "--admin-key-out",
        str(cli.key("admin")),
    )
    return [Path(p) for p in made.json()["unseal_shares"]]
