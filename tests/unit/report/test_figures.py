"""ReportFigures and its findings, fed hand-made event sequences (no vault, no log)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pcii_vault.models.event import Event
from pcii_vault.report.figures import Period, ReportFigures
from pcii_vault.report.findings import EVIDENCE_LIMIT, Finding
from pcii_vault.report.spool import TableSpool

MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC
SATURDAY = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)


class Log:
    """Builds events in sequence and feeds them to a ReportFigures."""

    def __init__(self, tmp_path: Path, period: Period | None = None) -> None:
        self.spool = TableSpool(tmp_path)
        self.figures = ReportFigures(period or Period(), self.spool)
        self.seq = 0

    def add(self, kind: str, when: datetime, **fields: Any) -> int:
        event = Event.model_validate(
            {"seq": self.seq, "time": when, "type": kind, "actor": "vault", **fields},
            strict=False,
        )
        self.figures.observe(event)
        self.seq += 1
        return event.seq

    def principal(self, pid: str, when: datetime = MONDAY, **attributes: Any) -> None:
        doc = {
            "id": pid,
            "role": "analyst",
            "organisation": "Org " + pid,
            "level": "federal",
            "training_expires": "2099-01-01",
            "status": "active",
            "public_key": "AAAA",
            **attributes,
        }
        self.add("principal.registered", when, details={"principal": doc})

    def policy(self, digest: str, when: datetime = MONDAY) -> int:
        return self.add("policy.loaded", when, policy_set=digest)

    def receive(self, record: str, when: datetime = MONDAY, **details: Any) -> int:
        return self.add(
            "submission.received",
            when,
            actor="owner",
            record=record,
            details={"sector": "Energy", "tlp": "TLP:AMBER", "submitter_org": "O", **details},
        )

    def release(self, who: str, record: str, when: datetime = MONDAY, **fields: Any) -> int:
        return self.add(
            "access.decided",
            when,
            actor=who,
            record=record,
            action="retrieve",
            decision="permit",
            **{"policy_set": "p1", **fields},
        )

    def validated(self, record: str) -> None:
        self.receive(record)
        self.add("submission.validated", MONDAY, actor="office", record=record)

    def only_finding(self, as_of: datetime) -> Finding:
        self.figures.finish(as_of)
        [finding] = self.figures.findings.all()
        return finding

    def rules(self) -> set[tuple[str, str]]:
        return {(f.rule, f.subject) for f in self.figures.findings.all()}

    def table(self, name: str) -> list[dict[str, Any]]:
        return list(self.spool.rows(name))


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    made = Log(tmp_path)
    made.policy("p1")
    made.principal("fed")
    yield made
    made.spool.close()


def test_lifecycle_state_is_replayed_from_the_events(log: Log) -> None:
    log.receive("R1")
    log.receive("R2")
    log.add("submission.validated", MONDAY, actor="office", record="R1")
    log.add("submission.withdrawn", MONDAY, actor="owner", record="R2")
    log.add("record.decontrolled", MONDAY, actor="office", record="R1")
    log.figures.finish(MONDAY)
    assert log.figures.records_by_state() == {"decontrolled": 1, "withdrawn": 1}


def test_validation_deadlines_met_due_and_overdue(log: Log) -> None:
    log.receive("ON-TIME")
    log.receive("LATE")
    log.receive("OPEN")
    log.add("submission.validated", MONDAY + timedelta(days=1), actor="office", record="ON-TIME")
    log.add("submission.rejected", MONDAY + timedelta(days=31), actor="office", record="LATE")
    log.figures.finish(MONDAY + timedelta(days=31))
    deadlines = log.figures.deadlines
    assert deadlines["validation decision", "met"] == 1
    assert deadlines["validation decision", "overdue"] == 2  # LATE, and OPEN now past due
    assert deadlines["validation decision", "due"] == 0
    assert ("overdue-deadline", "validation decision") in log.rules()


def test_every_deadline_office_due_lists_is_counted(log: Log) -> None:
    # The same four 30-day deadlines as `pcii office due`: each runs while its state lasts.
    day = timedelta(days=1)
    log.receive("CURED")
    log.add("submission.deficient", MONDAY + day, actor="office", record="CURED")
    log.add("submission.validated", MONDAY + 5 * day, actor="office", record="CURED")
    log.receive("SILENT")
    log.add("submission.deficient", MONDAY + day, actor="office", record="SILENT")
    log.receive("FINAL")
    log.add("submission.rejected", MONDAY + day, actor="office", record="FINAL")
    log.add("submission.final-not-pcii", MONDAY + 40 * day, actor="office", record="FINAL")
    log.add("record.destroyed", MONDAY + 45 * day, actor="office", record="FINAL")
    log.receive("PENDING")
    log.add("submission.rejected", MONDAY + 30 * day, actor="office", record="PENDING")
    log.figures.finish(MONDAY + 50 * day)
    deadlines = log.figures.deadlines
    assert deadlines["validation decision", "met"] == 4
    assert deadlines["deficiency cure", "met"] == 1  # CURED
    assert deadlines["deficiency cure", "overdue"] == 1  # SILENT, open past due
    assert deadlines["final decision", "overdue"] == 1  # FINAL, 39 days after the finding
    assert deadlines["final decision", "due"] == 1  # PENDING, 20 days in
    assert deadlines["submitter's preference", "met"] == 1  # FINAL destroyed in 5 days
    assert ("overdue-deadline", "deficiency cure") in log.rules()
    assert ("overdue-deadline", "final decision") in log.rules()


def test_an_open_submission_inside_its_window_is_due(log: Log) -> None:
    log.receive("OPEN")
    log.figures.finish(MONDAY + timedelta(days=29))
    assert log.figures.deadlines == {("validation decision", "due"): 1}
    assert log.rules() == set()


def test_decontrol_notices_to_every_earlier_recipient(log: Log) -> None:
    log.principal("state", level="state", nda_signed="2026-01-01")
    log.validated("R")
    log.release("fed", "R")
    log.release("state", "R")
    decontrol = log.add("record.decontrolled", MONDAY, actor="office", record="R")
    log.add(
        "notice.sent",
        MONDAY,
        record="R",
        action="notify",
        details={"recipient": "fed", "notice": "decontrolled"},
    )
    log.figures.finish(MONDAY + timedelta(days=40))
    [row] = log.table("decontrols")
    assert row["earlier_recipients"] == "fed state"
    assert row["not_notified"] == "state"
    assert log.figures.deadlines["decontrol notice", "met"] == 1
    assert log.figures.deadlines["decontrol notice", "overdue"] == 1
    assert ("decontrol-not-notified", str(decontrol)) in log.rules()


def test_a_retired_key_used_again_is_a_finding(log: Log) -> None:
    retired = log.add("key.retired", MONDAY, actor="admin", details={"version": 1})
    used = log.receive("R", kek_version=1)
    log.receive("S", kek_version=2)
    finding = log.only_finding(MONDAY)
    assert finding.rule == "retired-key-used" and finding.events == [retired, used]


def test_releases_outside_working_hours(log: Log) -> None:
    log.validated("R")
    log.release("fed", "R", MONDAY)
    late = log.release("fed", "R", MONDAY.replace(hour=22))
    weekend = log.release("fed", "R", SATURDAY)
    finding = log.only_finding(SATURDAY)
    assert finding.rule == "outside-working-hours" and finding.events == [late, weekend]


def test_evidence_is_capped_but_counted(log: Log) -> None:
    log.validated("R")
    for _ in range(EVIDENCE_LIMIT + 10):
        log.release("fed", "R", SATURDAY)
    finding = log.only_finding(SATURDAY)
    assert len(finding.events) == EVIDENCE_LIMIT and finding.total == EVIDENCE_LIMIT + 10


def test_policy_set_loaded_shortly_before_a_release_it_permitted(log: Log) -> None:
    log.validated("R")
    loaded = log.policy("p2", MONDAY + timedelta(hours=1))
    release = log.release("fed", "R", MONDAY + timedelta(hours=2), policy_set="p2")
    log.release("fed", "R", MONDAY + timedelta(days=3), policy_set="p2")
    finding = log.only_finding(MONDAY + timedelta(days=3))
    assert finding.rule == "policy-changed-before-release"
    assert finding.events == [loaded, release]


def test_a_policy_change_just_before_the_period_is_named_for_a_release_in_it(
    tmp_path: Path,
) -> None:
    """A tester's finding: a report from 10:00 left out a release at 12:00 permitted by a
    policy set loaded at 09:00 (the change was outside the period)."""
    log = Log(tmp_path, Period(since=MONDAY + timedelta(hours=2), until=None))
    log.policy("p1", MONDAY)
    log.principal("fed")
    log.validated("R")
    loaded = log.policy("p2", MONDAY + timedelta(hours=1))
    release = log.release("fed", "R", MONDAY + timedelta(hours=3), policy_set="p2")
    finding = log.only_finding(MONDAY + timedelta(hours=4))
    assert finding.rule == "policy-changed-before-release"
    assert finding.events == [loaded, release]
    assert list(log.figures.policy_sets) == ["p2"]


def test_a_policy_change_reverted_lists_the_set_loaded_again(log: Log) -> None:
    """p1, then p2, then p1 again: the table must not read as if p2 were still in force."""
    weakened = log.policy("p2", MONDAY + timedelta(hours=1))
    reverted = log.policy("p1", MONDAY + timedelta(hours=2))
    sets = log.figures.policy_sets
    assert (sets["p2"].loaded_seq, sets["p2"].loaded_again) == (weakened, [])
    assert sets["p1"].loaded_again == [reverted]


def test_a_period_without_events_lists_the_policy_set_in_force(tmp_path: Path) -> None:
    """A tester's finding: a quiet period listed no policy set in force ("None")."""
    day = timedelta(days=1)
    quiet = Log(tmp_path / "quiet", Period(since=MONDAY + day, until=MONDAY + 2 * day))
    quiet.policy("p1", MONDAY)
    quiet.figures.finish(MONDAY + timedelta(days=2))
    assert list(quiet.figures.policy_sets) == ["p1"]
    ahead = Log(tmp_path / "ahead", Period(since=MONDAY + timedelta(days=30), until=None))
    ahead.policy("p1", MONDAY)
    ahead.figures.finish(MONDAY + timedelta(days=2))  # the period has not begun
    assert list(ahead.figures.policy_sets) == []


