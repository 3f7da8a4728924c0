"""`pcii` commands as separate processes that skip the interpreter's start-up.

The suite runs a few thousand commands; started as `python -m pcii_vault`, each spent most
of its time importing the same modules again. Here every command is still its own process,
with its own arguments, environment, working directory, standard streams and exit code,
but it is forked from a multiprocessing fork server that imported the CLI and the core
once. Only the start-up and the imports are shared: from `main()` on, the command runs as
in a new interpreter (and its `atexit` functions run before it exits).

`PCII_TEST_EXEC=1` runs every command in a new interpreter instead. Commands that start a
server (`serve`) always do, as do tests that depend on the start-up itself.
"""

from __future__ import annotations

import atexit
import io
import locale
import multiprocessing
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# What the fork server imports once: the CLI, its commands, the core and the HTTP client.
_PRELOAD = [
    "pcii_vault.cli.app",
    "pcii_vault.cli.commands",
    "pcii_vault.vault",
    "pcii_vault.service.client",
]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(_PRELOAD)
_MAIN = str(Path(__file__).resolve().parent.parent / "pcii_vault" / "__main__.py")


@dataclass(frozen=True)
class Finished:
    """A command's exit code and what it wrote (as `subprocess.run(text=True)` gives them)."""

    returncode: int
    stdout: str
    stderr: str


def run_pcii(
    args: list[str],
    *,
    env: dict[str, str],
    stdin: str | None = None,
    timeout: float = 120,
) -> Finished:
    """`python -m pcii_vault *args` with `env`; raises `subprocess.TimeoutExpired`."""
    if os.environ.get("PCII_TEST_EXEC") or "serve" in args:
        done = subprocess.run(
            [sys.executable, "-m", "pcii_vault", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            input=stdin,
            timeout=timeout,
        )
        return Finished(done.returncode, done.stdout, done.stderr)
    with tempfile.TemporaryDirectory(prefix="pcii-command-") as scratch:
        streams = [Path(scratch, name) for name in ("stdin", "stdout", "stderr")]
        streams[0].write_text(stdin or "")
        for path in streams[1:]:
            path.touch()
        process = _CONTEXT.Process(
            target=_command,
            args=(list(args), dict(env), str(Path.cwd()), *(str(p) for p in streams)),
        )
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["pcii", *args], timeout)
        return Finished(process.exitcode, streams[1].read_text(), streams[2].read_text())


def _command(args: list[str], env: dict[str, str], cwd: str, *streams: str) -> None:
    """In the forked process: become the command, then run the CLI's `main()`."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in enumerate(streams):
        opened = os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        os.dup2(opened, fd)
        os.close(opened)
    # The streams a new interpreter would open on these descriptors (not a terminal).
    encoding = locale.getencoding()
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=encoding)  # noqa: SIM115
    sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding=encoding)  # noqa: SIM115
    sys.stderr = io.TextIOWrapper(
        open(2, "wb", closefd=False),  # noqa: SIM115
        encoding=encoding,
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.argv = [_MAIN, *args]
    from pcii_vault.cli.app import main

    try:
        main()
    finally:
        atexit._run_exitfuncs()  # what interpreter shutdown would run
