"""The report's figures, computed in one pass over the verified log's events.

`ReportFigures.observe` is called with every event in log order (as `verify_log` streams
them) and keeps only aggregates whose size depends on how many records, principals,
policy sets, days and findings there are, never on how many events: per-event tables
go to a `TableSpool` on disk. Lifecycle state is replayed from the events with the same
transition table as the index (`LIFECYCLE_TRANSITIONS`); the local index is never read.

Period: state (lifecycle, principals' attributes, recipients, policy sets, retired keys)
follows every event up to `until`; counts, charts and tables cover only the events inside
[`since`, `until`] (and of `record`, when given). Events after `until` are ignored.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pcii_vault.index import DEADLINE_DAYS, LIFECYCLE_TRANSITIONS
from pcii_vault.lifecycle import RecordState, deadline_rule
from pcii_vault.models.event import Event
from pcii_vault.report.findings import CLOCK_SLACK, FindingRules
from pcii_vault.report.spool import TableSpool

__all__ = [
    "DEADLINE_KINDS",
    "KEY_OPERATION_LIMIT",
    "RELEASE_ACTIONS",
    "TABLES",
    "Period",
    "ReportFigures",
]

# Content leaves the vault only through these actions (the index's recipients table).
RELEASE_ACTIONS = frozenset({"retrieve", "review"})
# The 30-day deadline that runs while a record is in a state (the lifecycle's rules, as
# `pcii office due` lists them), by the name the report gives it.
DEADLINE_KINDS: dict[RecordState, str] = {
    "received": "validation decision",
    "deficient": "deficiency cure",
    "initially-not-pcii": "final decision",
    "final-not-pcii": "submitter's preference",
}
assert all(deadline_rule(state) is not None for state in DEADLINE_KINDS)  # noqa: S101
# Key operations are rare (one per rotation, rewrap, retirement); the timeline keeps at most
# this many so that a pathological log cannot grow the report's memory.
KEY_OPERATION_LIMIT = 10_000
# Policy obligation that 6 CFR 29.8(f) disclosures carry when the office must be told.
_NOTIFY_OFFICE = "notify:program-office"

TABLES: dict[str, tuple[str, ...]] = {
    "releases": (
        "seq",
        "time",
        "principal",
        "organisation",
        "level",
        "record",
        "action",
        "purpose",
        "use",
        "authority",
        "obligations",
        "policies",
        "policy_set",
    ),
    "disclosures": (
        "seq",
        "time",
        "principal",
        "record",
        "authority",
        "notice_required",
        "notice_seq",
        "notice",
    ),
    "decontrols": (
        "seq",
        "time",
        "actor",
        "record",
        "earlier_recipients",
        "notified",
        "not_notified",
    ),
    "unqualified": ("seq", "time", "principal", "record", "problem"),
    "failed_releases": ("seq", "time", "record", "access", "reason"),
}


@dataclass(frozen=True)
class Period:
    """Which events the report covers (all of them by default)."""

    since: datetime | None = None
    until: datetime | None = None
    record: str | None = None

    def covers_time(self, when: datetime) -> bool:
        """Whether `when` is inside [since, until]."""
        return (self.since is None or when >= self.since) and (
            self.until is None or when <= self.until
        )

    def covers(self, event: Event) -> bool:
        """Whether the event's counts belong in the report."""
        if self.record is not None and event.record != self.record:
            return False
        return self.covers_time(event.time)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "record": self.record,
        }


@dataclass
class _PrincipalFacts:
    organisation: str
    level: str
    role: str
    status: str
    training_expires: date | None
    nda_signed: date | None
    contractor: bool

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> _PrincipalFacts:
        return cls(
            organisation=str(doc.get("organisation", "")),
            level=str(doc.get("level", "")),
            role=str(doc.get("role", "")),
            status=str(doc.get("status", "active")),
            training_expires=_date(doc.get("training_expires")),
            nda_signed=_date(doc.get("nda_signed")),
            contractor=bool(doc.get("contractor", False)),
        )

    def update(self, changes: dict[str, Any]) -> None:
        for name in ("organisation", "level", "role", "status"):
            if name in changes:
                setattr(self, name, str(changes[name]))
        if "training_expires" in changes:
            self.training_expires = _date(changes["training_expires"])
        if "nda_signed" in changes:
            self.nda_signed = _date(changes["nda_signed"])
        if "contractor" in changes:
            self.contractor = bool(changes["contractor"])

    def problems_on(self, day: date) -> list[str]:
        """Why this principal was not qualified to receive PCII on `day` (6 CFR 29)."""
        problems = []
        if self.training_expires is None:
            problems.append("no PCII training on record")
        elif self.training_expires <= day:
            # As the policies decide: training expires at the start of its date (UTC).
            problems.append(f"training expired {self.training_expires.isoformat()}")
        if self.level != "federal" or self.contractor:
            if self.nda_signed is None:
                problems.append("no non-disclosure agreement")
            elif self.nda_signed > day:
                problems.append(f"NDA signed only on {self.nda_signed.isoformat()}")
        return problems


