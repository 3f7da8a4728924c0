"""Conflicting acts at the same moment: exactly one wins, the log stays a legal history.

Two requesters act on one vault at once, as two terminals (separate processes) or two
threads with their own `Vault` objects would: each act is decided at the log position
its event gets, so the loser is refused with a one-line error (or its denial is logged),
never appended as an illegal event. After every round the projection holds no illegal
event and the winners are as many as the lifecycle allows; the whole log passes the
auditor's strict replay at the end (and every 50 rounds).

Rounds per pair: `PCII_CONFLICT_ROUNDS` (default 30 in threads and 12 in processes, to keep
`make test` within its time budget; `PCII_CONFLICT_ROUNDS=200` is the full run).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from vault_support import VaultBench, run_concurrently

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import VaultError
from pcii_vault.identity import Identity
from pcii_vault.models.principal import PrincipalAttributes
from pcii_vault.models.submission import example_attachment_bytes
from pcii_vault.submitter import SealedUpload
from pcii_vault.vault import KeyStatus, Vault, principal_params

pytestmark = [pytest.mark.slow]

SECRET = b"conflicting-acts-secret"
THREAD_ROUNDS = int(os.environ.get("PCII_CONFLICT_ROUNDS", "30"))
PROCESS_ROUNDS = int(os.environ.get("PCII_CONFLICT_ROUNDS", "12"))
WATER = "Water and Wastewater Systems"
_REVOKE_ROUNDS = max(THREAD_ROUNDS, PROCESS_ROUNDS) // 8


# ----- the acts, as each side performs them (also run in worker processes) -------------


def _act(vault: Vault, ids: dict[str, Identity], what: str, arg: str) -> str:
    """Perform one act; "ok", or the error's class name (never an unexpected one)."""
    try:
        if what == "validate":
            vault.transition(
                vault.sign(ids["office"], "validate", record=arg), "submission.validated"
            )
        elif what == "withdraw":
            request = vault.sign(ids["owner"], "withdraw", record=arg, params={"reason": "r"})
            vault.transition(request, "submission.withdrawn")
        elif what == "destroy":
            vault.destroy(vault.sign(ids["office"], "destroy", record=arg, params={"reason": "r"}))
        elif what == "get":
            # arg: "TRACKING" or "TRACKING@PRINCIPAL"
            tracking, _, who = arg.partition("@")
            out = Path(vault.paths.root).parent / f"out-{os.getpid()}-{threading.get_ident()}"
            request = vault.sign(
                ids[who or "analyst"], "retrieve", record=tracking, purpose="drought planning",
                use="infrastructure-protection",
            )  # fmt: skip
            vault.release(request, out / str(time.monotonic_ns()))
        elif what == "add":
            key = Ed25519PrivateKey(b"\x11" * 32)
            attributes = PrincipalAttributes(role="auditor", organisation="IG", level="federal")
            request = vault.sign(
                ids["admin"], "manage-principals",
                params=principal_params(arg, attributes, key.public_key),
            )  # fmt: skip
            vault.add_principal(request, arg, attributes, key.public_key)
        elif what == "revoke":
            request = vault.sign(
                ids["admin"], "manage-principals", params={"op": "revoke", "principal": arg}
            )
            vault.revoke_principal(request, arg)
        elif what == "rotate":  # signed for the version it makes, as `pcii keys rotate`
            params = {"op": "rotate", "version": int(arg)}
            vault.rotate_keys(vault.sign(ids["admin"], "rotate-keys", params=params))
        else:  # pragma: no cover - a typo in this file
            raise ValueError(what)
    except VaultError as exc:
        if os.environ.get("PCII_CONFLICT_DEBUG"):
            print(f"{what}: {type(exc).__name__}: {exc}")  # noqa: T201
        return type(exc).__name__
    return "ok"


# ----- worker processes ------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _init_worker(root: str, identities: dict[str, tuple[str, bytes]]) -> None:
    _worker["vault"] = Vault(Path(root), unseal=lambda: SECRET)
    _worker["ids"] = {
        name: Identity(vault_id, name, Ed25519PrivateKey(seed))
        for name, (vault_id, seed) in identities.items()
    }


def _worker_act(what: str, arg: str, start_at: float) -> str:
    time.sleep(max(0.0, start_at - time.time()))
    return _act(_worker["vault"], _worker["ids"], what, arg)


# ----- the two kinds of requesters ---------------------------------------------------------


