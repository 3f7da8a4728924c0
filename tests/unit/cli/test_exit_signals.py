"""A finished command exits with its own code: an interrupt in its last moments (after
its result was printed, its act logged) does not make it die by the signal, silently."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

_SCRIPT = """
import os, signal, sys
from pcii_vault.cli import app
flush = app._flush_stdout
def interrupted_flush(**notes):
    # The interrupt arrives as the finished command's output is flushed.
    os.kill(os.getpid(), signal.{name})
    flush(**notes)
app._flush_stdout = interrupted_flush
sys.argv = ["pcii", "policy", "check"]
app.main()
"""


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_an_interrupt_after_the_command_finished_keeps_its_exit_code(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(name=name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.strip()  # its result was printed first


def test_main_with_its_own_arguments_gives_the_callers_handlers_back() -> None:
    from pcii_vault.cli.app import main

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit):
        main(["policy", "check"])
    assert signal.getsignal(signal.SIGINT) is before
