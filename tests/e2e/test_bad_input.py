"""Every way a user's input can be wrong: one clear line, the documented exit code, no trace.

After each refusal the log still verifies and no half-written record is visible.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from pcii_vault.models.submission import example_submission
from pcii_vault.policy.engine import default_policy_directory
from tests.e2e.conftest import IN_BOTH_MODES, Cli, one_line_error

_TOO_FAR = (date.today() + timedelta(days=370)).isoformat()  # past a year and its slack

pytestmark = pytest.mark.slow


def _assert_clean_refusal(cli: Cli, result: object, code: int) -> None:
    assert result.code == code, (result.code, result.err)  # type: ignore[attr-defined]
    err: str = result.err  # type: ignore[attr-defined]
    assert err.startswith("pcii: error:"), err
    assert len(err.strip().splitlines()) == 1 or "problems" in err.splitlines()[0], err
    assert "Traceback" not in err
    assert cli.ok("audit", "verify").code == 0
    stored = cli.vault / "objects"
    leftovers = [
        p.relative_to(stored)
        for p in stored.rglob("*")
        if p.is_file() and p.parts[len(stored.parts)] in {"records", "wrapped"}
    ]
    assert leftovers == [], leftovers
    records = stored / "records"
    folders = [p.name for p in records.glob("*") if not any(q.is_file() for q in p.rglob("*"))]
    assert folders == [], folders  # no empty record folder either


def _doc(cli: Cli, **changes: object) -> Path:
    return cli.write_submission("bad.json", attachments=[], **changes)


BAD_SUBMISSIONS: dict[str, Callable[[Cli], Path]] = {
    "missing_express_statement": lambda cli: _without(cli, "express_statement"),
    "altered_express_statement": lambda cli: _doc(
        cli, express_statement="This information is submitted to the Federal Government."
    ),
    "unknown_sector": lambda cli: _doc(cli, sector="Space Systems"),
    "oversized_field": lambda cli: _doc(cli, title="x" * 100_000),
    "unknown_field": lambda cli: _doc(cli, favourite_colour="blue"),
}


def _without(cli: Cli, field: str) -> Path:
    path = cli.write_submission("bad.json", attachments=[])
    document = json.loads(path.read_text())
    del document[field]
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("case", sorted(BAD_SUBMISSIONS))
@IN_BOTH_MODES
def test_invalid_submission_is_refused_before_anything_is_sent(populated: Cli, case: str) -> None:
    cli = populated
    result = cli.run("submit", str(BAD_SUBMISSIONS[case](cli)), who="owner")
    _assert_clean_refusal(cli, result, 2)


@IN_BOTH_MODES
def test_a_submit_by_anyone_but_an_owner_stores_and_logs_nothing(populated: Cli) -> None:
    """Refused at the upload, in both modes alike: no object stored, no event logged."""
    cli = populated
    before = json.loads(cli.ok("--json", "audit", "verify").out)["size"]
    document = cli.write_submission()
    result = cli.run("submit", str(document), "--attach", str(cli.attachment()), who="water")
    _assert_clean_refusal(cli, result, 3)
    # At the tracking number, in both modes with the same line (a tester's finding: the
    # two modes named different acts).
    assert "water (analyst) may not ask for a tracking number: only owners" in result.err
    assert json.loads(cli.ok("--json", "audit", "verify").out)["size"] == before


@IN_BOTH_MODES
def test_invalid_json_names_line_and_column(populated: Cli) -> None:
    cli = populated
    path = cli.root / "broken.json"
    path.write_text('{\n  "v": 1,\n  "title": oops\n}\n')
    result = cli.run("submit", str(path), who="owner")
    _assert_clean_refusal(cli, result, 2)
    assert "line 3 column" in result.err


@IN_BOTH_MODES
def test_every_problem_is_listed_with_its_field_path(populated: Cli) -> None:
    cli = populated
    path = _doc(cli, sector="Space Systems", tlp="TLP:PURPLE")
    result = cli.run("submit", str(path), who="owner")
    assert result.code == 2
    assert "sector" in result.err and "tlp" in result.err


@IN_BOTH_MODES
def test_missing_attachment(populated: Cli) -> None:
    cli = populated
    result = cli.run(
        "submit", str(cli.write_submission()), "--attach", str(cli.root / "nope.pdf"), who="owner"
    )
    _assert_clean_refusal(cli, result, 2)
    assert "not found" in result.err


@IN_BOTH_MODES
def test_directory_as_attachment(populated: Cli) -> None:
    cli = populated
    folder = cli.root / "riverbend-scada-assessment.pdf"
    folder.mkdir()
    result = cli.run("submit", str(cli.write_submission()), "--attach", str(folder), who="owner")
    _assert_clean_refusal(cli, result, 2)
    assert "directory" in result.err


@IN_BOTH_MODES
def test_unreadable_attachment(populated: Cli) -> None:
    """An attachment that cannot be read: exit 2, and what was uploaded is removed."""
    cli = populated
    if os.geteuid() == 0:
        # root reads any file whatever its mode; /proc/self/mem fails on read instead.
        attachment = Path("/proc/self/mem")
    else:
        attachment = cli.attachment()
        attachment.chmod(0)
    document = cli.write_submission(
        "unreadable.json", attachments=[{"name": attachment.name, "description": "unreadable"}]
    )
    result = cli.run("submit", str(document), "--attach", str(attachment), who="owner")
    _assert_clean_refusal(cli, result, 2)
    assert "read" in result.err


@IN_BOTH_MODES
def test_duplicate_attachment_names(populated: Cli) -> None:
    cli = populated
    one = cli.attachment()
    other_dir = cli.root / "other"
    other_dir.mkdir()
    two = other_dir / one.name
    two.write_bytes(b"%PDF-1.4 other")
    result = cli.run(
        "submit",
        str(cli.write_submission()),
        "--attach",
        str(one),
        "--attach",
        str(two),
        who="owner",
    )
    _assert_clean_refusal(cli, result, 2)
    assert "unique" in result.err


@IN_BOTH_MODES
def test_attachment_not_described_in_the_submission(populated: Cli) -> None:
    cli = populated
    extra = cli.root / "extra.bin"
    extra.write_bytes(b"unlisted")
    result = cli.run(
        "submit",
        str(cli.write_submission()),
        "--attach",
        str(cli.attachment()),
        "--attach",
        str(extra),
        who="owner",
    )
    _assert_clean_refusal(cli, result, 2)


@IN_BOTH_MODES
def test_unknown_identity_is_refused(populated: Cli) -> None:
    cli = populated
    from pcii_vault.crypto.signing import Ed25519PrivateKey
    from pcii_vault.identity import Identity

    vault_id = json.loads((cli.vault / "vault.json").read_text())["vault_id"]
    Identity(vault_id, "mallory", Ed25519PrivateKey.generate()).save_new(cli.key("mallory"))
    result = cli.run("submit", str(_doc(cli)), who="mallory")
    _assert_clean_refusal(cli, result, 3)


@IN_BOTH_MODES
def test_forged_identity_with_a_registered_name_is_an_integrity_failure(populated: Cli) -> None:
    cli = populated
    from pcii_vault.crypto.signing import Ed25519PrivateKey
    from pcii_vault.identity import Identity

    vault_id = json.loads((cli.vault / "vault.json").read_text())["vault_id"]
    Identity(vault_id, "owner", Ed25519PrivateKey.generate()).save_new(cli.key("forger"))
    result = cli.run("submit", str(_doc(cli)), who="forger")
    _assert_clean_refusal(cli, result, 4)


@IN_BOTH_MODES
def test_revoked_identity_is_denied(populated: Cli) -> None:
    cli = populated
    cli.ok("principal", "revoke", "owner", who="admin")
    result = cli.run("submit", str(_doc(cli)), who="owner")
    _assert_clean_refusal(cli, result, 3)


@IN_BOTH_MODES
def test_expired_training_is_denied_with_exit_3(populated: Cli) -> None:
    cli = populated
    tracking = cli.ok("submit", str(_doc(cli)), who="owner").json()["tracking_number"]
    cli.ok("validate", tracking, who="office")
    cli.add(
        "stale",
        "analyst",
        "--level",
        "federal",
        "--sector",
        "Water and Wastewater Systems",
        "--training-expires",
        "2020-01-01",
    )
    result = cli.run("get", tracking, "--purpose", "p", "--out", str(cli.root / "o"), who="stale")
    assert result.code == 3
    assert not (cli.root / "o" / tracking).exists()


@IN_BOTH_MODES
def test_identity_file_readable_by_others_is_refused(populated: Cli) -> None:
    cli = populated
    cli.key("owner").chmod(0o644)
    result = cli.run("submit", str(_doc(cli)), who="owner")
    _assert_clean_refusal(cli, result, 2)
    assert "chmod 600" in result.err


@IN_BOTH_MODES
def test_tampered_stored_object_is_an_integrity_failure(populated: Cli) -> None:
    cli = populated
    tracking = cli.ok("submit", str(_doc(cli)), who="owner").json()["tracking_number"]
    cli.ok("validate", tracking, who="office")
    stored = cli.vault / "objects" / "records" / tracking / "document"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.chmod(0o644)
    stored.write_bytes(bytes(data))
    out = cli.root / "out"
    result = cli.run("get", tracking, "--purpose", "p", "--out", str(out), who="water")
    assert result.code == 4, result.err
    assert not (out / tracking).exists()
    assert not out.exists() or list(out.iterdir()) == []


def test_wrong_unseal_secret_is_refused(populated: Cli) -> None:
    cli = populated
    result = cli.run(
        "submit", str(_doc(cli)), who="owner", env={"PCII_UNSEAL_SECRET": "not-the-secret"}
    )
    assert result.code == 2, result.err
    assert "Traceback" not in result.err


def test_no_vault_given(cli: Cli) -> None:
    result = cli.run("status", "PCII-2026-00000001", env={"PCII_VAULT": ""})
    assert result.code == 2
    assert "--vault" in result.err


def test_not_a_vault_directory(cli: Cli) -> None:
    result = cli.run("--vault", str(cli.root / "nowhere"), "audit", "verify")
    assert result.code == 2
    assert "no vault" in result.err


@IN_BOTH_MODES
def test_init_twice_is_refused(populated: Cli) -> None:
    cli = populated
    result = cli.run("init", "--admin-key-out", str(cli.root / "admin2.key"))
    assert result.code == 2
    assert "already" in result.err
    assert not (cli.root / "admin2.key").exists()


@IN_BOTH_MODES
def test_unknown_record(populated: Cli) -> None:
    cli = populated
    result = cli.run("status", "PCII-2026-99999999", who="owner")
    assert result.code == 2
    assert "no record" in result.err


@IN_BOTH_MODES
def test_failed_init_leaves_nothing_behind(cli: Cli) -> None:
    """An unreachable store: exit 2 or 5, and no half-created vault directory or key file."""
    result = cli.run(
        "init",
        "--store",
        "s3://no-such-bucket/x",
        "--admin-key-out",
        str(cli.key("admin")),
        env={
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "y",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
        },
    )
    assert result.code in {2, 5}, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not cli.vault.exists()
    assert not cli.key("admin").exists()


@pytest.mark.parametrize("limit", [1500, 6000, 20000])
def test_an_init_that_runs_out_of_space_is_exit_5_and_leaves_nothing(cli: Cli, limit: int) -> None:
    """A tester's finding: a disk filling while the policies were copied was exit 1.

    The file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) stands in for a full disk: the
    write that crosses it fails with EFBIG, at a different file for each limit.
    """

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-m", "pcii_vault", "init", "--admin-key-out", str(cli.key("admin"))],
        env=cli.env,
        cwd=cli.root,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=limited,
    )
    assert done.returncode == 5, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("pcii: error:") and "File too large" in line, line
    assert str(cli.vault) in line  # the vault directory, or its store's
    assert not cli.vault.exists()
    assert not cli.key("admin").exists()


@IN_BOTH_MODES
def test_init_with_a_short_secret_creates_nothing(cli: Cli) -> None:
    result = cli.run("init", env={"PCII_UNSEAL_SECRET": "short"})
    assert result.code == 2
    assert "at least 8" in result.err
    assert not cli.vault.exists()


@IN_BOTH_MODES
def test_init_refuses_a_non_empty_directory(cli: Cli) -> None:
    cli.vault.mkdir()
    (cli.vault / "notes.txt").write_text("mine")
    result = cli.run("init")
    assert result.code == 2
    assert "not empty" in result.err
    assert [p.name for p in cli.vault.iterdir()] == ["notes.txt"]


@IN_BOTH_MODES
def test_init_without_a_secret_or_terminal_is_refused(cli: Cli) -> None:
    result = cli.run("init", env={"PCII_UNSEAL_SECRET": ""}, stdin="")
    assert result.code == 2
    assert "init needs the new vault's unseal secret: set PCII_UNSEAL_SECRET" in result.err
    assert not cli.vault.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Name", "--role", "analyst"], "principal name"),
        (["x1", "--role", "wizard"], "role"),
        (["x1", "--role", "analyst", "--level", "galactic"], "level"),
        (["x1", "--role", "analyst", "--training-expires", "2027-13-01"], "not a date"),
        (["owner", "--role", "analyst"], "already exists"),
        (["vault", "--role", "office"], "the vault's own in the log"),  # its events' actor
        (["x1", "--role", "analyst", "--org", "Org\x0bVT"], "one line of printable text"),
        (["x1", "--role", "analyst", "--org", "Evil\u202eCorp"], "one line of printable text"),
        (["x1", "--role", "analyst", "--training-expires", _TOO_FAR], "renewed yearly"),
        (["x1", "--role", "analyst", "--nda-signed", _TOO_FAR], "in the future"),
    ],
)
def test_bad_principal_is_refused_in_one_line_and_writes_no_key(
    populated: Cli, args: list[str], message: str
) -> None:
    cli = populated
    key = cli.root / "new.key"
    result = cli.run("principal", "add", *args, "--key-out", str(key), who="admin")
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1 and message in result.err
    assert not key.exists()


def test_a_revoked_id_is_not_given_again(populated: Cli) -> None:
    cli = populated
    cli.ok("principal", "revoke", "water", who="admin")
    key = cli.root / "again.key"
    result = cli.run(
        "principal", "add", "water", "--role", "analyst", "--key-out", str(key), who="admin"
    )
    assert not key.exists()
    assert "'water' already exists, revoked: an id is never given" in one_line_error(result, 2)


@IN_BOTH_MODES
def test_training_is_renewed_yearly_not_stated_for_decades(populated: Cli) -> None:
    """6 CFR 29: PCII training is renewed yearly; an expired user is inactive."""
    cli = populated
    in_a_year = (date.today() + timedelta(days=365)).isoformat()
    cli.add("trained", "analyst", "--training-expires", in_a_year)
    result = cli.run("principal", "update", "trained", "--training-expires", _TOO_FAR, who="admin")
    assert "renewed yearly" in one_line_error(result, 2)
    listed = cli.ok("--json", "principal", "list", who="admin").out.splitlines()
    assert {p["id"]: p["training_expires"] for p in map(json.loads, listed)}["trained"] == in_a_year


@IN_BOTH_MODES
def test_listings_are_held_to_the_roles_in_both_modes(populated: Cli) -> None:
    """Principals (admins, auditors) and deadlines (also the office): the same either way."""
    cli = populated
    for who in ("water", "owner"):
        line = one_line_error(cli.run("principal", "list", who=who), 3)
        assert "may not list principals: only admins, auditors" in line
        line = one_line_error(cli.run("office", "due", "--within", "30", who=who), 3)
        assert "may not list deadlines: only admins, auditors, the office" in line
    cli.ok("principal", "list", who="auditor")
    cli.ok("office", "due", "--within", "30", who="office")
    # Without `--as`, embedded too (a tester's finding: embedded, these listed anyway).
    for args in (("principal", "list"), ("office", "due")):
        assert "no identity given" in one_line_error(cli.run(*args), 2)


@IN_BOTH_MODES
def test_the_last_active_admin_cannot_be_revoked_or_suspended(populated: Cli) -> None:
    cli = populated
    revoked = cli.run("principal", "revoke", "admin", who="admin")
    assert revoked.code == 2 and "last active admin" in revoked.err
    suspended = cli.run("principal", "update", "admin", "--status", "suspended", who="admin")
    assert suspended.code == 2 and "last active admin" in suspended.err
    cli.add("admin2", "admin")
    cli.ok("principal", "revoke", "admin", who="admin2")


@IN_BOTH_MODES
def test_a_submission_naming_another_organisation_as_its_submitter_is_refused(
    populated: Cli,
) -> None:
    # The record's submitter is the owner's organisation: the log, the status and
    # withdrawal go by it, so the document may not name another.
    cli = populated
    document = example_submission()
    document["attachments"] = []
    document["submitter"]["organisation"] = "Northgrid Power"
    document["certification"]["organisation"] = "Northgrid Power"  # signed inside it
    path = cli.root / "other.json"
    path.write_text(json.dumps(document))
    size = cli.ok("audit", "checkpoint").json()["size"]
    result = cli.run("submit", str(path), who="owner")
    assert result.code == 2, result.err
    assert "submitter.organisation 'Northgrid Power' is not your organisation" in result.err
    assert cli.ok("audit", "checkpoint").json()["size"] == size
    # Case and spacing are not a different organisation.
    document["submitter"]["organisation"] = "riverbend  municipal water AUTHORITY"
    document["certification"]["organisation"] = "Riverbend Municipal Water Authority"
    path.write_text(json.dumps(document))
    assert cli.run("submit", str(path), who="owner").code == 0


@IN_BOTH_MODES
def test_search_and_review_check_purpose_and_use_as_get_does(populated: Cli) -> None:
    """`search --use nonsense` and `--purpose ""` listed nothing (exit 0); `review
    --purpose ""` was logged with no purpose: all are refused in `get`'s own words."""
    cli = populated
    document = cli.write_submission("plain.json", attachments=[])
    tracking = cli.ok("submit", str(document), who="owner").json()["tracking_number"]
    size = cli.ok("audit", "checkpoint").json()["size"]
    out = str(cli.root / "out")
    get = ["get", tracking, "--out", out]

    def refusal(*args: str, who: str) -> str:
        return one_line_error(cli.run(*args, who=who), 2)

    bad_use = refusal(*get, "--purpose", "x", "--use", "nonsense", who="water")
    assert "--use must be one of: " in bad_use and "infrastructure-protection" in bad_use
    assert refusal("search", "--use", "nonsense", who="water") == bad_use
    no_purpose = refusal(*get, "--purpose", "", who="water")
    assert "--purpose must state why you need the record" in no_purpose
    for blank in ("", " \t"):
        assert refusal("search", "--purpose", blank, who="water") == no_purpose
        assert refusal("review", tracking, "--purpose", blank, "--out", out, who="office") == (
            no_purpose
        )
    assert cli.ok("audit", "checkpoint").json()["size"] == size  # nothing was logged
    assert not (cli.root / "out").exists()
    cli.ok("review", tracking, "--out", out, who="office")  # its default purpose still does
    cli.ok("search", who="water")


