"""Submitters' receipts: offline proof that the vault logged exactly what was submitted.

A receipt holds the tracking number, the SHA-256 of every file, and a log proof bundle
(the `submission.received` event, its inclusion proof, the signed checkpoint). Checking it
needs only the log's public key. Invariant: a receipt verifies only if the signed log
contains an event that names the same tracking number and the same file hashes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pcii_vault.crypto.canonical import no_duplicate_keys
from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.note import NoteVerifier, parse_checkpoint
from pcii_vault.ledger.proof import ProofBundle, verify_bundle

__all__ = ["Receipt", "VerifiedReceipt", "verify_receipt"]


class Receipt(BaseModel):
    """What `pcii submit --receipt-out` writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["pcii-receipt/1"] = "pcii-receipt/1"
    tracking_number: str = Field(max_length=64)
    files: tuple[dict[str, Any], ...]
    log_index: int = Field(ge=0, strict=True)  # a number: not "8", true or 8.0
    proof: ProofBundle

    def to_json(self) -> dict[str, Any]:
        """The receipt file's content."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt whose event is proven to be in the log the vault signed."""

    tracking_number: str
    files: tuple[dict[str, Any], ...]
    log_index: int
    checkpoint_size: int


def verify_receipt(data: bytes, log_key: str) -> VerifiedReceipt:
    """Check a receipt offline against the log's verifier key.

    Returns:
        What the receipt proves.

    Raises:
        IntegrityError: malformed, not signed by the log, or not matching its event.
    """
    try:
        # A key given twice: which value the receipt says would be the reader's guess.
        json.loads(data, object_pairs_hook=no_duplicate_keys)
        receipt = Receipt.model_validate_json(data)
    except (ValidationError, ValueError, RecursionError) as exc:
        raise IntegrityError("not a well-formed pcii receipt") from exc
    event = verify_bundle(receipt.proof, log_key)
    if receipt.proof.index != receipt.log_index:
        raise IntegrityError("receipt's log index differs from its proof's")
    if event.type != "submission.received" or event.record != receipt.tracking_number:
        raise IntegrityError("the logged event is not this submission's receipt")
    if list(event.details.get("files", [])) != [dict(f) for f in receipt.files]:
        raise IntegrityError("the receipt's file hashes differ from the logged ones")
    checkpoint = parse_checkpoint(receipt.proof.checkpoint, NoteVerifier.from_key_string(log_key))
    return VerifiedReceipt(
        receipt.tracking_number, receipt.files, receipt.log_index, checkpoint.size
    )
