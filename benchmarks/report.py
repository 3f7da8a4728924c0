"""Auditor's report benchmark: `pcii audit report --html` against `pcii audit verify`.

Run:  .venv/bin/python benchmarks/report.py [--size 1000000] [--batch 5000] [--keep DIR]

- builds a legal log of `--size` events: a vault (tests/vault_support.py) with an admin,
  an owner, an office user, four water analysts and one of another sector, 20 validated
  records, then signed retrieve requests decided by the default policies (mostly
  permits; every seventh by the analyst of another sector, denied: need to know),
  appended through `Ledger.append` in batches of `--batch`, with times spread over a
  year (so the charts bucket by month);
- runs, each in a fresh process, `pcii audit verify`'s check (`verify_log` with the
  in-memory legal-history replay and every decision re-run) and the report
  (`compile_report` + `write_html` + `figures_json`: the same verification, its replay on
  a scratch file, and every figure, table and chart), and prints wall time, events/s and
  peak RSS of each, and the ratio;
- does both first on a separate log a tenth of the size, so the peak RSS of the two
  sizes shows whether memory depends on the log's length.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcii_vault.config import VaultConfig, VaultPaths
from pcii_vault.decisions import decide
from pcii_vault.history import HistoryAuditor
from pcii_vault.ledger.note import NoteVerifier
from pcii_vault.ledger.verify import verify_log
from pcii_vault.models.event import Event
from pcii_vault.models.request import sign_request
from pcii_vault.report import Period, compile_report, figures_json, write_html
from pcii_vault.store import open_store

ANALYSTS = (
    ("ana-1", "State Water Board", "state"),
    ("ana-2", "State Water Board", "state"),
    ("ana-3", "EPA Water Security", "federal"),
    ("ana-4", "DHS I&A", "federal"),
)
# Asks for water records outside its sectors: the default policies deny it (need to know).
OUTSIDER = ("ana-5", "State Energy Office", "state")
RECORDS = 20


def build(root: Path, size: int, batch: int) -> None:
    """A legal log of `size` events under `root/vault`."""
    from tests.vault_support import VaultBench

    bench = VaultBench(root, secret=b"bench-secret", attachment_bytes=b"%PDF-1.4\n%%EOF\n")
    vault = bench.vault
    for name, org, level in ANALYSTS:
        extra = {"nda_signed": "2026-01-01"} if level != "federal" else {}
        bench.add(name, "analyst", org, level, sectors=("Water and Wastewater Systems",), **extra)
    name, org, level = OUTSIDER
    bench.add(name, "analyst", org, level, sectors=("Energy",), nda_signed="2026-01-01")
    records = []
    for _ in range(RECORDS):
        receipt = bench.submit_receipt(attach=False)
        tracking = receipt.tracking_number
        vault.transition(
            vault.sign(bench.ids["office"], "validate", record=tracking),
            "submission.validated",
        )
        records.append(tracking)
    policy_set = vault.policy.policy_set_hash
    rows = {tracking: vault.index.record(tracking) for tracking in records}
    vault_id = vault.config.vault_id
    start = vault.ledger.size()
    t0 = datetime.now(UTC) + timedelta(minutes=1)
    step = timedelta(days=365) / max(size, 1)
    drafts: list[Event] = []
    i = start
    while i < size:
        name, _, _ = OUTSIDER if i % 7 == 0 else ANALYSTS[i % len(ANALYSTS)]
        identity = bench.ids[name]
        when = t0 + step * i
        record = records[i % RECORDS]
        purpose = f"benchmark read {i}"
        request = sign_request(
            identity.key,
            vault=vault_id,
            principal=name,
            action="retrieve",
            now=when,
            record=record,
            purpose=purpose,
            use="infrastructure-protection",
        )
        # Decided as the vault decides (the audit replays every decision).
        decision = decide(
            vault.policy, vault.index.principal(name), request.body, rows[record], now=when
        )
        drafts.append(
            Event(
                seq=0,
                time=when,
                type="access.decided",
                actor=name,
                request=request.to_log(),
                record=record,
                action="retrieve",
                decision=decision.decision,
                policies=tuple(decision.policy_ids),
                policy_set=policy_set,
                purpose=purpose,
                use="infrastructure-protection",
                obligations=tuple(decision.obligations),
            )
        )
        i += 1
        if len(drafts) >= batch or i == size:
            vault.ledger.append(drafts)
            drafts = []
    vault.close()


def measure(kind: str, vault_dir: Path) -> dict[str, float]:
    """Run one measurement in this process; return seconds, events and peak RSS."""
    config = VaultConfig.load(VaultPaths(vault_dir).config)
    store = open_store(config.store, root_for_file=VaultPaths(vault_dir).objects)
    verifier = NoteVerifier.from_key_string(config.log_key)
    started = time.perf_counter()
    if kind == "verify":
        # What `pcii audit verify` runs: the legal-history replay and every decision re-run.
        history = HistoryAuditor(store)
        try:
            size = verify_log(store, verifier, event_checker=history).size
        finally:
            history.close()
    else:
        with tempfile.TemporaryDirectory() as scratch:
            report = compile_report(
                store, verifier, period=Period(), scratch=Path(scratch), now=datetime.now(UTC)
            )
            if not report.verification.sound:
                raise SystemExit(f"log not sound: {report.verification.problem}")
            write_html(report, Path(scratch) / "report.html")
            figures_json(report)
            report.spool.close()
            size = report.verification.size or 0
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "events": size, "peak_rss_mib": _peak_rss_kib() / 1024}


def _peak_rss_kib() -> int:
    # VmHWM starts afresh at exec; getrusage's ru_maxrss would carry the parent's peak
    # (the process that built the log) into the child.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(kind: str, vault_dir: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--vault", str(vault_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(label: str, m: dict[str, float]) -> None:
    rate = m["events"] / m["seconds"] if m["seconds"] else 0
    print(
        f"  {label:<8} {m['seconds']:8.1f} s  {rate:9,.0f} events/s  "
        f"peak RSS {m['peak_rss_mib']:6.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--measure", choices=("verify", "report"))
    parser.add_argument("--vault", type=Path)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.vault)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for size in (max(args.size // 10, 1000), args.size):
            root = base / f"log-{size}"
            if not (root / "vault").is_dir():
                root.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                build(root, size, args.batch)
                print(f"built a {size:,}-event log in {time.perf_counter() - started:.0f} s")
            verify = _child("verify", root / "vault")
            report = _child("report", root / "vault")
            print(f"{verify['events']:,.0f} events")
            _row("verify", verify)
            _row("report", report)
            print(f"  report / verify: {report['seconds'] / verify['seconds']:.2f}x")


if __name__ == "__main__":
    main()
