"""Group commit: concurrent acts of one process gathered into one claim and one commit.

An act is a function that decides, on the state at its log position, which events to
log (or raises when it has become illegal there). Requesters hand acts to the
`Sequencer` and wait on their own future; one thread closes a batch when it holds
`max_batch` acts or when its oldest act has waited `max_age` seconds, then runs every
act of the batch in order against the state at the batch's position (each act sees the
events of the acts before it in the batch), claims the positions for all their events at
once, and waits for a signed checkpoint that covers them. If another writer (process or
replica) took the position first, the whole batch is decided again after its entries.

Invariants:
- an act's events are durable in the log before its future completes: a release still
  waits for its access event (fail closed);
- an act refused at its position leaves nothing in the batch; the others go on;
- too many waiting acts (`max_pending`) are refused at once with `BackendError` (back
  pressure), never queued without bound;
- the log layer sees opaque drafts; deciding and numbering happen in the caller's `run`.

Tessera batches the same way (storage/internal/queue.go): a queue hands out futures for
indices, integration is a pure function over entries, storage only reads and writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from pcii_vault.errors import BackendError
from pcii_vault.models.event import Event

__all__ = ["Act", "Sequencer", "logged_before_interrupt"]

# An act: decide on the current (overlay) state; return the drafts to log, or raise.
Act = Callable[[], list[Event]]
# Run a batch: decide each act in order at the batch's position, append all drafts;
# return per act its indices or the exception that refused it.
BatchRunner = Callable[[Sequence[Act]], list[tuple[int, ...] | BaseException]]


@dataclass
class _Waiting:
    act: Act
    future: Future[tuple[int, ...]] = field(default_factory=Future)
    since: float = field(default_factory=time.monotonic)


# How long an interrupted requester waits for its act's batch to be decided.
_SETTLE_SECONDS = 10.0
_LOGGED = "pcii_logged_indices"


def logged_before_interrupt(exc: BaseException) -> tuple[int, ...] | None:
    """The log indices of an act whose requester was interrupted after handing it over."""
    logged = getattr(exc, _LOGGED, None)
    return logged if isinstance(logged, tuple) else None


class Sequencer:
    """Batches acts from many threads into group commits (see the module docstring)."""

    def __init__(
        self,
        run_batch: BatchRunner,
        *,
        max_batch: int = 256,
        max_age: float = 0.002,
        max_pending: int = 4096,
    ) -> None:
        if max_batch < 1 or max_age < 0 or max_pending < max_batch:
            raise ValueError("invalid batch settings")
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_age = max_age
        self._max_pending = max_pending
        self._waiting: list[_Waiting] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="pcii-sequencer", daemon=True)
        self._thread.start()

    def run(self, act: Act) -> tuple[int, ...]:
        """Queue `act`, wait until its events are durable; return their indices.

        Raises:
            BackendError: too many acts are waiting, or the sequencer is closed.
            Exception: whatever the act (or the append) raised.
        """
        waiting = _Waiting(act)
        with self._cond:
            if self._closed:
                raise BackendError("the vault is shutting down: act not accepted")
            if len(self._waiting) >= self._max_pending:
                raise BackendError(
                    f"{len(self._waiting)} acts are waiting for the log: try again shortly"
                )
            self._waiting.append(waiting)
            self._cond.notify_all()
        try:
            return waiting.future.result()
        except (KeyboardInterrupt, SystemExit) as interrupt:
            self._settle_interrupted(waiting, interrupt)
            raise

    def _settle_interrupted(self, waiting: _Waiting, interrupt: BaseException) -> None:
        """What became of an act whose requester was interrupted (Ctrl-C, SIGTERM).

        Not yet in a batch: withdrawn, never logged. In one: the batch goes on, and its
        log may commit the act all the same; the outcome is waited for (a while) and, when
        logged, its indices noted on `interrupt` (`logged_before_interrupt`), so that the
        caller can record what the act's logging obliges it to (a release that reached
        nobody).
        """
        with self._cond:
            for at, queued in enumerate(self._waiting):
                if queued is waiting:
                    del self._waiting[at]
                    return
        try:
            indices = waiting.future.result(timeout=_SETTLE_SECONDS)
        except BaseException:  # noqa: BLE001 -- refused, failed or still unknown: nothing noted
            return
        setattr(interrupt, _LOGGED, tuple(indices))

    def close(self) -> None:
        """Finish the acts already queued, then stop the batching thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _next_batch(self) -> list[_Waiting] | None:
        with self._cond:
            while not self._waiting:
                if self._closed:
                    return None
                self._cond.wait()
            # Close the batch at its size, or when its oldest act has waited long enough.
            deadline = self._waiting[0].since + self._max_age
            while len(self._waiting) < self._max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._waiting[: self._max_batch]
            del self._waiting[: len(batch)]
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                outcomes = self._run_batch([w.act for w in batch])
            except BaseException as exc:  # noqa: BLE001 -- handed to every waiting requester
                for waiting in batch:
                    waiting.future.set_exception(exc)
                continue
            for waiting, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    waiting.future.set_exception(outcome)
                else:
                    waiting.future.set_result(outcome)
