"""`pcii audit report`: the auditor's page, its PDF, its figures, on a log the CLI built.

One vault is built per module through the real CLI (submissions, validations, releases,
a 29.8(f) disclosure, denials, a decontrol with its notices, key rotation, a rewrap and a
retirement, a destruction); each test reads the report of that log. The expected figures
are computed here, independently, from `pcii audit log --json`.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcii_vault.index import LIFECYCLE_TRANSITIONS
from pcii_vault.report import HEADINGS
from tests.e2e.conftest import TRAINED, WATER, Cli
from tests.report_support import Browser, ensure_chromium, ensure_pango, summarise_dom

pytestmark = pytest.mark.slow

# Text a principal controls (an organisation name) that must reach the page as text.
HOSTILE_ORG = "<script>alert('org')</script> & <b>Sons</b>"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    cli = Cli(tmp_path_factory.mktemp("report"))
    cli.init()
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    cli.add("office", "office", "--org", "PCII Program Office", "--training-expires", TRAINED)
    for name, level, org, nda in (
        ("water", "state", "State Water Board", ("--nda-signed", "2026-01-01")),
        ("fedwater", "federal", HOSTILE_ORG, ()),
    ):
        cli.add(
            name,
            "analyst",
            "--level",
            level,
            "--org",
            org,
            "--sector",
            WATER,
            "--training-expires",
            TRAINED,
            *nda,
        )
    cli.add("energy", "analyst", "--level", "federal", "--org", "DHS I&A", "--sector", "Energy")
    cli.add("auditor", "auditor", "--org", "PCII Officer", "--training-expires", TRAINED)
    bare = str(cli.write_submission("bare.json", attachments=[]))
    a, b, c = (str(cli.ok("submit", bare, who="owner").json()["tracking_number"]) for _ in range(3))
    cli.ok("validate", a, who="office")
    cli.ok("validate", b, who="office")
    out = cli.root / "out"
    cli.ok("get", a, "--purpose", "drought <planning>", "--out", str(out / "1"), who="water")
    cli.ok("get", a, "--purpose", "pump stations", "--out", str(out / "2"), who="fedwater")
    cli.ok(
        "get",
        b,
        "--purpose",
        "GAO review of the program",
        "--use",
        "disclosure-exception",
        "--authority",
        "exception:gao",
        "--out",
        str(out / "3"),
        who="fedwater",
    )
    for i in range(3):
        denied = cli.run(
            "get", a, "--purpose", "curiosity", "--out", str(out / f"d{i}"), who="energy"
        )
        assert denied.code == 3, denied.err
    cli.ok("decontrol", a, "--basis", "customarily-public", "--reason", "customarily public",
           who="office")  # fmt: skip
    cli.ok("keys", "rotate", who="admin")
    cli.ok("keys", "rewrap", who="admin")
    cli.ok("keys", "retire", "1", who="admin")
    cli.ok("destroy", b, "--reason", "retention schedule", who="office")
    assert c  # c stays received: its validation decision is due
    yield cli


def _events(cli: Cli) -> list[dict[str, Any]]:
    return cli.ok("audit", "log").lines()


def _expected(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's figures, recomputed from the log's JSON lines."""
    orgs: dict[str, tuple[str, str]] = {}
    states: dict[str, str] = {}
    releases = []
    for e in events:
        if e["type"] == "principal.registered":
            p = e["details"]["principal"]
            orgs[p["id"]] = (p["organisation"], p["level"])
        elif e["type"] == "submission.received":
            states[e["record"]] = "received"
        elif e["type"] in LIFECYCLE_TRANSITIONS:
            states[e["record"]] = LIFECYCLE_TRANSITIONS[e["type"]][1]
        elif (
            e["type"] == "access.decided"
            and e["decision"] == "permit"
            and e["record"]
            and e["action"] in {"retrieve", "review"}
        ):
            releases.append(e)
    denials = [e for e in events if e["decision"] == "deny"]
    per_record = Counter(e["record"] for e in releases)
    return {
        "events_by_type": dict(Counter(e["type"] for e in events)),
        "denials_by_principal": dict(Counter(e["actor"] for e in denials)),
        "denials_by_policy": dict(
            Counter(p for e in denials for p in e["policies"] or ["(none: default deny)"])
        ),
        "records_by_state": dict(Counter(states.values())),
        "releases_by_record": {r: per_record.get(r, 0) for r in states},
        "releases_by_day": dict(Counter(e["time"][:10] for e in releases)),
        "denials_by_day": dict(Counter(e["time"][:10] for e in denials)),
        "acts_by_day": {
            day: dict(Counter(e["type"] for e in events if e["time"][:10] == day))
            for day in {e["time"][:10] for e in events}
        },
        "releases_by_organisation": sorted(
            (*org_level, n) for org_level, n in Counter(orgs[e["actor"]] for e in releases).items()
        ),
        "release_seqs": [e["seq"] for e in releases],
        "disclosures": [e["seq"] for e in releases if e["authority"]],
        "key_operations": [e["seq"] for e in events if e["type"].startswith("key.")],
        "size": len(events),
    }


