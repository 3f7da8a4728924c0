"""A submission's receipt path is checked before anything is sent."""

from __future__ import annotations

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
