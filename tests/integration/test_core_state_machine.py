"""Random acts by several requesters against the core; after each, the log is the truth.

A hypothesis state machine submits, validates, rejects, withdraws, destroys, retrieves,
registers and revokes, through two `Vault` objects on one directory (two requesters), and
checks after every step that
- every logged event is legal (the strict replay of `pcii audit verify`, decisions
  re-run on their policy sets, accepts the whole log);
- the vault's index equals a fresh projection of the verified log, row for row;
- the projection gave every event its effect (no event was logged illegally).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from vault_support import VaultBench

from pcii_vault.errors import VaultError
from pcii_vault.history import HistoryAuditor
from pcii_vault.index import Index
from pcii_vault.ledger.note import NoteVerifier
from pcii_vault.ledger.verify import verify_log
from pcii_vault.models.submission import example_attachment_bytes
from pcii_vault.vault import Vault

pytestmark = [pytest.mark.slow]

SECRET = b"state-machine-secret"
WATER = "Water and Wastewater Systems"


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="pcii-sm-"))
        self.bench = VaultBench(
            self.tmp, secret=SECRET, attachment_bytes=example_attachment_bytes()
        )
        self.bench.add("analyst", "analyst", "EPA Water", "federal", sectors=[WATER])
        self.vaults = [self.bench.vault, Vault(self.tmp / "vault", unseal=lambda: SECRET)]
        self.records: list[str] = []
        self.people = 0

    def teardown(self) -> None:
        for vault in self.vaults:
            vault.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _record(self, data: st.DataObject) -> str | None:
        return data.draw(st.sampled_from(self.records)) if self.records else None

    def _try(self, act: object) -> None:
        # A refusal is fine, as long as nothing illegal was logged.
        with contextlib.suppress(VaultError):
            act()  # type: ignore[operator]

    @rule()
    def submit(self) -> None:
        self.records.append(self.bench.submit_receipt(attach=False).tracking_number)

    @rule(data=st.data(), who=st.integers(0, 1), action=st.sampled_from(
        ["validate", "reject", "mark-deficient"]
    ))  # fmt: skip
    def office(self, data: st.DataObject, who: int, action: str) -> None:
        tracking = self._record(data)
        if tracking is None:
            return
        vault = self.vaults[who]
        event = {
            "validate": "submission.validated",
            "reject": "submission.rejected",
            "mark-deficient": "submission.deficient",
        }[action]
        params = {"ground": "not-cii"} if action == "reject" else {}
        request = vault.sign(self.bench.ids["office"], action, record=tracking, params=params)
        self._try(lambda: vault.transition(request, event))  # type: ignore[arg-type]

    @rule(data=st.data(), who=st.integers(0, 1))
    def withdraw(self, data: st.DataObject, who: int) -> None:
        tracking = self._record(data)
        if tracking is None:
            return
        vault = self.vaults[who]
        request = vault.sign(
            self.bench.ids["owner"], "withdraw", record=tracking, params={"reason": "r"}
        )
        self._try(lambda: vault.transition(request, "submission.withdrawn"))

    @rule(data=st.data(), who=st.integers(0, 1))
    def destroy(self, data: st.DataObject, who: int) -> None:
        tracking = self._record(data)
        if tracking is None:
            return
        vault = self.vaults[who]
        request = vault.sign(
            self.bench.ids["office"], "destroy", record=tracking, params={"reason": "r"}
        )
        self._try(lambda: vault.destroy(request))

    @rule(data=st.data(), who=st.integers(0, 1))
    def retrieve(self, data: st.DataObject, who: int) -> None:
        tracking = self._record(data)
        if tracking is None:
            return
        vault = self.vaults[who]
        request = vault.sign(
            self.bench.ids["analyst"],
            "retrieve",
            record=tracking,
            purpose="drought planning",
            use="infrastructure-protection",
        )
        out = self.tmp / f"out-{len(self.records)}-{self.people}-{who}"
        self._try(lambda: vault.release(request, out))

    @rule()
    def register(self) -> None:
        self.people += 1
        self.bench.add(f"user{self.people}", "auditor", "IG", "federal")

    @invariant()
    def the_log_is_the_truth(self) -> None:
        vault = self.bench.vault
        vault.sync()
        assert vault.illegal_events() == []
        auditor = HistoryAuditor(self.bench.real)
        try:
            verify_log(
                self.bench.real,
                NoteVerifier.from_key_string(vault.config.log_key),
                event_checker=auditor,
            )
            auditor.finish()
            fresh = auditor.index.dump()
        finally:
            auditor.close()
        assert vault.index.dump() == fresh
        other = self.vaults[1]
        other.sync()
        assert isinstance(other.index, Index)
        assert other.index.dump() == fresh


TestCoreStateMachine = CoreMachine.TestCase
TestCoreStateMachine.settings = settings(
    max_examples=8,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
