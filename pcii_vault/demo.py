"""`make demo`: the whole PCII story on a fresh, throw-away vault, through the real CLI.

Every step is a `pcii` command, printed before it runs, exactly as a user would type it;
the data is fictional (a water utility's vulnerability assessment). The vault lives in a
temporary directory that is removed at the end (set PCII_DEMO_KEEP=1 to keep it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pcii_vault.models.submission import example_attachment_bytes, example_submission

_console = Console(highlight=False)
DEMO_SECRET = "demo-unseal-secret-not-for-production"  # noqa: S105 -- a throw-away demo vault


class _Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.vault = root / "vault"
        self.keys = root / "keys"
        self.keys.mkdir(mode=0o700)
        self.env = {
            **os.environ,
            "PCII_VAULT": str(self.vault),
            "PCII_UNSEAL_SECRET": DEMO_SECRET,
        }
        self.summary: list[tuple[str, str, str]] = []

    def pcii(
        self, *args: str, who: str | None = None, expect: int = 0, show: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """Run one CLI command as `who`, show it, and return its --json result."""
        identity = ["--as", str(self.keys / f"{who}.key")] if who else []
        argv = ["pcii", *identity, "--json", *args]
        shown = " ".join(shlex.quote(a) for a in argv).replace(str(self.root) + "/", "")
        _console.print(f"[bold cyan]$ {escape(shown)}[/]")
        done = subprocess.run(  # noqa: S603 -- our own CLI, fixed arguments
            [sys.executable, "-m", "pcii_vault", *argv[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != expect:
            _console.print(done.stdout, done.stderr, markup=False)
            raise SystemExit(f"demo step failed: exit {done.returncode}, expected {expect}")
        if done.stderr.strip():
            _console.print(f"  [yellow]{escape(done.stderr.strip())}[/]", markup=True)
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        result: dict[str, Any] = rows[0] if len(rows) == 1 else {"rows": rows}
        if expect and isinstance(result.get("error"), str):  # a refusal: its one line, why
            _console.print(f"  [yellow]→ exit {expect}: {escape(result['error'])}[/]", markup=True)
        if show:
            for key in show:
                _console.print(f"  [green]→ {escape(f'{key}: {result.get(key)}')}[/]", markup=True)
        return result

    def step(self, title: str) -> None:
        _console.rule(f"[bold]{title}")


def _in_days(days: int) -> str:
    """A date relative to today: training stays current and NDAs signed whenever it runs."""
    return (date.today() + timedelta(days=days)).isoformat()


def _users(demo: _Demo) -> None:
    demo.step("Administrator registers the users")
    demo.pcii(
        "principal",
        "add",
        "rmwa-owner",
        "--role",
        "owner",
        "--org",
        "Riverbend Municipal Water Authority",
        "--level",
        "private",
        "--key-out",
        str(demo.keys / "rmwa-owner.key"),
        who="admin",
    )
    demo.pcii(
        "principal",
        "add",
        "office-lee",
        "--role",
        "office",
        "--org",
        "CISA PCII Program Office",
        "--level",
        "federal",
        "--training-expires",
        _in_days(300),
        "--key-out",
        str(demo.keys / "office-lee.key"),
        who="admin",
    )
    demo.pcii(
        "principal",
        "add",
        "analyst-diaz",
        "--role",
        "analyst",
        "--org",
        "State Water Resources Control Board",
        "--level",
        "state",
        "--sector",
        "Water and Wastewater Systems",
        "--training-expires",
        _in_days(210),
        "--nda-signed",
        _in_days(-45),
        "--key-out",
        str(demo.keys / "analyst-diaz.key"),
        who="admin",
    )
    demo.pcii(
        "principal",
        "add",
        "analyst-chen",
        "--role",
        "analyst",
        "--org",
        "DHS Office of Intelligence and Analysis",
        "--level",
        "federal",
        "--sector",
        "Energy",
        "--training-expires",
        _in_days(210),
        "--key-out",
        str(demo.keys / "analyst-chen.key"),
        who="admin",
    )
    demo.pcii(
        "principal",
        "add",
        "auditor-okafor",
        "--role",
        "auditor",
        "--org",
        "DHS PCII Officer",
        "--level",
        "federal",
        "--training-expires",
        _in_days(210),
        "--key-out",
        str(demo.keys / "auditor-okafor.key"),
        who="admin",
    )


def run(root: Path) -> None:
    """Play the scenario in `root`."""
    demo = _Demo(root)
    started = time.monotonic()
    demo.step("Create a vault (local directory, filesystem store)")
    init = demo.pcii(
        "init", "--admin-key-out", str(demo.keys / "admin.key"), show=("vault_id", "log_key")
    )
    demo.summary.append(("init", "vault " + init["vault_id"], "ok"))
    _users(demo)
    demo.summary.append(("principal add x5", "owner, office, 2 analysts, auditor", "ok"))

    demo.step("Owner submits a vulnerability assessment with an attachment")
    assessment = root / "assessment.json"
    assessment.write_text(json.dumps(example_submission(), indent=2))
    attachment = root / "riverbend-scada-assessment.pdf"
    attachment.write_bytes(example_attachment_bytes())
    sub = demo.pcii(
        "submit",
        str(assessment),
        "--attach",
        str(attachment),
        "--receipt-out",
        str(root / "receipt.json"),
        who="rmwa-owner",
        show=("tracking_number", "log_index"),
    )
    tracking = sub["tracking_number"]
    demo.summary.append(("submit", tracking, "received"))
    demo.pcii(
        "receipt",
        "verify",
        str(root / "receipt.json"),
        show=("verified", "log_index", "checkpoint_size"),
    )
    demo.summary.append(("receipt verify", tracking, "inclusion proven"))

    demo.step("Program office reviews and validates")
    demo.pcii(
        "review",
        tracking,
        "--out",
        str(root / "office-review"),
        who="office-lee",
        show=("files", "access_index"),
    )
    demo.pcii("validate", tracking, who="office-lee", show=("state",))
    demo.summary.append(("validate", tracking, "validated"))

    demo.step("An analyst with need to know retrieves it: permitted, marked")
    got = demo.pcii(
        "get",
        tracking,
        "--purpose",
        "assess drought-season pump station risk",
        "--use",
        "infrastructure-protection",
        "--out",
        str(root / "diaz"),
        who="analyst-diaz",
        show=("obligations", "access_index"),
    )
    marked = (Path(got["directory"]) / "document.md").read_text()
    _console.print("  " + marked.splitlines()[0])
    demo.summary.append(("get (water analyst)", tracking, "permitted, marked"))

    demo.step("An analyst without need to know for the sector: denied, and logged")
    demo.pcii(
        "get",
        tracking,
        "--purpose",
        "curiosity",
        "--out",
        str(root / "chen"),
        who="analyst-chen",
        expect=3,
    )
    demo.summary.append(("get (energy analyst)", tracking, "denied (exit 3)"))

    demo.step("A second submission, withdrawn by its owner before the decision")
    bare = root / "assessment-no-attachments.json"
    bare.write_text(json.dumps({**example_submission(), "attachments": []}, indent=2))
    second = demo.pcii("submit", str(bare), who="rmwa-owner", show=("tracking_number",))[
        "tracking_number"
    ]
    demo.pcii(
        "withdraw",
        second,
        "--reason",
        "resubmitting with corrected findings",
        who="rmwa-owner",
        show=("state",),
    )
    demo.summary.append(("withdraw", second, "withdrawn, key shredded"))

    demo.step("The auditor reviews the log")
    recipients = demo.pcii("audit", "recipients", tracking)
    for row in recipients.get("rows", [recipients]):
        _console.print(f"  [green]→ {row['principal']} at {row['time']}: {row['purpose']}[/]")
    verify = demo.pcii("audit", "verify", show=("size", "legal_history"))
    demo.summary.append(("audit verify", f"{verify.get('size', '?')} events", "sound"))

    demo.step("The auditor's report: one self-contained page, computed from the verified log")
    # Kept after the demo vault is removed: the page holds metadata only, no PCII content.
    page = Path(tempfile.mkdtemp(prefix="pcii-demo-report-")) / "audit-report.html"
    demo.pcii("audit", "report", "--html", str(page), show=("sound", "size"))
    demo.summary.append(("audit report", page.name, "written"))

    table = Table(title=f"PCII vault demo: done in {time.monotonic() - started:.1f} s")
    for column in ("step", "subject", "outcome"):
        table.add_column(column)
    for row in demo.summary:
        table.add_row(*row)
    _console.print(table)
    _console.print(f"The auditor's report of this vault: [bold]{page}[/]")


def keep_instructions(root: Path) -> list[str]:
    """Copy-pasteable shell lines to go on with the kept demo vault."""
    keys = root / "keys"
    lines = [
        f"# the demo vault is kept in {root}; to look around:",
        f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH",
        f"export PCII_VAULT={shlex.quote(str(root / 'vault'))} "
        f"PCII_UNSEAL_SECRET={shlex.quote(DEMO_SECRET)}",
        f"export PCII_IDENTITY={shlex.quote(str(keys / 'admin.key'))}",
        "pcii principal list; pcii audit log; pcii audit verify",
    ]
    others = sorted(p.name for p in keys.glob("*.key") if p.name != "admin.key")
    if others:
        lines.append(f"# other identities (pcii --as FILE ...) in {keys}: {', '.join(others)}")
    return lines


def main() -> None:
    """Entry point for `python -m pcii_vault.demo`."""
    root = Path(tempfile.mkdtemp(prefix="pcii-demo-"))
    try:
        run(root)
    finally:
        if os.environ.get("PCII_DEMO_KEEP"):
            # Plain lines, never wrapped: they are meant to be pasted into a shell.
            sys.stdout.write("\n".join(keep_instructions(root)) + "\n")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
