"""What a new user meets in the first hour (issue 12): hostile text, JSON errors, sectors.

Markup-like text, control characters and right-to-left marks go into every free-text
field a user can fill; then every listing runs and shows them as written (escaped),
never as Rich markup and never as raw control characters.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from pcii_vault.demo import DEMO_SECRET, keep_instructions
from tests.e2e.conftest import TRAINED, WATER, Cli, one_line_error

pytestmark = pytest.mark.slow

HOSTILE = "pump station [/draft] [bold red]x[/] \u202eevil\u202c \u200f\x1b[31m\x07end"
MARKUP = "pump station [/draft] review [bold]"


def _submit(cli: Cli, **changes: object) -> str:
    path = cli.write_submission(**changes)
    result = cli.ok("submit", str(path), "--attach", str(cli.attachment()), who="owner")
    return str(result.json()["tracking_number"])


def test_hostile_text_in_every_free_text_field_never_breaks_a_listing(populated: Cli) -> None:
    cli = populated
    # An organisation is one printable line; markup-like text it takes as text.
    trained = ("--sector", WATER, "--training-expires", TRAINED)
    refused = cli.run(
        "principal",
        "add",
        "odd",
        "--role",
        "analyst",
        *trained,
        "--org",
        HOSTILE,
        "--key-out",
        str(cli.key("odd")),
        who="admin",
    )
    assert refused.code == 2 and "one line of printable text" in refused.err
    cli.add("odd", "analyst", *trained, "--org", MARKUP)
    # A submission refuses control characters itself; markup-like text it takes as text.
    tracking = _submit(cli, title=MARKUP, summary=MARKUP)
    cli.ok("validate", tracking, who="office")
    # A purpose or reason reads as it is logged: control and bidi characters are refused,
    # before anything is logged; markup-like text is taken as text.
    withdrawn = _submit(cli)
    rejected = _submit(cli)
    for args, who in (
        (["get", tracking, "--purpose", HOSTILE, "--out", str(cli.root / "r0")], "fedwater"),
        (["withdraw", withdrawn, "--reason", HOSTILE], "owner"),
        (["reject", rejected, "--ground", "not-cii", "--reason", HOSTILE], "office"),
    ):
        result = cli.run(*args, who=who)
        assert result.code == 2 and "holds a control character" in result.err, result.err
    cli.ok("get", tracking, "--purpose", MARKUP, "--out", str(cli.root / "r1"), who="fedwater")
    cli.ok("withdraw", withdrawn, "--reason", MARKUP, who="owner")
    cli.ok("reject", rejected, "--ground", "not-cii", "--reason", MARKUP, who="office")
    listings = [
        (["principal", "list"], "admin"),
        (["search"], "fedwater"),
        (["audit", "recipients", tracking], None),
        (["audit", "log"], None),
        (["audit", "report"], None),
        (["office", "due", "--within", "60"], "office"),
        (["status", tracking], "owner"),
    ]
    for args, who in listings:
        result = cli.run(*args, who=who)
        assert result.code == 0, f"pcii {' '.join(args)} -> {result.code}: {result.err}"
        assert "\x1b" not in result.out and "\u202e" not in result.out, args
        assert "\x07" not in result.out, args
    principals = cli.run("principal", "list", who="admin").out
    assert MARKUP in principals
    recipients = cli.run("audit", "recipients", tracking).out
    assert MARKUP in recipients
    # The same data under --json is the data, exactly as given.
    rows = cli.ok("audit", "recipients", tracking).lines()
    assert rows[0]["purpose"] == MARKUP


def test_listings_are_plain_rows_with_whole_identifiers_when_not_a_terminal(
    populated: Cli,
) -> None:
    cli = populated
    tracking = _submit(cli)
    out = cli.run("search", who="office").out
    header, *rows = out.splitlines()
    assert header.split("\t")[0] == "tracking_number"
    assert any(row.split("\t")[0] == tracking for row in rows)
    log = cli.run("audit", "log", "--record", tracking).out.splitlines()
    assert log[0].split("\t") == [
        "seq",
        "time",
        "type",
        "actor",
        "record",
        "action",
        "decision",
        "policies",
    ]
    assert all(row.split("\t")[4] == tracking for row in log[1:])


def test_sector_is_repeatable_checked_and_suggested(populated: Cli) -> None:
    cli = populated
    nuclear = "Nuclear Reactors, Materials, and Waste"
    cli.add("nuke", "analyst", "--sector", nuclear, "--sector", "Energy")
    listed = {p["id"]: p for p in cli.ok("principal", "list", who="admin").lines()}
    assert listed["nuke"]["sectors"] == [nuclear, "Energy"]
    typo = cli.run(
        "principal",
        "add",
        "typo",
        "--role",
        "analyst",
        "--key-out",
        str(cli.key("typo")),
        "--sector",
        "Watr",
        who="admin",
    )
    assert typo.code == 2
    assert "did you mean 'Water and Wastewater Systems'" in typo.err
    assert not cli.key("typo").exists()
    update = cli.run("principal", "update", "nuke", "--sector", "Enrgy", who="admin")
    assert update.code == 2 and "did you mean 'Energy'" in update.err
    cli.ok("principal", "update", "nuke", "--sector", WATER, who="admin")
    listed = {p["id"]: p for p in cli.ok("principal", "list", who="admin").lines()}
    assert listed["nuke"]["sectors"] == [WATER]


def test_every_error_under_json_is_one_json_object(populated: Cli) -> None:
    cli = populated
    # A submission with several problems: each with its field path.
    bad = cli.write_submission("bad.json", tlp="TLP:PURPLE", sector="Watr")
    result = cli.run("--json", "submit", str(bad), who="owner")
    assert result.code == 2
    error = result.json()
    assert error["exit_code"] == 2
    paths = {p["path"] for p in error["problems"]}
    assert {"tlp", "sector"} <= paths, error
    # A usage error.
    usage = cli.run("--json", "get")
    assert usage.code == 2 and usage.json()["exit_code"] == 2
    assert "pcii get --help" in usage.json()["error"]
    # A denial.
    tracking = _submit(cli)
    denied = cli.run(
        "--json",
        "get",
        tracking,
        "--purpose",
        "curious",
        "--out",
        str(cli.root / "x"),
        who="energy",
    )
    assert denied.code == 3 and denied.json()["exit_code"] == 3
    # --debug never changes the exit code.
    debug = cli.run(
        "--debug",
        "get",
        tracking,
        "--purpose",
        "curious",
        "--out",
        str(cli.root / "y"),
        who="energy",
    )
    assert debug.code == 3
    assert "pcii: error:" in debug.err


def test_version_template_and_proof_are_json_on_one_line(populated: Cli) -> None:
    cli = populated
    version = cli.run("--json", "--version")
    assert version.code == 0 and version.json()["name"] == "pcii-vault"
    template = cli.run("--json", "submission", "template")
    assert template.code == 0 and len(template.out.splitlines()) == 1
    assert json.loads(template.out)["sector"]
    proof = cli.run("--json", "audit", "prove", "--index", "0")
    assert proof.code == 0 and len(proof.out.splitlines()) == 1
    assert json.loads(proof.out)


def test_audit_verify_json_on_a_broken_log_says_not_sound(populated: Cli) -> None:
    cli = populated
    assert cli.ok("audit", "verify").json()["sound"] is True
    # --log takes the vault directory itself.
    assert cli.ok("audit", "verify", "--log", str(cli.vault)).json()["sound"] is True
    entries = sorted((cli.vault / "objects" / "log" / "tile" / "entries").rglob("*"))
    bundle = next(p for p in entries if p.is_file())
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bundle.chmod(0o600)
    bundle.write_bytes(bytes(data))
    result = cli.run("--json", "audit", "verify")
    assert result.code == 4, result.err
    verdict = result.json()
    assert verdict["sound"] is False and verdict["exit_code"] == 4 and verdict["error"]


def test_usage_errors_are_one_pcii_error_line(cli: Cli) -> None:
    result = cli.run("submit")
    assert result.code == 2
    assert result.err.startswith("pcii: error:") and len(result.err.splitlines()) == 1
    unknown = cli.run("frobnicate")
    assert unknown.code == 2 and unknown.err.startswith("pcii: error:")


def test_help_of_a_group_alone_is_its_help(cli: Cli) -> None:
    """Shown as with -h, and exit 2 (a command is missing), as with --json."""
    result = cli.run("principal")
    assert result.code == 2 and "Usage: pcii principal" in result.out


def _replay(cli: Cli, message: str) -> dict[str, object]:
    """Run the `pcii policy explain ...` command a denial printed, against the vault."""
    command = shlex.split(message.split("see why: ", 1)[1])
    assert command[:3] == ["pcii", "policy", "explain"]
    result = cli.run("--json", *command[1:])
    assert result.code == 0, result.err
    assert result.json()["errors"] == [], message  # a decision, not a failed evaluation
    return dict(result.json())


def test_denials_name_the_reason_and_the_explain_command(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli)
    owner = cli.run("validate", tracking, who="owner")
    assert owner.code == 3
    assert "an owner cannot validate; only: office" in owner.err, owner.err
    assert _replay(cli, owner.err)["decision"] == "deny"
    # The office cannot destroy a submission still owed a decision: the message says
    # which states it can destroy in, as the README does.
    destroy = cli.run("destroy", tracking, "--reason", "schedule", who="office")
    assert destroy.code == 3
    assert "a received record cannot be given 'destroy'" in destroy.err
    assert "validated, categorical" in destroy.err and "withdrawn" in destroy.err
    assert _replay(cli, destroy.err)["decision"] == "deny"
    # Once validated, nobody may validate it: the owner is still told it is the role.
    cli.ok("validate", tracking, who="office")
    again = cli.run("validate", tracking, who="owner")
    assert again.code == 3 and "an owner cannot validate; only: office" in again.err, again.err
    # Another organisation's owner: told it is not theirs, never whose it is.
    cli.add("grid", "owner", "--org", "Northgrid Power")
    other = cli.run("status", tracking, who="grid")
    assert other.code == 3
    assert "is another organisation's submission" in other.err, other.err
    assert "Riverbend" not in other.err
    assert WATER not in other.err and "--state" not in other.err  # nor its sector, state
    assert _replay(cli, other.err)["decision"] == "deny"
    # Nor when its own organisation could not act on it now either (a tester's finding:
    # withdrawing another organisation's validated record said "no policy permits it").
    withdraw = cli.run("withdraw", tracking, who="grid")
    assert withdraw.code == 3
    assert "is another organisation's submission" in withdraw.err, withdraw.err
    assert "validated" not in withdraw.err and "--state" not in withdraw.err
    # Nor through the policies that fired: `record-closed` would tell a withdrawn one.
    cli.ok("withdraw", second := _submit(cli), who="owner")
    for record in (tracking, second):
        get = cli.run("get", record, "--purpose", "x", "--out", str(cli.root / "o"), who="grid")
        assert get.code == 3
        assert "record-closed" not in get.err and "forbidden by" not in get.err, get.err
    other_withdraw = cli.run("withdraw", tracking, who="grid")
    assert other_withdraw.code == 3 and "--state" not in other_withdraw.err, other_withdraw.err
    assert _replay(cli, other_withdraw.err)["decision"] == "deny"
    # An analyst outside the record's sector learns nothing of a record their search
    # would not show them (a tester's finding: its state and sector were named).
    energy = cli.run("get", tracking, "--purpose", "p", "--out", str(cli.root / "e"), who="energy")
    assert energy.code == 3
    assert "it is not one you may look up" in energy.err, energy.err
    assert WATER not in energy.err and "validated" not in energy.err
    # An analyst of the record's sector, who finds it by a search, is told the role that
    # decides, also for an act that states no purpose (a tester's finding: "it is not one
    # you may look up", as if it were another sector's).
    own = cli.run("validate", tracking, who="fedwater")
    assert own.code == 3 and "an analyst cannot validate; only: office" in own.err, own.err
    assert _replay(cli, own.err)["decision"] == "deny"
    # A revoked analyst of the record's own sector: the same, whatever the record.
    cli.ok("principal", "revoke", "fedwater", who="admin")
    gone = cli.run("status", tracking, who="fedwater")
    assert gone.code == 3 and "you are revoked" in gone.err, gone.err
    assert "--record-sector" not in gone.err and "--state" not in gone.err
    assert _replay(cli, gone.err)["decision"] == "deny"
    # Only the submitter withdraws: the office is told the role that may.
    withdraw = cli.run("withdraw", tracking, who="office")
    assert withdraw.code == 3 and "an office cannot withdraw; only: owner" in withdraw.err
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "may\n`destroy` any record" not in readme and "`destroy` any record" not in readme


def test_policy_explain_takes_the_same_defaults_as_get(populated: Cli) -> None:
    cli = populated
    tracking = _submit(cli)
    cli.ok("validate", tracking, who="office")
    got = cli.run(
        "get",
        tracking,
        "--purpose",
        "drought planning",
        "--out",
        str(cli.root / "g"),
        who="fedwater",
    )
    assert got.code == 0, got.err
    explained = cli.ok(
        "policy",
        "explain",
        "--action",
        "retrieve",
        "--org",
        "EPA Water Security Division",
        "--sector",
        WATER,
        "--no-nda",
        "--record-sector",
        WATER,
        "--submitter-org",
        "Riverbend Municipal Water Authority",
        "--purpose",
        "drought planning",
    ).json()
    assert explained["decision"] == "permit", explained


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep", "[" * 100_000 + "]" * 100_000),
        ("deep-object", '{"a":' * 100_000 + "1" + "}" * 100_000),
        ("huge-int", '{"title": ' + "9" * 5000 + "}"),
    ],
)
def test_pathological_json_is_bad_input_everywhere(cli: Cli, name: str, text: str) -> None:
    """Exit 2 with one line, never 1: submissions, policy cases and explain inputs."""
    cli.init()
    cli.add("owner", "owner")
    path = cli.root / f"{name}.json"
    path.write_text(text)
    for args, who in (
        (["submit", str(path)], "owner"),
        (["policy", "test", str(path)], None),
        (["policy", "explain", "--action", "retrieve", "--principal-json", str(path)], None),
    ):
        result = cli.run(*args, who=who)
        assert result.code == 2, f"{args}: {result.code} {result.err}"
        assert result.err.startswith("pcii: error:") and len(result.err.splitlines()) == 1


def test_a_request_time_without_a_zone_is_bad_input(cli: Cli) -> None:
    result = cli.run("policy", "explain", "--action", "retrieve", "--now", "2026-06-01T12:00:00")
    assert result.code == 2 and "time zone" in result.err


@pytest.mark.parametrize(
    ("now", "edge", "instead"),
    [
        ("9999-12-31T23:00:00Z", "end", "--untrained"),
        ("9999-12-31T23:59:59-14:00", "end", "--untrained"),
        ("0001-01-01T00:00:00Z", "start", "--no-nda"),
        ("0001-01-01T00:00:00+14:00", "start", "--no-nda"),
    ],
)
def test_a_request_time_at_the_calendars_edge_is_bad_input(
    cli: Cli, now: str, edge: str, instead: str
) -> None:
    """The default principal's dates (trained a year on, NDA 30 days back) overflowed: exit 1."""
    error = one_line_error(cli.run("policy", "explain", "--action", "retrieve", "--now", now), 2)
    assert f"too close to the {edge} of the calendar" in error and instead in error
    given = cli.run("--json", "policy", "explain", "--action", "retrieve", "--now", now, instead)
    assert given.code == 0, given.err
    assert given.json()["decision"] in ("permit", "deny")


