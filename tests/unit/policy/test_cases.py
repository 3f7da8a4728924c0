"""Declarative cases: the shipped file passes; malformed files and failing cases are caught."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from policy_facts import POLICIES

from pcii_vault.errors import InputError
from pcii_vault.policy.cases import load_case_file, run_case_file
from pcii_vault.policy.engine import PolicyEngine


def _file(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(document))
    return path


def _shipped_defaults() -> dict[str, Any]:
    return json.loads((POLICIES / "tests" / "default.json").read_text())["defaults"]


def test_every_shipped_case_passes(engine: PolicyEngine) -> None:
    paths = sorted((POLICIES / "tests").glob("*.json"))
    assert paths
    for path in paths:
        failures = [(r.case.name, r.mismatch) for r in run_case_file(engine, path) if not r.passed]
        assert failures == [], path.name


def test_a_wrong_expectation_fails(engine: PolicyEngine, tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        {
            "defaults": _shipped_defaults(),
            "cases": [
                {"name": "wrong", "action": "retrieve", "expect": {"decision": "deny"}},
                {
                    "name": "missing obligation",
                    "action": "retrieve",
                    "expect": {"decision": "permit", "obligations": ["mark:pcii"]},
                },
            ],
        },
    )
    results = run_case_file(engine, path)
    assert [r.passed for r in results] == [False, False]
    assert "decision permit, expected deny" in results[0].mismatch
    assert "obligations" in results[1].mismatch


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"cases": []}, "bad case file"),
        (
            {"cases": [{"name": "x", "action": "retrieve", "expect": {"decision": "maybe"}}]},
            "bad case file",
        ),
        (
            {
                "cases": [
                    {
                        "name": "x",
                        "action": "retrieve",
                        "surprise": 1,
                        "expect": {"decision": "deny"},
                    }
                ]
            },
            "bad case file",
        ),
        (
            {"cases": [{"name": "x", "action": "retrieve", "expect": {"decision": "deny"}}]},
            "bad request attributes",
        ),
    ],
)
def test_malformed_case_files_are_input_errors(
    tmp_path: Path, document: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        load_case_file(_file(tmp_path, document))


def test_duplicate_case_names_are_refused(tmp_path: Path) -> None:
    case = {"name": "same", "action": "retrieve", "expect": {"decision": "deny"}}
    path = _file(tmp_path, {"defaults": _shipped_defaults(), "cases": [case, case]})
    with pytest.raises(InputError, match="duplicate case name"):
        load_case_file(path)


def test_a_key_given_twice_is_refused_not_read_last_wins(tmp_path: Path) -> None:
    """A tester's finding: `{"cases": [], "cases": [...]}` ran the second list silently."""
    path = tmp_path / "cases.json"
    path.write_text(
        '{"cases": [], "cases": [{"name": "x", "action": "retrieve", '
        '"expect": {"decision": "permit"}}]}'
    )
    with pytest.raises(InputError, match="key 'cases' is given twice"):
        load_case_file(path)


def test_not_json_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text("{nope")
    with pytest.raises(InputError, match="not JSON"):
        load_case_file(path)
