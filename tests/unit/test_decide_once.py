"""An act decided on a first look is decided again at its log position, never from a memo.

The vault looks at every act twice: on the current state (to refuse early), then at the
position its event gets. The Cedar decision and the request's signature are memoised on
their exact inputs, so the second look costs little when nothing changed. Here something
changes between the two looks, the way another process acting at that moment would
change it (a suspension, a revocation, a new policy set, a withdrawn record), and the
position must decide on the changed state: the permit of the first look is not reused.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from vault_support import VaultBench

from pcii_vault.errors import PolicyDenied
from pcii_vault.ledger.log import Builder
from pcii_vault.policy.engine import PolicyEngine
from pcii_vault.vault import Vault

SECRET = b"decide-once-unseal-secret"
WATER = "Water and Wastewater Systems"
# One instant for the vault under test, so that its two looks fall in the same second
# (a memo hit) unless a fact changed; the other process keeps the real clock.
NOW = datetime.now(UTC)


class Bench(VaultBench):
    """An admin, an owner, the office and a federal water analyst; a fixed-clock vault."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, secret=SECRET, attachment_bytes=b"not a pdf " * 50)
        self.add("analyst", "analyst", "EPA Water", "federal", sectors=[WATER])
        self.fixed = Vault(root / "vault", unseal=lambda: SECRET, clock=lambda: NOW)

    def other(self) -> Vault:
        """Another process on the same vault."""
        return Vault(self.root / "vault", unseal=lambda: SECRET)

    def as_other(self, act: Callable[[Vault], object]) -> Callable[[], None]:
        def run() -> None:
            vault = self.other()
            try:
                act(vault)
            finally:
                vault.close()

        return run

    def close(self) -> None:
        self.fixed.close()
        self.vault.close()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    bench = Bench(tmp_path)
    yield bench
    bench.close()


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Cedar evaluation: `principal action` (the memo's misses)."""
    seen: list[str] = []
    real = cedarpy.is_authorized

    def counting(req: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        seen.append(f"{req['principal']['id']} {req['action']['id']}")
        return real(req, *args, **kwargs)

    monkeypatch.setattr(cedarpy, "is_authorized", counting)
    return seen


def _decisions(monkeypatch: pytest.MonkeyPatch, vault: Vault) -> list[str]:
    """The decisions the vault's two looks make, in order (not the explanation's)."""
    made: list[str] = []
    decide = vault._decide

    def recording(*args: Any, **kwargs: Any) -> Any:
        verdict = decide(*args, **kwargs)
        made.append(verdict.decision.decision)
        return verdict

    monkeypatch.setattr(vault, "_decide", recording)
    return made


def _between_looks(monkeypatch: pytest.MonkeyPatch, vault: Vault, step: Callable[[], None]) -> None:
    """Run `step` once: after the next act's first look, before its position is decided."""
    ledger = vault.ledger
    append_at = ledger.append_at
    pending = [step]

    def stepped(build: Builder, known_size: int | None, known_root: bytes | None = None) -> Any:
        if pending:
            pending.pop()()
        return append_at(build, known_size, known_root)

    monkeypatch.setattr(ledger, "append_at", stepped)


def _last_event(vault: Vault) -> Any:
    reader = vault.reader()
    return next(reader.events(reader.size() - 1, reader.size()))


def _validate(bench: Bench, tracking: str) -> None:
    vault = bench.fixed
    vault.transition(
        vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )


def _retrieve(bench: Bench, tracking: str, out: Path) -> None:
    vault = bench.fixed
    request = vault.sign(
        bench.ids["analyst"],
        "retrieve",
        record=tracking,
        purpose="drought planning",
        use="infrastructure-protection",
    )
    vault.release(request, out)


def test_an_unchanged_act_is_evaluated_once(bench: Bench, evaluations: list[str]) -> None:
    tracking = bench.submit_receipt().tracking_number
    bench.fixed.sync()
    evaluations.clear()
    _validate(bench, tracking)
    assert evaluations == ["office validate"]
    assert bench.fixed.index.record(tracking).state == "validated"


def test_a_principal_suspended_before_the_position_is_denied_there(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = bench.submit_receipt().tracking_number

    def suspend(vault: Vault) -> None:
        changes = {"status": "suspended"}
        params = {"op": "update", "principal": "office", "changes": changes}
        request = vault.sign(bench.ids["admin"], "manage-principals", params=params)
        vault.update_principal(request, "office", changes)

    _between_looks(monkeypatch, bench.fixed, bench.as_other(suspend))
    decisions = _decisions(monkeypatch, bench.fixed)
    with pytest.raises(PolicyDenied, match="you are suspended"):
        _validate(bench, tracking)
    # The first look permitted; the position saw the suspension and decided again.
    assert decisions == ["permit", "deny"]
    denial = _last_event(bench.fixed)
    assert (denial.type, denial.actor, denial.decision) == ("access.decided", "office", "deny")
    assert denial.policies == ("principal-not-active",)
    assert bench.fixed.index.record(tracking).state == "received"
    bench.audit()


def test_a_principal_revoked_before_the_position_gets_nothing(
    bench: Bench, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tracking = bench.submit_receipt().tracking_number
    _validate(bench, tracking)

    def revoke(vault: Vault) -> None:
        params = {"op": "revoke", "principal": "analyst"}
        request = vault.sign(bench.ids["admin"], "manage-principals", params=params)
        vault.revoke_principal(request, "analyst")

    _between_looks(monkeypatch, bench.fixed, bench.as_other(revoke))
    decisions = _decisions(monkeypatch, bench.fixed)
    out = tmp_path / "released"
    with pytest.raises(PolicyDenied, match="you are revoked"):
        _retrieve(bench, tracking, out)
    # A release looks twice: the read (its first look), then the access at its position.
    assert decisions == ["permit", "deny"]
    assert not (out / tracking).exists()
    denial = _last_event(bench.fixed)
    assert (denial.type, denial.actor, denial.decision) == ("access.decided", "analyst", "deny")
    assert bench.fixed.index.recipients(tracking) == []
    bench.audit()


def test_a_policy_set_loaded_before_the_position_decides_there(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = bench.submit_receipt().tracking_number
    vault = bench.fixed
    before = vault.policy.policy_set_hash

    def freeze_validation() -> None:
        (vault.paths.root / "policies" / "zz-freeze.cedar").write_text(
            '@id("freeze-validation")\n'
            'forbid (principal, action == Action::"validate", resource);\n',
            encoding="utf-8",
        )
        vault.policy = PolicyEngine.load(vault.paths.root / "policies")
        vault._note_policy_change()

    _between_looks(monkeypatch, vault, freeze_validation)
    decisions = _decisions(monkeypatch, vault)
    with pytest.raises(PolicyDenied, match="freeze-validation"):
        _validate(bench, tracking)
    assert decisions == ["permit", "deny"]
    denial = _last_event(vault)
    assert denial.decision == "deny"
    assert denial.policy_set == vault.policy.policy_set_hash != before
    assert vault.index.record(tracking).state == "received"
    bench.audit()


def test_a_replicas_other_policy_set_logged_before_the_position_is_logged_over(
    bench: Bench, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A tester's finding: replicas running different policy sets (a new one copied to
    them one by one) refused a permitted act at its position when the other replica had
    logged its set in between ("decided by policy set ..., not the one last loaded"). The
    act's set is logged again before it, in the same batch."""
    tracking = bench.submit_receipt().tracking_number
    vault = bench.fixed
    vault.sync()
    ours = vault.policy.policy_set_hash
    theirs_dir = tmp_path / "their-policies"
    shutil.copytree(vault.paths.root / "policies", theirs_dir)
    (theirs_dir / "zz-extra.cedar").write_text(
        '@id("no-decontrol")\nforbid (principal, action == Action::"decontrol", resource);\n',
        encoding="utf-8",
    )

    def their_set(other: Vault) -> None:
        other.policy = PolicyEngine.load(theirs_dir)
        other._note_policy_change()

    _between_looks(monkeypatch, vault, bench.as_other(their_set))
    _validate(bench, tracking)
    assert vault.index.record(tracking).state == "validated"
    reader = vault.reader()
    last = list(reader.events(reader.size() - 3, reader.size()))
    assert [(e.type, e.policy_set) for e in last] == [
        ("policy.loaded", PolicyEngine.load(theirs_dir).policy_set_hash),
        ("policy.loaded", ours),
        ("submission.validated", ours),
    ]
    bench.audit()


def test_a_record_withdrawn_before_the_position_is_not_validated(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = bench.submit_receipt().tracking_number

    def withdraw(vault: Vault) -> None:
        request = vault.sign(
            bench.ids["owner"], "withdraw", record=tracking, params={"reason": "r"}
        )
        vault.transition(request, "submission.withdrawn")

    _between_looks(monkeypatch, bench.fixed, bench.as_other(withdraw))
    decisions = _decisions(monkeypatch, bench.fixed)
    with pytest.raises(PolicyDenied, match="a withdrawn record cannot be given 'validate'"):
        _validate(bench, tracking)
    assert decisions == ["permit", "deny"]
    assert bench.fixed.index.record(tracking).state == "withdrawn"
    bench.audit()
