"""The SQLite projection of the log: principals, records, recipients, deadlines, nonces.

The log is the system of record; this index is a cache that `rebuild` reproduces exactly
from the verified log. `apply` is also the legal-history check that `pcii audit verify`
runs over an in-memory index (strict mode): an event that could not legally follow the
ones before it (a release of a withdrawn or destroyed record, a validation of a
withdrawn one, an actor that is unknown or not active, a request signed by someone else
or for other parameters than the event records, a replayed nonce, an act by `vault`
outside its closed list) raises IntegrityError.

The vault's own projection is lenient: an illegal event that an older version (or a
forger with the log key) put into the log is given no effect and listed in `illegal`,
so one bad event never leaves a vault where no command can run; `pcii audit verify`
names it.

The index file is authenticated: after every write the vault tags the whole file with a
key derived from its keyring (HMAC-SHA256, tag beside it in ``index.sqlite.mac``), and
checks the tag before it trusts a row. The vault never lets SQLite read or write the file
itself: it reads the file's bytes once, checks their tag, and queries an in-memory copy
of exactly those bytes; a write changes the copy, and the copy's own bytes are written
(to a new file put in place) and tagged. A byte written into the file by someone else,
even while the vault writes, is never read as a fact nor tagged as the vault's. An edit
by anyone without the unseal secret (a changed sector, a deleted recipient, a rolled-back
row, an altered policy hash) is an `IndexTamperedError` error; the caller names what
changed by comparing with a projection of the verified log, and `pcii index rebuild`
repairs it. Putting back an older file and its tag together only makes the vault replay
the verified log from that point.

Invariants:
- `apply` is deterministic: the same events in the same order give the same rows;
- events are applied strictly in sequence (`seq` == number of events applied so far);
- nothing here trusts the caller's view of state: each transition checks the current row;
- a malformed logged event is an IntegrityError, never another exception.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from pcii_vault.crypto.mac import Authenticator
from pcii_vault.crypto.signing import Ed25519PublicKey
from pcii_vault.durable import read_regular, replace_file, vault_file_failure
from pcii_vault.errors import BackendError, InputError, IntegrityError, NotFoundError
from pcii_vault.lifecycle import (
    DEADLINE_DAYS,
    LIFECYCLE_TRANSITIONS,
    IllegalTransitionError,
    RecordState,
    deadline_rule,
    next_state,
    releasable,
)
from pcii_vault.models.acts import check_params
from pcii_vault.models.event import Event
from pcii_vault.models.principal import Principal, PrincipalAttributes
from pcii_vault.models.request import SignedRequest

__all__ = [
    "DEADLINE_DAYS",
    "LIFECYCLE_TRANSITIONS",
    "TRANSITION_ACTIONS",
    "Deadline",
    "Index",
    "IndexTamperedError",
    "IndexWriteError",
    "RecordRow",
    "signed_final",
]

_log = structlog.get_logger(__name__)

# The action a lifecycle event must have been requested (and permitted) as.
TRANSITION_ACTIONS: dict[str, str] = {
    "submission.deficient": "mark-deficient",
    "submission.validated": "validate",
    "submission.rejected": "reject",
    "submission.final-not-pcii": "reject",
    "submission.withdrawn": "withdraw",
    "record.decontrolled": "decontrol",
    "record.destroyed": "destroy",
}
_KEY_OPS = {
    "key.rotated": "rotate",
    "key.rewrapped": "rewrap",
    "key.retired": "retire",
    "key.migrated": "migrate",
}
_PRINCIPAL_OPS = {
    "principal.registered": "register",
    "principal.updated": "update",
    "principal.revoked": "revoke",
}
_MAC_FORMAT = b"pcii-index-mac/1 "
_MAX_TAG_BYTES = 4096  # the format, 64 hex digits and a newline
# The vault reads the index file into memory to check it, and SQLite loads at most 2 GiB
# less 257 bytes (its largest allocation, 0x7FFFFEFF): the largest index the vault writes
# or reads is 64 KiB under that.
_MAX_INDEX_BYTES = 0x7FFF_0000

# Why each of the vault's own acts was refused (see `_check_vault_event`).
_VAULT_RULES = {
    "vault.initialized": "vault initialised twice",
    "policy.loaded": "policy.loaded names no policy set",
    "principal.registered": "the vault registers only the first admin, at init",
    "notice.sent": "a notice no logged act owed",
    "release.failed": "a failure of no logged release",
    "key.migrated": "the vault only finishes a migration an admin started",
    "vault.unsealed": "an unseal record without the attempts it reports",
}


class IndexTamperedError(IntegrityError):
    """The index file does not carry the vault's tag: edited outside the vault."""


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
CREATE TABLE IF NOT EXISTS illegal (seq INTEGER PRIMARY KEY, reason TEXT NOT NULL);
"""

# The meta key listing every KEK version the log retired.
RETIRED_VERSIONS = "key.retired.versions"
_TABLES = ("meta", "principals", "records", "recipients", "nonces", "illegal")


@dataclass(frozen=True)
class RecordRow:
    """A record as the index knows it (no PCII content: identifiers and labels only)."""

    tracking: str
    state: RecordState
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
    """A 30-day deadline from 6 CFR 29 that falls due for a record."""

    tracking: str
    state: str
    due: datetime
    what: str


def _unreadable(path: Path, exc: sqlite3.DatabaseError) -> IndexTamperedError:
    return IndexTamperedError(
        f"{path.name} is not a readable index ({exc}); run `pcii index rebuild` to "
        "rebuild it from the verified log"
    )


def _open_lock(path: Path) -> int:
    try:
        return os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except IsADirectoryError:
        raise IndexTamperedError(
            f"{path.name}.lock is a directory, not the index's lock file; remove it"
        ) from None
    except OSError as exc:  # a read-only vault directory, say
        raise vault_file_failure(f"{path}.lock", exc) from exc


def _stat_key(path: Path) -> tuple[int, ...] | None:
    # ctime cannot be set from user space: any write to the file changes it.
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _key_of(st)


def _key_of(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_index_file(path: Path) -> tuple[tuple[int, ...], bytes]:
    """The index file's stat key (taken before reading) and its bytes.

    Raises:
        IndexTamperedError: no regular file there (a symlink, FIFO, directory, device), or
            it cannot be read.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise IndexTamperedError(f"{path.name} was removed outside the vault") from None
    except OSError as exc:
        raise IndexTamperedError(
            f"{path.name} is not the index file the vault wrote ({exc.strerror}); remove it "
            "and run `pcii index rebuild`"
        ) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise IndexTamperedError(
            f"{path.name} was replaced by something else than an index file; remove it and "
            "run `pcii index rebuild`"
        )
    with os.fdopen(fd, "rb") as handle:
        if st.st_size > _MAX_INDEX_BYTES:
            raise IndexTamperedError(
                f"{path.name} is larger than any index the vault writes; run "
                "`pcii index rebuild` to rebuild it from the verified log"
            )
        try:
            return _key_of(st), handle.read(st.st_size + 1)
        except OSError as exc:
            raise IndexTamperedError(
                f"{path.name} cannot be read as the index ({exc.strerror})"
            ) from None


