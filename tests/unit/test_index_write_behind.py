"""A long-lived core writes its index file behind the log, at most every so often.

Writing the whole index after every batch costs time that grows with the index (its bytes
are written and tagged anew). A server writes at most every `index_write_every` seconds
and when it stops: the file is a cache of the log, and a reader that finds it behind the
log catches up from the verified log. These tests hold the two properties that make that
safe: nothing the server did is lost to the next reader, and a file written behind (by
another process) never sets a copy back, nor hides an edit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.cli.output import CliState
from pcii_vault.cli.session import open_vault
from pcii_vault.config import Batching
from pcii_vault.errors import PolicyDenied
from pcii_vault.index import Index, IndexTamperedError
from pcii_vault.models.event import Event
from pcii_vault.vault import Vault

SECRET = b"write-behind-unseal-secret"
BEHIND = Batching(index_write_every=3600.0)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[VaultBench]:
    made = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional capture " * 50)
    yield made
    made.vault.close()


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _suspend(vault: Vault, bench: VaultBench, name: str) -> None:
    request = vault.sign(
        bench.ids["admin"],
        "manage-principals",
        params={"op": "update", "principal": name, "changes": {"status": "suspended"}},
    )
    vault.update_principal(request, name, {"status": "suspended"})


def _office_status(vault: Vault, bench: VaultBench, tracking: str) -> object:
    return vault.status(vault.sign(bench.ids["office"], "status", record=tracking))


def test_a_server_acts_without_writing_the_file_and_a_new_reader_catches_up(
    bench: VaultBench,
) -> None:
    tracking = bench.submit_receipt().tracking_number
    bench.vault.close()
    index_file = bench.vault.paths.index
    server = Vault(bench.vault.paths.root, unseal=lambda: SECRET, batching=BEHIND)
    try:
        _office_status(server, bench, tracking)  # opened and caught up: written once
        before = _stat(index_file)
        _suspend(server, bench, "office")
        assert _stat(index_file) == before  # behind: written at stop, or by a reader
        with pytest.raises(PolicyDenied, match="suspended"):
            _office_status(server, bench, tracking)

        reader = Vault(bench.vault.paths.root, unseal=lambda: SECRET)
        try:
            # A command run meanwhile reads the file behind, and the log from there.
            with pytest.raises(PolicyDenied, match="suspended"):
                _office_status(reader, bench, tracking)
        finally:
            reader.close()
        _suspend(server, bench, "owner")  # after the reader's write: taken up, not lost
    finally:
        server.close()  # writes what the file does not hold yet

    logged = server.reader().size()
    seal = server._local().index_authenticator()
    reopened = Index.open(index_file, seal=seal)
    try:
        reopened.verify()
        assert reopened.size == logged
        assert reopened.principal("owner").status == "suspended"
    finally:
        reopened.close()


def _events(bench: VaultBench) -> list[Event]:
    reader = bench.vault.reader()
    return list(reader.events(0, reader.size()))


def test_a_file_written_behind_by_another_process_does_not_set_a_copy_back(
    bench: VaultBench, tmp_path: Path
) -> None:
    events = _events(bench)
    assert len(events) >= 4
    seal = bench.vault._local().index_authenticator()
    path = tmp_path / "shared.sqlite"
    server = Index.open(path, seal=seal, write_every=3600.0)
    other = Index.open(path, seal=seal)  # a command: writes after every change
    try:
        server.apply_all(events)
        other.apply_all(events[:2])  # the file now holds two events, the server all
        server.verify()
        assert server.size == len(events)  # its own copy, ahead of the file's
        server.apply_all([], root=None)  # nothing new: nothing written
    finally:
        server.close()
        other.close()
    reopened = Index.open(path, seal=seal)
    try:
        reopened.verify()
        assert reopened.size == len(events)
    finally:
        reopened.close()


def test_an_edit_under_a_copy_written_behind_is_refused_and_kept_as_evidence(
    bench: VaultBench, tmp_path: Path
) -> None:
    events = _events(bench)
    seal = bench.vault._local().index_authenticator()
    path = tmp_path / "shared.sqlite"
    server = Index.open(path, seal=seal, write_every=3600.0)
    try:
        server.apply_all(events)
        edited = bytearray(path.read_bytes())
        edited[-1] ^= 0x01
        path.write_bytes(bytes(edited))
        with pytest.raises(IndexTamperedError, match="changed outside the vault"):
            server.verify()
    finally:
        server.close()  # does not write over the edit
    assert path.read_bytes() == bytes(edited)


def test_a_server_of_one_process_takes_the_write_interval_as_workers_do(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: `pcii serve` without `--workers` wrote after every batch
    whatever PCII_SERVER_INDEX_WRITE_S said (its vault was opened as a command's)."""
    monkeypatch.setenv("PCII_SERVER_INDEX_WRITE_S", "5")
    state = CliState(vault=bench.vault.paths.root)
    served = open_vault(state, serving=True)
    command = open_vault(state)
    try:
        assert served._batching.index_write_every == 5.0
        assert command._batching.index_write_every == 0.0
    finally:
        served.close()
        command.close()
