"""Every route of a real `pcii serve`, from its own /openapi.json, with random requests.

Schemathesis generates each operation's requests from the document (bodies that fit
the schema and bodies that do not, random path parameters); each one is sent three ways:

- unsigned, as generated: refused at the door (401), or 400/404/413;
- with a valid RFC 9421 signature of its exact bytes by a registered principal (admin,
  owner or office), its act claiming to be theirs: the body reaches validation, then the
  core's check of the act's (random) signature;
- the same, its `request` replaced by a real signed act of that principal for the route's
  action, keeping the generated record, purpose, use, authority and parameters and the
  route's other fields: the act reaches the core (decisions, lifecycle, key operations).

No answer is a 5xx, every error travels as `{"error", "exit_code", "kind", "problems"}`
(and `"handed_to_log": false` for an act refused before the log), and afterwards the
server is still ready and its log still verifies. The number of examples is small
(PCII_FUZZ_EXAMPLES raises it for a longer run).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import InputError
from pcii_vault.identity import Identity
from pcii_vault.index import TRANSITION_ACTIONS
from pcii_vault.models.principal import PrincipalAttributes
from pcii_vault.service.httpsig import RequestSigner, content_digest
from pcii_vault.service.tls import client_context
from pcii_vault.vault import principal_params
from tests.e2e.conftest import TRAINED, ServerCli, VaultServer, signed_act

pytestmark = pytest.mark.slow

# The same examples every run (derandomized); PCII_FUZZ_EXAMPLES=N makes a longer run of
# new random ones.
EXAMPLES = int(os.environ.get("PCII_FUZZ_EXAMPLES", "12"))
DERANDOMIZE = "PCII_FUZZ_EXAMPLES" not in os.environ
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
ERROR_FIELDS = {"error", "exit_code", "kind", "problems"}

# The action a route's act is signed for (a transition's depends on its event type). The
# key migration is left out of the real-act variant: a random target URI must never make
# the server connect anywhere.
ROUTE_ACTIONS = {
    "/v1/identify": "identify",
    "/v1/tracking-numbers": "identify",
    "/v1/submissions": "submit",
    "/v1/status": "status",
    "/v1/search": "search",
    "/v1/destroy": "destroy",
    "/v1/releases": "review",
    "/v1/principals": "manage-principals",
    "/v1/principals/update": "manage-principals",
    "/v1/principals/revoke": "manage-principals",
    "/v1/principals/list": "identify",
    "/v1/deadlines": "identify",
    "/v1/keys/status": "rotate-keys",
    "/v1/keys/rotate": "rotate-keys",
    "/v1/keys/rewrap": "rotate-keys",
    "/v1/keys/retire": "rotate-keys",
}
RECORDS = {"/v1/status", "/v1/transitions", "/v1/destroy", "/v1/releases"}
KEY_OPS = {"/v1/keys/status": "status", "/v1/keys/rotate": "rotate", "/v1/keys/rewrap": "rewrap"}


@dataclass
class Target:
    cli: ServerCli
    server: VaultServer
    http: httpx.Client
    identities: dict[str, Identity]
    records: list[str]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    cli = ServerCli(tmp_path_factory.mktemp("fuzzed"))
    cli.init()
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    cli.add("office", "office", "--org", "PCII Program Office", "--training-expires", TRAINED)
    submitted = cli.ok(
        "submit", str(cli.write_submission("bare.json", attachments=[])), who="owner"
    ).json()
    server = cli.start()
    try:
        with httpx.Client(verify=client_context(server.ca), timeout=30) as http:
            identities = {who: Identity.load(cli.key(who)) for who in ("admin", "owner", "office")}
            yield Target(cli, server, http, identities, [submitted["tracking_number"]])
    finally:
        cli.close()


def _schema(target: Target) -> Any:
    document = target.http.get(f"{target.server.url}/openapi.json").json()
    return schemathesis.openapi.from_dict(document)


def _act(target: Target, who: str, path: str, body: dict[str, Any], data: Any) -> dict[str, Any]:
    """A real act of `who` for the route, keeping the generated fields where they fit.

    Half the time the route's own fields are made to fit too (a lifecycle event type, a
    known record, a well-formed principal), so that acts get past the first checks.
    """
    identity = target.identities[who]
    act = body.get("request")
    generated = act.get("body") if isinstance(act, dict) else None
    generated = generated if isinstance(generated, dict) else {}
    fields: dict[str, Any] = {
        k: generated.get(k) for k in ("record", "purpose", "use", "authority")
    }
    fields["params"] = generated.get("params")
    fitting = data.draw(st.booleans())
    if fitting:  # a record act names a record of the vault; any other act names none
        fields["record"] = data.draw(st.sampled_from(target.records)) if path in RECORDS else None
    action = ROUTE_ACTIONS[path]
    body = dict(body)
    if path == "/v1/transitions":
        if fitting:
            body["event_type"] = data.draw(st.sampled_from(sorted(TRANSITION_ACTIONS)))
        action = TRANSITION_ACTIONS.get(str(body.get("event_type")), "validate")
    elif path == "/v1/releases":
        action = data.draw(st.sampled_from(["review", "retrieve"]))
    elif path in KEY_OPS:
        fields["params"] = {"op": KEY_OPS[path]}
    elif path == "/v1/keys/retire":
        fields["params"] = {"op": "retire", "version": body.get("version")}
    elif path == "/v1/principals" and fitting:
        fields["params"] = _registration(body, data)
    elif path == "/v1/principals/update":
        changes = body.get("changes")
        fields["params"] = {
            "op": "update",
            "principal": body.get("principal_id"),
            "changes": changes,
        }
    elif path == "/v1/principals/revoke":
        fields["params"] = {"op": "revoke", "principal": body.get("principal_id")}
    try:
        signed = signed_act(identity, action, **fields)
    except InputError:  # generated fields that cannot be signed (huge numbers): none of them
        signed = signed_act(identity, action)
    return {**body, "request": signed.model_dump(mode="json")}


def _registration(body: dict[str, Any], data: Any) -> dict[str, Any]:
    """Make a generated `principal add` body well-formed; return the params to sign."""
    attributes = PrincipalAttributes(
        role=data.draw(st.sampled_from(["owner", "office", "analyst", "auditor", "admin"])),
        organisation="Fuzz",
        level="federal",
    )
    key = Ed25519PrivateKey.generate().public_key
    body["principal_id"] = data.draw(st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True))
    body["attributes"] = attributes.model_dump(mode="json")
    body["public_key"] = base64.b64encode(key.raw).decode()
    return principal_params(body["principal_id"], attributes, key)


def _claimed_by(body: Any, who: str) -> bool:
    """Make a generated act claim to be `who`'s (so it gets past the signer check)."""
    act = body.get("request") if isinstance(body, dict) else None
    if not isinstance(act, dict) or not isinstance(act.get("body"), dict):
        return False
    act["body"]["principal"] = who
    return True


