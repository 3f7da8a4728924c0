"""Vault key management: rotate, rewrap, retire and status, in-process on a filesystem store.

Checks the documented order (the log says it first, then the keyring changes), that a
re-run after a failed keyring change completes it without a second event, that rewrap
moves every live record's wrapped key to the current KEK without touching payloads or
resurrecting a shredded key, and that old records still decrypt after rotation, rewrap
and retirement of the old version.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from vault_support import VaultBench

from pcii_vault.crypto.keywrap import parse_unverified_wrapped_kek_version
from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import BackendError, InputError, IntegrityError, PolicyDenied
from pcii_vault.history import HistoryAuditor
from pcii_vault.keys.local import LocalKeyring
from pcii_vault.ledger.log import Ledger
from pcii_vault.ledger.note import NoteVerifier
from pcii_vault.ledger.verify import verify_log
from pcii_vault.models.principal import PrincipalAttributes
from pcii_vault.models.request import SignedRequest
from pcii_vault.store.base import ObjectStore
from pcii_vault.vault import Vault, principal_params

SECRET = b"key-tests-unseal-secret"


class Setup(VaultBench):
    """The shared bench: an admin, an owner and an office user."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, secret=SECRET, attachment_bytes=b"fictional capture " * 2000)

    def submit(self) -> str:
        return self.submit_receipt().tracking_number

    def key_request(self, op: str, who: str = "admin", **params: Any) -> SignedRequest:
        return self.vault.sign(self.ids[who], "rotate-keys", params={"op": op, **params})

    def review(self, tracking: str) -> Path:
        """Release the record to the office; return the released attachment's path."""
        out = self.root / f"review-{tracking}-{self.vault.index.size}"
        request = self.vault.sign(self.ids["office"], "review", record=tracking, purpose="r")
        release = self.vault.release(request, out)
        return release.directory / "attachments" / self.attachment.name

    def wrapped_version(self, tracking: str) -> int:
        return parse_unverified_wrapped_kek_version(self.vault.store.get(f"wrapped/{tracking}"))

    def events(self, event_type: str) -> list[Any]:
        reader = self.vault.reader()
        return [e for e in reader.events(0, reader.size()) if e.type == event_type]

    def assert_log_sound(self) -> None:
        self.audit()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.vault.close()


def test_rotate_then_rewrap_moves_old_records_to_the_new_version(setup: Setup) -> None:
    old = [setup.submit(), setup.submit()]
    payloads = {t: setup.vault.store.get(f"records/{t}/files/0") for t in old}
    assert {setup.wrapped_version(t) for t in old} == {1}

    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
    assert setup.vault.current_kek_version() == 2
    assert setup.vault.keyring.current_version == 2
    [rotated] = setup.events("key.rotated")
    assert rotated.details == {"version": 2, "previous": 1}
    assert rotated.actor == "admin" and rotated.decision == "permit"

    done = setup.vault.rewrap_keys(setup.key_request("rewrap"))
    assert (done.count, done.version) == (2, 2)
    assert {setup.wrapped_version(t) for t in old} == {2}
    # Payloads are untouched: the very same ciphertext bytes.
    assert {t: setup.vault.store.get(f"records/{t}/files/0") for t in old} == payloads
    [rewrapped] = setup.events("key.rewrapped")
    assert rewrapped.details == {"count": 2, "version": 2}
    for tracking in old:
        assert setup.review(tracking).read_bytes() == setup.attachment.read_bytes()
    setup.assert_log_sound()


def test_a_rotation_after_another_process_rotated_reads_the_keyring_again(
    setup: Setup,
) -> None:
    """A process that unsealed the keyring to open its index, before another rotated."""
    other = Vault(setup.vault.paths.root, unseal=lambda: SECRET)
    try:
        assert other.index.size > 0  # the index's tag key: the keyring is unsealed now
        assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
        request = other.sign(setup.ids["admin"], "rotate-keys", params={"op": "rotate"})
        assert other.rotate_keys(request) == 3
    finally:
        other.close()
    setup.assert_log_sound()


