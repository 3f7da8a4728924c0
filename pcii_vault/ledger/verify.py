"""Full offline audit of a log copied anywhere: reads only ``log/`` and the public key.

`verify_log` checks, in this order, and raises `IntegrityError` naming the FIRST problem
(entry index and object key):
1. ``log/checkpoint`` is a well-formed checkpoint signed by the log key; it is not
   smaller than a trusted checkpoint (rollback);
2. every object under ``log/`` is a checkpoint, a historic checkpoint, a claim or a tile
   in canonical form; anything else is unexpected;
3. streaming every entry bundle in order (bounded memory: one tile per level): exact
   sizes (no truncation, no trailing bytes), each entry a known event whose seq is its
   index (and the caller's `event_checker` passes), leaf hashes equal to the level-0 tile,
   every higher tile equal to the roots of the tiles below, every stored variant of a
   tile (partial widths left by earlier checkpoints) a prefix of the recomputed tile,
   and the recomputed root equal to the checkpoint's;
4. every historic checkpoint is signed by the log key, stored under its own size, and
   has the root of the verified tree at that size (so two checkpoints of one size with
   different roots, or any two inconsistent ones, are a fork); one larger than the
   latest is a rollback of ``log/checkpoint`` unless the log advanced meanwhile; a
   non-empty log has at least one (history is written after each install, so only the
   latest may be missing from it: an empty history was deleted). A deleted checkpoint
   between two others cannot be told from one commit that covered both ranges;
5. the trusted checkpoint, if any, has the root of the verified tree at its size.
Claims not yet committed and tiles beyond the checkpoint are reported as pending, not
verified: they are not part of the log yet.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pcii_vault.errors import IntegrityError, NotFoundError
from pcii_vault.ledger import tiles as _tiles
from pcii_vault.ledger.log import (
    CHECKPOINT_KEY,
    CLAIM_PREFIX,
    HISTORY_PREFIX,
    decode_claim,
    history_key,
)
from pcii_vault.ledger.note import Checkpoint, NoteVerifier, parse_checkpoint
from pcii_vault.ledger.tree import EMPTY_ROOT, RootBuilder, range_hash
from pcii_vault.models.event import Event
from pcii_vault.store.base import ObjectStore

__all__ = [
    "VerifyReport",
    "check_log_head",
    "refuse_other_tree",
    "refuse_shorter_than",
    "verify_log",
]

_W = _tiles.TILE_WIDTH


@dataclass(frozen=True)
class VerifyReport:
    """What a successful audit established."""

    checkpoint: Checkpoint
    events: int
    tiles: int
    history: int
    pending: tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        """Size of the verified checkpoint."""
        return self.checkpoint.size

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "sound": True,
            "origin": self.checkpoint.origin,
            "size": self.checkpoint.size,
            "root": self.checkpoint.root.hex(),
            "events": self.events,
            "tiles_checked": self.tiles,
            "history_checked": self.history,
            "pending": list(self.pending),
        }


_get = _tiles.read_log_object


class _Inventory:
    """Every object under log/, classified; anything unexpected is an error."""

    def __init__(self, store: ObjectStore) -> None:
        self.history: dict[int, str] = {}
        self.claims: dict[int, str] = {}
        # (level or -1 for bundles, n) -> {width: key}
        self.tiles: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
        for info in store.list(_tiles.LOG_PREFIX):
            key = info.key
            if key == CHECKPOINT_KEY:
                continue
            if key.startswith(HISTORY_PREFIX):
                name = key[len(HISTORY_PREFIX) :]
                if len(name) == 20 and name.isdigit():
                    self.history[int(name)] = key
                    continue
            elif key.startswith(CLAIM_PREFIX):
                name = key[len(CLAIM_PREFIX) :]
                if len(name) == 20 and name.isdigit():
                    self.claims[int(name)] = key
                    continue
            else:
                ref = _tiles.parse_tile_key(key)
                if ref is not None:
                    level = -1 if ref.level is None else ref.level
                    self.tiles[(level, ref.n)][ref.width] = key
                    continue
            raise IntegrityError(f"unexpected object under log/: {key}")


class _Auditor:
    def __init__(
        self,
        store: ObjectStore,
        size: int,
        inventory: _Inventory,
        event_checker: Callable[[Event], None] | None,
    ) -> None:
        self.store = store
        self.size = size
        self.inv = inventory
        self.event_checker = event_checker
        self.tiles_checked = 0
        self.seen: set[tuple[int, int]] = set()
        self.pending: list[str] = []

    def _stored(self, level: int, n: int, width: int) -> bytes:
        variants = self.inv.tiles.get((level, n), {})
        key = _tiles.bundle_key(n, width) if level < 0 else _tiles.hash_tile_key(level, n, width)
        if width not in variants:
            raise IntegrityError(f"missing tile {key}")
        return _get(self.store, key)

    def _check_variants(self, level: int, n: int, width: int, expected: bytes) -> None:
        """Every other stored width of this tile must be a prefix of the expected bytes."""
        self.seen.add((level, n))
        for other, key in sorted(self.inv.tiles.get((level, n), {}).items()):
            if other == width:
                continue
            if other > width:
                self.pending.append(f"{key} (beyond the checkpoint)")
                continue
            data = _get(self.store, key)
            if level < 0:
                _tiles.decode_bundle(data, other, key)
                self.tiles_checked += 1
                if not expected.startswith(data):
                    raise IntegrityError(f"{key} differs from the verified entries")
            else:
                self.tiles_checked += 1
                if data != expected[: other * 32]:
                    if len(data) != other * 32:
                        raise IntegrityError(f"{key} has {len(data)} bytes, expected {other * 32}")
                    raise IntegrityError(f"{key} differs from the verified tree")

    def _higher(self, level: int, hashes: list[bytes], n: int, width: int) -> None:
        expected = b"".join(hashes)
        key = _tiles.hash_tile_key(level, n, width)
        data = self._stored(level, n, width)
        self.tiles_checked += 1
        if len(data) != len(expected):
            raise IntegrityError(f"{key} has {len(data)} bytes, expected {len(expected)}")
        if data != expected:
            raise IntegrityError(f"{key} differs from the hashes of the tiles below it")
        self._check_variants(level, n, width, expected)

    def run(self) -> bytes:
        size = self.size
        sha = hashlib.sha256
        validate = Event.model_validate_json
        checker = self.event_checker
        builder = RootBuilder()
        uppers: list[list[bytes]] = [[]]  # uppers[i]: hashes of the open tile at level i+1
        upper_n: list[int] = [0]
        n_bundles = (size + _W - 1) // _W
        for n in range(n_bundles):
            width = _tiles.tile_width_at(size, 0, n)
            bkey = _tiles.bundle_key(n, width)
            raw = self._stored(-1, n, width)
            self.tiles_checked += 1
            base = n * _W
            entries = _tiles.decode_bundle(raw, width, bkey)
            # Structure before content: the leaves must match the tile before a single
            # entry is parsed.
            leaves = [sha(b"\x00" + entry).digest() for entry in entries]
            tkey = _tiles.hash_tile_key(0, n, width)
            tile = self._stored(0, n, width)
            self.tiles_checked += 1
            expected = b"".join(leaves)
            if tile != expected:
                if len(tile) != len(expected):
                    raise IntegrityError(f"{tkey} has {len(tile)} bytes, expected {len(expected)}")
                bad = next(i for i in range(width) if tile[i * 32 : i * 32 + 32] != leaves[i])
                raise IntegrityError(
                    f"entry {base + bad} ({bkey}) does not match its leaf hash in {tkey}"
                )
            for i, entry in enumerate(entries):
                index = base + i
                try:
                    event = validate(entry)
                except ValueError as exc:
                    raise IntegrityError(
                        f"entry {index} ({bkey}) is not a known event: {_first_error(exc)}"
                    ) from exc
                if event.seq != index:
                    raise IntegrityError(f"entry {index} ({bkey}) carries seq {event.seq}")
                if checker is not None:
                    _check_event(checker, event, index, bkey)
            self._check_variants(-1, n, width, raw)
            self._check_variants(0, n, width, expected)
            if width == _W:
                root = _tiles.tile_root(leaves)
                builder.add_subtree(root, 8)
                self._push(1, root, uppers, upper_n)
            else:
                for leaf in leaves:
                    builder.add(leaf)
        # The open (partial) tiles of every higher level.
        for i, hashes in enumerate(uppers):
            if hashes:
                self._higher(i + 1, hashes, upper_n[i], len(hashes))
        self._extra_tiles()
        return builder.root() if size else EMPTY_ROOT

    def _push(self, level: int, root: bytes, uppers: list[list[bytes]], upper_n: list[int]) -> None:
        while len(uppers) < level:
            uppers.append([])
            upper_n.append(0)
        bucket = uppers[level - 1]
        bucket.append(root)
        if len(bucket) == _W:
            self._higher(level, bucket, upper_n[level - 1], _W)
            full_root = _tiles.tile_root(bucket)
            uppers[level - 1] = []
            upper_n[level - 1] += 1
            self._push(level + 1, full_root, uppers, upper_n)

    def _extra_tiles(self) -> None:
        for (level, n), variants in sorted(self.inv.tiles.items()):
            if (level, n) in self.seen:
                continue
            for key in variants.values():
                self.pending.append(f"{key} (beyond the checkpoint)")


def _check_tree(store: ObjectStore, cp: Checkpoint) -> None:
    """Raise unless the stored entries and tiles reproduce `cp`'s root (events unchecked)."""
    if _Auditor(store, cp.size, _Inventory(store), None).run() != cp.root:
        raise IntegrityError(f"{CHECKPOINT_KEY}: root does not match the entries")


