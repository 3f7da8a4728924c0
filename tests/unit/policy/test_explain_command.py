"""The `pcii policy explain` line a denial prints reproduces the denial."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from policy_facts import NOW, POLICIES, principal, record, request

from pcii_vault.policy.denial import explain_command
from pcii_vault.policy.engine import PolicyEngine


@pytest.mark.parametrize(
    ("nda_signed", "no_nda"),
    [
        (None, True),
        (NOW.date() + timedelta(days=1), True),
        (NOW.date(), False),
        (date(2026, 1, 1), False),
    ],
    ids=["none", "signed-tomorrow", "signed-today", "signed-before"],
)
def test_an_nda_the_policies_do_not_count_is_explained_as_none(
    nda_signed: date | None, no_nda: bool
) -> None:
    who = principal(level="state", nda_signed=nda_signed)  # federal users need no NDA
    denied = PolicyEngine.load(POLICIES).decide(who, "retrieve", record(), request())
    assert ("nda-missing" in denied.policy_ids) is no_nda
    line = explain_command(who, "retrieve", record(), request())
    assert ("--no-nda" in line.split()) is no_nda
