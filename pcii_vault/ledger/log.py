"""The access log on an object store: lock-free "claim, then commit" appends, and reads.

Layout under ``log/`` (C2SP tlog-tiles plus two private prefixes):
- ``log/checkpoint``: the latest signed checkpoint, replaced only by compare-and-swap;
- ``log/checkpoints/<size, 20 digits>``: every checkpoint ever installed (history);
- ``log/claims/<first index, 20 digits>``: batches claimed but not yet committed;
- ``log/tile/...``: hash tiles and entry bundles (see `tiles`).

Appending. A writer *claims* positions by creating one immutable claim object with
put_if_absent at the first free position after the checkpoint; the store decides who owns
a position, a loser reads the winner's claim and tries after it. After creating its claim
at p the writer re-reads the checkpoint: if the size is already past p, either its claim
was committed meanwhile (its entries are in the tree: done) or it landed on a slot that
was committed and cleaned before it arrived (the entries differ: delete and claim again).
Then any writer *commits*: it walks the chain of claims from the checkpoint size, checks
that the checkpoint did not move while it read them (same etag), derives the tiles
(deterministic bytes), writes them with put_if_absent, signs the checkpoint and installs
it with put_if_match on the etag it read. It then copies the checkpoint into the history
and deletes the claims below the new size. A writer whose commit loses the race re-reads
and retries until a checkpoint covers its entries.

History is written *after* the install: a history entry is never a checkpoint that lost
its race. A crash between install and history write is repaired by the next commit, which
first copies the installed checkpoint into the history; so the history holds every
installed checkpoint, the latest one possibly only in ``log/checkpoint``.

Invariants:
- no fork: a checkpoint is installed only by CAS over the one it extends, and its tree
  extends that checkpoint's tree (the new tiles are built on its partial tiles);
- no lost event: a claim is deleted only once a checkpoint covering it is installed, and
  every commit walks all claims from the checkpoint, including crashed writers' claims;
- no tile is ever rewritten with different bytes: tiles are put_if_absent, an existing
  tile with other bytes raises `IntegrityError` (a fork alarm), never an overwrite;
- progress after a crash: a claim or a half-written commit left by a dead writer is
  committed by the next append, whose tiles match the ones already written;
- `append` returns only when a verified checkpoint covering its events is installed.
"""

from __future__ import annotations

import hmac
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from pcii_vault.crypto.signing import Ed25519PublicKey, Signer
from pcii_vault.errors import (
    BackendError,
    InputError,
    IntegrityError,
    NotFoundError,
    ObjectExistsError,
    PreconditionFailedError,
    VaultError,
)
from pcii_vault.ledger import tiles as _tiles
from pcii_vault.ledger.anchor import CheckpointAnchor
from pcii_vault.ledger.note import Checkpoint, NoteVerifier, parse_checkpoint
from pcii_vault.ledger.tree import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_hash,
)
from pcii_vault.ledger.verified import VerifiedTiles
from pcii_vault.models.event import Event
from pcii_vault.store.base import ObjectStore, ObjectTooLargeError, remove_planted_under

__all__ = [
    "CHECKPOINT_KEY",
    "CLAIM_PREFIX",
    "HISTORY_PREFIX",
    "AppendResult",
    "Builder",
    "Ledger",
    "LogForkedError",
    "LogRolledBackError",
    "claim_key",
    "decode_claim",
    "encode_claim",
    "history_key",
]

_log = structlog.get_logger(__name__)

CHECKPOINT_KEY = "log/checkpoint"
HISTORY_PREFIX = "log/checkpoints/"
CLAIM_PREFIX = "log/claims/"
_CLAIM_MAGIC = b"pcii-claim/2\n"
_SIGNATURE_BYTES = 64
_MAX_COMMIT_ENTRIES = 65536
_MAX_ATTEMPTS = 10000


def claim_key(index: int) -> str:
    """Object key of the claim starting at `index`."""
    return f"{CLAIM_PREFIX}{index:020d}"


