"""RFC 9162 Merkle tree hashing, inclusion proofs and consistency proofs.

Invariants:
- leaf hash = SHA-256(0x00 || entry), node hash = SHA-256(0x01 || left || right), the empty
  tree's root is SHA-256(""), exactly as RFC 9162 section 2.1.1 (RFC 6962 section 2.1);
- proofs are generated with the RFC's PATH / SUBPROOF definitions from a `HashSource`
  that returns complete-subtree hashes, so proving at any size costs O(log n) node reads,
  never a recomputation of the tree;
- verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 literally and is strict:
  index < size, exact proof length, 32-byte hashes, no consistency proof from size 0;
  every failure raises `IntegrityError`, nothing returns False.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol

from pcii_vault.errors import IntegrityError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "HashSource",
    "ListHashSource",
    "RootBuilder",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || entry)."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


class RootBuilder:
    """Streams leaf (or aligned subtree) hashes in order; yields the root in O(log n) memory.

    Keeps the "compact range" of the prefix: one complete-subtree hash per set bit of
    the size, largest first.
    """

    __slots__ = ("_heights", "_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self._heights: list[int] = []
        self.size = 0

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash."""
        stack = self._stack
        stack.append(leaf)
        n = self.size
        heights = self._heights
        heights.append(0)
        while n & 1:
            right = stack.pop()
            heights.pop()
            stack[-1] = _sha256(b"\x01" + stack[-1] + right).digest()
            heights[-1] += 1
            n >>= 1
        self.size += 1

    def add_subtree(self, subtree: bytes, height: int) -> None:
        """Append the hash of a complete subtree of 2**height leaves.

        Raises:
            ValueError: the current size is not a multiple of 2**height.
        """
        if self.size % (1 << height):
            raise ValueError("subtree is not aligned with the tree size")
        stack, heights = self._stack, self._heights
        stack.append(subtree)
        heights.append(height)
        while len(heights) > 1 and heights[-1] == heights[-2]:
            right = stack.pop()
            heights.pop()
            stack[-1] = _sha256(b"\x01" + stack[-1] + right).digest()
            heights[-1] += 1
        self.size += 1 << height

    def root(self) -> bytes:
        """Return MTH of the leaves added so far (EMPTY_ROOT for none)."""
        if not self._stack:
            return EMPTY_ROOT
        acc = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            acc = _sha256(b"\x01" + left + acc).digest()
        return acc


def root_from_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    """Return MTH over `leaves` (RFC 9162 section 2.1.1)."""
    builder = RootBuilder()
    for leaf in leaves:
        builder.add(leaf)
    return builder.root()


class HashSource(Protocol):
    """Gives the hash of a complete subtree.

    `node(height, index)` covers leaves [index * 2**height, (index + 1) * 2**height).
    """

    def node(self, height: int, index: int) -> bytes:
        """Return the hash of the complete subtree at (`height`, `index`)."""
        ...


class ListHashSource:
    """A `HashSource` over an in-memory list of leaf hashes (for tests and small trees)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._levels: list[list[bytes]] = [list(leaves)]
        while len(self._levels[-1]) > 1:
            below = self._levels[-1]
            self._levels.append(
                [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    def node(self, height: int, index: int) -> bytes:
        """Return the hash of the complete subtree at (`height`, `index`)."""
        return self._levels[height][index]


def range_hash(source: HashSource, start: int, end: int) -> bytes:
    """Return MTH(D[start:end]) for a range whose start is aligned to its largest subtree.

    The ranges RFC 9162's PATH and SUBPROOF recurse on are always of this shape: `start`
    is a multiple of the largest power of two below `end - start`, so the range splits
    into complete subtrees, largest first, folded from the right.
    """
    if end <= start:
        raise ValueError("empty range has no subtree hash")
    parts: list[bytes] = []
    pos = start
    remaining = end - start
    while remaining:
        height = remaining.bit_length() - 1
        if pos % (1 << height):
            raise ValueError("range is not aligned")
        parts.append(source.node(height, pos >> height))
        pos += 1 << height
        remaining -= 1 << height
    acc = parts[-1]
    for left in reversed(parts[:-1]):
        acc = node_hash(left, acc)
    return acc


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(source: HashSource, index: int, size: int) -> list[bytes]:
    """Return PATH(index, D[0:size]) per RFC 9162 section 2.1.3.1.

    Raises:
        ValueError: index is not below size.
    """
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(range_hash(source, start + k, end))
            end = start + k
        else:
            path.append(range_hash(source, start, start + k))
            start += k
            m -= k
    path.reverse()
    return path


def consistency_proof(source: HashSource, old_size: int, new_size: int) -> list[bytes]:
    """Return PROOF(old_size, D[0:new_size]) per RFC 9162 section 2.1.4.1.

    Raises:
        ValueError: not 0 < old_size <= new_size.
    """
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size}")
    proof: list[bytes] = []
    start, end, m, complete = 0, new_size, old_size, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                proof.append(range_hash(source, start, end))
            break
        k = _split(n)
        if m <= k:
            proof.append(range_hash(source, start + k, end))
            end = start + k
        else:
            proof.append(range_hash(source, start, start + k))
            start += k
            m -= k
            complete = False
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise IntegrityError(f"{what} is not a {HASH_SIZE}-byte hash")


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof with RFC 9162 section 2.1.3.2.

    Args:
        leaf: the leaf hash (not the entry).
        index: the leaf's index.
        size: the tree size the proof is for.
        proof: the audit path, bottom first.
        root: the expected root of the tree of `size` leaves.

    Raises:
        IntegrityError: any check fails (bad index, wrong length, wrong root).
    """
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    if not 0 <= index < size:
        raise IntegrityError(f"inclusion proof: index {index} not below tree size {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        _check_hash(p, "proof hash")
        if sn == 0:
            raise IntegrityError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityError("inclusion proof is too short")
    if not hmac.compare_digest(r, root):
        raise IntegrityError(f"inclusion proof for index {index} does not match the root")


def verify_consistency(  # noqa: PLR0912 -- the RFC algorithm, step by step
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof with RFC 9162 section 2.1.4.2.

    Equal sizes need an empty proof and equal roots. A proof from size 0 is refused:
    the empty tree commits to nothing, so there is nothing to be consistent with.

    Raises:
        IntegrityError: any check fails.
    """
    _check_hash(old_root, "first root")
    _check_hash(new_root, "second root")
    if old_size <= 0:
        raise IntegrityError("consistency proof from an empty tree is not accepted")
    if old_size > new_size:
        raise IntegrityError(f"rollback: size {new_size} is smaller than {old_size}")
    if old_size == new_size:
        if proof:
            raise IntegrityError("consistency proof between equal sizes must be empty")
        if not hmac.compare_digest(old_root, new_root):
            raise IntegrityError(f"fork: two different roots for tree size {old_size}")
        return
    if not proof:
        raise IntegrityError("consistency proof is empty")
    for p in proof:
        _check_hash(p, "proof hash")
    path = list(proof)
    # Step 2 of 2.1.4.2: when first is an exact power of two, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise IntegrityError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityError("consistency proof is too short")
    if not hmac.compare_digest(fr, old_root):
        raise IntegrityError(f"consistency proof does not match the root of size {old_size}")
    if not hmac.compare_digest(sr, new_root):
        raise IntegrityError(f"consistency proof does not match the root of size {new_size}")
