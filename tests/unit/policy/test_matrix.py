"""The behaviour of the default policy set, written out in full.

Every role x action x record state (and x government level for retrieve and search) is
decided against the table below; any change in behaviour changes a cell and fails here.
The requester is otherwise fully eligible: active, trained, NDA signed, need to know in
the record's sector, a stated purpose, use "infrastructure-protection", a member of the
submitting organisation (which matters only for owners). P = permit, . = deny.
"""

from __future__ import annotations

import pytest
from policy_facts import principal, record, request

from pcii_vault.policy.engine import PolicyEngine

STATES = (
    "received",
    "deficient",
    "validated",
    "categorical",
    "initially-not-pcii",
    "withdrawn",
    "final-not-pcii",
    "decontrolled",
    "destroyed",
)
ROLE_LEVEL = {
    "owner": "private",
    "office": "federal",
    "analyst": "federal",
    "auditor": "federal",
    "admin": "federal",
}

# role     action           rcv def val cat inp wdr fnp dec dst
RECORD_ACTIONS = """
owner      status            P   P   P   P   P   P   P   P   P
owner      withdraw          P   P   .   .   P   .   .   .   .
owner      review            .   .   .   .   .   .   .   .   .
owner      mark-deficient    .   .   .   .   .   .   .   .   .
owner      validate          .   .   .   .   .   .   .   .   .
owner      reject            .   .   .   .   .   .   .   .   .
owner      decontrol         .   .   .   .   .   .   .   .   .
owner      destroy           .   .   .   .   .   .   .   .   .
office     status            P   P   P   P   P   P   P   P   P
office     withdraw          .   .   .   .   .   .   .   .   .
office     review            P   P   .   .   P   .   .   .   .
office     mark-deficient    P   .   .   .   .   .   .   .   .
office     validate          P   P   .   .   P   .   .   .   .
office     reject            P   P   .   .   P   .   .   .   .
office     decontrol         .   .   P   P   .   .   .   .   .
office     destroy           .   .   P   P   .   P   P   P   .
analyst    status            .   .   .   .   .   .   .   .   .
analyst    withdraw          .   .   .   .   .   .   .   .   .
analyst    review            .   .   .   .   .   .   .   .   .
analyst    mark-deficient    .   .   .   .   .   .   .   .   .
analyst    validate          .   .   .   .   .   .   .   .   .
analyst    reject            .   .   .   .   .   .   .   .   .
analyst    decontrol         .   .   .   .   .   .   .   .   .
analyst    destroy           .   .   .   .   .   .   .   .   .
auditor    status            .   .   .   .   .   .   .   .   .
auditor    withdraw          .   .   .   .   .   .   .   .   .
auditor    review            .   .   .   .   .   .   .   .   .
auditor    mark-deficient    .   .   .   .   .   .   .   .   .
auditor    validate          .   .   .   .   .   .   .   .   .
auditor    reject            .   .   .   .   .   .   .   .   .
auditor    decontrol         .   .   .   .   .   .   .   .   .
auditor    destroy           .   .   .   .   .   .   .   .   .
admin      status            .   .   .   .   .   .   .   .   .
admin      withdraw          .   .   .   .   .   .   .   .   .
admin      review            .   .   .   .   .   .   .   .   .
admin      mark-deficient    .   .   .   .   .   .   .   .   .
admin      validate          .   .   .   .   .   .   .   .   .
admin      reject            .   .   .   .   .   .   .   .   .
admin      decontrol         .   .   .   .   .   .   .   .   .
admin      destroy           .   .   .   .   .   .   .   .   .
"""

# action    role     level          rcv def val cat inp wdr fnp dec dst
DISCLOSURE = """
retrieve   owner    federal         .   .   .   .   .   .   .   .   .
retrieve   owner    private         .   .   .   .   .   .   .   .   .
retrieve   office   federal         .   .   .   .   .   .   .   .   .
retrieve   analyst  federal         .   .   P   P   .   .   .   .   .
retrieve   analyst  state           .   .   P   P   .   .   .   .   .
retrieve   analyst  local           .   .   P   P   .   .   .   .   .
retrieve   analyst  tribal          .   .   P   P   .   .   .   .   .
retrieve   analyst  territorial     .   .   P   P   .   .   .   .   .
retrieve   analyst  private         .   .   .   .   .   .   .   .   .
retrieve   auditor  federal         .   .   .   .   .   .   .   .   .
retrieve   auditor  state           .   .   .   .   .   .   .   .   .
retrieve   admin    federal         .   .   .   .   .   .   .   .   .
retrieve   admin    state           .   .   .   .   .   .   .   .   .
search     owner    private         .   .   .   .   .   .   .   .   .
search     office   federal         .   .   .   .   .   .   .   .   .
search     analyst  federal         .   .   P   P   .   .   .   .   .
search     analyst  state           .   .   P   P   .   .   .   .   .
search     analyst  local           .   .   P   P   .   .   .   .   .
search     analyst  tribal          .   .   P   P   .   .   .   .   .
search     analyst  territorial     .   .   P   P   .   .   .   .   .
search     analyst  private         .   .   .   .   .   .   .   .   .
search     auditor  federal         .   .   .   .   .   .   .   .   .
search     admin    federal         .   .   .   .   .   .   .   .   .
"""

