"""The audit commands on a log whose head was tampered with, and what they write or read.

Each case is a tester's finding: `log/checkpoint` deleted or put back to an older signed
one made the listing commands show a shortened log as whole (exit 0) where `audit
verify` failed; a vault's store rolled back whole passed `audit verify`, caught only by
`status`; `audit export --format csv` wrote formulas raw; a malformed `--key` was exit 4.
Every test works on its own copy of one vault built once for the module.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, copied_vault, one_line_error, validated_record

pytestmark = pytest.mark.slow

_FORMULA = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A vault with one validated record, released once."""
    cli = Cli(tmp_path_factory.mktemp("template"))
    return cli.root, validated_record(cli, purpose=_FORMULA)


@pytest.fixture
def vault(template: tuple[Path, str], tmp_path: Path) -> tuple[Cli, str]:
    return copied_vault(template, tmp_path)


def _log(cli: Cli) -> Path:
    return cli.vault / "objects" / "log"


def _exported_log(cli: Cli) -> tuple[str, ...]:
    """`--log DIR --key K`: the log alone, as an auditor holding only a copy has it."""
    key = cli.ok("audit", "key").json()["key"]
    return ("--log", str(cli.vault / "objects"), "--key", str(key))


def _reading_commands(tracking: str) -> list[tuple[str, ...]]:
    return [
        ("audit", "log"),
        ("audit", "export"),
        ("audit", "export", "--format", "csv"),
        ("audit", "recipients", tracking),
        ("audit", "prove", "--index", "0"),
        ("audit", "checkpoint"),
        ("audit", "verify"),
    ]


@pytest.mark.parametrize("where", ["vault", "log copy"])
def test_a_deleted_checkpoint_is_tampering_for_every_audit_command(
    vault: tuple[Cli, str], where: str
) -> None:
    cli, tracking = vault
    source = _exported_log(cli) if where == "log copy" else ()
    (_log(cli) / "checkpoint").unlink()
    for command in _reading_commands(tracking):
        line = one_line_error(cli.run(*command, *source), 4)
        assert "log/checkpoint" in line, (command, line)


@pytest.mark.parametrize("where", ["vault", "log copy"])
def test_a_log_deleted_whole_is_tampering_for_every_audit_command(
    vault: tuple[Cli, str], where: str
) -> None:
    """Every vault logs its creation first: an empty log lists nothing, as tampering.

    A tester's finding: with the log deleted whole and no anchor (a replica's copy of the
    vault directory), `audit log` and `export` listed nothing (exit 0) and `recipients`
    said no such record (exit 2), where `audit verify` and `status` said exit 4.
    """
    cli, tracking = vault
    source = _exported_log(cli) if where == "log copy" else ()
    (cli.vault / "log-checkpoint").unlink()
    shutil.rmtree(_log(cli))
    _log(cli).mkdir()  # a copied log directory, emptied
    for command in _reading_commands(tracking):
        line = one_line_error(cli.run(*command, *source), 4)
        assert "log/checkpoint" in line, (command, line)
    assert one_line_error(cli.run("audit", "log", "--record", tracking), 4)


@pytest.mark.parametrize("where", ["vault", "log copy"])
def test_a_checkpoint_put_back_to_an_older_one_is_rollback_for_every_audit_command(
    vault: tuple[Cli, str], where: str
) -> None:
    cli, tracking = vault
    source = _exported_log(cli) if where == "log copy" else ()
    older = sorted((_log(cli) / "checkpoints").iterdir())[-2]
    shutil.copyfile(older, _log(cli) / "checkpoint")
    for command in _reading_commands(tracking):
        line = one_line_error(cli.run(*command, *source), 4)
        assert "rollback" in line, (command, line)


def test_a_copied_log_is_held_against_a_trusted_checkpoint_by_every_reader(
    vault: tuple[Cli, str],
) -> None:
    """A tester's finding: README says to pass `--trusted-checkpoint` for a copied log,
    which only `verify`, `report` and `checkpoint` accepted: `recipients` on an old copy
    answered from the shorter log (a release missing, exit 0)."""
    cli, tracking = vault
    old_copy = cli.root / "old-copy"
    shutil.copytree(_log(cli), old_copy / "log", symlinks=True)
    source = ("--log", str(old_copy), "--key", cli.ok("audit", "key").json()["key"])
    out = str(cli.root / "again")
    cli.ok("get", tracking, "--purpose", "drought planning", "--out", out, who="water")
    kept = cli.root / "kept.checkpoint"
    cli.ok("audit", "checkpoint", "--out", str(kept))
    trusted = ("--trusted-checkpoint", str(kept))
    for command in _reading_commands(tracking):
        line = one_line_error(cli.run(*command, *source, *trusted), 4)
        assert "rollback" in line, (command, line)
        cli.ok(*command, *trusted)  # the vault's own log extends it