def test_the_first_policy_set_is_no_change(log: Log) -> None:
    log.validated("R")
    log.release("fed", "R", MONDAY + timedelta(hours=1))
    log.figures.finish(MONDAY)
    assert log.rules() == set()


def test_recipients_without_training_or_nda(log: Log) -> None:
    log.principal("nonda", level="state")
    log.principal("expired", training_expires="2026-01-01")
    log.principal("ok", level="local", nda_signed="2026-01-01")
    log.validated("R")
    for who in ("nonda", "expired", "ok", "fed"):
        log.release(who, "R")
    log.figures.finish(MONDAY)
    rows = {row["principal"]: row["problem"] for row in log.table("unqualified")}
    assert rows == {
        "nonda": "no non-disclosure agreement",
        "expired": "training expired 2026-01-01",
    }
    assert {s for r, s in log.rules() if r == "unqualified-recipient"} == {"nonda", "expired"}


def test_training_that_expires_on_the_day_of_a_release_had_expired(log: Log) -> None:
    """A tester's finding: the policies deny from the start of the expiry date (UTC), the
    report flagged only releases after it, so a dropped forbid went unseen for a day."""
    log.principal("today", training_expires="2026-03-02")  # MONDAY's date
    log.principal("tomorrow", training_expires="2026-03-03")
    log.validated("R")
    log.release("today", "R")
    log.release("tomorrow", "R")
    log.figures.finish(MONDAY)
    rows = {row["principal"]: row["problem"] for row in log.table("unqualified")}
    assert rows == {"today": "training expired 2026-03-02"}


