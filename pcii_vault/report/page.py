"""The report as one self-contained HTML page, written as it is produced.

Invariants:
- one file: styles and charts inline, no script, no font, image or link that loads
  anything; a Content-Security-Policy meta tag (`default-src 'none'`, styles allowed
  only by hash) makes any slip fail closed in a browser;
- every piece of text from the log (principal ids, organisations, purposes,
  authorities, problems) is escaped; the log holds no PCII content and neither does the
  page;
- the verification verdict comes first: a report on a log that is not sound says so at
  the top, with the problem, before any figure;
- tables are streamed from the spool, so the page's size, not the process's memory,
  grows with the log.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from html import escape
from pathlib import Path
from typing import IO

from pcii_vault.report import charts
from pcii_vault.report.audit import AuditReport
from pcii_vault.report.charts import Chart
from pcii_vault.report.figures import DEADLINE_KINDS, KEY_OPERATION_LIMIT, TABLES
from pcii_vault.report.findings import (
    CLOCK_SLACK,
    MANY_DENIALS,
    POLICY_CHANGE_WINDOW,
    WORK_END,
    WORK_START,
)
from pcii_vault.text import printable

__all__ = ["HEADINGS", "build_charts", "write_html"]

# The page's section headings, in order (the PDF carries the same ones).
HEADINGS = (
    "Verification",
    "Findings",
    "Charts",
    "Releases",
    "Disclosures under 6 CFR 29.8(f)",
    "Decontrols and notices to earlier recipients",
    "Recipients without current training or NDA",
    "Releases that failed after their permit",
    "How to re-verify this report",
)

_CSS = """
@page { size: A4 landscape; margin: 12mm; }
html { font-family: 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif; color: #1b1b1b;
  background: #ffffff; font-size: 14px; }
body { margin: 0 auto; max-width: 1200px; padding: 16px 24px; }
h1 { font-size: 24px; margin: 0 0 4px 0; }
h2 { font-size: 19px; border-bottom: 2px solid #1f5fa8; padding-bottom: 2px; margin-top: 28px; }
.subtitle { color: #5c5c5c; margin: 0 0 12px 0; }
.verdict { font-size: 18px; font-weight: bold; padding: 10px 14px; border-radius: 4px; }
.sound .verdict { background: #e3f4ea; border: 2px solid #2e8b57; color: #14532d; }
.not-sound .verdict { background: #fdecea; border: 2px solid #c0392b; color: #7b1d13; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 4px 16px; }
dl.facts dt { font-weight: bold; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
code { font-family: 'DejaVu Sans Mono', 'Liberation Mono', monospace; font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px 0; font-size: 12px; }
thead { display: table-header-group; }
th, td { border: 1px solid #c8c8c8; padding: 3px 6px; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
th { background: #eef2f7; }
tr { page-break-inside: avoid; }
.empty { color: #5c5c5c; font-style: italic; }
figure { margin: 12px 0 24px 0; page-break-inside: avoid; }
figure svg { width: 100%; height: auto; max-width: 860px; display: block; }
figcaption { color: #5c5c5c; font-size: 12px; }
ul.findings li { margin-bottom: 6px; }
.flag { color: #7b1d13; font-weight: bold; }
footer { margin-top: 32px; color: #5c5c5c; font-size: 12px; }
"""

_STATE_ORDER = (
    "received",
    "deficient",
    "initially-not-pcii",
    "validated",
    "final-not-pcii",
    "withdrawn",
    "decontrolled",
    "destroyed",
)


def _e(value: object) -> str:
    # Control and bidi characters from the log are shown as escapes, as in a terminal
    # listing: a right-to-left override must not reorder what an auditor reads.
    return "" if value is None else escape(printable(str(value), keep_newlines=True), quote=True)


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def build_charts(report: AuditReport) -> list[Chart]:
    """Every chart of the report, in page order."""
    f = report.figures
    unit, bucket = charts.time_buckets(day for day, _ in f.acts_by_day)
    buckets = sorted(set(bucket.values()))
    acts: dict[str, Counter[str]] = {}
    for (day, kind), count in f.acts_by_day.items():
        acts.setdefault(kind, Counter())[bucket[day]] += count
    flows: dict[str, Counter[str]] = {"releases": Counter(), "denials": Counter()}
    for day, count in f.releases_by_day.items():
        flows["releases"][bucket[day]] += count
    for day, count in f.denials_by_day.items():
        flows["denials"][bucket[day]] += count
    states = f.records_by_state()
    deadlines: dict[str, dict[str, int]] = {"met": {}, "due": {}, "overdue": {}}
    for (kind, status), count in f.deadlines.items():
        deadlines[status][kind] = count
    key_caption = "each dot one logged key operation"
    if f.key_operations_total > KEY_OPERATION_LIMIT:
        key_caption += f" (the first {KEY_OPERATION_LIMIT} of {f.key_operations_total})"
    return [
        charts.stacked(
            "acts-over-time",
            f"Acts over time by type (per {unit})",
            buckets,
            {kind: dict(acts[kind]) for kind in sorted(acts)},
            "every logged event in the period, by event type",
        ),
        charts.stacked(
            "releases-and-denials",
            f"Releases and denials over time (per {unit})",
            buckets,
            {name: dict(counts) for name, counts in flows.items()},
            "releases: permitted retrieve and review; denials: every denied request",
        ),
        charts.bars(
            "denials-by-policy",
            "Denials by determining policy",
            f.denials_by_policy,
            "a denial with no determining policy is Cedar's default deny",
        ),
        charts.bars(
            "denials-by-principal",
            "Denials by principal",
            f.denials_by_principal,
            "who was refused",
        ),
        charts.bars(
            "releases-by-record",
            "Releases by record",
            Counter(f.releases_per_record()),
            "permitted retrieve and review per tracking number",
        ),
        charts.bars(
            "releases-by-organisation",
            "Releases by recipient organisation and level",
            Counter(
                {f"{org} ({level})": n for (org, level), n in f.releases_by_organisation.items()}
            ),
            "the recipient's organisation and government level when the release was logged",
        ),
        charts.bars(
            "records-by-state",
            "Records by lifecycle state",
            Counter({s: states[s] for s in sorted(states, key=_state_rank)}),
            f"state at {report.as_of.isoformat()}, replayed from the log",
        ),
        charts.stacked(
            "deadlines",
            "30-day deadlines: met, due and overdue",
            [*DEADLINE_KINDS.values(), "decontrol notice"],
            deadlines,
            "30 days each: from receipt to a decision (validation decision), from a "
            "deficiency notice to its cure, from an initial not-PCII finding to the final "
            "decision, from a final finding to acting on the submitter's preference, and "
            "from a decontrol to the notice of each earlier recipient",
            rotate=False,
        ),
        charts.timeline(
            "key-operations",
            "Key operations (rotations, rewraps, retirements, migrations)",
            [(when, kind) for _, when, kind, _ in f.key_operations],
            key_caption,
        ),
    ]


def _state_rank(state: str) -> int:
    return _STATE_ORDER.index(state) if state in _STATE_ORDER else len(_STATE_ORDER)


class _Page:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def w(self, *parts: str) -> None:
        for part in parts:
            self.out.write(part)

    def facts(self, rows: Iterable[tuple[str, str]]) -> None:
        """A definition list; values are already escaped HTML."""
        self.w('<dl class="facts">')
        for name, value in rows:
            self.w(f"<dt>{_e(name)}</dt><dd>{value}</dd>")
        self.w("</dl>\n")

    def table(
        self,
        columns: tuple[str, ...],
        rows: Iterable[dict[str, object]],
        cell: Callable[[str, dict[str, object]], str] | None = None,
    ) -> None:
        """A table streamed row by row; an empty one says so."""
        head = "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in columns)
        opened = False
        for row in rows:
            if not opened:
                self.w(f"<table><thead><tr>{head}</tr></thead><tbody>\n")
                opened = True
            cells = "".join(f"<td>{cell(c, row) if cell else _e(row.get(c))}</td>" for c in columns)
            self.w(f"<tr>{cells}</tr>\n")
        if opened:
            self.w("</tbody></table>\n")
        else:
            self.w('<p class="empty">None in the period.</p>\n')


def write_html(
    report: AuditReport,
    path: Path,
    *,
    proof_href: Callable[[int], str | None] | None = None,
    command: str = "pcii audit verify",
) -> None:
    """Write the report page to `path` (replaced if present).

    Args:
        report: the compiled report.
        path: the HTML file.
        proof_href: link target of a release's inclusion proof bundle, by log index.
        command: how a reader re-verifies the log (shown in the last section).
    """
    figures = build_charts(report)
    styles = [_CSS, *(s for chart in figures for s in chart.styles)]
    csp = (
        "default-src 'none'; style-src "
        + " ".join(dict.fromkeys(_hash(s) for s in styles))
        + "; img-src 'none'; font-src 'none'; base-uri 'none'; form-action 'none'"
    )
    with path.open("w", encoding="utf-8") as out:
        page = _Page(out)
        v = report.verification
        page.w(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n',
            f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">\n',
            '<meta name="referrer" content="no-referrer">\n',
            f"<title>Access log audit report: {_e(v.origin)}</title>\n",
            f"<style>{_CSS}</style>\n</head><body>\n",
            "<header><h1>Access log audit report</h1>\n",
            f'<p class="subtitle">{_e(v.origin)}: metadata only, no PCII content</p></header>\n',
        )
        _verification(page, report)
        _findings(page, report)
        page.w(f'<section id="charts"><h2>{HEADINGS[2]}</h2>\n')
        for chart in figures:
            page.w(
                f'<figure id="chart-{_e(chart.name)}" data-chart="{_e(chart.name)}">',
                chart.svg,
                f"<figcaption>{_e(chart.caption)}</figcaption></figure>\n",
            )
        page.w("</section>\n")
        _tables(page, report, proof_href)
        _footer(page, report, command)
        page.w("</body></html>\n")


def _verification(page: _Page, report: AuditReport) -> None:
    v = report.verification
    f = report.figures
    sound = "sound" if v.sound else "not-sound"
    page.w(f'<section id="verification" class="{sound}"><h2>{HEADINGS[0]}</h2>\n')
    if v.sound:
        legal = " and its event history is legal" if v.legal_history else ""
        if v.legal_history and v.decisions_replayed is None:
            legal += " (logged decisions were not replayed)"
        page.w(
            f'<p class="verdict" id="verdict">Log sound: every signature, entry, tile and '
            f"checkpoint verified{legal}.</p>\n"
        )
    else:
        page.w(
            '<p class="verdict" id="verdict">Log NOT SOUND: '
            f"{_e(v.problem)}</p>\n"
            f"<p>The figures below cover the {v.events_read} events read before the problem "
            "was found; they cannot be relied on.</p>\n"
        )
    trusted = (
        "none given"
        if v.trusted_size is None
        else f"size {v.trusted_size}, root <code>{_e(v.trusted_root)}</code>"
    )
    period = f.period
    page.facts(
        [
            ("origin", f"<code>{_e(v.origin)}</code>"),
            ("checkpoint", _e(_checkpoint_status(report))),
            ("checkpoint size", _e(v.size if v.size is not None else "unreadable")),
            ("checkpoint root", f"<code>{_e(v.root or 'unreadable')}</code>"),
            ("trusted checkpoint", trusted),
            ("legal history checked", "yes" if v.legal_history else "no (structure only)"),
            (
                "decisions replayed",
                "not replayed" if v.decisions_replayed is None else _e(v.decisions_replayed),
            ),
            ("events read", _e(v.events_read)),
            ("pending (not yet in the log)", _e(len(v.pending))),
            ("period from", _e(period.since.isoformat() if period.since else "the first event")),
            ("period until", _e(period.until.isoformat() if period.until else "the last event")),
            ("record", _e(period.record or "all records")),
            ("events in the period", _e(f.events_seen)),
            ("deadlines as of", _e(report.as_of.isoformat())),
            ("generated at", _e(report.generated_at.isoformat())),
        ]
    )
    page.w("<h3>Policy sets in force over the period</h3>\n")
    page.table(
        ("policy_set", "loaded_at_event", "loaded_at", "decisions_in_period"),
        (
            {
                "policy_set": use.hash,
                "loaded_at_event": ", again at ".join(
                    str(seq) for seq in (use.loaded_seq, *use.loaded_again)
                ),
                "loaded_at": use.loaded_at.isoformat(),
                "decisions_in_period": use.decisions,
            }
            for use in sorted(f.policy_sets.values(), key=lambda u: u.loaded_seq)
        ),
        lambda c, row: f"<code>{_e(row[c])}</code>" if c == "policy_set" else _e(row[c]),
    )
    page.w("</section>\n")


def _checkpoint_status(report: AuditReport) -> str:
    if report.verification.sound:
        return "verified: the log below is exactly the tree it signs"
    if report.checkpoint is None:
        return "unreadable or not signed by the log key"
    return "signed by the log key, but the log does not match it"


def _findings(page: _Page, report: AuditReport) -> None:
    found = report.figures.findings.all()
    page.w(f'<section id="findings"><h2>{HEADINGS[1]}</h2>\n')
    page.w(
        f"<p>Rules: {MANY_DENIALS} or more denials for one principal; releases outside "
        f"Monday to Friday {WORK_START:02d}:00-{WORK_END:02d}:00 UTC; a policy set loaded "
        f"less than {POLICY_CHANGE_WINDOW.total_seconds() / 3600:.0f} h before a release it "
        "permitted; a key version used after its retirement; a release to someone without "
        "current training or NDA; a 29.8(f) disclosure without its program-office notice; a "
        "decontrol not sent to an earlier recipient; an overdue 30-day deadline; a decision "
        "under a policy set the log never loaded; an event dated more than "
        f"{CLOCK_SLACK.total_seconds() / 60:.0f} minutes before one logged earlier (a clock "
        "set back), wherever in the log.</p>\n"
    )
    if not found:
        page.w('<p class="empty" id="no-findings">No findings.</p>\n')
    else:
        page.w('<ul class="findings">\n')
        for item in found:
            more = (
                f" (first {len(item.events)} of {item.total})"
                if item.total > len(item.events)
                else ""
            )
            events = ", ".join(str(seq) for seq in item.events)
            page.w(
                f'<li data-rule="{_e(item.rule)}"><span class="flag">{_e(item.rule)}</span>: '
                f"{_e(item.text)}. Events{more}: {_e(events)}</li>\n"
            )
        page.w("</ul>\n")
    page.w("</section>\n")


def _tables(
    page: _Page, report: AuditReport, proof_href: Callable[[int], str | None] | None
) -> None:
    spool = report.spool

    def release_cell(column: str, row: dict[str, object]) -> str:
        value = row.get(column)
        if column == "seq" and proof_href is not None:
            href = proof_href(int(str(value)))
            if href is not None:
                return f'<a href="{_e(href)}">{_e(value)}</a>'
        if column == "policy_set":
            return f"<code>{_e(str(value or '')[:16])}</code>"
        return _e(value)

    sections = (
        (
            "releases",
            HEADINGS[3],
            "Every permitted retrieve and review in the period",
            release_cell,
        ),
        (
            "disclosures",
            HEADINGS[4],
            "Releases under a disclosure authority, with the program office's notice",
            None,
        ),
        (
            "decontrols",
            HEADINGS[5],
            "Every decontrol, its earlier recipients and the notices sent to them "
            "(principal@event)",
            None,
        ),
        (
            "unqualified",
            HEADINGS[6],
            "Releases to a principal whose training had expired or who had no NDA on that "
            "day (there should be none)",
            None,
        ),
        (
            "failed_releases",
            HEADINGS[7],
            "Permitted releases the vault logged as not delivered (release.failed; the "
            "access event stays among the releases above, and the recipient is still owed "
            "notices)",
            None,
        ),
    )
    for name, heading, intro, cell in sections:
        count = spool.count(name)
        page.w(
            f'<section id="table-{name}"><h2>{_e(heading)}</h2>\n',
            f"<p>{_e(intro)}: {count}.",
        )
        if name == "releases" and proof_href is not None:
            page.w(" Each event index links to its inclusion proof bundle.")
        page.w("</p>\n")
        page.table(TABLES[name], spool.rows(name), cell)
        page.w("</section>\n")


def _footer(page: _Page, report: AuditReport, command: str) -> None:
    v = report.verification
    page.w(
        f'<footer id="reverify"><h2>{HEADINGS[8]}</h2>\n',
        "<p>This report is computed only from the verified log, never from a vault's local "
        "index. Anyone holding a copy of the log and its verifier key can check the "
        f"checkpoint above (size {_e(v.size)}, root <code>{_e(v.root)}</code>) with "
        f"<code>{_e(command)}</code>, and a release's inclusion proof with "
        "<code>pcii audit verify-proof FILE</code>.</p>\n</footer>\n",
    )
