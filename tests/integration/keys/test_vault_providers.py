"""A whole vault with its KEKs in SoftHSM2, OpenBao transit or moto's KMS emulator.

Submissions, releases, rotation, rewrap and retirement through the core, as the CLI
drives them; where each key lives; and migration local -> SoftHSM2 -> OpenBao -> local
with every record readable and the log sound after each step.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from key_fixtures import ProviderKit
from vault_support import VaultBench

from pcii_vault.errors import InputError, IntegrityError
from pcii_vault.ledger.log import Ledger
from pcii_vault.models.request import SignedRequest
from pcii_vault.vault import Vault

SECRET = b"provider-tests-unseal-secret"


class Bench(VaultBench):
    """A vault bench whose KEKs live where `kek_uri` says."""

    def __init__(self, root: Path, kek_uri: str) -> None:
        super().__init__(
            root, secret=SECRET, attachment_bytes=b"fictional capture " * 500, kek_uri=kek_uri
        )

    def submit(self) -> str:
        return self.submit_receipt().tracking_number

    def key_request(self, op: str, **params: Any) -> SignedRequest:
        return self.vault.sign(self.ids["admin"], "rotate-keys", params={"op": op, **params})

    def review(self, tracking: str) -> bytes:
        out = self.root / f"review-{tracking}-{self.vault.index.size}"
        request = self.vault.sign(self.ids["office"], "review", record=tracking, purpose="r")
        release = self.vault.release(request, out)
        return (release.directory / "attachments" / self.attachment.name).read_bytes()

    def status(self) -> Any:
        return self.vault.key_status(self.key_request("status"))


def test_a_vault_with_external_keks_submits_releases_rotates_and_retires(
    external_kit: ProviderKit, tmp_path: Path
) -> None:
    uri = external_kit.new_uri()
    bench = Bench(tmp_path, uri)
    try:
        where = {loc.name: loc.where for loc in bench.status().locations}
        assert where["key-encryption keys"].startswith(external_kit.name)
        assert "pin-value" not in json.dumps(bench.vault.config.model_dump(mode="json"))
        if external_kit.name == "awskms":
            assert where["log signing key"].startswith("local sealed keyring")
        else:
            # The log's private key lives in the token or transit mount, not in the file.
            assert where["log signing key"].startswith(external_kit.name)
            assert where["log signing key"] == bench.vault.config.log_signer
        first, second = bench.submit(), bench.submit()
        assert bench.review(first) == bench.attachment.read_bytes()
        assert bench.vault.rotate_keys(bench.key_request("rotate")) == 2
        assert bench.vault.rewrap_keys(bench.key_request("rewrap")).count == 2
        bench.vault.retire_key(bench.key_request("retire", version=1), 1)
        assert bench.status().min_decryption_version == 2
        assert bench.review(second) == bench.attachment.read_bytes()
        # Another process opening the vault finds the keys where init put them.
        again = Vault(bench.vault.paths.root, unseal=lambda: SECRET)
        try:
            assert again.keyring.current_version == 2
            assert again.keyring.log_signer.public_key == bench.vault.log_public_key
        finally:
            again.close()
        assert bench.audit().size > 0
    finally:
        bench.vault.close()


def test_a_blob_moved_to_another_record_fails_with_integrity_error(
    external_kit: ProviderKit, tmp_path: Path
) -> None:
    bench = Bench(tmp_path, external_kit.new_uri())
    try:
        first, second = bench.submit(), bench.submit()
        store = bench.vault.store
        store.delete(f"wrapped/{second}")
        store.put_if_absent(f"wrapped/{second}", store.get(f"wrapped/{first}"))
        with pytest.raises(IntegrityError):
            bench.review(second)
    finally:
        bench.vault.close()


def test_a_retirement_transit_refuses_is_refused_before_it_is_logged(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A tester's finding: `keys retire 2` with version 1 unretired exited 2 (transit
    retires oldest first) after `key.retired 2` was logged, which the holder never did."""
    bao = request.getfixturevalue("bao")
    for key, value in bao.env.items():
        monkeypatch.setenv(key, value)
    bench = Bench(tmp_path, bao.uri(f"order-{secrets.token_hex(4)}"))
    try:
        bench.vault.rotate_keys(bench.key_request("rotate"))
        bench.vault.rotate_keys(bench.key_request("rotate"))
        with pytest.raises(InputError, match="oldest first: retire 1"):
            bench.vault.retire_key(bench.key_request("retire", version=2), 2)
        reader = bench.vault.reader()
        size = bench.vault.index.size
        assert "key.retired" not in {event.type for event in reader.events(0, size)}
        assert [v.retired for v in bench.status().versions] == [False, False, False]
        bench.vault.retire_key(bench.key_request("retire", version=1), 1)
        bench.vault.retire_key(bench.key_request("retire", version=2), 2)
        assert bench.status().min_decryption_version == 3
    finally:
        bench.vault.close()


