"""`pcii --help` and `pcii --version` load no core module (the start-up budget, issue 12).

The figures are in the README (benchmarks/startup.py); this checks the cause, not a time:
which modules a help or version run imports.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

import pcii_vault

HEAVY = (
    "pcii_vault.vault",
    "pcii_vault.core",
    "pcii_vault.crypto",
    "pcii_vault.ledger",
    "pcii_vault.policy",
    "pcii_vault.index",
    "cedarpy",
    "cryptography",
    "nacl",
    "boto3",
    "pydantic",
    "structlog",
    "rich",
    "importlib.metadata",
)

PROBE = """
import json, sys
from pcii_vault.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-h"]])
def test_help_and_version_import_no_core_module(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    modules = json.loads(done.stderr.splitlines()[-1])
    loaded = [m for m in modules if m.startswith(HEAVY)]
    assert loaded == [], loaded


def test_every_public_name_resolves_lazily() -> None:
    for name in pcii_vault.__all__:
        assert getattr(pcii_vault, name) is not None
    assert sorted(dir(pcii_vault)) == sorted(pcii_vault.__all__)


def test_version_is_the_package_metadata() -> None:
    assert pcii_vault.__version__ == importlib.metadata.version("pcii-vault")
