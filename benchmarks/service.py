"""Signed acts per second through `pcii serve` over HTTPS, beside OpenBao transit decrypts.

Run:  .venv/bin/python benchmarks/service.py [--clients 64] [--seconds 30] [--no-s3]
Quick: --quick (3 s a workload). `--py-spy [BINARY]` also samples `pcii serve` with py-spy
(not a project dependency: `pip install py-spy` somewhere on PATH) during each of its
workloads and prints its busiest lines: where its threads were when not idle (lock
waits, fsyncs and store calls included, so not CPU time alone).

A load generator on loopback. One asyncio process, `--clients` concurrent clients, each
with its own `httpx.AsyncClient` (HTTP/1.1, one keep-alive connection, the server's
certificate pinned with `client_context`). Every request is freshly signed twice, as
`pcii --vault https://...` signs it: the act (`sign_request`, the canonical JSON the
vault logs) and the HTTP message (RFC 9421, `RequestSigner`). Before the clock starts
each client does one request of the workload, so TLS handshakes are not timed.

Servers, all on 127.0.0.1, started here and stopped by PID at the end (also on error):
- `pcii --json --vault DIR serve` (uvicorn, HTTPS) of a vault on the filesystem store,
  then of one on SeaweedFS (tests/seaweed.py; `--no-s3` skips it); the vaults are made
  in-process beforehand (an owner, the office, one analyst a client) with one validated
  record holding the 1.3 kB document of benchmarks/acts.py and a 1 KiB attachment;
- the peer: `bao server` as deployed (tests/key_servers.py `start_bao_server`: raft
  storage, a file audit device declared in its config, TLS with a certificate made like
  ours), driven by the same generator at the same concurrency: transit decrypt of one
  32-byte data key encrypted once beforehand, token in `X-Vault-Token`. It runs once
  beside each store, so each ratio compares runs made under the same load.

Workloads (each `--seconds` long; latency is the client's whole operation, signing in):
- status: the owner asks the record's state (POST /v1/status). A permitted read: the
  vault logs nothing for it;
- release: an analyst retrieves the record (POST /v1/releases, action retrieve, one
  access event logged before any byte leaves), the whole tar stream read and checked
  (13 KiB: five files, the marked document as Markdown and as JSON, the cover sheet,
  the attachment's marking notice and the 1 KiB attachment);
- submit: what `Client.submit` sends, without its two `identify` round trips: a tracking
  number and its upload ticket (POST /v1/tracking-numbers), the owner-side encryption
  (`submitter.upload` of the document and a 1 MiB attachment into memory, in a worker
  thread, a fresh data key each time), the two ciphertext objects PUT to /v1/uploads/...
  with the ticket, then POST
  /v1/submissions (one `submission.received` event logged). An operation is all four
  requests.

Printed for each: operations/s, logged acts/s, p50 and p99 in ms, errors; where the
time goes: the server's own latency per route (the `latency_ms` of its JSON access line
for each `X-Request-Id` the client received), the client's signing time, and CPU per
operation of the client, of `pcii serve` (its event-loop thread apart from its worker
threads) and of SeaweedFS or OpenBao, read from /proc: on 2 cores they share the CPUs.
Then the targets: the release at >= 0.3x OpenBao's decrypts/s with p99 < 250 ms, and
logged acts/s on SeaweedFS at >= 20x the 30 acts/s that embedded mode logged one act per
append before group commit (README, access log: single appends on SeaweedFS, 30 events/s).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))
sys.path.insert(0, str(_ROOT / "tests"))

import httpx  # noqa: E402
from acts import SECRET, Bench, small_document  # noqa: E402
from key_servers import BaoServer, start_bao_server  # noqa: E402

from pcii_vault.config import Batching  # noqa: E402
from pcii_vault.identity import Identity  # noqa: E402
from pcii_vault.models.request import sign_request  # noqa: E402
from pcii_vault.service import wire  # noqa: E402
from pcii_vault.service.httpsig import RequestSigner, content_digest  # noqa: E402
from pcii_vault.service.tls import client_context  # noqa: E402
from pcii_vault.submitter import SealedUpload, upload  # noqa: E402
from tests.e2e.conftest import VaultServer  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
RELEASED = "riverbend-scada-capture.bin"
SUBMITTED = "pump-telemetry-capture.bin"
EMBEDDED_ONE_APPEND_S3 = 30  # acts/s: README, access log, single appends on SeaweedFS
TARGET_VS_BAO = 0.3
TARGET_P99_MS = 250.0
TARGET_VS_EMBEDDED = 20
PROFILE_LINES = 8
PURPOSE, USE = "drought planning", "infrastructure-protection"
_TICK = os.sysconf("SC_CLK_TCK")


def document_with(attachment: str) -> bytes:
    """The 1.3 kB document of benchmarks/acts.py, naming one attachment."""
    doc = json.loads(small_document())
    doc["attachments"] = [{"name": attachment, "description": "Telemetry capture."}]
    return json.dumps(doc).encode()


# ----- CPU from /proc --------------------------------------------------------------------


def _stat_cpu(path: Path) -> float:
    """utime + stime of a /proc stat file, in seconds (0 if it is gone)."""
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds(pid: int) -> tuple[float, float]:
    """A process's CPU seconds, with its child processes' (`pcii serve --workers`): the
    main threads', and the rest of their threads'."""
    main = rest = 0.0
    for one in (pid, *_children(pid)):
        own = _stat_cpu(Path(f"/proc/{one}/task/{one}/stat"))
        main += own
        rest += _stat_cpu(Path(f"/proc/{one}/stat")) - own
    return main, rest


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


@dataclass
class Watched:
    """A server process whose CPU is read before and after each run."""

    label: str
    pid: int
    split_threads: bool = False  # pcii serve: the event loop apart from its worker threads


# ----- one run ---------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients of one run noted besides their latencies."""

    sign: float = 0.0  # CPU seconds spent signing acts and messages
    signs: int = 0
    encrypt: float = 0.0  # CPU seconds of owner-side encryption (submit)
    request_ids: list[str] = field(default_factory=list)

    def signed(self, since: float) -> None:
        """Count one signature begun at `since` (`time.thread_time()`)."""
        self.sign += time.thread_time() - since
        self.signs += 1


