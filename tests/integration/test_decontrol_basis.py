"""A decontrol names one of the two bases 6 CFR 29 allows; one logged before did not."""

from __future__ import annotations

from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import InputError

SECRET = b"decontrol-basis-unseal-secret"


@pytest.fixture
def bench(tmp_path: Path) -> VaultBench:
    return VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional capture")


def test_a_request_signed_without_a_basis_is_refused_by_the_core(bench: VaultBench) -> None:
    """Another client (or a server's) may sign a decontrol the CLI would not build: the
    vault itself refuses it, before anything is logged."""
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    size = vault.reader().size()
    bare = vault.sign(
        bench.ids["office"], "decontrol", record=tracking, params={"reason": "felt like it"}
    )
    with pytest.raises(InputError, match="a decontrol names its basis"):
        vault.transition(bare, "record.decontrolled")
    assert vault.reader().size() == size
    params = {"basis": "customarily-public", "reason": "on the utility's website since 2019"}
    done = vault.sign(bench.ids["office"], "decontrol", record=tracking, params=params)
    assert vault.transition(done, "record.decontrolled").state == "decontrolled"
    bench.audit()
