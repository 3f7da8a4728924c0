"""A careless new user: wrong files, unknown filters, huge values, bad names.

Each refusal is one `pcii: error:` line with the documented exit code (2 for bad input),
never a traceback or exit 1; a file given to the wrong command is named, with the command
that does check it when it is another of the vault's documents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcii_vault.policy.engine import default_policy_directory
from tests.e2e.conftest import Cli, one_line_error, validated_record

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("hours", "said"),
    [
        ("inf", "inf is not between 0 and 876000 hours"),
        ("1e308", "1e+308 is not between"),
        ("876001", "876001 is not between"),
        ("-1", "-1 is not between"),
        ("nan", "not a number of hours"),  # a tester's finding: "at most 876000"
    ],
)
def test_an_infinite_or_huge_grace_period_is_bad_input(cli: Cli, hours: str, said: str) -> None:
    refused = cli.run("maintenance", "--dry-run", "--grace-hours", hours)
    line = one_line_error(refused, 2)
    assert "--grace-hours" in line and said in line


def test_init_refuses_a_bad_admin_name_before_creating_anything(cli: Cli) -> None:
    shares = cli.root / "shares"
    refused = cli.run(
        "init",
        "--insecure-fast-kdf",
        "--admin",
        "Bad Admin",
        "--unseal-shares",
        "3",
        "--unseal-threshold",
        "2",
        "--shares-out",
        str(shares),
    )
    assert "--admin 'Bad Admin'" in one_line_error(refused, 2)
    assert not cli.vault.exists() and not shares.exists()


def test_init_over_an_existing_vault_leaves_no_shares_folder(cli: Cli) -> None:
    cli.init()
    shares = cli.root / "shares"
    refused = cli.run(
        "init", "--insecure-fast-kdf", "--unseal-shares", "3", "--unseal-threshold", "2",
        "--shares-out", str(shares),
    )  # fmt: skip
    assert "already holds a vault" in one_line_error(refused, 2)
    assert not shares.exists()


def test_audit_log_refuses_an_event_type_that_does_not_exist(cli: Cli) -> None:
    cli.init()
    # The type the help text once gave as its example: it never existed.
    refused = one_line_error(cli.run("audit", "log", "--type", "access.permitted"), 2)
    assert "did you mean 'access.decided'?" in refused
    refused = one_line_error(cli.run("audit", "log", "--type", "bogus"), 2)
    assert "submission.validated" in refused  # the list of types
    as_json = cli.run("--json", "audit", "log", "--type", "bogus")
    assert as_json.code == 2 and json.loads(as_json.out)["exit_code"] == 2
    listed = cli.ok("audit", "log", "--type", "vault.initialized").lines()
    assert [row["type"] for row in listed] == ["vault.initialized"]


def _receipt_and_proof(cli: Cli) -> tuple[Path, Path]:
    """A validated record's receipt, and the inclusion proof of its submission."""
    receipt = cli.root / "receipt.json"
    tracking = validated_record(cli, receipt=receipt)
    proof = cli.root / "proof.json"
    index = cli.ok("audit", "log", "--record", tracking).lines()[0]["seq"]
    cli.ok("audit", "prove", "--index", str(index), "--out", str(proof))
    return receipt, proof


