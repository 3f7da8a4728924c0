"""C2SP tlog-tiles paths, bundles and deterministic tile building."""

from __future__ import annotations

import pytest

from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.tiles import (
    TileHashSource,
    TileRef,
    build_tiles,
    bundle_key,
    decode_bundle,
    encode_bundle,
    hash_tile_key,
    index_path,
    parse_tile_key,
    tiles_for_size,
)
from pcii_vault.ledger.tree import (
    ListHashSource,
    inclusion_proof,
    leaf_hash,
    range_hash,
    root_from_leaf_hashes,
)


def test_index_path_matches_spec_example():
    assert index_path(1234067) == "x001/x234/067"
    assert index_path(0) == "000"
    assert index_path(1000) == "x001/000"


def test_tile_keys():
    assert hash_tile_key(0, 1234067, 256) == "log/tile/0/x001/x234/067"
    assert hash_tile_key(1, 5, 17) == "log/tile/1/005.p/17"
    assert bundle_key(2, 3) == "log/tile/entries/002.p/3"


@pytest.mark.parametrize(
    "key",
    [
        "log/tile/0/x000/001",
        "log/tile/0/1",
        "log/tile/00/001",
        "log/tile/0/001.p/256",
        "log/tile/0/001.p/0",
        "log/tile/0/001.p/05",
        "log/tile/64/001",
        "log/tile/entries/01",
    ],
)
def test_non_canonical_tile_keys_are_not_tiles(key):
    assert parse_tile_key(key) is None


def test_tile_key_round_trip():
    assert parse_tile_key("log/tile/entries/x001/x234/067.p/8") == TileRef(None, 1234067, 8)


def test_tree_of_70000_has_the_spec_tiles():
    partial = [r for r in tiles_for_size(70000) if r.width != 256]
    full = [r for r in tiles_for_size(70000) if r.width == 256]
    assert partial == [TileRef(0, 273, 112), TileRef(1, 1, 17), TileRef(2, 0, 1)]
    assert len([r for r in full if r.level == 0]) == 273
    assert [r for r in full if r.level == 1] == [TileRef(1, 0, 256)]


def test_bundle_round_trip_and_strictness():
    entries = [b"", b"a", b"x" * 300]
    data = encode_bundle(entries)
    assert data[:2] == b"\x00\x00"
    assert decode_bundle(data, 3) == entries
    with pytest.raises(IntegrityError, match="trailing"):
        decode_bundle(data + b"\x00", 3)
    with pytest.raises(IntegrityError, match="truncated"):
        decode_bundle(data[:-1], 3)
    with pytest.raises(ValueError, match="65,535"):
        encode_bundle([b"x" * 65536])


class DictReader:
    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def get(self, key):
        from pcii_vault.errors import NotFoundError

        try:
            return self.objects[key]
        except KeyError:
            raise NotFoundError(key) from None


@pytest.mark.parametrize("batches", [[1], [300], [255, 1], [100, 200, 70000 - 300], [65536, 1]])
def test_incremental_tiles_give_the_same_tree_as_one_batch(batches):
    """Tiles built batch by batch serve the right root and proofs at every size."""
    store = DictReader()
    entries: list[bytes] = []
    for count in batches:
        new = [i.to_bytes(4, "big") for i in range(len(entries), len(entries) + count)]
        tiles = build_tiles(len(entries), new, store.get)
        for key, data in tiles.items():
            assert store.objects.get(key, data) == data  # never a different rewrite
            store.objects[key] = data
        entries += new
        size = len(entries)
        leaves = [leaf_hash(e) for e in entries]
        source = TileHashSource(store, size)  # type: ignore[arg-type]
        assert range_hash(source, 0, size) == root_from_leaf_hashes(leaves)
        index = size // 2
        assert inclusion_proof(source, index, size) == inclusion_proof(
            ListHashSource(leaves), index, size
        )