class Threads:
    """Two threads, each with its own Vault object on the same directory."""

    def __init__(self, bench: VaultBench) -> None:
        self.bench = bench
        self.vaults = [Vault(bench.root / "vault", unseal=lambda: SECRET) for _ in range(2)]

    def both(self, left: tuple[str, str], right: tuple[str, str]) -> list[str]:
        barrier = threading.Barrier(2)
        results: list[str] = ["", ""]

        def run(slot: int, act: tuple[str, str]) -> None:
            barrier.wait()
            results[slot] = _act(self.vaults[slot], self.bench.ids, *act)

        workers = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate((left, right))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return results

    def close(self) -> None:
        for vault in self.vaults:
            vault.close()


class Processes:
    """Two worker processes, each with its own Vault, started once."""

    def __init__(self, bench: VaultBench) -> None:
        identities = {name: (ident.vault_id, ident.key.seed) for name, ident in bench.ids.items()}
        self.pools = [
            concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(str(bench.root / "vault"), identities),
            )
            for _ in range(2)
        ]
        for pool in self.pools:  # start (and import) before the first round
            pool.submit(time.sleep, 0).result()

    def both(self, left: tuple[str, str], right: tuple[str, str]) -> list[str]:
        start_at = time.time() + 0.05
        futures = [
            pool.submit(_worker_act, *act, start_at)
            for pool, act in zip(self.pools, (left, right), strict=True)
        ]
        return [f.result(timeout=120) for f in futures]

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[VaultBench]:
    made = VaultBench(tmp_path, secret=SECRET, attachment_bytes=example_attachment_bytes())
    made.add("analyst", "analyst", "EPA Water", "federal", sectors=[WATER])
    # Analysts to revoke, one per round, known to the worker processes from the start.
    for n in range(_REVOKE_ROUNDS):
        made.add(f"analyst{n}", "analyst", "EPA Water", "federal", sectors=[WATER])
    yield made
    made.vault.close()


@pytest.fixture(params=["threads", "processes"])
def requesters(request: pytest.FixtureRequest, bench: VaultBench) -> Iterator[Any]:
    made = Threads(bench) if request.param == "threads" else Processes(bench)
    made.rounds = THREAD_ROUNDS if request.param == "threads" else PROCESS_ROUNDS
    yield made
    made.close()


def _checked(bench: VaultBench, round_no: int) -> None:
    """After a round: the projection gave every logged event its effect."""
    assert bench.vault.illegal_events() == [], f"round {round_no}"
    if round_no % 50 == 49:
        bench.audit()


def _validated(bench: VaultBench) -> str:
    tracking = bench.submit_receipt(attach=False).tracking_number
    bench.vault.transition(
        bench.vault.sign(bench.ids["office"], "validate", record=tracking), "submission.validated"
    )
    return tracking


Setup = Callable[[VaultBench, int], tuple[tuple[str, str], tuple[str, str]]]


def _pairs() -> dict[str, Setup]:
    def fresh(bench: VaultBench, _n: int) -> str:
        return bench.submit_receipt(attach=False).tracking_number

    return {
        "validate-vs-withdraw": lambda b, n: (
            ("validate", t := fresh(b, n)),
            ("withdraw", t),
        ),
        "withdraw-vs-withdraw": lambda b, n: (("withdraw", t := fresh(b, n)), ("withdraw", t)),
        "add-same-principal": lambda _b, n: (("add", f"ig-{n}"), ("add", f"ig-{n}")),
    }


@pytest.mark.parametrize("pair", sorted(_pairs()))
def test_exactly_one_of_two_conflicting_acts_wins(
    bench: VaultBench, requesters: Any, pair: str
) -> None:
    setup = _pairs()[pair]
    for n in range(requesters.rounds):
        left, right = setup(bench, n)
        results = requesters.both(left, right)
        assert sorted(results).count("ok") == 1, f"round {n}: {results}"
        refused = {"ok", "InputError", "PolicyDenied", "ActConflictError"}
        assert all(r in refused for r in results), results
        _checked(bench, n)
    bench.audit()


