"""Nothing left half-done: interrupted shredding, orphaned uploads, failed release writes.

`Vault.maintain` (`pcii maintenance`) finishes the shredding the log already records and
removes what never became part of the vault; a release that cannot be written after its
permit is logged says so in one line and in the log.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from vault_support import VaultBench

from pcii_vault.durable import staging_prefix, temp_name
from pcii_vault.errors import ActConflictError, BackendError, InputError, IntegrityError
from pcii_vault.models.request import SignedRequest
from pcii_vault.models.submission import example_attachment_bytes
from pcii_vault.store.filesystem import FilesystemStore
from pcii_vault.vault import Vault

SECRET = b"half-done-secret"
WATER = "Water and Wastewater Systems"


@pytest.fixture
def bench(tmp_path: Path) -> VaultBench:
    made = VaultBench(tmp_path, secret=SECRET, attachment_bytes=example_attachment_bytes())
    made.add("analyst", "analyst", "EPA Water", "federal", sectors=[WATER])
    return made


def _store_root(bench: VaultBench) -> Path:
    assert isinstance(bench.real, FilesystemStore)
    return bench.real.root


def test_an_empty_record_folder_is_a_leftover_maintenance_removes(bench: VaultBench) -> None:
    """A folder a crash left empty (its objects removed, not the folder) goes after the grace."""
    vault = bench.vault
    tracking = bench.upload(attach=False).tracking_number
    for info in list(bench.real.list(f"records/{tracking}/")):
        bench.real.delete(info.key)
    folder = _store_root(bench) / "records" / tracking
    assert folder.is_dir()
    assert vault.maintain(grace=timedelta(hours=24), dry_run=False).leftovers == ()
    listed = vault.maintain(grace=timedelta(0), dry_run=True)
    assert listed.leftovers == (str(folder),)
    assert folder.is_dir()  # a dry run changes nothing
    assert vault.maintain(grace=timedelta(0), dry_run=False).leftovers == (str(folder),)
    assert not folder.exists()
    bench.audit()


def test_an_upload_killed_mid_write_is_cleared_by_one_maintenance(bench: VaultBench) -> None:
    """A tester's finding: a submit killed while writing its attachment left its document
    and a temporary file; one `maintenance` removed both but left the emptied folders,
    which the next `--dry-run` listed."""
    tracking = bench.upload(attach=False).tracking_number
    folder = _store_root(bench) / "records" / tracking
    (folder / "files").mkdir()
    (folder / "files" / ".tmp-0123456789abcdef01234567").write_bytes(b"half an attachment")
    done = bench.vault.maintain(grace=timedelta(0), dry_run=False)
    assert done.orphans and done.leftovers
    assert not folder.exists()
    again = bench.vault.maintain(grace=timedelta(0), dry_run=True)
    assert (again.orphans, again.leftovers) == ((), ())
    bench.audit()


def test_a_destroyed_record_leaves_no_folder(bench: VaultBench) -> None:
    tracking = _destroyed(bench)
    assert not (_store_root(bench) / "records" / tracking).exists()
    assert (_store_root(bench) / "records").is_dir()


def _destroyed(bench: VaultBench) -> str:
    tracking = bench.submit_receipt().tracking_number
    vault = bench.vault
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    vault.destroy(vault.sign(bench.ids["office"], "destroy", record=tracking, params={}))
    return tracking


def test_a_destroy_whose_key_deletion_failed_says_it_is_logged(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: a destroy whose key deletion the store refused said only what
    the store said, as if nothing had happened; it is logged, and maintenance finishes it."""
    tracking = bench.submit_receipt().tracking_number
    vault = bench.vault
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    store = vault.store
    delete = store.delete

    def refused(key: str) -> None:
        if key.startswith("wrapped/"):
            raise BackendError(f"cannot delete {key}: the store is read-only")
        delete(key)

    monkeypatch.setattr(store, "delete", refused)
    with pytest.raises(BackendError, match=r"the destruction of PCII-.* is logged, but its data"):
        vault.destroy(vault.sign(bench.ids["office"], "destroy", record=tracking, params={}))
    assert vault.index.record(tracking).state == "destroyed"
    monkeypatch.setattr(store, "delete", delete)
    assert vault.maintain(grace=timedelta(hours=24), dry_run=False).unfinished_shreds == (tracking,)


