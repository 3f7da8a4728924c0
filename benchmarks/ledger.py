"""Access-log benchmark: appends, full verification, proofs; side by side with pymerkle.

Run:  .venv/bin/python benchmarks/ledger.py [--size 1000000] [--batch 5000] [--no-s3]

- append throughput (events/s) on the filesystem store and on SeaweedFS (started here
  with tests/seaweed.py), batched (1000 events per append) and single (1 per append);
- a log of `--size` events built through `Ledger.append` (the path users take), in
  batches of `--batch`, then `verify_log` over all of it (events/s);
- inclusion and consistency proof generation (from the stored tiles) and verification
  latency at that size, averaged over random indices;
- the same proofs with a warm tile cache (a long-running reader, as pymerkle keeps its
  whole tree in memory), and the bare tree built in memory from the same entries;
- pymerkle 7 `InmemoryTree` building the same tree (same entries, RFC 9162 hashing) and
  proving / verifying the same inclusions and consistencies; ratios printed (ours first,
  > 1 means we are ahead);
- the share of an append spent checking before extending (authenticating the right edge
  of the checkpoint being extended against its signed root);
- a `--replay`-event vault history (signed requests, real policies, decisions made by the
  engine) audited three ways: structure only, + the strict legal-history projection, + the
  re-run of every logged decision; events/s and the share of each step.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pymerkle

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.ledger.log import Ledger
from pcii_vault.ledger.note import NoteVerifier
from pcii_vault.ledger.tiles import TileHashSource, build_tiles
from pcii_vault.ledger.tree import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_hash,
    verify_consistency,
    verify_inclusion,
)
from pcii_vault.ledger.verified import VerifiedTiles
from pcii_vault.ledger.verify import verify_log
from pcii_vault.models.event import Event
from pcii_vault.store.base import ObjectStore
from pcii_vault.store.filesystem import FilesystemStore

ORIGIN = "bench.pcii-vault.local/log"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = Ed25519PrivateKey(bytes(range(32)))


def draft(i: int) -> Event:
    return Event(
        seq=0,
        time=T0,
        type="access.decided",
        actor="analyst-7",
        record=f"PCII-2026-{i:06d}",
        action="retrieve",
        decision="permit",
        policies=("pcii-analyst-need-to-know",),
        policy_set="ab" * 32,
        purpose="vulnerability assessment",
        details={"sha256": "cd" * 32},
    )


def ledger(store: ObjectStore) -> Ledger:
    return Ledger(store, ORIGIN, signer=KEY, verifier=KEY.public_key)


def append_rate(store: ObjectStore, batch: int, appends: int) -> float:
    log = ledger(store)
    drafts = [draft(i) for i in range(batch)]
    log.append(drafts)  # warm up
    started = time.perf_counter()
    for _ in range(appends):
        log.append(drafts)
    return batch * appends / (time.perf_counter() - started)


def check_before_extend_share(store: ObjectStore, batch: int, appends: int) -> float:
    """Fraction of append time spent authenticating the right edge before extending."""
    log = ledger(store)
    drafts = [draft(i) for i in range(batch)]
    log.append(drafts)
    spent = 0.0
    original = VerifiedTiles.__init__

    def timed(self: VerifiedTiles, *args: object, **kwargs: object) -> None:
        nonlocal spent
        t = time.perf_counter()
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        spent += time.perf_counter() - t

    VerifiedTiles.__init__ = timed  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        for _ in range(appends):
            log.append(drafts)
        total = time.perf_counter() - started
    finally:
        VerifiedTiles.__init__ = original  # type: ignore[method-assign]
    return spent / total


def replay_benchmark(count: int) -> None:
    """Audit a `count`-event vault history: structure, legal history, decision replay."""
    from replay_history import build_history

    from pcii_vault.history import HistoryAuditor

    with tempfile.TemporaryDirectory(prefix="pcii-bench-replay-") as tmp:
        store, verifier = build_history(Path(tmp), count)
        timings = {}
        for name, make in (
            ("structure only", lambda: None),
            ("+ legal history", lambda: HistoryAuditor(store, replay_decisions=False)),
            ("+ decision replay", lambda: HistoryAuditor(store)),
        ):
            checker = make()
            started = time.perf_counter()
            verify_log(store, verifier, event_checker=checker)
            if checker is not None:
                checker.finish()
                replayed = checker.decisions_replayed
                checker.close()
            timings[name] = time.perf_counter() - started
        base = timings["structure only"]
        print(f"audit of a {count:,}-event vault history ({replayed:,} decisions replayed):")
        for name, seconds in timings.items():
            print(
                f"  {name:<20} {seconds:6.1f} s  {count / seconds:>9,.0f} events/s  "
                f"(+{(seconds - base) / seconds:.0%} over structure)"
            )
        replay_only = timings["+ decision replay"] - timings["+ legal history"]
        print(f"  decision replay alone: {replayed / replay_only:,.0f} decisions/s")


def mean_us(samples: list[float]) -> float:
    return statistics.fmean(samples) * 1e6


def main() -> None:  # noqa: PLR0912, PLR0915 -- one linear script of measurements
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--replay", type=int, default=100_000)
    parser.add_argument("--replay-only", action="store_true")
    args = parser.parse_args()
    if args.replay:
        replay_benchmark(args.replay)
    if args.replay_only:
        return
    rng = random.Random(7)
    figures: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="pcii-bench-ledger-") as tmp:
        fs = FilesystemStore(Path(tmp) / "append")
        figures["fs batched"] = append_rate(fs, 1000, 20)
        figures["fs single"] = append_rate(FilesystemStore(Path(tmp) / "single"), 1, 300)
        print(
            f"append, filesystem: batched(1000) {figures['fs batched']:,.0f} events/s, "
            f"single {figures['fs single']:,.0f} events/s"
        )
        share = check_before_extend_share(FilesystemStore(Path(tmp) / "share"), 1000, 20)
        single = check_before_extend_share(FilesystemStore(Path(tmp) / "share1"), 1, 200)
        print(
            f"  check before extend: {share:.1%} of a batched append, {single:.1%} of a single one"
        )

    if not args.no_s3:
        from seaweed import running_seaweed

        from pcii_vault.store.s3 import S3Store

        with running_seaweed() as server:
            server.client().create_bucket(Bucket="bench-ledger")
            s3 = S3Store(
                "bench-ledger",
                endpoint_url=server.endpoint_url,
                region_name=server.region,
                access_key_id=server.access_key,
                secret_access_key=server.secret_key,
            )
            figures["s3 batched"] = append_rate(s3, 1000, 5)
            s3b = S3Store(
                "bench-ledger",
                "single",
                endpoint_url=server.endpoint_url,
                region_name=server.region,
                access_key_id=server.access_key,
                secret_access_key=server.secret_key,
            )
            figures["s3 single"] = append_rate(s3b, 1, 50)
            print(
                f"append, SeaweedFS:  batched(1000) {figures['s3 batched']:,.0f} events/s, "
                f"single {figures['s3 single']:,.0f} events/s"
            )

    with tempfile.TemporaryDirectory(prefix="pcii-bench-ledger-") as tmp:
        store = FilesystemStore(Path(tmp) / "big")
        log = ledger(store)
        size = args.size
        started = time.perf_counter()
        done = 0
        entries: list[bytes] = []
        while done < size:
            count = min(args.batch, size - done)
            result = log.append([draft(done + i) for i in range(count)])
            entries.extend(e.entry_bytes() for e in result.events)
            done += count
        build_s = time.perf_counter() - started
        print(
            f"built a {size:,}-event log through Ledger.append in {build_s:.1f} s "
            f"({size / build_s:,.0f} events/s, batches of {args.batch})"
        )

        verifier = NoteVerifier(ORIGIN, KEY.public_key)
        started = time.perf_counter()
        report = verify_log(store, verifier)
        verify_s = time.perf_counter() - started
        figures["verify"] = size / verify_s
        print(
            f"verify_log: {size:,} events in {verify_s:.2f} s ({figures['verify']:,.0f} "
            f"events/s; {report.tiles} tiles, {report.history} historic checkpoints)"
        )

        root = report.checkpoint.root
        indices = [rng.randrange(size) for _ in range(args.probes)]
        olds = [rng.randrange(1, size) for _ in range(args.probes)]
        source = TileHashSource(store, size)
        gen, ver, cgen, cver = [], [], [], []
        proofs = []
        for index in indices:
            t = time.perf_counter()
            path = inclusion_proof(source, index, size)
            gen.append(time.perf_counter() - t)
            proofs.append(path)
        for index, path in zip(indices, proofs, strict=True):
            leaf = leaf_hash(entries[index])
            t = time.perf_counter()
            verify_inclusion(leaf, index, size, path, root)
            ver.append(time.perf_counter() - t)
        old_roots = [range_hash(source, 0, m) for m in olds]
        cproofs = []
        for m in olds:
            t = time.perf_counter()
            cproofs.append(consistency_proof(source, m, size))
            cgen.append(time.perf_counter() - t)
        for m, old_root, proof in zip(olds, old_roots, cproofs, strict=True):
            t = time.perf_counter()
            verify_consistency(m, size, old_root, root, proof)
            cver.append(time.perf_counter() - t)
        # A long-running reader keeps decoded tiles (as pymerkle keeps its whole tree).
        warm = TileHashSource(store, size, cache_tiles=1 << 20)
        for n in range((size + 255) // 256):
            warm.node(0, n * 256)
        wgen = []
        for index in indices:
            t = time.perf_counter()
            inclusion_proof(warm, index, size)
            wgen.append(time.perf_counter() - t)
        for m in olds:
            t = time.perf_counter()
            consistency_proof(warm, m, size)
            wgen.append(time.perf_counter() - t)
        # The tree alone, in memory, from the same entries (what pymerkle does).
        started = time.perf_counter()
        tiles = build_tiles(0, entries, lambda key: b"")
        mem_root = range_hash(TileHashSource(store, size, overlay=tiles), 0, size)
        figures["tree build"] = size / (time.perf_counter() - started)
        if mem_root != root:
            raise SystemExit("in-memory tree root differs from the log's")
        ours = {
            "incl gen warm": mean_us(wgen[: len(indices)]),
            "cons gen warm": mean_us(wgen[len(indices) :]),
            "incl gen": mean_us(gen),
            "incl verify": mean_us(ver),
            "cons gen": mean_us(cgen),
            "cons verify": mean_us(cver),
        }
        print(
            f"at {size:,}: inclusion proof {ours['incl gen']:.0f} us to generate, "
            f"{ours['incl verify']:.0f} us to verify; consistency proof "
            f"{ours['cons gen']:.0f} us / {ours['cons verify']:.0f} us"
        )

    # pymerkle, same entries, same indices.
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    started = time.perf_counter()
    for entry in entries:
        tree.append_entry(entry)
    pm_build_s = time.perf_counter() - started
    pm_root = tree.get_root(size)
    print(
        f"pymerkle {pymerkle.__version__} InmemoryTree: built {size:,} leaves in "
        f"{pm_build_s:.1f} s ({size / pm_build_s:,.0f} leaves/s); same root as ours: "
        f"{pm_root == root}"
    )
    pgen, pver, pcgen, pcver = [], [], [], []
    pm_proofs = []
    for index in indices:
        t = time.perf_counter()
        pm_proofs.append(tree.prove_inclusion(index + 1, size))
        pgen.append(time.perf_counter() - t)
    for index, proof in zip(indices, pm_proofs, strict=True):
        base = tree.get_leaf(index + 1)
        t = time.perf_counter()
        pymerkle.verify_inclusion(base, pm_root, proof)
        pver.append(time.perf_counter() - t)
    pm_cproofs = []
    for m in olds:
        t = time.perf_counter()
        pm_cproofs.append(tree.prove_consistency(m, size))
        pcgen.append(time.perf_counter() - t)
    for m, proof in zip(olds, pm_cproofs, strict=True):
        prior = tree.get_root(m)
        t = time.perf_counter()
        pymerkle.verify_consistency(prior, pm_root, proof)
        pcver.append(time.perf_counter() - t)
    theirs = {
        "incl gen warm": mean_us(pgen),
        "cons gen warm": mean_us(pcgen),
        "incl gen": mean_us(pgen),
        "incl verify": mean_us(pver),
        "cons gen": mean_us(pcgen),
        "cons verify": mean_us(pcver),
    }
    print()
    print(f"{'figure':<38}{'ours':>14}{'pymerkle':>14}{'ratio':>8}")
    build_theirs = size / pm_build_s
    print(
        f"{'tree build in memory (leaves/s)':<38}{figures['tree build']:>14,.0f}"
        f"{build_theirs:>14,.0f}{figures['tree build'] / build_theirs:>8.2f}"
    )
    print(
        f"{'durable batched appends, fs (events/s)':<38}{figures['fs batched']:>14,.0f}{'n/a':>14}"
    )
    print(
        f"{'full recompute (events/s; ours: verify)':<38}{figures['verify']:>14,.0f}"
        f"{build_theirs:>14,.0f}{figures['verify'] / build_theirs:>8.2f}"
    )
    for name in (
        "incl gen",
        "incl gen warm",
        "incl verify",
        "cons gen",
        "cons gen warm",
        "cons verify",
    ):
        print(
            f"{name + ' (us)':<38}{ours[name]:>14.1f}{theirs[name]:>14.1f}"
            f"{theirs[name] / ours[name]:>8.2f}"
        )


if __name__ == "__main__":
    main()