@dataclass
class Result:
    """One workload's figures."""

    store: str
    workload: str
    ops: int
    seconds: float
    latencies: list[float]  # seconds, sorted
    errors: int
    first_error: str | None
    logged_per_op: int
    tally: Tally
    cpu: dict[str, float]  # label -> CPU seconds during the run
    server_ms: dict[str, list[float]] = field(default_factory=dict)  # route -> sorted
    profile: dict[str, float] = field(default_factory=dict)  # py-spy: "thread: frame" -> share

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def logged_rate(self) -> float:
        return self.rate * self.logged_per_op

    def percentile(self, q: float) -> float:
        return _percentile(self.latencies, q) * 1e3


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * q))]


Op = Callable[[int, httpx.AsyncClient, Tally], Awaitable[None]]


async def drive(
    clients: int,
    seconds: float,
    tls: Any,  # noqa: ANN401 -- an ssl.SSLContext
    op: Op,
    watched: Iterable[Watched],
) -> tuple[int, float, list[float], int, str | None, Tally, dict[str, float]]:
    """`clients` concurrent clients repeat `op` for `seconds` after one untimed op each."""
    https = [
        httpx.AsyncClient(
            verify=tls,
            http2=False,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=httpx.Timeout(60.0),
        )
        for _ in range(clients)
    ]
    try:
        warm = Tally()  # opens each keep-alive connection (TLS handshake) off the clock
        await asyncio.gather(*(op(i, http, warm) for i, http in enumerate(https)))
        tally = Tally()
        latencies: list[float] = []
        errors: list[str] = []
        watched = list(watched)
        before = {w.label: cpu_seconds(w.pid) for w in watched}
        client_before = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds

        async def client(me: int, http: httpx.AsyncClient) -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    await op(me, http, tally)
                except Exception as exc:  # noqa: BLE001 -- counted, the first one shown
                    errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.05)
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(client(i, http) for i, http in enumerate(https)))
        elapsed = time.perf_counter() - start
        cpu = {"client": time.process_time() - client_before}
        for w in watched:
            (main0, rest0), (main1, rest1) = before[w.label], cpu_seconds(w.pid)
            if w.split_threads:
                cpu[f"{w.label} event loop"] = main1 - main0
                cpu[f"{w.label} workers"] = rest1 - rest0
            else:
                cpu[w.label] = main1 + rest1 - main0 - rest0
    finally:
        await asyncio.gather(*(http.aclose() for http in https))
    first = errors[0] if errors else None
    return len(latencies), elapsed, sorted(latencies), len(errors), first, tally, cpu