def test_destroy_and_get_at_once_never_release_a_destroyed_record(
    bench: VaultBench, requesters: Any
) -> None:
    for n in range(requesters.rounds // 2):
        tracking = _validated(bench)
        results = requesters.both(("destroy", tracking), ("get", tracking))
        assert results[0] == "ok", f"round {n}: {results}"
        assert results[1] in {"ok", "PolicyDenied", "ActConflictError", "IntegrityError"}
        _checked(bench, n)
    bench.audit()


def test_revoke_and_an_act_of_the_revoked_principal_at_once(
    bench: VaultBench, requesters: Any
) -> None:
    tracking = _validated(bench)
    for n in range(_REVOKE_ROUNDS):
        name = f"analyst{n}"
        results = requesters.both(("revoke", name), ("get", f"{tracking}@{name}"))
        assert results[0] == "ok", f"round {n}: {results}"
        assert results[1] in {"ok", "PolicyDenied", "IntegrityError"}, results
        _checked(bench, n)
    bench.audit()


def test_two_key_rotations_at_once_keep_log_and_keyring_in_step(
    bench: VaultBench, requesters: Any
) -> None:
    rounds = min(20, requesters.rounds // 5)

    def status() -> KeyStatus:
        return bench.vault.key_status(
            bench.vault.sign(bench.ids["admin"], "rotate-keys", params={"op": "status"})
        )

    for n in range(rounds):
        following = str(status().logged_version + 1)
        results = requesters.both(("rotate", following), ("rotate", following))
        assert sorted(results) == ["ActConflictError", "ok"], f"round {n}: {results}"
        assert status().logged_version == int(following)
        _checked(bench, n)
    assert status().current_version == status().logged_version == rounds + 1
    bench.audit()


def test_the_same_submission_received_twice_at_once_is_one_whole_record(
    bench: VaultBench,
) -> None:
    # A retry from a second terminal: two requests (two nonces) for one upload.
    threads = Threads(bench)
    try:
        for n in range(THREAD_ROUNDS):
            sealed = bench.upload(attach=False)
            tracking = sealed.tracking_number
            results = _received_twice(threads, bench.ids["owner"], sealed)
            assert sorted(results).count("ok") == 1, f"round {n}: {results}"
            assert set(results) <= {"ok", "ActConflictError", "ConflictError"}, results
            # The winner's record is whole: its key and ciphertext stayed.
            bench.vault.sync()
            assert bench.vault.index.record(tracking).state == "received"
            bench.vault.store.head(f"wrapped/{tracking}")
            assert list(bench.vault.store.list(f"records/{tracking}/"))
            _checked(bench, n)
    finally:
        threads.close()
    bench.audit()


def _received_twice(threads: Threads, owner: Identity, sealed: SealedUpload) -> list[str]:
    """Each thread's vault receives `sealed` at the same moment; "ok" or the error's name."""
    results = ["", ""]
    barrier = threading.Barrier(2)

    def receive(slot: int) -> None:
        vault = threads.vaults[slot]
        params = {"files": list(sealed.files)}
        request = vault.sign(owner, "submit", record=sealed.tracking_number, params=params)
        barrier.wait()
        try:
            vault.receive(request, sealed)
            results[slot] = "ok"
        except VaultError as exc:
            results[slot] = type(exc).__name__

    run_concurrently([lambda: receive(0), lambda: receive(1)])
    return results


def test_two_inits_of_one_directory_at_once_leave_one_sound_vault(tmp_path: Path) -> None:
    """The second `init` is refused before it starts: its clean-up on failure once removed
    what the first was writing (the keyring, the log), leaving a vault nobody could open."""
    from vault_support import FAST_KDF

    from pcii_vault.config import VaultPaths
    from pcii_vault.errors import ConfigError
    from pcii_vault.ledger.note import NoteVerifier
    from pcii_vault.ledger.verify import verify_log

    secret = b"two-inits-unseal-secret"
    for round_ in range(10):
        root = tmp_path / f"v{round_}"
        outcomes: list[BaseException | None] = []

        def init(who: str, root: Path = root, outcomes: list[Any] = outcomes) -> None:
            try:
                Vault.create(
                    root, store_url="file", secret=secret, admin_name="admin",
                    admin_key_out=tmp_path / f"{root.name}-{who}.key", kdf_params=FAST_KDF,
                )[0].close()  # fmt: skip
            except ConfigError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)

        run_concurrently([lambda: init("a"), lambda: init("b")])
        assert sorted(map(type, outcomes), key=str) == sorted([ConfigError, type(None)], key=str)
        vault = Vault(root, unseal=lambda: secret)
        try:
            verifier = NoteVerifier.from_key_string(vault.config.log_key)
            assert verify_log(vault.store, verifier).size == 3
        finally:
            vault.close()
        assert VaultPaths(root).config.is_file()
        assert not (root / ".init-under-way").exists()
