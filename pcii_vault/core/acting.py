"""The way of one act: verify the request, decide, and sequence it at its log position.

`gate -> decide -> sequence`: the signed request is verified against the registered
principal (signature, vault, time window, nonce, typed parameters); the policies decide on
the principal's and the record's facts; the act's events are built in a batch, on the
state at the exact position they get, and appended in one claim and commit.

Invariants:
- an act's legality is decided at its log position: of two conflicting acts, exactly
  one wins, whichever thread, process or replica runs them;
- a denial is logged, then raised; a failure before the append leaves nothing visible;
- a changed policy set is logged (`policy.loaded`) before it decides anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic_core import to_jsonable_python

from pcii_vault.core.base import VAULT_ACTOR, _policy_stamp
from pcii_vault.core.projection import Projection, _forked, _rolled_back
from pcii_vault.decisions import decide, principal_facts, record_facts, request_facts
from pcii_vault.errors import (
    ActConflictError,
    BackendError,
    ConfigError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyDenied,
    VaultError,
)
from pcii_vault.identity import Identity
from pcii_vault.index import IndexWriteError, RecordRow
from pcii_vault.ledger.log import AppendResult, LogForkedError, LogRolledBackError, parse_event
from pcii_vault.ledger.tiles import MAX_ENTRY_BYTES
from pcii_vault.models.acts import check_params
from pcii_vault.models.event import Event, EventType
from pcii_vault.models.principal import Principal
from pcii_vault.models.request import RequestBody, SignedRequest, sign_request, verify_act
from pcii_vault.policy.archive import policy_set_damage, store_policy_set
from pcii_vault.policy.denial import explain_denial
from pcii_vault.policy.engine import Decision, EntityDirectory, PolicyEngine
from pcii_vault.sequencer import Act, Sequencer
from pcii_vault.text import unreadable

_log = structlog.get_logger(__name__)


class Acting(Projection):
    """A vault that verifies, decides and sequences acts (the way every act takes)."""

    def _policy_set_unlogged(self) -> bool:
        """Whether the index's last logged policy set is not the one this vault runs."""
        return bool(self.index.size) and self.index.meta("policy_set") != (
            self.policy.policy_set_hash
        )

    def _refresh_policy(self) -> None:
        """Load the policy directory again when its files changed (a long-lived vault).

        Raises:
            PolicyLoadError: the changed set does not load (every act is refused until
                it is fixed; the set loaded before is not used either).
        """
        directory = self._policy_dir()
        stamp = _policy_stamp(directory)
        if stamp != self._policy_stamp:
            self.policy = PolicyEngine.load(directory)
            self._policy_stamp = stamp

    def _note_policy_change(self) -> None:
        """Log a changed policy set (a `policy.loaded` event) before it decides anything.

        A long-lived vault object (a server) reloads the policy directory when its files
        change; a set that does not load refuses every act until it is fixed.
        """
        self._refresh_policy()
        if self._policy_set_unlogged():
            self._refuse_replacing_a_damaged_set()
            # A changed policy set is itself an event, before it decides anything; its
            # text goes into the store first, so an auditor can re-run its decisions.
            store_policy_set(self.store, self.policy)
            self._policy_text_stored = self.policy.policy_set_hash
            self._append(
                [_draft("policy.loaded", self._clock(), policy_set=self.policy.policy_set_hash)]
            )
        else:
            self._check_policy_text()

    def _check_policy_text(self) -> None:
        """Refuse to decide by a logged set whose stored text is gone or changed.

        Its text must still be in the store, or no decision it makes could be re-run by
        `audit verify`. Checked once per process and set. A text deleted or changed is
        tampering, refused here (not written over: `maintenance` does that, and says so).

        Raises:
            IntegrityError: naming the set and the way out.
        """
        if not self._policy_text_unchecked():
            return
        damage = policy_set_damage(self.store, self.policy.policy_set_hash)
        if damage is not None:
            raise IntegrityError(
                f"{damage}: its decisions could not be re-run; `pcii maintenance` "
                "writes it again from this vault's policies/"
            )
        self._policy_text_stored = self.policy.policy_set_hash

    def check_policy_ready(self) -> None:
        """Raise as the next act would for the policy set (a server's readiness probe).

        The policy directory loads, and the set that would decide, or the one in force
        that it would replace, has its text in the store (read again at each probe). Logs
        nothing.

        Raises:
            PolicyLoadError: the policy directory does not load.
            IntegrityError: a stored policy text is damaged (naming the way out).
        """
        with self._lock:
            self._refresh_policy()
            if self._policy_set_unlogged():
                self._refuse_replacing_a_damaged_set()
            else:
                # Read again, not taken from this process's first check: a text damaged
                # since is found here, and the next act checks it again too (refused).
                self._policy_text_stored = None
                self._check_policy_text()

    def _refuse_replacing_a_damaged_set(self) -> None:
        """Refuse to log a new policy set while the text of the one in force is damaged.

        Once another set is in force, nothing would write the old text again (its files
        are no longer in policies/) and its decisions could never be re-run: the change
        waits until the old text is restored, as every decision does while it is damaged.

        Raises:
            IntegrityError: the stored text of the logged set in force was deleted or
                changed outside the vault.
        """
        in_force = self.index.meta("policy_set")
        if not in_force:
            return
        damage = policy_set_damage(self.store, in_force)
        if damage is not None:
            raise IntegrityError(
                f"{damage}; that set is in force and policies/ now holds another: put its "
                "files back in this vault's policies/ and run `pcii maintenance` to write "
                "it again, then change the policies"
            )

    def _policy_loaded_again(self, position: int) -> list[Event]:
        """`policy.loaded` of this vault's set, when another is the last loaded at `position`.

        Replicas running different sets (a new one copied to them one by one) log theirs
        in turn: one may log its own between another's and that one's decisions, which
        would then be illegal there (decided by a set not the last loaded). The set is
        logged again first, in the same batch; only a set whose stored text this process
        has checked, so that `audit verify` can re-run its decisions.
        """
        policy_set = self.policy.policy_set_hash
        if not self._policy_set_unlogged() or self._policy_text_unchecked():
            return []
        loaded = _draft("policy.loaded", self._clock(), policy_set=policy_set)
        loaded = loaded.model_copy(update={"seq": position})
        _reads_back(loaded)
        if self.index.apply_in_overlay([loaded]) is not None:
            return []
        _log.warning("policy_set_logged_again", policy_set=policy_set[:16])
        return [loaded]

    def _policy_text_unchecked(self) -> bool:
        """Whether this process has not yet seen the running set's text in the store."""
        return self._policy_text_stored != self.policy.policy_set_hash

    def _append(self, drafts: Sequence[Event]) -> list[int]:
        """Append the vault's own events (no request to check); return their indices."""
        try:
            result = self.ledger.append(list(drafts))
        except OSError as exc:
            raise BackendError(f"log append failed: {exc.strerror or exc}") from exc
        self._catch_up(result)
        return list(result.indices)

    def sign(self, identity: Identity, action: str, **fields: Any) -> SignedRequest:  # noqa: ANN401
        """Sign a request as `identity` for this vault, at the vault's clock."""
        if identity.vault_id != self.config.vault_id:
            raise ConfigError(
                f"identity {identity.principal!r} belongs to vault {identity.vault_id}, "
                f"not {self.config.vault_id}"
            )
        return sign_request(
            identity.key,
            vault=self.config.vault_id,
            principal=identity.principal,
            action=action,
            now=self._clock(),
            **fields,
        )

    def check_identity(self, identity: Identity) -> Principal:
        """Refuse early, before any upload, an identity the vault would refuse anyway.

        Raises:
            ConfigError: the identity belongs to another vault.
            PolicyDenied: the principal is not registered.
            IntegrityError: the key is not the registered principal's key.
        """
        return self.identify(self.sign(identity, "identify"))

    def identify(self, request: SignedRequest) -> Principal:
        """The registered principal behind a signed `identify` request (nothing logged).

        Raises:
            IntegrityError: forged, stale, for another vault, or not the principal's key.
            PolicyDenied: the principal is not registered, or not active.
        """
        self.sync()
        principal = self._verify_request(request, "identify")
        # Routes gated by `identify` alone (listing principals and deadlines, tracking
        # numbers) rely on this: a server's own lookup may be a moment behind the log
        # when the change came through another replica.
        if principal.status != "active":
            raise PolicyDenied(f"principal {principal.id} is {principal.status}")
        return principal

    def _verify_request(self, request: SignedRequest, action: str) -> Principal:
        """Check who is asking. Failures here are not attributable, so not logged."""
        body = request.body
        try:
            principal = self.index.principal(body.principal)
        except NotFoundError as exc:
            if body.vault != self.config.vault_id:
                raise IntegrityError("request is for another vault") from None
            raise PolicyDenied(f"{body.principal!r} is not a registered principal") from exc
        verify_act(
            request,
            vault=self.config.vault_id,
            action=action,
            public_key=principal.public_key,
            now=self._clock(),
            window=timedelta(seconds=self.config.request_window_seconds),
        )
        if self.index.nonce_seen(body.nonce):
            raise IntegrityError("replayed request: this request is already in the log")
        check_params(body.action, body.params)  # the action's typed parameters, or exit 2
        _check_stated_text(body)
        return principal

    def _decide(
        self,
        principal: Principal,
        request: SignedRequest,
        record: RecordRow | None,
        directory: EntityDirectory | None = None,
    ) -> _Verdict:
        now = self._clock()
        decision = decide(
            self.policy, principal, request.body, record, now=now, directory=directory
        )
        return _Verdict(decision, now)

    def _decision_event(
        self,
        event_type: EventType,
        request: SignedRequest,
        verdict: _Verdict,
        *,
        details: dict[str, Any] | None = None,
    ) -> Event:
        # The event's time is the decision's: the auditor re-runs the decision at it.
        body = request.body
        decision = verdict.decision
        return Event(
            seq=0,
            time=verdict.at,
            type=event_type,
            actor=body.principal,
            request=request.to_log(),
            record=body.record,
            action=body.action,
            decision=decision.decision,
            policies=tuple(decision.policy_ids),
            policy_set=decision.policy_set_hash,
            purpose=body.purpose,
            use=body.use,
            authority=body.authority,
            obligations=tuple(decision.obligations),
            details=details or {},
        )

    def _act(
        self,
        request: SignedRequest,
        action: str,
        effect: Effect | None,
        *,
        record: str | None = None,
        new_record: bool = False,
        look_first: bool = True,
        decided_again: bool = False,
    ) -> _Done:
        """Verify, decide and log one act, all against the state at its log position.

        `effect(principal, record, verdict)` returns the events of a permitted act, or
        raises (InputError, ConflictError...) when the act is not legal in that state;
        `None` makes a read (nothing is logged on permit). A denial is logged and
        raised as PolicyDenied. If another writer takes the position first, the whole
        act is checked again at the next one: of two conflicting acts, exactly one wins.
        `look_first=False` skips the first look on the current state, for a caller
        that has just looked at the same request (a release): the act is verified and
        decided at its position all the same, and refused there as it would have been.
        `decided_again` marks a read that the caller decides again at its position (a
        release's first look): permitted on the index as it is, it needs no sync.

        Raises:
            IntegrityError: forged, replayed or stale request.
            InputError: the request names another record than `record` (or one at all).
            PolicyDenied: the policies refuse it at its position (the denial is logged).
            NotFoundError: the record does not exist (ConflictError: it does, for a new one).
        """
        if request.body.record != record:
            # The auditor replays each logged decision on the record its request names:
            # a signed record the act is not about would make the replay differ.
            raise InputError(
                f"the {action} request names a record ({request.body.record!r}) it does not act on"
            )
        outcome: list[_Done] = []

        def act() -> list[Event]:
            outcome.clear()
            principal = self._verify_request(request, action)
            row = self._record_at_position(record, new_record=new_record)
            verdict = self._decide(principal, request, row)
            outcome.append(_Done(principal, row, verdict))
            if not verdict.decision.allowed:
                return [self._decision_event("access.decided", request, verdict)]
            return effect(principal, row, verdict) if effect is not None else []

        to_log = True
        if look_first:
            try:
                with self._lock:
                    to_log = self._first_look(
                        act, read=effect is None and not decided_again, decided_again=decided_again
                    )
            except VaultError as exc:
                exc.handed_to_log = False  # refused at the first look: nothing went to the log
                raise
        indices = self.sequencer.run(act) if to_log else ()
        done = outcome[0]
        done.indices = tuple(indices)
        decision = done.verdict.decision
        if not decision.allowed:
            try:
                context = request_facts(request.body, done.verdict.at)
            except ValueError as exc:  # facts the policies do not know (an unknown use) deny
                raise PolicyDenied(f"{action} denied for {done.principal.id!r}: {exc}") from None
            # Name the reason a person can act on, and the command that replays it.
            raise PolicyDenied(
                explain_denial(
                    self.policy,
                    principal_facts(done.principal),
                    action=action,
                    record=record_facts(done.record) if done.record is not None else None,
                    context=context,
                    decision=decision,
                )
            )
        return done

    def _first_look(self, act: Act, *, read: bool, decided_again: bool = False) -> bool:
        """Look at an act on the current state: refuse early; whether it logs anything.

        A read (nothing logged on permit) is decided by this look, so it looks at the
        latest log: the index is synced first. An act that logs is decided again at its
        position on the latest log, so this look only refuses early: it is made on the
        index as it is (this process's batches keep it caught up); anything but events
        to log there (a refusal: an unknown record or principal, an illegal transition,
        a replay, a tampered index, a policy set not yet logged; or nothing to log) is
        looked at again after a sync, so that nothing is refused or decided here on a
        stale index. Saves every logged act a read of the checkpoint. A release's first
        look (`decided_again`) is made the same way, and a permit there is final for the
        look: the release is decided again at its position before anything is released.

        The caller holds the vault lock.
        """
        if not read:
            # Whatever this look raises, and a look that would log nothing (decided
            # here alone), is made again on the latest log.
            with contextlib.suppress(Exception):
                self._refresh_policy()
                if not self._policy_set_unlogged() and not self._policy_text_unchecked():
                    with self.index.overlay([]):
                        if act():
                            return True
                        if decided_again:
                            return False
        self.sync()
        self._note_policy_change()
        # A first look on the current state: refuse early, and a permitted read logs
        # nothing. What is logged is decided again at its position.
        with self.index.overlay([]):
            return bool(act())

    def _record_at_position(self, tracking: str | None, *, new_record: bool) -> RecordRow | None:
        if tracking is None:
            return None
        if new_record:
            with contextlib.suppress(NotFoundError):
                self.index.record(tracking)
                raise ConflictError(f"tracking number {tracking} is already a record")
            return None
        return self.index.record(tracking)

    @property
    def sequencer(self) -> Sequencer:
        """The group commit of this vault object (started on first use)."""
        started = self._sequencer
        if started is not None:
            # Every requester passes here after its first look: not through the lock.
            return started
        with self._lock:
            if self._sequencer is None:
                self._sequencer = Sequencer(
                    self._run_batch,
                    max_batch=self._batching.max_acts,
                    max_age=self._batching.max_age,
                    max_pending=self._batching.max_pending,
                )
            return self._sequencer

    def _run_batch(self, acts: Sequence[Act]) -> list[tuple[int, ...] | BaseException]:
        """Decide a batch of acts at its log position, in order; append all their events.

        Each act runs on the index as it will be just before its events: the committed
        log, the claims other writers made before the batch's position, and the events
        of the acts before it in the batch (a rolled-back overlay). An act refused there
        is left out; the others are claimed together and committed at once.
        """
        index = self.index
        outcomes: list[tuple[int, ...] | BaseException] = []
        spans: list[tuple[int, int] | None] = []

        def build(position: int, before: Sequence[bytes]) -> list[Event]:
            outcomes.clear()
            spans.clear()
            drafts: list[Event] = []
            # `before` holds the entries from the index's size up to the position.
            start = position - len(before)
            events = [parse_event(entry, start + i) for i, entry in enumerate(before)]
            with self._lock, index.overlay(events):
                if index.size != position:
                    # Another process of this vault (a worker, a replica on this host)
                    # applied events past the log tip this claim read: build again
                    # from the newer tip, never on a state ahead of the position.
                    raise _StalePositionError
                drafts += self._policy_loaded_again(position)
                for act in acts:
                    try:
                        made = act()
                        numbered = [
                            d.model_copy(update={"seq": position + len(drafts) + i})
                            for i, d in enumerate(made)
                        ]
                        for event in numbered:
                            _reads_back(event)
                        illegal = index.apply_in_overlay(numbered) if made else None
                    except IndexWriteError:
                        raise  # the index cannot be written: the batch, not one act, fails
                    except Exception as exc:  # noqa: BLE001 -- the act's refusal, for its requester
                        if isinstance(exc, VaultError):
                            exc.handed_to_log = False  # refused at its position: left out
                        outcomes.append(exc)
                        spans.append(None)
                        continue
                    if illegal is not None:
                        outcomes.append(ActConflictError(f"refused at its log position: {illegal}"))
                        spans.append(None)
                        continue
                    outcomes.append(())
                    spans.append((len(drafts), len(made)) if made else None)
                    drafts.extend(made)
            if not drafts:
                raise _NothingToLogError
            return drafts

        try:
            result = self._append_built(build)
        except _NothingToLogError:
            return outcomes
        with self._lock:
            self._catch_up(result)
        for i, span in enumerate(spans):
            if span is not None:
                start, count = span
                outcomes[i] = tuple(result.indices[start : start + count])
        return outcomes

    def _append_built(self, build: Callable[[int, Sequence[bytes]], list[Event]]) -> AppendResult:
        """Append what `build` decides on the index's state at the position it gets.

        Raises:
            IntegrityError: the index is ahead of the log (a rollback) or was built
                from another history of it (a fork).
            BackendError: the store failed, or the log kept moving on.
        """
        index = self.index
        for _ in range(_STALE_ATTEMPTS):
            with self._lock:
                known, root = index.size_and_root()
            try:
                return self.ledger.append_at(build, known_size=known, known_root=root)
            except _StalePositionError:
                continue
            except LogRolledBackError as exc:  # the index, authenticated, is ahead
                raise _as_handed(IntegrityError(_rolled_back(exc.seen, exc.size)), exc) from None
            except LogForkedError as exc:  # the index was built from another history
                raise _as_handed(IntegrityError(_forked(exc.seen)), exc) from None
            except OSError as exc:
                raise BackendError(f"log append failed: {exc.strerror or exc}") from exc
        raise BackendError("the log kept moving on while this batch was decided: try again")

    def _catch_up(self, appended: AppendResult) -> None:
        """Bring the index up to the checkpoint that covers this process's append.

        When the index stops exactly where the append begins and the append ends the
        checkpoint, the gap is the appended entries themselves, already checked in the
        signed tree at their positions: they are parsed from those bytes, not read back
        from the store. Otherwise (other writers' events around them) the log is read.
        """
        index = self._trusted_index()
        size, mine = appended.size, appended.indices
        if index.size < size:
            own = (
                mine
                and len(appended.entries) == len(mine)
                and index.size == mine[0]
                and mine[-1] + 1 == size
            )
            events: Iterable[Event] = (
                (parse_event(entry, seq) for seq, entry in zip(mine, appended.entries, strict=True))
                if own
                else self.reader().events(index.size, size)
            )
            index.apply_all(
                events, skip_applied=True, strict=False, root=(size, appended.checkpoint.root)
            )
        illegal = dict(index.illegal_events())
        for position in mine:
            if position in illegal:  # pragma: no cover - acts are checked at their position
                raise ActConflictError(f"another act came first: {illegal[position]}")

    def _notice(self, verdict: _Verdict, tracking: str, recipient: str, what: str) -> Event:
        # Notices are the vault's own acts, caused by the event just before them.
        return Event(
            seq=0,
            time=verdict.at,
            type="notice.sent",
            actor=VAULT_ACTOR,
            record=tracking,
            action="notify",
            policy_set=verdict.decision.policy_set_hash,
            details={"recipient": recipient, "notice": what},
        )

    def log_unsealed(self, attempts: Sequence[Mapping[str, str]]) -> int:
        """Log the remote unseal that just succeeded: every custodian's attempt.

        A sealed server cannot write its log; the attempts made while it was sealed are
        logged here, first thing once it can (`vault.unsealed`, the vault's own act).
        """
        details = {"attempts": [dict(a) for a in attempts]}
        [index] = self._append([_draft("vault.unsealed", self._clock(), details=details)])
        return index


