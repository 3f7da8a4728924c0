"""`pcii serve` as its clients and its attackers meet it: a real server process on 127.0.0.1.

Every bad input of the contract gets its precise answer (401 unsigned, forged, stale,
replayed or unknown; 403 suspended; 413 too large; 404 unknown route; 400 malformed,
with the field path), and the CLI maps answers to the same exit codes and one-line
errors as embedded mode. Health, readiness, the OpenAPI document and the access lines;
graceful SIGTERM; kill -9 during an upload; two servers on one vault.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.durable import write_new_file
from pcii_vault.identity import Identity
from pcii_vault.models.principal import PrincipalAttributes
from pcii_vault.models.request import sign_request
from pcii_vault.service.httpsig import RequestSigner, content_digest
from pcii_vault.service.tls import client_context
from tests.e2e.conftest import (
    TRAINED,
    Cli,
    Result,
    ServerCli,
    VaultServer,
    init_split,
    signed_act,
    stop_during_submissions,
)

pytestmark = pytest.mark.slow


class Caller:
    """Signed HTTP requests as one principal, built by hand (to break them on purpose)."""

    def __init__(self, server: VaultServer, identity: Identity) -> None:
        self.server = server
        self.identity = identity
        self.http = httpx.Client(verify=client_context(server.ca), timeout=30)

    def act(self, action: str, **fields: Any) -> dict[str, Any]:
        request = sign_request(
            self.identity.key,
            vault=self.identity.vault_id,
            principal=self.identity.principal,
            action=action,
            now=datetime.now(UTC),
            **fields,
        )
        return {"request": request.model_dump(mode="json")}

    def post(
        self,
        path: str,
        body: bytes,
        *,
        signer: RequestSigner | None = None,
        digest: str | None = None,
        now: datetime | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = f"{self.server.url}{path}"
        signer = signer or RequestSigner(self.identity.principal, self.identity.key)
        signed = signer.headers("POST", url, body_digest=digest or content_digest(body), now=now)
        return self.http.post(
            url,
            content=body,
            headers={**signed, "content-type": "application/json", **(headers or {})},
        )

    def post_act(self, path: str, action: str, **fields: Any) -> httpx.Response:
        return self.post(path, json.dumps(self.act(action, **fields)).encode())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerCli]:
    cli = ServerCli(tmp_path_factory.mktemp("served"))
    cli.init()
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    cli.add("office", "office", "--org", "PCII Program Office", "--training-expires", TRAINED)
    cli.add("gone", "owner", "--org", "Former Member")
    cli.ok("principal", "update", "gone", "--status", "suspended", who="admin")
    cli.start()
    try:
        yield cli
    finally:
        cli.close()


def _caller(cli: ServerCli, who: str) -> Caller:
    assert cli.server is not None
    return Caller(cli.server, Identity.load(cli.key(who)))


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error", "exit_code", "kind", "problems"}, body
    assert "\n" not in body["error"]
    return dict(body)


# ----- authentication ------------------------------------------------------------------------


def test_a_signed_request_is_answered(served: ServerCli) -> None:
    response = _caller(served, "owner").post_act("/v1/identify", "identify")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "owner"
    assert response.headers["x-request-id"]


def test_an_unsigned_request_is_401(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    body = json.dumps(caller.act("identify")).encode()
    response = caller.http.post(
        f"{caller.server.url}/v1/identify",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 401
    assert _error(response)["exit_code"] == 2


def test_a_signature_by_another_key_is_401(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    forger = RequestSigner("owner", Ed25519PrivateKey.generate())
    body = json.dumps(caller.act("identify")).encode()
    response = caller.post("/v1/identify", body, signer=forger)
    assert response.status_code == 401
    assert _error(response)["exit_code"] == 4  # forged, as in embedded mode


def test_an_unknown_key_id_is_401(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    stranger = RequestSigner("nobody", Ed25519PrivateKey.generate())
    body = json.dumps(caller.act("identify")).encode()
    response = caller.post("/v1/identify", body, signer=stranger)
    assert response.status_code == 401
    assert "nobody" in _error(response)["error"] or "unknown" in _error(response)["error"]
    assert _error(response)["exit_code"] == 3  # not a registered principal


@pytest.mark.parametrize("skew", [timedelta(minutes=-10), timedelta(minutes=10)])
def test_a_stale_or_future_request_is_401(served: ServerCli, skew: timedelta) -> None:
    caller = _caller(served, "owner")
    body = json.dumps(caller.act("identify")).encode()
    response = caller.post("/v1/identify", body, now=datetime.now(UTC) + skew)
    assert response.status_code == 401
    assert _error(response)["exit_code"] == 4  # stale, as a stale act


def test_a_replayed_message_is_401(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    body = json.dumps(caller.act("identify")).encode()
    url = f"{caller.server.url}/v1/identify"
    signer = RequestSigner("owner", caller.identity.key)
    headers = {
        **signer.headers("POST", url, body_digest=content_digest(body)),
        "content-type": "application/json",
    }
    assert caller.http.post(url, content=body, headers=headers).status_code == 200
    again = caller.http.post(url, content=body, headers=headers)
    assert again.status_code == 401
    assert "nonce" in _error(again)["error"] or "replay" in _error(again)["error"]
    assert _error(again)["exit_code"] == 4  # replayed, as a replayed act


def test_a_message_signed_ahead_of_the_servers_clock_is_refused_after_a_restart(
    tmp_path: Path,
) -> None:
    """A tester's finding: a message whose `created` was ahead of the server's clock (in
    the window) was answered again after a restart: the nonces were in memory only."""
    cli = ServerCli(tmp_path)
    cli.init()
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    signer = RequestSigner("owner", Identity.load(cli.key("owner")).key)
    ahead = datetime.now(UTC) + timedelta(seconds=45)  # a client clock 45 s fast
    nonce = "q0Zy3r6BBm1Ju8xRwQJ0tw"

    def send() -> httpx.Response:
        caller = _caller(cli, "owner")
        body = json.dumps(caller.act("identify")).encode()
        url = f"{caller.server.url}/v1/identify"  # the port may differ after the restart
        headers = {
            **signer.headers("POST", url, body_digest=content_digest(body), now=ahead, nonce=nonce),
            "content-type": "application/json",
        }
        return caller.http.post(url, content=body, headers=headers)

    try:
        cli.start()
        assert send().status_code == 200
        cli.close()
        cli.start()
        replayed = send()
        assert replayed.status_code == 401, replayed.text
        assert "replay" in _error(replayed)["error"]
    finally:
        cli.close()


def test_a_body_that_does_not_match_its_digest_is_401(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    body = json.dumps(caller.act("identify")).encode()
    response = caller.post("/v1/identify", body, digest=content_digest(b"something else"))
    assert response.status_code == 401
    assert _error(response)["exit_code"] == 4


def test_an_act_signed_by_someone_else_than_the_message_is_401(served: ServerCli) -> None:
    owner, office = _caller(served, "owner"), _caller(served, "office")
    body = json.dumps(office.act("identify")).encode()  # office's act, owner's message
    response = owner.post("/v1/identify", body)
    assert response.status_code == 401
    assert "another principal" in _error(response)["error"]
    assert _error(response)["exit_code"] == 4


def test_a_suspended_principal_is_403(served: ServerCli) -> None:
    response = _caller(served, "gone").post_act("/v1/identify", "identify")
    assert response.status_code == 403
    assert _error(response)["exit_code"] == 3


# ----- malformed input -----------------------------------------------------------------------


def test_malformed_json_is_400_with_the_field_path(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    for garbled in (b"{not json", b"\xff\xfe"):  # a tester's finding: "0: JSON decode error"
        refused = caller.post("/v1/status", garbled)
        assert refused.status_code == 400
        assert "invalid request body: not JSON" in _error(refused)["error"], refused.text
    # A tester's finding: an act in UTF-16, or behind a byte-order mark, was decoded and
    # logged; NaN was taken for JSON.
    act = json.dumps(caller.act("status", record="PCII-2026-00000001"))
    for other, why in (
        (act.encode("utf-16"), "the server can read (its bytes are not UTF-8"),
        (b"\xef\xbb\xbf" + act.encode(), "(Unexpected UTF-8 BOM"),
        (b'{"request": NaN}', "the server can read (it holds NaN is not JSON"),
    ):
        refused = caller.post("/v1/status", other)
        assert refused.status_code == 400
        assert f"not JSON {why}" in _error(refused)["error"], refused.text
    # A tester's finding: a key given twice was taken (the last value), though what the
    # Content-Digest covers then reads two ways.
    act = json.dumps(caller.act("status", record="PCII-2026-00000001"))
    twice = act.replace('"record": ', '"record": "PCII-2026-99999999", "record": ', 1)
    refused = caller.post("/v1/status", twice.encode())
    assert refused.status_code == 400
    assert "key 'record' is given twice" in _error(refused)["error"], refused.text
    empty = caller.post("/v1/status", b"")  # was "body: Field required"
    assert _error(empty)["error"] == "invalid request body: it is empty (a JSON object)"
    body = caller.act("status", record="PCII-2026-00000001")
    body["request"]["body"]["nonce"] = "not-hex"
    response = caller.post("/v1/status", json.dumps(body).encode())
    assert response.status_code == 400
    error = _error(response)
    assert any(p.startswith("request.body.nonce") for p in error["problems"]), error
    missing = caller.post("/v1/transitions", json.dumps(caller.act("validate")).encode())
    assert missing.status_code == 400
    assert any(p.startswith("event_type") for p in _error(missing)["problems"])
    # A tester's finding: "There was an error parsing the body", whatever was wrong.
    for unreadable, why in (
        (b'{"request": "\xff"}', "its bytes are not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "it is nested too deeply"),
        (b'{"request": ' + b"9" * 5000 + b"}", "it holds a number of more digits"),
    ):
        refused = caller.post("/v1/status", unreadable)
        assert refused.status_code == 400
        assert f"not JSON the server can read ({why}" in _error(refused)["error"]


def test_an_unknown_route_is_404(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    response = caller.http.get(f"{caller.server.url}/v1/nothing-here")
    assert response.status_code == 404
    assert _error(response)["exit_code"] == 2


def test_a_body_over_the_limit_is_413(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    big = b"{" + b" " * (2 << 20) + b"}"
    refused = caller.post("/v1/status", big)
    assert refused.status_code == 413
    # The limit and the setting that makes it, for the user to quote to the administrator.
    assert "(1048576 bytes, its PCII_SERVER_MAX_BODY)" in _error(refused)["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(3):
            yield b" " * (1 << 20)

    url = f"{caller.server.url}/v1/status"
    signer = RequestSigner("owner", caller.identity.key)
    headers = signer.headers("POST", url, body_digest=content_digest(b""))
    response = caller.http.post(url, content=chunks(), headers=headers)
    assert response.status_code == 413


def _answer_then_keep_sending(
    server: VaultServer, head: str, *, chunked: bool
) -> tuple[bytes, int]:
    """Send `head`, then body bytes until the server hangs up (or 64 MiB); its answer, sent."""
    context = client_context(server.ca)
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    sent, answer = 0, b""
    with (
        socket.create_connection((host, int(port)), timeout=10) as tcp,
        context.wrap_socket(tcp, server_hostname=host) as conn,
    ):
        conn.sendall(head.encode())
        conn.settimeout(0.05)
        chunk = b" " * 65536
        piece = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
        with contextlib.suppress(OSError):  # reset by the server: it hung up
            while sent < 64 << 20:
                conn.sendall(piece)
                sent += len(chunk)
                try:
                    data = conn.recv(65536)
                except (TimeoutError, ssl.SSLWantReadError):
                    continue
                if not data:
                    break
                answer += data
    return answer, sent


@pytest.mark.parametrize(
    ("method", "path", "framing"),
    [
        ("POST", "/v1/no-such-route", "Transfer-Encoding: chunked"),
        ("POST", "/v1/status", "Transfer-Encoding: chunked"),  # over the body limit
        ("PUT", "/v1/uploads/PCII-2026-12345678/document", "Content-Length: 1000000000"),
    ],
)
def test_an_answer_before_the_whole_body_closes_the_connection(
    served: ServerCli, method: str, path: str, framing: str
) -> None:
    # Refused before the body is read (no route, too large, not signed), the server hangs
    # up after its answer instead of reading whatever the client goes on sending.
    server = served.start()
    host = server.url.removeprefix("https://")
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n\r\n"
    answer, sent = _answer_then_keep_sending(server, head, chunked="chunked" in framing)
    status = answer.split(b"\r\n", 1)[0]
    assert status.split()[1:2] in ([b"404"], [b"413"], [b"401"]), answer[:200]
    assert b"connection: close" in answer.lower()
    assert sent < 32 << 20  # the server hung up long before


def test_uploads_are_refused_for_records_bad_names_and_wrong_digests(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    tracking = served.ok(
        "submit", str(served.write_submission("bare.json", attachments=[])), who="owner"
    ).json()["tracking_number"]
    signer = RequestSigner("owner", caller.identity.key)
    fresh = caller.post_act("/v1/tracking-numbers", "identify").json()
    unused, ticket = fresh["tracking_number"], fresh["upload_ticket"]

    def put(path: str, body: bytes, digest: str | None = None) -> httpx.Response:
        url = f"{caller.server.url}/v1/uploads/{path}?ticket={ticket}"
        headers = signer.headers("PUT", url, body_digest=digest or content_digest(body))
        return caller.http.put(url, content=body, headers=headers)

    assert put(f"{tracking}/files/0", b"x").status_code == 403  # not this ticket's number
    assert put("PCII-2026-99999998/../../etc", b"x").status_code in {400, 404}
    assert put("not-a-tracking-number/document", b"x").status_code == 400
    wrong = put(f"{unused}/document", b"payload", content_digest(b"other"))
    assert wrong.status_code == 401
    assert not (served.vault / "objects" / "records" / unused).exists() or not any(
        (served.vault / "objects" / "records" / unused).iterdir()
    )


# ----- health, the document, the access lines -------------------------------------------------


def test_health_readiness_and_the_openapi_document(served: ServerCli) -> None:
    caller = _caller(served, "owner")
    url = caller.server.url
    assert caller.http.get(f"{url}/healthz").json() == {"status": "alive"}
    assert caller.http.get(f"{url}/readyz").json() == {"ready": True}
    document = caller.http.get(f"{url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    for path in ("/v1/submissions", "/v1/releases", "/v1/transitions", "/v1/keys/rotate"):
        assert path in document["paths"], path


def test_access_lines_are_json_and_carry_no_pcii_content(served: ServerCli) -> None:
    purpose = "pump-station-vulnerability-purpose-text"
    tracking = served.ok(
        "submit", str(served.write_submission("bare2.json", attachments=[])), who="owner"
    ).json()["tracking_number"]
    served.run(
        "review", tracking, "--purpose", purpose, "--out", str(served.root / "r"), who="office"
    )
    assert served.server is not None
    text = served.server.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "access"]
    assert access
    for line in access:
        assert {"request_id", "principal", "route", "status", "latency_ms"} <= set(line)
    assert any(line["route"] == "/v1/releases" and line["principal"] == "office" for line in access)
    assert purpose not in text
    assert "Riverbend" not in text


def test_an_auditor_verifies_the_log_through_the_server(served: ServerCli) -> None:
    served.add("aud", "auditor", "--org", "PCII Officer", "--training-expires", TRAINED)
    remote = served.environment(("status",))  # the server, no unseal secret, no directory
    key = served.ok("audit", "key").json()["key"]  # obtained out of band
    verified = served.run("--json", "audit", "verify", "--key", key, who="aud", env=remote)
    assert verified.code == 0, verified.err
    assert verified.json()["sound"] is True
    assert verified.json()["size"] == served.ok("audit", "verify").json()["size"]
    logged = served.run("--json", "audit", "log", who="aud", env=remote)
    assert logged.code == 0 and logged.lines()[0]["type"] == "vault.initialized"
    owner = served.run("audit", "verify", who="owner", env=remote)
    assert owner.code == 3 and "may not read the log" in owner.err
    caller = _caller(served, "aud")
    url = f"{caller.server.url}/v1/objects/wrapped/x"
    signer = RequestSigner("aud", caller.identity.key)
    headers = signer.headers("GET", url, body_digest=content_digest(b""))
    assert caller.http.get(url, headers=headers).status_code == 404


def test_a_1_gib_submit_and_review_through_the_server_stream(served: ServerCli) -> None:
    """The server never holds a large object in memory: its RSS grows < 100 MiB."""
    import hashlib

    import psutil

    assert served.server is not None
    big = served.root / "one-gib.bin"
    digest = hashlib.sha256()
    piece = os.urandom(1 << 20)
    with big.open("wb") as out:
        for n in range(1024):
            block = piece[n % 256 :] + piece[: n % 256]
            digest.update(block)
            out.write(block)
    document = served.write_submission(
        "one-gib.json", attachments=[{"name": big.name, "description": "a 1 GiB file"}]
    )
    server = psutil.Process(served.server.process.pid)
    baseline = server.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], server.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        tracking = served.ok("submit", str(document), "--attach", str(big), who="owner").json()[
            "tracking_number"
        ]
        out = served.root / "one-gib-review"
        got = served.ok("review", tracking, "--out", str(out), who="office").json()
    finally:
        done.set()
        sampler.join()
    released = Path(got["directory"]) / "attachments" / big.name
    check = hashlib.sha256()
    with released.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()
    big.unlink()
    released.unlink()
    assert peak[0] - baseline < 100 << 20, f"server RSS grew {(peak[0] - baseline) >> 20} MiB"


# ----- the CLI's side ---------------------------------------------------------------------------


def test_the_cli_maps_answers_to_the_embedded_exit_codes(served: ServerCli) -> None:
    tracking = served.ok(
        "submit", str(served.write_submission("bare3.json", attachments=[])), who="owner"
    ).json()["tracking_number"]
    denied = served.run("validate", tracking, who="owner")
    assert denied.code == 3
    assert denied.err.startswith("pcii: error: validate denied for 'owner'")
    missing = served.run("--json", "status", "PCII-2026-00000002", who="owner")
    assert missing.code == 2
    assert json.loads(missing.out) == {
        "error": "no record with tracking number 'PCII-2026-00000002'",
        "exit_code": 2,
    }
    # A receipt is checked against the server's log key (or --key).
    receipt = served.root / "receipt-over-the-wire.json"
    served.ok(
        "submit",
        str(served.write_submission("bare4.json", attachments=[])),
        "--receipt-out",
        str(receipt),
        who="owner",
    )
    remote = served.environment(("status",))
    checked = served.run("--json", "receipt", "verify", str(receipt), env=remote)
    assert checked.code == 0 and checked.json()["verified"] is True, checked.err
    # The users hold no unseal secret and no store credentials.
    assert "PCII_UNSEAL_SECRET" not in served.environment(("status",))


def test_an_untrusted_certificate_or_no_server_is_a_clear_error(
    served: ServerCli, tmp_path: Path
) -> None:
    assert served.server is not None
    other = tmp_path / "other-ca.pem"
    from pcii_vault.service.tls import ensure_self_signed

    other.write_bytes(ensure_self_signed(tmp_path / "other", ["127.0.0.1"]).cert_path.read_bytes())
    untrusted = served.run("status", "PCII-2026-00000001", who="owner", env={"PCII_CA": str(other)})
    assert untrusted.code == 2
    assert "not trusted" in untrusted.err and "--ca" in untrusted.err
    from tests.e2e.conftest import free_port

    def status_at(url: str) -> Result:
        return served.run("status", "PCII-2026-00000001", who="owner", env={"PCII_VAULT": url})

    # The right certificate, another name for the host: the name is wrong, not the --ca.
    other_name = status_at(f"https://127.1:{served.server.port}")
    assert other_name.code == 2
    assert "is not made out for 127.1" in other_name.err, other_name.err
    down = status_at(f"https://127.0.0.1:{free_port()}")
    assert down.code == 5
    assert "cannot reach" in down.err
    plain = served.run("status", "X", who="owner", env={"PCII_VAULT": "http://127.0.0.1:1"})
    assert plain.code == 2
    assert "https" in plain.err


# ----- the server's life ---------------------------------------------------------------------


def _populated(root: Path, **env: str) -> ServerCli:
    cli = ServerCli(root)
    cli.env.update(env)
    cli.init()
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    cli.add("office", "office", "--org", "PCII Program Office", "--training-expires", TRAINED)
    return cli


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[ServerCli]:
    """A vault of its own with an owner and an office user, served; stopped afterwards."""
    cli = _populated(tmp_path)
    try:
        yield cli
    finally:
        cli.close()


def test_sigterm_finishes_in_flight_requests_then_exits(fresh: ServerCli) -> None:
    server = fresh.start()
    code, _ = stop_during_submissions(fresh)
    assert code == 0, server.log.read_text()[-2000:]


def _arriving(records: Path) -> bool:
    for path in records.glob("*/files/.tmp-*"):
        try:
            if path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            continue
    return False


def test_kill_9_during_an_upload_leaves_no_record_and_a_sound_log(fresh: ServerCli) -> None:
    cli = fresh
    server = cli.start()
    big = cli.root / "big.bin"
    with big.open("wb") as out:
        out.write(os.urandom(1 << 20) * 200)
    document = cli.write_submission(
        "big.json",
        attachments=[{"name": "big.bin", "description": "a large file"}],
    )
    env = cli.environment(("submit",))
    submit = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pcii_vault",
            "--as",
            str(cli.key("owner")),
            "submit",
            str(document),
            "--attach",
            str(big),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Kill the server while the attachment is arriving (its temporary file is growing).
    records = cli.vault / "objects" / "records"
    deadline = time.monotonic() + 60
    while not _arriving(records):
        assert time.monotonic() < deadline and submit.poll() is None, "the upload never began"
        time.sleep(0.005)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    out, err = submit.communicate(timeout=120)
    cli.server = None
    assert submit.returncode == 5, (out, err)
    assert err.startswith("pcii: error:") and err.count("\n") == 1
    assert cli.ok("audit", "verify").json()["sound"] is True
    assert cli.ok("audit", "log", "--type", "submission.received").lines() == []
    # A restarted server serves on; what the dead upload left is an orphan for maintenance.
    cli.start()
    assert cli.ok("principal", "list", who="admin").code == 0
    listed = cli.ok("maintenance", "--dry-run", "--grace-hours", "0").json()
    assert all("records/" in key or "wrapped/" in key for key in listed["orphans"])


def test_two_servers_on_one_vault_sequence_their_acts(fresh: ServerCli) -> None:
    cli = fresh
    first = cli.start()
    second = VaultServer(cli.vault, cli.env, cli.root / "second.log")
    try:
        trackings = [
            cli.ok(
                "submit", str(cli.write_submission(f"t{n}.json", attachments=[])), who="owner"
            ).json()["tracking_number"]
            for n in range(4)
        ]
        results: list[tuple[str, int]] = []

        def validate(server: VaultServer, tracking: str) -> None:
            env = {"PCII_VAULT": server.url, "PCII_CA": str(server.ca)}
            results.append((tracking, cli.run("validate", tracking, who="office", env=env).code))

        threads = [
            threading.Thread(target=validate, args=(server, tracking))
            for tracking in trackings
            for server in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Exactly one of the two validations of each record wins; the other is refused.
        for tracking in trackings:
            codes = sorted(code for t, code in results if t == tracking)
            assert codes[0] == 0 and codes[1] != 0 and codes.count(0) == 1, (tracking, codes)
        assert cli.ok("audit", "verify").json()["sound"] is True
        validated = cli.ok("audit", "log", "--type", "submission.validated").lines()
        assert sorted(e["record"] for e in validated) == sorted(trackings)
    finally:
        second.stop()


def test_a_malformed_public_key_is_400_not_a_crash(served: ServerCli) -> None:
    admin = _caller(served, "admin")
    body = admin.act(
        "manage-principals",
        params={"op": "register", "principal": "x", "attributes": {}, "public_key": "!!"},
    )
    attributes = PrincipalAttributes(role="auditor", organisation="IG", level="federal")
    body.update(principal_id="x", attributes=attributes.model_dump(mode="json"), public_key="!!")
    response = admin.post("/v1/principals", json.dumps(body).encode())
    assert response.status_code == 400
    assert "public_key" in _error(response)["error"]


def test_slow_and_truncated_uploads_store_nothing(tmp_path: Path) -> None:
    import socket

    cli = _populated(tmp_path, PCII_SERVER_READ_TIMEOUT_S="1")
    server = cli.start()
    try:
        identity = Identity.load(cli.key("owner"))
        signer = RequestSigner("owner", identity.key)
        host, port = "127.0.0.1", server.port
        context = client_context(server.ca)

        def issued() -> tuple[str, str]:
            act = {"request": signed_act(identity, "identify").model_dump(mode="json")}
            body = json.dumps(act).encode()
            url = f"{server.url}/v1/tracking-numbers"
            headers = signer.headers("POST", url, body_digest=content_digest(body))
            headers["content-type"] = "application/json"
            with httpx.Client(verify=context) as http:
                answer = http.post(url, content=body, headers=headers).json()
            return answer["tracking_number"], answer["upload_ticket"]

        def raw_put(issued: tuple[str, str], send: bytes, declared: int, then: str) -> bytes:
            tracking, ticket = issued
            path = f"/v1/uploads/{tracking}/document?ticket={ticket}"
            body = send + b"x" * (declared - len(send))
            headers = signer.headers("PUT", f"{server.url}{path}", body_digest=content_digest(body))
            head = f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            head += f"Content-Length: {declared}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            with (
                socket.create_connection((host, port)) as sock,
                context.wrap_socket(sock, server_hostname=host) as tls,
            ):
                tls.sendall(head.encode() + send)
                if then == "close":
                    return b""
                tls.settimeout(20)
                return tls.recv(4096)

        stalled, cut = issued(), issued()
        # Stalls after 1 KiB of a declared 1 MiB: 408 after the read timeout.
        answer = raw_put(stalled, b"y" * 1024, 1 << 20, then="wait")
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        # Sends half and hangs up.
        raw_put(cut, b"z" * 4096, 1 << 20, then="close")
        time.sleep(1.0)
        records = cli.vault / "objects" / "records"
        for tracking in (stalled[0], cut[0]):
            assert not (records / tracking).exists()  # no object, temporary file or folder
        with httpx.Client(verify=client_context(server.ca)) as http:
            assert http.get(f"{server.url}/readyz").status_code == 200
    finally:
        cli.close()


def test_a_request_head_over_64_kib_is_431_and_the_server_serves_on(served: ServerCli) -> None:
    import socket

    server = served.start()
    host, port = "127.0.0.1", server.port
    context = client_context(server.ca)
    head = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nX-Big: {'a' * (200 << 10)}\r\n\r\n"
    with (
        socket.create_connection((host, port)) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        tls.settimeout(20)
        with contextlib.suppress(OSError):  # the server may close before all is sent
            tls.sendall(head.encode())
        answer = tls.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    with httpx.Client(verify=client_context(server.ca)) as http:
        assert http.get(f"{server.url}/healthz").status_code == 200
        # An ordinary signed request, headers and all, is far below the limit.
        assert http.get(f"{server.url}/readyz").status_code == 200


def test_uvicorns_own_lines_are_json_like_the_access_lines(served: ServerCli) -> None:
    """A request HTTP cannot parse: uvicorn logs it, as a JSON line (was plain text)."""
    import socket

    server = served.start()
    host, port = "127.0.0.1", server.port
    with (
        socket.create_connection((host, port)) as sock,
        client_context(server.ca).wrap_socket(sock, server_hostname=host) as tls,
    ):
        tls.settimeout(20)
        tls.sendall(b"\x00\x01 NOT HTTP AT ALL\r\n\r\n")
        with contextlib.suppress(OSError):
            tls.recv(4096)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = server.log.read_text().splitlines()
        if any("Invalid HTTP request" in x for x in lines):
            break
        time.sleep(0.1)
    uvicorn = [json.loads(x) for x in lines if "Invalid HTTP request" in x]
    assert uvicorn, lines[-5:]
    assert all(line["logger"].startswith("uvicorn") for line in uvicorn)


# ----- a server split into shares --------------------------------------------------------------


def _second_custodian(cli: ServerCli, shares: list[Path]) -> None:
    """Register `admin2`, on the server's machine with two shares (the server is sealed)."""
    local = Cli(cli.root)
    local.env = {**cli.env, "PCII_UNSEAL_SHARES": os.pathsep.join(map(str, shares[:2]))}
    local.add("admin2", "admin", "--org", "PCII Program Office")


