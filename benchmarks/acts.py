"""Logged acts per second through the group commit, and per-act latency.

Run:  .venv/bin/python benchmarks/acts.py [--seconds 10] [--acts 3000] [--no-s3]
Quick (2.5 minutes on 2 busy cores): --seconds 1 --acts 200; each per-run line says how
many acts it timed (at 64 requesters a 1 s run holds only a few batches).

One process, one `Vault` object shared by 1, 8 and 64 requester threads (what a server
in front of the vault does), on the filesystem store and on SeaweedFS (started here with
tests/seaweed.py; `--no-s3` skips it). Two acts:
- validate: the office validates a freshly received record (a status change: signature
  check, policy decision, lifecycle check at the log position, one logged event); the
  records are submitted beforehand, outside the timed part;
- release: an analyst retrieves a validated record whose document is about 1 KiB (the
  example submission cut to one short finding, 1.3 kB, no attachment) with
  `Vault.release`: decision, access event durable in the log, unwrap, decrypt, marked
  package written to a fresh directory.

Each runs twice on the same vault, alternately: batched (the default `Batching`, as
`pcii serve` runs it; `--index-write-every` writes the index behind) and "one act,
one append" (`Batching(max_acts=1, max_age=0)`: each act its own claim and commit, and the
index written after each, the path before group commit). Each configuration runs until
`--acts` acts or `--seconds` seconds, whichever comes first; latency is the vault call
only (the requester signs its request before the clock starts). The table gives acts/s,
p50 and p99 in ms, and the ratio batched/unbatched at the same concurrency; the targets
are printed met or missed.

Then one configuration (64 requesters, batched validate; `--profile-store`) runs again
with manual timers around the request check (signature, principal, nonce), the policy
decision, the batch overlay, the index projection after a commit and every object-store
call; what is left of the wall time is sequencing, the vault lock and waiting. The timers
add up thread time: with 64 threads the components may overlap, so they are given per
act, beside the wall time per act.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from vault_support import FAST_KDF

from pcii_vault.config import Batching
from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.identity import Identity
from pcii_vault.models.principal import PrincipalAttributes
from pcii_vault.models.submission import example_submission
from pcii_vault.store.base import ObjectStore
from pcii_vault.submitter import upload
from pcii_vault.vault import Vault, principal_params

SECRET = b"acts-benchmark-unseal-secret"
WATER = "Water and Wastewater Systems"
REQUESTERS = (1, 8, 64)
BATCHED = Batching()  # as `pcii serve` by default: the index written after every batch
UNBATCHED = Batching(max_acts=1, max_age=0)
# Targets at 64 requesters, batched.
TARGET_RATE = {"fs": 5_000, "s3": 2_000}
TARGET_P99_MS = 300
TARGET_SPEEDUP_S3 = 50


def small_document() -> bytes:
    """The example submission cut down to about 1 KiB (one short finding, no attachment)."""
    doc = example_submission()
    doc["attachments"] = []
    doc.pop("secondary_contact", None)
    org = "Riverbend Municipal Water Authority"  # the owner's: it submits
    for part in ("certification", "primary_contact", "submitter"):
        doc[part]["organisation"] = org
    doc["primary_contact"]["mailing_address"] = "1 Quarry Rd, Riverbend OR"
    doc["primary_contact"]["email"] = "dana@rw.example.org"
    doc["title"] = "2026 SCADA assessment"
    doc["summary"] = doc["summary"][:40]
    doc["facility"]["description"] = doc["facility"]["description"][:30]
    finding = doc["findings"][0]
    finding["affected_asset"] = "Pump telemetry"
    finding["description"] = finding["description"][:40]
    finding["recommendation"] = finding["recommendation"][:40]
    doc["findings"] = [finding]
    return json.dumps(doc).encode()


# ----- one vault with its requesters ---------------------------------------------------


class Bench:
    """A vault with admin, owner, office and analysts; records submitted on demand."""

    def __init__(self, root: Path, store_url: str) -> None:
        self.root = root
        vault, admin = Vault.create(
            root / "vault",
            store_url=store_url,
            secret=SECRET,
            admin_name="admin",
            admin_key_out=root / "admin.key",
            kdf_params=FAST_KDF,
        )
        self.vault_dir = root / "vault"
        self.vault_id = vault.config.vault_id
        self.ids: dict[str, Identity] = {"admin": admin}
        self.document = small_document()
        try:
            self._add(vault, "owner", "owner", "Riverbend Municipal Water Authority", "private")
            self._add(vault, "office", "office", "PCII Program Office", "federal")
            with ThreadPoolExecutor(max(REQUESTERS)) as pool:  # one group commit or a few
                added = pool.map(
                    lambda n: self._add(
                        vault, f"analyst{n}", "analyst", "EPA Water", "federal", sectors=[WATER]
                    ),
                    range(max(REQUESTERS)),
                )
                list(added)  # re-raise any failure
        finally:
            vault.close()

    def _add(self, vault: Vault, name: str, role: str, org: str, level: str, **extra: Any) -> None:  # noqa: ANN401
        key = Ed25519PrivateKey.generate()
        attributes = PrincipalAttributes.model_validate(
            {
                "role": role,
                "organisation": org,
                "level": level,
                "training_expires": (date.today() + timedelta(days=300)).isoformat(),
            }
            | extra
        )
        request = vault.sign(
            self.ids["admin"],
            "manage-principals",
            params=principal_params(name, attributes, key.public_key),
        )
        vault.add_principal(request, name, attributes, key.public_key)
        self.ids[name] = Identity(self.vault_id, name, key)

    def open(self, batching: Batching) -> Vault:
        return Vault(self.vault_dir, unseal=lambda: SECRET, batching=batching)

    def submit(self, vault: Vault, count: int, attachments: Sequence[Path] = ()) -> list[str]:
        """Submit `count` fresh records (64 threads, batched), outside any timing."""

        def one(_: int) -> str:
            tracking = vault.new_tracking_number()
            sealed = upload(
                vault.store,
                vault_id=self.vault_id,
                tracking_number=tracking,
                intake_public_key=vault.intake_key(),
                kek_version=vault.current_kek_version(),
                document=self.document,
                attachments=attachments,
            )
            request = vault.sign(
                self.ids["owner"], "submit", record=tracking, params={"files": list(sealed.files)}
            )
            return vault.receive(request, sealed).tracking_number

        with ThreadPoolExecutor(64) as pool:
            return list(pool.map(one, range(count)))

    def validate(self, vault: Vault, tracking: str) -> None:
        request = vault.sign(self.ids["office"], "validate", record=tracking)
        vault.transition(request, "submission.validated")


# A requester's n-th act: sign its request, return the vault call to time.
Prepare = Callable[[int, int], Callable[[], object]]


# ----- timing -----------------------------------------------------------------------


@dataclass
class Result:
    acts: int
    seconds: float
    latencies: list[float]  # seconds, sorted
    errors: int

    @property
    def rate(self) -> float:
        return self.acts / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * q))] * 1e3


def run_requesters(
    requesters: int,
    acts: int,
    seconds: float,
    prepare: Prepare,
) -> Result:
    """`requesters` threads run acts until `acts` are done or `seconds` have passed.

    `prepare(thread, n)` signs the n-th request of a thread and returns the vault call
    to time (signing stays outside the latency).
    """
    latencies: list[list[float]] = [[] for _ in range(requesters)]
    errors = [0] * requesters
    taken = 0
    lock = threading.Lock()
    start = threading.Barrier(requesters + 1)
    stop_at = [0.0]

    def requester(me: int) -> None:
        nonlocal taken
        start.wait()
        n = 0
        while time.perf_counter() < stop_at[0]:
            with lock:
                if taken >= acts:
                    return
                taken += 1
            call = prepare(me, n)
            n += 1
            t0 = time.perf_counter()
            try:
                call()
            except Exception as exc:  # noqa: BLE001 -- counted, and the first one shown
                if not sum(errors):
                    print(f"  first error: {type(exc).__name__}: {exc}")
                errors[me] += 1
                continue
            latencies[me].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=requester, args=(i,)) for i in range(requesters)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    done = sorted(x for per in latencies for x in per)
    return Result(len(done), elapsed, done, sum(errors))


def prepare_records(bench: Bench, count: int) -> list[str]:
    """Submit `count` fresh records through a batched vault (not timed)."""
    vault = bench.open(BATCHED)
    try:
        return bench.submit(vault, count)
    finally:
        vault.close()


def validating(bench: Bench, vault: Vault, records: list[str]) -> Prepare:
    """Each request validates the next fresh record (at most one per record)."""
    fresh = list(reversed(records))
    office = bench.ids["office"]

    def prepare(_me: int, _n: int) -> Callable[[], object]:
        request = vault.sign(office, "validate", record=fresh.pop())  # atomic in CPython
        return lambda: vault.transition(request, "submission.validated")

    return prepare


def releasing(bench: Bench, vault: Vault, tracking: str, out: Path) -> Prepare:
    """Each request releases `tracking` to an analyst, into a fresh directory."""

    def prepare(me: int, n: int) -> Callable[[], object]:
        request = vault.sign(
            bench.ids[f"analyst{me}"],
            "retrieve",
            record=tracking,
            purpose="drought planning",
            use="infrastructure-protection",
        )
        return lambda: vault.release(request, out / f"{time.monotonic_ns()}-{me}-{n}")

    return prepare


# ----- where the time goes ------------------------------------------------------------


# Per thread: the store time so far, so that a timed method does not count it twice.
_THREAD = threading.local()


class _TimedStore:
    """Forwards every call to the store and adds its duration to `spent['store']`."""

    def __init__(self, inner: ObjectStore, spent: dict[str, float], calls: dict[str, int]) -> None:
        self._inner = inner
        self._spent = spent
        self._calls = calls

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401
        target = getattr(self._inner, name)
        if not callable(target):
            return target
        spent, calls = self._spent, self._calls

        def timed(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            t0 = time.perf_counter()
            try:
                result = target(*args, **kwargs)
                if name in {"list", "open_stream"}:
                    result = list(result)  # the time of a lazy read is the caller's
                return iter(result) if name in {"list", "open_stream"} else result
            finally:
                took = time.perf_counter() - t0
                spent[f"store {name}"] += took
                calls[f"store {name}"] += 1
                _THREAD.store = getattr(_THREAD, "store", 0.0) + took

        return timed


# The methods timed, on the vault object and on its index (instance attributes that
# shadow the class's; removed again afterwards).
_TIMED_VAULT = (
    ("request check (signature, nonce)", "_verify_request"),
    ("policy decision (Cedar)", "_decide"),
    ("index projection after commit", "_catch_up"),
)
_TIMED_INDEX = (("overlay: apply in batch", "apply_in_overlay"),)


@contextlib.contextmanager
def _timing(vault: Vault, spent: dict[str, float], calls: dict[str, int]) -> Iterator[None]:
    """Time the request check, the decision, the overlay and the index catch-up."""
    targets = [(vault, *t) for t in _TIMED_VAULT] + [(vault.index, *t) for t in _TIMED_INDEX]
    for owner, label, name in targets:
        original = getattr(owner, name)

        def timed(*args: Any, _f: Any = original, _l: str = label) -> Any:  # noqa: ANN401
            t0 = time.perf_counter()
            store_before = getattr(_THREAD, "store", 0.0)
            try:
                return _f(*args)
            finally:
                # Store calls made inside are already counted under store.
                inside = getattr(_THREAD, "store", 0.0) - store_before
                spent[_l] += time.perf_counter() - t0 - inside
                calls[_l] += 1

        setattr(owner, name, timed)
    try:
        yield
    finally:
        for owner, _, name in targets:
            delattr(owner, name)


def profile(bench: Bench, store_label: str, acts: int, seconds: float) -> None:
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    records = prepare_records(bench, acts)
    vault = bench.open(BATCHED)
    try:
        # Before the log is opened: every store call of this vault goes through the timer.
        vault.store = _TimedStore(vault.store, spent, calls)  # type: ignore[assignment]
        vault.sync()
        with _timing(vault, spent, calls):
            result = run_requesters(64, acts, seconds, validating(bench, vault, records))
    finally:
        vault.close()
    n = max(result.acts, 1)
    wall_us = result.seconds / n * 1e6
    print(
        f"\nwhere the time goes: {store_label}, validate, 64 requesters, batched: "
        f"{result.acts} acts in {result.seconds:.2f} s = {wall_us:.0f} us wall per act"
    )
    print(
        "(wall time of each call, summed over the requesters and the sequencer thread, per "
        "act, waits for the interpreter lock included; the request check and the decision "
        "are called twice per act, a first look in the requester and again at the log "
        "position, the second served from the signature and decision memos when nothing "
        "changed; store calls are counted once, under store)"
    )
    print(f"{'component':38} {'calls/act':>9} {'us/act':>9} {'/ wall':>7}")
    for label in sorted(spent, key=lambda k: -spent[k]):
        us = spent[label] / n * 1e6
        print(f"{label:38} {calls[label] / n:9.2f} {us:9.0f} {us / wall_us:7.0%}")
    store_us = sum(v for k, v in spent.items() if k.startswith("store")) / n * 1e6
    timed_us = sum(spent.values()) / n * 1e6
    print(
        f"{'all store calls':38} {'':9} {store_us:9.0f} {store_us / wall_us:7.0%}\n"
        f"{'all timed components':38} {'':9} {timed_us:9.0f} {timed_us / wall_us:7.0%}"
        "  (the rest of the wall time: sequencing, signing, the vault lock, waiting;"
        " over 100%: components overlapped across threads)"
    )


# ----- the whole run ------------------------------------------------------------------


def bench_store(
    label: str, bench: Bench, acts: int, seconds: float
) -> dict[tuple[str, int, str], Result]:
    results: dict[tuple[str, int, str], Result] = {}
    out = tempfile.mkdtemp(prefix="released-", dir=bench.root)
    # One validated record for every release (the analysts all read it).
    vault = bench.open(BATCHED)
    try:
        tracking = bench.submit(vault, 1)[0]
        bench.validate(vault, tracking)
    finally:
        vault.close()
    # Batched and one-append runs alternate, so that a change in the machine's load
    # (other work on shared cores) does not fall on one side of the comparison.
    for requesters in REQUESTERS:
        for act in ("validate", "release"):
            for mode, batching in (("batched", BATCHED), ("unbatched", UNBATCHED)):
                records = prepare_records(bench, acts) if act == "validate" else []
                vault = bench.open(batching)
                try:
                    if act == "validate":
                        prepare = validating(bench, vault, records)
                    else:
                        prepare = releasing(bench, vault, tracking, Path(out))
                    result = run_requesters(requesters, acts, seconds, prepare)
                finally:
                    vault.close()
                results[act, requesters, mode] = result
                print(
                    f"  {label} {act:8} {requesters:2} requesters {mode:9}: "
                    f"{result.rate:8.0f} acts/s  p50 {result.percentile(0.5):7.1f} ms  "
                    f"p99 {result.percentile(0.99):7.1f} ms  ({result.acts} acts, "
                    f"{result.errors} errors)",
                    flush=True,
                )
    return results


def report(all_results: dict[str, dict[tuple[str, int, str], Result]]) -> None:
    print()
    print(
        f"{'store':5} {'act':8} {'req':>3} {'acts/s':>8} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'1-append acts/s':>15} {'p50 ms':>7} {'p99 ms':>7} | {'batched/unbatched':>17}"
    )
    for store, results in all_results.items():
        for act in ("validate", "release"):
            for requesters in REQUESTERS:
                b = results[act, requesters, "batched"]
                u = results[act, requesters, "unbatched"]
                ratio = b.rate / u.rate if u.rate else float("nan")
                print(
                    f"{store:5} {act:8} {requesters:3} {b.rate:8.0f} {b.percentile(0.5):7.1f} "
                    f"{b.percentile(0.99):7.1f} | {u.rate:15.0f} {u.percentile(0.5):7.1f} "
                    f"{u.percentile(0.99):7.1f} | {ratio:16.1f}x"
                )
    print("\ntargets (64 requesters, batched):")
    for store, results in all_results.items():
        for act in ("validate", "release"):
            b = results[act, 64, "batched"]
            single = results[act, 1, "unbatched"]
            checks = [
                (f"{b.rate:,.0f} acts/s >= {TARGET_RATE[store]:,}", b.rate >= TARGET_RATE[store]),
                (
                    f"p99 {b.percentile(0.99):.0f} ms < {TARGET_P99_MS} ms",
                    b.percentile(0.99) < TARGET_P99_MS,
                ),
            ]
            if store == "s3":
                speedup = b.rate / single.rate if single.rate else float("nan")
                checks.append(
                    (
                        f"{speedup:.1f}x the single-act rate >= {TARGET_SPEEDUP_S3}x",
                        speedup >= TARGET_SPEEDUP_S3,
                    )
                )
            for text, met in checks:
                print(f"  {store:3} {act:8} {text:45} {'MET' if met else 'MISSED'}")


@contextlib.contextmanager
def _aws_environment(server: Any) -> Iterator[None]:  # noqa: ANN401
    """The standard AWS variables the vault's S3 store reads, for this process only."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    os.environ.update(server.env)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(saved)


