"""The ObjectStore conformance suite: every store keeps the protocol's invariants.

Each test runs on the filesystem store and on the S3 store over a real SeaweedFS.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import pytest

from pcii_vault.errors import (
    InputError,
    IntegrityError,
    NotFoundError,
    ObjectExistsError,
    PreconditionFailedError,
)
from pcii_vault.store.base import MAX_KEY_BYTES, ObjectStore
from pcii_vault.store.filesystem import FilesystemStore
from pcii_vault.store.s3 import S3Store

MiB = 1 << 20


def test_store_satisfies_protocol(any_store: ObjectStore) -> None:
    assert isinstance(any_store, ObjectStore)


def test_round_trip_returns_the_bytes_written_and_a_stable_etag(any_store: ObjectStore) -> None:
    data = os.urandom(1000)
    info = any_store.put_if_absent("records/r1/document", data)
    assert info.size == len(data)
    assert any_store.get("records/r1/document") == data
    got, etag = any_store.get_with_etag("records/r1/document")
    assert got == data
    assert etag == info.etag == any_store.head("records/r1/document").etag
    assert any_store.head("records/r1/document").size == len(data)


def test_empty_object_round_trips(any_store: ObjectStore) -> None:
    any_store.put_if_absent("log/empty", b"")
    assert any_store.get("log/empty") == b""
    assert any_store.head("log/empty").size == 0


def test_get_missing_raises_not_found(any_store: ObjectStore) -> None:
    with pytest.raises(NotFoundError):
        any_store.get("records/missing/document")
    with pytest.raises(NotFoundError):
        any_store.head("records/missing/document")
    with pytest.raises(NotFoundError):
        any_store.get_range("records/missing/document", 0, 10)
    with pytest.raises(NotFoundError):
        any_store.open_stream("records/missing/document")


def test_put_if_absent_refuses_an_existing_key_and_keeps_the_original(
    any_store: ObjectStore,
) -> None:
    any_store.put_if_absent("log/claims/0", b"first")
    with pytest.raises(ObjectExistsError):
        any_store.put_if_absent("log/claims/0", b"second")
    assert any_store.get("log/claims/0") == b"first"


def test_racing_put_if_absent_has_exactly_one_winner(any_store: ObjectStore) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    winners: list[int] = []
    losers: list[int] = []
    errors: list[BaseException] = []

    def race(n: int) -> None:
        barrier.wait()
        try:
            any_store.put_if_absent("log/claims/7", f"writer {n}".encode())
        except ObjectExistsError:
            losers.append(n)
        except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
            errors.append(exc)
        else:
            winners.append(n)

    workers = [threading.Thread(target=race, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(winners) == 1
    assert len(losers) == threads - 1
    assert any_store.get("log/claims/7") == f"writer {winners[0]}".encode()


def test_put_if_match_replaces_the_named_version(any_store: ObjectStore) -> None:
    first = any_store.put_if_absent("log/checkpoint", b"size 1")
    second = any_store.put_if_match("log/checkpoint", b"size 2", first.etag)
    assert any_store.get_with_etag("log/checkpoint") == (b"size 2", second.etag)
    assert second.etag != first.etag


def test_put_if_match_with_stale_etag_is_refused(any_store: ObjectStore) -> None:
    first = any_store.put_if_absent("log/checkpoint", b"size 1")
    any_store.put_if_match("log/checkpoint", b"size 2", first.etag)
    with pytest.raises(PreconditionFailedError):
        any_store.put_if_match("log/checkpoint", b"size 3 from a stale reader", first.etag)
    assert any_store.get("log/checkpoint") == b"size 2"


def test_put_if_match_none_on_existing_key_is_refused(any_store: ObjectStore) -> None:
    any_store.put_if_absent("log/checkpoint", b"size 1")
    with pytest.raises(PreconditionFailedError):
        any_store.put_if_match("log/checkpoint", b"other", None)
    assert any_store.get("log/checkpoint") == b"size 1"


def test_put_if_match_none_creates_an_absent_key(any_store: ObjectStore) -> None:
    info = any_store.put_if_match("log/checkpoint", b"size 0", None)
    assert any_store.get_with_etag("log/checkpoint") == (b"size 0", info.etag)


def test_put_if_match_on_missing_key_with_etag_is_refused(any_store: ObjectStore) -> None:
    with pytest.raises(PreconditionFailedError):
        any_store.put_if_match("log/checkpoint", b"x", hashlib.sha256(b"x").hexdigest())
    with pytest.raises(NotFoundError):
        any_store.get("log/checkpoint")


def test_ranged_get_returns_the_requested_slice(any_store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    any_store.put_if_absent("records/r/files/0", data)
    assert any_store.get_range("records/r/files/0", 0, 10) == data[:10]
    assert any_store.get_range("records/r/files/0", 1000, 517) == data[1000:1517]
    assert any_store.get_range("records/r/files/0", len(data) - 3, 100) == data[-3:]
    assert any_store.get_range("records/r/files/0", len(data) + 5, 10) == b""
    assert any_store.get_range("records/r/files/0", 5, 0) == b""
    with pytest.raises(InputError):
        any_store.get_range("records/r/files/0", -1, 10)


def test_open_stream_yields_the_whole_object_in_bounded_chunks(any_store: ObjectStore) -> None:
    data = os.urandom(3 * 65536 + 17)
    any_store.put_if_absent("records/r/document", data)
    chunks = list(any_store.open_stream("records/r/document", chunk_size=65536))
    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= 65536


def test_list_returns_keys_under_prefix_in_lexicographic_order(any_store: ObjectStore) -> None:
    keys = ["log/tile/0/001", "log/tile/0/000", "log/checkpoint", "records/a/document", "log/b"]
    for key in keys:
        any_store.put_if_absent(key, key.encode())
    listed = [info.key for info in any_store.list("log/")]
    assert listed == sorted(k for k in keys if k.startswith("log/"))
    assert [info.key for info in any_store.list("log/tile/0/00")] == [
        "log/tile/0/000",
        "log/tile/0/001",
    ]
    assert [info.key for info in any_store.list()] == sorted(keys)
    info = next(iter(any_store.list("log/checkpoint")))
    assert info.size == len(b"log/checkpoint")
    assert info.etag == any_store.head("log/checkpoint").etag
    assert list(any_store.list("nothing/")) == []


def test_delete_removes_and_is_idempotent(any_store: ObjectStore) -> None:
    any_store.put_if_absent("wrapped/r1", b"wrapped key")
    any_store.delete("wrapped/r1")
    with pytest.raises(NotFoundError):
        any_store.get("wrapped/r1")
    any_store.delete("wrapped/r1")
    any_store.delete("wrapped/never-existed")
    assert list(any_store.list("wrapped/")) == []
    any_store.put_if_absent("wrapped/r1", b"recreated after delete")
    assert any_store.get("wrapped/r1") == b"recreated after delete"


def _pattern_chunks(total: int, chunk: int) -> Iterator[bytes]:
    block = hashlib.sha256(b"seed").digest() * (chunk // 32)
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece


@pytest.mark.slow
def test_put_stream_of_20_mib_round_trips(any_store: ObjectStore) -> None:
    total = 20 * MiB + 12345  # three parts on S3, the last one short
    info = any_store.put_stream("records/big/files/0", _pattern_chunks(total, 1 << 16))
    expected = hashlib.sha256(b"".join(_pattern_chunks(total, 1 << 16))).digest()
    assert info.size == total
    assert any_store.head("records/big/files/0").size == total
    got = hashlib.sha256()
    for chunk in any_store.open_stream("records/big/files/0"):
        got.update(chunk)
    assert got.digest() == expected


def test_put_stream_of_a_small_stream_round_trips(any_store: ObjectStore) -> None:
    info = any_store.put_stream("records/s/document", [b"ab", b"", b"cd"])
    assert info.size == 4
    assert any_store.get("records/s/document") == b"abcd"


def test_put_stream_over_existing_key_is_refused_and_keeps_the_original(
    any_store: ObjectStore,
) -> None:
    any_store.put_if_absent("records/r/document", b"original")
    with pytest.raises(ObjectExistsError):
        any_store.put_stream("records/r/document", _pattern_chunks(9 * MiB, 1 << 16))
    assert any_store.get("records/r/document") == b"original"


class _StreamBrokeError(Exception):
    pass


def _failing_stream(good_bytes: int) -> Iterator[bytes]:
    yield from _pattern_chunks(good_bytes, 1 << 16)
    raise _StreamBrokeError


@pytest.mark.parametrize("good_bytes", [1000, 17 * MiB], ids=["small", "multipart"])
def test_failing_stream_leaves_nothing_visible(any_store: ObjectStore, good_bytes: int) -> None:
    with pytest.raises(_StreamBrokeError):
        any_store.put_stream("records/r/files/1", _failing_stream(good_bytes))
    with pytest.raises(NotFoundError):
        any_store.head("records/r/files/1")
    assert list(any_store.list()) == []
    # The key is still free for a writer that succeeds.
    any_store.put_if_absent("records/r/files/1", b"ok")


BAD_KEYS = {
    "dotdot": "records/../../etc/passwd",
    "dotdot-alone": "..",
    "dot-segment": "records/./x",
    "absolute": "/etc/passwd",
    "nul": "records/a\x00b",
    "empty": "",
    "empty-segment": "records//x",
    "trailing-slash": "records/x/",
    "backslash": "records\\..\\x",
    "newline": "records/a\nb",
    "hidden-segment": "records/.tmp-x",
    "overlong": "r/" + "a" * MAX_KEY_BYTES,
    "non-ascii": "records/é",
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_unsafe_keys_are_refused_by_every_operation(any_store: ObjectStore, key: str) -> None:
    operations = [
        lambda: any_store.put_if_absent(key, b"x"),
        lambda: any_store.put_if_match(key, b"x", None),
        lambda: any_store.put_stream(key, [b"x"]),
        lambda: any_store.get(key),
        lambda: any_store.get_range(key, 0, 1),
        lambda: any_store.head(key),
        lambda: any_store.delete(key),
    ]
    for operation in operations:
        with pytest.raises(InputError):
            operation()


def test_compare_and_swap_loses_no_update_under_contention(any_store: ObjectStore) -> None:
    """Threads incrementing a counter by CAS end with every increment applied once."""
    threads, rounds = 4, 5
    any_store.put_if_absent("log/checkpoint", b"0")
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def increment() -> None:
        barrier.wait()
        try:
            for _ in range(rounds):
                while True:
                    data, etag = any_store.get_with_etag("log/checkpoint")
                    try:
                        any_store.put_if_match("log/checkpoint", b"%d" % (int(data) + 1), etag)
                        break
                    except PreconditionFailedError:
                        continue
        except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=increment) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert any_store.get("log/checkpoint") == b"%d" % (threads * rounds)


@pytest.mark.parametrize("name", ["log/checkpoints/a b", "log/tile/x<y", "log/Größe", "log/:"])
def test_a_listed_name_the_vault_never_writes_is_planted(any_store: ObjectStore, name: str) -> None:
    """A tester's finding: a file named `log/checkpoints/a b` made `audit verify` and
    `audit report` exit 2 ("unsafe segment": bad input) where any other plant is exit 4."""
    any_store.put_if_absent("log/checkpoint", b"note")
    if isinstance(any_store, FilesystemStore):
        (any_store.root / name).parent.mkdir(parents=True, exist_ok=True)
        (any_store.root / name).write_bytes(b"junk")
    else:
        assert isinstance(any_store, S3Store)
        any_store._client.put_object(
            Bucket=any_store._bucket, Key=any_store._prefix + name, Body=b"junk"
        )
    with pytest.raises(IntegrityError, match="a name the vault never writes"):
        list(any_store.list("log/"))
