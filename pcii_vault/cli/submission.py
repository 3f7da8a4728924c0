"""Owner helpers for writing a submission: `pcii submission template`, `pcii schema submission`.

Invariant: both print JSON documents on stdout whether or not `--json` is given (they are
JSON by nature), and touch no vault; `template` writes files only where asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pcii_vault.cli.help import CliTyper
from pcii_vault.cli.output import CliState

__all__ = ["app", "schema_command"]

app = CliTyper(
    help="Write a submission: a filled example to start from.",
    no_args_is_help=True,
)


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _write_new(path: Path, data: bytes, option: str) -> None:
    """Write a new file through a temporary beside it: never a partial file at `path`."""
    from pcii_vault.cli.files import new_output

    with new_output(path, option) as tmp:
        tmp.write_bytes(data)


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
            help="Also write the example's PDF attachment to this new file "
            "(name it riverbend-scada-assessment.pdf to submit the example as is).",
        ),
    ] = None,
) -> None:
    """Print a filled, fictional example submission (a water utility's assessment)."""
    from pcii_vault.models.submission import example_attachment_bytes, example_submission

    state: CliState = ctx.obj
    text = _dump(example_submission())
    if attachment_out is not None:
        _write_new(attachment_out, example_attachment_bytes(), "--attachment-out")
        state.output.note(f"wrote example attachment {attachment_out}")
    if out is None:
        # The template is a JSON document: with --json, the same document on one line.
        typer.echo(json.dumps(example_submission()) if state.output.json_mode else text, nl=False)
        if state.output.json_mode:
            typer.echo("")
        return
    _write_new(out, text.encode("utf-8"), "--out")
    # The example describes one attachment: the command must give it (or it is refused).
    [described] = [a["name"] for a in example_submission()["attachments"]]
    attach = attachment_out if attachment_out is not None else described
    state.output.note(
        f"wrote example submission {out}; edit it (the attachments it describes are given "
        f"with --attach), then: pcii --as KEYFILE submit {out} --attach {attach}"
    )
    if state.output.json_mode:
        state.output.result(
            {"out": str(out), "attachment": str(attachment_out) if attachment_out else None}
        )


def schema_command() -> None:
    """Print the JSON Schema of a submission."""
    from pcii_vault.models.submission import Submission

    typer.echo(_dump(Submission.model_json_schema()), nl=False)
