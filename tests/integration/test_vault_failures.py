"""The vault core under failure and attack, in-process, on a real filesystem store.

Each test drives `Vault` the way the CLI does (owner upload then `receive`, signed requests
from identity files' keys) and breaks one thing: the store dies mid-upload or refuses log
writes, a request is replayed, stale, for another vault or action, or forged, a stored
object is tampered with or moved. Each checks the documented outcome (the error family,
hence the exit code) and that nothing leaked: no record appears, nothing is written to
`--out`, and the log still verifies with a legal history.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from vault_support import VaultBench

import pcii_vault.core.intake as intake_module
from pcii_vault.config import VaultPaths
from pcii_vault.crypto.seal import ScryptParams
from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import (
    ActConflictError,
    BackendError,
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyDenied,
    VaultError,
)
from pcii_vault.identity import Identity
from pcii_vault.models.request import SignedRequest, sign_request
from pcii_vault.models.submission import example_submission
from pcii_vault.receipt import Receipt
from pcii_vault.store.base import ObjectInfo, ObjectStore
from pcii_vault.store.filesystem import FilesystemStore
from pcii_vault.submitter import upload
from pcii_vault.vault import Vault

SECRET = b"failure-tests-unseal-secret"
FAST_KDF = ScryptParams(n=2**10, r=8, p=1)
WATER = "Water and Wastewater Systems"
ATTACHMENT_BYTES = bytes(range(256)) * 400  # 100 KiB: several 16 KiB chunks


class FlakyStore:
    """An ObjectStore wrapper that fails on demand, like a store going away.

    `fail_stream_after`: a put_stream raises BackendError once that many bytes passed.
    `fail_log_writes`: every write or delete under ``log/`` raises BackendError.
    """

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.fail_stream_after: int | None = None
        self.fail_log_writes = False

    @property
    def url(self) -> str:
        return self.inner.url

    def _write(self, key: str) -> None:
        if self.fail_log_writes and key.startswith("log/"):
            raise BackendError(f"injected: store unavailable writing {key}")

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        self._write(key)
        return self.inner.put_if_absent(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> ObjectInfo:
        self._write(key)
        return self.inner.put_if_match(key, data, etag)

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        self._write(key)
        limit = self.fail_stream_after
        if limit is None:
            return self.inner.put_stream(key, chunks)

        def counted() -> Iterator[bytes]:
            sent = 0
            for chunk in chunks:
                sent += len(chunk)
                if sent > limit:
                    raise BackendError("injected: store unavailable mid-upload")
                yield chunk

        return self.inner.put_stream(key, counted())

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        return self.inner.get_with_etag(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.inner.get_range(key, start, length)

    def open_stream(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        return self.inner.open_stream(key, chunk_size)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._write(key)
        self.inner.delete(key)


class Bench(VaultBench):
    """The shared bench, its store behind a FlakyStore, and a federal water analyst."""

    flaky: FlakyStore  # set by `_flaky` while the base class builds the vault

    def __init__(self, root: Path) -> None:
        super().__init__(
            root, secret=SECRET, attachment_bytes=ATTACHMENT_BYTES, wrap_store=self._flaky
        )
        self.add("analyst", "analyst", "EPA Water Security Division", "federal", sectors=(WATER,))

    def _flaky(self, real: ObjectStore) -> ObjectStore:
        self.flaky = FlakyStore(real)
        return self.flaky

    def submit(self, *, attach: bool = True) -> Receipt:
        return self.submit_receipt(attach=attach)

    def validated(self) -> str:
        tracking = self.submit().tracking_number
        self.vault.transition(
            self.vault.sign(self.ids["office"], "validate", record=tracking, params={}),
            "submission.validated",
        )
        return tracking

    def retrieve_request(self, tracking: str) -> SignedRequest:
        return self.vault.sign(
            self.ids["analyst"],
            "retrieve",
            record=tracking,
            purpose="drought planning",
            use="infrastructure-protection",
        )

    def keys_under(self, prefix: str) -> list[str]:
        return [info.key for info in self.real.list(prefix)]

    def assert_log_sound(self) -> None:
        """`pcii audit verify` passes and covers every event the index holds."""
        assert self.audit().size == self.vault.index.size

    def objects_path(self, key: str) -> Path:
        assert isinstance(self.real, FilesystemStore)
        return self.real.root.joinpath(*key.split("/"))


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    made = Bench(tmp_path)
    yield made
    made.vault.close()


def _assert_untouched(out: Path) -> None:
    """Nothing at all at --out: no file, no staging directory, not even --out itself."""
    assert not out.exists()


# ----- the store fails ------------------------------------------------------------------


def test_store_lost_mid_attachment_upload_leaves_no_record(bench: Bench) -> None:
    """Exit 5 (BackendError); no record in the index, nothing under records/ or wrapped/."""
    records_before = bench.vault.index.records()
    bench.flaky.fail_stream_after = 40_000
    with pytest.raises(BackendError) as raised:
        bench.submit()
    assert raised.value.exit_code == 5
    assert bench.vault.index.records() == records_before == []
    assert bench.keys_under("records/") == []
    assert bench.keys_under("wrapped/") == []
    bench.assert_log_sound()


def test_an_interrupt_as_an_object_is_stored_removes_that_object_too(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after the last byte of an object was sent, before the store said so (a
    server still storing it): the upload's clean-up removes it with the others."""
    put = FlakyStore.put_stream

    def stored_then_interrupted(self: FlakyStore, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        info = put(self, key, chunks)
        if key.endswith("/files/0"):
            raise KeyboardInterrupt
        return info

    monkeypatch.setattr(FlakyStore, "put_stream", stored_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench.upload()
    assert bench.keys_under("records/") == []


@pytest.mark.parametrize(
    ("entry", "field", "value"),
    [
        (0, "sha256", "0" * 64),  # the document
        (1, "sha256", "0" * 64),
        (1, "size", 0),
        (1, "size", len(ATTACHMENT_BYTES) + 1),
        (1, "size", len(ATTACHMENT_BYTES) - 100),
    ],
)
def test_a_manifest_signing_other_hashes_or_sizes_than_uploaded_is_refused(
    bench: Bench, entry: int, field: str, value: object
) -> None:
    """A tester's finding: a hostile owner's client signed a document hash of zeros and an
    attachment size of 0; the vault logged them and the receipt verified, so the log's
    record of what was submitted was the owner's word (and the attachment's release a
    false tampering alarm). Exit 4 at intake, nothing logged, nothing stored."""
    sealed = bench.upload()
    files = [dict(f) for f in sealed.files]
    files[entry][field] = value
    sealed.files = tuple(files)
    size_before = bench.vault.reader().size()
    with pytest.raises(IntegrityError, match="not the one its request signed"):
        bench.receive(sealed)
    assert bench.vault.reader().size() == size_before
    assert bench.vault.index.records() == []
    assert bench.keys_under("records/") == bench.keys_under("wrapped/") == []
    bench.assert_log_sound()


def test_an_attachment_damaged_after_its_upload_is_refused_at_intake(bench: Bench) -> None:
    """Its last byte changed before the receipt: exit 4 naming it, not a record."""
    sealed = bench.upload()
    stored = bench.objects_path(f"records/{sealed.tracking_number}/files/0")
    data = bytearray(stored.read_bytes())
    data[-1] ^= 1
    stored.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="attachment"):
        bench.receive(sealed)
    assert bench.vault.index.records() == []
    assert bench.keys_under("records/") == []


def test_log_unavailable_at_receipt_is_not_a_record_and_keeps_its_objects(bench: Bench) -> None:
    """The upload finished but `submission.received` cannot be logged: not a record.

    The ciphertext and wrapped key stay: a claim of the failed append may have reached
    the store (an S3 write can land although its answer was lost), and the next append
    would commit it; the record must then be whole, never an event without its objects.
    """
    bench.flaky.fail_log_writes = True
    with pytest.raises(BackendError):
        bench.submit()
    bench.flaky.fail_log_writes = False
    bench.vault.sync()
    assert bench.vault.index.records() == []
    tracking = bench.keys_under("wrapped/")[0].removeprefix("wrapped/")
    assert f"records/{tracking}/document" in bench.keys_under("records/")
    bench.assert_log_sound()


def test_retrieval_whose_log_append_fails_writes_nothing(bench: Bench) -> None:
    """No plaintext unless the access event is logged: nothing under --out, no staging."""
    tracking = bench.validated()
    size = bench.vault.index.size
    out = bench.root / "release"
    bench.flaky.fail_log_writes = True
    with pytest.raises(BackendError) as raised:
        bench.vault.release(bench.retrieve_request(tracking), out)
    assert raised.value.exit_code == 5
    _assert_untouched(out)
    bench.flaky.fail_log_writes = False
    bench.vault.sync()
    assert bench.vault.index.size == size
    assert bench.vault.index.recipients(tracking) == []
    bench.assert_log_sound()


def test_retrieval_into_an_existing_out_dir_after_a_failed_append_leaves_it_empty(
    bench: Bench,
) -> None:
    tracking = bench.validated()
    out = bench.root / "existing"
    out.mkdir()
    bench.flaky.fail_log_writes = True
    with pytest.raises(BackendError):
        bench.vault.release(bench.retrieve_request(tracking), out)
    assert list(out.iterdir()) == []


# ----- requests that must be refused ---------------------------------------------------


def test_replayed_transition_request_is_refused(bench: Bench) -> None:
    tracking = bench.submit(attach=False).tracking_number
    request = bench.vault.sign(bench.ids["office"], "validate", record=tracking, params={})
    bench.vault.transition(request, "submission.validated")
    size = bench.vault.index.size
    with pytest.raises(IntegrityError, match="replayed"):
        bench.vault.transition(request, "submission.validated")
    assert bench.vault.index.size == size
    bench.assert_log_sound()


def test_replayed_release_request_is_refused_and_writes_nothing(bench: Bench) -> None:
    tracking = bench.validated()
    request = bench.retrieve_request(tracking)
    bench.vault.release(request, bench.root / "first")
    second = bench.root / "second"
    with pytest.raises(IntegrityError, match="replayed") as raised:
        bench.vault.release(request, second)
    assert raised.value.exit_code == 4
    _assert_untouched(second)
    assert len(bench.vault.index.recipients(tracking)) == 1
    bench.assert_log_sound()


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_request_outside_the_time_window_is_refused(bench: Bench, skew: timedelta) -> None:
    tracking = bench.validated()
    analyst = bench.ids["analyst"]
    request = sign_request(
        analyst.key,
        vault=bench.vault.config.vault_id,
        principal="analyst",
        action="retrieve",
        record=tracking,
        purpose="drought planning",
        use="infrastructure-protection",
        now=datetime.now(UTC) + skew,
    )
    out = bench.root / "out"
    with pytest.raises(IntegrityError, match="window"):
        bench.vault.release(request, out)
    _assert_untouched(out)


def test_clock_parameter_decides_the_window(tmp_path: Path) -> None:
    """A vault whose clock runs an hour ahead refuses a request signed at real time."""
    bench = Bench(tmp_path)
    try:
        tracking = bench.validated()
        request = bench.retrieve_request(tracking)
        late = Vault(
            bench.vault.paths.root, unseal=lambda: SECRET, clock=_later(timedelta(hours=1))
        )
        try:
            with pytest.raises(IntegrityError, match="window"):
                late.release(request, tmp_path / "out")
        finally:
            late.close()
    finally:
        bench.vault.close()


def _later(delta: timedelta) -> Any:
    return lambda: datetime.now(UTC) + delta


def test_request_signed_for_another_vault_is_refused(bench: Bench) -> None:
    tracking = bench.validated()
    request = sign_request(
        bench.ids["analyst"].key,
        vault="v-0000000000000000",
        principal="analyst",
        action="retrieve",
        record=tracking,
        purpose="drought planning",
        use="infrastructure-protection",
        now=bench.vault.now(),
    )
    with pytest.raises(IntegrityError, match="another vault"):
        bench.vault.release(request, bench.root / "out")
    _assert_untouched(bench.root / "out")


def test_request_for_one_action_is_refused_for_another(bench: Bench) -> None:
    """A signed `status` request cannot be used to withdraw, nor `review` to retrieve."""
    tracking = bench.submit(attach=False).tracking_number
    status = bench.vault.sign(bench.ids["owner"], "status", record=tracking)
    with pytest.raises(IntegrityError, match="signed for 'status'"):
        bench.vault.destroy(status)
    review = bench.vault.sign(bench.ids["office"], "review", record=tracking, purpose="review")
    with pytest.raises(IntegrityError):
        bench.vault.transition(review, "submission.validated")
    assert bench.vault.index.record(tracking).state == "received"
    bench.assert_log_sound()


def test_request_signed_by_another_key_is_refused(bench: Bench) -> None:
    """A registered name with the wrong key: IntegrityError (exit 4), nothing logged."""
    tracking = bench.validated()
    size = bench.vault.index.size
    forger = Identity(bench.vault.config.vault_id, "analyst", Ed25519PrivateKey.generate())
    request = bench.vault.sign(
        forger, "retrieve", record=tracking, purpose="p", use="infrastructure-protection"
    )
    with pytest.raises(IntegrityError, match="signature") as raised:
        bench.vault.release(request, bench.root / "out")
    assert raised.value.exit_code == 4
    assert bench.vault.index.size == size
    _assert_untouched(bench.root / "out")


def test_altered_request_body_fails_its_signature(bench: Bench) -> None:
    """Changing what a signed request names (here the record) breaks its signature."""
    tracking = bench.validated()
    other = bench.validated()
    request = bench.retrieve_request(tracking)
    altered = SignedRequest(
        body=request.body.model_copy(update={"record": other}), signature=request.signature
    )
    with pytest.raises(IntegrityError, match="signature"):
        bench.vault.release(altered, bench.root / "out")


def test_unregistered_principal_is_denied(bench: Bench) -> None:
    tracking = bench.validated()
    stranger = Identity(bench.vault.config.vault_id, "stranger", Ed25519PrivateKey.generate())
    with pytest.raises(PolicyDenied):
        bench.vault.release(
            bench.vault.sign(stranger, "retrieve", record=tracking, purpose="p", use="x"),
            bench.root / "out",
        )


@pytest.mark.parametrize(
    ("action", "event_type", "prior"),
    [
        ("reject", "submission.rejected", "initially-not-pcii"),
        ("reject", "submission.final-not-pcii", "received"),
    ],
)
def test_decision_the_lifecycle_forbids_is_refused_before_it_is_logged(
    bench: Bench, action: str, event_type: Any, prior: str
) -> None:
    """The policies permit it, the legal history does not: refused, nothing appended.

    Appending it would put an illegal event in the log: `audit verify` would fail and
    every later sync of the index would stop at it.
    """
    tracking = bench.submit(attach=False).tracking_number
    office = bench.ids["office"]
    if prior == "initially-not-pcii":
        bench.vault.transition(
            bench.vault.sign(office, "reject", record=tracking, params={"ground": "not-cii"}),
            "submission.rejected",
        )
    assert bench.vault.index.record(tracking).state == prior
    size = bench.vault.index.size
    article = "an" if prior[0] in "aeiou" else "a"
    with pytest.raises(ActConflictError, match=f"{article} {prior} record cannot"):
        params = {"ground": "public-domain", "final": event_type == "submission.final-not-pcii"}
        bench.vault.transition(
            bench.vault.sign(office, action, record=tracking, params=params), event_type
        )
    bench.vault.sync()
    assert bench.vault.index.size == size
    bench.assert_log_sound()


@pytest.mark.parametrize(
    ("final", "event_type"),
    [(False, "submission.final-not-pcii"), (True, "submission.rejected")],
)
def test_a_finding_is_logged_only_as_the_one_signed(
    bench: Bench, final: bool, event_type: Any
) -> None:
    """Initial or final is signed: a request for one is never logged as the other."""
    tracking = bench.submit(attach=False).tracking_number
    office = bench.ids["office"]
    bench.vault.transition(
        bench.vault.sign(office, "reject", record=tracking, params={"ground": "not-cii"}),
        "submission.rejected",
    )
    size = bench.vault.index.size
    params = {"ground": "not-cii", "final": final}
    with pytest.raises(IntegrityError, match="finding, not submission"):
        bench.vault.transition(
            bench.vault.sign(office, "reject", record=tracking, params=params), event_type
        )
    bench.vault.sync()
    assert bench.vault.index.size == size
    bench.assert_log_sound()


def test_parameters_the_action_does_not_take_are_refused_before_anything_is_logged(
    bench: Bench,
) -> None:
    tracking = bench.submit(attach=False).tracking_number
    office = bench.ids["office"]
    size = bench.vault.index.size
    for action, event_type, params in [
        ("validate", "submission.validated", {"ground": "not-cii"}),
        ("reject", "submission.rejected", {"ground": "because"}),
        ("mark-deficient", "submission.deficient", {"reason": "r", "smuggled": True}),
    ]:
        request = bench.vault.sign(office, action, record=tracking, params=params)
        with pytest.raises(InputError, match=f"{action} parameters"):
            bench.vault.transition(request, event_type)
    bench.vault.sync()
    assert bench.vault.index.size == size
    assert bench.vault.index.record(tracking).state == "received"


def test_transition_is_not_for_other_event_types(bench: Bench) -> None:
    tracking = bench.submit(attach=False).tracking_number
    request = bench.vault.sign(bench.ids["office"], "destroy", record=tracking)
    with pytest.raises(ValueError, match="not a lifecycle transition"):
        bench.vault.transition(request, "record.destroyed")


# ----- stored objects damaged, deleted or moved -----------------------------------------


def test_deleted_wrapped_key_is_an_integrity_failure(bench: Bench) -> None:
    tracking = bench.validated()
    bench.real.delete(f"wrapped/{tracking}")
    out = bench.root / "out"
    with pytest.raises(IntegrityError):
        bench.vault.release(bench.retrieve_request(tracking), out)
    _assert_untouched(out)
    bench.assert_log_sound()


def test_tampered_wrapped_key_is_an_integrity_failure(bench: Bench) -> None:
    tracking = bench.validated()
    path = bench.objects_path(f"wrapped/{tracking}")
    _flip(path, -1)
    out = bench.root / "out"
    with pytest.raises(IntegrityError):
        bench.vault.release(bench.retrieve_request(tracking), out)
    _assert_untouched(out)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ("document", "header"),
        ("document", "final-tag"),
        ("files/0", "header"),
        ("files/0", "middle-chunk"),
        ("files/0", "final-tag"),
    ],
)
def test_tampered_object_is_an_integrity_failure_and_nothing_is_written(
    bench: Bench, obj: str, where: str
) -> None:
    tracking = bench.validated()
    path = bench.objects_path(f"records/{tracking}/{obj}")
    size = path.stat().st_size
    offset = {"header": 2, "middle-chunk": size // 2, "final-tag": size - 1}[where]
    _flip(path, offset)
    out = bench.root / "out"
    with pytest.raises(IntegrityError) as raised:
        bench.vault.release(bench.retrieve_request(tracking), out)
    assert raised.value.exit_code == 4
    assert f"{obj} of {tracking}" in str(raised.value)  # which object: a tester's finding
    _assert_untouched(out)
    bench.assert_log_sound()


@pytest.mark.parametrize("obj", ["document", "files/0"])
def test_object_moved_between_records_is_an_integrity_failure(bench: Bench, obj: str) -> None:
    """records/A/<obj> copied over records/B/<obj>: bound to A, it fails to open as B's."""
    source = bench.validated()
    target = bench.validated()
    src = bench.objects_path(f"records/{source}/{obj}")
    dst = bench.objects_path(f"records/{target}/{obj}")
    dst.chmod(0o600)
    shutil.copyfile(src, dst)
    out = bench.root / "out"
    with pytest.raises(IntegrityError):
        bench.vault.release(bench.retrieve_request(target), out)
    _assert_untouched(out)
    # The source record is untouched and still releases.
    bench.vault.release(bench.retrieve_request(source), bench.root / "fine")


def test_wrapped_key_moved_between_records_is_an_integrity_failure(bench: Bench) -> None:
    source = bench.validated()
    target = bench.validated()
    wrapped = bench.real.get(f"wrapped/{source}")
    bench.real.delete(f"wrapped/{target}")
    bench.real.put_if_absent(f"wrapped/{target}", wrapped)
    with pytest.raises(IntegrityError):
        bench.vault.release(bench.retrieve_request(target), bench.root / "out")
    _assert_untouched(bench.root / "out")


# ----- a failed or hostile submission never touches another record ----------------------


def test_submission_naming_an_existing_record_does_not_destroy_it(bench: Bench) -> None:
    """A second `receive` for a live tracking number fails without deleting its objects."""
    receipt = bench.submit()
    tracking = receipt.tracking_number
    before = sorted(bench.keys_under(f"records/{tracking}/")) + bench.keys_under("wrapped/")
    intruder_dek_upload = _foreign_upload(bench, tracking)
    request = bench.vault.sign(
        bench.ids["owner"],
        "submit",
        record=tracking,
        params={"files": list(intruder_dek_upload.files)},
    )
    with pytest.raises(VaultError):
        bench.vault.receive(request, intruder_dek_upload)
    after = sorted(bench.keys_under(f"records/{tracking}/")) + bench.keys_under("wrapped/")
    assert after == before
    # Still the owner's record, readable by the office.
    review = bench.vault.sign(bench.ids["office"], "review", record=tracking, purpose="review")
    bench.vault.release(review, bench.root / "review")
    bench.assert_log_sound()


def _foreign_upload(bench: Bench, tracking: str) -> Any:
    """A sealed upload naming `tracking`, made in a scratch store (a hostile client)."""
    scratch = FilesystemStore(bench.root / "scratch")
    document = example_submission()
    document["attachments"] = []
    return upload(
        scratch,
        vault_id=bench.vault.config.vault_id,
        tracking_number=tracking,
        intake_public_key=bench.vault.intake_key(),
        kek_version=1,
        document=json.dumps(document).encode(),
        attachments=[],
    )


def test_failure_after_the_receipt_event_keeps_the_record(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once `submission.received` is logged the objects are a record: never discarded."""

    def broken_prove(*_args: object) -> object:
        raise BackendError("injected: store unavailable while building the proof")

    monkeypatch.setattr(intake_module, "prove", broken_prove)
    with pytest.raises(BackendError):
        bench.submit()
    [record] = bench.vault.index.records()
    assert bench.keys_under(f"wrapped/{record.tracking}") == [f"wrapped/{record.tracking}"]
    monkeypatch.undo()
    review = bench.vault.sign(
        bench.ids["office"], "review", record=record.tracking, purpose="review"
    )
    bench.vault.release(review, bench.root / "review")


def test_unknown_record_is_not_found(bench: Bench) -> None:
    with pytest.raises(NotFoundError):
        bench.vault.release(bench.retrieve_request("PCII-2026-00000001"), bench.root / "out")
    _assert_untouched(bench.root / "out")


def test_vault_paths_hold_no_plaintext_after_release(bench: Bench) -> None:
    """A sanity check on the bench: the attachment's bytes are stored only encrypted."""
    tracking = bench.validated()
    stored = bench.objects_path(f"records/{tracking}/files/0").read_bytes()
    assert ATTACHMENT_BYTES[:4096] not in stored
    assert VaultPaths(bench.vault.paths.root).keyring.exists()
    assert base64.b64encode(ATTACHMENT_BYTES[:48]) not in stored


def test_an_upload_colliding_with_a_record_leaves_that_record_intact(tmp_path: Path) -> None:
    """The owner side removes only what it wrote: another record's objects survive."""
    from pcii_vault.errors import ObjectExistsError
    from pcii_vault.store.filesystem import FilesystemStore
    from pcii_vault.submitter import upload

    store = FilesystemStore(tmp_path / "objects")
    store.put_if_absent("records/PCII-2026-00000001/document", b"someone else's ciphertext")
    document = json.dumps({**example_submission(), "attachments": []}).encode()
    with pytest.raises(ObjectExistsError):
        upload(
            store,
            vault_id="v-0123456789abcdef",
            tracking_number="PCII-2026-00000001",
            intake_public_key=bytes(32),
            kek_version=1,
            document=document,
            attachments=[],
        )
    assert store.get("records/PCII-2026-00000001/document") == b"someone else's ciphertext"


@pytest.mark.parametrize("damage", ["wrapped-key", "document"])
def test_a_release_that_cannot_authenticate_is_never_logged_as_a_permit(
    bench: Bench, damage: str
) -> None:
    """The key is unwrapped and the document opened before the access event is appended."""
    tracking = bench.validated()
    key = f"wrapped/{tracking}" if damage == "wrapped-key" else f"records/{tracking}/document"
    _flip(bench.objects_path(key), -1)
    size = bench.vault.index.size
    with pytest.raises(IntegrityError):
        bench.vault.release(bench.retrieve_request(tracking), bench.root / "out")
    bench.vault.sync()
    assert bench.vault.index.size == size
    assert bench.vault.index.recipients(tracking) == []
