"""Facts builders for the policy tests: an eligible federal analyst, record, request."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from pcii_vault.policy.engine import default_policy_directory
from pcii_vault.policy.entities import PrincipalFacts, RecordFacts, RequestFacts

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
POLICIES = default_policy_directory()


def principal(**changes: Any) -> PrincipalFacts:
    """A federal analyst, active, trained, NDA signed, need to know in Energy."""
    base: dict[str, Any] = {
        "id": "analyst-1",
        "role": "analyst",
        "organisation": "Acme Power",
        "level": "federal",
        "sectors": frozenset({"Energy"}),
        "training_expires": NOW + timedelta(days=90),
        "nda_signed": date(2026, 1, 1),
        "contractor": False,
        "status": "active",
    }
    base.update(changes)
    return PrincipalFacts(**base)


def record(**changes: Any) -> RecordFacts:
    """A validated Energy record submitted by Acme Power."""
    base: dict[str, Any] = {
        "tracking_number": "PCII-2026-000001",
        "state": "validated",
        "sector": "Energy",
        "tlp": "TLP:AMBER",
        "submitter": "owner-1",
        "submitter_org": "Acme Power",
    }
    base.update(changes)
    return RecordFacts(**base)


def request(**changes: Any) -> RequestFacts:
    """An infrastructure-protection request with a stated purpose, at NOW."""
    base: dict[str, Any] = {
        "purpose": "assess substation exposure",
        "use": "infrastructure-protection",
        "authority": None,
        "emergency": False,
        "now": NOW,
    }
    base.update(changes)
    return RequestFacts(**base)
