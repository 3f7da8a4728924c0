"""A submission's receipt path is checked before anything is sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Cli


def test_an_unusable_receipt_path_is_refused_before_any_upload(populated: Cli) -> None:
    cli = populated
    bad = cli.root / "no-such-dir" / "receipt.json"
    result = cli.run("submit", str(cli.write_submission(attachments=[])),
                     "--receipt-out", str(bad), who="owner")  # fmt: skip
    assert result.code == 2, result.err
    assert result.err.startswith("pcii: error: cannot write the receipt")
    stored = cli.vault / "objects"
    assert not (stored / "records").exists() or not any((stored / "records").iterdir())
    assert cli.ok("audit", "log", "--type", "submission.received").lines() == []


def test_an_existing_receipt_is_never_overwritten(populated: Cli) -> None:
    cli = populated
    existing = cli.root / "receipt.json"
    existing.write_text("keep me")
    result = cli.run("submit", str(cli.write_submission(attachments=[])),
                     "--receipt-out", str(existing), who="owner")  # fmt: skip
    assert result.code == 2, result.err
    assert existing.read_text() == "keep me"


def test_a_receipt_is_readable_by_its_owner_only(populated: Cli) -> None:
    """A tester's finding: receipts were 0644 (umask 022), though they name the files
    and their plaintext SHA-256, which confirms a guessed file."""
    cli = populated
    receipt = cli.root / "private-receipt.json"
    cli.ok("submit", str(cli.write_submission(attachments=[])), "--receipt-out", str(receipt),
           who="owner")  # fmt: skip
    assert receipt.stat().st_mode & 0o777 == 0o600


def test_a_receipt_name_too_long_is_refused_before_any_upload(populated: Cli) -> None:
    """A tester's finding: a name over the file system's limit was exit 1."""
    cli = populated
    result = cli.run("submit", str(cli.write_submission(attachments=[])),
                     "--receipt-out", str(cli.root / ("c" * 300)), who="owner")  # fmt: skip
    assert result.code == 2, result.err
    assert result.err.startswith("pcii: error: cannot write the receipt")
    assert "File name too long" in result.err
    assert cli.ok("audit", "log", "--type", "submission.received").lines() == []


def test_a_submission_whose_number_cannot_be_printed_says_it_on_stderr(populated: Cli) -> None:
    """Stdout on a full disk after the submission is logged: its number is not lost.

    A tester's finding: the command said only "cannot write the output", and a user who
    submits again makes a second submission.
    """
    cli = populated
    submission = str(cli.write_submission(attachments=[]))
    command = [sys.executable, "-m", "pcii_vault", "--as", str(cli.key("owner")), "submit"]
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [*command, submission],
            env=cli.environment(["submit"]),
            cwd=cli.root,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    [line] = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    [logged] = cli.ok("audit", "log", "--type", "submission.received", "--json").lines()
    tracking = logged["record"]
    assert line.startswith("pcii: error: cannot write the output: No space left on device")
    assert f"{tracking} is submitted" in line
