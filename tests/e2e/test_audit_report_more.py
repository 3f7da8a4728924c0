"""`pcii audit report` on a record the log never received, and what it says it replayed.

Tester's findings: `--record` with a tracking number not in the log gave a sound report
of 0 events (exit 0) where `audit recipients` says "no record" (exit 2); the report did
not say whether it re-ran the logged decisions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, copied_vault, validated_record

pytestmark = pytest.mark.slow

_UNKNOWN = "PCII-2026-03395908"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A vault with one validated record, released once."""
    cli = Cli(tmp_path_factory.mktemp("template"))
    return cli.root, validated_record(cli, purpose="drought planning")


@pytest.fixture
def vault(template: tuple[Path, str], tmp_path: Path) -> tuple[Cli, str]:
    return copied_vault(template, tmp_path)


def test_a_report_on_a_record_the_log_never_received_is_exit_2(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    page = cli.root / "page.html"
    refused = cli.run("audit", "report", "--record", _UNKNOWN, "--html", str(page))
    assert refused.code == 2, (refused.code, refused.err)
    assert refused.err.count("pcii: error:") == 1
    assert f"no record with tracking number '{_UNKNOWN}'" in refused.err
    assert not page.exists()
    recipients = cli.run("audit", "recipients", _UNKNOWN)
    assert recipients.code == 2
    assert f"no record with tracking number '{_UNKNOWN}'" in recipients.err
    # A known record with no event in the period is a report of nothing, not an error.
    quiet = cli.ok("audit", "report", "--record", tracking, "--until", "2000-01-01T00:00:00Z")
    assert quiet.json()["events_in_period"] == 0


def test_a_report_says_how_many_decisions_it_replayed(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    verified = cli.ok("audit", "verify").json()
    report = cli.ok("audit", "report").json()
    assert report["verification"]["decisions_replayed"] == verified["decisions_replayed"] > 0
