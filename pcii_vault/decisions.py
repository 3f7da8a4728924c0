"""The facts a decision is made on, built the same way by the core and by the auditor.

The core decides a request on the principal's and the record's attributes as the log held
them at the act's position, and on the signed request (purpose, use, authority, the
emergency flag) at the event's time. The auditor's replay rebuilds exactly these facts
from the verified log and re-runs the logged policy set: a permit, a deny, a determining
policy or an obligation that differs from the logged one is reported.

Invariants: facts come only from the projection of the verified log and from the signed
request, never from anything unsigned; both sides call the same functions here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from pcii_vault.errors import IntegrityError
from pcii_vault.index import RecordRow
from pcii_vault.models.event import Event
from pcii_vault.models.principal import Principal
from pcii_vault.models.request import RequestBody, SignedRequest
from pcii_vault.policy.engine import Decision, EntityDirectory, PolicyEngine
from pcii_vault.policy.entities import PrincipalFacts, RecordFacts, RequestFacts

__all__ = [
    "check_replayed",
    "decide",
    "principal_facts",
    "record_facts",
    "request_facts",
]


def principal_facts(principal: Principal) -> PrincipalFacts:
    """What the policies know of a principal."""
    return PrincipalFacts(
        id=principal.id,
        role=principal.role,
        organisation=principal.organisation,
        level=principal.level,
        sectors=frozenset(principal.sectors),
        training_expires=_start_of_day(principal.training_expires),
        nda_signed=principal.nda_signed,
        contractor=principal.contractor,
        status=principal.status,
    )


def _start_of_day(day: date | None) -> datetime | None:
    # Training "expiring on D" is treated as expired from 00:00 UTC on D: the earlier
    # reading, so a date never grants access for part of a day it might not cover.
    return None if day is None else datetime.combine(day, time.min, UTC)


def record_facts(record: RecordRow) -> RecordFacts:
    """What the policies know of a record (categorical inclusion is its own state)."""
    return RecordFacts(
        tracking_number=record.tracking,
        state="categorical" if record.categorical and record.state == "validated" else record.state,
        sector=record.sector,
        tlp=record.tlp,
        submitter=record.submitter,
        submitter_org=record.submitter_org,
    )


def request_facts(body: RequestBody, now: datetime) -> RequestFacts:
    """What the policies know of the request itself, at the decision's time."""
    return RequestFacts(
        purpose=body.purpose or "",
        use=body.use or "",
        authority=body.authority,
        emergency=body.params.get("emergency", False) is True,
        now=now,
    )


def decide(
    engine: PolicyEngine,
    principal: Principal,
    body: RequestBody,
    record: RecordRow | None,
    *,
    now: datetime,
    directory: EntityDirectory | None = None,
) -> Decision:
    """Decide `body` for `principal` on `record` (or none) at `now`.

    Facts the schema does not know (an unknown use, say) deny, as an evaluation error.
    """
    try:
        facts = request_facts(body, now)
    except ValueError as exc:
        return Decision(
            allowed=False,
            decision="deny",
            policy_ids=(),
            obligations=(),
            errors=(str(exc),),
            policy_set_hash=engine.policy_set_hash,
        )
    return engine.decide(
        principal_facts(principal),
        body.action,
        record_facts(record) if record is not None else None,
        facts,
        directory=directory,
    )


def check_replayed(
    engine: PolicyEngine, event: Event, principal: Principal, record: RecordRow | None
) -> None:
    """Re-run a logged decision on its policy set and the facts at its position.

    Raises:
        IntegrityError: the outcome, determining policies or obligations differ from
            the logged ones.
    """
    if event.request is None or event.decision is None:
        return
    try:
        body = SignedRequest.model_validate(event.request).body
    except ValueError as exc:
        raise IntegrityError(f"event {event.seq}: malformed signed request") from exc
    decision = decide(engine, principal, body, record, now=event.time)
    problems = []
    if decision.decision != event.decision:
        problems.append(f"policy set decides {decision.decision}, log says {event.decision}")
    if tuple(decision.policy_ids) != tuple(event.policies):
        problems.append(
            f"determining policies are {list(decision.policy_ids)}, log says {list(event.policies)}"
        )
    if tuple(decision.obligations) != tuple(event.obligations):
        problems.append(
            f"obligations are {list(decision.obligations)}, log says {list(event.obligations)}"
        )
    if problems:
        raise IntegrityError(
            f"event {event.seq}: replayed decision does not match: {'; '.join(problems)}"
        )
