"""The report's figures as data (`--json`) and its tables as CSV (`--csv DIR`).

The JSON keeps the keys of the earlier counts-only `pcii audit report` (`size`, `root`,
`events_by_type`, `denials_by_principal`, `records_by_state`, `releases_by_record`,
`principals_by_status`) with the same meaning, and adds everything the page shows.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from pcii_vault.report.audit import AuditReport
from pcii_vault.report.figures import TABLES
from pcii_vault.text import printable

__all__ = ["csv_cell", "figures_json", "write_csv"]


def csv_cell(value: object) -> object:
    """Defuse user text: formulas read as text, control and bidi characters as escapes.

    Every CSV the CLI writes from the log (`audit report --csv`, `audit export`) passes
    its cells through here: a spreadsheet would run text starting with = + - @ as a
    formula, and an escape sequence or a right-to-left override in a purpose would
    rewrite a terminal that shows the file (`cat`), as it would on any other output. A
    line break is escaped too: quoted, it is valid CSV, but a line-based tool (`grep`)
    would read the rest as a row of its own. The JSON lines of `audit export` keep the
    text as logged.
    """
    if not isinstance(value, str):
        return value
    if value[:1] in {"=", "+", "-", "@", "\t", "\r"}:
        value = "'" + value
    return printable(value)


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items()))


def figures_json(report: AuditReport) -> dict[str, Any]:
    """Every figure of the report, JSON-ready."""
    f = report.figures
    v = report.verification
    acts: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for (day, kind), count in sorted(f.acts_by_day.items()):
        acts[day][kind] = count
    deadlines: defaultdict[str, dict[str, int]] = defaultdict(
        lambda: {"met": 0, "due": 0, "overdue": 0}
    )
    for (kind, status), count in sorted(f.deadlines.items()):
        deadlines[kind][status] = count
    return {
        "verification": v.to_json(),
        "sound": v.sound,
        "size": v.size,
        "root": v.root,
        "period": f.period.to_json(),
        "as_of": report.as_of.isoformat(),
        "generated_at": report.generated_at.isoformat(),
        "events_in_period": f.events_seen,
        "events_by_type": _sorted(f.events_by_type),
        "denials_by_principal": _sorted(f.denials_by_principal),
        "records_by_state": _sorted(f.records_by_state()),
        "releases_by_record": _sorted(f.releases_per_record()),
        "principals_by_status": _sorted(f.principals_by_status()),
        "acts_by_day": dict(acts),
        "releases_by_day": _sorted(f.releases_by_day),
        "denials_by_day": _sorted(f.denials_by_day),
        "denials_by_policy": _sorted(f.denials_by_policy),
        "releases_by_organisation": [
            {"organisation": org, "level": level, "releases": count}
            for (org, level), count in sorted(f.releases_by_organisation.items())
        ],
        "deadlines": dict(deadlines),
        "key_operations": [
            {"seq": seq, "time": when.isoformat(), "type": kind, "details": summary}
            for seq, when, kind, summary in f.key_operations
        ],
        "key_operations_total": f.key_operations_total,
        "policy_sets": [
            {
                "hash": use.hash,
                "loaded_seq": use.loaded_seq,
                "loaded_again_seq": list(use.loaded_again),
                "loaded_at": use.loaded_at.isoformat(),
                "decisions": use.decisions,
            }
            for use in sorted(f.policy_sets.values(), key=lambda u: u.loaded_seq)
        ],
        "findings": [finding.to_json() for finding in f.findings.all()],
        "tables": {name: report.spool.count(name) for name in TABLES},
    }


def write_csv(report: AuditReport, directory: Path) -> list[Path]:
    """Write each table as `<name>.csv` in `directory` (created if missing), streaming.

    Returns:
        The files written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, columns in TABLES.items():
        path = directory / f"{name}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in report.spool.rows(name):
                writer.writerow({k: csv_cell(v) for k, v in row.items()})
        written.append(path)
    findings = directory / "findings.csv"
    with findings.open("w", encoding="utf-8", newline="") as handle:
        lines = csv.writer(handle)
        lines.writerow(["rule", "subject", "text", "events_total", "events"])
        for finding in report.figures.findings.all():
            lines.writerow(
                [
                    finding.rule,
                    csv_cell(finding.subject),
                    csv_cell(finding.text),
                    finding.total,
                    " ".join(str(seq) for seq in finding.events),
                ]
            )
    written.append(findings)
    return written
