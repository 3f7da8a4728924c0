"""Each action's typed parameters: what fits, and every way they can be wrong."""

from __future__ import annotations

from typing import Any

import pytest

from pcii_vault.errors import InputError
from pcii_vault.models.acts import ACT_PARAMS, RejectParams, check_params, params_of
from pcii_vault.models.reference import reference_data

GOOD: list[tuple[str, dict[str, Any]]] = [
    ("status", {}),
    ("retrieve", {}),
    ("validate", {}),
    ("validate", {"categorical": True}),
    ("reject", {"ground": "not-cii", "reason": "not critical infrastructure"}),
    ("withdraw", {"reason": ""}),
    ("destroy", {"reason": "retention schedule"}),
    ("submit", {"files": [{"name": "a.pdf", "object": "files/0", "sha256": "00", "size": 1}]}),
    ("manage-principals", {"op": "revoke", "principal": "lee"}),
    ("manage-principals", {"op": "update", "principal": "lee", "changes": {"level": "state"}}),
    ("rotate-keys", {"op": "retire", "version": 2}),
    ("rotate-keys", {"op": "migrate", "to": "local"}),
]

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("status", {"x": 1}, "x"),
    ("validate", {"ground": "not-cii"}, "ground"),
    ("validate", {"categorical": "yes"}, "categorical"),
    ("reject", {"reason": "no ground"}, "ground"),
    ("reject", {"ground": "because"}, "ground"),
    ("destroy", {"reason": "x" * 2001}, "reason"),
    ("destroy", {"reason": "ok", "also": "smuggled"}, "also"),
    ("rotate-keys", {"op": "steal"}, "op"),
    ("rotate-keys", {"op": "retire", "version": 0}, "version"),
    ("manage-principals", {"op": "revoke"}, "principal"),
    ("nonsense", {}, "unknown action"),
]


@pytest.mark.parametrize(("action", "params"), GOOD)
def test_parameters_that_fit_their_action(action: str, params: dict[str, Any]) -> None:
    model = check_params(action, params)
    assert {k: v for k, v in params_of(model).items() if k in params} == params


@pytest.mark.parametrize(("action", "params", "where"), BAD)
def test_parameters_that_do_not_fit_are_refused_with_their_path(
    action: str, params: dict[str, Any], where: str
) -> None:
    with pytest.raises(InputError, match=where):
        check_params(action, params)


def test_the_reject_grounds_are_the_reference_grounds() -> None:
    grounds = set(RejectParams.model_fields["ground"].annotation.__args__)  # type: ignore[union-attr]
    assert grounds == {g.id for g in reference_data().non_validation_grounds}


def test_every_policy_action_has_its_parameters() -> None:
    from pathlib import Path

    schema = (Path(__file__).parents[3] / "policies" / "pcii.cedarschema").read_text()
    import re

    declared = set(re.findall(r'^action "?([a-z-]+)"? (?:in|appliesTo)', schema, re.M))
    assert declared - set(ACT_PARAMS) == set()
