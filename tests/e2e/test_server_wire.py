"""`pcii serve` at the HTTP layer: request heads, routes, codes, roles, what errors show.

A real server process on 127.0.0.1 with a short read timeout (2 s), so the deadline for
a request's head is tested without waiting the default 30 s.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pcii_vault.errors import ActConflictError, VaultError
from pcii_vault.identity import Identity
from pcii_vault.models.request import RequestBody
from pcii_vault.service.httpsig import RequestSigner, content_digest
from pcii_vault.service.tls import client_context
from pcii_vault.service.transport import HttpTransport
from pcii_vault.vault import Vault
from tests.e2e.conftest import SECRET, TRAINED, ServerCli, VaultServer, signed_act

pytestmark = pytest.mark.slow

READ_TIMEOUT_S = 2.0
_TRACKING = "PCII-2026-{:08d}"


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerCli]:
    """A served vault with two owners, an analyst and an auditor; read timeout 2 s."""
    cli = ServerCli(tmp_path_factory.mktemp("wire"))
    cli.env["PCII_SERVER_READ_TIMEOUT_S"] = str(READ_TIMEOUT_S)
    cli.init()
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    cli.add("owner2", "owner", "--org", "Lakeside Power", "--level", "private")
    cli.add("office", "office", "--org", "PCII Program Office", "--training-expires", TRAINED)
    cli.add_water_analyst("water", "--level", "state", "--org", "State Water Board")
    cli.add("aud", "auditor", "--org", "PCII Officer", "--training-expires", TRAINED)
    cli.start()
    try:
        yield cli
    finally:
        cli.close()


def _server(cli: ServerCli) -> VaultServer:
    assert cli.server is not None
    return cli.server


def _http(server: VaultServer) -> httpx.Client:
    return httpx.Client(verify=client_context(server.ca), timeout=30)


def _tls(server: VaultServer) -> ssl.SSLSocket:
    """A raw TLS connection to the server (to send what no HTTP client would)."""
    tcp = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    return client_context(server.ca).wrap_socket(tcp, server_hostname="127.0.0.1")


def _read_all(conn: ssl.SSLSocket, timeout: float) -> bytes:
    """Everything the server sends until it closes (or `timeout`, or a reset)."""
    conn.settimeout(timeout)
    answer = b""
    try:
        while data := conn.recv(65536):
            answer += data
    except (TimeoutError, OSError):
        pass
    return answer


def _json_error(answer: bytes) -> dict[str, Any]:
    """The JSON error body of a raw HTTP answer, checked to be the API's error shape."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:300]
    error = json.loads(body)
    assert set(error) == {"error", "exit_code", "kind", "problems"}, error
    return dict(error)


def _signed(
    server: VaultServer, identity: Identity, method: str, path: str, body: bytes = b""
) -> httpx.Response:
    url = f"{server.url}{path}"
    signer = RequestSigner(identity.principal, identity.key)
    headers = signer.headers(method, url, body_digest=content_digest(body))
    if body:
        json_body = method == "POST"
        headers["content-type"] = "application/json" if json_body else "application/octet-stream"
    with _http(server) as http:
        return http.request(method, url, content=body, headers=headers)


def _who(cli: ServerCli, name: str) -> Identity:
    return Identity.load(cli.key(name))


def _issued(server: VaultServer, owner: Identity) -> tuple[str, str]:
    """A tracking number the server issues to `owner`, and its upload ticket."""
    act = {"request": signed_act(owner, "identify").model_dump(mode="json")}
    response = _signed(server, owner, "POST", "/v1/tracking-numbers", json.dumps(act).encode())
    assert response.status_code == 200, response.text
    body = response.json()
    return body["tracking_number"], body["upload_ticket"]


def _ticket_of(cli: ServerCli, principal: str, tracking: str) -> str:
    """The ticket the server issued to `principal` with `tracking` (the CLI kept it)."""
    vault = Vault(cli.vault, unseal=SECRET.encode)
    try:
        return vault.upload_ticket(principal, tracking)
    finally:
        vault.close()


def _uploads(tracking: str, name: str, ticket: str | None) -> str:
    """The route of an upload, with its ticket when one is given."""
    return f"/v1/uploads/{tracking}/{name}" + (f"?ticket={ticket}" if ticket else "")


# ----- the request head ----------------------------------------------------------------------


