"""The whole PCII lifecycle through the `pcii` CLI, as its users meet it.

The main stories run twice: on the vault directory (embedded) and through a real
`pcii serve` process of the same vault (the users hold only their identity keys).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pypdf
import pytest

from pcii_vault.index import Index
from tests.e2e.conftest import IN_BOTH_MODES, Cli, free_port, one_line_error

pytestmark = pytest.mark.slow

STATEMENT_HEAD = "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION"


def _submit(cli: Cli, *, attach: bool = True, receipt: Path | None = None) -> str:
    args = ["submit", str(cli.write_submission())]
    if attach:
        args += ["--attach", str(cli.attachment())]
    else:
        args = ["submit", str(cli.write_submission("bare.json", attachments=[]))]
    if receipt is not None:
        args += ["--receipt-out", str(receipt)]
    return str(cli.ok(*args, who="owner").json()["tracking_number"])


@IN_BOTH_MODES
def test_submit_validate_retrieve_is_marked_logged_and_verifiable(populated: Cli) -> None:
    """The main story: submit, receipt, validate, permitted marked release, audit trail."""
    cli = populated
    receipt = cli.root / "receipt.json"
    tracking = _submit(cli, receipt=receipt)
    assert cli.ok("status", tracking, who="owner").json()["state"] == "received"
    assert cli.ok("receipt", "verify", str(receipt)).code == 0

    cli.ok("validate", tracking, who="office")
    out = cli.root / "release"
    got = cli.ok(
        "get", tracking, "--purpose", "drought planning", "--out", str(out), who="fedwater"
    ).json()
    release = Path(got["directory"])
    document = (release / "document.md").read_text()
    assert document.splitlines()[0] == STATEMENT_HEAD
    assert document.rstrip().splitlines()[-1] == STATEMENT_HEAD
    assert "6 CFR part 29" in document
    # The PDF attachment is stamped on every page, with a marking first page.
    stamped = pypdf.PdfReader(release / "attachments" / "riverbend-scada-assessment.pdf")
    original = pypdf.PdfReader(cli.attachment())
    assert len(stamped.pages) == len(original.pages) + 1
    for page in stamped.pages:
        text = page.extract_text()
        assert text.count(STATEMENT_HEAD) >= 2 and "fedwater" in text and tracking in text
    assert "mark:pcii" in got["obligations"]
    cover = (release / "COVER-SHEET.txt").read_text()
    assert tracking in cover and "fedwater" in cover

    # A state analyst gets the contacts redacted, and the report (stamped): whether
    # attachments go is the policy's own obligation, not a side effect of redaction.
    state_out = cli.root / "state-release"
    got = cli.ok(
        "get", tracking, "--purpose", "drought planning", "--out", str(state_out), who="water"
    ).json()
    assert "redact:contacts" in got["obligations"]
    state_release = Path(got["directory"])
    assert (
        "dana.okafor@riverbend-water.example.org" not in (state_release / "document.md").read_text()
    )
    assert "withhold:attachments" not in got["obligations"]
    assert "attachments/riverbend-scada-assessment.pdf" in got["files"]
    assert (
        "water"
        in pypdf.PdfReader(state_release / "attachments" / "riverbend-scada-assessment.pdf")
        .pages[1]
        .extract_text()
    )

    recipients = cli.ok("audit", "recipients", tracking).lines()
    assert [r["principal"] for r in recipients] == ["fedwater", "water"]
    history = cli.ok("audit", "log", "--record", tracking).lines()
    types = [e["type"] for e in history]
    assert types[0] == "submission.received"
    assert "submission.validated" in types
    assert cli.ok("audit", "verify").code == 0


@pytest.mark.skipif(
    not Path("/sys/kernel").is_dir(), reason="needs sysfs: a directory no file goes in"
)
def test_a_release_that_failed_after_its_permit_is_listed_as_not_delivered(populated: Cli) -> None:
    """`audit recipients` lists the permit (it counts for notices) and says it failed."""
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    failed = cli.run(
        "get", tracking, "--purpose", "drought planning", "--out", "/sys/kernel", who="water"
    )
    assert failed.code in {2, 5} and "could not be written" in failed.err, failed.err
    cli.ok(
        "get", tracking, "--purpose", "drought planning", "--out", str(cli.root / "o"), who="water"
    )
    rows = cli.ok("audit", "recipients", tracking).lines()
    [failure] = [
        e
        for e in cli.ok("audit", "log", "--record", tracking).lines()
        if e["type"] == "release.failed"
    ]
    assert [(r["principal"], r["delivered"]) for r in rows] == [
        ("water", f"no (release.failed, event {failure['seq']})"),
        ("water", "yes"),
    ]


@IN_BOTH_MODES
def test_analyst_without_need_to_know_is_denied_and_the_denial_is_logged(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    out = cli.root / "denied"
    result = cli.run("get", tracking, "--purpose", "curious", "--out", str(out), who="energy")
    assert result.code == 3, result.err
    assert result.err.count("\n") == 1 and "denied" in result.err
    assert not (out / tracking).exists()
    denials = cli.ok("audit", "log", "--record", tracking, "--decision", "deny").lines()
    assert [d["actor"] for d in denials] == ["energy"]
    assert cli.ok("audit", "verify").code == 0


@IN_BOTH_MODES
def test_unvalidated_record_is_not_released_to_analysts(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli, attach=False)
    result = cli.run("get", tracking, "--purpose", "p", "--out", str(cli.root / "o"), who="water")
    assert result.code == 3


@IN_BOTH_MODES
def test_withdrawal_shreds_the_key_and_blocks_later_release(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("withdraw", tracking, who="owner")
    assert cli.ok("status", tracking, who="owner").json()["state"] == "withdrawn"
    assert not (cli.vault / "objects" / "wrapped" / tracking).exists()
    result = cli.run("validate", tracking, who="office")
    assert result.code in {2, 3}
    assert cli.ok("audit", "verify").code == 0


@IN_BOTH_MODES
def test_decontrol_notifies_every_recipient(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    cli.ok("get", tracking, "--purpose", "p", "--out", str(cli.root / "a"), who="water")
    cli.ok("decontrol", tracking, "--basis", "submitter-request", "--reason",
           "submitter's written request", who="office")  # fmt: skip
    notices = cli.ok("audit", "log", "--record", tracking, "--type", "notice.sent").lines()
    assert [n["details"]["recipient"] for n in notices] == ["water"]
    [decontrolled] = cli.ok("audit", "log", "--record", tracking, "--type",
                            "record.decontrolled").lines()  # fmt: skip
    assert decontrolled["details"] == {
        "basis": "submitter-request",
        "reason": "submitter's written request",
    }


@IN_BOTH_MODES
def test_decontrol_only_on_a_basis_6_cfr_29_allows(populated: Cli) -> None:
    """A tester's finding: any reason decontrolled a record ("office felt like it"); 6 CFR
    29 allows it on the submitter's written request or a customarily-public finding."""
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    missing = cli.run("decontrol", tracking, "--reason", "office felt like it", who="office")
    assert missing.code == 2 and "--basis" in missing.err, missing.err
    other = cli.run("decontrol", tracking, "--basis", "whim", "--reason", "x", who="office")
    assert other.code == 2 and "one of: submitter-request, customarily-public" in other.err
    assert cli.ok("status", tracking, who="office").json()["state"] == "validated"
    assert cli.ok("audit", "log", "--type", "record.decontrolled").lines() == []


