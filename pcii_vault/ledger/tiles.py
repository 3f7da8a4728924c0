"""C2SP tlog-tiles layout (https://c2sp.org/tlog-tiles) on an `ObjectStore` under ``log/``.

- hash tiles: ``log/tile/<L>/<N>[.p/<W>]``, 256 hashes of 32 bytes when full; level 0
  holds leaf hashes, level L+1 holds the root of each full tile of level L;
- entry bundles: ``log/tile/entries/<N>[.p/<W>]``, each entry a big-endian uint16 length
  then its bytes, so an entry is at most 65,535 bytes;
- ``<N>`` is written as zero-padded 3-digit segments, all but the last prefixed by ``x``
  (1234067 -> ``x001/x234/067``); ``.p/<W>`` marks a partial tile of width 1..255.

Invariants: tile bytes are a pure function of the entries (`build_tiles`), so any two
writers derive identical bytes for a path; decoding is strict (exact width, no truncated
or trailing bytes); a tile for tree size s at level L has width floor(s / 256**L) mod 256
when partial.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pcii_vault.errors import IntegrityError, NotFoundError
from pcii_vault.ledger.tree import HASH_SIZE
from pcii_vault.store.base import ObjectStore

__all__ = [
    "LOG_PREFIX",
    "MAX_ENTRY_BYTES",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileHashSource",
    "TileRef",
    "build_tiles",
    "bundle_key",
    "decode_bundle",
    "encode_bundle",
    "hash_tile_key",
    "index_path",
    "parse_tile_key",
    "read_log_object",
    "tile_root",
    "tiles_for_size",
]

LOG_PREFIX = "log/"
TILE_HEIGHT = 8
TILE_WIDTH = 256
MAX_ENTRY_BYTES = 0xFFFF
_sha256 = hashlib.sha256


def read_log_object(store: ObjectStore, key: str) -> bytes:
    """Read an object the log needs; a missing one is an integrity failure.

    Raises:
        IntegrityError: the object is missing.
    """
    try:
        return store.get(key)
    except NotFoundError as exc:
        raise IntegrityError(f"missing log object {key}") from exc


def index_path(n: int) -> str:
    """Encode a tile index as C2SP path segments (1234067 -> ``x001/x234/067``)."""
    if n < 0:
        raise ValueError("tile index must be non-negative")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def _suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} out of range")
    return "" if width == TILE_WIDTH else f".p/{width}"


def hash_tile_key(level: int, n: int, width: int) -> str:
    """Object key of the hash tile at `level`, index `n`, `width` hashes."""
    if not 0 <= level <= 63:
        raise ValueError("tile level out of range")
    return f"{LOG_PREFIX}tile/{level}/{index_path(n)}{_suffix(width)}"


def bundle_key(n: int, width: int) -> str:
    """Object key of entry bundle `n` holding `width` entries."""
    return f"{LOG_PREFIX}tile/entries/{index_path(n)}{_suffix(width)}"


@dataclass(frozen=True, slots=True)
class TileRef:
    """A parsed tile path: `level` is None for an entry bundle."""

    level: int | None
    n: int
    width: int


_TILE_KEY = re.compile(
    r"log/tile/(?P<level>0|[1-9][0-9]?|entries)/(?P<n>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<w>[1-9][0-9]{0,2}))?"
)


def parse_tile_key(key: str) -> TileRef | None:
    """Parse a tile or bundle object key; None if it is not one in canonical form."""
    match = _TILE_KEY.fullmatch(key)
    if match is None:
        return None
    groups = match["n"].split("/")
    if len(groups) > 1 and groups[0] == "x000":
        return None  # Leading zero groups are not canonical.
    n = int("".join(g.lstrip("x") for g in groups))
    width = int(match["w"]) if match["w"] else TILE_WIDTH
    if width > 255 and match["w"]:
        return None
    level = None if match["level"] == "entries" else int(match["level"])
    if level is not None and level > 63:
        return None
    ref = TileRef(level, n, width)
    # Round-trip so that exactly one spelling of each tile is accepted.
    canonical = bundle_key(n, width) if level is None else hash_tile_key(level, n, width)
    return ref if canonical == key else None


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """Encode entries as a C2SP entry bundle.

    Raises:
        ValueError: an entry is longer than 65,535 bytes.
    """
    parts: list[bytes] = []
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise ValueError("entry longer than 65,535 bytes")
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(entry)
    return b"".join(parts)


def decode_bundle(data: bytes, count: int, what: str = "entry bundle") -> list[bytes]:
    """Decode exactly `count` entries; truncated or trailing bytes are an error.

    Raises:
        IntegrityError: the bytes do not hold exactly `count` entries.
    """
    entries: list[bytes] = []
    pos = 0
    end = len(data)
    for i in range(count):
        if pos + 2 > end:
            raise IntegrityError(f"{what} is truncated: entry {i} of {count} missing")
        length = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if pos + length > end:
            raise IntegrityError(f"{what} is truncated inside entry {i}")
        entries.append(data[pos : pos + length])
        pos += length
    if pos != end:
        raise IntegrityError(f"{what} has {end - pos} trailing bytes")
    return entries


def split_hashes(data: bytes, width: int, what: str) -> list[bytes]:
    """Split a hash tile into its `width` hashes.

    Raises:
        IntegrityError: the tile is not exactly `width` * 32 bytes.
    """
    if len(data) != width * HASH_SIZE:
        raise IntegrityError(f"{what} has {len(data)} bytes, expected {width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def tile_levels(hashes: list[bytes]) -> list[list[bytes]]:
    """All complete subtree hashes inside one tile, bottom level first."""
    levels = [hashes]
    cur = hashes
    while len(cur) > 1:
        cur = [_sha256(b"\x01" + cur[i] + cur[i + 1]).digest() for i in range(0, len(cur) - 1, 2)]
        levels.append(cur)
    return levels


def tile_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a full tile (256 hashes)."""
    cur = list(hashes)
    while len(cur) > 1:
        cur = [_sha256(b"\x01" + cur[i] + cur[i + 1]).digest() for i in range(0, len(cur), 2)]
    return cur[0]