def test_a_request_head_that_never_completes_is_408_and_closed(wire: ServerCli) -> None:
    server = _server(wire)
    with _tls(server) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        started = time.monotonic()
        answer = _read_all(conn, timeout=READ_TIMEOUT_S + 10)
    assert time.monotonic() - started < READ_TIMEOUT_S + 5
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in answer.lower()
    error = _json_error(answer)
    assert (error["exit_code"], error["kind"]) == (2, "InputError")


def test_a_head_trickled_a_byte_at_a_time_meets_the_same_deadline(wire: ServerCli) -> None:
    # Slowloris: each byte comes before any idle timeout would fire; the head never ends.
    with _tls(_server(wire)) as conn:
        answer = _trickle(conn, b"GET /healthz HTTP/1.1\r\n", pause=0.3)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def _trickle(conn: ssl.SSLSocket, start: bytes, *, pause: float) -> bytes:
    """Send `start`, then a byte every `pause` seconds until the server answers."""
    answer = b""
    conn.sendall(start)
    conn.settimeout(pause)
    deadline = time.monotonic() + READ_TIMEOUT_S + 15
    while time.monotonic() < deadline and not answer:
        try:
            conn.sendall(b"X")
            answer = conn.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except OSError:
            break
    return answer


def _upload_head(
    server: VaultServer, owner: Identity, tracking: str, ticket: str
) -> tuple[bytes, bytes]:
    """The signed head of a 100,000-byte document upload, and that body (sent raw)."""
    path = _uploads(tracking, "document", ticket)
    body = b"x" * 100_000
    headers = RequestSigner(owner.principal, owner.key).headers(
        "PUT", f"{server.url}{path}", body_digest=content_digest(body)
    )
    head = f"PUT {path} HTTP/1.1\r\nHost: {server.url.split('//')[1]}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode(), body


def test_an_upload_trickled_a_byte_at_a_time_is_cut_off(wire: ServerCli) -> None:
    """Never silent for the read timeout, yet far too slow: 408, and nothing stored."""
    server, owner = _server(wire), _who(wire, "owner")
    tracking, ticket = _issued(server, owner)
    head, _ = _upload_head(server, owner, tracking, ticket)
    with _tls(server) as conn:
        answer = _trickle(conn, head, pause=0.5)
        answer += _read_all(conn, timeout=5)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert "too slowly" in _json_error(answer)["error"]
    stored = wire.vault / "objects" / "records" / tracking
    assert not [p for p in stored.rglob("*") if not p.is_dir()]


def test_a_client_gone_mid_upload_is_no_server_error(wire: ServerCli) -> None:
    """Not a 500 with a traceback in the server's log: a 400 access line, nothing stored."""
    server, owner = _server(wire), _who(wire, "owner")
    tracking, ticket = _issued(server, owner)
    head, body = _upload_head(server, owner, tracking, ticket)
    before = len(_upload_lines(wire))
    errors = (wire.root / "serve.log").read_text().count("unexpected_error")
    with _tls(server) as conn:
        conn.sendall(head + body[:1000])
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    statuses: list[int] = []
    while time.monotonic() < deadline and not {400, 500} & set(statuses):
        time.sleep(0.1)
        statuses = [json.loads(line)["status"] for line in _upload_lines(wire)[before:]]
    assert 400 in statuses and 500 not in statuses, statuses  # (another test's may end late)
    assert (wire.root / "serve.log").read_text().count("unexpected_error") == errors
    stored = wire.vault / "objects" / "records" / tracking
    assert not [p for p in stored.rglob("*") if not p.is_dir()]


def _upload_lines(wire: ServerCli) -> list[str]:
    """The access lines of uploads that ended (any status) in this module's server."""
    lines = (wire.root / "serve.log").read_text().splitlines()
    return [line for line in lines if '"method": "PUT"' in line and '"access"' in line]


def test_a_connection_that_sends_nothing_is_closed(wire: ServerCli) -> None:
    server = _server(wire)
    with _tls(server) as conn:
        started = time.monotonic()
        answer = _read_all(conn, timeout=READ_TIMEOUT_S + 10)
        assert time.monotonic() - started < READ_TIMEOUT_S + 5
    assert answer == b""  # closed without an answer: there was no request


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])
def test_a_tls_handshake_that_never_completes_is_closed_at_the_read_timeout(
    wire: ServerCli, sent: bytes
) -> None:
    """No ClientHello, or half of one: closed by the read timeout, not the loop's 60 s.

    A tester's finding: the deadline began after the handshake, so a connection that
    never finished one was held for 60 s whatever PCII_SERVER_READ_TIMEOUT_S said.
    """
    server = _server(wire)
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as tcp:
        tcp.sendall(sent)
        started = time.monotonic()
        tcp.settimeout(READ_TIMEOUT_S + 30)
        with contextlib.suppress(OSError):
            while tcp.recv(65536):
                pass
        assert time.monotonic() - started < READ_TIMEOUT_S + 10