@pytest.mark.parametrize(
    "args",
    [
        ("policy", "test", "/dev/zero", "--dir", str(default_policy_directory())),
        ("policy", "explain", "--action", "retrieve", "--principal-json", "/dev/zero"),
        ("policy", "explain", "--action", "retrieve", "--record-json", "/dev/zero"),
        ("--vault", "https://127.0.0.1:9", "unseal", "--share", "/dev/zero"),
    ],
    ids=["policy test", "principal-json", "record-json", "unseal --share"],
)
def test_an_endless_input_file_is_refused_at_its_bound(cli: Cli, args: tuple[str, ...]) -> None:
    """A tester's finding: these read a named file whole, so /dev/zero had `pcii`
    killed for memory (exit 137). Each is bounded like every other input file."""
    identity = ("--as", str(cli.root / "nobody.key")) if "unseal" in args else ()
    result = cli.run(*identity, *args)
    assert result.code == 2, (result.code, result.err)
    assert "larger than" in one_line_error(result, 2)


def test_policy_json_that_is_not_utf8_is_refused(cli: Cli) -> None:
    garbage = cli.root / "garbage"
    garbage.write_bytes(bytes(range(128, 256)))
    shipped = ("--dir", str(default_policy_directory()))
    result = cli.run(
        "policy", "explain", *shipped, "--action", "retrieve", "--principal-json", str(garbage)
    )
    assert "not UTF-8" in one_line_error(result, 2)


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_shares_that_cannot_be_written_are_one_line_and_leave_nothing(cli: Cli, where: str) -> None:
    """A tester's finding: `--shares-out` naming a file (or a path under one) was exit 1."""
    blocker = cli.root / "blocker"
    blocker.write_text("not a directory\n")
    shares = blocker if where == "a file" else blocker / "shares"
    three_of_two = ("--unseal-shares", "3", "--unseal-threshold", "2")
    key = ("--admin-key-out", str(cli.root / "admin.key"))
    result = cli.run("init", *key, *three_of_two, "--shares-out", str(shares))
    assert "cannot write the unseal shares" in one_line_error(result, 2)
    assert not cli.vault.exists()
    assert not (cli.root / "admin.key").exists()
    assert blocker.read_text() == "not a directory\n"


