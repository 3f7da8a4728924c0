"""The `pcii` command line: parse arguments, call the core, render results.

Invariant: `main()` is the one place that catches `VaultError`; it prints one line to
stderr and exits with the error family's code (0 ok, 1 unexpected, 2 bad input, 3 denied,
4 integrity failure, 5 backend unavailable). Tracebacks only with `--debug`.
"""

from __future__ import annotations

import errno
import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from pcii_vault.cli.help import CliTyper
from pcii_vault.cli.output import CliState, Output, ResultNotWrittenError
from pcii_vault.errors import InputError, VaultError
from pcii_vault.text import printable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from typer import _click

__all__ = ["app", "configure_logging", "main"]

app = CliTyper(
    name="pcii",
    help="pcii-vault: submit, validate, release and audit Protected Critical "
    "Infrastructure Information.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help text is plain text (see cli/help.py); plain help needs no rich import.
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Global options may also be written after the subcommand; main() moves them to the front.
_GLOBAL_VALUED = ("--vault", "--as", "--ca")
_GLOBAL_FLAGS = ("--json", "--debug")


def _print_version(ctx: typer.Context, value: bool) -> None:
    if value:
        from pcii_vault import __version__ as version  # not importlib.metadata: 20-90 ms

        state = ctx.obj
        if isinstance(state, CliState) and state.output.json_mode:
            state.output.result({"name": "pcii-vault", "version": version})
        else:
            print(f"pcii-vault {version}")  # noqa: T201
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    vault: Annotated[
        str | None,
        typer.Option(
            "--vault",
            envvar="PCII_VAULT",
            metavar="DIR|URL",
            help="Vault directory, or the https://HOST:PORT of a `pcii serve`.",
            show_default=False,
        ),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            envvar="PCII_CA",
            metavar="FILE",
            help="The server's certificate (or its CA) to trust, for an https --vault.",
            show_default=False,
        ),
    ] = None,
    identity: Annotated[
        Path | None,
        typer.Option(
            "--as",
            envvar="PCII_IDENTITY",
            metavar="KEYFILE",
            help="Your identity (private key) file.",
            show_default=False,
        ),
    ] = None,
    json_mode: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (errors too).")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Debug logs and tracebacks (the exit code is the same)."),
    ] = False,
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
    # Read once at the edge, and only when a command runs (`pcii --help` reads nothing).
    from pcii_vault.config import Settings

    _configure_logging(debug=debug, log_format=Settings.from_environment().log_format)
    directory, server = _vault_location(vault)
    given = ctx.obj if isinstance(ctx.obj, CliState) else CliState()
    ctx.obj = CliState(
        vault=directory,
        server=server,
        ca=ca,
        identity=identity,
        output=Output(json_mode=json_mode),
        debug=debug,
        already_done=given.already_done,  # `main` reads it after an interrupt
    )


def _vault_location(value: str | None) -> tuple[Path | None, str | None]:
    """`--vault` as a directory, or as the URL of a vault server."""
    from pcii_vault.errors import ConfigError

    if value is None or not value:
        return None, None
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme == "https":
        return None, _server_url(value)
    if scheme:
        raise ConfigError(f"--vault {value}: a vault server is reached over https:// only")
    return Path(value), None


def _server_url(value: str) -> str:
    """`https://HOST[:PORT]` checked: a host, a port in 1..65535, nothing unparsable.

    Raises:
        ConfigError: naming what is wrong with the URL (not a "connection failed" later).
    """
    from urllib.parse import urlsplit

    from pcii_vault.errors import ConfigError

    url = value.rstrip("/")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--vault {value}: not a valid URL ({exc})") from None
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"--vault {value}: the URL names no host (https://HOST:PORT)")
    if port == 0:
        raise ConfigError(f"--vault {value}: the port must be 1 to 65535")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"--vault {value}: a vault URL carries no user name or password")
    if parts.query or parts.fragment:
        raise ConfigError(f"--vault {value}: a vault URL has no query or fragment")
    if parts.path:
        # The routes are at the server's root, and each request signs its whole target.
        raise ConfigError(f"--vault {value}: a vault URL has no path (https://HOST:PORT)")
    return url


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
    from pcii_vault.cli import commands

    commands.register(app)


