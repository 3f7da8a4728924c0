"""Owner helpers for writing a submission: `pcii submission template`, `pcii schema submission`.

Invariant: both print JSON documents on stdout whether or not `--json` is given (they are
JSON by nature), and touch no vault; `template` writes files only where asked.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from pcii_vault.cli.help import CliTyper
from pcii_vault.cli.output import CliState
from pcii_vault.errors import InputError
from pcii_vault.text import printable

__all__ = ["app", "schema_command"]

app = CliTyper(
    help="Write a submission: a filled example to start from.",
    no_args_is_help=True,
)


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@app.command("template")
def template(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Write the example to this new file instead of stdout.",
            show_default=False,
        ),
    ] = None,
    attachment_out: Annotated[
        Path | None,
        typer.Option(
            "--attachment-out",
            metavar="FILE",
            show_default=False,
            help="Also write the example's PDF attachment to this new file (the example "
            "then describes it under this file's name).",
        ),
    ] = None,
) -> None:
    """Print a filled, fictional example submission (a water utility's assessment)."""
    from pcii_vault.cli.files import new_output, output_key
    from pcii_vault.models.submission import (
        Submission,
        example_attachment_bytes,
        example_submission,
    )

    state: CliState = ctx.obj
    document = example_submission()
    [described] = [a["name"] for a in document["attachments"]]
    if attachment_out is not None and attachment_out.name != described:
        # The example describes the file by the name it is written under, so that the
        # command printed below submits it as it is (when that name is one to submit).
        renamed = copy.deepcopy(document)
        renamed["attachments"][0]["name"] = attachment_out.name
        with contextlib.suppress(ValueError):
            Submission.model_validate(renamed)
            document = renamed
    text = _dump(document)
    if (
        out is not None
        and attachment_out is not None
        and output_key(out) == output_key(attachment_out)
    ):
        raise InputError("--out and --attachment-out name the same file; give two names")
    # Both outputs are refused before either is written, and neither is left half-done.
    with contextlib.ExitStack() as outputs:
        if attachment_out is not None:
            pdf = outputs.enter_context(new_output(attachment_out, "--attachment-out"))
        if out is not None:
            json_file = outputs.enter_context(new_output(out, "--out"))
        if attachment_out is not None:
            _write(pdf, example_attachment_bytes(), "--attachment-out", attachment_out)
        if out is not None:
            _write(json_file, text.encode("utf-8"), "--out", out)
    if attachment_out is not None:
        state.output.note(f"wrote example attachment {attachment_out}")
    if out is None:
        # The template is a JSON document: with --json, the same document on one line.
        typer.echo(json.dumps(document) if state.output.json_mode else text, nl=False)
        if state.output.json_mode:
            typer.echo("")
        return
    # The example describes one attachment: the command must give it (or it is refused).
    attach: Path | str = attachment_out if attachment_out is not None else described
    [named] = [a["name"] for a in document["attachments"]]
    rename = ""
    if attachment_out is None:
        rename = f" (no {described} was written: give --attachment-out, or your own files)"
    elif attachment_out.name != named:
        attach = attachment_out.with_name(named)  # no name to submit under: the example's
        rename = f" (after renaming {_shell(attachment_out)} to {_shell(attach)})"
    state.output.note(
        f"wrote example submission {_shell(out)}; edit it (the attachments it describes are "
        f"given with --attach), then: pcii --as KEYFILE submit {_shell(out)} --attach "
        f"{_shell(attach)}{rename}"
    )
    if state.output.json_mode:
        state.output.result(
            {"out": str(out), "attachment": str(attachment_out) if attachment_out else None}
        )


def _write(tmp: Path, data: bytes, option: str, path: Path) -> None:
    try:
        tmp.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write {option} {path}: {exc.strerror or exc}") from None


def schema_command() -> None:
    """Print the JSON Schema of a submission."""
    from pcii_vault.models.submission import Submission

    typer.echo(_dump(Submission.model_json_schema()), nl=False)


def _shell(path: Path | str) -> str:
    """`path` as a shell word, pasted as one argument (a name with a space, a quote)."""
    return printable(shlex.quote(str(path)))
