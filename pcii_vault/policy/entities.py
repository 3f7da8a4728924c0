"""Facts about a request, and their translation to Cedar entities and context.

The vault maps its principal and record projections to `PrincipalFacts` and
`RecordFacts`, and a signed request to `RequestFacts`; the engine turns them into the
Cedar entities of `policies/pcii.cedarschema`.

Invariants:
- Enumerated values (role, level, status, state, use) are checked on construction; a
  typo raises `ValueError` instead of reaching the policies, where it could only be
  matched by accident. Labels (sectors, TLP) are data and pass through unchecked.
- Every field has exactly the Python type its Cedar attribute needs (`str` for String,
  `bool` for Bool, a `frozenset` of `str` for Set<String>, aware `datetime` / `date` for
  the Long times), checked on construction with `TypeError`. So the entity and context
  built from any facts value conform to `policies/pcii.cedarschema` by construction: a
  wrong-typed value cannot reach a policy, where `==` across types is simply false and
  would let a forbid silently not fire. (The engine still validates each principal and
  record entity against the schema once, when it first caches it; see `engine.py`.)
- Times become whole epoch seconds rounded towards denial: the request time is rounded
  up, the training expiry down, so rounding never makes expired training current.
  Training is current only when its expiry is strictly after the request time.
- Every datetime must be timezone-aware; a naive one is a programmer error.
- The purpose is stripped of surrounding whitespace, so a blank purpose is "".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = [
    "LEVELS",
    "ROLES",
    "STATES",
    "STATUSES",
    "USES",
    "VAULT_ENTITY_ID",
    "PrincipalFacts",
    "RecordFacts",
    "RequestFacts",
    "context_json",
    "context_record",
    "epoch_seconds_ceil",
    "epoch_seconds_floor",
    "principal_entity",
    "record_entity",
    "vault_entity",
]

ROLES = frozenset({"owner", "office", "analyst", "auditor", "admin"})
LEVELS = frozenset({"federal", "state", "local", "tribal", "territorial", "private"})
STATUSES = frozenset({"active", "suspended", "revoked"})
STATES = frozenset(
    {
        "received",
        "deficient",
        "validated",
        "categorical",
        "initially-not-pcii",
        "withdrawn",
        "final-not-pcii",
        "decontrolled",
        "destroyed",
    }
)
# "" is allowed and means "not stated"; the policies refuse disclosure without a use.
USES = frozenset(
    {
        "",
        "infrastructure-protection",
        "criminal-investigation",
        "homeland-security",
        "regulatory-enforcement",
        "disclosure-exception",
        "lifecycle",
    }
)
VAULT_ENTITY_ID = "vault"


def _check(kind: str, value: str, allowed: frozenset[str]) -> None:
    if value not in allowed:
        known = ", ".join(sorted(name for name in allowed if name))
        unstated = ", or empty" if "" in allowed else ""
        raise ValueError(f"unknown {kind} {value!r} (known: {known}{unstated})")


def _check_aware(name: str, value: datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _check_type(name: str, value: object, expected: type) -> None:
    # Exact types: a str or bool subclass could render differently in JSON.
    if type(value) is not expected:
        raise TypeError(f"{name} must be {expected.__name__}, not {type(value).__name__}")


def epoch_seconds_floor(moment: datetime) -> int:
    """Whole seconds since the epoch, rounded down."""
    return math.floor(moment.timestamp())


def epoch_seconds_ceil(moment: datetime) -> int:
    """Whole seconds since the epoch, rounded up."""
    return math.ceil(moment.timestamp())


@dataclass(frozen=True, slots=True)
class PrincipalFacts:
    """What the policies know about the requesting principal."""

    id: str
    role: str
    organisation: str
    level: str
    sectors: frozenset[str]
    training_expires: datetime | None
    nda_signed: date | None
    contractor: bool
    status: str

    def __post_init__(self) -> None:
        for name in ("id", "role", "organisation", "level", "status"):
            _check_type(name, getattr(self, name), str)
        if not self.id:
            raise ValueError("principal id must not be empty")
        _check("role", self.role, ROLES)
        _check("government level", self.level, LEVELS)
        _check("principal status", self.status, STATUSES)
        _check_aware("training_expires", self.training_expires)
        if self.nda_signed is not None and not isinstance(self.nda_signed, date):
            raise TypeError("nda_signed must be a date")
        _check_type("contractor", self.contractor, bool)
        if not isinstance(self.sectors, frozenset):
            raise TypeError("sectors must be a frozenset")
        for sector in self.sectors:
            _check_type("each sector", sector, str)


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What the policies know about the record a request concerns."""

    tracking_number: str
    state: str
    sector: str
    tlp: str
    submitter: str
    submitter_org: str

    def __post_init__(self) -> None:
        for name in ("tracking_number", "state", "sector", "tlp", "submitter", "submitter_org"):
            _check_type(name, getattr(self, name), str)
        if not self.tracking_number:
            raise ValueError("tracking number must not be empty")
        _check("record state", self.state, STATES)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the policies know about the request itself."""

    purpose: str
    use: str
    authority: str | None
    emergency: bool
    now: datetime

    def __post_init__(self) -> None:
        _check_type("purpose", self.purpose, str)
        _check_type("use", self.use, str)
        if self.authority is not None:
            _check_type("authority", self.authority, str)
        _check_type("emergency", self.emergency, bool)
        _check("use", self.use, USES)
        if self.now is None:
            raise TypeError("now must be a datetime")
        _check_aware("now", self.now)


def principal_entity(principal: PrincipalFacts) -> dict[str, Any]:
    """Return the Cedar JSON entity for `principal` (type `User`)."""
    attrs: dict[str, Any] = {
        "role": principal.role,
        "organisation": principal.organisation,
        "level": principal.level,
        "sectors": sorted(principal.sectors),
        "contractor": principal.contractor,
        "status": principal.status,
    }
    if principal.training_expires is not None:
        attrs["trainingExpires"] = epoch_seconds_floor(principal.training_expires)
    if principal.nda_signed is not None:
        signed = datetime(
            principal.nda_signed.year,
            principal.nda_signed.month,
            principal.nda_signed.day,
            tzinfo=UTC,
        )
        attrs["ndaSigned"] = epoch_seconds_floor(signed)
    return {"uid": {"type": "User", "id": principal.id}, "attrs": attrs, "parents": []}


def record_entity(record: RecordFacts) -> dict[str, Any]:
    """Return the Cedar JSON entity for `record` (type `Record`)."""
    return {
        "uid": {"type": "Record", "id": record.tracking_number},
        "attrs": {
            "trackingNumber": record.tracking_number,
            "state": record.state,
            "sector": record.sector,
            "tlp": record.tlp,
            "submitter": {"__entity": {"type": "User", "id": record.submitter}},
            "submitterOrg": record.submitter_org,
        },
        "parents": [],
    }


def vault_entity() -> dict[str, Any]:
    """Return the Cedar JSON entity for the vault (resource of record-less actions)."""
    return {"uid": {"type": "Vault", "id": VAULT_ENTITY_ID}, "attrs": {}, "parents": []}


def context_record(request: RequestFacts) -> dict[str, Any]:
    """Return the Cedar request context for `request`."""
    context: dict[str, Any] = {
        "purpose": request.purpose.strip(),
        "use": request.use,
        "emergency": request.emergency,
        "now": epoch_seconds_ceil(request.now),
    }
    if request.authority is not None:
        context["authority"] = request.authority
    return context


def context_json(request: RequestFacts) -> str:
    """Return the Cedar request context for `request` as a JSON document.

    The same document as `json.dumps(context_record(request), separators=(",", ":"))`,
    byte for byte (strings through the same escaping function `json.dumps` uses), built
    without the dict, because this runs on every decision.
    """
    authority = (
        ""
        if request.authority is None
        else ',"authority":' + encode_basestring_ascii(request.authority)
    )
    return '{"purpose":%s,"use":%s,"emergency":%s,"now":%d%s}' % (  # noqa: UP031 -- fastest
        encode_basestring_ascii(request.purpose.strip()),
        encode_basestring_ascii(request.use),
        "true" if request.emergency else "false",
        epoch_seconds_ceil(request.now),
        authority,
    )