def _configure_logging(*, debug: bool, log_format: str) -> None:
    # Logs go to stderr (stdout is for results, JSON with --json): warnings and errors only,
    # unless --debug; JSON lines in production (or PCII_LOG_FORMAT=json), key=value on a
    # terminal. structlog is imported here, not at start-up: `pcii --help` never logs.
    import logging

    json_logs = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    configure_logging(level=logging.DEBUG if debug else logging.WARNING, json_logs=json_logs)


def configure_logging(*, level: int, json_logs: bool) -> None:
    """Structlog to stderr at `level`: JSON lines, or key=value for a person."""
    import structlog

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
        # sys.stderr is looked up at each log call, not bound once: a caller that swaps it
        # (a test harness, an embedding program) must not leave a closed stream behind.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def _stderr_logger(*_args: object) -> Any:  # noqa: ANN401 -- structlog's WrappedLogger
    import structlog

    # One write per line: lines of several processes (a server's workers) never mix.
    return structlog.WriteLogger(sys.stderr)


def _fail(message: str, code: int, *, json_mode: bool, problems: tuple[str, ...] = ()) -> NoReturn:
    """Report an error: one JSON object on stdout with --json, else `pcii: error:` lines."""
    message = _bytes_shown(_shortened(message))
    if json_mode:
        data: dict[str, Any] = {"error": message.splitlines()[0], "exit_code": code}
        if problems:
            data["problems"] = [_problem(p) for p in problems]
        try:
            sys.stdout.write(json.dumps(data, sort_keys=True) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            _reader_went_away()
        except (OSError, ValueError):
            # Stdout full or unusable: the error goes to stderr, the code stays.
            print(f"pcii: error: {data['error']}", file=sys.stderr)  # noqa: T201
    else:
        from pcii_vault.text import printable

        # A name or purpose quoted in the message is the user's text: a right-to-left
        # override or an escape sequence in it must not rewrite the terminal's line.
        print(f"pcii: error: {printable(message, keep_newlines=True)}", file=sys.stderr)  # noqa: T201
    sys.exit(code)


def _bytes_shown(message: str) -> str:
    r"""Undecodable bytes quoted in `message` as the bytes they were (0xff as `\xff`).

    The command line turns a byte that is no UTF-8 into a surrogate escape, which a
    quoted value shows in Python's words (`\udcff`), not as the user's byte.
    """
    import re

    message = re.sub(r"\\udc([89a-f][0-9a-f])", r"\\x\1", message)
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c for c in message)


_LONGEST_ERROR = 1000  # characters of an error line: a pasted file is not echoed whole


def _shortened(message: str) -> str:
    """Each line of `message` cut in its middle past `_LONGEST_ERROR` characters.

    An error quoting the user's value (a 5,000-character organisation) keeps what it says
    before and after the value; the value is cut.
    """
    lines = []
    for line in message.splitlines() or [message]:
        if len(line) <= _LONGEST_ERROR:
            lines.append(line)
            continue
        cut = len(line) - _LONGEST_ERROR + 40
        head = (_LONGEST_ERROR - 40) * 2 // 3
        lines.append(f"{line[:head]}[... {cut} characters ...]{line[head + cut :]}")
    return "\n".join(lines)


def _problem(text: str) -> dict[str, str]:
    """`"findings[0].severity: must be one of ..."` as `{"path": ..., "message": ...}`."""
    path, sep, message = text.partition(": ")
    if not sep or " " in path:
        return {"path": "", "message": text}
    return {"path": path, "message": message}


# How typer's conversion names a value of bytes the command line could not decode.
_UNDECODED = "Input should be a valid string, unable to parse raw data as a unicode string"


def _usage_message(exc: _click.ClickException) -> str:
    message = exc.format_message().rstrip(".").replace(_UNDECODED, "not valid UTF-8 text")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        return f"{message} (see '{ctx.command_path} --help')"
    return message


