"""The office's and owners' acts on a record: lifecycle transitions, destroy, status, search."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import to_jsonable_python

from pcii_vault.core.acting import Acting, _require_record_id, _signed_params, _Verdict
from pcii_vault.decisions import principal_facts, record_facts
from pcii_vault.errors import ActConflictError, InputError, IntegrityError, PolicyDenied, VaultError
from pcii_vault.index import TRANSITION_ACTIONS, RecordRow, signed_final
from pcii_vault.lifecycle import IllegalTransitionError, next_state
from pcii_vault.models.acts import DECONTROL_BASES
from pcii_vault.models.event import Event, EventType
from pcii_vault.models.principal import Principal
from pcii_vault.models.request import SignedRequest


class RecordActs(Acting):
    """Acts that change or read a record's state, never its content."""

    def transition(
        self,
        request: SignedRequest,
        event_type: EventType,
        *,
        details: dict[str, Any] | None = None,
    ) -> RecordRow:
        """Validate, reject, mark deficient, withdraw or decontrol a record.

        The request must have been signed for the action that `event_type` stands for
        (a signed `review` or `status` request never validates or withdraws anything),
        and the transition must be legal from the record's current state: an event the
        legal-history check would refuse is never appended (it would break the log's
        audit and stop every later sync of the index).

        The event's details are the request's signed parameters (reason, ground,
        categorical inclusion...), never anything unsigned; `details`, when given, must
        equal them.

        Raises:
            ValueError: `event_type` is not a lifecycle transition, or `details` differ
                from the signed parameters (programming errors).
            IntegrityError: the request was signed for another action (or is forged,
                replayed, stale, for another vault).
            InputError: the record's state does not allow this transition.
            PolicyDenied: the policies refuse it (the denial is logged).
        """
        if event_type not in TRANSITION_ACTIONS or event_type == "record.destroyed":
            raise ValueError(f"{event_type} is not a lifecycle transition")
        signed = _signed_params(request)
        if details is not None and to_jsonable_python(details) != signed:
            raise ValueError("details must be the request's signed parameters")
        if TRANSITION_ACTIONS[event_type] == "reject" and signed_final(signed) != (
            event_type == "submission.final-not-pcii"
        ):
            which = "a final" if signed_final(signed) else "an initial"
            raise IntegrityError(f"the request signed {which} finding, not {event_type}")
        if event_type == "record.decontrolled" and signed.get("basis") not in DECONTROL_BASES:
            # Accepted in the log's history (decontrols logged before it was signed), never
            # for a new act: 6 CFR 29 allows a decontrol on two grounds only.
            raise InputError(
                f"a decontrol names its basis: {' or '.join(DECONTROL_BASES)} "
                "(the submitter's written request, or a customarily-public finding)"
            )
        tracking = _require_record_id(request)

        def change(_actor: Principal, row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            assert row is not None  # noqa: S101 -- the act names a record
            _check_transition(row, event_type, signed)
            events = [self._decision_event(event_type, request, verdict, details=signed)]
            if event_type == "record.decontrolled":
                # 6 CFR 29: a status change is sent to every earlier recipient.
                events.extend(
                    self._notice(verdict, tracking, recipient, "decontrolled")
                    for recipient in self.index.notice_recipients(tracking)
                )
            return events

        self._act(request, TRANSITION_ACTIONS[event_type], change, record=tracking)
        if event_type == "submission.withdrawn":
            self._shred_logged(tracking, "withdrawal")
        return self.index.record(tracking)

    def destroy(self, request: SignedRequest) -> RecordRow:
        """Destroy a record by crypto-shredding: log first, then delete its wrapped key."""
        tracking = _require_record_id(request)

        def destroy(_actor: Principal, row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            assert row is not None  # noqa: S101 -- the act names a record
            _check_transition(row, "record.destroyed")
            details = _signed_params(request)
            return [self._decision_event("record.destroyed", request, verdict, details=details)]

        self._act(request, "destroy", destroy, record=tracking)
        self._shred_logged(tracking, "destruction")
        return self.index.record(tracking)

    def _shred_logged(self, tracking: str, what: str) -> None:
        """Shred a record whose withdrawal or destruction is logged; say so if it fails.

        Raises:
            VaultError: of the store's failure's family, saying the act is logged and
                what finishes the deletion.
        """
        try:
            self._shred(tracking)
        except VaultError as exc:
            raise type(exc)(
                f"the {what} of {tracking} is logged, but its data key was not deleted: "
                f"{exc}; `pcii maintenance` finishes it once that is fixed"
            ) from exc

    def status(self, request: SignedRequest) -> RecordRow:
        """A record's state, for its submitter or the office (metadata, not content)."""
        tracking = _require_record_id(request)
        record = self._act(request, "status", None, record=tracking).record
        assert record is not None  # noqa: S101 -- the act names a record
        return record

    def search(
        self, request: SignedRequest, *, sector: str | None, state: str | None
    ) -> list[RecordRow]:
        """Records the caller may act on; never content, and never what they may not see.

        Raises:
            InputError: a filter no record can match (a typo would list nothing, silently).
        """
        _check_search_filters(sector, state)
        self.sync()
        principal = self._verify_request(request, "search")
        if principal.status != "active":
            # Refused outright, as a server refuses the caller: not an empty listing.
            raise PolicyDenied(f"principal {principal.id} is {principal.status}")
        self._note_policy_change()
        visible: list[RecordRow] = []
        candidates = self.index.records(sector=sector, state=state)
        # One decision per record and action: parse every entity once, not per decision.
        directory = self.policy.entity_directory(
            [principal_facts(principal)], [record_facts(r) for r in candidates]
        )
        for record in candidates:
            # Analysts see what the `search` policies allow; owners their own submissions
            # (`status`); the office what it may review.
            for action in ("search", "status", "review"):
                probe = request.model_copy(
                    update={"body": request.body.model_copy(update={"action": action})}
                )
                decision = self._decide(principal, probe, record, directory).decision
                if decision.allowed:
                    visible.append(_redact_listing(record, decision.obligations))
                    break
        return visible


def _redact_listing(record: RecordRow, obligations: Sequence[str]) -> RecordRow:
    """Apply a listing's redactions: who submitted, and file names that may say so."""
    if "redact:submitter" not in obligations:
        return record
    hidden = "[REDACTED: submitter]"
    return dataclasses.replace(record, submitter=hidden, submitter_org=hidden, files=())


def _check_transition(
    record: RecordRow, event_type: EventType, details: Mapping[str, Any] | None = None
) -> None:
    """Refuse, before it is logged, a transition the lifecycle forbids (exit 3).

    The record's state decides, as a denial would: nothing of the act is logged.
    """
    categorical = bool(details and details.get("categorical") is True)
    try:
        next_state(record.state, event_type, categorical=categorical)
    except IllegalTransitionError as exc:
        raise ActConflictError(f"record {record.tracking}: {exc}") from exc


def _check_search_filters(sector: str | None, state: str | None) -> None:
    """Refuse a sector or state filter that no record has (as the CLI does, for the API)."""
    from pcii_vault.core.principals import _check_sectors  # noqa: PLC0415
    from pcii_vault.lifecycle import SEARCH_STATES  # noqa: PLC0415
    from pcii_vault.text import printable  # noqa: PLC0415

    if state is not None and state not in SEARCH_STATES:
        raise InputError(f"state '{printable(state)}' is not a record state")
    if sector is not None:
        _check_sectors([sector])
