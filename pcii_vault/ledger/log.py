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
)
from pcii_vault.ledger import tiles as _tiles
from pcii_vault.ledger.note import Checkpoint, NoteVerifier, parse_checkpoint
from pcii_vault.ledger.tree import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_hash,
)
from pcii_vault.models.event import Event
from pcii_vault.store.base import ObjectStore

__all__ = [
    "CHECKPOINT_KEY",
    "CLAIM_PREFIX",
    "HISTORY_PREFIX",
    "AppendResult",
    "Ledger",
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


@dataclass(frozen=True)
class AppendResult:
    """What `Ledger.append` returns: where the events landed and the covering checkpoint."""

    indices: tuple[int, ...]
    events: tuple[Event, ...]
    checkpoint: Checkpoint
    _ledger: Ledger = field(repr=False, compare=False)

    @property
    def size(self) -> int:
        """Size of the covering checkpoint."""
        return self.checkpoint.size

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The inclusion proof of `index` in the covering checkpoint."""
        return self._ledger.inclusion_proof(index, self.checkpoint.size)


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

    # ----- reading ------------------------------------------------------------------

    def key_string(self) -> str:
        """The log's signed-note verifier key ``<origin>+<key id>+<base64 key>``."""
        return self.verifier.key_string()

    def _read_checkpoint(self) -> tuple[Checkpoint | None, str | None]:
        try:
            data, etag = self.store.get_with_etag(CHECKPOINT_KEY)
        except NotFoundError:
            return None, None
        return parse_checkpoint(data, self.verifier, self.origin), etag

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
        """Yield committed entries [start, end), checked against the level-0 tiles.

        Streams one bundle at a time. `size` is the tree size whose tiles are read
        (default: the latest checkpoint's); `end` must not exceed it.

        Raises:
            IntegrityError: a bundle is malformed or does not hash to its tile.
        """
        if size is None:
            size = self.size()
        if not 0 <= start <= end <= size:
            raise ValueError(f"entry range {start}..{end} is not within the log's {size}")
        n = start // _tiles.TILE_WIDTH
        while n * _tiles.TILE_WIDTH < end:
            width = _tiles.tile_width_at(size, 0, n)
            if width == 0:
                break
            bundle = _read_object(self.store, _tiles.bundle_key(n, width))
            entries = _tiles.decode_bundle(bundle, width, _tiles.bundle_key(n, width))
            hashes = _read_object(self.store, _tiles.hash_tile_key(0, n, width))
            if b"".join(leaf_hash(e) for e in entries) != hashes:
                raise IntegrityError(f"entry bundle {n} does not match its hash tile")
            base = n * _tiles.TILE_WIDTH
            for i, entry in enumerate(entries):
                if start <= base + i < end:
                    yield entry
            n += 1

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

        Each draft's `seq` is replaced by the index it lands at.

        Raises:
            InputError: no events, or an entry larger than 65,535 bytes.
            IntegrityError: the log is inconsistent (a fork alarm) or signed by another key.
            BackendError: the store is unavailable.
            ValueError: this ledger has no signing key.
        """
        if self._signer is None:
            raise ValueError("this ledger is read-only (no signing key)")
        if not drafts:
            raise InputError("nothing to append")
        pos, events, entries = self._claim(drafts)
        end = pos + len(entries)
        checkpoint = self._commit_until(end)
        self._check_included(pos, entries, checkpoint.size)
        return AppendResult(tuple(range(pos, end)), tuple(events), checkpoint, self)

    def _assign(self, drafts: Sequence[Event], pos: int) -> tuple[list[Event], list[bytes]]:
        events = [d.model_copy(update={"seq": pos + i}) for i, d in enumerate(drafts)]
        entries = [e.entry_bytes() for e in events]
        for i, entry in enumerate(entries):
            if len(entry) > _tiles.MAX_ENTRY_BYTES:
                raise InputError(f"event {i} is {len(entry)} bytes; log entries are < 65536")
        return events, entries

    def _claim(self, drafts: Sequence[Event]) -> tuple[int, list[Event], list[bytes]]:
        cp, _ = self._read_checkpoint()
        pos = cp.size if cp else 0
        for attempt in range(_MAX_ATTEMPTS):
            events, entries = self._assign(drafts, pos)
            try:
                self.store.put_if_absent(
                    claim_key(pos), encode_claim(entries, pos, self._signer_key())
                )
            except ObjectExistsError:
                try:
                    other = self.store.get(claim_key(pos))
                except NotFoundError:
                    # Committed and cleaned while we looked: start again from the checkpoint.
                    cp, _ = self._read_checkpoint()
                    pos = max(pos, cp.size if cp else 0)
                    continue
                try:
                    pos += len(self._decode_claim(other, pos))
                except IntegrityError:
                    # A forged claim squats on the position: remove it and take the slot.
                    self._drop_forged_claim(pos)
                continue
            cp, _ = self._read_checkpoint()
            size = cp.size if cp else 0
            if size <= pos:
                return pos, events, entries
            # The checkpoint is past our claim: either someone committed it already (our
            # entries are in the tree) or the slot was committed and cleaned before we
            # arrived (other entries there): then ours is a stale claim; drop it, retry.
            if size >= pos + len(entries) and self._holds(pos, entries, size):
                return pos, events, entries
            self.store.delete(claim_key(pos))
            pos = size
            self._backoff(attempt)
        raise BackendError("could not claim a log position: too much contention")

    def _holds(self, pos: int, entries: Sequence[bytes], size: int) -> bool:
        source = self.hash_source(size)
        return all(source.node(0, pos + i) == leaf_hash(e) for i, e in enumerate(entries))

    def _check_included(self, pos: int, entries: Sequence[bytes], size: int) -> None:
        if not self._holds(pos, entries, size):
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
        new_tiles = _tiles.build_tiles(old, chain, lambda key: _read_object(self.store, key))
        for key, data in new_tiles.items():
            _put_immutable(self.store, key, data)
        new_size = old + len(chain)
        source = _tiles.TileHashSource(self.store, new_size, overlay=new_tiles)
        root = range_hash(source, 0, new_size) if new_size else EMPTY_ROOT
        new = Checkpoint.sign(self.origin, new_size, root, self._signer)
        try:
            self.store.put_if_match(CHECKPOINT_KEY, new.note.encode("utf-8"), etag)
        except PreconditionFailedError:
            return None
        return new

    def _record_history(self, cp: Checkpoint) -> None:
        _put_immutable(self.store, history_key(cp.size), cp.note.encode("utf-8"))

    def _clean_claims(self, size: int, committed: Sequence[int]) -> None:
        for pos in committed:
            self.store.delete(claim_key(pos))
        # Stale claims (a writer that died between claiming a cleaned slot and noticing).
        for info in self.store.list(CLAIM_PREFIX):
            name = info.key[len(CLAIM_PREFIX) :]
            if name.isdigit() and int(name) < size:
                self.store.delete(info.key)


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


def _read_object(store: ObjectStore, key: str) -> bytes:
    try:
        return store.get(key)
    except NotFoundError as exc:
        raise IntegrityError(f"missing log object {key}") from exc


def _put_immutable(store: ObjectStore, key: str, data: bytes) -> None:
    """Create `key`; an existing object must hold exactly `data` (else a fork alarm)."""
    try:
        store.put_if_absent(key, data)
    except ObjectExistsError:
        try:
            existing = store.get(key)
        except NotFoundError as exc:
            raise IntegrityError(f"{key} exists but cannot be read") from exc
        if existing != data:
            raise IntegrityError(f"fork alarm: {key} already holds different bytes") from None
