"""Registering, updating and revoking users: an admin's acts, every fact signed."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Sequence
from datetime import UTC, date, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from pcii_vault.core.acting import Acting, _require_signed_params, _Verdict
from pcii_vault.core.base import VAULT_ACTOR
from pcii_vault.crypto.signing import Ed25519PublicKey
from pcii_vault.errors import InputError, NotFoundError
from pcii_vault.index import RecordRow
from pcii_vault.models.event import Event
from pcii_vault.models.principal import Principal, PrincipalAttributes
from pcii_vault.models.problems import describe
from pcii_vault.models.request import SignedRequest
from pcii_vault.models.submission import same_organisation
from pcii_vault.text import printable


class PrincipalActs(Acting):
    """The admin's acts on principals."""

    def add_principal(
        self,
        request: SignedRequest,
        principal_id: str,
        attributes: PrincipalAttributes,
        public_key: Ed25519PublicKey,
    ) -> Principal:
        """Register a user (an admin's act).

        The request must sign every registered fact: `params` is
        `{"op": "register", "principal": ID, "attributes": {...}, "public_key": B64}`
        (`principal_params` builds it), so the log proves who stated them.
        """
        try:
            principal = Principal(
                id=principal_id,
                public_key=base64.b64encode(public_key.raw).decode(),
                **attributes.model_dump(),
            )
        except ValidationError as exc:
            raise InputError(describe(exc, "invalid principal")) from exc
        if principal_id == VAULT_ACTOR:
            raise InputError(
                f"principal {principal_id!r}: the name is the vault's own in the log (its "
                "events are acted by it); choose another"
            )
        _check_organisation(attributes.organisation)
        _check_sectors(attributes.sectors)
        _check_training(attributes.training_expires, request)
        _check_nda(attributes.nda_signed, request)
        _require_signed_params(
            request, principal_params(principal_id, attributes, public_key), "principal"
        )

        def register(_admin: Principal, _row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            with contextlib.suppress(NotFoundError):
                existing = self.index.principal(principal_id)
                if existing.status == "revoked":
                    raise InputError(
                        f"principal {principal_id!r} already exists, revoked: an id is never "
                        "given to anyone else (the log names who acted by it); choose another"
                    )
                raise InputError(f"principal {principal_id!r} already exists")
            self._check_one_spelling(attributes.organisation, principal_id)
            details = {"principal": principal.model_dump(mode="json")}
            return [self._decision_event("principal.registered", request, verdict, details=details)]

        self._act(request, "manage-principals", register)
        return principal

    def update_principal(
        self, request: SignedRequest, principal_id: str, changes: dict[str, Any]
    ) -> Principal:
        """Change a user's attributes or status (an admin's act).

        The request signs `{"op": "update", "principal": ID, "changes": {...}}`.
        """
        changed = to_jsonable_python(changes)
        _require_signed_params(
            request, {"op": "update", "principal": principal_id, "changes": changed}, "changes"
        )
        if not changes or not set(changes) <= _CHANGEABLE:
            raise InputError(f"principal changes must be among {', '.join(sorted(_CHANGEABLE))}")
        if changes.get("status") == "revoked":
            raise InputError("revoke with `principal revoke`, not an update")
        if isinstance(changes.get("organisation"), str):
            _check_organisation(changes["organisation"])

        def update(_admin: Principal, _row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            current = self._principal_for_change(principal_id, changes)
            merged = {**current.model_dump(mode="json"), **changed}
            try:
                updated = Principal.model_validate(merged)
            except ValidationError as exc:
                raise InputError(describe(exc, "invalid principal update")) from exc
            if "organisation" in changes:
                self._check_one_spelling(updated.organisation, principal_id)
            if "sectors" in changes:
                _check_sectors(updated.sectors)
            if "training_expires" in changes:
                _check_training(updated.training_expires, request)
            if "nda_signed" in changes:
                _check_nda(updated.nda_signed, request)
            details = {"principal": principal_id, "changes": changed}
            return [self._decision_event("principal.updated", request, verdict, details=details)]

        self._act(request, "manage-principals", update)
        return self.index.principal(principal_id)

    def _check_one_spelling(self, organisation: str, principal_id: str) -> None:
        """Refuse a second spelling of a registered organisation.

        Intake takes names alike but for case, spacing and Unicode form as one (a document's
        submitter); the policies compare them exactly.

        Raises:
            InputError: another principal's organisation, or a record's submitter, is
                this one spelled otherwise.
        """
        for other in self.index.principals():
            if (
                other.id != principal_id
                and other.organisation != organisation
                and same_organisation(other.organisation, organisation)
            ):
                raise InputError(
                    f"organisation '{printable(organisation)}' is '"
                    f"{printable(other.organisation)}' (of {other.id}) spelled otherwise: give "
                    "it as registered, or the policies would take them for two organisations"
                )
        # A principal alone in its organisation respelling it: its records keep theirs.
        for spelling in self.index.submitter_organisations():
            if spelling != organisation and same_organisation(spelling, organisation):
                raise InputError(
                    f"organisation '{printable(organisation)}' is '{printable(spelling)}' (of "
                    "submitted records) spelled otherwise: give it as registered, or the "
                    "policies would take them for two organisations"
                )

    def revoke_principal(self, request: SignedRequest, principal_id: str) -> Principal:
        """Revoke a user for good (an admin's act); the request signs who."""
        _require_signed_params(request, {"op": "revoke", "principal": principal_id}, "principal")

        def revoke(_admin: Principal, _row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            self._principal_for_change(principal_id)
            details = {"principal": principal_id}
            return [self._decision_event("principal.revoked", request, verdict, details=details)]

        self._act(request, "manage-principals", revoke)
        return self.index.principal(principal_id)

    def _principal_for_change(
        self, principal_id: str, changes: dict[str, Any] | None = None
    ) -> Principal:
        """The principal about to change; refuses to leave the vault without an admin.

        Revoking, suspending or demoting the last active admin would leave nobody able to
        register users or manage keys: refused (register another admin first). Runs on
        the state at the act's log position.
        """
        current = self.index.principal(principal_id)
        if current.status == "revoked":
            raise InputError(f"principal {principal_id!r} is revoked; register a new one")
        stays_admin = changes is not None and {
            "role": changes.get("role", current.role),
            "status": changes.get("status", current.status),
        } == {"role": "admin", "status": "active"}
        is_active_admin = current.role == "admin" and current.status == "active"
        other_admins = [
            p
            for p in self.index.principals()
            if p.id != principal_id and p.role == "admin" and p.status == "active"
        ]
        if is_active_admin and not stays_admin and not other_admins:
            raise InputError(
                f"{principal_id!r} is the last active admin: register another admin first"
            )
        return current


def _check_training(expires: date | None, request: SignedRequest) -> None:
    """Refuse a training expiry more than a year and a day after the act.

    PCII training is renewed yearly: an expiry further out would keep a user current
    without renewing it (the extra day for a leap year).

    Raises:
        InputError: `expires` is more than `_TRAINING_RENEWED_WITHIN` after the act's date.
    """
    # The day after the act's UTC date: the admin's own date may be ahead of UTC's.
    latest = request.body.time.astimezone(UTC).date() + _TRAINING_RENEWED_WITHIN + _A_DAY
    if expires is not None and expires > latest:
        raise InputError(
            f"training expiry {expires.isoformat()} is more than a year away: PCII training "
            f"is renewed yearly (at most {latest.isoformat()})"
        )


def _check_sectors(sectors: Sequence[str]) -> None:
    """Refuse a sector the reference list does not name: need to know never matches it.

    The CLI checks it too, but a request over the wire is built by any client.

    Raises:
        InputError: naming the first unknown sector.
    """
    from pcii_vault.models.reference import reference_data  # noqa: PLC0415

    known = set(reference_data().sector_names)
    for sector in sectors:
        if sector not in known:
            raise InputError(f"sector '{printable(sector)}' is not a sector of the reference list")


def _check_nda(signed: date | None, request: SignedRequest) -> None:
    """Refuse an NDA signed after the act that records it (a typo in the year, mostly).

    Raises:
        InputError: `signed` is later than the act's date.
    """
    # The admin's own date may be a day ahead of the act's UTC date (east of UTC).
    today = request.body.time.astimezone(UTC).date() + _A_DAY
    if signed is not None and signed > today:
        raise InputError(
            f"NDA signed {signed.isoformat()} is in the future: record an NDA once it is "
            f"signed (on or before {today.isoformat()})"
        )


def _check_organisation(organisation: str) -> None:
    """An organisation is shown in listings, denials and the auditor's report: one line.

    Raises:
        InputError: it holds control, format (bidi override, zero-width) or line
            separator characters.
    """
    if printable(organisation) != organisation:
        raise InputError(
            f"organisation '{printable(organisation)}' must be one line of printable text "
            "(no control, bidi or zero-width characters)"
        )


_TRAINING_RENEWED_WITHIN = timedelta(days=366)


_A_DAY = timedelta(days=1)


_CHANGEABLE = frozenset(
    {"role", "organisation", "level", "sectors", "training_expires", "nda_signed", "status"}
)


def principal_params(
    principal_id: str, attributes: PrincipalAttributes, public_key: Ed25519PublicKey
) -> dict[str, Any]:
    """The parameters an admin signs to register a principal: every registered fact."""
    return {
        "op": "register",
        "principal": principal_id,
        "attributes": attributes.model_dump(mode="json"),
        "public_key": base64.b64encode(public_key.raw).decode(),
    }