def _as_handed(error: VaultError, cause: VaultError) -> VaultError:
    """`error`, saying as `cause` does whether anything of the act reached the log."""
    error.handed_to_log = cause.handed_to_log
    return error


def _reads_back(event: Event) -> None:
    """Refuse an event the log could not read back: it would make the log unreadable.

    What a request carries goes into its events (a denial records the signed request):
    an entry that parses no more (nesting past the JSON reader's limit) would be signed
    into the log for good, and every command after it would fail.

    Raises:
        InputError: the entry does not parse back, or is too large for the log.
    """
    try:
        entry = event.entry_bytes()
        parse_event(entry, event.seq)
    except (IntegrityError, ValueError) as exc:  # no JSON form, or none that parses back
        reason = exc.__cause__ if isinstance(exc, IntegrityError) else exc
        raise InputError(
            f"the request cannot be logged as it is ({reason}); nothing logged"
        ) from None
    if len(entry) > MAX_ENTRY_BYTES:
        # Refused here, for its requester alone: the log would refuse the whole batch.
        raise InputError(
            f"the request would make a log entry of {len(entry)} bytes (at most "
            f"{MAX_ENTRY_BYTES}); nothing logged"
        )


def _check_stated_text(body: RequestBody) -> None:
    """Refuse a purpose or reason that would not read as it is logged (exit 2).

    A blank one is left to the policies (`no-stated-purpose` denies, and the denial is
    logged); one of zero-width or bidi characters would pass for stated.

    Raises:
        InputError: the purpose or reason holds control, invisible or bidi characters only
            or among its text.
    """
    reason = body.params.get("reason")
    for what, text, lines in (("purpose", body.purpose, False), ("reason", reason, True)):
        if isinstance(text, str) and text.strip() and (why := unreadable(text, lines=lines)):
            raise InputError(f"the request's {what} {why}: state it in plain text")