def test_a_kept_alive_connection_serves_requests_past_the_head_deadline(wire: ServerCli) -> None:
    # The deadline is per request head: a connection that keeps asking is not cut.
    server = _server(wire)
    with _http(server) as http:
        for _ in range(3):
            assert http.get(f"{server.url}/healthz").status_code == 200
            time.sleep(READ_TIMEOUT_S * 0.75)


def test_sigterm_does_not_wait_for_a_half_sent_request_head(tmp_path: Path) -> None:
    cli = ServerCli(tmp_path)
    cli.init()
    server = cli.start()  # the default read timeout (30 s) and graceful period
    try:
        # One connection idle since its handshake, one with half a request head.
        with _tls(server), _tls(server) as half:
            half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.5)
            started = time.monotonic()
            assert server.stop() == 0
            stopped = time.monotonic() - started
    finally:
        cli.close()
    assert stopped < 10, f"SIGTERM took {stopped:.1f} s"


def _head(size: int, *, headers: int = 1) -> bytes:
    """A GET /healthz whose header lines (after Host) total about `size` bytes."""
    line = size // headers
    fields = b"".join(
        b"X-F%d: %s\r\n" % (n, b"a" * (line - len(b"X-F%d: \r\n" % n))) for n in range(headers)
    )
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"


@pytest.mark.parametrize("headers", [1, 700])
def test_a_head_over_64_kib_in_one_piece_is_431_json(wire: ServerCli, headers: int) -> None:
    server = _server(wire)
    with _tls(server) as conn:
        conn.sendall(_head(75_000, headers=headers))
        answer = _read_all(conn, timeout=10)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"connection: close" in answer.lower()
    error = _json_error(answer)
    assert (error["exit_code"], error["kind"]) == (2, "InputError")
    assert "64 KiB" in error["error"]


def test_a_head_just_under_64_kib_is_served(wire: ServerCli) -> None:
    server = _server(wire)
    with _tls(server) as conn:
        conn.sendall(_head(60_000, headers=300))
        answer = _read_all(conn, timeout=3)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_an_unparsable_request_is_400_json(wire: ServerCli) -> None:
    server = _server(wire)
    with _tls(server) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n")
        answer = _read_all(conn, timeout=10)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    error = _json_error(answer)
    assert (error["exit_code"], error["kind"]) == (2, "InputError")


@pytest.mark.parametrize(
    ("head", "status", "said"),
    [
        (b"Host: 127.0.0.1\r\nHost: elsewhere.example\r\n", 400, "more than one Host header"),
        (b"Host: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n", 501, "'gzip' is not supported"),
        (b"", 400, "an HTTP/1.1 request without a Host header"),
    ],
)
def test_a_head_two_parsers_could_read_apart_is_refused_at_once(
    wire: ServerCli, head: bytes, status: int, said: str
) -> None:
    """A tester's finding: two Host headers were served, and an unknown transfer coding
    waited for the read timeout (408) before any answer."""
    server = _server(wire)
    with _tls(server) as conn:
        conn.sendall(b"POST /v1/search HTTP/1.1\r\n" + head + b"\r\n")
        answer = _read_all(conn, timeout=10)  # under the server's 30 s read timeout
    assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:200]
    assert b"connection: close" in answer.partition(b"\r\n\r\n")[0].lower()
    error = _json_error(answer)
    assert said in error["error"] and error["exit_code"] == 2


def test_head_on_health_and_readiness_answers_like_get_without_a_body(wire: ServerCli) -> None:
    server = _server(wire)
    with _http(server) as http:
        for route in ("/healthz", "/readyz"):
            got, head = http.get(f"{server.url}{route}"), http.head(f"{server.url}{route}")
            assert head.status_code == got.status_code == 200, route
            assert head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]