def _check_event(checker: Callable[[Event], None], event: Event, index: int, key: str) -> None:
    """Run the caller's check; anything it raises on logged bytes is an integrity failure."""
    try:
        checker(event)
    except IntegrityError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"entry {index} ({key}) is malformed: {exc}") from exc


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc).splitlines()[0]


def _check_history_kept(cp: Checkpoint, checked: int) -> None:
    """Every installed checkpoint but the latest is in the history (log.py).

    So an empty history under a non-empty log was deleted. (A vault's first commit,
    `init`'s, is undone when its history write fails: no vault log legitimately lacks
    it.) A checkpoint deleted between two others cannot be told from one commit that
    covered both ranges, and is not reported.

    Raises:
        IntegrityError: the log is not empty and no historic checkpoint was verified.
    """
    if cp.size and not checked:
        raise IntegrityError(
            f"{HISTORY_PREFIX} holds no checkpoint but {CHECKPOINT_KEY} has size {cp.size}: "
            "the log's history was deleted"
        )


def _parse_head(note: bytes, verifier: NoteVerifier) -> Checkpoint:
    try:
        return parse_checkpoint(note, verifier)
    except IntegrityError as exc:
        raise IntegrityError(f"{CHECKPOINT_KEY}: {exc}") from exc


def _historic(store: ObjectStore, key: str, verifier: NoteVerifier) -> Checkpoint:
    """A historic checkpoint, signature checked (the object names itself in any error)."""
    try:
        return parse_checkpoint(_get(store, key), verifier)
    except IntegrityError as exc:
        raise IntegrityError(f"{key}: {exc}") from exc