def test_disclosures_and_their_program_office_notices(log: Log) -> None:
    log.validated("R")
    noticed = log.release(
        "fed", "R", authority="exception:gao", obligations=["notify:program-office"]
    )
    notice = log.add(
        "notice.sent",
        MONDAY,
        record="R",
        action="notify",
        details={"recipient": "program-office", "notice": "disclosed under exception:gao"},
    )
    oig = log.release("fed", "R", authority="exception:dhs-oig")
    silent = log.release(
        "fed", "R", authority="exception:congress", obligations=["notify:program-office"]
    )
    log.figures.finish(MONDAY)
    rows = {row["seq"]: row for row in log.table("disclosures")}
    assert rows[noticed]["notice_seq"] == notice
    assert rows[oig]["notice_required"] is False
    assert rows[silent]["notice_seq"] is None
    [finding] = log.figures.findings.all()
    assert finding.rule == "disclosure-without-notice" and finding.events == [silent]


def test_many_denials_for_one_principal(log: Log) -> None:
    log.principal("other")
    for who in ("fed", "fed", "fed", "other", "other"):
        log.add("access.decided", MONDAY, actor=who, record="R", decision="deny")
    log.figures.finish(MONDAY)
    assert log.rules() == {("many-denials", "fed")}
    assert log.figures.denials_by_policy == {"(none: default deny)": 5}


