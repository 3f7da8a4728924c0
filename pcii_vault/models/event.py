"""Log events: the vault's system of record.

Every state change is one `Event`, serialised as RFC 8785 canonical JSON to become a log
entry. Invariants:
- `v` is the event schema version; a verifier refuses versions and types it does not know
  (an unknown event is an integrity failure, never silently skipped);
- `seq` equals the entry's index in the log, so a gap or reordering is detectable;
- events carry identifiers, hashes, decisions and attributes, never PCII content.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pcii_vault.crypto.canonical import canonical_json

__all__ = ["EVENT_SCHEMA_VERSION", "EVENT_TYPES", "Event", "EventType"]

EVENT_SCHEMA_VERSION = 1

EventType = Literal[
    # vault and keys
    "vault.initialized",
    "policy.loaded",
    "key.rotated",
    "key.rewrapped",
    "key.retired",
    "key.migrated",
    # principals
    "principal.registered",
    "principal.updated",
    "principal.revoked",
    # submission lifecycle (6 CFR 29 state machine)
    "submission.received",
    "submission.deficient",
    "submission.validated",
    "submission.rejected",
    "submission.final-not-pcii",
    "submission.withdrawn",
    "record.decontrolled",
    "record.destroyed",
    "notice.sent",
    # access decisions: review, retrieval, reads of the log; permit or deny
    "access.decided",
    # a permitted release that could not be written to the recipient's disk
    "release.failed",
    # a server sealed by shares was unsealed remotely: who sent which share, and how
    "vault.unsealed",
]

EVENT_TYPES: frozenset[str] = frozenset(EventType.__args__)  # type: ignore[attr-defined]


class Event(BaseModel):
    """One entry of the access log."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1] = 1
    seq: int = Field(ge=0, description="index of this entry in the log")
    time: AwareDatetime = Field(description="when the vault appended it (UTC)")
    type: EventType
    actor: str = Field(min_length=1, max_length=128, description="principal id, or 'vault'")
    request: dict[str, Any] | None = Field(
        default=None, description="the actor's signed request, verbatim, when there is one"
    )
    record: str | None = Field(default=None, max_length=64, description="tracking number")
    action: str | None = Field(default=None, max_length=64)
    decision: Literal["permit", "deny"] | None = None
    policies: tuple[str, ...] = Field(default=(), description="determining policy ids")
    policy_set: str | None = Field(default=None, description="SHA-256 of the policy set, hex")
    purpose: str | None = Field(default=None, max_length=1000)
    use: str | None = Field(default=None, max_length=64)
    authority: str | None = Field(default=None, max_length=200)
    obligations: tuple[str, ...] = ()
    details: dict[str, Any] = Field(
        default_factory=dict, description="type-specific, non-PCII facts (hashes, attributes)"
    )

    def entry_bytes(self) -> bytes:
        """The canonical bytes that become the log entry."""
        return canonical_json(self.model_dump(mode="json"))