def _missing_command(exc: _click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "pcii"
    return f"Missing command (see '{path} --help')"


def _wants_help(exc: _click.ClickException) -> bool:
    return type(exc).__name__ == "NoArgsIsHelpError"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the program is, so it unwinds as Ctrl-C always did.

    A `KeyboardInterrupt`: every clean-up written for an interrupt (an upload removing
    the objects it wrote, a release removing its staging directory) runs for SIGTERM too.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# The signals this run received, in order (typer turns the exception into exit 130).
_RECEIVED: list[int] = []


def _raise_interrupted(signum: int, _frame: object) -> None:
    _RECEIVED.append(signum)
    raise Interrupted(signum)


def _interrupt_on_signals() -> dict[int, Any]:
    """Make SIGINT and SIGTERM raise `Interrupted` in the main thread; the old handlers.

    Without it SIGTERM kills the process where it stands: no error line, and a half-sent
    submission's objects left behind. Off the main thread (an embedding program) nothing
    changes: only the main thread may set handlers.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict[int, Any], *, exiting: bool) -> None:
    """Put the old handlers back; or, when the process is about to exit, ignore them.

    Once the command has finished (its result printed, its act logged), an interrupt in
    the last moments (flushing, closing connections) must not turn a success into death
    by signal, with no line said. A caller of `main` with its own `argv` (tests, an
    embedding program) gets its handlers back.
    """
    import signal

    for signum, handler in previous.items():
        signal.signal(signum, signal.SIG_IGN if exiting else handler)


def _fail_interrupted(*, json_mode: bool, notes: Sequence[str] = ()) -> NoReturn:
    """Exit 128 + the signal's number (130 Ctrl-C, 143 SIGTERM), as a shell reports it.

    `notes` say what the interrupted command had done that the user must know (a
    submission handed to the vault: its tracking number).
    """
    import signal

    signum = _RECEIVED[0] if _RECEIVED else signal.SIGINT
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    _fail(" ".join([what, *notes]), 128 + signum, json_mode=json_mode)


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


# Options naming a file or directory: an empty value would be the current directory.
_PATH_OPTIONS = frozenset(
    {
        "--admin-key-out", "--as", "--attach", "--attachment-out", "--ca", "--csv", "--dir",
        "--html", "--key-out", "--log", "--out", "--pdf", "--principal-json", "--proofs",
        "--receipt-out", "--record-json", "--share", "--shares-out", "--tls-cert",
        "--tls-key", "--trusted-checkpoint", "--vault",
    }
)  # fmt: skip


# Options naming a file to write: a value ending in "/" names a folder, which the path
# type drops silently (`--html reports/` wrote a file named `reports`). `--out` is a
# folder for a release (`get`, `review`) and a file everywhere else.
_FILE_OUTPUTS = frozenset(
    {"--admin-key-out", "--attachment-out", "--html", "--key-out", "--pdf", "--receipt-out"}
)
_FOLDER_OUT_COMMANDS = frozenset({"get", "review"})


def _refuse_empty_paths(args: list[str]) -> None:
    """Refuse `--out ''` and its kind, and a file output given as a folder.

    An empty path would silently be the current directory; `--html reports/` a file
    named `reports`.

    Raises:
        InputError: a path option with an empty value, or a file's ending in "/".
    """
    out_is_file = not _FOLDER_OUT_COMMANDS & set(args)
    for at, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if name not in _PATH_OPTIONS:
            continue
        given = value if equals else (args[at + 1] if at + 1 < len(args) else None)
        if given is not None and not given.strip():
            raise InputError(f"{name} is empty: give a path")
        is_file = name in _FILE_OUTPUTS or (name == "--out" and out_is_file)
        if given is not None and is_file and given.endswith("/"):
            raise InputError(f"{name} {given} names a folder: give the file's name")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the documented code.

    `--debug` adds logs and tracebacks but never changes the exit code.
    """
    from typer import _click

    args = _hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    options = args[: args.index("--")] if "--" in args else args
    debug = "--debug" in options
    json_mode = "--json" in options
    _register_commands()
    _RECEIVED.clear()
    if sys.stdout is None:  # started with stdout closed (`>&-`): nowhere to answer
        _fail("cannot write the output: standard output is closed", 2, json_mode=False)
    state = CliState(output=Output(json_mode=json_mode), debug=debug)
    previous = _interrupt_on_signals()
    try:
        _refuse_empty_paths(options)
        code = app(args=args, prog_name="pcii", standalone_mode=False, obj=state)
    except (BrokenPipeError, SystemExit) as exc:
        _exiting(exc)
    except VaultError as exc:
        if debug:
            _print_traceback()
        # What the client noted on the error (an act that may be logged all the same),
        # unless the command already said it.
        notes = [n for n in getattr(exc, "__notes__", ()) if n not in state.already_done]
        _fail(
            " ".join([exc.diagnostics(), *notes, *state.already_done]),
            exc.exit_code,
            json_mode=json_mode,
            problems=tuple(str(p) for p in getattr(exc, "problems", ())),
        )
    except _click.ClickException as exc:
        if _wants_help(exc) and not json_mode:
            # `pcii principal` alone: its help (as -h), and a usage error's exit 2 (as with
            # --json): a script that forgot the command does not go on as if it had run.
            sys.stdout.write(exc.format_message() + "\n")
            sys.exit(2)
        if _wants_help(exc):  # with --json, stdout is for JSON: the error as JSON
            _fail(_missing_command(exc), 2, json_mode=json_mode)
        _fail(" ".join(_usage_message(exc).split()), 2, json_mode=json_mode)
    except KeyboardInterrupt:
        _fail_interrupted(json_mode=json_mode, notes=state.already_done)
    except typer.Abort as exc:  # at a prompt: end of input (Ctrl-D), or Ctrl-C
        _fail_at_prompt(exc, json_mode=json_mode, notes=state.already_done)
    except Exception as exc:  # noqa: BLE001 -- the last resort: one line, exit 1
        _fail_unexpected(exc, json_mode=json_mode, debug=debug, notes=state.already_done)
    finally:
        _restore_signals(previous, exiting=argv is None)
    if _RECEIVED:  # typer caught the interrupt (and made it exit 130): say so
        _fail_interrupted(json_mode=json_mode, notes=state.already_done)
    _flush_stdout(notes=state.already_done)
    sys.exit(code if isinstance(code, int) else 0)


def _fail_at_prompt(exc: typer.Abort, *, json_mode: bool, notes: Sequence[str]) -> NoReturn:
    """End of input (Ctrl-D) at a prompt is the user's answer (exit 2); Ctrl-C is 130."""
    if isinstance(exc.__cause__, EOFError):
        _fail("end of input at a prompt: nothing was typed", 2, json_mode=json_mode)
    _fail_interrupted(json_mode=json_mode, notes=notes)


def _fail_unexpected(
    exc: Exception, *, json_mode: bool, debug: bool, notes: Sequence[str] = ()
) -> NoReturn:
    """One line: exit 2 when a write ran out of space (the user's to change), else 1.

    `notes`: what the command had done all the same (a submission logged: its number).
    """
    if debug:
        _print_traceback()
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        # Only a path the user gave (or one made from it) can be too long for the system.
        named = f": {printable(str(exc.filename))}" if exc.filename else ""
        _fail(f"file name too long{named}", 2, json_mode=json_mode)
    full = _out_of_space(exc)
    if full is not None:
        if not notes and isinstance(exc, ResultNotWrittenError):
            notes = [_DONE_ALL_THE_SAME]
        _fail(" ".join([f"cannot write the output: {full}", *notes]), 2, json_mode=json_mode)
    _fail(f"unexpected error: {type(exc).__name__}: {exc}", 1, json_mode=json_mode)


def _out_of_space(exc: BaseException) -> str | None:
    """Why a write failed for want of space (full disk, quota, file size limit), or None.

    SQLite reports it as "disk I/O error" or "database or disk is full" (the auditor's
    report builds its tables in a temporary database).
    """
    import errno
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}:
        return exc.strerror or str(exc)
    if isinstance(exc, sqlite3.OperationalError) and str(exc) in {
        "disk I/O error",
        "database or disk is full",
    }:
        return f"{exc} (no space left?)"
    return None


_DONE_ALL_THE_SAME = "(the command itself was done: check before running it again)"


def _flush_stdout(*, notes: Sequence[str] = ()) -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_went_away()
    except OSError as exc:
        if not _out_of_space(exc):
            raise
        # The command returned: whatever it did is done, only its answer is lost.
        done = notes or [_DONE_ALL_THE_SAME]
        line = " ".join([f"cannot write the output: {exc.strerror}", *done])
        print(f"pcii: error: {line}", file=sys.stderr)  # noqa: T201
        sys.exit(2)


def _exiting(exc: BrokenPipeError | SystemExit) -> NoReturn:
    """A command stops early: stdout's reader left (typer exits 1 for it), or it exits."""
    if isinstance(exc, BrokenPipeError) or isinstance(exc.__context__, BrokenPipeError):
        _reader_went_away()
    raise exc


def _reader_went_away() -> NoReturn:
    """Stdout's reader closed the pipe (`pcii audit log | head -1`): stop, as SIGPIPE would.

    Exit 141 (128 + SIGPIPE) without a message, as other commands in a pipeline do; stdout
    is pointed at /dev/null first so that the interpreter's last flush cannot fail again.
    """
    import os
    import signal

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(128 + signal.SIGPIPE)
