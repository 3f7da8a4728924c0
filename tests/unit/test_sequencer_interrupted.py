"""A requester interrupted (Ctrl-C, SIGTERM) while its act waits in the group commit.

Not yet in a batch, the act is withdrawn and never runs; in one, the batch goes on and
may log it, and the interrupt carries the act's log indices (`logged_before_interrupt`)
so that the caller can record what that obliges it to. The interrupt is a real SIGINT,
sent by the batch thread at the moment under test and handled in the main thread.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence

import pytest

from pcii_vault.models.event import Event
from pcii_vault.sequencer import Act, Sequencer, logged_before_interrupt


def test_an_act_interrupted_in_a_batch_carries_its_indices() -> None:
    def run_batch(acts: Sequence[Act]) -> list[tuple[int, ...] | BaseException]:
        os.kill(os.getpid(), signal.SIGINT)  # while the requester waits for this batch
        time.sleep(0.5)
        return [(7,) for _ in acts]

    sequencer = Sequencer(run_batch, max_age=0)
    try:
        with pytest.raises(KeyboardInterrupt) as interrupted:
            sequencer.run(list)
        assert logged_before_interrupt(interrupted.value) == (7,)
    finally:
        sequencer.close()


def test_an_act_interrupted_before_its_batch_is_withdrawn() -> None:
    ran: list[str] = []
    first_batch = threading.Event()
    sequencer: Sequencer

    def run_batch(acts: Sequence[Act]) -> list[tuple[int, ...] | BaseException]:
        for act in acts:
            act()
        if ran == ["first"] and not first_batch.is_set():
            first_batch.set()
            deadline = time.monotonic() + 10
            while not sequencer._waiting and time.monotonic() < deadline:
                time.sleep(0.01)  # until the second act waits behind this batch
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        return [(1,) for _ in acts]

    def first() -> list[Event]:
        ran.append("first")
        return []

    def second() -> list[Event]:
        ran.append("second")
        return []

    sequencer = Sequencer(run_batch, max_batch=1, max_age=0)
    try:
        threading.Thread(target=sequencer.run, args=(first,), daemon=True).start()
        assert first_batch.wait(10)
        with pytest.raises(KeyboardInterrupt) as interrupted:
            sequencer.run(second)
        assert logged_before_interrupt(interrupted.value) is None
    finally:
        sequencer.close()
    assert ran == ["first"]