# ----- the workloads ---------------------------------------------------------------------


class UnexpectedAnswerError(RuntimeError):
    """A server answered something other than what the workload expects."""


def _check(response: httpx.Response, expected: int = 200) -> None:
    if response.status_code != expected:
        raise UnexpectedAnswerError(f"HTTP {response.status_code}: {response.text[:200]}")


class Ours:
    """Signed requests to one `pcii serve`, as its users send them."""

    def __init__(
        self, url: str, vault_id: str, ids: dict[str, Identity], tracking: str, root: Path
    ) -> None:
        self.url = url
        self.vault_id = vault_id
        self.ids = ids
        self.tracking = tracking
        self.analysts = sorted(name for name in ids if name.startswith("analyst"))
        self.signers = {name: RequestSigner(name, ident.key) for name, ident in ids.items()}
        self.info: dict[str, Any] = {}
        self.document = document_with(SUBMITTED)
        self.attachment = root / SUBMITTED
        self.attachment.write_bytes(os.urandom(MiB))

    async def load_info(self, tls: Any) -> None:  # noqa: ANN401
        async with httpx.AsyncClient(verify=tls) as http:
            response = await http.get(f"{self.url}{wire.API_PREFIX}/info")
            _check(response)
            self.info = response.json()

    def _act(self, who: str, action: str, tally: Tally, **fields: Any) -> bytes:  # noqa: ANN401
        t0 = time.thread_time()
        request = sign_request(
            self.ids[who].key,
            vault=self.vault_id,
            principal=who,
            action=action,
            now=datetime.now(UTC),
            **fields,
        )
        body = wire.Act(request=request).model_dump_json().encode()
        tally.signed(t0)
        return body

    def _headers(self, who: str, method: str, url: str, digest: str, tally: Tally) -> Any:  # noqa: ANN401
        t0 = time.thread_time()
        headers = self.signers[who].headers(method, url, body_digest=digest)
        tally.signed(t0)
        return headers

    async def _post(
        self, http: httpx.AsyncClient, who: str, path: str, body: bytes, tally: Tally
    ) -> httpx.Response:
        url = f"{self.url}{wire.API_PREFIX}{path}"
        headers = self._headers(who, "POST", url, content_digest(body), tally)
        headers["content-type"] = "application/json"
        response = await http.post(url, content=body, headers=headers)
        tally.request_ids.append(response.headers.get("x-request-id", ""))
        _check(response)
        return response

    async def status(self, _me: int, http: httpx.AsyncClient, tally: Tally) -> None:
        body = self._act("owner", "status", tally, record=self.tracking)
        row = (await self._post(http, "owner", "/status", body, tally)).json()
        if row.get("tracking") != self.tracking:
            raise UnexpectedAnswerError(f"status answered for {row.get('tracking')}")

    async def release(self, me: int, http: httpx.AsyncClient, tally: Tally) -> None:
        who = self.analysts[me % len(self.analysts)]
        body = self._act(who, "retrieve", tally, record=self.tracking, purpose=PURPOSE, use=USE)
        url = f"{self.url}{wire.API_PREFIX}/releases"
        headers = self._headers(who, "POST", url, content_digest(body), tally)
        headers["content-type"] = "application/json"
        async with http.stream("POST", url, content=body, headers=headers) as response:
            tally.request_ids.append(response.headers.get("x-request-id", ""))
            if response.status_code != 200:
                await response.aread()
                _check(response)
            meta = json.loads(response.headers[wire.RELEASE_HEADER])
            tar = bytearray()
            async for chunk in response.aiter_bytes():
                tar += chunk
        with tarfile.open(fileobj=io.BytesIO(bytes(tar)), mode="r|") as archive:
            names = {member.name for member in archive}
        if names != set(meta["files"]) or f"attachments/{RELEASED}" not in names:
            raise UnexpectedAnswerError(
                f"the release holds {sorted(names)}, announced {meta['files']}"
            )

    async def submit(self, _me: int, http: httpx.AsyncClient, tally: Tally) -> None:
        body = self._act("owner", "identify", tally)
        answer = await self._post(http, "owner", "/tracking-numbers", body, tally)
        issued = answer.json()
        tracking, ticket = issued["tracking_number"], issued["upload_ticket"]
        objects: dict[str, bytes] = {}
        sealed, cpu = await asyncio.to_thread(self._encrypt, tracking, _MemorySink(objects))
        tally.encrypt += cpu
        for key, data in objects.items():  # one after the other, as the client sends them
            url = f"{self.url}{wire.API_PREFIX}/uploads/{key.removeprefix('records/')}"
            url += f"?ticket={ticket}"
            headers = self._headers("owner", "PUT", url, content_digest(data), tally)
            headers["content-type"] = "application/octet-stream"
            response = await http.put(url, content=data, headers=headers)
            tally.request_ids.append(response.headers.get("x-request-id", ""))
            _check(response, 201)
        t0 = time.thread_time()
        act = sign_request(
            self.ids["owner"].key,
            vault=self.vault_id,
            principal="owner",
            action="submit",
            now=datetime.now(UTC),
            record=tracking,
            params={"files": list(sealed.files)},
        )
        submission = wire.SubmissionBody(
            request=act,
            tracking_number=tracking,
            sealed_dek=base64.b64encode(sealed.sealed_dek).decode(),
            files=list(sealed.files),
            upload_ticket=ticket,
        )
        payload = submission.model_dump_json().encode()
        tally.signed(t0)
        receipt = (await self._post(http, "owner", "/submissions", payload, tally)).json()
        if receipt.get("tracking_number") != tracking:
            raise UnexpectedAnswerError("the receipt names another tracking number")

    def _encrypt(self, tracking: str, sink: _MemorySink) -> tuple[SealedUpload, float]:
        """What `pcii submit` does before it sends anything (in a worker thread)."""
        t0 = time.thread_time()
        sealed = upload(
            sink,
            vault_id=self.vault_id,
            tracking_number=tracking,
            intake_public_key=base64.b64decode(self.info["intake_public_key"]),
            kek_version=int(self.info["kek_version"]),
            document=self.document,
            attachments=[self.attachment],
        )
        return sealed, time.thread_time() - t0


