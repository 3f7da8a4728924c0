"""An owner's submit and a discard of one of its uploaded objects, at once: one wins.

A tester's finding: over the wire, `POST /v1/submissions` and `DELETE /v1/uploads/...`
sent together both succeeded: the record was logged, its document gone, and every
release of it then failed as tampering. Both now claim `wrapped/<tracking>` first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vault_support import VaultBench

from pcii_vault.errors import ActConflictError, InputError, VaultError
from pcii_vault.submitter import SealedUpload
from pcii_vault.vault import Vault

SECRET = b"submit-vs-discard-secret"


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[VaultBench]:
    made = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    yield made
    made.vault.close()


def test_a_discard_before_the_submit_makes_the_submit_refuse(bench: VaultBench) -> None:
    sealed = bench.upload()
    tracking = sealed.tracking_number
    size = bench.vault.reader().size()
    bench.vault.discard_upload(tracking, f"records/{tracking}/document")
    assert bench.real.get(f"wrapped/{tracking}")  # the marker, while objects are left
    with pytest.raises(InputError, match="was discarded meanwhile by its owner"):
        bench.receive(sealed)
    assert bench.vault.reader().size() == size
    assert list(bench.real.list(f"records/{tracking}/")) == []
    assert list(bench.real.list(f"wrapped/{tracking}")) == []


def test_a_discard_during_a_submit_or_after_it_leaves_the_objects(bench: VaultBench) -> None:
    sealed = bench.upload()
    tracking = sealed.tracking_number
    bench.real.put_if_absent(f"wrapped/{tracking}", b"\x01" * 65)  # the submit's claim
    with pytest.raises(ActConflictError, match="is being submitted: its objects stay"):
        bench.vault.discard_upload(tracking, f"records/{tracking}/document")
    assert bench.real.head(f"records/{tracking}/document")
    bench.real.delete(f"wrapped/{tracking}")
    receipt = bench.receive(sealed)
    with pytest.raises(InputError, match="is a record: its objects stay"):
        bench.vault.discard_upload(tracking, f"records/{tracking}/document")
    assert bench.real.head(f"records/{receipt.tracking_number}/document")


def test_a_discard_between_the_submits_checks_and_its_append_is_refused(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving the tester hit: the submit's checks passed, then the discard,
    then the append (the record logged with its document gone)."""
    sealed = bench.upload()
    tracking = sealed.tracking_number
    real = Vault._accept
    said: list[str] = []

    def accept_then_discard(self: Vault, upload: SealedUpload) -> dict[str, Any]:
        facts = real(self, upload)
        try:
            self.discard_upload(tracking, f"records/{tracking}/document")
            said.append("discarded")
        except ActConflictError as exc:
            said.append(str(exc))
        return facts

    monkeypatch.setattr(Vault, "_accept", accept_then_discard)
    bench.receive(sealed)
    assert said == [f"{tracking} is being submitted: its objects stay"]
    assert bench.real.head(f"records/{tracking}/document")
    bench.audit()


def _race(bench: VaultBench, sealed: SealedUpload, target: str) -> tuple[bool, bool]:
    """Submit `sealed` and discard its `target` object at once: whether each succeeded."""
    start = threading.Barrier(2)
    won: dict[str, bool] = {}

    def submit() -> None:
        start.wait()
        try:
            bench.receive(sealed)
            won["submit"] = True
        except VaultError:
            won["submit"] = False

    def discard() -> None:
        start.wait()
        try:
            bench.vault.discard_upload(sealed.tracking_number, target)
            won["discard"] = True
        except VaultError:
            won["discard"] = False

    threads = [threading.Thread(target=submit), threading.Thread(target=discard)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won["submit"], won["discard"]


@pytest.mark.slow
def test_submit_and_discard_at_once_never_log_a_record_missing_an_object(
    bench: VaultBench,
) -> None:
    for round_number in range(30):
        sealed = bench.upload()
        tracking = sealed.tracking_number
        target = f"records/{tracking}/" + ("document", "files/0")[round_number % 2]
        submitted, discarded = _race(bench, sealed, target)
        assert submitted != discarded, (submitted, discarded)  # exactly one won
        if submitted:  # the record has every object it names
            for entry in sealed.files:
                assert bench.real.head(f"records/{tracking}/{entry['object']}")
    bench.audit()


def test_a_discard_of_an_object_never_uploaded_is_not_found(bench: VaultBench) -> None:
    """A tester's finding: it answered 200 {"deleted": ...} for nothing deleted."""
    from pcii_vault.errors import NotFoundError

    sealed = bench.upload()
    tracking = sealed.tracking_number
    with pytest.raises(NotFoundError, match=f"no uploaded object records/{tracking}/files/42"):
        bench.vault.discard_upload(tracking, f"records/{tracking}/files/42")
    bench.receive(sealed)  # and the upload is still submittable


@pytest.mark.parametrize(
    ("sector", "state", "said"),
    [(None, "zzz", "state 'zzz' is not a record state"), ("Nope", None, "sector 'Nope'")],
)
def test_a_search_filter_no_record_can_match_is_refused(
    bench: VaultBench, sector: str | None, state: str | None, said: str
) -> None:
    """A tester's finding: over the API, an unknown state listed nothing (200 [])."""
    request = bench.vault.sign(bench.ids["office"], "search")
    with pytest.raises(InputError, match=said):
        bench.vault.search(request, sector=sector, state=state)


def test_a_discard_of_the_last_object_leaves_nothing_behind(bench: VaultBench) -> None:
    """The marker goes with the last object: what was uploaded is removed, all of it."""
    sealed = bench.upload()
    tracking = sealed.tracking_number
    for entry in sealed.files:
        bench.vault.discard_upload(tracking, f"records/{tracking}/{entry['object']}")
    assert list(bench.real.list(f"records/{tracking}/")) == []
    assert list(bench.real.list(f"wrapped/{tracking}")) == []
    with pytest.raises(InputError):  # and a submit of it finds nothing to submit
        bench.receive(sealed)
    assert list(bench.real.list(f"wrapped/{tracking}")) == []
