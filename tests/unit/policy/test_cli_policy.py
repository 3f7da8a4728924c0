"""`pcii policy check/test/explain`: output and exit codes, through a local root app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from policy_facts import POLICIES
from typer.testing import CliRunner

from pcii_vault.cli import policy
from pcii_vault.cli.output import CliState, Output
from pcii_vault.errors import InputError

root = typer.Typer()


@root.callback()
def _root(ctx: typer.Context, json_mode: bool = typer.Option(False, "--json")) -> None:
    ctx.obj = CliState(output=Output(json_mode=json_mode))


root.add_typer(policy.app, name="policy")
runner = CliRunner()


@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    shutil.copytree(POLICIES, directory)
    (directory / "zz-bad.cedar").write_text(
        '// bad\n@id("bad")\npermit (principal, action, resource) when { principal.nope };\n'
        '@id("bad2") @obligations("mark:secret") permit (principal, action, resource);\n'
    )
    return directory


def test_check_default_set_exits_0() -> None:
    result = runner.invoke(root, ["--json", "policy", "check"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["policies"] > 20


def test_check_lists_every_problem_and_exits_2(broken_dir: Path) -> None:
    result = runner.invoke(root, ["policy", "check", str(broken_dir)])
    assert result.exit_code == 2
    # As any error: a summary line on stderr, then one line per problem.
    assert result.stderr.startswith("pcii: error: 2 problems in ")
    assert "  zz-bad.cedar:2: bad:" in result.stderr
    assert "  zz-bad.cedar:4: bad2: unknown obligation 'mark:secret'" in result.stderr
    assert result.stdout == ""


def test_check_of_no_directory_is_one_line(tmp_path: Path) -> None:
    """A tester's finding: one problem took a summary line and the problem's."""
    result = runner.invoke(root, ["policy", "check", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.stderr == f"pcii: error: {tmp_path / 'nowhere'}: not a directory\n"
    result = runner.invoke(root, ["--json", "policy", "check", str(tmp_path / "nowhere")])
    assert json.loads(result.stdout)["error"] == f"{tmp_path / 'nowhere'}: not a directory"


def test_check_json_reports_problems(broken_dir: Path) -> None:
    result = runner.invoke(root, ["--json", "policy", "check", str(broken_dir)])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert {p["line"] for p in data["problems"]} == {2, 4}
    # As every --json error: its exit code and a one-line error in the one object.
    assert data["exit_code"] == 2 and data["error"].startswith("2 problems in ")


def test_test_shipped_cases_exit_0() -> None:
    result = runner.invoke(root, ["--json", "policy", "test"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["failed"] == 0
    assert data["passed"] == len(data["cases"]) > 30


def test_test_failing_case_exits_2(tmp_path: Path) -> None:
    shipped = json.loads((POLICIES / "tests" / "default.json").read_text())
    shipped["cases"] = [
        {
            "name": "auditor retrieves (wrong)",
            "principal": {"role": "auditor"},
            "action": "retrieve",
            "expect": {"decision": "permit"},
        }
    ]
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(shipped))
    result = runner.invoke(root, ["policy", "test", str(path)])
    assert result.exit_code == 2
    assert "FAIL  auditor retrieves (wrong)" in result.stdout


def test_explain_names_the_forbid_and_its_source() -> None:
    result = runner.invoke(
        root,
        [
            "--json",
            "policy",
            "explain",
            "--action",
            "retrieve",
            "--level",
            "local",
            "--purpose",
            "patrol planning",
            "--use",
            "homeland-security",
            "--now",
            "2026-06-01T12:00:00Z",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["decision"] == "deny"
    assert [p["id"] for p in data["policies"]] == ["sltt-use-limited"]
    assert data["policies"][0]["source"].startswith("use-restrictions.cedar:")
    assert "29.8" in data["policies"][0]["rule"]


def test_explain_permit_lists_obligations() -> None:
    result = runner.invoke(
        root,
        [
            "policy",
            "explain",
            "--action",
            "retrieve",
            "--purpose",
            "grid study",
            "--use",
            "infrastructure-protection",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "decision: permit" in result.stdout
    assert "analyst-retrieve-federal" in result.stdout
    assert "obligations: mark:pcii cover-sheet watermark:recipient" in result.stdout


def test_explain_default_deny_says_so() -> None:
    result = runner.invoke(
        root,
        [
            "--json",
            "policy",
            "explain",
            "--action",
            "validate",
            "--state",
            "received",
            "--role",
            "analyst",
        ],
    )
    data = json.loads(result.stdout)
    assert data["decision"] == "deny"
    assert data["policies"] == []
    assert "no permit policy applies" in data["why"]
    # And why none does, as the vault's denial says it (a tester's finding).
    assert "an analyst cannot validate; only: office" in data["why"]


def test_explain_of_a_state_denial_names_the_state() -> None:
    args = ["--json", "policy", "explain", "--action", "validate", "--role", "office"]
    result = runner.invoke(root, [*args, "--state", "validated"])
    why = json.loads(result.stdout)["why"]
    assert "a validated record cannot be given 'validate'" in why


@pytest.mark.parametrize("value", ["[1]", '"x"', "null", "true"])
def test_a_json_option_that_is_json_but_no_object_is_refused_as_such(value: str) -> None:
    """`--record-json '[1]'` was taken for a file name ("cannot read [1]")."""
    result = runner.invoke(
        root, ["policy", "explain", "--action", "retrieve", "--record-json", value]
    )
    # Raised to `pcii`'s main, which prints it as one line, exit 2.
    assert isinstance(result.exception, InputError), result.output
    assert str(result.exception).startswith("--record-json: give a JSON object")


def test_a_file_whose_name_looks_like_json_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("[record].json").write_text('{"state": "validated"}')
    result = runner.invoke(
        root, ["policy", "explain", "--action", "retrieve", "--record-json", "[record].json"]
    )
    # Read and parsed: what is refused now is the record's missing facts, not the name.
    assert isinstance(result.exception, InputError)
    assert "bad request attributes" in str(result.exception), result.exception
