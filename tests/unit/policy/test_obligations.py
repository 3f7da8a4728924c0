"""The obligation vocabulary is closed and canonical."""

from __future__ import annotations

import pytest

from pcii_vault.policy.obligations import OBLIGATION_MEANINGS, Obligation, parse_obligations


def test_parse_returns_vocabulary_order() -> None:
    assert parse_obligations("redact:contacts  mark:pcii") == (
        Obligation.MARK_PCII,
        Obligation.REDACT_CONTACTS,
    )


@pytest.mark.parametrize("text", ["", "  ", "mark:pcii mark:pcii", "mark:PCII", "redact:all"])
def test_parse_refuses_empty_repeated_or_unknown(text: str) -> None:
    with pytest.raises(ValueError, match=r"empty|repeated|unknown"):
        parse_obligations(text)


def test_every_obligation_has_a_meaning() -> None:
    assert set(OBLIGATION_MEANINGS) == set(Obligation)
    assert {o.value for o in Obligation} == {
        "mark:pcii",
        "cover-sheet",
        "watermark:recipient",
        "redact:contacts",
        "redact:submitter",
        "notify:program-office",
        "withhold:attachments",
    }
