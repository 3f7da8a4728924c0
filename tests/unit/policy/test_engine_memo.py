"""Decide once: the engine memoises a decision on its whole input, and on nothing less.

An act is decided on a first look and again at its log position; the second decision is
served from the memo only when every fact Cedar sees is the same: the principal's, the
record's, the request's (its time in whole seconds), the action, and the policy set
(another set is another engine). These tests count Cedar evaluations and change one fact
at a time: each change must be evaluated afresh and decide as without the memo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from policy_facts import NOW, POLICIES, principal, record, request

from pcii_vault.policy.engine import PolicyEngine


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The actions Cedar evaluated, in order."""
    seen: list[str] = []
    real = cedarpy.is_authorized

    def counting(req: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if req["principal"]["id"] != "schema-check":  # the load's check of the schema
            seen.append(req["action"]["id"])
        return real(req, *args, **kwargs)

    monkeypatch.setattr(cedarpy, "is_authorized", counting)
    yield seen


def test_the_same_facts_are_evaluated_once(evaluations: list[str]) -> None:
    engine = PolicyEngine.load(POLICIES)
    first = engine.decide(principal(), "retrieve", record(), request())
    again = engine.decide(principal(), "retrieve", record(), request())
    assert first.allowed
    assert again == first
    assert evaluations == ["retrieve"]


@pytest.mark.parametrize(
    ("what", "changed"),
    [
        ("suspended principal", {"who": principal(status="suspended")}),
        ("revoked principal", {"who": principal(status="revoked")}),
        ("training expired", {"who": principal(training_expires=NOW - timedelta(days=1))}),
        ("another sector", {"who": principal(sectors=frozenset({"Water"}))}),
        ("record withdrawn", {"what": record(state="withdrawn")}),
        ("record destroyed", {"what": record(state="destroyed")}),
        ("another use", {"context": request(use="regulatory-enforcement")}),
    ],
)
def test_a_changed_fact_is_evaluated_again_and_decides_as_without_the_memo(
    evaluations: list[str], what: str, changed: dict[str, Any]
) -> None:
    engine = PolicyEngine.load(POLICIES)
    assert engine.decide(principal(), "retrieve", record(), request()).allowed
    facts: dict[str, Any] = {"who": principal(), "what": record(), "context": request()}
    facts.update(changed)
    memoised = engine.decide(facts["who"], "retrieve", facts["what"], facts["context"])
    fresh = PolicyEngine.load(POLICIES).decide(
        facts["who"], "retrieve", facts["what"], facts["context"]
    )
    assert not memoised.allowed, what
    assert memoised == fresh
    assert evaluations == ["retrieve"] * 3


def test_another_second_is_evaluated_again(evaluations: list[str]) -> None:
    engine = PolicyEngine.load(POLICIES)
    # Training ends at NOW + 1 s: permitted during this second, denied in the next.
    trained = principal(training_expires=NOW + timedelta(seconds=1))
    assert engine.decide(trained, "retrieve", record(), request()).allowed
    assert engine.decide(trained, "retrieve", record(), request(now=NOW)).allowed
    later = engine.decide(trained, "retrieve", record(), request(now=NOW + timedelta(seconds=2)))
    assert not later.allowed
    assert evaluations == ["retrieve", "retrieve"]


def test_another_action_is_evaluated_again(evaluations: list[str]) -> None:
    engine = PolicyEngine.load(POLICIES)
    assert engine.decide(principal(), "retrieve", record(), request()).allowed
    assert not engine.decide(principal(), "destroy", record(), request()).allowed
    assert evaluations == ["retrieve", "destroy"]


def test_another_policy_set_decides_on_its_own(
    evaluations: list[str], policy_dir: Callable[[dict[str, str]], Path], tmp_path: Path
) -> None:
    engine = PolicyEngine.load(POLICIES)
    assert engine.decide(principal(), "retrieve", record(), request()).allowed
    files = {p.name: p.read_text(encoding="utf-8") for p in POLICIES.glob("*.cedar")}
    files["zz-freeze.cedar"] = (
        '@id("freeze-retrieve")\nforbid (principal, action == Action::"retrieve", resource);\n'
    )
    frozen = PolicyEngine.load(policy_dir(files))
    decision = frozen.decide(principal(), "retrieve", record(), request())
    assert not decision.allowed
    assert decision.policy_ids == ("freeze-retrieve",)
    assert decision.policy_set_hash == frozen.policy_set_hash != engine.policy_set_hash
    assert evaluations == ["retrieve", "retrieve"]


def test_a_deny_made_of_an_exception_is_not_memoised(
    monkeypatch: pytest.MonkeyPatch, evaluations: list[str]
) -> None:
    engine = PolicyEngine.load(POLICIES)
    counting = cedarpy.is_authorized

    def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("Cedar fell over")

    monkeypatch.setattr(cedarpy, "is_authorized", failing)
    denied = engine.decide(principal(), "retrieve", record(), request())
    assert not denied.allowed
    assert denied.errors == ("RuntimeError: Cedar fell over",)
    monkeypatch.setattr(cedarpy, "is_authorized", counting)
    assert engine.decide(principal(), "retrieve", record(), request()).allowed
    assert evaluations == ["retrieve"]