def test_a_server_split_into_shares_starts_sealed_and_custodians_unseal_it(
    tmp_path: Path,
) -> None:
    cli = ServerCli(tmp_path)
    shares = init_split(cli, tmp_path / "shares")
    server = VaultServer(cli.vault, cli.env, tmp_path / "serve.log", ready=False)
    cli.server = server
    try:
        with httpx.Client(verify=client_context(server.ca)) as http:
            ready = http.get(f"{server.url}/readyz")
            assert ready.status_code == 503
            # Before any share: what the vault records (2 of 3), not null.
            assert (ready.json()["sealed"], ready.json()["threshold"]) == (True, 2)
        sealed = cli.run("principal", "list", who="admin")
        assert sealed.code == 5 and "sealed" in sealed.err

        words = shares[2].read_text().split()
        words[3] = "academic" if words[3] != "academic" else "acid"
        corrupted = tmp_path / "corrupted.txt"
        write_new_file(corrupted, " ".join(words).encode(), mode=0o600)  # as shares are kept
        bad = cli.run("unseal", "--share", str(corrupted), who="admin")
        assert bad.code == 2 and "checksum" in bad.err, bad.err

        first = cli.ok("unseal", "--share", str(shares[0]), who="admin").json()
        assert (first["sealed"], first["shares"], first["missing"]) == (True, 1, 1)
        # A tester's finding: a custodian registered after the server first looked its
        # custodians up (at the first offer) was "not a registered principal" until restart.
        _second_custodian(cli, shares)
        again = cli.run("unseal", "--share", str(shares[0]), who="admin")
        assert again.code == 2 and "already" in again.err
        # One custodian, one share: a second share from the same admin is refused.
        assert (
            "each custodian gives one share"
            in cli.run("unseal", "--share", str(shares[1]), who="admin").err
        )
        done = cli.ok("unseal", "--share", str(shares[1]), who="admin2").json()
        # The shares that opened it, not the four attempts.
        assert (done["sealed"], done["shares"]) == (False, 2)

        server.wait_ready()
        assert cli.ok("principal", "list", who="admin").code == 0
        cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority")
        unsealed = cli.ok("audit", "log", "--type", "vault.unsealed").lines()
        assert len(unsealed) == 1
        outcomes = [a["outcome"] for a in unsealed[0]["details"]["attempts"]]
        assert outcomes[0].startswith("refused") and "checksum" in outcomes[0]
        assert outcomes[1] == "accepted" and outcomes[4] == "accepted"
        assert outcomes[2].startswith("refused") and outcomes[3].startswith("refused")
        assert {a["principal"] for a in unsealed[0]["details"]["attempts"]} == {"admin", "admin2"}
    finally:
        cli.close()
    assert cli.ok("audit", "verify").json()["sound"] is True

    _sealed_again_custodians_only(cli, shares, tmp_path)


