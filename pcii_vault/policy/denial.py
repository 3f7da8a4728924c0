"""Why a request was denied, in words a person can act on, and how to replay the decision.

A bare "no policy permits it" sends a user to the policy files. `explain_denial` asks the
same engine a few counterfactual questions (would another role be permitted? would the
record in another state be?) and names the fact that decided it, then gives the exact
`pcii policy explain` command that reproduces the decision offline. Pure: no I/O, no
clock (the request's own time is used), so the message is the same on every replay.

Invariant: the explanation never widens access; it only reads decisions the engine
makes with the same policy set, and reveals nothing about the record beyond its state and
sector (the submitting organisation only to that organisation's own principals).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, timedelta

from pcii_vault.policy.engine import Decision, PolicyEngine
from pcii_vault.policy.entities import ROLES, STATES, PrincipalFacts, RecordFacts, RequestFacts

__all__ = ["OTHER_ORGANISATION", "denial_reason", "explain_command", "explain_denial"]

# What a denial names as the submitter of a record of another organisation.
OTHER_ORGANISATION = "(another organisation)"

# Orders for messages (the frozensets carry no order).
_ROLE_ORDER = ("owner", "office", "analyst", "auditor", "admin")
_STATE_ORDER = (
    "received",
    "deficient",
    "validated",
    "categorical",
    "initially-not-pcii",
    "final-not-pcii",
    "withdrawn",
    "decontrolled",
    "destroyed",
)
assert set(_ROLE_ORDER) == ROLES and set(_STATE_ORDER) == STATES  # noqa: S101 -- import-time


def explain_denial(
    engine: PolicyEngine,
    principal: PrincipalFacts,
    *,
    action: str,
    record: RecordFacts | None,
    context: RequestFacts,
    decision: Decision,
) -> str:
    """One line: what was denied, the reason a person can act on, and how to explain it.

    A record's state and sector are named only to whom may look the record up (in good
    standing): an analyst denied a record of another sector, or a suspended or revoked
    principal, learns nothing about it the search would not show them.
    """
    if record is not None and not _may_know(engine, principal, record, context):
        if principal.status != "active":
            # The status decides whatever the record: explain's defaults stand in for it.
            # No policy ids: the other forbids that fired (need to know, a closed
            # record) would tell the record's sector or state.
            reason = f"you are {principal.status}: every request is denied"
            command = explain_command(principal, action, record, context, hide_record=True)
            return f"{action} denied for {principal.id!r}: {reason}; see why: {command}"
        reason = (
            f"no policy lets you {action} this record, and it is not one you may look "
            "up (your role, sectors and level decide; ask the program office)"
        )
        # No `policy explain` line: it would have to carry the record's facts.
        return f"{action} denied for {principal.id!r}: {reason}"
    reason = denial_reason(
        engine, principal, action=action, record=record, context=context, decision=decision
    )
    command = explain_command(principal, action, record, context)
    return f"{action} denied for {principal.id!r}: {reason}; see why: {command}"


def _may_know(
    engine: PolicyEngine, principal: PrincipalFacts, record: RecordFacts, context: RequestFacts
) -> bool:
    """Whether a denial may name `record`'s facts to `principal`.

    Active owners: their denials name nothing of another organisation's record anyway.
    Others: when, trained and under NDA and for the plainest use, they may see the
    record's status or find it by a search, or review it (the program office).
    """
    if principal.status != "active":
        return False
    if principal.role == "owner":
        return True
    standing = replace(
        principal,
        training_expires=context.now + timedelta(days=365),
        nda_signed=context.now.date() - timedelta(days=30),
    )
    # The record's visibility, not this request's purpose, use or authority, decides: an
    # act that states no purpose (status, validate) is judged as a search stating one.
    plain = replace(
        context,
        purpose=context.purpose or "record look-up",
        use="infrastructure-protection",
        authority=None,
        emergency=False,
    )
    return any(
        engine.decide(standing, action, record, plain).allowed
        for action in ("status", "search", "review")
    )


def denial_reason(
    engine: PolicyEngine,
    principal: PrincipalFacts,
    *,
    action: str,
    record: RecordFacts | None,
    context: RequestFacts,
    decision: Decision,
) -> str:
    """The reason a person can act on for a denial (the role or the record's state)."""
    if decision.errors:
        return "policy evaluation failed (any error denies)"

    def allowed(who: PrincipalFacts, what: RecordFacts | None) -> bool:
        return engine.decide(who, action, what, context).allowed

    # The first question: may anyone in your role do this at all, in good standing?
    standing = replace(
        principal,
        status="active",
        training_expires=context.now + timedelta(days=365),
        nda_signed=context.now.date() - timedelta(days=30),
    )
    # Submitters act on their own organisation's records: a role is asked both as this
    # principal's organisation and as the record's.
    standings = [standing]
    if record is not None and record.submitter_org != principal.organisation:
        standings.append(replace(standing, organisation=record.submitter_org))

    def role_may(role: str, what: RecordFacts | None) -> bool:
        return any(allowed(replace(who, role=role), what) for who in standings)

    roles = [r for r in _ROLE_ORDER if role_may(r, record)]
    if not roles and record is not None:
        # Nobody may, in this record's state: then the role, if only others ever may.
        roles = [
            r
            for r in _ROLE_ORDER
            if any(role_may(r, replace(record, state=s)) for s in _STATE_ORDER)
        ]
    if (
        record is not None
        and principal.role in roles
        and not allowed(standing, record)
        and len(standings) > 1
        and _only_its_organisation(allowed, standing, standings[1], record)
    ):
        # The record exists (the denial says so anyway); that it is another organisation's
        # is the fact that decided, and nothing more about it is told (not its state:
        # whether its own organisation could act on it now is not this one's to know).
        return (
            f"{record.tracking_number} is another organisation's submission; only that "
            f"organisation's {principal.role}s may {action} it"
        )
    if roles and principal.role not in roles:
        role = principal.role
        return f"{_article(role)} {role} cannot {action}; only: {', '.join(roles)}"
    about_record = (
        None if record is None else _record_reason(allowed, principal, standing, record, action)
    )
    if about_record is not None:
        return about_record
    # Another organisation's record, to an owner (`_may_know` lets owners' denials
    # through): the policies that fired may name its state (`record-closed`), which is
    # not that organisation's to learn.
    hidden = record is not None and principal.role == "owner" and len(standings) > 1
    return _last_reason(decision, action, hidden=hidden)


def _last_reason(decision: Decision, action: str, *, hidden: bool) -> str:
    """The policies that fired, unless they may tell what the record is not to tell."""
    if hidden:
        return (
            f"no policy lets you {action} this record, and it is not one you may look up "
            "(your role, sectors and level decide; ask the program office)"
        )
    if decision.policy_ids:
        return "forbidden by " + ", ".join(decision.policy_ids)
    return "no policy permits it (your sectors, level or stated use may not fit)"


def _only_its_organisation(
    allowed: Callable[[PrincipalFacts, RecordFacts | None], bool],
    standing: PrincipalFacts,
    as_its_own: PrincipalFacts,
    record: RecordFacts,
) -> bool:
    """Whether the record's organisation decides: its own may act on it, this one not.

    Now, or (when nobody may now) in some state while this organisation may in none: the
    record's state is then not this organisation's to learn from the denial.
    """
    if allowed(as_its_own, record):
        return True
    states = [replace(record, state=s) for s in _STATE_ORDER]
    return any(allowed(as_its_own, r) for r in states) and not any(
        allowed(standing, r) for r in states
    )


def _record_reason(
    allowed: Callable[[PrincipalFacts, RecordFacts | None], bool],
    principal: PrincipalFacts,
    standing: PrincipalFacts,
    record: RecordFacts,
    action: str,
) -> str | None:
    """The record's state, or its sector (need to know), when that alone decided."""
    states = [s for s in _STATE_ORDER if allowed(standing, replace(record, state=s))]
    if states and record.state not in states:
        state = record.state
        return (
            f"{_article(state)} {state} record cannot be given {action!r}; "
            f"it can in the states: {', '.join(states)}"
        )
    if record.sector not in principal.sectors and allowed(
        replace(principal, sectors=principal.sectors | {record.sector}), record
    ):
        # Need to know: the one fact that decided, with what would change it.
        return (
            f"the record's sector ({record.sector}) is not among yours (need to know; "
            "an administrator registers the sectors you work on)"
        )
    return None


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def explain_command(
    principal: PrincipalFacts,
    action: str,
    record: RecordFacts | None,
    context: RequestFacts,
    *,
    hide_record: bool = False,
) -> str:
    """The `pcii policy explain` command line that reproduces this decision.

    `hide_record`: the record's facts are not the caller's to know; explain's defaults
    stand in for them (as for an owner and another organisation's record).
    """
    args = [
        "pcii",
        "policy",
        "explain",
        "--action",
        action,
        "--role",
        principal.role,
        "--level",
        principal.level,
        "--org",
        principal.organisation,
        "--status",
        principal.status,
    ]
    for sector in sorted(principal.sectors):
        args += ["--sector", sector]
    if not principal.sectors:
        args.append("--no-sectors")
    if principal.training_expires is None or principal.training_expires <= context.now:
        args.append("--untrained")
    if principal.nda_signed is None or principal.nda_signed > context.now.astimezone(UTC).date():
        args.append("--no-nda")  # one signed later than now counts as none (nda-missing)
    if principal.contractor:
        args.append("--contractor")
    if record is None:
        args.append("--no-record")
    elif hide_record or (
        principal.role == "owner" and record.submitter_org != principal.organisation
    ):
        # Nothing about another organisation's submission is told to an owner (its state
        # and sector included): explain's default state and sector stand in for them, as
        # the submitters' permits all require the owner's own organisation. The record
        # itself stays: with --no-record, the replay of `withdraw` or `status` (which act
        # on a record) failed evaluation ("resource type Vault is not valid") instead of
        # reproducing the denial.
        args += ["--submitter-org", OTHER_ORGANISATION]
    else:
        args += [
            "--state",
            record.state,
            "--record-sector",
            record.sector,
            "--tlp",
            record.tlp,
            "--submitter-org",
            # Who submitted a record is not told to someone of another organisation (an
            # analyst may get it redacted, another owner may not know it): the shipped
            # policies only compare it with the principal's own, so any other name
            # reproduces the decision.
            record.submitter_org
            if record.submitter_org == principal.organisation
            else OTHER_ORGANISATION,
        ]
    args += ["--purpose", context.purpose, "--use", context.use]
    if context.authority is not None:
        args += ["--authority", context.authority]
    if context.emergency:
        args.append("--emergency")
    args += ["--now", context.now.astimezone(UTC).isoformat()]
    return shlex.join(args)