class _MemorySink:
    """An upload sink that keeps the ciphertext objects in memory, to PUT them after."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        self.objects[key] = b"".join(chunks)

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


class Peer:
    """OpenBao transit: decrypt one data key, token auth."""

    def __init__(self, bao: BaoServer) -> None:
        self.bao = bao
        self.dek = secrets.token_bytes(32)
        headers = {"X-Vault-Token": bao.token}
        with httpx.Client(verify=client_context(bao.ca_file), headers=headers) as http:
            _check(http.post(f"{bao.address}/v1/sys/mounts/transit", json={"type": "transit"}), 204)
            _check(http.post(f"{bao.address}/v1/transit/keys/bench"))
            plaintext = base64.b64encode(self.dek).decode()
            answer = http.post(
                f"{bao.address}/v1/transit/encrypt/bench", json={"plaintext": plaintext}
            )
            _check(answer)
        self.body = json.dumps({"ciphertext": answer.json()["data"]["ciphertext"]}).encode()
        self.headers = {**headers, "content-type": "application/json"}
        self.url = f"{bao.address}/v1/transit/decrypt/bench"

    async def decrypt(self, _me: int, http: httpx.AsyncClient, _tally: Tally) -> None:
        response = await http.post(self.url, content=self.body, headers=self.headers)
        _check(response)
        if base64.b64decode(response.json()["data"]["plaintext"]) != self.dek:
            raise UnexpectedAnswerError("OpenBao decrypted something else")


# ----- a vault behind a server -------------------------------------------------------------


def prepare_vault(root: Path, store_url: str) -> tuple[Bench, str]:
    """A vault with its principals (acts.Bench) and one validated record to release."""
    bench = Bench(root, store_url)
    bench.document = document_with(RELEASED)
    attachment = root / RELEASED
    attachment.write_bytes(os.urandom(KiB))
    vault = bench.open(Batching())
    try:
        [tracking] = bench.submit(vault, 1, attachments=[attachment])
        bench.validate(vault, tracking)
    finally:
        vault.close()
    return bench, tracking


class AccessLines:
    """The server's JSON access lines, read as they are appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines: dict[str, tuple[str, float]] = {}  # request id -> (METHOD route, ms)

    def read(self) -> None:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for raw in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if line.get("event") == "access":
                    route = f"{line['method']} {line['route']}"
                    self.lines[line["request_id"]] = (route, float(line["latency_ms"]))

    def by_route(self, request_ids: list[str]) -> dict[str, list[float]]:
        self.read()
        routes: dict[str, list[float]] = defaultdict(list)
        for request_id in request_ids:
            if request_id in self.lines:
                route, ms = self.lines[request_id]
                routes[route].append(ms)
        return {route: sorted(ms) for route, ms in routes.items()}


