"""Tiles and entries of a signed tree, each authenticated before it is used.

The store is untrusted: anyone with the bucket can rewrite an entry bundle and recompute
its level-0 hash tile (SHA-256 only). Checking a bundle against its hash tile therefore
proves nothing; what proves something is the checkpoint's root, which only the log key
can sign. `VerifiedTiles` binds every tile it hands out to that root:

- the right edge of the tree (the partial tile of each level, at most one per level) is
  read once, up front, and must reproduce the checkpoint's root exactly; these are the
  only tiles the root is computed from, so after this check every hash they hold is
  authenticated;
- a full tile is authenticated through its parent: the root of its 256 hashes must equal
  the parent tile's hash at its position, the parent being authenticated the same way,
  up to a right-edge tile;
- an entry bundle is authenticated by its level-0 tile: the leaf hashes of its entries
  must equal that tile's hashes.

Invariants: bytes are authenticated once and then kept (never re-read from the store
between check and use, so a concurrent rewrite cannot slip in); nothing is returned
that has not been bound to the signed root; every failure is an `IntegrityError` naming
the object.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterator

from pcii_vault.errors import IntegrityError
from pcii_vault.ledger import tiles as _tiles
from pcii_vault.ledger.note import Checkpoint
from pcii_vault.ledger.tree import EMPTY_ROOT, range_hash
from pcii_vault.store.base import ObjectStore

__all__ = ["VerifiedTiles"]

_W = _tiles.TILE_WIDTH
_H = _tiles.TILE_HEIGHT
_sha256 = hashlib.sha256


_read = _tiles.read_log_object


class _EdgeSource:
    """Subtree hashes from the right-edge tiles only (the root is computed from these)."""

    def __init__(self, size: int, edge: dict[tuple[int, int], list[list[bytes]]]) -> None:
        self._size = size
        self._edge = edge

    def node(self, height: int, index: int) -> bytes:
        level, inner = divmod(height, _H)
        n, offset = divmod(index, _W >> inner)
        levels = self._edge.get((level, n))
        if levels is None:  # pragma: no cover - the decomposition of [0, size) never asks
            raise ValueError(f"node {height}/{index} is not on the right edge")
        return levels[inner][offset]


class VerifiedTiles:
    """The tiles of the tree of `checkpoint`, authenticated against its signed root.

    Raises (from the constructor):
        IntegrityError: the stored right-edge tiles do not reproduce the signed root.
    """

    def __init__(
        self, store: ObjectStore, checkpoint: Checkpoint, *, cache_tiles: int = 64
    ) -> None:
        self.store = store
        self.checkpoint = checkpoint
        self.size = checkpoint.size
        self._cache: OrderedDict[tuple[int, int], list[bytes]] = OrderedDict()
        self._cache_tiles = cache_tiles
        self._edge: dict[tuple[int, int], list[bytes]] = {}
        self._edge_bytes: dict[str, bytes] = {}
        self._check_root()

    # ----- the right edge ---------------------------------------------------------

    def _check_root(self) -> None:
        size = self.size
        if size == 0:
            if not hmac.compare_digest(self.checkpoint.root, EMPTY_ROOT):
                raise IntegrityError("the empty log's checkpoint has a non-empty root")
            return
        levels: dict[tuple[int, int], list[list[bytes]]] = {}
        level = 0
        while size >> (_H * level):
            count = size >> (_H * level)
            width = count % _W
            if width:
                n = count // _W
                key = _tiles.hash_tile_key(level, n, width)
                data = _read(self.store, key)
                hashes = _tiles.split_hashes(data, width, key)
                self._edge[(level, n)] = hashes
                self._edge_bytes[key] = data
                levels[(level, n)] = _tiles.tile_levels(hashes)
            level += 1
        root = range_hash(_EdgeSource(size, levels), 0, size)
        if not hmac.compare_digest(root, self.checkpoint.root):
            edge = ", ".join(sorted(self._edge_bytes)) or "none"
            raise IntegrityError(
                f"log tiles do not reproduce the signed root of size {size} "
                f"(right-edge tiles: {edge}): the stored tree was altered"
            )

    # ----- authenticated hash tiles ---------------------------------------------------

    def tile(self, level: int, n: int) -> list[bytes]:
        """The authenticated hashes of tile (`level`, `n`) in this tree.

        Raises:
            ValueError: the tile is not part of this tree.
            IntegrityError: the stored tile does not belong to the signed tree.
        """
        width = _tiles.tile_width_at(self.size, level, n)
        if width == 0:
            raise ValueError(f"tile {level}/{n} is outside the tree of size {self.size}")
        if width < _W:
            return self._edge[(level, n)]
        cached = self._cache.get((level, n))
        if cached is not None:
            self._cache.move_to_end((level, n))
            return cached
        key = _tiles.hash_tile_key(level, n, _W)
        hashes = _tiles.split_hashes(_read(self.store, key), _W, key)
        parent = self.tile(level + 1, n // _W)
        if not hmac.compare_digest(_tiles.tile_root(hashes), parent[n % _W]):
            raise IntegrityError(f"{key} does not belong to the signed tree of size {self.size}")
        self._cache[(level, n)] = hashes
        if len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)
        return hashes

    def node(self, height: int, index: int) -> bytes:
        """The authenticated hash of the complete subtree at (`height`, `index`)."""
        level, inner = divmod(height, _H)
        n, offset = divmod(index, _W >> inner)
        levels = _tiles.tile_levels(self.tile(level, n))
        try:
            return levels[inner][offset]
        except IndexError as exc:
            raise ValueError(f"node {height}/{index} is outside the tree") from exc

    def leaf(self, index: int) -> bytes:
        """The authenticated leaf hash at `index`."""
        return self.tile(0, index // _W)[index % _W]

    # ----- authenticated entries ------------------------------------------------------

    def bundle(self, n: int) -> list[bytes]:
        """The entries of bundle `n`, each bound to the signed root by its leaf hash.

        Raises:
            IntegrityError: the bundle is missing, malformed, or holds other entries.
        """
        width = _tiles.tile_width_at(self.size, 0, n)
        if width == 0:
            raise ValueError(f"bundle {n} is outside the tree of size {self.size}")
        key = _tiles.bundle_key(n, width)
        entries = _tiles.decode_bundle(_read(self.store, key), width, key)
        hashes = self.tile(0, n)
        base = n * _W
        for i, entry in enumerate(entries):
            if not hmac.compare_digest(_sha256(b"\x00" + entry).digest(), hashes[i]):
                raise IntegrityError(
                    f"entry {base + i} ({key}) does not match the signed tree of size {self.size}"
                )
        return entries

    def entries(self, start: int, end: int) -> Iterator[bytes]:
        """Yield the authenticated entries [start, end), one bundle in memory at a time."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"entry range {start}..{end} is not within the log's {self.size}")
        n = start // _W
        while n * _W < end:
            base = n * _W
            for i, entry in enumerate(self.bundle(n)):
                if start <= base + i < end:
                    yield entry
            n += 1

    def edge_bytes(self) -> dict[str, bytes]:
        """The authenticated right-edge hash tiles, by object key."""
        return dict(self._edge_bytes)

    def read_for_extend(self, key: str) -> bytes:
        """Bytes of a right-edge tile or bundle, authenticated: what a commit builds on.

        Raises:
            ValueError: `key` is not a right-edge object of this tree.
            IntegrityError: the object does not belong to the signed tree.
        """
        if key in self._edge_bytes:
            return self._edge_bytes[key]
        ref = _tiles.parse_tile_key(key)
        if ref is None or ref.level is not None or ref.width == _W:
            raise ValueError(f"{key} is not a right-edge object of the tree")
        if _tiles.tile_width_at(self.size, 0, ref.n) != ref.width:
            raise ValueError(f"{key} is not a right-edge object of the tree")
        return _tiles.encode_bundle(self.bundle(ref.n))