def history_key(size: int) -> str:
    """Object key of the historic checkpoint of `size`."""
    return f"{HISTORY_PREFIX}{size:020d}"


def _claim_message(index: int, body: bytes) -> bytes:
    # Domain-separated from checkpoint notes (which start with the origin line) and bound
    # to the claimed position, so a claim cannot be moved to another slot.
    return _CLAIM_MAGIC + index.to_bytes(8, "big") + body


def encode_claim(entries: Sequence[bytes], index: int, signer: Signer) -> bytes:
    """A claim object: magic line, the log key's signature, entry count, entry bundle.

    The signature covers the magic, the claimed position and the body: only a holder of
    the log signing key can claim positions, so nobody with mere write access to the
    store can plant an event that the next append would sign into the log.
    """
    body = len(entries).to_bytes(4, "big") + _tiles.encode_bundle(entries)
    return _CLAIM_MAGIC + signer.sign(_claim_message(index, body)) + body


def decode_claim(
    data: bytes, index: int, verifier: Ed25519PublicKey, key: str = "claim"
) -> list[bytes]:
    """Decode a claim object strictly, after checking the log key signed it for `index`.

    Raises:
        IntegrityError: not a claim, not signed by the log key for this position, or
            truncated / trailing bytes.
    """
    head = len(_CLAIM_MAGIC) + _SIGNATURE_BYTES
    if not data.startswith(_CLAIM_MAGIC) or len(data) < head + 4:
        raise IntegrityError(f"{key} is not a claim object")
    signature, body = data[len(_CLAIM_MAGIC) : head], data[head:]
    try:
        verifier.verify(_claim_message(index, body), signature)
    except IntegrityError as exc:
        raise IntegrityError(f"{key} is not signed by the log key: a forged claim") from exc
    count = int.from_bytes(body[:4], "big")
    if count == 0:
        raise IntegrityError(f"{key} claims no entries")
    return _tiles.decode_bundle(body[4:], count, key)


# build(first free position, entries before it that the caller has not seen) -> drafts
Builder = Callable[[int, Sequence[bytes]], Sequence[Event]]


@dataclass(frozen=True)
class AppendResult:
    """What `Ledger.append` returns: where the events landed and the covering checkpoint."""

    indices: tuple[int, ...]
    events: tuple[Event, ...]
    checkpoint: Checkpoint
    _ledger: Ledger = field(repr=False, compare=False)
    # The entries' bytes, as checked at `indices` in the tree `checkpoint` signs.
    entries: tuple[bytes, ...] = field(default=(), repr=False, compare=False)

    @property
    def size(self) -> int:
        """Size of the covering checkpoint."""
        return self.checkpoint.size

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The inclusion proof of `index` in the covering checkpoint."""
        return self._ledger.inclusion_proof(index, self.checkpoint.size)


class LogRolledBackError(IntegrityError):
    """The log holds fewer events than its caller has already seen: a rollback."""

    def __init__(self, seen: int, size: int) -> None:
        super().__init__(f"the caller has seen {seen} events but the log holds {size}: rollback")
        self.seen = seen
        self.size = size


class LogForkedError(IntegrityError):
    """The log's first events differ from the ones its caller has already seen: a fork."""

    def __init__(self, seen: int) -> None:
        super().__init__(f"the log's first {seen} events are not the ones the caller has seen")
        self.seen = seen


