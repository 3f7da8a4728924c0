"""An event the log could not read back is refused before it is appended."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pcii_vault.core.acting import _reads_back
from pcii_vault.errors import InputError
from pcii_vault.models.event import Event
from pcii_vault.models.request import MAX_PARAMS_DEPTH, RequestBody


def _nested(levels: int) -> dict[str, Any]:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(levels):
        inner["a"] = {}
        inner = inner["a"]
    return deep


def _denial(details: dict[str, Any]) -> Event:
    return Event.model_validate(
        {
            "seq": 7,
            "time": datetime.now(UTC),
            "type": "access.decided",
            "actor": "water",
            "details": details,
        },
        strict=False,
    )


def test_an_event_nested_past_the_readers_limit_is_refused() -> None:
    event = _denial({"deep": _nested(300)})
    with pytest.raises(InputError, match="cannot be logged as it is"):
        _reads_back(event)
    _reads_back(event.model_copy(update={"details": {"deep": _nested(20)}}))


def test_request_parameters_have_a_depth_limit() -> None:
    fields: dict[str, Any] = {
        "vault": "v",
        "principal": "water",
        "action": "submit",
        "time": datetime.now(UTC),
        "nonce": "0" * 32,
    }
    RequestBody(**fields, params={"files": [_nested(MAX_PARAMS_DEPTH - 3)]})
    with pytest.raises(ValueError, match="nested deeper than"):
        RequestBody(**fields, params={"files": [_nested(MAX_PARAMS_DEPTH)]})


def test_an_event_too_large_for_the_log_is_refused_for_its_act_alone() -> None:
    """Refused in the act's own check: the log would refuse the whole batch around it."""
    with pytest.raises(InputError, match="would make a log entry of"):
        _reads_back(_denial({"changes": {"sectors": ["Energy"] * 8000}}))