@dataclass
class _Decontrol:
    seq: int
    time: datetime
    actor: str
    record: str
    earlier: tuple[str, ...]
    notified: dict[str, tuple[int, datetime]] = field(default_factory=dict)


@dataclass
class PolicySetUse:
    """A policy set in force during the period."""

    hash: str
    loaded_seq: int
    loaded_at: datetime
    decisions: int = 0
    # Loaded again in the period after another set replaced it (a change reverted).
    loaded_again: list[int] = field(default_factory=list)


class ReportFigures:
    """Streaming aggregates of the log for one period."""

    def __init__(self, period: Period, spool: TableSpool) -> None:
        self.period = period
        self.spool = spool
        self.events_seen = 0
        self.first_time: datetime | None = None
        self.last_time: datetime | None = None
        self.events_by_type: Counter[str] = Counter()
        self.acts_by_day: Counter[tuple[str, str]] = Counter()
        self.releases_by_day: Counter[str] = Counter()
        self.denials_by_day: Counter[str] = Counter()
        self.denials_by_policy: Counter[str] = Counter()
        self.denials_by_principal: Counter[str] = Counter()
        self.releases_by_record: Counter[str] = Counter()
        self.releases_by_organisation: Counter[tuple[str, str]] = Counter()
        self.key_operations: list[tuple[int, datetime, str, str]] = []
        self.key_operations_total = 0
        self.policy_sets: dict[str, PolicySetUse] = {}
        self.deadlines: Counter[tuple[str, str]] = Counter()
        self.findings = FindingRules()
        # State, replayed from every event up to `until` (bounded by records and principals).
        self._states: dict[str, str] = {}
        self._principals: dict[str, _PrincipalFacts] = {}
        self._recipients: defaultdict[str, set[str]] = defaultdict(set)
        self._policy_in_force: PolicySetUse | None = None
        self._retired_keys: dict[int, int] = {}
        # Open obligations: the deadline running for a record (its kind, the seq and time
        # of the event that opened it, whether that event is in the period), disclosures
        # awaiting their notice, decontrols collecting their notices.
        self._open_deadlines: dict[str, tuple[str, int, datetime, bool]] = {}
        self._awaiting_notice: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._decontrols: list[_Decontrol] = []
        # The latest time of any event so far, and its index: a later event dated well
        # before it was logged by a clock set back.
        self._latest: tuple[int, datetime] | None = None

    # ----- streaming -----------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Take the next event of the log (in order)."""
        latest = self._latest
        if latest is None or event.time > latest[1]:
            self._latest = (event.seq, event.time)
        elif event.time < latest[1] - CLOCK_SLACK:
            # Whatever the period: a clock set back moves an event out of its own.
            self.findings.clock_set_back(event, latest)
        if self.period.until is not None and event.time > self.period.until:
            return
        inside = self.period.covers(event)
        self._track_state(event, inside=inside)
        if inside:
            self._count(event)

    def _track_state(self, event: Event, *, inside: bool) -> None:
        kind = event.type
        details = event.details
        if kind == "policy.loaded" and event.policy_set is not None:
            self._policy_loaded(event, event.policy_set)
        elif kind.startswith("principal."):
            self._track_principal(event)
        elif kind == "submission.received" and event.record is not None:
            self._states[event.record] = "received"
            self._open_deadline(event, "received", inside=inside)
            self._check_key_use(event, details.get("kek_version"))
        elif kind in LIFECYCLE_TRANSITIONS and event.record is not None:
            self._transition(event, inside=inside)
        elif kind == "key.retired":
            self._retired_keys[int(details.get("version", -1))] = event.seq
        elif kind == "key.rewrapped":
            self._check_key_use(event, details.get("version"))
        elif kind == "notice.sent" and event.record is not None:
            self._notice(event)
        elif _is_release(event):
            self._recipients[str(event.record)].add(event.actor)

    def _policy_loaded(self, event: Event, policy_set: str) -> None:
        previous = self._policy_in_force
        current = self.policy_sets.get(policy_set) or PolicySetUse(
            policy_set, event.seq, event.time
        )
        self._policy_in_force = current
        changed = previous is not None and previous.hash != current.hash
        if changed:
            # Before the period too: a release in it may follow the change by hours.
            self.findings.policy_changed(event)
        if self.period.covers_time(event.time):
            self.policy_sets.setdefault(current.hash, current)
            if changed and event.seq != current.loaded_seq:
                current.loaded_again.append(event.seq)

    def _track_principal(self, event: Event) -> None:
        details = event.details
        if event.type == "principal.registered":
            doc = details.get("principal")
            if isinstance(doc, dict) and "id" in doc:
                self._principals[str(doc["id"])] = _PrincipalFacts.from_document(doc)
            return
        facts = self._principals.get(str(details.get("principal")))
        if facts is None:
            return
        changes = details.get("changes", {})
        if event.type == "principal.revoked":
            changes = {"status": "revoked"}
        facts.update(changes if isinstance(changes, dict) else {})

    def _open_deadline(self, event: Event, state: RecordState, *, inside: bool) -> None:
        kind = DEADLINE_KINDS.get(state)
        if kind is not None:
            self._open_deadlines[str(event.record)] = (kind, event.seq, event.time, inside)

    def _transition(self, event: Event, *, inside: bool) -> None:
        record = str(event.record)
        state = LIFECYCLE_TRANSITIONS[event.type][1]
        self._states[record] = state
        # Leaving a state closes its deadline: met in time, or late. A withdrawal ends the
        # submission instead; nobody owed it anything more.
        opened = self._open_deadlines.pop(record, None)
        if opened is not None and event.type != "submission.withdrawn":
            kind, seq, since, counted = opened
            # A deadline belongs to the period if it was open at any time in it: opened
            # in it, or opened before and met (or missed) in it.
            if counted or inside:
                met = event.time <= since + timedelta(days=DEADLINE_DAYS)
                self.deadlines[kind, "met" if met else "overdue"] += 1
                if not met:
                    self.findings.overdue(kind, seq, event.seq)
        self._open_deadline(event, state, inside=inside)
        if event.type == "record.decontrolled" and inside:
            self._decontrols.append(
                _Decontrol(
                    event.seq,
                    event.time,
                    event.actor,
                    record,
                    tuple(sorted(self._recipients.get(record, ()))),
                )
            )

    def _notice(self, event: Event) -> None:
        record = str(event.record)
        recipient = str(event.details.get("recipient", ""))
        what = str(event.details.get("notice", ""))
        if recipient == "program-office":
            waiting = self._awaiting_notice.get(record)
            if waiting:
                row = waiting.pop(0)
                row.update(notice_seq=event.seq, notice=what)
                self.spool.append("disclosures", row)
            return
        if what == "decontrolled":
            for decontrol in reversed(self._decontrols):
                if decontrol.record == record:
                    decontrol.notified.setdefault(recipient, (event.seq, event.time))
                    break

    def _check_key_use(self, event: Event, version: object) -> None:
        if isinstance(version, int) and version in self._retired_keys:
            self.findings.retired_key_used(version, self._retired_keys[version], event.seq)

    def _count(self, event: Event) -> None:
        self.events_seen += 1
        in_force = self._policy_in_force
        if in_force is not None and in_force.hash not in self.policy_sets:
            self.policy_sets[in_force.hash] = in_force  # loaded before the period began
        if self.first_time is None:
            self.first_time = event.time
        self.last_time = event.time
        day = _day(event.time)
        self.events_by_type[event.type] += 1
        self.acts_by_day[day, event.type] += 1
        if event.type == "release.failed":
            self.spool.append(
                "failed_releases",
                {
                    "seq": event.seq,
                    "time": event.time.isoformat(),
                    "record": event.record,
                    "access": event.details.get("access"),
                    "reason": event.details.get("reason"),
                },
            )
        if event.policy_set is not None and event.decision is not None:
            use = self.policy_sets.get(event.policy_set)
            if use is None:
                self.findings.unknown_policy_set(event)
            else:
                use.decisions += 1
        if event.type.startswith("key."):
            self.key_operations_total += 1
            if len(self.key_operations) < KEY_OPERATION_LIMIT:
                summary = ", ".join(f"{k} {v}" for k, v in sorted(event.details.items()))
                self.key_operations.append((event.seq, event.time, event.type, summary))
        if event.decision == "deny":
            self.denials_by_day[day] += 1
            self.denials_by_principal[event.actor] += 1
            for policy in event.policies or ("(none: default deny)",):
                self.denials_by_policy[policy] += 1
            self.findings.denial(event)
        elif _is_release(event):
            self._release(event, day)

    def _release(self, event: Event, day: str) -> None:
        record = str(event.record)
        facts = self._principals.get(event.actor)
        organisation = facts.organisation if facts else ""
        level = facts.level if facts else ""
        self.releases_by_day[day] += 1
        self.releases_by_record[record] += 1
        self.releases_by_organisation[organisation, level] += 1
        self.findings.release(event)
        self.spool.append(
            "releases",
            {
                "seq": event.seq,
                "time": event.time.isoformat(),
                "principal": event.actor,
                "organisation": organisation,
                "level": level,
                "record": record,
                "action": event.action,
                "purpose": event.purpose,
                "use": event.use,
                "authority": event.authority,
                "obligations": " ".join(event.obligations),
                "policies": " ".join(event.policies),
                "policy_set": event.policy_set,
            },
        )
        if event.authority:
            row = {
                "seq": event.seq,
                "time": event.time.isoformat(),
                "principal": event.actor,
                "record": record,
                "authority": event.authority,
                "notice_required": _NOTIFY_OFFICE in event.obligations,
                "notice_seq": None,
                "notice": None,
            }
            if row["notice_required"]:
                self._awaiting_notice[record].append(row)
            else:
                self.spool.append("disclosures", row)
        problems = facts.problems_on(event.time.date()) if facts else ["unknown principal"]
        if problems:
            self.spool.append(
                "unqualified",
                {
                    "seq": event.seq,
                    "time": event.time.isoformat(),
                    "principal": event.actor,
                    "record": record,
                    "problem": "; ".join(problems),
                },
            )
            self.findings.unqualified(event, problems)

    # ----- end of the log ------------------------------------------------------------

    def finish(self, as_of: datetime) -> None:
        """Close the open obligations as of `as_of` (the period's end, or now)."""
        in_force = self._policy_in_force
        begun = self.period.since is None or self.period.since <= as_of
        if in_force is not None and begun and in_force.hash not in self.policy_sets:
            # Loaded before a period in which no event was counted: in force all through.
            self.policy_sets[in_force.hash] = in_force
        window = timedelta(days=DEADLINE_DAYS)
        for record, (kind, seq, since, _) in self._open_deadlines.items():
            # Still open at the period's end (opened before it too): due or overdue then.
            if self.period.record in {None, record} and self.period.covers_time(as_of):
                status = "overdue" if as_of > since + window else "due"
                self.deadlines[kind, status] += 1
                if status == "overdue":
                    self.findings.overdue(kind, seq, None)
        self._open_deadlines.clear()
        for rows in self._awaiting_notice.values():
            for row in rows:
                self.spool.append("disclosures", row)
                self.findings.disclosure_without_notice(int(row["seq"]))
        self._awaiting_notice.clear()
        for decontrol in self._decontrols:
            missing = [p for p in decontrol.earlier if p not in decontrol.notified]
            for recipient in decontrol.earlier:
                sent = decontrol.notified.get(recipient)
                if sent is not None and sent[1] <= decontrol.time + window:
                    status = "met"
                elif sent is None and as_of <= decontrol.time + window:
                    status = "due"
                else:
                    status = "overdue"
                self.deadlines["decontrol notice", status] += 1
            if missing:
                self.findings.decontrol_unnotified(decontrol.seq, missing)
            self.spool.append(
                "decontrols",
                {
                    "seq": decontrol.seq,
                    "time": decontrol.time.isoformat(),
                    "actor": decontrol.actor,
                    "record": decontrol.record,
                    "earlier_recipients": " ".join(decontrol.earlier),
                    "notified": " ".join(
                        f"{p}@{seq}" for p, (seq, _) in sorted(decontrol.notified.items())
                    ),
                    "not_notified": " ".join(missing),
                },
            )
        self._decontrols.clear()
        self.findings.finish(self.denials_by_principal)

    # ----- results -------------------------------------------------------------------

    def records_by_state(self) -> Counter[str]:
        """Records (received up to the period's end) by lifecycle state at its end."""
        record = self.period.record
        return Counter(
            state for tracking, state in self._states.items() if record in {None, tracking}
        )

    def principals_by_status(self) -> Counter[str]:
        """Principals registered up to the period's end, by status at its end."""
        return Counter(p.status for p in self._principals.values())

    def releases_per_record(self) -> dict[str, int]:
        """Releases in the period for every record (0 for records never released)."""
        record = self.period.record
        return {
            tracking: self.releases_by_record.get(tracking, 0)
            for tracking in self._states
            if record in {None, tracking}
        }


def _is_release(event: Event) -> bool:
    """A permitted act that put a record's content in someone's hands."""
    return (
        event.type == "access.decided"
        and event.decision == "permit"
        and event.record is not None
        and (event.action or "") in RELEASE_ACTIONS
    )


def _day(when: datetime) -> str:
    return when.astimezone(UTC).date().isoformat()


def _date(value: object) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