def test_a_file_of_the_wrong_kind_is_bad_input_and_named(cli: Cli) -> None:
    receipt, proof = _receipt_and_proof(cli)
    checkpoint = cli.root / "checkpoint.txt"
    cli.ok("audit", "checkpoint", "--out", str(checkpoint))
    pdf = cli.attachment()
    assessment = cli.write_submission()
    empty = cli.root / "empty"
    empty.write_bytes(b"")
    for wrong in (pdf, assessment, empty, checkpoint):
        line = one_line_error(cli.run("receipt", "verify", str(wrong)), 2)
        assert f"{wrong} is not a pcii receipt" in line
        line = one_line_error(cli.run("audit", "verify-proof", str(wrong)), 2)
        assert f"{wrong} is not a log proof bundle" in line
    for wrong in (pdf, assessment, empty):
        line = one_line_error(cli.run("audit", "verify", "--trusted-checkpoint", str(wrong)), 2)
        assert f"--trusted-checkpoint {wrong} is not a signed checkpoint" in line
    # One of the vault's documents given to the other command: named, with the right one.
    line = one_line_error(cli.run("receipt", "verify", str(proof)), 2)
    assert "is a log proof bundle" in line and "pcii audit verify-proof" in line
    line = one_line_error(cli.run("audit", "verify-proof", str(receipt)), 2)
    assert "is a receipt" in line and "pcii receipt verify" in line
    as_json = cli.run("--json", "receipt", "verify", str(pdf))
    assert as_json.code == 2 and "not a pcii receipt" in json.loads(as_json.out)["error"]
    # The right kind of file that fails its checks is still tampering (4), and named.
    forged = cli.root / "forged.json"
    document = json.loads(receipt.read_text())
    document["tracking_number"] = "PCII-2026-00000001"
    forged.write_text(json.dumps(document))
    assert str(forged) in one_line_error(cli.run("receipt", "verify", str(forged)), 4)
    bundle = json.loads(proof.read_text())
    bundle["index"] += 1
    forged.unlink()
    forged.write_text(json.dumps(bundle))
    assert str(forged) in one_line_error(cli.run("audit", "verify-proof", str(forged)), 4)
    note = checkpoint.read_text()
    bad_note = cli.root / "bad-checkpoint.txt"
    bad_note.write_text(note[:-10] + "AAAAAAAAA\n")
    refused = cli.run("audit", "verify", "--trusted-checkpoint", str(bad_note))
    assert str(bad_note) in one_line_error(refused, 4)
    # A receipt damaged so that it is no longer JSON is still tampering, not bad input.
    damaged = cli.root / "damaged.json"
    damaged.write_text(receipt.read_text()[:-20])
    assert str(damaged) in one_line_error(cli.run("receipt", "verify", str(damaged)), 4)
    # The right files still verify.
    cli.ok("receipt", "verify", str(receipt))
    cli.ok("audit", "verify-proof", str(proof))
    cli.ok("audit", "verify", "--trusted-checkpoint", str(checkpoint))


def test_a_receipt_or_a_proof_serves_as_a_trusted_checkpoint(cli: Cli) -> None:
    """The checkpoint a receipt or a proof carries is one (as SECURITY.md offers it)."""
    receipt, proof = _receipt_and_proof(cli)
    cli.ok("audit", "verify", "--trusted-checkpoint", str(receipt))
    cli.ok("audit", "verify", "--trusted-checkpoint", str(proof))
    document = json.loads(receipt.read_text())
    note = document["proof"]["checkpoint"]
    document["proof"]["checkpoint"] = note[:-10] + "AAAAAAAAA\n"
    forged = cli.root / "forged.json"
    forged.write_text(json.dumps(document))
    refused = cli.run("audit", "verify", "--trusted-checkpoint", str(forged))
    assert str(forged) in one_line_error(refused, 4)


def test_report_counts_say_what_they_count_without_a_terminal(cli: Cli) -> None:
    validated_record(cli, purpose="drought planning")
    out = cli.run("audit", "report")
    assert out.code == 0, out.err
    headers = [
        line
        for line in out.out.splitlines()
        if line.endswith(("\tevents", "\tdenials", "\trecords", "\treleases", "\tprincipals"))
    ]
    assert headers == [
        "type\tevents",
        "principal\tdenials",
        "state\trecords",
        "record\treleases",
        "status\tprincipals",
    ]
    assert "name\tcount" not in out.out


