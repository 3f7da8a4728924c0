"""The `pcii` command line: parse arguments, call the core, render results.

Invariant: `main()` is the one place that catches `VaultError`; it prints one line to
stderr and exits with the error family's code (0 ok, 1 unexpected, 2 bad input, 3 denied,
4 integrity failure, 5 backend unavailable). Tracebacks only with `--debug`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer

from pcii_vault.cli.output import CliState, Output
from pcii_vault.config import Settings
from pcii_vault.errors import VaultError

__all__ = ["app", "main"]

app = typer.Typer(
    name="pcii",
    help="pcii-vault: submit, validate, release and audit Protected Critical "
    "Infrastructure Information.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Global options may also be written after the subcommand; main() moves them to the front.
_GLOBAL_VALUED = ("--vault", "--as")
_GLOBAL_FLAGS = ("--json", "--debug")


def _print_version(value: bool) -> None:
    if value:
        print(f"pcii-vault {importlib.metadata.version('pcii-vault')}")  # noqa: T201
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    vault: Annotated[
        Path | None,
        typer.Option("--vault", envvar="PCII_VAULT", help="Vault directory.", show_default=False),
    ] = None,
    identity: Annotated[
        Path | None,
        typer.Option(
            "--as",
            envvar="PCII_IDENTITY",
            help="Your identity (private key) file.",
            show_default=False,
        ),
    ] = None,
    json_mode: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    ctx.obj = CliState(
        vault=vault, identity=identity, output=Output(json_mode=json_mode), debug=debug
    )


def _hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options found after the subcommand to the front of `argv`."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_VALUED:
            if "=" in arg:
                front.append(arg)
            else:
                front.extend(argv[i : i + 2])
                i += 1
        elif arg in _GLOBAL_FLAGS:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


@functools.cache
def _register_commands() -> None:
    # Imported here so each audience's module stays independent of the others; cached so
    # calling main() twice in one process does not register every command twice.
    from pcii_vault.cli import commands  # noqa: PLC0415

    commands.register(app)


def _configure_logging(*, debug: bool, log_format: str) -> None:
    # Logs go to stderr (stdout is for results, JSON with --json): warnings and errors only,
    # unless --debug; JSON lines in production (or PCII_LOG_FORMAT=json), key=value on a
    # terminal.
    level = logging.DEBUG if debug else logging.WARNING
    json_logs = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the documented code."""
    args = _hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args
    _register_commands()
    try:
        _configure_logging(debug=debug, log_format=Settings.from_environment().log_format)
        # Standalone mode: typer reports usage errors itself (exit 2) and exits.
        app(args=args, prog_name="pcii")
    except VaultError as exc:
        if debug:
            raise
        print(f"pcii: error: {exc.diagnostics()}", file=sys.stderr)  # noqa: T201
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("pcii: interrupted", file=sys.stderr)  # noqa: T201
        sys.exit(1)
    except Exception as exc:  # the last resort: one line, exit 1
        if debug:
            raise
        print(f"pcii: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(1)