def test_a_decision_under_a_policy_set_never_loaded(log: Log) -> None:
    log.add("access.decided", MONDAY, actor="fed", decision="deny", policy_set="rogue")
    log.figures.finish(MONDAY)
    assert log.rules() == {("unknown-policy-set", "rogue")}


def test_an_event_dated_well_before_an_earlier_one_is_a_clock_set_back(tmp_path: Path) -> None:
    """A tester's finding: an analyst whose training had expired, the clock set ten days
    back, was released a record dated before its receipt; no finding named it, and a
    report of the real day did not count it. Whatever the period, the report says so."""
    today = MONDAY + timedelta(days=10)
    log = Log(tmp_path, Period(since=today - timedelta(hours=1)))
    log.policy("p1", today)
    log.principal("fed", today)
    log.receive("R1", today)
    log.add("access.decided", today + timedelta(minutes=4), actor="fed", decision="deny")
    slack = log.release("fed", "R1", today)  # replicas' clocks differ a little: not named
    back = log.release("fed", "R1", MONDAY)  # outside the period by its false time
    log.figures.finish(today)
    [finding] = log.figures.findings.all()
    assert (finding.rule, finding.subject) == ("clock-set-back", "log")
    assert finding.events == [3, back] and slack not in finding.events
    assert "clock set back" in finding.text


def test_period_limits_the_counts_not_the_state(tmp_path: Path) -> None:
    log = Log(tmp_path, Period(since=MONDAY + timedelta(days=1), until=MONDAY + timedelta(days=2)))
    log.policy("p1")
    log.principal("fed")
    log.validated("R")
    log.release("fed", "R", MONDAY + timedelta(days=1))
    log.release("fed", "R", MONDAY + timedelta(days=3))  # after the period: ignored
    log.figures.finish(MONDAY + timedelta(days=2))
    f = log.figures
    assert f.events_seen == 1
    assert f.releases_per_record() == {"R": 1}
    assert f.records_by_state() == {"validated": 1}
    assert [row["organisation"] for row in log.table("releases")] == ["Org fed"]
    assert list(f.policy_sets) == ["p1"]  # loaded before the period, in force during it
    log.spool.close()


def test_a_period_counts_the_deadlines_open_in_it_not_only_those_opened_in_it(
    tmp_path: Path,
) -> None:
    """As `office due` lists them: opened before the period, met or still open in it."""
    day = timedelta(days=1)
    log = Log(tmp_path, Period(since=MONDAY + 10 * day, until=MONDAY + 40 * day))
    log.receive("BEFORE")  # decided before the period: not the period's
    log.add("submission.validated", MONDAY + 2 * day, actor="office", record="BEFORE")
    log.receive("MET")
    log.add("submission.deficient", MONDAY + 5 * day, actor="office", record="MET")
    log.add("submission.validated", MONDAY + 12 * day, actor="office", record="MET")
    log.receive("OPEN")
    log.add("submission.deficient", MONDAY + 5 * day, actor="office", record="OPEN")
    log.figures.finish(MONDAY + 40 * day)
    assert log.figures.deadlines == {
        ("deficiency cure", "met"): 1,  # MET, opened before the period
        ("deficiency cure", "overdue"): 1,  # OPEN, past due within the period
    }
    log.spool.close()


def test_a_release_that_failed_after_its_permit_is_listed_apart(log: Log) -> None:
    log.validated("R")
    access = log.release("fed", "R")
    failed = log.add(
        "release.failed", MONDAY, record="R", details={"access": access, "reason": "No space"}
    )
    log.figures.finish(MONDAY)
    assert log.table("failed_releases") == [
        {
            "seq": failed,
            "time": MONDAY.isoformat(),
            "record": "R",
            "access": access,
            "reason": "No space",
        }
    ]
    assert log.figures.releases_per_record() == {"R": 1}  # the permit stays a release