@contextlib.contextmanager
def serving(
    root: Path, bench: Bench, extra_env: dict[str, str], workers: int, asgi_server: str
) -> Iterator[VaultServer]:
    """`pcii serve` of the bench's vault on 127.0.0.1, stopped by PID when done."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PCII_", "AWS_"))}
    env.update(extra_env)
    env.update(PCII_UNSEAL_SECRET=SECRET.decode(), PCII_LOG_FORMAT="json")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    server: VaultServer
    if asgi_server == "granian":
        server = GranianServer(bench.vault_dir, env, root / "serve.log", workers)
    else:
        extra = ("--workers", str(workers)) if workers > 1 else ()
        server = VaultServer(bench.vault_dir, env, root / "serve.log", extra=extra)
    try:
        yield server
    finally:
        server.stop()


class GranianServer(VaultServer):
    """The same application under granian (`--server granian`), stopped by its PID."""

    def __init__(  # starts granian, not pcii serve: readiness and stop are shared
        self, vault: Path, env: dict[str, str], log: Path, workers: int
    ) -> None:
        from pcii_vault.service.tls import ensure_self_signed
        from tests.e2e.conftest import free_port

        certificate = ensure_self_signed(vault / "tls", ["127.0.0.1"])
        self.ca = certificate.cert_path
        self.log = log
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        command = [
            *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory"),
            *("--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)),
            *("--ssl-certificate", str(certificate.cert_path)),
            *("--ssl-keyfile", str(certificate.key_path)),
            *("--loop", "uvloop", "--log-level", "warning", "--no-ws"),
            "benchmarks.granian_app:app",
        ]
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                command,
                env={**env, "PCII_BENCH_VAULT": str(vault)},
                cwd=_ROOT,
                stdout=err,
                stderr=err,
            )
        try:
            self.wait_ready(timeout=60)
        except BaseException:
            self.stop()
            raise


class Profile:
    """`py-spy record` of one process during one run (`--py-spy`): its busiest lines."""

    def __init__(self, binary: str, pid: int, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                *(
                    binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "50",
                    "--nonblocking",
                    "--threads",
                ),
                *("--format", "raw", "--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> dict[str, float]:
        """Stop it (by PID: SIGINT makes py-spy write its samples); the top frames' shares."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if not self.out.exists():
            return {}
        samples: dict[str, int] = defaultdict(int)
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            thread = frames[0].partition(": ")[2] or "?"  # e.g. "AnyIO worker thread"
            samples[f"{thread}: {frames[-1]}"] += int(count)
        total = sum(samples.values()) or 1
        top = sorted(samples.items(), key=lambda kv: -kv[1])[:PROFILE_LINES]
        return {frame: n / total for frame, n in top}


WORKLOADS = ("status", "release", "submit")

# ----- the whole run -----------------------------------------------------------------------


@dataclass
class Settings:
    clients: int
    seconds: float
    py_spy: str | None = None
    only: tuple[str, ...] = WORKLOADS
    workers: int = 1
    server: str = "uvicorn"


