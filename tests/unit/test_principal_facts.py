"""What an admin states about a user is checked by the core, however the request was built."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import InputError
from pcii_vault.models.submission import example_attachment_bytes

SECRET = b"principal-facts-unseal-secret"


@pytest.fixture
def bench(tmp_path: Path) -> VaultBench:
    return VaultBench(tmp_path, secret=SECRET, attachment_bytes=example_attachment_bytes())


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        ({"sectors": ["Nope"]}, "is not a sector of the reference list"),
        ({"training_expires": date.today() + timedelta(days=400)}, "renewed yearly"),
        ({"nda_signed": date.today() + timedelta(days=2)}, "in the future"),
    ],
    ids=["unknown-sector", "training-for-years", "nda-in-the-future"],
)
def test_a_fact_no_cli_would_send_is_refused_by_the_core(
    bench: VaultBench, extra: dict[str, object], refusal: str
) -> None:
    with pytest.raises(InputError, match=refusal):
        bench.add("x1", "analyst", "EPA", "federal", **extra)
    bench.add("x2", "analyst", "EPA", "federal", sectors=["Water and Wastewater Systems"])
