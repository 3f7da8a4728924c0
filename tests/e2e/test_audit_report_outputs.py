"""`pcii audit report --proofs DIR`, `--skip-decision-replay`, and `receipt verify --key`.

Tester's findings: `--proofs DIR` followed a symlink planted in DIR, replaced files and
made missing parents, where every other output refuses a taken path (exit 2) and writes
whole or nothing; the report had no `--skip-decision-replay` (an auditor holding only
`log/` got NOT SOUND); `receipt verify --key` took only the key string, not a file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, copied_vault, one_line_error, validated_record

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A vault with one validated record, released once; the owner's receipt kept."""
    cli = Cli(tmp_path_factory.mktemp("template"))
    return cli.root, validated_record(
        cli, purpose="drought planning", receipt=cli.root / "receipt.json"
    )


@pytest.fixture
def vault(template: tuple[Path, str], tmp_path: Path) -> tuple[Cli, str]:
    return copied_vault(template, tmp_path)


@pytest.mark.parametrize("kind", ["directory", "file", "symlink", "dangling"])
def test_proofs_never_follow_or_replace_what_is_there(vault: tuple[Cli, str], kind: str) -> None:
    cli, _ = vault
    victim = cli.root / "victim.txt"
    victim.write_text("keep me\n")
    proofs = cli.root / "proofs"
    if kind == "directory":
        proofs.mkdir()
        (proofs / "access-8.json").symlink_to(victim)  # a planted link to a bundle's name
    elif kind == "file":
        proofs.write_text("keep me\n")
    else:
        proofs.symlink_to(victim if kind == "symlink" else cli.root / "nowhere")
    page = cli.root / "page.html"
    result = cli.run("audit", "report", "--proofs", str(proofs), "--html", str(page))
    assert "already exists" in one_line_error(result, 2)
    assert victim.read_text() == "keep me\n"
    assert not page.exists()


def test_proofs_into_a_missing_directory_is_exit_2(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    proofs = cli.root / "missing" / "proofs"
    assert str(proofs) in one_line_error(cli.run("audit", "report", "--proofs", str(proofs)), 2)
    assert not (cli.root / "missing").exists()


def test_a_report_that_fails_leaves_no_proofs(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    proofs = cli.root / "proofs"
    page = cli.root / "missing" / "page.html"
    result = cli.run("audit", "report", "--proofs", str(proofs), "--html", str(page))
    assert str(page) in one_line_error(result, 2)
    assert sorted(p.name for p in cli.root.iterdir() if "proofs" in p.name) == []


def test_proofs_are_written_whole_and_verify(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    proofs = cli.root / "proofs"
    cli.ok("audit", "report", "--proofs", str(proofs), "--html", str(cli.root / "page.html"))
    bundles = sorted(proofs.iterdir())
    assert bundles, "a release's proof"
    for bundle in bundles:
        cli.ok("audit", "verify-proof", str(bundle))
    assert [p.name for p in cli.root.iterdir() if p.name.startswith(".proofs")] == []


def test_a_report_on_a_log_without_its_policy_sets_can_skip_the_replay(
    vault: tuple[Cli, str],
) -> None:
    cli, _ = vault
    copied = cli.root / "copied"
    shutil.copytree(cli.vault / "objects" / "log", copied / "log")  # no policysets/
    key = cli.ok("audit", "key").json()["key"]
    source = ("--log", str(copied), "--key", str(key))
    assert cli.run("audit", "report", *source).code == 4
    page = cli.root / "page.html"
    result = cli.ok("audit", "report", *source, "--skip-decision-replay", "--html", str(page))
    verification = result.json()["verification"]
    assert verification["sound"] is True
    assert verification["decisions_replayed"] is None
    assert "were not replayed" in page.read_text(encoding="utf-8")
    verified = cli.ok("audit", "verify", *source, "--skip-decision-replay").json()
    assert verified["decisions_replayed"] is None


def test_receipt_verify_takes_a_key_file_as_every_key_option(
    vault: tuple[Cli, str], tmp_path: Path
) -> None:
    cli, _ = vault
    receipt = str(cli.root / "receipt.json")
    key = str(cli.ok("audit", "key").json()["key"])
    key_file = tmp_path / "log.key"
    key_file.write_text(key + "\n")
    for given in (key, str(key_file)):
        assert cli.ok("receipt", "verify", receipt, "--key", given).json()["verified"] is True
    malformed = "pcii-vault.local/x+0123abcd+AAAA"
    assert "--key" in one_line_error(cli.run("receipt", "verify", receipt, "--key", malformed), 2)
    missing = str(tmp_path / "no-such.key")
    assert missing in one_line_error(cli.run("receipt", "verify", receipt, "--key", missing), 2)