def _report(cli: Cli, *args: str) -> dict[str, Any]:
    return cli.ok("audit", "report", *args).json()


def test_figures_equal_those_computed_from_the_log(vault: Cli) -> None:
    events = _events(vault)
    want = _expected(events)
    outdir = vault.root / "figures"
    got = _report(vault, "--csv", str(outdir / "csv"), "--html", str(vault.root / "f.html"))
    assert got["sound"] is True and got["size"] == want["size"]
    for key in (
        "events_by_type",
        "denials_by_principal",
        "denials_by_policy",
        "records_by_state",
        "releases_by_record",
        "releases_by_day",
        "denials_by_day",
        "acts_by_day",
    ):
        assert got[key] == want[key], key
    by_org = sorted(
        (r["organisation"], r["level"], r["releases"]) for r in got["releases_by_organisation"]
    )
    assert by_org == want["releases_by_organisation"]
    assert [k["seq"] for k in got["key_operations"]] == want["key_operations"]
    with (outdir / "csv" / "releases.csv").open() as handle:
        assert [int(r["seq"]) for r in csv.DictReader(handle)] == want["release_seqs"]
    with (outdir / "csv" / "disclosures.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["seq"]) for r in rows] == want["disclosures"]
    assert all(r["notice_seq"] for r in rows)  # the GAO disclosure's notice is in the log
    with (outdir / "csv" / "decontrols.csv").open() as handle:
        [decontrol] = list(csv.DictReader(handle))
    assert decontrol["earlier_recipients"] == "fedwater water"
    assert decontrol["not_notified"] == ""
    assert got["deadlines"]["validation decision"] == {"met": 2, "due": 1, "overdue": 0}
    assert got["deadlines"]["decontrol notice"] == {"met": 2, "due": 0, "overdue": 0}
    rules = {(f["rule"], f["subject"]) for f in got["findings"]}
    assert ("many-denials", "energy") in rules
    assert got["tables"]["unqualified"] == 0


def test_period_and_record_filters(vault: Cli) -> None:
    events = _events(vault)
    record = next(e["record"] for e in events if e["type"] == "record.decontrolled")
    got = _report(vault, "--record", record)
    mine = [e for e in events if e["record"] == record]
    assert got["events_by_type"] == dict(Counter(e["type"] for e in mine))
    assert got["records_by_state"] == {"decontrolled": 1}
    cut = events[len(events) // 2]["time"]
    early = _report(vault, "--until", cut)
    assert early["events_in_period"] == sum(1 for e in events if e["time"] <= cut)
    assert _report(vault, "--since", "2999-01-01T00:00:00Z")["events_in_period"] == 0
    bad = vault.run(
        "audit", "report", "--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"
    )
    assert bad.code == 2 and "after --until" in bad.err


def test_page_renders_in_chromium_with_no_request_but_the_file(vault: Cli) -> None:
    """A real browser, network disabled: headings, every chart with its marks, no request."""
    page = vault.root / "report.html"
    # A folder name a URL reads otherwise (a tester's finding: `p#1` linked to `p`).
    proofs = vault.root / "proofs #1"
    _report(vault, "--html", str(page), "--proofs", str(proofs))
    want = _expected(_events(vault))
    browser = Browser(ensure_chromium(), vault.root / "browser")
    browser.workdir.mkdir()
    url = page.resolve().as_uri()
    dom, log, urls = browser.dump_dom(url)
    assert set(urls) <= {url}, urls
    assert "Content Security Policy" not in log  # every inline style is allowed by its hash
    seen = summarise_dom(dom)
    assert seen.scripts == 0
    assert seen.headings == ["Access log audit report", *HEADINGS]
    assert "Log sound" in seen.text
    assert "before one logged earlier (a clock set back)" in seen.text  # every rule is named
    assert HOSTILE_ORG in seen.text  # shown as text, not markup
    days = len(want["acts_by_day"])  # bucketed by day: the log is minutes long
    denial_policies = want["denials_by_policy"]
    marks = {
        "acts-over-time": sum(len(types) for types in want["acts_by_day"].values()),
        "releases-and-denials": len(want["releases_by_day"]) + len(want["denials_by_day"]),
        "denials-by-policy": len(denial_policies),
        "denials-by-principal": len(want["denials_by_principal"]),
        "releases-by-record": sum(1 for n in want["releases_by_record"].values() if n),
        "releases-by-organisation": len(want["releases_by_organisation"]),
        "records-by-state": len(want["records_by_state"]),
        "deadlines": 3,  # validation met and due; decontrol notices met
    }
    assert days == 1
    assert set(seen.charts) == {*marks, "key-operations"}
    for name, count in marks.items():
        assert seen.charts[name]["svg"] == 1, name
        assert seen.charts[name]["bars"] == count, name
    assert seen.charts["key-operations"]["dots"] == len(want["key_operations"]) == 3
    # Each release links to its proof bundle, which verifies offline.
    first = want["release_seqs"][0]
    assert f'href="proofs%20%231/access-{first}.json"' in page.read_text()
    assert vault.ok("audit", "verify-proof", str(proofs / f"access-{first}.json")).code == 0

    shot = vault.root / "report.png"
    urls = browser.screenshot(url, shot, 1400)
    assert set(urls) <= {url}, urls
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, banner and charts, not blank


def test_the_browser_check_sees_a_request(vault: Cli, tmp_path: Path) -> None:
    """The request check can fail: a page that loads an image is caught."""
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<html><body><img src="http://192.0.2.1/x.png">x</body></html>')
    browser = Browser(ensure_chromium(), tmp_path)
    _, _, urls = browser.dump_dom(leaky.resolve().as_uri())
    assert "http://192.0.2.1/x.png" in urls


def test_pdf_has_the_same_headings(vault: Cli) -> None:
    ensure_pango()
    from pypdf import PdfReader

    page, pdf = vault.root / "p.html", vault.root / "p.pdf"
    _report(vault, "--html", str(page), "--pdf", str(pdf))
    text = " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(str(pdf)).pages)
    html_headings = summarise_dom(page.read_text()).headings
    for heading in html_headings:
        assert heading in text, heading
    assert "Log sound" in text


def _report_of_a_broken_log(broken: Cli, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """`audit report --json --html`: exit 4, and under --json one JSON object, as for any
    error: the figures with the error in them; and the page."""
    page = tmp_path / "broken.html"
    result = broken.run("--json", "audit", "report", "--html", str(page))
    assert result.code == 4
    [figures] = (json.loads(line) for line in result.out.splitlines())
    return figures, page


@pytest.mark.parametrize("damage", ["signature", "deleted"])
def test_a_log_whose_checkpoint_is_damaged_still_gets_its_report(
    vault: Cli, tmp_path: Path, damage: str
) -> None:
    """A tester's finding: a tampered or missing log/checkpoint gave no report at all
    (only the error), though a log that is not sound gets its report, saying so."""
    broken = Cli(tmp_path)
    shutil.copytree(vault.vault, broken.vault)
    checkpoint = broken.vault / "objects" / "log" / "checkpoint"
    if damage == "deleted":
        checkpoint.unlink()
    else:
        lines = checkpoint.read_text().splitlines()
        lines[-1] = lines[-1][:-6] + "AAAAA="
        checkpoint.write_text("\n".join(lines) + "\n")
    figures, page = _report_of_a_broken_log(broken, tmp_path)
    assert figures["sound"] is False
    assert figures["verification"]["sound"] is False
    assert figures["verification"]["legal_history"] is False
    assert figures["exit_code"] == 4
    assert "Log NOT SOUND" in summarise_dom(page.read_text()).text
    # Without --json: no Python None for the counts of a checkpoint never verified.
    said = broken.run("audit", "report", "--html", str(tmp_path / "again.html"))
    assert said.code == 4
    assert said.err.splitlines()[0] == "log NOT sound: no verified checkpoint"


def test_a_broken_log_is_reported_not_sound_and_still_rendered(vault: Cli, tmp_path: Path) -> None:
    """A tampered hash tile: exit 4, and a page that says NOT SOUND first, with the problem."""
    broken = Cli(tmp_path)
    shutil.copytree(vault.vault, broken.vault)
    # The level-0 tile at the checkpoint's size (the log is one partial tile: < 256 events).
    partial = broken.vault / "objects" / "log" / "tile" / "0" / "000.p"
    tile = max(partial.iterdir(), key=lambda t: int(t.name))
    data = bytearray(tile.read_bytes())
    data[40] ^= 0x01  # the second leaf hash
    tile.write_bytes(bytes(data))
    figures, page = _report_of_a_broken_log(broken, tmp_path)
    assert figures["sound"] is False
    # A tester's finding: the verification said legal_history true with no event read.
    assert figures["verification"]["legal_history"] is False
    assert "NOT sound" in figures["error"] and str(page) in figures["error"]
    assert figures["exit_code"] == 4
    seen = summarise_dom(page.read_text())
    verdict = seen.text.split("Verification", 1)[1]
    assert verdict.lstrip().startswith("Log NOT SOUND: entry 1 ")
    assert "does not match its leaf hash" in verdict.split("origin", 1)[0]
    assert seen.headings == ["Access log audit report", *HEADINGS]
    assert all(chart["svg"] == 1 for chart in seen.charts.values())


def test_the_trusted_checkpoint_is_named_in_the_report(vault: Cli) -> None:
    saved = vault.root / "trusted.note"
    if not saved.exists():
        vault.ok("audit", "checkpoint", "--out", str(saved))
    got = _report(vault, "--trusted-checkpoint", str(saved))
    size = int(saved.read_text().splitlines()[1])
    assert got["verification"]["trusted_checkpoint"]["size"] == size
    assert got["verification"]["sound"] is True


def test_help_lists_the_report_options(cli: Cli) -> None:
    helped = cli.run("audit", "report", "--help")
    assert helped.code == 0, helped.err
    for option in ("--html", "--pdf", "--csv", "--proofs", "--since", "--until", "--record"):
        assert option in helped.out