@pytest.fixture
def chain(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Fresh key URIs on SoftHSM2 and OpenBao (both servers of the session)."""
    hsm = request.getfixturevalue("softhsm")
    bao = request.getfixturevalue("bao")
    for key, value in bao.env.items():
        monkeypatch.setenv(key, value)
    name = f"migrated-{secrets.token_hex(4)}"
    yield {"pkcs11": hsm.uri(name), "openbao": bao.uri(name), "local": "local"}


def test_migration_local_to_softhsm_to_openbao_and_back(
    chain: dict[str, str], tmp_path: Path
) -> None:
    bench = Bench(tmp_path, "local")
    try:
        records = [bench.submit() for _ in range(4)]
        withdraw = bench.vault.sign(bench.ids["owner"], "withdraw", record=records[0], params={})
        bench.vault.transition(withdraw, "submission.withdrawn")
        live = records[1:]
        for step in ("pkcs11", "openbao", "local"):
            target = chain[step]
            request = bench.key_request("migrate", to=target)
            done = bench.vault.migrate_keys(request, target)
            assert done.count == len(live)
            custody = bench.vault.keyring
            for tracking in live:
                assert custody.owns(bench.vault.store.get(f"wrapped/{tracking}"))
                assert bench.review(tracking) == bench.attachment.read_bytes()
            # The withdrawn record stays shredded: migration never brings a key back.
            assert f"wrapped/{records[0]}" not in set(bench.vault.store.list("wrapped/"))
            status = bench.status()
            assert status.migration["phase"] == "finished"
            assert status.migration["to"] == target
            with pytest.raises(InputError, match="already live"):
                bench.vault.migrate_keys(bench.key_request("migrate", to=target), target)
            # New records go to the new provider too.
            live.append(bench.submit())
        migrated = [
            e.details
            for e in bench.vault.reader().events(0, bench.vault.reader().size())
            if e.type == "key.migrated"
        ]
        assert [(d["phase"], d["to"]) for d in migrated] == [
            (phase, chain[step])
            for step in ("pkcs11", "openbao", "local")
            for phase in ("started", "finished")
        ]
        assert bench.audit().size > 0
    finally:
        bench.vault.close()


def test_rotation_bookkeeping_survives_a_round_trip_between_providers(
    chain: dict[str, str], tmp_path: Path
) -> None:
    """Rotate local, migrate to SoftHSM2, rotate there, come back: local rotates on."""
    bench = Bench(tmp_path, "local")
    try:
        tracking = bench.submit()
        assert bench.vault.rotate_keys(bench.key_request("rotate")) == 2
        for target in (chain["pkcs11"], "local"):
            bench.vault.migrate_keys(bench.key_request("migrate", to=target), target)
            if target != "local":
                assert bench.vault.rotate_keys(bench.key_request("rotate")) == 2
        status = bench.status()
        assert status.current_version == status.logged_version == 2
        assert bench.vault.rotate_keys(bench.key_request("rotate")) == 3
        assert bench.vault.rewrap_keys(bench.key_request("rewrap")).count == 1
        assert bench.review(tracking) == bench.attachment.read_bytes()
        assert bench.audit().size > 0
    finally:
        bench.vault.close()


class _DiedError(Exception):
    """Stands for a writer killed between claiming its batch and committing it."""


def test_a_migration_whose_start_was_claimed_but_never_committed_is_resumed(
    chain: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = Bench(tmp_path, chain["pkcs11"])
    try:
        records = [bench.submit() for _ in range(3)]
        target = chain["openbao"]
        with monkeypatch.context() as patch:

            def die(_self: Ledger, _end: int) -> None:
                raise _DiedError

            patch.setattr(Ledger, "_commit_until", die)
            with pytest.raises(_DiedError):
                bench.vault.migrate_keys(bench.key_request("migrate", to=target), target)
        assert list(bench.vault.store.list("log/claims/"))  # `started` sits in a claim
    finally:
        bench.vault.close()
    # Another process: its index does not show the claimed `started`, the log does.
    vault = Vault(bench.vault.paths.root, unseal=lambda: SECRET)
    try:
        vault.sync()
        assert vault.current_kek_uri() == chain["pkcs11"]
        request = vault.sign(
            bench.ids["admin"], "rotate-keys", params={"op": "migrate", "to": target}
        )
        done = vault.migrate_keys(request, target)
        assert (done.source, done.count) == (chain["pkcs11"], len(records))
        custody = vault.keyring
        for tracking in records:
            assert custody.owns(vault.store.get(f"wrapped/{tracking}"))
        migrated = [
            e.details
            for e in vault.reader().events(0, vault.reader().size())
            if e.type == "key.migrated"
        ]
        assert [d["phase"] for d in migrated] == ["started", "finished"]
    finally:
        vault.close()


def test_a_migration_finished_by_a_second_run_counts_every_record_the_target_holds(
    chain: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: after an interrupted migration and its re-run, `keys status`
    said only the re-run's count of records moved."""
    bench = Bench(tmp_path, chain["pkcs11"])
    try:
        records = [bench.submit() for _ in range(3)]
        target = chain["openbao"]
        with monkeypatch.context() as patch:
            real = Vault._rewrap_one
            done: list[str] = []

            def one_then_die(self: Vault, keyring: Any, tracking: str) -> Any:
                if done:
                    raise _DiedError
                done.append(tracking)
                return real(self, keyring, tracking)

            patch.setattr(Vault, "_rewrap_one", one_then_die)
            with pytest.raises(_DiedError):
                bench.vault.migrate_keys(bench.key_request("migrate", to=target), target)
        assert bench.status().migration["moved"] == 1
        finished = bench.vault.migrate_keys(bench.key_request("migrate", to=target), target)
        assert finished.count == len(records) - 1  # what this run moved
        assert bench.status().migration == {
            "phase": "finished",
            "from": chain["pkcs11"],
            "to": target,
            "count": len(records),  # what the target holds: both runs' moves
            "version": bench.vault.keyring.current_version,
        }
    finally:
        bench.vault.close()


def test_a_version_the_key_holder_lost_is_not_made_again(
    external_kit: ProviderKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: a token key destroyed in the HSM made the log one version
    ahead of the holder, and `keys rotate` "completed" that rotation by generating a new
    key of the same version: every record wrapped under the lost one was orphaned and
    new ones went under the impostor. Only a rotation this vault noted is completed."""
    from pcii_vault.errors import BackendError
    from pcii_vault.keys.custody import KeyCustody

    bench = Bench(tmp_path, external_kit.new_uri())
    try:
        assert bench.vault.rotate_keys(bench.key_request("rotate")) == 2
        # Version 2 gone from the key holder (destroyed there): it reports version 1.
        monkeypatch.setattr(KeyCustody, "current_version", property(lambda _self: 1))
        made: list[int] = []
        monkeypatch.setattr(KeyCustody, "rotate", lambda _self: made.append(1) or 2)
        with pytest.raises(BackendError, match="does not hold it"):
            bench.vault.rotate_keys(bench.key_request("rotate"))
        with pytest.raises(BackendError, match="does not hold it"):
            bench.submit()
        assert made == []
    finally:
        bench.vault.close()


def test_a_long_lived_vault_follows_a_migration_another_process_ran(
    chain: dict[str, str], tmp_path: Path
) -> None:
    """A tester's finding: a `pcii serve` went on wrapping new records under the local
    keyring after an embedded `keys migrate` on its directory had moved the KEKs to the
    HSM, and its releases of moved records failed as tampering (exit 4)."""
    bench = Bench(tmp_path, "local")  # its vault object stands for the server
    try:
        before = bench.submit()
        assert bench.review(before) == bench.attachment.read_bytes()
        other = Vault(bench.vault.paths.root, unseal=lambda: SECRET)  # an embedded command
        try:
            target = chain["pkcs11"]
            request = other.sign(
                bench.ids["admin"], "rotate-keys", params={"op": "migrate", "to": target}
            )
            assert other.migrate_keys(request, target).count == 1
        finally:
            other.close()
        assert bench.review(before) == bench.attachment.read_bytes()  # moved: still released
        after = bench.submit()
        assert bench.vault.keyring.key_id != "local"
        assert bench.vault.keyring.owns(bench.vault.store.get(f"wrapped/{after}"))
        assert bench.review(after) == bench.attachment.read_bytes()
    finally:
        bench.vault.close()