def test_retired_old_version_still_serves_rewrapped_records(setup: Setup) -> None:
    tracking = setup.submit()
    setup.vault.rotate_keys(setup.key_request("rotate"))
    setup.vault.rewrap_keys(setup.key_request("rewrap"))
    setup.vault.retire_key(setup.key_request("retire", version=1), 1)
    assert setup.vault.keyring.min_decryption_version == 2
    [retired] = setup.events("key.retired")
    assert retired.details == {"version": 1}
    assert setup.review(tracking).read_bytes() == setup.attachment.read_bytes()
    # A fresh process (keyring read from disk) agrees.
    again = Vault(setup.vault.paths.root, unseal=lambda: SECRET)
    try:
        assert again.keyring.min_decryption_version == 2
    finally:
        again.close()
    setup.assert_log_sound()


def test_retiring_a_version_still_in_use_is_refused(setup: Setup) -> None:
    """Retiring before rewrap would strand the record: refused, nothing logged."""
    tracking = setup.submit()
    setup.vault.rotate_keys(setup.key_request("rotate"))
    size = setup.vault.index.size
    with pytest.raises(InputError, match="rewrap"):
        setup.vault.retire_key(setup.key_request("retire", version=1), 1)
    assert setup.vault.index.size == size
    assert setup.review(tracking).read_bytes() == setup.attachment.read_bytes()


def test_current_version_cannot_be_retired(setup: Setup) -> None:
    with pytest.raises(InputError, match="version 1 is the current one: rotate"):
        setup.vault.retire_key(setup.key_request("retire", version=1), 1)


def test_retiring_an_unknown_version_names_the_versions_there_are(setup: Setup) -> None:
    with pytest.raises(InputError, match=r"version 7 is not in the keyring \(it has 1\)"):
        setup.vault.retire_key(setup.key_request("retire", version=7), 7)


def test_new_records_after_rotation_are_wrapped_under_the_new_version(setup: Setup) -> None:
    setup.vault.rotate_keys(setup.key_request("rotate"))
    tracking = setup.submit()
    assert setup.wrapped_version(tracking) == 2
    [received] = setup.events("submission.received")
    assert received.details["kek_version"] == 2


def test_rewrap_is_idempotent(setup: Setup) -> None:
    setup.submit()
    setup.vault.rotate_keys(setup.key_request("rotate"))
    assert setup.vault.rewrap_keys(setup.key_request("rewrap")).count == 1
    assert setup.vault.rewrap_keys(setup.key_request("rewrap")).count == 0


def test_rewrap_skips_shredded_records(setup: Setup) -> None:
    """A withdrawn record's key is gone; rewrap must not bring anything back."""
    tracking = setup.submit()
    withdraw = setup.vault.sign(setup.ids["owner"], "withdraw", record=tracking, params={})
    setup.vault.transition(withdraw, "submission.withdrawn")
    setup.vault.rotate_keys(setup.key_request("rotate"))
    assert setup.vault.rewrap_keys(setup.key_request("rewrap")).count == 0
    assert list(setup.vault.store.list("wrapped/")) == []


class _DeleteBeforeWrite:
    """A store where each wrapped key is deleted right after rewrap reads it (a destroy)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        data, etag = self.inner.get_with_etag(key)
        if key.startswith("wrapped/"):
            self.inner.delete(key)
        return data, etag

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_rewrap_never_overwrites_a_concurrent_delete(setup: Setup) -> None:
    """put_if_match on the etag read: a key deleted meanwhile stays deleted (shredded)."""
    tracking = setup.submit()
    setup.vault.rotate_keys(setup.key_request("rotate"))
    real = setup.vault.store
    setup.vault.store = _DeleteBeforeWrite(real)
    try:
        # Deleted with no shred logged (not a withdrawal): named, and never written back.
        with pytest.raises(IntegrityError, match=f"are missing .*{tracking}"):
            setup.vault.rewrap_keys(setup.key_request("rewrap"))
    finally:
        setup.vault.store = real
    assert [i.key for i in real.list(f"wrapped/{tracking}")] == []


def test_rotation_that_fails_after_its_event_is_completed_by_a_rerun(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log says version 2 first; the keyring write fails; a re-run completes it once."""

    def broken_rotate(self: LocalKeyring) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(LocalKeyring, "rotate", broken_rotate)
        with pytest.raises(BackendError, match="again completes"):
            setup.vault.rotate_keys(setup.key_request("rotate"))
    assert setup.vault.current_kek_version() == 2
    assert setup.vault.keyring.current_version == 1
    status = setup.vault.key_status(setup.key_request("status"))
    assert (status.logged_version, status.current_version) == (2, 1)
    with pytest.raises(IntegrityError, match="keys rotate"):
        setup.vault.rewrap_keys(setup.key_request("rewrap"))

    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
    assert setup.vault.keyring.current_version == 2
    assert [e.details["version"] for e in setup.events("key.rotated")] == [2]
    # The next rotation is an ordinary one again.
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 3
    assert [e.details["version"] for e in setup.events("key.rotated")] == [2, 3]
    setup.assert_log_sound()