def _write_tagged(path: Path, data: bytes, tag: bytes) -> None:
    """Put `data` in place of the index file at `path` (atomically), then its tag.

    A crash between the two leaves a file whose tag fails: the next command finds its
    rows equal to the log's and writes it again (`verify_or_diagnose`).

    Raises:
        IndexWriteError: either cannot be written (a full disk, a read-only directory),
            or `data` is larger than any index the vault can read back.
    """
    if len(data) > _MAX_INDEX_BYTES:
        raise IndexWriteError(
            f"the index has grown to {len(data)} bytes, past the largest index SQLite "
            f"loads ({_MAX_INDEX_BYTES} bytes): not written"
        )
    try:
        replace_file(path, data)
        replace_file(path.with_name(path.name + ".mac"), _MAC_FORMAT + tag.hex().encode() + b"\n")
    except OSError as exc:
        raise IndexWriteError(f"the index cannot be written: {exc.strerror or exc}") from exc
    for suffix in ("-journal", "-wal", "-shm"):
        # An older version's, beside a file it no longer belongs to.
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            Path(f"{path}{suffix}").unlink()


# Every column that holds the index of the log event a row came from.
_EVENT_COLUMNS = (
    ("principals", "since_seq"),
    ("records", "received_seq"),
    ("records", "state_seq"),
    ("recipients", "seq"),
    ("nonces", "seq"),
    ("illegal", "seq"),
)


def _size_of(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key='size'").fetchone()
    return int(row[0]) if row else 0


def _memory_connection() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)