async def bench_store(
    store: str,
    root: Path,
    *,
    store_url: str,
    env: dict[str, str],
    store_process: Watched | None,
    peer: Peer,
    settings: Settings,
) -> list[Result]:
    results: list[Result] = []
    bench, tracking = prepare_vault(root, store_url)
    with serving(root, bench, env, settings.workers, settings.server) as server:
        tls = client_context(server.ca)
        ours = Ours(server.url, bench.vault_id, bench.ids, tracking, root)
        await ours.load_info(tls)
        access = AccessLines(root / "serve.log")
        watched = [Watched("pcii serve", server.process.pid, split_threads=True)]
        if store_process is not None:
            watched.append(store_process)
        bao_watch = [Watched("openbao", peer.bao.pid)]
        workloads: list[tuple[str, Op, int, list[Watched], Any]] = [
            ("openbao decrypt", peer.decrypt, 0, bao_watch, client_context(peer.bao.ca_file)),
            ("status", ours.status, 0, watched, tls),
            ("release 1 KiB", ours.release, 1, watched, tls),
            ("submit 1 MiB", ours.submit, 1, watched, tls),
        ]
        for name, op, logged, watch, context in workloads:
            if name.split()[0] not in ("openbao", *settings.only):
                continue
            ours_now = not name.startswith("openbao")
            profile = None
            if settings.py_spy and ours_now:
                out = root / f"py-spy-{name.split()[0]}.txt"
                profile = Profile(settings.py_spy, server.process.pid, out)
            try:
                ops, elapsed, latencies, errors, first, tally, cpu = await drive(
                    settings.clients, settings.seconds, context, op, watch
                )
            finally:
                frames = profile.stop() if profile is not None else {}
            result = Result(store, name, ops, elapsed, latencies, errors, first, logged, tally, cpu)
            result.profile = frames
            if ours_now:
                result.server_ms = access.by_route(tally.request_ids)
            results.append(result)
            print_run(result)
    return results


def print_run(r: Result) -> None:
    print(
        f"  {r.store:3} {r.workload:16} {r.rate:8.1f} ops/s  p50 {r.percentile(0.5):7.1f} ms  "
        f"p99 {r.percentile(0.99):7.1f} ms  ({r.ops} ops in {r.seconds:.1f} s, {r.errors} errors)",
        flush=True,
    )
    if r.first_error:
        print(f"      first error: {r.first_error}")