# ----- routes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/status/"), ("GET", "/v1/info/")])
def test_a_trailing_slash_is_404_not_a_redirect(wire: ServerCli, method: str, path: str) -> None:
    server = _server(wire)
    with _http(server) as http:
        response = http.request(method, f"{server.url}{path}", headers={"host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["exit_code"] == 2


# ----- conflicts -----------------------------------------------------------------------------


def test_an_upload_that_already_exists_is_409_exit_3(wire: ServerCli) -> None:
    server, owner = _server(wire), _who(wire, "owner")
    tracking, ticket = _issued(server, owner)
    path = _uploads(tracking, "document", ticket)
    results: list[httpx.Response] = []

    def put() -> None:
        results.append(_signed(server, owner, "PUT", path, b"ciphertext" * 1000))

    threads = [threading.Thread(target=put) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    for refused in (r for r in results if r.status_code == 409):
        body = refused.json()
        assert (body["exit_code"], body["kind"]) == (3, "ActConflictError"), body
        assert str(server.ca.parent) not in body["error"]


def test_an_upload_not_matching_its_signed_digest_leaves_nothing(wire: ServerCli) -> None:
    """Refused (401, exit 4), its object deleted, and (a tester's finding) its folder too."""
    server, owner = _server(wire), _who(wire, "owner")
    tracking, ticket = _issued(server, owner)
    url = f"{server.url}{_uploads(tracking, 'document', ticket)}"
    signer = RequestSigner(owner.principal, owner.key)
    headers = signer.headers("PUT", url, body_digest=content_digest(b"signed" * 1000))
    headers["content-type"] = "application/octet-stream"
    with _http(server) as http:
        refused = http.put(url, content=b"sent!!" * 1000, headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.json()["exit_code"] == 4
    assert not (wire.vault / "objects" / "records" / tracking).exists()


def test_the_client_maps_an_upload_conflict_to_exit_3(wire: ServerCli) -> None:
    server, owner = _server(wire), _who(wire, "owner")
    transport = HttpTransport(server.url, ca=server.ca, identity=owner)
    try:
        tracking = transport.new_tracking_number(signed_act(owner, "identify"))
        request = signed_act(owner, "identify", record=tracking)
        uploads = transport.uploads(request)
        uploads.put_stream(f"records/{tracking}/document", [b"first"])
        with pytest.raises(VaultError) as refused:
            uploads.put_stream(f"records/{tracking}/document", [b"second"])
    finally:
        transport.close()
    assert isinstance(refused.value, ActConflictError)
    assert refused.value.exit_code == 3


def test_a_submission_naming_an_existing_record_is_exit_2(wire: ServerCli) -> None:
    server, owner = _server(wire), _who(wire, "owner")
    tracking = wire.ok(
        "submit", str(wire.write_submission("taken.json", attachments=[])), who="owner"
    ).json()["tracking_number"]
    files = [{"name": "x", "object": "document", "sha256": "0" * 64, "size": 1}]
    # Submitted again by its owner, with the ticket it was issued with.
    response = _submission(server, owner, tracking, files, _ticket_of(wire, "owner", tracking))
    assert response.status_code == 400, response.text
    error = response.json()
    assert (error["exit_code"], error["kind"]) == (2, "InputError")
    assert "already a record" in error["error"]
    assert wire.ok("status", tracking, who="owner").json()["state"] == "received"


@pytest.mark.parametrize("who", ["owner", "water"])
def test_parameters_nested_too_deep_are_refused_and_never_logged(wire: ServerCli, who: str) -> None:
    """A denial logs the signed request: nested past the log reader's limit, the log
    would be unreadable for good (every command exit 4). Refused before anything is
    logged, whoever signs it (`water` may not submit: it would be a logged denial)."""
    server, signer = _server(wire), _who(wire, who)
    size = wire.ok("audit", "checkpoint").json()["size"]
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(240):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    tracking = _TRACKING.format(44444444)
    files = [{"name": "x", "object": "document", "sha256": "0" * 64, "size": 1, "x": deep}]
    body = RequestBody.model_construct(
        vault=signer.vault_id,
        principal=signer.principal,
        action="submit",
        record=tracking,
        purpose=None,
        use=None,
        authority=None,
        params={"files": files},
        time=datetime.now(UTC),
        nonce="1" * 32,
        v=1,
    )
    signature = base64.b64encode(signer.key.sign(body.signing_bytes())).decode()
    request = {"body": body.model_dump(mode="json"), "signature": signature}
    document = {
        "request": request,
        "tracking_number": tracking,
        "sealed_dek": base64.b64encode(b"\0" * 64).decode(),
        "files": files,
    }
    response = _signed(server, signer, "POST", "/v1/submissions", json.dumps(document).encode())
    assert response.status_code == 400, response.text
    assert "nested deeper than" in response.json()["error"]
    assert wire.ok("audit", "checkpoint").json()["size"] == size
    wire.ok("audit", "verify")


def _submission(
    server: VaultServer,
    who: Identity,
    tracking: str,
    files: list[dict[str, Any]],
    ticket: str | None = None,
) -> httpx.Response:
    request = signed_act(who, "submit", record=tracking, params={"files": files})
    body = {
        "request": request.model_dump(mode="json"),
        "tracking_number": tracking,
        "sealed_dek": base64.b64encode(b"\0" * 64).decode(),
        "files": files,
        "upload_ticket": ticket,
    }
    return _signed(server, who, "POST", "/v1/submissions", json.dumps(body).encode())


_DOCUMENT = {"name": "submission.json", "object": "document", "sha256": "0" * 64, "size": 1}


@pytest.mark.parametrize(
    ("attachment", "refusal"),
    [
        ({"name": "a.pdf", "object": "files/0", "size": 1}, "entry 1.sha256: Field required"),
        ({"object": "files/0", "sha256": "0" * 64, "size": 1}, "entry 1.name: Field required"),
        ({"name": ["a"], "object": "files/0", "sha256": "0" * 64, "size": 1}, "entry 1.name"),
        ({"name": "a.pdf", "object": "../x", "sha256": "0" * 64, "size": 1}, "entry 1.object"),
        ({**_DOCUMENT, "name": "again"}, "the document must come first, and once"),
        ({"name": "a.pdf", "object": "files/7", "sha256": "0" * 64, "size": 1}, "not uploaded"),
    ],
    ids=["no-hash", "no-name", "name-list", "object-path", "two-documents", "not-uploaded"],
)
def test_a_malformed_file_manifest_is_refused_before_anything_is_logged(
    wire: ServerCli, attachment: dict[str, Any], refusal: str
) -> None:
    """Logged, such a manifest failed every later review, search and status (KeyError)."""
    server, owner = _server(wire), _who(wire, "owner")
    size = wire.ok("audit", "checkpoint").json()["size"]
    tracking, ticket = _issued(server, owner)
    put = _signed(server, owner, "PUT", _uploads(tracking, "document", ticket), b"sealed" * 100)
    assert put.status_code == 201, put.text
    response = _submission(server, owner, tracking, [_DOCUMENT, attachment], ticket)
    assert response.status_code == 400, response.text
    assert refusal in response.json()["error"]
    assert wire.ok("audit", "checkpoint").json()["size"] == size
    # The owner's upload goes with the refusal (not left for maintenance).
    assert not (wire.vault / "objects" / "records" / tracking / "document").exists()


def test_a_denied_submission_leaves_the_owners_upload_in_progress(wire: ServerCli) -> None:
    """An analyst naming an owner's tracking number removes none of its objects."""
    server, owner, analyst = _server(wire), _who(wire, "owner"), _who(wire, "water")
    tracking, ticket = _issued(server, owner)
    put = _signed(server, owner, "PUT", _uploads(tracking, "document", ticket), b"sealed" * 100)
    assert put.status_code == 201, put.text
    size = wire.ok("audit", "checkpoint").json()["size"]
    for given in (None, ticket):
        denied = _submission(server, analyst, tracking, [_DOCUMENT], given)
        assert denied.status_code == 403, denied.text
    assert (wire.vault / "objects" / "records" / tracking / "document").is_file()
    assert wire.ok("audit", "checkpoint").json()["size"] == size  # refused before the core
    # Under a ticket bound to it (the server issues none to an analyst: made here), the
    # analyst's submit is the policy's to deny: logged, as any signed act's denial.
    own, _ = _issued(server, owner)
    own_ticket = _ticket_of(wire, "water", own)
    denied = _submission(server, analyst, own, [_DOCUMENT], own_ticket)
    assert denied.status_code == 403, denied.text
    assert "upload ticket" not in denied.json()["error"]
    assert wire.ok("audit", "checkpoint").json()["size"] == size + 1


def _owner2_refused(response: httpx.Response, text: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()
    assert (error["exit_code"], error["kind"]) == (3, "PolicyDenied"), error
    assert text in error["error"], error


def test_another_owner_can_neither_pre_empt_nor_remove_nor_fail_an_upload(
    wire: ServerCli,
) -> None:
    """A tracking number is bound to the owner it was issued to: another owner who learns
    it uploads, discards and submits nothing under it, with or without that owner's
    ticket (which is bound to its principal); the owner's submission goes on."""
    server, owner, other = _server(wire), _who(wire, "owner"), _who(wire, "owner2")
    tracking, ticket = _issued(server, owner)
    document = wire.vault / "objects" / "records" / tracking / "document"
    for given in (None, ticket, _issued(server, other)[1]):
        text = "no upload ticket" if given is None else f"for {other.principal}: only the owner"
        # Pre-empting a name the owner will upload next.
        path = _uploads(tracking, "document", given)
        _owner2_refused(_signed(server, other, "PUT", path, b"planted"), text)
        assert not document.exists()
    put = _signed(server, owner, "PUT", _uploads(tracking, "document", ticket), b"sealed" * 10)
    assert put.status_code == 201, put.text
    size = wire.ok("audit", "checkpoint").json()["size"]
    for given in (None, ticket):
        text = "no upload ticket" if given is None else f"for {other.principal}: only the owner"
        path = _uploads(tracking, "document", given)
        _owner2_refused(_signed(server, other, "DELETE", path), text)
        # A submit the vault refuses (a malformed manifest, say) removes the upload with
        # it: another owner's is refused before that.
        refused = _submission(server, other, tracking, [_DOCUMENT, {"name": "x"}], given)
        _owner2_refused(refused, text)
    assert document.read_bytes() == b"sealed" * 10
    assert wire.ok("audit", "checkpoint").json()["size"] == size  # nothing was logged
    # The owner removes its own upload with its ticket.
    gone = _signed(server, owner, "DELETE", _uploads(tracking, "document", ticket))
    assert gone.status_code == 200, gone.text
    assert not document.exists()


@pytest.mark.parametrize("tracking", ["x" * 64, "PCII-2026-12345678\u0000o1", "pcii-2026-12345678"])
def test_a_submission_of_no_tracking_number_is_malformed_not_denied(
    wire: ServerCli, tracking: str
) -> None:
    server, owner = _server(wire), _who(wire, "owner")
    size = wire.ok("audit", "checkpoint").json()["size"]
    response = _submission(server, owner, tracking, [_DOCUMENT], "A" * 32)
    assert response.status_code == 400, response.text
    error = response.json()
    assert (error["exit_code"], error["kind"]) == (2, "InputError"), error
    assert "is not a tracking number" in error["error"]
    assert wire.ok("audit", "checkpoint").json()["size"] == size


def test_an_owner_suspended_mid_submission_still_removes_its_uploads(wire: ServerCli) -> None:
    """Its submit is refused; the client's clean-up must not be, or the ciphertext stays
    until maintenance. Uploading more is still refused, and so is anyone without the
    ticket."""
    server, owner = _server(wire), _who(wire, "owner2")
    tracking, ticket = _issued(server, owner)
    path = _uploads(tracking, "document", ticket)
    assert _signed(server, owner, "PUT", path, b"sealed" * 10).status_code == 201
    wire.ok("principal", "update", "owner2", "--status", "suspended", who="admin")
    try:
        more = _signed(server, owner, "PUT", _uploads(tracking, "files/0", ticket), b"x")
        assert more.status_code == 403 and "suspended" in more.json()["error"], more.text
        unticketed = _signed(server, owner, "DELETE", _uploads(tracking, "document", None))
        _owner2_refused(unticketed, "no upload ticket")
        gone = _signed(server, owner, "DELETE", path)
        assert gone.status_code == 200, gone.text
        assert not (wire.vault / "objects" / "records" / tracking / "document").exists()
    finally:
        wire.ok("principal", "update", "owner2", "--status", "active", who="admin")


def test_an_owner_without_the_ticket_is_told_how_to_get_one(wire: ServerCli) -> None:
    server, owner = _server(wire), _who(wire, "owner")
    tracking, _ = _issued(server, owner)
    refused = _signed(server, owner, "PUT", _uploads(tracking, "document", None), b"x")
    _owner2_refused(refused, "no upload ticket")
    assert "pcii submit" in refused.json()["error"]
    forged = _signed(server, owner, "PUT", _uploads(tracking, "document", "A" * 32), b"x")
    _owner2_refused(forged, "does not match")
    too_long = _signed(server, owner, "PUT", _uploads(tracking, "document", "A" * 65), b"x")
    assert too_long.status_code == 400, too_long.text
    assert too_long.json()["error"].startswith("invalid request query parameter: ticket")
    assert not (wire.vault / "objects" / "records" / tracking).exists() or not any(
        (wire.vault / "objects" / "records" / tracking).iterdir()
    )


# ----- who may upload ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["water", "aud", "office"])
def test_only_owners_upload_or_discard(wire: ServerCli, who: str) -> None:
    server = _server(wire)
    owner, other = _who(wire, "owner"), _who(wire, who)
    tracking, ticket = _issued(server, owner)
    path = _uploads(tracking, f"files/{len(who)}", ticket)
    refused = _signed(server, other, "PUT", path, b"ciphertext")
    assert refused.status_code == 403
    assert (refused.json()["exit_code"], refused.json()["kind"]) == (3, "PolicyDenied")
    assert _signed(server, owner, "PUT", path, b"ciphertext").status_code == 201
    kept = _signed(server, other, "DELETE", path)
    assert kept.status_code == 403 and kept.json()["exit_code"] == 3
    assert _signed(server, owner, "DELETE", path).status_code == 200
    # Nor are they handed a tracking number and ticket (a tester's finding).
    act = {"request": signed_act(other, "identify").model_dump(mode="json")}
    issued = _signed(server, other, "POST", "/v1/tracking-numbers", json.dumps(act).encode())
    assert issued.status_code == 403 and issued.json()["exit_code"] == 3, issued.text
    assert "ask for a tracking number" in issued.json()["error"]


def test_the_client_maps_an_upload_refusal_to_exit_3(wire: ServerCli) -> None:
    server, analyst = _server(wire), _who(wire, "water")
    transport = HttpTransport(server.url, ca=server.ca, identity=analyst)
    tracking = _TRACKING.format(22222223)
    try:
        request = signed_act(analyst, "identify", record=tracking)
        with pytest.raises(VaultError) as refused:
            transport.uploads(request).put_stream(f"records/{tracking}/document", [b"x"])
    finally:
        transport.close()
    assert refused.value.exit_code == 3
    assert "owner" in str(refused.value)


# ----- what errors show ----------------------------------------------------------------------


def test_an_unknown_key_id_is_cut_in_the_error(wire: ServerCli) -> None:
    server, owner = _server(wire), _who(wire, "owner")
    key_id = "k" * 5000
    url = f"{server.url}/v1/identify"
    headers = RequestSigner(key_id, owner.key).headers("POST", url, body_digest=content_digest(b""))
    with _http(server) as http:
        response = http.post(url, headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert f"'{'k' * 80}'..." in error and "k" * 81 not in error
    assert len(error) < 200


@pytest.mark.parametrize(
    "path",
    [f"{_TRACKING.format(33333333)}/files/{'9' * 3000}", f"PCII-{'7' * 3000}/document"],
)
def test_an_upload_name_is_cut_in_the_error(wire: ServerCli, path: str) -> None:
    response = _signed(_server(wire), _who(wire, "owner"), "PUT", f"/v1/uploads/{path}", b"x")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "..." in error and len(error) < 200, error


def test_a_missing_log_object_names_the_key_not_the_server_path(wire: ServerCli) -> None:
    server, auditor = _server(wire), _who(wire, "aud")
    for route in ("/v1/objects/log/no-such-object", "/v1/objects-info/log/no-such-object"):
        response = _signed(server, auditor, "GET", route)
        assert response.status_code == 404, route
        error = response.json()["error"]
        assert "log/no-such-object" in error
        assert str(wire.vault) not in error and "/objects" not in error, error


def test_a_known_route_asked_with_another_method_is_405_with_allow(wire: ServerCli) -> None:
    """A tester's finding: no 405 carried the Allow header RFC 9110 requires."""
    server = _server(wire)
    with _http(server) as http:
        answer = http.get(f"{server.url}/v1/status")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json()["exit_code"] == 2
    # Every method of the path (the next finding: only the first route's).
    with _http(server) as http:
        uploads = http.post(f"{server.url}/v1/uploads/PCII-2026-00000001/document")
        ready = http.post(f"{server.url}/readyz")
    assert (uploads.headers["allow"], ready.headers["allow"]) == ("DELETE, PUT", "GET, HEAD")