class Index:
    """The projection. Open with `Index.open(path, seal=...)` or `Index.in_memory()`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: Path | None = None,
        seal: Authenticator | None = None,
        write_every: float = 0.0,
    ) -> None:
        self._db = conn
        self._path = path
        self._seal = seal
        # A long-lived process (a server) writes its copy at most every `write_every`
        # seconds, and when closed: the log is the record, and a file behind it is caught
        # up from the verified log by whoever reads it next. `_dirty`: the copy holds
        # events the file does not.
        self._write_every = write_every
        self._written_at = float("-inf")
        self._dirty = False
        # The stat key of the file whose bytes `_db` holds, and whether their tag matched
        # (and if not, why): an authenticated index is only ever read from memory.
        self._known: tuple[int, ...] | None = None
        self._unverified: str | None = None
        # Threads of one process (a server's) take turns at loading and writing the copy.
        self._mutex = threading.RLock()
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, path: Path, *, seal: Authenticator, write_every: float = 0.0) -> Index:
        """Open (or create, owner-only) the authenticated index file at `path`.

        Its bytes are read into memory (`verify` says whether their tag matches), and a
        write puts a new, tagged file in its place: after every change, or (`write_every`
        seconds, for a long-lived process) at most that often and at `close`. A file
        created here is tagged at once.
        """
        # Created 0600 (not with the umask): it holds metadata only, but of PCII records.
        created = False
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            created = True
        if not path.is_file():
            raise IndexTamperedError(
                f"{path.name} is not a file (a directory?), not the index the vault wrote; "
                "remove it and run `pcii index rebuild`"
            )
        index = cls(_memory_connection(), path=path, seal=seal, write_every=write_every)
        with index._locked(fcntl.LOCK_EX if created else fcntl.LOCK_SH):
            if created:
                index._persist_locked()
            else:
                index._load_locked()
        return index

    @classmethod
    def install(cls, built: bytes, path: Path, *, seal: Authenticator) -> None:
        """Put an index's bytes (`Index.serialize`) in place of the file at `path`, tagged.

        Under the index's write lock: no process of this vault is writing meanwhile, and
        each one loads the new file before its next read or write of the file. The bytes
        are tagged as they are in memory, never as read back from the vault directory.
        """
        tag = seal.tag(built)
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _write_tagged(path, built, tag)
        finally:
            os.close(fd)

    @classmethod
    def in_memory(cls) -> Index:
        """A throw-away index, for rebuilding and for auditing history."""
        return cls(_memory_connection())

    def serialize(self) -> bytes:
        """The database's bytes, as a file of it would hold them."""
        return self._db.serialize()

    def write_if_due(self) -> None:
        """Write a copy the file is behind when `write_every` has passed (an idle server).

        Raises:
            IndexWriteError: the file cannot be written.
        """
        if self._dirty and time.monotonic() - self._written_at >= self._write_every:
            self._write_dirty()

    def close(self) -> None:
        """Write what the file does not hold yet (a long-lived copy), release the database.

        A copy that cannot be written is only logged: the log holds its events, and the
        next reader of the older file catches up from there.
        """
        if self._dirty:
            try:
                self._write_dirty()
            except (IndexTamperedError, IndexWriteError) as exc:
                _log.warning("index_not_written_at_close", error=str(exc))
        self._db.close()

    def _write_dirty(self) -> None:
        """Write the copy if the file (checked again under the lock) is still behind it."""
        with self._locked(fcntl.LOCK_EX):
            self._verify_locked()
            if self._dirty:
                self._persist_locked()

    # ----- authentication -------------------------------------------------------------

    @property
    def _mac_path(self) -> Path:
        assert self._path is not None  # noqa: S101 -- only called when sealed
        return self._path.with_name(self._path.name + ".mac")

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        if self._path is None:
            yield
            return
        with self._mutex:
            fd = _open_lock(self._path)
            try:
                fcntl.flock(fd, mode)
                yield
            finally:
                os.close(fd)

    def verify(self) -> None:
        """Load the file if another process changed it, and check its tag.

        Raises:
            IndexTamperedError: the file or its tag was changed outside the vault.
        """
        if self._seal is None:
            return
        with self._locked(fcntl.LOCK_SH):
            self._verify_locked()

    def _verify_locked(self) -> None:
        """Under the index's lock: bring the copy up to the file, refuse unless tagged.

        Raises:
            IndexTamperedError: the file or its tag was changed outside the vault.
        """
        assert self._seal is not None and self._path is not None  # noqa: S101
        if _stat_key(self._path) != self._known:
            ahead = self._db if self._dirty else None
            self._load_locked()
            if ahead is not None and self._unverified is None and _size_of(ahead) > self.size:
                # Another process of this vault wrote its copy, behind this one's: both
                # are the verified log's, and this one goes on from its own.
                self._db, self._dirty = ahead, True
        if self._unverified is not None:
            raise IndexTamperedError(self._unverified)

    def _load_locked(self) -> None:
        """Read the file into a new in-memory copy, noting whether its tag matches.

        An untagged copy is loaded too, so that the caller can name what differs from the
        log (`verify_or_diagnose`); `_verify_locked` refuses it for anything else.

        Raises:
            IndexTamperedError: no readable index file there.
        """
        assert self._seal is not None and self._path is not None  # noqa: S101
        known, data = _read_index_file(self._path)
        conn = _memory_connection()
        try:
            if data:  # an empty file holds no database (SQLite would say "out of memory")
                conn.deserialize(data)
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _unreadable(self._path, exc) from None
        except MemoryError:
            conn.close()
            raise IndexTamperedError(
                f"{self._path.name} is larger than SQLite can load here; run `pcii index "
                "rebuild` to rebuild it from the verified log"
            ) from None
        # The old copy is not closed here: another thread may still be reading from it
        # (a verified state); it is closed when no longer referenced.
        self._db, self._known, self._dirty = conn, known, False
        self._written_at = time.monotonic()  # the copy is the file's: as if just written
        self._unverified = self._untagged_because(data)

    def _untagged_because(self, data: bytes) -> str | None:
        """Why `data` does not carry the vault's tag, or None when it does."""
        assert self._seal is not None and self._path is not None  # noqa: S101
        name = self._path.name
        try:
            stored = read_regular(self._mac_path, _MAX_TAG_BYTES)
        except FileNotFoundError:
            return f"{name} has no authentication tag"
        except (OSError, IntegrityError):
            return f"{self._mac_path.name} is not an index tag"
        if not stored.startswith(_MAC_FORMAT):
            return f"{self._mac_path.name} is not an index tag"
        try:
            tag = bytes.fromhex(stored[len(_MAC_FORMAT) :].decode("ascii").strip())
        except ValueError:
            return f"{self._mac_path.name} is not an index tag"
        if self._seal.tag(data) != tag:
            return f"{name} was changed outside the vault"
        return None

    def _persist_locked(self) -> None:
        """Write the in-memory copy as a new file in the index's place, and tag it.

        On failure the copy is loaded again from the file, so that memory never holds a
        state the file does not.

        Raises:
            IndexWriteError: the file or its tag cannot be written (a full disk).
        """
        assert self._seal is not None and self._path is not None  # noqa: S101
        data = self._db.serialize()
        try:
            _write_tagged(self._path, data, self._seal.tag(data))
        except IndexWriteError:
            self._known = None
            with contextlib.suppress(IntegrityError):
                self._load_locked()
            raise
        self._known, self._unverified = _stat_key(self._path), None
        self._dirty, self._written_at = False, time.monotonic()

    def verify_or_diagnose(self, projection: Callable[[int], Index]) -> list[str]:
        """Check the tag under the write lock; when it fails, compare with the log.

        `projection(size)` returns an in-memory projection of the log's first `size`
        events (closed here). Run under the lock, so no other process of this vault
        writes meanwhile: when the file's rows equal the projection's (a crash between a
        write and its tag, or an index from before tags), the file is replaced by the
        projection and tagged, and `[]` returned; otherwise the tables that differ are
        returned, nothing is changed.

        The file is replaced, never tagged as it is: rows alone are not all a SQLite
        file holds. A trigger, a view or a secondary index edited out of step with its
        table would keep deciding once tagged, with every row still the log's.
        """
        if self._seal is None:
            return []
        assert self._path is not None  # noqa: S101 -- sealed: on disk
        with self._locked(fcntl.LOCK_EX):
            known = _stat_key(self._path)
            if known is None and self._unverified is not None:
                # Removed under a long-lived vault whose copy was never the log's (its tag
                # failed): begin again from nothing, as a vault without an index does; the
                # caller catches up from the verified log.
                _log.warning("index_rebuilt_from_log", reason=f"{self._path.name} was removed")
                self._db = _memory_connection()
                self._db.executescript(_SCHEMA)
                self._persist_locked()
                return []
            if known is None:
                # Removed under a long-lived vault: its copy, if it is the log's, goes back.
                return self._diagnose_locked(f"{self._path.name} was removed", projection)
            try:
                if known != self._known:
                    self._load_locked()
            except IndexTamperedError as exc:
                return [str(exc)]  # nothing there to compare with the log
            if self._unverified is None:
                return []
            return self._diagnose_locked(self._unverified, projection)

    def _diagnose_locked(self, reason: str, projection: Callable[[int], Index]) -> list[str]:
        """What differs from the log in a copy whose tag failed; replaced if nothing."""
        assert self._path is not None  # noqa: S101 -- sealed: on disk
        name = self._path.name
        replayed: Index | None = None
        try:
            replayed = projection(self.size)
            differences = _differences(replayed.dump(), self.dump())
            if differences:
                return [reason, *differences]
            _log.warning("index_replaced_by_replay", reason=reason)
            self._replace_locked(replayed)
        except sqlite3.DatabaseError as unreadable:
            # Truncated or overwritten: not even SQLite can read what is left.
            return [f"{name} is not a readable index ({unreadable})"]
        except ValueError:
            # A size that is no number, or no size of this log.
            return [reason, f"{name} records an impossible log size"]
        finally:
            if replayed is not None:
                replayed.close()
        return []

    def _replace_locked(self, replayed: Index) -> None:
        """Put a copy of `replayed` in the file's place and tag it (under the write lock)."""
        conn = _memory_connection()
        conn.deserialize(replayed.serialize())
        self._db = conn
        self._persist_locked()

    # ----- reading -------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many log events have been applied."""
        return _size_of(self._db)

    def claimed_size(self) -> int:
        """How many log events this index stands for: `size`, or more if a row says so.

        Each row names the event it came from (`since_seq`, `received_seq`, `seq`...).
        In a copy whose tag failed, a row of an event the size leaves out is the index's
        evidence of a longer log: an attacker who rolled the log back and deleted the
        size (or set it back) must not pass that evidence off as an edit.

        Raises:
            sqlite3.DatabaseError: a table or column is missing (an edited schema).
            ValueError: a value is no number.
        """
        latest = [self.size - 1]
        for table, column in _EVENT_COLUMNS:
            value = self._db.execute(f"SELECT MAX({column}) FROM {table}").fetchone()[0]  # noqa: S608 -- names from the constant above
            if value is not None:
                latest.append(int(value))
        return max(latest) + 1

    def size_and_root(self) -> tuple[int, bytes | None]:
        """`size` and `root`, read in one statement.

        Another process may apply events between two reads: a size with the next size's
        root would look like another history of the log.
        """
        rows = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN ('size', 'root')"))
        root = rows.get("root")
        return int(rows.get("size") or 0), (bytes.fromhex(root) if root is not None else None)

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

    def find_record(self, tracking: str | None) -> RecordRow | None:
        """The record, or None when there is none (or no tracking number)."""
        if tracking is None:
            return None
        try:
            return self.record(tracking)
        except NotFoundError:
            return None

    def submitter_organisations(self) -> set[str]:
        """Every spelling of a submitting organisation the records hold."""
        return {row[0] for row in self._db.execute("SELECT DISTINCT submitter_org FROM records")}

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

    def released_at(self, tracking: str, nonce: str) -> int | None:
        """The log index of the permitted release of `tracking` to the request `nonce`."""
        found = self._db.execute(
            "SELECT r.seq FROM nonces n JOIN recipients r ON r.seq = n.seq "
            "WHERE n.nonce=? AND r.tracking=?",
            (nonce, tracking),
        ).fetchone()
        return None if found is None else int(found[0])

    def illegal_events(self) -> list[tuple[int, str]]:
        """Events the projection gave no effect because the lifecycle rules forbid them."""
        return [
            (int(seq), str(reason))
            for seq, reason in self._db.execute("SELECT seq, reason FROM illegal ORDER BY seq")
        ]

    def deadlines(self, until: datetime) -> list[Deadline]:
        """Deadlines (6 CFR 29, 30 days each) falling due on or before `until`, soonest first.

        Overdue items are included: a deadline that has passed is still due.
        """
        due: list[Deadline] = []
        for row in self.records():
            rule = deadline_rule(row.state)
            if rule is not None and rule.due(row.state_at) <= until:
                due.append(Deadline(row.tracking, row.state, rule.due(row.state_at), rule.what))
        return sorted(due, key=lambda d: d.due)

    # ----- applying ------------------------------------------------------------------

    def apply(self, event: Event, *, skip_applied: bool = False, strict: bool = True) -> None:
        """Apply the next log event, checking it is a legal continuation.

        Args:
            event: the event at the index's current size.
            skip_applied: for a shared index file that several processes catch up at once:
                an event another process applied meanwhile is skipped (the size is read
                under the write lock; the log is the same for everyone, so it was this
                very event). Off for the auditor's replay, where it would hide a repeat.
            strict: raise on an illegal event (the auditor); when False (the vault's
                projection) an illegal event gets no effect and is listed in `illegal`.

        Raises:
            IntegrityError: out of sequence, or (strict) not a legal next event.
        """
        self.apply_all([event], skip_applied=skip_applied, strict=strict)

    def apply_all(
        self,
        events: Iterable[Event],
        *,
        skip_applied: bool = False,
        strict: bool = True,
        root: tuple[int, bytes] | None = None,
    ) -> int:
        """Apply events in order, in one transaction; return how many were applied.

        `root` is the log's tree root at a size (its checkpoint's): recorded with the
        events when the index ends at that size, so that the history the index was built
        from can be held against the log's (`root`). An index whose size changes with
        no root known for it loses its recorded one.

        Raises:
            IndexTamperedError: the file was changed outside the vault before this write.
            IntegrityError: out of sequence, or (strict) an illegal event; nothing of
                this call is kept then.
        """
        with self._locked(fcntl.LOCK_EX):
            if self._seal is not None:
                self._verify_locked()
            with _full_is_backend():
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    applied = self._apply_events(events, skip_applied=skip_applied, strict=strict)
                    rooted = self._record_root(root, changed=bool(applied))
                except BaseException:
                    self._rollback()
                    raise
                self._db.execute("COMMIT")
            if self._seal is not None and (applied or rooted):
                self._dirty = True
                if time.monotonic() - self._written_at >= self._write_every:
                    self._persist_locked()
        return applied

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (a full disk, I/O)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _record_root(self, root: tuple[int, bytes] | None, *, changed: bool) -> bool:
        """Record the log's root at the index's size, when known; whether anything changed."""
        recorded = self.meta("root")
        if root is not None and root[0] == self.size:
            if recorded == root[1].hex():
                return False
            self._set_meta("root", root[1].hex())
            return True
        if changed and recorded is not None:
            self._db.execute("DELETE FROM meta WHERE key='root'")
            return True
        return False

    @contextlib.contextmanager
    def overlay(self, events: Iterable[Event]) -> Iterator[Index]:
        """The state after `events` (the log's next ones), for a look only: rolled back.

        The core decides an act on the state at the position its event will get: the
        committed log, plus what other writers claimed before it. Holds the index's
        write lock meanwhile, so no other process of this vault changes it underneath.

        Raises:
            IndexTamperedError: the file was changed outside the vault.
            IntegrityError: an event is out of sequence.
        """
        with self._locked(fcntl.LOCK_EX):
            if self._seal is not None:
                self._verify_locked()
            with _full_is_backend():
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    # Events another process of this vault applied meanwhile are skipped.
                    self._apply_events(events, skip_applied=True, strict=False)
                    yield self
                finally:
                    self._rollback()

    def apply_in_overlay(self, events: Sequence[Event]) -> str | None:
        """Inside `overlay`: apply an act's own events so the next act sees them.

        Returns None when they are legal here, else the reason (and they are undone).
        """
        with _full_is_backend():
            return self._apply_act(events)

    def _apply_act(self, events: Sequence[Event]) -> str | None:
        self._db.execute("SAVEPOINT act")
        expected = self.size
        illegal = None
        for event in events:
            _check_sequence(event, expected)
            self._apply_one(event, strict=False, draft=True)
            reasons = dict(self.illegal_events())
            if event.seq in reasons:
                illegal = reasons[event.seq]
                break
            expected += 1
        if illegal is not None:
            self._db.execute("ROLLBACK TO act")
        else:
            self._set_meta("size", str(expected))
        self._db.execute("RELEASE act")
        return illegal

    def _apply_events(self, events: Iterable[Event], *, skip_applied: bool, strict: bool) -> int:
        """Apply events in order inside the caller's transaction; return how many."""
        expected = self.size
        applied = 0
        for event in events:
            if skip_applied and event.seq < expected:
                continue
            _check_sequence(event, expected)
            self._apply_one(event, strict=strict)
            expected += 1
            applied += 1
        if applied:
            # Nothing applied, nothing written: a look on the current state (an overlay
            # of no events) leaves SQLite no page to journal.
            self._set_meta("size", str(expected))
        return applied

    def finish(self) -> None:
        """At the end of a strict replay: every notice a logged act owed was sent.

        Raises:
            IntegrityError: an act's notices are missing from the end of the log.
        """
        pending = self._expected_notices()
        if pending:
            raise IntegrityError(
                f"event {pending['cause']}: notice to {pending['recipients'][0]!r} is missing"
            )

    def _apply_one(self, event: Event, *, strict: bool, draft: bool = False) -> None:
        """Apply one event, or note it illegal (refuse it when `strict`).

        A `draft` is an act's event tried at its log position (`apply_in_overlay`): an
        illegal one is refused to its requester and never logged, so no warning is.
        """
        self._check_notices_owed(event, strict=strict)
        self._db.execute("SAVEPOINT event")
        try:
            self._check_actor(event)
            self._apply(event)
        except (IntegrityError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self._db.execute("ROLLBACK TO event")
            self._db.execute("RELEASE event")
            error = _as_integrity_error(event, exc)
            if strict:
                raise error from exc
            self._note_illegal(event, str(error), logged=not draft)
            return
        self._db.execute("RELEASE event")

    def _note_illegal(self, event: Event, reason: str, *, logged: bool = True) -> None:
        if logged:
            _log.warning("illegal_event_ignored", seq=event.seq, reason=reason)
        self._db.execute(
            "INSERT OR REPLACE INTO illegal(seq, reason) VALUES(?, ?)", (event.seq, reason)
        )
        # Its request is spent all the same: replaying it must not make it legal.
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            if event.request is not None:
                nonce = SignedRequest.model_validate(event.request).body.nonce
                self._db.execute(
                    "INSERT OR IGNORE INTO nonces(nonce, seq) VALUES(?, ?)", (nonce, event.seq)
                )

    # ----- notices the vault owes -------------------------------------------------------

    def _expected_notices(self) -> dict[str, Any] | None:
        raw = self.meta("notices_owed")
        return None if raw is None else dict(json.loads(raw))

    def _check_notices_owed(self, event: Event, *, strict: bool) -> None:
        """A notice owed by the previous act must come next, in order."""
        pending = self._expected_notices()
        if pending is None:
            return
        expected = pending["recipients"][0]
        if (
            event.type == "notice.sent"
            and event.actor == "vault"
            and event.record == pending["record"]
            and event.details.get("recipient") == expected
        ):
            return  # checked and consumed in _notice
        self._db.execute("DELETE FROM meta WHERE key='notices_owed'")
        error = IntegrityError(f"event {pending['cause']}: notice to {expected!r} is missing")
        if strict:
            raise error
        self._db.execute(
            "INSERT OR IGNORE INTO illegal(seq, reason) VALUES(?, ?)",
            (pending["cause"], str(error)),
        )

    def _owe_notices(self, cause: int, record: str, recipients: list[str]) -> None:
        if recipients:
            self._set_meta(
                "notices_owed",
                json.dumps({"cause": cause, "record": record, "recipients": recipients}),
            )

    # ----- checks of who acted, and what they signed ------------------------------------

    def _check_actor(self, event: Event) -> None:
        if event.actor == "vault":
            self._check_vault_event(event)
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
        vault_id = self.meta("vault_id")
        if vault_id is not None and request.body.vault != vault_id:
            raise IntegrityError(f"event {event.seq}: request is for another vault")
        if self.nonce_seen(request.body.nonce):
            raise IntegrityError(f"event {event.seq}: replayed request nonce")
        _check_binding(event, request)
        self._db.execute(
            "INSERT INTO nonces(nonce, seq) VALUES(?, ?)", (request.body.nonce, event.seq)
        )
        policy_set = self.meta("policy_set")
        if event.decision is not None and event.policy_set != policy_set:
            raise IntegrityError(
                f"event {event.seq}: decided by policy set {str(event.policy_set)[:16]}..., "
                "not the one last loaded in the log"
            )

    def _check_vault_event(self, event: Event) -> None:
        """The vault's own events are a closed list, each with its own rule."""
        if event.request is not None:
            raise IntegrityError(f"event {event.seq}: the vault does not sign requests")
        rule = {
            "vault.initialized": self._rule_initialized,
            "policy.loaded": self._rule_policy_loaded,
            "principal.registered": self._rule_first_admin,
            "notice.sent": self._rule_notice,
            "release.failed": self._rule_release_failed,
            "key.migrated": self._rule_migration_finished,
            "vault.unsealed": self._rule_unsealed,
        }.get(event.type)
        if rule is None:
            raise IntegrityError(
                f"event {event.seq}: {event.type} is not an act of the vault itself"
            )
        if not rule(event):
            raise IntegrityError(f"event {event.seq}: {_VAULT_RULES[event.type]}")

    def _rule_initialized(self, event: Event) -> bool:
        return event.seq == 0

    def _rule_policy_loaded(self, event: Event) -> bool:
        return _is_sha256_hex(event.policy_set)

    def _rule_first_admin(self, event: Event) -> bool:
        # Only the first administrator, registered by `init` itself.
        first = self._db.execute("SELECT 1 FROM principals LIMIT 1").fetchone()
        role = event.details.get("principal", {}).get("role")
        return first is None and event.seq <= 2 and role == "admin"

    def _rule_notice(self, _event: Event) -> bool:
        return self._expected_notices() is not None

    def _rule_release_failed(self, event: Event) -> bool:
        # Only of a permitted release of this record, logged by the vault after it.
        found = self._db.execute(
            "SELECT 1 FROM recipients WHERE tracking=? AND seq=?",
            (event.record, event.details.get("access")),
        ).fetchone()
        return found is not None

    def _rule_unsealed(self, event: Event) -> bool:
        # The custodians' attempts, each by a principal registered before it.
        attempts = event.details.get("attempts")
        if not isinstance(attempts, list) or not attempts:
            return False
        for attempt in attempts:
            if not isinstance(attempt, dict) or set(attempt) != {"principal", "at", "outcome"}:
                return False
            found = self._db.execute(
                "SELECT 1 FROM principals WHERE id=?", (attempt["principal"],)
            ).fetchone()
            if found is None:
                return False
        return True

    def _rule_migration_finished(self, event: Event) -> bool:
        # The vault finishes the migration an admin started (same source and target).
        last = self.meta("key.migrated")
        started = json.loads(last) if last else {}
        details = event.details
        return (
            started.get("phase") == "started"
            and details.get("phase") == "finished"
            and (details.get("from"), details.get("to")) == (started.get("from"), started.get("to"))
        )

    # ----- effects ---------------------------------------------------------------------

    def _apply(self, event: Event) -> None:
        kind = event.type
        if kind == "vault.initialized":
            self._set_meta("vault_id", str(event.details["vault_id"]))
        elif kind == "policy.loaded":
            self._set_meta("policy_set", str(event.policy_set))
        elif kind in _KEY_OPS:
            self._key_op(event)
        elif kind == "principal.registered":
            self._register(event)
        elif kind in {"principal.updated", "principal.revoked"}:
            self._update_principal(event)
        elif kind == "submission.received":
            self._receive(event)
        elif kind in LIFECYCLE_TRANSITIONS:
            self._transition(event)
        elif kind == "notice.sent":
            self._notice(event)
        elif kind == "access.decided":
            self._access(event)
        elif kind in {"release.failed", "vault.unsealed"}:
            pass  # facts for the auditor (a failed release keeps its permit's recipient row)
        else:  # pragma: no cover - Event's type Literal makes this unreachable
            raise IntegrityError(f"event {event.seq}: unknown type {kind!r}")

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def _key_op(self, event: Event) -> None:
        details = event.details
        if event.type == "key.rotated":
            version, previous = details.get("version"), details.get("previous")
            if not isinstance(previous, int) or version != previous + 1:
                raise IntegrityError(f"event {event.seq}: key.rotated skips a version")
            last = self.meta("key.rotated")
            if last is not None:
                before = json.loads(last)
                same_kek = before.get("kek", "local") == details.get("kek", "local")
                if (
                    same_kek
                    and before.get("version") != previous
                    and not self._migrated_since(before)
                ):
                    raise IntegrityError(
                        f"event {event.seq}: key.rotated from {previous}, but the log is at "
                        f"{before.get('version')}"
                    )
        if event.type == "key.migrated":
            self._set_meta(RETIRED_VERSIONS, "[]")  # another provider: versions of its own
        elif event.type == "key.retired" and isinstance(details.get("version"), int):
            # Every version the log retired (the last event alone names one): a key
            # wrapped under any of them is never unwrapped again.
            self._set_meta(
                RETIRED_VERSIONS, json.dumps(sorted({*self.retired_versions(), details["version"]}))
            )
        self._set_meta(event.type, json.dumps(details, sort_keys=True))

    def retired_versions(self) -> set[int]:
        """The KEK versions the log retired since the last migration.

        A migration brings the KEKs to another provider with versions of its own: the
        retirements before it name the old provider's.
        """
        recorded = self.meta(RETIRED_VERSIONS)
        if recorded is not None:
            return {int(v) for v in json.loads(recorded)}
        # An index projected before the list was kept: its last retirement only.
        last = self.meta("key.retired")
        if last is None or self.meta("key.migrated") is not None:
            return set()
        return {int(json.loads(last)["version"])}

    def _migrated_since(self, rotated: dict[str, Any]) -> bool:
        # A migration round trip may bring the KEKs back to a provider at another version.
        return self.meta("key.migrated") is not None

    def _register(self, event: Event) -> None:
        principal = Principal.model_validate(event.details.get("principal"))
        exists = self._db.execute("SELECT 1 FROM principals WHERE id=?", (principal.id,)).fetchone()
        if exists:
            raise IntegrityError(f"event {event.seq}: principal {principal.id!r} registered twice")
        if principal.status != "active":
            raise IntegrityError(f"event {event.seq}: a principal registered {principal.status}")
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
        elif not changes or not set(changes) <= _CHANGEABLE:
            raise IntegrityError(f"event {event.seq}: principal.updated changes {sorted(changes)}")
        if changes.get("status") == "revoked" and event.type != "principal.revoked":
            raise IntegrityError(f"event {event.seq}: a revocation must be principal.revoked")
        updated = Principal.model_validate({**current.model_dump(mode="json"), **changes})
        self._check_an_admin_remains(event, updated)
        self._db.execute(
            "UPDATE principals SET document=?, status=?, since_seq=? WHERE id=?",
            (updated.model_dump_json(), updated.status, event.seq, target),
        )

    def _check_an_admin_remains(self, event: Event, updated: Principal) -> None:
        if updated.role == "admin" and updated.status == "active":
            return
        others = [
            p
            for p in self.principals()
            if p.id != updated.id and p.role == "admin" and p.status == "active"
        ]
        if not others:
            raise IntegrityError(f"event {event.seq}: {updated.id!r} was the last active admin")

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
                _text(details, "sector"),
                _text(details, "tlp"),
                event.actor,
                _text(details, "submitter_org"),
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
        try:
            target = next_state(
                record.state,
                event.type,
                categorical=event.type == "submission.validated"
                and event.details.get("categorical") is True,
            )
        except IllegalTransitionError as exc:
            raise IntegrityError(f"event {event.seq}: {exc} (record {record.tracking})") from exc
        categorical = event.details.get("categorical", False) is True or record.categorical
        self._db.execute(
            "UPDATE records SET state=?, state_at=?, state_seq=?, categorical=? WHERE tracking=?",
            (target, event.time.isoformat(), event.seq, int(categorical), record.tracking),
        )
        if event.type == "record.decontrolled":
            # 6 CFR 29: a status change is sent to every earlier recipient, in the same act.
            self._owe_notices(event.seq, record.tracking, self.notice_recipients(record.tracking))

    def notice_recipients(self, tracking: str) -> list[str]:
        """Everyone a status change of the record is sent to: each recipient once, in order."""
        seen: list[str] = []
        for row in self.recipients(tracking):
            if row["principal"] not in seen:
                seen.append(row["principal"])
        return seen

    def _notice(self, event: Event) -> None:
        pending = self._expected_notices()
        if pending is None:  # pragma: no cover - refused in _check_vault_event
            raise IntegrityError(f"event {event.seq}: a notice no logged act owed")
        rest = pending["recipients"][1:]
        self._db.execute("DELETE FROM meta WHERE key='notices_owed'")
        self._owe_notices(pending["cause"], pending["record"], rest)

    def _access(self, event: Event) -> None:
        if event.decision != "permit" or event.record is None:
            return
        record = self._require_record(event)
        action = event.action or ""
        if not releasable(action, record.state):
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
        if "notify:program-office" in event.obligations:
            # 6 CFR 29.8(f): a contemporaneous written notice to the program office.
            self._owe_notices(event.seq, record.tracking, ["program-office"])

    def iter_tracking_numbers(self) -> Iterator[str]:
        """Every tracking number, oldest first."""
        for (tracking,) in self._db.execute("SELECT tracking FROM records ORDER BY received_seq"):
            yield str(tracking)

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, in a stable order: for comparing two indexes.

        What the events made, not which tree they were read from: the recorded `root`
        is left out (a projection in memory has none).
        """
        return {
            table: [
                row
                for row in self._db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")  # noqa: S608 -- fixed table names
                if table != "meta" or row[0] != "root"
            ]
            for table in _TABLES
        }


_CHANGEABLE = frozenset(
    {"role", "organisation", "level", "sectors", "training_expires", "nda_signed", "status"}
    | {"contractor"}
)


class IndexWriteError(BackendError):
    """The index could not be written (a full disk, an I/O error): exit 5."""


@contextlib.contextmanager
def _full_is_backend() -> Iterator[None]:
    """The index's disk full or failing is the vault's storage failing: exit 5, not 1.

    Raises:
        IndexWriteError: SQLite could not write (full disk, quota, I/O error).
    """
    try:
        yield
    except sqlite3.OperationalError as exc:
        if str(exc) in {"database or disk is full", "disk I/O error"}:
            raise IndexWriteError(f"the index cannot be written: {exc}") from exc
        raise


def _differences(
    logged: dict[str, list[tuple[Any, ...]]], indexed: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    """What differs between the log's projection and the index, table by table."""
    found: list[str] = []
    for table, rows in logged.items():
        want, have = set(rows), set(indexed.get(table, []))
        if want == have:
            continue
        missing = sorted(want - have, key=repr)
        extra = sorted(have - want, key=repr)
        keys = {str(r[0]) for r in missing} | {str(r[0]) for r in extra}
        shown = ", ".join(sorted(keys)[:3])
        found.append(
            f"{table} differs from the log ({len(missing)} rows missing or changed, "
            f"{len(extra)} not from the log; {shown})"
        )
    return found


def _check_binding(event: Event, request: SignedRequest) -> None:
    """Every parameter that changes state is one the principal signed.

    Raises:
        IntegrityError: the event records another action, record, purpose, use,
            authority or parameter than its signed request.
    """
    body = request.body
    try:
        check_params(body.action, body.params)
    except InputError as exc:
        raise IntegrityError(f"event {event.seq}: {exc}") from None
    for name in ("record", "action", "purpose", "use", "authority"):
        if getattr(event, name) != getattr(body, name):
            raise IntegrityError(f"event {event.seq}: {name} differs from the signed request")
    if event.type == "access.decided":
        if event.decision == "permit" and body.action not in {"retrieve", "review"}:
            raise IntegrityError(
                f"event {event.seq}: a permit of {body.action} logged as an access"
            )
        return
    if event.decision != "permit":
        raise IntegrityError(f"event {event.seq}: {event.type} without a permit")
    _check_params(event, body.action, body.params)


def _check_params(event: Event, action: str, params: dict[str, Any]) -> None:
    seq, kind = event.seq, event.type
    if kind in TRANSITION_ACTIONS:
        if action != TRANSITION_ACTIONS[kind]:
            raise IntegrityError(f"event {seq}: {kind} requested as {action}")
        if event.details != params:
            raise IntegrityError(f"event {seq}: details differ from the signed parameters")
        if action == "reject" and signed_final(params) != (kind == "submission.final-not-pcii"):
            raise IntegrityError(f"event {seq}: {kind} of a finding signed as the other one")
    elif kind == "submission.received":
        if action != "submit" or event.details.get("files") != params.get("files"):
            raise IntegrityError(f"event {seq}: files differ from the signed submission")
    elif kind in _PRINCIPAL_OPS:
        _check_principal_binding(event, action, params)
    elif kind in _KEY_OPS:
        expected: dict[str, Any] = {"op": _KEY_OPS[kind]}
        if kind == "key.retired" or (kind == "key.rotated" and "version" in params):
            # A rotation names the version it makes (one of two at once wins), or, as
            # rotations logged before it did, nothing.
            expected["version"] = event.details.get("version")
        if kind == "key.migrated":
            expected["to"] = event.details.get("to")
        if action != "rotate-keys" or params != expected:
            raise IntegrityError(f"event {seq}: key operation differs from the signed one")
    else:
        raise IntegrityError(f"event {seq}: {kind} is not a principal's act")


def signed_final(params: dict[str, Any]) -> bool:
    """Whether a signed `reject` is the final finding (`submission.final-not-pcii`)."""
    return params.get("final") is True


def _check_principal_binding(event: Event, action: str, params: dict[str, Any]) -> None:
    seq = event.seq
    op = _PRINCIPAL_OPS[event.type]
    if action != "manage-principals" or params.get("op") != op:
        raise IntegrityError(f"event {seq}: {event.type} requested as {action} {params!r}")
    details = event.details
    if op == "register":
        document = details.get("principal", {})
        attributes = PrincipalAttributes.model_validate(params.get("attributes"))
        signed = Principal(
            id=params.get("principal"),
            public_key=params.get("public_key"),
            **attributes.model_dump(),
        ).model_dump(mode="json")
        if document != signed:
            raise IntegrityError(f"event {seq}: registered principal differs from the signed one")
    elif op == "update":
        if params != {
            "op": op,
            "principal": details.get("principal"),
            "changes": details.get("changes"),
        }:
            raise IntegrityError(f"event {seq}: principal changes differ from the signed ones")
    elif params != {"op": op, "principal": details.get("principal")}:
        raise IntegrityError(f"event {seq}: revoked principal differs from the signed one")


def _as_integrity_error(event: Event, exc: BaseException) -> IntegrityError:
    if isinstance(exc, IntegrityError):
        return exc
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return IntegrityError(f"event {event.seq}: malformed {event.type} ({first})")


def _is_sha256_hex(value: str | None) -> bool:
    return value is not None and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _text(details: dict[str, Any], key: str) -> str:
    value = details[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not text")
    return value


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