def test_a_withdrawal_whose_ciphertext_cannot_be_removed_warns(bench: VaultBench) -> None:
    """A tester's finding: with `records` made a symlink, withdraw deleted the data key
    (the shred that counts) and left the ciphertext without a word."""
    import shutil

    import structlog.testing

    tracking = bench.submit_receipt().tracking_number
    root = _store_root(bench)
    shutil.copytree(root / "records", root / "copy")
    shutil.rmtree(root / "records")
    (root / "records").symlink_to("copy")
    vault = bench.vault
    with structlog.testing.capture_logs() as logged:
        row = vault.transition(
            vault.sign(bench.ids["owner"], "withdraw", record=tracking), "submission.withdrawn"
        )
    assert row.state == "withdrawn"
    assert list(bench.real.list(f"wrapped/{tracking}")) == []
    assert "record_ciphertext_not_removed" in [e["event"] for e in logged]
    assert list((root / "copy" / tracking).iterdir())  # nothing deleted through the link


def test_a_destroy_whose_key_deletion_crashed_is_finished_by_maintenance(
    bench: VaultBench,
) -> None:
    tracking = _destroyed(bench)
    # The crash: the event is logged, the wrapped key and ciphertext are still there.
    bench.real.put_if_absent(f"wrapped/{tracking}", b"\x01" * 65)
    bench.real.put_if_absent(f"records/{tracking}/document", b"ciphertext")
    listed = bench.vault.maintain(grace=timedelta(hours=24), dry_run=True)
    assert listed.unfinished_shreds == (tracking,)
    assert bench.real.head(f"wrapped/{tracking}")  # a dry run changes nothing
    done = bench.vault.maintain(grace=timedelta(hours=24), dry_run=False)
    assert done.unfinished_shreds == (tracking,)
    assert list(bench.real.list(f"wrapped/{tracking}")) == []
    assert list(bench.real.list(f"records/{tracking}/")) == []
    assert not (_store_root(bench) / "records" / tracking).exists()  # nor its folder
    again = bench.vault.maintain(grace=timedelta(hours=24), dry_run=False)
    assert again.unfinished_shreds == ()
    bench.audit()


def test_an_upload_that_never_reached_the_log_is_removed_after_the_grace_period(
    bench: VaultBench,
) -> None:
    vault = bench.vault
    tracking = bench.upload(attach=False).tracking_number
    kept = bench.submit_receipt().tracking_number
    young = vault.maintain(grace=timedelta(hours=24), dry_run=True)
    assert young.orphans == ()  # an upload in flight is younger than the grace period
    done = vault.maintain(grace=timedelta(0), dry_run=False)
    assert done.orphans and all(key.split("/")[1] == tracking for key in done.orphans)
    assert list(bench.real.list(f"records/{tracking}/")) == []
    assert not (_store_root(bench) / "records" / tracking).exists()
    assert list(bench.real.list(f"records/{kept}/"))  # a record's objects stay
    bench.audit()


def test_an_object_beside_a_record_that_its_manifest_does_not_name_is_removed(
    bench: VaultBench,
) -> None:
    """Uploaded beside a submission (or into it after it was logged): nothing reads it."""
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    named = {info.key for info in bench.real.list(f"records/{tracking}/")}
    stray = f"records/{tracking}/files/50"
    bench.real.put_if_absent(stray, b"5 MB nobody will ever read")
    assert vault.maintain(grace=timedelta(0), dry_run=True).orphans == (stray,)
    assert vault.maintain(grace=timedelta(0), dry_run=False).orphans == (stray,)
    assert {info.key for info in bench.real.list(f"records/{tracking}/")} == named
    bench.audit()


