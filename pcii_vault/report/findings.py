"""Findings: what deserves an auditor's eye, each with the log events it rests on.

The rules run while the log streams by (`ReportFigures` calls them) and keep, per
finding, at most `EVIDENCE_LIMIT` event indices plus a total, so a finding that matches
a million events costs the same memory as one that matches ten.

Rules (thresholds are module constants, stated in the report):
- many denials for one principal (`MANY_DENIALS` or more in the period);
- releases outside working hours (before `WORK_START` or from `WORK_END` UTC, or at a
  weekend), per principal;
- a policy set loaded shortly (`POLICY_CHANGE_WINDOW`) before a release it permitted;
- a key version used (a submission wrapped under it, a rewrap to it) after its retirement;
- a release to a principal whose training had expired or who had no NDA (6 CFR 29);
- a 29.8(f) disclosure whose program-office notice is missing;
- a decontrol not sent to every earlier recipient;
- an overdue 30-day deadline (a validation decision, a deficiency cure, a final decision,
  acting on the submitter's preference);
- a decision under a policy set that the log never loaded;
- an event dated more than `CLOCK_SLACK` before an event logged earlier (a clock set back
  on a machine that acted on the vault: the times of its events, and the decisions made
  at them, are not to be trusted), wherever in the log it falls.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pcii_vault.models.event import Event

__all__ = [
    "CLOCK_SLACK",
    "EVIDENCE_LIMIT",
    "MANY_DENIALS",
    "POLICY_CHANGE_WINDOW",
    "WORK_END",
    "WORK_START",
    "Finding",
    "FindingRules",
]

EVIDENCE_LIMIT = 50
MANY_DENIALS = 3
WORK_START = 7
WORK_END = 19
POLICY_CHANGE_WINDOW = timedelta(hours=24)
# Replicas' clocks differ a little, and a batch's acts are dated when first looked at.
CLOCK_SLACK = timedelta(minutes=5)


@dataclass
class Finding:
    """One thing to look at, and the log indices of the events it rests on."""

    rule: str
    subject: str
    text: str
    events: list[int] = field(default_factory=list)
    total: int = 0

    def cite(self, seq: int) -> None:
        """Add an event index to the evidence (kept up to `EVIDENCE_LIMIT`)."""
        self.total += 1
        if len(self.events) < EVIDENCE_LIMIT:
            self.events.append(seq)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rule": self.rule,
            "subject": self.subject,
            "text": self.text,
            "events": list(self.events),
            "events_total": self.total,
        }


class FindingRules:
    """Collects findings; each (rule, subject) is one finding."""

    def __init__(self) -> None:
        self._findings: dict[tuple[str, str], Finding] = {}
        self._denials: dict[str, list[int]] = {}
        self._changes: dict[str, tuple[int, datetime]] = {}

    def _finding(self, rule: str, subject: str, text: str) -> Finding:
        key = (rule, subject)
        found = self._findings.get(key)
        if found is None:
            found = Finding(rule, subject, text)
            self._findings[key] = found
        return found

    def denial(self, event: Event) -> None:
        """A denied act in the period."""
        seqs = self._denials.setdefault(event.actor, [])
        if len(seqs) < EVIDENCE_LIMIT:
            seqs.append(event.seq)

    def release(self, event: Event) -> None:
        """A release in the period: working hours, recent policy change."""
        when = event.time
        if when.weekday() >= 5 or not WORK_START <= when.hour < WORK_END:
            self._finding(
                "outside-working-hours",
                event.actor,
                f"releases to {event.actor} outside working hours "
                f"(Monday to Friday {WORK_START:02d}:00-{WORK_END:02d}:00 UTC)",
            ).cite(event.seq)
        changed = self._changes.get(event.policy_set or "")
        if changed is not None and when - changed[1] <= POLICY_CHANGE_WINDOW:
            found = self._finding(
                "policy-changed-before-release",
                event.policy_set or "",
                f"policy set {(event.policy_set or '')[:16]} was loaded at event {changed[0]}, "
                f"less than {POLICY_CHANGE_WINDOW.total_seconds() / 3600:.0f} h before "
                "releases it permitted",
            )
            if not found.events:
                found.cite(changed[0])
            found.cite(event.seq)

    def policy_changed(self, event: Event) -> None:
        """A policy set replaced another one."""
        self._changes[event.policy_set or ""] = (event.seq, event.time)

    def retired_key_used(self, version: int, retired_seq: int, seq: int) -> None:
        """Key version `version` was retired at `retired_seq` and used again at `seq`."""
        found = self._finding(
            "retired-key-used",
            f"KEK version {version}",
            f"KEK version {version} used after its retirement (event {retired_seq})",
        )
        if not found.events:
            found.cite(retired_seq)
        found.cite(seq)

    def unqualified(self, event: Event, problems: list[str]) -> None:
        """A release to someone not qualified on that day."""
        self._finding(
            "unqualified-recipient",
            event.actor,
            f"releases to {event.actor} while not qualified ({'; '.join(problems)})",
        ).cite(event.seq)

    def disclosure_without_notice(self, seq: int) -> None:
        """A 29.8(f) disclosure whose program-office notice is not in the log."""
        self._finding(
            "disclosure-without-notice",
            "program-office",
            "29.8(f) disclosures without the program office's notice",
        ).cite(seq)

    def decontrol_unnotified(self, seq: int, missing: list[str]) -> None:
        """A decontrol not sent to every earlier recipient."""
        self._finding(
            "decontrol-not-notified",
            str(seq),
            f"decontrol at event {seq} not sent to {', '.join(missing)}",
        ).cite(seq)

    def overdue(self, what: str, opened_seq: int, closed_seq: int | None) -> None:
        """A 30-day deadline missed (closed late, or still open past due)."""
        found = self._finding("overdue-deadline", what, f"{what}s past the 30-day deadline")
        found.cite(opened_seq)
        if closed_seq is not None:
            found.cite(closed_seq)

    def clock_set_back(self, event: Event, latest: tuple[int, datetime]) -> None:
        """`event` is dated more than `CLOCK_SLACK` before event `latest` logged earlier."""
        found = self._finding(
            "clock-set-back",
            "log",
            f"events dated more than {CLOCK_SLACK.total_seconds() / 60:.0f} min before an "
            "event logged earlier: a clock set back where they were logged; their times "
            "(and what was decided at them: training, deadlines, periods) are not to be "
            "trusted",
        )
        if not found.events:
            found.cite(latest[0])
        found.cite(event.seq)

    def unknown_policy_set(self, event: Event) -> None:
        """A decision names a policy set the log never loaded."""
        self._finding(
            "unknown-policy-set",
            event.policy_set or "",
            f"decisions under policy set {(event.policy_set or '')[:16]}, never loaded in the log",
        ).cite(event.seq)

    def finish(self, denials_by_principal: Counter[str]) -> None:
        """Rules that need the period's totals."""
        for principal, count in sorted(denials_by_principal.items()):
            if count >= MANY_DENIALS:
                found = self._finding(
                    "many-denials", principal, f"{count} denials for {principal} in the period"
                )
                for seq in self._denials.get(principal, []):
                    found.cite(seq)
                found.total = count
        self._denials.clear()

    def all(self) -> list[Finding]:
        """Every finding, by rule then subject."""
        return [self._findings[key] for key in sorted(self._findings)]