@IN_BOTH_MODES
def test_destroy_is_logged_then_crypto_shredded(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    cli.ok("destroy", tracking, "--reason", "retention schedule", who="office")
    assert not (cli.vault / "objects" / "wrapped" / tracking).exists()
    result = cli.run("get", tracking, "--purpose", "p", "--out", str(cli.root / "x"), who="water")
    assert result.code == 3
    assert cli.ok("audit", "verify").code == 0


@IN_BOTH_MODES
def test_review_rejection_and_deficiency_follow_the_lifecycle(populated: Cli) -> None:
    cli = populated
    first = _submit(cli, attach=False)
    cli.ok("deficient", first, "--reason", "certification unsigned", who="office")
    assert cli.ok("status", first, who="owner").json()["state"] == "deficient"
    cli.ok("review", first, "--out", str(cli.root / "rev"), who="office")
    cli.ok(
        "reject",
        first,
        "--ground",
        "public-domain",
        "--reason",
        "on the utility's website",
        who="office",
    )
    assert cli.ok("status", first, who="owner").json()["state"] == "initially-not-pcii"
    cli.ok(
        "reject",
        first,
        "--final",
        "--ground",
        "public-domain",
        "--reason",
        "no answer",
        who="office",
    )
    assert cli.ok("status", first, who="office").json()["state"] == "final-not-pcii"
    due = cli.ok("office", "due", "--within", "31", who="office").lines()
    assert [d["tracking_number"] for d in due] == [first]


@IN_BOTH_MODES
def test_search_lists_only_what_the_caller_may_see(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    listing = cli.ok("search", who="water").lines()
    seen_by_water = [r["tracking_number"] for r in listing]
    assert listing[0]["submitter"] == "[REDACTED: submitter]"
    assert listing[0]["files"] == []
    seen_by_energy = [r["tracking_number"] for r in cli.ok("search", who="energy").lines()]
    assert seen_by_water == [tracking]
    assert seen_by_energy == []


def _validated_with_water_inactive(cli: Cli, status: str) -> str:
    """A validated record, then the water analyst suspended or revoked; its tracking."""
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    _make_water(cli, status)
    return tracking


def _make_water(cli: Cli, status: str) -> None:
    """The water analyst suspended or revoked."""
    if status == "revoked":
        cli.ok("principal", "revoke", "water", who="admin")
    else:
        cli.ok("principal", "update", "water", "--status", "suspended", who="admin")


@IN_BOTH_MODES
@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_search_by_an_inactive_principal_is_refused_not_an_empty_listing(
    populated: Cli, status: str
) -> None:
    """Both modes answer alike: exit 3 naming the status (embedded gave exit 0, nothing)."""
    cli = populated
    _validated_with_water_inactive(cli, status)
    line = one_line_error(cli.run("search", who="water"), 3)
    assert f"water is {status}" in line


@IN_BOTH_MODES
@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_an_inactive_principals_act_is_a_logged_denial_in_both_modes(
    populated: Cli, status: str
) -> None:
    """The policies refuse it and the log keeps the attempt, through a server too (which
    refused it at its door, unlogged, in other words than embedded mode's)."""
    cli = populated
    tracking = _validated_with_water_inactive(cli, status)
    before = len(cli.ok("audit", "log", "--type", "access.decided").lines())
    out = str(cli.root / "out")
    line = one_line_error(cli.run("get", tracking, "--purpose", "p", "--out", out, who="water"), 3)
    assert line.startswith("pcii: error: retrieve denied for 'water'"), line
    assert "see why: pcii policy explain" in line
    denials = cli.ok("audit", "log", "--type", "access.decided").lines()[before:]
    assert [(d["actor"], d["decision"]) for d in denials] == [("water", "deny")]
    assert not (cli.root / "out" / tracking).exists()


@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_an_inactive_principals_denial_names_no_fact_of_the_record(
    populated: Cli, status: str
) -> None:
    """A tester's finding: the denial listed every forbid that fired, and `record-closed`
    told a revoked analyst the record was withdrawn."""
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("withdraw", tracking, who="owner")
    _make_water(cli, status)
    out = str(cli.root / "out")
    line = one_line_error(cli.run("get", tracking, "--purpose", "p", "--out", out, who="water"), 3)
    assert f"you are {status}: every request is denied" in line, line
    assert "record-closed" not in line and "withdrawn" not in line, line


def test_index_rebuild_reproduces_the_index_exactly(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    cli.ok("get", tracking, "--purpose", "p", "--out", str(cli.root / "r"), who="water")

    def dump() -> dict[str, list[tuple[object, ...]]]:
        index = Index(sqlite3.connect(f"file:{cli.vault / 'index.sqlite'}?mode=ro", uri=True))
        try:
            return index.dump()
        finally:
            index.close()

    before = dump()
    cli.ok("index", "rebuild")
    assert dump() == before


@IN_BOTH_MODES
def test_json_output_of_submit_names_the_tracking_number(populated: Cli) -> None:
    cli = populated
    result = cli.ok("submit", str(cli.write_submission("bare.json", attachments=[])), who="owner")
    data = result.json()
    assert data["tracking_number"].startswith("PCII-")


@IN_BOTH_MODES
def test_global_options_after_the_subcommand_are_accepted(populated: Cli) -> None:
    cli = populated
    path = cli.write_submission("bare.json", attachments=[])
    result = cli.run("submit", str(path), "--json", "--as", str(cli.key("owner")))
    assert result.code == 0, result.err
    assert json.loads(result.out)["tracking_number"]


@IN_BOTH_MODES
def test_a_changed_policy_set_is_logged_before_it_decides(populated: Cli) -> None:
    cli = populated
    policy = cli.vault / "policies" / "submitter.cedar"
    policy.write_text(policy.read_text() + "\n// reviewed 2026-11-28\n")
    cli.ok("submit", str(cli.write_submission("bare.json", attachments=[])), who="owner")
    loaded = cli.ok("audit", "log", "--type", "policy.loaded").lines()
    assert len(loaded) == 2
    assert loaded[0]["policy_set"] != loaded[1]["policy_set"]
    received = cli.ok("audit", "log", "--type", "submission.received").lines()
    assert received[0]["seq"] > loaded[1]["seq"]
    assert received[0]["policy_set"] == loaded[1]["policy_set"]


def test_a_broken_policy_refuses_to_start(populated: Cli) -> None:
    """Every command, and `pcii serve`, refuses to start; --json lists each problem."""
    cli = populated
    (cli.vault / "policies" / "broken.cedar").write_text("permit (principal, action, resource")
    result = cli.run("status", "PCII-2026-00000001", who="owner")
    assert result.code == 2
    assert "broken.cedar" in result.err
    as_json = cli.run("--json", "status", "PCII-2026-00000001", who="owner")
    assert as_json.code == 2, as_json.err
    [problem] = json.loads(as_json.out)["problems"]
    assert problem["path"] == "broken.cedar:1" and "parse error" in problem["message"]
    served = cli.run("--json", "serve", "--listen", f"127.0.0.1:{free_port()}")
    assert served.code == 2 and "broken.cedar" in json.loads(served.out)["error"], served.err


@IN_BOTH_MODES
def test_office_validates_after_an_initial_negative_finding(populated: Cli) -> None:
    """6 CFR 29: the submitter may add information after `initially-not-pcii`."""
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("reject", tracking, "--ground", "not-cii", "--reason", "scope unclear", who="office")
    cli.ok("validate", tracking, who="office")
    assert cli.ok("status", tracking, who="owner").json()["state"] == "validated"
    assert cli.ok("audit", "verify").code == 0


@IN_BOTH_MODES
def test_a_transition_the_state_does_not_allow_is_refused_in_words(populated: Cli) -> None:
    """Exit 3, as a denial in the record's state; nothing logged."""
    cli = populated
    tracking = _submit(cli, attach=False)
    size = cli.ok("audit", "checkpoint").json()["size"]
    final = cli.run(
        "reject", tracking, "--ground", "not-cii", "--reason", "r", "--final", who="office"
    )
    assert final.code == 3, final.err
    assert "a received record cannot get a final not-PCII finding" in final.err
    assert "only a record that is initially-not-pcii can" in final.err
    # Categorical inclusion is decided on receipt, not after a negative finding.
    cli.ok("reject", tracking, "--ground", "not-cii", "--reason", "scope unclear", who="office")
    late = cli.run("validate", tracking, "--categorical", who="office")
    assert late.code == 3 and "by categorical inclusion (only on receipt)" in late.err
    assert cli.ok("audit", "checkpoint").json()["size"] == size + 1  # the rejection only
    cli.ok("validate", tracking, who="office")
    assert cli.ok("status", tracking, who="owner").json()["categorical"] is False
    assert cli.ok("audit", "verify").code == 0


def test_search_takes_categorical_as_the_policies_name_it(populated: Cli) -> None:
    """Denials and policies say a record "is categorical": search finds it by that name."""
    cli = populated
    plain = _submit(cli, attach=False)
    cli.ok("validate", plain, who="office")
    included = _submit(cli, attach=False)
    cli.ok("validate", included, "--categorical", who="office")
    found = cli.ok("search", "--state", "categorical", who="water").lines()
    assert [r["tracking_number"] for r in found] == [included]
    validated = cli.ok("search", "--state", "validated", who="water").lines()
    assert sorted(r["tracking_number"] for r in validated) == sorted([plain, included])


@IN_BOTH_MODES
def test_every_documented_use_is_accepted_by_get_and_decided_by_policy(populated: Cli) -> None:
    """`homeland-security` (policies/README.md): federal users may; state users may not."""
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    args = ("get", tracking, "--purpose", "sector risk study", "--use", "homeland-security")
    cli.ok(*args, "--out", str(cli.root / "fed"), who="fedwater")
    state = cli.run(*args, "--out", str(cli.root / "state"), who="water")
    assert state.code == 3 and "sltt-use-limited" in state.err, state.err


@IN_BOTH_MODES
def test_audit_report_counts_from_the_verified_log(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli, attach=False)
    cli.ok("validate", tracking, who="office")
    cli.ok("get", tracking, "--purpose", "p", "--out", str(cli.root / "r"), who="water")
    cli.run("get", tracking, "--purpose", "p", "--out", str(cli.root / "d"), who="energy")
    report = cli.ok("audit", "report").json()
    assert report["records_by_state"] == {"validated": 1}
    assert report["releases_by_record"] == {tracking: 1}
    assert report["denials_by_principal"] == {"energy": 1}
    assert report["events_by_type"]["principal.registered"] == 7
    assert report["size"] == sum(report["events_by_type"].values())


def test_version_and_help_need_no_vault(cli: Cli) -> None:
    assert cli.run("--version").out.startswith("pcii-vault ")
    helped = cli.run("--help")
    assert helped.code == 0
    assert "submit" in helped.out and "audit" in helped.out


@IN_BOTH_MODES
def test_concurrent_submissions_by_separate_processes(populated: Cli) -> None:
    """Several `pcii` processes on one vault: every submission lands once, the log is sound."""
    import subprocess
    import sys

    cli = populated
    document = cli.write_submission("bare.json", attachments=[])
    argv = [
        sys.executable,
        "-m",
        "pcii_vault",
        "--as",
        str(cli.key("owner")),
        "--json",
        "submit",
        str(document),
    ]
    procs = [
        subprocess.Popen(
            argv, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 4, [err for _, _, err in results]
    numbers = {json.loads(out)["tracking_number"] for _, out, _ in results}
    assert len(numbers) == 4
    listed = {r["tracking_number"] for r in cli.ok("search", who="office").lines()}
    assert numbers <= listed
    assert cli.ok("audit", "verify").code == 0


@IN_BOTH_MODES
def test_a_saved_checkpoint_is_trusted_later(populated: Cli) -> None:
    """`audit checkpoint --out F` now, `audit verify --trusted-checkpoint F` after more events."""
    cli = populated
    saved = cli.root / "checkpoint.txt"
    size = cli.ok("audit", "checkpoint", "--out", str(saved)).json()["size"]
    _submit(cli, attach=False)
    verified = cli.ok("audit", "verify", "--trusted-checkpoint", str(saved)).json()
    assert verified["size"] > size
    again = cli.run("audit", "checkpoint", "--out", str(saved))
    assert again.code == 2
