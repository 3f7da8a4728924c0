"""Key operations: status, rotation, re-wrapping, migration to another holder, retirement.

Invariant: what the log records of the keys decides; a rotation or a migration
interrupted midway is finished by running it again, never done twice.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from pcii_vault.core.acting import _draft, _Verdict
from pcii_vault.core.base import _ROTATION_PENDING
from pcii_vault.core.keying import Keying, _kek_missing_in_holder, _keyring_not_the_logs
from pcii_vault.crypto.envelope import RecordContext
from pcii_vault.durable import read_regular, vault_file_failure, write_new_file
from pcii_vault.errors import (
    ActConflictError,
    BackendError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyDenied,
    PreconditionFailedError,
)
from pcii_vault.index import RecordRow
from pcii_vault.keys.base import KekInfo, KeyLocation, KeyProvider
from pcii_vault.keys.custody import KeyCustody, open_custody
from pcii_vault.keys.providers import LOCAL, public_uri
from pcii_vault.lifecycle import SHREDDED_STATES
from pcii_vault.models.event import Event
from pcii_vault.models.principal import Principal
from pcii_vault.models.request import SignedRequest

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class KeyStatus:
    """What may be shown about the vault's keys: versions and dates, never key material."""

    current_version: int
    logged_version: int
    min_decryption_version: int
    versions: tuple[KekInfo, ...]
    last_rewrap: dict[str, Any] | None
    locations: tuple[KeyLocation, ...] = ()
    migration: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rewrap:
    """What `rewrap_keys` did: how many wrapped keys it replaced, under which version."""

    count: int
    version: int


@dataclass(frozen=True)
class Migration:
    """What `migrate_keys` did: records re-wrapped into the target provider."""

    count: int
    source: str
    target: str


_REWRAP_ATTEMPTS = 3