def _refuse_rollback(store: ObjectStore, cp: Checkpoint, etag: str, key: str) -> None:
    """Refuse `cp` (read under `etag`) when the larger historic checkpoint `key` exists.

    Unless the log advanced since `cp` was read: history is written after each install,
    so a concurrent append can show up in the history before the head is read again.

    Raises:
        IntegrityError: ``log/checkpoint`` is still the one read: it was put back.
    """
    if store.head(CHECKPOINT_KEY).etag == etag:
        raise IntegrityError(f"rollback: {CHECKPOINT_KEY} has size {cp.size} but {key} is larger")


def _later_history(store: ObjectStore, size: int) -> Iterator[str]:
    """The keys of the historic checkpoints stored beyond `size` (well-formed names only)."""
    current = history_key(size)
    for info in store.list(HISTORY_PREFIX):
        name = info.key[len(HISTORY_PREFIX) :]
        if info.key > current and len(name) == 20 and name.isdigit():
            yield info.key


def check_log_head(store: ObjectStore, verifier: NoteVerifier) -> Checkpoint | None:
    """The signed ``log/checkpoint``, refused if the log's own objects show it is not the head.

    Commands that read the log through its checkpoint (list, export, prove, recipients)
    would otherwise show a shortened log as if it were whole, where `verify_log` fails.
    These are the two checks of `verify_log` that such a view slips past, cheap enough
    for every command (one listing of ``log/checkpoints/``, no entry read):
    - the checkpoint is missing while ``log/`` holds objects (entries, tiles, history):
      it was deleted, and the log would read as empty;
    - a signed historic checkpoint is larger: the checkpoint was put back to an older
      one, hiding the events after it (unless the log advanced meanwhile).
    A history slot holding a smaller checkpoint (copied there) is no rollback: the next
    append replaces it, and `verify_log` names it.

    Returns:
        The checkpoint; None only when nothing at all is under ``log/``.

    Raises:
        IntegrityError: the checkpoint was deleted or rolled back, or is not signed.
        BackendError: the store is unavailable.
    """
    try:
        note, etag = store.get_with_etag(CHECKPOINT_KEY)
    except NotFoundError:
        remaining = next(store.list(_tiles.LOG_PREFIX), None)
        if remaining is None:
            return None
        raise IntegrityError(
            f"missing log object {CHECKPOINT_KEY} while {remaining.key} remains: "
            "the log's checkpoint was deleted"
        ) from None
    cp = _parse_head(note, verifier)
    for key in _later_history(store, cp.size):
        if _historic(store, key, verifier).size > cp.size:
            _refuse_rollback(store, cp, etag, key)
    return cp