# role      submit  read-log  manage-principals  rotate-keys
VAULT_ACTIONS = """
owner       P       .         .                  .
office      .       .         .                  .
analyst     .       .         .                  .
auditor     .       P         .                  .
admin       .       .         P                  P
"""
VAULT_ACTION_NAMES = ("submit", "read-log", "manage-principals", "rotate-keys")

FEDERAL = ("mark:pcii", "cover-sheet", "watermark:recipient")
NON_FEDERAL = (*FEDERAL, "redact:contacts")


def _rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.strip().splitlines()]


def _record_cells() -> list[tuple[str, str, str, bool]]:
    return [
        (role, action, state, cell == "P")
        for role, action, *cells in _rows(RECORD_ACTIONS)
        for state, cell in zip(STATES, cells, strict=True)
    ]


def _disclosure_cells() -> list[tuple[str, str, str, str, bool]]:
    return [
        (action, role, level, state, cell == "P")
        for action, role, level, *cells in _rows(DISCLOSURE)
        for state, cell in zip(STATES, cells, strict=True)
    ]


def test_tables_cover_every_role_and_record_action() -> None:
    """The record-action table has every role x action pair exactly once."""
    pairs = [(row[0], row[1]) for row in _rows(RECORD_ACTIONS)]
    assert len(pairs) == len(set(pairs)) == 5 * 8
    assert {row[0] for row in _rows(VAULT_ACTIONS)} == set(ROLE_LEVEL)


def test_record_action_matrix(engine: PolicyEngine) -> None:
    """Every role x record action x state decides as the table says."""
    wrong = []
    for role, action, state, expected in _record_cells():
        who = principal(role=role, level=ROLE_LEVEL[role])
        decision = engine.decide(who, action, record(state=state), request())
        assert not decision.errors, (role, action, state, decision.errors)
        if decision.allowed != expected:
            wrong.append((role, action, state, decision.decision))
    assert wrong == []


def test_disclosure_matrix(engine: PolicyEngine) -> None:
    """Every retrieve/search x role x government level x state decides as the table says."""
    wrong = []
    for action, role, level, state, expected in _disclosure_cells():
        decision = engine.decide(
            principal(role=role, level=level), action, record(state=state), request()
        )
        assert not decision.errors, (action, role, level, state, decision.errors)
        if decision.allowed != expected:
            wrong.append((action, role, level, state, decision.decision))
    assert wrong == []


@pytest.mark.parametrize(
    ("level", "obligations"),
    [
        ("federal", FEDERAL),
        ("state", NON_FEDERAL),
        ("local", NON_FEDERAL),
        ("tribal", NON_FEDERAL),
        ("territorial", NON_FEDERAL),
    ],
)
def test_retrieve_obligations_by_level(
    engine: PolicyEngine, level: str, obligations: tuple[str, ...]
) -> None:
    """Every release is marked; non-federal recipients never see submitter contacts."""
    decision = engine.decide(principal(level=level), "retrieve", record(), request())
    assert decision.allowed
    assert decision.obligations == obligations


def test_vault_action_matrix(engine: PolicyEngine) -> None:
    """Actions on the vault itself (no record) decide as the table says."""
    wrong = []
    for role, *cells in _rows(VAULT_ACTIONS):
        for action, cell in zip(VAULT_ACTION_NAMES, cells, strict=True):
            decision = engine.decide(
                principal(role=role, level=ROLE_LEVEL[role]), action, None, request()
            )
            assert not decision.errors, (role, action, decision.errors)
            if decision.allowed != (cell == "P"):
                wrong.append((role, action, decision.decision))
    assert wrong == []