class KeyActs(Keying):
    """The admin's key operations."""

    def key_status(self, request: SignedRequest) -> KeyStatus:
        """The keyring's KEK versions and what the log says about them (no key material).

        Who may ask: an admin (a signed `rotate-keys` request with op `status`), and only
        where the keyring can be unsealed (the versions are sealed with the keys). It is
        a read of key metadata, not a change, so a permitted request is not logged (like
        `status`); a denied one is.

        Raises:
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: the request is forged, replayed, stale or for another op.
        """
        self._authorize_key_op(request, "status")
        # Another process may have rotated meanwhile: the file again, without waiting for
        # the key lock (a rotation holds it while it is logged, and `keys rotate` reads
        # this status first: two rotations at once must both see the version before).
        keyring = self._reread_keyring()
        rewrapped = self.index.meta("key.rewrapped")
        migrated = self.index.meta("key.migrated")
        with self._lock:
            retired = self.index.retired_versions()
        versions = tuple(keyring.versions)
        if unmarked := [v.version for v in versions if v.version in retired and not v.retired]:
            # An older keyring.sealed put back (or a retirement whose keyring write was cut
            # short): the log decides, as it does when a data key is unwrapped.
            _log.warning("keyring_holds_retired_versions_usable", versions=unmarked)
            versions = tuple(
                dataclasses.replace(v, retired=v.retired or v.version in retired) for v in versions
            )
        return KeyStatus(
            current_version=keyring.current_version,
            logged_version=self._logged_kek_version(keyring),
            min_decryption_version=keyring.min_decryption_version,
            versions=versions,
            last_rewrap=json.loads(rewrapped) if rewrapped else None,
            locations=keyring.locations(),
            migration=self._migration_progress(keyring, json.loads(migrated)) if migrated else None,
        )

    def rotate_keys(self, request: SignedRequest) -> int:
        """Add a KEK version and make it current: the log says so first, then the keyring.

        Order and re-runs (a decision): the `key.rotated` event (details: the new version
        and the previous one; never key material) is appended before the keyring changes,
        so the log never misses a rotation. If the keyring change then fails, the log is
        one version ahead of the keyring; a re-run sees exactly that (logged version ==
        keyring version + 1) and completes the logged rotation without a second event,
        so the log holds one `key.rotated` per version. Any other disagreement (the
        keyring ahead of the log, or behind by more than one) means the keyring was
        changed outside the vault: refused, for a person to look at.

        Returns:
            The new current KEK version.

        Raises:
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: forged/replayed request, or keyring and log disagree.
            BackendError: the log or the keyring file could not be written.
        """
        with self._key_lock() as fresh_keyring:
            # The version it makes, when signed (see `_require_next_version`).
            signed = request.body.params.get("version")
            self._authorize_key_op(
                request, "rotate", **({} if signed is None else {"version": signed})
            )
            keyring = fresh_keyring()
            logged, held = self._logged_kek_version(keyring), keyring.current_version
            pending = self.paths.root / _ROTATION_PENDING
            if logged == held + 1 and _pending_version(pending) == logged:
                # This vault logged the rotation and died before its keyring changed:
                # then no data key was wrapped under that version yet. One was: the key
                # existed, and this keyring.sealed is an older copy (the note, put back
                # with it, does not make a new key of that version).
                self._refuse_if_version_used(logged)
                _log.warning("completing_logged_rotation", version=logged)
                version = self._rotate_keyring(keyring, expected=logged)
                pending.unlink(missing_ok=True)
                return version
            if logged > held and keyring.key_id == LOCAL:
                raise _keyring_not_the_logs(logged, held, pending=None)  # not this vault's own
            if logged == held + 1:
                # Not this vault's own rotation (it noted none): the key holder lost the
                # version (a key deleted there), or another replica logged it and failed
                # to make it. Making a new key of that version would orphan every record
                # wrapped under the lost one: refused, for a person to look at.
                raise BackendError(_kek_missing_in_holder(keyring.key_id, logged))
            if logged != held:
                raise IntegrityError(
                    f"the keyring's current KEK version is {held} but the log says {logged}: "
                    "the keyring was changed outside the vault"
                )
            _require_next_version(request, held)
            # A rotation of this vault interrupted after its claim (killed): its event
            # may be committed by this very attempt, which then loses to it.
            interrupted = _pending_rotation(pending)

            def rotate(_admin: Principal, _row: RecordRow | None, verdict: _Verdict) -> list[Event]:
                if self._logged_kek_version(keyring) != held:
                    raise ActConflictError(
                        "another key rotation was logged first: nothing was rotated (see "
                        "`pcii keys status`)"
                    )
                details: dict[str, Any] = {"version": held + 1, "previous": held}
                if keyring.key_id != LOCAL:
                    details["kek"] = keyring.key_id
                return [self._decision_event("key.rotated", request, verdict, details=details)]

            # Noted before the event is logged: a re-run after a crash between the two
            # completes this vault's own rotation, never another replica's.
            try:
                pending.unlink(missing_ok=True)
                write_new_file(pending, f"{held + 1} {request.body.nonce}".encode(), mode=0o600)
            except OSError as exc:  # a full disk, say: nothing was logged
                raise vault_file_failure(pending, exc) from exc
            try:
                self._act(request, "rotate-keys", rotate)
            except ActConflictError:
                if not self._own_rotation_logged(interrupted, keyring, held + 1):
                    pending.unlink(missing_ok=True)  # refused: nothing was logged
                    raise
                # The rotation that came first is this vault's own, interrupted after
                # its claim: complete it (one event, as a re-run after a commit does).
                _log.warning("completing_logged_rotation", version=held + 1)
            except (PolicyDenied, InputError, IntegrityError, ConflictError):
                pending.unlink(missing_ok=True)  # refused: nothing was logged
                raise
            version = self._rotate_keyring(keyring, expected=held + 1)
            pending.unlink(missing_ok=True)
            return version

    def _refuse_if_version_used(self, version: int) -> None:
        """Raise if the verified log shows a data key wrapped under KEK `version`.

        Raises:
            IntegrityError: a logged submission or rewrap used that version.
        """
        reader = self.reader()
        checkpoint = reader.checkpoint()
        size = checkpoint.size if checkpoint is not None else 0
        for event in reader.events(0, size, size):
            used = event.details.get("kek_version") if event.type == "submission.received" else None
            if event.type == "key.rewrapped":
                used = event.details.get("version")
            if used == version:
                raise IntegrityError(
                    f"the log has data keys wrapped under KEK version {version} (event "
                    f"{event.seq}), which this keyring.sealed lacks: it is an older copy; "
                    "put the newest keyring.sealed back"
                )

    def _own_rotation_logged(
        self, interrupted: tuple[int, str | None] | None, keyring: KeyProvider, version: int
    ) -> bool:
        """Whether the logged rotation to `version` is the one this vault noted, interrupted.

        It is when its signed request's nonce, noted before it was logged, is in the log.
        """
        if interrupted is None or interrupted[0] != version or interrupted[1] is None:
            return False
        self.ledger.commit_claimed()
        self.sync()
        return (
            self.index.nonce_seen(interrupted[1]) and self._logged_kek_version(keyring) == version
        )

    def _rotate_keyring(self, keyring: KeyProvider, *, expected: int) -> int:
        try:
            version = keyring.rotate()
        except OSError as exc:
            raise BackendError(
                f"the keyring file could not be written ({exc.strerror or exc}); "
                "`pcii keys rotate` again completes the logged rotation"
            ) from exc
        if version != expected:
            raise IntegrityError(
                f"the keyring made KEK version {version}, the log says {expected}: "
                "the keyring was changed outside the vault"
            )
        return version

    def rewrap_keys(self, request: SignedRequest) -> Rewrap:
        """Re-wrap every live record's data key under the current KEK; payloads untouched.

        Each `wrapped/<id>` is replaced with put_if_match on the etag it was read with, so
        a concurrent writer (a destroy deleting it, another rewrap) is never overwritten:
        a changed object is read again, a deleted one is left deleted. Records already
        under the current version are skipped, so a re-run is cheap and idempotent. Then
        `key.rewrapped` (details: count, version) is logged: re-wrapping changes no
        access and no state, so the event reports work done rather than announcing it.

        Raises:
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: forged/replayed request; a rotation is logged but not done
                (run `pcii keys rotate` again); or a record's wrapped key does not
                unwrap (tampered, or its KEK version retired): named, after the others
                are done and logged.
            BackendError: the store or the log is unavailable.
        """
        with self._key_lock() as fresh_keyring:
            self._authorize_key_op(request, "rewrap")
            keyring = fresh_keyring()
            version = keyring.current_version
            logged = self._logged_kek_version(keyring)
            if logged != version:
                pending = _pending_version(self.paths.root / _ROTATION_PENDING)
                raise _keyring_not_the_logs(logged, version, pending=pending)
            count, _, failed = self._rewrap_live(keyring)
            details = {"count": count, "version": version}

            def rewrapped(
                _admin: Principal, _row: RecordRow | None, verdict: _Verdict
            ) -> list[Event]:
                if self._logged_kek_version(keyring) != version:
                    raise ActConflictError("a key rotation was logged meanwhile: rewrap again")
                return [self._decision_event("key.rewrapped", request, verdict, details=details)]

            self._act(request, "rotate-keys", rewrapped)
        if failed:
            raise IntegrityError(
                f"{len(failed)} wrapped keys did not unwrap or are missing (tampered, or "
                f"KEK retired): {', '.join(failed[:5])}"
            )
        return Rewrap(count=count, version=version)

    def _rewrap_one(self, keyring: KeyCustody, tracking: str) -> Literal["moved", "held", "gone"]:
        """Re-wrap one record's data key under the current KEK; say where it ended."""
        key = f"wrapped/{tracking}"
        context = RecordContext(self.config.vault_id, tracking).to_bytes()
        for _ in range(_REWRAP_ATTEMPTS):
            try:
                blob, etag = self.store.get_with_etag(key)
            except NotFoundError:
                return "gone"  # shredded meanwhile: stays shredded
            if keyring.is_current(blob):
                return "held"
            if keyring.owns(blob):
                self._refuse_retired_by_log(keyring.wrapped_version(blob))
            rewrapped = keyring.rewrap(blob, context)
            try:
                self.store.put_if_match(key, rewrapped, etag)
            except PreconditionFailedError:
                continue  # changed or deleted since read: look again
            return "moved"
        raise ConflictError(f"{key} keeps changing; run `pcii keys rewrap` again")

    def migrate_keys(self, request: SignedRequest, target_uri: str) -> Migration:
        """Move every live record's data key from the current KEK provider to another.

        Order (a decision): `key.migrated` with phase `started` (from, to, the target's
        KEK version) is logged first; from then on new records are wrapped by the target
        and the source only unwraps. Each live record's `wrapped/<id>` is re-wrapped by
        compare-and-swap (a destroy meanwhile stays destroyed; withdrawn and destroyed
        records are never re-wrapped); then phase `finished` (the count of live records
        the target then holds, moved by this run or an earlier one) is logged. A blob
        already under the target is skipped, so an interrupted migration is finished by
        running the same command again, and no key is wrapped twice.

        Raises:
            InputError: the KEKs already live at `target_uri`, or another migration is
                unfinished.
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: a record's wrapped key does not unwrap (named, after the
                others are done; the migration then stays unfinished).
            BackendError: a provider, the store or the log is unavailable.
        """
        target = public_uri(target_uri)
        with self._key_lock() as fresh_keyring:
            self._authorize_key_op(request, "migrate", to=target)
            keyring = fresh_keyring()
            migrated = self.index.meta("key.migrated")
            last = json.loads(migrated) if migrated else None
            resumed = last is not None and last["phase"] == "started"
            if last is not None and resumed:
                if last["to"] != target:
                    raise InputError(
                        f"the migration to {last['to']} is unfinished: run `pcii keys migrate "
                        f"--to {last['to']}` first"
                    )
                source = str(last["from"])
            else:
                source = self.current_kek_uri()
                if target == source:
                    raise InputError(f"the KEKs already live at {target}")
                # Create (or find) the target key before anything is logged.
                probe = open_custody(keyring.local, target_uri, LOCAL, create=True)
                version = probe.current_version
                probe.close()
                details = {"phase": "started", "from": source, "to": target, "version": version}
                adopted: list[dict[str, Any]] = []

                def started(
                    _admin: Principal, _row: RecordRow | None, verdict: _Verdict
                ) -> list[Event]:
                    adopted.clear()
                    current = self.index.meta("key.migrated")
                    if current != migrated:
                        logged = json.loads(current) if current else {}
                        if logged.get("phase") == "started" and logged.get("to") == target:
                            # A run killed after claiming its `started` (not yet
                            # committed, so the index did not show it): resume that one.
                            adopted.append(logged)
                            return []
                        raise ActConflictError(
                            "another key migration was logged first: run it again"
                        )
                    return [self._decision_event("key.migrated", request, verdict, details=details)]

                self._act(request, "rotate-keys", started)
                if adopted:
                    source, resumed = str(adopted[0]["from"]), True
                keyring.close()
                self._ledger = None  # it held the closed custody's signer
                # The source is named, not read back from the index: a `started` adopted
                # from another run's claim is not in the index until that claim commits.
                self._keyring = self._open_keys(target_uri, readers=(source,))
                keyring = self._keyring
            count, held, failed = self._rewrap_live(keyring)
            if failed:
                raise IntegrityError(
                    f"{len(failed)} wrapped keys did not unwrap or are missing (tampered, or KEK "
                    f"retired): "
                    f"{', '.join(failed[:5])}; the migration stays unfinished"
                )
            # The live records the target holds: a run finishing an interrupted one
            # moves only what that one left, and would otherwise tell that part alone.
            details = {
                "phase": "finished",
                "from": source,
                "to": target,
                "count": held,
                "version": keyring.current_version,
            }
            # A request's nonce is logged once: the run that logged `started` with the
            # admin's request finishes as the vault (an act of its closed list); a
            # resuming run logs its own request.
            if resumed:

                def finished(
                    _admin: Principal, _row: RecordRow | None, verdict: _Verdict
                ) -> list[Event]:
                    return [self._decision_event("key.migrated", request, verdict, details=details)]

                self._act(request, "rotate-keys", finished)
            else:
                self._append([_draft("key.migrated", self._clock(), details=details)])
        return Migration(count=count, source=source, target=target)

    def _rewrap_live(self, keyring: KeyCustody) -> tuple[int, int, list[str]]:
        """Re-wrap every live record's data key under the current KEK.

        Returns the keys this run moved, the live keys the current KEK holds at the end
        (those moved, by this run or an earlier, or wrapped under it from the start), and
        the records whose keys did not unwrap or are gone while the log says they live.
        """
        moved = held = 0
        failed: list[str] = []
        gone: list[str] = []
        for record in self.index.records():
            if record.state in SHREDDED_STATES:
                continue
            try:
                ended = self._rewrap_one(keyring, record.tracking)
            except IntegrityError:
                failed.append(record.tracking)
                continue
            moved += ended == "moved"
            held += ended != "gone"
            if ended == "gone":
                gone.append(record.tracking)
        if gone:
            # Shredded by an act logged meanwhile, or removed outside the vault.
            self.sync()
            for tracking in gone:
                row = self.index.find_record(tracking)
                if row is not None and row.state not in SHREDDED_STATES:
                    failed.append(tracking)
        return moved, held, failed

    def _migration_progress(self, keyring: KeyCustody, last: dict[str, Any]) -> dict[str, Any]:
        """The last migration and, while unfinished, how many live records have moved."""
        progress = dict(last)
        if last["phase"] == "started":
            live = [r for r in self.index.records() if r.state not in SHREDDED_STATES]
            moved = 0
            for record in live:
                try:
                    moved += keyring.owns(self.store.get(f"wrapped/{record.tracking}"))
                except NotFoundError:
                    continue
            progress.update(moved=moved, live=len(live))
        return progress

    def retire_key(self, request: SignedRequest, version: int) -> None:
        """Retire a KEK version (it no longer unwraps): logged first, then the keyring.

        Refused while a live record's data key is still wrapped under it (rewrap first),
        so retiring never strands a record.

        Raises:
            InputError: the version is current, unknown, already retired, or in use.
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: forged/replayed request, or a wrapped key is not readable.
        """
        with self._key_lock() as fresh_keyring:
            self._authorize_key_op(request, "retire", version=version)
            keyring = fresh_keyring()
            logged = self._logged_kek_version(keyring)
            if logged > keyring.current_version:
                # Rotated through another replica: this keyring's "current" is not the
                # log's, and its advice (rotate here) would be refused too.
                if keyring.key_id != LOCAL:
                    raise BackendError(_kek_missing_in_holder(keyring.key_id, logged))
                raise _keyring_not_the_logs(logged, keyring.current_version, pending=None)
            info = {v.version: v for v in keyring.versions}
            if version not in info:
                known = ", ".join(str(v) for v in sorted(info))
                raise InputError(f"KEK version {version} is not in the keyring (it has {known})")
            if version == keyring.current_version:
                raise InputError(
                    f"KEK version {version} is the current one: rotate (`pcii keys rotate`) "
                    "and rewrap before retiring it"
                )
            if info[version].retired:
                raise InputError(f"KEK version {version} is already retired")
            in_use = [
                record.tracking
                for record in self.index.records()
                if record.state not in SHREDDED_STATES
                and self._wrapped_under(keyring, record.tracking, version)
            ]
            if in_use:
                raise InputError(
                    f"{len(in_use)} records are still wrapped under KEK version {version} "
                    f"(e.g. {in_use[0]}): run `pcii keys rewrap` first"
                )
            keyring.check_retire(version)  # what the key holder would refuse, before logging
            details = {"version": version}

            def retired(
                _admin: Principal, _row: RecordRow | None, verdict: _Verdict
            ) -> list[Event]:
                return [self._decision_event("key.retired", request, verdict, details=details)]

            self._act(request, "rotate-keys", retired)
            keyring.retire(version)

    def _wrapped_under(self, keyring: KeyCustody, tracking: str, version: int) -> bool:
        try:
            blob = self.store.get(f"wrapped/{tracking}")
        except NotFoundError:
            return False
        # A blob of another provider (an unfinished migration) is not under this version.
        return keyring.owns(blob) and keyring.wrapped_version(blob) == version

    def _authorize_key_op(self, request: SignedRequest, op: str, **params: Any) -> None:  # noqa: ANN401
        """Check the request names this op, then verify and decide (`rotate-keys`)."""
        expected = {"op": op, **params}
        if request.body.params != expected:
            raise IntegrityError(
                f"request was signed for key operation {request.body.params!r}, not {expected!r}"
            )
        self._act(request, "rotate-keys", None)


