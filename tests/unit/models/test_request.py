"""Signed requests: times carry their zone, and a signature covers every field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.models.request import RequestBody, SignedRequest, sign_request


def test_a_request_time_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RequestBody(vault="v", principal="p", action="a", time=datetime(2026, 1, 1), nonce="0" * 32)


def test_a_logged_request_with_a_naive_time_does_not_parse() -> None:
    signed = sign_request(
        Ed25519PrivateKey(b"\x01" * 32), vault="v", principal="p", action="a",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    logged = signed.to_log()
    logged["body"]["time"] = "2026-01-01T00:00:00"
    with pytest.raises(ValidationError):
        SignedRequest.model_validate(logged)


@pytest.mark.parametrize("value", [2.0**53, 2.0**60, 2**53, -(2**60), float("nan"), float("inf")])
def test_parameters_the_log_cannot_read_back_are_refused(value: float) -> None:
    # A whole float from 2**53 on is written in canonical JSON as an integer that JSON
    # cannot carry exactly: the log would hold an entry its audit cannot re-canonicalise
    # (a server logged one). NaN and infinity have no JSON form at all.
    with pytest.raises(ValidationError, match="params"):
        RequestBody(
            vault="v", principal="p", action="a", params={"n": [value]},
            time=datetime(2026, 1, 1, tzinfo=UTC), nonce="0" * 32,
        )  # fmt: skip


@pytest.mark.parametrize("value", [1.5, 2.0**53 - 1, 2**53 - 1, 1e21, -0.0, 1e-7])
def test_parameters_that_survive_the_round_trip_are_kept(value: float) -> None:
    body = RequestBody(
        vault="v", principal="p", action="a", params={"n": value},
        time=datetime(2026, 1, 1, tzinfo=UTC), nonce="0" * 32,
    )  # fmt: skip
    assert body.params == {"n": value}
