"""Envelope encryption: round trips, known answers, and every way a stored object can be wrong."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcii_vault.crypto.envelope import (
    HEADER_SIZE,
    ObjectContext,
    ObjectHeader,
    RecordContext,
    decrypt_to_file,
    decrypt_to_writer,
    new_data_key,
    open_object,
    parse_object_header,
    seal_object,
)
from pcii_vault.errors import InputError, IntegrityError

VECTORS = Path(__file__).parents[2] / "vectors" / "envelope" / "envelope.json"
CTX = ObjectContext("v-test", "PCII-2026-000042", "document")
DEK = bytes(range(32))
CHUNK = 16384
COBBLE_HEADER = 56  # Cobblestone's own header (nonce, key commitment), measured
TAG = 16
AUTH_FAILED = r"^encrypted object failed authentication$"
# 40000 bytes: two full 16 KiB chunks and a final partial one.
PLAINTEXT = bytes(i % 253 for i in range(40000))


def seal(data: bytes = PLAINTEXT, ctx: ObjectContext = CTX, kek_version: int = 1) -> bytes:
    return b"".join(seal_object(DEK, ctx, [data], kek_version=kek_version))


def open_all(stored: bytes, ctx: ObjectContext = CTX, dek: bytes = DEK) -> bytes:
    return b"".join(open_object(dek, ctx, [stored]))


@pytest.fixture(scope="module")
def stored() -> bytes:
    return seal()


def chunk_ranges(stored: bytes) -> list[tuple[int, int]]:
    """Byte ranges of each Cobblestone chunk (ciphertext + tag) in a stored object."""
    start = HEADER_SIZE + COBBLE_HEADER
    ranges = []
    while start < len(stored):
        end = min(start + CHUNK + TAG, len(stored))
        ranges.append((start, end))
        start = end
    return ranges


# -- round trips --------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 70000])
def test_round_trip_preserves_plaintext_hash_and_size(size: int) -> None:
    data = bytes(i % 241 for i in range(size))
    sealed = seal_object(DEK, CTX, [data], kek_version=5)
    stored = b"".join(sealed)
    assert sealed.plaintext_size == size
    assert sealed.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    opened = open_object(DEK, CTX, [stored])
    assert b"".join(opened) == data
    assert opened.plaintext_sha256 == sealed.plaintext_sha256
    assert opened.plaintext_size == size
    assert opened.header == ObjectHeader(kek_version=5)


@pytest.mark.parametrize("piece", [1, 7, 13, 14, 4096, 16400, 1 << 20])
def test_any_split_of_input_and_stored_bytes_round_trips(piece: int) -> None:
    """The object format does not depend on how the caller cuts plaintext or ciphertext."""
    pieces = [PLAINTEXT[i : i + piece] for i in range(0, len(PLAINTEXT), piece)]
    stored = b"".join(seal_object(DEK, CTX, pieces, kek_version=1))
    stored_pieces = [stored[i : i + piece] for i in range(0, len(stored), piece)]
    assert b"".join(open_object(DEK, CTX, stored_pieces)) == PLAINTEXT


def test_large_input_pieces_are_sliced_so_output_chunks_stay_bounded() -> None:
    data = bytes(3 << 20)
    out = list(seal_object(DEK, CTX, [data], kek_version=1))
    assert max(len(c) for c in out) <= (1 << 20) + 4096
    assert max(len(c) for c in open_object(DEK, CTX, out)) <= 1 << 20


def test_source_reusing_one_buffer_is_hashed_and_encrypted_correctly() -> None:
    """A generator that overwrites its buffer between pieces must not confuse the hash thread."""
    buffer = bytearray(256 << 10)
    expected = hashlib.sha256()

    def source() -> Iterator[bytes]:
        for n in range(12):
            buffer[:] = bytes([n]) * len(buffer)
            expected.update(buffer)
            yield buffer  # type: ignore[misc]

    sealed = seal_object(DEK, CTX, source(), kek_version=1)
    stored = b"".join(sealed)
    assert sealed.plaintext_sha256 == expected.hexdigest()
    opened = open_object(DEK, CTX, [stored])
    assert hashlib.sha256(b"".join(opened)).hexdigest() == expected.hexdigest()


def test_same_input_seals_to_different_ciphertexts() -> None:
    """Cobblestone draws a fresh nonce per object: equal plaintexts do not show as equal."""
    assert seal() != seal()


def test_results_are_unavailable_before_iteration_ends_and_iteration_is_one_shot() -> None:
    sealed = seal_object(DEK, CTX, [b"abc"], kek_version=1)
    with pytest.raises(RuntimeError):
        _ = sealed.plaintext_sha256
    stored = b"".join(sealed)
    with pytest.raises(RuntimeError):
        list(sealed)
    opened = open_object(DEK, CTX, [stored])
    with pytest.raises(RuntimeError):
        _ = opened.plaintext_size
    list(opened)
    with pytest.raises(RuntimeError):
        list(opened)


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33)])
def test_wrong_key_length_is_a_programmer_error(bad: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal_object(bad, CTX, [b"x"], kek_version=1)
    with pytest.raises(ValueError, match="32 bytes"):
        open_object(bad, CTX, [b"x"])


@pytest.mark.parametrize("version", [0, -1, 2**32])
def test_kek_version_out_of_range_is_refused(version: int) -> None:
    with pytest.raises(ValueError, match="kek_version"):
        seal_object(DEK, CTX, [b"x"], kek_version=version)


def test_new_data_keys_are_32_random_bytes() -> None:
    keys = {new_data_key() for _ in range(64)}
    assert len(keys) == 64
    assert all(len(k) == 32 for k in keys)


# -- contexts -----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["vault_id", "record_id", "object_name"])
def test_empty_context_fields_are_refused(field: str) -> None:
    fields = {"vault_id": "v", "record_id": "r", "object_name": "o", field: ""}
    with pytest.raises(ValueError, match=field):
        ObjectContext(**fields)


def test_context_bytes_are_unambiguous() -> None:
    """Fields are JSON strings, so ("a","b/c") and ("a/b","c") cannot collide."""
    one = ObjectContext("v", "a", "b/c").to_bytes()
    two = ObjectContext("v", "a/b", "c").to_bytes()
    assert one != two
    assert json.loads(one)["format"] == 1
    assert RecordContext("v", "a").to_bytes() != ObjectContext("v", "a", "b").to_bytes()


# -- known answers ------------------------------------------------------------------


def load_vectors() -> dict[str, object]:
    return json.loads(VECTORS.read_text())  # type: ignore[no-any-return]


def test_context_bytes_match_the_recorded_vectors() -> None:
    vectors = load_vectors()
    ctx = ObjectContext(**vectors["context"])  # type: ignore[arg-type]
    assert ctx.to_bytes().hex() == vectors["context_bytes_hex"]
    assert ctx.record.to_bytes().hex() == vectors["record_context_bytes_hex"]


@pytest.mark.parametrize("index", range(5))
def test_recorded_objects_open_to_their_plaintext(index: int) -> None:
    vectors = load_vectors()
    case = vectors["objects"][index]  # type: ignore[index]
    dek = bytes.fromhex(vectors["dek_hex"])  # type: ignore[arg-type]
    ctx = ObjectContext(**vectors["context"])  # type: ignore[arg-type]
    stored = base64.b64decode(case["ciphertext_b64"])
    expected = bytes(i % 251 for i in range(case["plaintext_size"]))
    opened = open_object(dek, ctx, [stored])
    assert b"".join(opened) == expected
    assert opened.plaintext_sha256 == case["plaintext_sha256"]
    header = ObjectHeader(kek_version=case["kek_version"]).to_bytes()
    assert header.hex() == case["header_hex"] == stored[:HEADER_SIZE].hex()
    assert parse_object_header(stored).kek_version == case["kek_version"]


def test_header_layout_is_magic_version_suite_kek_version() -> None:
    assert ObjectHeader(kek_version=0x01020304).to_bytes() == b"PCIIOBJ\x01\x01\x01\x02\x03\x04"


# -- tampering ----------------------------------------------------------------------


def tamper_positions(stored: bytes) -> list[int]:
    """Every header byte, Cobblestone header byte and tag byte, plus a stride through chunks."""
    positions = set(range(HEADER_SIZE + COBBLE_HEADER))
    for start, end in chunk_ranges(stored):
        positions.update(range(end - TAG, end))  # the tag
        positions.update({start, start + 1, (start + end) // 2, end - TAG - 1})
        positions.update(range(start, end - TAG, 211))
    return sorted(positions)


def test_tamper_positions_cover_three_chunks(stored: bytes) -> None:
    assert len(chunk_ranges(stored)) == 3
    assert len(stored) == HEADER_SIZE + COBBLE_HEADER + len(PLAINTEXT) + 3 * TAG


def test_every_flipped_bit_anywhere_in_the_object_is_detected(stored: bytes) -> None:
    undetected = []
    for position in tamper_positions(stored):
        for bit in (0, 7):
            bad = bytearray(stored)
            bad[position] ^= 1 << bit
            try:
                open_all(bytes(bad))
            except IntegrityError:
                continue
            undetected.append((position, bit))
    assert undetected == []


@pytest.mark.parametrize(
    "cut",
    [
        "empty",
        "inside header",
        "header only",
        "inside cobblestone header",
        "cobblestone header only",
        "mid first chunk",
        "after first chunk",
        "after second chunk",
        "mid last chunk",
        "last byte",
    ],
)
def test_truncation_is_detected(stored: bytes, cut: str) -> None:
    (c0, _), (c1, _), (c2, end) = chunk_ranges(stored)
    length = {
        "empty": 0,
        "inside header": 5,
        "header only": HEADER_SIZE,
        "inside cobblestone header": HEADER_SIZE + 20,
        "cobblestone header only": c0,
        "mid first chunk": c0 + 5000,
        "after first chunk": c1,
        "after second chunk": c2,
        "mid last chunk": c2 + 100,
        "last byte": end - 1,
    }[cut]
    with pytest.raises(IntegrityError, match=AUTH_FAILED):
        open_all(stored[:length])


@pytest.mark.parametrize("suffix", [b"\x00", bytes(16), bytes(CHUNK + TAG)])
def test_extension_is_detected(stored: bytes, suffix: bytes) -> None:
    with pytest.raises(IntegrityError):
        open_all(stored + suffix)


def test_appending_a_copy_of_a_chunk_is_detected(stored: bytes) -> None:
    (c0, c1), _, _ = chunk_ranges(stored)
    with pytest.raises(IntegrityError):
        open_all(stored + stored[c0:c1])


def test_reordered_chunks_are_detected(stored: bytes) -> None:
    (c0, c1), (_, c2), (_, end) = chunk_ranges(stored)
    swapped = stored[:c0] + stored[c1:c2] + stored[c0:c1] + stored[c2:end]
    assert len(swapped) == len(stored)
    with pytest.raises(IntegrityError):
        open_all(swapped)


def test_dropped_middle_chunk_is_detected(stored: bytes) -> None:
    (_, c1), (_, c2), _ = chunk_ranges(stored)
    with pytest.raises(IntegrityError):
        open_all(stored[:c1] + stored[c2:])


@pytest.mark.parametrize(
    "other",
    [
        ObjectContext("v-other", CTX.record_id, CTX.object_name),
        ObjectContext(CTX.vault_id, "PCII-2026-000043", CTX.object_name),
        ObjectContext(CTX.vault_id, CTX.record_id, "files/1"),
    ],
    ids=["other vault", "other record", "renamed"],
)
def test_object_moved_between_records_or_renamed_fails(stored: bytes, other: ObjectContext) -> None:
    with pytest.raises(IntegrityError):
        open_all(stored, ctx=other)


def test_wrong_data_key_fails(stored: bytes) -> None:
    with pytest.raises(IntegrityError):
        open_all(stored, dek=bytes(32))


def test_rewritten_kek_version_in_header_fails(stored: bytes) -> None:
    """The header is bound into the Cobblestone context: rewriting its KEK version is caught."""
    forged = ObjectHeader(kek_version=2).to_bytes() + stored[HEADER_SIZE:]
    assert parse_object_header(forged).kek_version == 2  # parses: it is only unverified routing
    with pytest.raises(IntegrityError):
        open_all(forged)


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"PCIIOB",
        b"XCIIOBJ\x01\x01\x00\x00\x00\x01",
        b"PCIIOBJ\x02\x01\x00\x00\x00\x01",
        b"PCIIOBJ\x01\x02\x00\x00\x00\x01",
        b"PCIIOBJ\x01\x01\x00\x00\x00\x00",
    ],
    ids=["empty", "short", "bad magic", "future format", "unknown suite", "kek version 0"],
)
def test_unknown_headers_are_refused_with_the_same_message(header: bytes) -> None:
    with pytest.raises(IntegrityError, match=AUTH_FAILED):
        parse_object_header(header)
    with pytest.raises(IntegrityError, match=AUTH_FAILED):
        open_all(header + bytes(100))


def test_failures_do_not_say_which_check_failed(stored: bytes) -> None:
    messages = set()
    for bad in (stored[:-1], b"X" + stored[1:], stored[:200] + b"\x00" + stored[201:]):
        with pytest.raises(IntegrityError) as info:
            open_all(bad)
        messages.add(str(info.value))
    with pytest.raises(IntegrityError) as info:
        open_all(stored, ctx=ObjectContext("a", "b", "c"))
    messages.add(str(info.value))
    assert messages == {"encrypted object failed authentication"}


# -- all-or-nothing release ---------------------------------------------------------


def test_decrypt_to_file_writes_authenticated_plaintext_privately(
    stored: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "out.bin"
    digest, size = decrypt_to_file(DEK, CTX, [stored], dest)
    assert dest.read_bytes() == PLAINTEXT
    assert (digest, size) == (hashlib.sha256(PLAINTEXT).hexdigest(), len(PLAINTEXT))
    assert dest.stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [dest]


@pytest.mark.parametrize("damage", ["truncated", "flipped last tag", "flipped first chunk"])
def test_decrypt_to_file_leaves_nothing_behind_on_failure(
    stored: bytes, tmp_path: Path, damage: str
) -> None:
    bad = bytearray(stored)
    if damage == "truncated":
        del bad[-TAG:]
    elif damage == "flipped last tag":
        bad[-1] ^= 1
    else:
        bad[HEADER_SIZE + COBBLE_HEADER + 10] ^= 1
    dest = tmp_path / "out.bin"
    with pytest.raises(IntegrityError):
        decrypt_to_file(DEK, CTX, [bytes(bad)], dest)
    assert list(tmp_path.iterdir()) == []


def test_decrypt_to_file_refuses_to_overwrite_unless_asked(stored: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists"):
        decrypt_to_file(DEK, CTX, [stored], dest)
    assert dest.read_bytes() == b"keep me"
    decrypt_to_file(DEK, CTX, [stored], dest, overwrite=True)
    assert dest.read_bytes() == PLAINTEXT
    assert list(tmp_path.iterdir()) == [dest]


def test_decrypt_to_writer_writes_nothing_for_a_truncated_object(
    stored: bytes, tmp_path: Path
) -> None:
    """Two whole chunks authenticate on their own; the writer must still receive nothing."""
    (_, _), (_, c2), _ = chunk_ranges(stored)
    target = tmp_path / "out.bin"
    with target.open("wb") as writer, pytest.raises(IntegrityError):
        decrypt_to_writer(DEK, CTX, [stored[:c2]], writer, spool_dir=tmp_path)
    assert target.read_bytes() == b""
    with target.open("wb") as writer:
        digest, size = decrypt_to_writer(DEK, CTX, [stored], writer, spool_dir=tmp_path)
    assert target.read_bytes() == PLAINTEXT
    assert size == len(PLAINTEXT)
    assert digest == hashlib.sha256(PLAINTEXT).hexdigest()
