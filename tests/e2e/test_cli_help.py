"""Every command's help works and follows the conventions (issue 12, items 1 and 6).

Help is plain text (never Rich markup), `-h` and `--help` both work, every option and
argument has help text, placeholders are upper-case words (no `<str>`, `{name}` or
`<bool>`), and one concept has one option name.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import typer
from typer import _click

from pcii_vault.cli.app import _register_commands, app, main
from pcii_vault.cli.office import GROUNDS
from pcii_vault.models.reference import reference_data

Entry = tuple[tuple[str, ...], _click.Command]


def _commands() -> Iterator[Entry]:
    _register_commands()
    root = typer.main.get_command(app)

    def walk(
        path: tuple[str, ...], command: _click.Command
    ) -> Iterator[tuple[tuple[str, ...], _click.Command]]:
        yield path, command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk((*path, name), sub)

    yield from walk((), root)


COMMANDS = list(_commands())
IDS = [" ".join(path) or "pcii" for path, _ in COMMANDS]


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*args])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    assert captured.err == ""
    return captured.out


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_and_h_work_on_every_command(
    capsys: pytest.CaptureFixture[str], path: tuple[str, ...], command: _click.Command
) -> None:
    text = _help(capsys, *path, "--help")
    assert text.startswith("Usage: pcii")
    assert _help(capsys, *path, "-h") == text
    # Placeholders are upper-case words; flags show no value.
    assert not re.search(r"<[a-z]|\{[a-z]|\{[A-Z]|<bool>", text), text


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_option_and_argument_has_help(path: tuple[str, ...], command: _click.Command) -> None:
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        assert getattr(param, "help", None), f"pcii {' '.join(path)}: {param.name} has no help"
        if param.param_type_name == "option" and not getattr(param, "is_flag", False):
            assert param.metavar and param.metavar == param.metavar.upper(), (
                f"pcii {' '.join(path)} {param.opts[0]}: placeholder {param.metavar!r}"
            )


def test_one_name_per_concept() -> None:
    names = {opt for _, command in COMMANDS for param in command.params for opt in param.opts}
    for wrong, right in (
        ("--organisation", "--org"),
        ("--sectors", "--sector"),
        ("--output", "--out"),
    ):
        assert wrong not in names, f"use {right}, not {wrong}"


def test_reject_ground_lists_its_choices(capsys: pytest.CaptureFixture[str]) -> None:
    grounds = [g.id for g in reference_data().non_validation_grounds]
    assert list(GROUNDS) == grounds
    text = "".join(_help(capsys, "reject", "--help").split())  # help wraps at hyphens
    for ground in grounds:
        assert ground in text


def test_help_is_plain_text_through_the_installed_entry_point() -> None:
    """The text that once crashed as Rich markup is printed as written."""
    done = subprocess.run(
        [sys.executable, "-m", "pcii_vault", "init", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "s3://BUCKET[/PREFIX]" in done.stdout