def test_a_store_rolled_back_whole_fails_audit_verify_on_the_vault(
    vault: tuple[Cli, str],
) -> None:
    cli, tracking = vault
    objects = cli.vault / "objects"
    saved = cli.root / "objects-before"
    shutil.copytree(objects, saved, symlinks=True)
    out = str(cli.root / "again")
    cli.ok("get", tracking, "--purpose", "drought planning", "--out", out, who="water")
    shutil.rmtree(objects)
    saved.rename(objects)  # a consistent, older log: only the vault's anchor knows
    assert "rollback" in one_line_error(cli.run("status", tracking, who="owner"), 4)
    for command in (("audit", "verify"), ("audit", "log"), ("audit", "report")):
        assert "rollback" in one_line_error(cli.run(*command), 4), command
    verdict = cli.run("--json", "audit", "verify")
    assert verdict.code == 4
    assert verdict.json()["sound"] is False
    # An auditor holding only a copy of the log has no anchor: it verifies (README).
    assert cli.ok("audit", "verify", *_exported_log(cli)).json()["sound"] is True
    # And the audit commands never moved the vault's anchor.
    assert "rollback" in one_line_error(cli.run("status", tracking, who="owner"), 4)


@pytest.mark.parametrize(
    "damage", ["none", "a flipped byte", "no tag", "no size", "its size set back"]
)
def test_a_store_and_anchor_rolled_back_together_are_caught_by_the_index(
    vault: tuple[Cli, str], damage: str
) -> None:
    """The store and log-checkpoint put back together (no anchor to catch it): the index,
    longer than the log, is the vault's evidence, its tag intact or not (the attacker may
    damage it to pass the rollback off as damage); a rebuild refuses to throw it away
    unless told to."""
    cli, tracking = vault
    objects = cli.vault / "objects"
    saved = cli.root / "objects-before"
    shutil.copytree(objects, saved, symlinks=True)
    anchor = (cli.vault / "log-checkpoint").read_bytes()
    cli.ok("principal", "revoke", "water", who="admin")
    shutil.rmtree(objects)
    saved.rename(objects)
    (cli.vault / "log-checkpoint").write_bytes(anchor)
    index = cli.vault / "index.sqlite"
    if damage == "a flipped byte":
        data = bytearray(index.read_bytes())
        data[-100] ^= 1
        index.write_bytes(bytes(data))
    elif damage == "no tag":
        (cli.vault / "index.sqlite.mac").unlink()
    else:
        # A tester's finding: the size deleted or set back, the rows of the revocation
        # kept, the rollback was named an edit, and `index rebuild` erased its evidence.
        with contextlib.closing(sqlite3.connect(index)) as db, db:
            if damage == "no size":
                db.execute("DELETE FROM meta")
            else:
                db.execute("UPDATE meta SET value = CAST(value AS INTEGER) - 1 WHERE key='size'")
    out = str(cli.root / "after-revocation")
    refused = cli.run("get", tracking, "--purpose", "drought planning", "--out", out, who="water")
    assert "the log was rolled back" in one_line_error(refused, 4)
    assert "--accept-rollback" in refused.err
    assert "the log was rolled back" in one_line_error(cli.run("index", "rebuild"), 4)
    assert not (cli.root / "after-revocation").exists()
    cli.ok("index", "rebuild", "--accept-rollback")
    assert cli.ok("audit", "verify").json()["sound"] is True


def _snapshot(cli: Cli, name: str) -> Path:
    """The store, the anchor and the tagged index as they are now."""
    saved = cli.root / name
    saved.mkdir()
    shutil.copytree(cli.vault / "objects", saved / "objects", symlinks=True)
    for part in ("log-checkpoint", "index.sqlite", "index.sqlite.mac"):
        shutil.copy2(cli.vault / part, saved / part)
    return saved


def _put_back(cli: Cli, saved: Path, *parts: str) -> None:
    for part in parts:
        target = cli.vault / part
        if target.is_dir():
            shutil.rmtree(target)
            shutil.copytree(saved / part, target, symlinks=True)
        else:
            shutil.copy2(saved / part, target)


def _fork_index(cli: Cli, real_act: Callable[[], object], fork_act: tuple[str, ...]) -> None:
    """The log's real history gets `real_act`; the index comes from a fork that got the
    admin's `fork_act` at the same position instead (the log, its anchor and the index
    rolled back, one ordinary act, the fork's tagged index kept), then the real log is
    put back under that index. Record objects are never rolled back."""
    before = _snapshot(cli, "before")
    real_act()
    real = _snapshot(cli, "real")
    _put_back(cli, before, "objects/log", "log-checkpoint", "index.sqlite", "index.sqlite.mac")
    cli.ok(*fork_act, who="admin")
    _put_back(cli, real, "objects/log", "log-checkpoint")