def _sealed_again_custodians_only(cli: ServerCli, shares: list[Path], tmp_path: Path) -> None:
    """Started again, it is sealed again; only active administrators' shares count."""
    server = VaultServer(cli.vault, cli.env, tmp_path / "serve2.log", ready=False)
    cli.server = server
    local = Cli(cli.root)
    local.env = {**cli.env, "PCII_UNSEAL_SHARES": os.pathsep.join(map(str, shares[:2]))}
    try:
        refused = cli.run("unseal", "--share", str(shares[2]), who="owner")
        assert refused.code == 3 and "administrator" in refused.err
        cli.ok("unseal", "--share", str(shares[2]), who="admin")
        # Testers' findings: a custodian suspended after giving a share still helped open
        # the vault, and refused offers of non-custodians were not logged.
        local.ok("principal", "update", "admin", "--status", "suspended", who="admin2")
        dropped = cli.ok("unseal", "--share", str(shares[0]), who="admin2").json()
        assert (dropped["sealed"], dropped["missing"]) == (True, 1)
        local.ok("principal", "update", "admin", "--status", "active", who="admin2")
        cli.ok("unseal", "--share", str(shares[2]), who="admin")
        server.wait_ready()
        [unsealed] = cli.ok("audit", "log", "--type", "vault.unsealed", who="admin").lines()[-1:]
        outcomes = [(a["principal"], a["outcome"]) for a in unsealed["details"]["attempts"]]
        assert outcomes[0][0] == "owner" and outcomes[0][1].startswith("refused")
        assert [who for who, _ in outcomes[1:]] == ["admin", "admin2", "admin", "admin"]
        assert outcomes[3][1].startswith("dropped: admin is no longer an active administrator")
        assert [outcomes[i][1] for i in (1, 2, 4)] == ["accepted"] * 3
    finally:
        cli.close()