def test_help_says_where_the_policies_and_the_release_go(cli: Cli) -> None:
    for command in (["policy", "check"], ["policy", "test"], ["policy", "explain"]):
        text = " ".join(cli.run(*command, "--help").out.split())
        assert "the vault's policies/ with --vault" in text, command
    for command in (["get"], ["review"]):
        text = " ".join(cli.run(*command, "--help").out.split())
        assert "DIR/TRACKING" in text, command
    text = " ".join(cli.run("audit", "log", "--help").out.split())
    assert "access.permitted" not in text and "access.decided" in text


def test_the_policy_commands_read_the_vaults_copy(cli: Cli) -> None:
    cli.init()
    checked = cli.ok("policy", "check").json()
    assert Path(checked["directory"]) == cli.vault / "policies"


def test_policy_explain_refuses_an_action_the_schema_does_not_have(cli: Cli) -> None:
    shipped = ("--dir", str(default_policy_directory()))
    refused = one_line_error(cli.run("policy", "explain", *shipped, "--action", "retreive"), 2)
    assert "did you mean 'retrieve'?" in refused
    # A group of actions is no action a request names: refused too.
    refused = one_line_error(cli.run("policy", "explain", *shipped, "--action", "handle-pcii"), 2)
    assert "'handle-pcii' is not an action" in refused
    as_json = cli.run("--json", "policy", "explain", *shipped, "--action", "bogus")
    assert as_json.code == 2 and "bogus" in json.loads(as_json.out)["error"]
    decided = cli.ok("policy", "explain", *shipped, "--action", "retrieve").json()
    assert decided["decision"] == "permit"


def test_policy_commands_on_a_directory_that_is_no_vault_say_so(cli: Cli) -> None:
    """A tester's finding: a mistyped --vault made `policy check` check the shipped
    policies and answer "ok", as if the vault's were fine: it says which it read."""
    checked = cli.ok("--vault", str(cli.root / "mistyped"), "policy", "check")
    assert "holds no policies/ directory" in checked.err
    assert "reading the shipped defaults" in checked.err
    # Nor does a server's URL read the server's: they are on its machine (nothing is
    # contacted; a tester's finding: it said "ok" with no note).
    served = cli.ok("--vault", "https://127.0.0.1:9", "policy", "check")
    assert "are on the server's machine" in served.err
    assert "reading the shipped defaults" in served.err


def test_an_error_line_shows_control_and_bidi_characters_as_escapes(cli: Cli) -> None:
    cli.init()
    cli.add_owner_office_and_water()
    named = cli.root / "evil\u202efdp.json\x1b[2J"
    refused = one_line_error(cli.run("submit", str(named), who="owner"), 2)
    assert "\u202e" not in refused and "\x1b" not in refused
    assert "evil\\u202efdp.json\\u001b[2J" in refused
    # With --json the message is data: JSON escapes it, and it reads back as given.
    as_json = cli.run("--json", "submit", str(named), who="owner")
    assert as_json.code == 2 and str(named) in json.loads(as_json.out)["error"]


@pytest.mark.parametrize("version", ["0", "4294967296", "99999999999999999999999"])
def test_keys_retire_refuses_a_version_no_key_can_have(cli: Cli, version: str) -> None:
    refused = cli.run("keys", "retire", version, who="admin")
    assert "VERSION" in one_line_error(refused, 2)


def test_init_refuses_a_vault_directory_it_cannot_create(cli: Cli) -> None:
    a_file = cli.root / "a-file"
    a_file.write_text("not a directory\n")
    dangling = cli.root / "dangling"
    dangling.symlink_to(cli.root / "nowhere" / "vault")
    for where, why in (
        (a_file / "vault", "cannot create the vault directory"),
        (Path("/proc/pcii-vault-test"), "cannot create the vault directory"),
        (dangling, "symlink to nothing"),
        (a_file, "not a directory"),
    ):
        refused = cli.run("--vault", str(where), "init", "--insecure-fast-kdf")
        assert why in one_line_error(refused, 2), where
    assert not (cli.root / "nowhere").exists()
    # A refusal after the probe (a short secret) leaves no directory the probe made.
    deep = cli.root / "new" / "deep" / "vault"
    short = cli.run("--vault", str(deep), "init", env={"PCII_UNSEAL_SECRET": "short"})
    assert "at least 8 bytes" in one_line_error(short, 2)
    assert not (cli.root / "new").exists()


