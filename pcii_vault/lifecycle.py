"""The submission lifecycle as one pure state machine (6 CFR 29: submission lifecycle).

Used alike by the index projection, the core (before an act is logged) and the auditor's
replay: events in, the new state or the reason the event is illegal out. No I/O, no
clock, no storage: every input is a parameter.

Invariants:
- a record's state changes only through the transitions listed here, each from a closed
  set of prior states;
- content is released only from the states listed per action (`retrieve` of a validated
  record, `review` of one awaiting the office's decision);
- every deadline is 30 days from the state's start (6 CFR 29.6(e)-(g)).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

__all__ = [
    "CATEGORICAL_FROM",
    "DEADLINE_DAYS",
    "LIFECYCLE_TRANSITIONS",
    "RECORD_STATES",
    "SEARCH_STATES",
    "SHREDDED_STATES",
    "DeadlineRule",
    "IllegalTransitionError",
    "RecordState",
    "deadline_rule",
    "next_state",
    "releasable",
]

RecordState = Literal[
    "received",
    "deficient",
    "validated",
    "initially-not-pcii",
    "final-not-pcii",
    "withdrawn",
    "decontrolled",
    "destroyed",
]
RECORD_STATES: frozenset[RecordState] = frozenset(get_args(RecordState))
# What a search filters on: a state, or "categorical" (validated by categorical inclusion).
SEARCH_STATES: tuple[str, ...] = (*get_args(RecordState), "categorical")

# Records whose wrapped data key is deleted (crypto-shredded): never re-wrapped again.
SHREDDED_STATES: frozenset[RecordState] = frozenset({"withdrawn", "destroyed"})

# 6 CFR 29.6(e)-(g): each of the program's notice and answer windows is 30 days.
DEADLINE_DAYS = 30

# Event type -> (allowed prior states, new state).
LIFECYCLE_TRANSITIONS: dict[str, tuple[frozenset[RecordState], RecordState]] = {
    "submission.deficient": (frozenset({"received"}), "deficient"),
    # 6 CFR 29: after an initial negative finding the submitter may add information, and
    # the office may then validate after all.
    "submission.validated": (
        frozenset({"received", "deficient", "initially-not-pcii"}),
        "validated",
    ),
    "submission.rejected": (frozenset({"received", "deficient"}), "initially-not-pcii"),
    "submission.final-not-pcii": (frozenset({"initially-not-pcii"}), "final-not-pcii"),
    "submission.withdrawn": (
        frozenset({"received", "deficient", "initially-not-pcii"}),
        "withdrawn",
    ),
    "record.decontrolled": (frozenset({"validated"}), "decontrolled"),
    "record.destroyed": (RECORD_STATES - {"destroyed"}, "destroyed"),
}

# What each transition does to a record, in words (for refusals).
_DOES: dict[str, str] = {
    "submission.deficient": "be marked deficient",
    "submission.validated": "be validated",
    "submission.rejected": "get an initial not-PCII finding",
    "submission.final-not-pcii": "get a final not-PCII finding",
    "submission.withdrawn": "be withdrawn",
    "record.decontrolled": "be decontrolled",
    "record.destroyed": "be destroyed",
}
assert set(_DOES) == set(LIFECYCLE_TRANSITIONS)  # noqa: S101 -- import-time

# 6 CFR 29: categorical inclusion is for a submission that matches a declared category on
# receipt; a record the office has already found deficient or not PCII is decided on review.
CATEGORICAL_FROM: frozenset[RecordState] = frozenset({"received"})

# States in which content may be released, per action (the policies decide who may).
_RELEASABLE: dict[str, frozenset[RecordState]] = {
    "retrieve": frozenset({"validated"}),
    "review": frozenset({"received", "deficient", "initially-not-pcii"}),
}


class IllegalTransitionError(ValueError):
    """An event the lifecycle forbids from the record's current state."""


def next_state(current: RecordState, event_type: str, *, categorical: bool = False) -> RecordState:
    """The state after `event_type` from `current`.

    `categorical`: the event validates by categorical inclusion (only on receipt).

    Raises:
        IllegalTransitionError: the transition is not allowed from `current` (the message
            says, in words, from which states it is).
        KeyError: `event_type` is not a lifecycle transition (a programming error).
    """
    allowed, target = LIFECYCLE_TRANSITIONS[event_type]
    a = "an" if current[:1] in "aeiou" else "a"
    if current not in allowed:
        raise IllegalTransitionError(
            f"{a} {current} record cannot {_DOES[event_type]} ({event_type}); only a record "
            f"that is {' or '.join(sorted(allowed))} can"
        )
    if categorical and current not in CATEGORICAL_FROM:
        raise IllegalTransitionError(
            f"{a} {current} record cannot be validated by categorical inclusion (only on "
            "receipt); validate it without --categorical"
        )
    return target


def releasable(action: str, state: RecordState) -> bool:
    """Whether content may be released for `action` from a record in `state`."""
    return state in _RELEASABLE.get(action, frozenset())


@dataclass(frozen=True)
class DeadlineRule:
    """What falls due 30 days after a state began."""

    state: RecordState
    what: str

    def due(self, state_began: datetime) -> datetime:
        """When it falls due."""
        return state_began + timedelta(days=DEADLINE_DAYS)


_DEADLINES: dict[RecordState, str] = {
    "received": "notify the submitter of a deficiency or decide (30 days from receipt)",
    "deficient": "submitter's cure period ends (30 days from the notice)",
    "initially-not-pcii": "submitter's answer period ends; make the final decision",
    "final-not-pcii": "act on the submitter's preference (return, destroy, keep)",
}


def deadline_rule(state: RecordState) -> DeadlineRule | None:
    """The deadline that runs while a record is in `state`, if any."""
    what = _DEADLINES.get(state)
    return None if what is None else DeadlineRule(state, what)