_MAX_PENDING_NOTE = 256  # a version number, a space and a request's nonce


def _pending_version(path: Path) -> int | None:
    noted = _pending_rotation(path)
    return noted[0] if noted is not None else None


def _pending_rotation(path: Path) -> tuple[int, str | None] | None:
    """The version a rotation of this vault noted before logging it, and its nonce.

    The nonce of its signed request is None in a note written before nonces were.
    """
    try:
        noted = read_regular(path, _MAX_PENDING_NOTE)
    except FileNotFoundError:
        return None
    except (OSError, IntegrityError):
        # A directory, FIFO or device in its place: never waited on, nor read to the end.
        raise IntegrityError(
            f"{path.name} in the vault directory is not the note a rotation writes; remove it"
        ) from None
    try:
        fields = noted.decode("ascii").split()
    except UnicodeDecodeError:
        return None
    if len(noted) > _MAX_PENDING_NOTE or not 1 <= len(fields) <= 2:
        return None
    if not fields[0].isdigit() or len(fields[0]) > 9:
        return None
    return int(fields[0]), (fields[1] if len(fields) == 2 else None)


def _require_next_version(request: SignedRequest, held: int) -> None:
    """Refuse a rotation signed for another version than the next one.

    `pcii keys rotate` signs the version it makes (the current one + 1, as `keys status`
    gave it): of two rotations asked at once, the first makes it and the other is
    refused, not a second version nobody asked for. A request naming no version (as
    before) rotates whatever is current.

    Raises:
        ActConflictError: another rotation made that version (or the one signed for).
    """
    requested = request.body.params.get("version")
    if requested is not None and requested != held + 1:
        raise ActConflictError(
            f"this rotation was for KEK version {requested}, but version {held} is current "
            "now: another rotation came first, and nothing was rotated (see `pcii keys "
            "status`)"
        )