def test_an_init_cut_short_is_named_with_the_way_out(cli: Cli) -> None:
    """A tester's finding: `init` killed part-way left a directory that every command
    sent back to `init`, and `init` refused as "not empty": advice in a circle."""
    cli.vault.mkdir()
    (cli.vault / ".init-under-way").touch()
    (cli.vault / "keyring.sealed").write_bytes(b"half")
    again = cli.run("init", "--admin-key-out", str(cli.root / "admin.key"))
    assert "cut short" in one_line_error(again, 2)
    assert "remove the directory" in again.err
    assert "cut short" in one_line_error(cli.run("audit", "verify"), 2)


def test_a_submission_naming_a_field_twice_is_refused(populated: Cli) -> None:
    """A tester's finding: `"sector"` given twice was taken with its last value, which
    decides who may retrieve the record. Which one the owner meant is no guess to make."""
    text = json.dumps(example_submission(), indent=2)
    doubled = text.replace('"sector":', '"sector": "Energy Sector",\n  "sector":', 1)
    path = populated.root / "doubled.json"
    path.write_text(doubled)
    attachment = str(populated.attachment())
    result = populated.run("submit", str(path), "--attach", attachment, who="owner")
    assert "'sector' is given twice" in one_line_error(result, 2)
    _assert_clean_refusal(populated, result, 2)
