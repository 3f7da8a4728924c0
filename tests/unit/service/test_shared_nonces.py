"""The nonce cache the worker processes of one server share (`SharedNonceCache`).

What one worker accepted, every other refuses: exactly one acceptance per nonce, across
threads and across processes on one file; stale nonces are refused; expired rows go; the
file is private to the server.
"""

from __future__ import annotations

import multiprocessing
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pcii_vault.service.httpsig import SharedNonceCache

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)


def test_a_nonce_accepted_by_one_worker_is_refused_by_another(tmp_path: Path) -> None:
    path = tmp_path / "nonces.sqlite"
    first, second = SharedNonceCache(path, WINDOW), SharedNonceCache(path, WINDOW)
    try:
        assert first.check_and_add("alice", "n1", NOW, now=NOW)
        assert not second.check_and_add("alice", "n1", NOW, now=NOW + timedelta(seconds=30))
        assert not first.check_and_add("alice", "n1", NOW, now=NOW)
        assert second.check_and_add("bob", "n1", NOW, now=NOW)  # another key may use it
        assert len(first) == len(second) == 2
    finally:
        first.close()
        second.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_worker_started_later_remembers_from_the_servers_start(tmp_path: Path) -> None:
    # A replacement worker finds every nonce accepted since the file was made: it takes
    # that start, not its own, as the time before which it cannot tell a replay.
    path = tmp_path / "nonces.sqlite"
    SharedNonceCache(path, WINDOW, since=NOW).close()  # the parent, at the server's start
    worker = SharedNonceCache(path, WINDOW, since=NOW + timedelta(minutes=5))
    try:
        assert worker.since == NOW
    finally:
        worker.close()


def test_a_stale_nonce_is_refused_and_expired_rows_are_deleted(tmp_path: Path) -> None:
    cache = SharedNonceCache(tmp_path / "nonces.sqlite", WINDOW)
    try:
        assert not cache.check_and_add("k", "old", NOW - timedelta(seconds=61), now=NOW)
        assert len(cache) == 0
        for n in range(SharedNonceCache._PURGE_EVERY + 1):
            at = NOW + timedelta(seconds=n)
            assert cache.check_and_add("k", f"n{n}", at, now=at)
        # Only rows created within a window of the last purge are left.
        assert len(cache) <= 62
    finally:
        cache.close()


def test_the_shared_cache_needs_a_positive_window_and_aware_times(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        SharedNonceCache(tmp_path / "n.sqlite", timedelta(0))
    cache = SharedNonceCache(tmp_path / "n.sqlite", WINDOW)
    try:
        with pytest.raises(ValueError, match="time zone"):
            cache.check_and_add("k", "n", NOW.replace(tzinfo=None))
    finally:
        cache.close()


def _accept_all(path: str, count: int, results: multiprocessing.Queue[int]) -> None:
    cache = SharedNonceCache(Path(path), WINDOW)
    accepted = 0
    lock = threading.Lock()

    def race() -> None:
        nonlocal accepted
        mine = sum(cache.check_and_add("k", f"n{i}", NOW, now=NOW) for i in range(count))
        with lock:
            accepted += mine

    threads = [threading.Thread(target=race) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cache.close()
    results.put(accepted)


def test_each_nonce_is_accepted_once_across_processes_and_threads(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    path = str(tmp_path / "nonces.sqlite")
    SharedNonceCache(Path(path), WINDOW).close()  # the parent makes it, as `pcii serve` does
    processes = [context.Process(target=_accept_all, args=(path, 300, results)) for _ in range(3)]
    for process in processes:
        process.start()
    accepted = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join()
    assert sum(accepted) == 300, accepted


@pytest.mark.parametrize(
    "damage", [b"not a database at all", b"", "began-abc", "began-future"], ids=str
)
def test_a_damaged_nonce_file_is_made_anew_starting_now(
    tmp_path: Path, damage: bytes | str
) -> None:
    """The file outlives the server (kept across restarts): one damaged or edited since
    is made anew, never a crash at start; its start is then now, so nothing signed
    before it can pass for new."""
    import sqlite3

    path = tmp_path / "nonces.sqlite"
    SharedNonceCache(path, WINDOW, since=NOW).close()
    if isinstance(damage, bytes):
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(damage * 100)
    else:
        db = sqlite3.connect(path, isolation_level=None)
        value = "abc" if damage == "began-abc" else (NOW + timedelta(days=3650)).timestamp()
        db.execute("UPDATE began SET since = ?", (value,))
        db.close()
    later = datetime.now(UTC).replace(microsecond=0)
    cache = SharedNonceCache(path, WINDOW, since=later)
    try:
        assert cache.since == later
        assert cache.check_and_add("k", "n", later, now=later)
    finally:
        cache.close()


@pytest.mark.parametrize("planted", ["symlink", "directory", "fifo"])
def test_something_else_than_a_file_at_the_nonce_file_is_refused(
    tmp_path: Path, planted: str
) -> None:
    import os

    from pcii_vault.errors import IntegrityError

    path = tmp_path / "nonces.sqlite"
    if planted == "symlink":
        path.symlink_to(tmp_path / "elsewhere.sqlite")
    elif planted == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    with pytest.raises(IntegrityError, match="is not the server's nonce file") as refused:
        SharedNonceCache(path, WINDOW)
    assert not (tmp_path / "elsewhere.sqlite").exists()
    # A tester's finding: a dangling link was "Too many levels of symbolic links".
    assert ("(a symlink)" in str(refused.value)) == (planted == "symlink")


@pytest.mark.parametrize(
    "damage", ["overwritten", "overwritten after use", "replaced", "a link to a fifo"]
)
def test_a_nonce_file_damaged_under_a_running_server_refuses_every_request(
    tmp_path: Path, damage: str
) -> None:
    """A tester's finding: every signed request then failed with exit 1 (DatabaseError,
    HTTP 500) while `/readyz` said ready; the next: a server that had read the file went
    on from SQLite's page cache, never noticing. Now it is named (exit 4, the way out),
    fail closed, and the readiness probe says so."""
    from pcii_vault.errors import IntegrityError

    path = tmp_path / "spool" / "nonces.sqlite"
    path.parent.mkdir()
    SharedNonceCache(path, WINDOW).close()  # made before the server announces itself
    cache = SharedNonceCache(path, WINDOW)  # then opened to serve
    try:
        if damage == "overwritten after use":
            assert cache.check_and_add("alice", "n0", NOW, now=NOW)
            cache.check()
        if damage == "replaced":
            other = tmp_path / "other.sqlite"
            SharedNonceCache(other, WINDOW).close()
            other.replace(path)
        elif damage == "a link to a fifo":  # never opened: no request waits on it
            import os

            os.mkfifo(tmp_path / "fifo")
            path.unlink()
            path.symlink_to(tmp_path / "fifo")
        else:
            path.write_bytes(bytes(range(256)) * 32)  # in place: the server's open file
        for attempt in (
            lambda: cache.check_and_add("alice", "n2", NOW, now=NOW),
            cache.check,
        ):
            with pytest.raises(IntegrityError, match=r"spool/nonces\.sqlite.*restart the server"):
                attempt()
    finally:
        cache.close()
