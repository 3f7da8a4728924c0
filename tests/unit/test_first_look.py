"""An act's first look may be made on the index as it is, but never refuses on a stale one.

An act that logs is decided at its log position on the latest log, so its first look (to
refuse early) skips reading the checkpoint and syncing the index. These tests make the
index lag the log (another process appended without projecting its events) and check
that nothing is refused or decided on the stale index: a refusal is looked at again on
the latest log, a read (decided by its first look alone) always syncs first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from vault_support import VaultBench, run_concurrently

from pcii_vault.errors import ActConflictError, PolicyDenied
from pcii_vault.vault import Vault

SECRET = b"first-look-unseal-secret"


class Bench(VaultBench):
    def __init__(self, root: Path) -> None:
        super().__init__(root, secret=SECRET, attachment_bytes=b"not a pdf " * 50)

    def unprojected(self, act: Callable[[Vault], object]) -> None:
        """`act` in another process that appends to the log but leaves the index behind."""
        other = Vault(self.root / "vault", unseal=lambda: SECRET)
        other._catch_up = lambda appended: None  # type: ignore[method-assign]
        try:
            act(other)
        finally:
            other.close()

    def withdraw(self, vault: Vault, tracking: str) -> None:
        request = vault.sign(self.ids["owner"], "withdraw", record=tracking, params={"reason": "r"})
        vault.transition(request, "submission.withdrawn")

    def validate(self, vault: Vault, tracking: str) -> None:
        request = vault.sign(self.ids["office"], "validate", record=tracking)
        vault.transition(request, "submission.validated")


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    bench = Bench(tmp_path)
    yield bench
    bench.vault.close()


def _count_syncs(monkeypatch: pytest.MonkeyPatch, vault: Vault) -> list[int]:
    calls: list[int] = []
    sync = vault.sync

    def counting() -> None:
        calls.append(1)
        sync()

    monkeypatch.setattr(vault, "sync", counting)
    return calls


def test_a_logged_act_on_a_current_index_reads_no_checkpoint_first(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = bench.submit_receipt().tracking_number
    syncs = _count_syncs(monkeypatch, bench.vault)
    bench.validate(bench.vault, tracking)
    assert syncs == []
    assert bench.vault.index.record(tracking).state == "validated"


def test_an_act_projects_its_own_events_from_the_bytes_it_appended(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = bench.submit_receipt().tracking_number
    vault = bench.vault

    def read_back(*_args: object) -> None:
        raise AssertionError("the log was read back after this process's own append")

    monkeypatch.setattr(vault.ledger, "events", read_back)
    bench.validate(vault, tracking)
    assert vault.index.record(tracking).state == "validated"
    monkeypatch.undo()
    projected = vault.index.dump()
    vault.rebuild_index()
    assert vault.index.dump() == projected
    bench.audit()


def test_a_record_the_index_does_not_show_yet_is_not_refused(bench: Bench) -> None:
    vault = bench.vault
    tracking = vault.new_tracking_number()
    # Another process receives a record; the shared index does not show it yet.
    receipts: list[Any] = []

    def submit(other: Vault) -> None:
        bench.vault = other
        try:
            receipts.append(bench.submit_receipt())
        finally:
            bench.vault = vault

    bench.unprojected(submit)
    tracking = receipts[0].tracking_number
    assert vault.index.find_record(tracking) is None
    bench.validate(vault, tracking)
    assert vault.index.record(tracking).state == "validated"
    bench.audit()


def test_a_transition_the_index_does_not_show_yet_is_refused_at_the_position(
    bench: Bench,
) -> None:
    tracking = bench.submit_receipt().tracking_number
    bench.unprojected(lambda other: bench.withdraw(other, tracking))
    assert bench.vault.index.record(tracking).state == "received"  # stale
    with pytest.raises((PolicyDenied, ActConflictError), match="withdrawn"):
        bench.validate(bench.vault, tracking)
    assert bench.vault.index.record(tracking).state == "withdrawn"
    bench.audit()


def test_a_read_looks_at_the_latest_log(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    tracking = bench.submit_receipt().tracking_number
    bench.unprojected(lambda other: bench.withdraw(other, tracking))
    syncs = _count_syncs(monkeypatch, bench.vault)
    request = bench.vault.sign(bench.ids["owner"], "status", record=tracking)
    assert bench.vault.status(request).state == "withdrawn"
    assert syncs == [1]


def test_a_release_permitted_on_a_stale_index_is_refused_at_its_position(
    bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = bench.submit_receipt().tracking_number
    spool = tmp_path / "spool"
    spool.mkdir()
    review = bench.vault.sign(bench.ids["office"], "review", record=tracking, purpose="r")
    syncs = _count_syncs(monkeypatch, bench.vault)
    with bench.vault.serve_release(review, spool, in_memory=1 << 20):
        pass
    assert syncs == []  # a permitted release's first look reads no checkpoint
    # Another process logs the owner's withdrawal; this index still shows it received.
    bench.unprojected(lambda other: bench.withdraw(other, tracking))
    assert bench.vault.index.record(tracking).state == "received"  # stale
    again = bench.vault.sign(bench.ids["office"], "review", record=tracking, purpose="r")
    with (
        pytest.raises(ActConflictError, match="withdrawn now: nothing released"),
        bench.vault.serve_release(again, spool, in_memory=1 << 20),
    ):
        pytest.fail("a withdrawn record was released")
    assert not list(spool.iterdir())
    bench.audit()


def test_concurrent_reads_share_a_sync_and_a_later_one_sees_a_later_act(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    vault = bench.vault
    reader = vault.reader()
    reads: list[int] = []
    check_edge = reader.check_edge

    def slow_check_edge() -> Any:
        reads.append(1)
        time.sleep(0.05)
        return check_edge()

    monkeypatch.setattr(reader, "check_edge", slow_check_edge)
    start = threading.Barrier(8)

    def read() -> None:
        start.wait()
        vault.sync()

    run_concurrently([read] * 8)
    assert 1 <= len(reads) <= 2, reads  # eight reads at once, one or two checkpoint reads
    # A sync asked for after another process's act has been logged is never skipped.
    tracking = bench.submit_receipt().tracking_number
    bench.unprojected(lambda other: bench.withdraw(other, tracking))
    vault.sync()
    assert vault.index.record(tracking).state == "withdrawn"
