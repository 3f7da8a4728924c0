"""The CLI as a user runs it: `python -m pcii_vault ...` in a subprocess, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pcii_vault.models.submission import example_attachment_bytes, example_submission

SECRET = "e2e-unseal-secret"  # noqa: S105 -- a throw-away test vault


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


class Cli:
    """Runs `pcii` against one vault directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.vault = root / "vault"
        self.keys = root / "keys"
        self.keys.mkdir(mode=0o700, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PCII_", "AWS_"))}
        self.env["PCII_VAULT"] = str(self.vault)
        self.env["PCII_UNSEAL_SECRET"] = SECRET

    def key(self, who: str) -> Path:
        return self.keys / f"{who}.key"

    def run(
        self,
        *args: str,
        who: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> Result:
        identity = ["--as", str(self.key(who))] if who else []
        done = subprocess.run(
            [sys.executable, "-m", "pcii_vault", *identity, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            input=stdin,
            timeout=120,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, who: str | None = None) -> Result:
        result = self.run("--json", *args, who=who)
        assert result.code == 0, f"pcii {' '.join(args)} -> {result.code}: {result.err}{result.out}"
        return result

    def init(self) -> None:
        self.ok("init", "--insecure-fast-kdf", "--admin-key-out", str(self.key("admin")))

    def add(self, name: str, role: str, *extra: str) -> None:
        self.ok(
            "principal",
            "add",
            name,
            "--role",
            role,
            "--key-out",
            str(self.key(name)),
            *extra,
            who="admin",
        )

    def write_submission(self, name: str = "assessment.json", **changes: Any) -> Path:
        document = example_submission()
        document.update(changes)
        path = self.root / name
        path.write_text(json.dumps(document, indent=2))
        return path

    def attachment(self, name: str = "riverbend-scada-assessment.pdf") -> Path:
        path = self.root / name
        path.write_bytes(example_attachment_bytes())
        return path


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


WATER = "Water and Wastewater Systems"


@pytest.fixture
def populated(cli: Cli) -> Iterator[Cli]:
    """A vault with an owner, an office user, three analysts and an auditor."""
    cli.init()
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    cli.add("office", "office", "--org", "PCII Program Office", "--training-expires", "2099-01-01")
    cli.add(
        "water",
        "analyst",
        "--level",
        "state",
        "--org",
        "State Water Board",
        "--sector",
        WATER,
        "--training-expires",
        "2099-01-01",
        "--nda-signed",
        "2026-01-01",
    )
    cli.add(
        "fedwater",
        "analyst",
        "--level",
        "federal",
        "--org",
        "EPA Water Security Division",
        "--sector",
        WATER,
        "--training-expires",
        "2099-01-01",
    )
    cli.add(
        "energy",
        "analyst",
        "--level",
        "federal",
        "--org",
        "DHS I&A",
        "--sector",
        "Energy",
        "--training-expires",
        "2099-01-01",
    )
    cli.add("auditor", "auditor", "--org", "PCII Officer", "--training-expires", "2099-01-01")
    yield cli
