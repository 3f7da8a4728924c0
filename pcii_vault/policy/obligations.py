"""Obligations: what the vault must do to a release that the policies permit.

A permit policy carries its obligations as one annotation, a space-separated list of
tokens from the vocabulary below: `@obligations("mark:pcii redact:contacts")` (Cedar
refuses a repeated annotation key, so one annotation holds them all). A decision's
obligations are the union over the permit policies that determined it.

Invariants: the vocabulary is closed; an unknown, repeated or empty token is a load
error, never ignored, because a misspelt obligation would silently release an unmarked
or unredacted copy. Obligations are returned in vocabulary order, so equal sets compare
equal and log entries are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = ["OBLIGATION_MEANINGS", "Obligation", "canonical_obligations", "parse_obligations"]


class Obligation(StrEnum):
    """One duty the vault applies on release (the lifecycle code applies them)."""

    MARK_PCII = "mark:pcii"
    COVER_SHEET = "cover-sheet"
    WATERMARK_RECIPIENT = "watermark:recipient"
    REDACT_CONTACTS = "redact:contacts"
    REDACT_SUBMITTER = "redact:submitter"
    NOTIFY_PROGRAM_OFFICE = "notify:program-office"
    WITHHOLD_ATTACHMENTS = "withhold:attachments"


OBLIGATION_MEANINGS: dict[Obligation, str] = {
    Obligation.MARK_PCII: (
        'header and footer "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION" and the '
        "6 CFR 29.6(c) statement on every page and every copy"
    ),
    Obligation.COVER_SHEET: "a PCII cover sheet in front of the released document",
    Obligation.WATERMARK_RECIPIENT: (
        "the recipient's principal id and the request time on every copy, so a leaked "
        "copy names its recipient"
    ),
    Obligation.REDACT_CONTACTS: (
        "remove the submitter's contact details (primary and secondary contact, "
        "certification signer's address, email, phone)"
    ),
    Obligation.REDACT_SUBMITTER: (
        "remove the submitter's identity (person and organisation) so the output is "
        "not traceable to the submitter"
    ),
    Obligation.NOTIFY_PROGRAM_OFFICE: (
        "send the program office a contemporaneous written notice of the release "
        "(who, what, when, purpose, authority)"
    ),
    Obligation.WITHHOLD_ATTACHMENTS: (
        "release the assessment but none of its attachments (listed as withheld on the "
        "cover sheet); without it, PDF attachments are stamped page by page and other "
        "attachments go with a marking sidecar"
    ),
}

_ORDER = {obligation: index for index, obligation in enumerate(Obligation)}


def parse_obligations(text: str) -> tuple[Obligation, ...]:
    """Parse an `@obligations` annotation value.

    Args:
        text: space-separated obligation tokens.

    Returns:
        The obligations, in vocabulary order.

    Raises:
        ValueError: the value is empty, or holds an unknown or repeated token.
    """
    tokens = text.split()
    if not tokens:
        raise ValueError("empty @obligations annotation; remove it or name obligations")
    seen: set[Obligation] = set()
    for token in tokens:
        try:
            obligation = Obligation(token)
        except ValueError:
            known = ", ".join(o.value for o in Obligation)
            raise ValueError(f"unknown obligation {token!r} (known: {known})") from None
        if obligation in seen:
            raise ValueError(f"obligation {token!r} repeated")
        seen.add(obligation)
    return canonical_obligations(seen)


def canonical_obligations(obligations: Iterable[Obligation]) -> tuple[Obligation, ...]:
    """Return the distinct `obligations` in vocabulary order."""
    return tuple(sorted(set(obligations), key=_ORDER.__getitem__))