def test_audit_export_to_a_file_says_what_it_wrote(cli: Cli) -> None:
    cli.init()
    out = cli.root / "events.jsonl"
    written = cli.ok("audit", "export", "--out", str(out)).json()
    lines = out.read_text().splitlines()
    assert written == {"events": len(lines), "format": "jsonl", "out": str(out)}
    csv_out = cli.root / "events.csv"
    said = cli.run("audit", "export", "--format", "csv", "--out", str(csv_out))
    assert said.code == 0 and f"{len(lines)} events exported to {csv_out}" in said.out


_INTERRUPTED_AS_OPENED = """
import os, signal
from pcii_vault import vault
from pcii_vault.cli import app
sync = vault.Vault.sync
def interrupted(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the new vault is opened
    return sync(self, *args, **kwargs)
vault.Vault.sync = interrupted
app.main()
"""


def test_an_init_interrupted_once_the_vault_is_made_keeps_its_shares(cli: Cli) -> None:
    """The vault is complete: its unseal shares (its only secret) must not be removed."""
    shares = cli.root / "shares"
    cli.env.pop("PCII_UNSEAL_SECRET", None)
    args = ["init", "--insecure-fast-kdf", "--unseal-shares", "3", "--unseal-threshold", "2",
            "--shares-out", str(shares), "--admin-key-out", str(cli.key("admin"))]  # fmt: skip
    done = _patched_pcii(cli, _INTERRUPTED_AS_OPENED, args)
    assert done.returncode == 130, done.stderr
    line = one_line_error_any(done.stderr)
    assert line.startswith(f"pcii: error: interrupted after the vault in {cli.vault} was made")
    assert f"its unseal shares are in {shares}" in line
    files = sorted(shares.iterdir())
    assert len(files) == 3
    env = {**cli.env, "PCII_UNSEAL_SHARES": os.pathsep.join(str(p) for p in files[:2])}
    verified = subprocess.run(
        [sys.executable, "-m", "pcii_vault", "audit", "verify"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr


_FAILING_AS_REGISTERED = """
import os, signal, sys
from pcii_vault import client
from pcii_vault.cli import app
from pcii_vault.errors import BackendError
HOW = sys.argv.pop(1)
add = client.LocalTransport.add_principal
def interrupted(self, *args, **kwargs):
    add(self, *args, **kwargs)
    if HOW == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the registration is logged
    raise BackendError("the index cannot be written: No space left on device")
client.LocalTransport.add_principal = interrupted
app.main()
"""


@pytest.mark.parametrize(("how", "code"), [("interrupt", 130), ("full-disk", 5)])
def test_a_principal_add_failing_as_it_is_logged_keeps_the_key_file(
    cli: Cli, how: str, code: int
) -> None:
    """The registration stands: its key file is the only copy of the user's key (a
    tester's finding: a full disk as the index was written removed it)."""
    cli.init()
    key = cli.key("late")
    args = [how, "--as", str(cli.key("admin")), "principal", "add", "late", "--role",
            "auditor", "--key-out", str(key)]  # fmt: skip
    done = _patched_pcii(cli, _FAILING_AS_REGISTERED, args)
    assert done.returncode == code, done.stderr
    assert f"its key file {key} is kept" in one_line_error_any(done.stderr)
    assert key.is_file()
    # Registered, and its key is the one kept: the auditor lists the principals with it.
    listed = cli.ok("--json", "principal", "list", who="late").lines()
    assert "late" in {row["id"] for row in listed}


def one_line_error_any(stderr: str) -> str:
    [line] = [x for x in stderr.splitlines() if x.startswith("pcii: error:")]
    return line


def test_an_owner_is_of_the_private_sector_unless_told_otherwise(cli: Cli) -> None:
    cli.init()
    cli.add("acme", "owner", "--org", "Acme Chemical")
    cli.add("epa", "analyst", "--org", "EPA")
    cli.add("state", "analyst", "--org", "Ohio EPA", "--level", "state")
    listed = cli.ok("--json", "principal", "list", who="admin").lines()
    levels = {row["id"]: row["level"] for row in listed}
    assert (levels["acme"], levels["epa"], levels["state"]) == ("private", "federal", "state")


def test_acts_refused_before_anything_is_claimed_say_nothing_may_be_recorded(cli: Cli) -> None:
    """A tester's finding: with a file planted where the log keeps its claims, `principal
    add` kept the new user's key file, saying the user might be registered, and `submit`
    said the vault might record the submission: neither could be, nothing was claimed."""
    cli.init()
    cli.add("acme", "owner", "--org", "Riverbend Municipal Water Authority")
    claims = cli.vault / "objects" / "log" / "claims"
    claims.rmdir()
    claims.write_bytes(b"planted")
    key = cli.key("late")
    added = cli.run("--as", str(cli.key("admin")), "principal", "add", "late", "--role",
                    "auditor", "--key-out", str(key))  # fmt: skip
    assert added.code == 4, added.err
    assert "is kept" not in added.err
    assert not key.exists()
    document = cli.write_submission("bare.json", attachments=[])
    submitted = cli.run("--as", str(cli.key("acme")), "submit", str(document))
    assert submitted.code == 4, submitted.err
    assert "may record it" not in submitted.err


_FAILING_AS_SUBMITTED = """
from pcii_vault import client
from pcii_vault.cli import app
from pcii_vault.errors import BackendError
receive = client.LocalTransport.receive
def full(self, *args, **kwargs):
    receive(self, *args, **kwargs)
    raise BackendError("the index cannot be written: No space left on device")
client.LocalTransport.receive = full
app.main()
"""


def _submit_patched(cli: Cli, patch: str) -> str:
    """An owner's `pcii submit` in a process patched by `patch`: exit 5, its one line."""
    cli.init()
    cli.add("acme", "owner", "--org", "Riverbend Municipal Water Authority")
    document = cli.write_submission("bare.json", attachments=[])
    args = ["--as", str(cli.key("acme")), "submit", str(document)]
    done = _patched_pcii(cli, patch, args)
    assert done.returncode == 5, done.stderr
    return one_line_error_any(done.stderr)


def test_a_submit_failing_once_it_is_logged_names_its_tracking_number(cli: Cli) -> None:
    """A tester's finding: a full disk as the index was written after the submission was
    committed said exit 5 without the tracking number; the owner submitted it again."""
    line = _submit_patched(cli, _FAILING_AS_SUBMITTED)
    [tracking] = [r["tracking_number"] for r in cli.ok("search", who="acme").lines()]
    assert f"check `pcii status {tracking}` before submitting it again" in line, line


_REFUSED_BEFORE_THE_LOG = """
from pcii_vault.cli import app
from pcii_vault.core.intake import Intake
from pcii_vault.errors import BackendError
def behind(self, sealed):
    raise BackendError("the keyring is behind the log: copy the newest keyring.sealed here")
Intake._accept = behind
app.main()
"""


def test_a_submit_refused_before_it_reaches_the_log_does_not_say_it_may_be_recorded(
    cli: Cli,
) -> None:
    """A tester's finding: a replica whose keyring was behind refused the submission
    outright, and the error still told the owner the vault might record it."""
    line = _submit_patched(cli, _REFUSED_BEFORE_THE_LOG)
    assert line.endswith("the keyring is behind the log: copy the newest keyring.sealed here"), line
    assert cli.ok("search", who="acme").lines() == []


def _patched_pcii(cli: Cli, script: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """`pcii ARGS` run by `script` (the CLI with a failure patched in), in its own process."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=cli.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