def refuse_shorter_than(trusted: Checkpoint, head: Checkpoint) -> None:
    """Refuse a log head smaller than a checkpoint seen before (`--trusted-checkpoint`).

    Raises:
        IntegrityError: rollback.
    """
    if trusted.size > head.size:
        raise IntegrityError(
            f"rollback: {CHECKPOINT_KEY} has size {head.size}, "
            f"smaller than the trusted checkpoint's {trusted.size}"
        )


def refuse_other_tree(trusted: Checkpoint, root: bytes) -> None:
    """Refuse a log whose tree of `trusted.size` entries has `root`, not the trusted one.

    Raises:
        IntegrityError: fork.
    """
    if trusted.root != root:
        raise IntegrityError(
            f"fork: the trusted checkpoint of size {trusted.size} is not consistent "
            f"with {CHECKPOINT_KEY}"
        )


def verify_log(
    store: ObjectStore,
    verifier_key: NoteVerifier | str,
    *,
    trusted: Checkpoint | None = None,
    event_checker: Callable[[Event], None] | None = None,
) -> VerifyReport:
    """Audit the whole log under ``log/`` of `store`.

    Args:
        store: where the log lives (a copy is fine: only ``log/`` is read).
        verifier_key: the log's key (a `NoteVerifier` or its verifier key string).
        trusted: a checkpoint seen before; the log must extend it.
        event_checker: called with every event in order; raises to reject a history
            that breaks the vault's lifecycle rules.

    Returns:
        The report of what was verified, and what is pending.

    Raises:
        IntegrityError: the first problem found.
        BackendError: the store is unavailable.
    """
    verifier = (
        verifier_key
        if isinstance(verifier_key, NoteVerifier)
        else NoteVerifier.from_key_string(verifier_key)
    )
    try:
        note, etag = store.get_with_etag(CHECKPOINT_KEY)
    except NotFoundError as exc:
        if next(store.list(_tiles.LOG_PREFIX), None) is None:
            raise IntegrityError(
                "the log holds nothing (no log/checkpoint), yet every vault logs its creation "
                "first: the log was deleted, or this is not a vault's log"
            ) from exc
        raise IntegrityError(f"missing log object {CHECKPOINT_KEY}") from exc
    cp = _parse_head(note, verifier)
    if trusted is not None:
        refuse_shorter_than(trusted, cp)
    inventory = _Inventory(store)
    auditor = _Auditor(store, cp.size, inventory, event_checker)
    try:
        root = auditor.run()
    except IntegrityError:
        if event_checker is not None:
            # An event the rules refuse, in a tree that does not reproduce the signed root,
            # is an edit of the stored log (its tiles recomputed, which needs no key), not
            # a history the key holder signed: the tree's failure is named first.
            _check_tree(store, cp)
        raise
    if root != cp.root:
        raise IntegrityError(f"{CHECKPOINT_KEY}: root does not match the entries")
    source = _tiles.TileHashSource(store, cp.size)

    def root_at(size: int) -> bytes:
        return range_hash(source, 0, size) if size else EMPTY_ROOT

    pending = auditor.pending
    checked = 0
    for size, key in sorted(inventory.history.items()):
        old = _historic(store, key, verifier)
        if history_key(old.size) != key:
            raise IntegrityError(f"{key} holds a checkpoint of size {old.size}")
        if size > cp.size:
            _refuse_rollback(store, cp, etag, key)
            pending.append(f"{key} (the log advanced during verification)")
            continue
        if old.root != root_at(size):
            raise IntegrityError(f"fork: {key} is not consistent with {CHECKPOINT_KEY}")
        checked += 1
    _check_history_kept(cp, checked)
    if trusted is not None:
        refuse_other_tree(trusted, root_at(trusted.size))
    for pos, key in sorted(inventory.claims.items()):
        # A pending claim is committed by the next append: it must be the log key's own.
        with contextlib.suppress(NotFoundError):  # committed and cleaned meanwhile
            decode_claim(store.get(key), pos, verifier.public_key, key)
            state = "awaiting commit" if pos >= cp.size else "below the checkpoint"
            pending.append(f"{key} (claim {state})")
    return VerifyReport(cp, cp.size, auditor.tiles_checked, checked, tuple(pending))