def _send(target: Target, case: Any, data: Any) -> httpx.Response:
    """Prepare the generated request, then send it unsigned, signed, or with a real act."""
    prepared = requests.Request(**case.as_transport_kwargs(base_url=target.server.url)).prepare()
    assert prepared.method is not None and prepared.url is not None
    body = prepared.body or b""
    body = body.encode() if isinstance(body, str) else body
    if prepared.method == "PUT":
        body = data.draw(st.binary(max_size=256))
    headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    way = data.draw(st.sampled_from(["act", "signed", "unsigned"]))
    if way != "unsigned":
        who = data.draw(st.sampled_from(sorted(target.identities)))
        path = case.operation.path
        if way == "act" and path in ROUTE_ACTIONS and isinstance(case.body, dict):
            body = json.dumps(_act(target, who, path, case.body, data)).encode()
        elif way == "signed" and _claimed_by(case.body, who):
            body = json.dumps(case.body).encode()  # its act's signature is the random one
        identity = target.identities[who]
        signer = RequestSigner(identity.principal, identity.key)
        headers.update(
            signer.headers(prepared.method, prepared.url, body_digest=content_digest(body))
        )
    return target.http.request(prepared.method, prepared.url, content=body, headers=headers)


def _check(response: httpx.Response, case: Any) -> None:
    where = f"{case.method} {case.operation.path}"
    assert response.status_code < 500, (where, response.status_code, response.text[:500])
    if response.status_code >= 400:
        fields = set(response.json())
        # `handed_to_log` (false) says the act was refused before anything went to the log.
        assert fields - {"handed_to_log"} == ERROR_FIELDS, (where, response.text[:500])
        assert response.json().get("handed_to_log") in (None, False), where


def _fuzz(target: Target, strategy: Any, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, data=st.data())
    def fuzz(case: Any, data: Any) -> None:
        _check(_send(target, case, data), case)

    fuzz()


def test_every_route_survives_random_requests(target: Target) -> None:
    schema = _schema(target)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        # Bodies and parameters that fit the schema reach the core; some that do not.
        _fuzz(target, operation.as_strategy(generation_mode=POSITIVE), EXAMPLES)
        if operation.body:  # (any string fits an unconstrained path parameter)
            _fuzz(target, operation.as_strategy(generation_mode=NEGATIVE), EXAMPLES // 3)

    # The server is still ready, and what the random acts logged is a sound log.
    assert target.server.process.poll() is None
    assert target.http.get(f"{target.server.url}/readyz").json() == {"ready": True}
    assert target.cli.ok("audit", "verify").json()["sound"] is True
