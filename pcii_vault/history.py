"""The auditor's replay of a verified log: a legal history, and every decision re-derived.

`HistoryAuditor` is the event checker `pcii audit verify` hands to `verify_log`. For each
event, in order, it
1. re-runs the logged decision (permit or deny, determining policies, obligations) with
   the policy set the event names, loaded from the store's content-addressed copy and
   checked against its hash, on the facts the log held at that position: the actor's
   and the record's attributes as projected so far, and the signed request;
2. applies the event to a strict in-memory projection, which refuses any event the
   lifecycle rules, the signatures or the closed list of the vault's own acts forbid.
Every failure is an `IntegrityError` naming the event: an exception of any other kind
from logged bytes is a tampered or forged entry, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable

from pcii_vault.decisions import check_replayed
from pcii_vault.errors import IntegrityError, NotFoundError
from pcii_vault.index import Index
from pcii_vault.models.event import Event
from pcii_vault.policy.archive import load_policy_set
from pcii_vault.policy.engine import PolicyEngine
from pcii_vault.store.base import ObjectStore

__all__ = ["HistoryAuditor"]


class HistoryAuditor:
    """Checks each event of a log in order; `finish` after the last one."""

    def __init__(
        self,
        store: ObjectStore | None,
        *,
        replay_decisions: bool = True,
        index: Index | None = None,
    ) -> None:
        # A scratch index on disk keeps memory flat for long logs; in memory by default.
        self.index = index if index is not None else Index.in_memory()
        self._store = store
        self._replay = replay_decisions and store is not None
        self._engines: dict[str, PolicyEngine] = {}
        self.decisions_replayed = 0

    def close(self) -> None:
        """Release the in-memory projection."""
        self.index.close()

    def __call__(self, event: Event) -> None:
        """Check one event (the next one of the log).

        Raises:
            IntegrityError: the event is illegal here, or its decision does not replay.
        """
        # The decision is replayed on the facts before the event; the lifecycle verdict
        # (the more basic one) is reported first when both fail.
        mismatch: IntegrityError | None = None
        if self._replay:
            try:
                self._guarded(event, self._check_decision)
            except IntegrityError as exc:
                mismatch = exc
        self._guarded(event, self.index.apply)
        if mismatch is not None:
            raise mismatch

    @staticmethod
    def _guarded(event: Event, check: Callable[[Event], None]) -> None:
        try:
            check(event)
        except IntegrityError:
            raise
        except Exception as exc:
            # Logged bytes must never crash the audit: whatever fails is tampering.
            raise IntegrityError(f"event {event.seq}: malformed {event.type} ({exc})") from exc

    def finish(self) -> None:
        """After the last event: nothing the log owes is missing (e.g. notices)."""
        self.index.finish()

    def _engine(self, policy_set: str) -> PolicyEngine:
        engine = self._engines.get(policy_set)
        if engine is None:
            assert self._store is not None  # noqa: S101 -- replay needs the store
            engine = load_policy_set(self._store, policy_set)
            self._engines[policy_set] = engine
        return engine

    def _check_decision(self, event: Event) -> None:
        if event.type == "policy.loaded" and event.policy_set is not None:
            self._engine(event.policy_set)  # its text must be stored and load
            return
        if event.request is None or event.decision is None or event.policy_set is None:
            return
        try:
            principal = self.index.principal(event.actor)
        except NotFoundError:
            return  # an unknown actor: the projection names it next
        record = (
            None if event.type == "submission.received" else self.index.find_record(event.record)
        )
        check_replayed(self._engine(event.policy_set), event, principal, record)
        self.decisions_replayed += 1