class Ledger:
    """Appends to and reads the log stored under ``log/`` of `store`.

    The appender holds the signing key; readers need only the public key.
    """

    def __init__(
        self,
        store: ObjectStore,
        origin: str,
        signer: Signer | None,
        verifier: Ed25519PublicKey,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        anchor: CheckpointAnchor | None = None,
    ) -> None:
        if signer is not None and signer.public_key != verifier:
            raise ValueError("the signing key does not match the verifier key")
        self.store = store
        self.origin = origin
        self._signer = signer
        self.verifier = NoteVerifier(origin, verifier)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 -- retry jitter, not security
        self._sleep = sleep
        self._anchor = anchor
        # Checkpoints already proved against the anchor by this process, and the last
        # tree whose tiles were authenticated (reused while the log does not move).
        self._trusted: set[tuple[int, bytes]] = set()
        self._history_seen: set[tuple[int, bytes]] = set()
        self._verified: VerifiedTiles | None = None
        self._edge_checked: Checkpoint | None = None
        # The last checkpoint note parsed, by its exact bytes (parsing is pure: the same
        # bytes verify and parse the same way every time; other bytes are parsed anew).
        self._parsed: tuple[bytes, Checkpoint] | None = None

    # ----- reading ------------------------------------------------------------------

    def key_string(self) -> str:
        """The log's signed-note verifier key ``<origin>+<key id>+<base64 key>``."""
        return self.verifier.key_string()

    def _read_checkpoint(self) -> tuple[Checkpoint | None, str | None]:
        # The anchor before the store: other processes of this vault write the store's
        # checkpoint first and the anchor after, so what the store holds now is never
        # older than the anchor read before it (read after, it could be, with no rollback).
        anchored = self._anchor.load(self.verifier) if self._anchor is not None else None
        try:
            data, etag = self.store.get_with_etag(CHECKPOINT_KEY)
        except NotFoundError:
            self._trust(None, anchored)
            return None, None
        parsed = self._parsed
        if parsed is not None and parsed[0] == data:
            cp = parsed[1]
        else:
            try:
                cp = parse_checkpoint(data, self.verifier, self.origin)
            except IntegrityError as exc:
                raise IntegrityError(f"{CHECKPOINT_KEY}: {exc}") from exc
            self._parsed = (data, cp)
        self._trust(cp, anchored)
        return cp, etag

    def verified(self, checkpoint: Checkpoint) -> VerifiedTiles:
        """The tiles of `checkpoint`'s tree, authenticated against its signed root.

        Raises:
            IntegrityError: the stored tiles do not reproduce the signed root.
        """
        cached = self._verified
        if cached is not None and cached.checkpoint == checkpoint:
            return cached
        self._verified = VerifiedTiles(self.store, checkpoint)
        return self._verified

    def root_at(self, size: int, checkpoint: Checkpoint) -> bytes:
        """The root of the tree of the first `size` entries, authenticated by `checkpoint`.

        Raises:
            ValueError: `size` is past the checkpoint.
            IntegrityError: the stored tiles do not belong to the signed tree.
        """
        if size == checkpoint.size:
            return checkpoint.root
        if not 0 <= size < checkpoint.size:
            raise ValueError(f"no tree of {size} entries in the log of {checkpoint.size}")
        return range_hash(self.verified(checkpoint), 0, size) if size else EMPTY_ROOT

    def check_edge(self) -> Checkpoint | None:
        """Read the latest checkpoint and prove the newest part of its tree, afresh.

        The right-edge tiles must reproduce the signed root and the entries of the
        partial bundle must be the signed ones: a rewritten recent entry is found by any
        command, not only by the next append or a full audit.

        Raises:
            IntegrityError: rollback, fork, or a tampered recent tile or entry.
        """
        cp = self.checkpoint()
        if cp is not None and cp.size and cp != self._edge_checked:
            # Once per checkpoint per ledger object: a long-lived process re-proves the
            # edge when the log moves (and every append checks before extending anyway).
            tiles = VerifiedTiles(self.store, cp)
            self._verified = tiles
            last = (cp.size - 1) // _tiles.TILE_WIDTH
            tiles.bundle(last)
            self._edge_checked = cp
        return cp

    def _trust(self, cp: Checkpoint | None, anchored: Checkpoint | None) -> None:
        """Hold a checkpoint read from the store against the vault's anchor (read first).

        Reject rollback: the log never shrinks below what this vault signed or verified.
        Reject fork: a larger tree must contain the anchored one. Report a vanished
        checkpoint: the anchored one must still be in the store's history.

        Raises:
            IntegrityError: rollback, fork, or a vanished historic checkpoint.
        """
        if self._anchor is None:
            return
        if (
            cp is not None
            and (cp.size, cp.root) in self._trusted
            and (anchored is None or cp.size >= anchored.size)
        ):
            # Proved before, and not older than the anchor: an older checkpoint this
            # process once trusted, put back, is still a rollback.
            return
        if anchored is not None:
            if cp is None:
                raise IntegrityError(
                    f"{CHECKPOINT_KEY} is missing but this vault signed a checkpoint of "
                    f"size {anchored.size}: the log was deleted or rolled back"
                )
            if cp.size < anchored.size:
                raise IntegrityError(
                    f"rollback: {CHECKPOINT_KEY} has size {cp.size}, smaller than the "
                    f"checkpoint of size {anchored.size} this vault signed or verified"
                )
            if cp.size == anchored.size:
                if cp.root != anchored.root:
                    raise IntegrityError(
                        f"fork: {CHECKPOINT_KEY} of size {cp.size} has another root than "
                        "the checkpoint this vault signed"
                    )
            elif range_hash(self.verified(cp), 0, anchored.size) != anchored.root:
                raise IntegrityError(
                    f"fork: {CHECKPOINT_KEY} of size {cp.size} does not contain the tree of "
                    f"size {anchored.size} this vault signed"
                )
            self._check_in_history(anchored)
        if cp is None:
            return
        self._trusted.add((cp.size, cp.root))
        # Move the anchor only to a checkpoint that is recorded in the history, so a
        # checkpoint the anchor names and the history lacks was removed by someone.
        if cp.size and self._in_history(cp):
            self._anchor.advance(cp, self.verifier)

    def _remember(self, cp: Checkpoint) -> None:
        """Anchor a checkpoint this ledger just installed and recorded in the history."""
        self._trusted.add((cp.size, cp.root))
        self._history_seen.add((cp.size, cp.root))
        if self._anchor is not None:
            self._anchor.advance(cp, self.verifier)

    def _in_history(self, cp: Checkpoint) -> bool:
        if (cp.size, cp.root) in self._history_seen:
            return True
        try:
            stored = parse_checkpoint(
                self.store.get(history_key(cp.size)), self.verifier, self.origin
            )
        except NotFoundError:
            return False
        except IntegrityError as exc:
            raise IntegrityError(f"{history_key(cp.size)}: {exc}") from exc
        if stored.size != cp.size:
            return False  # another size's checkpoint copied here: not this one's record
        if stored.root != cp.root:
            raise IntegrityError(
                f"fork: {history_key(cp.size)} has another root than {CHECKPOINT_KEY}"
            )
        self._history_seen.add((cp.size, cp.root))
        return True

    def _check_in_history(self, anchored: Checkpoint) -> None:
        if anchored.size and not self._in_history(anchored):
            raise IntegrityError(
                f"the checkpoint of size {anchored.size} that this vault signed has vanished "
                f"from {HISTORY_PREFIX}: the log's history was altered"
            )

    def checkpoint(self) -> Checkpoint | None:
        """The latest checkpoint, signature verified (None for an empty log).

        Raises:
            IntegrityError: the checkpoint is malformed or not signed by the log key.
            BackendError: the store is unavailable.
        """
        return self._read_checkpoint()[0]

    def size(self) -> int:
        """Number of committed entries (verified checkpoint size)."""
        cp = self.checkpoint()
        return cp.size if cp else 0

    def hash_source(self, size: int) -> _tiles.TileHashSource:
        """A tile-backed `HashSource` for the tree of `size` leaves."""
        return _tiles.TileHashSource(self.store, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of `index` in the tree of `size` leaves."""
        return inclusion_proof(self.hash_source(size), index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 9162 consistency proof from `old_size` to `new_size`."""
        return consistency_proof(self.hash_source(new_size), old_size, new_size)

    def entries(self, start: int, end: int, size: int | None = None) -> Iterator[bytes]:
        """Yield committed entries [start, end), authenticated against the signed root.

        Streams one bundle at a time. Every entry is bound to the latest checkpoint's
        root (never to hash tiles alone); `end` must not exceed `size` (default: the
        latest checkpoint's size), and `size` not the latest checkpoint's.

        Raises:
            IntegrityError: the tiles do not reproduce the signed root, or a bundle is
                malformed or holds other entries than the signed tree.
        """
        cp = self.checkpoint()
        latest = cp.size if cp else 0
        if size is None:
            size = latest
        if not 0 <= start <= end <= size <= latest:
            raise ValueError(f"entry range {start}..{end} is not within the log's {latest}")
        if cp is None or start == end:
            return
        yield from self.verified(cp).entries(start, end)

    def events(self, start: int, end: int, size: int | None = None) -> Iterator[Event]:
        """Yield committed events [start, end), parsed and sequence-checked.

        Raises:
            IntegrityError: an entry is not a known event or its seq is not its index.
        """
        for offset, entry in enumerate(self.entries(start, end, size)):
            yield parse_event(entry, start + offset)

    # ----- appending ----------------------------------------------------------------

    def append(self, drafts: Sequence[Event]) -> AppendResult:
        """Append events; return once a checkpoint covering them is installed.

        Each draft's `seq` is replaced by the index it lands at. The events are not
        checked against the log before them: callers whose events must be legal at their
        position use `append_at`.

        Raises:
            InputError: no events, or an entry larger than 65,535 bytes.
            IntegrityError: the log is inconsistent (a fork alarm) or signed by another key.
            BackendError: the store is unavailable.
            ValueError: this ledger has no signing key.
        """
        if not drafts:
            raise InputError("nothing to append")
        return self.append_at(lambda _pos, _before: drafts, known_size=None)

    def append_at(
        self, build: Builder, known_size: int | None, known_root: bytes | None = None
    ) -> AppendResult:
        """Append the events `build` makes for the position they will get.

        `build(position, before)` is called with the first free position and the
        entries between `known_size` (what the caller's state already holds) and that
        position: committed ones, authenticated against the signed root, and claimed
        ones not yet committed, in log order. It returns the drafts to append, decided
        against exactly that state, or raises to abort (nothing is claimed then). When
        another writer takes the position first, `build` is called again with the
        winner's entries added: an act is always checked at the position it gets.
        `known_root`, the root of the tree of `known_size` leaves the caller's state was
        built from, must be the log's own.

        Raises:
            InputError: `build` made no events, or an entry is too large.
            IntegrityError: the log is inconsistent, `known_size` is past the log
                (`LogRolledBackError`), or its first `known_size` entries are not the
                ones of `known_root` (`LogForkedError`).
            BackendError: the store is unavailable.
            ValueError: this ledger has no signing key.
        """
        if self._signer is None:
            raise ValueError("this ledger is read-only (no signing key)")
        written: list[int] = []  # positions whose claim this call wrote
        try:
            pos, events, entries = self._claim(build, known_size, known_root, written)
        except VaultError as exc:
            if not written:
                exc.handed_to_log = False  # nothing claimed: nothing of it can be committed
            raise
        end = pos + len(entries)
        checkpoint = self._commit_until(end)
        self._check_included(pos, entries, checkpoint)
        return AppendResult(
            tuple(range(pos, end)), tuple(events), checkpoint, self, entries=tuple(entries)
        )

    def commit_claimed(self) -> Checkpoint | None:
        """Commit the claims waiting past the checkpoint; the new checkpoint, or None.

        Their writer died before it committed them (the next append would commit them).

        Raises:
            IntegrityError: the log is inconsistent.
            BackendError: the store is unavailable.
            ValueError: this ledger has no signing key.
        """
        self._signer_key()
        cp, _ = self._read_checkpoint()
        size = cp.size if cp else 0
        try:
            self.store.head(claim_key(size))
        except NotFoundError:
            return None
        return self._commit_until(size + 1)

    def _assign(self, drafts: Sequence[Event], pos: int) -> tuple[list[Event], list[bytes]]:
        if not drafts:
            raise InputError("nothing to append")
        events = [d.model_copy(update={"seq": pos + i}) for i, d in enumerate(drafts)]
        entries = [e.entry_bytes() for e in events]
        for i, entry in enumerate(entries):
            if len(entry) > _tiles.MAX_ENTRY_BYTES:
                raise InputError(f"event {i} is {len(entry)} bytes; log entries are < 65536")
        return events, entries

    def _before(
        self,
        known_size: int | None,
        cp: Checkpoint | None,
        pending: Sequence[bytes],
        known_root: bytes | None = None,
    ) -> list[bytes]:
        """Entries from `known_size` to the first free position: committed, then claimed."""
        if known_size is None:
            return []
        size = cp.size if cp else 0
        if known_size > size:
            raise LogRolledBackError(known_size, size)
        if (
            known_root is not None
            and cp is not None
            and known_size
            and not hmac.compare_digest(self.root_at(known_size, cp), known_root)
        ):
            raise LogForkedError(known_size)
        committed = list(self.verified(cp).entries(known_size, size)) if cp else []
        return committed + list(pending)

    def _claim(
        self,
        build: Builder,
        known_size: int | None,
        known_root: bytes | None,
        written: list[int],
    ) -> tuple[int, list[Event], list[bytes]]:
        cp, _ = self._read_checkpoint()
        pos = cp.size if cp else 0
        pending: list[bytes] = []  # entries of other writers' claims in [checkpoint, pos)
        for attempt in range(_MAX_ATTEMPTS):
            before = self._before(known_size, cp, pending, known_root)
            events, entries = self._assign(build(pos, before), pos)
            try:
                self.store.put_if_absent(
                    claim_key(pos), encode_claim(entries, pos, self._signer_key())
                )
                written.append(pos)
            except IntegrityError:
                # A symlink planted at the claim's key (out of the store): removed, never
                # followed; anything else the store refuses stops the append.
                if self._unshadow(claim_key(pos)):
                    continue
                raise
            except ObjectExistsError:
                try:
                    other = self.store.get(claim_key(pos))
                except ObjectTooLargeError:
                    # Larger than any claim: forged, squatting on the position.
                    self._drop_forged_claim(pos)
                    continue
                except NotFoundError:
                    if self._unshadow(claim_key(pos)):
                        continue  # objects planted under the claim's key: removed
                    # Committed and cleaned while we looked: start again from the checkpoint.
                    self._backoff(attempt)
                    cp, _ = self._read_checkpoint()
                    pos, pending = (cp.size if cp else 0), []
                    continue
                try:
                    batch = self._decode_claim(other, pos)
                except IntegrityError:
                    # A forged claim squats on the position: remove it and take the slot.
                    self._drop_forged_claim(pos)
                    continue
                # Build on a claim only if its slot was not yet committed after it was
                # read: then it is the claim that will be committed there. Otherwise it
                # may be stale (made on an old view over a slot committed and cleaned
                # meanwhile; its writer withdraws it): the committed entries count.
                latest, _ = self._read_checkpoint()
                if latest is not None and latest.size > pos:
                    cp, pos, pending = latest, latest.size, []
                    continue
                pending.extend(batch)
                pos += len(batch)
                continue
            latest, _ = self._read_checkpoint()
            size = latest.size if latest else 0
            if size <= pos:
                return pos, events, entries
            # The checkpoint is past our claim: either someone committed it already (our
            # entries are in the tree) or the slot was committed and cleaned before we
            # arrived (other entries there): then ours is a stale claim; drop it, retry.
            if (
                latest is not None
                and size >= pos + len(entries)
                and self._holds(pos, entries, latest)
            ):
                return pos, events, entries
            self.store.delete(claim_key(pos))
            cp, pos, pending = latest, size, []
            self._backoff(attempt)
        raise BackendError("could not claim a log position: too much contention")

    def _holds(self, pos: int, entries: Sequence[bytes], cp: Checkpoint) -> bool:
        tiles = self.verified(cp)
        return all(tiles.leaf(pos + i) == leaf_hash(e) for i, e in enumerate(entries))

    def _check_included(self, pos: int, entries: Sequence[bytes], cp: Checkpoint) -> None:
        if not self._holds(pos, entries, cp):
            raise IntegrityError(f"log positions {pos}.. hold other entries than claimed")

    def _backoff(self, attempt: int) -> None:
        if attempt:
            self._sleep(self._rng.uniform(0, min(0.05, 0.001 * (2 ** min(attempt, 6)))))

    def _commit_until(self, end: int) -> Checkpoint:
        for attempt in range(_MAX_ATTEMPTS):
            cp, etag = self._read_checkpoint()
            size = cp.size if cp else 0
            if cp is not None and size >= end:
                return cp
            if cp is not None:
                self._record_history(cp)
            chain: list[bytes] = []
            claimed: list[int] = []
            pos = size
            while len(chain) < _MAX_COMMIT_ENTRIES:
                try:
                    data = self.store.get(claim_key(pos))
                except NotFoundError:
                    break
                except ObjectTooLargeError:
                    # Larger than any claim: never the log key's. Drop it, end the chain.
                    self._drop_forged_claim(pos)
                    break
                try:
                    batch = self._decode_claim(data, pos)
                except IntegrityError:
                    # Never sign what the log key did not claim: drop it, end the chain here.
                    self._drop_forged_claim(pos)
                    break
                claimed.append(pos)
                chain.extend(batch)
                pos += len(batch)
            # The claims just read belong to this checkpoint only if it did not move
            # while we read them (claims below a newer checkpoint may be stale).
            if self._current_etag() != etag:
                self._backoff(attempt)
                continue
            if not chain:
                raise IntegrityError(
                    f"log claims from {size} are missing before {end}: a claim was lost"
                )
            new = self._commit(cp, etag, chain)
            if new is None:
                self._backoff(attempt)
                continue
            self._record_history(new)
            self._remember(new)
            self._clean_claims(new.size, claimed)
            if new.size >= end:
                return new
        raise BackendError("could not commit to the log: too much contention")

    def _signer_key(self) -> Signer:
        if self._signer is None:
            raise ValueError("this ledger is read-only (no signing key)")
        return self._signer

    def _decode_claim(self, data: bytes, pos: int) -> list[bytes]:
        return decode_claim(data, pos, self.verifier.public_key, claim_key(pos))

    def _drop_forged_claim(self, pos: int) -> None:
        _log.warning("forged_log_claim_removed", key=claim_key(pos))
        self.store.delete(claim_key(pos))

    def _current_etag(self) -> str | None:
        try:
            return self.store.head(CHECKPOINT_KEY).etag
        except NotFoundError:
            return None

    def _commit(
        self, cp: Checkpoint | None, etag: str | None, chain: Sequence[bytes]
    ) -> Checkpoint | None:
        assert self._signer is not None  # noqa: S101 -- checked in append()
        old = cp.size if cp else 0
        # Check before extending: build only on tiles proved to reproduce the root of
        # the checkpoint being extended, never on hash tiles alone (a forged partial
        # bundle with recomputed tiles would otherwise be signed into the log).
        verified = self.verified(cp) if cp is not None else None
        new_tiles = _tiles.build_tiles(old, chain, _extend_reader(verified))
        for key, data in new_tiles.items():
            self._put_tile(key, data)
        new_size = old + len(chain)
        overlay = {**(verified.edge_bytes() if verified else {}), **new_tiles}
        source = _tiles.TileHashSource(self.store, new_size, overlay=overlay)
        root = range_hash(source, 0, new_size) if new_size else EMPTY_ROOT
        new = Checkpoint.sign(self.origin, new_size, root, self._signer)
        try:
            self.store.put_if_match(CHECKPOINT_KEY, new.note.encode("utf-8"), etag)
        except PreconditionFailedError:
            return None
        return new

    def _put_tile(self, key: str, data: bytes) -> None:
        """Write a tile of the tree being committed; replace junk found at its key.

        The tiles a commit writes lie beyond the checkpoint it extends, so no signed
        tree contains them yet, and every honest writer derives the same bytes for a
        key. Other bytes there are junk (planted, or a crashed forger's): trusting them
        would fork the log and refusing would wedge every append, so they are reported
        and replaced.
        """
        found = self._put_or_read(key, data)
        if found is None or found[0] == data:
            return
        _log.warning("junk_log_tile_replaced", key=key)
        self.store.put_if_match(key, data, found[1])

    def _put_or_read(self, key: str, data: bytes) -> tuple[bytes, str] | None:
        """Create `key`, or return what is there and its etag (None: it was created).

        Objects planted under the key (which make it exist yet hold nothing) are removed
        and the key written.
        """
        try:
            self.store.put_if_absent(key, data)
        except IntegrityError:
            # A symlink planted at the key (out of the store): removed, never followed.
            if not self._unshadow(key):
                raise
            self.store.put_if_absent(key, data)
        except ObjectExistsError:
            try:
                return self.store.get_with_etag(key)
            except NotFoundError:
                self._unshadow(key)
                self.store.put_if_absent(key, data)
            except ObjectTooLargeError:
                # Larger than any log object: junk (no honest writer's), removed unread
                # rather than read into memory; an honest writer racing writes `data`.
                _log.warning("junk_log_object_removed", key=key)
                self.store.delete(key)
                try:
                    self.store.put_if_absent(key, data)
                except ObjectExistsError:
                    return self.store.get_with_etag(key)
        return None

    def _record_history(self, cp: Checkpoint) -> None:
        key = history_key(cp.size)
        note = cp.note.encode("utf-8")
        found = self._put_or_read(key, note)
        if found is None or found[0] == note:
            return
        existing, etag = found
        try:
            other = parse_checkpoint(existing, self.verifier, self.origin)
        except IntegrityError:
            other = None
        if other is None or other.size != cp.size:
            # Not signed by the log key, or a signed checkpoint of another size copied here
            # (it cannot be the checkpoint of this size): junk that must not wedge the
            # history.
            _log.warning("junk_history_checkpoint_replaced", key=key)
            self.store.put_if_match(key, note, etag)
            return
        if other.root != cp.root:
            raise IntegrityError(f"fork alarm: {key} holds another signed checkpoint")

    def _unshadow(self, key: str) -> bool:
        """Remove objects planted under `key`/ (no log object has any); whether any were.

        Every append would stop on them (`remove_planted_under`). No honest writer puts
        anything there.
        """
        planted = remove_planted_under(self.store, key)
        for found in planted:
            _log.warning("junk_under_log_key_removed", key=found)
        return bool(planted)

    def _clean_claims(self, size: int, committed: Sequence[int]) -> None:
        """Remove the claims just committed, and stale ones below `size`: housekeeping.

        Their events are committed: a failure here (the store failing, junk planted
        among the claims) must not fail the acts, whose requesters would then take a
        logged act for one that did not happen. A claim below the checkpoint is never
        read again; junk is named by `pcii audit verify` and `pcii maintenance`.
        """
        try:
            for pos in committed:
                self.store.delete(claim_key(pos))
            # Stale claims (a writer that died between claiming a cleaned slot and noticing).
            for info in self.store.list(CLAIM_PREFIX):
                name = info.key[len(CLAIM_PREFIX) :]
                if name.isdigit() and int(name) < size:
                    self.store.delete(info.key)
        except VaultError as exc:
            _log.warning("log_claims_not_removed", size=size, reason=str(exc))


def parse_event(entry: bytes, index: int) -> Event:
    """Parse one log entry as an `Event` whose seq must be `index`.

    Raises:
        IntegrityError: not a known event type/version, or seq differs from the index.
    """
    try:
        event = Event.model_validate_json(entry)
    except ValueError as exc:
        raise IntegrityError(f"log entry {index} is not a known event") from exc
    if event.seq != index:
        raise IntegrityError(f"log entry {index} carries seq {event.seq}")
    return event


def _extend_reader(verified: VerifiedTiles | None) -> Callable[[str], bytes]:
    """The reader `build_tiles` uses: authenticated right-edge objects only."""

    def read(key: str) -> bytes:
        if verified is None:
            raise ValueError(f"an empty log has no {key}")
        return verified.read_for_extend(key)

    return read