def test_a_submission_logged_while_maintenance_lists_the_store_is_not_an_orphan(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`maintenance --grace-hours 0` beside a submit: the record keeps its key and objects."""
    vault = bench.vault
    sealed = bench.upload(attach=False)
    tracking = sealed.tracking_number
    request = vault.sign(
        bench.ids["owner"], "submit", record=tracking, params={"files": list(sealed.files)}
    )
    listing = vault.store.list

    def list_then_submit(prefix: str) -> Any:
        found = list(listing(prefix))
        if prefix == "wrapped/" and not list(listing(f"wrapped/{tracking}")):
            vault.receive(request, sealed)  # the owner's submit lands meanwhile
        return iter(found)

    monkeypatch.setattr(vault.store, "list", list_then_submit)
    done = vault.maintain(grace=timedelta(0), dry_run=False)
    monkeypatch.undo()
    assert not any(tracking in key for key in done.orphans), done.orphans
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    bench.real.head(f"wrapped/{tracking}")
    assert list(bench.real.list(f"records/{tracking}/"))
    bench.audit()


def _retrieve(bench: VaultBench, tracking: str) -> SignedRequest:
    """The analyst's signed retrieve request for `tracking`."""
    return bench.retrieve(tracking)


@pytest.mark.parametrize(
    ("code", "error"), [(errno.ENOSPC, InputError), (errno.EACCES, InputError)]
)
def test_a_release_that_cannot_be_written_is_one_line_and_logged(
    bench: VaultBench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, error: type
) -> None:
    """Embedded, the release is staged beside `--out`: the caller's destination, exit 2
    whatever the cause (a full disk included), as README's "Output files" says."""
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )

    def fail(*_args: object, **_kwargs: object) -> tuple[str, ...]:
        raise OSError(code, "simulated", str(tmp_path / "out"))

    monkeypatch.setattr(Vault, "_write_release", fail)
    request = _retrieve(bench, tracking)
    with pytest.raises(error, match="could not be written") as raised:
        vault.release(request, tmp_path / "out")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out" / tracking).exists()
    reader = vault.reader()
    events = list(reader.events(0, reader.size()))
    access = next(e for e in events if e.type == "access.decided" and e.record == tracking)
    [failed] = [e for e in events if e.type == "release.failed"]
    assert failed.details["access"] == access.seq
    bench.audit()


