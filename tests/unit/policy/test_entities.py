"""Facts are checked on construction; times round towards denial."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from policy_facts import NOW, principal, record, request

from pcii_vault.policy.entities import context_record, principal_entity


@pytest.mark.parametrize(
    "changes",
    [{"role": "root"}, {"level": "county"}, {"status": "on-leave"}, {"id": ""}],
)
def test_unknown_principal_values_are_refused(changes: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"unknown|empty"):
        principal(**changes)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        principal(training_expires=datetime(2027, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        request(now=datetime(2027, 1, 1))


def test_unknown_state_and_use_are_refused() -> None:
    with pytest.raises(ValueError, match="record state"):
        record(state="archived")
    with pytest.raises(ValueError, match="use"):
        request(use="marketing")


def test_rounding_favours_denial() -> None:
    moment = datetime(2026, 6, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert principal_entity(principal(training_expires=moment))["attrs"]["trainingExpires"] == int(
        NOW.timestamp()
    )
    assert context_record(request(now=moment))["now"] == int(NOW.timestamp()) + 1


def test_purpose_is_stripped_and_absent_values_are_omitted() -> None:
    context = context_record(request(purpose="  why  "))
    assert context["purpose"] == "why"
    assert "authority" not in context
    attrs = principal_entity(principal(training_expires=None, nda_signed=None))["attrs"]
    assert "trainingExpires" not in attrs
    assert "ndaSigned" not in attrs