def test_an_index_from_a_fork_of_the_log_decides_nothing(vault: tuple[Cli, str]) -> None:
    """A tester's finding: an index tagged by this vault on a fork of its log, the same
    size as the real log, was used as it was: an analyst the log suspends got records
    (and one the log never registered). The index records the log's root at its size;
    every command holds it against the log before deciding anything."""
    cli, tracking = vault
    cli.add_water_analyst("zed", "--level", "federal", "--org", "Federal Water")
    _fork_index(
        cli,
        lambda: cli.ok("principal", "update", "water", "--status", "suspended", who="admin"),
        ("principal", "update", "zed", "--status", "suspended"),
    )
    out = str(cli.root / "released")
    for who in ("water", "zed"):
        refused = cli.run("get", tracking, "--purpose", "drought planning", "--out", out, who=who)
        assert "another history of the log" in one_line_error(refused, 4)
    assert not (cli.root / "released").exists()
    assert "another history" in one_line_error(cli.run("status", tracking, who="office"), 4)
    assert "another history" in one_line_error(cli.run("principal", "list", who="admin"), 4)
    # The vault's own evidence of a fork is not thrown away unless asked.
    assert "another history" in one_line_error(cli.run("index", "rebuild"), 4)
    cli.ok("index", "rebuild", "--accept-rollback")
    lines = cli.ok("principal", "list", who="admin").out.splitlines()
    listed = {p["id"]: p["status"] for p in map(json.loads, lines)}
    assert (listed["water"], listed["zed"]) == ("suspended", "active")
    refused = cli.run("get", tracking, "--purpose", "drought planning", "--out", out, who="water")
    assert refused.code == 3
    assert cli.ok("audit", "verify").json()["sound"] is True


def test_maintenance_on_an_index_from_a_fork_removes_nothing(vault: tuple[Cli, str]) -> None:
    """The same fork made `maintenance` take a logged submission (absent from the fork's
    index) for crash leftovers and delete its data for good: refused before it looks."""
    cli, _tracking = vault
    submitted: list[str] = []

    def submit() -> None:
        document, attachment = str(cli.write_submission()), str(cli.attachment())
        result = cli.ok("submit", document, "--attach", attachment, who="owner")
        submitted.append(str(result.json()["tracking_number"]))

    _fork_index(cli, submit, ("principal", "update", "water", "--training-expires", "2027-01-01"))
    refused = cli.run("maintenance", "--grace-hours", "0")
    assert "another history" in one_line_error(refused, 4)
    cli.ok("index", "rebuild", "--accept-rollback")
    cli.ok("maintenance", "--grace-hours", "0")
    assert cli.ok("status", submitted[0], who="owner").json()["tracking_number"] == submitted[0]
    cli.ok("review", submitted[0], "--out", str(cli.root / "review"), who="office")


def test_a_log_planted_in_a_vault_directory_is_not_read_for_its_store(
    vault: tuple[Cli, str],
) -> None:
    """A tester's finding: `--log VAULTDIR` read a `log/` planted beside vault.json (an
    older copy of the log) without the vault's anchor: a clean audit of a rolled-back
    log. A directory with vault.json is the vault, whatever else it holds."""
    cli, tracking = vault
    shutil.copytree(_log(cli), cli.vault / "log")
    shutil.copytree(cli.vault / "objects" / "policysets", cli.vault / "policysets")
    out = str(cli.root / "second")
    cli.ok("get", tracking, "--purpose", "drought planning", "--out", out, who="water")
    real = cli.ok("audit", "verify").json()
    assert cli.ok("audit", "verify", "--log", str(cli.vault)).json() == real
    listed = cli.ok("audit", "recipients", tracking).out.splitlines()
    assert len(listed) == 2
    assert cli.ok("audit", "recipients", tracking, "--log", str(cli.vault)).out.splitlines() == (
        listed
    )


def test_export_csv_defuses_formulas_as_the_report_does(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    result = cli.run("audit", "export", "--format", "csv")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    purposes = [row["purpose"] for row in rows if row["purpose"]]
    assert purposes == ["'" + _FORMULA], purposes
    for row in rows:
        for value in row.values():
            assert value[:1] not in {"=", "+", "-", "@", "\t", "\r"}, row


@pytest.mark.parametrize("as_file", [False, True])
def test_a_malformed_key_is_bad_input_not_tampering(
    vault: tuple[Cli, str], tmp_path: Path, as_file: bool
) -> None:
    cli, _ = vault
    key = "pcii-vault.local/x+0123abcd+AAAA"
    if as_file:
        path = tmp_path / "log.key"
        path.write_text(key + "\n")
        key = str(path)
    objects = str(cli.vault / "objects")
    for command in (("audit", "verify"), ("audit", "log"), ("audit", "key")):
        line = one_line_error(cli.run(*command, "--log", objects, "--key", key), 2)
        assert "--key" in line, line