@pytest.mark.parametrize(
    "case",
    [
        ("_write_release", KeyboardInterrupt, "interrupted"),
        ("_render", KeyboardInterrupt, "interrupted"),
        ("_write_release", IntegrityError, "a stored object failed its integrity check"),
    ],
)
def test_a_release_interrupted_or_failing_after_its_permit_is_logged_as_failed(
    bench: VaultBench,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, type[BaseException], str],
) -> None:
    """Ctrl-C (or SIGTERM, or a tampered attachment) while the release is being written:
    the log says it reached nobody, as a server logs a client that hung up."""
    where, raised, reason = case
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )

    def stop(*_args: object, **_kwargs: object) -> object:
        raise raised("simulated")

    monkeypatch.setattr(Vault, where, stop)
    with pytest.raises(raised):
        vault.release(_retrieve(bench, tracking), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    reader = vault.reader()
    events = list(reader.events(0, reader.size()))
    access = next(e for e in events if e.type == "access.decided" and e.record == tracking)
    [failed] = [e for e in events if e.type == "release.failed"]
    assert failed.details == {"access": access.seq, "reason": reason}
    bench.audit()


def test_a_release_interrupted_while_its_permit_is_committed_is_logged_as_failed(
    bench: VaultBench, tmp_path: Path
) -> None:
    """A tester's finding: SIGTERM while the requester waited for its batch to commit
    the permit left no `release.failed`, and `audit recipients` said "delivered".

    The batch commits all the same; the interrupted requester waits for its outcome,
    and logs that the release reached nobody. The signal arrives (in the main thread,
    as a real one) once the log has the permit, while the batch thread is still busy.
    """
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    ledger = vault.ledger
    committed = ledger.append_at

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        result = committed(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)  # the requester is interrupted before this batch is done
        return result

    request = _retrieve(bench, tracking)
    try:
        ledger.append_at = interrupted  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            vault.release(request, tmp_path / "out")
    finally:
        ledger.append_at = committed  # type: ignore[method-assign]
    assert not (tmp_path / "out" / tracking).exists()
    reader = vault.reader()
    events = list(reader.events(0, reader.size()))
    access = next(e for e in events if e.type == "access.decided" and e.record == tracking)
    [failed] = [e for e in events if e.type == "release.failed"]
    assert failed.details == {"access": access.seq, "reason": "interrupted"}
    bench.audit()


@pytest.mark.parametrize("suspended_meanwhile", [False, True])
def test_a_release_interrupted_just_after_its_position_is_logged_as_failed_if_permitted(
    bench: VaultBench, tmp_path: Path, suspended_meanwhile: bool
) -> None:
    """The signal lands once the sequencer has returned the release's index, before the
    release is written: a permit is followed by `release.failed`; a denial (the analyst
    suspended between the first look and the position) is not, as it released nothing."""
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    sequenced = vault.sequencer.run

    def interrupted_on_return(act: Any) -> tuple[int, ...]:
        vault.sequencer.run = sequenced  # type: ignore[method-assign]
        if suspended_meanwhile:
            changes = {"status": "suspended"}
            params = {"op": "update", "principal": "analyst", "changes": changes}
            admin = vault.sign(bench.ids["admin"], "manage-principals", params=params)
            vault.update_principal(admin, "analyst", changes)
        sequenced(act)
        raise KeyboardInterrupt

    try:
        vault.sequencer.run = interrupted_on_return  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            vault.release(_retrieve(bench, tracking), tmp_path / "out")
    finally:
        vault.sequencer.run = sequenced  # type: ignore[method-assign]
    reader = vault.reader()
    events = list(reader.events(0, reader.size()))
    [access] = [e for e in events if e.type == "access.decided" and e.actor == "analyst"]
    failed = [e.details for e in events if e.type == "release.failed"]
    if suspended_meanwhile:
        assert access.decision == "deny" and failed == []
    else:
        assert access.decision == "permit"
        assert failed == [{"access": access.seq, "reason": "interrupted"}]
    bench.audit()


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("how", ["moved", "symlinked"])
def test_an_out_directory_moved_during_a_release_keeps_nothing_of_it(
    bench: VaultBench,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
    how: str,
) -> None:
    """A tester's finding: `--out` moved (or swapped for a symlink) while a release was
    written left the decrypted files in the moved directory, while the CLI said that
    nothing was released. The directory is held open, and emptied through it."""
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    out, moved, elsewhere = tmp_path / "out", tmp_path / "moved", tmp_path / "elsewhere"
    elsewhere.mkdir()
    write = Vault._write_release

    def move_out() -> None:
        out.rename(moved)
        if how == "symlinked":
            out.symlink_to(elsewhere)

    def moving(self: Vault, rendered: Any, **kwargs: Any) -> tuple[str, ...]:
        if when == "before":
            move_out()
        written = write(self, rendered, **kwargs)
        if when == "after":
            move_out()
        return written

    monkeypatch.setattr(Vault, "_write_release", moving)
    with pytest.raises(InputError, match="nothing was released"):
        vault.release(_retrieve(bench, tracking), out)
    assert list(moved.iterdir()) == [] and list(elsewhere.iterdir()) == []
    reader = vault.reader()
    events = list(reader.events(0, reader.size()))
    assert [e.type for e in events][-2:] == ["access.decided", "release.failed"]
    bench.audit()


@pytest.mark.parametrize(("server_side", "error"), [(False, InputError), (True, BackendError)])
def test_a_full_disk_names_where_and_is_the_servers_trouble_only_in_its_spool(
    bench: VaultBench,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_side: bool,
    error: type,
) -> None:
    """A full disk names no file: the error names the directory written to. In a
    server's own spool it is the server's trouble (exit 5), not the client's (exit 2)."""
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )

    def full(*_args: object, **_kwargs: object) -> tuple[str, ...]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Vault, "_write_release", full)
    request = _retrieve(bench, tracking)
    spool = tmp_path / "spool"
    spool.mkdir()
    with pytest.raises(error, match="No space left on device") as raised:
        if server_side:
            with vault.serve_release(request, spool, in_memory=0):
                pass
        else:
            vault.release(request, spool)
    assert str(spool) in str(raised.value)
    assert list(spool.iterdir()) == []


# ----- a submission in flight while other acts change what it relies on ----------------------


