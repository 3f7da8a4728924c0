"""A connection that broke after an act was sent: the user is told it may be logged."""

from __future__ import annotations

import pytest

from pcii_vault.client import _noting_an_act_in_flight
from pcii_vault.errors import BackendError


def test_an_act_sent_before_the_connection_broke_says_it_may_be_logged() -> None:
    """A tester's finding: validates in flight to a replica killed with -9 were told the
    connection failed, though some were logged; the retry was then a logged denial."""
    broken = BackendError("the connection to https://127.0.0.1:1 failed: disconnected")
    broken.in_flight = True  # type: ignore[attr-defined]
    with pytest.raises(BackendError) as raised, _noting_an_act_in_flight("validate", "PCII-1"):
        raise broken
    assert raised.value.__notes__ == [
        "(the server may have logged the validate before the connection broke: check "
        "`pcii status PCII-1` before acting again)"
    ]
    unreached = BackendError("cannot reach the vault server")  # never sent: no note
    with pytest.raises(BackendError) as raised, _noting_an_act_in_flight("validate", "PCII-1"):
        raise unreached
    assert not getattr(raised.value, "__notes__", [])