def tiles_for_size(size: int) -> list[TileRef]:
    """Every hash tile (level >= 0) a tree of `size` leaves is made of."""
    refs: list[TileRef] = []
    level = 0
    count = size
    while count:
        refs.extend(TileRef(level, n, TILE_WIDTH) for n in range(count // TILE_WIDTH))
        if count % TILE_WIDTH:
            refs.append(TileRef(level, count // TILE_WIDTH, count % TILE_WIDTH))
        count //= TILE_WIDTH
        level += 1
    return refs


def tile_width_at(size: int, level: int, n: int) -> int:
    """Width of tile (`level`, `n`) in a tree of `size` leaves (0 if it does not exist)."""
    count = size >> (TILE_HEIGHT * level)
    if (n + 1) * TILE_WIDTH <= count:
        return TILE_WIDTH
    if n == count // TILE_WIDTH:
        return count % TILE_WIDTH
    return 0


class TileHashSource:
    """A `HashSource` for the tree of `size` leaves, reading hash tiles from a store.

    Complete-subtree hashes come from the tile holding them, hashing at most 7 levels
    inside that tile; decoded tiles are cached (LRU), so proofs at any size read a
    handful of tiles. `overlay` holds tiles not yet written (a commit in progress).
    """

    def __init__(
        self,
        store: ObjectStore,
        size: int,
        *,
        overlay: dict[str, bytes] | None = None,
        cache_tiles: int = 64,
    ) -> None:
        self._store = store
        self.size = size
        self._overlay = overlay or {}
        self._cache: OrderedDict[str, list[list[bytes]]] = OrderedDict()
        self._cache_tiles = cache_tiles

    def _levels(self, level: int, n: int) -> list[list[bytes]]:
        width = tile_width_at(self.size, level, n)
        if width == 0:
            raise IntegrityError(f"tile {level}/{n} is outside the tree of size {self.size}")
        key = hash_tile_key(level, n, width)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        data = self._overlay.get(key)
        if data is None:
            try:
                data = self._store.get(key)
            except NotFoundError as exc:
                raise IntegrityError(f"missing tile {key}") from exc
        levels = tile_levels(split_hashes(data, width, key))
        self._cache[key] = levels
        if len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)
        return levels

    def node(self, height: int, index: int) -> bytes:
        """Return the hash of the complete subtree at (`height`, `index`)."""
        level, inner = divmod(height, TILE_HEIGHT)
        per_tile = TILE_WIDTH >> inner
        n, offset = divmod(index, per_tile)
        levels = self._levels(level, n)
        try:
            return levels[inner][offset]
        except IndexError as exc:
            raise IntegrityError(f"tile {level}/{n} lacks node {height}/{index}") from exc


def build_tiles(
    old_size: int, entries: Sequence[bytes], read: Callable[[str], bytes]
) -> dict[str, bytes]:
    """Derive every tile and bundle that changes when `entries` follow `old_size` leaves.

    Args:
        old_size: size of the committed tree the entries extend.
        entries: the new entries in order.
        read: fetches an existing object (the old partial tiles and bundle).

    Returns:
        object key -> bytes for each new or grown tile, deterministic in the inputs.
    """
    out: dict[str, bytes] = {}
    if not entries:
        return out
    first = old_size // TILE_WIDTH
    have = old_size % TILE_WIDTH
    bundle = decode_bundle(read(bundle_key(first, have)), have) if have else []
    bundle.extend(entries)
    for i in range(0, len(bundle), TILE_WIDTH):
        chunk = bundle[i : i + TILE_WIDTH]
        out[bundle_key(first + i // TILE_WIDTH, len(chunk))] = encode_bundle(chunk)

    hashes = split_hashes(read(hash_tile_key(0, first, have)), have, "tile") if have else []
    hashes.extend(_sha256(b"\x00" + e).digest() for e in entries)
    level = 0
    old_count = old_size
    while hashes:
        roots: list[bytes] = []
        for i in range(0, len(hashes), TILE_WIDTH):
            chunk = hashes[i : i + TILE_WIDTH]
            out[hash_tile_key(level, first + i // TILE_WIDTH, len(chunk))] = b"".join(chunk)
            if len(chunk) == TILE_WIDTH:
                roots.append(tile_root(chunk))
        if not roots:
            break
        level += 1
        old_count //= TILE_WIDTH
        first, have = divmod(old_count, TILE_WIDTH)
        prefix = split_hashes(read(hash_tile_key(level, first, have)), have, "tile") if have else []
        hashes = prefix + roots
    return out
