"""Many writers, threads and processes, and writers killed with SIGKILL mid-append."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from ledger_support import draft, ledger, signer, verifier
from vault_support import run_concurrently

from pcii_vault.ledger.log import CHECKPOINT_KEY, CLAIM_PREFIX, decode_claim
from pcii_vault.ledger.verify import verify_log
from pcii_vault.store.filesystem import FilesystemStore

_FORK = multiprocessing.get_context("fork")


def _ids(store) -> Counter[tuple[str, int]]:
    log = ledger(store)
    return Counter((e.details["writer"], e.details["i"]) for e in log.events(0, log.size()))


def _run_writers(run, count: int) -> None:
    """`count` threads, `run(writer)` each; any exception one raised fails the test."""
    errors: list[BaseException] = []

    def guarded(writer: int) -> None:
        try:
            run(writer)
        except BaseException as exc:  # noqa: BLE001 -- reported by the main thread
            errors.append(exc)

    run_concurrently(functools.partial(guarded, w) for w in range(count))
    assert errors == []


def _process_writer(root: str, writer: int, count: int) -> None:
    log = ledger(FilesystemStore(Path(root)))
    for i in range(count):
        log.append([draft(writer, i)])


@pytest.mark.slow
def test_four_processes_append_250_each_on_filesystem(tmp_path):
    """4 processes x 250 single appends: one consistent log, every event exactly once."""
    root = tmp_path / "objects"
    procs = [_FORK.Process(target=_process_writer, args=(str(root), w, 250)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    store = FilesystemStore(root)
    report = verify_log(store, verifier())
    assert report.size == 1000
    ids = _ids(store)
    assert set(ids.values()) == {1}
    assert set(ids) == {(str(w), i) for w in range(4) for i in range(250)}
    assert list(store.list(CLAIM_PREFIX)) == []


@pytest.mark.slow
@pytest.mark.s3
def test_four_threads_append_100_each_on_seaweedfs(s3_store):
    """4 threads x 100 appends on SeaweedFS: one consistent log, every event exactly once."""

    def run(writer: int) -> None:
        log = ledger(s3_store)
        for i in range(100):
            log.append([draft(writer, i)])

    _run_writers(run, 4)
    report = verify_log(s3_store, verifier())
    assert report.size == 400
    ids = _ids(s3_store)
    assert set(ids.values()) == {1}
    assert len(ids) == 400


def _crash_writer(root: str, acked: str, writer: str) -> None:
    log = ledger(FilesystemStore(Path(root)))
    i = 0
    with open(acked, "a", encoding="utf-8") as out:  # noqa: PTH123
        while True:
            batch = [draft(writer, i + k) for k in range(3)]
            log.append(batch)
            out.write(json.dumps([writer, i]) + "\n")
            out.flush()
            i += 3


@pytest.mark.slow
def test_kill_9_writers_fifty_times_then_log_verifies_and_appends(tmp_path):
    """SIGKILL at random moments: the log stays sound and no claimed event is lost."""
    root = tmp_path / "objects"
    acked = tmp_path / "acked.jsonl"
    rng = random.Random(20261128)
    store = FilesystemStore(root)
    for round_ in range(50):
        proc = _FORK.Process(target=_crash_writer, args=(str(root), str(acked), f"k{round_}"))
        proc.start()
        time.sleep(rng.uniform(0.0, 0.08))
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        size_at_kill = ledger(store).size()
        pending = []
        for info in store.list(CLAIM_PREFIX):
            pos = int(info.key[len(CLAIM_PREFIX) :])
            if pos >= size_at_kill:
                pending.append((pos, decode_claim(store.get(info.key), pos, signer().public_key)))
        # A new append must succeed and commit whatever the dead writer had claimed.
        ledger(store).append([draft("after", round_)])
        assert list(store.list(CLAIM_PREFIX)) == []
        log = ledger(store)
        for pos, entries in pending:
            assert list(log.entries(pos, pos + len(entries))) == entries
    report = verify_log(store, verifier())
    ids = _ids(store)
    assert set(ids.values()) == {1}, "an event was committed twice"
    for line in acked.read_text().splitlines():
        writer, first = json.loads(line)
        for k in range(3):
            assert ids[(writer, first + k)] == 1, "an acknowledged event is missing"
    assert all(ids[("after", r)] == 1 for r in range(50))
    assert report.size == sum(ids.values())


class _SlowCheckpointStore:
    """The store, with some reads of the checkpoint answered late (a slow network): by the
    time the answer is used, other writers may have committed past it."""

    def __init__(self, inner: FilesystemStore, seed: int) -> None:
        self._inner = inner
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def _late(self) -> None:
        with self._lock:
            delay = self._rng.random() * 0.004 if self._rng.random() < 0.5 else 0.0
        time.sleep(delay)

    def get(self, key: str) -> bytes:
        data = self._inner.get(key)
        if key == CHECKPOINT_KEY:
            self._late()
        return data

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        answer = self._inner.get_with_etag(key)
        if key == CHECKPOINT_KEY:
            self._late()
        return answer


@pytest.mark.slow
def test_every_act_is_built_on_the_entries_that_precede_it_in_the_log(tmp_path):
    """8 writers with slow checkpoint reads, 40 acts each: each act's builder was given
    exactly the entries the final log holds between what its writer had seen and the
    act's position (never a stale claim's), so a decision there is the auditor's."""
    inner = FilesystemStore(tmp_path / "objects")
    built: list[tuple[int, int, list[bytes]]] = []  # (known, position, before)

    def run(writer: int) -> None:
        log = ledger(_SlowCheckpointStore(inner, writer))
        known = 0
        for i in range(40):
            last: list[tuple[int, list[bytes]]] = []

            def build(position: int, before, i=i, last=last):
                last[:] = [(position, list(before))]
                return [draft(writer, i)] * (1 + i % 2)

            result = log.append_at(build, known_size=known)
            [(position, before)] = last
            assert position == result.indices[0]
            built.append((known, position, before))
            known = result.indices[-1] + 1

    _run_writers(run, 8)
    log = ledger(inner)
    entries = list(log.entries(0, log.size()))
    assert len(entries) == 8 * 60
    for known, position, before in built:
        assert before == entries[known:position], (known, position)
    verify_log(inner, verifier())