def main() -> None:
    global BATCHED  # noqa: PLW0603 -- one setting for the whole run
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per configuration")
    parser.add_argument(
        "--acts",
        type=int,
        default=3_000,
        help="per configuration, at most (records submitted beforehand)",
    )
    parser.add_argument("--no-s3", action="store_true", help="skip SeaweedFS")
    parser.add_argument(
        "--profile-store",
        choices=("fs", "s3", "both", "none"),
        default="both",
        help="where to time the components of one configuration",
    )
    parser.add_argument(
        "--index-write-every",
        type=float,
        default=0.0,
        help="batched runs: write the index file at most this often, seconds (0, the "
        "default of `pcii serve`: after every batch; PCII_SERVER_INDEX_WRITE_S)",
    )
    args = parser.parse_args()
    BATCHED = dataclasses.replace(BATCHED, index_write_every=args.index_write_every)
    print(
        f"index written every {args.index_write_every:g} s in batched runs; "
        f"document {len(small_document())} bytes; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}; "
        f"{args.seconds} s or {args.acts} acts per configuration"
    )

    results: dict[str, dict[tuple[str, int, str], Result]] = {}
    with tempfile.TemporaryDirectory(prefix="pcii-bench-acts-") as tmp:
        fs = Bench(Path(tmp) / "fs", "file")
        results["fs"] = bench_store("fs", fs, args.acts, args.seconds)
        if args.profile_store in {"fs", "both"}:
            profile(fs, "filesystem", args.acts, args.seconds)
        if not args.no_s3:
            from seaweed import new_bucket_name, running_seaweed

            with running_seaweed(Path(tmp) / "weed") as server, _aws_environment(server):
                bucket = new_bucket_name()
                server.client().create_bucket(Bucket=bucket)
                s3 = Bench(Path(tmp) / "s3", f"s3://{bucket}/bench")
                results["s3"] = bench_store("s3", s3, args.acts, args.seconds)
                if args.profile_store in {"s3", "both"}:
                    profile(s3, "SeaweedFS", args.acts, args.seconds)
    report(results)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
