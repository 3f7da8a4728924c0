"""The Index as the legal-history check: one test per refusal, and the happy path.

Events are built directly (`Event`) with requests signed by `sign_request`, so each test
states exactly the history it replays. `Index.apply` is what `pcii audit verify` runs over
the whole log: every refusal here is an integrity failure of a log that contains it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import IntegrityError
from pcii_vault.index import TRANSITION_ACTIONS, Index
from pcii_vault.models.event import Event, EventType
from pcii_vault.models.principal import Principal, PrincipalAttributes
from pcii_vault.models.request import SignedRequest, sign_request
from pcii_vault.vault import principal_params

VAULT = "v-0123456789abcdef"
POLICY_SET = "ab" * 32
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TRACKING = "PCII-2026-00000042"
WATER = "Water and Wastewater Systems"


class History:
    """Builds and applies a log's events in order, as the vault would write them."""

    def __init__(self) -> None:
        self.index = Index.in_memory()
        self.keys: dict[str, Ed25519PrivateKey] = {}

    @property
    def next_seq(self) -> int:
        return self.index.size

    def time(self) -> datetime:
        return T0 + timedelta(minutes=self.next_seq)

    def vault_event(self, event_type: EventType, **fields: Any) -> Event:
        return Event(seq=self.next_seq, time=self.time(), type=event_type, actor="vault", **fields)

    def request(
        self, signer: str, action: str, *, key: Ed25519PrivateKey | None = None, **fields: Any
    ) -> SignedRequest:
        return sign_request(
            key or self.keys[signer],
            vault=VAULT,
            principal=signer,
            action=action,
            now=self.time(),
            **fields,
        )

    def act(
        self,
        actor: str,
        event_type: EventType,
        action: str,
        *,
        request: SignedRequest | None = None,
        record: str | None = None,
        decision: Literal["permit", "deny"] | None = "permit",
        details: dict[str, Any] | None = None,
        purpose: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Event:
        details = details or {}
        if params is None:
            params = _signed_params_for(event_type, details)
        signed = request or self.request(
            actor, action, record=record, purpose=purpose, params=params
        )
        return Event(
            seq=self.next_seq,
            time=self.time(),
            type=event_type,
            actor=actor,
            request=signed.to_log(),
            record=record,
            action=action,
            decision=decision,
            purpose=purpose,
            policy_set=POLICY_SET,
            details=details,
        )

    def principal_event(self, name: str, role: str, *, by: str = "admin", **attrs: Any) -> Event:
        key = Ed25519PrivateKey.generate()
        principal = Principal(
            id=name,
            role=role,
            organisation=attrs.pop("organisation", "Example Org"),
            level=attrs.pop("level", "federal"),
            public_key=base64.b64encode(key.public_key.raw).decode(),
            **attrs,
        )
        self.keys[name] = key
        details = {"principal": principal.model_dump(mode="json")}
        if by == "vault":
            return self.vault_event("principal.registered", details=details)
        attributes = PrincipalAttributes.model_validate(
            principal.model_dump(include=set(PrincipalAttributes.model_fields))
        )
        params = principal_params(name, attributes, key.public_key)
        return self.act(
            by, "principal.registered", "manage-principals", details=details, params=params
        )

    def apply(self, event: Event) -> None:
        self.index.apply(event)

    # ----- common histories --------------------------------------------------------------

    def start(self) -> None:
        """vault.initialized, policy.loaded, the first admin, then four users."""
        self.apply(self.vault_event("vault.initialized", details={"vault_id": VAULT}))
        self.apply(self.vault_event("policy.loaded", policy_set=POLICY_SET))
        self.apply(self.principal_event("admin", "admin", by="vault"))
        self.apply(self.principal_event("owner", "owner", organisation="Riverbend MWA"))
        self.apply(self.principal_event("office", "office"))
        self.apply(self.principal_event("analyst", "analyst", sectors=[WATER]))
        self.apply(self.principal_event("auditor", "auditor"))

    def receive(self, tracking: str = TRACKING) -> None:
        details = {
            "sector": WATER,
            "tlp": "TLP:AMBER",
            "submitter_org": "Riverbend MWA",
            "files": [{"object": "document", "name": "submission.json", "sha256": "0" * 64}],
            "kek_version": 1,
        }
        self.apply(
            self.act("owner", "submission.received", "submit", record=tracking, details=details)
        )

    def office(self, event_type: EventType, action: str, tracking: str = TRACKING) -> Event:
        return self.act("office", event_type, action, record=tracking)

    def retrieve(
        self, tracking: str = TRACKING, *, decision: Literal["permit", "deny"] = "permit"
    ) -> Event:
        return self.act(
            "analyst",
            "access.decided",
            "retrieve",
            record=tracking,
            decision=decision,
            purpose="drought planning",
        )


@pytest.fixture
def history() -> Iterator[History]:
    made = History()
    made.start()
    yield made
    made.index.close()


def _signed_params_for(event_type: str, details: dict[str, Any]) -> dict[str, Any]:
    """The parameters the vault's client signs for an act that records `details`."""
    if event_type == "principal.updated":
        return {"op": "update", "principal": details["principal"], "changes": details["changes"]}
    if event_type == "principal.revoked":
        return {"op": "revoke", "principal": details["principal"]}
    if event_type == "submission.received":
        return {"files": details.get("files")}
    if event_type.startswith("key."):
        op = {"key.rotated": "rotate", "key.rewrapped": "rewrap", "key.retired": "retire"}
        extra = {"version": details["version"]} if event_type == "key.retired" else {}
        return {"op": op[event_type], **extra}
    if event_type in TRANSITION_ACTIONS:
        return dict(details)
    return {}


def _refused(history: History, event: Event, match: str) -> None:
    """The event is refused and leaves the index exactly as it was."""
    before = history.index.dump()
    with pytest.raises(IntegrityError, match=match):
        history.apply(event)
    assert history.index.dump() == before


# ----- the happy path ------------------------------------------------------------------------


def test_a_legal_lifecycle_is_projected_into_rows(history: History) -> None:
    history.receive()
    history.apply(history.office("submission.validated", "validate"))
    history.apply(history.retrieve())
    history.apply(history.retrieve(decision="deny"))
    history.apply(history.office("record.decontrolled", "decontrol"))
    history.apply(
        history.vault_event(
            "notice.sent",
            record=TRACKING,
            action="notify",
            details={"recipient": "analyst", "notice": "decontrolled"},
        )
    )
    history.apply(history.office("record.destroyed", "destroy"))
    history.apply(
        history.act("admin", "key.rotated", "rotate-keys", details={"version": 2, "previous": 1})
    )

    record = history.index.record(TRACKING)
    assert record.state == "destroyed"
    assert record.submitter == "owner"
    assert record.submitter_org == "Riverbend MWA"
    assert [r["principal"] for r in history.index.recipients(TRACKING)] == ["analyst"]
    assert history.index.recipients(TRACKING)[0]["purpose"] == "drought planning"
    assert {p.id for p in history.index.principals()} == {
        "admin",
        "owner",
        "office",
        "analyst",
        "auditor",
    }
    assert history.index.meta("vault_id") == VAULT
    assert history.index.meta("key.rotated") == '{"previous": 1, "version": 2}'
    assert history.index.size == 15


class _Recorder(History):
    """A History that also keeps the events it applied."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def apply(self, event: Event) -> None:
        super().apply(event)
        self.events.append(event)


def test_replaying_the_same_events_gives_the_same_rows() -> None:
    """`apply` is deterministic: a rebuild from the log reproduces the index exactly."""
    recorder = _Recorder()
    recorder.start()
    recorder.receive()
    recorder.apply(recorder.office("submission.validated", "validate"))
    recorder.apply(recorder.retrieve())
    replay = Index.in_memory()
    try:
        for event in recorder.events:
            replay.apply(event)
        assert replay.dump() == recorder.index.dump()
        assert replay.nonce_seen(recorder.events[-1].request["body"]["nonce"])  # type: ignore[index]
    finally:
        replay.close()
        recorder.index.close()


def test_a_suspended_actors_denial_is_still_recorded(history: History) -> None:
    """A denied request of an inactive user is a legal event (the attempt is logged)."""
    history.receive()
    history.apply(history.office("submission.validated", "validate"))
    history.apply(
        history.act(
            "admin",
            "principal.updated",
            "manage-principals",
            details={"principal": "analyst", "changes": {"status": "suspended"}},
        )
    )
    history.apply(history.retrieve(decision="deny"))
    assert history.index.recipients(TRACKING) == []


# ----- one test per refusal -------------------------------------------------------------------


def test_event_out_of_sequence_is_refused(history: History) -> None:
    event = history.vault_event("policy.loaded", policy_set="cd" * 32)
    _refused(history, event.model_copy(update={"seq": event.seq + 1}), "out of order")


def test_event_replayed_at_an_earlier_sequence_is_refused(history: History) -> None:
    event = history.vault_event("policy.loaded", policy_set="cd" * 32)
    _refused(history, event.model_copy(update={"seq": event.seq - 1}), "out of order")


def test_unknown_actor_is_refused(history: History) -> None:
    history.keys["ghost"] = Ed25519PrivateKey.generate()
    history.receive()
    event = history.act("ghost", "submission.validated", "validate", record=TRACKING)
    _refused(history, event, "actor 'ghost' unknown")


def test_revoked_actor_doing_a_permitted_act_is_refused(history: History) -> None:
    history.receive()
    history.apply(history.office("submission.validated", "validate"))
    history.apply(
        history.act(
            "admin", "principal.revoked", "manage-principals", details={"principal": "analyst"}
        )
    )
    _refused(history, history.retrieve(), "actor 'analyst' is revoked")


def test_principals_act_without_a_signed_request_is_refused(history: History) -> None:
    history.receive()
    event = history.office("submission.validated", "validate").model_copy(update={"request": None})
    _refused(history, event, "without a signed request")


def test_request_signed_for_another_principal_is_refused(history: History) -> None:
    """The office's own valid request, logged as the analyst's act."""
    history.receive()
    history.apply(history.office("submission.validated", "validate"))
    offices = history.request("office", "retrieve", record=TRACKING)
    event = history.act("analyst", "access.decided", "retrieve", request=offices, record=TRACKING)
    _refused(history, event, "signed for another principal")


def test_bad_request_signature_is_refused(history: History) -> None:
    history.receive()
    forged = history.request(
        "office", "validate", record=TRACKING, key=Ed25519PrivateKey.generate()
    )
    event = history.act(
        "office", "submission.validated", "validate", request=forged, record=TRACKING
    )
    _refused(history, event, "signature does not verify")


def test_altered_request_body_is_refused(history: History) -> None:
    history.receive()
    signed = history.request("office", "validate", record=TRACKING)
    altered = SignedRequest(
        body=signed.body.model_copy(update={"action": "destroy"}), signature=signed.signature
    )
    event = history.act(
        "office", "submission.validated", "validate", request=altered, record=TRACKING
    )
    _refused(history, event, "signature does not verify")


def test_replayed_nonce_is_refused(history: History) -> None:
    history.receive()
    history.apply(history.office("submission.validated", "validate"))
    first = history.retrieve()
    history.apply(first)
    replay = first.model_copy(update={"seq": history.next_seq})
    _refused(history, replay, "replayed request nonce")


def test_a_finding_logged_as_the_other_one_than_signed_is_refused(history: History) -> None:
    history.receive()
    initial = {"ground": "not-cii", "reason": "", "final": False}
    history.apply(
        history.act("office", "submission.rejected", "reject", record=TRACKING, details=initial)
    )
    # The office signed an initial finding; the event says final.
    _refused(
        history,
        history.act(
            "office", "submission.final-not-pcii", "reject", record=TRACKING, details=initial
        ),
        "signed as the other one",
    )


def test_validation_of_a_withdrawn_record_is_refused(history: History) -> None:
    history.receive()
    history.apply(history.act("owner", "submission.withdrawn", "withdraw", record=TRACKING))
    _refused(
        history,
        history.office("submission.validated", "validate"),
        "a withdrawn record cannot be validated",
    )


@pytest.mark.parametrize(
    ("steps", "state"),
    [
        ([("owner", "submission.withdrawn", "withdraw")], "withdrawn"),
        (
            [
                ("office", "submission.validated", "validate"),
                ("office", "record.destroyed", "destroy"),
            ],
            "destroyed",
        ),
        ([], "received"),
    ],
)
def test_release_of_a_record_not_releasable_is_refused(
    history: History, steps: list[tuple[str, EventType, str]], state: str
) -> None:
    """An `access.decided` permit to retrieve a withdrawn, destroyed or unvalidated record."""
    history.receive()
    for actor, event_type, action in steps:
        history.apply(history.act(actor, event_type, action, record=TRACKING))
    _refused(history, history.retrieve(), f"retrieve released a record that is {state}")


def test_denied_retrieval_of_a_withdrawn_record_is_legal(history: History) -> None:
    """Only a permit releases: a logged denial of a closed record is fine."""
    history.receive()
    history.apply(history.act("owner", "submission.withdrawn", "withdraw", record=TRACKING))
    history.apply(history.retrieve(decision="deny"))
    assert history.index.recipients(TRACKING) == []


def test_review_of_a_validated_record_is_refused(history: History) -> None:
    history.receive()
    history.apply(history.office("submission.validated", "validate"))
    review = history.act("office", "access.decided", "review", record=TRACKING)
    _refused(history, review, "review released a record that is validated")


def test_tracking_number_reused_is_refused(history: History) -> None:
    history.receive()
    details = {
        "sector": WATER,
        "tlp": "TLP:AMBER",
        "submitter_org": "Riverbend MWA",
        "files": [{"object": "document", "name": "submission.json", "sha256": "1" * 64}],
    }
    again = history.act("owner", "submission.received", "submit", record=TRACKING, details=details)
    _refused(history, again, f"tracking number {TRACKING} reused")


def test_principal_registered_twice_is_refused(history: History) -> None:
    _refused(history, history.principal_event("analyst", "analyst"), "registered twice")


def test_vault_event_carrying_a_request_is_refused(history: History) -> None:
    signed = history.request("admin", "manage-principals")
    event = history.vault_event("policy.loaded", policy_set="cd" * 32, request=signed.to_log())
    _refused(history, event, "the vault does not sign requests")


def test_vault_initialized_twice_is_refused(history: History) -> None:
    _refused(
        history,
        history.vault_event("vault.initialized", details={"vault_id": VAULT}),
        "initialised twice",
    )


def test_an_unseal_record_names_registered_custodians_and_their_attempts(
    history: History,
) -> None:
    at = history.time().isoformat()
    history.apply(
        history.vault_event(
            "vault.unsealed",
            details={"attempts": [{"principal": "admin", "at": at, "outcome": "accepted"}]},
        )
    )
    stranger = [{"principal": "mallory", "at": at, "outcome": "accepted"}]
    for details in ({"attempts": []}, {"attempts": stranger}, {"attempts": [{"x": 1}]}, {}):
        _refused(history, history.vault_event("vault.unsealed", details=details), "unseal")


def test_a_logged_request_with_parameters_its_action_does_not_take_is_refused(
    history: History,
) -> None:
    history.receive()
    smuggled = history.act(
        "office", "submission.validated", "validate", record=TRACKING, details={"ground": "x"}
    )
    _refused(history, smuggled, "validate parameters: ground")


def test_transition_of_an_unknown_record_is_refused(history: History) -> None:
    _refused(history, history.office("submission.validated", "validate"), "no record")


def test_update_of_a_revoked_principal_is_refused(history: History) -> None:
    history.apply(
        history.act(
            "admin", "principal.revoked", "manage-principals", details={"principal": "analyst"}
        )
    )
    event = history.act(
        "admin",
        "principal.updated",
        "manage-principals",
        details={"principal": "analyst", "changes": {"status": "active"}},
    )
    _refused(history, event, "'analyst' is revoked")