def report(results: list[Result], settings: Settings) -> None:
    print(
        f"\n{settings.clients} clients, {settings.seconds:g} s a workload, "
        f"{settings.server}, {settings.workers} worker(s)"
    )
    print(
        f"{'store':5} {'workload':16} {'ops':>6} {'ops/s':>8} {'logged/s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    )
    for r in results:
        if r.workload.startswith("openbao"):
            store, logged = f"({r.store})", ""  # the peer, measured beside this store
        else:
            store, logged = r.store, f"{r.logged_rate:.1f}" if r.logged_per_op else "0 (read)"
        print(
            f"{store:5} {r.workload:16} {r.ops:6} {r.rate:8.1f} {logged:>8} "
            f"{r.percentile(0.5):7.1f} {r.percentile(0.99):7.1f} {r.errors:6}"
        )

    print("\nwhere the time goes (per operation; CPU from /proc, 2 cores shared by all):")
    for r in results:
        n = max(r.ops, 1)
        parts = [f"{label} {seconds / n * 1e3:.2f}" for label, seconds in r.cpu.items()]
        busy = sum(r.cpu.values()) / r.seconds if r.seconds else 0.0
        print(
            f"  {r.store:3} {r.workload:16} CPU ms/op: {', '.join(parts)} ({busy:.2f} cores busy)"
        )
        if r.tally.signs:
            sign_us = r.tally.sign / n * 1e6
            extra = (
                f", owner-side encryption {r.tally.encrypt / n * 1e3:.1f} ms"
                if r.tally.encrypt
                else ""
            )
            print(
                f"      client signing {sign_us:.0f} us/op "
                f"({r.tally.signs / n:.0f} signatures){extra}"
            )
        for route, ms in r.server_ms.items():
            print(
                f"      server {route:38} p50 {_percentile(ms, 0.5):7.1f} ms  "
                f"p99 {_percentile(ms, 0.99):7.1f} ms  mean {statistics.fmean(ms):7.1f} ms"
            )
        if r.server_ms:
            inside = sum(statistics.fmean(ms) * len(ms) for ms in r.server_ms.values()) / n
            mean = statistics.fmean(r.latencies) * 1e3 if r.latencies else float("nan")
            print(
                f"      client mean {mean:.1f} ms, of which inside the server's app "
                f"{inside:.1f} ms (the rest: TLS, HTTP parsing, queues, the client itself)"
            )
        for frame, share in r.profile.items():
            print(f"      py-spy {share:6.1%}  {frame}")

    print("\ntargets:")
    by = {(r.store, r.workload): r for r in results}
    for store in dict.fromkeys(r.store for r in results):
        if (store, "release 1 KiB") not in by:
            continue
        ours, bao = by[store, "release 1 KiB"], by[store, "openbao decrypt"]
        ratio = ours.rate / bao.rate if bao.rate else float("nan")
        p99 = ours.percentile(0.99)
        print(
            f"  {store:3} release {ours.rate:.0f}/s vs OpenBao decrypt {bao.rate:.0f}/s "
            f"= {ratio:.2f}x (>= {TARGET_VS_BAO}x): {_met(ratio >= TARGET_VS_BAO)}; "
            f"p99 {p99:.0f} ms (< {TARGET_P99_MS:.0f} ms): {_met(p99 < TARGET_P99_MS)}"
        )
        ours_cpu = sum(v for k, v in ours.cpu.items() if k.startswith("pcii serve"))
        bao_cpu = bao.cpu.get("openbao", 0.0)
        print(
            f"      server CPU per op (less sensitive to the other load): release "
            f"{ours_cpu / max(ours.ops, 1) * 1e3:.2f} ms, OpenBao decrypt "
            f"{bao_cpu / max(bao.ops, 1) * 1e3:.2f} ms"
        )
    for workload in ("release 1 KiB", "submit 1 MiB"):
        if ("s3", workload) in by:
            r = by["s3", workload]
            times = r.logged_rate / EMBEDDED_ONE_APPEND_S3
            print(
                f"  s3  {workload:13} {r.logged_rate:.0f} logged acts/s = {times:.1f}x the "
                f"{EMBEDDED_ONE_APPEND_S3} acts/s embedded one-append (>= {TARGET_VS_EMBEDDED}x): "
                f"{_met(times >= TARGET_VS_EMBEDDED)}"
            )


def _met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def run(args: argparse.Namespace, tmp: Path) -> list[Result]:
    settings = Settings(
        args.clients, args.seconds, args.py_spy, tuple(args.only), args.workers, args.server
    )
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        bao = start_bao_server()
        stack.callback(bao.stop)
        peer = Peer(bao)
        results += await bench_store(
            "fs",
            tmp / "fs",
            store_url="file",
            env={},
            store_process=None,
            peer=peer,
            settings=settings,
        )
        if not args.no_s3:
            from seaweed import new_bucket_name, start_seaweed

            weed = start_seaweed(tmp / "weed")
            stack.callback(weed.stop)
            bucket = new_bucket_name()
            weed.client().create_bucket(Bucket=bucket)
            stack.enter_context(_environment(weed.env))  # the in-process setup uses it too
            results += await bench_store(
                "s3",
                tmp / "s3",
                store_url=f"s3://{bucket}/bench",
                env=weed.env,
                store_process=Watched("seaweedfs", weed.pid),
                peer=peer,
                settings=settings,
            )
        audit = bao.audit_log.stat().st_size if bao.audit_log else 0
        print(f"OpenBao's audit log: {audit / MiB:.1f} MiB")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument("--seconds", type=float, help="per workload (default 30, --quick 3)")
    parser.add_argument("--no-s3", action="store_true", help="skip SeaweedFS")
    parser.add_argument("--quick", action="store_true", help="3 s a workload")
    parser.add_argument("--workers", type=int, default=1, help="pcii serve --workers N (default 1)")
    parser.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        default="uvicorn",
        help="the ASGI server: pcii serve (uvicorn), or the same app under granian "
        "(benchmarks/granian_app.py; pip install granian, not a project dependency)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=WORKLOADS,
        default=list(WORKLOADS),
        help="run only these workloads (OpenBao's decrypt always runs, for the ratio)",
    )
    parser.add_argument(
        "--py-spy",
        nargs="?",
        const="py-spy",
        metavar="BINARY",
        help="sample pcii serve with py-spy during each workload (not installed by the project)",
    )
    args = parser.parse_args()
    if args.py_spy is not None:
        args.py_spy = shutil.which(args.py_spy)
        if args.py_spy is None:
            parser.error("--py-spy: no such binary (pip install py-spy)")
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 30.0
    # A SIGTERM unwinds like Ctrl-C: every server is stopped, every directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.clients} clients, "
        f"{args.seconds:g} s a workload",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="pcii-bench-service-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    report(results, Settings(args.clients, args.seconds, workers=args.workers, server=args.server))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
