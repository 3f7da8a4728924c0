"""The entity directory: many principals and records parsed once, same decisions."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from policy_facts import NOW, principal, record, request

from pcii_vault.policy.engine import PolicyEngine
from pcii_vault.policy.entities import LEVELS, ROLES, STATES, USES

SECTORS = ("Energy", "Water and Wastewater Systems", "Chemical")
ACTIONS = ("retrieve", "search", "status", "review", "validate", "withdraw", "destroy",
           "submit", "read-log", "manage-principals")  # fmt: skip


def _population(rng: random.Random) -> tuple[list, list]:
    principals = [
        principal(
            id=f"p-{i}",
            role=rng.choice(sorted(ROLES)),
            level=rng.choice(sorted(LEVELS)),
            organisation=rng.choice(["Acme Power", "Riverbend Water"]),
            sectors=frozenset(rng.sample(SECTORS, rng.randint(0, 2))),
            training_expires=NOW + timedelta(days=rng.randint(-30, 30)),
            nda_signed=rng.choice([None, NOW.date()]),
            contractor=rng.random() < 0.2,
            status=rng.choice(["active", "active", "suspended"]),
        )
        for i in range(40)
    ]
    records = [
        record(
            tracking_number=f"PCII-2026-{i:08d}",
            state=rng.choice(sorted(STATES)),
            sector=rng.choice(SECTORS),
            submitter_org=rng.choice(["Acme Power", "Riverbend Water"]),
        )
        for i in range(60)
    ]
    return principals, records


def test_directory_decisions_equal_per_request_decisions(engine: PolicyEngine) -> None:
    """Over many random requests, with and without a directory: the same Decision."""
    rng = random.Random(11)
    principals, records = _population(rng)
    directory = engine.entity_directory(principals, records)
    for _ in range(1500):
        who, what, action = rng.choice(principals), rng.choice(records), rng.choice(ACTIONS)
        resource = None if action in {"submit", "read-log", "manage-principals"} else what
        context = request(use=rng.choice(sorted(USES)), purpose=rng.choice(["", "why"]))
        with_directory = engine.decide(who, action, resource, context, directory=directory)
        assert with_directory == engine.decide(who, action, resource, context)


def test_changed_facts_are_not_served_from_the_directory(engine: PolicyEngine) -> None:
    """A principal suspended (or a record destroyed) since the directory was built."""
    analyst, energy = principal(), record()
    directory = engine.entity_directory([analyst], [energy])
    context = request()
    assert engine.decide(analyst, "retrieve", energy, context, directory=directory).allowed
    suspended = principal(status="suspended")
    destroyed = record(state="destroyed")
    assert not directory.holds(suspended, energy)
    assert not engine.decide(suspended, "retrieve", energy, context, directory=directory).allowed
    assert not engine.decide(analyst, "retrieve", destroyed, context, directory=directory).allowed


def test_policies_reading_other_entities_never_use_a_directory(
    policy_dir: Callable[[dict[str, str]], Path],
) -> None:
    """`resource.submitter.role` would find the submitter only in a directory: not used."""
    directory_path = policy_dir(
        {
            "graph.cedar": '@id("submitter-is-owner")\n'
            'permit (principal, action == Action::"retrieve", resource)\n'
            'when { resource.submitter.role == "owner" };\n'
        }
    )
    engine = PolicyEngine.load(directory_path)
    owner = principal(id="owner-1", role="owner", level="private")
    analyst, energy = principal(), record(submitter="owner-1")
    directory = engine.entity_directory([owner, analyst], [energy])
    context = request()
    without = engine.decide(analyst, "retrieve", energy, context)
    assert not without.allowed and without.errors  # the submitter is not in the request
    assert engine.decide(analyst, "retrieve", energy, context, directory=directory) == without


def test_every_shipped_action_and_state_agrees_for_one_principal(engine: PolicyEngine) -> None:
    analyst = principal(sectors=frozenset(SECTORS))
    records = [
        record(tracking_number=f"PCII-2026-{n:08d}", state=state)
        for n, state in enumerate(sorted(STATES))
    ]
    directory = engine.entity_directory([analyst], records)
    for action, what in itertools.product(ACTIONS[:7], records):
        context = request()
        assert engine.decide(analyst, action, what, context, directory=directory) == (
            engine.decide(analyst, action, what, context)
        )
