"""RFC 9162 tree: published vectors (transparency-dev/merkle) and property tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.tree import (
    EMPTY_ROOT,
    ListHashSource,
    RootBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors/rfc9162/merkle_8_leaves.json").read_text()
)
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaves_hex"]]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots_hex"]]


def test_empty_root_is_sha256_of_nothing():
    assert EMPTY_ROOT.hex() == VECTORS["empty_root_hex"]
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_published_vectors(size):
    assert root_from_leaf_hashes(LEAVES[:size]) == ROOTS[size - 1]


@pytest.mark.parametrize(
    "case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf_number']}-{c['size']}"
)
def test_inclusion_proofs_match_published_vectors(case):
    index, size = case["leaf_number"] - 1, case["size"]
    expected = [bytes.fromhex(h) for h in case["proof_hex"]]
    assert inclusion_proof(ListHashSource(LEAVES[:size]), index, size) == expected
    verify_inclusion(LEAVES[index], index, size, expected, ROOTS[size - 1])


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: f"{c['size1']}-{c['size2']}")
def test_consistency_proofs_match_published_vectors(case):
    m, n = case["size1"], case["size2"]
    expected = [bytes.fromhex(h) for h in case["proof_hex"]]
    assert consistency_proof(ListHashSource(LEAVES[:n]), m, n) == expected
    verify_consistency(m, n, ROOTS[m - 1], ROOTS[n - 1], expected)


def test_single_leaf_tree_has_empty_proof():
    verify_inclusion(LEAVES[0], 0, 1, [], ROOTS[0])


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (8, 8), (-1, 8)])
def test_inclusion_refuses_index_outside_tree(index, size):
    with pytest.raises(IntegrityError):
        verify_inclusion(LEAVES[0], index, size, [], ROOTS[0])


def test_consistency_from_size_zero_is_refused():
    with pytest.raises(IntegrityError, match="empty tree"):
        verify_consistency(0, 8, EMPTY_ROOT, ROOTS[7], [])


def test_consistency_rollback_is_refused():
    with pytest.raises(IntegrityError, match="rollback"):
        verify_consistency(8, 7, ROOTS[7], ROOTS[6], [])


def test_equal_sizes_with_different_roots_is_a_fork():
    with pytest.raises(IntegrityError, match="fork"):
        verify_consistency(5, 5, ROOTS[4], ROOTS[5], [])


def test_inclusion_proof_with_extra_or_missing_hash_fails():
    proof = inclusion_proof(ListHashSource(LEAVES), 5, 8)
    with pytest.raises(IntegrityError, match="too long"):
        verify_inclusion(LEAVES[5], 5, 8, [*proof, ROOTS[0]], ROOTS[7])
    with pytest.raises(IntegrityError, match="too short"):
        verify_inclusion(LEAVES[5], 5, 8, proof[:-1], ROOTS[7])


def test_root_builder_subtrees_equal_leaf_by_leaf():
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(300)]
    builder = RootBuilder()
    builder.add_subtree(root_from_leaf_hashes(leaves[:256]), 8)
    for leaf in leaves[256:]:
        builder.add(leaf)
    assert builder.root() == root_from_leaf_hashes(leaves)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


sizes = st.integers(min_value=1, max_value=80).flatmap(
    lambda n: st.tuples(st.integers(min_value=1, max_value=n), st.just(n))
)


@settings(max_examples=200, deadline=None)
@given(sizes, st.data())
def test_every_proof_verifies_and_every_bit_flip_fails(mn, data):
    """For random m <= n: proofs verify; any single-bit change of proof/root/index/size fails."""
    m, n = mn
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    source = ListHashSource(leaves)
    root_n = root_from_leaf_hashes(leaves)
    root_m = root_from_leaf_hashes(leaves[:m])
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = inclusion_proof(source, index, n)
    verify_inclusion(leaves[index], index, n, path, root_n)
    for k in range(len(path)):
        bit = data.draw(st.integers(min_value=0, max_value=255))
        bad = list(path)
        bad[k] = _flip(bad[k], bit)
        with pytest.raises(IntegrityError):
            verify_inclusion(leaves[index], index, n, bad, root_n)
    bit = data.draw(st.integers(min_value=0, max_value=255))
    with pytest.raises(IntegrityError):
        verify_inclusion(leaves[index], index, n, path, _flip(root_n, bit))
    with pytest.raises(IntegrityError):
        verify_inclusion(_flip(leaves[index], bit), index, n, path, root_n)
    ibit = data.draw(st.integers(min_value=0, max_value=7))
    with pytest.raises(IntegrityError):
        verify_inclusion(leaves[index], index ^ (1 << ibit), n, path, root_n)
    n2 = n ^ (1 << ibit)
    if n2 <= index or _inclusion_len(index, n2) != len(path):
        # The RFC algorithm binds the size through the path's shape (the root binds the
        # rest), so only a size that changes the shape must fail.
        with pytest.raises(IntegrityError):
            verify_inclusion(leaves[index], index, n2, path, root_n)

    proof = consistency_proof(source, m, n)
    verify_consistency(m, n, root_m, root_n, proof)
    for k in range(len(proof)):
        bit = data.draw(st.integers(min_value=0, max_value=255))
        bad = list(proof)
        bad[k] = _flip(bad[k], bit)
        with pytest.raises(IntegrityError):
            verify_consistency(m, n, root_m, root_n, bad)
    with pytest.raises(IntegrityError):
        verify_consistency(m, n, _flip(root_m, bit), root_n, proof)
    with pytest.raises(IntegrityError):
        verify_consistency(m, n, root_m, _flip(root_n, bit), proof)
    for mm, nn in ((m ^ (1 << ibit), n), (m, n ^ (1 << ibit))):
        if not 0 < mm <= nn or _consistency_len(mm, nn) != len(proof):
            with pytest.raises(IntegrityError):
                verify_consistency(mm, nn, root_m, root_n, proof)


def _dummy(size):
    return ListHashSource([bytes(32)] * size)


def _inclusion_len(index, size):
    return len(inclusion_proof(_dummy(size), index, size))


def _consistency_len(m, n):
    return len(consistency_proof(_dummy(n), m, n))