def test_a_rotation_killed_after_its_claim_is_completed_by_the_rerun(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: `keys rotate` killed after its claim, then run again as the
    docs say: the re-run lost to the dead run's claim ("nothing was rotated", exit 3),
    forgot the rotation it had noted, and once any act committed that claim the local
    keyring was behind the log for good (every submission exit 5). The re-run finds its
    own noted rotation in the log and completes it."""

    def killed(self: Ledger, end: int) -> None:
        raise KeyboardInterrupt  # as a kill between the claim and its commit

    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "_commit_until", killed)
        with pytest.raises(KeyboardInterrupt):
            setup.vault.rotate_keys(setup.key_request("rotate"))
    assert setup.vault.keyring.current_version == 1
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
    assert setup.vault.keyring.current_version == 2
    assert [e.details["version"] for e in setup.events("key.rotated")] == [2]
    setup.submit()
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 3
    setup.assert_log_sound()


def test_a_rotation_noted_here_but_logged_by_nobody_is_not_completed_by_another(
    setup: Setup,
) -> None:
    """A note of an interrupted rotation names its request: another rotation that wins
    meanwhile is not taken for it (that keyring change is another replica's)."""
    (setup.vault.paths.root / "rotation-pending").write_text("2 not-a-logged-nonce")
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
    assert [e.details["version"] for e in setup.events("key.rotated")] == [2]
    assert not (setup.vault.paths.root / "rotation-pending").exists()


def test_keyring_rotated_outside_the_vault_is_refused(setup: Setup) -> None:
    setup.vault.keyring.rotate()  # no event: the log still says version 1
    size = setup.vault.index.size
    with pytest.raises(IntegrityError, match="outside the vault"):
        setup.vault.rotate_keys(setup.key_request("rotate"))
    assert setup.vault.index.size == size


def test_a_rotation_logged_here_whose_keyring_change_failed_is_completed(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(_self: LocalKeyring) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(LocalKeyring, "rotate", fail)
        with pytest.raises(BackendError, match="completes the logged rotation"):
            setup.vault.rotate_keys(setup.key_request("rotate"))
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
    assert [e.details["version"] for e in setup.events("key.rotated")] == [2]
    setup.assert_log_sound()


def test_a_keyring_behind_a_rotation_logged_elsewhere_wraps_nothing(setup: Setup) -> None:
    """Another replica (its own copy of the local keyring) rotated: this one must not wrap
    under the old version, nor make a second, different version 2."""
    root = setup.vault.paths.root
    stale = (root / "keyring.sealed").read_bytes()
    setup.vault.keyring  # noqa: B018
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
    setup.vault.close()
    (root / "keyring.sealed").write_bytes(stale)  # this replica's copy, never rotated
    replica = Vault(root, unseal=lambda: SECRET)
    setup.vault = replica
    replica.sync()
    size = replica.index.size
    with pytest.raises(BackendError, match="rotated by another replica"):
        setup.submit()
    with pytest.raises(BackendError, match="rotated by another replica"):
        replica.rotate_keys(setup.key_request("rotate"))
    # A tester's finding: retire answered exit 2 "version 1 is the current one: rotate".
    with pytest.raises(BackendError, match="rotated by another replica"):
        replica.retire_key(setup.key_request("retire", version=1), 1)
    # A tester's finding: such a replica's /readyz said ready; the probe asks this.
    with pytest.raises(BackendError, match="rotated by another replica"):
        replica.check_keys_current()
    replica.sync()
    assert not [e for e in setup.events("key.rotated") if e.seq >= size]
    assert not setup.events("key.retired")


def test_a_note_put_back_with_an_older_keyring_makes_no_new_key_of_a_used_version(
    setup: Setup,
) -> None:
    """A tester's finding: an older keyring.sealed put back with a note "2" (the vault's
    own, or forged) made `keys rotate` generate a new version 2, and every record wrapped
    under the real one failed (exit 4). A version the log shows in use is never made."""
    root = setup.vault.paths.root
    setup.vault.keyring  # noqa: B018
    older = (root / "keyring.sealed").read_bytes()
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
    tracking = setup.submit()  # wrapped under version 2
    setup.vault.close()
    (root / "keyring.sealed").write_bytes(older)
    (root / "rotation-pending").write_text("2")
    setup.vault = Vault(root, unseal=lambda: SECRET)
    with pytest.raises(IntegrityError, match="wrapped under KEK version 2"):
        setup.vault.rotate_keys(setup.key_request("rotate"))
    assert (root / "keyring.sealed").read_bytes() == older  # no key made
    assert setup.wrapped_version(tracking) == 2


@pytest.mark.parametrize("kind", ["directory", "fifo", "dev-zero"])
def test_a_planted_rotation_note_is_refused_not_waited_on(setup: Setup, kind: str) -> None:
    """A tester's finding: a FIFO there hung `keys rotate` (holding the key lock), a
    directory was exit 1, and /dev/zero was read until memory ran out."""
    note = setup.vault.paths.root / "rotation-pending"
    if kind == "directory":
        note.mkdir()
    elif kind == "fifo":
        os.mkfifo(note)
    else:
        note.symlink_to("/dev/zero")
    with pytest.raises(IntegrityError, match="not the note a rotation writes"):
        setup.vault.rotate_keys(setup.key_request("rotate"))


def test_an_older_keyring_put_back_under_a_running_vault_wraps_nothing(setup: Setup) -> None:
    """A tester's finding: a server that rotated to version 2 kept wrapping under it from
    memory after an older keyring.sealed was put back, so each new record's key was in
    no file (unreadable after a restart). The file is read again when it changed."""
    path = setup.vault.paths.keyring
    setup.vault.keyring  # noqa: B018
    older = path.read_bytes()
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
    setup.submit()  # the same long-lived vault object, as a server holds it
    path.write_bytes(older)
    with pytest.raises(BackendError, match="older copy"):
        setup.submit()


def test_rewrap_under_an_older_keyring_gives_the_advice_rotate_acts_on(setup: Setup) -> None:
    """A tester's finding: rewrap said "run keys rotate again" (exit 4); rotate then said
    "copy the newest keyring.sealed" (exit 5). Both now say the latter, with exit 5."""
    path = setup.vault.paths.keyring
    older = path.read_bytes()
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 2
    path.write_bytes(older)
    with pytest.raises(BackendError, match=r"copy the newest keyring\.sealed"):
        setup.vault.rewrap_keys(setup.key_request("rewrap"))
    with pytest.raises(BackendError, match=r"copy the newest keyring\.sealed"):
        setup.vault.rotate_keys(setup.key_request("rotate"))


def test_status_shows_a_version_the_log_retired_as_retired(setup: Setup) -> None:
    """A tester's finding: a keyring.sealed put back from before `keys retire 1` made
    status list version 1 as usable, while every unwrap under it was refused."""
    setup.vault.rotate_keys(setup.key_request("rotate"))
    setup.vault.rewrap_keys(setup.key_request("rewrap"))
    path = setup.vault.paths.keyring
    before = path.read_bytes()
    setup.vault.retire_key(setup.key_request("retire", version=1), 1)
    path.write_bytes(before)
    status = setup.vault.key_status(setup.key_request("status"))
    assert {v.version: v.retired for v in status.versions} == {1: True, 2: False}


def test_an_index_that_cannot_be_written_is_the_vault_storage_failing(setup: Setup) -> None:
    """A tester's finding: a full disk under the vault made every logged act exit 1 (and
    the server answer 500): SQLite had rolled the overlay back itself, and the vault's
    second ROLLBACK hid the reason. A full index is `BackendError` (exit 5, 503)."""
    index = setup.vault.index
    pages = index._db.execute("PRAGMA page_count").fetchone()[0]
    index._db.execute(f"PRAGMA max_page_count = {pages}")
    failures: list[BaseException] = []
    for _ in range(30):
        try:
            setup.submit()
        except Exception as exc:  # noqa: BLE001 -- what each failure is, is the test
            failures.append(exc)
            break
    assert failures, "the index never filled up"
    assert isinstance(failures[0], BackendError), repr(failures[0])
    assert "index cannot be written" in str(failures[0])
    index._db.execute("PRAGMA max_page_count = 1073741823")
    setup.submit()
    setup.assert_log_sound()


def test_rotation_by_another_process_is_seen(setup: Setup) -> None:
    """A Vault whose keyring was unsealed earlier reads it again under the key lock."""
    setup.vault.keyring  # noqa: B018 -- unseal now, before the other process rotates
    other = Vault(setup.vault.paths.root, unseal=lambda: SECRET)
    try:
        other.sync()
        request = other.sign(setup.ids["admin"], "rotate-keys", params={"op": "rotate"})
        assert other.rotate_keys(request) == 2
    finally:
        other.close()
    assert setup.vault.rotate_keys(setup.key_request("rotate")) == 3


def test_only_an_admin_rotates_and_the_denial_is_logged(setup: Setup) -> None:
    with pytest.raises(PolicyDenied):
        setup.vault.rotate_keys(setup.key_request("rotate", who="office"))
    [denial] = [e for e in setup.events("access.decided") if e.action == "rotate-keys"]
    assert denial.actor == "office" and denial.decision == "deny"
    assert setup.vault.keyring.current_version == 1
    with pytest.raises(PolicyDenied):
        setup.vault.key_status(setup.key_request("status", who="owner"))


def test_a_key_request_for_one_operation_is_refused_for_another(setup: Setup) -> None:
    status = setup.key_request("status")
    with pytest.raises(IntegrityError, match="key operation"):
        setup.vault.rotate_keys(status)
    retire_two = setup.key_request("retire", version=2)
    with pytest.raises(IntegrityError, match="key operation"):
        setup.vault.retire_key(retire_two, 1)
    assert setup.vault.keyring.current_version == 1


def test_replayed_rotation_request_is_refused(setup: Setup) -> None:
    request = setup.key_request("rotate")
    setup.vault.rotate_keys(request)
    with pytest.raises(IntegrityError, match="replayed"):
        setup.vault.rotate_keys(request)
    assert setup.vault.keyring.current_version == 2


def test_key_status_shows_versions_and_no_key_material(setup: Setup) -> None:
    setup.vault.rotate_keys(setup.key_request("rotate"))
    status = setup.vault.key_status(setup.key_request("status"))
    assert status.current_version == status.logged_version == 2
    assert status.min_decryption_version == 1
    assert [(v.version, v.retired) for v in status.versions] == [(1, False), (2, False)]
    assert "key=" not in repr(status)


@pytest.mark.slow
def test_keys_commands_through_the_cli(tmp_path: Path) -> None:
    """`pcii keys status/rotate/rewrap/retire` as an admin runs them, with --json."""
    env = {"PCII_VAULT": str(tmp_path / "vault"), "PCII_UNSEAL_SECRET": SECRET.decode()}
    admin_key = tmp_path / "admin.key"

    def pcii(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "pcii_vault", "--json", *args],
            env={**_base_env(), **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    pcii("init", "--insecure-fast-kdf", "--admin-key-out", str(admin_key))
    assert pcii("--as", str(admin_key), "keys", "rotate") == {"version": 2}
    assert pcii("--as", str(admin_key), "keys", "rewrap") == {"count": 0, "version": 2}
    assert pcii("--as", str(admin_key), "keys", "retire", "1") == {"retired": 1}
    status = pcii("--as", str(admin_key), "keys", "status")
    assert status["current_version"] == 2
    assert status["min_decryption_version"] == 2
    assert [v["retired"] for v in status["versions"]] == [True, False]
    assert pcii("audit", "verify")["legal_history"] is True


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PCII_", "AWS_"))}


def test_identify_refuses_a_principal_who_is_not_active(setup: Setup) -> None:
    # `identify` alone gates some server routes (principal and deadline lists, tracking
    # numbers); it reads the log first, so a suspension made through another replica
    # counts at once, whatever that server's own lookup still says.
    setup.update("office", status="suspended")
    with pytest.raises(PolicyDenied, match="office is suspended"):
        setup.vault.check_identity(setup.ids["office"])
    assert setup.vault.check_identity(setup.ids["owner"]).id == "owner"


def test_a_request_with_an_unknown_use_is_denied_and_says_why(setup: Setup) -> None:
    # Facts the policy schema does not know deny (an evaluation error); the denial is
    # logged and named, never a crash (a server answered 500 here).
    tracking = setup.submit()
    request = setup.vault.sign(setup.ids["owner"], "status", record=tracking, use="no\nsuch")
    with pytest.raises(PolicyDenied, match=r"status denied for 'owner': unknown use 'no\\nsuch'"):
        setup.vault.status(request)
    [denial] = setup.events("access.decided")
    assert denial.request["body"]["use"] == "no\nsuch"


def test_an_act_naming_a_record_it_is_not_about_is_refused_unlogged(setup: Setup) -> None:
    # The vault decides a principal or key act without a record; the auditor replays
    # each logged decision on the record its request names. A denied act naming a record
    # (any user can sign one) was logged and then made `pcii audit verify` report the
    # log unsound; such a request is refused before anything is decided or logged.
    tracking = setup.submit()
    key = Ed25519PrivateKey.generate().public_key
    attributes = PrincipalAttributes(role="auditor", organisation="IG", level="federal")
    request = setup.vault.sign(
        setup.ids["owner"],
        "manage-principals",
        record=tracking,
        authority="x",
        params=principal_params("ig", attributes, key),
    )
    with pytest.raises(InputError, match=r"names a record .* it does not act on"):
        setup.vault.add_principal(request, "ig", attributes, key)
    assert setup.events("access.decided") == []
    history = HistoryAuditor(setup.real)
    try:
        verify_log(
            setup.real,
            NoteVerifier.from_key_string(setup.vault.config.log_key),
            event_checker=history,
        )
        history.finish()
    finally:
        history.close()
    assert history.decisions_replayed > 0


def test_a_release_after_another_process_rotated_and_rewrapped_reads_the_keyring_again(
    setup: Setup,
) -> None:
    """A server unsealed before `keys rotate` and `keys rewrap` ran in another process on
    its directory: the rewrapped record names KEK version 2, which its copy of the keyring
    lacked (was: exit 4, "KEK version 2 is not in this keyring", until a restart)."""
    tracking = setup.submit()
    setup.vault.keyring  # noqa: B018 -- unsealed now, as a server is from its start
    other = Vault(setup.vault.paths.root, unseal=lambda: SECRET)
    try:
        other.sync()
        rotate = other.sign(setup.ids["admin"], "rotate-keys", params={"op": "rotate"})
        assert other.rotate_keys(rotate) == 2
        other.rewrap_keys(other.sign(setup.ids["admin"], "rotate-keys", params={"op": "rewrap"}))
    finally:
        other.close()
    assert setup.wrapped_version(tracking) == 2
    assert setup.review(tracking).read_bytes() == setup.attachment.read_bytes()
    setup.assert_log_sound()


def test_a_release_under_a_version_no_copy_of_the_keyring_holds_is_exit_5(
    setup: Setup,
) -> None:
    """Rotated by a replica with its own keyring copy: not tampering (exit 4) but a
    keyring to copy here (exit 5), as for wrapping."""
    tracking = setup.submit()
    root = setup.vault.paths.root
    stale = (root / "keyring.sealed").read_bytes()
    setup.vault.rotate_keys(setup.key_request("rotate"))
    setup.vault.rewrap_keys(setup.key_request("rewrap"))
    setup.vault.close()
    (root / "keyring.sealed").write_bytes(stale)  # this replica's copy, never rotated
    replica = Vault(root, unseal=lambda: SECRET)
    setup.vault = replica
    with pytest.raises(BackendError, match="rotated by another replica"):
        setup.review(tracking)


def test_a_wrapped_key_naming_a_version_the_log_never_made_is_tampering(setup: Setup) -> None:
    """A flipped version byte names a KEK nobody rotated to: exit 4, not a replica's."""
    tracking = setup.submit()
    path = setup.vault.paths.objects / "wrapped" / tracking
    blob = bytearray(path.read_bytes())
    blob[1:5] = (2).to_bytes(4, "big")  # after the format byte: the KEK version
    path.write_bytes(bytes(blob))
    assert setup.wrapped_version(tracking) == 2
    with pytest.raises(IntegrityError, match="the log never made current"):
        setup.review(tracking)


def test_a_keyring_put_back_from_before_a_retirement_is_refused(setup: Setup) -> None:
    """The retired KEK must not unwrap again through an older copy of keyring.sealed."""
    tracking = setup.submit()
    root = setup.vault.paths.root
    setup.vault.rotate_keys(setup.key_request("rotate"))
    before = (root / "keyring.sealed").read_bytes()
    under_v1 = setup.real.get(f"wrapped/{tracking}")
    setup.vault.rewrap_keys(setup.key_request("rewrap"))
    setup.vault.retire_key(setup.key_request("retire", version=1), 1)
    setup.vault.close()
    (root / "keyring.sealed").write_bytes(before)
    (root / "objects" / "wrapped" / tracking).write_bytes(under_v1)
    reopened = Vault(root, unseal=lambda: SECRET)
    setup.vault = reopened
    with pytest.raises(IntegrityError, match="which the log retired"):
        setup.review(tracking)
    # The vault itself stays usable (a replica's stale copy, a retirement whose keyring
    # write was cut short, look the same): only the retired version refuses to unwrap.
    fresh = setup.submit()
    assert setup.review(fresh).read_bytes() == setup.attachment.read_bytes()
    with pytest.raises(IntegrityError, match="1 wrapped keys did not unwrap"):
        setup.vault.rewrap_keys(setup.key_request("rewrap"))


def test_a_live_records_missing_wrapped_key_fails_the_rewrap(setup: Setup) -> None:
    """A tester's finding: `keys rewrap` said "re-wrapped 0 data keys" (exit 0) while a
    live record's wrapped key had been deleted outside the vault."""
    tracking = setup.submit()
    setup.vault.rotate_keys(setup.key_request("rotate"))
    setup.real.delete(f"wrapped/{tracking}")
    with pytest.raises(IntegrityError, match=f"did not unwrap or are missing .*{tracking}"):
        setup.vault.rewrap_keys(setup.key_request("rewrap"))


def test_a_keyring_put_back_whose_current_version_the_log_retired_is_refused(
    setup: Setup,
) -> None:
    """The copy's current version (2) was retired after a rotation to 3: no unwrap under it."""
    tracking = setup.submit()
    root = setup.vault.paths.root
    setup.vault.rotate_keys(setup.key_request("rotate"))
    setup.vault.rewrap_keys(setup.key_request("rewrap"))
    before = (root / "keyring.sealed").read_bytes()
    under_v2 = setup.real.get(f"wrapped/{tracking}")
    setup.vault.rotate_keys(setup.key_request("rotate"))
    setup.vault.rewrap_keys(setup.key_request("rewrap"))
    setup.vault.retire_key(setup.key_request("retire", version=2), 2)
    setup.vault.close()
    (root / "keyring.sealed").write_bytes(before)
    (root / "objects" / "wrapped" / tracking).write_bytes(under_v2)
    setup.vault = Vault(root, unseal=lambda: SECRET)
    with pytest.raises(IntegrityError, match="KEK version 2, which the log retired"):
        setup.review(tracking)


def test_retiring_a_version_that_is_not_the_oldest_leaves_the_others_working(
    setup: Setup,
) -> None:
    """Retire 2 of 1, 2, 3 while a record is still under 1 (a tester's check bricked this)."""
    old = setup.submit()
    setup.vault.rotate_keys(setup.key_request("rotate"))
    setup.vault.rotate_keys(setup.key_request("rotate"))
    setup.vault.retire_key(setup.key_request("retire", version=2), 2)
    assert setup.wrapped_version(old) == 1
    assert setup.review(old).read_bytes() == setup.attachment.read_bytes()
    assert setup.review(setup.submit()).read_bytes() == setup.attachment.read_bytes()
    reopened = Vault(setup.vault.paths.root, unseal=lambda: SECRET)
    setup.vault.close()
    setup.vault = reopened
    assert reopened.key_status(setup.key_request("status")).current_version == 3
    setup.assert_log_sound()


def test_a_retirement_whose_keyring_write_failed_is_completed_by_a_rerun(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.submit()
    setup.vault.rotate_keys(setup.key_request("rotate"))
    setup.vault.rewrap_keys(setup.key_request("rewrap"))

    def fail(_self: LocalKeyring, _version: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(LocalKeyring, "retire", fail)
        with pytest.raises(OSError, match="No space left"):
            setup.vault.retire_key(setup.key_request("retire", version=1), 1)
    # Logged, the keyring not changed: the vault works, and a re-run completes it.
    assert setup.review(setup.submit()).read_bytes() == setup.attachment.read_bytes()
    setup.vault.retire_key(setup.key_request("retire", version=1), 1)
    assert [v.retired for v in setup.vault.keyring.versions] == [True, False]
    setup.assert_log_sound()


def test_a_receipt_naming_a_field_twice_does_not_verify(setup: Setup) -> None:
    """A tester's finding: a receipt with a second `tracking_number` verified (the last
    value won, the one the proof covers): a key given twice is no receipt of ours."""
    from pcii_vault.receipt import verify_receipt

    receipt = setup.submit_receipt()
    text = json.dumps(receipt.to_json())
    key = setup.vault.config.log_key
    assert verify_receipt(text.encode(), key).tracking_number == receipt.tracking_number
    doubled = text.replace(
        '"tracking_number": ', '"tracking_number": "PCII-2026-00000001", "tracking_number": ', 1
    )
    with pytest.raises(IntegrityError, match="not a well-formed"):
        verify_receipt(doubled.encode(), key)


def test_a_deleted_index_is_rebuilt_from_the_log_with_a_warning(setup: Setup) -> None:
    """A tester's finding: SECURITY.md promised a warning that never came."""
    tracking = setup.submit()
    setup.vault.close()
    setup.vault.paths.index.unlink()
    reopened = Vault(setup.vault.paths.root, unseal=lambda: SECRET)
    setup.vault = reopened
    with structlog.testing.capture_logs() as logs:
        assert reopened.status(reopened.sign(setup.ids["owner"], "status", record=tracking))
    assert [e["event"] for e in logs].count("index_rebuilt_from_log") == 1


def test_a_vault_directory_that_cannot_be_written_is_exit_5_naming_the_file(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: a read-only vault directory crashed every command (exit 1,
    OSError on `index.sqlite.lock`), reads included."""
    root = setup.vault.paths.root
    setup.vault.close()
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        # As Linux answers on a read-only mount: an existing name first, then EROFS.
        writes = flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR)
        if str(path).startswith(str(root)) and writes:
            if flags & os.O_EXCL and os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, "File exists", str(path))
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(BackendError, match=r"cannot write .*\.lock: Read-only file system"):
        vault = Vault(root, unseal=lambda: SECRET)
        try:
            vault.sync()
        finally:
            vault.close()


def test_a_rotation_whose_note_cannot_be_written_is_exit_5_and_logs_nothing(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: a full vault disk as `rotation-pending` was written said
    "cannot write the output" (exit 2, for a destination the user named)."""
    import pcii_vault.core.keyacts as keyacts_module

    def full(path: Path, *_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(keyacts_module, "write_new_file", full)
    size = setup.vault.reader().size()
    with pytest.raises(BackendError, match="rotation-pending: No space left on device"):
        setup.vault.rotate_keys(setup.key_request("rotate"))
    assert setup.vault.reader().size() == size
    assert not (setup.vault.paths.root / "rotation-pending").exists()


def test_a_new_vaults_policies_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """A tester's finding: under umask 000 `policies/` was 0777 and its files 0666, while
    every other file of the vault is the owner's alone; the policies decide every act."""
    from vault_support import FAST_KDF

    previous = os.umask(0)
    try:
        vault, _ = Vault.create(
            tmp_path / "vault",
            store_url="file",
            secret=SECRET,
            admin_name="admin",
            admin_key_out=tmp_path / "admin.key",
            kdf_params=FAST_KDF,
        )
        vault.close()
    finally:
        os.umask(previous)
    policies = tmp_path / "vault" / "policies"
    assert policies.stat().st_mode & 0o777 == 0o700
    files = [p for p in policies.rglob("*") if p.is_file()]
    assert files
    assert {p.stat().st_mode & 0o777 for p in files} == {0o600}
    assert {p.stat().st_mode & 0o777 for p in policies.rglob("*") if p.is_dir()} <= {0o700}