def _meanwhile(monkeypatch: pytest.MonkeyPatch, act: Any) -> None:
    """Run `act` once between a submission's upload check and its log position."""
    accept = Vault._accept
    done: list[bool] = []

    def accept_then(self: Vault, sealed: Any) -> dict[str, Any]:
        details = accept(self, sealed)
        if not done:
            done.append(True)
            act()
        return details

    monkeypatch.setattr(Vault, "_accept", accept_then)


def test_a_submission_whose_kek_was_retired_meanwhile_is_refused_not_stranded(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotate, rewrap and retire while a submit is on its way: rewrap saw only logged
    records, so the submission logged under the retired version was unreadable for good
    (and every later rewrap exit 4). The retirement came first: the submit is refused."""
    vault = bench.vault
    admin = bench.ids["admin"]

    def retire() -> None:
        vault.rotate_keys(vault.sign(admin, "rotate-keys", params={"op": "rotate"}))
        vault.rewrap_keys(vault.sign(admin, "rotate-keys", params={"op": "rewrap"}))
        retiring = vault.sign(admin, "rotate-keys", params={"op": "retire", "version": 1})
        vault.retire_key(retiring, 1)

    _meanwhile(monkeypatch, retire)
    sealed = bench.upload()
    tracking = sealed.tracking_number
    request = vault.sign(
        bench.ids["owner"], "submit", record=tracking, params={"files": list(sealed.files)}
    )
    with pytest.raises(ActConflictError, match="was retired meanwhile"):
        vault.receive(request, sealed)
    monkeypatch.undo()
    assert list(bench.real.list(f"records/{tracking}/")) == []
    assert list(bench.real.list(f"wrapped/{tracking}")) == []
    assert bench.submit_receipt().tracking_number  # submitted again, under version 2
    vault.rewrap_keys(vault.sign(admin, "rotate-keys", params={"op": "rewrap"}))
    bench.audit()


def test_a_submission_whose_objects_maintenance_removed_meanwhile_is_refused(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`maintenance --grace-hours 0` during a submit: the submit fails, and nothing of it
    is logged (it was logged later by the next writer, as a record with no objects)."""
    vault = bench.vault
    _meanwhile(monkeypatch, lambda: vault.maintain(grace=timedelta(0), dry_run=False))
    sealed = bench.upload()
    request = vault.sign(
        bench.ids["owner"],
        "submit",
        record=sealed.tracking_number,
        params={"files": list(sealed.files)},
    )
    size = vault.reader().size()
    with pytest.raises(ActConflictError, match="were removed meanwhile"):
        vault.receive(request, sealed)
    monkeypatch.undo()
    bench.submit_receipt()  # the next writer
    reader = vault.reader()
    logged = [e for e in reader.events(size, reader.size()) if e.type == "submission.received"]
    assert [e.record for e in logged] != [sealed.tracking_number]
    assert len(logged) == 1
    bench.audit()


def test_maintenance_leaves_the_objects_of_a_claimed_submission(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submit whose claim is in the store but not committed (its commit failed): the
    next append commits it, so its objects are a record's to be, even at grace 0."""
    vault = bench.vault
    ledger = type(vault.ledger)
    commit = ledger._commit_until
    failed: list[bool] = []

    def fail_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(True)
            raise OSError(errno.EIO, "simulated store failure after the claim")
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(ledger, "_commit_until", fail_once)
    sealed = bench.upload()
    tracking = sealed.tracking_number
    request = vault.sign(
        bench.ids["owner"], "submit", record=tracking, params={"files": list(sealed.files)}
    )
    with pytest.raises(BackendError):
        vault.receive(request, sealed)
    monkeypatch.undo()
    done = vault.maintain(grace=timedelta(0), dry_run=False)
    assert not any(tracking in key for key in done.orphans), done.orphans
    bench.submit_receipt()  # the next writer commits the claim
    review = vault.sign(bench.ids["office"], "review", record=tracking, purpose="check")
    assert vault.release(review, bench.root / "review").files
    bench.audit()


def test_maintenance_removes_claims_no_writer_made(bench: VaultBench) -> None:
    """A junk name or a forged claim ahead of the log failed `audit verify` until someone
    deleted it by hand (appends remove a forged claim only once the log reaches it)."""
    vault = bench.vault
    size = vault.reader().size()
    junk = ["log/claims/zzz", f"log/claims/{size + 20:020d}"]
    for key in junk:
        bench.real.put_if_absent(key, b"not a claim of the log key's")
    done = vault.maintain(grace=timedelta(hours=24), dry_run=False)
    assert set(junk) <= set(done.stale_claims)
    assert [i.key for i in bench.real.list("log/claims/")] == []
    bench.audit()


def test_an_index_removed_under_a_long_lived_vault_is_rebuilt(bench: VaultBench) -> None:
    """A server's open index: deleted, it is rebuilt from the log (it was exit 1)."""
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    index = vault.paths.root / "index.sqlite"
    index.unlink()
    status = vault.status(vault.sign(bench.ids["owner"], "status", record=tracking))
    assert status.state == "received" and index.is_file()


def test_an_index_replaced_by_a_directory_under_a_long_lived_vault_is_tampering(
    bench: VaultBench,
) -> None:
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    index = vault.paths.root / "index.sqlite"
    index.unlink()
    index.mkdir()
    with pytest.raises(IntegrityError, match="replaced by something else than an index file"):
        vault.status(vault.sign(bench.ids["owner"], "status", record=tracking))


def test_a_vault_file_left_under_a_temporary_name_is_a_leftover(bench: VaultBench) -> None:
    """A tester's finding: a command killed while it wrote the index left a whole copy of
    it (every principal and record) as `.index.sqlite.<random>.tmp`, which maintenance
    neither listed nor removed."""
    vault = bench.vault
    temp = temp_name(vault.paths.index)
    temp.write_bytes(vault.paths.index.read_bytes())
    hour_ago = time.time() - 3600
    os.utime(temp, (hour_ago, hour_ago))
    assert str(temp) not in vault.maintain(grace=timedelta(hours=24), dry_run=True).leftovers
    assert str(temp) in vault.maintain(grace=timedelta(minutes=30), dry_run=True).leftovers
    assert temp.exists()  # a dry run changes nothing
    vault.maintain(grace=timedelta(minutes=30), dry_run=False)
    assert not temp.exists()
    assert vault.paths.index.exists()


def test_a_release_killed_part_way_is_removed_by_the_next_release_into_its_folder(
    bench: VaultBench, tmp_path: Path
) -> None:
    """A tester's finding: `get` killed (SIGKILL) while it wrote left the decrypted,
    unmarked attachment in a hidden staging folder under `--out`, for good. The next
    release into that folder removes it once its process is gone; a live one's stays."""
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "from pcii_vault.durable import staging_prefix; print(staging_prefix('PCII-2026-00000001'))"
    )
    gone = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    left = out / f"{gone}k1ll3d_x.partial"
    (left / "attachments").mkdir(parents=True)
    (left / ".attachment-0.plain").write_bytes(b"decrypted, unmarked")
    in_flight = out / f"{staging_prefix('PCII-2026-00000002')}w0rk1ng.partial"
    in_flight.mkdir()
    vault.release(_retrieve(bench, tracking), out)
    assert not left.exists()
    assert in_flight.is_dir()
    assert (out / tracking).is_dir()


def test_an_object_planted_under_a_submissions_key_is_tampering_and_the_upload_goes(
    bench: VaultBench,
) -> None:
    """A tester's finding: `wrapped/<TN>/x` planted during an upload made the submit say
    "being submitted by another request" (exit 3), and left its uploaded objects behind."""
    sealed = bench.upload()
    tracking = sealed.tracking_number
    bench.real.put_if_absent(f"wrapped/{tracking}/x", b"planted")
    size = bench.vault.reader().size()
    with pytest.raises(IntegrityError, match=rf"planted under wrapped/{tracking} .*wrapped/"):
        bench.receive(sealed)
    assert bench.vault.reader().size() == size  # nothing of it logged
    assert list(bench.real.list(f"records/{tracking}/")) == []  # its upload removed
    assert [i.key for i in bench.real.list(f"wrapped/{tracking}/")] == [f"wrapped/{tracking}/x"]