def test_store_check_leaves_no_probe_objects(cli: Cli) -> None:
    cli.init()
    objects = cli.vault / "objects"
    before = {p for p in objects.rglob("*") if p.name != ".pcii-store.lock"}
    cli.ok("store", "check")
    after = {p for p in objects.rglob("*") if p.name != ".pcii-store.lock"}
    assert after == before


def test_kept_demo_prints_export_lines_that_work(cli: Cli) -> None:
    """The lines `PCII_DEMO_KEEP=1 make demo` prints, pasted into a clean shell."""
    cli.env["PCII_UNSEAL_SECRET"] = DEMO_SECRET  # the secret the demo's vault is made with
    cli.init()
    exports = [line for line in keep_instructions(cli.root) if line.startswith("export ")]
    script = "\n".join([*exports, "pcii --json principal list"])
    done = subprocess.run(
        ["bash", "-c", script],
        env={"HOME": str(cli.root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["id"] == "admin"


def test_the_template_hint_is_a_command_to_paste(cli: Cli) -> None:
    """A tester's finding: with `--attachment-out "scada report.pdf"` the hint printed
    `--attach scada report.pdf`, two arguments once pasted into a shell."""
    out, attachment = cli.root / "my assessment.json", cli.root / "scada report.pdf"
    made = cli.ok("submission", "template", "--out", str(out), "--attachment-out", str(attachment))
    hint = made.err.split("then: ", 1)[1].strip()
    assert shlex.split(hint) == [
        "pcii",
        "--as",
        "KEYFILE",
        "submit",
        str(out),
        "--attach",
        str(attachment),
    ]
