"""The SQLite projection of the log: principals, records, recipients, deadlines, nonces.

The log is the system of record; this index is a cache that `rebuild` reproduces exactly
from the log. `apply` is also the legal-history check that `pcii audit verify` runs over an
in-memory index: an event that could not legally follow the ones before it (a release of a
withdrawn or destroyed record, a validation of a withdrawn one, an actor that is unknown or
not active, a request signed by someone else, a replayed nonce) raises IntegrityError.

Invariants:
- `apply` is deterministic: the same events in the same order give the same rows;
- events are applied strictly in sequence (`seq` == number of events applied so far);
- nothing here trusts the caller's view of state: each transition checks the current row.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pcii_vault.crypto.signing import Ed25519PublicKey
from pcii_vault.errors import IntegrityError, NotFoundError
from pcii_vault.models.event import Event
from pcii_vault.models.principal import Principal
from pcii_vault.models.request import SignedRequest

__all__ = ["DEADLINE_DAYS", "LIFECYCLE_TRANSITIONS", "Deadline", "Index", "RecordRow"]

# 6 CFR 29.6(e)-(g): each of the program's notice and answer windows is 30 days.
DEADLINE_DAYS = 30

# Lifecycle transitions (PCII.md "Submission lifecycle"): event type -> allowed prior states.
LIFECYCLE_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "submission.deficient": (frozenset({"received"}), "deficient"),
    # PCII.md: after an initial negative finding the submitter may add information, and
    # the office may then validate after all.
    "submission.validated": (
        frozenset({"received", "deficient", "initially-not-pcii"}),
        "validated",
    ),
    "submission.rejected": (frozenset({"received", "deficient"}), "initially-not-pcii"),
    "submission.final-not-pcii": (frozenset({"initially-not-pcii"}), "final-not-pcii"),
    "submission.withdrawn": (
        frozenset({"received", "deficient", "initially-not-pcii"}),
        "withdrawn",
    ),
    "record.decontrolled": (frozenset({"validated"}), "decontrolled"),
    "record.destroyed": (
        frozenset(
            {
                "received",
                "deficient",
                "validated",
                "initially-not-pcii",
                "final-not-pcii",
                "withdrawn",
                "decontrolled",
            }
        ),
        "destroyed",
    ),
}

# States in which content may be released, per action (the policies decide who may).
_RELEASABLE: dict[str, frozenset[str]] = {
    "retrieve": frozenset({"validated"}),
    "review": frozenset({"received", "deficient", "initially-not-pcii"}),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY, document TEXT NOT NULL, status TEXT NOT NULL, since_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    tracking TEXT PRIMARY KEY, state TEXT NOT NULL, categorical INTEGER NOT NULL,
    sector TEXT NOT NULL, tlp TEXT NOT NULL, submitter TEXT NOT NULL, submitter_org TEXT NOT NULL,
    received_at TEXT NOT NULL, received_seq INTEGER NOT NULL,
    state_at TEXT NOT NULL, state_seq INTEGER NOT NULL, files TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recipients (
    tracking TEXT NOT NULL, principal TEXT NOT NULL, seq INTEGER NOT NULL, time TEXT NOT NULL,
    action TEXT NOT NULL, purpose TEXT, use TEXT, authority TEXT,
    PRIMARY KEY (tracking, seq)
);
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class RecordRow:
    """A record as the index knows it (no PCII content: identifiers and labels only)."""

    tracking: str
    state: str
    categorical: bool
    sector: str
    tlp: str
    submitter: str
    submitter_org: str
    received_at: datetime
    state_at: datetime
    files: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Deadline:
    """A 30-day deadline from PCII.md that falls due for a record."""

    tracking: str
    state: str
    due: datetime
    what: str


class Index:
    """The projection. Open with `Index.open(path)` or `Index.in_memory()`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._db = conn
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, path: Path) -> Index:
        """Open (or create, owner-only) the index file at `path`."""
        # Create it 0600 before SQLite does (it would use the umask); its WAL and shared
        # memory files take the same mode. It holds metadata only, but of PCII records.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return cls(conn)

    @classmethod
    def in_memory(cls) -> Index:
        """A throw-away index, for rebuilding and for auditing history."""
        return cls(sqlite3.connect(":memory:", isolation_level=None))

    def close(self) -> None:
        """Release the database."""
        self._db.close()

    # ----- reading -------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many log events have been applied."""
        row = self._db.execute("SELECT value FROM meta WHERE key='size'").fetchone()
        return int(row[0]) if row else 0

    def meta(self, key: str) -> str | None:
        """A vault-wide fact recorded from the log (vault id, policy-set hash, ...)."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def principal(self, principal_id: str) -> Principal:
        """Return a registered principal.

        Raises:
            NotFoundError: nobody of that id was ever registered.
        """
        row = self._db.execute(
            "SELECT document FROM principals WHERE id=?", (principal_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"unknown principal {principal_id!r}")
        return Principal.model_validate_json(row[0])

    def principals(self) -> list[Principal]:
        """Every principal ever registered, by id."""
        rows = self._db.execute("SELECT document FROM principals ORDER BY id").fetchall()
        return [Principal.model_validate_json(r[0]) for r in rows]

    def record(self, tracking: str) -> RecordRow:
        """Return a record.

        Raises:
            NotFoundError: no such tracking number.
        """
        row = self._db.execute(
            "SELECT tracking, state, categorical, sector, tlp, submitter, submitter_org, "
            "received_at, state_at, files FROM records WHERE tracking=?",
            (tracking,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no record with tracking number {tracking!r}")
        return _record_row(row)

    def records(self, *, sector: str | None = None, state: str | None = None) -> list[RecordRow]:
        """Records, optionally filtered, oldest first."""
        sql = (
            "SELECT tracking, state, categorical, sector, tlp, submitter, submitter_org, "
            "received_at, state_at, files FROM records WHERE 1=1"
        )
        args: list[str] = []
        if sector is not None:
            sql += " AND sector=?"
            args.append(sector)
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        sql += " ORDER BY received_seq"
        return [_record_row(r) for r in self._db.execute(sql, args).fetchall()]

    def recipients(self, tracking: str) -> list[dict[str, Any]]:
        """Everyone who received content of a record: who, when, why, under what authority."""
        rows = self._db.execute(
            "SELECT principal, seq, time, action, purpose, use, authority FROM recipients "
            "WHERE tracking=? ORDER BY seq",
            (tracking,),
        ).fetchall()
        keys = ("principal", "seq", "time", "action", "purpose", "use", "authority")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def nonce_seen(self, nonce: str) -> bool:
        """Whether a signed request with this nonce is already in the log."""
        found = self._db.execute("SELECT 1 FROM nonces WHERE nonce=?", (nonce,)).fetchone()
        return found is not None

    def deadlines(self, until: datetime) -> list[Deadline]:
        """Deadlines (PCII.md, 30 days each) falling due on or before `until`, soonest first.

        Overdue items are included: a deadline that has passed is still due.
        """
        window = timedelta(days=DEADLINE_DAYS)
        what = {
            "received": "notify the submitter of a deficiency or decide (30 days from receipt)",
            "deficient": "submitter's cure period ends (30 days from the notice)",
            "initially-not-pcii": "submitter's answer period ends; make the final decision",
            "final-not-pcii": "act on the submitter's preference (return, destroy, keep)",
        }
        due = [
            Deadline(row.tracking, row.state, row.state_at + window, what[row.state])
            for row in self.records()
            if row.state in what and row.state_at + window <= until
        ]
        return sorted(due, key=lambda d: d.due)

    # ----- applying ------------------------------------------------------------------

    def apply(self, event: Event, *, skip_applied: bool = False) -> None:
        """Apply the next log event, checking it is a legal continuation.

        Args:
            event: the event at the index's current size.
            skip_applied: for a shared index file that several processes catch up at once:
                an event another process applied meanwhile is skipped (the size is read
                under the write lock; the log is the same for everyone, so it was this
                very event). Off for the auditor's replay, where it would hide a repeat.

        Raises:
            IntegrityError: out of sequence, or not a legal next event.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            expected = self.size
            if skip_applied and event.seq < expected:
                self._db.execute("ROLLBACK")
                return
            _check_sequence(event, expected)
            self._check_actor(event)
            self._apply(event)
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES('size', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(expected + 1),),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _check_actor(self, event: Event) -> None:
        if event.actor == "vault":
            if event.request is not None:
                raise IntegrityError(f"event {event.seq}: the vault does not sign requests")
            return
        try:
            actor = self.principal(event.actor)
        except NotFoundError as exc:
            raise IntegrityError(f"event {event.seq}: actor {event.actor!r} unknown") from exc
        if actor.status != "active" and not (
            event.type == "access.decided" and event.decision == "deny"
        ):
            raise IntegrityError(f"event {event.seq}: actor {event.actor!r} is {actor.status}")
        if event.request is None:
            raise IntegrityError(f"event {event.seq}: a principal's act without a signed request")
        request = SignedRequest.model_validate(event.request)
        if request.body.principal != event.actor:
            raise IntegrityError(f"event {event.seq}: request signed for another principal")
        key = Ed25519PublicKey(base64.b64decode(actor.public_key))
        try:
            key.verify(request.body.signing_bytes(), request.signature_bytes())
        except IntegrityError as exc:
            raise IntegrityError(f"event {event.seq}: request signature does not verify") from exc
        if self.nonce_seen(request.body.nonce):
            raise IntegrityError(f"event {event.seq}: replayed request nonce")
        self._db.execute(
            "INSERT INTO nonces(nonce, seq) VALUES(?, ?)", (request.body.nonce, event.seq)
        )

    def _apply(self, event: Event) -> None:
        kind = event.type
        if kind == "vault.initialized":
            if event.seq != 0:
                raise IntegrityError(f"event {event.seq}: vault initialised twice")
            self._set_meta("vault_id", str(event.details["vault_id"]))
        elif kind == "policy.loaded":
            self._set_meta("policy_set", str(event.policy_set))
        elif kind in {"key.rotated", "key.rewrapped", "key.retired", "key.migrated"}:
            self._set_meta(kind, json.dumps(event.details, sort_keys=True))
        elif kind == "principal.registered":
            self._register(event)
        elif kind in {"principal.updated", "principal.revoked"}:
            self._update_principal(event)
        elif kind == "submission.received":
            self._receive(event)
        elif kind in LIFECYCLE_TRANSITIONS:
            self._transition(event)
        elif kind == "notice.sent":
            self._require_record(event)
        elif kind == "access.decided":
            self._access(event)
        else:  # pragma: no cover - Event's type Literal makes this unreachable
            raise IntegrityError(f"event {event.seq}: unknown type {kind!r}")

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def _register(self, event: Event) -> None:
        principal = Principal.model_validate(event.details.get("principal"))
        exists = self._db.execute("SELECT 1 FROM principals WHERE id=?", (principal.id,)).fetchone()
        if exists:
            raise IntegrityError(f"event {event.seq}: principal {principal.id!r} registered twice")
        self._db.execute(
            "INSERT INTO principals(id, document, status, since_seq) VALUES(?, ?, ?, ?)",
            (principal.id, principal.model_dump_json(), principal.status, event.seq),
        )

    def _update_principal(self, event: Event) -> None:
        target = str(event.details.get("principal"))
        try:
            current = self.principal(target)
        except NotFoundError as exc:
            raise IntegrityError(f"event {event.seq}: update of unknown principal") from exc
        if current.status == "revoked":
            raise IntegrityError(f"event {event.seq}: principal {target!r} is revoked")
        changes = dict(event.details.get("changes", {}))
        if event.type == "principal.revoked":
            changes = {"status": "revoked"}
        updated = Principal.model_validate({**current.model_dump(mode="json"), **changes})
        self._db.execute(
            "UPDATE principals SET document=?, status=?, since_seq=? WHERE id=?",
            (updated.model_dump_json(), updated.status, event.seq, target),
        )

    def _receive(self, event: Event) -> None:
        tracking = _tracking(event)
        if self._db.execute("SELECT 1 FROM records WHERE tracking=?", (tracking,)).fetchone():
            raise IntegrityError(f"event {event.seq}: tracking number {tracking} reused")
        details = event.details
        time = event.time.isoformat()
        self._db.execute(
            "INSERT INTO records(tracking, state, categorical, sector, tlp, submitter, "
            "submitter_org, received_at, received_seq, state_at, state_seq, files) "
            "VALUES(?, 'received', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                tracking,
                str(details["sector"]),
                str(details["tlp"]),
                event.actor,
                str(details["submitter_org"]),
                time,
                event.seq,
                time,
                event.seq,
                json.dumps(details.get("files", []), sort_keys=True),
            ),
        )

    def _require_record(self, event: Event) -> RecordRow:
        try:
            return self.record(_tracking(event))
        except NotFoundError as exc:
            raise IntegrityError(f"event {event.seq}: {exc}") from exc

    def _transition(self, event: Event) -> None:
        record = self._require_record(event)
        allowed, target = LIFECYCLE_TRANSITIONS[event.type]
        if record.state not in allowed:
            raise IntegrityError(
                f"event {event.seq}: {event.type} of a record that is {record.state}"
            )
        categorical = bool(event.details.get("categorical", False)) or record.categorical
        self._db.execute(
            "UPDATE records SET state=?, state_at=?, state_seq=?, categorical=? WHERE tracking=?",
            (target, event.time.isoformat(), event.seq, int(categorical), record.tracking),
        )

    def _access(self, event: Event) -> None:
        if event.decision != "permit" or event.record is None:
            return
        record = self._require_record(event)
        action = event.action or ""
        if action in _RELEASABLE:
            if record.state not in _RELEASABLE[action]:
                raise IntegrityError(
                    f"event {event.seq}: {action} released a record that is {record.state}"
                )
            self._db.execute(
                "INSERT INTO recipients(tracking, principal, seq, time, action, purpose, use, "
                "authority) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.tracking,
                    event.actor,
                    event.seq,
                    event.time.isoformat(),
                    action,
                    event.purpose,
                    event.use,
                    event.authority,
                ),
            )

    def iter_tracking_numbers(self) -> Iterator[str]:
        """Every tracking number, oldest first."""
        for (tracking,) in self._db.execute("SELECT tracking FROM records ORDER BY received_seq"):
            yield str(tracking)

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, in a stable order: for comparing two indexes."""
        tables = ("meta", "principals", "records", "recipients", "nonces")
        return {
            table: self._db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608 -- fixed table names
            for table in tables
        }


def _check_sequence(event: Event, expected: int) -> None:
    if event.seq != expected:
        raise IntegrityError(f"event {event.seq} applied out of order (expected {expected})")


def _tracking(event: Event) -> str:
    if event.record is None:
        raise IntegrityError(f"event {event.seq}: {event.type} names no record")
    return event.record


def _record_row(row: tuple[Any, ...]) -> RecordRow:
    return RecordRow(
        tracking=row[0],
        state=row[1],
        categorical=bool(row[2]),
        sector=row[3],
        tlp=row[4],
        submitter=row[5],
        submitter_org=row[6],
        received_at=datetime.fromisoformat(row[7]),
        state_at=datetime.fromisoformat(row[8]),
        files=tuple(json.loads(row[9])),
    )
