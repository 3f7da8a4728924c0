"""Inclusion proof bundles (a submitter's receipt) and streaming reads of the log.

A `ProofBundle` carries one entry, its index, the RFC 9162 audit path and the signed
checkpoint it leads to. `verify_bundle` needs only the bundle and the log's verifier key:
it checks the checkpoint signature, the inclusion proof against the checkpoint root, and
that the entry is a known event whose seq is its index. It raises on any failure.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pcii_vault.crypto.canonical import no_duplicate_keys
from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.log import Ledger, parse_event
from pcii_vault.ledger.note import Checkpoint, NoteVerifier, parse_checkpoint
from pcii_vault.ledger.tiles import MAX_ENTRY_BYTES
from pcii_vault.ledger.tree import leaf_hash, verify_inclusion
from pcii_vault.models.event import Event

__all__ = ["ProofBundle", "iter_events", "prove", "verify_bundle"]

PROOF_FORMAT: Literal["pcii-log-proof/1"] = "pcii-log-proof/1"


class ProofBundle(BaseModel):
    """An entry, its inclusion proof, and the signed checkpoint (JSON)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["pcii-log-proof/1"] = PROOF_FORMAT
    index: int = Field(ge=0, strict=True)  # a number: not "1", true or 1.0
    entry: str = Field(max_length=4 * MAX_ENTRY_BYTES, description="base64 entry bytes")
    proof: tuple[str, ...] = Field(max_length=64, description="base64 hashes, bottom first")
    checkpoint: str = Field(max_length=16384, description="the signed checkpoint note")

    def to_json(self) -> dict[str, Any]:
        """The bundle as a JSON-ready dict."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, Any]) -> ProofBundle:
        """Parse a bundle (untrusted).

        Raises:
            IntegrityError: not a well-formed proof bundle.
        """
        try:
            if isinstance(data, dict):
                return cls.model_validate(data)
            json.loads(data, object_pairs_hook=no_duplicate_keys)  # a key twice: no guessing
            return cls.model_validate_json(data)
        except (ValidationError, ValueError, RecursionError) as exc:
            raise IntegrityError("not a well-formed log proof bundle") from exc


def prove(ledger: Ledger, index: int, checkpoint: Checkpoint | None = None) -> ProofBundle:
    """Build the inclusion proof bundle of entry `index` in the latest checkpoint.

    Raises:
        IntegrityError: the log is inconsistent or the index is not committed.
    """
    cp = checkpoint or ledger.checkpoint()
    if cp is None or not 0 <= index < cp.size:
        raise IntegrityError(f"log index {index} is not committed")
    [entry] = list(ledger.entries(index, index + 1, cp.size))
    path = ledger.inclusion_proof(index, cp.size)
    return ProofBundle(
        index=index,
        entry=base64.b64encode(entry).decode("ascii"),
        proof=tuple(base64.b64encode(h).decode("ascii") for h in path),
        checkpoint=cp.note,
    )


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise IntegrityError(f"proof bundle: {what} is not base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        # Unused bits set: the same bytes, another text; one bundle has one encoding.
        raise IntegrityError(f"proof bundle: {what} is not canonical base64")
    return raw


def verify_bundle(bundle: ProofBundle, verifier_key: NoteVerifier | str) -> Event:
    """Check a proof bundle offline and return its verified event.

    Raises:
        IntegrityError: bad signature, proof, entry, or index.
    """
    verifier = (
        verifier_key
        if isinstance(verifier_key, NoteVerifier)
        else NoteVerifier.from_key_string(verifier_key)
    )
    cp = parse_checkpoint(bundle.checkpoint, verifier)
    entry = _b64(bundle.entry, "entry")
    path = [_b64(h, "proof hash") for h in bundle.proof]
    verify_inclusion(leaf_hash(entry), bundle.index, cp.size, path, cp.root)
    return parse_event(entry, bundle.index)


def iter_events(
    ledger: Ledger,
    *,
    record: str | None = None,
    principal: str | None = None,
    event_type: str | None = None,
    decision: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[Event]:
    """Stream committed events matching every given filter (bounded memory)."""
    size = ledger.size()
    for event in ledger.events(0, size, size):
        if record is not None and event.record != record:
            continue
        if principal is not None and event.actor != principal:
            continue
        if event_type is not None and event.type != event_type:
            continue
        if decision is not None and event.decision != decision:
            continue
        if since is not None and event.time < since:
            continue
        if until is not None and event.time > until:
            continue
        yield event