@dataclass(frozen=True)
class _Verdict:
    """A decision and the moment it was made (the time of the event that records it)."""

    decision: Decision
    at: datetime


@dataclass
class _Done:
    """An act as decided at its log position: who, on which record, and where it landed."""

    principal: Principal
    record: RecordRow | None
    verdict: _Verdict
    indices: tuple[int, ...] = ()


# What a permitted act logs, decided on the state at its position (or raises).
Effect = Callable[[Principal, RecordRow | None, _Verdict], list[Event]]


class _NothingToLogError(Exception):
    """A read that the policies permit at its position: nothing to append."""


class _StalePositionError(Exception):
    """Another process of this vault applied events past the position being built."""


_STALE_ATTEMPTS = 1000  # each one means another process appended: progress, not a spin


def _signed_params(request: SignedRequest) -> dict[str, Any]:
    """The request's parameters exactly as signed (JSON values)."""
    params: dict[str, Any] = request.to_log()["body"]["params"]
    return params


def _require_signed_params(request: SignedRequest, expected: dict[str, Any], what: str) -> None:
    if _signed_params(request) != to_jsonable_python(expected):
        raise IntegrityError(f"request does not sign the {what} it asks for")


def _draft(event_type: EventType, now: datetime, **fields: Any) -> Event:  # noqa: ANN401
    return Event(seq=0, time=now, type=event_type, actor=VAULT_ACTOR, **fields)


def _require_record_id(request: SignedRequest) -> str:
    if not request.body.record:
        raise InputError("the request names no record")
    return request.body.record
