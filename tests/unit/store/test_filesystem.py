"""FilesystemStore specifics: the root cannot be escaped, writes are atomic and clean."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pcii_vault.errors import (
    BackendError,
    IntegrityError,
    NotFoundError,
    ObjectExistsError,
    PreconditionFailedError,
)
from pcii_vault.store import filesystem
from pcii_vault.store.filesystem import FilesystemStore


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_objects_are_plain_files_under_the_root(fs_store: FilesystemStore) -> None:
    fs_store.put_if_absent("records/r1/document", b"abc")
    assert (fs_store.root / "records" / "r1" / "document").read_bytes() == b"abc"
    assert fs_store.url == fs_store.root.as_uri()


def test_symlink_inside_root_cannot_lead_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not for the vault")
    store = FilesystemStore(tmp_path / "objects")
    (store.root / "records").symlink_to(outside)
    with pytest.raises(IntegrityError, match="outside the store root"):
        store.get("records/secret")
    with pytest.raises(IntegrityError, match="outside the store root"):
        store.put_if_absent("records/new", b"x")
    assert [p.name for p in outside.iterdir()] == ["secret"]


def test_a_symlinked_object_leading_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not for the vault")
    store = FilesystemStore(tmp_path / "objects")
    store.put_if_absent("records/r1/document", b"abc")
    (store.root / "records" / "r1" / "copy").symlink_to(outside / "secret")
    (store.root / "records" / "r1" / "dangling").symlink_to(outside / "missing")
    for key in ("records/r1/copy", "records/r1/dangling"):
        with pytest.raises(IntegrityError, match="outside the store root"):
            store.get(key)
    with pytest.raises(IntegrityError, match="outside the store root"):
        store.put_if_absent("records/r1/dangling", b"x")
    assert not (outside / "missing").exists()


def test_the_fast_resolution_is_realpath(tmp_path: Path) -> None:
    """What the store checks is what `os.path.realpath` says, in every shape of path."""
    root = tmp_path / "root"
    (root / "log" / "tile").mkdir(parents=True)
    (root / "log" / "checkpoint").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (root / "inner").symlink_to(root / "log")
    (root / "relative").symlink_to("log/tile")
    (root / "out").symlink_to(tmp_path / "elsewhere")
    (root / "log" / "loop").symlink_to(root / "log" / "loop")
    (root / "log" / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    (root / "log" / "file-link").symlink_to(root / "log" / "checkpoint")
    paths = [
        "log/checkpoint",
        "log/missing",
        "log/tile",
        "missing-dir/x/y",
        "inner/checkpoint",
        "inner/missing",
        "relative/x",
        "out",
        "out/new",
        "log/loop",
        "log/dangling",
        "log/file-link",
        "log/checkpoint/below-a-file",
    ]
    for relative in paths:
        path = str(root / relative)
        assert filesystem._resolved(path) == os.path.realpath(path), relative


def test_leftover_temporary_files_are_not_listed(fs_store: FilesystemStore) -> None:
    fs_store.put_if_absent("log/a", b"a")
    (fs_store.root / "log" / ".tmp-crashed-writer").write_bytes(b"half")
    assert [info.key for info in fs_store.list()] == ["log/a"]


def test_successful_and_refused_writes_leave_no_temporary_files(
    fs_store: FilesystemStore,
) -> None:
    fs_store.put_if_absent("log/a", b"a")
    with pytest.raises(ObjectExistsError):
        fs_store.put_if_absent("log/a", b"b")
    info = fs_store.put_if_match("log/a", b"c", fs_store.head("log/a").etag)
    assert info.etag == fs_store.head("log/a").etag
    assert _all_files(fs_store.root) == [".pcii-store.lock", "log/a"]


def test_key_below_an_existing_object_is_refused(fs_store: FilesystemStore) -> None:
    """No key of the vault's is another's folder: a file there was put there (exit 4)."""
    fs_store.put_if_absent("records/r1", b"object, not a directory")
    with pytest.raises(IntegrityError, match="file at records/r1 where the vault keeps a folder"):
        fs_store.put_if_absent("records/r1/document", b"x")
    with pytest.raises(NotFoundError):
        fs_store.get("records/r1/document")


def test_prefix_directory_is_not_an_object(fs_store: FilesystemStore) -> None:
    fs_store.put_if_absent("records/r1/document", b"x")
    with pytest.raises(NotFoundError):
        fs_store.get("records/r1")
    with pytest.raises(ObjectExistsError):
        fs_store.put_if_absent("records/r1", b"x")


def test_disk_full_is_a_one_line_backend_error(
    fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(BackendError) as caught:
        fs_store.put_if_absent("records/r1/document", b"abc")
    assert "No space left on device" in str(caught.value)
    assert "\n" not in str(caught.value)
    monkeypatch.undo()
    with pytest.raises(NotFoundError):
        fs_store.get("records/r1/document")
    assert [p for p in _all_files(fs_store.root) if ".tmp-" in p] == []


def test_etag_is_the_sha256_of_the_content(fs_store: FilesystemStore) -> None:
    info = fs_store.put_if_absent("log/x", b"abc")
    assert info.etag == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert fs_store.head("log/x").etag == info.etag


def test_replaced_object_gets_a_fresh_etag_on_head(fs_store: FilesystemStore) -> None:
    first = fs_store.put_if_absent("log/x", b"one")
    assert fs_store.head("log/x").etag == first.etag  # cached now
    second = fs_store.put_if_match("log/x", b"two", first.etag)
    assert fs_store.head("log/x").etag == second.etag != first.etag


def test_a_lock_held_too_long_is_an_error_not_a_hang(
    fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped process (Ctrl-Z) holding the store's lock stalled every writer for good."""
    fs_store.put_if_absent("log/checkpoint", b"one")
    etag = fs_store.head("log/checkpoint").etag
    monkeypatch.setattr(filesystem, "_LOCK_WAIT_S", 0.2)
    holder = os.open(fs_store._root / filesystem._LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: another holder
        with pytest.raises(BackendError, match="held by another process"):
            fs_store.put_if_match("log/checkpoint", b"two", etag)
    finally:
        os.close(holder)
    assert fs_store.get("log/checkpoint") == b"one"
    fs_store.put_if_match("log/checkpoint", b"two", etag)
    assert fs_store.get("log/checkpoint") == b"two"


class _UploadCutError(Exception):
    """The upload's stream stopped (the server's read timeout, say)."""


def test_a_failed_write_leaves_no_folder_it_made(
    fs_store: FilesystemStore,
) -> None:
    """An upload cut short (a timeout, a closed connection) leaves no empty record folder."""

    def cut() -> Iterator[bytes]:
        yield b"half an upload"
        raise _UploadCutError

    fs_store.put_if_absent("records/r0/document", b"another record")
    with pytest.raises(_UploadCutError):
        fs_store.put_stream("records/r1/files/0", cut())
    assert not (fs_store.root / "records" / "r1").exists()
    assert (fs_store.root / "records" / "r0" / "document").is_file()  # others stay


def test_an_empty_record_folder_is_removed_and_a_full_one_stays(
    fs_store: FilesystemStore,
) -> None:
    fs_store.put_if_absent("records/r1/document", b"x")
    fs_store.put_if_absent("records/r2/document", b"y")
    fs_store.delete("records/r1/document")
    fs_store.remove_empty_folder("records/r1/")
    fs_store.remove_empty_folder("records/r2/")
    assert not (fs_store.root / "records" / "r1").exists()
    assert fs_store.get("records/r2/document") == b"y"
    assert (fs_store.root / "records").is_dir()  # its parent stays


def test_a_write_into_a_folder_removed_meanwhile_makes_it_again(
    fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process removed the (empty) folder between its making and the write."""
    made = FilesystemStore._ensure_parent
    removals: list[Path] = []

    def racing(self: FilesystemStore, path: Path) -> list[Path]:
        created = made(self, path)
        if not removals:
            removals.append(path.parent)
            path.parent.rmdir()
        return created

    monkeypatch.setattr(FilesystemStore, "_ensure_parent", racing)
    fs_store.put_if_absent("records/r1/document", b"x")
    assert removals == [fs_store.root / "records" / "r1"]
    assert fs_store.get("records/r1/document") == b"x"


def test_leftovers_are_old_temporary_files_and_empty_record_folders(
    fs_store: FilesystemStore,
) -> None:
    fs_store.put_if_absent("records/r1/document", b"x")
    fs_store.put_if_absent("records/r2/document", b"y")
    fs_store.delete("records/r2/document")
    (fs_store.root / "records" / "r3").mkdir()
    (fs_store.root / "records" / "r3" / ".tmp-crashed").write_bytes(b"half")
    (fs_store.root / "records" / "r4" / "files").mkdir(parents=True)  # folders only
    (fs_store.root / "log" / "claims").mkdir(parents=True)  # an empty folder in use
    later = datetime.now(UTC) + timedelta(minutes=1)
    found = fs_store.leftovers(later)
    root = fs_store.root
    assert found == [root / "records/r2", root / "records/r3/.tmp-crashed", root / "records/r4"]
    assert fs_store.leftovers(later - timedelta(hours=1)) == []  # younger than the grace
    for path in found:
        fs_store.remove_leftover(path)
    assert fs_store.leftovers(later) == [root / "records/r3"]  # empty now: next time
    assert fs_store.get("records/r1/document") == b"x"
    assert (root / "log" / "claims").is_dir()


def test_a_records_folder_planted_as_a_symlink_is_not_cleaned_through(
    fs_store: FilesystemStore, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "empty").mkdir(parents=True)
    (fs_store.root / "records").symlink_to(elsewhere)
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert fs_store.leftovers(later) == []
    assert (elsewhere / "empty").is_dir()


def test_a_directory_planted_where_an_object_is_deleted_is_tampering(
    fs_store: FilesystemStore,
) -> None:
    """A tester's finding: a directory at `wrapped/<id>` made a withdrawal's key deletion
    exit 2 ("not found") for ever, the crypto-shred never done. It is planted: exit 4."""
    fs_store.put_if_absent("wrapped/r1/x", b"a copy of the key")
    with pytest.raises(IntegrityError, match="directory is planted"):
        fs_store.delete("wrapped/r1")


def _objects_and_temporaries(store: FilesystemStore) -> list[str]:
    return [name for name in _all_files(store.root) if name != filesystem._LOCK_NAME]


def _swap_leftover(store: FilesystemStore, key: str) -> Path:
    """What a process killed inside `put_if_match` leaves: its temporary copy."""
    leftover = filesystem._swap_temp(store.root / key)
    leftover.write_bytes(b"a wrapped data key, copied")
    return leftover


def test_deleting_a_key_deletes_a_replacement_a_crash_left(fs_store: FilesystemStore) -> None:
    """A tester's finding: `keys rewrap` killed mid-replacement left a wrapped data key in
    a temporary file, and destroying the record deleted the key but not that copy."""
    fs_store.put_if_absent("wrapped/PCII-2026-00000001", b"wrapped")
    leftover = _swap_leftover(fs_store, "wrapped/PCII-2026-00000001")
    fs_store.delete("wrapped/PCII-2026-00000001")
    assert _objects_and_temporaries(fs_store) == []
    assert not leftover.exists()


def test_a_replacement_takes_the_place_of_one_a_crash_left(fs_store: FilesystemStore) -> None:
    info = fs_store.put_if_absent("wrapped/PCII-2026-00000001", b"wrapped")
    _swap_leftover(fs_store, "wrapped/PCII-2026-00000001")
    fs_store.put_if_match("wrapped/PCII-2026-00000001", b"rewrapped", info.etag)
    assert fs_store.get("wrapped/PCII-2026-00000001") == b"rewrapped"
    assert _objects_and_temporaries(fs_store) == ["wrapped/PCII-2026-00000001"]


def test_a_delete_waits_for_a_replacement_whose_check_passed(
    fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the lock of `put_if_match`: a key deleted meanwhile is not put back."""
    monkeypatch.setattr(filesystem, "_LOCK_WAIT_S", 0.2)
    info = fs_store.put_if_absent("wrapped/PCII-2026-00000001", b"wrapped")
    lock = os.open(fs_store.root / filesystem._LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a replacement in progress holds it
        with pytest.raises(BackendError):
            fs_store.delete("wrapped/PCII-2026-00000001")
    finally:
        os.close(lock)
    fs_store.delete("wrapped/PCII-2026-00000001")
    with pytest.raises(PreconditionFailedError):
        fs_store.put_if_match("wrapped/PCII-2026-00000001", b"rewrapped", info.etag)


def test_folders_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """A tester's finding: under umask 000 an external store's folders were 0777, and any
    local user could rename `wrapped/<tracking>` away (the record lost for good)."""
    previous = os.umask(0)
    try:
        store = FilesystemStore(tmp_path / "store")
        store.put_if_absent("wrapped/PCII-2026-00000001", b"key")
        store.put_if_absent("records/PCII-2026-00000001/files/0", b"data")
    finally:
        os.umask(previous)
    folders = [tmp_path / "store", *(p for p in (tmp_path / "store").rglob("*") if p.is_dir())]
    assert len(folders) == 5
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {oct(0o700)}


@pytest.mark.parametrize("where", ["a file", "/dev/zero"])
def test_a_new_store_path_that_is_no_directory_is_bad_input(tmp_path: Path, where: str) -> None:
    """A tester's finding: `init --store file:///dev/zero` was exit 5 'File exists'."""
    from pcii_vault.errors import InputError

    path = Path("/dev/zero") if where == "/dev/zero" else tmp_path / "file"
    if where == "a file":
        path.write_bytes(b"x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        FilesystemStore(path)
