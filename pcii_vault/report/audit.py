"""One pass over the log: verify it and compute the report's figures at the same time.

`compile_report` runs `verify_log` (tree, tiles, signatures, checkpoints; the legal
history as `pcii audit verify` checks it) with a callback that feeds every event to
`ReportFigures`. The log is sound only if `verify_log` returns; if it raises
`IntegrityError`, the report says "not sound" with that problem and keeps the figures of
the events read before it, so it can still be rendered. Backend errors propagate.

Memory: the figures are bounded by records, principals and days; per-event tables are
spooled to `scratch`; the legal-history replay uses a SQLite file in `scratch` (its nonce
table grows with the log, on disk, not in memory).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pcii_vault.errors import IntegrityError, NotFoundError
from pcii_vault.history import HistoryAuditor
from pcii_vault.index import Index
from pcii_vault.ledger.log import CHECKPOINT_KEY
from pcii_vault.ledger.note import Checkpoint, NoteVerifier, parse_checkpoint
from pcii_vault.ledger.verify import verify_log
from pcii_vault.models.event import Event
from pcii_vault.report.figures import Period, ReportFigures
from pcii_vault.report.spool import TableSpool
from pcii_vault.store.base import ObjectStore

__all__ = ["AuditReport", "Verification", "compile_report"]


@dataclass(frozen=True)
class Verification:
    """What the report is anchored to, and whether the log was sound."""

    sound: bool
    problem: str | None
    origin: str
    size: int | None
    root: str | None
    trusted_size: int | None
    trusted_root: str | None
    events_read: int
    pending: tuple[str, ...]
    legal_history: bool
    # None when decisions were not re-run (`--skip-decision-replay`, or no legal history).
    decisions_replayed: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "sound": self.sound,
            "problem": self.problem,
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "trusted_checkpoint": None
            if self.trusted_size is None
            else {"size": self.trusted_size, "root": self.trusted_root},
            "events_read": self.events_read,
            "pending": list(self.pending),
            # As `audit verify` says it: the history was checked, and found legal.
            "legal_history": self.legal_history and self.sound,
            "decisions_replayed": self.decisions_replayed,
        }


@dataclass(frozen=True)
class AuditReport:
    """The verification and the figures of one report (tables live in `spool`)."""

    verification: Verification
    figures: ReportFigures
    spool: TableSpool
    generated_at: datetime
    as_of: datetime
    checkpoint: Checkpoint | None  # the verified one (or, if not sound, the signed one)


def _scratch_history(path: Path) -> Index:
    """A throw-away projection on disk for the legal-history replay (never index.sqlite).

    Durability is pointless for a scratch file deleted after the run, so SQLite skips
    fsync; the file keeps the replay's memory flat however long the log is.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=MEMORY")
    conn.execute("PRAGMA synchronous=OFF")
    return Index(conn)


def _signed_checkpoint_or_none(store: ObjectStore, verifier: NoteVerifier) -> Checkpoint | None:
    """The signed checkpoint alone, to name it in a report on a log that is not sound."""
    try:
        return parse_checkpoint(store.get(CHECKPOINT_KEY), verifier)
    except (IntegrityError, NotFoundError):
        return None


class _RecordSeen:
    """Whether the record a report is restricted to (`--record`) was ever submitted.

    A tracking number the log never received is a typo, not a record without events:
    the report refuses it (exit 2) as `pcii audit recipients` does, instead of showing a
    sound report of nothing. Only a sound log is held to it: a broken one is read only
    up to its first problem.
    """

    def __init__(self, record: str | None) -> None:
        self.record = record
        self.seen = record is None

    def observe(self, event: Event) -> None:
        """Note the record's submission (the event that creates a record)."""
        if not self.seen and event.type == "submission.received":
            self.seen = event.record == self.record


def compile_report(
    store: ObjectStore,
    verifier: NoteVerifier,
    *,
    period: Period,
    scratch: Path,
    now: datetime,
    trusted: Checkpoint | None = None,
    legal_history: bool = True,
    replay_decisions: bool = True,
) -> AuditReport:
    """Verify the log and compute the report's figures in one streaming pass.

    Args:
        store: where ``log/`` lives.
        verifier: the log's key.
        period: which events the figures cover.
        scratch: an empty directory for spooled tables and the replay (the caller
            removes it).
        now: the generation time (also the "as of" time unless the period ends earlier).
        trusted: a checkpoint seen before; the log must extend it.
        legal_history: also check the lifecycle rules, as `pcii audit verify` does.
        replay_decisions: also re-run every logged decision on the policy set it names
            (off for a log copied without its ``policysets/``, as `audit verify
            --skip-decision-replay`); `verification.decisions_replayed` is then None.

    Returns:
        The report; `verification.sound` says whether the log verified.

    Raises:
        NotFoundError: `period` names a record the (sound) log never received.
        BackendError: the store is unavailable.
    """
    spool = TableSpool(scratch)
    figures = ReportFigures(period, spool)
    # The same checks as `pcii audit verify`: legal history, and every decision re-run.
    history = (
        HistoryAuditor(
            store,
            index=_scratch_history(scratch / "history.sqlite"),
            replay_decisions=replay_decisions,
        )
        if legal_history
        else None
    )
    read = 0
    named = _RecordSeen(period.record)

    def observe(event: Event) -> None:
        nonlocal read
        if history is not None:
            history(event)
        read += 1
        named.observe(event)
        figures.observe(event)

    problem: str | None = None
    checkpoint: Checkpoint | None = None
    pending: tuple[str, ...] = ()
    try:
        verified = verify_log(store, verifier, trusted=trusted, event_checker=observe)
        if history is not None:
            history.finish()
        checkpoint, pending = verified.checkpoint, verified.pending
    except IntegrityError as exc:
        problem = exc.diagnostics()
        checkpoint = _signed_checkpoint_or_none(store, verifier)
    finally:
        if history is not None:
            history.close()
    if problem is None and not named.seen:
        spool.close()
        raise NotFoundError(f"no record with tracking number {period.record!r} in the log")
    as_of = now if period.until is None else min(now, period.until)
    figures.finish(as_of)
    verification = Verification(
        sound=problem is None,
        problem=problem,
        origin=verifier.name,
        size=checkpoint.size if checkpoint else None,
        root=checkpoint.root.hex() if checkpoint else None,
        trusted_size=trusted.size if trusted else None,
        trusted_root=trusted.root.hex() if trusted else None,
        events_read=read,
        pending=pending,
        legal_history=legal_history,
        decisions_replayed=history.decisions_replayed
        if history is not None and replay_decisions
        else None,
    )
    return AuditReport(verification, figures, spool, now, as_of, checkpoint)
