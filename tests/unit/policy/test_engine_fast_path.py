"""The engine's fast path decides exactly as plain Cedar does, and fails closed.

The engine caches schema-checked entities per facts value, evaluates each action against
the slice of the policy set its scope can reach, and serialises the context itself. These
tests compare it with a reference evaluation (the whole policy set, entities parsed and
validated against the schema for every request, the context as `json.dumps` writes it)
and feed it entities that do not match the schema.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import cedarpy
import pytest
from policy_facts import NOW, POLICIES, principal, record, request

from pcii_vault.policy.engine import PolicyEngine
from pcii_vault.policy.entities import (
    PrincipalFacts,
    RecordFacts,
    RequestFacts,
    context_json,
    context_record,
    principal_entity,
    record_entity,
    vault_entity,
)

VAULT_ACTIONS = ("submit", "read-log", "manage-principals", "rotate-keys")
RECORD_ACTIONS = (
    "status",
    "withdraw",
    "review",
    "mark-deficient",
    "validate",
    "reject",
    "decontrol",
    "destroy",
    "retrieve",
    "search",
)


def _reference(
    engine: PolicyEngine,
    who: PrincipalFacts,
    action: str,
    what: RecordFacts | None,
    context: RequestFacts,
) -> tuple[str, tuple[str, ...], bool]:
    """Decide with the whole set and freshly validated entities; (decision, reasons, errored)."""
    resource = vault_entity() if what is None else record_entity(what)
    entities = cedarpy.Entities.from_json_str(
        json.dumps([principal_entity(who), resource]), engine._schema
    )
    result = cedarpy.is_authorized(
        {
            "principal": {"type": "User", "id": who.id},
            "action": {"type": "Action", "id": action},
            "resource": resource["uid"],
            "context": context_record(context),
        },
        engine._policy_set,
        entities,
        engine._schema,
    )
    errored = bool(result.diagnostics.errors)
    return result.decision.value, tuple(sorted(result.diagnostics.reasons)), errored


PRINCIPALS = [
    principal(role=role, level=level, organisation="Acme Power", contractor=contractor)
    for role, level, contractor in [
        ("owner", "private", False),
        ("office", "federal", False),
        ("analyst", "federal", False),
        ("analyst", "federal", True),
        ("analyst", "local", False),
        ("auditor", "federal", False),
        ("admin", "federal", False),
    ]
] + [
    principal(status="suspended"),
    principal(training_expires=NOW),
    principal(level="state", nda_signed=None),
    principal(sectors=frozenset({"Dams"})),
]
CONTEXTS = [
    request(),
    request(purpose=" "),
    request(use="regulatory-enforcement"),
    request(use="homeland-security"),
    request(use="disclosure-exception", authority="exception:gao"),
    request(use="disclosure-exception", authority="exception:dhs-oig", emergency=True),
    request(authority="exception:unknown"),
]
STATES = ("received", "validated", "categorical", "withdrawn", "decontrolled")


def test_fast_path_matches_whole_set_evaluation(engine: PolicyEngine) -> None:
    """Every decision, reason list and error outcome equals the unsliced, uncached one."""
    cases = [
        (who, action, record(state=state), context)
        for who, action, state, context in itertools.product(
            PRINCIPALS, RECORD_ACTIONS, STATES, CONTEXTS
        )
    ] + [
        (who, action, None, context)
        for who, action, context in itertools.product(PRINCIPALS, VAULT_ACTIONS, CONTEXTS)
    ]
    permits = 0
    for who, action, what, context in cases:
        decision = engine.decide(who, action, what, context)
        expected, reasons, errored = _reference(engine, who, action, what, context)
        label = (who, action, what, context)
        assert decision.allowed == (expected == "Allow" and not errored), label
        assert bool(decision.errors) == errored, label
        if not errored:
            assert decision.policy_ids == reasons, label
        permits += decision.allowed
    assert permits > 50  # the sample exercises permits, not only denials


def test_slices_leave_out_only_policies_whose_scope_cannot_match(engine: PolicyEngine) -> None:
    """`status` does not handle PCII or disclose: those rules are left out, others kept."""
    status = {p for p in engine.policies if p in str(engine._slices["status"])}
    assert "principal-not-active" in status  # scope: every action
    assert "office-status" in status
    assert "training-not-current" not in status  # action in "handle-pcii"
    assert "no-need-to-know" not in status  # action in "disclose"
    retrieve = str(engine._slices["retrieve"])
    for policy_id in ("training-not-current", "no-need-to-know", "record-closed"):
        assert policy_id in retrieve


def _bypass(facts: object, **changes: object) -> None:
    """Change frozen facts after construction (what a bug elsewhere could do)."""
    for name, value in changes.items():
        object.__setattr__(facts, name, value)


@pytest.mark.parametrize(
    ("action", "who", "changes"),
    [
        # The permit does not read the sector: without validation this was a permit.
        ("destroy", {"role": "office"}, {"state": "withdrawn", "sector": 5}),
        ("status", {"role": "office"}, {"submitter_org": ["Acme Power"]}),
        ("retrieve", {}, {"tlp": None}),
    ],
)
def test_record_entity_not_matching_schema_denies(
    engine: PolicyEngine, action: str, who: dict[str, str], changes: dict[str, object]
) -> None:
    good = record(state=str(changes.get("state", "validated")))
    assert engine.decide(principal(**who), action, good, request()).allowed
    bad = record(state=str(changes.get("state", "validated")))
    _bypass(bad, **changes)
    decision = engine.decide(principal(**who), action, bad, request())
    assert not decision.allowed
    assert decision.errors


def test_principal_entity_not_matching_schema_denies(engine: PolicyEngine) -> None:
    bad = principal(id="bad-principal")
    _bypass(bad, contractor="no")
    decision = engine.decide(bad, "retrieve", record(), request())
    assert (decision.allowed, bool(decision.errors)) == (False, True)


def test_changed_record_is_not_served_from_cache(engine: PolicyEngine) -> None:
    """The record cache is keyed by the whole facts value."""
    assert engine.decide(principal(), "retrieve", record(), request()).allowed
    closed = engine.decide(principal(), "retrieve", record(state="withdrawn"), request())
    assert closed.policy_ids == ("record-closed",)
    assert engine.decide(principal(), "retrieve", record(), request()).allowed


def test_fresh_engine_decides_like_a_warm_one() -> None:
    """Nothing cached changes a decision: a second engine agrees request by request."""
    warm = PolicyEngine.load(POLICIES)
    for who in PRINCIPALS:
        warm.decide(who, "retrieve", record(), request())
    for who in PRINCIPALS:
        cold = PolicyEngine.load(POLICIES)
        assert cold.decide(who, "retrieve", record(), request()) == warm.decide(
            who, "retrieve", record(), request()
        )


@pytest.mark.parametrize(
    "context",
    [
        request(),
        request(purpose='  quote " backslash \\ tab \t  '),
        request(purpose="caf\u00e9 \u2603 \U0001f600 \x00 \x1f"),
        request(purpose="lone \ud800 surrogate"),
        request(use="", purpose=""),
        request(authority='exception:"gao"', emergency=True),
        request(now=datetime(2026, 6, 1, 12, 0, 0, 1, tzinfo=UTC)),
        request(now=datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)),
        request(now=NOW + timedelta(days=365 * 3000)),
    ],
)
def test_context_json_is_byte_identical_to_json_dumps(context: RequestFacts) -> None:
    expected = json.dumps(context_record(context), separators=(",", ":"))
    assert context_json(context) == expected


@pytest.mark.parametrize(
    ("builder", "changes"),
    [
        (principal, {"organisation": 7}),
        (principal, {"contractor": 1}),
        (principal, {"sectors": frozenset({1})}),
        (principal, {"training_expires": "2027-01-01"}),
        (principal, {"nda_signed": "2026-01-01"}),
        (record, {"sector": None}),
        (record, {"submitter": b"owner-1"}),
        (record, {"tlp": 1}),
        (request, {"purpose": None}),
        (request, {"emergency": "no"}),
        (request, {"authority": 29}),
        (request, {"now": None}),
    ],
)
def test_wrong_typed_facts_are_refused(builder: object, changes: dict[str, object]) -> None:
    """Facts carry exactly the Python types the schema's attributes need."""
    assert callable(builder)
    with pytest.raises(TypeError):
        builder(**changes)
