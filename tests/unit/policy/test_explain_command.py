"""The `pcii policy explain` line a denial prints reproduces the denial."""

from __future__ import annotations

import json
import shlex
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
import typer
from policy_facts import NOW, POLICIES, principal, record, request
from typer.testing import CliRunner

from pcii_vault.cli import policy
from pcii_vault.cli.output import CliState, Output
from pcii_vault.policy.denial import explain_command
from pcii_vault.policy.engine import PolicyEngine
from pcii_vault.policy.entities import STATES


@pytest.mark.parametrize(
    ("nda_signed", "no_nda"),
    [
        (None, True),
        (NOW.date() + timedelta(days=1), True),
        (NOW.date(), False),
        (date(2026, 1, 1), False),
    ],
    ids=["none", "signed-tomorrow", "signed-today", "signed-before"],
)
def test_an_nda_the_policies_do_not_count_is_explained_as_none(
    nda_signed: date | None, no_nda: bool
) -> None:
    who = principal(level="state", nda_signed=nda_signed)  # federal users need no NDA
    denied = PolicyEngine.load(POLICIES).decide(who, "retrieve", record(), request())
    assert ("nda-missing" in denied.policy_ids) is no_nda
    line = explain_command(who, "retrieve", record(), request())
    assert ("--no-nda" in line.split()) is no_nda


_RECORD_ACTIONS = (
    "status",
    "withdraw",
    "review",
    "mark-deficient",
    "validate",
    "reject",
    "decontrol",
    "destroy",
    "retrieve",
    "search",
)


@pytest.mark.parametrize("action", _RECORD_ACTIONS)
def test_an_owner_denied_another_organisations_record_gets_a_line_that_replays_it(
    action: str,
) -> None:
    """The line kept `--no-record`: for `withdraw` and `status` (acts on a record) the
    replay failed evaluation ("resource type Vault is not valid") instead of denying."""
    engine = PolicyEngine.load(POLICIES)
    owner = principal(id="owner-2", role="owner", level="private", organisation="Northgrid Power")
    for state in STATES:
        theirs = record(state=state, sector="Chemical", submitter_org="Riverbend Water")
        assert not engine.decide(owner, action, theirs, request()).allowed
        line = explain_command(owner, action, theirs, request())
        args = shlex.split(line)
        assert args[:3] == ["pcii", "policy", "explain"] and "--no-record" not in args
        assert not {state, "Chemical", "Riverbend Water"} & set(args[3:]), line  # told nothing
        replayed = _explain(args[1:])
        assert replayed["errors"] == [], (line, replayed)
        assert replayed["decision"] == "deny", line


def _explain(args: list[str]) -> dict[str, object]:
    """`pcii --json ARGS` for a `policy` command, in this process."""
    root = typer.Typer()

    @root.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = CliState(output=Output(json_mode=True))

    root.add_typer(policy.app, name="policy")
    result = CliRunner().invoke(root, args)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_a_denial_on_the_records_tlp_replays_as_a_denial(tmp_path: Path) -> None:
    """A tester's finding: a forbid on `resource.tlp` denied a TLP:RED record, and the
    printed explain line replayed as a permit (it carried no TLP: explain's default)."""
    directory = tmp_path / "policies"
    shutil.copytree(POLICIES, directory)
    (directory / "tlp.cedar").write_text(
        '// TLP:RED to federal users only\n@id("tlp-red-federal-only")\n'
        "forbid (principal, action, resource is Record)\n"
        'when { resource.tlp == "TLP:RED" && principal.level != "federal" };\n',
        encoding="utf-8",
    )
    engine = PolicyEngine.load(directory)
    state_analyst = principal(level="state", nda_signed=date(2026, 1, 1))
    red = record(tlp="TLP:RED")
    denied = engine.decide(state_analyst, "retrieve", red, request())
    assert denied.policy_ids == ("tlp-red-federal-only",)
    args = shlex.split(explain_command(state_analyst, "retrieve", red, request()))
    replayed = _explain([*args[1:], "--dir", str(directory)])
    assert replayed["decision"] == "deny"
    assert [p["id"] for p in replayed["policies"]] == ["tlp-red-federal-only"]  # type: ignore[attr-defined]


def test_explain_names_the_vaults_own_rule_when_no_policy_file_has_it(tmp_path: Path) -> None:
    """A tester's finding: with principal-status.cedar removed, the explain line of a
    suspended user's denial crashed (`KeyError: 'principal-not-active'`, exit 1)."""
    directory = tmp_path / "policies"
    directory.mkdir()
    shutil.copy(POLICIES / "pcii.cedarschema", directory / "pcii.cedarschema")
    (directory / "all.cedar").write_text(
        '// everything\n@id("permit-all")\npermit (principal, action, resource);\n',
        encoding="utf-8",
    )
    args = ["policy", "explain", "--dir", str(directory), "--action", "status"]
    replayed = _explain([*args, "--status", "suspended"])
    assert replayed["decision"] == "deny"
    [rule] = replayed["policies"]  # type: ignore[misc]
    assert (rule["id"], rule["effect"], rule["source"]) == (
        "principal-not-active",
        "forbid",
        "the vault itself",
    )


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--tlp", "bogus", "is not a TLP label"),
        ("--record-sector", "bogus", "is not a sector"),
        ("--sector", "bogus", "'bogus' is not a sector"),
        ("--org", "\udcff", "--org is not valid UTF-8 text"),
        ("--purpose", "\udcff", "--purpose is not valid UTF-8 text"),
        # A tester's finding: exit 1 (UnicodeEncodeError), and an evaluation error's deny.
        ("--principal-json", '{"role": "\udcff"}', "--principal-json is not valid UTF-8"),
        ("--record-json", '{"state": "\udcff"}', "--record-json is not valid UTF-8"),
        ("--authority", "\udcff", "--authority is not valid UTF-8 text"),
        ("--role", "\udcff", "--role is not valid UTF-8 text"),
    ],
)
def test_explain_refuses_what_no_request_can_carry(option: str, value: str, said: str) -> None:
    """A tester's finding: a TLP or sector no record carries was decided (a permit), and
    text that is no UTF-8 became an evaluation error's deny, exit 0 either way."""
    root = typer.Typer()

    @root.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = CliState(output=Output(json_mode=True))

    root.add_typer(policy.app, name="policy")
    result = CliRunner().invoke(
        root, ["policy", "explain", "--action", "retrieve", option, value, "--dir", str(POLICIES)]
    )
    assert result.exit_code != 0
    assert said in str(result.exception)
